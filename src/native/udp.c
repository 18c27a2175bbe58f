/*
 * mtun native addon: batched UDP socket — recvmmsg/sendmmsg with compact
 * address slots, UDP GSO (UDP_SEGMENT) and GRO (UDP_GRO), DF, large buffers,
 * and the local address of each datagram (IP_PKTINFO / IPV6_PKTINFO) so a
 * wildcard-bound server answers from the address it was reached on.
 */
#include "common.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/ip.h>
#include <netinet/udp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef SOL_UDP
#define SOL_UDP 17
#endif

/* Kernel limit on segments in one GSO send (UDP_MAX_SEGMENTS, 64 before Linux 6.9). */
#define GSO_MAX_SEGS 64
/* Largest UDP payload in one IPv4 datagram (65,535 − 20 − 8): the GSO super-packet bound. */
#define GSO_MAX_BYTES 65507


static bool parse_host(const char *host, int family, struct sockaddr_in6 *sa6, struct sockaddr_in *sa4) {
  if (family == 4) {
    memset(sa4, 0, sizeof *sa4);
    sa4->sin_family = AF_INET;
    return inet_pton(AF_INET, host, &sa4->sin_addr) == 1;
  }
  memset(sa6, 0, sizeof *sa6);
  sa6->sin6_family = AF_INET6;
  return inet_pton(AF_INET6, host, &sa6->sin6_addr) == 1;
}

static void set_buf(int fd, int force_opt, int opt, int bytes) {
  if (bytes <= 0) return;
  /* FORCE variants ignore rmem_max/wmem_max; they need CAP_NET_ADMIN. */
  if (setsockopt(fd, SOL_SOCKET, force_opt, &bytes, sizeof bytes) < 0) {
    setsockopt(fd, SOL_SOCKET, opt, &bytes, sizeof bytes);
  }
}

static int get_int_opt(int fd, int level, int opt) {
  int v = 0;
  socklen_t l = sizeof v;
  if (getsockopt(fd, level, opt, &v, &l) < 0) return -1;
  return v;
}

/*
 * udpOpen(family, host, port, rcvbuf, sndbuf, gro) -> { fd, gso, gro, pktinfo, rcvbuf, sndbuf }.
 * family 4: AF_INET; 6: AF_INET6 v6-only; 0: AF_INET6 dual-stack.
 * pktinfo: the kernel reports each datagram's local address (IP_PKTINFO for
 * IPv4, IPV6_RECVPKTINFO for IPv6; a dual-stack socket needs both, as IPv4
 * traffic may arrive with either cmsg).
 */
