/*
 * mtun QUIC engine: the N-API surface of connections (functions named
 * quic*; configs and stateless packets are in quic-napi-config.c). Handles
 * are napi externals: a connection is freed when JavaScript drops it and
 * keeps its config alive. Buffers passed in are read during the call only.
 * src/quic/ngtcp2.ts wraps these into the engine interface src/quic uses.
 */
#include "quic-napi.h"

#include <gnutls/x509.h>

/* ------------------------------------------------------------ connections */

static void conn_finalize(napi_env env, void *data, void *hint) {
  qe_lock();
  qe_conn_free(data);
  qe_unlock();
}

/* Every exported engine function runs under the engine lock (quic-engine.h). */
static napi_value locked_call(napi_env env, napi_callback_info info) {
  void *data = NULL;
  if (napi_get_cb_info(env, info, NULL, NULL, NULL, &data) != napi_ok || data == NULL) return NULL;
  napi_callback cb;
  memcpy(&cb, &data, sizeof cb);
  qe_lock();
  napi_value r = cb(env, info);
  qe_unlock();
  return r;
}

bool qn_export_locked(napi_env env, napi_value exports, const char *name, napi_callback cb) {
  void *data;
  memcpy(&data, &cb, sizeof data);
  napi_value fn;
  if (napi_create_function(env, name, NAPI_AUTO_LENGTH, locked_call, data, &fn) != napi_ok) return false;
  return napi_set_named_property(env, exports, name, fn) == napi_ok;
}

static napi_value wrap_conn(napi_env env, struct qe_conn *c) {
  napi_value r;
  if (napi_create_external(env, c, conn_finalize, NULL, &r) != napi_ok) {
    qe_conn_free(c);
    QE_ERR(env, "quic: cannot wrap connection");
  }
  return r;
}

/* quicConnect(cfg, sni|null, scid, localHost, localPort, remoteHost, remotePort) */
static napi_value conn_connect(napi_env env, napi_callback_info info) {
  MTUN_ARGS(7);
  struct qe_config *cfg = ext(env, argv[0]);
  char sni[256] = "";
  size_t sl;
  uint8_t *scid;
  size_t scidlen;
  struct sockaddr_storage l, r;
  socklen_t ll, rl;
  if (cfg == NULL || !bytes_of(env, argv[2], &scid, &scidlen) || scidlen > NGTCP2_MAX_CIDLEN)
    return mtun_throw_type(env, "quic: quicConnect(config, sni, scid, ...)");
  if (!is_nullish(env, argv[1]) && !mtun_arg_str(env, argv[1], "sni", sni, sizeof sni, &sl)) return NULL;
  if (!sockaddr_of(env, argv[3], argv[4], &l, &ll) || !sockaddr_of(env, argv[5], argv[6], &r, &rl)) return NULL;
  char err[200];
  struct qe_conn *c = qe_conn_client(cfg, sni, scid, scidlen, (struct sockaddr *)&l, ll, (struct sockaddr *)&r, rl,
                                     err, sizeof err);
  if (c == NULL) QE_ERR(env, "quic: connect: %s", err);
  return wrap_conn(env, c);
}

/* quicAccept(cfg, scid, odcid|null, localHost, localPort, remoteHost, remotePort) */
static napi_value conn_accept(napi_env env, napi_callback_info info) {
  MTUN_ARGS(7);
  struct qe_config *cfg = ext(env, argv[0]);
  uint8_t *scid, *odcid = NULL;
  size_t scidlen, odcidlen = 0;
  struct sockaddr_storage l, r;
  socklen_t ll, rl;
  if (cfg == NULL || !bytes_of(env, argv[1], &scid, &scidlen) || scidlen > NGTCP2_MAX_CIDLEN)
    return mtun_throw_type(env, "quic: quicAccept(config, scid, odcid, ...)");
  if (!is_nullish(env, argv[2]) && (!bytes_of(env, argv[2], &odcid, &odcidlen) || odcidlen > NGTCP2_MAX_CIDLEN))
    return mtun_throw_type(env, "quic: odcid must be a Uint8Array of at most 20 bytes");
  if (!sockaddr_of(env, argv[3], argv[4], &l, &ll) || !sockaddr_of(env, argv[5], argv[6], &r, &rl)) return NULL;
  char err[200];
  struct qe_conn *c = qe_conn_server(cfg, scid, scidlen, odcid, odcidlen, (struct sockaddr *)&l, ll,
                                     (struct sockaddr *)&r, rl, err, sizeof err);
  if (c == NULL) QE_ERR(env, "quic: accept: %s", err);
  return wrap_conn(env, c);
}

/* The (connection, bytes) arguments most calls take; NULL after throwing. */
/*
 * (conn, bytes[, offset, length]): the connection and a byte range. With
 * offset and length, the range [offset, offset + length) of bytes, checked
 * against its size: the caller passes a packet inside a batch slot without
 * creating a view object per packet.
 */
