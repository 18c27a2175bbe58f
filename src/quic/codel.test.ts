/**
 * CoDel (RFC 8289) on each connection's DATAGRAM send queue
 * (src/native/codel.c, src/native/quic-conn.c codel_drops_head): the C
 * state machine against the RFC's pseudocode (testing/codel-model.ts), its
 * behaviours by section, and the engine dropping a stale head unsent.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { loadNative } from '../native/addon.js';
import { INFO_DGRAM_SEND_DELAY_DROPPED } from './engine-abi.js';
import type { EngineConnection } from './engine.js';
import { ngtcp2Engine as e } from './ngtcp2.js';
import { RfcCoDelQueue } from './testing/codel-model.js';
import { connectedEnginePair, PAIR_CLIENT, PAIR_SERVER } from './testing/engine-pair.js';

interface Outcome { fate: number[]; at: number[] }

/** The engine's state machine over a FIFO (packets enqueued at enqUs, the link wanting one at each deqUs). */
function engineQueue(targetUs: number, intervalUs: number, enqUs: readonly number[], deqUs: readonly number[]): Outcome {
  const fate = new Uint8Array(enqUs.length);
  const at = new Uint32Array(enqUs.length);
  loadNative().codelQueue(targetUs, intervalUs, Float64Array.from(enqUs), Float64Array.from(deqUs), fate, at);
  return { fate: Array.from(fate), at: Array.from(at) };
}

/** RFC 8289's pseudocode over the same events (times truncated to ns as the C does). */
function rfcQueue(targetUs: number, intervalUs: number, enqUs: readonly number[], deqUs: readonly number[]): Outcome {
  const m = new RfcCoDelQueue(targetUs * 1000, intervalUs * 1000);
  const fate = enqUs.map(() => 0);
  const at = enqUs.map(() => 0);
  let next = 0;
  deqUs.forEach((t, k) => {
    const now = Math.trunc(t * 1000);
    while (next < enqUs.length && Math.trunc(enqUs[next]! * 1000) <= now) m.enqueue(next, Math.trunc(enqUs[next++]! * 1000));
    const r = m.dequeue(now);
    for (const id of r.dropped) {
      fate[id] = 2;
      at[id] = k;
    }
    if (r.sent !== null) {
      fate[r.sent] = 1;
      at[r.sent] = k;
    }
  });
  return { fate, at };
}

/** `n` packets at `t0`, and the link taking one every `stepUs` from `t0` for `count` turns. */
const burst = (n: number, t0 = 0): number[] => Array.from({ length: n }, () => t0);
const link = (count: number, stepUs: number, t0 = 0): number[] => Array.from({ length: count }, (_, k) => t0 + k * stepUs);
const dropTimes = (o: Outcome, deqUs: readonly number[]): number[] => o.fate.flatMap((f, i) => (f === 2 ? [deqUs[o.at[i]!]!] : []));

describe('CoDel on the DATAGRAM send queue (RFC 8289)', () => {
  it('§5.4: no drop until the head has waited at or above target for a whole interval', () => {
    // 1,000 packets at once, the link takes one every 100 µs: head k waited k × 100 µs. Target 1 ms is
    // first reached at 1.0 ms, so the first drop is the dequeue at 11.0 ms (packet 110).
    const deq = link(300, 100);
    const o = engineQueue(1_000, 10_000, burst(1_000), deq);
    expect(o.fate.indexOf(2)).toBe(110);
    expect(dropTimes(o, deq)[0]).toBe(11_000);
    // Never below target, but never more than one packet behind the head: no drop (§5.4's second term).
    const pairs = Array.from({ length: 400 }, (_, i) => Math.floor(i / 2) * 5_000);
    expect(engineQueue(1_000, 10_000, pairs, link(400, 2_500, 4_000)).fate).not.toContain(2);
  });

  it('§5.5: while the delay stays above target, drops come interval/√count apart (count from each scheduled time)', () => {
    const deq = link(700, 100);
    const o = engineQueue(1_000, 10_000, burst(1_000), deq);
    // 11 ms, +10 ms, +10/√2 (28.071 → the dequeue at 28.1), +10/√3 (33.845 → 33.9), +10/√4 (38.845 → 38.9) ms.
    expect(dropTimes(o, deq).slice(0, 5)).toEqual([11_000, 21_000, 28_100, 33_900, 38_900]);
    expect(o).toEqual(rfcQueue(1_000, 10_000, burst(1_000), deq));
  });

  it('§5.5: dropping ends once the heads are below target again', () => {
    // A packet every 100 µs for 60 ms; the link takes one every 150 µs for 30 ms (a queue builds), then
    // every 20 µs: the queue drains within a few ms and later heads wait under the target.
    const enq = Array.from({ length: 600 }, (_, i) => i * 100);
    const deq = [...link(200, 150), ...link(1_500, 20, 30_000)];
    const o = engineQueue(1_000, 10_000, enq, deq);
    const t = dropTimes(o, deq);
    expect(t.length).toBeGreaterThan(2);
    expect(t.every((x) => x >= 11_000 && x < 36_000)).toBe(true);
    expect(o).toEqual(rfcQueue(1_000, 10_000, enq, deq));
  });

  it('§5.6: re-entering soon after leaving resumes near the last drop rate (count − lastcount), not from 1', () => {
    // Two bursts 2 ms apart in time of emptiness: the second episode's first two drops are closer than an interval.
    const enq = [...burst(600), ...burst(600, 62_000)];
    const deq = [...link(600, 100), ...link(600, 100, 62_000)];
    const o = engineQueue(1_000, 10_000, enq, deq);
    const second = dropTimes(o, deq).filter((t) => t >= 62_000);
    expect(second.length).toBeGreaterThan(2);
    expect(second[1]! - second[0]!).toBeLessThan(10_000);
    expect(o).toEqual(rfcQueue(1_000, 10_000, enq, deq));
  });

  it('the engine\'s one-head-per-call state machine makes the RFC pseudocode\'s decisions on random queues', () => {
    const phase = fc.record({
      packets: fc.integer({ min: 0, max: 300 }),
      arrivalUs: fc.integer({ min: 0, max: 3_000 }), // spacing of arrivals (0: a burst)
      linkUs: fc.integer({ min: 1, max: 3_000 }), // spacing of dequeue opportunities
      linkTurns: fc.integer({ min: 0, max: 400 }),
      gapUs: fc.integer({ min: 0, max: 300_000 }),
    });
    let withDrops = 0;
    let reentries = 0;
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 20_000 }),
        fc.integer({ min: 1, max: 200_000 }),
        fc.array(phase, { minLength: 1, maxLength: 8 }),
        (targetUs, extraUs, phases) => {
          const intervalUs = targetUs + extraUs;
          const enq: number[] = [];
          const deq: number[] = [];
          let t = 1;
          for (const ph of phases) {
            for (let i = 0; i < ph.packets; i++) enq.push(t + i * ph.arrivalUs);
            for (let k = 0; k < ph.linkTurns; k++) deq.push(t + k * ph.linkUs);
            t += Math.max(ph.packets * ph.arrivalUs, ph.linkTurns * ph.linkUs) + ph.gapUs;
          }
          enq.sort((a, b) => a - b);
          deq.sort((a, b) => a - b);
          const o = engineQueue(targetUs, intervalUs, enq, deq);
          expect(o).toEqual(rfcQueue(targetUs, intervalUs, enq, deq));
          const drops = o.fate.filter((f) => f === 2).length;
          if (drops > 0) withDrops++;
          if (drops > 4 && phases.length > 2) reentries++;
        },
      ),
      { numRuns: 2_000 },
    );
    // The generator reaches the dropping state often, and episodes after earlier ones.
    expect(withDrops).toBeGreaterThan(400);
    expect(reentries).toBeGreaterThan(100);
  });

  it('the test hook refuses a target that is not below its interval', () => {
    expect(() => engineQueue(1_000, 1_000, [0], [0])).toThrow(/0 < targetUs < intervalUs/);
  });
});

