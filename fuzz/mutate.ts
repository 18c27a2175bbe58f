/**
 * Structure-aware mutation of valid messages: bit flips, interesting byte
 * values, truncation, length-field edits (8/16/32-bit, both byte orders),
 * QUIC varint boundary values (RFC 9000 §16 prefix limits), splicing with
 * another seed, duplication, deletion, insertion and dictionary tokens.
 * Each mutated input is a fresh array the target may keep or modify.
 */
import type { Rng } from './rng.js';

const INTERESTING8 = [0x00, 0x01, 0x3f, 0x40, 0x7f, 0x80, 0xbf, 0xc0, 0xfe, 0xff];
const INTERESTING16 = [0, 1, 0x7f, 0x80, 0xff, 0x100, 0x3fff, 0x4000, 0x7fff, 0x8000, 0xfffe, 0xffff];
const INTERESTING32 = [0, 1, 0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff, 0x3fffffff, 0x40000000, 0x01000000, 0x00ffffff];

/**
 * Varint boundary encodings: the largest value of each length, the smallest
 * of the next, a non-minimal zero, and 2^62 − 1 (RFC 9000 §16 Table 4).
 */
const VARINT_EDGES: readonly number[][] = [
  [0x00], [0x3f], [0x40, 0x00], [0x40, 0x40], [0x7f, 0xff], [0x80, 0x00, 0x00, 0x00], [0x80, 0x00, 0x40, 0x00],
  [0xbf, 0xff, 0xff, 0xff], [0xc0, 0, 0, 0, 0, 0, 0, 0], [0xc0, 0, 0, 0, 0x40, 0, 0, 0], [0xc0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff],
  [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff], [0xd0, 0, 0, 0, 0, 0, 0, 0], [0xc0, 0x1f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
  [0x40], [0x80, 0x00], [0xc0, 0x00, 0x00],
];

/** Mutates seeds; `dict` holds tokens worth inserting (keywords, magic numbers). */
export class Mutator {
  constructor(
    private readonly seeds: readonly Uint8Array[],
    private readonly maxLen: number,
    private readonly dict: readonly Uint8Array[] = [],
  ) {}

  /** One input: a random seed with 1–4 stacked mutations, capped at maxLen. */
  next(rng: Rng): Uint8Array {
    let b: Uint8Array = Uint8Array.from(rng.pick(this.seeds));
    const n = 1 + rng.below(4);
    for (let i = 0; i < n; i++) b = this.once(b, rng);
    return b.length > this.maxLen ? b.subarray(0, this.maxLen) : b;
  }

  private once(b: Uint8Array, rng: Rng): Uint8Array {
    const len = b.length;
    const at = (extra: number) => (len > extra ? rng.below(len - extra + 1) : 0);
    switch (rng.below(13)) {
      case 0: // bit flip
        if (len) b[rng.below(len)]! ^= 1 << rng.below(8);
        return b;
      case 1: // interesting byte
        if (len) b[rng.below(len)] = rng.pick(INTERESTING8);
        return b;
      case 2: // random byte
        if (len) b[rng.below(len)] = rng.below(256);
        return b;
      case 3: // truncate
        return b.subarray(0, rng.below(len + 1));
      case 4: { // 16-bit length-field edit: set to an edge or nudge by ±1..16
        if (len < 2) return b;
        const p = at(2);
        const le = rng.oneIn(2);
        const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
        const old = dv.getUint16(p, le);
        const v = rng.oneIn(2) ? rng.pick(INTERESTING16) : (old + (rng.below(33) - 16)) & 0xffff;
        dv.setUint16(p, v, le);
        return b;
      }
      case 5: { // 32-bit length-field edit
        if (len < 4) return b;
        const p = at(4);
        const le = rng.oneIn(2);
        const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
        const old = dv.getUint32(p, le);
        const v = rng.oneIn(2) ? rng.pick(INTERESTING32) : (old + (rng.below(33) - 16)) >>> 0;
        dv.setUint32(p, v, le);
        return b;
      }
      case 6: { // varint boundary value: overwrite or insert
        const e = rng.pick(VARINT_EDGES);
        const p = rng.below(len + 1);
        return rng.oneIn(2) ? splice(b, p, Math.min(e.length, len - p), e) : splice(b, p, 0, e);
      }
      case 7: { // splice: head of this, tail of another seed
        const o = rng.pick(this.seeds);
        return concat(b.subarray(0, rng.below(len + 1)), o.subarray(rng.below(o.length + 1)));
      }
      case 8: { // duplicate a range
        if (!len) return b;
        const s = rng.below(len);
        const n = 1 + rng.below(Math.min(len - s, 64));
        return splice(b, rng.below(len + 1), 0, b.slice(s, s + n));
      }
      case 9: { // delete a range
        if (!len) return b;
        const s = rng.below(len);
        return splice(b, s, 1 + rng.below(Math.min(len - s, 32)), []);
      }
      case 10: { // insert random bytes
        const n = 1 + rng.below(16);
        const ins = new Uint8Array(n);
        rng.fill(ins, 0, n);
        return splice(b, rng.below(len + 1), 0, ins);
      }
      case 11: { // dictionary token: insert or overwrite
        if (this.dict.length === 0) return b;
        const t = rng.pick(this.dict);
        const p = rng.below(len + 1);
        return rng.oneIn(2) ? splice(b, p, 0, t) : splice(b, p, Math.min(t.length, len - p), t);
      }
      default: { // append the whole of another seed (a second message in the same buffer)
        return concat(b, rng.pick(this.seeds));
      }
    }
  }
}

function splice(b: Uint8Array, at: number, del: number, ins: ArrayLike<number>): Uint8Array {
  const out = new Uint8Array(b.length - del + ins.length);
  out.set(b.subarray(0, at), 0);
  out.set(ins, at);
  out.set(b.subarray(at + del), at + ins.length);
  return out;
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}
