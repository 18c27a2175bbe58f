/* engine-proto: GnuTLS sessions for ngtcp2 (TLS 1.3 only, test ALPN, optional
 * mTLS) and reading the SPIFFE URI SAN of the peer's certificate. GnuTLS also
 * honours SSLKEYLOGFILE by itself, which is how tshark gets the secrets. */
#include "proto.h"

#include <gnutls/x509.h>
#include <ngtcp2/ngtcp2_crypto_gnutls.h>
#include <stdio.h>
#include <string.h>

/* RFC 9001 §4.2: TLS 1.3 only; QUIC cannot use TLS_AES_128_CCM_8_SHA256 (§5.3). */
static const char PRIORITY[] =
    "NORMAL:-VERS-ALL:+VERS-TLS1.3:-CIPHER-ALL:+AES-128-GCM:+AES-256-GCM:+CHACHA20-POLY1305:+AES-128-CCM";
static const char ALPN[] = "mtun-proto";

static int fail(char *err, size_t errlen, const char *what, int rv) {
  snprintf(err, errlen, "tls: %s: %s", what, gnutls_strerror(rv));
  return -1;
}

/* File names of this side's CA, certificate and key; allocates the credentials. */
struct files {
  char ca[512], crt[512], key[512];
};
static int creds(struct tls *t, const struct options *opt, const char *leaf, struct files *f, char *err,
                 size_t errlen) {
  snprintf(f->ca, sizeof f->ca, "%s/ca.pem", opt->cert_dir);
  snprintf(f->crt, sizeof f->crt, "%s/%s.pem", opt->cert_dir, leaf);
  snprintf(f->key, sizeof f->key, "%s/%s.key", opt->cert_dir, leaf);
  int rv = gnutls_certificate_allocate_credentials(&t->cred);
  return rv != 0 ? fail(err, errlen, "credentials", rv) : 0;
}

static int session_common(struct tls *t, unsigned flags, char *err, size_t errlen) {
  int rv = gnutls_init(&t->session, flags | GNUTLS_NO_END_OF_EARLY_DATA);
  if (rv != 0) return fail(err, errlen, "gnutls_init", rv);
  if ((rv = gnutls_priority_set_direct(t->session, PRIORITY, NULL)) != 0)
    return fail(err, errlen, "priority", rv);
  rv = (flags & GNUTLS_SERVER) ? ngtcp2_crypto_gnutls_configure_server_session(t->session)
                               : ngtcp2_crypto_gnutls_configure_client_session(t->session);
  if (rv != 0) {
    snprintf(err, errlen, "tls: ngtcp2_crypto_gnutls_configure_*_session failed");
    return -1;
  }
  gnutls_session_set_ptr(t->session, &t->ref);
  if ((rv = gnutls_credentials_set(t->session, GNUTLS_CRD_CERTIFICATE, t->cred)) != 0)
    return fail(err, errlen, "credentials", rv);
  gnutls_datum_t p = {.data = (unsigned char *)ALPN, .size = sizeof ALPN - 1};
  if ((rv = gnutls_alpn_set_protocols(t->session, &p, 1, GNUTLS_ALPN_MANDATORY)) != 0)
    return fail(err, errlen, "alpn", rv);
  return 0;
}

int tls_client(struct tls *t, const struct options *opt, char *err, size_t errlen) {
  struct files f;
  int rv;
  if (creds(t, opt, "client", &f, err, errlen) != 0) return -1;
  if ((rv = gnutls_certificate_set_x509_trust_file(t->cred, f.ca, GNUTLS_X509_FMT_PEM)) < 1)
    return fail(err, errlen, "trust file", rv < 0 ? rv : GNUTLS_E_FILE_ERROR);
  if (opt->client_cert &&
      (rv = gnutls_certificate_set_x509_key_file(t->cred, f.crt, f.key, GNUTLS_X509_FMT_PEM)) != 0)
    return fail(err, errlen, "client certificate", rv);
  if (session_common(t, GNUTLS_CLIENT, err, errlen) != 0) return -1;
  if ((rv = gnutls_server_name_set(t->session, GNUTLS_NAME_DNS, "localhost", 9)) != 0)
    return fail(err, errlen, "sni", rv);
  /* Verifies the chain and the name during the handshake. */
  gnutls_session_set_verify_cert(t->session, "localhost", 0);
  return 0;
}

int tls_server(struct tls *t, const struct options *opt, char *err, size_t errlen) {
  struct files f;
  int rv;
  if (creds(t, opt, "server", &f, err, errlen) != 0) return -1;
  if ((rv = gnutls_certificate_set_x509_key_file(t->cred, f.crt, f.key, GNUTLS_X509_FMT_PEM)) != 0)
    return fail(err, errlen, "server certificate", rv);
  if (opt->mtls &&
      (rv = gnutls_certificate_set_x509_trust_file(t->cred, f.ca, GNUTLS_X509_FMT_PEM)) < 1)
    return fail(err, errlen, "trust file", rv < 0 ? rv : GNUTLS_E_FILE_ERROR);
  if (session_common(t, GNUTLS_SERVER, err, errlen) != 0) return -1;
  if (opt->mtls) {
    gnutls_certificate_server_set_request(t->session, GNUTLS_CERT_REQUIRE);
    /* No hostname for a client; the chain is checked against ca.pem in the handshake. */
    gnutls_session_set_verify_cert(t->session, NULL, 0);
  }
  return 0;
}

void tls_free(struct tls *t) {
  if (t->session) gnutls_deinit(t->session);
  if (t->cred) gnutls_certificate_free_credentials(t->cred);
}

int tls_peer_uri(gnutls_session_t s, char *out, size_t outlen) {
  unsigned n = 0;
  const gnutls_datum_t *peers = gnutls_certificate_get_peers(s, &n);
  if (!peers || n == 0) return -1;
  gnutls_x509_crt_t crt;
  if (gnutls_x509_crt_init(&crt) != 0) return -1;
  int found = -1;
  if (gnutls_x509_crt_import(crt, &peers[0], GNUTLS_X509_FMT_DER) == 0) {
    for (unsigned i = 0;; i++) {
      char buf[256];
      size_t sz = sizeof buf - 1;
      int type = gnutls_x509_crt_get_subject_alt_name(crt, i, buf, &sz, NULL);
      if (type < 0) break; /* GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE ends the list */
      if (type == GNUTLS_SAN_URI) {
        buf[sz] = 0;
        snprintf(out, outlen, "%s", buf);
        found = 0;
        break;
      }
    }
  }
  gnutls_x509_crt_deinit(crt);
  return found;
}
