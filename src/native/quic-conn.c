/*
 * mtun QUIC engine: one ngtcp2 connection, sans-IO. The endpoint feeds
 * received UDP payloads (qe_conn_recv), drains packets (qe_conn_send until it
 * returns 0) and drives timers (qe_conn_timeout_ms / qe_conn_on_timeout).
 * Closing and draining (RFC 9000 §10.2) are kept here: ngtcp2 0.12 leaves
 * both periods to the application.
 */
#include "quic-engine.h"

#include <pthread.h>

#include <ngtcp2/ngtcp2_crypto_gnutls.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static pthread_mutex_t qe_mu = PTHREAD_RECURSIVE_MUTEX_INITIALIZER_NP;
/* The holder and its depth, for qe_lock_held (written only by the holder; read by anyone with atomics). */
static pthread_t qe_owner;
static int qe_depth;
void qe_lock(void) {
  pthread_mutex_lock(&qe_mu);
  __atomic_store_n(&qe_owner, pthread_self(), __ATOMIC_RELAXED);
  __atomic_store_n(&qe_depth, qe_depth + 1, __ATOMIC_RELAXED);
}
void qe_unlock(void) {
  if (qe_depth == 1) __atomic_store_n(&qe_owner, (pthread_t)0, __ATOMIC_RELAXED);
  __atomic_store_n(&qe_depth, qe_depth - 1, __ATOMIC_RELAXED);
  pthread_mutex_unlock(&qe_mu);
}
bool qe_lock_held(void) {
  return __atomic_load_n(&qe_depth, __ATOMIC_RELAXED) > 0 && pthread_equal(__atomic_load_n(&qe_owner, __ATOMIC_RELAXED), pthread_self());
}

ngtcp2_tstamp qe_now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (ngtcp2_tstamp)t.tv_sec * NGTCP2_SECONDS + (ngtcp2_tstamp)t.tv_nsec;
}

static ngtcp2_conn *get_conn(ngtcp2_crypto_conn_ref *ref) { return ((struct qe_conn *)ref->user_data)->conn; }

static void rand_cb(uint8_t *dest, size_t len, const ngtcp2_rand_ctx *ctx) { gnutls_rnd(GNUTLS_RND_RANDOM, dest, len); }

/* RFC 9000 §5.1.1: spare connection IDs, each with its §10.3 reset token. The
 * endpoint routes by the first CID only, so a peer that switches CIDs without
 * migrating is not served yet (no peer in use does). */
static int new_cid_cb(ngtcp2_conn *conn, ngtcp2_cid *cid, uint8_t *token, size_t cidlen, void *ud) {
  cid->datalen = cidlen;
  gnutls_rnd(GNUTLS_RND_NONCE, cid->data, cidlen);
  gnutls_rnd(GNUTLS_RND_NONCE, token, NGTCP2_STATELESS_RESET_TOKENLEN);
  return 0;
}

static int handshake_completed_cb(ngtcp2_conn *conn, void *ud) {
  ((struct qe_conn *)ud)->handshake_done = true;
  return 0;
}

/* A server that completed the handshake takes no more CRYPTO data at the
 * application level: it would be a TLS message after the handshake, which
 * QUIC forbids a client to send (no KeyUpdate, RFC 9001 §6; no post-handshake
 * authentication, §4.4). Closed with unexpected_message (0x10a), the same
 * whether the TLS session is still there (packets buffered during the
 * handshake, processed in the read that completes it) or already retired
 * (qe_tls_retire: it must not reach a freed session). */
static int recv_crypto_cb(ngtcp2_conn *conn, ngtcp2_crypto_level level, uint64_t offset, const uint8_t *data,
                          size_t len, void *ud) {
  struct qe_conn *c = ud;
  if (c->tls == NULL || (c->server && c->handshake_done && level == NGTCP2_CRYPTO_LEVEL_APPLICATION)) {
    ngtcp2_conn_set_tls_alert(conn, 10);
    return NGTCP2_ERR_CRYPTO;
  }
  return ngtcp2_crypto_recv_crypto_data_cb(conn, level, offset, data, len, ud);
}

static int stateless_reset_cb(ngtcp2_conn *conn, const ngtcp2_pkt_stateless_reset *sr, void *ud) {
  /* RFC 9000 §10.3.1: the connection ends at once, without a draining period. */
  ((struct qe_conn *)ud)->state = QE_CLOSED;
  return 0;
}

/* RFC 9221 §5: received DATAGRAMs wait in a bounded queue; when full the oldest is dropped (counted). */
static int recv_dgram_cb(ngtcp2_conn *conn, uint32_t flags, const uint8_t *data, size_t len, void *ud) {
  struct qe_conn *c = ud;
  struct qe_dq *q = &c->dq_recv;
  if (q->max == 0 || len > q->slot) {
    c->dgram_recv_dropped++;
    return 0;
  }
  if (!qe_dq_room(q)) {
    if (q->count == 0) { /* out of memory for the ring itself */
      c->dgram_recv_dropped++;
      return 0;
    }
    qe_dq_pop(q);
    c->dgram_recv_dropped++;
  }
  qe_dq_push(q, data, len, 0);
  return 0;
}

