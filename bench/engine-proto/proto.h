/*
 * engine-proto: a throw-away C prototype that measures ngtcp2 0.12 + GnuTLS
 * moving 1200-byte QUIC DATAGRAM frames (RFC 9221) client -> server over
 * 127.0.0.1, one thread per side, UDP GSO on send and GRO on receive.
 * It exists to decide the native QUIC engine (docs/decisions/0001-quic-engine.md);
 * it is not linked into mtun.
 */
#ifndef ENGINE_PROTO_H
#define ENGINE_PROTO_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* recvmmsg, struct mmsghdr */
#endif
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <ngtcp2/ngtcp2.h>
#include <ngtcp2/ngtcp2_crypto.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* Tuning constants (not from a spec). */
#define PROTO_MAX_UDP_PAYLOAD 1350 /* same as bench/quic-datagram.mjs maxUdpPayloadBytes */
#define PROTO_GSO_MAX_SEGS 64      /* kernel UDP_MAX_SEGMENTS */
#define PROTO_GSO_MAX_BYTES 65000  /* below the 65507-byte UDP payload limit */
#define PROTO_RX_MSGS 16           /* recvmmsg batch */
#define PROTO_RX_BUF 65536         /* one GRO super-datagram */
#define PROTO_MAX_WAIT_NS 5000000ull /* poll cap, so phase changes are seen within 5 ms */
#define PROTO_MAX_SEQS (64u << 20)   /* receiver's duplicate bitmap: 64 Mi datagrams */

enum phase { PH_WARMUP = 0, PH_MEASURE = 1, PH_STOP = 2 };

/* Run-wide options, filled by main from argv; read-only for the threads. */
struct options {
  double seconds;
  double warmup_s;
  size_t dgram_size;
  const char *cert_dir; /* ca.pem, server.pem, server.key, client.pem, client.key */
  int port;             /* server's UDP port on 127.0.0.1; 0 = any */
  int mtls;             /* server requires a client certificate */
  int client_cert;      /* client presents one (mtls negative test when 0) */
  int gso, gro;
  int cc_algo; /* NGTCP2_CC_ALGO_* */
  int pacing; /* 0: never call ngtcp2_conn_update_pkt_tx_time (what mtun does with quiche today) */
};

/* CPU time of one thread: user + system seconds (RUSAGE_THREAD). */
double thread_cpu_s(void);
ngtcp2_tstamp now_ns(void);

/* Per-side results; written by its thread, read by main after join. */
struct side_stats {
  uint64_t dgrams;       /* client: DATAGRAMs accepted into packets; server: received */
  uint64_t dgrams_win;   /* same, inside the measure window */
  uint64_t udp_sends, udp_send_segs, udp_eagain;
  uint64_t udp_recvs, udp_recv_pkts, kernel_drops;
  uint64_t lost_dgrams;  /* client: ngtcp2 lost_datagram callbacks */
  uint64_t bad_content, dupes; /* server: content check failures, duplicate seqs */
  uint64_t max_seq;      /* server: highest seq + 1 seen */
  double cpu_win_s;      /* thread CPU inside the measure window */
  /* Time split inside the window, ns, measured per batch (not per call). */
  uint64_t ns_write, ns_send, ns_recv_sys, ns_read_pkt, ns_expiry;
  uint64_t cwnd, srtt_ns, pkts_lost_est;
  int handshake_ok;
  char peer_id[256];     /* server: URI SAN of the client certificate, if any */
  char error[256];
};

/* A thread's view of the measure window: CPU snapshots at its edges. */
struct window {
  int phase;
  int measuring;
  double cpu0;
  ngtcp2_tstamp stop_at;
};

/* Shared between main and the two threads. */
struct shared {
  const struct options *opt;
  _Atomic int phase;
  _Atomic int server_port; /* 0 until the server socket is bound */
  _Atomic int server_done;
  struct side_stats client, server;
};

