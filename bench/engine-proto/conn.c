/* engine-proto: what both sides share around ngtcp2 — callbacks, settings,
 * transport parameters, the write loop (send quantum, GSO batches, pacing)
 * and feeding a recvmmsg/GRO batch into ngtcp2_conn_read_pkt. */
#define _GNU_SOURCE
#include "proto.h"

#include <ngtcp2/ngtcp2_crypto.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

static uint8_t reset_secret[32];
static _Atomic int reset_secret_ready;

ngtcp2_tstamp now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (ngtcp2_tstamp)t.tv_sec * 1000000000ull + (ngtcp2_tstamp)t.tv_nsec;
}

double thread_cpu_s(void) {
  struct rusage r;
  getrusage(RUSAGE_THREAD, &r);
  return (double)r.ru_utime.tv_sec + (double)r.ru_utime.tv_usec / 1e6 + (double)r.ru_stime.tv_sec +
         (double)r.ru_stime.tv_usec / 1e6;
}

static void rand_cb(uint8_t *dest, size_t len, const ngtcp2_rand_ctx *ctx) {
  (void)ctx;
  gnutls_rnd(GNUTLS_RND_RANDOM, dest, len);
}

/* RFC 9000 §5.1.1 (new connection IDs) and §10.3 (stateless reset token bound to the CID). */
static int new_cid_cb(ngtcp2_conn *conn, ngtcp2_cid *cid, uint8_t *token, size_t cidlen, void *ud) {
  (void)conn;
  (void)ud;
  if (!atomic_load(&reset_secret_ready)) {
    gnutls_rnd(GNUTLS_RND_KEY, reset_secret, sizeof reset_secret);
    atomic_store(&reset_secret_ready, 1);
  }
  cid->datalen = cidlen;
  gnutls_rnd(GNUTLS_RND_NONCE, cid->data, cidlen);
  if (ngtcp2_crypto_generate_stateless_reset_token(token, reset_secret, sizeof reset_secret, cid) != 0)
    return NGTCP2_ERR_CALLBACK_FAILURE;
  return 0;
}

void conn_callbacks(ngtcp2_callbacks *cb, int server) {
  memset(cb, 0, sizeof *cb);
  if (server) {
    cb->recv_client_initial = ngtcp2_crypto_recv_client_initial_cb;
  } else {
    cb->client_initial = ngtcp2_crypto_client_initial_cb;
    cb->recv_retry = ngtcp2_crypto_recv_retry_cb;
  }
  cb->recv_crypto_data = ngtcp2_crypto_recv_crypto_data_cb;
  cb->encrypt = ngtcp2_crypto_encrypt_cb;
  cb->decrypt = ngtcp2_crypto_decrypt_cb;
  cb->hp_mask = ngtcp2_crypto_hp_mask_cb;
  cb->rand = rand_cb;
  cb->get_new_connection_id = new_cid_cb;
  cb->update_key = ngtcp2_crypto_update_key_cb;
  cb->delete_crypto_aead_ctx = ngtcp2_crypto_delete_crypto_aead_ctx_cb;
  cb->delete_crypto_cipher_ctx = ngtcp2_crypto_delete_crypto_cipher_ctx_cb;
  cb->get_path_challenge_data = ngtcp2_crypto_get_path_challenge_data_cb;
  cb->version_negotiation = ngtcp2_crypto_version_negotiation_cb;
}

static void log_cb(void *ud, const char *fmt, ...) {
  (void)ud;
  va_list ap;
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
}

void conn_settings(ngtcp2_settings *s, const struct options *opt) {
  ngtcp2_settings_default(s);
  if (getenv("PROTO_DEBUG")) s->log_printf = log_cb; /* ngtcp2's own trace, to stderr */
  s->initial_ts = now_ns();
  s->cc_algo = (ngtcp2_cc_algo)opt->cc_algo; /* CUBIC by default, as quiche in bench/quic-datagram.mjs */
  s->max_tx_udp_payload_size = PROTO_MAX_UDP_PAYLOAD;
  /* Without this 0.12 sends 1200-byte UDP payloads until PMTUD probes succeed,
   * and a 1200-byte DATAGRAM does not fit. */
  s->no_tx_udp_payload_size_shaping = 1;
  s->handshake_timeout = 5 * NGTCP2_SECONDS;
}

void conn_params(ngtcp2_transport_params *p) {
  ngtcp2_transport_params_default(p);
  p->initial_max_streams_bidi = 4;
  p->initial_max_streams_uni = 4;
  p->initial_max_stream_data_bidi_local = 1 << 20;
  p->initial_max_stream_data_bidi_remote = 1 << 20;
  p->initial_max_stream_data_uni = 1 << 20;
  p->initial_max_data = 4 << 20;
  p->max_idle_timeout = 10 * NGTCP2_SECONDS;
  p->max_datagram_frame_size = 65535; /* RFC 9221 §3: nonzero enables DATAGRAM */
}

