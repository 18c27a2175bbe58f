/**
 * CoDel (RFC 8289) on each connection's DATAGRAM send queue
 * (src/native/codel.c, src/native/quic-conn.c codel_drops_head): the C
 * state machine against the RFC's pseudocode (testing/codel-model.ts), its
 * behaviours by section, and the engine dropping a stale head unsent.
 */
import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { createDevCa, issueServerCert } from '../certs/pki.js';
import { loadNative } from '../native/addon.js';
import { INFO_DGRAM_SEND_DELAY_DROPPED } from './engine-abi.js';
import type { EngineConnection } from './engine.js';
import { ngtcp2Engine as e } from './ngtcp2.js';
import { CoDelModel } from './testing/codel-model.js';
import { pumpEngines } from './testing/engine-pair.js';

interface Dequeue { sojournUs: number; nowUs: number; small: boolean }

/** The C state machine's verdicts for a sequence of dequeues (µs). */
function native(targetUs: number, intervalUs: number, seq: readonly Dequeue[]): boolean[] {
  const out = new Uint8Array(seq.length);
  loadNative().codelTrace(targetUs, intervalUs, Float64Array.from(seq, (d) => d.sojournUs), Float64Array.from(seq, (d) => d.nowUs),
    Uint8Array.from(seq, (d) => (d.small ? 1 : 0)), out);
  return Array.from(out, (x) => x === 1);
}

function model(targetUs: number, intervalUs: number, seq: readonly Dequeue[]): boolean[] {
  const m = new CoDelModel(targetUs * 1000, intervalUs * 1000);
  return seq.map((d) => m.onDequeue(Math.trunc(d.sojournUs * 1000), Math.trunc(d.nowUs * 1000), d.small));
}

/** A head every `stepUs` from `startUs`, each having waited `sojournUs`. */
function steady(startUs: number, stepUs: number, count: number, sojournUs: number): Dequeue[] {
  return Array.from({ length: count }, (_, i) => ({ sojournUs, nowUs: startUs + i * stepUs, small: false }));
}

const dropTimes = (seq: readonly Dequeue[], drops: readonly boolean[]): number[] => seq.filter((_, i) => drops[i]).map((d) => d.nowUs);

