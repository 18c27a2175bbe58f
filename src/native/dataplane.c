/*
 * The agent's TUN → UDP leg on a native thread (issue #13, first step of
 * docs/decisions/0003-data-plane-threads.md).
 *
 * A thread blocks in epoll on the TUN. When packets wait it reads a batch
 * straight into a ring of slots that JavaScript also sees, and for each
 * packet on the plain path — unicast IPv4 or IPv6 (while carried), no
 * link-local address, no fragment, no IPv6 extension header (a TCP SYN's
 * MSS clamped in place, as JavaScript clamps it), fits the connection's DATAGRAM size,
 * and room in its send queue — it writes the HTTP Datagram prefix (quarter
 * stream ID, context ID 0) in front of the packet and queues it on the QUIC
 * connection. It then packetizes and encrypts what the connection may send
 * (ngtcp2, with CoDel on the queue as on the JavaScript path) and sends it
 * with sendmmsg (UDP GSO trains) on the endpoint's socket. No event loop
 * wakes on the way.
 *
 * Every packet read is published to JavaScript through the ring, in order,
 * with its kind: SENT (the thread queued it: JavaScript only observes it,
 * for the flow tracker, counters and the capture tap) or JS (JavaScript runs
 * its own path on it: MSS clamp, the session's checks, Packet Too Big, the
 * counted drops). So the TypeScript path stays the authority for everything
 * but the plain case, and telemetry stays exact: the thread never reads
 * more packets than the ring has free slots (the TUN queue holds the rest).
 *
 * The QUIC engine is shared with the JavaScript thread, which keeps the
 * handshake, streams, timers, receive and its own sends: every engine call
 * from JavaScript and every engine use here holds qe_lock() (quic-conn.c).
 * The thread touches the connection only while attached, under the
 * producer lock that attach and detach also take, and the attachment keeps
 * a reference to the connection's handle, so it is never freed under it.
 *
 * Memory order: the ring's producer index is stored with release after the
 * slot, its length, kind and stamp; JavaScript reads it with Atomics.load
 * and stores its consumer index with Atomics.store after it is done with
 * the slots, read here with acquire.
 */
#include "common.h"
#include "judge.h"
#include "quic-napi.h"
#include "tun-offload.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>
#include <sys/random.h>
#include <uv.h>

#define DP_MAGIC 0x6d647031u   /* "mdp1" */
#define DP_READ_MAX 64         /* packets per TUN read round */
#define DP_ROUNDS 8            /* read rounds per wake before epoll again (fair to the JavaScript thread's lock) */
#define DP_OUT_PKTS 128        /* QUIC packets per send round, one per slot (udp.c builds the GSO trains) */
#define DP_PKT_CAP 1500        /* most one QUIC packet takes (ngtcp2 writes at most its max UDP payload) */
#define DP_SEND_ROUNDS 16      /* send rounds per read round, bounded */
/*
 * JavaScript is woken at once when the ring holds a packet for its own path
 * (something may wait for it) or DP_SIGNAL_FILL packets; packets the thread sent
 * only wait to be observed, for at most DP_DEFER_NS, or until JavaScript
 * wakes for another reason (a datagram from the gateway: the agent drains
 * the ring first, so the flow tracker sees them in order). A ping then wakes
 * the event loop once per round trip, for the answer; waking it for the
 * request too cost a wake and did not shorten the round trip (BENCHMARKS.md).
 */
#define DP_SIGNAL_FILL 256
#define DP_DEFER_NS 2000000

#define DP_RX_SLOTS 8           /* receive slots per recvmmsg; each takes a UDP GRO super-datagram (<= 64 segments) */
#define DP_RX_SLOT_BYTES 65536
#define DP_RX_ROUNDS 8          /* recvmmsg calls per wake, bounded */
#define DP_RX_GRO_SEGS 64       /* datagrams a UDP GRO slot may hold */
/*
 * Packets written into the TUN per wake before the thread reads the TUN
 * again: what the kernel answers inside those writes (TCP ACKs of a
 * download) waits in the TUN's transmit queue meanwhile, and must not
 * overflow it (the event loop's reader keeps to half of the default 500:
 * daemon/tun-writer.ts tunRecvBudget). Checked between receive rounds,
 * each sized to what the budget left holds when the socket coalesces (UDP
 * GRO): a wake writes at most the budget plus one slot (64 datagrams). The
 * sends wait for the end of the wake (dp_rx_send): sending after each round
 * cost a download throughput against a CPU-bound gateway
 * (docs/decisions/0003).
 */
#define DP_RX_TUN_BUDGET 256

/* Ring entry kinds (meta[2i + 1]). */
#define DP_KIND_SENT 1 /* read from the TUN, sent by the thread */
#define DP_KIND_JS 2   /* read from the TUN, for the event loop's path */
#define DP_KIND_IN 3   /* from the gateway, written into the TUN by the thread */
#define DP_KIND_H3 4   /* an HTTP Datagram payload (quarter stream ID first) for HTTP/3 on the event loop: it writes nothing into the TUN */

/* Control words JavaScript shares (ctl Uint32Array): the TUN ring's indices, then the endpoint ring's. */
enum { DP_CTL_PROD, DP_CTL_CONS, DP_CTL_UPROD, DP_CTL_UCONS, DP_CTL_LEN };

/* Counters (dpStats out[i]). */
enum {
  DP_S_READ,         /* packets read from the TUN */
  DP_S_READ_BYTES,
  DP_S_QUEUED,       /* packets the thread queued on the connection */
  DP_S_TO_JS,        /* packets handed to JavaScript's path */
  DP_S_UDP_DGRAMS,   /* UDP datagrams sent (each GSO segment counts) */
  DP_S_UDP_BYTES,
  DP_S_UDP_CALLS,    /* send calls (mtun_udp_send: one sendmmsg or more) */
  DP_S_UDP_GSO,      /* GSO sends */
  DP_S_UDP_DROPPED,  /* datagrams the kernel refused (ENOBUFS, EPERM …), or a tail still refused when its connection was detached: lost, QUIC recovers */
  DP_S_RING_FULL,    /* times the thread stopped reading on a full ring (JavaScript behind): the TUN queue held the packets */
  DP_S_WAKES,
  /* the receive leg */
  DP_S_RX_DATAGRAMS,  /* UDP datagrams the thread received (each GRO segment counts) */
  DP_S_RX_BYTES,
  DP_S_RX_TUN,        /* packets the thread wrote into the TUN */
  DP_S_RX_TUN_BYTES,
  DP_S_RX_TUN_DROPPED,/* packets the TUN refused (a full queue, EINVAL): lost, as on the event loop's path */
  DP_S_RX_HELD,       /* times a DATAGRAM for the event loop's path stopped the thread's receive until JavaScript had run */
  DP_S_RX_TO_ENDPOINT,/* datagrams handed to the endpoint as they came (another connection ID, another source) */
  DP_S_RX_DROPPED,    /* datagrams dropped: the endpoint's ring full, larger than its slot, or than a receive slot */
  DP_S_RX_ERRORS,     /* recvmmsg errors other than EAGAIN */
  DP_S_RX_REFUSED,    /* packets the engine refused (qe_conn_recv failed: the endpoint's dropRecvError) */
  DP_S_RX_TO_H3,      /* DATAGRAMs handed to HTTP/3 on the event loop through the ring (another stream or context, a failed check) */
  DP_S_UDP_GSO_REFUSED, /* GSO sends the kernel refused (the path cannot segment them): resent datagram by datagram */
  DP_S_RX_GRO,          /* receives the kernel coalesced (UDP GRO: several datagrams in one slot) */
  DP_S_UDP_STALLS,      /* send rounds that met a full socket buffer (EAGAIN): the rest kept as the tail for EPOLLOUT */
  DP_S_LEN
};

/*
 * The gateway's return-flow cache: flows whose packets the thread wrote
 * into the TUN for the attached session (the agent opened or answered
 * them). A packet read from the TUN is sent on by the thread only when it
 * answers one of them (the reversed 5-tuple; an ICMP echo reply by its
 * identifier) and is not a TCP RST or FIN (those change the inbound
 * table's state: JavaScript sees them); anything else goes to the event
 * loop's path, which judges it in full (route, inbound default deny, rules).
 * An entry answers for flow_ttl_ms after the agent's last packet on it, no
 * longer than the inbound table keeps a flow in any state; an RST either way
 * removes it. So the thread passes a subset of what the inbound filter
 * passes. Bounded probing (DP_FLOW_PROBES), oldest entry replaced: a full
 * cache only sends more packets the slow way.
 */
#define DP_FLOWS 8192 /* a power of two */
#define DP_FLOW_PROBES 8
#define DP_FLOW_KEY 38 /* version, protocol, source, destination (16 each), source and destination port */
struct dp_flow {
  uint8_t key[DP_FLOW_KEY];
  uint16_t slot;  /* the attachment whose agent sent on it */
  uint32_t gen;   /* dp.flow_gen when written */
  uint32_t agen;  /* the attachment's gen when written */
  double seen;
};

/*
 * Attachments: one per QUIC connection the thread carries, in a slot
 * JavaScript chooses (dpAttach's slot) and reuses only after it drained
 * what the thread published for it (ring entries carry the slot). An agent
 * has one (slot 0). A gateway has one per agent connection (issues #13 and
 * #17): its receive leg finds the attachment by the packet's destination
 * connection ID (the connection's first, as the endpoint routes), and a
 * packet read from the TUN goes to the attachment whose agent opened the
 * flow it answers (dp_flows).
 */
#define DP_ATT_MAX 4096
#define DP_CID_BUCKETS 8192 /* a power of two, twice DP_ATT_MAX: open addressing, short probes */

struct dp_att {
  struct qe_conn *conn; /* NULL: the slot is free */
  napi_ref conn_ref;
  uint8_t prefix[16];
  uint32_t prefix_len;
  bool ipv6;
  uint32_t mss_mtu;       /* the MSS clamp's MTU both ways; 0: none */
  uint8_t local[16];      /* the source address of what it sends: where its peer's datagrams last arrived (IPv4-mapped; zero: the kernel picks) */
  struct mj_table *table; /* the session's receive check; NULL: the thread does not receive for it */
  bool gw, decrement;     /* a gateway's table; TTL decrement on the receive leg */
  double flow_ttl_ms;
  uint32_t gen;           /* flows written under another gen are not this attachment's (every (re)attach starts afresh) */
  /* scratch, qe_lock */
  uint32_t round;         /* the TUN round (dp.round_id) that last looked at it */
  bool round_ok;
  int64_t round_max;
  uint64_t round_stamp;
  uint32_t round_queued;
  bool rx_listed;         /* in dp.rx_list: drained once the receive is done */
  bool tail_wait;         /* in dp.tw_list: a drain stopped at another connection's send tail; drained once it is sent */
  /* A DATAGRAM for the event loop's path heads its receive queue: until dpResume nothing of it is popped, and its
   * datagrams go to the endpoint as they came; the other attachments go on. In dp.held_list. */
  bool held;
  uint64_t hold_seq;      /* the holds counter (DP_S_RX_HELD) with this hold counted */
  /* Attached while the endpoint ring held datagrams JavaScript had not released (some may be its own, read before
   * the attach): its datagrams keep going there until JavaScript has released every one of its datagrams there (the
   * gateway releases the ring after writing what it took into the TUN), so its packets reach the TUN in order. */
  bool gated;
  uint32_t gate;          /* the endpoint ring's producer index after the last of its datagrams put there */
  uint32_t js_rx;         /* QUIC packets the thread fed it since dpTouched; > 0: in dp.js_list */
};

struct dp {
  uint32_t magic;
  int tun_fd, udp_fd, efd, epfd, tfd;
  bool timer_armed; /* thread only */
  bool vnet, gso;
  int udp_family; /* mtun_udp_send's: 4 for an IPv4 socket, 0 for a dual-stack one */
  uint32_t nslots, stride, headroom;
  uint8_t *arena;
  uint32_t *meta; /* [len, kind] per slot */
  double *stamps; /* CLOCK_MONOTONIC ms when read */
  uint32_t *ctl;
  napi_ref refs[7];
  napi_ref cb_ref;
  napi_async_context actx; /* onReady runs in it (microtasks it queues run after it) */
  napi_env env;
  uv_async_t *async;

  pthread_mutex_t pmu; /* producer lock: the thread's rounds and dpPoll (then qe_lock inside: always in this order) */
  pthread_t th;
  bool started;
  _Atomic bool stop;
  _Atomic bool stalled; /* the TUN is not polled because the ring is full */
  bool tun_polled;
  _Atomic int read_err; /* errno of a failed TUN read (the data path is dead); set under pmu */
  bool err_reported;