static int lost_dgram_cb(ngtcp2_conn *conn, uint64_t id, void *ud) {
  ((struct qe_conn *)ud)->lost_dgram_pkts++;
  return 0;
}

uint64_t qe_conn_lost_pkts(struct qe_conn *c) {
  uint64_t n = c->lost_stream_pkts + c->lost_dgram_pkts;
  if (c->conn != NULL)
    for (struct qe_stream *s = c->streams; s != NULL; s = s->next)
      if (!s->closed) n += ngtcp2_conn_get_stream_loss_count(c->conn, s->id);
  return n;
}

/* The connection whose packet ngtcp2_conn_read_pkt is decrypting: the
 * decrypt callback has no user data. One JavaScript thread drives every
 * connection, so one pointer suffices. */
static struct qe_conn *rx_conn;

static int decrypt_cb(uint8_t *dest, const ngtcp2_crypto_aead *aead, const ngtcp2_crypto_aead_ctx *ctx,
                      const uint8_t *ct, size_t ctlen, const uint8_t *nonce, size_t noncelen, const uint8_t *aad,
                      size_t aadlen) {
  int rv = ngtcp2_crypto_decrypt_cb(dest, aead, ctx, ct, ctlen, nonce, noncelen, aad, aadlen);
  if (rv == 0 && rx_conn != NULL && ctlen > aead->max_overhead) qe_scan_frames(rx_conn, dest, ctlen - aead->max_overhead);
  return rv;
}

static void callbacks(ngtcp2_callbacks *cb, bool server) {
  memset(cb, 0, sizeof *cb);
  if (server) {
    cb->recv_client_initial = ngtcp2_crypto_recv_client_initial_cb;
  } else {
    cb->client_initial = ngtcp2_crypto_client_initial_cb;
    cb->recv_retry = ngtcp2_crypto_recv_retry_cb;
  }
  cb->recv_crypto_data = recv_crypto_cb;
  cb->encrypt = ngtcp2_crypto_encrypt_cb;
  cb->decrypt = decrypt_cb;
  cb->hp_mask = ngtcp2_crypto_hp_mask_cb;
  cb->rand = rand_cb;
  cb->get_new_connection_id = new_cid_cb;
  cb->update_key = ngtcp2_crypto_update_key_cb;
  cb->delete_crypto_aead_ctx = ngtcp2_crypto_delete_crypto_aead_ctx_cb;
  cb->delete_crypto_cipher_ctx = ngtcp2_crypto_delete_crypto_cipher_ctx_cb;
  cb->get_path_challenge_data = ngtcp2_crypto_get_path_challenge_data_cb;
  cb->version_negotiation = ngtcp2_crypto_version_negotiation_cb;
  cb->handshake_completed = handshake_completed_cb;
  cb->recv_stateless_reset = stateless_reset_cb;
  cb->recv_datagram = recv_dgram_cb;
  cb->lost_datagram = lost_dgram_cb;
  qe_stream_callbacks(cb);
}

static void settings(ngtcp2_settings *s, const struct qe_config *cfg) {
  ngtcp2_settings_default(s);
  s->initial_ts = qe_now();
  s->cc_algo = cfg->cc;
  s->max_tx_udp_payload_size = cfg->max_send_udp;
  /* 0.12 otherwise sends 1200-byte payloads until PMTUD succeeds, and a
   * 1200-byte DATAGRAM would not fit (docs/decisions/0001). */
  s->no_tx_udp_payload_size_shaping = 1;
  s->handshake_timeout = cfg->idle_ms * NGTCP2_MILLISECONDS;
  if (cfg->max_conn_window > 0) s->max_window = cfg->max_conn_window;
  if (cfg->max_stream_window > 0) s->max_stream_window = cfg->max_stream_window;
}

static void params(ngtcp2_transport_params *p, const struct qe_config *cfg) {
  ngtcp2_transport_params_default(p);
  p->initial_max_data = cfg->max_data;
  p->initial_max_stream_data_bidi_local = cfg->sd_bidi_local;
  p->initial_max_stream_data_bidi_remote = cfg->sd_bidi_remote;
  p->initial_max_stream_data_uni = cfg->sd_uni;
  p->initial_max_streams_bidi = cfg->streams_bidi;
  p->initial_max_streams_uni = cfg->streams_uni;
  p->max_idle_timeout = cfg->idle_ms * NGTCP2_MILLISECONDS; /* RFC 9000 §10.1 */
  p->max_udp_payload_size = cfg->max_recv_udp;
  p->disable_active_migration = cfg->disable_migration;
  /* RFC 9221 §3: a nonzero max_datagram_frame_size enables DATAGRAM. */
  p->max_datagram_frame_size = cfg->dgram ? 65535 : 0;
}

