/**
 * Sequence coverage: which bytes of one TCP direction's sequence space have
 * been seen, so each payload byte is counted exactly once through
 * retransmissions, overlaps, reordering and 32-bit wrap-around. Pure interval
 * logic over caller-owned arrays; nothing here knows about flows or packets.
 */

/** Segments further than this from the next expected sequence number are out of window (RFC 7323 §2.3 max window). */
export const MAX_SEQ_DELTA = 1 << 30;
/** Out-of-order intervals kept per direction before two are merged (counted as a hole overflow). */
export const MAX_HOLES = 64;

/**
 * Per-direction coverage state, indexed by `i`: the main run [lo, hi) in
 * unwrapped stream offsets, and `hiSeq`, the 32-bit sequence number of offset
 * `hi` (the next expected byte). Intervals beyond the main run live in a
 * sparse hole list (sorted, disjoint, non-adjacent [start, end) pairs).
 */
export interface SeqArrays {
  lo: Float64Array;
  hi: Float64Array;
  hiSeq: Uint32Array;
}

/** What one segment did; one instance is reused (fields valid until the next call). */
export class Coverage {
  /** Bytes of the segment not seen before (plus bytes of gaps closed by a hole overflow). */
  newBytes = 0;
  /** {@link SeqVerdict}. */
  verdict = 0;
  /** Gaps closed because the hole list was full (their bytes are in newBytes). */
  holeOverflows = 0;
  /** True when intervals beyond the main run remain (the hole list is non-empty). */
  hasHoles = false;
  /** Offset within the segment's payload of the first byte worth passing on (to an L7 peek), and how many. */
  feedOff = 0;
  feedLen = 0;
  /** Stream offset of that first byte. */
  feedStreamOff = 0;
  /** End of the main run after this segment (bytes [lo, mainHi) all seen). */
  mainHi = 0;
  /** The fed bytes directly extend the main run and nothing beyond them was merged. */
  inOrder = false;
}

/** How a segment related to what was seen before. */
export const SeqVerdict = {
  /** Started at the next expected byte. */
  IN_ORDER: 0,
  /** Started above the next expected byte (left a hole). */
  OUT_OF_ORDER: 1,
  /** Carried bytes already seen (fully or partly), or bytes before the stream start. */
  RETRANSMIT: 2,
  /** Further than MAX_SEQ_DELTA from the next expected byte: ignored. */
  OUT_OF_WINDOW: 3,
} as const;

/** Starts direction i's sequence space at `seq` (stream offset 0). Discards its holes. */
export function seqStart(sp: SeqArrays, holes: Map<number, number[]>, i: number, seq: number): void {
  sp.hiSeq[i] = seq >>> 0;
  sp.lo[i] = 0;
  sp.hi[i] = 0;
  holes.delete(i);
}

/**
 * Records payload bytes [seq, seq+len) of direction i and reports in `out`
 * how many were new. `hasHoles` must say whether `holes` holds an entry for
 * i (the caller keeps that as a flag so the in-order fast path does no Map
 * lookup). `extendBelow`: bytes before the stream start extend it (a flow
 * picked up mid-stream) instead of being ignored. Allocates only when
 * intervals beyond the main run exist and the segment does not simply extend
 * the highest of them.
 */
export function seqCover(sp: SeqArrays, holes: Map<number, number[]>, i: number, seq: number, len: number,
  hasHoles: boolean, extendBelow: boolean, out: Coverage): void {
  const delta = (seq - sp.hiSeq[i]!) | 0;
  const hiOld = sp.hi[i]!;
  out.holeOverflows = 0;
  if (delta === 0 && !hasHoles) {
    // Fast path: the next expected byte, no holes.
    sp.hi[i] = hiOld + len;
    sp.hiSeq[i] = (seq + len) >>> 0;
    allNew(out, len, SeqVerdict.IN_ORDER, false, hiOld, hiOld + len, true);
    return;
  }
  if (hasHoles && len > 0 && delta > 0 && delta <= MAX_SEQ_DELTA) {
    // Second fast path: new data right after the highest interval beyond a hole (what follows a loss
    // until the retransmission fills it, e.g. behind a CoDel drop). That interval grows in place; the main
    // run and every other interval stay. Same outputs as the general path below (seq-coverage.test.ts).
    const extra = holes.get(i)!;
    const last = extra.length - 1;
    const a = hiOld + delta;
    if (extra[last] === a) {
      extra[last] = a + len;
      allNew(out, len, SeqVerdict.OUT_OF_ORDER, true, a, hiOld, false);
      return;
    }
  }
  seqCoverGeneral(sp, holes, i, seq, len, hasHoles, extendBelow, out);
}

