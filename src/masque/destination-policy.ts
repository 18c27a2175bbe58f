/**
 * The destination rules both MASQUE proxies apply (RFC 9298 §7 for
 * CONNECT-UDP, RFC 9484 §4.6/§11 for CONNECT-IP): no unspecified, loopback,
 * link-local, multicast or broadcast destination, no cloud metadata
 * endpoint and none of the gateway's own addresses unless the operator
 * allows that class; plus where the host's
 * own addresses and connected subnets are read from.
 */
import os from 'node:os';
import { maskAddress, parseIp, prefixEnd, type IpPrefix } from '../packet/ip-address.js';

/** Which normally refused destination classes the operator allows. All default false. */
export interface DestinationAllowance {
  readonly loopback?: boolean;
  readonly linkLocal?: boolean;
  readonly multicast?: boolean;
  readonly broadcast?: boolean;
  /** The gateway's own addresses. */
  readonly ownAddresses?: boolean;
  /**
   * Cloud instance-metadata endpoints (169.254.169.254, 169.254.170.2,
   * 169.254.170.23, 100.100.100.200, fd00:ec2::254, fd00:ec2::23,
   * fd20:ce::254): they hand out the gateway host's credentials. Refused
   * even when `linkLocal` is allowed.
   */
  readonly metadata?: boolean;
  /** Unspecified addresses (0.0.0.0/8, ::) are never allowed. */
}

const NONE: DestinationAllowance = {};

function allZero(buf: Uint8Array, off: number, len: number): boolean {
  for (let i = 0; i < len; i++) if (buf[off + i] !== 0) return false;
  return true;
}

function isLoopback6(buf: Uint8Array, off: number): boolean {
  return allZero(buf, off, 15) && buf[off + 15] === 1;
}

/** 169.254.169.254 (most clouds), 169.254.170.2 and .23 (AWS ECS task credentials, EKS Pod Identity) or 100.100.100.200 (Alibaba Cloud). */
function isMetadata4(a: number, b: number, c: number, d: number): boolean {
  return (a === 169 && b === 254 && ((c === 169 && d === 254) || (c === 170 && (d === 2 || d === 23)))) || (a === 100 && b === 100 && c === 100 && d === 200);
}

/**
 * fd00:ec2::254 and fd00:ec2::23 (AWS instance metadata, EKS Pod Identity) or
 * fd20:ce::254 (Google Cloud) (the caller checked byte 0 is 0xfd).
 */
function isMetadata6(buf: Uint8Array, o: number): boolean {
  if (!allZero(buf, o + 4, 10)) return false;
  const lo = buf[o + 14]! * 256 + buf[o + 15]!;
  if (buf[o + 1] === 0x00 && buf[o + 2] === 0x0e && buf[o + 3] === 0xc2) return lo === 0x254 || lo === 0x23;
  return buf[o + 1] === 0x20 && buf[o + 2] === 0x00 && buf[o + 3] === 0xce && lo === 0x254;
}

/** 64:ff9b::/96, the NAT64 well-known prefix (RFC 6052): the IPv4 address is its last 4 bytes. */
function isNat64(buf: Uint8Array, o: number): boolean {
  return buf[o] === 0x00 && buf[o + 1] === 0x64 && buf[o + 2] === 0xff && buf[o + 3] === 0x9b && allZero(buf, o + 4, 8);
}

/**
 * Why the destination address at buf[off] (4 bytes for `version` 4, 16 for
 * 6) may not be proxied to, or null when it may. IPv4-mapped IPv6 addresses
 * and those in NAT64's 64:ff9b::/96 are judged by their IPv4 part. `own` lists the gateway's own addresses
 * (bytes, any family). Returns constant strings; allocation-free, so the
 * CONNECT-IP gateway calls it per packet.
 */
