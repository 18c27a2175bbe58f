/*
 * mtun QUIC engine: stream buffers and DATAGRAM queues. ngtcp2 0.12 keeps
 * pointers into stream send data until it is ACKed (RFC 9000 §2.2,
 * retransmission of STREAM frames), so send data lives in fixed chunks that
 * never move and are freed as ACKs arrive. Receive data is copied out of
 * ngtcp2's callback and handed to the app on streamRecv; flow-control credit
 * (RFC 9000 §4) is returned only as the app reads, which bounds it.
 */
#include "quic-engine.h"

#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ buffers */

void qe_buf_free(struct qe_buf *b) {
  struct qe_chunk *k = b->head;
  while (k != NULL) {
    struct qe_chunk *n = k->next;
    free(k);
    k = n;
  }
  memset(b, 0, sizeof *b);
}

size_t qe_buf_append(struct qe_buf *b, const uint8_t *p, size_t len) {
  size_t done = 0;
  while (done < len) {
    struct qe_chunk *t = b->tail;
    if (t == NULL || t->len == t->cap) {
      /* An empty buffer given a few bytes (most control traffic) takes a small chunk, not 16 KiB. */
      size_t cap = t == NULL && len - done <= QE_CHUNK_SMALL ? QE_CHUNK_SMALL : QE_CHUNK_BYTES;
      struct qe_chunk *k = malloc(sizeof *k + cap);
      if (k == NULL) break;
      k->next = NULL;
      k->len = 0;
      k->cap = cap;
      if (t == NULL) {
        b->head = b->tail = k;
        b->head_off = 0;
      } else {
        t->next = k;
        b->tail = k;
      }
      t = k;
      if (b->wchunk == NULL) {
        b->wchunk = k;
        b->woff = 0;
      }
    }
    size_t n = t->cap - t->len;
    if (n > len - done) n = len - done;
    memcpy(t->data + t->len, p + done, n);
    t->len += n;
    done += n;
  }
  b->bytes += done;
  b->unwritten += done;
  return done;
}

/* Frees the head chunk once every byte of it is consumed. */
static void pop_head(struct qe_buf *b) {
  struct qe_chunk *k = b->head;
  b->head = k->next;
  if (b->head == NULL) b->tail = NULL;
  if (b->wchunk == k) {
    b->wchunk = b->head;
    b->woff = 0;
  }
  b->head_off = 0;
  free(k);
}

size_t qe_buf_read(struct qe_buf *b, uint8_t *out, size_t cap) {
  size_t done = 0;
  while (done < cap && b->head != NULL) {
    struct qe_chunk *k = b->head;
    size_t n = k->len - b->head_off;
    if (n > cap - done) n = cap - done;
    memcpy(out + done, k->data + b->head_off, n);
    b->head_off += n;
    done += n;
    /* Read to its end: freed, the tail too (the next append allocates again). */
    if (b->head_off == k->len) pop_head(b);
  }
  b->bytes -= done;
  b->unwritten = b->bytes;
  return done;
}

void qe_buf_consume(struct qe_buf *b, size_t n) {
  while (n > 0 && b->head != NULL) {
    struct qe_chunk *k = b->head;
    size_t avail = k->len - b->head_off;
    size_t m = n < avail ? n : avail;
    b->head_off += m;
    b->bytes -= m;
    n -= m;
    /* Every byte of it ACKed (so written, and no longer referenced by
     * ngtcp2): freed, the tail too. Keeping a partly filled tail for later
     * appends held a 16 KiB chunk per stream that ever sent: the HTTP/3
     * control and QPACK streams and the CONNECT-IP request stream of every
     * idle session, most of a session's memory (issue #17). */
    if (b->head_off == k->len) pop_head(b);
  }
}

size_t qe_buf_unwritten_vecs(struct qe_buf *b, ngtcp2_vec *v, size_t max) {
  size_t n = 0;
  struct qe_chunk *k = b->wchunk;
  size_t off = b->woff;
  size_t left = b->unwritten;
  while (k != NULL && n < max && left > 0) {
    size_t len = k->len - off;
    if (len > left) len = left;
    if (len > 0) {
      v[n].base = k->data + off;
      v[n].len = len;
      n++;
      left -= len;
    }
    k = k->next;
    off = 0;
  }
  return n;
}

void qe_buf_advance_written(struct qe_buf *b, size_t n) {
  b->unwritten -= n;
  while (n > 0 && b->wchunk != NULL) {
    size_t len = b->wchunk->len - b->woff;
    if (n < len) {
      b->woff += n;
      return;
    }
    n -= len;
    b->woff += len;
    if (b->wchunk->next == NULL) return; /* stays at the end of the tail */
    b->wchunk = b->wchunk->next;
    b->woff = 0;
  }
}