  /* attachments, under qe_lock: attach and detach may come from inside the endpoint's flush, which holds it */
  struct dp_att *atts;    /* DP_ATT_MAX */
  uint32_t natt;          /* no slot at or above it is attached */
  uint32_t n_rx;          /* attached with a table: while > 0 the thread is the socket's reader */
  int32_t *cid_map;       /* DP_CID_BUCKETS: slot + 1 (0: empty) of the receiving attachments, by their connection's first CID */
  uint32_t cid_len;       /* that CID's length (the endpoint's, one for all) */
  uint32_t round_id;
  uint32_t tx_list[DP_READ_MAX]; /* attachments a TUN round queued on */
  uint32_t ntx;
  uint32_t *rx_list;      /* DP_ATT_MAX: attachments a receive fed */
  uint32_t nrx;
  uint32_t *js_list;      /* DP_ATT_MAX: attachments fed since dpTouched */
  uint32_t njs;
  uint32_t *tw_list;      /* DP_ATT_MAX: attachments whose drain waits for the send tail (tail_wait) */
  uint32_t ntw;
  uint32_t *tw_scratch;   /* DP_ATT_MAX: the waiters being drained (the drain may list some again) */
  int mode;               /* 0 none attached, 1 an agent's (slot 0 only), 2 a gateway's (gateway tables only) */
  uint32_t *held_list;    /* DP_ATT_MAX: the attachments held (dp_att.held) */
  uint32_t nheld;
  /* The ring was full when a DATAGRAM was to be written (JavaScript behind): the socket is not read until dpResume
   * (the kernel's buffer holds the rest), as the ring is every connection's: holding only that connection would
   * send every other one's datagrams to the endpoint ring meanwhile, which then overflowed (1,000 sessions). */
  bool rx_stall;
  uint64_t stall_seq;
  uint32_t udp_events;    /* thread only: what the thread's epoll waits for on the socket (EPOLLIN: the receive leg; EPOLLOUT: a tail) */
  /* the send tail, under qe_lock: out slots [tail_off, tail_end) a full socket buffer refused, kept for
   * EPOLLOUT (none: tail_off == tail_end); meanwhile the tx_held of every connection with a packet in
   * [tail_start, tail_end) stops every writer of its packets (dp_send_batch) */
  uint32_t tail_start, tail_off, tail_end;
  uint32_t mtu;           /* most bytes of an IP packet a ring slot takes */
  /* the gateway's way back takes only answers on flows the thread saw an agent open (dp_flows), under qe_lock */
  uint32_t flow_gen;      /* entries of another generation are empty (dpForgetFlows) */
  uint64_t flow_seed;
  struct dp_flow *flows;  /* DP_FLOWS entries */

  /* the endpoint ring: datagrams the endpoint handles as they came */
  uint8_t *uarena;
  uint32_t *umeta;  /* length per slot */
  uint8_t *uaddrs;  /* MTUN_ADDR_SLOT bytes per slot */
  uint32_t uslots, ustride;
  bool rx_gro; /* the socket coalesces (UDP GRO): a receive slot may hold up to 64 datagrams */

  /* offload read state */
  uint8_t *vscratch;
  uint32_t vstate[2];

  /* thread-only scratch */
  uint8_t *ptrs[DP_READ_MAX];
  size_t lens[DP_READ_MAX];
  uint32_t sizes[DP_READ_MAX];
  uint8_t *out;                     /* DP_OUT_PKTS slots of DP_PKT_CAP bytes */
  uint8_t *optrs[DP_OUT_PKTS];
  uint32_t osizes[DP_OUT_PKTS];
  uint32_t osegs[DP_OUT_PKTS];      /* all 0: mtun_udp_send builds the trains itself */
  uint8_t oaddrs[DP_OUT_PKTS * MTUN_ADDR_SLOT];
  struct qe_conn *oconn[DP_OUT_PKTS]; /* whose packet each out slot holds (qe_lock) */
  uint32_t oslot[DP_OUT_PKTS];        /* and its attachment */
  double ustats[US_COUNT];
  struct mtun_scratch *scr;         /* the thread's own sendmmsg scratch */
  /* receive scratch (pmu) */
  uint8_t *rbuf;                    /* DP_RX_SLOTS of DP_RX_SLOT_BYTES */
  uint8_t *rptrs[DP_RX_SLOTS];
  size_t rlens[DP_RX_SLOTS];
  uint32_t rsizes[DP_RX_SLOTS], rsegs[DP_RX_SLOTS];
  uint8_t raddrs[DP_RX_SLOTS * MTUN_ADDR_SLOT];
  struct mtun_scratch *rscr;
  double rstats[US_COUNT];
  uint8_t *wscratch;                /* TUN write coalescing (vnet) */
  uint8_t *wptrs[DP_READ_MAX];      /* ring slots waiting to be written into the TUN */
  uint32_t wsizes[DP_READ_MAX];
  uint32_t nw;
  uint32_t rx_prod;                 /* ring entries added by the receive leg, not yet published */
  bool rx_urgent;                   /* JavaScript has work from the receive leg */

  uint32_t round_to_js; /* packets of the last round for JavaScript's path (pmu) */

  _Atomic uint64_t st[DP_S_LEN];
};

static void dp_count(struct dp *d, int i, uint64_t n) { atomic_fetch_add_explicit(&d->st[i], n, memory_order_relaxed); }

static double mono_ms(void) { return (double)qe_now() / 1e6; }

static void dp_signal(struct dp *d) {
  if (d->async != NULL) uv_async_send(d->async);
}

/* Packets published and not yet released by JavaScript (the consumer index read with acquire). */
static uint32_t dp_unread(struct dp *d) {
  return d->ctl[DP_CTL_PROD] - atomic_load_explicit((_Atomic uint32_t *)&d->ctl[DP_CTL_CONS], memory_order_acquire);
}

static void dp_kick(struct dp *d) {
  uint64_t one = 1;
  ssize_t r = write(d->efd, &one, sizeof one);
  (void)r;
}

/* The plain path's test: true when the thread may send the packet p[0, len) as it is. */
static bool dp_plain(bool ipv6, const uint8_t *p, uint32_t len) {
  if (len < 20) return false;
  uint8_t v = p[0] >> 4;
  if (v == 4) {
    uint32_t ihl = (uint32_t)(p[0] & 0x0f) * 4;
    if (ihl < 20 || len < ihl || ((uint32_t)p[2] << 8 | p[3]) != len) return false;
    if ((p[6] & 0x3f) != 0 || p[7] != 0) return false; /* MF or a fragment offset */
    if (mj_link_local(p + 12, 4) || mj_link_local(p + 16, 4)) return false;
    if (p[16] >= 224) return false; /* multicast, broadcast, reserved: JavaScript decides */
    return true; /* a SYN too: its MSS is clamped where it is queued (dp_clamp_mss) */
  }
  if (v == 6) {
    if (!ipv6 || len < 40 || ((uint32_t)p[4] << 8 | p[5]) + 40 != len) return false;
    if (mj_link_local(p + 8, 6) || mj_link_local(p + 24, 6)) return false;
    if (p[8] == 0xff || p[24] == 0xff) return false; /* any other multicast: JavaScript decides */
    uint8_t nh = p[6];
    return nh == 6 || nh == 17 || nh == 58; /* TCP, UDP, ICMPv6; any extension header: JavaScript */
  }
  return false;
}

/* For a packet dp_plain passed (no IPv4 fragment, no IPv6 extension header): whether it is a TCP SYN or SYN-ACK. */
static bool dp_plain_syn(const uint8_t *p, uint32_t len) {
  uint32_t t = p[0] >> 4 == 4 ? (uint32_t)(p[0] & 0x0f) * 4 : 40;
  uint8_t proto = p[0] >> 4 == 4 ? p[9] : p[6];
  return proto == 6 && len >= t + 20 && (p[t + 13] & 0x02) != 0;
}

/* RFC 1624 incremental update of a 16-bit one's-complement checksum (packet/checksum.ts checksumUpdate16). */
static uint32_t dp_cks16(uint32_t c, uint32_t m, uint32_t n) {
  uint32_t sum = (~c & 0xffff) + (~m & 0xffff) + (n & 0xffff);
  sum = (sum & 0xffff) + (sum >> 16);
  sum = (sum & 0xffff) + (sum >> 16);
  return ~sum & 0xffff;
}

/* decrementTtl (packet/rewrite.ts) on a packet the check passed (TTL / hop limit above 1). */
static void dp_decrement_ttl(uint8_t *p, const struct mj_info *in) {
  if (in->version == 4) {
    uint32_t old = (uint32_t)p[8] << 8 | p[9];
    p[8]--;
    uint32_t c = dp_cks16((uint32_t)p[10] << 8 | p[11], old, (uint32_t)p[8] << 8 | p[9]);
    p[10] = (uint8_t)(c >> 8);
    p[11] = (uint8_t)c;
  } else {
    p[7]--;
  }
}

/* Echo request / reply by the protocol (ICMP 8 / 0, ICMPv6 128 / 129), as the inbound table keys them (quoted-packet.ts). */
#define DP_ICMP_ECHO_REQUEST(proto, t) ((proto) == 1 ? (t) == 8 : (t) == 128)
#define DP_ICMP_ECHO_REPLY(proto, t) ((proto) == 1 ? (t) == 0 : (t) == 129)

/* The flow key of the parsed packet p as the agent sent it (reverse: p travels the other way); false: no flow. */
static bool dp_flow_key(const uint8_t *p, const struct mj_info *in, bool reverse, uint8_t *k) {
  uint32_t n = in->version == 4 ? 4 : 16;
  int32_t sp = in->src_port, dp = in->dst_port;
  if (in->proto == 1 || in->proto == 58) {
    /* ICMP in IPv4, ICMPv6 in IPv6 only: anything else is the event loop's. */
    if ((in->proto == 1) != (in->version == 4)) return false;
    if (reverse ? !DP_ICMP_ECHO_REPLY(in->proto, in->icmp_type) : !DP_ICMP_ECHO_REQUEST(in->proto, in->icmp_type)) return false;
    dp = 0; /* the identifier (src_port), both ways */
    if (reverse) { dp = sp; sp = 0; }
  } else if (in->proto != 6 && in->proto != 17) {
    return false;
  }
  memset(k, 0, DP_FLOW_KEY);
  k[0] = (uint8_t)in->version;
  k[1] = (uint8_t)in->proto;
  memcpy(k + 2, p + (reverse ? in->dst_off : in->src_off), n);
  memcpy(k + 18, p + (reverse ? in->src_off : in->dst_off), n);
  if (reverse) { int32_t x = sp; sp = dp; dp = x; }
  k[34] = (uint8_t)(sp >> 8); k[35] = (uint8_t)sp;
  k[36] = (uint8_t)(dp >> 8); k[37] = (uint8_t)dp;
  return true;
}

