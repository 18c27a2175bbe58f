/* engine-proto: the client thread — handshake, then 1200-byte DATAGRAMs as
 * fast as congestion control and pacing allow, GSO batches, until main says stop. */
#define _GNU_SOURCE
#include "proto.h"

#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct cctx {
  struct shared *sh;
  ngtcp2_conn *conn;
  struct tls tls;
};

static ngtcp2_conn *get_conn(ngtcp2_crypto_conn_ref *r) { return ((struct cctx *)r->user_data)->conn; }

/* RFC 9221 §5.2: a lost DATAGRAM is not retransmitted; we only count it. */
static int lost_cb(ngtcp2_conn *conn, uint64_t id, void *ud) {
  (void)conn;
  (void)id;
  ((struct cctx *)ud)->sh->client.lost_dgrams++;
  return 0;
}

static void err_rv(struct side_stats *st, const char *what, int rv, ngtcp2_conn *conn) {
  if (st->error[0]) return; /* the first cause is the one to report */
  ngtcp2_connection_close_error cc;
  ngtcp2_conn_get_connection_close_error(conn, &cc);
  snprintf(st->error, sizeof st->error, "%s: %s (peer/own close code 0x%llx, tls alert %u)", what,
           ngtcp2_strerror(rv), (unsigned long long)cc.error_code, ngtcp2_conn_get_tls_alert(conn));
}

