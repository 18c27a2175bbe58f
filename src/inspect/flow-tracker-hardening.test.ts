// Hostile input to the tracker (issue #12): the TLS peek's memory and CPU
// (item 1) and the flow table's hash (item 11). Each test here failed on
// 480eaf6 (see the commit message for how that was checked).
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { craftTcp, craftUdp } from '../packet/craft.js';
import { PacketInfo, parseIpPacket, TCP_FLAG } from '../packet/ip-packet.js';
import { clientHello, conv } from './fixtures.js';
import { halfSipHash13 } from './flow-table.js';
import { FlowTracker } from './flow-tracker.js';
import type { FlowMeta, FlowRecord } from './flow-record.js';
import { TLS_PEEK_MAX_BYTES } from './tls-client-hello.js';

const { SYN, ACK, FIN, PSH } = TCP_FLAG;

function tracker(opts: { maxFlows?: number; peekBudgetBytes?: number } = {}) {
  const recs: { r: FlowRecord; m: FlowMeta }[] = [];
  const t = new FlowTracker({ sink: (r, m) => recs.push({ r, m }), ...opts });
  return { t, recs };
}

const obs = (t: FlowTracker, p: Buffer, now: number) => t.observe(p, 0, p.length, 0, now);

describe('TLS peek under abuse (issue #12 item 1)', () => {
  it('SYN + a 0x16 segment with no SYN-ACK: no peek buffer, and the flow expires at the half-open (syn_sent 120 s) timeout', () => {
    const { t, recs } = tracker();
    const k = conv();
    obs(t, k.c(SYN, 0, 0), 1000);
    obs(t, k.c(ACK | PSH, 1, 1, Buffer.of(0x16, 3, 1, 0x40, 0, 1, 0, 0x3f, 0xfc)), 1001);
    obs(t, k.c(ACK | PSH, 30_000, 1, Buffer.of(1)), 1002); // would have grown a peek to 32 KiB
    expect(t.peekBudget.heldBytes).toBe(0);
    expect(t.nextTimeoutMs()).toBe(1002 + 120_000);
    t.onTimeout(1002 + 120_000 - 1);
    expect(recs).toHaveLength(0);
    t.onTimeout(1002 + 120_000);
    expect(recs[0]!.r).toMatchObject({ closeReason: 'idle_timeout', opened: false, sni: null, bytesSent: 10 });
  });

  it('data in the SYN (TCP Fast Open) then more data: the stream start was not peeked, so no buffer is held for it', () => {
    const { t, recs } = tracker();
    const k = conv();
    const hello = clientHello('tfo.test', ['h2']);
    obs(t, k.c(SYN, 0, 0, hello.subarray(0, 100)), 0);
    obs(t, k.s(SYN | ACK, 0, 101), 1);
    obs(t, k.c(ACK, 101, 1), 2);
    obs(t, k.c(ACK | PSH, 101, 1, hello.subarray(100)), 3);
    obs(t, k.c(ACK | PSH, 101 + 20_000, 1, Buffer.of(1)), 4); // out of order, far ahead
    expect(t.peekBudget.heldBytes).toBe(0);
    t.flush();
    expect(recs[0]!.r).toMatchObject({ opened: true, sni: null, bytesSent: hello.length + 1 });
  });

  it('the whole handshake seen: the ClientHello is read and its buffer returned to the budget', () => {
    const { t, recs } = tracker();
    const k = conv();
    const hello = clientHello('ok.test', ['h2'], 3000, 1000); // four records
    [k.c(SYN, 0, 0), k.s(SYN | ACK, 0, 1), k.c(ACK, 1, 1)].forEach((p, i) => obs(t, p, i));
    obs(t, k.c(ACK, 1 + 1500, 1, hello.subarray(1500)), 4); // second half first
    expect(t.peekBudget.heldBytes).toBeGreaterThan(0);
    obs(t, k.c(ACK, 1, 1, hello.subarray(0, 1500)), 5);
    expect(t.peekBudget.heldBytes).toBe(0);
    t.flush();
    expect(recs[0]!.r).toMatchObject({ sni: 'ok.test', alpn: 'h2', opened: true, bytesSent: hello.length });
  });

  it('N flows × 32 KiB of peek cannot pass the global budget; the refusals are counted and bytes still counted', () => {
    const budget = 256 * 1024;
    const { t, recs } = tracker({ peekBudgetBytes: budget });
    const flows = 64;
    let now = 0;
    for (let f = 0; f < flows; f++) {
      const k = conv('10.0.0.1', '10.0.0.2', 2000 + f, 443);
      for (const p of [k.c(SYN, 0, 0), k.s(SYN | ACK, 0, 1), k.c(ACK, 1, 1),
        // A record announcing a 30,000-byte ClientHello, then a byte near the end of the peek window.
        k.c(ACK | PSH, 1, 1, Buffer.of(22, 3, 1, 0x40, 0, 1, 0, 0x75, 0x30)),
        k.c(ACK | PSH, 1 + TLS_PEEK_MAX_BYTES - 10, 1, Buffer.of(7))]) {
        obs(t, p, now++);
        expect(t.peekBudget.heldBytes).toBeLessThanOrEqual(budget);
      }
    }
    expect(t.peekBudget.heldBytes).toBeGreaterThan(budget - TLS_PEEK_MAX_BYTES);
    expect(t.peekBudget.refused).toBeGreaterThan(0);
    t.flush();
    expect(t.peekBudget.heldBytes).toBe(0); // every buffer returned
    expect(recs.every((x) => x.r.bytesSent === 10)).toBe(true);
  });

  it('a ClientHello sent one byte per segment costs O(1) copying per segment (no re-copy or re-parse of the buffer)', () => {
    const { t, recs } = tracker();
    const k = conv();
    const hello = clientHello('slow.test', ['http/1.1'], 6000, 512);
    [k.c(SYN, 0, 0), k.s(SYN | ACK, 0, 1), k.c(ACK, 1, 1)].forEach((p, i) => obs(t, p, i));
    let hsBytes = 0;
    for (let p = 0; p < hello.length; p += 5 + hello.readUInt16BE(p + 3)) hsBytes += hello.readUInt16BE(p + 3);
    for (let n = 0; n < hello.length; n++) {
      obs(t, k.c(ACK, 1 + n, 1, hello.subarray(n, n + 1)), 10 + n);
      // Each byte is stored once and moved once; buffer growth doubles, so it adds at most as much again.
      expect(t.peekBudget.bytesCopied).toBeLessThanOrEqual(4 * (n + 1) + 2048);
    }
    expect(t.peekBudget.bytesParsed).toBe(hsBytes); // the message parsed exactly once
    t.flush();
    expect(recs[0]!.r).toMatchObject({ sni: 'slow.test', alpn: 'http/1.1', bytesSent: hello.length });
  });
});

