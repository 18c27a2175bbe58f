/*
 * The per-packet checks of CONNECT-IP sessions in C, for the native data
 * plane (issue #13): the gateway's verdict on a packet a client sent and the
 * agent's verdict on a packet from the gateway. Pure: no N-API, no I/O, no
 * allocation per packet; a data-plane thread may call them.
 *
 * The rules come from a table that TypeScript compiles from a session's
 * state and the identity's policy (src/masque/native-judge.ts) and hands
 * over as bytes (mj_table_load). A table is immutable once loaded and
 * reference counted, so a session's table is replaced whole: the reader
 * takes the new pointer, the old one is freed when its last holder lets go.
 *
 * The TypeScript checks (judgeClientIp in masque/connect-ip/packet-judge.ts,
 * judgeGatewayIp in receive-check.ts) are the oracle: the differential test
 * (src/masque/native-judge.test.ts) asks both for verdicts on random packets
 * against random tables.
 */
#ifndef MTUN_JUDGE_H
#define MTUN_JUDGE_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

/* Table kinds: whose check it holds. */
#define MJ_KIND_GATEWAY 1 /* the gateway judging a client's packet (judgeClientIp) */
#define MJ_KIND_AGENT 2   /* the agent judging a packet from the gateway (judgeGatewayIp) */

/* Table flags (the compiler in native-judge.ts writes the same bits). */
#define MJ_F_IPV6 0x01           /* IPv6 still carried */
#define MJ_F_DECREMENT 0x02      /* TTL / hop limit decremented: 1 or 0 expires */
#define MJ_F_SCOPE_ANY 0x04      /* request target "*": no target list */
#define MJ_F_POLICY 0x08         /* an identity policy applies (its rules) */
#define MJ_F_ALLOW_LOOPBACK 0x10 /* destination classes the operator allows (masque/destination-policy.ts) */
#define MJ_F_ALLOW_LINKLOCAL 0x20
#define MJ_F_ALLOW_MULTICAST 0x40
#define MJ_F_ALLOW_BROADCAST 0x80
#define MJ_F_ALLOW_OWN 0x100
#define MJ_F_ALLOW_METADATA 0x200 /* cloud metadata endpoints (destination-policy.ts isMetadata4/6) */

/* Verdicts: 0 pass, > 0 a ConnectIpDrop code (masque/connect-ip/counters.ts), MJ_LINK the link's own ICMPv6. */
#define MJ_LINK (-1)
#define MJ_DROP_IPV6_DISABLED 8
#define MJ_DROP_MALFORMED_IP 7
#define MJ_DROP_SPOOFED_SOURCE 9
#define MJ_DROP_OUT_OF_SCOPE 10
#define MJ_DROP_POLICY 11
#define MJ_DROP_TTL_EXPIRED 12
#define MJ_DROP_LINK_LOCAL 13
#define MJ_DROP_DESTINATION_NOT_OURS 15
#define MJ_DROP_SOURCE_NOT_ROUTED 16
#define MJ_DROP_MALFORMED_ICMP_ERROR 17

/* Most entries of any one list in a table, and most policy rules (a bigger table is refused). */
#define MJ_MAX_LIST 65536

/*
 * One entry: a prefix (version, plen, a), a prefix with an IP protocol
 * (owned client routes: proto, 0 = any), a range (version, proto, a = start,
 * b = end) or an address (version, a).
 */
struct mj_rec {
  uint8_t version;
  uint8_t plen;
  uint8_t proto;
  uint8_t pad;
  uint8_t a[16];
  uint8_t b[16];
};

struct mj_list {
  uint32_t n;
  const struct mj_rec *r;
};

/* A policy rule (config/policy.ts CompiledRule): protocols as a mask, destination prefixes, port ranges. */
struct mj_rule {
  uint32_t proto_mask;
  struct mj_list prefixes;
  uint32_t nports;         /* pairs */
  const uint16_t *ports;   /* [from0, to0, from1, to1, ...] */
};

struct mj_table {
  uint32_t kind;
  uint32_t flags;
  int32_t scope_proto; /* -1 = any */
  uint8_t link[16];    /* the session's IPv6 link-local address */
  /* gateway: grants, owned, targets, our (routes advertised to the client), own (the gateway's addresses).
   * agent: grants = assigned, our = our advertised ranges, peer = ranges the gateway advertised. */
  struct mj_list grants, owned, targets, our, peer, own;
  uint32_t nrules;
  const struct mj_rule *rules;
  int refs;     /* atomic */
  void *backing; /* the loaded bytes the lists point into */
};

/*
 * What mj_parse learns about a packet: the fields of PacketInfo
 * (packet/ip-packet.ts) the checks read, as offsets into the packet.
 */
struct mj_info {
  int version;
  uint32_t ip_len;
  uint32_t ttl;
  uint32_t src_off, dst_off;
  uint32_t proto;
  bool fragment;
  uint32_t frag_offset;
  int32_t src_port, dst_port;
  uint32_t icmp_type;
  uint32_t payload_off, payload_len; /* the transport payload present in the buffer (a first UDP fragment: not all of it) */
  uint32_t l4_off; /* the transport header, after any IPv6 extension headers */
};

/*
 * Builds a table from the bytes the compiler wrote. Returns NULL with *why
 * set (a constant string) when the bytes are not a well-formed table; the
 * table holds one reference.
 */
struct mj_table *mj_table_load(const uint8_t *bytes, size_t len, const char **why);
void mj_table_ref(struct mj_table *t);
void mj_table_unref(struct mj_table *t);

/* mj_parse's verdict for a protocol it does not look inside (the checks judge such a packet on addresses alone). */
#define MJ_PARSE_UNSUPPORTED_PROTO 11

/* parseIpPacket's verdict (DropReason code, 0 = parsed) for the packet p[0, len), with its fields. */
int mj_parse(const uint8_t *p, size_t len, struct mj_info *out);

/* hasLinkLocal's test of one address (packet/ip-address.ts): IPv4 169.254/16; IPv6 fe80::/10 or ff02::/16. */
bool mj_link_local(const uint8_t *a, int v);

/* The verdict of the table's kind on the packet p[0, len); check_link false when the probe declined it. */
int mj_judge(const struct mj_table *t, const uint8_t *p, size_t len, bool check_link);
/*
 * mj_judge, with the packet's parse in *info: a verdict of 0 always comes
 * from a parsed packet (fields valid; fragment set for a fragment, proto for
 * a protocol the checks do not look inside). Other verdicts may come before
 * the parse: *info is then undefined.
 */
int mj_judge_info(const struct mj_table *t, const uint8_t *p, size_t len, bool check_link, struct mj_info *info);

#endif