static struct qe_conn *conn_bytes(napi_env env, napi_callback_info info, uint8_t **p, size_t *len, const char *what) {
  size_t argc = 4;
  napi_value argv[4];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2) {
    mtun_throw_type(env, what);
    return NULL;
  }
  struct qe_conn *c = ext(env, argv[0]);
  if (c == NULL || !bytes_of(env, argv[1], p, len)) {
    mtun_throw_type(env, what);
    return NULL;
  }
  if (argc == 3) {
    mtun_throw_type(env, "quic: an offset needs a length");
    return NULL;
  }
  if (argc >= 4) {
    uint32_t off, n;
    if (!mtun_arg_u32(env, argv[2], "offset", &off) || !mtun_arg_u32(env, argv[3], "length", &n)) return NULL;
    if ((size_t)off > *len || (size_t)n > *len - off) {
      mtun_throw_type(env, "quic: offset + length beyond the buffer");
      return NULL;
    }
    *p += off;
    *len = n;
  }
  return c;
}

/*
 * quicSetRecvFrom(conn, host, port): the source address of the datagrams
 * quicRecv is given from now on: the path ngtcp2 reads them on. Where the
 * connection sends changes only if ngtcp2 moves to that path (an
 * authenticated packet; quicInfo's peer generation says so, quicPeer reads it).
 */
static napi_value conn_set_recv_from(napi_env env, napi_callback_info info) {
  MTUN_ARGS(3);
  CONN(argv[0]);
  struct sockaddr_storage r;
  socklen_t rl;
  if (!sockaddr_of(env, argv[1], argv[2], &r, &rl)) return NULL;
  memcpy(&c->rx_from, &r, rl);
  c->rx_fromlen = rl;
  return NULL;
}

/* quicPeer(conn, slot): writes where the connection sends (ngtcp2's current path) into the peer part of a 36-byte address slot. */
static napi_value conn_peer(napi_env env, napi_callback_info info) {
  MTUN_ARGS(2);
  CONN(argv[0]);
  uint8_t *slot;
  size_t slotlen;
  if (!bytes_of(env, argv[1], &slot, &slotlen) || slotlen < MTUN_ADDR_SLOT) return mtun_throw_type(env, "quic: quicPeer: slot must be a 36-byte Uint8Array");
  mtun_name_to_slot((const struct sockaddr_in6 *)&c->remote, slot);
  return NULL;
}

/* quicRecv(conn, data[, offset, length]) → 0, or throws "quic: <reason>" (a close may be queued). */
/* One received packet, on the path quicSetRecvFrom last set. */
static int recv_on_path(struct qe_conn *c, const uint8_t *p, size_t len) {
  return qe_conn_recv(c, p, len, c->rx_fromlen > 0 ? (const struct sockaddr *)&c->rx_from : NULL, c->rx_fromlen);
}

static napi_value conn_recv(napi_env env, napi_callback_info info) {
  uint8_t *p;
  size_t len;
  struct qe_conn *c = conn_bytes(env, info, &p, &len, "quic: recv needs a Uint8Array");
  if (c == NULL) return NULL;
  if (recv_on_path(c, p, len) != 0) QE_ERR(env, "quic: recv: %s", c->errmsg);
  return NULL;
}

/*
 * quicRecvSegments(conn, buf, offset, size, step, res Int32Array(1)) → how
 * many: the datagrams of one UDP GRO receive, buf[offset, offset + size) cut
 * every `step` bytes (the last may be shorter; all from one source), handed
 * to the connection one after the other while each is a short-header
 * packet carrying its connection ID; stops at the first that is not (the
 * caller handles the rest one by one). res[0]: how many the engine refused
 * (the endpoint's dropRecvError, as quicRecv throwing). One call for a GRO
 * train instead of one per datagram.
 */
static napi_value conn_recv_segments(napi_env env, napi_callback_info info) {
  MTUN_ARGS(6);
  if (argc < 6) return mtun_throw_type(env, "quic: recvSegments(conn, buf, offset, size, step, res)");
  struct qe_conn *c = ext(env, argv[0]);
  uint8_t *p;
  size_t len;
  uint32_t off, size, step;
  void *rv;
  size_t nr;
  if (c == NULL || !bytes_of(env, argv[1], &p, &len)) return mtun_throw_type(env, "quic: recvSegments needs a connection and a Uint8Array");
  if (!mtun_arg_u32(env, argv[2], "offset", &off) || !mtun_arg_u32(env, argv[3], "size", &size) || !mtun_arg_u32(env, argv[4], "step", &step) ||
      !mtun_arg_typed(env, argv[5], napi_int32_array, "res", &rv, &nr))
    return NULL;
  if ((size_t)off > len || (size_t)size > len - off || step == 0 || nr < 1) return mtun_throw_type(env, "quic: recvSegments: a range beyond the buffer, a zero step or no res");
  const uint8_t *base = p + off;
  size_t idlen = c->scid.datalen;
  int32_t refused = 0;
  uint32_t k = 0;
  for (size_t at = 0; at < size; at += step, k++) {
    uint32_t n = size - at < step ? (uint32_t)(size - at) : step;
    const uint8_t *d = base + at;
    if (n < 1 + idlen || (d[0] & 0x80) != 0 || memcmp(d + 1, c->scid.data, idlen) != 0) break;
    if (recv_on_path(c, d, n) != 0) refused++;
  }
  ((int32_t *)rv)[0] = refused;
  return mtun_u32(env, k);
}

