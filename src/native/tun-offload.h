/*
 * mtun native addon: TUN counters and the IFF_VNET_HDR (offload) read/write
 * path shared between tun.c and tun-offload.c.
 */
#ifndef MTUN_TUN_OFFLOAD_H
#define MTUN_TUN_OFFLOAD_H

#include <stddef.h>
#include <stdint.h>

/* Indexes into the optional Float64Array of TUN counters (mirrored in src/tun/native-tun.ts). */
enum {
  TS_RX_PACKETS,
  TS_RX_BYTES,
  TS_TX_PACKETS,
  TS_TX_BYTES,
  TS_TX_INVALID, /* kernel refused the packet (EINVAL: not IPv4/IPv6, empty) — skipped */
  TS_TX_EAGAIN,  /* a write batch stopped early because the kernel queue was full */
  TS_RX_SUPER,   /* GSO super-packets read (offload path) */
  TS_RX_INVALID, /* offload reads dropped: malformed virtio header or segment too big */
  TS_TX_SUPER,   /* offload writes: TCP runs coalesced into one GSO super-packet (GRO) */
  TS_COUNT
};

/* An offload read's scratch: the largest IP packet and its virtio_net_hdr (10 bytes). */
#define MTUN_VNET_SCRATCH_BYTES (65535 + 10)

/*
 * Offload read: reads super-packets into scratch and splits them into
 * ptrs[i] + offset; state[0] = bytes of a partly split super-packet in
 * scratch (0: none), state[1] = next segment. Returns packets produced; *err
 * is set to an errno other than EAGAIN when reading failed.
 */
uint32_t mtun_vnet_read(int fd, uint8_t **ptrs, size_t *lens, uint32_t *sizes, uint32_t n, uint32_t offset,
                        uint8_t *scratch, size_t scratch_len, uint32_t *state, double *stats, int *err);

/*
 * Offload write: runs of consecutive TCP segments of one flow are coalesced
 * (GRO) into one GSO super-packet built in wscratch (NULL: no coalescing);
 * everything else goes out behind an all-zero virtio header. Returns packets
 * consumed; *err is set to an errno the batch stopped on (not EAGAIN).
 */
uint32_t mtun_vnet_write(int fd, uint8_t **ptrs, const uint32_t *sizes, uint32_t count, uint32_t offset,
                         uint8_t *wscratch, size_t wscratch_len, double *stats, int *err);

#endif
