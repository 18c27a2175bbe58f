/**
 * A Prometheus histogram whose children are small integers (a flow's
 * label-set slot, times a series count) and whose observation is a few array
 * writes: no label hashing, no objects. prom-client's `observe` hashes the
 * label object on every call (about 1 µs); at a SYN flood's thousands of
 * closing flows a second, with three RTT statistics each, that was the single
 * largest per-flow cost in the daemons' telemetry.
 *
 * It registers itself with prom-client registries as a metric object
 * (name, help, type, `get()`, `getForPromString()`), and exports exactly
 * what a prom-client `Histogram` with the same observations exports:
 * cumulative `_bucket` lines (`le` first in the text format, last in JSON),
 * then `_sum` and `_count`, per label set (the test compares the two).
 * Children with no observation are not exported; children whose labels
 * coincide are exported as one series (as prom-client's `labels()` would
 * have merged them).
 */
import type { Registry } from 'prom-client';

type Labels = Record<string, string>;

/** One exported sample, as prom-client's registry reads it (the text format prints `labels`, then `sharedLabels`). */
interface Sample {
  labels: Record<string, string | number>;
  sharedLabels?: Labels;
  value: number;
  metricName: string;
}
type Export = { name: string; help: string; type: string; values: Sample[]; aggregator: string };

/** Options for {@link SlotHistogram}. */
export interface SlotHistogramOptions {
  readonly name: string;
  readonly help: string;
  /** Upper bounds, ascending, without +Inf. */
  readonly buckets: readonly number[];
  readonly registers: readonly Registry[];
  /** The labels of child `i` (read at scrape time, only for children with observations). */
  readonly labelsOf: (child: number) => Labels;
}

/** See the module comment. */
export class SlotHistogram {
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  readonly name: string;
  readonly help: string;
  private readonly bounds: Float64Array;
  /** Per child: one count per bucket (non-cumulative, +Inf last), then sum, then count. */
  private readonly stride: number;
  private data: Float64Array;

  constructor(private readonly opts: SlotHistogramOptions) {
    this.name = opts.name;
    this.help = opts.help;
    for (let i = 1; i < opts.buckets.length; i++) {
      if (!(opts.buckets[i]! > opts.buckets[i - 1]!)) throw new RangeError(`${opts.name}: buckets must be ascending`);
    }
    this.bounds = Float64Array.from(opts.buckets);
    this.stride = opts.buckets.length + 3;
    this.data = new Float64Array(this.stride * 16);
    for (const r of opts.registers) r.registerMetric(this as never);
  }

  /** Observes `v` for child `child` (≥ 0). Non-finite values are ignored. */
  observe(child: number, v: number): void {
    if (!Number.isFinite(v)) return;
    const need = (child + 1) * this.stride;
    if (need > this.data.length) {
      const n = new Float64Array(Math.max(need, this.data.length * 2));
      n.set(this.data);
      this.data = n;
    }
    const b = this.bounds;
    let i = 0;
    while (i < b.length && v > b[i]!) i++;
    const base = child * this.stride;
    const d = this.data;
    d[base + i]! += 1;
    d[base + b.length + 1]! += v;
    d[base + b.length + 2]! += 1;
  }

  /** The registry's JSON view (registry.getMetricsAsJSON): labels merged, as prom-client's histograms give them. */
  async get(): Promise<Export> {
    const e = this.getForPromString();
    e.values = e.values.map((v) => ({ labels: { ...v.sharedLabels, ...v.labels }, value: v.value, metricName: v.metricName }));
    return e;
  }

  /** The registry's text view: `le` as the sample's own label, the child's labels shared. Off the data path. */
  getForPromString(): Export {
    const nb = this.bounds.length;
    const d = this.data;
    const children = d.length / this.stride;
    // Children whose labels coincide (two slots can resolve to one label set) export as one series, summed.
    const series = new Map<string, { labels: Labels; sums: Float64Array }>();
    for (let c = 0; c < children; c++) {
      const base = c * this.stride;
      if (d[base + nb + 2]! === 0) continue;
      const labels = this.opts.labelsOf(c);
      const key = JSON.stringify(labels);
      let e = series.get(key);
      if (e === undefined) series.set(key, (e = { labels, sums: new Float64Array(this.stride) }));
      for (let k = 0; k < this.stride; k++) e.sums[k]! += d[base + k]!;
    }
    const values: Sample[] = [];
    for (const { labels, sums } of series.values()) {
      let acc = 0;
      for (let i = 0; i <= nb; i++) {
        acc += sums[i]!;
        values.push({ labels: { le: i < nb ? this.bounds[i]! : '+Inf' }, sharedLabels: labels, value: acc, metricName: `${this.name}_bucket` });
      }
      values.push({ labels: {}, sharedLabels: labels, value: sums[nb + 1]!, metricName: `${this.name}_sum` });
      values.push({ labels: {}, sharedLabels: labels, value: sums[nb + 2]!, metricName: `${this.name}_count` });
    }
    return { name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator };
  }

  /** Forgets every observation (registry.resetMetrics()). */
  reset(): void {
    this.data.fill(0);
  }
}
