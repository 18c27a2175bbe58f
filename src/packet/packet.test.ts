// Packet layer: parser fixtures, checksums (RFC 1071, RFC 1624), ICMP error
// builders (RFC 792, RFC 1191 §4, RFC 1812 §4.3.2.3, RFC 4443 §2.4/§3), TTL
// decrement (RFC 9484 §7.2) and MSS clamping.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { checksumUpdate16, internetChecksum, transportChecksum } from './checksum.js';
import { ipBytes, craftTcp, craftUdp, craftIcmp, mssOption } from './craft.js';
import { DropReason, IPPROTO, PacketInfo, TCP_FLAG, formatAddress, ipv4HeaderChecksumOk, parseIpPacket } from './ip-packet.js';
import { IcmpError, IcmpSuppress, buildIcmpError } from './icmp-error.js';
import { clampTcpMss, decrementTtl } from './rewrite.js';
import { ALL_NODES_6, writeEcho6Reply, writeEcho6Request } from './icmp-echo.js';
import { parseIp } from './ip-address.js';

const pi = new PacketInfo();
const hex = (s: string) => Buffer.from(s.replace(/\s+|#[^\n]*/g, ''), 'hex');

describe('parseIpPacket', () => {
  it('parses an IPv4 TCP SYN with options (fixture)', () => {
    const b = hex(`
      45 00 00 3c 1c 46 40 00 40 06 00 00 0a 00 00 01 0a 00 00 02  # IPv4, len 60, DF, TTL 64, TCP
      9c 40 00 50 00 00 03 e8 00 00 00 00 a0 02 fa f0 00 00 00 00  # ports 40000→80, seq 1000, doff 10, SYN
      02 04 05 b4 04 02 08 0a 00 00 00 01 00 00 00 00 01 03 03 07  # MSS 1460, SACK-perm, TS, NOP, WS 7
    `);
    expect(parseIpPacket(b, 0, b.length, pi)).toBe(0);
    expect(pi).toMatchObject({ ipVersion: 4, proto: IPPROTO.TCP, srcPort: 40000, dstPort: 80, tcpSeq: 1000, tcpFlags: TCP_FLAG.SYN,
      tcpMss: 1460, tcpWscale: 7, tcpSackPermitted: true, tcpTimestamps: true, payloadLen: 0, dontFragment: true, ttl: 64 });
    expect(formatAddress(b, pi.srcOff, 4)).toBe('10.0.0.1');
  });

  it('walks the IPv6 extension chain: hop-by-hop, destination options, fragment, AH (RFC 8200 §4, RFC 4302)', () => {
    const udp = craftUdp({ src: '2001:db8::1', dst: '2001:db8::2', srcPort: 7, dstPort: 9, payload: Buffer.from('abc') });
    const l4 = udp.subarray(40);
    const ext = hex(`
      3c 00 01 04 00 00 00 00     # HBH: next DSTOPTS, len 0, PadN
      2c 00 01 04 00 00 00 00     # DSTOPTS: next FRAGMENT
      33 00 00 00 12 34 56 78     # FRAGMENT: next AH, offset 0, M=0
      11 01 00 00 00 00 00 01 00 00 00 01   # AH: next UDP, len 1 → 12 bytes
    `);
    const b = Buffer.concat([udp.subarray(0, 40), ext, l4]);
    b[6] = 0; // first next-header: HBH
    b.writeUInt16BE(ext.length + l4.length, 4);
    expect(parseIpPacket(b, 0, b.length, pi)).toBe(0);
    expect(pi).toMatchObject({ ipVersion: 6, proto: IPPROTO.UDP, srcPort: 7, dstPort: 9, payloadLen: 3, isFragment: true, fragOffset: 0 });
    expect(formatAddress(b, pi.dstOff, 6)).toBe('2001:db8::2');
    b[40 + 1] = 200; // HBH length past the packet
    expect(parseIpPacket(b, 0, b.length, pi)).toBe(DropReason.BAD_EXT_HEADER);
  });

  it('reports non-first fragments, bad lengths and versions without throwing', () => {
    const u = craftUdp({ src: '10.0.0.1', dst: '10.0.0.2', srcPort: 1, dstPort: 2, payload: Buffer.alloc(10) });
    const f = Buffer.from(u); f.writeUInt16BE(0x2001, 6);
    expect(parseIpPacket(f, 0, f.length, pi)).toBe(DropReason.FRAGMENT);
    expect(parseIpPacket(u, 0, 19, pi)).toBe(DropReason.TRUNCATED_IP);
    const l = Buffer.from(u); l.writeUInt16BE(500, 2);
    expect(parseIpPacket(l, 0, l.length, pi)).toBe(DropReason.BAD_LENGTH);
    const v = Buffer.from(u); v[0] = 0x55;
    expect(parseIpPacket(v, 0, v.length, pi)).toBe(DropReason.BAD_VERSION);
    // Ethernet padding after the IP packet is ignored.
    expect(parseIpPacket(Buffer.concat([u, Buffer.alloc(6)]), 0, u.length + 6, pi)).toBe(0);
    expect(pi.payloadLen).toBe(10);
  });

  it('random bytes never throw (fast-check)', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 120 }), fc.nat(8), (b, o) => {
      const r = parseIpPacket(b, Math.min(o, b.length), b.length - Math.min(o, b.length), pi);
      return r >= 0 && r < 20;
    }), { numRuns: 20000 });
  });
});

