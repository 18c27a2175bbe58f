/*
 * CONNECT-IP per-packet checks in C (judge.h). Each function mirrors a
 * TypeScript one, named in its comment; the differential test holds them
 * to the same verdicts.
 */
#include "judge.h"

#include <stdlib.h>
#include <string.h>

/* IANA protocol numbers the parse and the checks name (packet/ip-packet.ts IPPROTO). */
enum {
  P_HOPOPTS = 0, P_ICMP = 1, P_TCP = 6, P_UDP = 17, P_ROUTING = 43, P_FRAGMENT = 44, P_AH = 51,
  P_ICMPV6 = 58, P_DSTOPTS = 60, P_MOBILITY = 135, P_HIP = 139, P_SHIM6 = 140,
};

/* DropReason codes of parseIpPacket (packet/ip-packet.ts). */
enum {
  R_NONE = 0, R_TRUNCATED_IP = 1, R_BAD_VERSION = 2, R_BAD_IHL = 3, R_BAD_LENGTH = 4, R_BAD_EXT_HEADER = 5,
  R_TRUNCATED_L4 = 6, R_BAD_TCP_OFFSET = 7, R_BAD_UDP_LENGTH = 8, R_FRAGMENT = 9, R_JUMBOGRAM = 10,
  R_UNSUPPORTED_PROTO = 11,
};

/* Policy protocol bits (config/policy.ts). */
enum { PB_TCP = 1, PB_UDP = 2, PB_ICMP = 4, PB_ANY = 8 };

#define MAX_EXT_HEADERS 16
#define MAX_QUOTED_EXT_HEADERS 4

_Static_assert(R_UNSUPPORTED_PROTO == MJ_PARSE_UNSUPPORTED_PROTO, "judge.h names the parse verdict");

static inline uint32_t be16(const uint8_t *p) { return ((uint32_t)p[0] << 8) | p[1]; }

/* ---- parse: parseIpPacket ---- */

int mj_parse(const uint8_t *b, size_t len, struct mj_info *o) {
  o->src_port = 0;
  o->dst_port = 0;
  o->payload_off = 0;
  o->payload_len = 0;
  if (len < 1) return R_TRUNCATED_IP;
  int v = b[0] >> 4;
  uint32_t proto, p, end;
  if (v == 4) {
    if (len < 20) return R_TRUNCATED_IP;
    uint32_t ihl = (uint32_t)(b[0] & 0x0f) << 2;
    if (ihl < 20 || ihl > len) return R_BAD_IHL;
    uint32_t total = be16(b + 2);
    if (total < ihl || total > len) return R_BAD_LENGTH;
    o->version = 4;
    o->ip_len = total;
    o->ttl = b[8];
    o->src_off = 12;
    o->dst_off = 16;
    uint32_t ff = be16(b + 6);
    o->frag_offset = (ff & 0x1fff) << 3;
    o->fragment = (ff & 0x3fff) != 0; /* RFC 791 §3.1: MF or offset */
    proto = b[9];
    p = ihl;
    end = total;
  } else if (v == 6) {
    if (len < 40) return R_TRUNCATED_IP;
    uint32_t plen = be16(b + 4);
    if (plen == 0) return R_JUMBOGRAM;
    if (40 + plen > len) return R_BAD_LENGTH;
    o->version = 6;
    o->ip_len = 40 + plen;
    o->ttl = b[7];
    o->src_off = 8;
    o->dst_off = 24;
    o->frag_offset = 0;
    o->fragment = false;
    proto = b[6];
    p = 40;
    end = 40 + plen;
    /* RFC 8200 §4.1: the extension-header chain up to the upper layer. */
    for (int n = 0;; n++) {
      if (proto == P_HOPOPTS || proto == P_ROUTING || proto == P_DSTOPTS || proto == P_MOBILITY || proto == P_HIP ||
          proto == P_SHIM6) {
        if (n >= MAX_EXT_HEADERS || p + 8 > end) return R_BAD_EXT_HEADER;
        uint32_t hlen = ((uint32_t)b[p + 1] + 1) << 3;
        if (p + hlen > end) return R_BAD_EXT_HEADER;
        proto = b[p];
        p += hlen;
      } else if (proto == P_FRAGMENT) {
        if (n >= MAX_EXT_HEADERS || p + 8 > end) return R_BAD_EXT_HEADER;
        o->frag_offset = be16(b + p + 2) & 0xfff8;
        o->fragment = true;
        proto = b[p];
        p += 8;
      } else if (proto == P_AH) {
        if (n >= MAX_EXT_HEADERS || p + 8 > end) return R_BAD_EXT_HEADER;
        uint32_t hlen = ((uint32_t)b[p + 1] + 2) << 2; /* RFC 4302 §2.2 */
        if (p + hlen > end) return R_BAD_EXT_HEADER;
        proto = b[p];
        p += hlen;
      } else {
        break;
      }
    }
  } else {
    return R_BAD_VERSION;
  }
  o->proto = proto;
  o->l4_off = p;
  if (o->frag_offset != 0) return R_FRAGMENT;
  uint32_t l4 = end - p;
  if (proto == P_TCP) {
    if (l4 < 20) return o->fragment ? R_FRAGMENT : R_TRUNCATED_L4;
    uint32_t hl = (uint32_t)(b[p + 12] >> 4) << 2;
    if (hl < 20 || hl > l4) return R_BAD_TCP_OFFSET;
    o->src_port = (int32_t)be16(b + p);
    o->dst_port = (int32_t)be16(b + p + 2);
    o->payload_off = p + hl;
    o->payload_len = l4 - hl;
    return R_NONE;
  }
  if (proto == P_UDP) {
    if (l4 < 8) return o->fragment ? R_FRAGMENT : R_TRUNCATED_L4;
    uint32_t ulen = be16(b + p + 4);
    if (ulen < 8 || (ulen > l4 && !o->fragment)) return R_BAD_UDP_LENGTH;
    o->src_port = (int32_t)be16(b + p);
    o->dst_port = (int32_t)be16(b + p + 2);
    o->payload_off = p + 8;
    /* A first fragment's UDP length covers the fragments still to come: the payload here is what is present. */
    o->payload_len = ulen <= l4 ? ulen - 8 : l4 - 8;
    return R_NONE;
  }
  if (proto == P_ICMP || proto == P_ICMPV6) {
    if (l4 < 8) return o->fragment ? R_FRAGMENT : R_TRUNCATED_L4;
    o->icmp_type = b[p];
    o->src_port = (int32_t)be16(b + p + 4);
    o->payload_off = p + 8;
    o->payload_len = l4 - 8;
    return R_NONE;
  }
  return R_UNSUPPORTED_PROTO;
}

