/*
 * mtun native addon: TUN offload path (IFF_VNET_HDR). Reads take GSO
 * super-packets (TSO4/TSO6, USO) and split them here into MTU-sized packets
 * with correct IPv4/TCP/UDP checksums; partial checksums are completed.
 */
#include "common.h"
#include "tun-offload.h"

#include <errno.h>
#include <linux/virtio_net.h>
#include <stdio.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#ifndef VIRTIO_NET_HDR_GSO_UDP_L4
#define VIRTIO_NET_HDR_GSO_UDP_L4 5
#endif

#define VNET_HDR_LEN ((int)sizeof(struct virtio_net_hdr))
_Static_assert(MTUN_VNET_SCRATCH_BYTES == 65535 + sizeof(struct virtio_net_hdr), "the scratch holds an IP packet and the header");

/* RFC 1071 §2(B): the one's-complement sum is byte-order independent, so sum native words. */
static uint64_t sum_native(const uint8_t *p, size_t len, uint64_t sum) {
  while (len >= 4) {
    uint32_t w;
    memcpy(&w, p, 4);
    sum += w;
    p += 4;
    len -= 4;
  }
  if (len >= 2) {
    uint16_t w;
    memcpy(&w, p, 2);
    sum += w;
    p += 2;
    len -= 2;
  }
  if (len) {
    uint16_t w = 0;
    memcpy(&w, p, 1);
    sum += w;
  }
  return sum;
}

static uint16_t fold_native(uint64_t sum) {
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return (uint16_t)~sum;
}

static uint16_t rd16(const uint8_t *p) { return (uint16_t)((p[0] << 8) | p[1]); }
static void wr16(uint8_t *p, uint16_t v) {
  p[0] = (uint8_t)(v >> 8);
  p[1] = (uint8_t)v;
}
static uint32_t rd32(const uint8_t *p) {
  return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}
static void wr32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24);
  p[1] = (uint8_t)(v >> 16);
  p[2] = (uint8_t)(v >> 8);
  p[3] = (uint8_t)v;
}

/* Pseudo-header sum: RFC 793 §3.1 / RFC 768 (IPv4), RFC 8200 §8.1 (IPv6). */
static uint64_t pseudo_sum(const uint8_t *ip, int v6, uint8_t proto, uint32_t l4len) {
  uint8_t tail[8] = {0};
  uint64_t s = v6 ? sum_native(ip + 8, 32, 0) : sum_native(ip + 12, 8, 0);
  if (v6) {
    wr32(tail, l4len);
    tail[7] = proto;
    return sum_native(tail, 8, s);
  }
  tail[1] = proto;
  wr16(tail + 2, (uint16_t)l4len);
  return sum_native(tail, 4, s);
}

/* IPv4 header checksum (RFC 791 §3.1). */
static void ipv4_csum(uint8_t *ip) {
  size_t ihl = (size_t)(ip[0] & 0x0f) * 4;
  ip[10] = ip[11] = 0;
  uint16_t c = fold_native(sum_native(ip, ihl, 0));
  memcpy(ip + 10, &c, 2);
}

/*
 * Emits segment k of the super-packet pkt[0..n) into out (room bytes).
 * Returns the segment length, or -1 when it does not fit.
 */
static int emit_segment(const uint8_t *pkt, uint32_t n, const struct virtio_net_hdr *vh, uint32_t hl, uint32_t k,
                        uint32_t nseg, uint8_t *out, size_t room) {
  uint32_t gso = vh->gso_size;
  uint32_t l4 = vh->csum_start;
  uint32_t payload = n - hl;
  uint32_t seglen = payload - k * gso < gso ? payload - k * gso : gso;
  uint32_t tot = hl + seglen;
  if (tot > room) return -1;
  int v6 = (pkt[0] >> 4) == 6;
  memcpy(out, pkt, hl);
  memcpy(out + hl, pkt + hl + (size_t)k * gso, seglen);
  if (v6) {
    wr16(out + 4, (uint16_t)(tot - 40));
  } else {
    wr16(out + 2, (uint16_t)tot);
    wr16(out + 4, (uint16_t)(rd16(pkt + 4) + k)); /* one IP ID per segment, as the kernel's TSO does */
    ipv4_csum(out);
  }
  uint8_t type = vh->gso_type & ~VIRTIO_NET_HDR_GSO_ECN;
  uint8_t *l4p = out + l4;
  uint32_t l4len = tot - l4;
  if (type == VIRTIO_NET_HDR_GSO_UDP_L4) {
    wr16(l4p + 4, (uint16_t)l4len);
    l4p[6] = l4p[7] = 0;
    uint16_t c = fold_native(sum_native(l4p, l4len, pseudo_sum(out, v6, 17, l4len)));
    if (c == 0) c = 0xffff; /* RFC 768: a computed zero is sent as all ones */
    memcpy(l4p + 6, &c, 2);
  } else {
    wr32(l4p + 4, rd32(pkt + l4 + 4) + k * gso); /* sequence number */
    uint8_t flags = pkt[l4 + 13];
    if (k + 1 < nseg) flags &= (uint8_t)~(0x01 | 0x08); /* FIN and PSH only on the last segment */
    if (k > 0) flags &= (uint8_t)~0x80;                /* CWR only on the first (RFC 3168 §6.1.2) */
    l4p[13] = flags;
    l4p[16] = l4p[17] = 0;
    uint16_t c = fold_native(sum_native(l4p, l4len, pseudo_sum(out, v6, 6, l4len)));
    memcpy(l4p + 16, &c, 2);
  }
  return (int)tot;
}

