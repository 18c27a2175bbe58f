/*
 * mtun QUIC engine: helpers shared by the N-API files (quic-napi.c for
 * connections, quic-napi-config.c for configs and stateless packets).
 * Each converts or checks one argument and never keeps a pointer into
 * JavaScript memory past the call.
 */
#ifndef MTUN_QUIC_NAPI_H
#define MTUN_QUIC_NAPI_H

#include "common.h"
#include "quic-engine.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


#define QE_ERR(env, ...)                                  \
  do {                                                    \
    char m_[256];                                         \
    snprintf(m_, sizeof m_, __VA_ARGS__);                 \
    napi_throw_error((env), "ERR_MTUN_QUIC", m_);         \
    return NULL;                                          \
  } while (0)

static inline void *ext(napi_env env, napi_value v) {
  void *p = NULL;
  if (napi_get_value_external(env, v, &p) != napi_ok) return NULL;
  return p;
}
#define CONN(v)                                                          \
  struct qe_conn *c = ext(env, (v));                                     \
  if (c == NULL) return mtun_throw_type(env, "quic: not a connection");

static inline bool bytes_of(napi_env env, napi_value v, uint8_t **p, size_t *len) {
  bool is = false;
  napi_is_typedarray(env, v, &is);
  if (!is) {
    napi_is_buffer(env, v, &is);
    if (!is) return false;
    void *d;
    if (napi_get_buffer_info(env, v, &d, len) != napi_ok) return false;
    *p = d;
    return true;
  }
  napi_typedarray_type t;
  size_t n;
  void *d;
  napi_value ab;
  size_t off;
  if (napi_get_typedarray_info(env, v, &t, &n, &d, &ab, &off) != napi_ok || t != napi_uint8_array) return false;
  *p = d;
  *len = n;
  return true;
}

static inline bool is_nullish(napi_env env, napi_value v) {
  napi_valuetype t;
  napi_typeof(env, v, &t);
  return t == napi_null || t == napi_undefined;
}

static inline double num(napi_env env, napi_value v) {
  double d = 0;
  napi_get_value_double(env, v, &d);
  return d;
}

static inline napi_value dbl(napi_env env, double d) {
  napi_value r;
  napi_create_double(env, d, &r);
  return r;
}

static inline napi_value boolv(napi_env env, bool b) {
  napi_value r;
  napi_get_boolean(env, b, &r);
  return r;
}

static inline napi_value nullv(napi_env env) {
  napi_value r;
  napi_get_null(env, &r);
  return r;
}

static inline napi_value copy_buf(napi_env env, const void *p, size_t len) {
  napi_value r;
  void *d;
  if (napi_create_buffer_copy(env, len, p, &d, &r) != napi_ok) return NULL;
  return r;
}

/* Host text + port → sockaddr (IPv6 when the text holds a colon). */
static inline bool sockaddr_of(napi_env env, napi_value host, napi_value port, struct sockaddr_storage *ss, socklen_t *len) {
  char h[64];
  size_t hl;
  if (!mtun_arg_str(env, host, "host", h, sizeof h, &hl)) return false;
  uint32_t p = (uint32_t)num(env, port);
  memset(ss, 0, sizeof *ss);
  if (strchr(h, ':') != NULL) {
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
    a->sin6_family = AF_INET6;
    a->sin6_port = htons((uint16_t)p);
    if (inet_pton(AF_INET6, h, &a->sin6_addr) != 1) goto bad;
    *len = sizeof *a;
  } else {
    struct sockaddr_in *a = (struct sockaddr_in *)ss;
    a->sin_family = AF_INET;
    a->sin_port = htons((uint16_t)p);
    if (inet_pton(AF_INET, h, &a->sin_addr) != 1) goto bad;
    *len = sizeof *a;
  }
  return true;
bad:
  mtun_throw_type(env, "quic: host is not an IP address");
  return false;
}

/* Exports cb as name, called with the engine lock held (qe_lock). */
bool qn_export_locked(napi_env env, napi_value exports, const char *name, napi_callback cb);

/* Registers the config and stateless-packet functions (quic-napi-config.c). */
bool qn_config_init(napi_env env, napi_value exports);

#endif