/* FNV-1a over p[0, n) keyed with the per-process random seed (chosen keys cannot pile into one probe window), folded. */
static uint32_t dp_hash(const struct dp *d, const uint8_t *p, uint32_t n) {
  uint64_t h = d->flow_seed ^ 0xcbf29ce484222325ull;
  for (uint32_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ull;
  return (uint32_t)(h ^ (h >> 29));
}

static uint32_t dp_flow_hash(const struct dp *d, const uint8_t *k) { return dp_hash(d, k, DP_FLOW_KEY) & (DP_FLOWS - 1); }

/* Whether entry f still answers: not forgotten, its attachment the same as when it was written, seen within its TTL. */
static bool dp_flow_live(const struct dp *d, const struct dp_flow *f, double now) {
  if (f->gen != d->flow_gen || f->slot >= d->natt) return false;
  const struct dp_att *a = &d->atts[f->slot];
  return a->conn != NULL && a->gw && f->agen == a->gen && now - f->seen < a->flow_ttl_ms;
}

/* The live entry for k, or NULL. qe_lock held. */
static struct dp_flow *dp_flow_find(struct dp *d, const uint8_t *k, double now) {
  uint32_t h = dp_flow_hash(d, k);
  for (uint32_t i = 0; i < DP_FLOW_PROBES; i++) {
    struct dp_flow *f = &d->flows[(h + i) & (DP_FLOWS - 1)];
    if (dp_flow_live(d, f, now) && memcmp(f->key, k, DP_FLOW_KEY) == 0) return f;
  }
  return NULL;
}

/* The agent of attachment slot sent k now: refreshes its entry, or takes an empty, dead or the oldest one in its probe window. */
static void dp_flow_seen(struct dp *d, uint32_t slot, const uint8_t *k, double now) {
  uint32_t h = dp_flow_hash(d, k);
  struct dp_flow *victim = NULL;
  bool victim_dead = false;
  for (uint32_t i = 0; i < DP_FLOW_PROBES; i++) {
    struct dp_flow *f = &d->flows[(h + i) & (DP_FLOWS - 1)];
    bool dead = !dp_flow_live(d, f, now);
    if (!dead && memcmp(f->key, k, DP_FLOW_KEY) == 0) {
      victim = f; /* the newest sender owns the flow's answers */
      break;
    }
    if (dead) {
      if (!victim_dead) victim = f, victim_dead = true;
    } else if (victim == NULL || (!victim_dead && f->seen < victim->seen)) {
      victim = f;
    }
  }
  memcpy(victim->key, k, DP_FLOW_KEY);
  victim->slot = (uint16_t)slot;
  victim->gen = d->flow_gen;
  victim->agen = d->atts[slot].gen;
  victim->seen = now;
}

static void dp_flow_drop(struct dp *d, const uint8_t *k, double now) {
  struct dp_flow *f = dp_flow_find(d, k, now);
  if (f != NULL) f->gen = d->flow_gen - 1;
}

/* Receive leg, gateway mode: the agent's packet p (check passed, parse in *in) refreshes its flow; an RST ends it. */
static void dp_gw_rx(struct dp *d, uint32_t slot, uint8_t *p, const struct mj_info *in, double now) {
  if (d->atts[slot].decrement) dp_decrement_ttl(p, in);
  uint8_t k[DP_FLOW_KEY];
  if (in->fragment || !dp_flow_key(p, in, false, k)) return;
  if (in->proto == 6 && in->ip_len >= in->l4_off + 14 && (p[in->l4_off + 13] & 0x04) != 0) dp_flow_drop(d, k, now);
  else dp_flow_seen(d, slot, k, now);
}

/* Way back, gateway mode: the attachment that may send p (a plain packet read from the TUN), or -1. */
static int32_t dp_gw_tx(struct dp *d, const uint8_t *p, uint32_t len, double now) {
  struct mj_info in;
  if (mj_parse(p, len, &in) != 0 || in.fragment) return -1;
  uint8_t k[DP_FLOW_KEY];
  if (!dp_flow_key(p, &in, true, k)) return -1;
  if (in.proto == 6) {
    uint8_t fl = p[in.l4_off + 13];
    if (fl & 0x04) {
      dp_flow_drop(d, k, now); /* JavaScript's path judges the RST, as every later packet of the flow */
      return -1;
    }
    if (fl & 0x01) return -1;
  }
  struct dp_flow *f = dp_flow_find(d, k, now);
  return f != NULL ? (int32_t)f->slot : -1;
}

/* ------------------------------------------------------------ connection IDs */

static uint32_t dp_cid_hash(const struct dp *d, const uint8_t *id, uint32_t n) { return dp_hash(d, id, n) & (DP_CID_BUCKETS - 1); }

/* The receiving attachments by their connection's first CID, built afresh (attach and detach only). qe_lock held. */
static void dp_cid_rebuild(struct dp *d) {
  memset(d->cid_map, 0, DP_CID_BUCKETS * sizeof *d->cid_map);
  for (uint32_t s = 0; s < d->natt; s++) {
    const struct dp_att *a = &d->atts[s];
    if (a->conn == NULL || a->table == NULL) continue;
    const ngtcp2_cid *id = &a->conn->scid;
    d->cid_len = (uint32_t)id->datalen;
    uint32_t h = dp_cid_hash(d, id->data, (uint32_t)id->datalen);
    while (d->cid_map[h] != 0) h = (h + 1) & (DP_CID_BUCKETS - 1);
    d->cid_map[h] = (int32_t)s + 1;
  }
}

/* The receiving attachment the QUIC packet p[0, len) is for (its destination CID), or -1. qe_lock held. */
static int32_t dp_cid_find(const struct dp *d, const uint8_t *p, uint32_t len) {
  const uint8_t *id;
  uint32_t n = d->cid_len;
  if (len == 0 || d->n_rx == 0) return -1;
  if (p[0] & 0x80) {
    if (len < 6 || p[5] != n || len < 6 + n) return -1;
    id = p + 6;
  } else {
    if (len < 1 + n) return -1;
    id = p + 1;
  }
  for (uint32_t h = dp_cid_hash(d, id, n);; h = (h + 1) & (DP_CID_BUCKETS - 1)) {
    int32_t v = d->cid_map[h];
    if (v == 0) return -1;
    const ngtcp2_cid *c = &d->atts[v - 1].conn->scid;
    if (c->datalen == n && memcmp(c->data, id, n) == 0) return v - 1;
  }
}

/*
 * clampTcpMss (packet/rewrite.ts) in C, held to it by a differential test
 * (src/daemon/tun-thread.test.ts): lowers the MSS option of a TCP SYN or
 * SYN-ACK in p[0, len) to fit mtu (RFC 9293 §3.7.1), fixing the checksum
 * incrementally. Returns the new MSS, or 0 when nothing changed.
 */
static uint32_t dp_clamp_mss_parsed(uint8_t *p, const struct mj_info *in, uint32_t mtu);

static uint32_t dp_clamp_mss(uint8_t *p, uint32_t len, uint32_t mtu) {
  struct mj_info in;
  return mj_parse(p, len, &in) == 0 ? dp_clamp_mss_parsed(p, &in, mtu) : 0;
}

/* dp_clamp_mss for a packet mj_parse parsed (verdict 0) into *in, as it is now (clampTcpMssParsed). */
static uint32_t dp_clamp_mss_parsed(uint8_t *p, const struct mj_info *in, uint32_t mtu) {
  if (in->proto != 6 || in->fragment || (p[in->l4_off + 13] & 0x02) == 0) return 0;
  int64_t limit = (int64_t)mtu - (in->version == 4 ? 20 : 40) - 20;
  if (limit <= 0) return 0;
  uint32_t t = in->l4_off, end = in->payload_off, i = t + 20;
  while (i < end) {
    uint8_t kind = p[i];
    if (kind == 0) break;
    if (kind == 1) {
      i++;
      continue;
    }
    if (i + 1 >= end) return 0;
    uint8_t olen = p[i + 1];
    if (olen < 2 || i + olen > end) return 0;
    if (kind == 2 && olen == 4) {
      uint32_t mss = (uint32_t)p[i + 2] << 8 | p[i + 3];
      if (mss <= limit) return 0;
      uint32_t lim = (uint32_t)limit;
      uint32_t cks = (uint32_t)p[t + 16] << 8 | p[t + 17];
      uint32_t c;
      if (((i + 2 - t) & 1) == 0) {
        c = dp_cks16(cks, mss, lim);
      } else { /* the field straddles two 16-bit words: only the difference enters the sum */
        c = dp_cks16(cks, mss >> 8, lim >> 8);
        c = dp_cks16(c, (mss & 0xff) << 8, (lim & 0xff) << 8);
      }
      p[i + 2] = (uint8_t)(lim >> 8);
      p[i + 3] = (uint8_t)lim;
      p[t + 16] = (uint8_t)(c >> 8);
      p[t + 17] = (uint8_t)c;
      return lim;
    }
    i += olen;
  }
  return 0;
}

/*
 * Sends out slots [off, off + n) with the event loop's sender code
 * (mtun_udp_send, udp.c: GSO trains of equal sizes, a refused train resent
 * one by one, EIO turning trains off), counts the outcome, and returns the
 * slots consumed (sent, or refused by the kernel for good and counted as
 * dropped): fewer than n when the socket buffer is full (EAGAIN). qe_lock
 * held (the out slots, d->scr and d->ustats are the lock's).
 */
static uint32_t dp_udp_send(struct dp *d, uint32_t off, uint32_t n) {
  double *u = d->ustats;
  double dg = u[US_TX_DATAGRAMS], by = u[US_TX_BYTES], gso = u[US_TX_GSO_SENDS], err = u[US_TX_ERRORS], refused = u[US_GSO_REFUSED];
  uint32_t k = mtun_udp_send(d->udp_fd, d->udp_family, d->optrs + off, d->osizes + off, d->osegs + off,
                             d->oaddrs + (size_t)off * MTUN_ADDR_SLOT, n, d->gso, u, d->scr);
  dp_count(d, DP_S_UDP_CALLS, 1);
  if (u[US_GSO_FAILED] != 0) d->gso = false;
  dp_count(d, DP_S_UDP_DGRAMS, (uint64_t)(u[US_TX_DATAGRAMS] - dg));
  dp_count(d, DP_S_UDP_BYTES, (uint64_t)(u[US_TX_BYTES] - by));
  dp_count(d, DP_S_UDP_GSO, (uint64_t)(u[US_TX_GSO_SENDS] - gso));
  dp_count(d, DP_S_UDP_GSO_REFUSED, (uint64_t)(u[US_GSO_REFUSED] - refused));
  dp_count(d, DP_S_UDP_DROPPED, (uint64_t)(u[US_TX_ERRORS] - err));
  return k;
}

/* The address slot attachment a's packets go out with: its connection's peer, from the attachment's local address. */
static void dp_peer_slot(const struct dp_att *a, uint8_t *slot) {
  memset(slot, 0, MTUN_ADDR_SLOT);
  mtun_name_to_slot((const struct sockaddr_in6 *)&a->conn->remote, slot);
  memcpy(slot + MTUN_SLOT_LOCAL, a->local, 16);
}

/* Slot's connection is drained again once the send tail is gone (it may have packets waiting, and nothing else would send them). */
static void dp_wait_tail(struct dp *d, uint32_t slot) {
  struct dp_att *a = &d->atts[slot];
  if (a->tail_wait) return;
  a->tail_wait = true;
  d->tw_list[d->ntw++] = slot;
}

/*
 * Sends the n packets of the out slots, of one connection or several (a
 * drain packs every connection it drains into one sendmmsg). What a full
 * socket buffer refuses is kept as the tail, not dropped: the thread sends
 * it once the socket is writable (EPOLLOUT), as the endpoint keeps its own
 * unsent tail (QuicEndpoint.sendOut). Until then the tx_held of each
 * connection with a packet in the batch's tail stops every writer of its
 * packets (qe_conn_send writes none, the event loop's drain included), so
 * packets still leave in packet-number order, and each is drained again
 * once the tail is gone. Dropping the tail instead lost whole send rounds
 * at once: with ngtcp2 0.12, whose probe timeout ignores packets of
 * DATAGRAMs only, a round that took the rest of a congestion window could
 * leave it full for good (nothing in flight would ever be acknowledged or
 * declared lost), and the tunnel stopped carrying anything
 * (test/netns/send-eagain.test.ts, long runs). Returns false when a tail is
 * kept. qe_lock held.
 */
static bool dp_send_batch(struct dp *d, uint32_t n) {
  uint32_t k = dp_udp_send(d, 0, n);
  if (k >= n) return true;
  d->tail_off = d->tail_start = k;
  d->tail_end = n;
  for (uint32_t i = k; i < n; i++) {
    d->oconn[i]->tx_held = true;
    dp_wait_tail(d, d->oslot[i]);
  }
  dp_count(d, DP_S_UDP_STALLS, 1);
  return false;
}

/* Packets of the tail not sent yet. qe_lock held. */
static uint32_t dp_tail_n(const struct dp *d) { return d->tail_end - d->tail_off; }

/* No tail any more; release: its connections may write again. qe_lock held. */
static void dp_end_tail(struct dp *d, bool release) {
  if (release)
    for (uint32_t i = d->tail_start; i < d->tail_end; i++) d->oconn[i]->tx_held = false;
  d->tail_start = d->tail_off = d->tail_end = 0;
}

/* Whether connection c has a packet in the tail (held for it). qe_lock held. */
static bool dp_tail_holds(const struct dp *d, const struct qe_conn *c) {
  if (dp_tail_n(d) == 0) return false;
  for (uint32_t i = d->tail_start; i < d->tail_end; i++)
    if (d->oconn[i] == c) return true;
  return false;
}

/* Sends the kept tail; true when none is left (its connections' writers go on). qe_lock held. */
static bool dp_flush_tail(struct dp *d) {
  if (dp_tail_n(d) == 0) return true;
  d->tail_off += dp_udp_send(d, d->tail_off, dp_tail_n(d));
  if (dp_tail_n(d) > 0) return false;
  dp_end_tail(d, true);
  return true;
}

/* Drops what is left of the tail, counted; release: its connections still exist and may write again. qe_lock held. */
static void dp_drop_tail(struct dp *d, bool release) {
  if (dp_tail_n(d) == 0) return;
  dp_count(d, DP_S_UDP_DROPPED, dp_tail_n(d));
  dp_end_tail(d, release);
}

/* A connection of the tail changes (attach, detach, close): one more try for the tail, then what is left is dropped and counted. qe_lock held. */
static void dp_settle_tail(struct dp *d) {
  if (!dp_flush_tail(d)) dp_drop_tail(d, true);
}

/*
 * Packetizes what the connections of the k listed attachments may send now
 * and sends it, all under qe_lock (held by the caller): their packets share
 * the out slots, so one sendmmsg carries a round of many connections (issue
 * #17: a send call per connection was a third of the thread's system calls
 * at 1,000 sessions), sent whenever the slots fill and at the end.
 */
static void dp_drain_list(struct dp *d, const uint32_t *slots, uint32_t k) {
  if (k == 0) return;
  if (!dp_flush_tail(d)) {
    /* Still full: nothing more until the socket is writable; then these are drained too. */
    for (uint32_t j = 0; j < k; j++) dp_wait_tail(d, slots[j]);
    return;
  }
  uint32_t n = 0;
  for (uint32_t j = 0; j < k; j++) {
    uint32_t slot = slots[j];
    struct dp_att *a = &d->atts[slot];
    struct qe_conn *c = a->conn;
    if (c == NULL || c->conn == NULL) continue;
    /* The connection's peer, read at each drain: the engine follows it when it changes (a NAT rebinding). */
    uint8_t peer[MTUN_ADDR_SLOT];
    dp_peer_slot(a, peer);
    for (int round = 0; round < DP_SEND_ROUNDS; round++) {
      while (n < DP_OUT_PKTS) {
        uint32_t gen = c->peer_gen;
        ssize_t w = qe_conn_send(c, d->optrs[n], DP_PKT_CAP);
        if (w <= 0) break;
        if (c->peer_gen != gen) dp_peer_slot(a, peer); /* moved while writing */
        d->osizes[n] = (uint32_t)w;
        memcpy(d->oaddrs + (size_t)n * MTUN_ADDR_SLOT, peer, MTUN_ADDR_SLOT);
        d->oconn[n] = c;
        d->oslot[n] = slot;
        n++;
      }
      if (n < DP_OUT_PKTS) break; /* this connection has nothing more now */
      /* Sent with the lock held: the event loop's sender (QuicEndpoint, engine.lock() around its drain and
       * sendmmsg) cannot put later packets of these connections on the wire first. Packets leave in
       * packet-number order; when they did not, the gateway wrote the inner TCP's segments out of order
       * and the TCP retransmitted spuriously (4,483 retransmits in 6 s against 591). */
      bool sent = dp_send_batch(d, n);
      n = 0;
      if (!sent) {
        for (uint32_t r = j; r < k; r++) dp_wait_tail(d, slots[r]);
        return;
      }
      if (c->conn == NULL || c->state != QE_OPEN) break;
    }
  }
  if (n > 0) (void)dp_send_batch(d, n);
}

/*
 * Reads up to one batch into the ring's free slots, queues the plain
 * packets, publishes every packet read; with send, packetizes and sends.
 * pmu held. Returns the packets read (0: nothing waited, ring full or a
 * read error, which read_err keeps).
 */
static uint32_t dp_round(struct dp *d, bool send) {
  uint32_t prod = d->ctl[DP_CTL_PROD];
  uint32_t used = dp_unread(d);
  if (used > d->nslots) used = d->nslots; /* a corrupt consumer index: treat as full */
  uint32_t room = d->nslots - used;
  if (room == 0) return 0;
  uint32_t want = room < DP_READ_MAX ? room : DP_READ_MAX;
  for (uint32_t i = 0; i < want; i++) {
    d->ptrs[i] = d->arena + (size_t)((prod + i) % d->nslots) * d->stride;
    d->lens[i] = d->stride;
  }
  uint32_t n = 0;
  if (d->vnet) {
    int err = 0;
    n = mtun_vnet_read(d->tun_fd, d->ptrs, d->lens, d->sizes, want, d->headroom, d->vscratch, MTUN_VNET_SCRATCH_BYTES, d->vstate,
                       NULL, &err);
    if (n == 0 && err != 0) d->read_err = err;
  } else {
    while (n < want) {
      ssize_t r = read(d->tun_fd, d->ptrs[n] + d->headroom, d->stride - d->headroom);
      if (r < 0) {
        if (errno == EINTR) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK && n == 0) d->read_err = errno;
        break;
      }
      d->sizes[n++] = (uint32_t)r;
    }
  }
  if (n == 0) return 0;
  double now = mono_ms();
  uint64_t bytes = 0, queued = 0;
  qe_lock();
  if (++d->round_id == 0) d->round_id = 1; /* 0 is a slot's "not looked at" (dp_set_conn) */
  uint32_t round = d->round_id;
  d->ntx = 0;
  for (uint32_t i = 0; i < n; i++) {
    uint32_t slot = (prod + i) % d->nslots;
    uint8_t *p = d->ptrs[i] + d->headroom;
    uint32_t len = d->sizes[i];
    uint32_t kind = DP_KIND_JS;
    bytes += len;
    /* Which attachment may send it: a gateway's, the one whose agent opened the flow it answers; an agent's, its only one. */
    int32_t s = -1;
    if (d->mode != 0 && dp_plain(true, p, len)) s = d->mode == 2 ? dp_gw_tx(d, p, len, now) : 0;
    struct dp_att *a = s >= 0 ? &d->atts[s] : NULL;
    if (a != NULL && a->round != round) {
      struct qe_conn *c = a->conn;
      a->round = round;
      a->round_ok = c != NULL && c->conn != NULL && c->state == QE_OPEN && c->handshake_done;
      a->round_max = a->round_ok ? qe_dgram_max_writable(c) : -1;
      a->round_stamp = a->round_ok && c->dq_send.stamped ? qe_now() : 0;
      a->round_queued = 0;
    }
    if (a != NULL && a->round_ok && (int64_t)(len + a->prefix_len) <= a->round_max && (a->ipv6 || p[0] >> 4 == 4) &&
        qe_dq_room(&a->conn->dq_send)) {
      if (a->mss_mtu != 0 && dp_plain_syn(p, len)) (void)dp_clamp_mss(p, len, a->mss_mtu); /* in the slot: observed clamped */
      memcpy(p - a->prefix_len, a->prefix, a->prefix_len);
      qe_dq_push(&a->conn->dq_send, p - a->prefix_len, len + a->prefix_len, a->round_stamp);
      if (a->round_queued++ == 0) d->tx_list[d->ntx++] = (uint32_t)s;
      kind = DP_KIND_SENT | ((uint32_t)s + 1) << 8;
      queued++;
    }
    d->meta[2 * slot] = len;
    d->meta[2 * slot + 1] = kind;
    d->stamps[slot] = now;
  }
  if (send) dp_drain_list(d, d->tx_list, d->ntx);
  /* Published before the engine lock is let go: a dpDetach (which takes it) returns after this round's
   * packets are in the ring, so the event loop's drain right after it sees them with the old session. */
  atomic_store_explicit((_Atomic uint32_t *)&d->ctl[DP_CTL_PROD], prod + n, memory_order_release);
  qe_unlock();
  dp_count(d, DP_S_READ, n);
  dp_count(d, DP_S_READ_BYTES, bytes);
  dp_count(d, DP_S_QUEUED, queued);
  dp_count(d, DP_S_TO_JS, n - queued);
  d->round_to_js = n - (uint32_t)queued;
  return n;
}

