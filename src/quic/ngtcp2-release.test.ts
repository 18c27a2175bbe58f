/**
 * The ngtcp2 engine's DATAGRAM rings (allocated on the first datagram,
 * doubled up to the configured length) and the release of a connection's
 * native state (`free`, which the endpoint calls when a connection ends),
 * between two engine connections joined in memory.
 */
import { describe, expect, it } from 'vitest';
import { connectedEnginePair, PAIR_CLIENT as C, PAIR_SERVER as S } from './testing/engine-pair.js';

const enc = (s: string) => new TextEncoder().encode(s);

const pair = (queueLen: number) => connectedEnginePair(queueLen);

describe('ngtcp2 engine: DATAGRAM rings and release', () => {
  it('a receive ring grows on demand, keeps arrival order, and past its length drops the oldest (RFC 9221 §5)', async () => {
    const { c, s, pump } = await pair(100);
    const buf = new Uint8Array(1500);
    const drain = (): number[] => {
      const got: number[] = [];
      while (s.dgramRecv(buf) !== null) got.push(buf[0]!);
      return got;
    };
    // Growth while the ring has wrapped: 6 queued, 3 read, 13 more (the first ring holds 8).
    for (let i = 0; i < 6; i++) c.dgramSend(new Uint8Array([i]));
    pump();
    expect([s.dgramRecv(buf), buf[0], s.dgramRecv(buf), buf[0], s.dgramRecv(buf), buf[0]]).toEqual([1, 0, 1, 1, 1, 2]);
    for (let i = 6; i < 19; i++) c.dgramSend(new Uint8Array([i]));
    pump();
    expect(drain()).toEqual(Array.from({ length: 16 }, (_, k) => 3 + k));
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i < 150; i++) {
        const d = new Uint8Array(1000).fill((i + round) & 0xff);
        d[0] = i;
        while (c.dgramSend(d) === null) pump(); // the client's send ring is full: let it drain
        if (i % 60 === 59) pump();
      }
      pump();
      expect(s.isDgramRecvQueueFull()).toBe(true);
      const got: number[] = [];
      let n: number | null;
      while ((n = s.dgramRecv(buf)) !== null) {
        expect(n).toBe(1000);
        expect(buf[999]).toBe((buf[0]! + round) & 0xff);
        got.push(buf[0]!);
      }
      // 150 sent into a ring of 100: the newest 100, in order, whatever size the ring had grown to.
      expect(got).toEqual(Array.from({ length: 100 }, (_, k) => 50 + k));
    }
  });

  it('takes a packet or datagram as a range of a larger buffer (no view per packet), and refuses a range beyond the buffer', async () => {
    const { c, s, pump } = await pair(16);
    const slot = new Uint8Array(64).fill(0xee);
    slot.set([7, 8, 9], 10);
    c.dgramSend(slot, 10, 3);
    // The client's packets go to the server from offset 5 of a bigger slot.
    const out = new Uint8Array(1500);
    const big = new Uint8Array(1600);
    let r: [number, unknown] | null;
    while ((r = c.send(out)) !== null) {
      big.set(out.subarray(0, r[0]), 5);
      expect(s.recv(big, { from: C, to: S }, 5, r[0])).toBe(r[0]);
    }
    pump();
    const buf = new Uint8Array(64);
    expect(s.dgramRecv(buf)).toBe(3);
    expect([...buf.subarray(0, 3)]).toEqual([7, 8, 9]);
    expect(() => c.dgramSend(slot, 60, 10)).toThrow(/beyond the buffer/);
    expect(() => s.recv(big, { from: C, to: S }, 1590, 20)).toThrow(/beyond the buffer/);
  });

  it('free releases the native state: the connection then reads as closed, keeps its counters, and free again is harmless', async () => {
    const { c, s, pump } = await pair(16);
    c.dgramSend(new Uint8Array(100));
    pump();
    const before = s.stats();
    const path = s.pathStats();
    c.close(true, 7, enc('bye'));
    pump();
    s.free();
    c.free();
    expect(s.isClosed()).toBe(true);
    expect(c.isClosed()).toBe(true);
    expect(s.peerError()).toMatchObject({ isApp: true, errorCode: 7 });
    expect(s.stats().recv).toBeGreaterThan(before.recv);
    expect(path).toHaveLength(1);
    const [last] = s.pathStats(); // the figures at release
    expect(last).toMatchObject({ active: true, pmtu: path[0]!.pmtu });
    expect(last!.rtt).toBeGreaterThan(0);
    expect(s.send(new Uint8Array(1500))).toBeNull();
    expect(s.timeout()).toBeNull();
    expect(s.dgramMaxWritableLen()).toBeNull();
    expect(s.dgramRecv(new Uint8Array(1500))).toBeNull();
    expect([...s.readable()]).toEqual([]);
    expect(s.peerCertChain()).toBeNull();
    expect(() => s.close(true, 0, new Uint8Array(0))).toThrow('Done');
    s.recv(new Uint8Array(1200), { from: C, to: S });
    s.free();
    expect(s.isClosed()).toBe(true);
  });
});
