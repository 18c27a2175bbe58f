// Impairer core: seeded loss rate, release in due order, jitter reorders,
// bounded queue with counted drops, held-back reordering, corruption that
// keeps the transport checksum valid, blackhole switch.
import { describe, expect, it } from 'vitest';
import { transportChecksum } from '../../src/packet/checksum.js';
import { craftTcp, craftUdp } from '../../src/packet/craft.js';
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

  it('reorders about reorderPercent by holding packets back, loses nothing', () => {
    const imp = new Impairer({ lossPercent: 0, delayMs: 0, jitterMs: 0, reorderPercent: 10, reorderDelayMs: 5, seed: 11, maxPacketBytes: 64, maxQueue: 5000 });
    for (let i = 0; i < 2000; i++) imp.offer(pkt(i), 0, 8, i * 0.1);
    const ids = drain(imp, 10_000);
    expect([...ids].sort((a, b) => a - b)).toEqual(Array.from({ length: 2000 }, (_, i) => i));
    // Each held packet is overtaken by the ~50 sent during its hold; they count as released early.
    const late = ids.filter((id, k) => k > 0 && id < ids[k - 1]!).length;
    expect(late).toBeGreaterThan(150);
    expect(late).toBeLessThan(250);
  });

  it('corrupts payload bytes and keeps TCP and UDP checksums valid (IPv4 and IPv6)', () => {
    const payload = Buffer.alloc(333, 0x5a); // odd length: the last byte's word is padded
    const base = [
      craftUdp({ src: '192.0.2.1', dst: '192.0.2.2', srcPort: 1000, dstPort: 4433, payload }),
      craftUdp({ src: 'fd00:77::1', dst: 'fd00:77::2', srcPort: 1000, dstPort: 4433, payload }),
      craftTcp({ src: '10.10.0.2', dst: '10.20.0.2', srcPort: 40000, dstPort: 80, seq: 1, flags: 0x18, payload }),
      craftTcp({ src: 'fd00:a::2', dst: 'fd00:b::2', srcPort: 40000, dstPort: 80, seq: 1, flags: 0x18, payload }),
    ];
    const imp = new Impairer({ lossPercent: 0, delayMs: 0, jitterMs: 0, corruptPercent: 100, seed: 5, maxPacketBytes: 2048, maxQueue: 4000 });
    for (let r = 0; r < 200; r++) for (const b of base) imp.offer(b, 0, b.length, 0);
    expect(imp.stats.corrupted).toBe(800);
    const out: Buffer[] = [];
    const sizes = new Uint32Array(64);
    let checked = 0;
    for (;;) {
      const n = imp.take(1, out, sizes, 64);
      if (n === 0) break;
      for (let i = 0; i < n; i++) {
        const b = out[i]!.subarray(0, sizes[i]!);
        const orig = base[checked % 4]!;
        const v4 = b[0]! >> 4 === 4;
        const hl = v4 ? 20 : 40;
        const payloadOff = b.length - payload.length;
        expect(b.subarray(0, hl).equals(orig.subarray(0, hl)), 'IP header untouched').toBe(true);
        expect([...b.subarray(payloadOff)].filter((x, k) => x !== orig[payloadOff + k]).length, 'one payload byte flipped').toBe(1);
        // A valid checksum folds the whole segment (checksum field included) to 0 (or 0xffff).
        const c = transportChecksum(b, v4 ? 4 : 6, v4 ? 12 : 8, v4 ? 16 : 24, b[v4 ? 9 : 6]!, hl, b.length - hl);
        expect(c === 0 || c === 0xffff, `checksum of packet ${checked}`).toBe(true);
        checked++;
      }
      imp.release(n);
    }
    expect(checked).toBe(800);
  });

  it('blackhole drops and counts everything while on, then passes again', () => {
    const imp = new Impairer({ lossPercent: 0, delayMs: 0, jitterMs: 0, seed: 9, maxPacketBytes: 64, maxQueue: 100 });
    imp.blackhole = true;
    for (let i = 0; i < 10; i++) expect(imp.offer(pkt(i), 0, 8, 0)).toBe(false);
    imp.blackhole = false;
    for (let i = 10; i < 15; i++) imp.offer(pkt(i), 0, 8, 0);
    expect(imp.stats.blackholed).toBe(10);
    expect(drain(imp, 1)).toEqual([10, 11, 12, 13, 14]);
  });

  it('refuses percentages out of range', () => {
    expect(() => new Impairer({ lossPercent: 0, delayMs: 0, jitterMs: 0, corruptPercent: 101, seed: 1 })).toThrow(/corruptPercent/);
  });
});