/* quicSend(conn, out) → bytes written (0: nothing to send now). */
static napi_value conn_send(napi_env env, napi_callback_info info) {
  uint8_t *p;
  size_t len;
  struct qe_conn *c = conn_bytes(env, info, &p, &len, "quic: send needs a Uint8Array");
  if (c == NULL) return NULL;
  ssize_t n = qe_conn_send(c, p, len);
  return mtun_i32(env, n < 0 ? 0 : (int32_t)n);
}

/*
 * The endpoint's send batch, registered once (quicOutBatch) so that a drain
 * needs no per-call lookup of its arrays: the slots (one allocation,
 * `stride` bytes each, src/net/slot-arena.ts), their sizes, GSO segment
 * sizes and 36-byte address slots (src/net/udp.ts), and the Float64Array
 * through which a drain takes and returns its state (QN_ST_*). References
 * keep the arrays alive as long as the handle; their backing stores never
 * move.
 */
#define QN_OUT_MAGIC 0x6d6f7574u /* "mout" */
#define QN_ADDR_SLOT 36
#define QN_GSO_MAX_BYTES 65000 /* one GSO send: at most this many bytes (the IP length limit with headers) */
#define QN_GSO_MAX_SEGS 64 /* Linux UDP_MAX_SEGMENTS on older kernels */
#define QN_GSO_MIN_SEG 1200 /* only a full-size packet starts a train (an ACK would squeeze the rest) */
enum {
  QN_ST_NEXT,      /* in/out: first free slot */
  QN_ST_SEG,       /* in/out: segment size of the open GSO train in slot NEXT-1 (this connection's), 0 none */
  QN_ST_SEGS,      /* in/out: segments in that train */
  QN_ST_BUDGET,    /* in: packets this call may write */
  QN_ST_GSO,       /* in: 1 = trains allowed */
  QN_ST_WHY,       /* out: 0 nothing more to send, 1 batch full, 2 budget spent */
  QN_ST_PKTS,      /* out: packets written */
  QN_ST_TIMEOUT,   /* out: µs to the connection's next deadline, -1 none */
  QN_ST_CLOSED,    /* out: 1 when the connection is closed (reap it) */
  QN_ST_LEN
};
struct qn_out {
  uint32_t magic;
  uint32_t stride, slots;
  uint8_t *arena, *addrs;
  uint32_t *sizes, *segs;
  double *st;
  napi_ref refs[5];
};

static void out_finalize(napi_env env, void *data, void *hint) {
  struct qn_out *b = data;
  for (int i = 0; i < 5; i++)
    if (b->refs[i] != NULL) napi_delete_reference(env, b->refs[i]);
  b->magic = 0;
  free(b);
}

/* quicOutBatch(arena, stride, sizes, segs, addrs, state) → handle. */
static napi_value out_batch(napi_env env, napi_callback_info info) {
  MTUN_ARGS(6);
  if (argc < 6) return mtun_throw_type(env, "quic: quicOutBatch(arena, stride, sizes, segs, addrs, state)");
  uint8_t *arena, *addrs;
  size_t alen, addrslen, nsizes, nsegs, nst;
  void *sizes, *segs, *st;
  uint32_t stride;
  if (!bytes_of(env, argv[0], &arena, &alen)) return mtun_throw_type(env, "quic: quicOutBatch: arena must be a Buffer");
  if (!mtun_arg_u32(env, argv[1], "stride", &stride)) return NULL;
  if (!mtun_arg_typed(env, argv[2], napi_uint32_array, "sizes", &sizes, &nsizes) ||
      !mtun_arg_typed(env, argv[3], napi_uint32_array, "segs", &segs, &nsegs) ||
      !mtun_arg_typed(env, argv[5], napi_float64_array, "state", &st, &nst))
    return NULL;
  if (!bytes_of(env, argv[4], &addrs, &addrslen)) return mtun_throw_type(env, "quic: quicOutBatch: addrs must be a Uint8Array");
  if (stride == 0 || alen % stride != 0) return mtun_throw_type(env, "quic: quicOutBatch: arena is not a whole number of slots");
  size_t slots = alen / stride;
  if (slots == 0 || nsizes < slots || nsegs < slots || addrslen < slots * QN_ADDR_SLOT || nst < QN_ST_LEN)
    return mtun_throw_type(env, "quic: quicOutBatch: sizes, segs, addrs or state shorter than the batch");
  struct qn_out *b = calloc(1, sizeof *b);
  if (b == NULL) QE_ERR(env, "quic: out of memory");
  b->magic = QN_OUT_MAGIC;
  b->stride = stride;
  b->slots = (uint32_t)slots;
  b->arena = arena;
  b->addrs = addrs;
  b->sizes = sizes;
  b->segs = segs;
  b->st = st;
  static const int which[5] = {0, 2, 3, 4, 5};
  for (int i = 0; i < 5; i++)
    if (napi_create_reference(env, argv[which[i]], 1, &b->refs[i]) != napi_ok) {
      out_finalize(env, b, NULL);
      QE_ERR(env, "quic: cannot reference the batch arrays");
    }
  napi_value r;
  if (napi_create_external(env, b, out_finalize, NULL, &r) != napi_ok) {
    out_finalize(env, b, NULL);
    QE_ERR(env, "quic: cannot wrap the batch");
  }
  return r;
}

