/**
 * Pure, allocation-free decisions about single IP packets in CONNECT-IP
 * sessions: what may enter the tunnel (both ends), what the client accepts
 * from the gateway, and what the gateway accepts from a client (RFC 9484
 * §4.6, §4.8, §7.2, §11). Each returns a verdict; the sessions do the rest.
 */
import { DropReason, IPPROTO, parseIpPacket, type PacketInfo } from '../../packet/ip-packet.js';
import { compareBytes, hasLinkLocalAddress, prefixContains, type IpPrefix } from '../../packet/ip-address.js';
import type { AddressEntry } from './address-entry.js';
import type { ClientRoute } from './client-routes.js';
import { ConnectIpDrop } from './counters.js';
import { prohibitedDestination, type DestinationAllowance } from '../destination-policy.js';
import { targetContains, type ConnectIpScope } from './request.js';
import type { IpAddressRange } from './route-advertisement.js';
import { isLinkIcmp6 } from './ipv6-probe.js';

/** Allocation-free sanity check of an IP header at buf[off, off+len): returns 4, 6, or 0 when malformed. */
export function ipVersionOf(buf: Uint8Array, off: number, len: number): 0 | 4 | 6 {
  if (len < 1) return 0;
  const v = buf[off]! >> 4;
  if (v === 4) {
    if (len < 20) return 0;
    const ihl = (buf[off]! & 0x0f) * 4;
    const total = (buf[off + 2]! << 8) | buf[off + 3]!;
    return ihl >= 20 && total >= ihl && total <= len ? 4 : 0;
  }
  if (v === 6) {
    if (len < 40) return 0;
    const pl = (buf[off + 4]! << 8) | buf[off + 5]!;
    return pl + 40 <= len ? 6 : 0;
  }
  return 0;
}

/**
 * What both ends check before an IP packet enters the tunnel: a well-formed
 * IPv4/IPv6 packet, IPv6 still carried, and neither address link-local
 * (RFC 9484 §7.2: link-local traffic stays on its link). Returns the IP
 * version, or the negated {@link ConnectIpDrop} code.
 */
export function judgeOutgoing(buf: Uint8Array, off: number, len: number, ipv6Enabled: boolean): number {
  const v = ipVersionOf(buf, off, len);
  if (v === 0) return -ConnectIpDrop.MALFORMED_IP;
  if (v === 6 && !ipv6Enabled) return -ConnectIpDrop.IPV6_DISABLED;
  return hasLinkLocalAddress(buf, v, off + (v === 4 ? 12 : 8), off + (v === 4 ? 16 : 24)) ? -ConnectIpDrop.LINK_LOCAL : v;
}

/**
 * The client's check of a packet from the gateway (the twin of
 * {@link judgeClientPacket}): well-formed, IPv6 still carried. Returns the
 * IP version or the negated drop code. Link-local ICMPv6 is the probe's.
 */
export function judgeGatewayPacket(buf: Uint8Array, off: number, len: number, ipv6Enabled: boolean): number {
  const v = ipVersionOf(buf, off, len);
  if (v === 0) return -ConnectIpDrop.MALFORMED_IP;
  return v === 6 && !ipv6Enabled ? -ConnectIpDrop.IPV6_DISABLED : v;
}

/** Per-packet policy hook: return false to drop with ICMP administratively prohibited. Must not allocate. */
export type PacketPolicy = (buf: Uint8Array, info: PacketInfo) => boolean;

/** What the gateway knows about one client when judging its packets; the session keeps it current. */
export interface ClientPacketContext {
  readonly scope: ConnectIpScope;
  /** Addresses a host-name target resolved to (RFC 9484 §4.6). */
  readonly resolvedTarget: readonly IpPrefix[];
  /** Addresses assigned to the client. */
  readonly grants: readonly AddressEntry[];
  /** Client prefixes this session owns. */
  readonly owned: readonly ClientRoute[];
  /** Routes advertised to the client (what it may send to). */
  readonly ourRanges: readonly IpAddressRange[];
  readonly ownAddresses: readonly Uint8Array[];
  readonly allow: DestinationAllowance | undefined;
  readonly policy: PacketPolicy | undefined;
}

const isIcmp = (p: number) => p === IPPROTO.ICMP || p === IPPROTO.ICMPV6;

function sourceAllowed(c: ClientPacketContext, buf: Uint8Array, info: PacketInfo): boolean {
  const v = info.ipVersion;
  const g = c.grants;
  for (let i = 0; i < g.length; i++) {
    const a = g[i]!;
    if (a.version === v && prefixContains(a.address, a.prefixLength, buf, info.srcOff)) return true;
  }
  const r = c.owned;
  for (let i = 0; i < r.length; i++) {
    const x = r[i]!;
    if (x.prefix.version !== v) continue;
    if (x.ipProtocol !== 0 && x.ipProtocol !== info.proto && !isIcmp(info.proto)) continue;
    if (prefixContains(x.prefix.address, x.prefix.prefixLength, buf, info.srcOff)) return true;
  }
  return false;
}