static napi_value udp_open(napi_env env, napi_callback_info info) {
  MTUN_ARGS(6);
  if (argc < 6) return mtun_throw_type(env, "udp: udpOpen(family, host, port, rcvbuf, sndbuf, gro) needs 6 arguments");
  int32_t family, rcvbuf, sndbuf;
  uint32_t port;
  bool want_gro;
  char host[INET6_ADDRSTRLEN + 1];
  if (!mtun_arg_i32(env, argv[0], "family", &family) || !mtun_arg_str(env, argv[1], "host", host, sizeof host, NULL) ||
      !mtun_arg_u32(env, argv[2], "port", &port) || !mtun_arg_i32(env, argv[3], "rcvbuf", &rcvbuf) ||
      !mtun_arg_i32(env, argv[4], "sndbuf", &sndbuf) || !mtun_arg_bool(env, argv[5], "gro", &want_gro)) {
    return NULL;
  }
  if (family != 0 && family != 4 && family != 6) return mtun_throw_type(env, "udp: family must be 0, 4 or 6");
  if (port > 65535) return mtun_throw_type(env, "udp: port must be in 0..65535");
  struct sockaddr_in6 sa6;
  struct sockaddr_in sa4;
  if (!parse_host(host, family, &sa6, &sa4)) {
    char msg[128];
    snprintf(msg, sizeof msg, "udp: cannot bind: %s is not an IPv%d address", host, family == 4 ? 4 : 6);
    return mtun_throw_type(env, msg);
  }
  int fd = socket(family == 4 ? AF_INET : AF_INET6, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return mtun_throw_errno(env, "udp", "socket", errno);
  int one = 1, zero = 0;
  if (family != 4) {
    int v6only = family == 6 ? 1 : 0;
    if (setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, family == 6 ? &one : &zero, sizeof v6only) < 0) goto fail_errno;
    /* DF on IPv6 (RFC 9298 §5 / RFC 9000 §14: never fragment). */
    int pmtu6 = IPV6_PMTUDISC_PROBE;
    if (setsockopt(fd, IPPROTO_IPV6, IPV6_MTU_DISCOVER, &pmtu6, sizeof pmtu6) < 0) goto fail_errno;
    if (setsockopt(fd, IPPROTO_IPV6, IPV6_DONTFRAG, &one, sizeof one) < 0) goto fail_errno;
  }
  if (family != 6) {
    /* DF on IPv4 (also covers IPv4-mapped traffic on a dual-stack socket). */
    int pmtu = IP_PMTUDISC_PROBE;
    if (setsockopt(fd, IPPROTO_IP, IP_MTU_DISCOVER, &pmtu, sizeof pmtu) < 0) goto fail_errno;
  }
  set_buf(fd, SO_RCVBUFFORCE, SO_RCVBUF, rcvbuf);
  set_buf(fd, SO_SNDBUFFORCE, SO_SNDBUF, sndbuf);
  int rc;
  if (family == 4) {
    sa4.sin_port = htons((uint16_t)port);
    rc = bind(fd, (struct sockaddr *)&sa4, sizeof sa4);
  } else {
    sa6.sin6_port = htons((uint16_t)port);
    rc = bind(fd, (struct sockaddr *)&sa6, sizeof sa6);
  }
  if (rc < 0) {
    int err = errno;
    close(fd);
    char what[128];
    snprintf(what, sizeof what, "bind %s%s%s:%u", family == 4 ? "" : "[", host, family == 4 ? "" : "]", port);
    return mtun_throw_errno(env, "udp", what, err);
  }
  /* GSO: supported when the kernel knows UDP_SEGMENT (Linux ≥ 4.18). */
  bool gso = get_int_opt(fd, SOL_UDP, UDP_SEGMENT) >= 0;
  bool gro = false;
  if (want_gro) gro = setsockopt(fd, SOL_UDP, UDP_GRO, &one, sizeof one) == 0;
  bool pktinfo = true;
  if (family != 6 && setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &one, sizeof one) < 0) pktinfo = false;
  if (family != 4 && setsockopt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &one, sizeof one) < 0) pktinfo = false;

  napi_value obj, v;
  if (napi_create_object(env, &obj) != napi_ok) goto fail_obj;
  if (napi_create_int32(env, fd, &v) != napi_ok || napi_set_named_property(env, obj, "fd", v) != napi_ok) goto fail_obj;
  if (napi_get_boolean(env, gso, &v) != napi_ok || napi_set_named_property(env, obj, "gso", v) != napi_ok) goto fail_obj;
  if (napi_get_boolean(env, gro, &v) != napi_ok || napi_set_named_property(env, obj, "gro", v) != napi_ok) goto fail_obj;
  if (napi_get_boolean(env, pktinfo, &v) != napi_ok || napi_set_named_property(env, obj, "pktinfo", v) != napi_ok)
    goto fail_obj;
  if (napi_create_int32(env, get_int_opt(fd, SOL_SOCKET, SO_RCVBUF), &v) != napi_ok ||
      napi_set_named_property(env, obj, "rcvbuf", v) != napi_ok)
    goto fail_obj;
  if (napi_create_int32(env, get_int_opt(fd, SOL_SOCKET, SO_SNDBUF), &v) != napi_ok ||
      napi_set_named_property(env, obj, "sndbuf", v) != napi_ok)
    goto fail_obj;
  return obj;

fail_errno : {
  int err = errno;
  close(fd);
  return mtun_throw_errno(env, "udp", "setsockopt", err);
}
fail_obj:
  close(fd);
  napi_throw_error(env, NULL, "udp: cannot build result");
  return NULL;
}

/* udpLocal(fd) -> { family: 4|6, slot: Buffer(MTUN_ADDR_SLOT) } from getsockname (local part zero). */
static napi_value udp_local(napi_env env, napi_callback_info info) {
  MTUN_ARGS(1);
  int32_t fd;
  if (argc < 1 || !mtun_arg_i32(env, argv[0], "fd", &fd)) return NULL;
  struct sockaddr_storage ss;
  socklen_t l = sizeof ss;
  if (getsockname(fd, (struct sockaddr *)&ss, &l) < 0) return mtun_throw_errno(env, "udp", "getsockname", errno);
  uint8_t slot[MTUN_ADDR_SLOT];
  memset(slot, 0, sizeof slot);
  int fam;
  if (ss.ss_family == AF_INET) {
    struct sockaddr_in *a = (struct sockaddr_in *)&ss;
    slot[10] = slot[11] = 0xff;
    memcpy(slot + 12, &a->sin_addr, 4);
    memcpy(slot + 16, &a->sin_port, 2);
    fam = 4;
  } else {
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
    memcpy(slot, &a->sin6_addr, 16);
    memcpy(slot + 16, &a->sin6_port, 2);
    fam = 6;
  }
  napi_value obj, buf, f;
  void *data;
  if (napi_create_object(env, &obj) != napi_ok || napi_create_buffer_copy(env, sizeof slot, slot, &data, &buf) != napi_ok ||
      napi_create_int32(env, fam, &f) != napi_ok || napi_set_named_property(env, obj, "slot", buf) != napi_ok ||
      napi_set_named_property(env, obj, "family", f) != napi_ok) {
    napi_throw_error(env, NULL, "udp: cannot build result");
    return NULL;
  }
  return obj;
}

