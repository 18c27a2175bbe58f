/**
 * Packet construction for tests, simulations and benchmarks: whole IPv4/IPv6
 * packets with correct checksums. Allocates; never use on the data path.
 */
import { transportChecksum, foldChecksum, sumWords } from './checksum.js';
import { IPPROTO } from './ip-packet.js';
import { parseIp } from './ip-address.js';

/** Parses an IPv4 or IPv6 address text into 4 or 16 bytes; throws `packet: …` on bad text. */
export function ipBytes(text: string): Uint8Array {
  const ip = parseIp(text);
  if (ip === null) throw new Error(`packet: not an IP address: ${JSON.stringify(text)}`);
  return ip.address;
}

/** Common fields of a crafted packet. */
export interface CraftIp {
  /** Source address text (IPv4 or IPv6; both must be the same family). */
  src: string;
  /** Destination address text. */
  dst: string;
  /** TTL / hop limit (default 64). */
  ttl?: number;
  /** IPv4 only: set DF (default true). */
  df?: boolean;
}

/** A TCP segment to craft. */
export interface CraftTcp extends CraftIp {
  srcPort: number;
  dstPort: number;
  seq: number;
  ack?: number;
  /** TCP flag bits (see TCP_FLAG). */
  flags: number;
  window?: number;
  /** Raw option bytes, padded to 4 by the crafter with EOL. */
  options?: Uint8Array;
  payload?: Uint8Array;
}

/** A UDP datagram to craft. */
export interface CraftUdp extends CraftIp {
  srcPort: number;
  dstPort: number;
  payload?: Uint8Array;
}

/** An ICMP/ICMPv6 message to craft (echo by default). */
export interface CraftIcmp extends CraftIp {
  type: number;
  code?: number;
  /** Bytes 4..7 of the ICMP header (echo: identifier<<16 | sequence). */
  rest?: number;
  payload?: Uint8Array;
}

function ipPacket(spec: CraftIp, proto: number, l4: Uint8Array): Buffer {
  const s = ipBytes(spec.src);
  const d = ipBytes(spec.dst);
  if (s.length !== d.length) throw new Error('packet: src and dst differ in address family');
  const v4 = s.length === 4;
  const hl = v4 ? 20 : 40;
  const b = Buffer.alloc(hl + l4.length);
  if (v4) {
    b[0] = 0x45;
    b.writeUInt16BE(b.length, 2);
    b.writeUInt16BE(spec.df === false ? 0 : 0x4000, 6);
    b[8] = spec.ttl ?? 64;
    b[9] = proto;
    b.set(s, 12);
    b.set(d, 16);
    b.writeUInt16BE(foldChecksum(sumWords(b, 0, 20, 0)), 10);
  } else {
    b[0] = 0x60;
    b.writeUInt16BE(l4.length, 4);
    b[6] = proto;
    b[7] = spec.ttl ?? 64;
    b.set(s, 8);
    b.set(d, 24);
  }
  b.set(l4, hl);
  return b;
}

function fixL4Checksum(b: Buffer, proto: number, cksOff: number): Buffer {
  const v4 = b[0]! >> 4 === 4;
  const hl = v4 ? 20 : 40;
  const c = transportChecksum(b, v4 ? 4 : 6, v4 ? 12 : 8, v4 ? 16 : 24, proto, hl, b.length - hl);
  b.writeUInt16BE(proto === IPPROTO.UDP && c === 0 ? 0xffff : c, hl + cksOff);
  return b;
}

/** Builds an IPv4 or IPv6 packet carrying one TCP segment, checksums filled in. */
export function craftTcp(spec: CraftTcp): Buffer {
  const opts = spec.options ?? new Uint8Array(0);
  const optLen = (opts.length + 3) & ~3;
  const payload = spec.payload ?? new Uint8Array(0);
  const t = new Uint8Array(20 + optLen + payload.length);
  const dv = new DataView(t.buffer);
  dv.setUint16(0, spec.srcPort);
  dv.setUint16(2, spec.dstPort);
  dv.setUint32(4, spec.seq >>> 0);
  dv.setUint32(8, (spec.ack ?? 0) >>> 0);
  t[12] = ((20 + optLen) >> 2) << 4;
  t[13] = spec.flags;
  dv.setUint16(14, spec.window ?? 65535);
  t.set(opts, 20);
  t.set(payload, 20 + optLen);
  return fixL4Checksum(ipPacket(spec, IPPROTO.TCP, t), IPPROTO.TCP, 16);
}

/** Builds an IPv4 or IPv6 packet carrying one UDP datagram, checksum filled in. */
export function craftUdp(spec: CraftUdp): Buffer {
  const payload = spec.payload ?? new Uint8Array(0);
  const u = new Uint8Array(8 + payload.length);
  const dv = new DataView(u.buffer);
  dv.setUint16(0, spec.srcPort);
  dv.setUint16(2, spec.dstPort);
  dv.setUint16(4, u.length);
  u.set(payload, 8);
  return fixL4Checksum(ipPacket(spec, IPPROTO.UDP, u), IPPROTO.UDP, 6);
}

/** Builds an ICMP (IPv4) or ICMPv6 (IPv6) packet, checksum filled in. */
export function craftIcmp(spec: CraftIcmp): Buffer {
  const payload = spec.payload ?? new Uint8Array(0);
  const m = new Uint8Array(8 + payload.length);
  const dv = new DataView(m.buffer);
  m[0] = spec.type;
  m[1] = spec.code ?? 0;
  dv.setUint32(4, (spec.rest ?? 0) >>> 0);
  m.set(payload, 8);
  const proto = spec.src.includes(':') ? IPPROTO.ICMPV6 : IPPROTO.ICMP;
  return fixL4Checksum(ipPacket(spec, proto, m), proto, 2);
}

/** TCP option bytes: MSS (kind 2). */
export function mssOption(mss: number): Uint8Array {
  return Uint8Array.of(2, 4, mss >> 8, mss & 0xff);
}
