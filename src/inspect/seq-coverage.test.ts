// Sequence coverage: "each byte counted exactly once" against a reference
// model (a Set of absolute byte offsets) under random segment orders,
// overlaps, retransmissions and 32-bit wrap-around.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Coverage, MAX_HOLES, MAX_SEQ_DELTA, seqCover, seqCoverGeneral, seqStart, SeqVerdict } from './seq-coverage.js';

function space() {
  return { lo: new Float64Array(1), hi: new Float64Array(1), hiSeq: new Uint32Array(1), holes: new Map<number, number[]>(), hasHoles: false };
}

type Space = ReturnType<typeof space>;

function cover(sp: Space, seq: number, len: number, out: Coverage, extendBelow = false): void {
  seqCover(sp, sp.holes, 0, seq >>> 0, len, sp.hasHoles, extendBelow, out);
  sp.hasHoles = out.hasHoles;
  expect(out.hasHoles).toBe(sp.holes.has(0));
}

/** Segments [offset, length) over a stream of `total` bytes: a random cut, duplicates, overlapping spans, shuffled. */
const segmentsArb = fc.integer({ min: 1, max: 400 }).chain((total) => fc.record({
  total: fc.constant(total),
  cuts: fc.array(fc.integer({ min: 10, max: 40 }), { minLength: 1, maxLength: 30 }),
  extra: fc.array(fc.tuple(fc.integer({ min: 0, max: total - 1 }), fc.integer({ min: 1, max: 60 })), { maxLength: 20 }),
  order: fc.array(fc.nat(), { minLength: 80, maxLength: 80 }),
  // ISNs near 2^32 so the stream crosses the wrap; some anywhere.
  isn: fc.oneof(fc.integer({ min: 0xffffffff - 500, max: 0xffffffff }), fc.integer({ min: 0, max: 0xffffffff })),
}));

function segmentsOf(x: { total: number; cuts: number[]; extra: [number, number][]; order: number[] }): [number, number][] {
  const segs: [number, number][] = [];
  let p = 0, ci = 0;
  while (p < x.total) { const n = Math.min(x.cuts[ci++ % x.cuts.length]!, x.total - p); segs.push([p, n]); p += n; }
  for (const [o, n] of x.extra) segs.push([o, Math.min(n, x.total - o)]); // retransmits and overlaps
  for (let i = segs.length - 1; i > 0; i--) {
    const j = x.order[i % x.order.length]! % (i + 1);
    [segs[i], segs[j]] = [segs[j]!, segs[i]!];
  }
  return segs;
}