static struct qe_conn *conn_alloc(struct qe_config *cfg, bool server, const struct sockaddr *local, socklen_t locallen,
                                  const struct sockaddr *remote, socklen_t remotelen) {
  struct qe_conn *c = calloc(1, sizeof *c);
  if (c == NULL) return NULL;
  c->cfg = cfg;
  cfg->refs++;
  c->server = server;
  c->ref.get_conn = get_conn;
  c->ref.user_data = c;
  memcpy(&c->local, local, locallen);
  c->locallen = locallen;
  memcpy(&c->remote, remote, remotelen);
  c->remotelen = remotelen;
  uint32_t slot = cfg->max_recv_udp > 1500 ? (uint32_t)cfg->max_recv_udp : 1500;
  qe_dq_init(&c->dq_recv, cfg->dgram ? cfg->dgram_rq : 0, slot, false);
  qe_dq_init(&c->dq_send, cfg->dgram ? cfg->dgram_sq : 0, (uint32_t)cfg->max_send_udp, mc_enabled(&cfg->codel));
  return c;
}

static ngtcp2_path path_of(struct qe_conn *c) {
  ngtcp2_path p = {
      .local = {.addr = (ngtcp2_sockaddr *)&c->local, .addrlen = c->locallen},
      .remote = {.addr = (ngtcp2_sockaddr *)&c->remote, .addrlen = c->remotelen},
  };
  return p;
}

struct qe_conn *qe_conn_client(struct qe_config *cfg, const char *sni, const uint8_t *scid, size_t scidlen,
                               const struct sockaddr *local, socklen_t locallen, const struct sockaddr *remote,
                               socklen_t remotelen, char *err, size_t errlen) {
  struct qe_conn *c = conn_alloc(cfg, false, local, locallen, remote, remotelen);
  if (c == NULL) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  snprintf(c->sni, sizeof c->sni, "%s", sni != NULL ? sni : "");
  ngtcp2_cid dcid = {.datalen = 16};
  gnutls_rnd(GNUTLS_RND_NONCE, dcid.data, dcid.datalen);
  ngtcp2_cid_init(&c->scid, scid, scidlen);
  ngtcp2_callbacks cb;
  callbacks(&cb, false);
  ngtcp2_settings s;
  settings(&s, cfg);
  ngtcp2_transport_params p;
  params(&p, cfg);
  ngtcp2_path path = path_of(c);
  int rv = ngtcp2_conn_client_new(&c->conn, &dcid, &c->scid, &path, NGTCP2_PROTO_VER_V1, &cb, &s, &p, &qe_pages_mem, c);
  if (rv != 0) {
    snprintf(err, errlen, "ngtcp2_conn_client_new: %s", ngtcp2_strerror(rv));
    qe_conn_free(c);
    return NULL;
  }
  if (qe_tls_session(c, err, errlen) != 0) {
    qe_conn_free(c);
    return NULL;
  }
  ngtcp2_conn_set_tls_native_handle(c->conn, c->tls);
  return c;
}

struct qe_conn *qe_conn_server(struct qe_config *cfg, const uint8_t *scid, size_t scidlen, const uint8_t *odcid,
                               size_t odcidlen, const struct sockaddr *local, socklen_t locallen,
                               const struct sockaddr *remote, socklen_t remotelen, char *err, size_t errlen) {
  struct qe_conn *c = conn_alloc(cfg, true, local, locallen, remote, remotelen);
  if (c == NULL) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  ngtcp2_cid_init(&c->scid, scid, scidlen);
  if (odcid != NULL) {
    ngtcp2_cid_init(&c->odcid, odcid, odcidlen);
    c->has_odcid = true;
  }
  /* The endpoint shares one config among connections and sets the token just
   * before each accept: take it now, the first packet may come later. */
  if (cfg->has_reset_token) {
    memcpy(c->reset_token, cfg->reset_token, sizeof c->reset_token);
    c->has_reset_token = true;
  }
  if (qe_tls_session(c, err, errlen) != 0) {
    qe_conn_free(c);
    return NULL;
  }
  return c;
}

/* Server: build the ngtcp2 connection from the client's first Initial (RFC 9000 §7.2, §17.2.2). */
static int server_start(struct qe_conn *c, const uint8_t *pkt, size_t len) {
  ngtcp2_pkt_hd hd;
  if (ngtcp2_accept(&hd, pkt, len) != 0) {
    snprintf(c->errmsg, sizeof c->errmsg, "not an acceptable client Initial");
    return -1;
  }
  ngtcp2_callbacks cb;
  callbacks(&cb, true);
  ngtcp2_settings s;
  settings(&s, c->cfg);
  ngtcp2_transport_params p;
  params(&p, c->cfg);
  if (c->has_odcid) {
    /* RFC 9000 §7.3: after a Retry, original_destination_connection_id is the
     * first DCID and retry_source_connection_id the one the Retry chose. */
    p.original_dcid = c->odcid;
    p.retry_scid = hd.dcid;
    p.retry_scid_present = 1;
  } else {
    p.original_dcid = hd.dcid;
  }
  if (c->has_reset_token) {
    memcpy(p.stateless_reset_token, c->reset_token, sizeof p.stateless_reset_token);
    p.stateless_reset_token_present = 1;
  }
  ngtcp2_path path = path_of(c);
  int rv = ngtcp2_conn_server_new(&c->conn, &hd.scid, &c->scid, &path, hd.version, &cb, &s, &p, &qe_pages_mem, c);
  if (rv != 0) {
    snprintf(c->errmsg, sizeof c->errmsg, "ngtcp2_conn_server_new: %s", ngtcp2_strerror(rv));
    c->state = QE_CLOSED;
    return -1;
  }
  ngtcp2_conn_set_tls_native_handle(c->conn, c->tls);
  return 0;
}