/* Writes the peer part of a slot ([0,20)) from a socket address (IPv4 or IPv6). */
void mtun_name_to_slot(const struct sockaddr_in6 *name, uint8_t *slot) {
  if (name->sin6_family == AF_INET) {
    const struct sockaddr_in *a = (const struct sockaddr_in *)name;
    memset(slot, 0, 10);
    slot[10] = slot[11] = 0xff; /* RFC 4291 §2.5.5.2 IPv4-mapped */
    memcpy(slot + 12, &a->sin_addr, 4);
    memcpy(slot + 16, &a->sin_port, 2);
  } else {
    memcpy(slot, &name->sin6_addr, 16);
    memcpy(slot + 16, &name->sin6_port, 2);
  }
  slot[18] = slot[19] = 0;
}

static bool slot_is_v4(const uint8_t *slot) {
  static const uint8_t prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  return memcmp(slot, prefix, 12) == 0;
}

static bool is_zero16(const uint8_t *a) {
  static const uint8_t zero[16];
  return memcmp(a, zero, 16) == 0;
}

/* True when slots a and b name the same peer and the same local address (may share one GSO send). */
static bool slot_same_path(const uint8_t *a, const uint8_t *b) {
  return memcmp(a, b, MTUN_SLOT_PEER_BYTES) == 0 && memcmp(a + MTUN_SLOT_LOCAL, b + MTUN_SLOT_LOCAL, 16) == 0;
}

/*
 * Fills the local part of a slot from the pktinfo cmsgs of one received
 * message, and returns the UDP_GRO segment size (0 when absent or not below
 * len). IPv4: ipi_spec_dst (the local address the kernel would answer from;
 * equal to the header destination for unicast). IPv6: ipi6_addr unless it is
 * multicast (not usable as a source). IP_PKTINFO wins over the IPv4-mapped
 * IPV6_PKTINFO a dual-stack socket may deliver alongside it. Left all-zero
 * when no pktinfo came (then the kernel picks the source on reply).
 */
static uint32_t parse_recv_cmsgs(struct msghdr *h, uint32_t len, uint8_t *local) {
  uint32_t seg = 0;
  bool have_v4 = false;
  memset(local, 0, 16);
  for (struct cmsghdr *c = CMSG_FIRSTHDR(h); c != NULL; c = CMSG_NXTHDR(h, c)) {
    if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO && c->cmsg_len >= CMSG_LEN(sizeof(int))) {
      int v;
      memcpy(&v, CMSG_DATA(c), sizeof v);
      if (v > 0 && (uint32_t)v < len) seg = (uint32_t)v;
    } else if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO &&
               c->cmsg_len >= CMSG_LEN(sizeof(struct in_pktinfo))) {
      struct in_pktinfo pi;
      memcpy(&pi, CMSG_DATA(c), sizeof pi);
      memset(local, 0, 10);
      local[10] = local[11] = 0xff; /* RFC 4291 §2.5.5.2 IPv4-mapped */
      memcpy(local + 12, &pi.ipi_spec_dst, 4);
      have_v4 = true;
    } else if (!have_v4 && c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO &&
               c->cmsg_len >= CMSG_LEN(sizeof(struct in6_pktinfo))) {
      struct in6_pktinfo pi6;
      memcpy(&pi6, CMSG_DATA(c), sizeof pi6);
      if (pi6.ipi6_addr.s6_addr[0] != 0xff) memcpy(local, &pi6.ipi6_addr, 16);
    }
  }
  return seg;
}

/*
 * Writes the send cmsgs of one message into ctrl and returns their total
 * length: UDP_SEGMENT when gso > 0, then the source address when the slot's
 * local part is set — IP_PKTINFO (ipi_spec_dst) for an IPv4 / IPv4-mapped
 * peer, IPV6_PKTINFO for an IPv6 peer. A local address of the other family
 * than the peer is not usable as its source and is left to the kernel.
 */