/*
 * quicDrain(conn, batch, peerSlot): writes the connection's packets into the
 * batch from slot st[NEXT] on, at most st[BUDGET] of them, each new slot
 * addressed with peerSlot (36 bytes). With st[GSO], a full-size packet opens
 * a train: later packets are written into segment-sized windows after it in
 * the same slot, until one is shorter, 64 are in, or the next would pass
 * 65,000 bytes. A window nothing fits in (a longer packet number, an ACK)
 * ends the train and the packet gets a slot of its own. One call replaces a
 * call per packet plus the endpoint's bookkeeping around each; the state
 * goes back in st, with the connection's next deadline and whether it is
 * closed (what the endpoint asks next).
 */
static napi_value conn_drain(napi_env env, napi_callback_info info) {
  MTUN_ARGS(3);
  if (argc < 3) return mtun_throw_type(env, "quic: quicDrain(conn, batch, peerSlot)");
  CONN(argv[0]);
  struct qn_out *b = ext(env, argv[1]);
  uint8_t *peer;
  size_t peerlen;
  if (b == NULL || b->magic != QN_OUT_MAGIC) return mtun_throw_type(env, "quic: quicDrain: not a batch from quicOutBatch");
  if (!bytes_of(env, argv[2], &peer, &peerlen) || peerlen < QN_ADDR_SLOT)
    return mtun_throw_type(env, "quic: quicDrain: peerSlot must be a 36-byte Uint8Array");
  double *st = b->st;
  double kd = st[QN_ST_NEXT], segd = st[QN_ST_SEG], budd = st[QN_ST_BUDGET];
  if (!(kd >= 0 && kd <= b->slots) || !(segd >= 0 && segd <= b->stride) || (segd > 0 && kd < 1) || !(budd >= 0))
    return mtun_throw_type(env, "quic: quicDrain: batch state out of range");
  uint32_t k = (uint32_t)kd, seg = (uint32_t)segd, nsegs = (uint32_t)st[QN_ST_SEGS];
  /* The slot's peer part is where the engine sends now (it may move during the drain); the local part is the caller's. */
  uint8_t pslot[QN_ADDR_SLOT];
  memcpy(pslot, peer, QN_ADDR_SLOT);
  mtun_name_to_slot((const struct sockaddr_in6 *)&c->remote, pslot);
  uint32_t gen = c->peer_gen;
  uint32_t budget = budd > 1e6 ? 1000000 : (uint32_t)budd, pkts = 0;
  bool gso = st[QN_ST_GSO] != 0;
  int why = 2;
  for (; budget > 0; budget--) {
    if (k == b->slots) {
      why = 1;
      break;
    }
    uint32_t slot = k, base = 0;
    size_t cap = b->stride;
    if (seg != 0) {
      slot = k - 1;
      base = b->sizes[slot]; /* from an array JavaScript can write: summed in size_t, never trusted past the stride */
      if ((size_t)base + seg > QN_GSO_MAX_BYTES || (size_t)base + seg > b->stride) seg = 0;
      else cap = seg;
    }
    if (seg == 0) {
      slot = k;
      base = 0;
      cap = b->stride;
    }
    ssize_t n = qe_conn_send(c, b->arena + (size_t)slot * b->stride + base, cap);
    if (n <= 0) {
      if (seg != 0) { /* nothing fitted the window: end the train, ask again with a slot */
        seg = 0;
        continue;
      }
      why = 0;
      break;
    }
    pkts++;
    if (c->peer_gen != gen) {
      /* The engine moved to another path while writing this packet: it goes there, not on the open train. */
      gen = c->peer_gen;
      mtun_name_to_slot((const struct sockaddr_in6 *)&c->remote, pslot);
      if (seg != 0) {
        seg = 0;
        if (k == b->slots) { /* no slot for it: left out (loss recovery resends its frames) */
          why = 1;
          break;
        }
        memmove(b->arena + (size_t)k * b->stride, b->arena + (size_t)slot * b->stride + base, (size_t)n);
      }
    }
    if (seg != 0) {
      b->sizes[slot] = base + (uint32_t)n;
      b->segs[slot] = seg;
      nsegs++;
      if ((uint32_t)n < seg || nsegs >= QN_GSO_MAX_SEGS) seg = 0; /* only the last segment may be shorter */
      continue;
    }
    b->sizes[k] = (uint32_t)n;
    b->segs[k] = 0;
    memcpy(b->addrs + (size_t)k * QN_ADDR_SLOT, pslot, QN_ADDR_SLOT);
    k++;
    if (gso && n >= QN_GSO_MIN_SEG) {
      seg = (uint32_t)n;
      nsegs = 1;
    } else {
      seg = 0;
    }
  }
  st[QN_ST_NEXT] = k;
  st[QN_ST_SEG] = seg;
  st[QN_ST_SEGS] = seg != 0 ? nsegs : 0;
  st[QN_ST_WHY] = why;
  st[QN_ST_PKTS] = pkts;
  st[QN_ST_TIMEOUT] = (double)qe_conn_timeout_us(c);
  st[QN_ST_CLOSED] = c->state == QE_CLOSED;
  return NULL;
}

