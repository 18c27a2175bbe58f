/**
 * Random CONNECT-IP session state and random IP packets aimed at it, for the
 * differential test of the native checks (native-judge.test.ts) and the cost
 * bench (bench/judge-cost.mjs). Deterministic from a seed. Packets are drawn
 * near the session's own prefixes (so every check is reached, not only the
 * first) and then, some of them, broken: wrong lengths, extension chains,
 * fragments, quoted packets in ICMP errors, truncation, flipped bytes.
 */
import { compilePolicy, type IdentityPolicy } from '../../config/policy.js';
import type { PolicyEntry } from '../../config/schema.js';
import { maskAddress, parseIp, prefixEnd, type IpPrefix } from '../../packet/ip-address.js';
import type { AddressEntry } from '../connect-ip/address-entry.js';
import type { ClientRoute } from '../connect-ip/client-routes.js';
import type { ClientIpSwitches, ClientPacketContext } from '../connect-ip/packet-judge.js';
import type { ReceiveContext } from '../connect-ip/receive-check.js';
import type { ConnectIpScope } from '../connect-ip/request.js';
import type { IpAddressRange } from '../connect-ip/route-advertisement.js';
import type { DestinationAllowance } from '../destination-policy.js';

/** xorshift32: small, fast and seedable. */
export class Rng {
  private s: number;
  constructor(seed: number) {
    this.s = (seed >>> 0) || 0x9e3779b9;
  }
  next(): number {
    let x = this.s;
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    this.s = x >>> 0;
    return this.s;
  }
  int(n: number): number {
    return this.next() % n;
  }
  chance(p: number): boolean {
    return this.next() / 0x100000000 < p;
  }
  pick<T>(a: readonly T[]): T {
    return a[this.int(a.length)]!;
  }
}

/** Address bytes of an IP literal (the literals here are valid). */
const addr = (text: string): Uint8Array => parseIp(text)!.address;

/** A link-local address and IPv6 loopback, by name. */
const LL6 = addr('fe80::1');
const LOOP6 = addr('::1');

/** Addresses every check has an opinion on: link-local, loopback, multicast, broadcast, unspecified, mapped, metadata. */
const SPECIAL4 = [
  '169.254.1.1', '127.0.0.1', '224.0.0.5', '239.255.255.250', '223.255.255.1', '240.0.0.1',
  '255.255.255.255', '255.255.255.254', '0.0.0.0', '0.1.2.3', '1.0.0.0', '169.253.0.1', '192.0.2.1',
  '100.100.100.200', '100.100.100.201', '169.254.169.254', '169.254.170.2', '169.254.170.23', '169.254.170.254',
].map(addr);
const SPECIAL6 = [
  '::ffff:127.0.0.1', '::ffff:224.0.0.1', '::ffff:0.0.0.0', 'fe80::1', 'ff02::1', '::1', '::', '::ffff:10.0.0.1', 'ff05::2',
  'fd00:ec2::254', 'fd20:ce::254', 'fd00:ec2::253', 'fd00:ec2:0:1::254', '::ffff:100.100.100.200', 'fd00:ec2::23', 'fd20:ce::23',
  '64:ff9b::a9fe:a9fe', '64:ff9b::7f00:1', '64:ff9b::c000:201', '64:ff9b::e000:5', '64:ff9b:1::a9fe:a9fe', '64:ff9b::1:a9fe:a9fe',
].map(addr);
const BASES4 = ['10.0.0.0', '10.0.1.0', '10.1.0.0', '192.168.5.0'].map(addr);
const BASES6 = ['fd00::', 'fd00:0:0:1::', '2001:db8::'].map(addr);

/** An address near the pool: a base or special with its low bytes varied. */
function nearAddress(r: Rng, version: 4 | 6): Uint8Array {
  const a = Uint8Array.from(r.chance(0.2) ? r.pick(version === 4 ? SPECIAL4 : SPECIAL6) : r.pick(version === 4 ? BASES4 : BASES6));
  if (r.chance(0.7)) a[a.length - 1] = r.int(256);
  if (r.chance(0.2)) a[a.length - 2] = r.int(4);
  return a;
}

function prefix(r: Rng, version: 4 | 6, canonical = true): IpPrefix {
  const bits = version === 4 ? 32 : 128;
  const plen = r.chance(0.3) ? bits : r.int(bits + 1);
  const a = nearAddress(r, version);
  // Prefixes normally have their host bits zero; callers ask for the others too (both checks compare the same way).
  return { version, prefixLength: plen, address: canonical || r.chance(0.7) ? maskAddress(a, plen) : a };
}