/* ------------------------------------------------------------ streams */

struct qe_stream *qe_stream_find(struct qe_conn *c, int64_t id) {
  for (struct qe_stream *s = c->streams; s != NULL; s = s->next)
    if (s->id == id) return s;
  return NULL;
}

struct qe_stream *qe_stream_new(struct qe_conn *c, int64_t id) {
  struct qe_stream *s = calloc(1, sizeof *s);
  if (s == NULL) return NULL;
  s->id = id;
  s->next = c->streams;
  c->streams = s;
  return s;
}

static void unlink_free(struct qe_conn *c, struct qe_stream *s) {
  for (struct qe_stream **p = &c->streams; *p != NULL; p = &(*p)->next) {
    if (*p == s) {
      *p = s->next;
      break;
    }
  }
  if (c->rr == s) c->rr = NULL;
  qe_buf_free(&s->send);
  qe_buf_free(&s->recv);
  free(s);
}

void qe_stream_free_all(struct qe_conn *c) {
  while (c->streams != NULL) unlink_free(c, c->streams);
}

/* Frees a stream ngtcp2 has closed once the app has seen its end. */
void qe_stream_maybe_free(struct qe_conn *c, struct qe_stream *s) {
  if (!s->closed) return;
  /* A locally opened uni stream has no read side; any other needs its end read. */
  bool local_uni = (s->id & 0x2) != 0 && ngtcp2_conn_is_local_stream(c->conn, s->id);
  bool read_done = local_uni || s->shut_rd || s->fin_read || s->reset_read;
  if (read_done && s->recv.bytes == 0) unlink_free(c, s);
}

bool qe_stream_readable(const struct qe_stream *s) {
  if (s->shut_rd) return false;
  return s->recv.bytes > 0 || (s->fin_recvd && !s->fin_read) || (s->reset_recvd && !s->reset_read);
}

bool qe_stream_writable(const struct qe_stream *s) {
  if (s->shut_wr || s->fin_queued || s->closed) return false;
  return s->stop_recvd || s->send.bytes < QE_STREAM_SEND_CAP;
}

/* Opens local streams up to |id| (RFC 9000 §3.2: opening a stream opens the lower ones of its type). */
static int open_local(struct qe_conn *c, int64_t id) {
  bool uni = (id & 0x2) != 0;
  for (;;) {
    int64_t got;
    int rv = uni ? ngtcp2_conn_open_uni_stream(c->conn, &got, NULL) : ngtcp2_conn_open_bidi_stream(c->conn, &got, NULL);
    if (rv == NGTCP2_ERR_STREAM_ID_BLOCKED) return QE_S_LIMIT;
    if (rv != 0) return QE_S_STATE;
    struct qe_stream *s = qe_stream_new(c, got);
    if (s == NULL) return QE_S_STATE;
    if (got == id) return QE_S_OK;
    if (got > id) return QE_S_STATE;
  }
}

int qe_stream_send(struct qe_conn *c, int64_t id, const uint8_t *p, size_t len, bool fin, size_t *taken,
                   uint64_t *code) {
  *taken = 0;
  if (c->conn == NULL || c->state != QE_OPEN) return QE_S_DONE;
  struct qe_stream *s = qe_stream_find(c, id);
  if (s == NULL) {
    if (!ngtcp2_conn_is_local_stream(c->conn, id)) return QE_S_STATE; /* a peer stream not yet opened or gone */
    int rv = open_local(c, id);
    if (rv != QE_S_OK) return rv;
    s = qe_stream_find(c, id);
  }
  if (s->stop_recvd) {
    *code = s->stop_code;
    return QE_S_STOPPED;
  }
  if (s->shut_wr || s->fin_queued || s->closed) return QE_S_STATE;
  size_t room = s->send.bytes < QE_STREAM_SEND_CAP ? QE_STREAM_SEND_CAP - s->send.bytes : 0;
  size_t n = len < room ? len : room;
  if (n == 0 && len > 0) return QE_S_DONE;
  if (n > 0) n = qe_buf_append(&s->send, p, n);
  *taken = n;
  if (fin && n == len) s->fin_queued = true;
  return QE_S_OK;
}

