/* engine-proto: datagram contents. Word 0 is the sequence number; every
 * further 64-bit word is derived from it, so the receiver can check each
 * datagram's bytes and catch loss, duplication and corruption. */
#include "proto.h"

#include <string.h>

static inline uint64_t word(uint64_t seq, size_t k) { return seq ^ ((uint64_t)k * 0x9E3779B97F4A7C15ull); }

void payload_fill(uint8_t *p, size_t len, uint64_t seq) {
  size_t k = 0;
  for (; (k + 1) * 8 <= len; k++) {
    uint64_t v = k == 0 ? seq : word(seq, k);
    memcpy(p + k * 8, &v, 8);
  }
  for (size_t i = k * 8; i < len; i++) p[i] = (uint8_t)(seq + i);
}

uint64_t payload_check(const uint8_t *p, size_t len) {
  if (len < 8) return UINT64_MAX;
  uint64_t seq, v;
  memcpy(&seq, p, 8);
  size_t k = 1;
  for (; (k + 1) * 8 <= len; k++) {
    memcpy(&v, p + k * 8, 8);
    if (v != word(seq, k)) return UINT64_MAX;
  }
  for (size_t i = k * 8; i < len; i++)
    if (p[i] != (uint8_t)(seq + i)) return UINT64_MAX;
  return seq;
}
