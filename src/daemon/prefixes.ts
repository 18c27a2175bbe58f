/**
 * Conversions between the configuration's prefix type (src/config/cidr.ts)
 * and MASQUE's (src/masque/ip-address.ts), and the iproute2 text form.
 */
import type { IpPrefix as ConfigPrefix } from '../config/index.js';
import { formatPrefix, rangeToPrefixes, type IpPrefix } from '../masque/ip-address.js';
import type { IpAddressRange } from '../masque/connect-ip/route-advertisement.js';

/** A configuration prefix as MASQUE's {@link IpPrefix}. */
export function toMasquePrefix(p: ConfigPrefix): IpPrefix {
  return { version: p.family, address: p.addr, prefixLength: p.prefixLen };
}

/** A MASQUE prefix as the configuration's type (for policy checks). */
export function toConfigPrefix(p: IpPrefix): ConfigPrefix {
  return { text: formatPrefix(p), family: p.version, addr: p.address, prefixLen: p.prefixLength };
}

/** The prefixes covering advertised ranges (RFC 9484 §4.7.3 ranges are start–end, routes are prefixes). */
export function rangesToPrefixes(ranges: readonly IpAddressRange[]): IpPrefix[] {
  const out: IpPrefix[] = [];
  for (const r of ranges) out.push(...rangeToPrefixes(r.version, r.start, r.end));
  return out;
}

/** True when `outer` contains all of `inner`. */
export function prefixCovers(outer: IpPrefix, inner: IpPrefix): boolean {
  if (outer.version !== inner.version || outer.prefixLength > inner.prefixLength) return false;
  const full = outer.prefixLength >> 3;
  for (let i = 0; i < full; i++) if (outer.address[i] !== inner.address[i]) return false;
  const rem = outer.prefixLength & 7;
  if (rem === 0) return true;
  const mask = (0xff << (8 - rem)) & 0xff;
  return (outer.address[full]! & mask) === (inner.address[full]! & mask);
}
