import { describe, expect, it } from 'vitest';
import { MemoryTun } from './memory-tun.js';

describe('MemoryTun', () => {
  it('delivers injected packets to read() at the offset, level-triggered, in order', async () => {
    const tun = new MemoryTun({ batchSize: 2, mtu: 100, queueLimit: 3 });
    const bufs = [Buffer.alloc(110), Buffer.alloc(110)];
    const sizes = new Uint32Array(2);
    const got: number[] = [];
    const done = new Promise<void>((resolve) => {
      tun.onReadable(() => {
        const n = tun.read(bufs, sizes, 10);
        for (let i = 0; i < n; i++) got.push(bufs[i]![10]!, sizes[i]!);
        if (got.length === 6) resolve();
      });
    });
    expect(tun.inject(Uint8Array.of(1, 0))).toBe(true);
    expect(tun.inject(Uint8Array.of(2, 0, 0))).toBe(true);
    expect(tun.inject(Uint8Array.of(3))).toBe(true);
    expect(tun.inject(Uint8Array.of(4))).toBe(false);
    expect(tun.inject(new Uint8Array(101))).toBe(false);
    await done;
    expect(got).toEqual([1, 2, 2, 3, 3, 1]);
    expect(tun.droppedFull).toBe(1);
    expect(tun.droppedTooBig).toBe(1);
  });
  it('copies written packets out and throws ClosedError after close', () => {
    const tun = new MemoryTun();
    const b = Buffer.from([9, 9, 1, 2, 3]);
    expect(tun.write([b], Uint32Array.of(3), 2, 1)).toBe(1);
    b[2] = 0;
    expect([...tun.written[0]!]).toEqual([1, 2, 3]);
    expect(() => tun.write([b], Uint32Array.of(9), 2, 1)).toThrow(/runs past/);
    tun.close();
    expect(() => tun.read([], new Uint32Array(0), 0)).toThrow(/used after close/);
  });
});
