/*
 * mtun native addon: module init, error construction and argument checking
 * shared by the TUN, UDP and poll parts, and the process's malloc accounting.
 */
#include "common.h"
#include "quic-engine.h" /* qe_pages_in_use, for mallocStats */

#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct mtun_scratch *mtun_scratch_of(napi_env env) {
  void *data = NULL;
  if (napi_get_instance_data(env, &data) != napi_ok) return NULL;
  return (struct mtun_scratch *)data;
}

static void set_prop_str(napi_env env, napi_value obj, const char *key, const char *val) {
  napi_value v;
  if (napi_create_string_utf8(env, val, NAPI_AUTO_LENGTH, &v) == napi_ok) {
    napi_set_named_property(env, obj, key, v);
  }
}

napi_value mtun_throw_errno(napi_env env, const char *prefix, const char *what, int err) {
  char msg[512];
  snprintf(msg, sizeof msg, "%s: %s: %s", prefix, what, strerror(err));
  napi_value m, e, n;
  if (napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &m) != napi_ok) return NULL;
  if (napi_create_error(env, NULL, m, &e) != napi_ok) return NULL;
  const char *name = strerrorname_np(err);
  set_prop_str(env, e, "code", name ? name : "EUNKNOWN");
  if (napi_create_int32(env, err, &n) == napi_ok) napi_set_named_property(env, e, "errno", n);
  napi_throw(env, e);
  return NULL;
}

napi_value mtun_throw_type(napi_env env, const char *msg) {
  napi_throw_type_error(env, "ERR_INVALID_ARG", msg);
  return NULL;
}

static bool type_fail(napi_env env, const char *name, const char *want) {
  char msg[256];
  snprintf(msg, sizeof msg, "mtun: argument %s must be %s", name, want);
  mtun_throw_type(env, msg);
  return false;
}

bool mtun_arg_u32(napi_env env, napi_value v, const char *name, uint32_t *out) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_number) return type_fail(env, name, "a number");
  double d;
  if (napi_get_value_double(env, v, &d) != napi_ok || !(d >= 0 && d <= 4294967295.0) || d != (double)(uint32_t)d) {
    return type_fail(env, name, "an integer in 0..2^32-1");
  }
  *out = (uint32_t)d;
  return true;
}

bool mtun_arg_i32(napi_env env, napi_value v, const char *name, int32_t *out) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_number) return type_fail(env, name, "a number");
  double d;
  if (napi_get_value_double(env, v, &d) != napi_ok || !(d >= -2147483648.0 && d <= 2147483647.0) ||
      d != (double)(int32_t)d) {
    return type_fail(env, name, "a 32-bit integer");
  }
  *out = (int32_t)d;
  return true;
}

bool mtun_arg_bool(napi_env env, napi_value v, const char *name, bool *out) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_boolean) return type_fail(env, name, "a boolean");
  return napi_get_value_bool(env, v, out) == napi_ok;
}

bool mtun_arg_str(napi_env env, napi_value v, const char *name, char *buf, size_t cap, size_t *len) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_string) return type_fail(env, name, "a string");
  size_t need = 0;
  if (napi_get_value_string_utf8(env, v, NULL, 0, &need) != napi_ok || need + 1 > cap) {
    return type_fail(env, name, "a shorter string");
  }
  size_t got = 0;
  if (napi_get_value_string_utf8(env, v, buf, cap, &got) != napi_ok) return type_fail(env, name, "a string");
  if (len) *len = got;
  return true;
}

bool mtun_arg_typed(napi_env env, napi_value v, napi_typedarray_type type, const char *name, void **data,
                    size_t *len) {
  bool is = false;
  if (napi_is_typedarray(env, v, &is) != napi_ok || !is) return type_fail(env, name, "a typed array");
  napi_typedarray_type got;
  size_t n;
  void *d = NULL;
  if (napi_get_typedarray_info(env, v, &got, &n, &d, NULL, NULL) != napi_ok || got != type) {
    return type_fail(env, name, type == napi_uint32_array ? "a Uint32Array"
                                : type == napi_int32_array ? "an Int32Array"
                                : type == napi_float64_array ? "a Float64Array"
                                                             : "a Uint8Array");
  }
  *data = d;
  *len = n;
  return true;
}

bool mtun_arg_stats(napi_env env, napi_value v, double **data, size_t *len) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok) return type_fail(env, "stats", "a Float64Array");
  if (t == napi_undefined || t == napi_null) {
    *data = NULL;
    *len = 0;
    return true;
  }
  void *d = NULL;
  if (!mtun_arg_typed(env, v, napi_float64_array, "stats", &d, len)) return false;
  *data = (double *)d;
  return true;
}

bool mtun_arg_array_len(napi_env env, napi_value v, const char *name, uint32_t *len) {
  bool is = false;
  if (napi_is_array(env, v, &is) != napi_ok || !is) return type_fail(env, name, "an array of Buffers");
  return napi_get_array_length(env, v, len) == napi_ok;
}

bool mtun_arg_bufs(napi_env env, napi_value arr, uint32_t n, const char *name, uint8_t **ptrs, size_t *lens) {
  for (uint32_t i = 0; i < n; i++) {
    napi_value el;
    if (napi_get_element(env, arr, i, &el) != napi_ok) return type_fail(env, name, "an array of Buffers");
    bool is = false;
    if (napi_is_buffer(env, el, &is) != napi_ok || !is) {
      char what[128];
      snprintf(what, sizeof what, "an array of Buffers (element %u is not)", i);
      return type_fail(env, name, what);
    }
    void *d = NULL;
    size_t l = 0;
    if (napi_get_buffer_info(env, el, &d, &l) != napi_ok) return type_fail(env, name, "an array of Buffers");
    ptrs[i] = (uint8_t *)d;
    lens[i] = l;
  }
  return true;
}

