import { describe, expect, it } from 'vitest';
import { ScratchPool } from './scratch.js';

describe('ScratchPool', () => {
  it('lends one buffer at a time and reuses it once given back', () => {
    const p = new ScratchPool(64);
    const a = p.take();
    expect(a.length).toBe(64);
    // A nested read while `a` is out gets a buffer of its own.
    const b = p.take();
    expect(b).not.toBe(a);
    p.give(b);
    p.give(a);
    expect(p.idle).toBe(2);
    expect(p.take()).toBe(a);
    expect(p.take()).toBe(b);
    expect(p.idle).toBe(0);
  });

  it('keeps at most `keep` buffers after a nested burst', () => {
    const p = new ScratchPool(16, 2);
    const out = [p.take(), p.take(), p.take()];
    for (const b of out) p.give(b);
    expect(p.idle).toBe(2);
  });
});