static size_t build_send_cmsgs(char *ctrl, size_t cap, const uint8_t *slot, uint16_t gso) {
  size_t off = 0;
  memset(ctrl, 0, cap);
  if (gso > 0) {
    struct cmsghdr *c = (struct cmsghdr *)ctrl;
    c->cmsg_level = SOL_UDP;
    c->cmsg_type = UDP_SEGMENT;
    c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
    memcpy(CMSG_DATA(c), &gso, sizeof gso);
    off += CMSG_SPACE(sizeof(uint16_t));
  }
  const uint8_t *local = slot + MTUN_SLOT_LOCAL;
  if (is_zero16(local)) return off;
  bool peer_v4 = slot_is_v4(slot), local_v4 = slot_is_v4(local);
  if (peer_v4 != local_v4) return off;
  struct cmsghdr *c = (struct cmsghdr *)(ctrl + off);
  if (peer_v4) {
    struct in_pktinfo pi;
    memset(&pi, 0, sizeof pi);
    memcpy(&pi.ipi_spec_dst, local + 12, 4);
    c->cmsg_level = IPPROTO_IP;
    c->cmsg_type = IP_PKTINFO;
    c->cmsg_len = CMSG_LEN(sizeof pi);
    memcpy(CMSG_DATA(c), &pi, sizeof pi);
    off += CMSG_SPACE(sizeof pi);
  } else {
    struct in6_pktinfo pi6;
    memset(&pi6, 0, sizeof pi6);
    memcpy(&pi6.ipi6_addr, local, 16);
    c->cmsg_level = IPPROTO_IPV6;
    c->cmsg_type = IPV6_PKTINFO;
    c->cmsg_len = CMSG_LEN(sizeof pi6);
    memcpy(CMSG_DATA(c), &pi6, sizeof pi6);
    off += CMSG_SPACE(sizeof pi6);
  }
  return off;
}

/* Builds the destination sockaddr for a slot; false when a v4 socket is asked for an IPv6 peer. */
static bool slot_to_name(const uint8_t *slot, int family, struct sockaddr_in6 *name, socklen_t *len) {
  if (family == 4) {
    if (!slot_is_v4(slot)) return false;
    struct sockaddr_in *a = (struct sockaddr_in *)name;
    memset(a, 0, sizeof *a);
    a->sin_family = AF_INET;
    memcpy(&a->sin_addr, slot + 12, 4);
    memcpy(&a->sin_port, slot + 16, 2);
    *len = sizeof *a;
    return true;
  }
  memset(name, 0, sizeof *name);
  name->sin6_family = AF_INET6;
  memcpy(&name->sin6_addr, slot, 16);
  memcpy(&name->sin6_port, slot + 16, 2);
  *len = sizeof *name;
  return true;
}

/*
 * The receive of udpRecv (its arguments checked): one recvmmsg into ptrs[k]
 * (lens[k] bytes each), k < n ≤ MTUN_MAX_BATCH; fills sizes, address slots
 * and GRO segment sizes, compacts after a dropped slot. Returns the count,
 * 0 when nothing waits, or -errno. Shared by udpRecv and the agent's TUN
 * thread (dataplane.c), each with its own scratch.
 */
int32_t mtun_udp_recv(int fd, uint8_t *const *ptrs, const size_t *lens, uint32_t n, uint32_t *sizes, uint8_t *addrs,
                      uint32_t *segs, double *stats, struct mtun_scratch *s) {
  for (uint32_t k = 0; k < n; k++) {
    s->iov[k].iov_base = ptrs[k];
    s->iov[k].iov_len = lens[k];
    struct msghdr *h = &s->msgs[k].msg_hdr;
    h->msg_name = &s->names[k];
    h->msg_namelen = sizeof s->names[k];
    h->msg_iov = &s->iov[k];
    h->msg_iovlen = 1;
    h->msg_control = s->ctrl[k].buf;
    h->msg_controllen = sizeof s->ctrl[k].buf;
    h->msg_flags = 0;
    s->msgs[k].msg_len = 0;
  }
  int r;
  do {
    r = recvmmsg(fd, s->msgs, n, MSG_DONTWAIT, NULL);
  } while (r < 0 && errno == EINTR);
  if (r < 0) return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno;
  uint32_t w = 0;
  for (uint32_t k = 0; k < (uint32_t)r; k++) {
    struct msghdr *h = &s->msgs[k].msg_hdr;
    if (h->msg_flags & MSG_TRUNC) {
      stats[US_RX_TRUNCATED] += 1;
      continue;
    }
    uint32_t len = s->msgs[k].msg_len;
    if (w != k) {
      /* Compact after a dropped slot (rare). Slots may differ in size (the
       * caller's buffers): one that does not fit where it would go is
       * dropped and counted like a truncated one, never copied past it. */
      if (len > lens[w]) {
        stats[US_RX_TRUNCATED] += 1;
        continue;
      }
      memmove(ptrs[w], ptrs[k], len);
    }
    sizes[w] = len;
    uint8_t *slot = addrs + (size_t)w * MTUN_ADDR_SLOT;
    mtun_name_to_slot(&s->names[k], slot);
    segs[w] = parse_recv_cmsgs(h, len, slot + MTUN_SLOT_LOCAL);
    stats[US_RX_DATAGRAMS] += 1;
    stats[US_RX_BYTES] += len;
    w++;
  }
  return (int32_t)w;
}