/* quicTimeout(conn) → µs until the next deadline, or -1. */
static napi_value conn_timeout(napi_env env, napi_callback_info info) {
  MTUN_ARGS(1);
  CONN(argv[0]);
  return dbl(env, (double)qe_conn_timeout_us(c));
}

static napi_value conn_on_timeout(napi_env env, napi_callback_info info) {
  MTUN_ARGS(1);
  CONN(argv[0]);
  qe_conn_on_timeout(c);
  return NULL;
}

static napi_value conn_ping(napi_env env, napi_callback_info info) {
  MTUN_ARGS(1);
  CONN(argv[0]);
  qe_conn_ping(c);
  return NULL;
}

static napi_value conn_trim_idle(napi_env env, napi_callback_info info) {
  MTUN_ARGS(1);
  CONN(argv[0]);
  qe_conn_trim_idle(c);
  return NULL;
}

/* quicSetAnchor(conn, streamId, frame): the PTO anchor (quic-conn.c anchor_due); an empty frame turns it off. */
static napi_value conn_set_anchor(napi_env env, napi_callback_info info) {
  MTUN_ARGS(3);
  CONN(argv[0]);
  uint8_t *p;
  size_t len;
  if (!bytes_of(env, argv[2], &p, &len) || len > sizeof c->anchor_frame)
    return mtun_throw_type(env, "quic: quicSetAnchor(conn, streamId, frame of at most 8 bytes)");
  c->anchor_id = (int64_t)num(env, argv[1]);
  if (len > 0) memcpy(c->anchor_frame, p, len);
  c->anchor_len = (uint8_t)len;
  return NULL;
}

/* quicClose(conn, app, code, reason) → false when already closing or closed. */
static napi_value conn_close(napi_env env, napi_callback_info info) {
  MTUN_ARGS(4);
  CONN(argv[0]);
  bool app;
  uint8_t *p = NULL;
  size_t len = 0;
  if (!mtun_arg_bool(env, argv[1], "app", &app)) return NULL;
  if (!is_nullish(env, argv[3]) && !bytes_of(env, argv[3], &p, &len)) return mtun_throw_type(env, "quic: reason");
  if (c->state != QE_OPEN) return boolv(env, false);
  qe_conn_close(c, app, (uint64_t)num(env, argv[2]), p, len > QE_MAX_REASON ? QE_MAX_REASON : len);
  return boolv(env, true);
}

/* quicStreamSend(conn, id, data, fin, res: Float64Array) → QE_S_*; res[0] bytes taken, res[1] error code. */
static napi_value stream_send(napi_env env, napi_callback_info info) {
  MTUN_ARGS(5);
  CONN(argv[0]);
  uint8_t *p;
  size_t len, rn;
  bool fin;
  double *res;
  if (!bytes_of(env, argv[2], &p, &len) || !mtun_arg_bool(env, argv[3], "fin", &fin) ||
      !mtun_arg_stats(env, argv[4], &res, &rn) || res == NULL || rn < 2)
    return mtun_throw_type(env, "quic: quicStreamSend(conn, id, data, fin, res)");
  size_t taken;
  uint64_t code = 0;
  int rv = qe_stream_send(c, (int64_t)num(env, argv[1]), p, len, fin, &taken, &code);
  res[0] = (double)taken;
  res[1] = (double)code;
  return mtun_i32(env, rv);
}

/* quicStreamRecv(conn, id, out, res) → QE_S_*; res[0] bytes, res[1] fin, res[2] reset code. */
static napi_value stream_recv(napi_env env, napi_callback_info info) {
  MTUN_ARGS(4);
  CONN(argv[0]);
  uint8_t *p;
  size_t len, rn;
  double *res;
  if (!bytes_of(env, argv[2], &p, &len) || !mtun_arg_stats(env, argv[3], &res, &rn) || res == NULL || rn < 3)
    return mtun_throw_type(env, "quic: quicStreamRecv(conn, id, out, res)");
  size_t n;
  bool fin;
  uint64_t code = 0;
  int rv = qe_stream_recv(c, (int64_t)num(env, argv[1]), p, len, &n, &fin, &code);
  res[0] = (double)n;
  res[1] = fin ? 1 : 0;
  res[2] = (double)code;
  return mtun_i32(env, rv);
}

static napi_value stream_shutdown(napi_env env, napi_callback_info info) {
  MTUN_ARGS(4);
  CONN(argv[0]);
  bool read;
  if (!mtun_arg_bool(env, argv[2], "read", &read)) return NULL;
  return mtun_i32(env, qe_stream_shutdown(c, (int64_t)num(env, argv[1]), read, (uint64_t)num(env, argv[3])));
}

