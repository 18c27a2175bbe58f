/*
 * mtun QUIC engine over ngtcp2 0.12 + GnuTLS (docs/decisions/0002-ngtcp2-engine-in-the-addon.md):
 * a sans-IO connection the TypeScript endpoint drives (src/quic/engine.ts) —
 * recv(datagram), send(out) until null, timeout()/onTimeout(). ngtcp2 keeps
 * no stream send data until ACK and no DATAGRAM queues, so this module owns
 * them, bounded, with counted drops. One JavaScript thread owns each
 * connection; nothing here locks. All ngtcp2 calls of mtun live in
 * src/native/quic-*.c so the move to ngtcp2 1.x touches these files only.
 */
#ifndef MTUN_QUIC_ENGINE_H
#define MTUN_QUIC_ENGINE_H

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <ngtcp2/ngtcp2.h>
#include <ngtcp2/ngtcp2_crypto.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include "codel.h"

/* Tuning constants (not from a spec). */
#define QE_CHUNK_BYTES 16384          /* stream buffer chunk; data never moves until ACKed */
#define QE_STREAM_SEND_CAP (1u << 20) /* unacknowledged bytes buffered per stream */
#define QE_MAX_ALPN 8
#define QE_MAX_REASON 256
#define QE_VEC_MAX 8 /* chunks handed to one writev_stream call */

/* A FIFO of bytes in fixed chunks. Send side: [acked, written) is in flight
 * (ngtcp2 holds pointers into it), [written, end) waits. Receive side: only
 * [head, end) is used. */
#define QE_CHUNK_SMALL 256            /* a first chunk for a small append (a PTO anchor, a capsule) */
struct qe_chunk {
  struct qe_chunk *next;
  size_t len; /* bytes filled */
  size_t cap; /* QE_CHUNK_BYTES, or QE_CHUNK_SMALL */
  uint8_t data[];
};
struct qe_buf {
  struct qe_chunk *head, *tail;
  size_t head_off; /* first live byte in head (acked / read) */
  size_t bytes;    /* live bytes from head_off to the end */
  /* send side only: write cursor */
  struct qe_chunk *wchunk;
  size_t woff;
  size_t unwritten; /* bytes not yet handed to ngtcp2 */
};
void qe_buf_free(struct qe_buf *b);
/* Appends up to len bytes; returns bytes taken (allocation failure stops early). */
size_t qe_buf_append(struct qe_buf *b, const uint8_t *p, size_t len);
/* Copies up to cap bytes out and drops them (receive side). */
size_t qe_buf_read(struct qe_buf *b, uint8_t *out, size_t cap);
/* Drops n bytes from the head (ACKed send data). */
void qe_buf_consume(struct qe_buf *b, size_t n);
/* Fills up to max vecs from the write cursor; returns the count. */
size_t qe_buf_unwritten_vecs(struct qe_buf *b, ngtcp2_vec *v, size_t max);
/* Moves the write cursor n bytes on. */
void qe_buf_advance_written(struct qe_buf *b, size_t n);

struct qe_stream {
  int64_t id;
  struct qe_stream *next; /* in the connection's list */
  struct qe_buf send, recv;
  uint64_t reset_code, stop_code;
  bool fin_queued;    /* app asked for FIN after the buffered bytes */
  bool fin_written;   /* FIN handed to ngtcp2 */
  bool fin_recvd;     /* peer's FIN arrived */
  bool fin_read;      /* the app read the FIN */
  bool reset_recvd;   /* RESET_STREAM from the peer */
  bool reset_read;    /* the app got the reset error */
  bool stop_recvd;    /* STOP_SENDING from the peer */
  bool shut_rd, shut_wr;
  bool closed;        /* ngtcp2 closed it */
  bool blocked;       /* flow-control blocked in the current send() */
};