describe('seqCover', () => {
  it('each byte counted exactly once: per segment, new bytes = bytes the reference Set had not seen (holes within MAX_HOLES)', () => {
    fc.assert(fc.property(segmentsArb, (x) => {
      const sp = space();
      const out = new Coverage();
      seqStart(sp, sp.holes, 0, x.isn);
      sp.hasHoles = false;
      const seen = new Set<number>();
      let counted = 0;
      for (const [o, n] of segmentsOf(x)) {
        let fresh = 0;
        for (let k = o; k < o + n; k++) if (!seen.has(k)) { seen.add(k); fresh++; }
        cover(sp, x.isn + o, n, out);
        expect(out.holeOverflows).toBe(0); // ≤ 60 segments: never more than MAX_HOLES holes (overflow: next test)
        expect(out.newBytes).toBe(fresh);
        expect(out.verdict === SeqVerdict.RETRANSMIT).toBe(fresh < n);
        counted += out.newBytes;
      }
      expect(counted).toBe(x.total);
      expect(seen.size).toBe(x.total);
      // Everything seen: one run [0, total), no holes, next expected sequence number wrapped correctly.
      expect([sp.lo[0], sp.hi[0], sp.holes.size, sp.hiSeq[0]]).toEqual([0, x.total, 0, (x.isn + x.total) >>> 0]);
    }), { numRuns: 400 });
  });

  it('with a full hole list, a closed gap is counted early and never twice: running total stays between the Set and the stream length', () => {
    fc.assert(fc.property(fc.integer({ min: 0xffffff00, max: 0xffffffff }), fc.array(fc.nat(), { minLength: 200, maxLength: 200 }), (isn, order) => {
      // 1-byte islands at even offsets first (more than MAX_HOLES holes), then everything, shuffled.
      const total = 2 * (MAX_HOLES + 40);
      const segs: [number, number][] = [];
      for (let k = 2; k < total; k += 2) segs.push([k, 1]);
      for (let i = segs.length - 1; i > 0; i--) { const j = order[i % order.length]! % (i + 1); [segs[i], segs[j]] = [segs[j]!, segs[i]!]; }
      for (let k = 0; k < total; k += 3) segs.push([k, Math.min(3, total - k)]);
      const sp = space();
      const out = new Coverage();
      seqStart(sp, sp.holes, 0, isn);
      const seen = new Set<number>();
      let counted = 0, overflows = 0;
      for (const [o, n] of segs) {
        for (let k = o; k < o + n; k++) seen.add(k);
        cover(sp, isn + o, n, out);
        counted += out.newBytes;
        overflows += out.holeOverflows;
        expect(counted).toBeGreaterThanOrEqual(seen.size);
        expect(counted).toBeLessThanOrEqual(total);
        expect(sp.holes.get(0)?.length ?? 0).toBeLessThanOrEqual(MAX_HOLES * 2);
      }
      expect(overflows).toBeGreaterThan(0);
      expect(counted).toBe(total);
    }), { numRuns: 40 });
  });

  it('verdicts: in order, out of order, retransmit, out of window; bytes before the stream start are not data unless mid-stream', () => {
    const sp = space();
    const out = new Coverage();
    seqStart(sp, sp.holes, 0, 0xfffffffe);
    cover(sp, 0xfffffffe, 4, out);
    expect([out.verdict, out.newBytes, sp.hiSeq[0]]).toEqual([SeqVerdict.IN_ORDER, 4, 2]);
    cover(sp, 10, 2, out);
    expect([out.verdict, out.newBytes, out.hasHoles, out.inOrder]).toEqual([SeqVerdict.OUT_OF_ORDER, 2, true, false]);
    cover(sp, 2, 8, out); // fills the hole, joins the island
    expect([out.verdict, out.newBytes, out.hasHoles, out.mainHi]).toEqual([SeqVerdict.IN_ORDER, 8, false, 14]);
    cover(sp, 0, 4, out);
    expect([out.verdict, out.newBytes]).toEqual([SeqVerdict.RETRANSMIT, 0]);
    cover(sp, 0xfffffff0, 4, out); // before the start
    expect([out.verdict, out.newBytes, sp.lo[0]]).toEqual([SeqVerdict.RETRANSMIT, 0, 0]);
    cover(sp, 12 + MAX_SEQ_DELTA + 1, 1, out);
    expect(out.verdict).toBe(SeqVerdict.OUT_OF_WINDOW);
    const mid = space();
    seqStart(mid, mid.holes, 0, 1000);
    cover(mid, 990, 20, out, true); // mid-stream: earlier bytes extend the run down
    expect([out.newBytes, mid.lo[0], mid.hi[0], mid.hiSeq[0]]).toEqual([20, -10, 10, 1010]);
  });

  it('the fast paths give the general merge\'s outputs and state, segment by segment, through losses, retransmissions, reordering and duplicates', () => {
    // A sender's segments in order, each lost (delivered later, as a retransmission would be), duplicated or
    // swapped with the next at random; sizes up to a few MSS; the stream crosses the 32-bit wrap.
    const arb = fc.record({
      isn: fc.oneof(fc.integer({ min: 0xffffffff - 20_000, max: 0xffffffff }), fc.integer({ min: 0, max: 0xffffffff })),
      segs: fc.array(fc.record({ len: fc.integer({ min: 0, max: 3000 }), fate: fc.integer({ min: 0, max: 99 }), later: fc.integer({ min: 1, max: 40 }) }),
        { minLength: 1, maxLength: 300 }),
    });
    let fastTaken = 0;
    fc.assert(fc.property(arb, ({ isn, segs }) => {
      const sent: [number, number][] = [];
      let off = 1;
      for (const x of segs) { sent.push([off, x.len]); off += x.len; }
      const wire: [number, number][] = [];
      const pending: { at: number; seg: [number, number] }[] = [];
      sent.forEach((sg, k) => {
        const f = segs[k]!.fate;
        if (f < 8) pending.push({ at: k + segs[k]!.later, seg: sg }); // lost: its retransmission comes later
        else wire.push(sg);
        if (f >= 8 && f < 12) wire.push(sg); // duplicated
        if (f >= 12 && f < 16 && wire.length >= 2) { const t = wire[wire.length - 1]!; wire[wire.length - 1] = wire[wire.length - 2]!; wire[wire.length - 2] = t; }
        for (const p of pending.filter((q) => q.at === k)) wire.push(p.seg);
      });
      for (const p of pending.filter((q) => q.at >= sent.length)) wire.push(p.seg);
      const a = space(), b = space();
      seqStart(a, a.holes, 0, isn);
      seqStart(b, b.holes, 0, isn);
      const oa = new Coverage(), ob = new Coverage();
      for (const [o, n] of wire) {
        const seq = (isn + o) >>> 0;
        const before = a.hasHoles ? a.holes.get(0)!.at(-1) : undefined; // the highest interval's end (a stream offset)
        seqCover(a, a.holes, 0, seq, n, a.hasHoles, false, oa);
        a.hasHoles = oa.hasHoles;
        seqCoverGeneral(b, b.holes, 0, seq, n, b.hasHoles, false, ob);
        b.hasHoles = ob.hasHoles;
        if (before === o && n > 0) fastTaken++; // this segment extends it: the fast path
        expect({ ...oa }).toEqual({ ...ob });
        expect([a.lo[0], a.hi[0], a.hiSeq[0], a.holes.get(0) ?? null]).toEqual([b.lo[0], b.hi[0], b.hiSeq[0], b.holes.get(0) ?? null]);
      }
    }), { numRuns: 400 });
    expect(fastTaken, 'the generator reaches the hole-extending fast path').toBeGreaterThan(100);
  });
});