/** The flow-table hash of 480eaf6: MurmurHash3 steps with the fixed seed 0x9747b28c, endpoints summed. */
function oldHash(src: number, dst: number, sport: number, dport: number, proto: number): number {
  const mix = (h: number, k: number) => {
    k = Math.imul(k, 0xcc9e2d51); k = (k << 15) | (k >>> 17); k = Math.imul(k, 0x1b873593);
    h ^= k; h = (h << 13) | (h >>> 19);
    return (Math.imul(h, 5) + 0xe6546b64) | 0;
  };
  const fmix = (h: number) => {
    h ^= h >>> 16; h = Math.imul(h, 0x85ebca6b); h ^= h >>> 13; h = Math.imul(h, 0xc2b2ae35); h ^= h >>> 16;
    return h;
  };
  const hs = mix(mix(mix(mix(mix(0x9747b28c, src), 0), 0), 0), sport);
  const hd = mix(mix(mix(mix(mix(0x9747b28c, dst), 0), 0), 0), dport);
  return fmix((hs + hd) ^ (proto | (4 << 8)));
}

describe('flow-table hash (issue #12 item 11)', () => {
  it('tuples chosen to collide under the old fixed seed spread out: probe length stays bounded', () => {
    // The index for the first 1,024 flows has 2,048 slots (mask 0x7ff): find 400 tuples whose old hash shares one home slot.
    const dst = (192 << 24 | 2 << 8 | 1) >>> 0;
    const chosen: [number, number][] = [];
    for (let src = (10 << 24) >>> 0; chosen.length < 400; src++) {
      for (let sport = 1024; sport < 65536 && chosen.length < 400; sport += 1) {
        if ((oldHash(src, dst, sport, 443, 6) & 0x7ff) === 0x155) chosen.push([src, sport]);
      }
    }
    const { t } = tracker({ maxFlows: 1024 });
    for (const [src, sport] of chosen) {
      const a = `${src >>> 24}.${(src >>> 16) & 255}.${(src >>> 8) & 255}.${src & 255}`;
      obs(t, craftTcp({ src: a, dst: '192.0.2.1', srcPort: sport, dstPort: 443, seq: 1, flags: SYN }), 0);
    }
    expect(t.tableSize).toBe(400);
    // With the old hash every one of them probes from the same home slot: the longest probe is 400.
    expect(t.maxProbeLength()).toBeLessThanOrEqual(24);
  });

  it('is HalfSipHash-1-3: agrees with a byte-oriented reference that reproduces the published HalfSipHash-2-4 vectors', () => {
    const ref = (msg: Uint8Array, key: Uint8Array, c: number, d: number): number => {
      const rd = (b: Uint8Array, o: number) => (b[o]! | b[o + 1]! << 8 | b[o + 2]! << 16 | b[o + 3]! << 24) | 0;
      const r = (x: number, n: number) => (x << n) | (x >>> (32 - n));
      const k0 = rd(key, 0), k1 = rd(key, 4);
      const v = [k0, k1, 0x6c796765 ^ k0, 0x74656462 ^ k1];
      const round = () => {
        v[0] = (v[0]! + v[1]!) | 0; v[1] = r(v[1]!, 5) ^ v[0]!; v[0] = r(v[0]!, 16);
        v[2] = (v[2]! + v[3]!) | 0; v[3] = r(v[3]!, 8) ^ v[2]!;
        v[0] = (v[0]! + v[3]!) | 0; v[3] = r(v[3]!, 7) ^ v[0]!;
        v[2] = (v[2]! + v[1]!) | 0; v[1] = r(v[1]!, 13) ^ v[2]!; v[2] = r(v[2]!, 16);
      };
      const full = msg.length & ~3;
      const block = (m: number) => { v[3] ^= m; for (let i = 0; i < c; i++) round(); v[0] ^= m; };
      for (let o = 0; o < full; o += 4) block(rd(msg, o));
      let b = msg.length << 24;
      for (let i = full; i < msg.length; i++) b |= msg[i]! << (8 * (i - full));
      block(b);
      v[2] ^= 0xff;
      for (let i = 0; i < d; i++) round();
      return (v[1]! ^ v[3]!) >>> 0;
    };
    const key = Uint8Array.of(0, 1, 2, 3, 4, 5, 6, 7);
    const seq = (n: number) => Uint8Array.from({ length: n }, (_, i) => i);
    // Published HalfSipHash-2-4 32-bit vectors (key 00..07, message 00..n-1) for n = 0, 4, 8.
    expect([ref(seq(0), key, 2, 4), ref(seq(4), key, 2, 4), ref(seq(8), key, 2, 4)]).toEqual([0x5b9f35a9, 0x89466e2a, 0x8f84b8d0]);
    fc.assert(fc.property(fc.uint32Array({ minLength: 1, maxLength: 10 }), fc.uint8Array({ minLength: 8, maxLength: 8 }), (w, k) => {
      const bytes = new Uint8Array(w.length * 4);
      w.forEach((x, i) => new DataView(bytes.buffer).setUint32(i * 4, x, true));
      const k0 = new DataView(k.buffer).getUint32(0, true), k1 = new DataView(k.buffer).getUint32(4, true);
      return (halfSipHash13(w, w.length, k0, k1) >>> 0) === ref(bytes, k, 1, 3);
    }), { numRuns: 300 });
  });
});