/* quicStreams(conn, writable) → ids of readable (false) or writable (true) streams. */
static napi_value stream_list(napi_env env, napi_callback_info info) {
  MTUN_ARGS(2);
  CONN(argv[0]);
  bool writable;
  if (!mtun_arg_bool(env, argv[1], "writable", &writable)) return NULL;
  napi_value arr;
  napi_create_array(env, &arr);
  uint32_t n = 0;
  if (c->state == QE_OPEN || !writable) {
    for (struct qe_stream *s = c->streams; s != NULL; s = s->next) {
      if (writable ? qe_stream_writable(s) : qe_stream_readable(s)) napi_set_element(env, arr, n++, dbl(env, (double)s->id));
    }
  }
  return arr;
}

/* quicDgramSend(conn, data[, offset, length]) → 1 queued, 0 queue full, -1 too big or not negotiated. */
static napi_value dgram_send(napi_env env, napi_callback_info info) {
  uint8_t *p;
  size_t len;
  struct qe_conn *c = conn_bytes(env, info, &p, &len, "quic: dgramSend needs a Uint8Array");
  if (c == NULL) return NULL;
  struct qe_dq *q = &c->dq_send;
  int64_t max = qe_dgram_max_writable(c);
  if (max < 0 || (int64_t)len > max) return mtun_i32(env, -1);
  if (!qe_dq_room(q)) return mtun_i32(env, 0);
  qe_dq_push(q, p, len, q->stamped ? qe_now() : 0);
  return mtun_i32(env, 1);
}

/* quicDgramRecv(conn, out) → bytes, -1 when none, -2 when out is too small. */
static napi_value dgram_recv(napi_env env, napi_callback_info info) {
  uint8_t *p;
  size_t len;
  struct qe_conn *c = conn_bytes(env, info, &p, &len, "quic: dgramRecv needs a Uint8Array");
  if (c == NULL) return NULL;
  struct qe_dq *q = &c->dq_recv;
  if (q->count == 0) return mtun_i32(env, -1);
  uint32_t n = q->lens[q->head];
  if (n > len) return mtun_i32(env, -2);
  memcpy(p, q->mem + (size_t)q->head * q->slot, n);
  qe_dq_pop(q);
  return mtun_i32(env, (int32_t)n);
}

/*
 * quicDgramRecvBatch(conn, out, lens) → count: takes DATAGRAMs from the
 * queue, oldest first, while the next fits: each copied into out right
 * after the one before, its length in lens[i] (at most lens.length of them).
 * 0 when none waits, -2 when the first does not fit out. One call for a
 * receive batch's datagrams instead of one per datagram (the gateway, 7
 * December 2026: that call was a twentieth of its time per datagram).
 */
static napi_value dgram_recv_batch(napi_env env, napi_callback_info info) {
  MTUN_ARGS(3);
  if (argc < 3) return mtun_throw_type(env, "quic: dgramRecvBatch(conn, out, lens)");
  struct qe_conn *c = ext(env, argv[0]);
  if (c == NULL) return mtun_throw_type(env, "quic: dgramRecvBatch needs a connection");
  uint8_t *p;
  size_t len;
  void *lv;
  size_t nl;
  if (!bytes_of(env, argv[1], &p, &len)) return mtun_throw_type(env, "quic: dgramRecvBatch needs a Uint8Array");
  if (!mtun_arg_typed(env, argv[2], napi_uint32_array, "lens", &lv, &nl)) return NULL;
  if (nl == 0) return mtun_throw_type(env, "quic: dgramRecvBatch needs room for one length at least");
  uint32_t *lens = lv;
  struct qe_dq *q = &c->dq_recv;
  size_t off = 0;
  uint32_t k = 0;
  while (k < nl && q->count > 0) {
    uint32_t n = q->lens[q->head];
    if (n > len - off) {
      if (k == 0) return mtun_i32(env, -2);
      break;
    }
    memcpy(p + off, q->mem + (size_t)q->head * q->slot, n);
    qe_dq_pop(q);
    lens[k++] = n;
    off += n;
  }
  return mtun_i32(env, (int32_t)k);
}

/*
 * quicInfo(conn, res): fills res with the state the adapter polls —
 * [0] established, [1] resumed, [2] draining, [3] closed, [4] timed out,
 * [5] any stream readable, [6] dgram recv queued, [7] dgram send queued,
 * [8] dgram recv queue full, [9] dgram max writable (-1 none), [10] dgram recv dropped,
 * [11] dgram send dropped by CoDel (waited too long), [12] peer generation
 * (changes when ngtcp2 moved the connection to another path: quicPeer).
 */