function range(r: Rng): IpAddressRange {
  const version = r.chance(0.6) ? 4 : 6;
  const p = prefix(r, version);
  const end = prefixEnd(p);
  const reversed = r.chance(0.05);
  return { version, start: reversed ? end : p.address, end: reversed ? p.address : end, ipProtocol: r.pick([0, 0, 6, 17, 1, 58, 47]) };
}

const times = <T>(n: number, f: () => T): T[] => Array.from({ length: n }, f);
const PROTOS = ['tcp', 'udp', 'icmp', 'any'] as const;
/** Ports that policies and packets share (range bounds and their neighbours). */
const PORTS = [0, 1, 52, 53, 54, 79, 80, 81, 443, 5200, 5201, 5202, 65534, 65535];

/** A prefix around one of `near` (so packets aimed at the session's ranges also meet the rule), or anywhere. */
function prefixNear(r: Rng, near: readonly Uint8Array[]): IpPrefix {
  if (near.length === 0 || r.chance(0.3)) return prefix(r, r.chance(0.6) ? 4 : 6);
  const a = r.pick(near);
  const version = a.length === 4 ? 4 : 6;
  const plen = r.int(a.length * 8 + 1);
  return { version, prefixLength: plen, address: maskAddress(a, plen) };
}

function policy(r: Rng, near: readonly Uint8Array[]): IdentityPolicy | null {
  if (r.chance(0.2)) return null;
  const allow = times(r.int(4), () => ({
    prefixes: times(r.int(3), () => prefixNear(r, near)),
    protocols: times(1 + r.int(2), () => r.pick(PROTOS)),
    ports: r.chance(0.5) ? undefined : times(1 + r.int(2), () => {
      // Bounds from the same few ports the packets use, so both ends of a range are hit exactly.
      const a = r.chance(0.8) ? r.pick(PORTS) : r.int(65536);
      const b = r.chance(0.8) ? r.pick(PORTS) : r.int(65536);
      return { from: Math.min(a, b), to: Math.max(a, b) };
    }),
  }));
  return compilePolicy([{ identity: 'fuzz', allow, advertise: [], inbound: [] } as unknown as PolicyEntry]).forIdentity('fuzz');
}

/** A gateway session's judge inputs: context (its policy hook is the identity policy's rules alone), switches, policy. */
export interface GatewayCase {
  ctx: ClientPacketContext;
  switches: ClientIpSwitches;
  policy: IdentityPolicy | null;
  /** Addresses packets are drawn around. */
  pools: Pools;
}

/** Where a packet's addresses are drawn from: the session's sources and its destinations (any version; filtered per packet). */
export interface Pools {
  readonly src: readonly Uint8Array[];
  readonly dst: readonly Uint8Array[];
}

export function randomGatewayCase(r: Rng): GatewayCase {
  const grants: AddressEntry[] = times(r.int(3), () => {
    const p = prefix(r, r.chance(0.6) ? 4 : 6, r.chance(0.9));
    return { requestId: 1, version: p.version, address: p.address, prefixLength: p.prefixLength };
  });
  const owned: ClientRoute[] = times(r.int(3), () => ({ prefix: prefix(r, r.chance(0.6) ? 4 : 6, r.chance(0.9)), ipProtocol: r.pick([0, 0, 6, 17, 1, 47]) }));
  const allow: DestinationAllowance = { loopback: r.chance(0.2), linkLocal: r.chance(0.2), multicast: r.chance(0.2), broadcast: r.chance(0.2), ownAddresses: r.chance(0.2), metadata: r.chance(0.2) };
  const ourRanges: IpAddressRange[] = r.chance(0.2) ? [{ version: 4, start: new Uint8Array(4), end: new Uint8Array(4).fill(255), ipProtocol: 0 }] : times(r.int(4), () => range(r));
  const near = [...ourRanges.flatMap((x) => [x.start, x.end]), ...(r.chance(0.5) ? SPECIAL4 : []), ...(r.chance(0.3) ? SPECIAL6 : [])];
  const pol = policy(r, near);
  const kind = r.int(4);
  const scope: ConnectIpScope = {
    target: kind === 0 || kind === 3 ? { kind: 'any' } : kind === 1 ? { kind: 'prefix', prefix: prefixNear(r, near) } : { kind: 'hostname', name: 'svc.example' },
    ipProtocol: r.pick([null, null, 6, 17, 1, 58]),
  };
  const ctx: ClientPacketContext = {
    scope,
    resolvedTarget: times(r.int(3), () => prefixNear(r, near)),
    grants,
    owned,
    ourRanges,
    // A host's own addresses include its loopback ones (localAddresses() lists lo).
    ownAddresses: times(r.int(4), () => (r.chance(0.3) ? r.pick([addr('127.0.0.1'), LOOP6, addr('192.0.2.1')]) : nearAddress(r, r.chance(0.6) ? 4 : 6))),
    allow: r.chance(0.2) ? undefined : allow,
    policy: pol ? (buf, info) => pol.allowsPacket(buf, info) : undefined,
  };
  const switches: ClientIpSwitches = { ipv6Enabled: r.chance(0.9), decrementTtl: r.chance(0.8), linkLocal: r.chance(0.5) ? LL6 : nearAddress(r, 6) };
  const ruleAddresses = (pol?.allowRules() ?? []).flatMap((x) => x.prefixes.map((p) => p.address));
  const targets = scope.target.kind === 'prefix' ? [scope.target.prefix.address] : ctx.resolvedTarget.map((p) => p.address);
  const pools: Pools = {
    src: [...grants.map((g) => g.address), ...owned.map((o) => o.prefix.address)],
    dst: [...near, ...ctx.ownAddresses, ...ruleAddresses, ...targets, switches.linkLocal],
  };
  return { ctx, switches, policy: pol, pools };
}

