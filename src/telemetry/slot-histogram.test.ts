import fc from 'fast-check';
import { Histogram, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { SlotHistogram } from './slot-histogram.js';

const BUCKETS = [0.0001, 0.001, 0.01, 0.1, 1, 10];
// Children 4 and 5 share child 0's and 1's labels: two slots can resolve to one label set.
const labelsOf = (c: number) => ({ reporter: 'gateway', peer_identity: `spiffe://x/${(c % 4) >> 1}`, stat: c & 1 ? 'max' : 'min' });

/**
 * The exposition text, lines sorted (label sets may come in another order),
 * each `_sum` value taken out into `sums` (by its line, sorted alike): children
 * that share labels are summed per child first, so the floating-point
 * additions come in another order and a sum may differ in its last bits
 * (cancellation near zero too: −1 + 1e-9 + 1). Sums are compared with a
 * tolerance ({@link sameSums}), everything else exactly.
 */
async function text(r: Registry): Promise<{ lines: string[]; sums: number[] }> {
  const lines = (await r.metrics()).split('\n').filter((l) => l !== '').sort();
  const sums: number[] = [];
  return {
    lines: lines.map((l) => {
      if (!l.includes('_sum{')) return l;
      const i = l.lastIndexOf(' ');
      sums.push(Number(l.slice(i + 1)));
      return `${l.slice(0, i)} <sum>`;
    }),
    sums,
  };
}

/** Sums equal but for rounding: within 1e-9 of each other, relative to their size when they are larger than 1. */
function sameSums(a: number[], b: number[]): void {
  expect(a).toHaveLength(b.length);
  a.forEach((x, i) => expect(Math.abs(x - b[i]!), `sum ${i}: ${x} vs ${b[i]}`).toBeLessThanOrEqual(1e-9 * Math.max(1, Math.abs(x), Math.abs(b[i]!))));
}

describe('SlotHistogram', () => {
  it('exports exactly what a prom-client Histogram with the same observations exports (oracle), for any observations', async () => {
    const value = fc.oneof(fc.constantFrom(0, ...BUCKETS, -1, 1e9), fc.double({ min: -1, max: 20, noNaN: true }));
    await fc.assert(fc.asyncProperty(fc.array(fc.tuple(fc.nat(5), value), { maxLength: 200 }), async (obs) => {
      const a = new Registry();
      const b = new Registry();
      const ours = new SlotHistogram({ name: 'x_seconds', help: 'help text', buckets: BUCKETS, registers: [a], labelsOf });
      const theirs = new Histogram({ name: 'x_seconds', help: 'help text', labelNames: ['reporter', 'peer_identity', 'stat'], buckets: BUCKETS, registers: [b] });
      for (const [c, v] of obs) {
        ours.observe(c, v);
        theirs.labels(labelsOf(c)).observe(v);
      }
      const [ta, tb] = [await text(a), await text(b)];
      expect(ta.lines).toEqual(tb.lines);
      sameSums(ta.sums, tb.sums);
      // JSON too, but for prom-client's exemplar fields (null: exemplars are off).
      // Label sets may come in another order: compare the samples as sorted JSON strings, sums apart.
      const json = async (r: Registry) => {
        const sums: [string, number][] = [];
        const metrics = (await r.getMetricsAsJSON()).map((m) => ({
          ...m,
          values: m.values.map((v) => {
            const key = JSON.stringify([v.metricName, Object.entries(v.labels).sort(([x], [y]) => x.localeCompare(y))]);
            if (v.metricName?.endsWith('_sum')) sums.push([key, v.value]);
            return v.metricName?.endsWith('_sum') ? key : JSON.stringify([key, v.value]);
          }).sort(),
        }));
        return { metrics, sums: sums.sort(([x], [y]) => x.localeCompare(y)).map(([, v]) => v) };
      };
      const [ja, jb] = [await json(a), await json(b)];
      expect(ja.metrics).toEqual(jb.metrics);
      sameSums(ja.sums, jb.sums);
      // The counterexample CI found (12-07): −1 and 1e-9 in one child, 1 in another of the same labels.
    }), { numRuns: 200, examples: [[[[1, -1], [5, 1], [1, 1e-9]]]] });
  });

  it('ignores non-finite values, grows past its first children, and reset() forgets everything', async () => {
    const r = new Registry();
    const h = new SlotHistogram({ name: 'y_seconds', help: 'h', buckets: BUCKETS, registers: [r], labelsOf });
    h.observe(1000, Number.NaN);
    h.observe(1000, Infinity);
    expect(await r.metrics()).not.toContain('y_seconds_count');
    h.observe(1000, 0.5);
    expect(await r.metrics()).toContain('y_seconds_count{reporter="gateway",peer_identity="spiffe://x/0",stat="min"} 1');
    r.resetMetrics();
    expect(await r.metrics()).not.toContain('y_seconds_count');
  });

  it('refuses buckets that are not ascending', () => {
    expect(() => new SlotHistogram({ name: 'z', help: 'h', buckets: [1, 1], registers: [], labelsOf })).toThrow(/ascending/);
  });
});