/* ------------------------------------------------------------ receive leg */

/*
 * True while the thread reads the socket: an attachment with a table.
 * Once a connection is no longer open (closing,
 * draining) it goes on reading and hands every datagram to the endpoint,
 * which answers in the closing period (RFC 9000 §10.2.1) until the owner
 * detaches. qe_lock held.
 */
static bool dp_rx_on(const struct dp *d) {
  return d->n_rx > 0 && !d->rx_stall;
}

/* Whether the connection's packets go through the thread: open, past the handshake. */
static bool dp_conn_open(const struct qe_conn *c) { return c->conn != NULL && c->state == QE_OPEN && c->handshake_done; }

/*
 * A request stream with data or an end to read: capsules, a FIN. The
 * gateway's unidirectional streams (HTTP/3 control: SETTINGS, GOAWAY, its
 * PTO anchors about once a round trip; QPACK) change nothing a DATAGRAM
 * depends on: HTTP/3 reads them on the event loop's next turn without the
 * thread stopping.
 */
static bool dp_streams_readable(const struct qe_conn *c) {
  for (const struct qe_stream *s = c->streams; s != NULL; s = s->next)
    if ((s->id & 0x2) == 0 && qe_stream_readable(s)) return true;
  return false;
}

/* What the receive leg does with one received DATAGRAM (dp_rx_pop). */
enum { DP_RX_WRITE, DP_RX_H3, DP_RX_HOLD };

/*
 * The receive leg's choice for the HTTP Datagram payload p[0, len), with the
 * IP packet's parse in *in when it is DP_RX_WRITE:
 * - WRITE: the event loop's path would write it into the TUN as it is (a
 *   SYN's MSS clamped): our quarter stream ID and context 0, the session's
 *   receive check passes (mj_judge on judgeGatewayIp's table), not a
 *   fragment, fits a ring slot;
 * - H3: the event loop's path writes nothing into the TUN for it: another
 *   stream (a CONNECT-UDP forwarder) or context, or a packet the check drops
 *   (counted there); HTTP/3 gets it through the ring;
 * - HOLD: the event loop may write it into the TUN (a fragment, the link's
 *   own ICMPv6) or it does not fit a slot: nothing the thread writes may
 *   overtake it.
 */
static int dp_rx_class(const struct dp *d, const struct dp_att *a, const uint8_t *p, uint32_t len, struct mj_info *in) {
  uint32_t plen = a->prefix_len;
  if (len <= plen || memcmp(p, a->prefix, plen) != 0) return len > d->mtu ? DP_RX_HOLD : DP_RX_H3;
  if (len - plen > d->mtu) return DP_RX_HOLD;
  int v = mj_judge_info(a->table, p + plen, len - plen, true, in);
  if (v > 0) return len > d->mtu ? DP_RX_HOLD : DP_RX_H3;
  return v < 0 || in->fragment ? DP_RX_HOLD : DP_RX_WRITE;
}

/*
 * Writes the ring slots the receive leg collected into the TUN (one write
 * each, or coalesced TCP runs behind one virtio header), then publishes them
 * to JavaScript: written or refused, each is observed, as on the event
 * loop's path. pmu and qe_lock held.
 */
static void dp_rx_flush(struct dp *d) {
  uint32_t n = d->nw, done = 0;
  uint64_t bytes = 0, dropped = 0;
  if (n > 0) {
    for (uint32_t i = 0; i < n; i++) bytes += d->wsizes[i];
    if (d->vnet) {
      double ts[TS_COUNT] = {0};
      int err = 0;
      done = mtun_vnet_write(d->tun_fd, d->wptrs, d->wsizes, n, d->headroom, d->wscratch, MTUN_VNET_SCRATCH_BYTES, ts, &err);
      dropped = (n - done) + (uint64_t)ts[TS_TX_INVALID];
    } else {
      for (uint32_t i = 0; i < n; i++) {
        ssize_t r;
        do r = write(d->tun_fd, d->wptrs[i] + d->headroom, d->wsizes[i]);
        while (r < 0 && errno == EINTR);
        if (r < 0) dropped++;
      }
    }
    dp_count(d, DP_S_RX_TUN, n - dropped);
    dp_count(d, DP_S_RX_TUN_BYTES, bytes);
    if (dropped > 0) dp_count(d, DP_S_RX_TUN_DROPPED, dropped);
    d->nw = 0;
  }
  if (d->rx_prod > 0) {
    atomic_store_explicit((_Atomic uint32_t *)&d->ctl[DP_CTL_PROD], d->ctl[DP_CTL_PROD] + d->rx_prod, memory_order_release);
    d->rx_prod = 0;
  }
}

/*
 * Holds attachment slot's receive leg: the event loop's path handles its
 * queue first (see dp_rx_pop); the other attachments' go on, so one agent's
 * capsule does not stop the others' packets.
 */
static void dp_hold(struct dp *d, uint32_t slot) {
  struct dp_att *a = &d->atts[slot];
  uint64_t seq = atomic_fetch_add_explicit(&d->st[DP_S_RX_HELD], 1, memory_order_relaxed) + 1;
  d->rx_urgent = true;
  if (a->held) return; /* the first hold stays: nothing of it was popped since */
  a->held = true;
  a->hold_seq = seq;
  d->held_list[d->nheld++] = slot;
}

/* Slot's hold ends (resumed, or its connection changed). qe_lock held. */
static void dp_unhold(struct dp *d, uint32_t slot) {
  if (!d->atts[slot].held) return;
  d->atts[slot].held = false;
  for (uint32_t j = 0; j < d->nheld; j++)
    if (d->held_list[j] == slot) {
      d->held_list[j] = d->held_list[--d->nheld];
      break;
    }
}

/*
 * Pops the connection's received DATAGRAMs while each is a plain packet of
 * the session (its prefix: quarter stream ID, context ID 0): copied into the
 * next ring slot (kind IN) and queued for the TUN. The first that is not —
 * another stream or context, a check that fails, a fragment, too large for a
 * slot — or a full ring holds the connection's receive leg: it stays in the
 * queue, with all after it, for the event loop's path (HTTP/3 reads the
 * queue as always), and the thread neither pops that queue nor feeds the
 * connection itself until JavaScript is done (dpResume); the other
 * attachments go on. So packets reach the TUN in the order they came.
 * pmu and qe_lock held.
 */
