/**
 * The one IP address and prefix representation (bytes, network order) for every
 * layer: text parsing/formatting, host-bit checks, containment, range → prefixes.
 * Control-plane code (allocates); the per-packet helpers at the bottom do not.
 */

/** IP version as carried in CONNECT-IP capsules (RFC 9484 §4.7). */
export type IpVersion = 4 | 6;

/** An address or prefix: `address` is 4 or 16 bytes, network order. */
export interface IpPrefix {
  readonly version: IpVersion;
  readonly address: Uint8Array;
  readonly prefixLength: number;
}

/** Address length in bytes for a version. */
export function addressBytes(version: IpVersion): 4 | 16 {
  return version === 4 ? 4 : 16;
}

/** Address length in bits for a version. */
export function addressBits(version: IpVersion): 32 | 128 {
  return version === 4 ? 32 : 128;
}

/** Dotted quad, each part 0–255 in 1–3 digits without a leading zero. A character loop: flow records' addresses are parsed once per flow. */
function parseV4(text: string, out: Uint8Array, o: number): boolean {
  let part = 0;
  let val = 0;
  let digits = 0;
  for (let i = 0; i <= text.length; i++) {
    const c = i < text.length ? text.charCodeAt(i) : 0x2e; // a '.' ends the last part
    if (c === 0x2e) {
      if (digits === 0 || part > 3) return false;
      out[o + part++] = val;
      val = 0;
      digits = 0;
      continue;
    }
    if (c < 0x30 || c > 0x39) return false;
    if (digits === 1 && val === 0) return false; // leading zero
    if (++digits > 3) return false;
    val = val * 10 + (c - 0x30);
    if (val > 255) return false;
  }
  return part === 4;
}

function parseV6(text: string, out: Uint8Array): boolean {
  if (text.length < 2 || text.length > 45) return false;
  let head = text;
  let tail = '';
  const dbl = text.indexOf('::');
  if (dbl >= 0) {
    if (text.indexOf('::', dbl + 1) >= 0) return false;
    head = text.slice(0, dbl);
    tail = text.slice(dbl + 2);
  }
  const words: number[] = [];
  const tailWords: number[] = [];
  const parseGroups = (s: string, into: number[], allowV4: boolean): boolean => {
    if (s === '') return true;
    const groups = s.split(':');
    for (let i = 0; i < groups.length; i++) {
      const g = groups[i]!;
      if (allowV4 && i === groups.length - 1 && g.includes('.')) {
        const v4 = new Uint8Array(4);
        if (!parseV4(g, v4, 0)) return false;
        into.push((v4[0]! << 8) | v4[1]!, (v4[2]! << 8) | v4[3]!);
        continue;
      }
      if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return false;
      into.push(parseInt(g, 16));
    }
    return true;
  };
  if (dbl >= 0) {
    if (!parseGroups(head, words, false) || !parseGroups(tail, tailWords, true)) return false;
    if (words.length + tailWords.length > 7) return false;
  } else {
    if (!parseGroups(head, words, true) || words.length !== 8) return false;
  }
  out.fill(0);
  for (let i = 0; i < words.length; i++) {
    out[2 * i] = words[i]! >> 8;
    out[2 * i + 1] = words[i]! & 0xff;
  }
  const start = 8 - tailWords.length;
  for (let i = 0; i < tailWords.length; i++) {
    out[2 * (start + i)] = tailWords[i]! >> 8;
    out[2 * (start + i) + 1] = tailWords[i]! & 0xff;
  }
  return true;
}

/**
 * Parses an IPv4 dotted quad or an IPv6 address (RFC 4291 §2.2 text forms,
 * embedded IPv4 allowed). Zone identifiers (`%eth0`) are not addresses here
 * and return null (RFC 9484 §4.6, RFC 9298 §2 do not support them).
 */
