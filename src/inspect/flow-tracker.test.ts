// Flow tracker: TCP state machine, exactly-once byte counting, RST window
// (RFC 9293 §3.10.7.4, RFC 5961 §3), timeouts (conntrack), eviction, L7 peek.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { craftIcmp, craftTcp, craftUdp } from '../packet/craft.js';
import { clientHello, conv } from './fixtures.js';
import { TCP_FLAG } from '../packet/ip-packet.js';
import { FlowTracker, FlowCounter } from './flow-tracker.js';
import type { FlowMeta, FlowRecord } from './flow-record.js';

const { SYN, ACK, FIN, RST, PSH } = TCP_FLAG;

function tracker(opts: { maxFlows?: number } = {}) {
  const recs: { r: FlowRecord; m: FlowMeta }[] = [];
  const t = new FlowTracker({ sink: (r, m) => recs.push({ r, m }), ...opts });
  return { t, recs };
}

function feed(t: FlowTracker, pkts: Buffer[], start = 0, step = 1) {
  let now = start;
  for (const p of pkts) { t.observe(p, 0, p.length, 0, now); now += step; }
  return now;
}

const bytes = (n: number, fill = 0x61) => new Uint8Array(n).fill(fill);

describe('FlowTracker TCP', () => {
  it('counts a clean handshake, data both ways and FIN close exactly once (RFC 9293 §3.5, §3.6)', () => {
    const { t, recs } = tracker();
    const k = conv();
    feed(t, [
      k.c(SYN, 0, 0), k.s(SYN | ACK, 0, 1), k.c(ACK, 1, 1),
      k.c(ACK | PSH, 1, 1, bytes(100)), k.s(ACK, 1, 101),
      k.s(ACK | PSH, 1, 101, bytes(3000)), k.c(ACK, 101, 3001),
      k.c(FIN | ACK, 101, 3001), k.s(FIN | ACK, 3001, 102), k.c(ACK, 102, 3002),
    ], 1000, 10);
    expect(recs).toHaveLength(1);
    const r = recs[0]!.r;
    expect(r).toMatchObject({
      proto: 'tcp', src: '10.0.0.1', srcPort: 40000, dst: '10.0.0.2', dstPort: 80, opened: true, midstream: false,
      closeReason: 'fin', bytesSent: 100, bytesReceived: 3000, packetsSent: 6, packetsReceived: 4, retransmits: 0,
    });
    expect(r.handshakeRttMs).toBe(20);
    expect(recs[0]!.m.synAckLegMs).toBe(10);
    // Late packets after close are absorbed, not a new flow.
    t.observe(k.c(ACK, 102, 3002), 0, 60, 0, 2000);
    t.flush();
    expect(recs).toHaveLength(1);
  });

  it('ignores retransmissions and overlaps, survives sequence wrap-around', () => {
    const { t, recs } = tracker();
    const k = conv('10.0.0.1', '10.0.0.2', 1, 2, 0xffffff00, 7);
    feed(t, [
      k.c(SYN, 0, 0), k.s(SYN | ACK, 0, 1), k.c(ACK, 1, 1),
      k.c(ACK, 1, 1, bytes(200)), // crosses 2^32
      k.c(ACK, 1, 1, bytes(200)), // full retransmit
      k.c(ACK, 101, 1, bytes(300)), // overlaps 100, adds 200
      k.c(ACK, 601, 1, bytes(50)), // gap 401..601 (out of order)
      k.c(ACK, 401, 1, bytes(200)), // fills the gap
    ]);
    t.flush();
    expect(recs[0]!.r.bytesSent).toBe(650);
    expect(recs[0]!.r.retransmits).toBe(2);
    expect(recs[0]!.m.outOfOrder).toBe(1); // the 601 segment; the gap filler starts at the next expected byte
    expect(recs[0]!.r.closeReason).toBe('open');
  });

  it('a retransmit is a segment with seen bytes, whatever the timing: a late original is not one, a resend 20 µs after it is', () => {
    // A capture on a loaded veth: the server's segment 2 reaches the tap 5 ms after segments 3 and 4 (tshark:
    // "retransmission", though its bytes are new), and segment 3 again 20 µs later (tshark: "out-of-order",
    // as it comes within the handshake RTT). The ground-truth netns test counts seen bytes for this reason.
    const { t, recs } = tracker();
    const k = conv();
    let now = 1000;
    const at = (dt: number, p: Buffer) => { now += dt; t.observe(p, 0, p.length, 0, now); };
    at(0, k.c(SYN, 0, 0)); at(0.02, k.s(SYN | ACK, 0, 1)); at(0.03, k.c(ACK, 1, 1));
    at(0.01, k.c(ACK | PSH, 1, 1, bytes(20)));
    at(0.01, k.s(ACK, 1, 21, bytes(1000)));
    at(0.01, k.s(ACK, 2001, 21, bytes(1000)));
    at(0.01, k.s(ACK, 3001, 21, bytes(1000)));
    at(5, k.s(ACK, 1001, 21, bytes(1000))); // late original of segment 2
    at(0.02, k.s(ACK, 2001, 21, bytes(1000))); // resend of segment 3
    t.flush();
    expect(recs[0]!.r).toMatchObject({ bytesReceived: 4000, retransmits: 1 });
    expect(recs[0]!.m.outOfOrder).toBe(2); // segments 3 and 4, above the hole
  });

  it('obeys an in-window RST, counts an out-of-window one (RFC 5961 §3)', () => {
    const { t, recs } = tracker();
    const k = conv();
    feed(t, [k.c(SYN, 0, 0), k.s(SYN | ACK, 0, 1), k.c(ACK, 1, 1), k.c(ACK, 1, 1, bytes(10))]);
    t.observe(k.s(RST, 1 + 10_000_000, 0), 0, 40, 0, 5);
    expect(recs).toHaveLength(0);
    expect(t.drops[14]).toBe(1);
    t.observe(k.c(RST | ACK, 11, 1), 0, 40, 0, 6);
    expect(recs).toHaveLength(1);
    expect(recs[0]!.r.closeReason).toBe('rst');
    expect(recs[0]!.m.rstIgnored).toBe(1);
  });

  it('accepts RST,ACK refusing a SYN', () => {
    const { t, recs } = tracker();
    const k = conv();
    feed(t, [k.c(SYN, 0, 0), k.s(RST | ACK, 0, 1)]);
    expect(recs[0]!.r).toMatchObject({ closeReason: 'rst', opened: false, handshakeRttMs: null });
  });

  it('picks up a flow mid-stream with the first sender as initiator', () => {
    const { t, recs } = tracker();
    const k = conv();
    feed(t, [k.s(ACK, 500, 100, bytes(1000)), k.c(ACK, 100, 1500), k.s(ACK, 1500, 100, bytes(10))]);
    t.flush();
    expect(recs[0]!.r).toMatchObject({ midstream: true, src: '10.0.0.2', srcPort: 80, bytesSent: 1010, bytesReceived: 0, opened: false });
  });

  it('drops SYN+FIN and flagless segments without creating state', () => {
    const { t } = tracker();
    const k = conv();
    expect(t.observe(k.c(SYN | FIN, 0, 0), 0, 40, 0, 0)).toBe(12);
    expect(t.observe(k.c(0, 0, 0), 0, 40, 0, 0)).toBe(12);
    expect(t.tableSize).toBe(0);
  });

  it('expires idle flows by state timeout and reports nextTimeoutMs', () => {
    const { t, recs } = tracker();
    const k = conv();
    feed(t, [k.c(SYN, 0, 0)], 0);
    expect(t.nextTimeoutMs()).toBe(120_000);
    t.onTimeout(119_999);
    expect(recs).toHaveLength(0);
    t.onTimeout(120_000);
    expect(recs[0]!.r.closeReason).toBe('idle_timeout');
    expect(t.nextTimeoutMs()).toBe(Infinity);
  });

  it('is bounded: evicts half-open flows before established ones', () => {
    const { t, recs } = tracker({ maxFlows: 4 });
    const est = conv('10.0.0.1', '10.0.0.2', 1, 2);
    feed(t, [est.c(SYN, 0, 0), est.s(SYN | ACK, 0, 1), est.c(ACK, 1, 1)], 0);
    for (let p = 0; p < 10; p++) {
      const k = conv('10.9.0.1', '10.0.0.2', 1000 + p, 80);
      t.observe(k.c(SYN, 0, 0), 0, 40, 0, 100 + p);
    }
    expect(t.tableSize).toBe(4);
    expect(recs.every((x) => x.r.closeReason === 'evicted' && x.r.srcPort >= 1000)).toBe(true);
    expect(recs).toHaveLength(7);
    expect(t.drops[15]).toBe(7);
  });

  it('reads SNI and ALPN from a ClientHello split over segments, and counts keep-alive HTTP requests', () => {
    const { t, recs } = tracker();
    const hello = clientHello('example.test', ['h2', 'http/1.1']);
    const k = conv();
    feed(t, [k.c(SYN, 0, 0), k.s(SYN | ACK, 0, 1), k.c(ACK, 1, 1),
      k.c(ACK, 1 + 20, 1, hello.subarray(20)), k.c(ACK, 1, 1, hello.subarray(0, 20))]);
    const h = conv('10.0.0.1', '10.0.0.2', 40001, 80);
    const req1 = Buffer.from('POST /up HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\n\r\nhello');
    const req2 = Buffer.from('GET /x HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n');
    const req3 = Buffer.from('GET /y HTTP/1.1\r\nHost: a.test\r\n\r\n');
    feed(t, [h.c(SYN, 0, 0), h.s(SYN | ACK, 0, 1), h.c(ACK, 1, 1),
      h.c(ACK, 1, 1, req1.subarray(0, 10)), h.c(ACK, 11, 1, req1.subarray(10)),
      h.c(ACK, 1 + req1.length, 1, Buffer.concat([req2, req3]))]);
    t.flush();
    expect(recs[0]!.r).toMatchObject({ sni: 'example.test', alpn: 'h2,http/1.1', httpRequests: 0 });
    expect(recs[1]!.r).toMatchObject({ sni: null, httpRequests: 3 });
    expect(recs[1]!.m.httpHost).toBe('a.test');
  });

  it('tracks UDP and ICMP echo pseudo-flows', () => {
    const { t, recs } = tracker();
    t.observe(craftUdp({ src: 'fd00::1', dst: 'fd00::2', srcPort: 5000, dstPort: 53, payload: bytes(30) }), 0, 78, 0, 0);
    t.observe(craftUdp({ src: 'fd00::2', dst: 'fd00::1', srcPort: 53, dstPort: 5000, payload: bytes(70) }), 0, 118, 1, 1);
    const req = craftIcmp({ src: '10.0.0.1', dst: '10.0.0.2', type: 8, rest: (77 << 16) | 1, payload: bytes(56) });
    const rep = craftIcmp({ src: '10.0.0.2', dst: '10.0.0.1', type: 0, rest: (77 << 16) | 1, payload: bytes(56) });
    t.observe(req, 0, req.length, 0, 2);
    t.observe(rep, 0, rep.length, 1, 3);
    t.flush();
    expect(recs[0]!.r).toMatchObject({ proto: 'udp', src: 'fd00::1', dst: 'fd00::2', bytesSent: 30, bytesReceived: 70 });
    expect(recs[1]!.r).toMatchObject({ proto: 'icmp', srcPort: 77, dstPort: 0, packetsSent: 1, packetsReceived: 1, bytesSent: 56 });
    expect(t.counters[FlowCounter.PAYLOAD_BYTES_IN]).toBe(70 + 56);
  });

  it('shows live bytes before the flow closes', () => {
    const { t } = tracker();
    const k = conv();
    feed(t, [k.c(SYN, 0, 0), k.s(SYN | ACK, 0, 1), k.c(ACK, 1, 1), k.c(ACK, 1, 1, bytes(1234))]);
    expect(t.liveFlows()[0]!).toMatchObject({ bytesSent: 1234, closeReason: 'open' });
    expect(t.liveFlowEntries(3)[0]!.meta).toMatchObject({ tunnelDirection: 0, ordinal: 0 });
    expect(t.liveFlows(4)).toHaveLength(0); // idle since before 4 ms: skipped
    expect(t.counters[FlowCounter.PAYLOAD_BYTES_OUT]).toBe(1234);
  });

  it('leaves flows still in their handshake out of live snapshots on request; they appear once established', () => {
    const { t } = tracker();
    const k = conv();
    feed(t, [k.c(SYN, 0, 0)]);
    expect(t.liveFlows()).toHaveLength(1);
    expect(t.liveFlows(-Infinity, true)).toHaveLength(0); // SYN only
    feed(t, [k.s(SYN | ACK, 0, 1)], 1);
    expect(t.liveFlows(-Infinity, true)).toHaveLength(0); // SYN-ACK, no ACK yet
    feed(t, [k.c(ACK, 1, 1)], 2);
    expect(t.liveFlows(-Infinity, true)).toHaveLength(1);
  });

  it('gives a flow the same flow ID in every snapshot and in its close record, also for a reused slot', () => {
    const { t, recs } = tracker({ maxFlows: 1 });
    const a = conv();
    feed(t, [a.c(SYN, 0, 0), a.s(SYN | ACK, 0, 1), a.c(ACK, 1, 1)]);
    const live = t.liveFlows()[0]!.flowId;
    expect(t.liveFlows()[0]!.flowId).toBe(live);
    t.flush();
    expect(recs[0]!.r.flowId).toBe(live);
    // A new connection in the same (freed) slot: another ISN, another ID, not the cached one.
    const b = conv('10.0.0.3', '10.0.0.2', 40001, 80, 7777);
    feed(t, [b.c(SYN, 0, 0)], 10);
    const second = t.liveFlows()[0]!;
    expect(second.flowId).not.toBe(live);
    t.flush();
    expect(recs[1]!.r.flowId).toBe(second.flowId);
  });
});