void qe_conn_release(struct qe_conn *c) {
  if (c->conn != NULL) {
    ngtcp2_conn_stat st;
    ngtcp2_conn_get_conn_stat(c->conn, &st);
    c->last_rtt_ms = (double)st.smoothed_rtt / NGTCP2_MILLISECONDS;
    c->last_cwnd = (double)st.cwnd;
    c->last_pmtu = (double)ngtcp2_conn_get_max_tx_udp_payload_size(c->conn);
    c->last_rate = (double)st.delivery_rate_sec;
    c->has_last_path = true;
    /* Losses on streams still open are counted per stream by ngtcp2: keep them. */
    for (struct qe_stream *s = c->streams; s != NULL; s = s->next)
      if (!s->closed) c->lost_stream_pkts += ngtcp2_conn_get_stream_loss_count(c->conn, s->id);
    ngtcp2_conn_del(c->conn);
    c->conn = NULL;
  }
  qe_stream_free_all(c);
  if (c->tls != NULL) {
    gnutls_deinit(c->tls);
    c->tls = NULL;
  }
  free(c->peer_chain);
  c->peer_chain = NULL;
  c->peer_chain_n = 0;
  c->tls_retired = false; /* released: no TLS facts either way */
  qe_dq_free(&c->dq_send);
  qe_dq_free(&c->dq_recv);
  c->dq_send.max = c->dq_recv.max = 0;
  free(c->close_pkt);
  c->close_pkt = NULL;
  c->close_len = 0;
  c->close_pending = false;
  free(c->keylog_path);
  c->keylog_path = NULL;
  if (c->cfg != NULL) {
    qe_config_unref(c->cfg);
    c->cfg = NULL;
  }
  c->state = QE_CLOSED;
}

void qe_conn_free(struct qe_conn *c) {
  if (c == NULL) return;
  qe_conn_release(c);
  free(c);
}

static void copy_error(struct qe_error *e, const ngtcp2_connection_close_error *cc) {
  e->set = true;
  e->app = cc->type == NGTCP2_CONNECTION_CLOSE_ERROR_CODE_TYPE_APPLICATION;
  e->code = cc->error_code;
  e->reasonlen = cc->reasonlen < QE_MAX_REASON ? cc->reasonlen : QE_MAX_REASON;
  if (e->reasonlen > 0) memcpy(e->reason, cc->reason, e->reasonlen);
}

/* RFC 9000 §10.2.1: enter the closing period with one CONNECTION_CLOSE packet, kept for resending. */
static void start_closing(struct qe_conn *c, const ngtcp2_connection_close_error *cc) {
  copy_error(&c->local_err, cc);
  if (c->conn == NULL) {
    c->state = QE_CLOSED;
    return;
  }
  size_t cap = c->cfg->max_send_udp;
  if (c->close_pkt == NULL) c->close_pkt = malloc(cap);
  ngtcp2_path_storage ps;
  ngtcp2_path_storage_zero(&ps);
  ngtcp2_pkt_info pi;
  ngtcp2_tstamp now = qe_now();
  ngtcp2_ssize nw = c->close_pkt == NULL ? -1 : ngtcp2_conn_write_connection_close(c->conn, &ps.path, &pi, c->close_pkt, cap, cc, now);
  if (nw <= 0) {
    c->state = QE_CLOSED; /* nothing can carry it (no keys yet): end at once */
    return;
  }
  c->close_len = (size_t)nw;
  c->close_pending = true;
  c->state = QE_CLOSING;
  c->drain_end = now + 3 * ngtcp2_conn_get_pto(c->conn);
}

/* Closes after a fatal ngtcp2 error, with the TLS alert when there is one (RFC 9001 §4.8). */
static void close_liberr(struct qe_conn *c, int rv) {
  ngtcp2_connection_close_error cc;
  uint8_t alert = c->conn != NULL ? ngtcp2_conn_get_tls_alert(c->conn) : 0;
  if (rv == NGTCP2_ERR_CRYPTO && alert != 0)
    ngtcp2_connection_close_error_set_transport_error_tls_alert(&cc, alert, NULL, 0);
  else
    ngtcp2_connection_close_error_set_transport_error_liberr(&cc, rv, NULL, 0);
  snprintf(c->errmsg, sizeof c->errmsg, "%s%s", ngtcp2_strerror(rv), alert ? " (TLS alert)" : "");
  start_closing(c, &cc);
}

