import { describe, expect, it } from 'vitest';
import { MemoryTun } from '../tun/memory-tun.js';
import { TunWriter } from './tun-writer.js';

/** A kernel queue that takes only `room` packets per write. */
class FullTun extends MemoryTun {
  constructor(private readonly room: number) {
    super({ batchSize: 4 });
  }
  override write(bufs: Buffer[], sizes: Uint32Array, offset: number, count: number): number {
    return super.write(bufs, sizes, offset, Math.min(count, this.room));
  }
}

describe('TunWriter', () => {
  it('copies packets into slots, writes full batches and the rest on flush', () => {
    const tun = new MemoryTun({ batchSize: 4 });
    const drops: number[] = [];
    const w = new TunWriter(tun, 2048, (n) => drops.push(n));
    const src = Buffer.from('..abcdef');
    for (let i = 0; i < 5; i++) w.push(src, 2, 6);
    expect(tun.written).toHaveLength(4); // the fifth push wrote the full batch first
    w.flush();
    expect(tun.written.map((b) => b.toString())).toEqual(Array(5).fill('abcdef'));
    expect(w.counters).toEqual({ packets: 5, bytes: 30, dropped: 0, oversize: 0 });
    expect(drops).toEqual([]);
  });

  it('counts and reports every packet it drops: too big for a slot, or refused by the kernel', () => {
    const tun = new FullTun(1);
    const drops: number[] = [];
    const w = new TunWriter(tun, 8, (n) => drops.push(n));
    expect(w.push(Buffer.alloc(9), 0, 9)).toBeNull();
    for (let i = 0; i < 3; i++) expect(w.push(Buffer.alloc(8, i), 0, 8)).not.toBeNull();
    w.flush();
    expect(w.counters).toEqual({ packets: 1, bytes: 8, dropped: 2, oversize: 1 });
    expect(drops).toEqual([1, 2]);
  });
});
