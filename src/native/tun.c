/*
 * mtun native addon: TUN device open (IFF_TUN | IFF_NO_PI, non-blocking,
 * close-on-exec) and batched read/write of raw IP packets at a headroom offset.
 */
#include "common.h"
#include "tun-offload.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <linux/virtio_net.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>


#ifndef TUN_F_USO4
#define TUN_F_USO4 0x20
#define TUN_F_USO6 0x40
#endif

/*
 * tunOpen(name, multiQueue, vnetHdr?) -> { fd, name, offloads }. name may be
 * "" (kernel picks tunN) or hold "%d". With vnetHdr every packet carries a
 * virtio_net_hdr and TSO4/TSO6 (+USO when the kernel has it) are enabled;
 * offloads is the TUNSETOFFLOAD mask in effect (0 without vnetHdr).
 */
static napi_value tun_open(napi_env env, napi_callback_info info) {
  MTUN_ARGS(3);
  if (argc < 2) return mtun_throw_type(env, "tun: tunOpen(name, multiQueue, vnetHdr?) needs 2 arguments");
  char name[IFNAMSIZ];
  size_t len = 0;
  bool mq = false, vnet = false;
  if (!mtun_arg_str(env, argv[0], "name", name, sizeof name, &len) ||
      !mtun_arg_bool(env, argv[1], "multiQueue", &mq) || (argc > 2 && !mtun_arg_bool(env, argv[2], "vnetHdr", &vnet))) {
    return NULL;
  }
  int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return mtun_throw_errno(env, "tun", "open /dev/net/tun", errno);
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  ifr.ifr_flags = IFF_TUN | IFF_NO_PI | (mq ? IFF_MULTI_QUEUE : 0) | (vnet ? IFF_VNET_HDR : 0);
  memcpy(ifr.ifr_name, name, len);
  if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
    int err = errno;
    close(fd);
    return mtun_throw_errno(env, "tun", "ioctl TUNSETIFF", err);
  }
  unsigned int offloads = 0;
  if (vnet) {
    int hdr = (int)sizeof(struct virtio_net_hdr);
    if (ioctl(fd, TUNSETVNETHDRSZ, &hdr) < 0) {
      int err = errno;
      close(fd);
      return mtun_throw_errno(env, "tun", "ioctl TUNSETVNETHDRSZ", err);
    }
    offloads = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN | TUN_F_USO4 | TUN_F_USO6;
    if (ioctl(fd, TUNSETOFFLOAD, offloads) < 0) {
      offloads = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN; /* kernel without USO */
      if (ioctl(fd, TUNSETOFFLOAD, offloads) < 0) {
        int err = errno;
        close(fd);
        return mtun_throw_errno(env, "tun", "ioctl TUNSETOFFLOAD", err);
      }
    }
  }
  napi_value obj, vfd, vname, voff;
  char got[IFNAMSIZ + 1];
  memcpy(got, ifr.ifr_name, IFNAMSIZ);
  got[IFNAMSIZ] = 0;
  if (napi_create_object(env, &obj) != napi_ok || napi_create_int32(env, fd, &vfd) != napi_ok ||
      napi_create_string_utf8(env, got, NAPI_AUTO_LENGTH, &vname) != napi_ok ||
      napi_set_named_property(env, obj, "fd", vfd) != napi_ok ||
      napi_set_named_property(env, obj, "name", vname) != napi_ok || napi_create_uint32(env, offloads, &voff) != napi_ok ||
      napi_set_named_property(env, obj, "offloads", voff) != napi_ok) {
    close(fd);
    napi_throw_error(env, NULL, "tun: cannot build result");
    return NULL;
  }
  return obj;
}

static bool get_fd(napi_env env, napi_value v, int *fd) {
  int32_t x;
  if (!mtun_arg_i32(env, v, "fd", &x)) return false;
  if (x < 0) {
    mtun_throw_type(env, "mtun: argument fd must be non-negative");
    return false;
  }
  *fd = x;
  return true;
}

/*
 * tunRead(fd, bufs, sizes, offset, max, minSpace, stats?, stride?) -> count.
 * bufs: an Array of Buffers, or with stride > 0 one Buffer of back-to-back
 * slots of `stride` bytes (mtun_arg_slots_begin).
 * Reads up to max packets until the queue is empty; packet i lands at
 * bufs[i][offset..] and sizes[i] is its length. Every buffer needs at least
 * minSpace bytes after offset (the MTU), so no packet is ever truncated.
 */