/* ---- address helpers: packet/ip-address.ts ---- */

/* prefixContains: the address at a, against prefix (addr, plen); the byte after the whole bytes is masked. */
static bool prefix_contains(const uint8_t *addr, uint32_t plen, const uint8_t *a) {
  uint32_t full = plen >> 3;
  for (uint32_t i = 0; i < full; i++)
    if (a[i] != addr[i]) return false;
  uint32_t rem = plen & 7;
  if (rem == 0) return true;
  uint8_t mask = (uint8_t)(0xff << (8 - rem));
  return (a[full] & mask) == addr[full];
}

bool mj_link_local(const uint8_t *a, int v) {
  if (v == 4) return a[0] == 169 && a[1] == 254;
  return (a[0] == 0xfe && (a[1] & 0xc0) == 0x80) || (a[0] == 0xff && (a[1] & 0x0f) == 0x02);
}

static bool all_zero(const uint8_t *a, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (a[i] != 0) return false;
  return true;
}

static inline bool is_icmp(uint32_t proto) { return proto == P_ICMP || proto == P_ICMPV6; }

/* Any prefix of the version containing the address at a. */
static bool list_contains(const struct mj_list *l, int v, const uint8_t *a) {
  for (uint32_t i = 0; i < l->n; i++)
    if (l->r[i].version == v && prefix_contains(l->r[i].a, l->r[i].plen, a)) return true;
  return false;
}

/* inRanges (packet-judge.ts): start <= a <= end for a range of the version whose protocol admits proto. */
static bool in_ranges(const struct mj_list *l, const uint8_t *a, int v, uint32_t proto) {
  size_t alen = v == 4 ? 4 : 16;
  for (uint32_t i = 0; i < l->n; i++) {
    const struct mj_rec *x = &l->r[i];
    if (x->version != v) continue;
    if (x->proto != 0 && x->proto != proto && !is_icmp(proto)) continue;
    if (memcmp(x->a, a, alen) <= 0 && memcmp(a, x->b, alen) <= 0) return true;
  }
  return false;
}

