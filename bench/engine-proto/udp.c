/* engine-proto: the UDP socket — GSO sends (UDP_SEGMENT), recvmmsg with GRO
 * (UDP_GRO) and the kernel's receive-queue drop counter (SO_RXQ_OVFL). */
#define _GNU_SOURCE
#include "proto.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/udp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#ifndef UDP_GRO
#define UDP_GRO 104
#endif

int udp_open(int port, int gro, char *err, size_t errlen) {
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    snprintf(err, errlen, "udp: socket: %s", strerror(errno));
    return -1;
  }
  int sz = 8 << 20, one = 1;
  /* FORCE variants need CAP_NET_ADMIN; fall back to the capped ones. */
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &sz, sizeof sz) != 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz);
  if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &sz, sizeof sz) != 0)
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
  setsockopt(fd, SOL_SOCKET, SO_RXQ_OVFL, &one, sizeof one);
  if (gro && setsockopt(fd, SOL_UDP, UDP_GRO, &one, sizeof one) != 0) {
    snprintf(err, errlen, "udp: UDP_GRO: %s", strerror(errno));
    close(fd);
    return -1;
  }
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0) {
    snprintf(err, errlen, "udp: bind 127.0.0.1:%d: %s", port, strerror(errno));
    close(fd);
    return -1;
  }
  return fd;
}

int udp_local(int fd, struct sockaddr_storage *ss, socklen_t *len) {
  *len = sizeof *ss;
  return getsockname(fd, (struct sockaddr *)ss, len);
}

int udp_wait(int fd, short events, ngtcp2_tstamp timeout_ns) {
  struct pollfd p = {.fd = fd, .events = events};
  struct timespec t = {.tv_sec = (time_t)(timeout_ns / 1000000000ull),
                       .tv_nsec = (long)(timeout_ns % 1000000000ull)};
  return ppoll(&p, 1, &t, NULL);
}

int udp_send(int fd, const struct sockaddr *to, socklen_t tolen, const uint8_t *buf, size_t len,
             size_t seg, struct side_stats *st) {
  struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
  union {
    char b[CMSG_SPACE(sizeof(uint16_t))];
    struct cmsghdr align;
  } ctrl;
  struct msghdr m = {.msg_name = (void *)to, .msg_namelen = tolen, .msg_iov = &iov, .msg_iovlen = 1};
  if (seg > 0 && seg < len) {
    memset(&ctrl, 0, sizeof ctrl);
    m.msg_control = ctrl.b;
    m.msg_controllen = sizeof ctrl.b;
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_UDP;
    c->cmsg_type = UDP_SEGMENT;
    c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
    uint16_t s = (uint16_t)seg;
    memcpy(CMSG_DATA(c), &s, sizeof s);
  }
  for (int waits = 0;;) {
    ssize_t r = sendmsg(fd, &m, 0);
    if (r >= 0) break;
    if (errno == EINTR) continue;
    if ((errno == EAGAIN || errno == EWOULDBLOCK) && waits++ < 100) {
      /* The packets are already committed in ngtcp2's sent log: wait (at most
       * 100 x 10 ms), do not drop. */
      st->udp_eagain++;
      udp_wait(fd, POLLOUT, 10000000ull);
      continue;
    }
    return -errno;
  }
  st->udp_sends++;
  st->udp_send_segs += seg > 0 && seg < len ? (len + seg - 1) / seg : 1;
  return 0;
}

int udp_rx_init(struct udp_rx *rx) {
  rx->bufs = malloc((size_t)PROTO_RX_MSGS * PROTO_RX_BUF);
  if (!rx->bufs) return -1;
  for (int i = 0; i < PROTO_RX_MSGS; i++) {
    rx->iov[i].iov_base = rx->bufs + (size_t)i * PROTO_RX_BUF;
    rx->iov[i].iov_len = PROTO_RX_BUF;
  }
  return 0;
}

void udp_rx_free(struct udp_rx *rx) { free(rx->bufs); }

int udp_recv(int fd, struct udp_rx *rx, struct side_stats *st, int measuring) {
  ngtcp2_tstamp t = measuring ? now_ns() : 0;
  for (int i = 0; i < PROTO_RX_MSGS; i++) {
    struct msghdr *h = &rx->msgs[i].msg_hdr;
    h->msg_name = &rx->names[i];
    h->msg_namelen = sizeof rx->names[i];
    h->msg_iov = &rx->iov[i];
    h->msg_iovlen = 1;
    h->msg_control = rx->ctrl[i];
    h->msg_controllen = sizeof rx->ctrl[i];
    h->msg_flags = 0;
  }
  int n = recvmmsg(fd, rx->msgs, PROTO_RX_MSGS, MSG_DONTWAIT, NULL);
  if (measuring) st->ns_recv_sys += now_ns() - t;
  if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : -1;
  st->udp_recvs++;
  for (int i = 0; i < n; i++) {
    struct msghdr *h = &rx->msgs[i].msg_hdr;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(h); c; c = CMSG_NXTHDR(h, c))
      if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SO_RXQ_OVFL) {
        uint32_t d;
        memcpy(&d, CMSG_DATA(c), sizeof d);
        st->kernel_drops = d; /* cumulative per socket */
      }
  }
  return n;
}

size_t udp_rx_seg(struct udp_rx *rx, int i) {
  struct msghdr *h = &rx->msgs[i].msg_hdr;
  for (struct cmsghdr *c = CMSG_FIRSTHDR(h); c; c = CMSG_NXTHDR(h, c))
    if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO) {
      int s;
      memcpy(&s, CMSG_DATA(c), sizeof s);
      if (s > 0) return (size_t)s;
    }
  return rx->msgs[i].msg_len;
}