/*
 * Where the connection sends follows ngtcp2's current path: it moves there
 * after an authenticated (decrypted), non-probing packet from a new address
 * (RFC 9000 §9.3), and back if that path fails validation. Called after each
 * packet read and each timer.
 */
static void sync_peer(struct qe_conn *c) {
  if (c->conn == NULL) return;
  const ngtcp2_path *p = ngtcp2_conn_get_path(c->conn);
  if (p == NULL || p->remote.addr == NULL || p->remote.addrlen == 0 || p->remote.addrlen > sizeof c->remote) return;
  if (p->remote.addrlen == c->remotelen && memcmp(p->remote.addr, &c->remote, c->remotelen) == 0) return;
  memcpy(&c->remote, p->remote.addr, p->remote.addrlen);
  c->remotelen = p->remote.addrlen;
  c->peer_gen++;
}

int qe_conn_recv(struct qe_conn *c, const uint8_t *pkt, size_t len, const struct sockaddr *from, socklen_t fromlen) {
  if (c->state == QE_CLOSING) {
    /* RFC 9000 §10.2.1: answer packets in the closing period with the close again, but not every one (it
     * limits the rate): the 1st, 2nd, 4th, 8th … To where the connection was, whoever sent them. */
    c->closing_rx++;
    if ((c->closing_rx & (c->closing_rx - 1)) == 0) c->close_pending = true;
    return 0;
  }
  if (c->state != QE_OPEN) return 0;
  if (len == 0) { /* ngtcp2 asserts on empty input */
    snprintf(c->errmsg, sizeof c->errmsg, "empty datagram");
    return -1;
  }
  if (c->conn == NULL && server_start(c, pkt, len) != 0) return -1;
  c->pkts_recv++;
  c->bytes_recv += len;
  /* The path this datagram came on; the connection's own address changes only if ngtcp2 moves to it. */
  ngtcp2_path path = path_of(c);
  if (from != NULL && fromlen > 0) {
    path.remote.addr = (ngtcp2_sockaddr *)from;
    path.remote.addrlen = fromlen;
  }
  ngtcp2_pkt_info pi = {0};
  ngtcp2_tstamp now = qe_now();
  rx_conn = c;
  int rv = ngtcp2_conn_read_pkt(c->conn, &path, &pi, pkt, len, now);
  rx_conn = NULL;
  if (rv == 0) {
    sync_peer(c);
    if (c->server && c->handshake_done && c->tls != NULL) qe_tls_retire(c);
    return 0;
  }
  switch (rv) {
  case NGTCP2_ERR_DRAINING: {
    /* RFC 9000 §10.2.2: the peer closed (or, if the callback ran, reset us). */
    if (c->state == QE_CLOSED) return 0;
    ngtcp2_connection_close_error cc;
    ngtcp2_conn_get_connection_close_error(c->conn, &cc);
    copy_error(&c->peer_err, &cc);
    c->state = QE_DRAINING;
    c->drain_end = now + 3 * ngtcp2_conn_get_pto(c->conn);
    return 0;
  }
  case NGTCP2_ERR_DROP_CONN:
    c->state = QE_CLOSED;
    return 0;
  case NGTCP2_ERR_DISCARD_PKT:
    return 0;
  default:
    close_liberr(c, rv);
    return -1;
  }
}

static bool stream_pending(const struct qe_stream *s) {
  return !s->blocked && !s->shut_wr && !s->closed && (s->send.unwritten > 0 || (s->fin_queued && !s->fin_written));
}

/* Next stream with data to send, round-robin from the last one served. */
static struct qe_stream *next_stream(struct qe_conn *c) {
  struct qe_stream *start = c->rr != NULL && c->rr->next != NULL ? c->rr->next : c->streams;
  for (struct qe_stream *s = start; s != NULL; s = s->next)
    if (stream_pending(s)) return c->rr = s;
  for (struct qe_stream *s = c->streams; s != start && s != NULL; s = s->next)
    if (stream_pending(s)) return c->rr = s;
  return NULL;
}

/*
 * CoDel's verdict on the DATAGRAM send queue's head (cfg->codel). The
 * interval is the configured one or twice the smoothed RTT, whichever is
 * longer: it should cover a round trip of the flows inside the tunnel (RFC
 * 8289 §4.3), and across regions the tunnel's own RTT dominates theirs. The
 * RTT is read only while the head is above target (the state machine needs
 * the interval only then).
 */
static bool codel_drops_head(struct qe_conn *c, const struct qe_dq *dq, ngtcp2_tstamp now) {
  struct mc_params p = c->cfg->codel;
  uint64_t sojourn = now - dq->stamps[dq->head];
  if (sojourn >= p.target_ns) {
    ngtcp2_conn_stat st;
    ngtcp2_conn_get_conn_stat(c->conn, &st);
    if (2 * st.smoothed_rtt > p.interval_ns) p.interval_ns = 2 * st.smoothed_rtt;
  }
  return mc_should_drop(&c->codel, &p, sojourn, now, dq->count);
}

