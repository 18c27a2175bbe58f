/*
 * mtun QUIC engine: N-API functions for configs (TLS credentials, ALPN,
 * transport parameters; shared by connections, refcounted) and for the
 * stateless packets an endpoint writes or parses without a connection:
 * header parsing, Version Negotiation (RFC 9000 §6), Retry (§8.1.2).
 */
#include "quic-napi.h"

#include <ngtcp2/ngtcp2_crypto_gnutls.h>

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

/* ------------------------------------------------ stateless packets */

/* quicHeader(data, shortDcidLen) → {ty, version, dcid, scid, token} (ty: 0 Initial, 1 0-RTT, 2 Handshake, 3 Retry, 5 Short, 4 unknown version). */
static napi_value header_parse(napi_env env, napi_callback_info info) {
  MTUN_ARGS(2);
  uint8_t *p;
  size_t len;
  uint32_t dl;
  if (!bytes_of(env, argv[0], &p, &len) || !mtun_arg_u32(env, argv[1], "dcidLen", &dl))
    return mtun_throw_type(env, "quic: quicHeader(data, dcidLen)");
  /* ngtcp2 asserts (aborts the process) on an empty packet or an oversized short-header CID length. */
  if (len == 0 || dl > NGTCP2_MAX_CIDLEN) QE_ERR(env, "quic: malformed header");
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

bool qn_config_init(napi_env env, napi_value exports) {
  static const struct {
    const char *name;
    napi_callback cb;
  } fns[] = {
      {"quicConfigNew", config_new}, {"quicConfigSet", config_set}, {"quicConfigSetAlpn", config_set_alpn},
      {"quicConfigSetBytes", config_set_bytes}, {"quicHeader", header_parse},
      {"quicNegotiateVersion", negotiate_version}, {"quicRetry", retry},
  };
  for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++)
    if (!mtun_export_fn(env, exports, fns[i].name, fns[i].cb)) return false;
  return true;
}
