/**
 * Batches packets bound for a TUN device: copies each packet into a
 * preallocated slot and writes full batches (or on flush) in one call.
 * Bounded: when the kernel refuses part of a batch the rest is dropped and
 * counted, never queued without limit.
 */
import type { TunDevice } from '../tun/tun.js';

/** Counters of a {@link TunWriter}. */
export interface TunWriterCounters {
  packets: number;
  bytes: number;
  /** Packets the kernel did not take (queue full or invalid): dropped. */
  dropped: number;
  /** Packets larger than a slot: dropped. */
  oversize: number;
}

/** The drop reason TunWriter reports (metric label `reason`). */
export const TUN_WRITE_DROP_REASON = 'tun_write_failed';

/** Writes packets to one TUN device in batches. Owns its slot buffers. */
export class TunWriter {
  readonly counters: TunWriterCounters = { packets: 0, bytes: 0, dropped: 0, oversize: 0 };
  private readonly bufs: Buffer[];
  private readonly sizes: Uint32Array;
  private count = 0;

  /**
   * `slotBytes` is the largest packet accepted (the TUN MTU, or more).
   * `countDrops(n)` is told about every dropped packet as it happens (e.g.
   * a pre-resolved metric counter for {@link TUN_WRITE_DROP_REASON}).
   */
  constructor(private readonly tun: TunDevice, slotBytes: number, private readonly countDrops: (n: number) => void, batchSize = tun.batchSize) {
    this.bufs = Array.from({ length: batchSize }, () => Buffer.allocUnsafe(slotBytes));
    this.sizes = new Uint32Array(batchSize);
  }

  /**
   * Copies buf[off, off+len) into the next slot and returns that slot's
   * buffer (the packet starts at index 0) so the caller may rewrite it in
   * place (e.g. MSS clamping) before the batch goes out; null when dropped.
   * Writes the batch first when it is full.
   */
  push(buf: Uint8Array, off: number, len: number): Buffer | null {
    const slot = this.bufs[0]!;
    if (len > slot.length) {
      this.counters.oversize++;
      this.countDrops(1);
      return null;
    }
    if (this.count === this.bufs.length) this.flush();
    const b = this.bufs[this.count]!;
    b.set(buf.subarray(off, off + len), 0);
    this.sizes[this.count] = len;
    this.count++;
    return b;
  }

  /** Writes queued packets. Packets the kernel did not take are dropped and counted. */
  flush(): void {
    const n = this.count;
    if (n === 0) return;
    this.count = 0;
    let written = 0;
    try {
      written = this.tun.write(this.bufs, this.sizes, 0, n);
    } catch {
      written = 0;
    }
    for (let i = 0; i < written; i++) this.counters.bytes += this.sizes[i]!;
    this.counters.packets += written;
    if (written < n) {
      this.counters.dropped += n - written;
      this.countDrops(n - written);
    }
  }
}

/** The kernel's TUN transmit queue when `tun.txQueueLen` is not set (packets). */
const KERNEL_TUN_TXQUEUELEN = 500;

/**
 * Datagrams a daemon's QUIC endpoint reads per readiness callback. Every
 * packet from the peer that it writes to the TUN can bring an answer into
 * the TUN's transmit queue at once (the host behind it answers within the
 * write: an echo reply, a TCP ACK), and the TUN is read only when the
 * callback returns: with the endpoint's default of 1,024 a backlog of echoes
 * overflowed the kernel's 500-packet queue, and 20 % of the replies at 300
 * busy sessions were dropped there at the gateway (issue #17; `ip -s link`
 * TX dropped). Half the queue leaves room for what was already queued. Both
 * daemons use it: the agent's TUN faces the same answers from its cluster.
 */
export function tunRecvBudget(txQueueLen: number | undefined): number {
  return Math.max(64, Math.min(1024, Math.floor((txQueueLen ?? KERNEL_TUN_TXQUEUELEN) / 2)));
}

/**
 * `tun.queueDelay` (ms, `targetMs: 0` = off) as the endpoint's
 * `dgramQueueDelay` (whole µs; the interval stays above the target).
 */
export function tunQueueDelay(q: { targetMs: number; intervalMs: number }): { targetUs: number; intervalUs: number } | null {
  if (q.targetMs === 0) return null;
  const targetUs = Math.max(1, Math.round(q.targetMs * 1000));
  return { targetUs, intervalUs: Math.max(targetUs + 1, Math.round(q.intervalMs * 1000)) };
}
