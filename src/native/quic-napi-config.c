/*
 * mtun QUIC engine: N-API functions for configs (TLS credentials, ALPN,
 * transport parameters; shared by connections, refcounted). The stateless
 * packets (long-header parse, Version Negotiation, Retry) are written in
 * TypeScript by src/quic/long-header.ts.
 */
#include "quic-napi.h"

#include <ngtcp2/ngtcp2_crypto_gnutls.h>

/* ------------------------------------------------------------ config */

void qe_config_unref(struct qe_config *c) {
  if (--c->refs > 0) return;
  if (c->cred != NULL) gnutls_certificate_free_credentials(c->cred);
  if (c->prio != NULL) gnutls_priority_deinit(c->prio);
  for (unsigned i = 0; i < c->alpn_count; i++) free(c->alpn[i].data);
  free(c);
}

static void config_finalize(napi_env env, void *data, void *hint) {
  qe_lock();
  qe_config_unref(data);
  qe_unlock();
}

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
  if ((rv = qe_tls_priority(&c->prio)) != 0) {
    qe_config_unref(c);
    QE_ERR(env, "quic: TLS priorities: %s", gnutls_strerror(rv));
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
  CF_STREAM_WINDOW, CF_CONN_WINDOW, CF_KEYLOG, CF_VERIFY_PEER, CF_CODEL_TARGET_US, CF_CODEL_INTERVAL_US,
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
  case CF_MAX_RECV_UDP: c->max_recv_udp = u < 1200 ? 1200 : u > 65527 ? 65527 : u; break;
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
  case CF_CODEL_TARGET_US: c->codel.target_ns = u > 60000000 ? 60000000000ull : u * 1000; break;
  case CF_CODEL_INTERVAL_US: c->codel.interval_ns = u > 60000000 ? 60000000000ull : u * 1000; break;
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

bool qn_config_init(napi_env env, napi_value exports) {
  static const struct {
    const char *name;
    napi_callback cb;
  } fns[] = {
      {"quicConfigNew", config_new}, {"quicConfigSet", config_set}, {"quicConfigSetAlpn", config_set_alpn},
      {"quicConfigSetBytes", config_set_bytes},
  };
  for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++)
    if (!qn_export_locked(env, exports, fns[i].name, fns[i].cb)) return false;
  return true;
}
