/*
 * mtun QUIC engine: the N-API surface (functions named quic*). Handles are
 * napi externals: a config or a connection is freed when JavaScript drops
 * it (connections keep their config alive). Buffers passed in are read
 * during the call only; nothing keeps a pointer into JavaScript memory.
 * src/quic/ngtcp2.ts wraps these into the engine interface src/quic uses.
 */
#include "common.h"
#include "quic-engine.h"

#include <arpa/inet.h>
#include <gnutls/x509.h>
#include <ngtcp2/ngtcp2_crypto_gnutls.h>
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

static void *ext(napi_env env, napi_value v) {
  void *p = NULL;
  if (napi_get_value_external(env, v, &p) != napi_ok) return NULL;
  return p;
}
#define CONN(v)                                                          \
  struct qe_conn *c = ext(env, (v));                                     \
  if (c == NULL) return mtun_throw_type(env, "quic: not a connection");

static bool bytes_of(napi_env env, napi_value v, uint8_t **p, size_t *len) {
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

static bool is_nullish(napi_env env, napi_value v) {
  napi_valuetype t;
  napi_typeof(env, v, &t);
  return t == napi_null || t == napi_undefined;
}

static double num(napi_env env, napi_value v) {
  double d = 0;
  napi_get_value_double(env, v, &d);
  return d;
}

static napi_value dbl(napi_env env, double d) {
  napi_value r;
  napi_create_double(env, d, &r);
  return r;
}

static napi_value boolv(napi_env env, bool b) {
  napi_value r;
  napi_get_boolean(env, b, &r);
  return r;
}

static napi_value nullv(napi_env env) {
  napi_value r;
  napi_get_null(env, &r);
  return r;
}

static napi_value copy_buf(napi_env env, const void *p, size_t len) {
  napi_value r;
  void *d;
  if (napi_create_buffer_copy(env, len, p, &d, &r) != napi_ok) return NULL;
  return r;
}

/* Host text + port → sockaddr (IPv6 when the text holds a colon). */
static bool sockaddr_of(napi_env env, napi_value host, napi_value port, struct sockaddr_storage *ss, socklen_t *len) {
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

/* ------------------------------------------------------------ config */

void qe_config_unref(struct qe_config *c) {
  if (--c->refs > 0) return;
  if (c->cred != NULL) gnutls_certificate_free_credentials(c->cred);
  for (unsigned i = 0; i < c->alpn_count; i++) free(c->alpn[i].data);
  free(c);
}

static void config_finalize(napi_env env, void *data, void *hint) { qe_config_unref(data); }

/* quicConfigNew(verifyPeer, ca|null, keyPem|null, certPem|null) */
static napi_value config_new(napi_env env, napi_callback_info info) {
  MTUN_ARGS(4);
  bool verify;
  if (!mtun_arg_bool(env, argv[0], "verifyPeer", &verify)) return NULL;
  struct qe_config *c = calloc(1, sizeof *c);
  if (c == NULL) QE_ERR(env, "quic: out of memory");
  c->refs = 1;
  c->verify_peer = verify;
  c->idle_ms = 30000;
  c->max_recv_udp = c->max_send_udp = 1350;
  c->cc = NGTCP2_CC_ALGO_CUBIC;
  int rv = gnutls_certificate_allocate_credentials(&c->cred);
  if (rv != 0) {
    free(c);
    QE_ERR(env, "quic: credentials: %s", gnutls_strerror(rv));
  }
  uint8_t *p;
  size_t len;
  if (!is_nullish(env, argv[1])) {
    if (!bytes_of(env, argv[1], &p, &len)) goto badarg;
    gnutls_datum_t d = {.data = p, .size = (unsigned)len};
    rv = gnutls_certificate_set_x509_trust_mem(c->cred, &d, GNUTLS_X509_FMT_PEM);
    if (rv < 1) {
      qe_config_unref(c);
      QE_ERR(env, "quic: CA: %s", rv < 0 ? gnutls_strerror(rv) : "no certificate in the PEM");
    }
    c->has_ca = true;
  }
  if (!is_nullish(env, argv[2]) && !is_nullish(env, argv[3])) {
    uint8_t *kp, *cp;
    size_t kl, cl;
    if (!bytes_of(env, argv[2], &kp, &kl) || !bytes_of(env, argv[3], &cp, &cl)) goto badarg;
    gnutls_datum_t k = {.data = kp, .size = (unsigned)kl}, ce = {.data = cp, .size = (unsigned)cl};
    rv = gnutls_certificate_set_x509_key_mem(c->cred, &ce, &k, GNUTLS_X509_FMT_PEM);
    if (rv < 0) {
      qe_config_unref(c);
      QE_ERR(env, "quic: certificate/key: %s", gnutls_strerror(rv));
    }
  }
  napi_value r;
  if (napi_create_external(env, c, config_finalize, NULL, &r) != napi_ok) {
    qe_config_unref(c);
    QE_ERR(env, "quic: cannot wrap config");
  }
  return r;
badarg:
  qe_config_unref(c);
  return mtun_throw_type(env, "quic: PEM arguments must be Uint8Arrays");
}

/* Numeric fields of quicConfigSet; keep in step with CONFIG_FIELD in src/quic/ngtcp2.ts. */
enum {
  CF_IDLE_MS, CF_MAX_RECV_UDP, CF_MAX_SEND_UDP, CF_MAX_DATA, CF_SD_BIDI_LOCAL, CF_SD_BIDI_REMOTE, CF_SD_UNI,
  CF_STREAMS_BIDI, CF_STREAMS_UNI, CF_DISABLE_MIGRATION, CF_CC, CF_DGRAM, CF_DGRAM_RQ, CF_DGRAM_SQ,
  CF_STREAM_WINDOW, CF_CONN_WINDOW, CF_KEYLOG, CF_VERIFY_PEER,
};

static napi_value config_set(napi_env env, napi_callback_info info) {
  MTUN_ARGS(3);
  struct qe_config *c = ext(env, argv[0]);
  if (c == NULL) return mtun_throw_type(env, "quic: not a config");
  uint32_t f;
  if (!mtun_arg_u32(env, argv[1], "field", &f)) return NULL;
  double v = num(env, argv[2]);
  if (!(v >= 0) || v > 9007199254740991.0) return mtun_throw_type(env, "quic: config value out of range");
  uint64_t u = (uint64_t)v;
  switch (f) {
  case CF_IDLE_MS: c->idle_ms = u; break;
  case CF_MAX_RECV_UDP: c->max_recv_udp = u < 1200 ? 1200 : u; break;
  case CF_MAX_SEND_UDP: c->max_send_udp = u < 1200 ? 1200 : u > 65527 ? 65527 : u; break;
  case CF_MAX_DATA: c->max_data = u; break;
  case CF_SD_BIDI_LOCAL: c->sd_bidi_local = u; break;
  case CF_SD_BIDI_REMOTE: c->sd_bidi_remote = u; break;
  case CF_SD_UNI: c->sd_uni = u; break;
  case CF_STREAMS_BIDI: c->streams_bidi = u; break;
  case CF_STREAMS_UNI: c->streams_uni = u; break;
  case CF_DISABLE_MIGRATION: c->disable_migration = u != 0; break;
  case CF_CC: c->cc = (ngtcp2_cc_algo)u; break;
  case CF_DGRAM: c->dgram = u != 0; break;
  case CF_DGRAM_RQ: c->dgram_rq = u > 65536 ? 65536 : (uint32_t)u; break;
  case CF_DGRAM_SQ: c->dgram_sq = u > 65536 ? 65536 : (uint32_t)u; break;
  case CF_STREAM_WINDOW: c->max_stream_window = u; break;
  case CF_CONN_WINDOW: c->max_conn_window = u; break;
  case CF_KEYLOG: c->keylog = u != 0; break;
  case CF_VERIFY_PEER: c->verify_peer = u != 0; break;
  default: return mtun_throw_type(env, "quic: unknown config field");
  }
  return NULL;
}

/* quicConfigSetAlpn(cfg, protos: Uint8Array[]) */
static napi_value config_set_alpn(napi_env env, napi_callback_info info) {
  MTUN_ARGS(2);
  struct qe_config *c = ext(env, argv[0]);
  uint32_t n;
  if (c == NULL || !mtun_arg_array_len(env, argv[1], "protos", &n) || n > QE_MAX_ALPN)
    return mtun_throw_type(env, "quic: ALPN needs a config and at most 8 protocols");
  for (unsigned i = 0; i < c->alpn_count; i++) free(c->alpn[i].data);
  c->alpn_count = 0;
  for (uint32_t i = 0; i < n; i++) {
    napi_value e;
    uint8_t *p;
    size_t len;
    if (napi_get_element(env, argv[1], i, &e) != napi_ok || !bytes_of(env, e, &p, &len) || len == 0 || len > 255)
      return mtun_throw_type(env, "quic: ALPN protocol must be 1-255 bytes");
    c->alpn[i].data = malloc(len);
    if (c->alpn[i].data == NULL) QE_ERR(env, "quic: out of memory");
    memcpy(c->alpn[i].data, p, len);
    c->alpn[i].size = (unsigned)len;
    c->alpn_count = i + 1;
  }
  return NULL;
}

/* quicConfigSetBytes(cfg, which: 0 ticket key | 1 stateless reset token, bytes) */
static napi_value config_set_bytes(napi_env env, napi_callback_info info) {
  MTUN_ARGS(3);
  struct qe_config *c = ext(env, argv[0]);
  uint32_t which;
  uint8_t *p;
  size_t len;
  if (c == NULL || !mtun_arg_u32(env, argv[1], "which", &which) || !bytes_of(env, argv[2], &p, &len))
    return mtun_throw_type(env, "quic: quicConfigSetBytes(config, which, bytes)");
  if (which == 0) {
    /* GnuTLS wants a 64-byte ticket master key: derive it from the endpoint's key. */
    if (len < 32) return mtun_throw_type(env, "quic: ticket key must be at least 32 bytes");
    gnutls_hash_fast(GNUTLS_DIG_SHA512, p, len, c->ticket_key);
    c->has_ticket = true;
  } else {
    if (len != NGTCP2_STATELESS_RESET_TOKENLEN) return mtun_throw_type(env, "quic: reset token must be 16 bytes");
    memcpy(c->reset_token, p, len);
    c->has_reset_token = true;
  }
  return NULL;
}

/* ------------------------------------------------------------ connections */

static void conn_finalize(napi_env env, void *data, void *hint) { qe_conn_free(data); }

static napi_value wrap_conn(napi_env env, struct qe_conn *c) {
  napi_value r;
  if (napi_create_external(env, c, conn_finalize, NULL, &r) != napi_ok) {
    qe_conn_free(c);
    QE_ERR(env, "quic: cannot wrap connection");
  }
  return r;
}

/* quicConnect(cfg, sni|null, scid, localHost, localPort, remoteHost, remotePort) */
static napi_value conn_connect(napi_env env, napi_callback_info info) {
  MTUN_ARGS(7);
  struct qe_config *cfg = ext(env, argv[0]);
  char sni[256] = "";
  size_t sl;
  uint8_t *scid;
  size_t scidlen;
  struct sockaddr_storage l, r;
  socklen_t ll, rl;
  if (cfg == NULL || !bytes_of(env, argv[2], &scid, &scidlen) || scidlen > NGTCP2_MAX_CIDLEN)
    return mtun_throw_type(env, "quic: quicConnect(config, sni, scid, ...)");
  if (!is_nullish(env, argv[1]) && !mtun_arg_str(env, argv[1], "sni", sni, sizeof sni, &sl)) return NULL;
  if (!sockaddr_of(env, argv[3], argv[4], &l, &ll) || !sockaddr_of(env, argv[5], argv[6], &r, &rl)) return NULL;
  char err[200];
  struct qe_conn *c = qe_conn_client(cfg, sni, scid, scidlen, (struct sockaddr *)&l, ll, (struct sockaddr *)&r, rl,
                                     err, sizeof err);
  if (c == NULL) QE_ERR(env, "quic: connect: %s", err);
  return wrap_conn(env, c);
}

/* quicAccept(cfg, scid, odcid|null, localHost, localPort, remoteHost, remotePort) */
static napi_value conn_accept(napi_env env, napi_callback_info info) {
  MTUN_ARGS(7);
  struct qe_config *cfg = ext(env, argv[0]);
  uint8_t *scid, *odcid = NULL;
  size_t scidlen, odcidlen = 0;
  struct sockaddr_storage l, r;
  socklen_t ll, rl;
  if (cfg == NULL || !bytes_of(env, argv[1], &scid, &scidlen) || scidlen > NGTCP2_MAX_CIDLEN)
    return mtun_throw_type(env, "quic: quicAccept(config, scid, odcid, ...)");
  if (!is_nullish(env, argv[2]) && (!bytes_of(env, argv[2], &odcid, &odcidlen) || odcidlen > NGTCP2_MAX_CIDLEN))
    return mtun_throw_type(env, "quic: odcid must be a Uint8Array of at most 20 bytes");
  if (!sockaddr_of(env, argv[3], argv[4], &l, &ll) || !sockaddr_of(env, argv[5], argv[6], &r, &rl)) return NULL;
  char err[200];
  struct qe_conn *c = qe_conn_server(cfg, scid, scidlen, odcid, odcidlen, (struct sockaddr *)&l, ll,
                                     (struct sockaddr *)&r, rl, err, sizeof err);
  if (c == NULL) QE_ERR(env, "quic: accept: %s", err);
  return wrap_conn(env, c);
}

/* quicSetPeer(conn, host, port): the address later packets come from (path for ngtcp2). */
static napi_value conn_set_peer(napi_env env, napi_callback_info info) {
  MTUN_ARGS(3);
  CONN(argv[0]);
  struct sockaddr_storage r;
  socklen_t rl;
  if (!sockaddr_of(env, argv[1], argv[2], &r, &rl)) return NULL;
  memcpy(&c->remote, &r, rl);
  c->remotelen = rl;
  return NULL;
}

/* quicRecv(conn, data) → 0, or throws "quic: <reason>" (a close may be queued). */
static napi_value conn_recv(napi_env env, napi_callback_info info) {
  MTUN_ARGS(2);
  CONN(argv[0]);
  uint8_t *p;
  size_t len;
  if (!bytes_of(env, argv[1], &p, &len)) return mtun_throw_type(env, "quic: recv needs a Uint8Array");
  if (qe_conn_recv(c, p, len, NULL, 0) != 0) QE_ERR(env, "quic: recv: %s", c->errmsg);
  return NULL;
}

/* quicSend(conn, out) → bytes written (0: nothing to send now). */
static napi_value conn_send(napi_env env, napi_callback_info info) {
  MTUN_ARGS(2);
  CONN(argv[0]);
  uint8_t *p;
  size_t len;
  if (!bytes_of(env, argv[1], &p, &len)) return mtun_throw_type(env, "quic: send needs a Uint8Array");
  ssize_t n = qe_conn_send(c, p, len);
  return mtun_i32(env, n < 0 ? 0 : (int32_t)n);
}

/* quicTimeout(conn) → µs until the next deadline, or -1. */
static napi_value conn_timeout(napi_env env, napi_callback_info info) {
  MTUN_ARGS(1);
  CONN(argv[0]);
  return dbl(env, (double)qe_conn_timeout_us(c));
}

static napi_value conn_on_timeout(napi_env env, napi_callback_info info) {
  MTUN_ARGS(1);
  CONN(argv[0]);
  qe_conn_on_timeout(c);
  return NULL;
}

static napi_value conn_ping(napi_env env, napi_callback_info info) {
  MTUN_ARGS(1);
  CONN(argv[0]);
  qe_conn_ping(c);
  return NULL;
}

/* quicClose(conn, app, code, reason) → false when already closing or closed. */
static napi_value conn_close(napi_env env, napi_callback_info info) {
  MTUN_ARGS(4);
  CONN(argv[0]);
  bool app;
  uint8_t *p = NULL;
  size_t len = 0;
  if (!mtun_arg_bool(env, argv[1], "app", &app)) return NULL;
  if (!is_nullish(env, argv[3]) && !bytes_of(env, argv[3], &p, &len)) return mtun_throw_type(env, "quic: reason");
  if (c->state != QE_OPEN) return boolv(env, false);
  qe_conn_close(c, app, (uint64_t)num(env, argv[2]), p, len > QE_MAX_REASON ? QE_MAX_REASON : len);
  return boolv(env, true);
}

/* quicStreamSend(conn, id, data, fin, res: Float64Array) → QE_S_*; res[0] bytes taken, res[1] error code. */
static napi_value stream_send(napi_env env, napi_callback_info info) {
  MTUN_ARGS(5);
  CONN(argv[0]);
  uint8_t *p;
  size_t len, rn;
  bool fin;
  double *res;
  if (!bytes_of(env, argv[2], &p, &len) || !mtun_arg_bool(env, argv[3], "fin", &fin) ||
      !mtun_arg_stats(env, argv[4], &res, &rn) || res == NULL || rn < 2)
    return mtun_throw_type(env, "quic: quicStreamSend(conn, id, data, fin, res)");
  size_t taken;
  uint64_t code = 0;
  int rv = qe_stream_send(c, (int64_t)num(env, argv[1]), p, len, fin, &taken, &code);
  res[0] = (double)taken;
  res[1] = (double)code;
  return mtun_i32(env, rv);
}

/* quicStreamRecv(conn, id, out, res) → QE_S_*; res[0] bytes, res[1] fin, res[2] reset code. */
static napi_value stream_recv(napi_env env, napi_callback_info info) {
  MTUN_ARGS(4);
  CONN(argv[0]);
  uint8_t *p;
  size_t len, rn;
  double *res;
  if (!bytes_of(env, argv[2], &p, &len) || !mtun_arg_stats(env, argv[3], &res, &rn) || res == NULL || rn < 3)
    return mtun_throw_type(env, "quic: quicStreamRecv(conn, id, out, res)");
  size_t n;
  bool fin;
  uint64_t code = 0;
  int rv = qe_stream_recv(c, (int64_t)num(env, argv[1]), p, len, &n, &fin, &code);
  res[0] = (double)n;
  res[1] = fin ? 1 : 0;
  res[2] = (double)code;
  return mtun_i32(env, rv);
}

static napi_value stream_shutdown(napi_env env, napi_callback_info info) {
  MTUN_ARGS(4);
  CONN(argv[0]);
  bool read;
  if (!mtun_arg_bool(env, argv[2], "read", &read)) return NULL;
  return mtun_i32(env, qe_stream_shutdown(c, (int64_t)num(env, argv[1]), read, (uint64_t)num(env, argv[3])));
}

/* quicStreams(conn, writable) → ids of readable (false) or writable (true) streams. */
static napi_value stream_list(napi_env env, napi_callback_info info) {
  MTUN_ARGS(2);
  CONN(argv[0]);
  bool writable;
  if (!mtun_arg_bool(env, argv[1], "writable", &writable)) return NULL;
  napi_value arr;
  napi_create_array(env, &arr);
  uint32_t n = 0;
  if (c->state == QE_OPEN || !writable) {
    for (struct qe_stream *s = c->streams; s != NULL; s = s->next) {
      if (writable ? qe_stream_writable(s) : qe_stream_readable(s)) napi_set_element(env, arr, n++, dbl(env, (double)s->id));
    }
  }
  return arr;
}

/* quicDgramSend(conn, data) → 1 queued, 0 queue full, -1 too big or not negotiated. */
static napi_value dgram_send(napi_env env, napi_callback_info info) {
  MTUN_ARGS(2);
  CONN(argv[0]);
  uint8_t *p;
  size_t len;
  if (!bytes_of(env, argv[1], &p, &len)) return mtun_throw_type(env, "quic: dgramSend needs a Uint8Array");
  struct qe_dq *q = &c->dq_send;
  int64_t max = qe_dgram_max_writable(c);
  if (max < 0 || (int64_t)len > max) return mtun_i32(env, -1);
  if (q->count == q->cap) return mtun_i32(env, 0);
  uint32_t k = (q->head + q->count) % q->cap;
  memcpy(q->mem + (size_t)k * q->slot, p, len);
  q->lens[k] = (uint32_t)len;
  q->count++;
  return mtun_i32(env, 1);
}

/* quicDgramRecv(conn, out) → bytes, -1 when none, -2 when out is too small. */
static napi_value dgram_recv(napi_env env, napi_callback_info info) {
  MTUN_ARGS(2);
  CONN(argv[0]);
  uint8_t *p;
  size_t len;
  if (!bytes_of(env, argv[1], &p, &len)) return mtun_throw_type(env, "quic: dgramRecv needs a Uint8Array");
  struct qe_dq *q = &c->dq_recv;
  if (q->count == 0) return mtun_i32(env, -1);
  uint32_t n = q->lens[q->head];
  if (n > len) return mtun_i32(env, -2);
  memcpy(p, q->mem + (size_t)q->head * q->slot, n);
  q->head = (q->head + 1) % q->cap;
  q->count--;
  return mtun_i32(env, (int32_t)n);
}

/*
 * quicInfo(conn, res): fills res with the state the adapter polls —
 * [0] established, [1] resumed, [2] draining, [3] closed, [4] timed out,
 * [5] any stream readable, [6] dgram recv queued, [7] dgram send queued,
 * [8] dgram recv queue full, [9] dgram max writable (-1 none), [10] dgram recv dropped.
 */
static napi_value conn_info(napi_env env, napi_callback_info info) {
  MTUN_ARGS(2);
  CONN(argv[0]);
  double *r;
  size_t rn;
  if (!mtun_arg_stats(env, argv[1], &r, &rn) || r == NULL || rn < 11) return mtun_throw_type(env, "quic: info res");
  bool hs = c->conn != NULL && (c->handshake_done || ngtcp2_conn_get_handshake_completed(c->conn));
  r[0] = hs;
  r[1] = c->tls != NULL && hs && gnutls_session_is_resumed(c->tls);
  r[2] = c->state == QE_DRAINING || c->state == QE_CLOSING;
  r[3] = c->state == QE_CLOSED;
  r[4] = c->timed_out;
  bool readable = false;
  for (struct qe_stream *s = c->streams; s != NULL && !readable; s = s->next) readable = qe_stream_readable(s);
  r[5] = readable;
  r[6] = c->dq_recv.count;
  r[7] = c->dq_send.count;
  r[8] = c->dq_recv.cap > 0 && c->dq_recv.count == c->dq_recv.cap;
  r[9] = (double)qe_dgram_max_writable(c);
  r[10] = (double)c->dgram_recv_dropped;
  return NULL;
}

/* quicStats(conn, res): [0] recv pkts, [1] sent pkts, [2] sent bytes, [3] recv bytes, [4] srtt ms, [5] cwnd, [6] pmtu, [7] delivery rate, [8] lost packets (qe_conn_lost_pkts). */
static napi_value conn_stats(napi_env env, napi_callback_info info) {
  MTUN_ARGS(2);
  CONN(argv[0]);
  double *r;
  size_t rn;
  if (!mtun_arg_stats(env, argv[1], &r, &rn) || r == NULL || rn < 9) return mtun_throw_type(env, "quic: stats res");
  r[0] = (double)c->pkts_recv;
  r[1] = (double)c->pkts_sent;
  r[2] = (double)c->bytes_sent;
  r[3] = (double)c->bytes_recv;
  if (c->conn != NULL) {
    ngtcp2_conn_stat st;
    ngtcp2_conn_get_conn_stat(c->conn, &st);
    r[4] = (double)st.smoothed_rtt / NGTCP2_MILLISECONDS;
    r[5] = (double)st.cwnd;
    r[6] = (double)ngtcp2_conn_get_max_tx_udp_payload_size(c->conn);
    r[7] = (double)st.delivery_rate_sec;
    r[8] = (double)qe_conn_lost_pkts(c);
  } else {
    r[4] = r[5] = r[6] = r[7] = r[8] = -1;
  }
  return NULL;
}

/* quicError(conn, peer) → {isApp, errorCode, reason} | null */
static napi_value conn_error(napi_env env, napi_callback_info info) {
  MTUN_ARGS(2);
  CONN(argv[0]);
  bool peer;
  if (!mtun_arg_bool(env, argv[1], "peer", &peer)) return NULL;
  const struct qe_error *e = peer ? &c->peer_err : &c->local_err;
  if (!e->set) return nullv(env);
  napi_value o;
  napi_create_object(env, &o);
  napi_set_named_property(env, o, "isApp", boolv(env, e->app));
  napi_set_named_property(env, o, "errorCode", dbl(env, (double)e->code));
  napi_set_named_property(env, o, "reason", copy_buf(env, e->reason, e->reasonlen));
  return o;
}

/* quicTlsInfo(conn, what): 0 ALPN (Buffer), 1 server name (string|null), 2 peer chain (Buffer[]|null), 3 session (Buffer|null). */
static napi_value conn_tls_info(napi_env env, napi_callback_info info) {
  MTUN_ARGS(2);
  CONN(argv[0]);
  uint32_t what;
  if (!mtun_arg_u32(env, argv[1], "what", &what)) return NULL;
  if (c->tls == NULL) return nullv(env);
  switch (what) {
  case 0: {
    gnutls_datum_t p = {0};
    if (gnutls_alpn_get_selected_protocol(c->tls, &p) != 0) return copy_buf(env, "", 0);
    return copy_buf(env, p.data, p.size);
  }
  case 1: {
    if (!c->server) {
      if (c->sni[0] == 0) return nullv(env);
      napi_value s;
      napi_create_string_utf8(env, c->sni, NAPI_AUTO_LENGTH, &s);
      return s;
    }
    char name[256];
    size_t len = sizeof name - 1;
    unsigned type;
    if (gnutls_server_name_get(c->tls, name, &len, &type, 0) != 0) return nullv(env);
    napi_value s;
    napi_create_string_utf8(env, name, len, &s);
    return s;
  }
  case 2: {
    unsigned n = 0;
    const gnutls_datum_t *peers = gnutls_certificate_get_peers(c->tls, &n);
    if (peers == NULL || n == 0) return nullv(env);
    napi_value arr;
    napi_create_array_with_length(env, n, &arr);
    for (unsigned i = 0; i < n; i++) napi_set_element(env, arr, i, copy_buf(env, peers[i].data, peers[i].size));
    return arr;
  }
  case 3: {
    /* A resumable session exists only once a NewSessionTicket arrived (TLS 1.3). */
    if (c->server || !(gnutls_session_get_flags(c->tls) & GNUTLS_SFLAGS_SESSION_TICKET)) return nullv(env);
    gnutls_datum_t d = {0};
    if (gnutls_session_get_data2(c->tls, &d) != 0) return nullv(env);
    napi_value b = copy_buf(env, d.data, d.size);
    gnutls_free(d.data);
    return b;
  }
  default:
    return mtun_throw_type(env, "quic: unknown TLS info");
  }
}

/* quicSetSession(conn, data): resume a TLS session (client, before the handshake). */
static napi_value conn_set_session(napi_env env, napi_callback_info info) {
  MTUN_ARGS(2);
  CONN(argv[0]);
  uint8_t *p;
  size_t len;
  if (!bytes_of(env, argv[1], &p, &len)) return mtun_throw_type(env, "quic: session must be a Uint8Array");
  int rv = gnutls_session_set_data(c->tls, p, len);
  if (rv != 0) QE_ERR(env, "quic: session: %s", gnutls_strerror(rv));
  return NULL;
}

/* quicSetKeylog(conn, path): NSS key log lines are appended to path. */
static napi_value conn_set_keylog(napi_env env, napi_callback_info info) {
  MTUN_ARGS(2);
  CONN(argv[0]);
  size_t len;
  if (!mtun_arg_str(env, argv[1], "path", c->keylog_path, sizeof c->keylog_path, &len)) return NULL;
  qe_tls_enable_keylog(c);
  return NULL;
}

/* ------------------------------------------------ stateless packets */

/* quicHeader(data, shortDcidLen) → {ty, version, dcid, scid, token} (ty: 0 Initial, 1 0-RTT, 2 Handshake, 3 Retry, 5 Short, 4 unknown version). */
static napi_value header_parse(napi_env env, napi_callback_info info) {
  MTUN_ARGS(2);
  uint8_t *p;
  size_t len;
  uint32_t dl;
  if (!bytes_of(env, argv[0], &p, &len) || !mtun_arg_u32(env, argv[1], "dcidLen", &dl))
    return mtun_throw_type(env, "quic: quicHeader(data, dcidLen)");
  ngtcp2_version_cid vc;
  int rv = ngtcp2_pkt_decode_version_cid(&vc, p, len, dl);
  if (rv != 0 && rv != NGTCP2_ERR_VERSION_NEGOTIATION) QE_ERR(env, "quic: malformed header");
  int ty;
  napi_value token = NULL;
  if ((p[0] & 0x80) == 0) ty = 5;
  else if (rv == NGTCP2_ERR_VERSION_NEGOTIATION) ty = 4;
  else {
    ty = (p[0] >> 4) & 0x3; /* RFC 9000 §17.2: v1 long packet types */
    if (ty == 0) {
      /* RFC 9000 §17.2.2: after the SCID, the token length varint and the token. */
      size_t off = 6 + vc.dcidlen + 1 + vc.scidlen;
      if (off >= len) QE_ERR(env, "quic: malformed Initial");
      size_t vl = (size_t)1 << (p[off] >> 6);
      if (off + vl > len) QE_ERR(env, "quic: malformed Initial");
      uint64_t tl = p[off] & 0x3f;
      for (size_t i = 1; i < vl; i++) tl = (tl << 8) | p[off + i];
      if (off + vl + tl > len) QE_ERR(env, "quic: malformed Initial token");
      token = copy_buf(env, p + off + vl, (size_t)tl);
    }
  }
  napi_value o;
  napi_create_object(env, &o);
  napi_set_named_property(env, o, "ty", mtun_i32(env, ty));
  napi_set_named_property(env, o, "version", dbl(env, vc.version));
  napi_set_named_property(env, o, "dcid", copy_buf(env, vc.dcid, vc.dcidlen));
  napi_set_named_property(env, o, "scid", copy_buf(env, vc.scid != NULL ? vc.scid : p, vc.scidlen));
  if (token != NULL) napi_set_named_property(env, o, "token", token);
  return o;
}

/* quicNegotiateVersion(scid, dcid, out) → bytes: RFC 9000 §17.2.1, the client's CIDs swapped. */
static napi_value negotiate_version(napi_env env, napi_callback_info info) {
  MTUN_ARGS(3);
  uint8_t *scid, *dcid, *out;
  size_t sl, dl, ol;
  if (!bytes_of(env, argv[0], &scid, &sl) || !bytes_of(env, argv[1], &dcid, &dl) || !bytes_of(env, argv[2], &out, &ol))
    return mtun_throw_type(env, "quic: quicNegotiateVersion(scid, dcid, out)");
  uint8_t unused;
  gnutls_rnd(GNUTLS_RND_NONCE, &unused, 1);
  const uint32_t sv[] = {NGTCP2_PROTO_VER_V1};
  ngtcp2_ssize n = ngtcp2_pkt_write_version_negotiation(out, ol, unused, scid, sl, dcid, dl, sv, 1);
  if (n < 0) QE_ERR(env, "quic: version negotiation: %s", ngtcp2_strerror((int)n));
  return mtun_i32(env, (int32_t)n);
}

/* quicRetry(scid, dcid, newScid, token, version, out) → bytes (RFC 9000 §17.2.5, RFC 9001 §5.8 integrity tag). */
static napi_value retry(napi_env env, napi_callback_info info) {
  MTUN_ARGS(6);
  uint8_t *scid, *dcid, *nscid, *tok, *out;
  size_t sl, dl, nl, tl, ol;
  if (!bytes_of(env, argv[0], &scid, &sl) || !bytes_of(env, argv[1], &dcid, &dl) ||
      !bytes_of(env, argv[2], &nscid, &nl) || !bytes_of(env, argv[3], &tok, &tl) || !bytes_of(env, argv[5], &out, &ol) ||
      sl > NGTCP2_MAX_CIDLEN || dl > NGTCP2_MAX_CIDLEN || nl > NGTCP2_MAX_CIDLEN)
    return mtun_throw_type(env, "quic: quicRetry(scid, dcid, newScid, token, version, out)");
  ngtcp2_cid c_dcid, c_scid, c_odcid;
  ngtcp2_cid_init(&c_dcid, scid, sl);
  ngtcp2_cid_init(&c_scid, nscid, nl);
  ngtcp2_cid_init(&c_odcid, dcid, dl);
  ngtcp2_ssize n = ngtcp2_crypto_write_retry(out, ol, (uint32_t)num(env, argv[4]), &c_dcid, &c_scid, &c_odcid, tok, tl);
  if (n < 0) QE_ERR(env, "quic: retry: %s", ngtcp2_strerror((int)n));
  return mtun_i32(env, (int32_t)n);
}

bool mtun_quic_init(napi_env env, napi_value exports) {
  static const struct {
    const char *name;
    napi_callback cb;
  } fns[] = {
      {"quicConfigNew", config_new}, {"quicConfigSet", config_set}, {"quicConfigSetAlpn", config_set_alpn},
      {"quicConfigSetBytes", config_set_bytes}, {"quicConnect", conn_connect}, {"quicAccept", conn_accept},
      {"quicSetPeer", conn_set_peer}, {"quicRecv", conn_recv}, {"quicSend", conn_send}, {"quicTimeout", conn_timeout},
      {"quicOnTimeout", conn_on_timeout}, {"quicPing", conn_ping}, {"quicClose", conn_close},
      {"quicStreamSend", stream_send}, {"quicStreamRecv", stream_recv}, {"quicStreamShutdown", stream_shutdown},
      {"quicStreams", stream_list}, {"quicDgramSend", dgram_send}, {"quicDgramRecv", dgram_recv},
      {"quicInfo", conn_info}, {"quicStats", conn_stats}, {"quicError", conn_error}, {"quicTlsInfo", conn_tls_info},
      {"quicSetSession", conn_set_session}, {"quicSetKeylog", conn_set_keylog}, {"quicHeader", header_parse},
      {"quicNegotiateVersion", negotiate_version}, {"quicRetry", retry},
  };
  for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++)
    if (!mtun_export_fn(env, exports, fns[i].name, fns[i].cb)) return false;
  return true;
}
