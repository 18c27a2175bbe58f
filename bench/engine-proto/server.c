/* engine-proto: the server thread — one connection, recvmmsg + GRO, every
 * DATAGRAM's content checked, ACKs written once per receive batch. */
#define _GNU_SOURCE
#include "proto.h"

#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct sctx {
  struct shared *sh;
  ngtcp2_conn *conn;
  struct tls tls;
  uint8_t *seen; /* bitmap of received sequence numbers, PROTO_MAX_SEQS bits */
  int measuring;
};

static ngtcp2_conn *get_conn(ngtcp2_crypto_conn_ref *r) { return ((struct sctx *)r->user_data)->conn; }

static int recv_dgram_cb(ngtcp2_conn *conn, uint32_t flags, const uint8_t *data, size_t len, void *ud) {
  (void)conn;
  (void)flags;
  struct sctx *s = ud;
  struct side_stats *st = &s->sh->server;
  st->dgrams++;
  if (s->measuring) st->dgrams_win++;
  uint64_t seq = len == s->sh->opt->dgram_size ? payload_check(data, len) : UINT64_MAX;
  if (seq == UINT64_MAX || seq >= PROTO_MAX_SEQS) {
    st->bad_content++;
    return 0;
  }
  uint8_t bit = (uint8_t)(1u << (seq & 7));
  if (s->seen[seq >> 3] & bit) st->dupes++;
  s->seen[seq >> 3] |= bit;
  if (seq + 1 > st->max_seq) st->max_seq = seq + 1;
  return 0;
}

/* Creates the connection from the client's first Initial (RFC 9000 §7.2, §17.2.2). */
static int accept_conn(struct sctx *s, const ngtcp2_path *path, const uint8_t *pkt, size_t len) {
  struct side_stats *st = &s->sh->server;
  ngtcp2_pkt_hd hd;
  if (ngtcp2_accept(&hd, pkt, len) != 0) return 1; /* not an acceptable first packet: ignore */
  ngtcp2_cid scid = {.datalen = 16};
  gnutls_rnd(GNUTLS_RND_NONCE, scid.data, scid.datalen);
  ngtcp2_callbacks cb;
  conn_callbacks(&cb, 1);
  cb.recv_datagram = recv_dgram_cb;
  ngtcp2_settings set;
  conn_settings(&set, s->sh->opt);
  ngtcp2_transport_params p;
  conn_params(&p);
  p.original_dcid = hd.dcid; /* RFC 9000 §18.2: the server echoes it */
  if (tls_server(&s->tls, s->sh->opt, st->error, sizeof st->error) != 0) return -1;
  s->tls.ref.get_conn = get_conn;
  s->tls.ref.user_data = s;
  int rv = ngtcp2_conn_server_new(&s->conn, &hd.scid, &scid, path, hd.version, &cb, &set, &p, NULL, s);
  if (rv != 0) {
    snprintf(st->error, sizeof st->error, "server: ngtcp2_conn_server_new: %s", ngtcp2_strerror(rv));
    return -1;
  }
  ngtcp2_conn_set_tls_native_handle(s->conn, s->tls.session);
  return 0;
}

/* A fatal error: tell the peer why (CONNECTION_CLOSE, with the TLS alert if any). */
static void close_with(struct sctx *s, struct writer *w, int rv) {
  struct side_stats *st = &s->sh->server;
  ngtcp2_connection_close_error cc;
  uint8_t alert = ngtcp2_conn_get_tls_alert(s->conn);
  if (rv == NGTCP2_ERR_CRYPTO && alert)
    ngtcp2_connection_close_error_set_transport_error_tls_alert(&cc, alert, NULL, 0);
  else
    ngtcp2_connection_close_error_set_transport_error_liberr(&cc, rv, NULL, 0);
  if (!st->error[0]) snprintf(st->error, sizeof st->error, "server: %s (tls alert %u)", ngtcp2_strerror(rv), alert);
  ngtcp2_path_storage ps;
  ngtcp2_path_storage_zero(&ps);
  ngtcp2_pkt_info pi;
  ngtcp2_ssize nw = ngtcp2_conn_write_connection_close(s->conn, &ps.path, &pi, w->tx.buf,
                                                       PROTO_MAX_UDP_PAYLOAD, &cc, now_ns());
  if (nw > 0) udp_send(w->fd, w->to, w->tolen, w->tx.buf, (size_t)nw, 0, st);
}

