/**
 * The endpoint's receive budget with UDP GRO slots: one recvmmsg can return
 * 64 slots of up to 64 datagrams each, far more than a wake may handle.
 * Independent review, 7 December: with GRO on, one wake handled 2,816
 * datagrams against a budget of 250 (the TUN queue and every other
 * connection waited behind it).
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { UdpBatch, UdpBatchSocket } from '../net/udp.js';
import { writeAddrSlot } from '../net/udp-batch.js';
import { QuicEndpoint } from './endpoint.js';

/** A socket with an endless backlog: every recv fills the whole batch (GRO: `segsPerSlot` short-header datagrams per slot). */
class BacklogSocket implements UdpBatchSocket {
  readonly batchSize = 64;
  readonly gso = false;
  cb: (() => void) | null = null;
  recvCalls = 0;
  /** The endpoint's datagramsIn at each recv (set `ep` to record it). */
  ep: QuicEndpoint | null = null;
  inAtRecv: number[] = [];
  constructor(readonly gro: boolean, private readonly segsPerSlot: number, private readonly seg = 1350) {}
  recv(b: UdpBatch): number {
    this.recvCalls++;
    if (this.ep) this.inAtRecv.push(this.ep.counters.datagramsIn);
    const n = Math.min(this.batchSize, b.bufs.length);
    for (let i = 0; i < n; i++) {
      // A short last segment, as GRO delivers the tail of a train.
      const size = this.gro ? this.seg * (this.segsPerSlot - 1) + 100 : this.seg;
      const buf = b.bufs[i]!;
      for (let off = 0; off < size; off += this.seg) {
        buf[off] = 0x40;
        buf.fill(0xab, off + 1, Math.min(size, off + 21));
      }
      b.sizes[i] = size;
      b.segs[i] = this.gro ? this.seg : 0;
      writeAddrSlot(b.addrs, i, '127.0.0.1', 4433);
    }
    return n;
  }
  send(_b: UdpBatch, count: number): number {
    return count;
  }
  onReadable(cb: () => void): void {
    this.cb = cb;
  }
  onWritable(): void {}
  localAddress() {
    return { address: '127.0.0.1', port: 5555, family: 4 as const };
  }
  pauseReadable(): void {}
  close(): void {}
}

const endpoints: QuicEndpoint[] = [];
afterEach(() => {
  while (endpoints.length > 0) endpoints.pop()!.close();
});

describe('QuicEndpoint receive budget with UDP GRO slots', () => {
  for (const gro of [false, true]) {
    it(`gro=${gro}: one wake handles at most the budget plus one slot; the rest of the batch comes next turn, before the socket is read again`, async () => {
      const s = new BacklogSocket(gro, 44);
      const ep = new QuicEndpoint({ socket: s, client: { insecureNoVerify: true }, keylogPath: null, recvBudget: 250 });
      endpoints.push(ep);
      s.ep = ep;
      s.cb!();
      const first = ep.counters.datagramsIn;
      expect(first).toBeGreaterThanOrEqual(250);
      expect(first).toBeLessThanOrEqual(250 + (gro ? 43 : 0));
      expect(s.recvCalls).toBe(gro ? 1 : 4);
      if (!gro) return;
      // The batch's other slots (64 × 44 datagrams in all) are handled by the turns that follow, with no recv in between.
      for (let k = 0; k < 20 && s.recvCalls < 2; k++) await new Promise((r) => setImmediate(r));
      // The socket was read again only once every datagram of the first batch had been handled: none lost.
      expect(s.inAtRecv).toEqual([0, 64 * 44]);
      expect(ep.counters.groReceives).toBeGreaterThanOrEqual(64);
    });
  }

  it('one budget of work per loop turn: a readable socket and the turn for left-over slots do not both read', async () => {
    const s = new BacklogSocket(false, 1);
    const ep = new QuicEndpoint({ socket: s, client: { insecureNoVerify: true }, keylogPath: null, recvBudget: 250 });
    endpoints.push(ep);
    s.cb!(); // 250 handled, 6 slots of the 4th batch left for the next turn
    const afterFirst = ep.counters.datagramsIn;
    s.cb!(); // the socket is still readable in the same iteration: the turn for the left-over slots is its wake
    expect(ep.counters.datagramsIn).toBe(afterFirst);
    await new Promise((r) => setImmediate(r));
    expect(ep.counters.datagramsIn - afterFirst).toBeLessThanOrEqual(250);
  });

  it('paused (another reader has the socket, the agent\'s TUN thread): the slots already read are handled, the socket is not read again', async () => {
    const s = new BacklogSocket(true, 44);
    const ep = new QuicEndpoint({ socket: s, client: { insecureNoVerify: true }, keylogPath: null, recvBudget: 250 });
    endpoints.push(ep);
    expect(ep.holdsInput).toBe(false);
    s.cb!();
    // The agent attaches its TUN thread only once this is false: the thread would otherwise write newer datagrams first.
    expect(ep.holdsInput).toBe(true);
    ep.pauseInput();
    for (let k = 0; k < 20 && ep.counters.datagramsIn < 64 * 44; k++) await new Promise((r) => setImmediate(r));
    expect(ep.counters.datagramsIn).toBe(64 * 44);
    expect(ep.holdsInput).toBe(false);
    for (let k = 0; k < 5; k++) await new Promise((r) => setImmediate(r));
    expect(s.recvCalls).toBe(1);
    expect(ep.counters.datagramsIn).toBe(64 * 44);
  });
});