/* Shared by connections (refcounted): TLS credentials and transport parameters. */
struct qe_config {
  int refs;
  bool server;
  gnutls_certificate_credentials_t cred;
  /* The TLS priorities, parsed once and shared by every session of this
   * config (GnuTLS refcounts it): parsed per session it cost 8 kB each. */
  gnutls_priority_t prio;
  bool verify_peer; /* client: check the server chain + name; server: request + check a client cert */
  bool has_ca;
  gnutls_datum_t alpn[QE_MAX_ALPN];
  unsigned alpn_count;
  uint64_t idle_ms, max_recv_udp, max_send_udp;
  uint64_t max_data, sd_bidi_local, sd_bidi_remote, sd_uni, streams_bidi, streams_uni;
  uint64_t max_stream_window, max_conn_window;
  bool disable_migration;
  ngtcp2_cc_algo cc;
  bool dgram;
  uint32_t dgram_rq, dgram_sq;
  struct mc_params codel; /* on each connection's DATAGRAM send queue; target 0: off */
  bool keylog;
  bool has_ticket;
  uint8_t ticket_key[64];
  bool has_reset_token;
  uint8_t reset_token[NGTCP2_STATELESS_RESET_TOKENLEN];
};
void qe_config_unref(struct qe_config *c);

/* A bounded ring of datagrams, each at most slot bytes. Nothing is allocated
 * until the first datagram is queued; the ring then doubles as needed up to
 * max slots (a connection that never carries a DATAGRAM, e.g. one opened by a
 * spoofed Initial, never pays for max x slot bytes). */
struct qe_dq {
  uint8_t *mem;
  uint32_t *lens;
  uint64_t *stamps; /* enqueue time of each slot (ns) when the ring is stamped (the send ring: CoDel), else NULL */
  bool stamped;
  uint32_t cap;  /* slots allocated */
  uint32_t max;  /* slots allowed (0: DATAGRAM off) */
  uint32_t slot, head, count;
};

enum qe_state { QE_OPEN, QE_CLOSING, QE_DRAINING, QE_CLOSED };

struct qe_error {
  bool set, app;
  uint64_t code;
  uint8_t reason[QE_MAX_REASON];
  size_t reasonlen;
};

struct qe_conn {
  ngtcp2_conn *conn; /* NULL on a server until the first packet arrives */
  gnutls_session_t tls;
  ngtcp2_crypto_conn_ref ref;
  struct qe_config *cfg;
  bool server;
  enum qe_state state;
  bool timed_out;
  bool handshake_done;
  bool ping_armed; /* a keep-alive PING is due in the next packet */
  bool tx_held;    /* a TUN thread holds packets of this connection a full socket buffer refused (dataplane.c dp_send_out):
                    * qe_conn_send writes none until they are sent (packet-number order on the wire). qe_lock */
  /* remote: where the connection sends. It changes only when ngtcp2 moves the
   * connection to another path after an authenticated packet from it (RFC 9000
   * §9.3: a rebinding client), never because a datagram arrived from elsewhere:
   * anyone who saw the connection ID could send one (quic-conn.c sync_peer). */
  struct sockaddr_storage local, remote;
  socklen_t locallen, remotelen;
  uint32_t peer_gen; /* bumped whenever remote changes */
  /* The source of the datagrams being received (quicSetRecvFrom): only the path ngtcp2 reads them on. */
  struct sockaddr_storage rx_from;
  socklen_t rx_fromlen;
  ngtcp2_cid scid, odcid;
  bool has_odcid;
  /* Server: the stateless_reset_token transport parameter (RFC 9000 §18.2),
   * copied from the shared config at accept, which sets it per connection. */
  bool has_reset_token;
  uint8_t reset_token[NGTCP2_STATELESS_RESET_TOKENLEN];
  char sni[256]; /* client: the name asked for; server: the name the client sent (kept by qe_tls_retire) */
  char *keylog_path; /* malloc'ed; NULL: no key log */
  /* Server, once the handshake is done: the GnuTLS session is freed (it held
   * about 14 kB per connection, issue #17) and what the endpoint still asks
   * of it is kept here (qe_tls_retire). */
  bool tls_retired;
  bool resumed;
  uint8_t alpn_len;
  uint8_t alpn_sel[255];
  gnutls_datum_t *peer_chain; /* one malloc'ed block: the array, then the DER bytes; NULL: none */
  unsigned peer_chain_n;
  struct qe_stream *streams;
  struct qe_stream *rr; /* round-robin position for sending */
  struct qe_dq dq_send, dq_recv;
  uint64_t dgram_recv_dropped;
  struct mc_state codel;          /* CoDel on dq_send (cfg->codel) */
  uint64_t dgram_send_delay_dropped; /* DATAGRAMs CoDel dropped from dq_send: they waited too long */
  /* The PTO anchor (quic-conn.c anchor_due): a frame the peer ignores,
   * queued on our stream anchor_id while DATAGRAMs go out: when the stream
   * holds nothing unacknowledged, and every half round trip's worth of
   * bytes sent. anchor_len 0: off. */
  int64_t anchor_id;
  uint8_t anchor_frame[8];
  uint8_t anchor_len;
  ngtcp2_tstamp anchor_at; /* when the last one was queued */
  uint64_t anchor_bytes;   /* bytes_sent when the last one was queued */
  uint64_t anchors_sent;
  struct qe_error local_err, peer_err;
  /* closing: the CONNECTION_CLOSE packet, resent when the peer keeps sending */
  uint8_t *close_pkt;
  size_t close_len;
  bool close_pending;
  uint64_t closing_rx; /* packets received in the closing period: the 1st, 2nd, 4th, 8th … are answered */
  ngtcp2_tstamp drain_end;
  /* counters (quiche Stats) */
  uint64_t pkts_sent, pkts_recv, bytes_sent, bytes_recv;
  /* packets declared lost: with STREAM frames of closed streams, with DATAGRAM frames */
  uint64_t lost_stream_pkts, lost_dgram_pkts;
  /* the path's last figures, kept by qe_conn_release for stats after it */
  bool has_last_path;
  double last_rtt_ms, last_cwnd, last_pmtu, last_rate;
  char errmsg[160];
};