/*
 * udpRecv(fd, bufs, sizes, addrs, segs, max, stats, stride?) -> count.
 * bufs: an Array of Buffers, or with stride > 0 one Buffer of back-to-back
 * slots of `stride` bytes (mtun_arg_slots_begin).
 * One recvmmsg; slot i gets the datagram (or GRO super-datagram), its length,
 * source address, the local address it arrived on (zero when unknown) and GRO
 * segment size (0 when not coalesced). Received slots are compacted to the
 * front; a datagram larger than its slot, or than the slot it would be
 * compacted into, is dropped and counted (US_RX_TRUNCATED).
 */
static napi_value udp_recv(napi_env env, napi_callback_info info) {
  MTUN_ARGS(8);
  if (argc < 7) return mtun_throw_type(env, "udp: udpRecv(fd, bufs, sizes, addrs, segs, max, stats) needs 7 arguments");
  int32_t fd;
  uint32_t nbufs, max;
  void *sz, *ad, *sg;
  size_t nsizes, naddrs, nsegs, nstats;
  double *stats;
  struct mtun_slots slots;
  if (!mtun_arg_i32(env, argv[0], "fd", &fd) || !mtun_arg_slots_begin(env, argv[1], argc > 7 ? argv[7] : NULL, "bufs", &slots) ||
      !mtun_arg_typed(env, argv[2], napi_uint32_array, "sizes", &sz, &nsizes) ||
      !mtun_arg_typed(env, argv[3], napi_uint8_array, "addrs", &ad, &naddrs) ||
      !mtun_arg_typed(env, argv[4], napi_uint32_array, "segs", &sg, &nsegs) ||
      !mtun_arg_u32(env, argv[5], "max", &max) || !mtun_arg_stats(env, argv[6], &stats, &nstats)) {
    return NULL;
  }
  nbufs = slots.count;
  if (stats == NULL || nstats < US_COUNT) return mtun_throw_type(env, "udp: stats must be a Float64Array of 11");
  uint32_t n = max;
  if (n > nbufs) n = nbufs;
  if (n > nsizes) n = (uint32_t)nsizes;
  if (n > nsegs) n = (uint32_t)nsegs;
  if (n > naddrs / MTUN_ADDR_SLOT) n = (uint32_t)(naddrs / MTUN_ADDR_SLOT);
  if (n > MTUN_MAX_BATCH) n = MTUN_MAX_BATCH;
  if (n == 0) return mtun_u32(env, 0);
  struct mtun_scratch *s = mtun_scratch_of(env);
  if (s == NULL) return mtun_throw_type(env, "udp: addon not initialised");
  if (!mtun_arg_slots_fill(env, &slots, n, "bufs", s->ptrs, s->lens)) return NULL;
  int32_t r = mtun_udp_recv(fd, s->ptrs, s->lens, n, (uint32_t *)sz, (uint8_t *)ad, (uint32_t *)sg, stats, s);
  if (r < 0) return mtun_throw_errno(env, "udp", "recvmmsg", -r);
  return mtun_u32(env, (uint32_t)r);
}

/* Datagrams slot q stands for: an explicit GSO train counts its segments. */
static double slot_datagrams(const uint32_t *sizes, const uint32_t *segs, uint32_t q) {
  return segs[q] > 0 && segs[q] < sizes[q] ? (double)((sizes[q] + segs[q] - 1) / segs[q]) : 1;
}

