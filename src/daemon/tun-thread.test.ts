/**
 * The TUN thread's choice of packets it sends itself (dp_plain in
 * src/native/dataplane.c) against the TypeScript path, which stays the
 * authority: a packet the thread sends must be one the event loop's path
 * would have sent unchanged — passed by the session's outgoing check
 * (judgeOutgoing: version, IPv6 carried, link-local; issue #12), not a TCP
 * SYN (its MSS is clamped on the event loop). The thread is stricter
 * (fragments, multicast, IPv6 extension headers go to the event loop), never
 * looser. 120,000 random and structured packets per run.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { loadNative, nativeAvailable } from '../native/addon.js';
import { judgeOutgoing } from '../masque/connect-ip/packet-judge.js';
import { PacketInfo, parseIpPacket } from '../packet/ip-packet.js';

const ok = nativeAvailable();
if (!ok) console.warn('tun-thread.test: SKIPPED — native addon not built');

/**
 * What the event loop's path (Agent.sendFromTun) sends unchanged: what the
 * session's outgoing check passes (judgeOutgoing), unless it parses as a TCP
 * SYN, whose MSS it may rewrite. (It sends packets it cannot parse too, and
 * counts the parse failure in the tracker; so does the thread's path.)
 */
function tsWouldSendAsIs(p: Uint8Array, ipv6: boolean): boolean {
  if (judgeOutgoing(p, 0, p.length, ipv6) < 0) return false;
  const pi = new PacketInfo();
  if (parseIpPacket(p, 0, p.length, pi) === 0 && pi.proto === 6 && (pi.tcpFlags & 0x02) !== 0) return false;
  return true;
}

/** A structured packet: IPv4 or IPv6 header with lengths that agree (mostly), a protocol, addresses near the edges. */
const addr4 = fc.oneof(
  fc.constantFrom([10, 0, 0, 1], [169, 254, 1, 1], [224, 0, 0, 1], [255, 255, 255, 255], [127, 0, 0, 1], [0, 0, 0, 0], [239, 1, 2, 3]),
  fc.array(fc.integer({ min: 0, max: 255 }), { minLength: 4, maxLength: 4 }),
);
const addr6 = fc.oneof(
  fc.constantFrom('fe80', 'ff02', 'ff05', 'fd00', '2001', 'febf', 'fec0', '0000').map((h) => {
    const a = new Array(16).fill(0).map((_, i) => (i * 37) & 0xff);
    a[0] = parseInt(h.slice(0, 2), 16);
    a[1] = parseInt(h.slice(2, 4), 16);
    return a;
  }),
  fc.array(fc.integer({ min: 0, max: 255 }), { minLength: 16, maxLength: 16 }),
);
const proto = fc.constantFrom(1, 6, 17, 58, 0, 43, 44, 60, 50, 132, 255);

const v4Packet = fc.record({
  ihl: fc.oneof(fc.constant(5), fc.integer({ min: 0, max: 15 })),
  flagsFrag: fc.oneof(fc.constant(0x4000), fc.constant(0), fc.integer({ min: 0, max: 0xffff })),
  proto,
  src: addr4,
  dst: addr4,
  payload: fc.uint8Array({ minLength: 0, maxLength: 80 }),
  tcpFlags: fc.oneof(fc.constantFrom(0x02, 0x12, 0x10, 0x18, 0x11, 0x04), fc.integer({ min: 0, max: 255 })),
  lenDelta: fc.oneof(fc.constant(0), fc.integer({ min: -30, max: 30 })),
}).map((r) => {
  const hl = Math.max(20, r.ihl * 4);
  const p = new Uint8Array(hl + Math.max(r.payload.length, r.proto === 6 ? 20 : 8));
  p[0] = 0x40 | r.ihl;
  const total = Math.max(0, Math.min(0xffff, p.length + r.lenDelta));
  p[2] = total >> 8;
  p[3] = total & 0xff;
  p[6] = r.flagsFrag >> 8;
  p[7] = r.flagsFrag & 0xff;
  p[8] = 64;
  p[9] = r.proto;
  p.set(r.src, 12);
  p.set(r.dst, 16);
  p.set(r.payload.subarray(0, p.length - hl), hl);
  if (r.proto === 6 && p.length >= hl + 20) {
    p[hl + 12] = 0x50;
    p[hl + 13] = r.tcpFlags;
  }
  return p;
});