void *server_main(void *arg) {
  struct shared *sh = arg;
  const struct options *opt = sh->opt;
  struct side_stats *st = &sh->server;
  struct sctx s = {.sh = sh};
  pthread_setname_np(pthread_self(), "ep-server");
  struct udp_rx rx = {0};
  struct writer w = {0};
  struct sockaddr_storage local, peer;
  socklen_t locallen;
  int fd = udp_open(opt->port, opt->gro, st->error, sizeof st->error);
  if (fd < 0) goto out;
  s.seen = calloc(PROTO_MAX_SEQS / 8, 1);
  w.tx.buf = malloc((size_t)PROTO_GSO_MAX_SEGS * PROTO_MAX_UDP_PAYLOAD);
  if (!s.seen || !w.tx.buf || udp_rx_init(&rx) != 0) {
    snprintf(st->error, sizeof st->error, "server: out of memory");
    goto out;
  }
  udp_local(fd, &local, &locallen);
  ngtcp2_path path = {.local = {(ngtcp2_sockaddr *)&local, locallen}};
  w.fd = fd;
  w.to = (struct sockaddr *)&peer;
  w.st = st;
  w.tx_gso = opt->gso;
  w.pacing = opt->pacing;
  atomic_store(&sh->server_port, ntohs(((struct sockaddr_in *)&local)->sin_port));

  struct window win = {0};
  int hs = 0, closed = 0;
  while (!closed) {
    ngtcp2_tstamp now = now_ns();
    int ph = window_step(&win, sh, st, now);
    s.measuring = w.measuring = win.measuring;
    if (ph == PH_STOP && now - win.stop_at > 2 * NGTCP2_SECONDS) break; /* client never closed */
    for (;;) {
      int n = udp_recv(fd, &rx, st, s.measuring);
      if (n < 0) {
        snprintf(st->error, sizeof st->error, "server: recvmmsg failed");
        goto out;
      }
      if (n == 0) break;
      if (!s.conn) {
        memcpy(&peer, &rx.names[0], sizeof peer);
        w.tolen = rx.msgs[0].msg_hdr.msg_namelen;
        path.remote.addr = (ngtcp2_sockaddr *)&peer;
        path.remote.addrlen = w.tolen;
        size_t l = udp_rx_seg(&rx, 0);
        int a = accept_conn(&s, &path, rx.iov[0].iov_base, l < rx.msgs[0].msg_len ? l : rx.msgs[0].msg_len);
        if (a < 0) goto out;
        if (a > 0) continue;
        w.conn = s.conn;
      }
      int rv = conn_read_batch(s.conn, &path, &rx, n, st, s.measuring, now);
      if (rv == NGTCP2_ERR_DRAINING) { /* RFC 9000 §10.2.2: the client closed */
        closed = 1;
        break;
      }
      if (rv != 0) {
        close_with(&s, &w, rv);
        goto out;
      }
      if (n < PROTO_RX_MSGS) break;
    }
    if (closed) break;
    if (s.conn) {
      if (!hs && ngtcp2_conn_get_handshake_completed(s.conn)) {
        hs = 1;
        st->handshake_ok = 1;
        tls_peer_uri(s.tls.session, st->peer_id, sizeof st->peer_id);
      }
      if (ngtcp2_conn_get_expiry(s.conn) <= now) {
        ngtcp2_tstamp t = s.measuring ? now_ns() : 0;
        int rv = ngtcp2_conn_handle_expiry(s.conn, now);
        if (s.measuring) st->ns_expiry += now_ns() - t;
        if (rv != 0) {
          close_with(&s, &w, rv);
          goto out;
        }
      }
      int rv = conn_write(&w, now); /* ACKs, handshake, HANDSHAKE_DONE */
      if (rv < 0) {
        close_with(&s, &w, rv);
        goto out;
      }
    }
    ngtcp2_tstamp wait = PROTO_MAX_WAIT_NS, t = now_ns();
    if (s.conn) {
      ngtcp2_tstamp exp = ngtcp2_conn_get_expiry(s.conn);
      wait = exp > t ? exp - t : 0;
      if (wait > PROTO_MAX_WAIT_NS) wait = PROTO_MAX_WAIT_NS;
    }
    if (wait > 0) udp_wait(fd, POLLIN, wait);
  }
out:
  atomic_store(&sh->server_done, 1);
  if (s.conn) ngtcp2_conn_del(s.conn);
  tls_free(&s.tls);
  udp_rx_free(&rx);
  free(s.seen);
  free(w.tx.buf);
  if (fd >= 0) close(fd);
  return NULL;
}
