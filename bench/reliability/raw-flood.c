/*
 * Bounded raw-socket flood generator for the reliability campaign (issue #12).
 * Builds IPv4 packets with source addresses drawn at random from a given
 * prefix (the campaign keeps them inside its own namespaces' ranges) and
 * sends them with sendmmsg at a fixed rate, for at most `count` packets and
 * `seconds` seconds. Run it inside a test namespace, as root.
 *
 *   raw-flood syn     DST DPORT SRC_NET/LEN RATE COUNT SECONDS   TCP SYN, random source port and ISN, MSS option
 *   raw-flood initial DST DPORT SRC_NET/LEN RATE COUNT SECONDS   1200-byte UDP datagram shaped as a QUIC v1
 *                                                                 Initial (RFC 9000 §17.2.2), random DCID/SCID,
 *                                                                 no token, random "protected" payload
 *
 * Prints one JSON line: {"mode":..,"sent":..,"errors":..,"seconds":..,"rate":..}.
 */
#define _GNU_SOURCE /* sendmmsg */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH 64
#define MAX_PKT 1280
#define QUIC_INITIAL_BYTES 1200 /* RFC 9000 §14.1: client Initials are padded to at least 1200 bytes */

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(void) {
  rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
  return (uint32_t)(rng >> 16);
}

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}

static uint32_t sum16(const uint8_t *p, size_t n, uint32_t s) {
  for (size_t i = 0; i + 1 < n; i += 2) s += (uint32_t)(p[i] << 8 | p[i + 1]);
  if (n & 1) s += (uint32_t)(p[n - 1] << 8);
  return s;
}
static uint16_t fold(uint32_t s) {
  while (s >> 16) s = (s & 0xffff) + (s >> 16);
  return (uint16_t)~s;
}

/* IPv4 header (20 bytes); the kernel fills the header checksum and, when 0, the ID (raw(7), IP_HDRINCL). */
static void ip4(uint8_t *p, uint16_t total, uint8_t proto, uint32_t src, uint32_t dst) {
  memset(p, 0, 20);
  p[0] = 0x45;
  p[2] = total >> 8; p[3] = total & 0xff;
  p[6] = 0x40; /* DF */
  p[8] = 64;
  p[9] = proto;
  memcpy(p + 12, &src, 4);
  memcpy(p + 16, &dst, 4);
}

static uint32_t l4sum(const uint8_t *ip, uint8_t proto, uint16_t l4len) {
  uint32_t s = sum16(ip + 12, 8, 0);
  return s + proto + l4len;
}

static size_t build_syn(uint8_t *p, uint32_t src, uint32_t dst, uint16_t dport) {
  const uint16_t tl = 24; /* 20 + MSS option */
  ip4(p, 20 + tl, 6, src, dst);
  uint8_t *t = p + 20;
  memset(t, 0, tl);
  uint16_t sport = 1024 + rnd() % 64512;
  uint32_t isn = rnd() << 16 ^ rnd();
  t[0] = sport >> 8; t[1] = sport & 0xff;
  t[2] = dport >> 8; t[3] = dport & 0xff;
  t[4] = isn >> 24; t[5] = isn >> 16; t[6] = isn >> 8; t[7] = isn;
  t[12] = (tl / 4) << 4;
  t[13] = 0x02; /* SYN */
  t[14] = 0xfa; t[15] = 0xf0; /* window 64240 */
  t[20] = 2; t[21] = 4; t[22] = 1460 >> 8; t[23] = 1460 & 0xff; /* MSS */
  uint16_t c = fold(sum16(t, tl, l4sum(p, 6, tl)));
  t[16] = c >> 8; t[17] = c & 0xff;
  return 20 + tl;
}

static size_t build_initial(uint8_t *p, uint32_t src, uint32_t dst, uint16_t dport) {
  const uint16_t ul = 8 + QUIC_INITIAL_BYTES;
  ip4(p, 20 + ul, 17, src, dst);
  uint8_t *u = p + 20;
  uint16_t sport = 1024 + rnd() % 64512;
  u[0] = sport >> 8; u[1] = sport & 0xff;
  u[2] = dport >> 8; u[3] = dport & 0xff;
  u[4] = ul >> 8; u[5] = ul & 0xff;
  u[6] = 0; u[7] = 0; /* no UDP checksum (RFC 768, IPv4 only) */
  uint8_t *q = u + 8;
  size_t o = 0;
  q[o++] = 0xc3;                                   /* long header, fixed bit, type Initial, 4-byte PN (§17.2.2) */
  q[o++] = 0; q[o++] = 0; q[o++] = 0; q[o++] = 1;  /* version 1 */
  q[o++] = 8; for (int i = 0; i < 8; i++) q[o++] = rnd(); /* DCID */
  q[o++] = 8; for (int i = 0; i < 8; i++) q[o++] = rnd(); /* SCID */
  q[o++] = 0;                                      /* token length 0 */
  uint16_t rest = QUIC_INITIAL_BYTES - o - 2;
  q[o++] = 0x40 | (rest >> 8); q[o++] = rest & 0xff; /* 2-byte varint length (§16) */
  while (o < QUIC_INITIAL_BYTES) q[o++] = rnd();
  return 20 + ul;
}