export function parseIp(text: string): { version: IpVersion; address: Uint8Array } | null {
  if (text.includes(':')) {
    const b = new Uint8Array(16);
    return parseV6(text, b) ? { version: 6, address: b } : null;
  }
  const b = new Uint8Array(4);
  return parseV4(text, b, 0) ? { version: 4, address: b } : null;
}

/**
 * Parses `addr/len` where host bits may be set (an interface address such as
 * `10.0.0.1/24`); a bare address means a full-length length (/32 or /128).
 * Returns the parts, or which part is wrong — `'address'` (not an IP address;
 * zones are rejected) or `'length'` (not 0–32 / 0–128) — so each caller words its
 * own error. The returned `address` is fresh and owned by the caller.
 */
export function parseAddressWithLength(text: string): IpPrefix | 'address' | 'length' {
  const slash = text.indexOf('/');
  const ip = parseIp(slash < 0 ? text : text.slice(0, slash));
  if (!ip) return 'address';
  const bits = addressBits(ip.version);
  let len: number = bits;
  if (slash >= 0) {
    const l = text.slice(slash + 1);
    if (!/^[0-9]{1,3}$/.test(l) || Number(l) > bits) return 'length';
    len = Number(l);
  }
  return { version: ip.version, address: ip.address, prefixLength: len };
}

/**
 * Parses `addr/len` (a bare address means a full-length prefix: /32 or /128)
 * and returns the prefix, or a message for an operator naming what is wrong
 * (not an address, length out of range, host bits set — with the fix). Zone
 * identifiers are rejected. The returned `address` is fresh and owned by the caller.
 */
export function parsePrefixOrReason(text: string): IpPrefix | string {
  const p = parseAddressWithLength(text);
  if (p === 'address') return `expected an IP prefix like 10.0.0.0/8 or fd00::/64, got ${JSON.stringify(text)}`;
  if (p === 'length') return `expected a prefix length 0-${addressBits(parseIp(text.slice(0, text.indexOf('/')))!.version)} after "/", got ${JSON.stringify(text)}`;
  if (!hostBitsZero(p.address, p.prefixLength)) {
    const fixed = `${formatIp(maskAddress(p.address, p.prefixLength))}/${p.prefixLength}`;
    return `expected the host bits of ${JSON.stringify(text)} to be zero (did you mean ${fixed}?)`;
  }
  return p;
}

/** Parses `addr/len` (or a bare address, meaning a full-length prefix). Null when malformed or host bits are set. */
export function parsePrefix(text: string): IpPrefix | null {
  const p = parsePrefixOrReason(text);
  return typeof p === 'string' ? null : p;
}