ngtcp2_tstamp qe_now(void);
/*
 * The engine lock. The JavaScript thread holds it in every engine call
 * (quic-napi.c wraps each exported function and finalizer) and the agent's
 * data-plane thread (dataplane.c) while it queues and packetizes, so one
 * connection is never used by two threads at once. Recursive: a finalizer
 * may run inside a call on the JavaScript thread.
 */
void qe_lock(void);
void qe_unlock(void);
/* Whether the calling thread holds the engine lock (lock-order checks). */
bool qe_lock_held(void);
/* Client: creates the connection at once. Returns NULL with errmsg filled. */
struct qe_conn *qe_conn_client(struct qe_config *cfg, const char *sni, const uint8_t *scid, size_t scidlen,
                               const struct sockaddr *local, socklen_t locallen, const struct sockaddr *remote,
                               socklen_t remotelen, char *err, size_t errlen);
/* Server: the ngtcp2 connection is created from the first Initial in qe_conn_recv. */
struct qe_conn *qe_conn_server(struct qe_config *cfg, const uint8_t *scid, size_t scidlen, const uint8_t *odcid,
                               size_t odcidlen, const struct sockaddr *local, socklen_t locallen,
                               const struct sockaddr *remote, socklen_t remotelen, char *err, size_t errlen);
/* Frees everything but the struct itself — ngtcp2 connection, TLS session,
 * streams, DATAGRAM rings, close packet, the config reference — and leaves
 * the connection closed; errors, counters and last path figures stay
 * readable. Idempotent. The endpoint calls it when a connection ends, so
 * native memory never waits for the garbage collector. */
void qe_conn_release(struct qe_conn *c);
/* qe_conn_release, then the struct. */
void qe_conn_free(struct qe_conn *c);
/* Returns 0, or -1 with c->errmsg set (the packet was refused; a close may be queued). */
int qe_conn_recv(struct qe_conn *c, const uint8_t *pkt, size_t len, const struct sockaddr *from, socklen_t fromlen);
/* Writes one UDP payload into out; returns its length, 0 when nothing to send, -1 on failure. */
ssize_t qe_conn_send(struct qe_conn *c, uint8_t *out, size_t cap);
/* Microseconds until the next deadline, or -1 for none. */
int64_t qe_conn_timeout_us(struct qe_conn *c);
void qe_conn_on_timeout(struct qe_conn *c);
void qe_conn_close(struct qe_conn *c, bool app, uint64_t code, const uint8_t *reason, size_t reasonlen);
void qe_conn_ping(struct qe_conn *c);
/* The connection is idle: frees its empty DATAGRAM rings, as qe_conn_ping does (the gateway, which sends no keep-alives). */
void qe_conn_trim_idle(struct qe_conn *c);
/* Packets declared lost that carried STREAM (counted per stream) or DATAGRAM frames; spurious losses included. */
uint64_t qe_conn_lost_pkts(struct qe_conn *c);