/* The PTO anchor's smallest spacing: on loopback a round trip takes a few µs. */
#define QE_ANCHOR_MIN_NS (1000 * 1000)

/*
 * The PTO anchor's stream when its bytes should go ahead of the DATAGRAMs,
 * else NULL. ngtcp2 0.12 arms no probe timeout for packets of DATAGRAM and
 * PING frames (fixed upstream in 0.13, ngtcp2 #697, and 1.8, #1368): when an
 * outage of the path longer than a round trip takes every packet of a
 * congestion window of them, no ACK ever declares them lost, the window stays
 * full, and the connection sends nothing but ACKs for good. STREAM data does
 * arm it, and survives it: a probe carries the lost bytes again (an empty
 * STREAM frame would not be resent, and the timer would stop after the first
 * probe). So while DATAGRAMs go out, a frame the peer ignores (HTTP/3: a
 * reserved frame type on the control stream) is queued on the anchor stream
 * whenever it holds nothing unacknowledged (at most once a millisecond) and
 * every half round trip's worth of bytes sent, and written ahead of the
 * DATAGRAMs (a full window must not hold it back): one is nearly always in
 * flight, also among the packets sent after the last one acknowledged.
 * Once an outage has taken it, the probe timeout
 * fires, the probes carry it, and the first one acknowledged after the
 * outage declares the DATAGRAM packets before it lost. About two 2-byte
 * frames per round trip (anchor_due: the next one half a round trip's worth
 * of bytes after the last), but only while at least half the congestion window
 * (or two full packets) is in flight: a window cannot fill without passing that mark, and until
 * it is full nothing is stuck (the next acknowledged packet declares the
 * lost ones lost). Sparse traffic (an echo every 20 ms, a session's
 * keepalives) so never carries one: at 100 sessions of echoes it cost the
 * gateway a tenth of its CPU, a STREAM frame and its ACK on every packet,
 * both ways (BENCHMARKS.md, "The PTO anchor only when the window fills").
 */
static bool window_filling(struct qe_conn *c, uint64_t *span) {
  ngtcp2_conn_stat st;
  ngtcp2_conn_get_conn_stat(c->conn, &st);
  /* Half of what a round trip carries: the window, or what is in flight when less (BBR's window is about
   * twice what it keeps in flight). */
  *span = (st.bytes_in_flight < st.cwnd ? st.bytes_in_flight : st.cwnd) / 2;
  /* Or two full packets in flight: a congestion controller may cut the window on an ACK, with nothing
   * written (BBR's ProbeRTT, its inflight bounds), to at least 4 packets, so a window that is full
   * without having passed half by sending holds at least two (review of c3a6649). Sparse traffic, one
   * packet in flight, still carries none. */
  return 2 * st.bytes_in_flight >= st.cwnd || st.bytes_in_flight >= 2 * (uint64_t)ngtcp2_conn_get_max_tx_udp_payload_size(c->conn);
}

static struct qe_stream *anchor_due(struct qe_conn *c, ngtcp2_tstamp now) {
  if (c->anchor_len == 0) return NULL;
  struct qe_stream *a = qe_stream_find(c, c->anchor_id);
  if (a == NULL || a->shut_wr || a->fin_queued || a->closed || a->stop_recvd || a->blocked) return NULL;
  /* Without flow-control credit ngtcp2 0.12 writes no STREAM frame and may not say so (it reports
   * STREAM_DATA_BLOCKED only while the connection has credit left): the DATAGRAMs must not wait for it. */
  if (ngtcp2_conn_get_max_data_left(c->conn) < c->anchor_len ||
      ngtcp2_conn_get_max_stream_data_left(c->conn, a->id) < (a->send.unwritten > 0 ? a->send.unwritten : c->anchor_len))
    return NULL;
  /* The next anchor, while the window is filling and the last one is written: once the last one is
   * acknowledged (at most one a millisecond), and in any case once half a round trip's worth of bytes
   * (half the window, or of what is in flight when less) went out after it. One at a time is not enough:
   * the ACK that acknowledges it may also declare an earlier packet lost, and a window cut below what is
   * still in flight leaves no room to write the next one; an outage then takes every packet sent after the
   * acknowledged anchor, none of them arms the probe timeout, and the window stays full for good
   * (src/quic/pto-anchor-wedge.test.ts). So about two anchors a round trip, with any congestion controller
   * and round trips shorter than the millisecond floor. */
  bool due = false;
  uint64_t since = c->bytes_sent - c->anchor_bytes;
  bool acked = a->send.bytes == 0 && now - c->anchor_at >= QE_ANCHOR_MIN_NS;
  /* Cheap checks first: this runs for every packet written. */
  if (a->send.unwritten == 0 && (acked || since >= 2 * (uint64_t)c->cfg->max_send_udp)) {
    uint64_t span;
    due = window_filling(c, &span) && (acked || since >= span);
  }
  if (due) {
    if (qe_buf_append(&a->send, c->anchor_frame, c->anchor_len) != c->anchor_len) return NULL;
    c->anchor_at = now;
    c->anchor_bytes = c->bytes_sent;
    c->anchors_sent++;
  }
  return a->send.unwritten > 0 ? a : NULL;
}