/* ---- udp.c: the socket and its batches ---- */
struct udp_tx {
  uint8_t *buf; /* PROTO_GSO_MAX_SEGS * PROTO_MAX_UDP_PAYLOAD bytes, owned */
};
struct udp_rx {
  uint8_t *bufs;                     /* PROTO_RX_MSGS * PROTO_RX_BUF, owned */
  struct mmsghdr msgs[PROTO_RX_MSGS];
  struct iovec iov[PROTO_RX_MSGS];
  struct sockaddr_storage names[PROTO_RX_MSGS];
  uint8_t ctrl[PROTO_RX_MSGS][64];
};
int udp_open(int port, int gro, char *err, size_t errlen);
int udp_local(int fd, struct sockaddr_storage *ss, socklen_t *len);
/* Sends |len| bytes as one sendmsg; |seg| > 0 and < len asks for UDP_SEGMENT. Waits on EAGAIN. */
int udp_send(int fd, const struct sockaddr *to, socklen_t tolen, const uint8_t *buf, size_t len,
             size_t seg, struct side_stats *st);
int udp_rx_init(struct udp_rx *rx);
void udp_rx_free(struct udp_rx *rx);
/* One recvmmsg (MSG_DONTWAIT). Returns messages read (0 when none), -1 on error. */
int udp_recv(int fd, struct udp_rx *rx, struct side_stats *st, int measuring);
/* GRO segment size of message i (its length when not coalesced). */
size_t udp_rx_seg(struct udp_rx *rx, int i);
int udp_wait(int fd, short events, ngtcp2_tstamp timeout_ns);

/* ---- tls.c: GnuTLS set-up for ngtcp2 ---- */
struct tls {
  gnutls_certificate_credentials_t cred;
  gnutls_session_t session;
  ngtcp2_crypto_conn_ref ref;
};
int tls_client(struct tls *t, const struct options *opt, char *err, size_t errlen);
int tls_server(struct tls *t, const struct options *opt, char *err, size_t errlen);
void tls_free(struct tls *t);
/* Writes the first URI SAN of the peer's leaf certificate into |out|; 0 if found. */
int tls_peer_uri(gnutls_session_t s, char *out, size_t outlen);

/* ---- conn.c: what client and server share around ngtcp2 ---- */
void conn_callbacks(ngtcp2_callbacks *cb, int server);
void conn_settings(ngtcp2_settings *s, const struct options *opt);
void conn_params(ngtcp2_transport_params *p);
/* Writes packets (DATAGRAMs when |dgram| is set) up to the send quantum in GSO batches. */
struct writer {
  ngtcp2_conn *conn;
  int fd;
  const struct sockaddr *to;
  socklen_t tolen;
  struct udp_tx tx;
  struct side_stats *st;
  /* datagram source (client): next sequence number and its payload buffer */
  int dgram;
  uint64_t next_seq;
  uint8_t *payload;
  size_t payload_len;
  int payload_ready;
  int measuring;
  int tx_gso; /* 0: one sendmsg per packet */
  int pacing;
};
/* Returns 1 when ngtcp2 refused more (congestion / pacing), 0 when the quantum was
 * used up, negative on a fatal ngtcp2 error. */
int conn_write(struct writer *w, ngtcp2_tstamp now);
/* Feeds one recv batch into the connection; returns 0 or an ngtcp2 error. */
int conn_read_batch(ngtcp2_conn *conn, const ngtcp2_path *local, struct udp_rx *rx, int n,
                    struct side_stats *st, int measuring, ngtcp2_tstamp now);

/* ---- payload.c: the content every datagram carries ---- */
void payload_fill(uint8_t *p, size_t len, uint64_t seq);
/* Returns the sequence number if the content matches it, UINT64_MAX if not. */
uint64_t payload_check(const uint8_t *p, size_t len);

/* Follows main's phase; on entering MEASURE / STOP takes the CPU snapshot. Returns the phase. */
int window_step(struct window *win, struct shared *sh, struct side_stats *st, ngtcp2_tstamp now);

void *client_main(void *arg);
void *server_main(void *arg);

#endif