describe('checksums', () => {
  it('RFC 1071 full checksum verifies crafted packets', () => {
    const t = craftTcp({ src: 'fd00::1', dst: 'fd00::2', srcPort: 1, dstPort: 2, seq: 3, flags: TCP_FLAG.ACK, payload: Buffer.from('xyz') });
    expect(transportChecksum(t, 6, 8, 24, IPPROTO.TCP, 40, t.length - 40)).toBe(0);
    const u = craftUdp({ src: '10.1.1.1', dst: '10.1.1.2', srcPort: 1, dstPort: 2, payload: Buffer.from('q') });
    expect(ipv4HeaderChecksumOk(u, 0)).toBe(true);
    expect(transportChecksum(u, 4, 12, 16, IPPROTO.UDP, 20, u.length - 20)).toBe(0);
  });

  it('RFC 1624 incremental update equals a full recomputation (fast-check)', () => {
    fc.assert(fc.property(fc.uint8Array({ minLength: 20, maxLength: 64 }), fc.nat(9), fc.integer({ min: 0, max: 0xffff }), (d, w, nv) => {
      const b = Buffer.from(d.length % 2 ? d.subarray(1) : d);
      b[0] = 0; b[1] = 0;
      const c0 = internetChecksum(b, 0, b.length);
      b.writeUInt16BE(c0, 0);
      const pos = 2 + 2 * (w % ((b.length - 2) / 2));
      const old = b.readUInt16BE(pos);
      b.writeUInt16BE(nv, pos);
      const inc = checksumUpdate16(c0, old, nv);
      b.writeUInt16BE(inc, 0);
      // RFC 1624 §3: eqn. 3 never produces -0 (0xffff stays distinct); the packet verifies.
      return internetChecksum(b, 0, b.length) === 0;
    }), { numRuns: 3000 });
  });
});

describe('ICMP error builders', () => {
  const reporter4 = ipBytes('192.0.2.254');
  const reporter6 = ipBytes('2001:db8::fe');
  const out = Buffer.alloc(2000);

  it('IPv4 Fragmentation Needed carries the MTU and quotes at most 576 bytes (RFC 1191 §4, RFC 1812 §4.3.2.3)', () => {
    const big = craftUdp({ src: '10.0.0.1', dst: '10.9.9.9', srcPort: 5, dstPort: 6, payload: Buffer.alloc(1400, 1) });
    const n = buildIcmpError(IcmpError.PACKET_TOO_BIG, 1280, big, 0, big.length, reporter4, 0, out, 0, out.length);
    expect(n).toBe(576);
    expect(parseIpPacket(out, 0, n, pi)).toBe(0);
    expect(formatAddress(out, pi.srcOff, 4)).toBe('192.0.2.254');
    expect(formatAddress(out, pi.dstOff, 4)).toBe('10.0.0.1');
    expect([pi.icmpType, pi.icmpCode, out.readUInt16BE(20 + 6)]).toEqual([3, 4, 1280]);
    expect(ipv4HeaderChecksumOk(out, 0)).toBe(true);
    expect(internetChecksum(out, 20, n - 20)).toBe(0);
    expect(out.subarray(28, 28 + 20).equals(big.subarray(0, 20))).toBe(true);
  });

  it('IPv6 Packet Too Big, Time Exceeded and Destination Unreachable code 5 (RFC 4443 §3.1–3.3)', () => {
    const p = craftTcp({ src: '2001:db8::1', dst: '2001:db8::99', srcPort: 1, dstPort: 2, seq: 0, flags: TCP_FLAG.SYN, payload: Buffer.alloc(1400) });
    for (const [kind, type, code] of [[IcmpError.PACKET_TOO_BIG, 2, 0], [IcmpError.TIME_EXCEEDED, 3, 0], [IcmpError.SOURCE_POLICY, 1, 5]] as const) {
      const n = buildIcmpError(kind, 1300, p, 0, p.length, reporter6, 0, out, 0, out.length);
      expect(n).toBe(1280); // RFC 4443 §2.4(c)
      expect(parseIpPacket(out, 0, n, pi)).toBe(0);
      expect([pi.proto, pi.icmpType, pi.icmpCode]).toEqual([IPPROTO.ICMPV6, type, code]);
      expect(transportChecksum(out, 6, 8, 24, IPPROTO.ICMPV6, 40, n - 40)).toBe(0);
      if (kind === IcmpError.PACKET_TOO_BIG) expect(out.readUInt32BE(44)).toBe(1300);
    }
  });

  it('never answers an ICMP error, a non-first fragment or a multicast source (RFC 1812 §4.3.2.7, RFC 4443 §2.4(e))', () => {
    const err = craftIcmp({ src: '10.0.0.1', dst: '10.0.0.2', type: 3, code: 1 });
    expect(buildIcmpError(IcmpError.TIME_EXCEEDED, 0, err, 0, err.length, reporter4, 0, out, 0, out.length)).toBe(IcmpSuppress.IS_ICMP_ERROR);
    const echo = craftIcmp({ src: '10.0.0.1', dst: '10.0.0.2', type: 8 });
    expect(buildIcmpError(IcmpError.TIME_EXCEEDED, 0, echo, 0, echo.length, reporter4, 0, out, 0, out.length)).toBeGreaterThan(0);
    const frag = Buffer.from(echo); frag.writeUInt16BE(0x0010, 6);
    expect(buildIcmpError(IcmpError.TIME_EXCEEDED, 0, frag, 0, frag.length, reporter4, 0, out, 0, out.length)).toBe(IcmpSuppress.FRAGMENT);
    const mc = craftUdp({ src: '224.0.0.1', dst: '10.0.0.2', srcPort: 1, dstPort: 2 });
    expect(buildIcmpError(IcmpError.HOST_UNREACHABLE, 0, mc, 0, mc.length, reporter4, 0, out, 0, out.length)).toBe(IcmpSuppress.BAD_ADDRESS);
    expect(buildIcmpError(IcmpError.HOST_UNREACHABLE, 0, Buffer.alloc(3), 0, 3, reporter4, 0, out, 0, out.length)).toBe(IcmpSuppress.BAD_PACKET);
  });
});