/** Fills `out` for a segment of `len` bytes all new and all passed on, from stream offset `streamOff`. */
function allNew(out: Coverage, len: number, verdict: number, hasHoles: boolean, streamOff: number, mainHi: number, inOrder: boolean): void {
  out.newBytes = len;
  out.verdict = verdict;
  out.hasHoles = hasHoles;
  out.feedOff = 0;
  out.feedLen = len;
  out.feedStreamOff = streamOff;
  out.mainHi = mainHi;
  out.inOrder = inOrder;
}

/**
 * {@link seqCover} without its fast paths (exported for the differential
 * test): the interval merge every segment could take. Allocates.
 */
export function seqCoverGeneral(sp: SeqArrays, holes: Map<number, number[]>, i: number, seq: number, len: number,
  hasHoles: boolean, extendBelow: boolean, out: Coverage): void {
  const delta = (seq - sp.hiSeq[i]!) | 0;
  const hiOld = sp.hi[i]!;
  out.holeOverflows = 0;
  out.newBytes = 0;
  out.feedLen = 0;
  out.hasHoles = hasHoles;
  if (delta > MAX_SEQ_DELTA || delta < -MAX_SEQ_DELTA) {
    out.verdict = SeqVerdict.OUT_OF_WINDOW;
    return;
  }
  let a = hiOld + delta;
  const b = a + len;
  let skip = 0;
  const lo = sp.lo[i]!;
  if (a < lo && !extendBelow) {
    // Before the first byte after the SYN: not data (keep-alive probes and the like).
    if (b <= lo) {
      out.verdict = SeqVerdict.RETRANSMIT;
      return;
    }
    skip = lo - a;
    a = lo;
  }
  // Seen set: [lo, hiOld) plus the hole-list intervals, in order.
  const extra = hasHoles ? holes.get(i)! : null;
  const iv: number[] = [];
  let placedMain = false;
  if (extra !== null) {
    for (let k = 0; k < extra.length; k += 2) {
      if (!placedMain && extra[k]! > hiOld) { iv.push(lo, hiOld); placedMain = true; }
      iv.push(extra[k]!, extra[k + 1]!);
    }
  }
  if (!placedMain) iv.push(lo, hiOld);
  let covered = 0;
  for (let k = 0; k < iv.length; k += 2) {
    const x = Math.max(iv[k]!, a);
    const y = Math.min(iv[k + 1]!, b);
    if (y > x) covered += y - x;
  }
  // Merge [a, b) in (adjacent intervals join).
  const merged: number[] = [];
  let na = a, nb = b, placed = false;
  for (let k = 0; k < iv.length; k += 2) {
    const x = iv[k]!, y = iv[k + 1]!;
    if (y < na) merged.push(x, y);
    else if (x > nb) {
      if (!placed) { merged.push(na, nb); placed = true; }
      merged.push(x, y);
    } else {
      if (x < na) na = x;
      if (y > nb) nb = y;
    }
  }
  if (!placed) merged.push(na, nb);
  let newBytes = len - skip - covered;
  if (merged.length > (MAX_HOLES + 1) * 2) {
    // Too many holes: close the smallest gap, counting its bytes as if seen (TCP will fill it).
    let best = 2, gap = Infinity;
    for (let k = 2; k < merged.length; k += 2) {
      const g = merged[k]! - merged[k - 1]!;
      if (g < gap) { gap = g; best = k; }
    }
    newBytes += gap;
    merged.splice(best - 1, 2);
    out.holeOverflows = 1;
  }
  // The interval that now holds the old main run becomes the main run.
  let m = 0;
  for (let k = 0; k < merged.length; k += 2) {
    if (merged[k]! <= lo && merged[k + 1]! >= hiOld) { m = k; break; }
  }
  const mainHi = merged[m + 1]!;
  sp.lo[i] = merged[m]!;
  sp.hi[i] = mainHi;
  sp.hiSeq[i] = (sp.hiSeq[i]! + (mainHi - hiOld)) >>> 0;
  if (merged.length === 2) {
    holes.delete(i);
    out.hasHoles = false;
  } else {
    merged.splice(m, 2);
    holes.set(i, merged);
    out.hasHoles = true;
  }
  out.newBytes = newBytes;
  out.verdict = covered > 0 || skip > 0 ? SeqVerdict.RETRANSMIT : a !== hiOld ? SeqVerdict.OUT_OF_ORDER : SeqVerdict.IN_ORDER;
  out.mainHi = mainHi;
  if (newBytes > 0) {
    // In order for a stream parser only if it extended the main run and nothing beyond it was merged.
    const inOrder = a <= hiOld && mainHi === b;
    const from = inOrder ? hiOld : a;
    out.inOrder = inOrder;
    out.feedStreamOff = from;
    out.feedOff = skip + (from - a);
    out.feedLen = b - from;
  }
}