static void dp_rx_pop(struct dp *d, uint32_t slot, double now) {
  struct dp_att *a = &d->atts[slot];
  struct qe_dq *q = &a->conn->dq_recv;
  uint32_t plen = a->prefix_len;
  while (q->count > 0 && !a->held) {
    const uint8_t *p = q->mem + (size_t)q->head * q->slot;
    uint32_t len = q->lens[q->head];
    uint32_t prod = d->ctl[DP_CTL_PROD] + d->rx_prod;
    uint32_t used = prod - atomic_load_explicit((_Atomic uint32_t *)&d->ctl[DP_CTL_CONS], memory_order_acquire);
    struct mj_info in;
    int what = used >= d->nslots ? DP_RX_HOLD : dp_rx_class(d, a, p, len, &in);
    if (what == DP_RX_HOLD) {
      dp_hold(d, slot);
      if (used >= d->nslots && !d->rx_stall) {
        d->rx_stall = true;
        d->stall_seq = a->hold_seq;
      }
      break;
    }
    uint32_t rs = prod % d->nslots;
    uint8_t *base = d->arena + (size_t)rs * d->stride;
    /* H3: the whole payload, for HTTP/3 on the event loop (rx_urgent: it waits for it); WRITE: the IP packet. */
    /* A gateway writes the IP packet's own length, as its session does (bytes after it in the DATAGRAM are not the packet's). */
    uint32_t n = what == DP_RX_H3 ? len : a->gw && in.ip_len < len - plen ? in.ip_len : len - plen;
    memcpy(base + d->headroom, what == DP_RX_H3 ? p : p + plen, n);
    qe_dq_pop(q);
    d->meta[2 * rs] = n;
    d->meta[2 * rs + 1] = (what == DP_RX_H3 ? DP_KIND_H3 : DP_KIND_IN) | (slot + 1) << 8;
    d->stamps[rs] = now;
    d->rx_prod++;
    if (what == DP_RX_H3) {
      d->rx_urgent = true;
      dp_count(d, DP_S_RX_TO_H3, 1);
      continue;
    }
    if (a->mss_mtu != 0) (void)dp_clamp_mss_parsed(base + d->headroom, &in, a->mss_mtu);
    if (a->gw) dp_gw_rx(d, slot, base + d->headroom, &in, now);
    d->wptrs[d->nw] = base;
    d->wsizes[d->nw] = n;
    if (++d->nw == DP_READ_MAX) dp_rx_flush(d);
  }
}

/* A datagram the endpoint handles as it came (its ring; a full ring or an oversized datagram is a counted drop). */
static void dp_to_endpoint(struct dp *d, const uint8_t *p, uint32_t len, const uint8_t *addr) {
  uint32_t prod = d->ctl[DP_CTL_UPROD];
  uint32_t used = prod - atomic_load_explicit((_Atomic uint32_t *)&d->ctl[DP_CTL_UCONS], memory_order_acquire);
  d->rx_urgent = true;
  if (used >= d->uslots || len > d->ustride) {
    dp_count(d, DP_S_RX_DROPPED, 1);
    return;
  }
  uint32_t i = prod % d->uslots;
  memcpy(d->uarena + (size_t)i * d->ustride, p, len);
  d->umeta[i] = len;
  memcpy(d->uaddrs + (size_t)i * MTUN_ADDR_SLOT, addr, MTUN_ADDR_SLOT);
  atomic_store_explicit((_Atomic uint32_t *)&d->ctl[DP_CTL_UPROD], prod + 1, memory_order_release);
  dp_count(d, DP_S_RX_TO_ENDPOINT, 1);
}

/* One QUIC packet (a UDP datagram or GRO segment) from addr: an attached connection's (its first CID, its peer's address), or the endpoint's. */
static void dp_rx_one(struct dp *d, uint8_t *p, uint32_t len, const uint8_t *addr, double now) {
  int32_t s = dp_cid_find(d, p, len);
  struct qe_conn *c = s >= 0 ? d->atts[s].conn : NULL;
  /* Another connection, or from another address (a path change): the endpoint decides. */
  /* Held: its datagrams go to the endpoint as they came, after what the connection's queue holds (the event loop
   * handles that queue first), so the queue cannot overflow behind the held DATAGRAM. */
  bool mine = c != NULL && !d->atts[s].held && !d->rx_stall && dp_conn_open(c);
  if (mine) {
    uint8_t peer[MTUN_ADDR_SLOT];
    dp_peer_slot(&d->atts[s], peer);
    mine = memcmp(addr, peer, MTUN_SLOT_PEER_BYTES) == 0;
  }
  if (mine && d->atts[s].gated) {
    struct dp_att *g = &d->atts[s];
    if ((int32_t)(atomic_load_explicit((_Atomic uint32_t *)&d->ctl[DP_CTL_UCONS], memory_order_acquire) - g->gate) < 0) {
      dp_to_endpoint(d, p, len, addr);
      g->gate = d->ctl[DP_CTL_UPROD];
      return;
    }
    g->gated = false; /* JavaScript released all of them: the thread takes over */
  }
  if (!mine) {
    dp_to_endpoint(d, p, len, addr);
    return;
  }
  struct dp_att *a = &d->atts[s];
  if (!a->rx_listed) {
    a->rx_listed = true;
    d->rx_list[d->nrx++] = (uint32_t)s;
  }
  if (a->js_rx++ == 0) d->js_list[d->njs++] = (uint32_t)s;
  if (qe_conn_recv(c, p, len, NULL, 0) != 0) {
    dp_count(d, DP_S_RX_REFUSED, 1);
    d->rx_urgent = true;
  } else if (a->gw) {
    /* A gateway answers from the address the agent's authenticated datagrams come to, as the endpoint does. */
    memcpy(a->local, addr + MTUN_SLOT_LOCAL, 16);
  }
  if (c->state != QE_OPEN) d->rx_urgent = true;
  /* Stream data first, as HTTP/3 reads it before the DATAGRAMs: a capsule may change the session's check
   * (addresses, routes) or end it. The event loop reads it, then the queue, then lets the thread go on. */
  if (dp_streams_readable(c)) dp_hold(d, (uint32_t)s);
  else dp_rx_pop(d, (uint32_t)s, now);
}

/*
 * The socket is readable: receives for the attached connection, writes the
 * plain packets into the TUN and publishes them. Sending (the ACKs) waits
 * for dp_rx_send, after the thread has read the TUN: the kernel's answers
 * to what was written (TCP ACKs of a download, a ping's reply) then leave
 * in the same packets as the QUIC ACK, as on the event loop's path
 * (endpoint.setBeforeSend), instead of each in a packet of its own. Each round takes pmu, then qe_lock, and lets go of
 * both (the event loop waits one round at most: 8 slots, or with GRO as many as the TUN budget left holds full); the wake ends after
 * DP_RX_TUN_BUDGET packets written (one slot over at most), so the TUN is read again in time.
 * Returns whether anything was received.
 */
static bool dp_rx(struct dp *d) {
  bool any = false;
  uint32_t written = 0;
  for (int round = 0; round < DP_RX_ROUNDS && written < DP_RX_TUN_BUDGET; round++) {
    pthread_mutex_lock(&d->pmu);
    qe_lock();
    if (!dp_rx_on(d)) {
      qe_unlock();
      pthread_mutex_unlock(&d->pmu);
      break;
    }
    double trunc = d->rstats[US_RX_TRUNCATED];
    /* When the socket coalesces (UDP GRO), a slot may hold up to 64 datagrams: a round takes as many slots as
     * the TUN budget left can hold full (at least one), so the budget is passed by one slot at most and a
     * round (both locks held) handles 256 datagrams at most. One slot per round cost a fifth of a download's
     * rate against this (interleaved). */
    int32_t want = DP_RX_SLOTS;
    if (d->rx_gro) {
      want = (int32_t)((DP_RX_TUN_BUDGET - written) / DP_RX_GRO_SEGS);
      if (want < 1) want = 1;
      if (want > DP_RX_SLOTS) want = DP_RX_SLOTS;
    }
    int32_t n = mtun_udp_recv(d->udp_fd, d->rptrs, d->rlens, (uint32_t)want, d->rsizes, d->raddrs, d->rsegs, d->rstats, d->rscr);
    if (d->rstats[US_RX_TRUNCATED] > trunc) dp_count(d, DP_S_RX_DROPPED, (uint64_t)(d->rstats[US_RX_TRUNCATED] - trunc));
    if (n < 0) dp_count(d, DP_S_RX_ERRORS, 1);
    if (n > 0) {
      any = true;
      double now = mono_ms();
      uint64_t dgrams = 0, bytes = 0, before = atomic_load_explicit(&d->st[DP_S_RX_TUN], memory_order_relaxed);
      for (int32_t i = 0; i < n; i++) {
        uint32_t size = d->rsizes[i], seg = d->rsegs[i] > 0 ? d->rsegs[i] : size;
        if (seg < size) dp_count(d, DP_S_RX_GRO, 1);
        const uint8_t *addr = d->raddrs + (size_t)i * MTUN_ADDR_SLOT;
        for (uint32_t off = 0; off < size; off += seg) {
          uint32_t len = size - off < seg ? size - off : seg;
          dgrams++;
          bytes += len;
          dp_rx_one(d, d->rptrs[i] + off, len, addr, now);
        }
      }
      dp_count(d, DP_S_RX_DATAGRAMS, dgrams);
      dp_count(d, DP_S_RX_BYTES, bytes);
      dp_rx_flush(d);
      written += (uint32_t)(atomic_load_explicit(&d->st[DP_S_RX_TUN], memory_order_relaxed) - before);
    }
    qe_unlock();
    pthread_mutex_unlock(&d->pmu);
    if (n < want) break;
  }
  return any;
}

/* After a receive: sends what the connections fed may send now (ACKs, and what the TUN read queued). */
static void dp_rx_send(struct dp *d) {
  qe_lock();
  uint32_t k = 0;
  for (uint32_t j = 0; j < d->nrx; j++) {
    struct dp_att *a = &d->atts[d->rx_list[j]];
    a->rx_listed = false;
    if (a->conn != NULL && a->table != NULL && dp_conn_open(a->conn)) d->rx_list[k++] = d->rx_list[j];
  }
  d->nrx = 0;
  dp_drain_list(d, d->rx_list, k);
  qe_unlock();
}

/*
 * Drains the connections whose drain stopped at the send tail, once the
 * tail is gone (sent, or settled at a detach); true when it did. Only this
 * thread drains, so only it writes the list: read without the lock first.
 */
static bool dp_drain_waiters(struct dp *d) {
  if (d->ntw == 0) return false;
  bool done = false;
  qe_lock();
  if (dp_tail_n(d) == 0) {
    uint32_t n = d->ntw;
    d->ntw = 0;
    memcpy(d->tw_scratch, d->tw_list, n * sizeof *d->tw_list);
    for (uint32_t j = 0; j < n; j++) d->atts[d->tw_scratch[j]].tail_wait = false;
    dp_drain_list(d, d->tw_scratch, n); /* a new tail lists the rest again */
    done = true;
  }
  qe_unlock();
  return done;
}

/*
 * The thread's interest in the socket (thread only; the attachment read
 * under qe_lock): readable while the receive leg is on, writable while a
 * tail waits.
 */
static void dp_poll_udp(struct dp *d) {
  qe_lock();
  uint32_t want = (dp_rx_on(d) ? EPOLLIN : 0) | (dp_tail_n(d) > 0 ? EPOLLOUT : 0);
  qe_unlock();
  if (d->udp_events == want) return;
  struct epoll_event ev = {.events = want, .data.u32 = 3};
  int op = d->udp_events == 0 ? EPOLL_CTL_ADD : want == 0 ? EPOLL_CTL_DEL : EPOLL_CTL_MOD;
  if (epoll_ctl(d->epfd, op, d->udp_fd, &ev) == 0 || want == 0) d->udp_events = want;
}

static void dp_poll_tun(struct dp *d, bool on) {
  if (d->tun_polled == on) return;
  struct epoll_event ev = {.events = EPOLLIN, .data.u32 = 1};
  if (epoll_ctl(d->epfd, on ? EPOLL_CTL_ADD : EPOLL_CTL_DEL, d->tun_fd, &ev) == 0 || !on) d->tun_polled = on;
}