const v6Packet = fc.record({
  nh: proto,
  src: addr6,
  dst: addr6,
  payload: fc.uint8Array({ minLength: 0, maxLength: 80 }),
  tcpFlags: fc.oneof(fc.constantFrom(0x02, 0x12, 0x10, 0x18), fc.integer({ min: 0, max: 255 })),
  lenDelta: fc.oneof(fc.constant(0), fc.integer({ min: -30, max: 30 })),
}).map((r) => {
  const p = new Uint8Array(40 + Math.max(r.payload.length, r.nh === 6 ? 20 : 8));
  p[0] = 0x60;
  const plen = Math.max(0, Math.min(0xffff, p.length - 40 + r.lenDelta));
  p[4] = plen >> 8;
  p[5] = plen & 0xff;
  p[6] = r.nh;
  p[7] = 64;
  p.set(r.src, 8);
  p.set(r.dst, 24);
  p.set(r.payload.subarray(0, p.length - 40), 40);
  if (r.nh === 6 && p.length >= 60) {
    p[40 + 12] = 0x50;
    p[40 + 13] = r.tcpFlags;
  }
  return p;
});

describe.skipIf(!ok)('the TUN thread sends only what the event loop would have sent as it is', () => {
  it('structured IPv4 and IPv6 packets (100,000, IPv6 carried or not)', () => {
    const n = loadNative();
    let plain = 0;
    fc.assert(
      fc.property(fc.oneof(v4Packet, v6Packet), fc.boolean(), (p, ipv6) => {
        const t = n.dpPlain(p, ipv6);
        if (t) {
          plain++;
          expect(tsWouldSendAsIs(p, ipv6)).toBe(true);
        }
      }),
      { numRuns: 100_000 },
    );
    // The property is not vacuous: the thread takes a good share of these packets.
    expect(plain).toBeGreaterThan(5_000);
  }, 120_000);

  it('random bytes (20,000)', () => {
    const n = loadNative();
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 0, maxLength: 120 }), fc.boolean(), (p, ipv6) => {
        if (n.dpPlain(p, ipv6)) expect(tsWouldSendAsIs(p, ipv6)).toBe(true);
      }),
      { numRuns: 20_000 },
    );
  });

  it('takes the plain cases the agent sees most (a TCP data segment, UDP, ICMP echo) and leaves the rest', () => {
    const n = loadNative();
    const v4 = (proto: number, dst: number[], flags = 0x10, frag = 0x4000) => {
      const p = new Uint8Array(40);
      p[0] = 0x45;
      p[3] = 40;
      p[6] = frag >> 8;
      p[7] = frag & 0xff;
      p[9] = proto;
      p.set([10, 10, 0, 2], 12);
      p.set(dst, 16);
      p[32] = 0x50;
      p[33] = flags;
      return p;
    };
    expect(n.dpPlain(v4(6, [10, 20, 0, 2]), true)).toBe(true);
    expect(n.dpPlain(v4(17, [10, 20, 0, 2]), true)).toBe(true);
    expect(n.dpPlain(v4(1, [10, 20, 0, 2]), true)).toBe(true);
    expect(n.dpPlain(v4(6, [10, 20, 0, 2], 0x02), true)).toBe(false); // SYN: MSS clamp
    expect(n.dpPlain(v4(6, [10, 20, 0, 2], 0x12), true)).toBe(false); // SYN-ACK
    expect(n.dpPlain(v4(17, [169, 254, 169, 254]), true)).toBe(false); // link-local
    expect(n.dpPlain(v4(17, [224, 0, 0, 251]), true)).toBe(false); // multicast
    expect(n.dpPlain(v4(17, [10, 20, 0, 2], 0x10, 0x2000), true)).toBe(false); // a fragment (MF)
    const v6 = new Uint8Array(48);
    v6[0] = 0x60;
    v6[5] = 8;
    v6[6] = 17;
    v6.set([0xfd, 0, 0, 0xa], 8);
    v6.set([0xfd, 0, 0, 0xb], 24);
    expect(n.dpPlain(v6, true)).toBe(true);
    expect(n.dpPlain(v6, false)).toBe(false); // IPv6 no longer carried (RFC 9484 §7.2)
  });
});