/* Checks a super-packet's headers; returns header length (IP + L4) or 0 when malformed. */
static uint32_t gso_headers(const uint8_t *pkt, uint32_t n, const struct virtio_net_hdr *vh) {
  uint8_t type = vh->gso_type & ~VIRTIO_NET_HDR_GSO_ECN;
  uint32_t l4 = vh->csum_start;
  if (n < 20 || vh->gso_size == 0) return 0;
  int ver = pkt[0] >> 4;
  if (ver == 4) {
    if (type == VIRTIO_NET_HDR_GSO_TCPV6 || (pkt[0] & 0x0f) < 5 || l4 < (uint32_t)(pkt[0] & 0x0f) * 4) return 0;
  } else if (ver == 6) {
    if (type == VIRTIO_NET_HDR_GSO_TCPV4 || l4 < 40) return 0;
  } else {
    return 0;
  }
  if (type == VIRTIO_NET_HDR_GSO_UDP_L4) return l4 + 8 <= n ? l4 + 8 : 0;
  if (type != VIRTIO_NET_HDR_GSO_TCPV4 && type != VIRTIO_NET_HDR_GSO_TCPV6) return 0;
  if (l4 + 20 > n) return 0;
  uint32_t thl = (uint32_t)(pkt[l4 + 12] >> 4) * 4;
  if (thl < 20 || l4 + thl > n) return 0;
  return l4 + thl;
}

uint32_t mtun_vnet_read(int fd, uint8_t **ptrs, size_t *lens, uint32_t *sizes, uint32_t n, uint32_t offset,
                        uint8_t *scratch, size_t scratch_len, uint32_t *state, double *stats, int *err) {
  uint32_t count = 0;
  *err = 0;
  while (count < n) {
    if (state[0] == 0) {
      ssize_t r = read(fd, scratch, scratch_len);
      if (r < 0) {
        if (errno == EINTR) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) *err = errno;
        break;
      }
      if (r <= VNET_HDR_LEN) {
        if (stats) stats[TS_RX_INVALID] += 1;
        continue;
      }
      state[0] = (uint32_t)r;
      state[1] = 0;
    }
    struct virtio_net_hdr vh;
    memcpy(&vh, scratch, sizeof vh);
    const uint8_t *pkt = scratch + VNET_HDR_LEN;
    uint32_t plen = state[0] - VNET_HDR_LEN;
    if ((vh.gso_type & ~VIRTIO_NET_HDR_GSO_ECN) == VIRTIO_NET_HDR_GSO_NONE) {
      if (plen > lens[count] - offset) {
        if (stats) stats[TS_RX_INVALID] += 1;
        state[0] = 0;
        continue;
      }
      uint8_t *out = ptrs[count] + offset;
      memcpy(out, pkt, plen);
      if (vh.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) {
        /* The field holds the pseudo-header sum; finish the sum from csum_start. */
        if ((uint32_t)vh.csum_start + vh.csum_offset + 2 > plen) {
          if (stats) stats[TS_RX_INVALID] += 1;
          state[0] = 0;
          continue;
        }
        uint16_t c = fold_native(sum_native(out + vh.csum_start, plen - vh.csum_start, 0));
        /* A UDP checksum that computes to 0 goes as all ones (RFC 768; RFC 8200 §8.1: 0 is invalid over IPv6).
         * The field is UDP's at offset 6 (TCP's at 16, where 0 is a valid value). */
        if (c == 0 && vh.csum_offset == 6) c = 0xffff;
        memcpy(out + vh.csum_start + vh.csum_offset, &c, 2);
      }
      sizes[count++] = plen;
      if (stats) {
        stats[TS_RX_PACKETS] += 1;
        stats[TS_RX_BYTES] += plen;
      }
      state[0] = 0;
      continue;
    }
    uint32_t hl = gso_headers(pkt, plen, &vh);
    if (hl == 0 || hl >= plen) {
      if (stats) stats[TS_RX_INVALID] += 1;
      state[0] = 0;
      continue;
    }
    uint32_t nseg = (plen - hl + vh.gso_size - 1) / vh.gso_size;
    if (state[1] == 0 && stats) stats[TS_RX_SUPER] += 1;
    while (state[1] < nseg && count < n) {
      int len = emit_segment(pkt, plen, &vh, hl, state[1], nseg, ptrs[count] + offset, lens[count] - offset);
      state[1]++;
      if (len < 0) {
        if (stats) stats[TS_RX_INVALID] += 1;
        continue;
      }
      sizes[count++] = (uint32_t)len;
      if (stats) {
        stats[TS_RX_PACKETS] += 1;
        stats[TS_RX_BYTES] += len;
      }
    }
    if (state[1] >= nseg) state[0] = 0; /* else: the rest waits for the next call */
  }
  return count;
}

