/**
 * Internet checksums (RFC 1071) over byte ranges, with IPv4/IPv6 pseudo-headers,
 * and incremental updates (RFC 1624) for in-place header rewrites.
 */

/**
 * Adds the 16-bit big-endian words of buf[off, off+len) to `initial` and
 * returns the unfolded 32-bit-safe sum (call {@link foldChecksum} to finish).
 * An odd trailing byte is padded with zero (RFC 1071 §4.1). Does not allocate.
 */
export function sumWords(buf: Uint8Array, off: number, len: number, initial: number): number {
  let sum = initial;
  let i = off;
  const end = off + len - 1;
  // Fold every 32k words so the sum never leaves the small-integer range.
  let n = 0;
  for (; i < end; i += 2) {
    sum += (buf[i]! << 8) | buf[i + 1]!;
    if (++n === 32768) {
      sum = (sum & 0xffff) + (sum >>> 16);
      n = 0;
    }
  }
  if (i === end) sum += buf[i]! << 8;
  return sum;
}

/** Folds a sum from {@link sumWords} to 16 bits and returns its one's complement (the checksum field value). */
export function foldChecksum(sum: number): number {
  while (sum > 0xffff) sum = (sum & 0xffff) + Math.floor(sum / 65536);
  return ~sum & 0xffff;
}

/** Checksum of buf[off, off+len): the value to store in a zeroed checksum field, or 0 when verifying a correct one. */
export function internetChecksum(buf: Uint8Array, off: number, len: number): number {
  return foldChecksum(sumWords(buf, off, len, 0));
}

/**
 * Sum of the IPv4 or IPv6 pseudo-header (RFC 9293 §3.1, RFC 8200 §8.1) for an
 * upper-layer checksum. `srcOff`/`dstOff` point at the 4- or 16-byte addresses
 * inside `buf`; `ipVersion` picks the size. Returns an unfolded sum.
 */
export function pseudoHeaderSum(buf: Uint8Array, ipVersion: number, srcOff: number, dstOff: number, proto: number, l4Len: number): number {
  const alen = ipVersion === 4 ? 4 : 16;
  let sum = sumWords(buf, srcOff, alen, 0);
  sum = sumWords(buf, dstOff, alen, sum);
  // IPv6 carries a 32-bit length; IPv4 a 16-bit one. Both sum the same way.
  return sum + proto + (l4Len & 0xffff) + Math.floor(l4Len / 65536);
}

/**
 * Computes the transport checksum (TCP, UDP, ICMPv6 — with pseudo-header; ICMPv4
 * without) of the segment at buf[l4Off, l4Off+l4Len), assuming its checksum
 * field currently holds zero or the value being verified. Returns the field
 * value to store, or 0 when verifying a correct checksum.
 */
export function transportChecksum(
  buf: Uint8Array, ipVersion: number, srcOff: number, dstOff: number, proto: number, l4Off: number, l4Len: number,
): number {
  const start = proto === 1 ? 0 : pseudoHeaderSum(buf, ipVersion, srcOff, dstOff, proto, l4Len);
  return foldChecksum(sumWords(buf, l4Off, l4Len, start));
}

/**
 * RFC 1624 §3 eqn. 3: the new checksum after one 16-bit word of the covered
 * data changes from `oldWord` to `newWord`: HC' = ~(~HC + ~m + m').
 */
export function checksumUpdate16(oldChecksum: number, oldWord: number, newWord: number): number {
  let sum = (~oldChecksum & 0xffff) + (~oldWord & 0xffff) + (newWord & 0xffff);
  sum = (sum & 0xffff) + (sum >>> 16);
  sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}