int qe_stream_recv(struct qe_conn *c, int64_t id, uint8_t *out, size_t cap, size_t *n, bool *fin, uint64_t *code) {
  *n = 0;
  *fin = false;
  struct qe_stream *s = qe_stream_find(c, id);
  if (s == NULL) return QE_S_STATE;
  /* After STOP_SENDING the app reads nothing more, not even the FIN (as quiche). */
  if (s->shut_rd) return QE_S_DONE;
  if (s->reset_recvd && !s->reset_read) {
    /* RFC 9000 §3.2: a reset discards what was not read. */
    size_t dropped = s->recv.bytes;
    qe_buf_free(&s->recv);
    if (dropped > 0 && c->conn != NULL) ngtcp2_conn_extend_max_offset(c->conn, dropped);
    s->reset_read = true;
    *code = s->reset_code;
    qe_stream_maybe_free(c, s);
    return QE_S_RESET;
  }
  if (s->recv.bytes == 0 && !(s->fin_recvd && !s->fin_read)) return QE_S_DONE;
  size_t got = qe_buf_read(&s->recv, out, cap);
  *n = got;
  if (got > 0 && c->conn != NULL && c->state == QE_OPEN) {
    ngtcp2_conn_extend_max_stream_offset(c->conn, id, got);
    ngtcp2_conn_extend_max_offset(c->conn, got);
  }
  if (s->recv.bytes == 0 && s->fin_recvd) {
    *fin = true;
    s->fin_read = true;
    qe_stream_maybe_free(c, s);
  }
  return QE_S_OK;
}

int qe_stream_shutdown(struct qe_conn *c, int64_t id, bool read, uint64_t code) {
  struct qe_stream *s = qe_stream_find(c, id);
  if (s == NULL || c->conn == NULL) return QE_S_STATE;
  if (read) {
    if (s->shut_rd) return QE_S_DONE;
    s->shut_rd = true;
    size_t dropped = s->recv.bytes;
    qe_buf_free(&s->recv);
    if (dropped > 0) ngtcp2_conn_extend_max_offset(c->conn, dropped);
    if (!s->fin_recvd && !s->reset_recvd) ngtcp2_conn_shutdown_stream_read(c->conn, id, code);
  } else {
    if (s->shut_wr) return QE_S_DONE;
    s->shut_wr = true;
    s->send.unwritten = 0; /* in-flight bytes stay until the stream closes: ngtcp2 may point at them */
    ngtcp2_conn_shutdown_stream_write(c->conn, id, code);
  }
  qe_stream_maybe_free(c, s);
  return QE_S_OK;
}

/* ------------------------------------------------ ngtcp2 stream callbacks */

static int on_stream_open(ngtcp2_conn *conn, int64_t id, void *ud) {
  struct qe_conn *c = ud;
  if (qe_stream_find(c, id) == NULL && qe_stream_new(c, id) == NULL) return NGTCP2_ERR_CALLBACK_FAILURE;
  return 0;
}

static int on_recv_stream_data(ngtcp2_conn *conn, uint32_t flags, int64_t id, uint64_t offset, const uint8_t *data,
                               size_t len, void *ud, void *sud) {
  struct qe_conn *c = ud;
  struct qe_stream *s = qe_stream_find(c, id);
  if (s == NULL && (s = qe_stream_new(c, id)) == NULL) return NGTCP2_ERR_CALLBACK_FAILURE;
  if (s->shut_rd) {
    ngtcp2_conn_extend_max_stream_offset(conn, id, len);
    ngtcp2_conn_extend_max_offset(conn, len);
  } else if (len > 0 && qe_buf_append(&s->recv, data, len) != len) {
    return NGTCP2_ERR_CALLBACK_FAILURE;
  }
  s->recv.unwritten = 0;
  if (flags & NGTCP2_STREAM_DATA_FLAG_FIN) s->fin_recvd = true;
  return 0;
}

static int on_acked(ngtcp2_conn *conn, int64_t id, uint64_t offset, uint64_t datalen, void *ud, void *sud) {
  struct qe_stream *s = qe_stream_find(ud, id);
  if (s != NULL) qe_buf_consume(&s->send, (size_t)datalen);
  return 0;
}