static void *dp_thread(void *arg) {
  struct dp *d = arg;
  struct epoll_event evs[4];
  bool owed = false; /* JavaScript is owed a wake for what was published or received (deferred) */
  while (!atomic_load(&d->stop)) {
    int k = epoll_wait(d->epfd, evs, 4, -1);
    if (k < 0 && errno != EINTR) break;
    bool timer_fired = false, rx_ready = false, tx_ready = false;
    for (int i = 0; i < k; i++) {
      uint64_t v;
      if (evs[i].data.u32 == 3) {
        rx_ready = (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) != 0 && (d->udp_events & EPOLLIN) != 0;
        tx_ready = (evs[i].events & (EPOLLOUT | EPOLLERR)) != 0;
      } else if (evs[i].data.u32 == 0) {
        ssize_t r = read(d->efd, &v, sizeof v);
        (void)r;
      } else if (evs[i].data.u32 == 2) {
        ssize_t r = read(d->tfd, &v, sizeof v);
        (void)r;
        timer_fired = true;
        d->timer_armed = false;
      }
    }
    if (atomic_load(&d->stop)) break;
    /* The socket has room for the tail: send it, then what the connection has waiting (a closing one its
     * CONNECTION_CLOSE); JavaScript is owed a wake to re-arm the connection's timers. */
    if (tx_ready) {
      qe_lock();
      if (dp_tail_n(d) > 0 && dp_flush_tail(d)) owed = true; /* its connections are waiters: drained next */
      qe_unlock();
    }
    if (dp_drain_waiters(d)) owed = true;
    /* Anything received wakes JavaScript within DP_DEFER_NS at the latest: it observes what was written and
     * re-arms the connection's timers after the engine's state changed here (an ACK is due, a loss timer moved). */
    bool rx_published = rx_ready && dp_rx(d);
    pthread_mutex_lock(&d->pmu);
    bool urgent = d->rx_urgent;
    d->rx_urgent = false;
    atomic_store(&d->stalled, false);
    dp_count(d, DP_S_WAKES, 1);
    bool published = rx_published;
    /* The TUN is the thread's from dpOpen on, attached or not: detached (no session, HTTP/2), every
     * packet goes to the event loop's path through the ring. One reader, so no packet is overtaken at
     * a hand-over and no partly split super-packet is left in another reader's scratch. */
    if (d->read_err != 0) {
      dp_poll_tun(d, false);
    } else {
      dp_poll_tun(d, true);
      for (int r = 0; r < DP_ROUNDS; r++) {
        uint32_t n = dp_round(d, true);
        if (n > 0) published = true;
        if (n > 0 && d->round_to_js > 0) urgent = true;
        if (n < DP_READ_MAX) break;
        /* Between rounds the producer lock is let go: a dpPoll of the event loop waits one round at most. */
        pthread_mutex_unlock(&d->pmu);
        pthread_mutex_lock(&d->pmu);
      }
      /* Ring full: stop polling the TUN until JavaScript releases slots. The flag is set before the
       * consumer index is read again, and dpRelease reads the flag after JavaScript stored the index,
       * each side with a full fence between its store and its load (a seq_cst store followed by an
       * acquire load may be reordered, e.g. on ARMv8.3 STLR/LDAPR), so one of the two sees the
       * other: no lost wake. */
      if (d->read_err != 0) {
        dp_poll_tun(d, false);
      } else if (dp_unread(d) >= d->nslots) {
        atomic_store(&d->stalled, true);
        atomic_thread_fence(memory_order_seq_cst);
        if (dp_unread(d) >= d->nslots) {
          dp_poll_tun(d, false);
          dp_count(d, DP_S_RING_FULL, 1);
        } else {
          atomic_store(&d->stalled, false);
        }
      }
    }
    bool err = d->read_err != 0 && !d->err_reported;
    if (err) d->err_reported = true;
    uint32_t unread = dp_unread(d);
    pthread_mutex_unlock(&d->pmu);
    if (rx_published) dp_rx_send(d);
    /* A drain of this wake may have sent a tail (its opening flush): its waiters go now, not at some later event. */
    if (dp_drain_waiters(d)) owed = true;
    dp_poll_udp(d);
    owed = owed || published;
    if (err || urgent || unread >= DP_SIGNAL_FILL || (timer_fired && (unread > 0 || owed))) {
      dp_signal(d);
      owed = false;
      if (d->timer_armed) {
        struct itimerspec off = {{0, 0}, {0, 0}};
        timerfd_settime(d->tfd, 0, &off, NULL);
        d->timer_armed = false;
      }
    } else if (owed && !d->timer_armed) {
      struct itimerspec in = {{0, 0}, {0, DP_DEFER_NS}};
      if (timerfd_settime(d->tfd, 0, &in, NULL) == 0) d->timer_armed = true;
      else dp_signal(d);
    }
  }
  return NULL;
}

/* ------------------------------------------------------------------ N-API */

static void dp_on_async(uv_async_t *h) {
  struct dp *d = h->data;
  if (d == NULL || d->cb_ref == NULL) return;
  napi_handle_scope scope;
  if (napi_open_handle_scope(d->env, &scope) != napi_ok) return;
  mtun_make_callback(d->env, d->cb_ref, d->actx, 0, NULL);
  napi_close_handle_scope(d->env, scope);
}

static void dp_async_closed(uv_handle_t *h) { free(h); }

static void dp_stop(struct dp *d) {
  if (d->started) {
    atomic_store(&d->stop, true);
    dp_kick(d);
    pthread_join(d->th, NULL);
    d->started = false;
  }
}

static void dp_release_js(napi_env env, struct dp *d, bool finalizing) {
  for (int i = 0; i < 7; i++)
    if (d->refs[i] != NULL) {
      napi_delete_reference(env, d->refs[i]);
      d->refs[i] = NULL;
    }
  if (d->cb_ref != NULL) {
    napi_delete_reference(env, d->cb_ref);
    d->cb_ref = NULL;
  }
  if (d->actx != NULL) {
    napi_async_destroy(env, d->actx);
    d->actx = NULL;
  }
  qe_lock();
  /* The thread has stopped. At environment teardown the connection (and the caller's socket) may already be
   * gone: the tail is dropped without touching either; otherwise it gets one more try. */
  if (finalizing) dp_drop_tail(d, false);
  else dp_settle_tail(d);
  uint32_t natt = d->natt;
  for (uint32_t s = 0; s < natt; s++) d->atts[s].conn = NULL, d->atts[s].tail_wait = false, d->atts[s].held = false;
  d->natt = d->n_rx = d->ntw = 0;
  d->mode = 0;
  d->nheld = 0;
  d->rx_stall = false;
  if (d->cid_map != NULL) dp_cid_rebuild(d);
  qe_unlock();
  for (uint32_t s = 0; s < natt; s++) {
    struct dp_att *a = &d->atts[s];
    if (a->conn_ref != NULL) napi_delete_reference(env, a->conn_ref);
    a->conn_ref = NULL;
    mj_table_unref(a->table);
    a->table = NULL;
  }
  if (d->async != NULL) {
    d->async->data = NULL;
    uv_close((uv_handle_t *)d->async, dp_async_closed);
    d->async = NULL;
  }
}

static void dp_free_fds(struct dp *d) {
  if (d->epfd >= 0) close(d->epfd);
  if (d->efd >= 0) close(d->efd);
  if (d->tfd >= 0) close(d->tfd);
  d->epfd = d->efd = d->tfd = -1;
  free(d->vscratch);
  free(d->out);
  free(d->scr);
  free(d->rbuf);
  free(d->rscr);
  free(d->wscratch);
  free(d->flows);
  free(d->atts);
  free(d->cid_map);
  free(d->rx_list);
  free(d->js_list);
  free(d->tw_list);
  free(d->tw_scratch);
  free(d->held_list);
  d->flows = NULL;
  d->atts = NULL;
  d->cid_map = NULL;
  d->rx_list = d->js_list = d->tw_list = d->tw_scratch = d->held_list = NULL;
  d->vscratch = d->out = d->rbuf = d->wscratch = NULL;
  d->scr = d->rscr = NULL;
}

static void dp_finalize(napi_env env, void *data, void *hint) {
  struct dp *d = data;
  if (d->magic == DP_MAGIC) {
    dp_stop(d);
    dp_release_js(env, d, true);
    dp_free_fds(d);
    pthread_mutex_destroy(&d->pmu);
  }
  d->magic = 0;
  free(d);
}

static struct dp *dp_of(napi_env env, napi_value v) {
  struct dp *d = ext(env, v);
  if (d == NULL || d->magic != DP_MAGIC || !d->started) {
    mtun_throw_type(env, "dataplane: not an open data plane");
    return NULL;
  }
  return d;
}

/*
 * dpOpen(tunFd, vnet, udpFd, gso, arena, stride, headroom, mtu, meta, stamps, ctl, onReady, uarena, ustride, umeta, uaddrs) → handle.
 * arena: nslots slots of stride bytes (packet i at slot + headroom, mtu at most);
 * meta: Uint32Array(2 nslots); stamps: Float64Array(nslots); ctl: Uint32Array(4), zeroed.
 * The endpoint ring: uarena, uslots slots of ustride bytes; umeta: Uint32Array(uslots); uaddrs: uslots address slots.
 */
