/**
 * ROUTE_ADVERTISEMENT capsule value codec (RFC 9484 §4.7.3): zero or more
 * IP Address Ranges, ordered and non-overlapping; each capsule supersedes the last.
 */
import { addrToBig, compareBytes, type IpRange } from '../../packet/ip-address.js';
import type { CapsuleParse } from './capsule-types.js';

/** One IP Address Range (inclusive). `ipProtocol` 0 means all protocols. */
export interface IpAddressRange extends IpRange {
  readonly ipProtocol: number;
}

/** Decoded ROUTE_ADVERTISEMENT. */
export interface RouteAdvertisement {
  readonly ranges: readonly IpAddressRange[];
}

/**
 * Checks the §4.7.3 ordering rules between consecutive ranges A, B: version
 * A ≤ B; same version → protocol A ≤ B; same both → end A < start B; and (the
 * optional check we do perform) no overlap between a protocol-0 range and a
 * non-zero one of the same version. Returns an error message or null.
 */
export function checkRangeOrder(ranges: readonly IpAddressRange[]): string | null {
  for (let i = 0; i < ranges.length; i++) {
    const r = ranges[i]!;
    const alen = r.version === 4 ? 4 : 16;
    // §4.7.3: Start IP Address MUST be ≤ End IP Address.
    if (compareBytes(r.start, 0, r.end, 0, alen) > 0) return `range ${i}: start after end`;
    if (i === 0) continue;
    const a = ranges[i - 1]!;
    if (a.version > r.version) return `range ${i}: IP Version not ordered`;
    if (a.version < r.version) continue;
    if (a.ipProtocol > r.ipProtocol) return `range ${i}: IP Protocol not ordered`;
    if (a.ipProtocol === r.ipProtocol && compareBytes(a.end, 0, r.start, 0, alen) >= 0) {
      return `range ${i}: overlaps or is not after range ${i - 1}`;
    }
  }
  // §4.7.3: protocol-0 ranges must not overlap ranges with a specific protocol.
  for (let i = 0; i < ranges.length; i++) {
    const z = ranges[i]!;
    if (z.ipProtocol !== 0) continue;
    const alen = z.version === 4 ? 4 : 16;
    for (let j = 0; j < ranges.length; j++) {
      const o = ranges[j]!;
      if (o.ipProtocol === 0 || o.version !== z.version) continue;
      if (compareBytes(z.start, 0, o.end, 0, alen) <= 0 && compareBytes(o.start, 0, z.end, 0, alen) <= 0) {
        return `range ${j}: protocol ${o.ipProtocol} overlaps all-protocol range ${i}`;
      }
    }
  }
  return null;
}

/**
 * Parses a ROUTE_ADVERTISEMENT capsule value in buf[off, off+len). Never
 * throws. Malformed (→ abort the stream, §4.7.3): bad IP Version, truncation,
 * start > end, unordered or overlapping ranges.
 */
export function parseRouteAdvertisement(buf: Uint8Array, off: number, len: number): CapsuleParse<RouteAdvertisement> {
  const end = off + len;
  const ranges: IpAddressRange[] = [];
  while (off < end) {
    const version = buf[off++]!;
    if (version !== 4 && version !== 6) {
      return { ok: false, error: `masque: ROUTE_ADVERTISEMENT: IP Version ${version} is not 4 or 6` };
    }
    const alen = version === 4 ? 4 : 16;
    if (off + 2 * alen + 1 > end) return { ok: false, error: `masque: ROUTE_ADVERTISEMENT: truncated IPv${version} range` };
    const start = buf.slice(off, off + alen);
    const stop = buf.slice(off + alen, off + 2 * alen);
    off += 2 * alen;
    ranges.push({ version, start, end: stop, ipProtocol: buf[off++]! });
  }
  const err = checkRangeOrder(ranges);
  if (err) return { ok: false, error: `masque: ROUTE_ADVERTISEMENT: ${err}` };
  return { ok: true, value: { ranges } };
}

/** Encoded length of the capsule value (without type and length). */
export function routeAdvertisementLength(x: RouteAdvertisement): number {
  let n = 0;
  for (const r of x.ranges) n += 2 + 2 * (r.version === 4 ? 4 : 16);
  return n;
}

/** Writes the capsule value at out[off]; returns the offset past it. The caller ensures room and §4.7.3 order ({@link sortRanges}). */
export function encodeRouteAdvertisement(x: RouteAdvertisement, out: Uint8Array, off: number): number {
  for (const r of x.ranges) {
    out[off++] = r.version;
    out.set(r.start, off);
    off += r.start.length;
    out.set(r.end, off);
    off += r.end.length;
    out[off++] = r.ipProtocol;
  }
  return off;
}

/** Returns the ranges sorted into §4.7.3 order (version, protocol, start). Does not merge overlaps; check with {@link checkRangeOrder}. */
export function sortRanges(ranges: readonly IpAddressRange[]): IpAddressRange[] {
  return [...ranges].sort(
    (a, b) =>
      a.version - b.version ||
      a.ipProtocol - b.ipProtocol ||
      compareBytes(a.start, 0, b.start, 0, a.version === 4 ? 4 : 16),
  );
}

/**
 * Normalises a route list into a valid §4.7.3 ROUTE_ADVERTISEMENT: sorted,
 * with overlapping or adjacent ranges of the same version and protocol
 * merged, and protocol-specific ranges that overlap an all-protocol (0)
 * range removed (that range already allows their traffic — only partially
 * covered specifics lose the uncovered part). Control plane; allocates.
 */
export function normalizeRanges(ranges: readonly IpAddressRange[]): IpAddressRange[] {
  const sorted = sortRanges(ranges);
  const merged: IpAddressRange[] = [];
  for (const r of sorted) {
    const last = merged[merged.length - 1];
    if (last && last.version === r.version && last.ipProtocol === r.ipProtocol && addrToBig(r.start) <= addrToBig(last.end) + 1n) {
      if (compareBytes(r.end, 0, last.end, 0, r.end.length) > 0) {
        merged[merged.length - 1] = { ...last, end: r.end };
      }
      continue;
    }
    merged.push(r);
  }
  const out = merged.filter(
    (o) =>
      o.ipProtocol === 0 ||
      !merged.some(
        (z) =>
          z.ipProtocol === 0 &&
          z.version === o.version &&
          compareBytes(z.start, 0, o.end, 0, o.end.length) <= 0 &&
          compareBytes(o.start, 0, z.end, 0, o.end.length) <= 0,
      ),
  );
  return out;
}