describe('in-place rewrites', () => {
  it('decrements TTL with a valid header checksum, refuses at 1 (RFC 9484 §7.2)', () => {
    const u = craftUdp({ src: '10.0.0.1', dst: '10.0.0.2', srcPort: 1, dstPort: 2, ttl: 2 });
    expect(decrementTtl(u, 0, u.length)).toBe(1);
    expect(ipv4HeaderChecksumOk(u, 0)).toBe(true);
    expect(decrementTtl(u, 0, u.length)).toBe(0);
    expect(u[8]).toBe(1);
    const v6 = craftUdp({ src: 'fd00::1', dst: 'fd00::2', srcPort: 1, dstPort: 2, ttl: 9 });
    expect(decrementTtl(v6, 0, v6.length)).toBe(8);
  });

  it('clamps the MSS of a SYN to the tunnel MTU with a correct checksum, aligned and not', () => {
    for (const pad of [0, 1]) {
      const opts = pad ? Buffer.concat([Buffer.of(1), mssOption(1460), Buffer.of(1, 1, 1)]) : mssOption(1460);
      for (const [src, dst, want] of [['10.0.0.1', '10.0.0.2', 1240], ['fd00::1', 'fd00::2', 1220]] as const) {
        const s = craftTcp({ src, dst, srcPort: 1, dstPort: 2, seq: 0, flags: TCP_FLAG.SYN, options: opts, payload: Buffer.from('odd') });
        expect(clampTcpMss(s, 0, s.length, 1280)).toBe(want);
        expect(parseIpPacket(s, 0, s.length, pi)).toBe(0);
        expect(pi.tcpMss).toBe(want);
        const v = pi.ipVersion;
        expect(transportChecksum(s, v, pi.srcOff, pi.dstOff, IPPROTO.TCP, pi.l4Off, pi.l4Len)).toBe(0);
        expect(clampTcpMss(s, 0, s.length, 1280)).toBe(0); // already fits
      }
    }
  });
});

describe('ICMPv6 echo builders (RFC 4443 §4.1/§4.2, the RFC 9484 §7.2 probe)', () => {
  it('the reply carries the request whole, sized by its Payload Length (trailing bytes ignored), checksum valid', () => {
    const src = parseIp('fe80::2')!.address;
    const req = new Uint8Array(1400 + 7);
    expect(writeEcho6Request(req, 0, src, ALL_NODES_6, 7, 1, 1352)).toBe(1400);
    const out = new Uint8Array(1500);
    const me = parseIp('fe80::1')!.address;
    expect(writeEcho6Reply(req, 0, req.length, me, out, 9)).toBe(1400);
    expect(out[9 + 40]).toBe(129);
    expect(out.subarray(9 + 24, 9 + 40)).toEqual(src);
    expect(out.subarray(9 + 8, 9 + 24)).toEqual(me);
    expect(transportChecksum(out, 6, 9 + 8, 9 + 24, 58, 9 + 40, 1360)).toBe(0);
    expect(out.subarray(9 + 48, 9 + 1400)).toEqual(req.subarray(48, 1400));
    // Too little room, a truncated request, or not an echo request: nothing written.
    expect(writeEcho6Reply(req, 0, req.length, me, new Uint8Array(1000), 0)).toBe(0);
    expect(writeEcho6Reply(req, 0, 1399, me, out, 0)).toBe(0);
    req[40] = 129;
    expect(writeEcho6Reply(req, 0, req.length, me, out, 0)).toBe(0);
  });
});
