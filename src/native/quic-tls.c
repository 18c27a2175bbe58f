/*
 * mtun QUIC engine: the GnuTLS session of one connection (RFC 9001) —
 * TLS 1.3 only, ALPN, server/client certificate checks, session tickets for
 * 1-RTT resumption (never early data: RFC 9001 §9.2), and the NSS key log
 * (SSLKEYLOGFILE format) tshark reads.
 */
#include "quic-engine.h"

#include <arpa/inet.h>
#include <ngtcp2/ngtcp2_crypto_gnutls.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* RFC 9001 §4.2: TLS 1.3 only; §5.3: QUIC cannot use TLS_AES_128_CCM_8_SHA256;
 * §8.4: no middlebox compatibility mode (an empty legacy_session_id), which
 * BoringSSL (quiche) enforces with an illegal_parameter alert. */
static const char PRIORITY[] = "NORMAL:-VERS-ALL:+VERS-TLS1.3:-CIPHER-ALL:+AES-128-GCM:+AES-256-GCM:"
                               "+CHACHA20-POLY1305:+AES-128-CCM:%DISABLE_TLS13_COMPAT_MODE";

int qe_tls_priority(gnutls_priority_t *out) { return gnutls_priority_init(out, PRIORITY, NULL); }

static int fail(char *err, size_t errlen, const char *what, int rv) {
  snprintf(err, errlen, "%s: %s", what, gnutls_strerror(rv));
  return -1;
}

static int keylog_cb(gnutls_session_t s, const char *label, const gnutls_datum_t *secret) {
  struct qe_conn *c = ((ngtcp2_crypto_conn_ref *)gnutls_session_get_ptr(s))->user_data;
  if (c->keylog_path == NULL) return 0;
  gnutls_datum_t crand, srand;
  gnutls_session_get_random(s, &crand, &srand);
  FILE *f = fopen(c->keylog_path, "a");
  if (f == NULL) return 0; /* a key log is a debugging aid: never fail the handshake over it */
  fprintf(f, "%s ", label);
  for (unsigned i = 0; i < crand.size; i++) fprintf(f, "%02x", crand.data[i]);
  fputc(' ', f);
  for (unsigned i = 0; i < secret->size; i++) fprintf(f, "%02x", secret->data[i]);
  fputc('\n', f);
  fclose(f);
  return 0;
}

void qe_tls_enable_keylog(struct qe_conn *c) {
  if (c->tls != NULL) gnutls_session_set_keylog_function(c->tls, keylog_cb);
}

static bool is_ip_literal(const char *name) {
  unsigned char b[16];
  return inet_pton(AF_INET, name, b) == 1 || inet_pton(AF_INET6, name, b) == 1;
}

int qe_tls_session(struct qe_conn *c, char *err, size_t errlen) {
  struct qe_config *cfg = c->cfg;
  unsigned flags = (c->server ? GNUTLS_SERVER : GNUTLS_CLIENT) | GNUTLS_NO_END_OF_EARLY_DATA;
  int rv = gnutls_init(&c->tls, flags);
  if (rv != 0) return fail(err, errlen, "gnutls_init", rv);
  if ((rv = gnutls_priority_set(c->tls, cfg->prio)) != 0) return fail(err, errlen, "priority", rv);
  rv = c->server ? ngtcp2_crypto_gnutls_configure_server_session(c->tls)
                 : ngtcp2_crypto_gnutls_configure_client_session(c->tls);
  if (rv != 0) {
    snprintf(err, errlen, "ngtcp2_crypto_gnutls_configure_session failed");
    return -1;
  }
  c->ref.user_data = c;
  gnutls_session_set_ptr(c->tls, &c->ref);
  if ((rv = gnutls_credentials_set(c->tls, GNUTLS_CRD_CERTIFICATE, cfg->cred)) != 0)
    return fail(err, errlen, "credentials", rv);
  if (cfg->alpn_count > 0 &&
      (rv = gnutls_alpn_set_protocols(c->tls, cfg->alpn, cfg->alpn_count, GNUTLS_ALPN_MANDATORY)) != 0)
    return fail(err, errlen, "alpn", rv);
  /* Without our own function GnuTLS would follow $SSLKEYLOGFILE by itself; the endpoint decides instead. */
  gnutls_session_set_keylog_function(c->tls, keylog_cb);
  if (c->server) {
    if (cfg->verify_peer && cfg->has_ca) {
      /* A client without a certificate is refused in the handshake with
       * certificate_required (RFC 8446 §4.4.2.4; QUIC error 0x174); one that
       * presents a certificate has it checked against the CA. */
      gnutls_certificate_server_set_request(c->tls, GNUTLS_CERT_REQUIRE);
      gnutls_session_set_verify_cert(c->tls, NULL, 0);
    }
    if (cfg->has_ticket) {
      gnutls_datum_t k = {.data = cfg->ticket_key, .size = sizeof cfg->ticket_key};
      if ((rv = gnutls_session_ticket_enable_server(c->tls, &k)) != 0) return fail(err, errlen, "session tickets", rv);
    }
  } else {
    if (c->sni[0] != 0 && !is_ip_literal(c->sni) &&
        (rv = gnutls_server_name_set(c->tls, GNUTLS_NAME_DNS, c->sni, strlen(c->sni))) != 0)
      return fail(err, errlen, "server name", rv);
    /* Chain and name (DNS or IP SAN) checked during the handshake. */
    if (cfg->verify_peer) gnutls_session_set_verify_cert(c->tls, c->sni[0] != 0 ? c->sni : NULL, 0);
  }
  return 0;
}

void qe_tls_retire(struct qe_conn *c) {
  if (c->tls == NULL || c->tls_retired) return;
  unsigned n = 0;
  const gnutls_datum_t *peers = gnutls_certificate_get_peers(c->tls, &n);
  if (peers != NULL && n > 0) {
    size_t bytes = (size_t)n * sizeof(gnutls_datum_t);
    for (unsigned i = 0; i < n; i++) bytes += peers[i].size;
    gnutls_datum_t *chain = malloc(bytes);
    if (chain == NULL) return; /* keep the session: the chain is still needed */
    uint8_t *p = (uint8_t *)(chain + n);
    for (unsigned i = 0; i < n; i++) {
      memcpy(p, peers[i].data, peers[i].size);
      chain[i].data = p;
      chain[i].size = peers[i].size;
      p += peers[i].size;
    }
    c->peer_chain = chain;
    c->peer_chain_n = n;
  }
  gnutls_datum_t a = {0};
  if (gnutls_alpn_get_selected_protocol(c->tls, &a) == 0 && a.size <= sizeof c->alpn_sel) {
    memcpy(c->alpn_sel, a.data, a.size);
    c->alpn_len = (uint8_t)a.size;
  }
  size_t len = sizeof c->sni - 1;
  unsigned type;
  if (gnutls_server_name_get(c->tls, c->sni, &len, &type, 0) == 0 && type == GNUTLS_NAME_DNS)
    c->sni[len] = 0;
  else
    c->sni[0] = 0;
  c->resumed = gnutls_session_is_resumed(c->tls);
  ngtcp2_conn_set_tls_native_handle(c->conn, NULL);
  gnutls_deinit(c->tls);
  c->tls = NULL;
  c->tls_retired = true;
}