/*
 * Sends one GSO super-datagram whose path refused GSO (EIO), ptr[0, *size)
 * in segments of seg bytes to the slot's address, one datagram per segment
 * (as many sendmmsg calls as it takes, with the message scratch of s, which
 * the caller rebuilds afterwards). Returns true when the slot is consumed:
 * every segment sent, or refused by the kernel and counted (US_TX_ERRORS, a
 * datagram each). A full socket buffer (EAGAIN) never blocks here and drops
 * nothing: the segments not sent yet move to the front of the slot, *size
 * shrinks to them, and false says the slot is kept, as a slot the kernel
 * did not take is on the normal path (the caller stops and retries once the
 * socket is writable).
 */
static bool send_segments(int fd, int family, uint8_t *ptr, uint32_t *size, uint32_t seg, const uint8_t *slot,
                          double *stats, struct mtun_scratch *s) {
  socklen_t nl;
  if (!slot_to_name(slot, family, &s->names[0], &nl)) {
    stats[US_TX_ERRORS] += (double)((*size + seg - 1) / seg);
    stats[US_TX_LAST_ERRNO] = EAFNOSUPPORT;
    return true;
  }
  size_t cl = build_send_cmsgs(s->ctrl[0].buf, sizeof s->ctrl[0].buf, slot, 0);
  uint32_t total = *size;
  uint32_t off = 0;
  while (off < total) {
    uint32_t m = 0;
    for (uint32_t o = off; o < total && m < MTUN_MAX_BATCH; o += seg, m++) {
      struct msghdr *h = &s->msgs[m].msg_hdr;
      s->iov[m].iov_base = ptr + o;
      s->iov[m].iov_len = total - o < seg ? total - o : seg;
      h->msg_name = &s->names[0];
      h->msg_namelen = nl;
      h->msg_iov = &s->iov[m];
      h->msg_iovlen = 1;
      h->msg_control = cl > 0 ? s->ctrl[0].buf : NULL;
      h->msg_controllen = cl;
      h->msg_flags = 0;
    }
    int r;
    do {
      r = sendmmsg(fd, s->msgs, m, MSG_DONTWAIT);
    } while (r < 0 && errno == EINTR);
    if (r > 0) {
      for (int k = 0; k < r; k++) {
        stats[US_TX_DATAGRAMS] += 1;
        stats[US_TX_BYTES] += (double)s->iov[k].iov_len;
      }
      off += (uint32_t)r * seg;
      continue;
    }
    int err = errno;
    if (err == EAGAIN || err == EWOULDBLOCK) {
      if (off > 0) {
        memmove(ptr, ptr + off, total - off);
        *size = total - off;
      }
      return false;
    }
    /* The kernel refused this segment: count it, go on with the next. */
    stats[US_TX_ERRORS] += 1;
    stats[US_TX_LAST_ERRNO] = err;
    off += seg;
  }
  return true;
}

/*
 * The send of udpSend (its arguments checked): slots [0, count) of ptrs,
 * sizes, segs (explicit GSO segment sizes, 0: none) and addrs, as few
 * sendmmsg calls as it takes, auto GSO trains of equal-size slots to one
 * path when auto_gso. An auto train the kernel refuses (EIO, EINVAL,
 * EMSGSIZE) is resent slot by slot. EIO says the path cannot segment at all
 * (an IPsec route, UDP-Lite, a kernel without software segmentation): it is
 * counted (US_GSO_REFUSED), sets stats[US_GSO_FAILED] for the caller to stop
 * asking for GSO, and from then on (that flag stays set) no auto train is
 * built and every explicit train (segs) goes segment by segment (send_segments; other
 * errors of an explicit train drop it, counted per slot: they are not about
 * segmentation; US_TX_ERRORS counts the datagrams dropped). Returns the
 * slots consumed (sent or dropped and counted); fewer than count when the
 * socket buffer is full (US_TX_EAGAIN). An explicit train that filled the
 * buffer half way through its segments is not consumed: sizes[] of its slot
 * shrinks to the segments not sent, moved to the front of its buffer.
 * Shared by udpSend and the agent's TUN thread (dataplane.c), each with its
 * own scratch.
 */
