import fc from 'fast-check';
import { Histogram, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { SlotHistogram } from './slot-histogram.js';

const BUCKETS = [0.0001, 0.001, 0.01, 0.1, 1, 10];
// Children 4 and 5 share child 0's and 1's labels: two slots can resolve to one label set.
const labelsOf = (c: number) => ({ reporter: 'gateway', peer_identity: `spiffe://x/${(c % 4) >> 1}`, stat: c & 1 ? 'max' : 'min' });

/** A sum to 12 significant digits, and within 1e-9 of zero as zero (cancellation: 1 + ε − 1). */
const approx = (v: number): number => (Math.abs(v) < 1e-9 ? 0 : Number(v.toPrecision(12)));

/**
 * The exposition text, lines sorted (label sets may come in another order),
 * `_sum` values to 12 significant digits: children that share labels are
 * summed per child first, so the floating-point additions come in another order.
 */
async function text(r: Registry): Promise<string[]> {
  return (await r.metrics()).split('\n').filter((l) => l !== '').map((l) => {
    if (!l.includes('_sum{')) return l;
    const i = l.lastIndexOf(' ');
    return `${l.slice(0, i)} ${approx(Number(l.slice(i + 1)))}`;
  }).sort();
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
      expect(await text(a)).toEqual(await text(b));
      // JSON too, but for prom-client's exemplar fields (null: exemplars are off).
      // Label sets may come in another order: compare the samples as sorted JSON strings.
      const json = async (r: Registry) => (await r.getMetricsAsJSON()).map((m) => ({
        ...m,
        values: m.values.map((v) => JSON.stringify([v.metricName, approx(v.value), Object.entries(v.labels).sort(([x], [y]) => x.localeCompare(y))])).sort(),
      }));
      expect(await json(a)).toEqual(await json(b));
    }), { numRuns: 200 });
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
