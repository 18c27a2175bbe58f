/**
 * The packet an ICMP/ICMPv6 error quotes (RFC 792, RFC 4443 §2.4(c)): which
 * messages are errors, and the quoted packet's addresses, protocol and ports,
 * read in place so an error can be matched to the flow it is about. Pure,
 * allocation-free.
 */
import { IPPROTO, type PacketInfo } from '../../packet/ip-packet.js';

// ICMP error types (RFC 792): destination unreachable, source quench, time exceeded, parameter problem.
const ICMP4_DEST_UNREACH = 3;
const ICMP4_SOURCE_QUENCH = 4;
const ICMP4_TIME_EXCEEDED = 11;
const ICMP4_PARAM_PROBLEM = 12;
/** RFC 4443 §2.1: ICMPv6 types below 128 are errors (1 unreachable, 2 too big, 3 time exceeded, 4 parameter problem). */
const ICMP6_ERROR_LIMIT = 128;
/** ICMP echo request types (RFC 792: 8; RFC 4443 §4.1: 128). */
export const ICMP4_ECHO_REQUEST = 8;
export const ICMP6_ECHO_REQUEST = 128;
/** ICMP echo reply types (RFC 792: 0; RFC 4443 §4.2: 129). */
export const ICMP4_ECHO_REPLY = 0;
export const ICMP6_ECHO_REPLY = 129;

/** Extension headers walked in a quoted IPv6 packet before giving up (the quote is short anyway). */
const MAX_QUOTED_EXT_HEADERS = 4;

/** True when the parsed packet `p` is an ICMP (IPv4) or ICMPv6 (IPv6) error message. */
export function isIcmpError(p: PacketInfo): boolean {
  if (p.proto === IPPROTO.ICMP && p.ipVersion === 4) {
    const t = p.icmpType;
    return t === ICMP4_DEST_UNREACH || t === ICMP4_TIME_EXCEEDED || t === ICMP4_PARAM_PROBLEM || t === ICMP4_SOURCE_QUENCH;
  }
  return p.proto === IPPROTO.ICMPV6 && p.ipVersion === 6 && p.icmpType < ICMP6_ERROR_LIMIT;
}

/** True for an echo request of the packet's family (ICMP 8 / ICMPv6 128). */
export function isEchoRequest(p: PacketInfo): boolean {
  return p.proto === IPPROTO.ICMP ? p.icmpType === ICMP4_ECHO_REQUEST : p.proto === IPPROTO.ICMPV6 && p.icmpType === ICMP6_ECHO_REQUEST;
}

/** True for an echo reply of the packet's family (ICMP 0 / ICMPv6 129). */
export function isEchoReply(p: PacketInfo): boolean {
  return p.proto === IPPROTO.ICMP ? p.icmpType === ICMP4_ECHO_REPLY : p.proto === IPPROTO.ICMPV6 && p.icmpType === ICMP6_ECHO_REPLY;
}

/**
 * Reads the packet quoted by the ICMP error `outer` (parsed from `buf`) into
 * `out`: ipVersion, srcOff, dstOff and proto of the quoted header, and
 * srcPort/dstPort (TCP/UDP ports; for a quoted ICMP echo request the
 * identifier as srcPort and 0 as dstPort). Offsets point into `buf`.
 * Returns false when the quote is too short, of the other IP family, or a
 * non-first fragment (no ports). A quoted ICMP message other than an echo
 * request reads as ports 0, 0.
 */
export function readQuotedPacket(buf: Uint8Array, outer: PacketInfo, out: PacketInfo): boolean {
  let p = outer.payloadOff;
  const end = outer.payloadOff + outer.payloadLen;
  const v = outer.ipVersion;
  if (p >= end || buf[p]! >> 4 !== v) return false;
  let proto: number;
  const start = p;
  if (v === 4) {
    const ihl = (buf[p]! & 0x0f) << 2;
    if (ihl < 20 || p + ihl > end) return false;
    if ((((buf[p + 6]! << 8) | buf[p + 7]!) & 0x1fff) !== 0) return false; // RFC 791: a non-first fragment has no ports
    proto = buf[p + 9]!;
    p += ihl;
  } else {
    if (p + 40 > end) return false;
    proto = buf[p + 6]!;
    p += 40;
    for (let n = 0; proto === IPPROTO.HOPOPTS || proto === IPPROTO.ROUTING || proto === IPPROTO.DSTOPTS; n++) {
      if (n >= MAX_QUOTED_EXT_HEADERS || p + 8 > end) return false;
      proto = buf[p]!;
      p += (buf[p + 1]! + 1) << 3; // RFC 8200 §4.3: 8-octet units after the first 8
    }
  }
  out.ipVersion = v;
  out.srcOff = start + (v === 4 ? 12 : 8);
  out.dstOff = start + (v === 4 ? 16 : 24);
  out.proto = proto;
  if (proto === IPPROTO.TCP || proto === IPPROTO.UDP) {
    if (p + 4 > end) return false; // RFC 792 quotes 64 bits of the datagram: both ports are there
    out.srcPort = (buf[p]! << 8) | buf[p + 1]!;
    out.dstPort = (buf[p + 2]! << 8) | buf[p + 3]!;
    return true;
  }
  if (proto === IPPROTO.ICMP || proto === IPPROTO.ICMPV6) {
    if (p + 8 > end) return false;
    // An echo request is keyed on its identifier (conn-track.ts); other ICMP messages have no flow key of their own.
    const echo = buf[p] === (v === 4 ? ICMP4_ECHO_REQUEST : ICMP6_ECHO_REQUEST);
    out.srcPort = echo ? (buf[p + 4]! << 8) | buf[p + 5]! : 0;
    out.dstPort = 0;
    return true;
  }
  out.srcPort = 0;
  out.dstPort = 0;
  return true;
}