static int on_stream_close(ngtcp2_conn *conn, uint32_t flags, int64_t id, uint64_t code, void *ud, void *sud) {
  struct qe_conn *c = ud;
  struct qe_stream *s = qe_stream_find(c, id);
  if (s == NULL) return 0;
  s->closed = true;
  if ((flags & NGTCP2_STREAM_CLOSE_FLAG_APP_ERROR_CODE_SET) && !s->shut_wr && !s->fin_written) {
    /* Our write side ended with an error we did not send: the peer's STOP_SENDING code. */
    s->stop_recvd = true;
    s->stop_code = code;
  }
  c->lost_stream_pkts += ngtcp2_conn_get_stream_loss_count(conn, id);
  /* RFC 9000 §4.6: a closed peer-initiated stream gives its credit back. ngtcp2
   * leaves this to the application; without it a peer could open only the
   * initial max_streams over the connection's whole life (an agent's 100th
   * CONNECT-UDP stream hung). */
  if (!ngtcp2_conn_is_local_stream(conn, id)) {
    if ((id & 0x2) == 0) ngtcp2_conn_extend_max_streams_bidi(conn, 1);
    else ngtcp2_conn_extend_max_streams_uni(conn, 1);
  }
  /* ngtcp2 no longer points at the send data. */
  qe_buf_free(&s->send);
  qe_stream_maybe_free(c, s);
  return 0;
}

static int on_stream_reset(ngtcp2_conn *conn, int64_t id, uint64_t final_size, uint64_t code, void *ud, void *sud) {
  struct qe_stream *s = qe_stream_find(ud, id);
  if (s != NULL && !s->fin_read && !s->shut_rd) {
    s->reset_recvd = true;
    s->reset_code = code;
  }
  return 0;
}

static int on_stop_sending(ngtcp2_conn *conn, int64_t id, uint64_t code, void *ud, void *sud) {
  struct qe_stream *s = qe_stream_find(ud, id);
  if (s != NULL) {
    s->stop_recvd = true;
    s->stop_code = code;
  }
  return 0;
}

void qe_stream_callbacks(ngtcp2_callbacks *cb) {
  cb->stream_open = on_stream_open;
  cb->recv_stream_data = on_recv_stream_data;
  cb->acked_stream_data_offset = on_acked;
  cb->stream_close = on_stream_close;
  cb->stream_reset = on_stream_reset;
  cb->stream_stop_sending = on_stop_sending;
}

/* ------------------------------------------------------------ datagrams */

void qe_dq_init(struct qe_dq *q, uint32_t max, uint32_t slot, bool stamped) {
  memset(q, 0, sizeof *q);
  q->max = max;
  q->slot = slot;
  q->stamped = stamped;
}

/*
 * Slots of a ring's first allocation. A tunnel session mostly holds one
 * datagram at a time in each direction; 8 slots of ~1.5 kB were 24 kB per
 * connection for both rings, half of the per-session memory goal (#17).
 * Rings double when a burst needs more (up to the configured queue length).
 */
#define QE_DQ_FIRST 2

bool qe_dq_room(struct qe_dq *q) {
  if (q->count < q->cap) return true;
  if (q->cap >= q->max) return false;
  uint32_t ncap = q->cap == 0 ? QE_DQ_FIRST : q->cap * 2;
  if (ncap > q->max) ncap = q->max;
  uint8_t *mem = malloc((size_t)ncap * q->slot);
  uint32_t *lens = malloc((size_t)ncap * sizeof *lens);
  uint64_t *stamps = q->stamped ? malloc((size_t)ncap * sizeof *stamps) : NULL;
  if (mem == NULL || lens == NULL || (q->stamped && stamps == NULL)) {
    free(mem);
    free(lens);
    free(stamps);
    return false;
  }
  /* The queued datagrams, oldest first, to the start of the new ring (the ring is full: count == cap). */
  for (uint32_t i = 0; i < q->count; i++) {
    uint32_t k = (q->head + i) % q->cap;
    memcpy(mem + (size_t)i * q->slot, q->mem + (size_t)k * q->slot, q->lens[k]);
    lens[i] = q->lens[k];
    if (stamps != NULL) stamps[i] = q->stamps[k];
  }
  free(q->mem);
  free(q->lens);
  free(q->stamps);
  q->mem = mem;
  q->lens = lens;
  q->stamps = stamps;
  q->cap = ncap;
  q->head = 0;
  return true;
}

void qe_dq_push(struct qe_dq *q, const uint8_t *p, size_t len, uint64_t stamp) {
  uint32_t k = (q->head + q->count) % q->cap;
  memcpy(q->mem + (size_t)k * q->slot, p, len);
  q->lens[k] = (uint32_t)len;
  if (q->stamps != NULL) q->stamps[k] = stamp;
  q->count++;
}

void qe_dq_pop(struct qe_dq *q) {
  q->head = (q->head + 1) % q->cap;
  /* Empty: start over at slot 0, so a queue that rarely holds more than one keeps using the same (cached) slot.
   * A ring a burst grew stays until the connection is idle (qe_dq_trim at its keep-alive): freeing it
   * whenever it empties regrew it on every burst (2, 4, … slots, a copy each time), 0.4-1 µs more per
   * datagram for bursts of 64-256, which a bulk transfer has at every receive batch. */
  if (--q->count == 0) q->head = 0;
}