/* Sends the GSO batch [buf, buf+len) of |seg|-byte segments, timing the syscall. */
static int flush(struct writer *w, const uint8_t *buf, size_t len, size_t seg) {
  ngtcp2_tstamp t = w->measuring ? now_ns() : 0;
  int rv = udp_send(w->fd, w->to, w->tolen, buf, len, w->tx_gso ? seg : 0, w->st);
  if (w->measuring) w->st->ns_send += now_ns() - t;
  if (rv != 0) {
    snprintf(w->st->error, sizeof w->st->error, "udp: sendmsg: %s", strerror(-rv));
    return NGTCP2_ERR_CALLBACK_FAILURE;
  }
  return 0;
}

int conn_write(struct writer *w, ngtcp2_tstamp now) {
  ngtcp2_path_storage ps;
  ngtcp2_path_storage_zero(&ps);
  ngtcp2_pkt_info pi;
  size_t quantum = ngtcp2_conn_get_send_quantum(w->conn);
  size_t done = 0;
  int blocked = 0;
  uint8_t *b = w->tx.buf;
  /* Without GSO each packet is its own sendmsg. */
  size_t max_segs = w->tx_gso ? PROTO_GSO_MAX_SEGS : 1;
  while (!blocked && done < quantum) {
    size_t off = 0, seg = 0, n = 0;
    ngtcp2_tstamp t = w->measuring ? now_ns() : 0;
    while (n < max_segs && off + PROTO_MAX_UDP_PAYLOAD <= PROTO_GSO_MAX_BYTES && done + off < quantum) {
      ngtcp2_ssize nw;
      int accepted = 0;
      if (w->dgram) {
        if (!w->payload_ready) {
          payload_fill(w->payload, w->payload_len, w->next_seq);
          w->payload_ready = 1;
        }
        ngtcp2_vec v = {.base = w->payload, .len = w->payload_len};
        nw = ngtcp2_conn_writev_datagram(w->conn, &ps.path, &pi, b + off, PROTO_MAX_UDP_PAYLOAD, &accepted,
                                         NGTCP2_WRITE_DATAGRAM_FLAG_NONE, w->next_seq, &v, 1, now);
      } else {
        nw = ngtcp2_conn_write_pkt(w->conn, &ps.path, &pi, b + off, PROTO_MAX_UDP_PAYLOAD, now);
      }
      if (nw < 0) return (int)nw;
      if (accepted) {
        w->next_seq++;
        w->payload_ready = 0;
        w->st->dgrams++;
        if (w->measuring) w->st->dgrams_win++;
      }
      if (nw == 0) { /* congestion window, pacing or amplification limit */
        blocked = 1;
        break;
      }
      if (n > 0 && (size_t)nw > seg) {
        /* A bigger packet cannot join this GSO batch: send the batch, start anew. */
        if (w->measuring) w->st->ns_write += now_ns() - t;
        int rv = flush(w, b, off, seg);
        if (rv != 0) return rv;
        done += off;
        memmove(b, b + off, (size_t)nw);
        off = 0;
        n = 0;
        t = w->measuring ? now_ns() : 0;
      }
      if (n == 0) seg = (size_t)nw;
      off += (size_t)nw;
      n++;
      if ((size_t)nw < seg) break; /* only the last GSO segment may be short */
    }
    if (w->measuring) w->st->ns_write += now_ns() - t;
    if (n == 0) break;
    int rv = flush(w, b, off, seg);
    if (rv != 0) return rv;
    done += off;
  }
  /* Pacing (RFC 9002 §7.7): after a burst of at most the send quantum, ngtcp2
   * sets the earliest time of the next one; get_expiry includes it. */
  if (w->pacing) ngtcp2_conn_update_pkt_tx_time(w->conn, now);
  return blocked;
}

int conn_read_batch(ngtcp2_conn *conn, const ngtcp2_path *local, struct udp_rx *rx, int n,
                    struct side_stats *st, int measuring, ngtcp2_tstamp now) {
  ngtcp2_tstamp t = measuring ? now_ns() : 0;
  ngtcp2_pkt_info pi = {0};
  ngtcp2_path path = *local;
  int rv = 0;
  for (int i = 0; i < n && rv == 0; i++) {
    const uint8_t *p = rx->iov[i].iov_base;
    size_t len = rx->msgs[i].msg_len, seg = udp_rx_seg(rx, i);
    path.remote.addr = (ngtcp2_sockaddr *)&rx->names[i];
    path.remote.addrlen = rx->msgs[i].msg_hdr.msg_namelen;
    for (size_t off = 0; off < len && rv == 0; off += seg) {
      size_t l = len - off < seg ? len - off : seg;
      st->udp_recv_pkts++;
      rv = ngtcp2_conn_read_pkt(conn, &path, &pi, p + off, l, now);
    }
  }
  if (measuring) st->ns_read_pkt += now_ns() - t;
  return rv;
}

int window_step(struct window *win, struct shared *sh, struct side_stats *st, ngtcp2_tstamp now) {
  int ph = atomic_load(&sh->phase);
  if (ph == win->phase) return ph;
  if (ph == PH_MEASURE) {
    win->cpu0 = thread_cpu_s();
    win->measuring = 1;
  } else if (ph == PH_STOP) {
    if (win->measuring) st->cpu_win_s = thread_cpu_s() - win->cpu0;
    win->measuring = 0;
    win->stop_at = now;
  }
  win->phase = ph;
  return ph;
}
