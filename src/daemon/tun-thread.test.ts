/**
 * The TUN thread's choice of packets it sends itself (dp_plain in
 * src/native/dataplane.c) against the TypeScript path, which stays the
 * authority: a packet the thread sends must be one the event loop's path
 * would have sent — passed by the session's outgoing check (judgeOutgoing:
 * version, IPv6 carried, link-local; issue #12). The thread is stricter
 * (fragments, multicast, IPv6 extension headers go to the event loop), never
 * looser. 120,000 random and structured packets per run. The MSS clamp both
 * legs apply in place (dp_clamp_mss) is held to clampTcpMss byte for byte.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { loadNative, nativeAvailable } from '../native/addon.js';
import { judgeOutgoing } from '../masque/connect-ip/packet-judge.js';
import { clampTcpMss } from '../packet/rewrite.js';

const ok = nativeAvailable();
if (!ok) console.warn('tun-thread.test: SKIPPED — native addon not built');

/**
 * What the event loop's path (Agent.sendFromTun) sends: what the session's
 * outgoing check passes (judgeOutgoing), a SYN after its MSS clamp. (It
 * sends packets it cannot parse too, and counts the parse failure in the
 * tracker; so does the thread's path.)
 */
function tsWouldSendAsIs(p: Uint8Array, ipv6: boolean): boolean {
  return judgeOutgoing(p, 0, p.length, ipv6) >= 0;
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
    expect(n.dpPlain(v4(6, [10, 20, 0, 2], 0x02), true)).toBe(true); // SYN: its MSS clamped where it is queued
    expect(n.dpPlain(v4(6, [10, 20, 0, 2], 0x12), true)).toBe(true); // SYN-ACK
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

/** A TCP SYN (or another segment) over IPv4 or IPv6 with arbitrary option bytes, an MSS option somewhere among them. */
const tcpSegment = fc.record({
  v6: fc.boolean(),
  flags: fc.oneof(fc.constantFrom(0x02, 0x12, 0x10), fc.integer({ min: 0, max: 255 })),
  pre: fc.array(fc.oneof(fc.constant([1]), fc.constant([0]), fc.uint8Array({ minLength: 2, maxLength: 6 }).map((b) => [8, b.length + 2, ...b])), { maxLength: 4 }),
  mss: fc.oneof(fc.integer({ min: 0, max: 0xffff }), fc.constantFrom(536, 1220, 1360, 1460, 8960)),
  mssLen: fc.oneof(fc.constant(4), fc.integer({ min: 0, max: 6 })),
  post: fc.uint8Array({ maxLength: 8 }),
  cks: fc.integer({ min: 0, max: 0xffff }),
  frag: fc.oneof(fc.constant(0x4000), fc.integer({ min: 0, max: 0xffff })),
  mtu: fc.oneof(fc.constantFrom(1280, 1400, 1410, 1500, 60, 0), fc.integer({ min: 0, max: 9000 })),
}).map((r) => {
  const opts = [...r.pre.flat(), 2, r.mssLen, r.mss >> 8, r.mss & 0xff, ...r.post].slice(0, 40);
  while (opts.length % 4 !== 0) opts.push(0);
  const ih = r.v6 ? 40 : 20;
  const p = new Uint8Array(ih + 20 + opts.length);
  if (r.v6) {
    p[0] = 0x60;
    p[4] = (p.length - 40) >> 8;
    p[5] = (p.length - 40) & 0xff;
    p[6] = 6;
    p[7] = 64;
  } else {
    p[0] = 0x45;
    p[2] = p.length >> 8;
    p[3] = p.length & 0xff;
    p[6] = r.frag >> 8;
    p[7] = r.frag & 0xff;
    p[8] = 64;
    p[9] = 6;
  }
  p[ih + 12] = ((20 + opts.length) / 4) << 4;
  p[ih + 13] = r.flags;
  p[ih + 16] = r.cks >> 8;
  p[ih + 17] = r.cks & 0xff;
  p.set(opts, ih + 20);
  return { p, mtu: r.mtu };
});

describe.skipIf(!ok)('the TUN thread clamps a SYN\'s MSS as the event loop does (dp_clamp_mss against clampTcpMss)', () => {
  it('structured TCP segments (50,000): the same result and the same bytes', () => {
    const n = loadNative();
    let clamped = 0;
    fc.assert(
      fc.property(tcpSegment, ({ p, mtu }) => {
        const a = p.slice(), b = p.slice();
        const want = clampTcpMss(a, 0, a.length, mtu);
        expect(n.dpClampMss(b, mtu)).toBe(want);
        expect(Buffer.from(b).equals(Buffer.from(a))).toBe(true);
        if (want > 0) clamped++;
      }),
      { numRuns: 50_000 },
    );
    expect(clamped).toBeGreaterThan(2_000); // not vacuous
  }, 120_000);

  it('random bytes (20,000) and any MTU', () => {
    const n = loadNative();
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 120 }), fc.integer({ min: 0, max: 70_000 }), (p, mtu) => {
        const a = p.slice(), b = p.slice();
        expect(n.dpClampMss(b, Math.min(mtu, 0xffffffff))).toBe(clampTcpMss(a, 0, a.length, mtu));
        expect(Buffer.from(b).equals(Buffer.from(a))).toBe(true);
      }),
      { numRuns: 20_000 },
    );
  });
});