/* prohibitedDestination (destination-policy.ts) != null. */
static bool prohibited(const struct mj_table *t, int version, const uint8_t *a) {
  int v = version;
  uint32_t f = t->flags;
  /* IPv4-mapped, and NAT64's well-known prefix 64:ff9b::/96: judged by the IPv4 address inside. */
  if (v == 6 && ((all_zero(a, 10) && a[10] == 0xff && a[11] == 0xff) ||
                 (a[0] == 0x00 && a[1] == 0x64 && a[2] == 0xff && a[3] == 0x9b && all_zero(a + 4, 8)))) {
    a += 12;
    v = 4;
  }
  size_t alen = v == 4 ? 4 : 16;
  bool loopback;
  if (v == 4) {
    if (a[0] == 0) return true;
    loopback = a[0] == 127;
    if (loopback && !(f & MJ_F_ALLOW_LOOPBACK)) return true;
    if (a[0] == 169 && a[1] == 254 && !(f & MJ_F_ALLOW_LINKLOCAL)) return true;
    if (a[0] >= 224 && a[0] <= 239 && !(f & MJ_F_ALLOW_MULTICAST)) return true;
    if (a[0] == 255 && a[1] == 255 && a[2] == 255 && a[3] == 255 && !(f & MJ_F_ALLOW_BROADCAST)) return true;
    /* 169.254.169.254, 169.254.170.2, 169.254.170.23, 100.100.100.200: cloud metadata endpoints. */
    if (!(f & MJ_F_ALLOW_METADATA) &&
        ((a[0] == 169 && a[1] == 254 && ((a[2] == 169 && a[3] == 254) || (a[2] == 170 && (a[3] == 2 || a[3] == 23)))) ||
         (a[0] == 100 && a[1] == 100 && a[2] == 100 && a[3] == 200)))
      return true;
  } else {
    if (all_zero(a, 16)) return true;
    loopback = all_zero(a, 15) && a[15] == 1;
    if (loopback && !(f & MJ_F_ALLOW_LOOPBACK)) return true;
    if (a[0] == 0xfe && (a[1] & 0xc0) == 0x80 && !(f & MJ_F_ALLOW_LINKLOCAL)) return true;
    if (a[0] == 0xff && !(f & MJ_F_ALLOW_MULTICAST)) return true;
    /* fd00:ec2::254, fd00:ec2::23, fd20:ce::254: cloud metadata endpoints. */
    if (a[0] == 0xfd && all_zero(a + 4, 10) && !(f & MJ_F_ALLOW_METADATA)) {
      unsigned lo = (unsigned)a[14] << 8 | a[15];
      if (a[1] == 0x00 && a[2] == 0x0e && a[3] == 0xc2 && (lo == 0x254 || lo == 0x23)) return true;
      if (a[1] == 0x20 && a[2] == 0x00 && a[3] == 0xce && lo == 0x254) return true;
    }
  }
  if (!(f & MJ_F_ALLOW_OWN) && !loopback) {
    for (uint32_t i = 0; i < t->own.n; i++) {
      const struct mj_rec *x = &t->own.r[i];
      if ((x->version == 4 ? 4u : 16u) == alen && memcmp(x->a, a, alen) == 0) return true;
    }
  }
  return false;
}

/* IdentityPolicy.allowsPacket (config/policy.ts). */
static bool policy_allows(const struct mj_table *t, const uint8_t *b, const struct mj_info *i) {
  int32_t port = i->fragment && i->frag_offset > 0 ? -1 : i->dst_port;
  uint32_t bit = i->proto == P_TCP ? PB_TCP : i->proto == P_UDP ? PB_UDP : is_icmp(i->proto) ? PB_ICMP : 0;
  const uint8_t *dst = b + i->dst_off;
  for (uint32_t r = 0; r < t->nrules; r++) {
    const struct mj_rule *rule = &t->rules[r];
    if (!(rule->proto_mask & PB_ANY) && !(rule->proto_mask & bit)) continue;
    if ((bit == PB_TCP || bit == PB_UDP) && rule->nports > 0) {
      bool in = false;
      for (uint32_t k = 0; k < rule->nports && !in; k++)
        in = port >= rule->ports[2 * k] && port <= rule->ports[2 * k + 1];
      if (!in) continue;
    }
    if (list_contains(&rule->prefixes, i->version, dst)) return true;
  }
  return false;
}