void *client_main(void *arg) {
  struct shared *sh = arg;
  const struct options *opt = sh->opt;
  struct side_stats *st = &sh->client;
  struct cctx c = {.sh = sh};
  pthread_setname_np(pthread_self(), "ep-client"); /* for perf --sort comm */
  struct udp_rx rx = {0};
  struct writer w = {0};
  int fd = -1;
  for (int i = 0; i < 5000 && atomic_load(&sh->server_port) == 0; i++) usleep(1000);
  int port = atomic_load(&sh->server_port);
  if (port == 0) {
    snprintf(st->error, sizeof st->error, "client: server never bound");
    return NULL;
  }
  if ((fd = udp_open(0, opt->gro, st->error, sizeof st->error)) < 0) return NULL;
  struct sockaddr_storage local, remote;
  socklen_t locallen;
  udp_local(fd, &local, &locallen);
  struct sockaddr_in *r = (struct sockaddr_in *)&remote;
  memset(&remote, 0, sizeof remote);
  r->sin_family = AF_INET;
  r->sin_port = htons((uint16_t)port);
  r->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ngtcp2_path path = {.local = {(ngtcp2_sockaddr *)&local, locallen},
                      .remote = {(ngtcp2_sockaddr *)&remote, sizeof(struct sockaddr_in)}};

  /* RFC 9000 §7.2: the first DCID is random and at least 8 bytes. */
  ngtcp2_cid dcid = {.datalen = 18}, scid = {.datalen = 16};
  gnutls_rnd(GNUTLS_RND_NONCE, dcid.data, dcid.datalen);
  gnutls_rnd(GNUTLS_RND_NONCE, scid.data, scid.datalen);
  ngtcp2_callbacks cb;
  conn_callbacks(&cb, 0);
  cb.lost_datagram = lost_cb;
  ngtcp2_settings s;
  conn_settings(&s, opt);
  ngtcp2_transport_params p;
  conn_params(&p);
  if (tls_client(&c.tls, opt, st->error, sizeof st->error) != 0) goto out;
  c.tls.ref.get_conn = get_conn;
  c.tls.ref.user_data = &c;
  int rv = ngtcp2_conn_client_new(&c.conn, &dcid, &scid, &path, NGTCP2_PROTO_VER_V1, &cb, &s, &p, NULL, &c);
  if (rv != 0) {
    snprintf(st->error, sizeof st->error, "client: ngtcp2_conn_client_new: %s", ngtcp2_strerror(rv));
    goto out;
  }
  ngtcp2_conn_set_tls_native_handle(c.conn, c.tls.session);

  w.conn = c.conn;
  w.fd = fd;
  w.to = (struct sockaddr *)&remote;
  w.tolen = sizeof(struct sockaddr_in);
  w.st = st;
  w.tx_gso = opt->gso;
  w.pacing = opt->pacing;
  w.payload_len = opt->dgram_size;
  w.payload = malloc(opt->dgram_size);
  w.tx.buf = malloc((size_t)PROTO_GSO_MAX_SEGS * PROTO_MAX_UDP_PAYLOAD);
  if (!w.payload || !w.tx.buf || udp_rx_init(&rx) != 0) {
    snprintf(st->error, sizeof st->error, "client: out of memory");
    goto out;
  }

  ngtcp2_tstamp start = now_ns();
  struct window win = {0};
  int hs = 0;
  for (;;) {
    ngtcp2_tstamp now = now_ns();
    int ph = window_step(&win, sh, st, now);
    w.measuring = win.measuring;
    if (ph == PH_STOP) w.dgram = 0;
    if (ph == PH_STOP && now - win.stop_at > 200000000ull) break; /* tail acknowledged */
    if (!hs && ngtcp2_conn_get_handshake_completed(c.conn)) {
      const ngtcp2_transport_params *rp = ngtcp2_conn_get_remote_transport_params(c.conn);
      if (!rp || rp->max_datagram_frame_size < opt->dgram_size + 3) { /* RFC 9221 §3 */
        snprintf(st->error, sizeof st->error, "client: server does not accept %zu-byte DATAGRAMs",
                 opt->dgram_size);
        goto out;
      }
      hs = 1;
      __atomic_store_n(&st->handshake_ok, 1, __ATOMIC_RELEASE);
      if (ph != PH_STOP) w.dgram = 1;
    }
    if (!hs && now - start > 6 * NGTCP2_SECONDS) {
      snprintf(st->error, sizeof st->error, "client: handshake did not complete in 6 s");
      goto out;
    }
    for (;;) {
      int n = udp_recv(fd, &rx, st, w.measuring);
      if (n < 0) {
        snprintf(st->error, sizeof st->error, "client: recvmmsg failed");
        goto out;
      }
      if (n == 0) break;
      rv = conn_read_batch(c.conn, &path, &rx, n, st, w.measuring, now);
      if (rv != 0) {
        err_rv(st, "client: ngtcp2_conn_read_pkt", rv, c.conn);
        goto out;
      }
      if (n < PROTO_RX_MSGS) break;
    }
    if (ngtcp2_conn_get_expiry(c.conn) <= now) {
      ngtcp2_tstamp t = w.measuring ? now_ns() : 0;
      rv = ngtcp2_conn_handle_expiry(c.conn, now);
      if (w.measuring) st->ns_expiry += now_ns() - t;
      if (rv != 0) {
        err_rv(st, "client: ngtcp2_conn_handle_expiry", rv, c.conn);
        goto out;
      }
    }
    rv = conn_write(&w, now);
    if (rv < 0) {
      err_rv(st, "client: write", rv, c.conn);
      goto out;
    }
    if (rv == 1) { /* blocked: sleep until the next timer (pacing included) or an ACK */
      ngtcp2_tstamp exp = ngtcp2_conn_get_expiry(c.conn), t = now_ns();
      ngtcp2_tstamp wait = exp > t ? exp - t : 0;
      if (wait > PROTO_MAX_WAIT_NS) wait = PROTO_MAX_WAIT_NS;
      if (wait > 0) udp_wait(fd, POLLIN, wait);
    }
  }
  /* RFC 9000 §10.2: close with NO_ERROR so the server drains and reports. */
  {
    ngtcp2_conn_stat cs;
    ngtcp2_conn_get_conn_stat(c.conn, &cs);
    st->cwnd = cs.cwnd;
    st->srtt_ns = cs.smoothed_rtt;
    ngtcp2_connection_close_error cc;
    ngtcp2_connection_close_error_default(&cc);
    ngtcp2_path_storage ps;
    ngtcp2_path_storage_zero(&ps);
    ngtcp2_pkt_info pi;
    ngtcp2_ssize nw = ngtcp2_conn_write_connection_close(c.conn, &ps.path, &pi, w.tx.buf,
                                                         PROTO_MAX_UDP_PAYLOAD, &cc, now_ns());
    if (nw > 0) udp_send(fd, w.to, w.tolen, w.tx.buf, (size_t)nw, 0, st);
  }
out:
  if (c.conn) ngtcp2_conn_del(c.conn);
  tls_free(&c.tls);
  udp_rx_free(&rx);
  free(w.payload);
  free(w.tx.buf);
  if (fd >= 0) close(fd);
  return NULL;
}