void qe_dq_trim(struct qe_dq *q) {
  if (q->count == 0) qe_dq_free(q);
}

void qe_dq_free(struct qe_dq *q) {
  free(q->mem);
  free(q->lens);
  free(q->stamps);
  q->mem = NULL;
  q->lens = NULL;
  q->stamps = NULL;
  q->cap = q->head = q->count = 0;
}

/* ------------------------------------------- STOP_SENDING codes (0.12 gap) */

/* RFC 9000 §16 varint at p[*off]; false when it runs past end. */
static bool varint(const uint8_t *p, size_t end, size_t *off, uint64_t *v) {
  if (*off >= end) return false;
  size_t n = (size_t)1 << (p[*off] >> 6);
  if (*off + n > end) return false;
  uint64_t x = p[*off] & 0x3f;
  for (size_t i = 1; i < n; i++) x = (x << 8) | p[*off + i];
  *off += n;
  *v = x;
  return true;
}

static bool skip_varints(const uint8_t *p, size_t end, size_t *off, int n) {
  uint64_t v;
  for (int i = 0; i < n; i++)
    if (!varint(p, end, off, &v)) return false;
  return true;
}

/*
 * ngtcp2 0.12 answers a peer's STOP_SENDING (RFC 9000 §19.5) by resetting the
 * stream itself and tells the application neither the event nor the error
 * code, which HTTP/3 needs (RFC 9114 §4.1.1). This walks the frames of a
 * decrypted packet (RFC 9000 §19) and records STOP_SENDING codes on their
 * streams. It stops at the first frame it cannot size; ngtcp2 still does the
 * real parsing and validation.
 */
void qe_scan_frames(struct qe_conn *c, const uint8_t *p, size_t len) {
  size_t off = 0;
  uint64_t t, a, b, n;
  while (off < len) {
    if (!varint(p, len, &off, &t)) return;
    switch (t) {
    case 0x00: case 0x01: case 0x1e: break;                 /* PADDING, PING, HANDSHAKE_DONE */
    case 0x02: case 0x03:                                   /* ACK */
      if (!skip_varints(p, len, &off, 2) || !varint(p, len, &off, &n) || !skip_varints(p, len, &off, 1)) return;
      if (n > len || !skip_varints(p, len, &off, (int)(2 * n))) return;
      if (t == 0x03 && !skip_varints(p, len, &off, 3)) return;
      break;
    case 0x04: if (!skip_varints(p, len, &off, 3)) return; break; /* RESET_STREAM */
    case 0x05:                                              /* STOP_SENDING */
      if (!varint(p, len, &off, &a) || !varint(p, len, &off, &b)) return;
      for (struct qe_stream *s = c->streams; s != NULL; s = s->next) {
        if ((uint64_t)s->id == a && !s->stop_recvd && !s->shut_wr) {
          s->stop_recvd = true;
          s->stop_code = b;
        }
      }
      break;
    case 0x06: case 0x07:                                   /* CRYPTO, NEW_TOKEN */
      if ((t == 0x06 && !skip_varints(p, len, &off, 1)) || !varint(p, len, &off, &n) || n > len - off) return;
      off += n;
      break;
    case 0x10: case 0x12: case 0x13: case 0x14: case 0x16: case 0x17: case 0x19:
      if (!skip_varints(p, len, &off, 1)) return;
      break;
    case 0x11: case 0x15: if (!skip_varints(p, len, &off, 2)) return; break;
    case 0x18:                                              /* NEW_CONNECTION_ID */
      if (!skip_varints(p, len, &off, 2) || off >= len) return;
      off += 1 + p[off] + 16;
      break;
    case 0x1a: case 0x1b: off += 8; break;                  /* PATH_CHALLENGE/RESPONSE */
    case 0x1c: case 0x1d: return;                           /* CONNECTION_CLOSE: nothing after matters */
    case 0x30: return;                                      /* DATAGRAM to the end */
    case 0x31:                                              /* DATAGRAM with length */
      if (!varint(p, len, &off, &n) || n > len - off) return;
      off += n;
      break;
    default:
      if (t >= 0x08 && t <= 0x0f) {                         /* STREAM */
        if (!skip_varints(p, len, &off, (t & 0x04) ? 2 : 1)) return;
        if (!(t & 0x02)) return;                            /* runs to the end */
        if (!varint(p, len, &off, &n) || n > len - off) return;
        off += n;
        break;
      }
      return;
    }
  }
}