static napi_value dp_open(napi_env env, napi_callback_info info) {
  MTUN_ARGS(16);
  if (argc < 16)
    return mtun_throw_type(env, "dataplane: dpOpen(tunFd, vnet, udpFd, gso, arena, stride, headroom, mtu, meta, stamps, ctl, onReady, uarena, ustride, umeta, uaddrs)");
  int32_t tun_fd, udp_fd;
  bool vnet, gso;
  uint32_t stride, headroom, mtu, ustride;
  uint8_t *arena, *uarena;
  size_t alen, nmeta, nstamps, nctl, ualen, numeta, nuaddrs;
  void *meta, *stamps, *ctl, *umeta, *uaddrs;
  if (!mtun_arg_i32(env, argv[0], "tunFd", &tun_fd) || !mtun_arg_bool(env, argv[1], "vnet", &vnet) ||
      !mtun_arg_i32(env, argv[2], "udpFd", &udp_fd) || !mtun_arg_bool(env, argv[3], "gso", &gso) ||
      !mtun_arg_u32(env, argv[5], "stride", &stride) || !mtun_arg_u32(env, argv[6], "headroom", &headroom) ||
      !mtun_arg_u32(env, argv[7], "mtu", &mtu) ||
      !mtun_arg_typed(env, argv[8], napi_uint32_array, "meta", &meta, &nmeta) ||
      !mtun_arg_typed(env, argv[9], napi_float64_array, "stamps", &stamps, &nstamps) ||
      !mtun_arg_typed(env, argv[10], napi_uint32_array, "ctl", &ctl, &nctl) ||
      !mtun_arg_u32(env, argv[13], "ustride", &ustride) ||
      !mtun_arg_typed(env, argv[14], napi_uint32_array, "umeta", &umeta, &numeta) ||
      !mtun_arg_typed(env, argv[15], napi_uint8_array, "uaddrs", &uaddrs, &nuaddrs))
    return NULL;
  if (!bytes_of(env, argv[12], &uarena, &ualen)) return mtun_throw_type(env, "dataplane: uarena must be a Buffer");
  if (ustride < 1200 || ustride > 65536 || ualen % ustride != 0 || ualen / ustride == 0 || ualen / ustride > 4096)
    return mtun_throw_type(env, "dataplane: uarena must hold 1 to 4096 whole slots of 1200 to 65536 bytes");
  uint32_t uslots = (uint32_t)(ualen / ustride);
  if ((uslots & (uslots - 1)) != 0) return mtun_throw_type(env, "dataplane: the endpoint ring's slot count must be a power of two");
  if (numeta < uslots || nuaddrs < (size_t)uslots * MTUN_ADDR_SLOT) return mtun_throw_type(env, "dataplane: umeta or uaddrs shorter than the endpoint ring");
  if (!bytes_of(env, argv[4], &arena, &alen)) return mtun_throw_type(env, "dataplane: arena must be a Buffer");
  napi_valuetype t;
  napi_typeof(env, argv[11], &t);
  if (t != napi_function) return mtun_throw_type(env, "dataplane: onReady must be a function");
  if (tun_fd < 0 || udp_fd < 0) return mtun_throw_type(env, "dataplane: fds must be open");
  if (headroom < 16 || mtu < 576 || mtu > 65535 || stride < headroom + mtu) return mtun_throw_type(env, "dataplane: each slot needs headroom (>= 16) + mtu bytes");
  if (alen % stride != 0 || alen / stride < DP_READ_MAX || alen / stride > (1u << 20)) return mtun_throw_type(env, "dataplane: arena must hold 64 to 2^20 whole slots");
  uint32_t nslots = (uint32_t)(alen / stride);
  if ((nslots & (nslots - 1)) != 0) return mtun_throw_type(env, "dataplane: the ring's slot count must be a power of two (its indices wrap at 2^32)");
  if (nmeta < 2 * (size_t)nslots || nstamps < nslots || nctl < DP_CTL_LEN) return mtun_throw_type(env, "dataplane: meta, stamps or ctl shorter than the ring");
  struct sockaddr_storage ss;
  socklen_t sl = sizeof ss;
  if (getsockname(udp_fd, (struct sockaddr *)&ss, &sl) != 0) return mtun_throw_errno(env, "dataplane", "getsockname", errno);
  struct dp *d = calloc(1, sizeof *d);
  if (d == NULL) return mtun_throw_errno(env, "dataplane", "calloc", ENOMEM);
  d->magic = DP_MAGIC;
  d->tun_fd = tun_fd;
  d->udp_fd = udp_fd;
  {
    /* Does the socket coalesce (UDP GRO)? Then a receive slot may hold up to 64 datagrams (dp_rx sizes its rounds by it). */
    int v = 0;
    socklen_t vl = sizeof v;
    d->rx_gro = getsockopt(udp_fd, SOL_UDP, UDP_GRO, &v, &vl) == 0 && v != 0;
  }
  d->vnet = vnet;
  d->gso = gso;
  d->udp_family = ss.ss_family == AF_INET6 ? 0 : 4;
  d->nslots = nslots;
  d->stride = stride;
  d->headroom = headroom;
  d->arena = arena;
  d->meta = meta;
  d->stamps = stamps;
  d->ctl = ctl;
  d->mtu = stride - headroom;
  d->uarena = uarena;
  d->ustride = ustride;
  d->uslots = uslots;
  d->umeta = umeta;
  d->uaddrs = uaddrs;
  d->env = env;
  d->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  d->epfd = epoll_create1(EPOLL_CLOEXEC);
  d->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  d->out = malloc((size_t)DP_OUT_PKTS * DP_PKT_CAP);
  d->scr = malloc(sizeof *d->scr);
  for (uint32_t i = 0; d->out != NULL && i < DP_OUT_PKTS; i++) d->optrs[i] = d->out + (size_t)i * DP_PKT_CAP;
  d->vscratch = vnet ? malloc(MTUN_VNET_SCRATCH_BYTES) : NULL;
  d->wscratch = vnet ? malloc(MTUN_VNET_SCRATCH_BYTES) : NULL;
  d->rbuf = malloc((size_t)DP_RX_SLOTS * DP_RX_SLOT_BYTES);
  d->rscr = malloc(sizeof *d->rscr);
  d->flows = calloc(DP_FLOWS, sizeof *d->flows); /* untouched (no RSS) unless a gateway attaches */
  d->atts = calloc(DP_ATT_MAX, sizeof *d->atts);
  d->cid_map = calloc(DP_CID_BUCKETS, sizeof *d->cid_map);
  d->rx_list = calloc(DP_ATT_MAX, sizeof *d->rx_list);
  d->js_list = calloc(DP_ATT_MAX, sizeof *d->js_list);
  d->tw_list = calloc(DP_ATT_MAX, sizeof *d->tw_list);
  d->tw_scratch = calloc(DP_ATT_MAX, sizeof *d->tw_scratch);
  d->held_list = calloc(DP_ATT_MAX, sizeof *d->held_list);
  if (getrandom(&d->flow_seed, sizeof d->flow_seed, GRND_NONBLOCK) != sizeof d->flow_seed) d->flow_seed = (uint64_t)qe_now() * 0x9e3779b97f4a7c15ull;
  for (uint32_t i = 0; d->rbuf != NULL && i < DP_RX_SLOTS; i++) {
    d->rptrs[i] = d->rbuf + (size_t)i * DP_RX_SLOT_BYTES;
    d->rlens[i] = DP_RX_SLOT_BYTES;
  }
  pthread_mutex_init(&d->pmu, NULL);
  int err = 0;
  if (d->efd < 0 || d->epfd < 0 || d->tfd < 0) err = errno;
  else if (d->out == NULL || d->scr == NULL || d->rbuf == NULL || d->rscr == NULL || d->flows == NULL || d->atts == NULL || d->cid_map == NULL || d->rx_list == NULL || d->js_list == NULL || d->tw_list == NULL || d->tw_scratch == NULL || d->held_list == NULL || (vnet && (d->vscratch == NULL || d->wscratch == NULL)))
    err = ENOMEM;
  if (err == 0) {
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = 0};
    struct epoll_event tev = {.events = EPOLLIN, .data.u32 = 2};
    if (epoll_ctl(d->epfd, EPOLL_CTL_ADD, d->efd, &ev) != 0 || epoll_ctl(d->epfd, EPOLL_CTL_ADD, d->tfd, &tev) != 0) err = errno;
  }
  d->async = err == 0 ? calloc(1, sizeof *d->async) : NULL;
  uv_loop_t *loop = NULL;
  if (err == 0 && (d->async == NULL || napi_get_uv_event_loop(env, &loop) != napi_ok || uv_async_init(loop, d->async, dp_on_async) != 0)) {
    free(d->async);
    d->async = NULL;
    err = err ? err : ENOMEM;
  }
  if (err != 0) {
    dp_free_fds(d);
    pthread_mutex_destroy(&d->pmu);
    free(d);
    return mtun_throw_errno(env, "dataplane", "open", err);
  }
  d->async->data = d;
  uv_unref((uv_handle_t *)d->async); /* the daemon's own handles keep the loop alive, not this */
  static const int which[7] = {4, 8, 9, 10, 12, 14, 15};
  napi_value rname;
  bool refs_ok = napi_create_reference(env, argv[11], 1, &d->cb_ref) == napi_ok &&
                 napi_create_string_utf8(env, "mtun:tun-thread", NAPI_AUTO_LENGTH, &rname) == napi_ok &&
                 napi_async_init(env, NULL, rname, &d->actx) == napi_ok;
  for (int i = 0; i < 7 && refs_ok; i++) refs_ok = napi_create_reference(env, argv[which[i]], 1, &d->refs[i]) == napi_ok;
  napi_value r;
  if (!refs_ok || napi_create_external(env, d, dp_finalize, NULL, &r) != napi_ok) {
    dp_release_js(env, d, false);
    dp_free_fds(d);
    pthread_mutex_destroy(&d->pmu);
    free(d);
    QE_ERR(env, "dataplane: cannot wrap");
  }
  if ((err = pthread_create(&d->th, NULL, dp_thread, d)) != 0) return mtun_throw_errno(env, "dataplane", "pthread_create", err);
  d->started = true;
  dp_kick(d); /* the first wake adds the TUN to the thread's epoll */
  return r;
}

/*
 * Replaces attachment slot (the engine lock held: the only place the thread
 * reads it) and lets go of the old connection's reference and table. The
 * caller rebuilds the CID map once it is done (dp_cid_rebuild) and wakes
 * the thread, which then polls the socket, or stops polling it.
 */
static void dp_set_conn_locked(napi_env env, struct dp *d, uint32_t slot, struct qe_conn *c, napi_ref ref, const uint8_t *prefix,
                               size_t plen, bool ipv6, struct mj_table *table, uint32_t mss_mtu, double flow_ttl_ms,
                               const uint8_t *local) {
  if (table != NULL) mj_table_ref(table);
  struct dp_att *a = &d->atts[slot];
  napi_ref old = a->conn_ref;
  struct mj_table *old_table = a->table;
  struct qe_conn *old_conn = a->conn;
  if (c != old_conn) {
    dp_unhold(d, slot);
    if (old_conn != NULL && dp_tail_holds(d, old_conn)) dp_settle_tail(d);
  }
  if (a->conn != NULL && a->table != NULL) d->n_rx--;
  a->conn = c;
  a->conn_ref = ref;
  if (plen > 0) memcpy(a->prefix, prefix, plen);
  a->prefix_len = (uint32_t)plen;
  a->ipv6 = ipv6;
  a->mss_mtu = mss_mtu;
  if (local != NULL) memcpy(a->local, local, 16);
  else memset(a->local, 0, 16);
  a->table = table; /* a new table for the same connection keeps a hold: what the event loop has not handled stays first */
  a->gw = c != NULL && table != NULL && table->kind == MJ_KIND_GATEWAY;
  a->decrement = a->gw && (table->flags & MJ_F_DECREMENT) != 0;
  a->flow_ttl_ms = flow_ttl_ms;
  a->gen++; /* routes, grants or the connection may have changed: no flow answers from before */
  a->round = 0;
  if (c != old_conn || (old_table == NULL && table != NULL)) {
    /* The endpoint ring is written under this lock too (dp_to_endpoint), so the indices are settled here. */
    uint32_t uprod = d->ctl[DP_CTL_UPROD];
    uint32_t ucons = atomic_load_explicit((_Atomic uint32_t *)&d->ctl[DP_CTL_UCONS], memory_order_acquire);
    a->gated = c != NULL && table != NULL && uprod != ucons;
    a->gate = uprod;
  }
  if (c != NULL) {
    if (table != NULL) d->n_rx++;
    if (slot >= d->natt) d->natt = slot + 1;
  } else {
    while (d->natt > 0 && d->atts[d->natt - 1].conn == NULL) d->natt--;
  }
  if (d->n_rx == 0) {
    while (d->nheld > 0) dp_unhold(d, d->held_list[d->nheld - 1]);
    d->rx_stall = false;
  }
  if (d->natt == 0) d->mode = 0; /* nothing attached */
  else if (c != NULL) d->mode = a->gw ? 2 : 1;
  if (old != NULL) napi_delete_reference(env, old);
  mj_table_unref(old_table);
}

/* dp_set_conn_locked for one slot, under the engine lock, with the map rebuilt and the thread woken. */
static void dp_set_conn(napi_env env, struct dp *d, uint32_t slot, struct qe_conn *c, napi_ref ref, const uint8_t *prefix,
                        size_t plen, bool ipv6, struct mj_table *table, uint32_t mss_mtu, double flow_ttl_ms, const uint8_t *local) {
  qe_lock();
  dp_set_conn_locked(env, d, slot, c, ref, prefix, plen, ipv6, table, mss_mtu, flow_ttl_ms, local);
  dp_cid_rebuild(d);
  qe_unlock();
  dp_kick(d);
}

/*
 * dpForgetFlows(dp): the gateway's return-flow cache forgets every flow (the
 * inbound table dropped flows it may hold: evicted at its limits, forgotten
 * with an owner); their answers take the event loop's path until the agent
 * sends on them again.
 */
static napi_value dp_forget_flows(napi_env env, napi_callback_info info) {
  MTUN_ARGS(1);
  struct dp *d = dp_of(env, argv[0]);
  if (d == NULL) return NULL;
  qe_lock();
  d->flow_gen++;
  qe_unlock();
  return NULL;
}

/*
 * dpAttach(dp, conn, prefix, ipv6, table?): from now the thread sends the
 * plain packets on conn, each after prefix (the quarter stream ID and
 * context ID, at most 16 bytes, ≤ headroom), to the connection's peer; ipv6
 * false keeps IPv6 on JavaScript's path (it drops it). With table (a
 * judgeTable handle of the session's receive check) the thread also reads
 * the socket and writes the session's plain packets into the TUN; the
 * endpoint must not read the socket meanwhile. mssMtu (0: none) clamps the
 * MSS of SYNs both ways, as the agent's mssClamp does. slot (default 0,
 * below 4096) is the attachment's: a gateway attaches each agent
 * connection in a slot of its own, and every ring entry the thread
 * publishes for it carries the slot. Replaces an earlier attachment in
 * that slot. local (16 bytes, IPv4-mapped or IPv6; zero or absent: the
 * kernel picks) is the source address of what it sends until the thread
 * receives for it: then the address its peer's datagrams arrive at, as the
 * endpoint answers.
 */