static napi_value tun_read(napi_env env, napi_callback_info info) {
  MTUN_ARGS(8);
  if (argc < 6) return mtun_throw_type(env, "tun: tunRead(fd, bufs, sizes, offset, max, minSpace) needs 6 arguments");
  int fd;
  uint32_t nbufs, offset, max, min_space;
  void *sz;
  size_t nsizes;
  double *stats;
  size_t nstats;
  struct mtun_slots slots;
  if (!get_fd(env, argv[0], &fd) || !mtun_arg_slots_begin(env, argv[1], argc > 7 ? argv[7] : NULL, "bufs", &slots) ||
      !mtun_arg_typed(env, argv[2], napi_uint32_array, "sizes", &sz, &nsizes) ||
      !mtun_arg_u32(env, argv[3], "offset", &offset) || !mtun_arg_u32(env, argv[4], "max", &max) ||
      !mtun_arg_u32(env, argv[5], "minSpace", &min_space) ||
      !mtun_arg_stats(env, argc > 6 ? argv[6] : NULL, &stats, &nstats)) {
    return NULL;
  }
  nbufs = slots.count;
  if (stats != NULL && nstats < TS_COUNT) return mtun_throw_type(env, "tun: stats array too short");
  uint32_t n = max;
  if (n > nbufs) n = nbufs;
  if (n > nsizes) n = (uint32_t)nsizes;
  if (n > MTUN_MAX_BATCH) n = MTUN_MAX_BATCH;
  struct mtun_scratch *s = mtun_scratch_of(env);
  if (s == NULL) return mtun_throw_type(env, "tun: addon not initialised");
  uint8_t **ptrs = s->ptrs;
  size_t *lens = s->lens;
  if (!mtun_arg_slots_fill(env, &slots, n, "bufs", ptrs, lens)) return NULL;
  for (uint32_t i = 0; i < n; i++) {
    if (lens[i] < (size_t)offset + min_space) {
      char msg[160];
      snprintf(msg, sizeof msg, "tun: bufs[%u] has %zu bytes; needs offset %u + MTU %u", i, lens[i], offset, min_space);
      return mtun_throw_type(env, msg);
    }
  }
  uint32_t *sizes = (uint32_t *)sz;
  uint32_t count = 0;
  while (count < n) {
    ssize_t r = read(fd, ptrs[count] + offset, lens[count] - offset);
    if (r < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      if (count > 0) break; /* report what we have; the error recurs on the next call */
      return mtun_throw_errno(env, "tun", "read", errno);
    }
    sizes[count] = (uint32_t)r;
    if (stats) {
      stats[TS_RX_PACKETS] += 1;
      stats[TS_RX_BYTES] += (double)r;
    }
    count++;
  }
  return mtun_u32(env, count);
}

/*
 * tunWrite(fd, bufs, sizes, offset, count, stats?) -> consumed.
 * Writes packet i from bufs[i][offset .. offset+sizes[i]). Packets the kernel
 * refuses as malformed (EINVAL) are skipped and counted in stats; a full
 * queue (EAGAIN) stops the batch and the rest stay the caller's.
 */
static napi_value tun_write(napi_env env, napi_callback_info info) {
  MTUN_ARGS(6);
  if (argc < 5) return mtun_throw_type(env, "tun: tunWrite(fd, bufs, sizes, offset, count) needs 5 arguments");
  int fd;
  uint32_t nbufs, offset, count;
  void *sz;
  size_t nsizes;
  double *stats;
  size_t nstats;
  if (!get_fd(env, argv[0], &fd) || !mtun_arg_array_len(env, argv[1], "bufs", &nbufs) ||
      !mtun_arg_typed(env, argv[2], napi_uint32_array, "sizes", &sz, &nsizes) ||
      !mtun_arg_u32(env, argv[3], "offset", &offset) || !mtun_arg_u32(env, argv[4], "count", &count) ||
      !mtun_arg_stats(env, argc > 5 ? argv[5] : NULL, &stats, &nstats)) {
    return NULL;
  }
  if (stats != NULL && nstats < TS_COUNT) return mtun_throw_type(env, "tun: stats array too short");
  if (count > nbufs || count > nsizes) return mtun_throw_type(env, "tun: count exceeds bufs or sizes length");
  if (count > MTUN_MAX_BATCH) count = MTUN_MAX_BATCH;
  struct mtun_scratch *s = mtun_scratch_of(env);
  if (s == NULL) return mtun_throw_type(env, "tun: addon not initialised");
  uint8_t **ptrs = s->ptrs;
  size_t *lens = s->lens;
  if (!mtun_arg_bufs(env, argv[1], count, "bufs", ptrs, lens)) return NULL;
  const uint32_t *sizes = (const uint32_t *)sz;
  for (uint32_t i = 0; i < count; i++) {
    if ((size_t)offset + sizes[i] > lens[i]) {
      char msg[160];
      snprintf(msg, sizeof msg, "tun: packet %u (offset %u + size %u) runs past its %zu-byte buffer", i, offset,
               sizes[i], lens[i]);
      return mtun_throw_type(env, msg);
    }
  }
  uint32_t done = 0;
  while (done < count) {
    ssize_t r = write(fd, ptrs[done] + offset, sizes[done]);
    if (r < 0) {
      int err = errno;
      if (err == EINTR) continue;
      if (err == EAGAIN || err == EWOULDBLOCK) {
        if (stats) stats[TS_TX_EAGAIN] += 1;
        break;
      }
      if (err == EINVAL || err == EMSGSIZE) {
        if (stats) stats[TS_TX_INVALID] += 1;
        done++;
        continue;
      }
      if (done > 0) break;
      return mtun_throw_errno(env, "tun", "write", err);
    }
    if (stats) {
      stats[TS_TX_PACKETS] += 1;
      stats[TS_TX_BYTES] += (double)r;
    }
    done++;
  }
  return mtun_u32(env, done);
}