uint32_t mtun_udp_send(int fd, int family, uint8_t *const *ptrs, uint32_t *sizes, const uint32_t *segs,
                       const uint8_t *addrs, uint32_t count, bool auto_gso, double *stats, struct mtun_scratch *s) {
  uint32_t done = 0;      /* slots consumed (sent or dropped) */
  uint32_t no_gso_to = 0; /* slots below this index go without auto GSO (after a GSO failure) */
  /* The path refused GSO with EIO (in this call, or earlier on this socket: the flag stays in its stats):
   * no train is tried again; the caller's explicit trains (kept across a full buffer) go segment by segment. */
  bool gso_dead = stats[US_GSO_FAILED] != 0;
  while (done < count) {
    if (gso_dead && segs[done] > 0 && segs[done] < sizes[done]) {
      /* An explicit train after the path refused GSO: its segments go one by one. */
      if (!send_segments(fd, family, ptrs[done], &sizes[done], segs[done] > 65535 ? 65535 : segs[done],
                         addrs + (size_t)done * MTUN_ADDR_SLOT, stats, s)) {
        stats[US_TX_EAGAIN] += 1; /* kept (what is left of it) for the caller's retry */
        break;
      }
      done++;
      continue;
    }
    /* Build messages from slot `done` on. */
    uint32_t m = 0;
    uint32_t i = done;
    while (i < count && m < MTUN_MAX_BATCH) {
      /* It goes alone, at the head of the next round (also when slots dropped just before it made it the head). */
      if (gso_dead && segs[i] > 0 && segs[i] < sizes[i]) break;
      struct msghdr *h = &s->msgs[m].msg_hdr;
      socklen_t nl;
      const uint8_t *slot = addrs + (size_t)i * MTUN_ADDR_SLOT;
      if (!slot_to_name(slot, family, &s->names[m], &nl)) {
        /* IPv6 peer on an IPv4 socket: drop and count. */
        if (m == 0) {
          stats[US_TX_ERRORS] += slot_datagrams(sizes, segs, i);
          stats[US_TX_LAST_ERRNO] = EAFNOSUPPORT;
          i++;
          done = i;
          continue;
        }
        break; /* send what we have first, then drop this one at the head */
      }
      uint32_t j = i + 1;
      uint16_t gso = 0;
      if (segs[i] > 0) {
        if (segs[i] < sizes[i]) gso = (uint16_t)(segs[i] > 65535 ? 65535 : segs[i]);
      } else if (auto_gso && !gso_dead && i >= no_gso_to && sizes[i] > 0) {
        uint32_t total = sizes[i];
        while (j < count && j - i < GSO_MAX_SEGS && segs[j] == 0 && sizes[j] > 0 && sizes[j] <= sizes[i] &&
               sizes[j - 1] == sizes[i] && total + sizes[j] <= GSO_MAX_BYTES &&
               slot_same_path(addrs + (size_t)j * MTUN_ADDR_SLOT, slot)) {
          total += sizes[j];
          j++;
        }
        if (j - i > 1) gso = (uint16_t)sizes[i];
      }
      for (uint32_t k = i; k < j; k++) {
        s->iov[k].iov_base = ptrs[k];
        s->iov[k].iov_len = sizes[k];
      }
      h->msg_name = &s->names[m];
      h->msg_namelen = nl;
      h->msg_iov = &s->iov[i];
      h->msg_iovlen = j - i;
      h->msg_flags = 0;
      size_t cl = build_send_cmsgs(s->ctrl[m].buf, sizeof s->ctrl[m].buf, slot, gso);
      h->msg_control = cl > 0 ? s->ctrl[m].buf : NULL;
      h->msg_controllen = cl;
      s->msg_gso[m] = gso > 0;
      s->msg_slot[m] = i;
      s->msg_nslots[m] = j - i;
      m++;
      i = j;
    }
    if (m == 0) continue; /* only dropped slots so far */
    int r;
    do {
      r = sendmmsg(fd, s->msgs, m, MSG_DONTWAIT);
    } while (r < 0 && errno == EINTR);
    if (r < 0) {
      int err = errno;
      if (err == EAGAIN || err == EWOULDBLOCK) {
        stats[US_TX_EAGAIN] += 1;
        break;
      }
      /* The first message failed. */
      uint32_t first = s->msg_slot[0], nsl = s->msg_nslots[0];
      bool was_gso = s->msg_gso[0];
      if (was_gso && err == EIO) {
        /* The path cannot segment: this train's datagrams go one by one (the head of the next round). */
        stats[US_GSO_REFUSED] += 1;
        stats[US_GSO_FAILED] = 1;
        gso_dead = true;
        no_gso_to = first + nsl;
        continue;
      }
      if (was_gso && segs[first] == 0 && (err == EINVAL || err == EMSGSIZE)) {
        /* An auto train refused: resend these slots one by one. */
        no_gso_to = first + nsl;
        continue;
      }
      for (uint32_t q = first; q < first + nsl; q++) stats[US_TX_ERRORS] += slot_datagrams(sizes, segs, q);
      stats[US_TX_LAST_ERRNO] = err;
      done = first + nsl;
      continue;
    }
    for (int k = 0; k < r; k++) {
      uint32_t first = s->msg_slot[k], nsl = s->msg_nslots[k];
      for (uint32_t q = first; q < first + nsl; q++) {
        stats[US_TX_DATAGRAMS] += slot_datagrams(sizes, segs, q);
        stats[US_TX_BYTES] += sizes[q];
      }
      if (s->msg_gso[k]) stats[US_TX_GSO_SENDS] += 1;
      done = first + nsl;
    }
    /* r < m: the next message failed or would block; the next round finds out which. */
  }
  return done;
}