/* A TCP segment that may join a coalesced run: IPv4 without options/fragments or IPv6
 * without extension headers, only ACK (and PSH) set, with payload. */
struct tcp_seg {
  uint32_t iphl, hl, payload, seq;
  int v6;
  uint8_t flags;
};

static bool parse_tcp_seg(const uint8_t *p, uint32_t len, struct tcp_seg *t) {
  if (len < 40) return false;
  int ver = p[0] >> 4;
  if (ver == 4) {
    if ((p[0] & 0x0f) != 5 || p[9] != 6 || rd16(p + 2) != len) return false;
    if ((rd16(p + 6) & 0x3fff) != 0) return false; /* MF or fragment offset */
    t->iphl = 20;
    t->v6 = 0;
  } else if (ver == 6) {
    if (len < 60 || p[6] != 6 || rd16(p + 4) + 40u != len) return false;
    t->iphl = 40;
    t->v6 = 1;
  } else {
    return false;
  }
  const uint8_t *tcp = p + t->iphl;
  uint32_t thl = (uint32_t)(tcp[12] >> 4) * 4;
  if (thl < 20 || t->iphl + thl >= len) return false;
  t->flags = tcp[13];
  if ((t->flags & ~0x08) != 0x10) return false; /* ACK, optionally PSH; no SYN/FIN/RST/URG/ECE/CWR */
  t->hl = t->iphl + thl;
  t->payload = len - t->hl;
  t->seq = rd32(tcp + 4);
  return true;
}

/*
 * True when the segment's own checksums verify: the IPv4 header's and the
 * TCP checksum over the pseudo-header, header and payload. A coalesced run
 * goes to the kernel with CHECKSUM_PARTIAL (it computes the TCP checksum of
 * every segment it cuts), so a segment corrupted before it reached us would
 * come out with a valid checksum: only verified segments join a run, as in
 * the kernel's own GRO. One that fails is written alone, unchanged, and the
 * receiving stack drops it.
 */
static bool seg_csum_ok(const uint8_t *p, const struct tcp_seg *t) {
  uint32_t len = t->hl + t->payload;
  if (!t->v6 && fold_native(sum_native(p, 20, 0)) != 0) return false;
  return fold_native(sum_native(p + t->iphl, len - t->iphl, pseudo_sum(p, t->v6, 6, len - t->iphl))) == 0;
}

/* True when b continues a's flow: same addresses, ports, ack, window, options and IP fields. */
static bool same_flow(const uint8_t *a, const struct tcp_seg *ta, const uint8_t *b, const struct tcp_seg *tb) {
  if (ta->v6 != tb->v6 || ta->hl != tb->hl) return false;
  if (ta->v6) {
    /* version/traffic class/flow label, next header, hop limit, addresses */
    if (memcmp(a, b, 4) != 0 || memcmp(a + 6, b + 6, 34) != 0) return false;
  } else {
    /* TOS, DF flag, TTL, protocol, addresses */
    if (a[1] != b[1] || a[6] != b[6] || a[8] != b[8] || memcmp(a + 12, b + 12, 8) != 0) return false;
  }
  const uint8_t *x = a + ta->iphl, *y = b + tb->iphl;
  /* ports; ack; data offset; window; options (skip seq 4..8, flags 13, checksum 16..18, urgent 18..20) */
  return memcmp(x, y, 4) == 0 && memcmp(x + 8, y + 8, 5) == 0 && memcmp(x + 14, y + 14, 2) == 0 &&
         memcmp(x + 20, y + 20, ta->hl - ta->iphl - 20) == 0;
}