describe('observeParsed (parse once, issue #11 §4)', () => {
  it('gives the same records, counters and drops as observe for the same packets', () => {
    const k = conv('fd00::1', 'fd00::2', 5555, 443);
    const hello = clientHello('p.test', ['h2']);
    const pkts = [k.c(SYN, 0, 0), k.s(SYN | ACK, 0, 1), k.c(ACK, 1, 1), k.c(ACK | PSH, 1, 1, hello), k.s(ACK, 1, 1 + hello.length),
      craftUdp({ src: '10.0.0.1', dst: '10.0.0.9', srcPort: 1, dstPort: 53, payload: Buffer.alloc(20) }),
      k.c(FIN | ACK, 1 + hello.length, 1), k.s(FIN | ACK, 1, 2 + hello.length), k.c(ACK, 2 + hello.length, 2)];
    const a = tracker();
    const b = tracker();
    const pi = new PacketInfo();
    pkts.forEach((p, i) => {
      const ra = a.t.observe(p, 0, p.length, i & 1, i);
      expect(parseIpPacket(p, 0, p.length, pi)).toBe(0);
      expect(b.t.observeParsed(p, pi, i & 1, i)).toBe(ra);
    });
    a.t.flush();
    b.t.flush();
    expect(b.recs).toEqual(a.recs);
    expect(b.recs[0]!.r).toMatchObject({ sni: 'p.test', closeReason: 'fin' });
    expect(Array.from(b.t.counters)).toEqual(Array.from(a.t.counters));
    expect(Array.from(b.t.drops)).toEqual(Array.from(a.t.drops));
  });
});