function targetHas(c: ClientPacketContext, v: 4 | 6, buf: Uint8Array, dstOff: number): boolean {
  const t = c.scope.target;
  if (t.kind !== 'hostname') return targetContains(t, v, buf, dstOff);
  const r = c.resolvedTarget;
  for (let i = 0; i < r.length; i++) if (r[i]!.version === v && prefixContains(r[i]!.address, r[i]!.prefixLength, buf, dstOff)) return true;
  return false;
}

/**
 * Is the address at buf[dstOff] inside one of the ranges `r` whose IP
 * protocol admits `proto` (0 = any; ICMP always passes, it reports on the
 * others)? Allocation-free.
 */
export function inRanges(r: readonly IpAddressRange[], buf: Uint8Array, dstOff: number, v: 4 | 6, proto: number): boolean {
  const alen = v === 4 ? 4 : 16;
  for (let i = 0; i < r.length; i++) {
    const x = r[i]!;
    if (x.version !== v) continue;
    if (x.ipProtocol !== 0 && x.ipProtocol !== proto && !isIcmp(proto)) continue;
    if (compareBytes(x.start, 0, buf, dstOff, alen) <= 0 && compareBytes(buf, dstOff, x.end, 0, alen) <= 0) return true;
  }
  return false;
}

/** Entries of a {@link ClientPassCache} (a power of two). */
const PASS_ENTRIES = 8;

/**
 * Client packets' addresses and protocol that passed the checks of
 * {@link judgeClientPacket} that read nothing else (link-local, source,
 * target, scope protocol, advertised routes, destination rule), under the
 * context's lists as they were: the same arrays, of the same lengths. The
 * next packets between the same two hosts skip those checks (about a tenth
 * of the gateway's time per datagram, BENCHMARKS.md); the per-identity
 * policy and the TTL are still judged per packet. Eight entries, chosen by
 * the addresses' last bytes, so a session carrying several host pairs at
 * once keeps them. A context must replace a list when it changes, or append
 * to it (a longer list misses), never edit it in place: the gateway
 * session's lists are frozen arrays it replaces. Allocation-free.
 */
export class ClientPassCache {
  /** Per entry: IP version (0: empty) and protocol. */
  private readonly key = new Int32Array(2 * PASS_ENTRIES);
  /** Per entry: source at 0, destination at 16. */
  private readonly addrs = new Uint8Array(32 * PASS_ENTRIES);
  private grants: readonly AddressEntry[] | null = null;
  private nGrants = -1;
  private owned: readonly ClientRoute[] | null = null;
  private nOwned = -1;
  private ranges: readonly IpAddressRange[] | null = null;
  private nRanges = -1;
  private own: readonly Uint8Array[] | null = null;
  private nOwn = -1;
  /** Packets that skipped the checks (tests, benchmarks). */
  hits = 0;

  private static slot(buf: Uint8Array, info: PacketInfo, alen: number): number {
    return (buf[info.srcOff + alen - 1]! ^ buf[info.dstOff + alen - 1]!) & (PASS_ENTRIES - 1);
  }

  /** True while the context's lists are the ones the entries were taken under. */
  private sameLists(c: ClientPacketContext): boolean {
    const g = c.grants, o = c.owned, r = c.ourRanges, w = c.ownAddresses;
    return g === this.grants && g.length === this.nGrants && o === this.owned && o.length === this.nOwned &&
      r === this.ranges && r.length === this.nRanges && w === this.own && w.length === this.nOwn;
  }

  /** Whether the parsed packet `info` in buf has remembered addresses and protocol, under the same lists. */
  has(c: ClientPacketContext, buf: Uint8Array, info: PacketInfo): boolean {
    const v = info.ipVersion, alen = v === 4 ? 4 : 16;
    const e = ClientPassCache.slot(buf, info, alen);
    if (this.key[2 * e] !== v || this.key[2 * e + 1] !== info.proto || !this.sameLists(c)) return false;
    const a = this.addrs, base = 32 * e, s = info.srcOff, d = info.dstOff;
    for (let i = 0; i < alen; i++) if (a[base + i] !== buf[s + i] || a[base + 16 + i] !== buf[d + i]) return false;
    this.hits++;
    return true;
  }

  /** Remembers a packet that passed the address checks (lists that changed empty the other entries first). */
  remember(c: ClientPacketContext, buf: Uint8Array, info: PacketInfo): void {
    if (!this.sameLists(c)) {
      this.key.fill(0);
      this.grants = c.grants;
      this.nGrants = c.grants.length;
      this.owned = c.owned;
      this.nOwned = c.owned.length;
      this.ranges = c.ourRanges;
      this.nRanges = c.ourRanges.length;
      this.own = c.ownAddresses;
      this.nOwn = c.ownAddresses.length;
    }
    const v = info.ipVersion, alen = v === 4 ? 4 : 16;
    const e = ClientPassCache.slot(buf, info, alen);
    const a = this.addrs, base = 32 * e, s = info.srcOff, d = info.dstOff;
    for (let i = 0; i < alen; i++) {
      a[base + i] = buf[s + i]!;
      a[base + 16 + i] = buf[d + i]!;
    }
    this.key[2 * e] = v;
    this.key[2 * e + 1] = info.proto;
  }
}