static napi_value conn_info(napi_env env, napi_callback_info info) {
  MTUN_ARGS(2);
  CONN(argv[0]);
  double *r;
  size_t rn;
  if (!mtun_arg_stats(env, argv[1], &r, &rn) || r == NULL || rn < 13) return mtun_throw_type(env, "quic: info res");
  bool hs = c->conn != NULL && (c->handshake_done || ngtcp2_conn_get_handshake_completed(c->conn));
  r[0] = hs;
  r[1] = c->tls_retired ? c->resumed : c->tls != NULL && hs && gnutls_session_is_resumed(c->tls);
  r[2] = c->state == QE_DRAINING || c->state == QE_CLOSING;
  r[3] = c->state == QE_CLOSED;
  r[4] = c->timed_out;
  bool readable = false;
  for (struct qe_stream *s = c->streams; s != NULL && !readable; s = s->next) readable = qe_stream_readable(s);
  r[5] = readable;
  r[6] = c->dq_recv.count;
  r[7] = c->dq_send.count;
  r[8] = c->dq_recv.max > 0 && c->dq_recv.count == c->dq_recv.max;
  r[9] = (double)qe_dgram_max_writable(c);
  r[10] = (double)c->dgram_recv_dropped;
  r[11] = (double)c->dgram_send_delay_dropped;
  r[12] = (double)c->peer_gen;
  return NULL;
}

/* quicStats(conn, res): [0] recv pkts, [1] sent pkts, [2] sent bytes, [3] recv bytes, [4] srtt ms, [5] cwnd, [6] pmtu, [7] delivery rate, [8] lost packets (qe_conn_lost_pkts);
 * with room for 10: [9] bytes in flight (ack-eliciting, not yet acknowledged or declared lost); with room for 11: [10] PTO anchors queued. */
static napi_value conn_stats(napi_env env, napi_callback_info info) {
  MTUN_ARGS(2);
  CONN(argv[0]);
  double *r;
  size_t rn;
  if (!mtun_arg_stats(env, argv[1], &r, &rn) || r == NULL || rn < 9) return mtun_throw_type(env, "quic: stats res");
  r[0] = (double)c->pkts_recv;
  r[1] = (double)c->pkts_sent;
  r[2] = (double)c->bytes_sent;
  r[3] = (double)c->bytes_recv;
  if (c->conn != NULL) {
    ngtcp2_conn_stat st;
    ngtcp2_conn_get_conn_stat(c->conn, &st);
    r[4] = (double)st.smoothed_rtt / NGTCP2_MILLISECONDS;
    r[5] = (double)st.cwnd;
    r[6] = (double)ngtcp2_conn_get_max_tx_udp_payload_size(c->conn);
    r[7] = (double)st.delivery_rate_sec;
    r[8] = (double)qe_conn_lost_pkts(c);
    if (rn >= 10) r[9] = (double)st.bytes_in_flight;
  } else if (c->has_last_path) {
    r[4] = c->last_rtt_ms;
    r[5] = c->last_cwnd;
    r[6] = c->last_pmtu;
    r[7] = c->last_rate;
    r[8] = (double)qe_conn_lost_pkts(c);
  } else {
    r[4] = r[5] = r[6] = r[7] = r[8] = -1;
  }
  if (c->conn == NULL && rn >= 10) r[9] = 0;
  if (rn >= 11) r[10] = (double)c->anchors_sent;
  return NULL;
}

/* quicError(conn, peer) → {isApp, errorCode, reason} | null */
static napi_value conn_error(napi_env env, napi_callback_info info) {
  MTUN_ARGS(2);
  CONN(argv[0]);
  bool peer;
  if (!mtun_arg_bool(env, argv[1], "peer", &peer)) return NULL;
  const struct qe_error *e = peer ? &c->peer_err : &c->local_err;
  if (!e->set) return nullv(env);
  napi_value o;
  napi_create_object(env, &o);
  napi_set_named_property(env, o, "isApp", boolv(env, e->app));
  napi_set_named_property(env, o, "errorCode", dbl(env, (double)e->code));
  napi_set_named_property(env, o, "reason", copy_buf(env, e->reason, e->reasonlen));
  return o;
}

/* quicTlsInfo(conn, what): 0 ALPN (Buffer), 1 server name (string|null), 2 peer chain (Buffer[]|null), 3 session (Buffer|null).
 * A server that retired its TLS session after the handshake (qe_tls_retire) answers from what it kept. */
