import { describe, expect, it } from 'vitest';
import { CaptureTap, TapInterface, type CaptureFilter } from './capture-tap.js';
import { parsePrefix } from '../packet/ip-address.js';
import { craftTcp, craftUdp } from '../packet/craft.js';

const all: CaptureFilter = { snapLenBytes: 65535, maxPackets: 1e6, maxBytes: 1e9 };
const ring = { queueBytes: 65_536, queuePackets: 64 };

function tcp(src: string, dst: string, sp: number, dp: number, payload = 0): Buffer {
  return craftTcp({ src, dst, srcPort: sp, dstPort: dp, seq: 1, ack: 1, flags: 0x18, payload: Buffer.alloc(payload, 0x61) });
}

function drained(tap: CaptureTap): { iface: number; bytes: Buffer; origLen: number; tsMs: number }[] {
  const out: { iface: number; bytes: Buffer; origLen: number; tsMs: number }[] = [];
  tap.drain(1e9, (iface, tsMs, arena, off, capLen, origLen) => out.push({ iface, tsMs, bytes: Buffer.from(arena.subarray(off, off + capLen)), origLen }));
  return out;
}

describe('telemetry: capture tap', () => {
  it('is inactive until started and keeps nothing offered then', () => {
    const tap = new CaptureTap();
    expect(tap.active).toBe(false);
    tap.offer(tcp('10.0.0.1', '10.0.0.2', 1, 2), 0, 40, TapInterface.TUN_IN, 1);
    expect(tap.pending).toBe(0);
    expect(tap.matched[0]).toBe(0);
  });

  it('copies packets at an offset (the caller may reuse its buffer), in order, with snap length and original length', () => {
    const tap = new CaptureTap();
    tap.start({ ...all, snapLenBytes: 48 }, ring);
    const p = tcp('10.0.0.1', '10.0.0.2', 40000, 80, 100);
    const slot = Buffer.alloc(16 + p.length);
    p.copy(slot, 16);
    tap.offer(slot, 16, p.length, TapInterface.TUN_IN, 10);
    slot.fill(0);
    const q = tcp('10.0.0.2', '10.0.0.1', 80, 40000);
    tap.offer(q, 0, q.length, TapInterface.TUN_OUT, 11);
    const got = drained(tap);
    expect(got.map((g) => [g.iface, g.tsMs, g.bytes.length, g.origLen])).toEqual([[0, 10, 48, p.length], [1, 11, 40, 40]]);
    expect(got[0]!.bytes).toEqual(p.subarray(0, 48));
    expect(got[1]!.bytes).toEqual(q);
  });

  it('filters by prefix (source or destination), port (either end) and protocol', () => {
    const pkts = [
      tcp('10.0.0.1', '10.20.0.2', 40000, 80),
      tcp('10.0.0.1', '10.20.0.2', 40001, 443),
      craftUdp({ src: '10.9.0.1', dst: '10.0.0.5', srcPort: 53, dstPort: 5353, payload: Buffer.alloc(4) }),
      craftUdp({ src: 'fd00::1', dst: 'fd00:b::2', srcPort: 1000, dstPort: 80, payload: Buffer.alloc(4) }),
    ];
    const run = (f: Partial<CaptureFilter>): number[] => {
      const tap = new CaptureTap();
      tap.start({ ...all, ...f }, ring);
      pkts.forEach((p, i) => tap.offer(p, 0, p.length, TapInterface.TUN_IN, i));
      return drained(tap).map((g) => g.tsMs);
    };
    expect(run({})).toEqual([0, 1, 2, 3]);
    expect(run({ prefix: parsePrefix('10.20.0.0/24')! })).toEqual([0, 1]);
    expect(run({ prefix: parsePrefix('10.0.0.0/28')! })).toEqual([0, 1, 2]);
    expect(run({ prefix: parsePrefix('fd00:b::/64')! })).toEqual([3]);
    expect(run({ port: 80 })).toEqual([0, 3]);
    expect(run({ port: 53 })).toEqual([2]);
    expect(run({ protocol: 'udp' })).toEqual([2, 3]);
    expect(run({ protocol: 'tcp', port: 443 })).toEqual([1]);
    expect(run({ protocol: 'icmp' })).toEqual([]);
  });

  it('a slow reader: a full ring drops and counts per interface, never grows; draining makes room again (wrap-around)', () => {
    const tap = new CaptureTap();
    tap.start(all, { queueBytes: 65_536, queuePackets: 16 });
    const p = tcp('10.0.0.1', '10.0.0.2', 1, 2, 1000);
    for (let i = 0; i < 200; i++) tap.offer(p, 0, p.length, i % 2, i);
    const kept = tap.pending;
    expect(kept).toBe(16);
    expect(tap.matched[0]! + tap.matched[1]!).toBe(200);
    expect(tap.dropped[0]! + tap.dropped[1]!).toBe(200 - 16);
    // By bytes: 64 KiB holds 62 such packets; with room for 1000 packets, the byte bound is what drops.
    const big = new CaptureTap();
    big.start(all, { queueBytes: 65_536, queuePackets: 1000 });
    for (let i = 0; i < 100; i++) big.offer(p, 0, p.length, 0, i);
    expect(big.pending).toBe(Math.floor(65_536 / p.length));
    expect(big.dropped[0]).toBe(100 - big.pending);
    // Half drained: new packets wrap to the front of the arena and come out in order.
    let seen = 0;
    big.drain(30, () => { seen++; });
    for (let i = 100; i < 125; i++) big.offer(p, 0, p.length, 0, i);
    const rest = drained(big).map((g) => g.tsMs);
    expect(seen).toBe(30);
    expect(rest.slice(-25)).toEqual(Array.from({ length: 25 }, (_, i) => 100 + i));
    expect(rest).toEqual([...rest].sort((a, b) => a - b));
    for (const g of rest) expect(g).toBeGreaterThanOrEqual(30);
  });

  it('ends at the packet cap or the byte cap, and allows one capture at a time', () => {
    const p = tcp('10.0.0.1', '10.0.0.2', 1, 2, 60);
    const tap = new CaptureTap();
    tap.start({ ...all, maxPackets: 3 }, ring);
    expect(() => tap.start(all, ring)).toThrow(/capture: a capture is already running/);
    for (let i = 0; i < 10; i++) if (tap.active) tap.offer(p, 0, p.length, 0, i);
    expect(tap.ended).toBe('packet_cap');
    expect(tap.pending).toBe(3);
    tap.stop();
    expect(tap.busy).toBe(false);
    tap.start({ ...all, maxBytes: 250 }, ring);
    for (let i = 0; i < 10; i++) if (tap.active) tap.offer(p, 0, p.length, 0, i);
    expect(tap.ended).toBe('byte_cap');
    expect(tap.queuedPackets).toBe(3); // 100 B each: the third passes 250
  });
});