/**
 * The gateway's verdict on a parsed client packet (`info` from
 * parseIpPacket; ports 0 when unknown): 0 = pass, else the
 * {@link ConnectIpDrop} code, in this order: link-local (§7.2), source not
 * assigned or owned (§11, BCP 38), destination outside the target, the
 * protocol, the advertised routes or the shared destination rule (§4.6,
 * §4.8, RFC 9298 §7 rule), per-identity policy. With `pass`, the checks
 * before the policy are skipped for a packet it remembers, and a packet
 * that passes them is remembered.
 */
export function judgeClientPacket(c: ClientPacketContext, buf: Uint8Array, info: PacketInfo, pass?: ClientPassCache): number {
  if (pass === undefined || !pass.has(c, buf, info)) {
    const v = info.ipVersion as 4 | 6;
    if (hasLinkLocalAddress(buf, v, info.srcOff, info.dstOff)) return ConnectIpDrop.LINK_LOCAL;
    if (!sourceAllowed(c, buf, info)) return ConnectIpDrop.SPOOFED_SOURCE;
    const proto = c.scope.ipProtocol;
    if (
      !targetHas(c, v, buf, info.dstOff) ||
      (proto !== null && info.proto !== proto && !isIcmp(info.proto)) ||
      !inRanges(c.ourRanges, buf, info.dstOff, v, info.proto) ||
      prohibitedDestination(v, buf, info.dstOff, c.allow, c.ownAddresses) !== null
    ) {
      return ConnectIpDrop.OUT_OF_SCOPE;
    }
    pass?.remember(c, buf, info);
  }
  if (c.policy && !c.policy(buf, info)) return ConnectIpDrop.POLICY;
  return 0;
}

/** Verdict of {@link judgeClientIp} / `judgeGatewayIp`: the packet is the tunnel link's own ICMPv6, for the session's IPv6 probe. */
export const VERDICT_LINK_ICMP6 = -1;

/** The per-session switches {@link judgeClientIp} reads besides the {@link ClientPacketContext}. */
export interface ClientIpSwitches {
  /** IPv6 still carried (RFC 9484 §7.2). */
  readonly ipv6Enabled: boolean;
  /** TTL / hop limit is decremented, so 1 or 0 expires here. */
  readonly decrementTtl: boolean;
  /** The session's IPv6 link-local address (the probe answers packets to it and to ff02::1). */
  readonly linkLocal: Uint8Array;
}

/**
 * The gateway's whole verdict on an IP packet a client sent (what the
 * session does before it forwards one, in this order): parsed well enough
 * (fragments and protocols we do not look inside go on as a router would,
 * with ports unknown), IPv6 still carried, the link's own ICMPv6 handed to
 * the probe ({@link VERDICT_LINK_ICMP6}, unless `checkLink` is false: the
 * probe did not want it), {@link judgeClientPacket}, then TTL. 0 = forward.
 * `info` holds the parse afterwards. The native checks (`src/native/judge.c`)
 * give the same verdicts; this is their oracle (`src/masque/native-judge.test.ts`).
 * `pass`: see {@link judgeClientPacket}.
 */
export function judgeClientIp(c: ClientPacketContext, s: ClientIpSwitches, buf: Uint8Array, off: number, len: number, info: PacketInfo, checkLink: boolean, pass?: ClientPassCache): number {
  const pr = parseIpPacket(buf, off, len, info);
  if (pr !== DropReason.NONE && pr !== DropReason.FRAGMENT && pr !== DropReason.UNSUPPORTED_PROTO) return ConnectIpDrop.MALFORMED_IP;
  if (pr !== DropReason.NONE) {
    // No transport header was read: do not let the policy see the previous packet's ports.
    info.srcPort = 0;
    info.dstPort = 0;
  }
  const v = info.ipVersion;
  if (v === 6 && !s.ipv6Enabled) return ConnectIpDrop.IPV6_DISABLED;
  if (checkLink && v === 6 && isLinkIcmp6(buf, off, info.ipLen, s.linkLocal)) return VERDICT_LINK_ICMP6;
  const verdict = judgeClientPacket(c, buf, info, pass);
  if (verdict !== 0) return verdict;
  // RFC 9484 §7.2 / RFC 1812 §5.3.1: a TTL / hop limit that the decrement would take to 0 expires here.
  return s.decrementTtl && info.ttl <= 1 ? ConnectIpDrop.TTL_EXPIRED : 0;
}
