/**
 * Builders for the ICMP / ICMPv6 errors a tunnel endpoint sends back toward a
 * packet's source (RFC 9484 §7.2.1, §11), written into a caller buffer.
 */
import { foldChecksum, pseudoHeaderSum, sumWords } from './checksum.js';
import { DropReason, IPPROTO, PacketInfo, parseIpPacket } from './ip-packet.js';

/** Which error to build; each maps to the right ICMPv4 or ICMPv6 type/code. */
export const IcmpError = {
  /** v4: type 3 code 4 Fragmentation Needed with next-hop MTU (RFC 1191 §4); v6: type 2 Packet Too Big (RFC 4443 §3.2). */
  PACKET_TOO_BIG: 1,
  /** v4: type 11 code 0 (RFC 792); v6: type 3 code 0 hop limit exceeded (RFC 4443 §3.3). */
  TIME_EXCEEDED: 2,
  /** v4: type 3 code 1 host unreachable; v6: type 1 code 3 address unreachable (RFC 4443 §3.1). */
  HOST_UNREACHABLE: 3,
  /**
   * Source address failed ingress/egress policy (BCP 38, RFC 9484 §11).
   * v6: type 1 code 5 (RFC 4443 §3.1). ICMPv4 has no such code (its code 5 is
   * "source route failed"), so v4 uses type 3 code 13, communication
   * administratively prohibited (RFC 1812 §5.2.7.1).
   */
  SOURCE_POLICY: 4,
  /** v4: type 3 code 13; v6: type 1 code 1 (administratively prohibited). */
  ADMIN_PROHIBITED: 5,
  /** v4: type 3 code 3; v6: type 1 code 4 (port unreachable). */
  PORT_UNREACHABLE: 6,
} as const;

/**
 * Negative results of {@link buildIcmpError}: the error must not be sent
 * (RFC 1812 §4.3.2.7, RFC 4443 §2.4(e)) or could not be built.
 */
export const IcmpSuppress = {
  /** The offending packet did not parse as IP. */
  BAD_PACKET: -1,
  /** It is itself an ICMP error (never answer an error with an error). */
  IS_ICMP_ERROR: -2,
  /** Non-first fragment. */
  FRAGMENT: -3,
  /** Its source is unspecified, loopback-ish, multicast or broadcast, or its destination is multicast/broadcast (v4). */
  BAD_ADDRESS: -4,
  /** The output buffer cannot hold even the headers plus the quoted IP header. */
  NO_ROOM: -5,
  /** Reporter address length does not match the packet's IP version. */
  BAD_REPORTER: -6,
} as const;

/** RFC 1812 §4.3.2.3: an ICMPv4 error datagram is at most 576 bytes. */
export const ICMP4_ERROR_MAX_BYTES = 576;
/** RFC 4443 §2.4(c): an ICMPv6 error packet does not exceed the minimum IPv6 MTU, 1280. */
export const ICMP6_ERROR_MAX_BYTES = 1280;
/** TTL / hop limit of generated errors (RFC 1700 default TTL). */
export const ICMP_ERROR_TTL = 64;

const info = new PacketInfo();

/**
 * Builds a complete IP packet carrying an ICMP (IPv4) or ICMPv6 (IPv6) error
 * about the packet at orig[origOff, origOff+origLen), addressed to its source,
 * from `reporter` (4 or 16 bytes at reporter[reporterOff..], the tunnel
 * endpoint's own address). The offending packet is quoted from its IP header
 * on, as much as fits in 576 (v4, RFC 1812 §4.3.2.3) or 1280 (v6,
 * RFC 4443 §2.4(c)) bytes and in `outCap`.
 *
 * @param mtu for PACKET_TOO_BIG: the MTU the packet must fit (RFC 1191 §4, RFC 4443 §3.2); ignored otherwise.
 * @returns bytes written at out[outOff..], or a negative {@link IcmpSuppress} code
 * (nothing useful written). The caller owns both buffers; nothing is kept.
 */