/* Writes one packet: queued DATAGRAMs first (the tunnel's packets), then stream data, coalesced. */
static ngtcp2_ssize write_one(struct qe_conn *c, uint8_t *out, size_t cap, ngtcp2_tstamp now) {
  ngtcp2_path_storage ps;
  ngtcp2_path_storage_zero(&ps);
  ngtcp2_pkt_info pi;
  struct qe_dq *dq = &c->dq_send;
  bool dgrams = c->handshake_done || ngtcp2_conn_get_handshake_completed(c->conn);
  /* Looked at once per packet: the anchor goes first or not at all. */
  struct qe_stream *anchor = dgrams && dq->count > 0 ? anchor_due(c, now) : NULL;
  for (;;) {
    ngtcp2_ssize nw;
    struct qe_stream *s = anchor;
    bool is_anchor = anchor != NULL;
    anchor = NULL;
    if (s == NULL && dgrams && dq->count > 0) {
      /* CoDel: a head that waited too long, while a queue stands behind it, is dropped unsent. */
      if (dq->stamps != NULL && codel_drops_head(c, dq, now)) {
        qe_dq_pop(dq);
        c->dgram_send_delay_dropped++;
        continue;
      }
      int accepted = 0;
      ngtcp2_vec v = {.base = dq->mem + (size_t)dq->head * dq->slot, .len = dq->lens[dq->head]};
      nw = ngtcp2_conn_writev_datagram(c->conn, &ps.path, &pi, out, cap, &accepted, NGTCP2_WRITE_DATAGRAM_FLAG_MORE,
                                       0, &v, 1, now);
      if (accepted || nw == NGTCP2_ERR_INVALID_ARGUMENT) {
        qe_dq_pop(dq);
      }
      if (nw == NGTCP2_ERR_WRITE_MORE || nw == NGTCP2_ERR_INVALID_ARGUMENT) continue;
      return nw;
    }
    if (s == NULL) s = next_stream(c);
    if (s != NULL) {
      ngtcp2_vec v[QE_VEC_MAX];
      size_t n = qe_buf_unwritten_vecs(&s->send, v, QE_VEC_MAX);
      size_t total = 0;
      for (size_t i = 0; i < n; i++) total += v[i].len;
      uint32_t flags = NGTCP2_WRITE_STREAM_FLAG_MORE;
      bool fin = s->fin_queued && total == s->send.unwritten;
      if (fin) flags |= NGTCP2_WRITE_STREAM_FLAG_FIN;
      ngtcp2_ssize taken = -1;
      nw = ngtcp2_conn_writev_stream(c->conn, &ps.path, &pi, out, cap, &taken, flags, s->id, v, n, now);
      if (taken >= 0) {
        qe_buf_advance_written(&s->send, (size_t)taken);
        if (fin && (size_t)taken == total) s->fin_written = true;
      }
      if (nw == NGTCP2_ERR_WRITE_MORE) continue;
      if (nw == NGTCP2_ERR_STREAM_SHUT_WR && !s->shut_wr && !s->stop_recvd) {
        /* RFC 9000 §3.5: the peer sent STOP_SENDING and ngtcp2 reset the stream.
         * 0.12 reports neither the event nor its code; the code is learnt only
         * if the stream closes (on_stream_close). */
        s->stop_recvd = true;
        s->send.unwritten = 0;
      }
      if (nw == NGTCP2_ERR_STREAM_DATA_BLOCKED || nw == NGTCP2_ERR_STREAM_SHUT_WR ||
          nw == NGTCP2_ERR_STREAM_NOT_FOUND) {
        s->blocked = true; /* for this packet only; cleared below */
        continue;
      }
      /* The anchor not written (no room, or the library would not say why): the DATAGRAMs go on without it. */
      if (is_anchor && nw == 0) {
        s->blocked = true;
        continue;
      }
      /* A full packet that took none of this stream's bytes: try it first next time. */
      return nw;
    }
    return ngtcp2_conn_write_pkt(c->conn, &ps.path, &pi, out, cap, now);
  }
}