/* Coalesces packets [i, j) into wscratch behind a GSO virtio header; returns its length. */
static size_t build_super(uint8_t **ptrs, const uint32_t *sizes, uint32_t offset, uint32_t i, uint32_t j,
                          const struct tcp_seg *t0, uint8_t *out) {
  const uint8_t *first = ptrs[i] + offset;
  uint8_t *pkt = out + VNET_HDR_LEN;
  memcpy(pkt, first, t0->hl);
  uint32_t len = t0->hl;
  uint8_t flags = 0x10;
  for (uint32_t k = i; k < j; k++) {
    const uint8_t *p = ptrs[k] + offset;
    uint32_t pay = sizes[k] - t0->hl;
    memcpy(pkt + len, p + t0->hl, pay);
    len += pay;
    flags |= p[t0->iphl + 13] & 0x08; /* PSH, if any segment had it (only the last may) */
  }
  uint8_t *tcp = pkt + t0->iphl;
  tcp[13] = flags;
  if (t0->v6) {
    wr16(pkt + 4, (uint16_t)(len - 40));
  } else {
    wr16(pkt + 2, (uint16_t)len);
    ipv4_csum(pkt);
  }
  /* CHECKSUM_PARTIAL: the field holds the folded pseudo-header sum, the kernel finishes it. */
  tcp[16] = tcp[17] = 0;
  uint16_t ps = (uint16_t)~fold_native(pseudo_sum(pkt, t0->v6, 6, len - t0->iphl));
  memcpy(tcp + 16, &ps, 2);
  struct virtio_net_hdr vh;
  memset(&vh, 0, sizeof vh);
  vh.flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
  vh.gso_type = t0->v6 ? VIRTIO_NET_HDR_GSO_TCPV6 : VIRTIO_NET_HDR_GSO_TCPV4;
  vh.hdr_len = (uint16_t)t0->hl;
  vh.gso_size = (uint16_t)t0->payload;
  vh.csum_start = (uint16_t)t0->iphl;
  vh.csum_offset = 16;
  memcpy(out, &vh, sizeof vh);
  return (size_t)VNET_HDR_LEN + len;
}

/* Largest run coalesced into one super-packet (as the kernel's GRO: 64 segments, 64 KB). */
#define GRO_MAX_SEGS 64

uint32_t mtun_vnet_write(int fd, uint8_t **ptrs, const uint32_t *sizes, uint32_t count, uint32_t offset,
                         uint8_t *wscratch, size_t wscratch_len, double *stats, int *err) {
  static const struct virtio_net_hdr none; /* no GSO, checksums complete */
  uint32_t done = 0;
  *err = 0;
  while (done < count) {
    uint32_t run = 1;
    size_t super_len = 0;
    struct tcp_seg t0;
    if (wscratch != NULL && done + 1 < count && parse_tcp_seg(ptrs[done] + offset, sizes[done], &t0) &&
        (t0.flags & 0x08) == 0) {
      uint32_t total = t0.hl + t0.payload;
      uint32_t next_seq = t0.seq + t0.payload;
      uint32_t last_pay = t0.payload;
      while (done + run < count && run < GRO_MAX_SEGS) {
        struct tcp_seg t;
        const uint8_t *p = ptrs[done + run] + offset;
        if (!parse_tcp_seg(p, sizes[done + run], &t) || !same_flow(ptrs[done] + offset, &t0, p, &t)) break;
        if (t.seq != next_seq || t.payload > t0.payload || last_pay != t0.payload) break;
        if (total + t.payload > 65535 || VNET_HDR_LEN + total + t.payload > wscratch_len) break;
        /* Checksums verified only for what would join a run: the head once, when it gets a follower. */
        if (run == 1 && !seg_csum_ok(ptrs[done] + offset, &t0)) break;
        if (!seg_csum_ok(p, &t)) break;
        total += t.payload;
        next_seq += t.payload;
        last_pay = t.payload;
        run++;
        if (t.flags & 0x08) break; /* PSH ends a run */
      }
      if (run > 1) super_len = build_super(ptrs, sizes, offset, done, done + run, &t0, wscratch);
      else run = 1;
    }
    ssize_t r;
    if (super_len > 0) {
      r = write(fd, wscratch, super_len);
    } else {
      struct iovec iov[2] = {{(void *)&none, sizeof none}, {ptrs[done] + offset, sizes[done]}};
      r = writev(fd, iov, 2);
    }
    if (r < 0) {
      int e = errno;
      if (e == EINTR) continue;
      if (e == EAGAIN || e == EWOULDBLOCK) {
        if (stats) stats[TS_TX_EAGAIN] += 1;
        break;
      }
      if (e == EINVAL || e == EMSGSIZE) {
        if (stats) stats[TS_TX_INVALID] += run;
        done += run;
        continue;
      }
      *err = e;
      break;
    }
    if (stats) {
      stats[TS_TX_PACKETS] += run;
      for (uint32_t k = done; k < done + run; k++) stats[TS_TX_BYTES] += sizes[k];
      if (run > 1) stats[TS_TX_SUPER] += 1;
    }
    done += run;
  }
  return done;
}
