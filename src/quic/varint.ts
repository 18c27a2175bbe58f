/**
 * QUIC variable-length integers (RFC 9000 §16), shared by QUIC, HTTP/3,
 * capsules and MASQUE. Allocation-free: values are plain numbers.
 */

/** Largest value a varint can carry (RFC 9000 §16): 2^62 − 1 (as a double this rounds to 2^62, so compare with `<`). */
export const VARINT_MAX = 2 ** 62 - 1;

/** Returned by {@link parseVarint} when the buffer ends inside the integer. */
export const VARINT_NEED_MORE = -1;

const TWO_32 = 2 ** 32;
const TWO_62 = 2 ** 62;

/**
 * Encoded length (1, 2, 4 or 8) of the varint starting at buf[off], read
 * from the two-bit prefix (RFC 9000 §16, Table 4). `off` must be in range.
 */
export function varintLengthAt(buf: Uint8Array, off: number): number {
  return 1 << (buf[off]! >> 6);
}

/**
 * Parse the varint at buf[off] without allocating. Non-minimal encodings are
 * legal (RFC 9000 §16) and parsed. Returns the value, or
 * {@link VARINT_NEED_MORE} when the integer does not fit before `end`
 * (default buf.length). Its length is {@link varintLengthAt}(buf, off).
 * Values above 2^53 − 1 are rounded to the nearest double; callers that must
 * compare such values exactly use {@link parseVarintBig}.
 */
export function parseVarint(buf: Uint8Array, off: number, end: number = buf.length): number {
  if (off >= end) return VARINT_NEED_MORE;
  const b0 = buf[off]!;
  const prefix = b0 >> 6;
  if (prefix === 0) return b0;
  if (prefix === 1) {
    if (off + 2 > end) return VARINT_NEED_MORE;
    return ((b0 & 0x3f) << 8) | buf[off + 1]!;
  }
  if (prefix === 2) {
    if (off + 4 > end) return VARINT_NEED_MORE;
    return (((b0 & 0x3f) << 24) | (buf[off + 1]! << 16) | (buf[off + 2]! << 8) | buf[off + 3]!) >>> 0;
  }
  if (off + 8 > end) return VARINT_NEED_MORE;
  const hi = (((b0 & 0x3f) << 24) | (buf[off + 1]! << 16) | (buf[off + 2]! << 8) | buf[off + 3]!) >>> 0;
  const lo = ((buf[off + 4]! << 24) | (buf[off + 5]! << 16) | (buf[off + 6]! << 8) | buf[off + 7]!) >>> 0;
  return hi * TWO_32 + lo;
}

/** Exact (bigint) parse for values beyond 2^53; null when truncated. Not for hot paths (allocates). */
export function parseVarintBig(buf: Uint8Array, off: number, end: number = buf.length): bigint | null {
  if (off >= end) return null;
  const len = varintLengthAt(buf, off);
  if (off + len > end) return null;
  let v = BigInt(buf[off]! & 0x3f);
  for (let i = 1; i < len; i++) v = (v << 8n) | BigInt(buf[off + i]!);
  return v;
}

/**
 * Minimal encoded length of v (RFC 9000 §16). Throws RangeError for values
 * that are negative, not integers, or ≥ 2^62 (a programming error, never
 * peer input).
 */
export function varintLength(v: number): 1 | 2 | 4 | 8 {
  if (v < 0x40 && v >= 0) {
    if (!Number.isInteger(v)) throw new RangeError(`quic: varint ${v} is not an integer`);
    return 1;
  }
  if (v < 0x4000 && v >= 0) {
    if (!Number.isInteger(v)) throw new RangeError(`quic: varint ${v} is not an integer`);
    return 2;
  }
  if (v < 0x40000000 && v >= 0) {
    if (!Number.isInteger(v)) throw new RangeError(`quic: varint ${v} is not an integer`);
    return 4;
  }
  if (v < TWO_62 && v >= 0 && Number.isInteger(v)) return 8;
  throw new RangeError(`quic: varint ${v} out of range [0, 2^62)`);
}

/**
 * Write v at out[off] in its minimal form; returns the offset just past it.
 * The caller guarantees room for {@link varintLength}(v) bytes (a short
 * Uint8Array silently drops writes past its end, so check first).
 */
export function encodeVarint(v: number, out: Uint8Array, off: number): number {
  return encodeVarintLen(v, varintLength(v), out, off);
}

/**
 * Write v at out[off] using exactly `len` bytes (1, 2, 4 or 8), which may be
 * longer than minimal — useful to reserve a length field before its value is
 * known. Returns the offset just past it. Throws RangeError if v does not fit.
 */
export function encodeVarintLen(v: number, len: number, out: Uint8Array, off: number): number {
  if (varintLength(v) > len) throw new RangeError(`quic: varint ${v} does not fit ${len} bytes`);
  switch (len) {
    case 1:
      out[off] = v;
      return off + 1;
    case 2:
      out[off] = 0x40 | (v >> 8);
      out[off + 1] = v & 0xff;
      return off + 2;
    case 4:
      out[off] = 0x80 | (v >>> 24);
      out[off + 1] = (v >>> 16) & 0xff;
      out[off + 2] = (v >>> 8) & 0xff;
      out[off + 3] = v & 0xff;
      return off + 4;
    case 8: {
      const hi = Math.floor(v / TWO_32);
      const lo = v - hi * TWO_32;
      out[off] = 0xc0 | (hi >>> 24);
      out[off + 1] = (hi >>> 16) & 0xff;
      out[off + 2] = (hi >>> 8) & 0xff;
      out[off + 3] = hi & 0xff;
      out[off + 4] = lo >>> 24;
      out[off + 5] = (lo >>> 16) & 0xff;
      out[off + 6] = (lo >>> 8) & 0xff;
      out[off + 7] = lo & 0xff;
      return off + 8;
    }
    default:
      throw new RangeError(`quic: varint length ${len} is not 1, 2, 4 or 8`);
  }
}