/* Streams (quic-stream.c). Return values follow quiche: see quic-napi.c. */
enum { QE_S_OK = 0, QE_S_DONE = -1, QE_S_RESET = -2, QE_S_STOPPED = -3, QE_S_LIMIT = -4, QE_S_STATE = -5 };
struct qe_stream *qe_stream_find(struct qe_conn *c, int64_t id);
struct qe_stream *qe_stream_new(struct qe_conn *c, int64_t id);
void qe_stream_free_all(struct qe_conn *c);
void qe_stream_maybe_free(struct qe_conn *c, struct qe_stream *s);
/* Accepts bytes into the send buffer; *taken gets how many. Returns QE_S_*. */
int qe_stream_send(struct qe_conn *c, int64_t id, const uint8_t *p, size_t len, bool fin, size_t *taken,
                   uint64_t *code);
/* Reads into out; *n bytes, *fin. Returns QE_S_OK, QE_S_DONE (nothing), QE_S_RESET (code), QE_S_STATE. */
int qe_stream_recv(struct qe_conn *c, int64_t id, uint8_t *out, size_t cap, size_t *n, bool *fin, uint64_t *code);
int qe_stream_shutdown(struct qe_conn *c, int64_t id, bool read, uint64_t code);
bool qe_stream_readable(const struct qe_stream *s);
bool qe_stream_writable(const struct qe_stream *s);
void qe_stream_callbacks(ngtcp2_callbacks *cb);
/* Records STOP_SENDING codes found in a decrypted packet payload (ngtcp2 0.12 does not report them). */
void qe_scan_frames(struct qe_conn *c, const uint8_t *p, size_t len);

/* Datagrams (quic-stream.c). */
/* stamped: keep each datagram's enqueue time (qe_dq_push's stamp) for CoDel. */
void qe_dq_init(struct qe_dq *q, uint32_t max, uint32_t slot, bool stamped);
/* Makes room for one more datagram (allocating or growing the ring); false when max are queued or out of memory. */
bool qe_dq_room(struct qe_dq *q);
/* Appends one datagram of at most slot bytes; qe_dq_room must have said yes. */
void qe_dq_push(struct qe_dq *q, const uint8_t *p, size_t len, uint64_t stamp);
/* Drops the oldest datagram. */
void qe_dq_pop(struct qe_dq *q);
void qe_dq_free(struct qe_dq *q);
/* Frees an empty ring (an idle connection holds none; the next datagram allocates again). */
void qe_dq_trim(struct qe_dq *q);
/* Largest DATAGRAM payload that fits a packet now, or -1 before the peer allowed DATAGRAM. */
int64_t qe_dgram_max_writable(struct qe_conn *c);

/* ngtcp2's allocator (quic-pages.c): blocks of 4-64 KiB in whole, lazily backed pages. */
extern const ngtcp2_mem qe_pages_mem;
/* Bytes of pages handed out to connections now. */
size_t qe_pages_in_use(void);

/* TLS (quic-tls.c). */
int qe_tls_session(struct qe_conn *c, char *err, size_t errlen);
/* Server, handshake done: keeps ALPN, SNI, resumption and the peer chain, then
 * frees the TLS session (QUIC has no post-handshake TLS for a server: RFC 9001
 * §4.1.3, §6). Leaves the session in place if the copy cannot be allocated. */
void qe_tls_retire(struct qe_conn *c);
/* Parses mtun's TLS priority string (TLS 1.3, QUIC's ciphers) into *out; GnuTLS error code. */
int qe_tls_priority(gnutls_priority_t *out);
/* Writes one NSS key log line (label, client random, secret) to c->keylog_path. */
void qe_tls_enable_keylog(struct qe_conn *c);

#endif