/* judgeClientPacket (packet-judge.ts). */
static int judge_client_packet(const struct mj_table *t, const uint8_t *b, const struct mj_info *i) {
  int v = i->version;
  const uint8_t *src = b + i->src_off, *dst = b + i->dst_off;
  if (mj_link_local(src, v) || mj_link_local(dst, v)) return MJ_DROP_LINK_LOCAL;
  bool src_ok = list_contains(&t->grants, v, src);
  for (uint32_t k = 0; k < t->owned.n && !src_ok; k++) {
    const struct mj_rec *x = &t->owned.r[k];
    if (x->version != v) continue;
    if (x->proto != 0 && x->proto != i->proto && !is_icmp(i->proto)) continue;
    src_ok = prefix_contains(x->a, x->plen, src);
  }
  if (!src_ok) return MJ_DROP_SPOOFED_SOURCE;
  if (!(t->flags & MJ_F_SCOPE_ANY) && !list_contains(&t->targets, v, dst)) return MJ_DROP_OUT_OF_SCOPE;
  if (t->scope_proto >= 0 && i->proto != (uint32_t)t->scope_proto && !is_icmp(i->proto)) return MJ_DROP_OUT_OF_SCOPE;
  if (!in_ranges(&t->our, dst, v, i->proto)) return MJ_DROP_OUT_OF_SCOPE;
  if (prohibited(t, v, dst)) return MJ_DROP_OUT_OF_SCOPE;
  if ((t->flags & MJ_F_POLICY) && !policy_allows(t, b, i)) return MJ_DROP_POLICY;
  return 0;
}