export function prohibitedDestination(
  version: 4 | 6,
  buf: Uint8Array,
  off: number,
  allow: DestinationAllowance = NONE,
  own: readonly Uint8Array[] = [],
): string | null {
  let v = version;
  let o = off;
  // IPv4-mapped, and NAT64's well-known prefix (a translator on the path would reach the IPv4 address inside).
  if (v === 6 && ((allZero(buf, o, 10) && buf[o + 10] === 0xff && buf[o + 11] === 0xff) || isNat64(buf, o))) {
    o += 12;
    v = 4;
  }
  const alen = v === 4 ? 4 : 16;
  let loopback: boolean;
  if (v === 4) {
    const a0 = buf[o]!;
    if (a0 === 0) return 'unspecified address (0.0.0.0/8)';
    loopback = a0 === 127;
    if (loopback && !allow.loopback) return 'loopback address';
    if (a0 === 169 && buf[o + 1] === 254 && !allow.linkLocal) return 'link-local address';
    if (a0 >= 224 && a0 <= 239 && !allow.multicast) return 'multicast address';
    if (a0 === 255 && buf[o + 1] === 255 && buf[o + 2] === 255 && buf[o + 3] === 255 && !allow.broadcast) return 'broadcast address';
    if (!allow.metadata && isMetadata4(a0, buf[o + 1]!, buf[o + 2]!, buf[o + 3]!)) return 'cloud metadata endpoint';
  } else {
    if (allZero(buf, o, 16)) return 'unspecified address (::)';
    loopback = isLoopback6(buf, o);
    if (loopback && !allow.loopback) return 'loopback address';
    if (buf[o] === 0xfe && (buf[o + 1]! & 0xc0) === 0x80 && !allow.linkLocal) return 'link-local address';
    if (buf[o] === 0xff && !allow.multicast) return 'multicast address';
    if (buf[o] === 0xfd && isMetadata6(buf, o) && !allow.metadata) return 'cloud metadata endpoint';
  }
  // Loopback is its own class above: allowing it is not overridden by the interface list (lo is "own").
  if (!allow.ownAddresses && !loopback) {
    for (let i = 0; i < own.length; i++) {
      const x = own[i]!;
      if (x.length !== alen) continue;
      let same = true;
      for (let j = 0; j < alen && same; j++) same = x[j] === buf[o + j];
      if (same) return "the gateway's own address";
    }
  }
  return null;
}

/** Each interface address of this host (zone IDs stripped) with its prefix length. Reads os state: call at setup, not per packet. */
function interfaceAddresses(): { address: Uint8Array; version: 4 | 6; prefixLength: number }[] {
  const out: { address: Uint8Array; version: 4 | 6; prefixLength: number }[] = [];
  for (const list of Object.values(os.networkInterfaces())) {
    for (const a of list ?? []) {
      const ip = parseIp(a.address.split('%')[0]!);
      const len = a.cidr ? Number(a.cidr.slice(a.cidr.lastIndexOf('/') + 1)) : ip ? ip.address.length * 8 : 0;
      if (ip) out.push({ address: ip.address, version: ip.version, prefixLength: len });
    }
  }
  return out;
}

/** How long one read of the host's addresses serves {@link localAddresses} (a burst of session opens shares it). */
export const LOCAL_ADDRESSES_TTL_MS = 1000;
let cachedAt = -Infinity;
let cached: readonly Uint8Array[] = [];

/**
 * Every address of this host's interfaces, as bytes, with the network and
 * broadcast addresses of its IPv4 subnets (up to /30). Reads os state at most
 * once per {@link LOCAL_ADDRESSES_TTL_MS} (always when `fresh`): a gateway opening 1,000 sessions
 * read every interface 1,000 times and gave each session its own copy
 * (issue #17). The array and its addresses are shared: read-only. A
 * read that finds the same addresses returns the same array, so a new array
 * means the host's addresses changed.
 */
export function localAddresses(nowMs: number = performance.now(), fresh = false): readonly Uint8Array[] {
  if (fresh || nowMs - cachedAt >= LOCAL_ADDRESSES_TTL_MS || nowMs < cachedAt) {
    const out: Uint8Array[] = [];
    for (const a of interfaceAddresses()) {
      out.push(a.address);
      // An IPv4 subnet's network and broadcast addresses are delivered to this host too (a packet the
      // tunnel writes to 192.0.2.255 reaches the gateway host's own UDP services): they count as its own.
      if (a.version === 4 && a.prefixLength <= 30) {
        out.push(maskAddress(a.address, a.prefixLength), prefixEnd({ version: 4, address: a.address, prefixLength: a.prefixLength }));
      }
    }
    // The same array while nothing changed: a caller holding it can tell a change by identity (the gateway's tick).
    if (!sameAddresses(out, cached)) cached = Object.freeze(out);
    cachedAt = nowMs;
  }
  return cached;
}

function sameAddresses(a: readonly Uint8Array[], b: readonly Uint8Array[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) {
    const x = a[i]!;
    const y = b[i]!;
    if (x.length !== y.length) return false;
    for (let j = 0; j < x.length; j++) if (x[j] !== y[j]) return false;
  }
  return true;
}

/** The subnets this host's interfaces are connected to (address masked by its netmask). Reads os state. */
export function localSubnets(): IpPrefix[] {
  return interfaceAddresses().map((a) => ({ version: a.version, address: maskAddress(a.address, a.prefixLength), prefixLength: a.prefixLength }));
}