bool mtun_arg_slots_begin(napi_env env, napi_value v, napi_value stride, const char *name, struct mtun_slots *out) {
  out->v = v;
  out->stride = 0;
  out->base = NULL;
  out->count = 0;
  if (stride != NULL) {
    napi_valuetype t;
    if (napi_typeof(env, stride, &t) != napi_ok) return type_fail(env, "stride", "a slot size");
    if (t != napi_undefined && t != napi_null && !mtun_arg_u32(env, stride, "stride", &out->stride)) return false;
  }
  if (out->stride == 0) return mtun_arg_array_len(env, v, name, &out->count);
  bool is = false;
  void *d = NULL;
  size_t l = 0;
  if (napi_is_buffer(env, v, &is) != napi_ok || !is || napi_get_buffer_info(env, v, &d, &l) != napi_ok) {
    return type_fail(env, name, "a Buffer of slots when a stride is given");
  }
  out->base = (uint8_t *)d;
  size_t c = l / out->stride;
  out->count = c > UINT32_MAX ? UINT32_MAX : (uint32_t)c;
  return true;
}

bool mtun_arg_slots_fill(napi_env env, const struct mtun_slots *s, uint32_t n, const char *name, uint8_t **ptrs,
                         size_t *lens) {
  if (s->stride == 0) return mtun_arg_bufs(env, s->v, n, name, ptrs, lens);
  if (n > s->count) return type_fail(env, name, "a Buffer holding every slot");
  for (uint32_t i = 0; i < n; i++) {
    ptrs[i] = s->base + (size_t)i * s->stride;
    lens[i] = s->stride;
  }
  return true;
}

napi_value mtun_u32(napi_env env, uint32_t v) {
  napi_value r;
  if (napi_create_uint32(env, v, &r) != napi_ok) return NULL;
  return r;
}

napi_value mtun_i32(napi_env env, int32_t v) {
  napi_value r;
  if (napi_create_int32(env, v, &r) != napi_ok) return NULL;
  return r;
}

void mtun_make_callback(napi_env env, napi_ref ref, napi_async_context actx, size_t argc, const napi_value *argv) {
  napi_value cb, recv, result;
  if (napi_get_reference_value(env, ref, &cb) != napi_ok || cb == NULL || napi_get_global(env, &recv) != napi_ok) return;
  if (napi_make_callback(env, actx, recv, cb, argc, argv, &result) == napi_pending_exception) {
    napi_value exc;
    if (napi_get_and_clear_last_exception(env, &exc) == napi_ok) napi_fatal_exception(env, exc);
  }
}

bool mtun_export_fn(napi_env env, napi_value exports, const char *name, napi_callback cb) {
  napi_value fn;
  if (napi_create_function(env, name, NAPI_AUTO_LENGTH, cb, NULL, &fn) != napi_ok) return false;
  return napi_set_named_property(env, exports, name, fn) == napi_ok;
}

static void free_scratch(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  free(data);
}

/*
 * mallocStats(out): glibc's malloc accounting (mallinfo2) into a Float64Array
 * of 3 or 4: bytes in use, bytes free inside the heap arenas (fragmentation),
 * bytes in mmap'd chunks; and, with a 4th slot, the bytes of the QUIC
 * engine's page pool handed out (quic-pages.c: whole pages of address space,
 * only the touched ones resident). Native memory (the QUIC engine, GnuTLS, libuv) lives
 * there, outside what V8 reports: a daemon whose RSS grows while its V8 heap
 * and external memory stay flat is growing here.
 */
static napi_value malloc_stats_fn(napi_env env, napi_callback_info info) {
  MTUN_ARGS(1);
  void *d = NULL;
  size_t n = 0;
  if (argc < 1 || !mtun_arg_typed(env, argv[0], napi_float64_array, "out", &d, &n)) return NULL;
  if (n < 3) return mtun_throw_type(env, "mtun: mallocStats(out) needs a Float64Array of 3");
  double *o = (double *)d;
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
  struct mallinfo2 mi = mallinfo2();
  o[0] = (double)mi.uordblks + (double)mi.hblkhd;
  o[1] = (double)mi.fordblks;
  o[2] = (double)mi.hblkhd;
#else
  o[0] = o[1] = o[2] = -1; /* not glibc >= 2.33: unknown */
#endif
  if (n >= 4) o[3] = (double)qe_pages_in_use();
  return NULL;
}

static napi_value init(napi_env env, napi_value exports) {
  struct mtun_scratch *s = calloc(1, sizeof *s);
  if (s == NULL || napi_set_instance_data(env, s, free_scratch, NULL) != napi_ok) {
    free(s);
    napi_throw_error(env, NULL, "mtun: cannot allocate native scratch memory");
    return NULL;
  }
  if (!mtun_tun_init(env, exports) || !mtun_udp_init(env, exports) || !mtun_poll_init(env, exports) ||
      !mtun_quic_init(env, exports) || !mtun_judge_init(env, exports) || !mtun_codel_init(env, exports) || !mtun_dataplane_init(env, exports) || !mtun_export_fn(env, exports, "mallocStats", malloc_stats_fn)) {
    napi_throw_error(env, NULL, "mtun: cannot register native functions");
    return NULL;
  }
  /* The calling convention's version (MTUN_ABI in common.h): loadNative refuses a stale build. */
  napi_value abi;
  if (napi_create_uint32(env, MTUN_ABI, &abi) != napi_ok || napi_set_named_property(env, exports, "abi", abi) != napi_ok) {
    napi_throw_error(env, NULL, "mtun: cannot register native functions");
    return NULL;
  }
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
