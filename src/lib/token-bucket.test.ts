import { describe, expect, it } from 'vitest';
import { TokenBucket } from './token-bucket.js';

describe('TokenBucket', () => {
  it('starts full, refills at its rate up to the burst, and never takes what is not there', () => {
    const b = new TokenBucket(10, 3, 1000);
    expect([b.take(1000), b.take(1000), b.take(1000), b.take(1000)]).toEqual([true, true, true, false]);
    expect(b.nextTokenAtMs()).toBe(1100);
    expect(b.take(1050)).toBe(false); // half a token
    expect(b.take(1100)).toBe(true);
    expect(b.has(10_000)).toBe(true);
    expect([b.take(10_000), b.take(10_000), b.take(10_000), b.take(10_000)]).toEqual([true, true, true, false]); // capped at the burst
  });

  it('adds nothing when the clock steps back', () => {
    const b = new TokenBucket(1000, 1, 5000);
    expect(b.take(5000)).toBe(true);
    expect(b.take(4000)).toBe(false);
    expect(b.take(5000)).toBe(false);
    expect(b.take(5001)).toBe(true);
  });
});