ssize_t qe_conn_send(struct qe_conn *c, uint8_t *out, size_t cap) {
  if (c->tx_held) return 0; /* a TUN thread's kept tail goes first; it sends the rest once the socket is writable */
  if (c->state == QE_CLOSING) {
    if (!c->close_pending || cap < c->close_len) return 0;
    c->close_pending = false;
    memcpy(out, c->close_pkt, c->close_len);
    c->pkts_sent++;
    c->bytes_sent += c->close_len;
    return (ssize_t)c->close_len;
  }
  if (c->state != QE_OPEN || c->conn == NULL) return 0;
  if (cap > c->cfg->max_send_udp) cap = c->cfg->max_send_udp;
  ngtcp2_tstamp now = qe_now();
  ngtcp2_ssize nw = write_one(c, out, cap, now);
  /* A failed path validation takes the connection back to its old path inside the write (ngtcp2 0.12:
   * conn_write_path_challenge): the packet just written, and the ones after it, go there. */
  sync_peer(c);
  for (struct qe_stream *s = c->streams; s != NULL; s = s->next) s->blocked = false;
  if (nw < 0) {
    close_liberr(c, (int)nw);
    return qe_conn_send(c, out, cap);
  }
  if (nw == 0) return 0;
  if (c->ping_armed) {
    c->ping_armed = false;
    ngtcp2_conn_set_keep_alive_timeout(c->conn, 0);
  }
  c->pkts_sent++;
  c->bytes_sent += (uint64_t)nw;
  return nw;
}

int64_t qe_conn_timeout_us(struct qe_conn *c) {
  ngtcp2_tstamp at;
  if (c->state == QE_CLOSED) return -1;
  if (c->state != QE_OPEN) at = c->drain_end;
  else if (c->conn == NULL) return -1;
  else at = ngtcp2_conn_get_expiry(c->conn);
  if (at == UINT64_MAX) return -1;
  ngtcp2_tstamp now = qe_now();
  return at > now ? (int64_t)((at - now) / 1000) : 0;
}

void qe_conn_on_timeout(struct qe_conn *c) {
  ngtcp2_tstamp now = qe_now();
  if (c->state == QE_CLOSING || c->state == QE_DRAINING) {
    if (now >= c->drain_end) c->state = QE_CLOSED;
    return;
  }
  if (c->state != QE_OPEN || c->conn == NULL) return;
  int rv = ngtcp2_conn_handle_expiry(c->conn, now);
  if (rv == 0) {
    sync_peer(c); /* a failed path validation takes the connection back to its old path */
    return;
  }
  if (rv == NGTCP2_ERR_IDLE_CLOSE || rv == NGTCP2_ERR_HANDSHAKE_TIMEOUT) {
    /* RFC 9000 §10.1: idle timeout closes silently. */
    c->state = QE_CLOSED;
    c->timed_out = true;
    return;
  }
  close_liberr(c, rv);
}

void qe_conn_close(struct qe_conn *c, bool app, uint64_t code, const uint8_t *reason, size_t reasonlen) {
  ngtcp2_connection_close_error cc;
  if (app)
    ngtcp2_connection_close_error_set_application_error(&cc, code, reason, reasonlen);
  else
    ngtcp2_connection_close_error_set_transport_error(&cc, code, reason, reasonlen);
  start_closing(c, &cc);
}

void qe_conn_ping(struct qe_conn *c) {
  if (c->state != QE_OPEN || c->conn == NULL) return;
  /* RFC 9000 §10.1.2: 0.12 has no PING call; a 1 ns keep-alive makes the next
   * write carry one, and qe_conn_send switches it off after that packet. */
  ngtcp2_conn_set_keep_alive_timeout(c->conn, 1);
  c->ping_armed = true;
  qe_conn_trim_idle(c);
}

void qe_conn_trim_idle(struct qe_conn *c) {
  /* The connection is idle (a keep-alive, or the gateway's tick saw nothing arrive): its empty DATAGRAM
   * rings (2 slots of a packet each way, 5.7 kB; more after a burst grew them) go until it carries one again (#17). */
  qe_dq_trim(&c->dq_send);
  qe_dq_trim(&c->dq_recv);
}

int64_t qe_dgram_max_writable(struct qe_conn *c) {
  if (c->conn == NULL || c->state != QE_OPEN || c->dq_send.max == 0) return -1;
  if (!c->handshake_done && !ngtcp2_conn_get_handshake_completed(c->conn)) return -1;
  const ngtcp2_transport_params *rp = ngtcp2_conn_get_remote_transport_params(c->conn);
  if (rp == NULL || rp->max_datagram_frame_size <= 3) return -1; /* a frame that small carries no payload (type + length) */
  /* RFC 9000 §17.3.1 short header (1 + DCID + up to 4-byte packet number), the
   * AEAD tag, and RFC 9221 §4 frame type + length varint. */
  size_t dcidlen = ngtcp2_conn_get_dcid(c->conn)->datalen;
  size_t overhead = 1 + dcidlen + 4 + 16 + 1 + 2;
  size_t udp = ngtcp2_conn_get_max_tx_udp_payload_size(c->conn);
  if (udp > c->cfg->max_send_udp) udp = c->cfg->max_send_udp;
  int64_t m = udp > overhead ? (int64_t)(udp - overhead) : 0;
  if ((uint64_t)m > rp->max_datagram_frame_size - 3) m = (int64_t)rp->max_datagram_frame_size - 3;
  if (m > (int64_t)c->dq_send.slot) m = c->dq_send.slot;
  return m;
}