describe('CoDel on the DATAGRAM send queue (RFC 8289)', () => {
  it('§5.4: no drop until the delay has stayed at or above target for a whole interval; then the head is dropped', () => {
    // 1 ms target, 10 ms interval; a head every 100 µs that waited 3 ms.
    const seq = steady(1_000, 100, 120, 3_000);
    const drops = native(1_000, 10_000, seq);
    expect(dropTimes(seq, drops)[0]).toBe(11_000); // first above at 1.0 ms, + 10 ms
    // Below target, or the head alone in the queue, never drops and restarts the wait.
    expect(native(1_000, 10_000, steady(0, 100, 500, 999))).not.toContain(true);
    const alone = steady(0, 100, 500, 5_000).map((d) => ({ ...d, small: true }));
    expect(native(1_000, 10_000, alone)).not.toContain(true);
  });

  it('§5.5: while the delay stays above target, drops come interval/√count apart; it stops once below target', () => {
    const seq = steady(0, 50, 1_200, 4_000); // 60 ms above target
    const t = dropTimes(seq, native(1_000, 10_000, seq));
    // First at 10 ms (count 1: next at +10 ms), then control_law from each scheduled time: +10/√2, +10/√3 … ms
    // (27.071 and 32.845 ms, seen on the 50 µs grid).
    expect(t.slice(0, 4)).toEqual([10_000, 20_000, 27_100, 32_850]);
    const gaps = t.slice(1).map((x, i) => x - t[i]!);
    for (let i = 1; i < gaps.length; i++) expect(gaps[i]!).toBeLessThanOrEqual(gaps[i - 1]!);
    // Then 20 ms below target: no drop, and the dropping state ends.
    const after = [...seq, ...steady(60_000, 50, 400, 200)];
    const d2 = native(1_000, 10_000, after);
    expect(d2.slice(seq.length)).not.toContain(true);
  });

  it('§5.6: re-entering soon after leaving resumes near the last drop rate, not from count 1', () => {
    const m = new CoDelModel(1_000_000, 10_000_000);
    const run = (seq: Dequeue[]): void => seq.forEach((d) => m.onDequeue(d.sojournUs * 1000, d.nowUs * 1000, d.small));
    run(steady(0, 50, 1_200, 4_000)); // 60 ms above target: several drops
    const count = m.dropCount;
    expect(count).toBeGreaterThan(3);
    run(steady(60_000, 50, 20, 100)); // 1 ms below target: leaves the dropping state
    expect(m.isDropping).toBe(false);
    // Above target again, soon: the first dequeue starts the interval, and 10 ms later dropping resumes with count − lastCount.
    run(steady(61_000, 50, 202, 4_000));
    expect(m.isDropping).toBe(true);
    expect(m.dropCount).toBe(count - 1);
  });

  it('the C state machine and the RFC model agree on random dequeue sequences (targets, intervals, regimes, queue empties)', () => {
    const regime = fc.record({
      len: fc.integer({ min: 1, max: 200 }),
      stepUs: fc.integer({ min: 1, max: 5_000 }),
      sojournUs: fc.oneof(fc.integer({ min: 0, max: 3_000 }), fc.integer({ min: 0, max: 200_000 })),
      jitterUs: fc.integer({ min: 0, max: 2_000 }),
      small: fc.double({ min: 0, max: 1, noNaN: true }),
    });
    fc.assert(
      fc.property(
        fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 20_000 })),
        fc.integer({ min: 1, max: 200_000 }),
        fc.array(regime, { minLength: 1, maxLength: 12 }),
        fc.integer({ min: 0, max: 0x7fffffff }),
        (targetUs, extraUs, regimes, seed) => {
          const intervalUs = targetUs + extraUs;
          let now = 1 + (seed % 1_000_000);
          let r = seed;
          const rand = (): number => ((r = (Math.imul(r, 1103515245) + 12345) >>> 0) / 2 ** 32);
          const seq: Dequeue[] = [];
          for (const g of regimes) {
            for (let i = 0; i < g.len; i++) {
              now += g.stepUs;
              seq.push({ sojournUs: Math.max(0, g.sojournUs + Math.round((rand() - 0.5) * g.jitterUs)), nowUs: now, small: rand() < g.small * 0.2 });
            }
          }
          expect(native(targetUs, intervalUs, seq)).toEqual(model(targetUs, intervalUs, seq));
        },
      ),
      { numRuns: 2_000 },
    );
  });
});

describe('the engine drops a DATAGRAM that waited too long in its send queue', () => {
  const enc = (s: string): Uint8Array => new TextEncoder().encode(s);
  const S = { host: '127.0.0.1', port: 443 };
  const C = { host: '127.0.0.1', port: 5555 };
  const sleep = (ms: number): void => {
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
  };

  /** A connected pair; the client's queue delay is `queueDelay` ([target, interval] µs) or off. */
  async function pair(queueDelay: [number, number] | null): Promise<{ c: EngineConnection; s: EngineConnection; pump: () => void }> {
    const ca = await createDevCa();
    const srv = await issueServerCert(ca);
    const cfg = (server: boolean) => {
      const k = server ? e.Config.withTls(false, null, enc(srv.keyPem), enc(srv.certPem)) : e.Config.withTls(true, enc(ca.certPem), null, null);
      k.setApplicationProtos(['h3']);
      k.enableDgram(true, 1024, 1024);
      if (!server && queueDelay !== null) k.setDgramQueueDelay(queueDelay[0], queueDelay[1]);
      k.setInitialMaxData(1 << 20);
      k.setInitialMaxStreamsBidi(10);
      return k;
    };
    const scfg = cfg(true);
    const c = e.Connection.connect('localhost', randomBytes(16), C, S, cfg(false));
    let s: EngineConnection | null = null;
    const pump = (): void => {
      s = pumpEngines(c, scfg, s, C, S);
    };
    pump();
    expect(c.isEstablished()).toBe(true);
    return { c, s: s!, pump };
  }

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
    const p = await pair([1_000, 10_000]);
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