static napi_value conn_tls_info(napi_env env, napi_callback_info info) {
  MTUN_ARGS(2);
  CONN(argv[0]);
  uint32_t what;
  if (!mtun_arg_u32(env, argv[1], "what", &what)) return NULL;
  bool retired = c->tls_retired;
  if (c->tls == NULL && !retired) return nullv(env);
  switch (what) {
  case 0: {
    if (retired) return copy_buf(env, c->alpn_sel, c->alpn_len);
    gnutls_datum_t p = {0};
    if (gnutls_alpn_get_selected_protocol(c->tls, &p) != 0) return copy_buf(env, "", 0);
    return copy_buf(env, p.data, p.size);
  }
  case 1: {
    if (!c->server || retired) { /* the client's own name; the retired server's copy of the client's */
      if (c->sni[0] == 0) return nullv(env);
      napi_value s;
      napi_create_string_utf8(env, c->sni, NAPI_AUTO_LENGTH, &s);
      return s;
    }
    char name[256];
    size_t len = sizeof name - 1;
    unsigned type;
    if (gnutls_server_name_get(c->tls, name, &len, &type, 0) != 0) return nullv(env);
    napi_value s;
    napi_create_string_utf8(env, name, len, &s);
    return s;
  }
  case 2: {
    unsigned n = retired ? c->peer_chain_n : 0;
    const gnutls_datum_t *peers = retired ? c->peer_chain : gnutls_certificate_get_peers(c->tls, &n);
    if (peers == NULL || n == 0) return nullv(env);
    napi_value arr;
    napi_create_array_with_length(env, n, &arr);
    for (unsigned i = 0; i < n; i++) napi_set_element(env, arr, i, copy_buf(env, peers[i].data, peers[i].size));
    return arr;
  }
  case 3: {
    /* A resumable session exists only once a NewSessionTicket arrived (TLS 1.3); a server has none. */
    if (c->server || !(gnutls_session_get_flags(c->tls) & GNUTLS_SFLAGS_SESSION_TICKET)) return nullv(env);
    gnutls_datum_t d = {0};
    if (gnutls_session_get_data2(c->tls, &d) != 0) return nullv(env);
    napi_value b = copy_buf(env, d.data, d.size);
    gnutls_free(d.data);
    return b;
  }
  default:
    return mtun_throw_type(env, "quic: unknown TLS info");
  }
}

/* quicSetSession(conn, data): resume a TLS session (client, before the handshake). */
static napi_value conn_set_session(napi_env env, napi_callback_info info) {
  uint8_t *p;
  size_t len;
  struct qe_conn *c = conn_bytes(env, info, &p, &len, "quic: session must be a Uint8Array");
  if (c == NULL) return NULL;
  if (c->tls == NULL) QE_ERR(env, "quic: session: connection released");
  int rv = gnutls_session_set_data(c->tls, p, len);
  if (rv != 0) QE_ERR(env, "quic: session: %s", gnutls_strerror(rv));
  return NULL;
}

/* quicSetKeylog(conn, path): NSS key log lines are appended to path. */
static napi_value conn_set_keylog(napi_env env, napi_callback_info info) {
  MTUN_ARGS(2);
  CONN(argv[0]);
  char path[1024];
  size_t len;
  if (!mtun_arg_str(env, argv[1], "path", path, sizeof path, &len)) return NULL;
  if (c->tls == NULL) return NULL; /* released: no handshake left to log */
  char *copy = strdup(path);
  if (copy == NULL) QE_ERR(env, "quic: out of memory");
  free(c->keylog_path);
  c->keylog_path = copy;
  qe_tls_enable_keylog(c);
  return NULL;
}

/* quicFree(conn): releases the native state now (qe_conn_release); the handle
 * stays valid and reads as a closed connection until it is collected. */
static napi_value conn_free(napi_env env, napi_callback_info info) {
  MTUN_ARGS(1);
  CONN(argv[0]);
  qe_conn_release(c);
  return NULL;
}

/*
 * quicLock() / quicUnlock(): the engine lock held across JavaScript calls,
 * so that the endpoint's drain and its sendmmsg are one step to the agent's
 * TUN thread (packets of one connection leave in packet-number order).
 * Recursive; every quicLock needs its quicUnlock on the same thread.
 */
static napi_value engine_lock(napi_env env, napi_callback_info info) {
  qe_lock();
  return NULL;
}

static napi_value engine_unlock(napi_env env, napi_callback_info info) {
  qe_unlock();
  return NULL;
}

bool mtun_quic_init(napi_env env, napi_value exports) {
  if (!mtun_export_fn(env, exports, "quicLock", engine_lock) || !mtun_export_fn(env, exports, "quicUnlock", engine_unlock)) return false;
  static const struct {
    const char *name;
    napi_callback cb;
  } fns[] = {
      {"quicConnect", conn_connect}, {"quicAccept", conn_accept},
      {"quicSetRecvFrom", conn_set_recv_from}, {"quicPeer", conn_peer}, {"quicRecv", conn_recv}, {"quicRecvSegments", conn_recv_segments}, {"quicSend", conn_send}, {"quicOutBatch", out_batch},
      {"quicDrain", conn_drain}, {"quicTimeout", conn_timeout},
      {"quicOnTimeout", conn_on_timeout}, {"quicPing", conn_ping}, {"quicTrimIdle", conn_trim_idle}, {"quicSetAnchor", conn_set_anchor}, {"quicClose", conn_close},
      {"quicStreamSend", stream_send}, {"quicStreamRecv", stream_recv}, {"quicStreamShutdown", stream_shutdown},
      {"quicStreams", stream_list}, {"quicDgramSend", dgram_send}, {"quicDgramRecv", dgram_recv}, {"quicDgramRecvBatch", dgram_recv_batch},
      {"quicInfo", conn_info}, {"quicStats", conn_stats}, {"quicError", conn_error}, {"quicTlsInfo", conn_tls_info},
      {"quicSetSession", conn_set_session}, {"quicSetKeylog", conn_set_keylog}, {"quicFree", conn_free},
  };
  for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++)
    if (!qn_export_locked(env, exports, fns[i].name, fns[i].cb)) return false;
  return qn_config_init(env, exports);
}