/** An agent session's judge inputs. */
export interface AgentCase {
  rx: ReceiveContext;
  ipv6Enabled: boolean;
  linkLocal: Uint8Array;
  pools: Pools;
}

export function randomAgentCase(r: Rng): AgentCase {
  const assigned: AddressEntry[] = times(r.int(3), () => {
    const p = prefix(r, r.chance(0.6) ? 4 : 6);
    return { requestId: 1, version: p.version, address: p.address, prefixLength: p.prefixLength };
  });
  const rx: ReceiveContext = { assigned, ourRanges: times(r.int(3), () => range(r)), peerRanges: times(r.int(4), () => range(r)) };
  const linkLocal = r.chance(0.5) ? LL6 : nearAddress(r, 6);
  const pools: Pools = {
    src: rx.peerRanges.flatMap((x) => [x.start, x.end]),
    dst: [...assigned.map((g) => g.address), ...rx.ourRanges.flatMap((x) => [x.start, x.end]), linkLocal],
  };
  return { rx, ipv6Enabled: r.chance(0.9), linkLocal, pools };
}

function address(r: Rng, version: 4 | 6, from: readonly Uint8Array[]): Uint8Array {
  const pool = from.filter((a) => a.length === (version === 4 ? 4 : 16));
  if (pool.length > 0 && r.chance(0.85)) {
    const a = Uint8Array.from(r.pick(pool));
    if (r.chance(0.3)) a[a.length - 1] = r.int(256);
    return a;
  }
  return nearAddress(r, version);
}

const put16 = (b: Uint8Array, o: number, v: number) => {
  b[o] = (v >> 8) & 0xff;
  b[o + 1] = v & 0xff;
};

/** A transport header and payload of protocol `proto` (TCP, UDP, ICMP/ICMPv6 possibly quoting `quote`, or random bytes). */
function transport(r: Rng, proto: number, version: 4 | 6, quote: Uint8Array | null): Uint8Array {
  if (proto === 6) {
    const t = new Uint8Array(20 + (r.chance(0.3) ? 4 * r.int(4) : 0) + r.int(40));
    for (let i = 0; i < t.length; i++) t[i] = r.int(256);
    put16(t, 0, r.pick([443, 80, 5201, r.int(65536)]));
    put16(t, 2, r.chance(0.8) ? r.pick(PORTS) : r.int(65536));
    t[12] = r.chance(0.9) ? 5 << 4 : r.int(256);
    return t;
  }
  if (proto === 17) {
    const t = new Uint8Array(8 + r.int(40));
    for (let i = 8; i < t.length; i++) t[i] = r.int(256);
    put16(t, 0, r.pick([53, 443, r.int(65536)]));
    put16(t, 2, r.chance(0.8) ? r.pick(PORTS) : r.int(65536));
    put16(t, 4, r.chance(0.9) ? t.length : r.int(65536));
    return t;
  }
  if (proto === 1 || proto === 58) {
    const body = quote && r.chance(0.8) ? quote.subarray(0, r.chance(0.8) ? quote.length : r.int(quote.length + 1)) : new Uint8Array(r.int(32));
    const t = new Uint8Array(8 + body.length);
    t[0] = proto === 1 ? r.pick([0, 3, 4, 8, 11, 12, 5, r.int(256)]) : r.pick([1, 2, 3, 4, 128, 129, 133, r.int(256)]);
    t[1] = r.int(4);
    t[4] = r.int(256);
    t.set(body, 8);
    return t;
  }
  const t = new Uint8Array(r.int(48));
  for (let i = 0; i < t.length; i++) t[i] = r.int(256);
  return t;
}

