// Impairer core: seeded loss rate, release in due order, jitter reorders,
// bounded queue with counted drops.
import { describe, expect, it } from 'vitest';
import { Impairer } from './impairer.js';

function drain(imp: Impairer, now: number): number[] {
  const out: Buffer[] = [];
  const sizes = new Uint32Array(64);
  const ids: number[] = [];
  for (;;) {
    const n = imp.take(now, out, sizes, 64);
    if (n === 0) break;
    for (let i = 0; i < n; i++) ids.push(out[i]!.readUInt32BE(0));
    imp.release(n);
  }
  return ids;
}

const pkt = (i: number) => { const b = Buffer.alloc(8); b.writeUInt32BE(i); return b; };

describe('Impairer', () => {
  it('drops about lossPercent of packets, reproducibly for a seed', () => {
    const run = () => {
      const imp = new Impairer({ lossPercent: 5, delayMs: 0, jitterMs: 0, seed: 42, maxQueue: 20_000, maxPacketBytes: 64 });
      for (let i = 0; i < 20_000; i++) imp.offer(pkt(i), 0, 8, 0);
      return imp.stats.lost;
    };
    const lost = run();
    expect(lost).toBeGreaterThan(800);
    expect(lost).toBeLessThan(1200);
    expect(run()).toBe(lost);
  });

  it('keeps order without jitter and holds packets until due', () => {
    const imp = new Impairer({ lossPercent: 0, delayMs: 10, jitterMs: 0, seed: 1, maxPacketBytes: 64, maxQueue: 100 });
    for (let i = 0; i < 50; i++) imp.offer(pkt(i), 0, 8, i * 0.1);
    expect(drain(imp, 9.9)).toEqual([]);
    expect(imp.nextDueMs()).toBe(10);
    expect(drain(imp, 100)).toEqual(Array.from({ length: 50 }, (_, i) => i));
    expect(imp.stats.reordered).toBe(0);
  });

  it('reorders with jitter larger than the packet spacing, loses nothing', () => {
    const imp = new Impairer({ lossPercent: 0, delayMs: 1, jitterMs: 5, seed: 7, maxPacketBytes: 64, maxQueue: 1000 });
    for (let i = 0; i < 500; i++) imp.offer(pkt(i), 0, 8, i * 0.05);
    const ids = drain(imp, 1000);
    expect([...ids].sort((a, b) => a - b)).toEqual(Array.from({ length: 500 }, (_, i) => i));
    expect(imp.stats.reordered).toBeGreaterThan(50);
  });

  it('is bounded: a full queue drops and counts', () => {
    const imp = new Impairer({ lossPercent: 0, delayMs: 100, jitterMs: 0, seed: 3, maxPacketBytes: 64, maxQueue: 10 });
    for (let i = 0; i < 15; i++) imp.offer(pkt(i), 0, 8, 0);
    expect(imp.stats.queueFull).toBe(5);
    expect(drain(imp, 1000)).toHaveLength(10);
  });
});