int main(int argc, char **argv) {
  if (argc != 8) {
    fprintf(stderr, "usage: raw-flood syn|initial DST DPORT SRC_NET/LEN RATE COUNT SECONDS\n");
    return 2;
  }
  int syn = strcmp(argv[1], "syn") == 0;
  if (!syn && strcmp(argv[1], "initial") != 0) { fprintf(stderr, "raw-flood: mode must be syn or initial\n"); return 2; }
  struct in_addr dst, net;
  if (inet_pton(AF_INET, argv[2], &dst) != 1) { fprintf(stderr, "raw-flood: bad DST\n"); return 2; }
  uint16_t dport = (uint16_t)atoi(argv[3]);
  char netbuf[64];
  snprintf(netbuf, sizeof netbuf, "%s", argv[4]);
  char *slash = strchr(netbuf, '/');
  if (!slash) { fprintf(stderr, "raw-flood: SRC_NET needs /LEN\n"); return 2; }
  *slash = 0;
  int len = atoi(slash + 1);
  if (inet_pton(AF_INET, netbuf, &net) != 1 || len < 8 || len > 30) { fprintf(stderr, "raw-flood: bad SRC_NET (/8../30)\n"); return 2; }
  double rate = atof(argv[5]);
  long count = atol(argv[6]);
  double seconds = atof(argv[7]);
  if (rate <= 0 || rate > 1e6 || count <= 0 || count > 100000000 || seconds <= 0 || seconds > 600) {
    fprintf(stderr, "raw-flood: RATE 0..1e6, COUNT 1..1e8, SECONDS 0..600\n");
    return 2;
  }
  uint32_t base = ntohl(net.s_addr) & (0xffffffffu << (32 - len));
  uint32_t hosts = (1u << (32 - len)) - 2; /* skip network and broadcast */
  rng ^= (uint64_t)getpid() << 32 ^ (uint64_t)time(NULL);

  int fd = socket(AF_INET, SOCK_RAW, IPPROTO_RAW);
  if (fd < 0) { perror("raw-flood: socket"); return 1; }
  int sndbuf = 4 << 20;
  setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);

  static uint8_t pkts[BATCH][MAX_PKT];
  struct iovec iov[BATCH];
  struct mmsghdr msgs[BATCH];
  struct sockaddr_in to = { .sin_family = AF_INET, .sin_addr = dst };
  memset(msgs, 0, sizeof msgs);
  long sent = 0, errors = 0;
  double t0 = now_s();
  while (sent + errors < count) {
    double el = now_s() - t0;
    if (el >= seconds) break;
    long due = (long)(el * rate) - (sent + errors);
    if (due <= 0) { usleep(200); continue; }
    int n = due < BATCH ? (int)due : BATCH;
    if (n > count - sent - errors) n = (int)(count - sent - errors);
    for (int i = 0; i < n; i++) {
      uint32_t src = htonl(base + 1 + rnd() % hosts);
      size_t l = syn ? build_syn(pkts[i], src, dst.s_addr, dport) : build_initial(pkts[i], src, dst.s_addr, dport);
      iov[i].iov_base = pkts[i];
      iov[i].iov_len = l;
      msgs[i].msg_hdr.msg_iov = &iov[i];
      msgs[i].msg_hdr.msg_iovlen = 1;
      msgs[i].msg_hdr.msg_name = &to;
      msgs[i].msg_hdr.msg_namelen = sizeof to;
    }
    int r = sendmmsg(fd, msgs, (unsigned)n, 0);
    if (r < 0) { errors += n; if (errno != ENOBUFS && errno != EAGAIN) { perror("raw-flood: sendmmsg"); break; } continue; }
    sent += r;
    if (r < n) errors += n - r;
  }
  double el = now_s() - t0;
  printf("{\"mode\":\"%s\",\"sent\":%ld,\"errors\":%ld,\"seconds\":%.3f,\"rate\":%.0f}\n", argv[1], sent, errors, el, el > 0 ? sent / el : 0.0);
  close(fd);
  return 0;
}
