import { createHmac, randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { computeFlowId, DEFAULT_FLOW_ID_KEY } from './flow-id.js';
import { isoTime } from './flow-record.js';

/** The documented definition (module comment, docs/telemetry.md), with node's HMAC. */
function reference(key: Uint8Array, proto: number, v: number, a: number[], ap: number, b: number[], bp: number, isn: number): string {
  let swap = false;
  if (isn < 0) {
    const ka = [...a, ap];
    const kb = [...b, bp];
    for (let i = 0; i < 5; i++) if (ka[i] !== kb[i]) { swap = ka[i]! > kb[i]!; break; }
  }
  const [x, xp, y, yp] = swap ? [b, bp, a, ap] as const : [a, ap, b, bp] as const;
  const m = Buffer.alloc(43);
  m[0] = proto; m[1] = v;
  x.forEach((w, i) => m.writeUInt32BE(w >>> 0, 2 + 4 * i));
  y.forEach((w, i) => m.writeUInt32BE(w >>> 0, 18 + 4 * i));
  m.writeUInt16BE(xp, 34); m.writeUInt16BE(yp, 36);
  m[38] = isn < 0 ? 0 : 1;
  m.writeUInt32BE(isn < 0 ? 0 : isn >>> 0, 39);
  return createHmac('sha256', key).update('mtun-flow-id/1').update(m).digest().subarray(0, 8).toString('hex');
}

describe('cross-end flow ID (HMAC-SHA-256 in JavaScript over precomputed key states)', () => {
  it('equals node:crypto HMAC-SHA-256 of the documented input, for any tuple, ISN and key (short, 64-byte, long)', () => {
    const word = fc.integer({ min: 0, max: 0xffffffff });
    const words = fc.tuple(word, word, word, word);
    const key = fc.oneof(fc.constant(DEFAULT_FLOW_ID_KEY), fc.uint8Array({ minLength: 1, maxLength: 200 }), fc.constant(new Uint8Array(64).fill(7)));
    fc.assert(fc.property(key, fc.constantFrom(6, 17, 1, 58), fc.constantFrom(4, 6), words, fc.nat(65535), fc.oneof(words, words.map((w) => [...w])),
      fc.nat(65535), fc.oneof(fc.constant(-1), word), (k, proto, v, a, ap, b, bp, isn) => {
        expect(computeFlowId(k, proto, v, a, ap, b as number[], bp, isn)).toBe(reference(k, proto, v, a, ap, b as number[], bp, isn));
      }), { numRuns: 3000 });
  });

  it('orders the endpoints canonically without an ISN: both directions of a 5-tuple give one ID', () => {
    const k = randomBytes(32);
    const a = [0x0a000001, 0, 0, 0];
    const b = [0x0a000002, 0, 0, 0];
    expect(computeFlowId(k, 17, 4, a, 5000, b, 53, -1)).toBe(computeFlowId(k, 17, 4, b, 53, a, 5000, -1));
    expect(computeFlowId(k, 6, 4, a, 5000, b, 80, 1234)).not.toBe(computeFlowId(k, 6, 4, b, 80, a, 5000, 1234));
  });
});

describe('isoTime (flow records\' firstSeen / lastSeen)', () => {
  it('equals Date.prototype.toISOString for any time, fractional, in any order', () => {
    fc.assert(fc.property(fc.array(fc.oneof(fc.double({ min: 0, max: 4e12, noNaN: true }), fc.integer({ min: 0, max: 253_402_300_799_999 })), { maxLength: 50 }), (ts) => {
      for (const t of ts) expect(isoTime(t)).toBe(new Date(t).toISOString());
    }), { numRuns: 500 });
    expect(isoTime(1_780_000_000_999.9)).toBe(new Date(1_780_000_000_999.9).toISOString());
    expect(() => isoTime(Number.NaN)).toThrow(RangeError);
  });
});
