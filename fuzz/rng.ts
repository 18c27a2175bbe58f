/**
 * Seeded pseudo-random numbers for the fuzzer (sfc32: small, fast, 32-bit
 * state words). The same seed gives the same input sequence, so every
 * finding is reproducible from (target, seed, iteration).
 */

/** A deterministic generator; all methods advance the state. */
export class Rng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  /** `seed` is any integer; equal seeds give equal sequences. */
  constructor(seed: number) {
    this.a = 0x9e3779b9;
    this.b = 0x243f6a88;
    this.c = 0xb7e15162;
    this.d = seed >>> 0;
    for (let i = 0; i < 15; i++) this.u32();
  }

  /** Uniform unsigned 32-bit integer. */
  u32(): number {
    const t = (((this.a + this.b) | 0) + this.d) | 0;
    this.d = (this.d + 1) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.c = (this.c + t) | 0;
    return t >>> 0;
  }

  /** Uniform integer in [0, n); n ≥ 1. */
  below(n: number): number {
    return n <= 1 ? 0 : Math.floor((this.u32() / 4294967296) * n);
  }

  /** True with probability 1/n. */
  oneIn(n: number): boolean {
    return this.below(n) === 0;
  }

  /** A random element of a non-empty list. */
  pick<T>(list: readonly T[]): T {
    return list[this.below(list.length)]!;
  }

  /** Fills out[off, off+n) with random bytes. */
  fill(out: Uint8Array, off: number, n: number): void {
    let w = 0;
    for (let i = 0; i < n; i++) {
      if ((i & 3) === 0) w = this.u32();
      out[off + i] = w & 0xff;
      w >>>= 8;
    }
  }

  /** A length in [0, max] skewed toward short inputs (most parser bugs sit near the start). */
  length(max: number): number {
    const r = this.below(4);
    if (r === 0) return this.below(Math.min(max, 16) + 1);
    if (r === 1) return this.below(Math.min(max, 64) + 1);
    return this.below(max + 1);
  }
}