/*
 * udpSend(fd, family, bufs, sizes, addrs, segs, count, autoGso, stats) -> consumed.
 * Slots [0, count): consecutive slots to one peer from one local address with
 * equal sizes (the last may be shorter) are sent as one UDP GSO message when
 * autoGso; a slot with segs[i] > 0 is sent as one GSO message of that segment
 * size. A slot with a local address is sent from it (IP_PKTINFO /
 * IPV6_PKTINFO); if that address is gone the kernel refuses the slot
 * (IPv4: ENETUNREACH; IPv6: EINVAL). Slots the kernel refuses are dropped and counted;
 * a full buffer (EAGAIN) stops. sizes is written to in one case: a train
 * going segment by segment (the path refused GSO) that fills the buffer part
 * way keeps its unsent segments, moved to the front of its buffer, and its
 * size shrinks to them (it is not counted as consumed).
 */
static napi_value udp_send(napi_env env, napi_callback_info info) {
  MTUN_ARGS(9);
  if (argc < 9) {
    return mtun_throw_type(env, "udp: udpSend(fd, family, bufs, sizes, addrs, segs, count, autoGso, stats) needs 9 arguments");
  }
  int32_t fd, family;
  uint32_t nbufs, count;
  void *sz, *ad, *sg;
  size_t nsizes, naddrs, nsegs, nstats;
  double *stats;
  bool auto_gso;
  if (!mtun_arg_i32(env, argv[0], "fd", &fd) || !mtun_arg_i32(env, argv[1], "family", &family) ||
      !mtun_arg_array_len(env, argv[2], "bufs", &nbufs) ||
      !mtun_arg_typed(env, argv[3], napi_uint32_array, "sizes", &sz, &nsizes) ||
      !mtun_arg_typed(env, argv[4], napi_uint8_array, "addrs", &ad, &naddrs) ||
      !mtun_arg_typed(env, argv[5], napi_uint32_array, "segs", &sg, &nsegs) ||
      !mtun_arg_u32(env, argv[6], "count", &count) || !mtun_arg_bool(env, argv[7], "autoGso", &auto_gso) ||
      !mtun_arg_stats(env, argv[8], &stats, &nstats)) {
    return NULL;
  }
  if (stats == NULL || nstats < US_COUNT) return mtun_throw_type(env, "udp: stats must be a Float64Array of 11");
  if (count > nbufs || count > nsizes || count > nsegs || count > naddrs / MTUN_ADDR_SLOT) {
    return mtun_throw_type(env, "udp: count exceeds the batch (bufs, sizes, addrs or segs)");
  }
  if (count > MTUN_MAX_BATCH) return mtun_throw_type(env, "udp: count exceeds 1024");
  if (count == 0) return mtun_u32(env, 0);
  struct mtun_scratch *s = mtun_scratch_of(env);
  if (s == NULL) return mtun_throw_type(env, "udp: addon not initialised");
  if (!mtun_arg_bufs(env, argv[2], count, "bufs", s->ptrs, s->lens)) return NULL;
  uint32_t *sizes = (uint32_t *)sz; /* written back for a train half sent when the buffer filled (mtun_udp_send) */
  const uint32_t *segs = (const uint32_t *)sg;
  const uint8_t *addrs = (const uint8_t *)ad;
  for (uint32_t i = 0; i < count; i++) {
    if (sizes[i] > s->lens[i]) {
      char msg[128];
      snprintf(msg, sizeof msg, "udp: sizes[%u] = %u exceeds its %zu-byte buffer", i, sizes[i], s->lens[i]);
      return mtun_throw_type(env, msg);
    }
  }

  return mtun_u32(env, mtun_udp_send(fd, family, s->ptrs, sizes, segs, addrs, count, auto_gso, stats, s));
}

bool mtun_udp_init(napi_env env, napi_value exports) {
  return mtun_export_fn(env, exports, "udpOpen", udp_open) && mtun_export_fn(env, exports, "udpLocal", udp_local) &&
         mtun_export_fn(env, exports, "udpRecv", udp_recv) && mtun_export_fn(env, exports, "udpSend", udp_send);
}