/*
 * tunReadVnet(fd, bufs, sizes, offset, max, minSpace, scratch, state, stats?, stride?) -> count.
 * As tunRead on a vnetHdr device: super-packets are split into MTU-sized
 * packets; scratch (≥ 65,545 bytes) and state (Uint32Array(2)) belong to the
 * device and carry a partly split super-packet over to the next call.
 */
static napi_value tun_read_vnet(napi_env env, napi_callback_info info) {
  MTUN_ARGS(10);
  if (argc < 8) {
    return mtun_throw_type(env, "tun: tunReadVnet(fd, bufs, sizes, offset, max, minSpace, scratch, state) needs 8 arguments");
  }
  int fd;
  uint32_t nbufs, offset, max, min_space;
  void *sz, *sc, *st;
  size_t nsizes, nscratch, nstate, nstats;
  double *stats;
  struct mtun_slots slots;
  if (!get_fd(env, argv[0], &fd) || !mtun_arg_slots_begin(env, argv[1], argc > 9 ? argv[9] : NULL, "bufs", &slots) ||
      !mtun_arg_typed(env, argv[2], napi_uint32_array, "sizes", &sz, &nsizes) ||
      !mtun_arg_u32(env, argv[3], "offset", &offset) || !mtun_arg_u32(env, argv[4], "max", &max) ||
      !mtun_arg_u32(env, argv[5], "minSpace", &min_space) ||
      !mtun_arg_typed(env, argv[6], napi_uint8_array, "scratch", &sc, &nscratch) ||
      !mtun_arg_typed(env, argv[7], napi_uint32_array, "state", &st, &nstate) ||
      !mtun_arg_stats(env, argc > 8 ? argv[8] : NULL, &stats, &nstats)) {
    return NULL;
  }
  nbufs = slots.count;
  if (stats != NULL && nstats < TS_COUNT) return mtun_throw_type(env, "tun: stats array too short");
  if (nscratch < MTUN_VNET_SCRATCH_BYTES) return mtun_throw_type(env, "tun: scratch must hold 65,545 bytes");
  if (nstate < 2) return mtun_throw_type(env, "tun: state must be a Uint32Array(2)");
  uint32_t *state = (uint32_t *)st;
  if (state[0] > nscratch) return mtun_throw_type(env, "tun: state is corrupt");
  uint32_t n = max;
  if (n > nbufs) n = nbufs;
  if (n > nsizes) n = (uint32_t)nsizes;
  if (n > MTUN_MAX_BATCH) n = MTUN_MAX_BATCH;
  struct mtun_scratch *s = mtun_scratch_of(env);
  if (s == NULL) return mtun_throw_type(env, "tun: addon not initialised");
  if (!mtun_arg_slots_fill(env, &slots, n, "bufs", s->ptrs, s->lens)) return NULL;
  for (uint32_t i = 0; i < n; i++) {
    if (s->lens[i] < (size_t)offset + min_space) {
      char msg[160];
      snprintf(msg, sizeof msg, "tun: bufs[%u] has %zu bytes; needs offset %u + MTU %u", i, s->lens[i], offset, min_space);
      return mtun_throw_type(env, msg);
    }
  }
  int err = 0;
  uint32_t count = mtun_vnet_read(fd, s->ptrs, s->lens, (uint32_t *)sz, n, offset, (uint8_t *)sc, nscratch, state, stats, &err);
  if (count == 0 && err != 0) return mtun_throw_errno(env, "tun", "read", err);
  return mtun_u32(env, count);
}