/* isLinkIcmp6 (ipv6-probe.ts). */
static const uint8_t ALL_NODES_6[16] = {0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
static bool link_icmp6(const struct mj_table *t, const uint8_t *b, size_t len) {
  if (len < 48 || b[0] >> 4 != 6 || b[6] != P_ICMPV6) return false;
  return memcmp(b + 24, ALL_NODES_6, 16) == 0 || memcmp(b + 24, t->link, 16) == 0;
}

/* judgeClientIp (packet-judge.ts): the gateway's verdict on a client's packet. */
static int judge_gateway(const struct mj_table *t, const uint8_t *b, size_t len, bool check_link, struct mj_info *i) {
  int pr = mj_parse(b, len, i);
  if (pr != R_NONE && pr != R_FRAGMENT && pr != R_UNSUPPORTED_PROTO) return MJ_DROP_MALFORMED_IP;
  if (pr != R_NONE) i->src_port = i->dst_port = 0;
  if (i->version == 6 && !(t->flags & MJ_F_IPV6)) return MJ_DROP_IPV6_DISABLED;
  if (check_link && i->version == 6 && link_icmp6(t, b, i->ip_len)) return MJ_LINK;
  int verdict = judge_client_packet(t, b, i);
  if (verdict != 0) return verdict;
  return (t->flags & MJ_F_DECREMENT) && i->ttl <= 1 ? MJ_DROP_TTL_EXPIRED : 0;
}

/* ipVersionOf (packet-judge.ts). */
static int ip_version_of(const uint8_t *b, size_t len) {
  if (len < 1) return 0;
  int v = b[0] >> 4;
  if (v == 4) {
    if (len < 20) return 0;
    uint32_t ihl = (uint32_t)(b[0] & 0x0f) * 4, total = be16(b + 2);
    return ihl >= 20 && total >= ihl && total <= len ? 4 : 0;
  }
  if (v == 6) {
    if (len < 40) return 0;
    return be16(b + 4) + 40 <= len ? 6 : 0;
  }
  return 0;
}

/* readQuotedPacket (inbound/quoted-packet.ts), reduced to what the agent's check reads: the quoted source. */
static bool quoted_source(const uint8_t *b, const struct mj_info *outer, uint32_t *src_off) {
  uint32_t p = outer->payload_off, end = outer->payload_off + outer->payload_len;
  int v = outer->version;
  if (p >= end || b[p] >> 4 != v) return false;
  uint32_t start = p, proto;
  if (v == 4) {
    uint32_t ihl = (uint32_t)(b[p] & 0x0f) << 2;
    if (ihl < 20 || p + ihl > end) return false;
    if ((be16(b + p + 6) & 0x1fff) != 0) return false; /* a non-first fragment has no ports */
    proto = b[p + 9];
    p += ihl;
  } else {
    if (p + 40 > end) return false;
    proto = b[p + 6];
    p += 40;
    for (int n = 0; proto == P_HOPOPTS || proto == P_ROUTING || proto == P_DSTOPTS; n++) {
      if (n >= MAX_QUOTED_EXT_HEADERS || p + 8 > end) return false;
      proto = b[p];
      p += ((uint32_t)b[p + 1] + 1) << 3;
    }
  }
  if (proto == P_TCP || proto == P_UDP) {
    if (p + 4 > end) return false;
  } else if (is_icmp(proto)) {
    if (p + 8 > end) return false;
  }
  *src_off = start + (v == 4 ? 12 : 8);
  return true;
}

/* judgeGatewayIp (receive-check.ts): the agent's verdict on a packet from the gateway. */
static int judge_agent(const struct mj_table *t, const uint8_t *b, size_t len, bool check_link, struct mj_info *i) {
  int v = ip_version_of(b, len);
  if (v == 0) return MJ_DROP_MALFORMED_IP;
  if (v == 6 && !(t->flags & MJ_F_IPV6)) return MJ_DROP_IPV6_DISABLED;
  if (check_link && v == 6 && link_icmp6(t, b, len)) return MJ_LINK;
  int pr = mj_parse(b, len, i);
  if (pr != R_NONE && pr != R_FRAGMENT && pr != R_UNSUPPORTED_PROTO) return MJ_DROP_MALFORMED_IP;
  v = i->version;
  if (pr == R_NONE && (i->version == 4 ? i->proto == P_ICMP && (i->icmp_type == 3 || i->icmp_type == 4 || i->icmp_type == 11 || i->icmp_type == 12)
                                       : i->proto == P_ICMPV6 && i->icmp_type < 128)) {
    /* RFC 792 / RFC 4443 §2.4(c): an error goes back to the source of the packet it quotes. */
    uint32_t qsrc;
    bool consistent = quoted_source(b, i, &qsrc) && memcmp(b + i->dst_off, b + qsrc, v == 4 ? 4 : 16) == 0;
    return consistent ? 0 : MJ_DROP_MALFORMED_ICMP_ERROR;
  }
  const uint8_t *dst = b + i->dst_off;
  if (!list_contains(&t->grants, v, dst) && !in_ranges(&t->our, dst, v, 0)) return MJ_DROP_DESTINATION_NOT_OURS;
  return in_ranges(&t->peer, b + i->src_off, v, i->proto) ? 0 : MJ_DROP_SOURCE_NOT_ROUTED;
}

int mj_judge_info(const struct mj_table *t, const uint8_t *p, size_t len, bool check_link, struct mj_info *info) {
  return t->kind == MJ_KIND_GATEWAY ? judge_gateway(t, p, len, check_link, info) : judge_agent(t, p, len, check_link, info);
}

int mj_judge(const struct mj_table *t, const uint8_t *p, size_t len, bool check_link) {
  struct mj_info info;
  return mj_judge_info(t, p, len, check_link, &info);
}

/* ---- tables ---- */

#define MJ_MAGIC 0x31544a4du /* "MJT1" read as a little-endian u32 */
#define REC_BYTES 36

struct reader {
  const uint8_t *p;
  size_t left;
};

static bool rd32(struct reader *r, uint32_t *out) {
  if (r->left < 4) return false;
  *out = (uint32_t)r->p[0] | ((uint32_t)r->p[1] << 8) | ((uint32_t)r->p[2] << 16) | ((uint32_t)r->p[3] << 24);
  r->p += 4;
  r->left -= 4;
  return true;
}

/* A list: u32 count, then count records, each checked (version 4 or 6; prefix lengths within the address). */
static bool rd_list(struct reader *r, struct mj_list *l, bool prefixes, const char **why) {
  uint32_t n;
  if (!rd32(r, &n)) return *why = "truncated list", false;
  if (n > MJ_MAX_LIST) return *why = "list too long", false;
  if ((size_t)n * REC_BYTES > r->left) return *why = "truncated list", false;
  const struct mj_rec *recs = (const struct mj_rec *)r->p;
  for (uint32_t i = 0; i < n; i++) {
    if (recs[i].version != 4 && recs[i].version != 6) return *why = "entry of neither IPv4 nor IPv6", false;
    if (prefixes && recs[i].plen > (recs[i].version == 4 ? 32 : 128)) return *why = "prefix length past the address", false;
  }
  l->n = n;
  l->r = recs;
  r->p += (size_t)n * REC_BYTES;
  r->left -= (size_t)n * REC_BYTES;
  return true;
}

struct mj_table *mj_table_load(const uint8_t *bytes, size_t len, const char **why) {
  _Static_assert(sizeof(struct mj_rec) == REC_BYTES, "mj_rec is 36 packed bytes");
  /* The lists point into a private copy of the bytes, kept as long as the table; rules follow the table. */
  uint8_t *copy = malloc(len ? len : 1);
  if (copy == NULL) return *why = "out of memory", NULL;
  if (len > 0) memcpy(copy, bytes, len);
  struct reader r = {copy, len};
  uint32_t magic, kind, flags, scope, nrules;
  struct mj_table h;
  memset(&h, 0, sizeof h);
  *why = "truncated header";
  if (!rd32(&r, &magic) || !rd32(&r, &kind) || !rd32(&r, &flags) || !rd32(&r, &scope) || r.left < 16) goto fail;
  if (magic != MJ_MAGIC) { *why = "not a judge table"; goto fail; }
  if (kind != MJ_KIND_GATEWAY && kind != MJ_KIND_AGENT) { *why = "unknown table kind"; goto fail; }
  if (scope != 0xffffffffu && scope > 255) { *why = "scope protocol past 255"; goto fail; }
  h.kind = kind;
  h.flags = flags;
  h.scope_proto = scope == 0xffffffffu ? -1 : (int32_t)scope;
  memcpy(h.link, r.p, 16);
  r.p += 16;
  r.left -= 16;
  if (!rd_list(&r, &h.grants, true, why) || !rd_list(&r, &h.owned, true, why) || !rd_list(&r, &h.targets, true, why) ||
      !rd_list(&r, &h.our, false, why) || !rd_list(&r, &h.peer, false, why) || !rd_list(&r, &h.own, false, why))
    goto fail;
  if (!rd32(&r, &nrules)) { *why = "truncated rules"; goto fail; }
  if (nrules > MJ_MAX_LIST) { *why = "too many rules"; goto fail; }
  struct mj_table *t = calloc(1, sizeof *t + (size_t)nrules * sizeof(struct mj_rule));
  if (t == NULL) { *why = "out of memory"; goto fail; }
  *t = h;
  struct mj_rule *rules = (struct mj_rule *)(t + 1);
  for (uint32_t k = 0; k < nrules; k++) {
    uint32_t mask, nports;
    if (!rd32(&r, &mask)) { *why = "truncated rule"; free(t); goto fail; }
    if (!rd_list(&r, &rules[k].prefixes, true, why)) { free(t); goto fail; }
    if (!rd32(&r, &nports) || nports > MJ_MAX_LIST || (size_t)nports * 4 > r.left) { *why = "truncated rule ports"; free(t); goto fail; }
    /* Ports are rewritten in place as host-order u16 pairs (the copy is ours; 2-byte alignment holds: records are 36 bytes). */
    uint16_t *ports = (uint16_t *)(void *)r.p;
    for (uint32_t q = 0; q < nports * 2; q++) ports[q] = (uint16_t)(r.p[2 * q] | (r.p[2 * q + 1] << 8));
    rules[k].proto_mask = mask;
    rules[k].nports = nports;
    rules[k].ports = ports;
    r.p += (size_t)nports * 4;
    r.left -= (size_t)nports * 4;
  }
  if (r.left != 0) { *why = "bytes after the table"; free(t); goto fail; }
  t->nrules = nrules;
  t->rules = rules;
  t->refs = 1;
  /* The lists point into the copy; it lives as long as the table (freed with it, see mj_table_unref). */
  t->backing = copy;
  return t;
fail:
  free(copy);
  return NULL;
}

void mj_table_ref(struct mj_table *t) { __atomic_add_fetch(&t->refs, 1, __ATOMIC_RELAXED); }

void mj_table_unref(struct mj_table *t) {
  if (t == NULL) return;
  if (__atomic_sub_fetch(&t->refs, 1, __ATOMIC_ACQ_REL) == 0) {
    free(t->backing);
    free(t);
  }
}