export function buildIcmpError(
  kind: number, mtu: number,
  orig: Uint8Array, origOff: number, origLen: number,
  reporter: Uint8Array, reporterOff: number,
  out: Uint8Array, outOff: number, outCap: number,
): number {
  const r = parseIpPacket(orig, origOff, origLen, info);
  // A broken transport header still gets an error: we quote IP, not L4.
  if (r !== 0 && r !== DropReason.FRAGMENT && r !== DropReason.UNSUPPORTED_PROTO && r !== DropReason.TRUNCATED_L4
    && r !== DropReason.BAD_TCP_OFFSET && r !== DropReason.BAD_UDP_LENGTH) {
    return IcmpSuppress.BAD_PACKET;
  }
  if (info.fragOffset !== 0) return IcmpSuppress.FRAGMENT;
  const v4 = info.ipVersion === 4;
  // Never answer an ICMP error with an error (RFC 1122 §3.2.2, RFC 4443 §2.4(e)).
  if (info.l4Len >= 1) {
    const t = orig[info.l4Off]!;
    if (v4 && info.proto === IPPROTO.ICMP && t !== 0 && t !== 8 && t !== 13 && t !== 14) return IcmpSuppress.IS_ICMP_ERROR;
    if (!v4 && info.proto === IPPROTO.ICMPV6 && t < 128) return IcmpSuppress.IS_ICMP_ERROR;
  }
  if (badSource(orig, info.srcOff, v4) || (v4 && badV4Dest(orig, info.dstOff)) || (!v4 && orig[info.dstOff] === 0xff && kind !== IcmpError.PACKET_TOO_BIG)) {
    // RFC 4443 §2.4(e.3): Packet Too Big may answer a multicast destination.
    return IcmpSuppress.BAD_ADDRESS;
  }
  if (reporterOff < 0 || reporterOff + (v4 ? 4 : 16) > reporter.length) return IcmpSuppress.BAD_REPORTER;
  const ipHdr = v4 ? 20 : 40;
  const limit = Math.min(outCap, v4 ? ICMP4_ERROR_MAX_BYTES : ICMP6_ERROR_MAX_BYTES, out.length - outOff);
  const quoteMin = v4 ? (orig[origOff]! & 0x0f) << 2 : 40;
  const room = limit - ipHdr - 8;
  if (room < quoteMin) return IcmpSuppress.NO_ROOM;
  const quote = Math.min(info.ipLen, room);
  const total = ipHdr + 8 + quote;
  const o = outOff;
  const ic = o + ipHdr;
  let type: number, code: number, word = 0;
  if (v4) {
    type = 3;
    switch (kind) {
      case IcmpError.PACKET_TOO_BIG: code = 4; word = mtu & 0xffff; break; // RFC 1191 §4: next-hop MTU in low 16 bits
      case IcmpError.TIME_EXCEEDED: type = 11; code = 0; break;
      case IcmpError.HOST_UNREACHABLE: code = 1; break;
      case IcmpError.PORT_UNREACHABLE: code = 3; break;
      default: code = 13; break; // SOURCE_POLICY and ADMIN_PROHIBITED
    }
  } else {
    type = 1;
    switch (kind) {
      case IcmpError.PACKET_TOO_BIG: type = 2; code = 0; word = mtu >>> 0; break;
      case IcmpError.TIME_EXCEEDED: type = 3; code = 0; break;
      case IcmpError.HOST_UNREACHABLE: code = 3; break;
      case IcmpError.PORT_UNREACHABLE: code = 4; break;
      case IcmpError.SOURCE_POLICY: code = 5; break;
      default: code = 1; break;
    }
  }
  // Quote first (the source may overlap nothing we write; copyWithin-safe order).
  out.set(orig.subarray(origOff, origOff + quote), ic + 8);
  if (v4) {
    out[o] = 0x45; out[o + 1] = 0;
    out[o + 2] = total >> 8; out[o + 3] = total & 0xff;
    out[o + 4] = 0; out[o + 5] = 0; out[o + 6] = 0; out[o + 7] = 0;
    out[o + 8] = ICMP_ERROR_TTL; out[o + 9] = IPPROTO.ICMP;
    out[o + 10] = 0; out[o + 11] = 0;
    for (let i = 0; i < 4; i++) {
      out[o + 12 + i] = reporter[reporterOff + i]!;
      out[o + 16 + i] = orig[info.srcOff + i]!;
    }
    const hc = foldChecksum(sumWords(out, o, 20, 0));
    out[o + 10] = hc >> 8; out[o + 11] = hc & 0xff;
  } else {
    const plen = 8 + quote;
    out[o] = 0x60; out[o + 1] = 0; out[o + 2] = 0; out[o + 3] = 0;
    out[o + 4] = plen >> 8; out[o + 5] = plen & 0xff;
    out[o + 6] = IPPROTO.ICMPV6; out[o + 7] = ICMP_ERROR_TTL;
    for (let i = 0; i < 16; i++) {
      out[o + 8 + i] = reporter[reporterOff + i]!;
      out[o + 24 + i] = orig[info.srcOff + i]!;
    }
  }
  out[ic] = type; out[ic + 1] = code; out[ic + 2] = 0; out[ic + 3] = 0;
  out[ic + 4] = (word >>> 24) & 0xff; out[ic + 5] = (word >>> 16) & 0xff;
  out[ic + 6] = (word >>> 8) & 0xff; out[ic + 7] = word & 0xff;
  const start = v4 ? 0 : pseudoHeaderSum(out, 6, o + 8, o + 24, IPPROTO.ICMPV6, 8 + quote);
  const c = foldChecksum(sumWords(out, ic, 8 + quote, start));
  out[ic + 2] = c >> 8; out[ic + 3] = c & 0xff;
  return total;
}

function badSource(b: Uint8Array, off: number, v4: boolean): boolean {
  if (v4) {
    const a = b[off]!;
    if (a === 0 || a >= 224) return true; // unspecified/"this network", multicast, reserved, broadcast
    return false;
  }
  if (b[off] === 0xff) return true; // multicast source
  for (let i = 0; i < 16; i++) if (b[off + i] !== 0) return false;
  return true; // :: unspecified
}

function badV4Dest(b: Uint8Array, off: number): boolean {
  const a = b[off]!;
  if (a >= 224 && a <= 239) return true; // multicast (RFC 1812 §4.3.2.7)
  return b[off] === 255 && b[off + 1] === 255 && b[off + 2] === 255 && b[off + 3] === 255;
}