/*
 * tunWriteVnet(fd, bufs, sizes, offset, count, stats?, wscratch?) -> consumed.
 * As tunWrite on a vnetHdr device; with wscratch (≥ 65,545 bytes) runs of
 * TCP segments of one flow are coalesced into GSO super-packets (GRO).
 */
static napi_value tun_write_vnet(napi_env env, napi_callback_info info) {
  MTUN_ARGS(7);
  if (argc < 5) return mtun_throw_type(env, "tun: tunWriteVnet(fd, bufs, sizes, offset, count) needs 5 arguments");
  int fd;
  uint32_t nbufs, offset, count;
  void *sz, *ws = NULL;
  size_t nsizes, nstats, nws = 0;
  double *stats;
  if (!get_fd(env, argv[0], &fd) || !mtun_arg_array_len(env, argv[1], "bufs", &nbufs) ||
      !mtun_arg_typed(env, argv[2], napi_uint32_array, "sizes", &sz, &nsizes) ||
      !mtun_arg_u32(env, argv[3], "offset", &offset) || !mtun_arg_u32(env, argv[4], "count", &count) ||
      !mtun_arg_stats(env, argc > 5 ? argv[5] : NULL, &stats, &nstats)) {
    return NULL;
  }
  if (argc > 6) {
    napi_valuetype t;
    if (napi_typeof(env, argv[6], &t) != napi_ok) return NULL;
    if (t != napi_undefined && t != napi_null) {
      if (!mtun_arg_typed(env, argv[6], napi_uint8_array, "wscratch", &ws, &nws)) return NULL;
      if (nws < MTUN_VNET_SCRATCH_BYTES) return mtun_throw_type(env, "tun: wscratch must hold 65,545 bytes");
    }
  }
  if (stats != NULL && nstats < TS_COUNT) return mtun_throw_type(env, "tun: stats array too short");
  if (count > nbufs || count > nsizes) return mtun_throw_type(env, "tun: count exceeds bufs or sizes length");
  if (count > MTUN_MAX_BATCH) count = MTUN_MAX_BATCH;
  struct mtun_scratch *s = mtun_scratch_of(env);
  if (s == NULL) return mtun_throw_type(env, "tun: addon not initialised");
  if (!mtun_arg_bufs(env, argv[1], count, "bufs", s->ptrs, s->lens)) return NULL;
  const uint32_t *sizes = (const uint32_t *)sz;
  for (uint32_t i = 0; i < count; i++) {
    if ((size_t)offset + sizes[i] > s->lens[i]) {
      char msg[160];
      snprintf(msg, sizeof msg, "tun: packet %u (offset %u + size %u) runs past its %zu-byte buffer", i, offset,
               sizes[i], s->lens[i]);
      return mtun_throw_type(env, msg);
    }
  }
  int err = 0;
  uint32_t done = mtun_vnet_write(fd, s->ptrs, sizes, count, offset, (uint8_t *)ws, nws, stats, &err);
  if (done == 0 && err != 0) return mtun_throw_errno(env, "tun", "write", err);
  return mtun_u32(env, done);
}

/* closeFd(fd): close(2); errors other than EINTR are thrown. */
static napi_value close_fd(napi_env env, napi_callback_info info) {
  MTUN_ARGS(1);
  if (argc < 1) return mtun_throw_type(env, "mtun: closeFd(fd) needs 1 argument");
  int fd;
  if (!get_fd(env, argv[0], &fd)) return NULL;
  if (close(fd) < 0 && errno != EINTR) return mtun_throw_errno(env, "mtun", "close", errno);
  return NULL;
}

bool mtun_tun_init(napi_env env, napi_value exports) {
  return mtun_export_fn(env, exports, "tunOpen", tun_open) && mtun_export_fn(env, exports, "tunRead", tun_read) &&
         mtun_export_fn(env, exports, "tunWrite", tun_write) && mtun_export_fn(env, exports, "closeFd", close_fd) &&
         mtun_export_fn(env, exports, "tunReadVnet", tun_read_vnet) &&
         mtun_export_fn(env, exports, "tunWriteVnet", tun_write_vnet);
}