/** Formats 4 or 16 address bytes as text (RFC 5952 canonical form for IPv6). */
export function formatIp(address: Uint8Array): string {
  if (address.length === 4) return `${address[0]}.${address[1]}.${address[2]}.${address[3]}`;
  const w: number[] = [];
  for (let i = 0; i < 8; i++) w.push((address[2 * i]! << 8) | address[2 * i + 1]!);
  // RFC 5952 §4.2: compress the longest run (≥ 2) of zero words, the first on a tie.
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (w[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && w[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (a: number, b: number) => w.slice(a, b).map((x) => x.toString(16)).join(':');
  if (bestStart < 0) return hex(0, 8);
  return `${hex(0, bestStart)}::${hex(bestStart + bestLen, 8)}`;
}

/** Formats a prefix as `addr/len`. */
export function formatPrefix(p: IpPrefix): string {
  return `${formatIp(p.address)}/${p.prefixLength}`;
}

/** True when every bit of `address` past `prefixLength` is zero (RFC 9484 §4.6, §4.7.1, §4.7.2). */
export function hostBitsZero(address: Uint8Array, prefixLength: number): boolean {
  const total = address.length * 8;
  for (let bit = prefixLength; bit < total; ) {
    const byte = bit >> 3;
    const inByte = bit & 7;
    if (inByte === 0) {
      if (address[byte] !== 0) return false;
      bit += 8;
    } else {
      if ((address[byte]! & (0xff >> inByte)) !== 0) return false;
      bit += 8 - inByte;
    }
  }
  return true;
}

/** Returns a copy of `address` with every bit past `prefixLength` cleared. */
export function maskAddress(address: Uint8Array, prefixLength: number): Uint8Array {
  const out = Uint8Array.from(address);
  for (let i = 0; i < out.length; i++) {
    const keep = Math.max(0, Math.min(8, prefixLength - i * 8));
    out[i] = out[i]! & ((0xff << (8 - keep)) & 0xff);
  }
  return out;
}

/** Compares len bytes of a at aOff with b at bOff as unsigned big-endian numbers: <0, 0, >0. Allocation-free. */
export function compareBytes(a: Uint8Array, aOff: number, b: Uint8Array, bOff: number, len: number): number {
  for (let i = 0; i < len; i++) {
    const d = a[aOff + i]! - b[bOff + i]!;
    if (d !== 0) return d;
  }
  return 0;
}

/** True when the address at buf[off] (prefix.address.length bytes) is inside `prefix`. Allocation-free. */
export function prefixContains(prefixAddr: Uint8Array, prefixLength: number, buf: Uint8Array, off: number): boolean {
  const full = prefixLength >> 3;
  for (let i = 0; i < full; i++) if (buf[off + i] !== prefixAddr[i]) return false;
  const rem = prefixLength & 7;
  if (rem === 0) return true;
  const mask = (0xff << (8 - rem)) & 0xff;
  return (buf[off + full]! & mask) === prefixAddr[full];
}

/** True when `address` (4 or 16 bytes) is of the prefix's version and inside it. Allocation-free. */
export function prefixHasAddress(p: IpPrefix, address: Uint8Array): boolean {
  return address.length === p.address.length && prefixContains(p.address, p.prefixLength, address, 0);
}

/** True when `outer` contains all of `inner` (same version, no longer, same leading bits). Allocation-free. */
export function prefixCovers(outer: IpPrefix, inner: IpPrefix): boolean {
  if (outer.version !== inner.version || outer.prefixLength > inner.prefixLength) return false;
  const full = outer.prefixLength >> 3;
  for (let i = 0; i < full; i++) if (outer.address[i] !== inner.address[i]) return false;
  const rem = outer.prefixLength & 7;
  if (rem === 0) return true;
  const mask = (0xff << (8 - rem)) & 0xff;
  return (outer.address[full]! & mask) === (inner.address[full]! & mask);
}

/** Last address of a prefix (all host bits set). */
export function prefixEnd(p: IpPrefix): Uint8Array {
  const out = Uint8Array.from(p.address);
  for (let bit = p.prefixLength; bit < out.length * 8; bit++) out[bit >> 3]! |= 0x80 >> (bit & 7);
  return out;
}

/** Address bytes → bigint. */
export function addrToBig(a: Uint8Array): bigint {
  let v = 0n;
  for (let i = 0; i < a.length; i++) v = (v << 8n) | BigInt(a[i]!);
  return v;
}

/** bigint → address bytes of the given length. */
export function bigToAddr(v: bigint, bytes: number): Uint8Array {
  const out = new Uint8Array(bytes);
  for (let i = bytes - 1; i >= 0; i--) {
    out[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return out;
}

/**
 * Smallest set of CIDR prefixes covering exactly [start, end] (inclusive),
 * as ROUTE_ADVERTISEMENT ranges (RFC 9484 §4.7.3) are installed in a prefix
 * routing table. Both addresses are of the same version; start ≤ end.
 * Stops after `maxPrefixes` prefixes (a range of IPv6 addresses can need up
 * to 254): callers facing peer input pass their remaining budget and treat
 * a full result as "over budget".
 */
export function rangeToPrefixes(version: IpVersion, start: Uint8Array, end: Uint8Array, maxPrefixes = Infinity): IpPrefix[] {
  const bits = addressBits(version);
  const bytes = addressBytes(version);
  let s = addrToBig(start);
  const e = addrToBig(end);
  const out: IpPrefix[] = [];
  while (s <= e && out.length < maxPrefixes) {
    // Largest aligned block starting at s that does not pass e.
    let size = 0;
    while (size < bits) {
      const next = size + 1;
      const blk = 1n << BigInt(next);
      if ((s & (blk - 1n)) !== 0n || s + blk - 1n > e) break;
      size = next;
    }
    out.push({ version, address: bigToAddr(s, bytes), prefixLength: bits - size });
    s += 1n << BigInt(size);
  }
  return out;
}

/**
 * The part of the range [start, end] inside prefix `p` (same version), as
 * [start, end] views of the inputs, or null when they do not overlap. Lets
 * a caller clip a peer's range to what it may hold before expanding it.
 */
export function clipRangeToPrefix(start: Uint8Array, end: Uint8Array, p: IpPrefix): [Uint8Array, Uint8Array] | null {
  const n = start.length;
  if (p.address.length !== n) return null;
  const pe = prefixEnd(p);
  if (compareBytes(end, 0, p.address, 0, n) < 0 || compareBytes(start, 0, pe, 0, n) > 0) return null;
  return [compareBytes(start, 0, p.address, 0, n) > 0 ? start : p.address, compareBytes(end, 0, pe, 0, n) < 0 ? end : pe];
}

/** True when the prefixes share an address (one covers the other). */
export function prefixesOverlap(a: IpPrefix, b: IpPrefix): boolean {
  return a.version === b.version && (prefixCovers(a, b) || prefixCovers(b, a));
}

/** An inclusive address range, as in ROUTE_ADVERTISEMENT (RFC 9484 §4.7.3). */
export interface IpRange {
  readonly version: IpVersion;
  readonly start: Uint8Array;
  readonly end: Uint8Array;
}

/** The prefixes covering each of `ranges` (RFC 9484 §4.7.3 ranges are start–end; routes are prefixes), in order. */
export function rangesToPrefixes(ranges: readonly IpRange[]): IpPrefix[] {
  const out: IpPrefix[] = [];
  for (const r of ranges) out.push(...rangeToPrefixes(r.version, r.start, r.end));
  return out;
}

/** `host:port`, with an IPv6 host in brackets (RFC 3986 §3.2.2), e.g. `[fd00::1]:4433`. */
export function formatHostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

// ---- allocation-free classification of addresses inside packets ----

/** IPv4 link-local 169.254.0.0/16 (RFC 3927). */
export function isLinkLocal4(buf: Uint8Array, off: number): boolean {
  return buf[off] === 169 && buf[off + 1] === 254;
}

/** IPv6 link-local unicast fe80::/10 or link-local-scope multicast ff02::/16 (RFC 4291 §2.5.6, §2.7). */
export function isLinkLocal6(buf: Uint8Array, off: number): boolean {
  const b0 = buf[off]!;
  const b1 = buf[off + 1]!;
  return (b0 === 0xfe && (b1 & 0xc0) === 0x80) || (b0 === 0xff && (b1 & 0x0f) === 0x02);
}

/**
 * RFC 9484 §7.2 link-local test of a packet: is the address at buf[srcOff]
 * or at buf[dstOff] (IPv4 or IPv6 per `version`) link-local? Allocation-free.
 */
export function hasLinkLocalAddress(buf: Uint8Array, version: 4 | 6, srcOff: number, dstOff: number): boolean {
  return version === 4 ? isLinkLocal4(buf, srcOff) || isLinkLocal4(buf, dstOff) : isLinkLocal6(buf, srcOff) || isLinkLocal6(buf, dstOff);
}

/** True when all `len` bytes at buf[off] are zero. */
export function isZero(buf: Uint8Array, off: number, len: number): boolean {
  for (let i = 0; i < len; i++) if (buf[off + i] !== 0) return false;
  return true;
}
