/*
 * mtun native addon: fd readiness through uv_poll (level-triggered), one JS
 * callback per fd called with the ready events bitmask (1 readable, 2 writable).
 */
#include "common.h"

#include <stdlib.h>
#include <uv.h>

#define POLL_MAGIC 0x6d706f6cu /* "mpol" */

struct mtun_poll {
  uint32_t magic;
  uv_poll_t handle;
  napi_env env;
  napi_ref cb;
  napi_async_context actx;
  int events;
  bool closing;     /* uv_close called */
  bool closed_done; /* uv close callback ran */
  bool finalized;   /* JS external collected */
};

static void maybe_free(struct mtun_poll *p) {
  if (p->closed_done && p->finalized) {
    p->magic = 0;
    free(p);
  }
}

static void release_js(struct mtun_poll *p) {
  if (p->cb != NULL) {
    napi_delete_reference(p->env, p->cb);
    p->cb = NULL;
  }
  if (p->actx != NULL) {
    napi_async_destroy(p->env, p->actx);
    p->actx = NULL;
  }
}

/* JS references are dropped here, never inside a running callback. */
static void on_closed(uv_handle_t *h) {
  struct mtun_poll *p = (struct mtun_poll *)h->data;
  release_js(p);
  p->closed_done = true;
  maybe_free(p);
}

static void start_close(struct mtun_poll *p) {
  if (p->closing) return;
  p->closing = true;
  uv_poll_stop(&p->handle);
  uv_close((uv_handle_t *)&p->handle, on_closed);
}

static void on_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  struct mtun_poll *p = (struct mtun_poll *)data;
  start_close(p);
  p->finalized = true;
  maybe_free(p);
}

static void on_poll(uv_poll_t *h, int status, int events) {
  struct mtun_poll *p = (struct mtun_poll *)h->data;
  if (p->closing || p->cb == NULL) return;
  napi_env env = p->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value arg;
  int ev = 0;
  if (status < 0) {
    ev = status; /* libuv error (negative UV_E*, e.g. UV_EBADF): JS names it and fails loudly (TUN) or retries (UDP) */
  } else {
    if (events & UV_READABLE) ev |= 1;
    if (events & UV_WRITABLE) ev |= 2;
  }
  if (napi_create_int32(env, ev, &arg) == napi_ok) mtun_make_callback(env, p->cb, p->actx, 1, &arg);
  napi_close_handle_scope(env, scope);
}

static struct mtun_poll *get_poll(napi_env env, napi_value v) {
  napi_valuetype t;
  void *d = NULL;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_external || napi_get_value_external(env, v, &d) != napi_ok ||
      d == NULL || ((struct mtun_poll *)d)->magic != POLL_MAGIC) {
    mtun_throw_type(env, "mtun: argument poll must be a poll handle from pollStart");
    return NULL;
  }
  return (struct mtun_poll *)d;
}

static int uv_events(int32_t ev) {
  int e = 0;
  if (ev & 1) e |= UV_READABLE;
  if (ev & 2) e |= UV_WRITABLE;
  return e;
}

/* pollStart(fd, events, cb) -> handle. */
static napi_value poll_start(napi_env env, napi_callback_info info) {
  MTUN_ARGS(3);
  if (argc < 3) return mtun_throw_type(env, "mtun: pollStart(fd, events, cb) needs 3 arguments");
  int32_t fd, events;
  if (!mtun_arg_i32(env, argv[0], "fd", &fd) || !mtun_arg_i32(env, argv[1], "events", &events)) return NULL;
  if (fd < 0) return mtun_throw_type(env, "mtun: argument fd must be non-negative");
  napi_valuetype t;
  if (napi_typeof(env, argv[2], &t) != napi_ok || t != napi_function) {
    return mtun_throw_type(env, "mtun: argument cb must be a function");
  }
  uv_loop_t *loop = NULL;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok || loop == NULL) {
    napi_throw_error(env, NULL, "mtun: no event loop");
    return NULL;
  }
  struct mtun_poll *p = calloc(1, sizeof *p);
  if (p == NULL) return mtun_throw_errno(env, "mtun", "pollStart", 12 /* ENOMEM */);
  p->magic = POLL_MAGIC;
  p->env = env;
  int rc = uv_poll_init(loop, &p->handle, fd);
  if (rc < 0) {
    free(p);
    return mtun_throw_errno(env, "mtun", "uv_poll_init", -rc);
  }
  p->handle.data = p;
  napi_value name, ext;
  if (napi_create_reference(env, argv[2], 1, &p->cb) != napi_ok ||
      napi_create_string_utf8(env, "mtun:poll", NAPI_AUTO_LENGTH, &name) != napi_ok ||
      napi_async_init(env, NULL, name, &p->actx) != napi_ok) {
    p->finalized = true;
    start_close(p);
    napi_throw_error(env, NULL, "mtun: cannot set up poll callback");
    return NULL;
  }
  if (napi_create_external(env, p, on_finalize, NULL, &ext) != napi_ok) {
    p->finalized = true;
    start_close(p);
    napi_throw_error(env, NULL, "mtun: cannot create poll handle");
    return NULL;
  }
  p->events = uv_events(events);
  if (p->events != 0) {
    rc = uv_poll_start(&p->handle, p->events, on_poll);
    if (rc < 0) {
      start_close(p);
      return mtun_throw_errno(env, "mtun", "uv_poll_start", -rc);
    }
  }
  return ext;
}

/* pollSet(handle, events): 0 stops polling (and lets the loop exit). */
static napi_value poll_set(napi_env env, napi_callback_info info) {
  MTUN_ARGS(2);
  if (argc < 2) return mtun_throw_type(env, "mtun: pollSet(poll, events) needs 2 arguments");
  struct mtun_poll *p = get_poll(env, argv[0]);
  if (p == NULL) return NULL;
  int32_t events;
  if (!mtun_arg_i32(env, argv[1], "events", &events)) return NULL;
  if (p->closing) {
    napi_throw_error(env, "ERR_CLOSED", "mtun: poll handle used after close");
    return NULL;
  }
  int e = uv_events(events);
  if (e == p->events) return NULL;
  p->events = e;
  int rc = e == 0 ? uv_poll_stop(&p->handle) : uv_poll_start(&p->handle, e, on_poll);
  if (rc < 0) return mtun_throw_errno(env, "mtun", "uv_poll_start", -rc);
  return NULL;
}

/* pollClose(handle): idempotent. Must be called before the fd is closed. */
static napi_value poll_close(napi_env env, napi_callback_info info) {
  MTUN_ARGS(1);
  if (argc < 1) return mtun_throw_type(env, "mtun: pollClose(poll) needs 1 argument");
  struct mtun_poll *p = get_poll(env, argv[0]);
  if (p == NULL) return NULL;
  start_close(p);
  return NULL;
}

bool mtun_poll_init(napi_env env, napi_value exports) {
  return mtun_export_fn(env, exports, "pollStart", poll_start) && mtun_export_fn(env, exports, "pollSet", poll_set) &&
         mtun_export_fn(env, exports, "pollClose", poll_close);
}