static napi_value dp_attach(napi_env env, napi_callback_info info) {
  MTUN_ARGS(9);
  if (argc < 4) return mtun_throw_type(env, "dataplane: dpAttach(dp, conn, prefix, ipv6, table?, mssMtu?, flowTtlMs?, slot?, local?)");
  struct dp *d = dp_of(env, argv[0]);
  if (d == NULL) return NULL;
  struct qe_conn *c = ext(env, argv[1]);
  uint8_t *p;
  size_t plen;
  bool ipv6;
  if (c == NULL) return mtun_throw_type(env, "dataplane: not a connection");
  if (!bytes_of(env, argv[2], &p, &plen) || plen == 0 || plen > 16 || plen > d->headroom)
    return mtun_throw_type(env, "dataplane: prefix must be 1 to 16 bytes, within the headroom");
  if (!mtun_arg_bool(env, argv[3], "ipv6", &ipv6)) return NULL;
  struct mj_table *table = NULL;
  if (argc > 4) {
    napi_valuetype t;
    if (napi_typeof(env, argv[4], &t) != napi_ok) return NULL;
    if (t != napi_undefined && t != napi_null) {
      table = mj_table_of(env, argv[4]);
      if (table == NULL) return mtun_throw_type(env, "dataplane: table must be a handle from judgeTable");
      if (table->kind != MJ_KIND_AGENT && table->kind != MJ_KIND_GATEWAY)
        return mtun_throw_type(env, "dataplane: table must be a receive check (an agent's or a gateway's)");
    }
  }
  uint32_t mss_mtu = 0;
  if (argc > 5 && !mtun_arg_u32(env, argv[5], "mssMtu", &mss_mtu)) return NULL;
  if (mss_mtu > 65535) return mtun_throw_type(env, "dataplane: mssMtu must be at most 65535");
  double flow_ttl_ms = 0;
  if (argc > 6 && napi_get_value_double(env, argv[6], &flow_ttl_ms) != napi_ok) return mtun_throw_type(env, "dataplane: flowTtlMs must be a number");
  if (table != NULL && table->kind == MJ_KIND_GATEWAY && !(flow_ttl_ms >= 0 && flow_ttl_ms <= 86400000))
    return mtun_throw_type(env, "dataplane: flowTtlMs must be 0 to 86400000 with a gateway's table");
  uint32_t slot = 0;
  if (argc > 7 && !mtun_arg_u32(env, argv[7], "slot", &slot)) return NULL;
  if (slot >= DP_ATT_MAX) return mtun_throw_type(env, "dataplane: slot must be below 4096");
  uint8_t *local = NULL;
  if (argc > 8) {
    napi_valuetype t;
    size_t llen;
    if (napi_typeof(env, argv[8], &t) != napi_ok) return NULL;
    if (t != napi_undefined && t != napi_null && (!bytes_of(env, argv[8], &local, &llen) || llen != 16))
      return mtun_throw_type(env, "dataplane: local must be 16 bytes (an IPv4-mapped or IPv6 address, zero: unspecified)");
  }
  /* One slot per connection: the receive leg finds a connection's attachment by its CID. An agent's attachment
   * (no table, or an agent's) takes slot 0 alone; a gateway's take any slot, all with a gateway's table: a packet
   * read from the TUN then goes only where its flow's answers go, never to a default slot. */
  bool gw = table != NULL && table->kind == MJ_KIND_GATEWAY;
  if (!gw && slot != 0) return mtun_throw_type(env, "dataplane: only a gateway's attachments (with a gateway's table) take slots other than 0");
  qe_lock();
  bool dup = false, mixed = false;
  for (uint32_t s = 0; s < d->natt && !dup && !mixed; s++) {
    if (s == slot || d->atts[s].conn == NULL) continue;
    dup = d->atts[s].conn == c;
    mixed = d->atts[s].gw != gw;
  }
  qe_unlock();
  if (dup) return mtun_throw_type(env, "dataplane: the connection is attached in another slot");
  if (mixed) return mtun_throw_type(env, "dataplane: a data plane carries an agent's attachment or a gateway's, not both");
  napi_ref ref;
  if (napi_create_reference(env, argv[1], 1, &ref) != napi_ok) QE_ERR(env, "dataplane: cannot reference the connection");
  dp_set_conn(env, d, slot, c, ref, p, plen, ipv6, table, mss_mtu, flow_ttl_ms, local);
  return NULL;
}

/*
 * dpDetach(dp, slot?): the thread forgets the connection of attachment slot,
 * or of every slot (on return it no longer uses it); what it reads for it
 * from now on goes to the event loop.
 */
static napi_value dp_detach(napi_env env, napi_callback_info info) {
  MTUN_ARGS(2);
  struct dp *d = dp_of(env, argv[0]);
  if (d == NULL) return NULL;
  napi_valuetype t = napi_undefined;
  if (argc > 1 && napi_typeof(env, argv[1], &t) != napi_ok) return NULL;
  if (t == napi_undefined) {
    /* Every slot under one lock, the map rebuilt once (a reload of a gateway with thousands of agents). */
    qe_lock();
    for (uint32_t s = d->natt; s-- > 0;)
      if (d->atts[s].conn != NULL) dp_set_conn_locked(env, d, s, NULL, NULL, NULL, 0, false, NULL, 0, 0, NULL);
    dp_cid_rebuild(d);
    qe_unlock();
    dp_kick(d);
    return NULL;
  }
  uint32_t slot;
  if (!mtun_arg_u32(env, argv[1], "slot", &slot)) return NULL;
  if (slot >= DP_ATT_MAX) return mtun_throw_type(env, "dataplane: slot must be below 4096");
  if (d->atts[slot].conn != NULL) dp_set_conn(env, d, slot, NULL, NULL, NULL, 0, false, NULL, 0, 0, NULL);
  return NULL;
}

/*
 * dpTouched(dp, out Uint32Array) → n: the attachments whose connections the
 * thread fed QUIC packets since the last call, as pairs [slot, packets] in
 * out (n pairs; at most out.length / 2, the rest stays for the next call).
 * The event loop runs those connections' events and timers.
 */
static napi_value dp_touched(napi_env env, napi_callback_info info) {
  MTUN_ARGS(2);
  struct dp *d = dp_of(env, argv[0]);
  if (d == NULL) return NULL;
  void *o;
  size_t n;
  if (!mtun_arg_typed(env, argv[1], napi_uint32_array, "out", &o, &n)) return NULL;
  uint32_t *out = o, k = 0;
  qe_lock();
  while (d->njs > 0 && (size_t)(k + 1) * 2 <= n) {
    uint32_t s = d->js_list[--d->njs];
    out[2 * k] = s;
    out[2 * k + 1] = d->atts[s].js_rx;
    d->atts[s].js_rx = 0;
    k++;
  }
  qe_unlock();
  return mtun_u32(env, k);
}

/*
 * dpPoll(dp, out?) → packets read: one round on the calling (JavaScript)
 * thread, without sending (the endpoint's send follows): what the kernel
 * queued in the TUN during a write is read at once. out (Uint32Array): out[0]
 * the attachments the round queued packets on, their slots after it (as many
 * as fit); the caller has their connections sent. Throws once reading failed.
 */
static napi_value dp_poll(napi_env env, napi_callback_info info) {
  MTUN_ARGS(2);
  struct dp *d = dp_of(env, argv[0]);
  if (d == NULL) return NULL;
  uint32_t *out = NULL;
  size_t nout = 0;
  if (argc > 1) {
    napi_valuetype t;
    if (napi_typeof(env, argv[1], &t) != napi_ok) return NULL;
    void *o;
    if (t != napi_undefined) {
      if (!mtun_arg_typed(env, argv[1], napi_uint32_array, "out", &o, &nout)) return NULL;
      out = o;
    }
  }
  /* The lock order is pmu, then the engine lock: taking pmu while holding the engine lock (inside the endpoint's
   * flush, say) would deadlock against the thread, which holds pmu and waits for the engine lock. */
  if (qe_lock_held()) return mtun_throw_type(env, "dataplane: dpPoll called under the engine lock (lock order: pmu first)");
  pthread_mutex_lock(&d->pmu);
  uint32_t n = d->read_err == 0 ? dp_round(d, false) : 0;
  if (out != NULL && nout > 0) {
    uint32_t k = n > 0 ? d->ntx : 0; /* tx_list is this round's (pmu held) */
    if (k > nout - 1) k = (uint32_t)nout - 1;
    out[0] = k;
    for (uint32_t j = 0; j < k; j++) out[1 + j] = d->tx_list[j];
  }
  int err = d->read_err;
  if (err != 0) d->err_reported = true;
  pthread_mutex_unlock(&d->pmu);
  if (err != 0) return mtun_throw_errno(env, "tun", "read", err);
  return mtun_u32(env, n);
}

/* dpRelease(dp): JavaScript stored a new consumer index; a thread that stopped on a full ring reads again. */
static napi_value dp_release(napi_env env, napi_callback_info info) {
  MTUN_ARGS(1);
  struct dp *d = dp_of(env, argv[0]);
  if (d == NULL) return NULL;
  atomic_thread_fence(memory_order_seq_cst); /* JavaScript's store of the index before the flag's load */
  if (atomic_load(&d->stalled)) dp_kick(d);
  return NULL;
}

/*
 * dpResume(dp, held): the event loop handled what held receive legs (the
 * connections' DATAGRAM queues): their threads' receive goes on. held is the
 * holds counter (DP_S_RX_HELD) the event loop read before it looked at the
 * queues: a hold set after that stays (the wake for it is on the way), so
 * the thread never pops past a DATAGRAM JavaScript has not seen.
 */
static napi_value dp_resume(napi_env env, napi_callback_info info) {
  MTUN_ARGS(2);
  struct dp *d = dp_of(env, argv[0]);
  if (d == NULL) return NULL;
  double seen;
  if (argc < 2 || napi_get_value_double(env, argv[1], &seen) != napi_ok) return mtun_throw_type(env, "dataplane: dpResume(dp, held)");
  qe_lock();
  bool was = false;
  for (uint32_t j = d->nheld; j-- > 0;) {
    uint32_t slot = d->held_list[j];
    if ((double)d->atts[slot].hold_seq <= seen) {
      dp_unhold(d, slot);
      was = true;
    }
  }
  if (d->rx_stall && (double)d->stall_seq <= seen) {
    d->rx_stall = false;
    was = true;
  }
  qe_unlock();
  if (was) dp_kick(d);
  return NULL;
}

/* dpError(dp) → errno of a failed TUN read (the data path is dead), 0 while healthy. */
static napi_value dp_error(napi_env env, napi_callback_info info) {
  MTUN_ARGS(1);
  struct dp *d = dp_of(env, argv[0]);
  if (d == NULL) return NULL;
  return mtun_i32(env, d->read_err); /* atomic: no wait behind the thread's rounds */
}

/* dpStats(dp, out Float64Array(DP_S_LEN)): the counters (see the enum). */
static napi_value dp_stats(napi_env env, napi_callback_info info) {
  MTUN_ARGS(2);
  struct dp *d = dp_of(env, argv[0]);
  if (d == NULL) return NULL;
  void *o;
  size_t n;
  if (!mtun_arg_typed(env, argv[1], napi_float64_array, "out", &o, &n)) return NULL;
  double *out = o;
  for (size_t i = 0; i < n && i < DP_S_LEN; i++) out[i] = (double)atomic_load_explicit(&d->st[i], memory_order_relaxed);
  return NULL;
}

/* dpNow() → the ring stamps' clock (CLOCK_MONOTONIC) in ms. */
static napi_value dp_now(napi_env env, napi_callback_info info) {
  napi_value r;
  napi_create_double(env, mono_ms(), &r);
  return r;
}

/* dpClose(dp): stops and joins the thread; idempotent. The fds stay the caller's. */
static napi_value dp_close(napi_env env, napi_callback_info info) {
  MTUN_ARGS(1);
  struct dp *d = ext(env, argv[0]);
  if (d == NULL || d->magic != DP_MAGIC) return mtun_throw_type(env, "dataplane: not a data plane");
  if (!d->started) return NULL;
  dp_stop(d);
  dp_release_js(env, d, false);
  return NULL;
}

/* dpPlain(packet, ipv6) → whether the thread would send the packet itself (tests: held to the TypeScript path). */
static napi_value dp_plain_fn(napi_env env, napi_callback_info info) {
  MTUN_ARGS(2);
  uint8_t *p;
  size_t len;
  bool ipv6;
  if (argc < 2 || !bytes_of(env, argv[0], &p, &len) || len > 65535) return mtun_throw_type(env, "dataplane: dpPlain(packet, ipv6)");
  if (!mtun_arg_bool(env, argv[1], "ipv6", &ipv6)) return NULL;
  return boolv(env, dp_plain(ipv6, p, (uint32_t)len));
}

/* dpClampMss(packet, mtu) → the new MSS, 0 when unchanged: dp_clamp_mss in place (tests: held to clampTcpMss). */
static napi_value dp_clamp_mss_fn(napi_env env, napi_callback_info info) {
  MTUN_ARGS(2);
  uint8_t *p;
  size_t len;
  uint32_t mtu;
  if (argc < 2 || !bytes_of(env, argv[0], &p, &len) || len > 65535) return mtun_throw_type(env, "dataplane: dpClampMss(packet, mtu)");
  if (!mtun_arg_u32(env, argv[1], "mtu", &mtu)) return NULL;
  return mtun_u32(env, dp_clamp_mss(p, (uint32_t)len, mtu));
}

bool mtun_dataplane_init(napi_env env, napi_value exports) {
  static const struct {
    const char *name;
    napi_callback cb;
  } fns[] = {
      {"dpOpen", dp_open}, {"dpAttach", dp_attach}, {"dpDetach", dp_detach}, {"dpTouched", dp_touched}, {"dpPoll", dp_poll}, {"dpForgetFlows", dp_forget_flows},
      {"dpRelease", dp_release}, {"dpResume", dp_resume}, {"dpError", dp_error}, {"dpStats", dp_stats}, {"dpNow", dp_now}, {"dpClose", dp_close}, {"dpPlain", dp_plain_fn}, {"dpClampMss", dp_clamp_mss_fn},
  };
  for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++)
    if (!mtun_export_fn(env, exports, fns[i].name, fns[i].cb)) return false;
  return true;
}