describe('the engine drops a DATAGRAM that waited too long in its send queue', () => {
  const S = PAIR_SERVER;
  const C = PAIR_CLIENT;
  const sleep = (ms: number): void => {
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
  };

  /** A connected pair; the client's queue delay is `queueDelay` ([target, interval] µs) or off. */
  const pair = (queueDelay: [number, number] | null) =>
    connectedEnginePair(1024, (k, server) => {
      if (!server && queueDelay !== null) k.setDgramQueueDelay(queueDelay[0], queueDelay[1]);
    });

  /** Queues 300 datagrams, then sends one packet every 2 ms for `ms` (a path slower than the queue's input). */
  function slowPath(p: { c: EngineConnection; s: EngineConnection }, ms: number): { received: number; dropped: number; queued: number } {
    const buf = new Uint8Array(1500);
    const d = new Uint8Array(1000);
    for (let i = 0; i < 300; i++) expect(p.c.dgramSend(d)).toBeUndefined();
    let received = 0;
    const end = performance.now() + ms;
    while (performance.now() < end) {
      sleep(2);
      const r = p.c.send(buf);
      if (r !== null) p.s.recv(buf, { from: C, to: S }, 0, r[0]);
      while (p.s.dgramRecv(buf) !== null) received++;
      for (let a = p.s.send(buf); a !== null; a = p.s.send(buf)) p.c.recv(buf, { from: S, to: C }, 0, a[0]);
    }
    return { received, dropped: p.c.snapshot()[INFO_DGRAM_SEND_DELAY_DROPPED]!, queued: p.c.dgramSendQueueLen() };
  }

  it('a queue drained slower than it fills loses stale heads (counted), and every datagram is accounted for', async () => {
    const r = slowPath(await pair([1_000, 10_000]), 80);
    expect(r.dropped).toBeGreaterThan(0);
    expect(r.received + r.dropped + r.queued).toBe(300);
  });

  it('off (the default of a bare engine config): the same slow path drops nothing', async () => {
    const r = slowPath(await pair(null), 80);
    expect(r.dropped).toBe(0);
    expect(r.received + r.queued).toBe(300);
  });

  it('a queue drained promptly drops nothing, however long it runs', async () => {
    // A 100 ms interval: a pause of the test process (GC, a busy CI box) inside one pump is no standing queue.
    const p = await pair([1_000, 100_000]);
    const buf = new Uint8Array(1500);
    let received = 0;
    for (let round = 0; round < 40; round++) {
      for (let i = 0; i < 20; i++) p.c.dgramSend(new Uint8Array(1000));
      p.pump();
      while (p.s.dgramRecv(buf) !== null) received++;
      sleep(1);
    }
    expect(p.c.snapshot()[INFO_DGRAM_SEND_DELAY_DROPPED]).toBe(0);
    expect(received).toBe(800);
  });

  it('refuses a target that is not below its interval', async () => {
    const k = e.Config.withTls(true, null, null, null);
    expect(() => k.setDgramQueueDelay(10_000, 10_000)).toThrow(/0 < target/);
    expect(() => k.setDgramQueueDelay(-1, 10_000)).toThrow(/0 < target/);
    k.setDgramQueueDelay(0, 0); // off
  });
});
