/**
 * IP address and prefix (CIDR) parsing for configuration values: text to
 * fixed-size bytes, with the checks an operator's typo deserves.
 */
import { isIPv4, isIPv6 } from 'node:net';

/** An IP prefix as parsed from configuration. `addr` is 4 bytes (IPv4) or 16 bytes (IPv6), host bits zero. */
export interface IpPrefix {
  /** Canonical text, e.g. `10.1.0.0/16` or `fd00::/64`. */
  readonly text: string;
  readonly family: 4 | 6;
  /** Network address bytes; owned by this object, never mutated. */
  readonly addr: Uint8Array;
  /** Prefix length in bits: 0–32 (IPv4) or 0–128 (IPv6). */
  readonly prefixLen: number;
}

/** Parses an IPv4 or IPv6 address to 4 or 16 bytes; returns null when `text` is not an address. */
export function parseIpAddress(text: string): Uint8Array | null {
  if (isIPv4(text)) {
    const out = new Uint8Array(4);
    const parts = text.split('.');
    for (let i = 0; i < 4; i++) out[i] = Number(parts[i]);
    return out;
  }
  if (!isIPv6(text)) return null;
  const out = new Uint8Array(16);
  let s = text;
  const zone = s.indexOf('%');
  if (zone >= 0) s = s.slice(0, zone);
  // Embedded IPv4 in the last 32 bits (RFC 4291 §2.2, form 3).
  let tail: Uint8Array | null = null;
  const lastColon = s.lastIndexOf(':');
  if (s.indexOf('.', lastColon) >= 0) {
    tail = parseIpAddress(s.slice(lastColon + 1));
    if (tail === null) return null;
    s = s.slice(0, lastColon + 1) + '0:0';
  }
  const dbl = s.indexOf('::');
  const head = dbl >= 0 ? s.slice(0, dbl) : s;
  const rest = dbl >= 0 ? s.slice(dbl + 2) : '';
  const hg = head === '' ? [] : head.split(':');
  const rg = rest === '' ? [] : rest.split(':');
  const groups = new Array<number>(8).fill(0);
  for (let i = 0; i < hg.length; i++) groups[i] = parseInt(hg[i]!, 16);
  for (let i = 0; i < rg.length; i++) groups[8 - rg.length + i] = parseInt(rg[i]!, 16);
  for (let i = 0; i < 8; i++) {
    out[i * 2] = groups[i]! >> 8;
    out[i * 2 + 1] = groups[i]! & 0xff;
  }
  if (tail !== null) out.set(tail, 12);
  return out;
}

/** Formats 4 or 16 address bytes as text (IPv6 per RFC 5952: lower case, longest zero run compressed). */
export function formatIpAddress(addr: Uint8Array): string {
  if (addr.length === 4) return `${addr[0]}.${addr[1]}.${addr[2]}.${addr[3]}`;
  const g: number[] = [];
  for (let i = 0; i < 8; i++) g.push((addr[i * 2]! << 8) | addr[i * 2 + 1]!);
  // RFC 5952 §4.2.3: compress the longest run of two or more zero groups (first on ties).
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (g[i] !== 0) { i++; continue; }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) { bestStart = i; bestLen = j - i; }
    i = j;
  }
  const hex = (xs: number[]): string => xs.map((x) => x.toString(16)).join(':');
  if (bestStart < 0) return hex(g);
  return `${hex(g.slice(0, bestStart))}::${hex(g.slice(bestStart + bestLen))}`;
}

/**
 * Parses `addr/len` (a bare address means a host prefix: /32 or /128).
 * Returns the prefix, or an error string naming what is wrong (host bits set,
 * length out of range, not an address).
 */
export function parseIpPrefix(text: string): IpPrefix | string {
  const slash = text.indexOf('/');
  const addrText = slash >= 0 ? text.slice(0, slash) : text;
  const addr = parseIpAddress(addrText);
  if (addr === null || addrText.includes('%')) return `expected an IP prefix like 10.0.0.0/8 or fd00::/64, got ${JSON.stringify(text)}`;
  const bits = addr.length * 8;
  let prefixLen = bits;
  if (slash >= 0) {
    const lenText = text.slice(slash + 1);
    if (!/^\d{1,3}$/.test(lenText) || Number(lenText) > bits) {
      return `expected a prefix length 0-${bits} after "/", got ${JSON.stringify(text)}`;
    }
    prefixLen = Number(lenText);
  }
  const masked = maskAddress(addr, prefixLen);
  for (let i = 0; i < addr.length; i++) {
    if (masked[i] !== addr[i]) {
      const fixed = `${formatIpAddress(masked)}/${prefixLen}`;
      return `expected the host bits of ${JSON.stringify(text)} to be zero (did you mean ${fixed}?)`;
    }
  }
  return { text: `${formatIpAddress(addr)}/${prefixLen}`, family: addr.length === 4 ? 4 : 6, addr, prefixLen };
}

/** Returns a copy of `addr` with all bits after `prefixLen` cleared. */
export function maskAddress(addr: Uint8Array, prefixLen: number): Uint8Array {
  const out = new Uint8Array(addr);
  for (let i = 0; i < out.length; i++) {
    const keep = Math.max(0, Math.min(8, prefixLen - i * 8));
    out[i] = out[i]! & ((0xff << (8 - keep)) & 0xff);
  }
  return out;
}

/** True when `addr` (same family as `prefix`) lies inside `prefix`. */
export function prefixContains(prefix: IpPrefix, addr: Uint8Array): boolean {
  if (addr.length !== prefix.addr.length) return false;
  const full = prefix.prefixLen >> 3;
  for (let i = 0; i < full; i++) if (addr[i] !== prefix.addr[i]) return false;
  const rem = prefix.prefixLen & 7;
  if (rem === 0) return true;
  const mask = (0xff << (8 - rem)) & 0xff;
  return (addr[full]! & mask) === prefix.addr[full];
}