describe('FlowTracker under abuse', () => {
  it('SYN flood: the table stays bounded, half-open flows are evicted and counted', () => {
    const { t, recs } = tracker({ maxFlows: 1000 });
    const est = conv('10.0.0.1', '10.0.0.2', 1, 2);
    feed(t, [est.c(SYN, 0, 0), est.s(SYN | ACK, 0, 1), est.c(ACK, 1, 1), est.c(ACK, 1, 1, bytes(10))]);
    for (let i = 0; i < 50_000; i++) {
      const p = craftTcp({ src: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`, dst: '10.0.0.2', srcPort: 1024 + (i % 60000), dstPort: 80, seq: i, flags: SYN });
      t.observe(p, 0, p.length, 0, 10 + i);
    }
    expect(t.tableSize).toBe(1000);
    expect(t.drops[15]).toBe(50_000 - 999); // 999 free slots next to the established flow, then one eviction per SYN
    expect(recs.some((x) => x.r.srcPort === 1)).toBe(false); // the established flow survived
    t.flush();
    expect(recs.find((x) => x.r.srcPort === 1)!.r.bytesSent).toBe(10);
  });

  it('RST storm: blind RSTs create no state and do not close a flow', () => {
    const { t, recs } = tracker();
    const k = conv();
    feed(t, [k.c(SYN, 0, 0), k.s(SYN | ACK, 0, 1), k.c(ACK, 1, 1)]);
    for (let i = 0; i < 5000; i++) {
      const blind = k.s(RST, 100_000 + i * 65_536 * 4, 0);
      t.observe(blind, 0, blind.length, 0, 5);
      const other = craftTcp({ src: '10.7.7.7', dst: '10.0.0.2', srcPort: i, dstPort: 80, seq: i, flags: RST });
      t.observe(other, 0, other.length, 0, 5);
    }
    expect(t.tableSize).toBe(1);
    expect(recs).toHaveLength(0);
    expect(t.drops[14]).toBe(10_000);
  });

  it('overlapping retransmissions with new data count only the new bytes, and too many holes are bounded', () => {
    const { t, recs } = tracker();
    const k = conv();
    feed(t, [k.c(SYN, 0, 0), k.s(SYN | ACK, 0, 1), k.c(ACK, 1, 1)]);
    // 100 one-byte islands with gaps: more than MAX_HOLES (64) intervals.
    for (let i = 0; i < 100; i++) { const p = k.c(ACK, 1 + 10 + i * 10, 1, bytes(1)); t.observe(p, 0, p.length, 0, 4); }
    expect(t.drops[17]).toBeGreaterThan(0);
    const all = k.c(ACK, 1, 1, bytes(1100));
    t.observe(all, 0, all.length, 0, 5);
    t.flush();
    // Merged holes were counted when merged; the full segment fills the rest: 500 in total.
    expect(recs[0]!.r.bytesSent).toBe(1100);
  });
});

describe('FlowTracker properties (fast-check)', () => {
  it('random bytes never throw', () => {
    const { t } = tracker({ maxFlows: 64 });
    fc.assert(fc.property(fc.uint8Array({ maxLength: 200 }), fc.integer({ min: 0, max: 1 }), (b, d) => {
      // Bias towards plausible headers so deep paths are reached.
      if (b.length > 0 && (b[0]! & 1) === 1) b[0] = (b[0]! & 0x0f) | 0x40;
      t.observe(b, 0, b.length, d, 0);
    }), { numRuns: 5000 });
  });

  for (const midstream of [false, true]) {
    it(`any stream cut into segments, duplicated and reordered, counts exactly its length (${midstream ? 'mid-stream' : 'handshake'})`, () => {
      fc.assert(fc.property(
        fc.integer({ min: 1, max: 20_000 }), fc.integer({ min: 0, max: 0xffffffff }),
        fc.array(fc.integer({ min: 1, max: 1500 }), { minLength: 1, maxLength: 60 }),
        fc.array(fc.nat(), { maxLength: 40 }), fc.infiniteStream(fc.nat()),
        (total, isn, cuts, dupIdx, rnd) => {
          const segs: [number, number][] = [];
          let p = 0, ci = 0;
          while (p < total) { const n = Math.min(cuts[ci++ % cuts.length]!, total - p); segs.push([p, n]); p += n; }
          for (const x of dupIdx) segs.push(segs[x % segs.length]!);
          // Overlapping retransmission spanning segment boundaries.
          if (segs.length > 2) segs.push([segs[1]![0], Math.min(total - segs[1]![0], segs[1]![1] + 7)]);
          const it = rnd[Symbol.iterator]();
          for (let i = segs.length - 1; i > 0; i--) { const j = it.next().value! % (i + 1); [segs[i], segs[j]] = [segs[j]!, segs[i]!]; }
          const { t, recs } = tracker();
          const k = conv('10.1.0.1', '10.1.0.2', 1, 2, isn, 99);
          if (!midstream) feed(t, [k.c(SYN, 0, 0), k.s(SYN | ACK, 0, 1), k.c(ACK, 1, 1)]);
          const payload = bytes(1500);
          for (const [off, n] of segs) {
            const pk = k.c(ACK, 1 + off, 1, payload.subarray(0, n));
            t.observe(pk, 0, pk.length, 0, 10);
          }
          t.flush();
          return recs.length === 1 && recs[0]!.r.bytesSent === total;
        }), { numRuns: 300 });
    });
  }
});