/** One IP packet (IPv6 possibly with an extension chain), then maybe broken. */
export function randomPacket(r: Rng, pools: Pools, depth = 0): Uint8Array {
  const version: 4 | 6 = r.chance(0.55) ? 4 : 6;
  const src = address(r, version, pools.src);
  const dst = address(r, version, pools.dst);
  const proto = r.pick(version === 4 ? [6, 6, 17, 17, 1, 1, 47, 50, 58] : [6, 6, 17, 17, 58, 58, 47, 1]);
  const quote = depth === 0 && (proto === 1 || proto === 58) ? quotedFor(r, version, dst, pools) : null;
  const l4 = transport(r, proto, version, quote);
  let pkt: Uint8Array;
  if (version === 4) {
    const ihl = r.chance(0.85) ? 20 : 24 + 4 * r.int(10); // options up to the 60-byte maximum
    pkt = new Uint8Array(ihl + l4.length);
    pkt[0] = 0x40 | (ihl >> 2);
    put16(pkt, 2, r.chance(0.92) ? pkt.length : r.int(pkt.length + 30));
    const frag = r.chance(0.85) ? r.pick([0x4000, 0]) : r.pick([0x2000, 0x2000 | r.int(0x2000), r.int(0x2000), 0x0001]);
    put16(pkt, 6, frag);
    pkt[8] = r.pick([64, 64, 1, 0, 2, 255]);
    pkt[9] = proto;
    pkt.set(src, 12);
    pkt.set(dst, 16);
    pkt.set(l4, ihl);
  } else {
    // Extension headers: hop-by-hop, routing, destination options, fragment, AH, in a random chain.
    const ext: { nh: number; bytes: Uint8Array }[] = [];
    // Quoted packets (depth 1) get chains around the quote walk's limit of 4; a few outer ones pass the parser's 16.
    const count = r.chance(0.7) ? 0 : depth > 0 ? 1 + r.int(6) : r.chance(0.05) ? 14 + r.int(4) : 1 + r.int(3);
    for (let n = count; n > 0; n--) {
      const kind = depth > 0 && r.chance(0.8) ? r.pick([0, 43, 60]) : r.pick([0, 43, 60, 44, 51, 135]);
      const b = new Uint8Array(kind === 44 ? 8 : kind === 51 ? 12 : 8 * (1 + r.int(2)));
      if (kind === 44) put16(b, 2, r.chance(0.5) ? r.int(2) : r.int(65536)); // offset 0 with M, or anything
      else if (kind === 51) b[1] = 1; // (1 + 2) × 4 = 12 bytes
      else b[1] = b.length / 8 - 1;
      if (r.chance(0.05)) b[1] = r.int(256);
      ext.push({ nh: kind, bytes: b });
    }
    const extLen = ext.reduce((s, e) => s + e.bytes.length, 0);
    pkt = new Uint8Array(40 + extLen + l4.length);
    pkt[0] = 0x60;
    put16(pkt, 4, r.chance(0.92) ? extLen + l4.length : r.chance(0.3) ? 0 : r.int(extLen + l4.length + 30));
    pkt[6] = ext.length > 0 ? ext[0]!.nh : proto;
    pkt[7] = r.pick([64, 64, 1, 0, 2, 255]);
    pkt.set(src, 8);
    pkt.set(dst, 24);
    let o = 40;
    ext.forEach((e, i) => {
      e.bytes[0] = i + 1 < ext.length ? ext[i + 1]!.nh : proto;
      pkt.set(e.bytes, o);
      o += e.bytes.length;
    });
    pkt.set(l4, o);
  }
  if (depth > 0) return pkt;
  // Break some: truncate, add link padding, flip bytes, or replace it with noise.
  const k = r.int(100);
  if (k < 5) return pkt.subarray(0, r.int(pkt.length + 1));
  if (k < 8) {
    const padded = new Uint8Array(pkt.length + 1 + r.int(16));
    padded.set(pkt);
    return padded;
  }
  if (k < 13) {
    for (let n = 1 + r.int(3); n > 0; n--) pkt[r.int(pkt.length)] = r.int(256);
    return pkt;
  }
  if (k < 15) {
    const noise = new Uint8Array(r.int(80));
    for (let i = 0; i < noise.length; i++) noise[i] = r.int(256);
    return noise;
  }
  return pkt;
}

/** The packet an ICMP error quotes: usually sent by the error's destination (so the agent's check passes it). */
function quotedFor(r: Rng, version: 4 | 6, errorDst: Uint8Array, pools: Pools): Uint8Array {
  const q = randomPacket(r, pools, 1);
  if (r.chance(0.7) && (q[0]! >> 4) === version) q.set(errorDst, version === 4 ? 12 : 8);
  return r.chance(0.1) ? randomPacket(r, pools, 1) : q;
}
