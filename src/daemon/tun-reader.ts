/**
 * Reads a TUN device in batches (wireguard-go style): preallocated buffers,
 * each packet read at TUN_HEADROOM so the tunnel prefix is written in front
 * of it in place, a bounded number of batches per readiness callback.
 */
import { allocSlots } from '../net/slot-arena.js';
import type { TunDevice } from '../tun/tun.js';

/** Bytes before each packet for the context ID and quarter stream ID (≥ MASQUE_HEADROOM). */
export const TUN_HEADROOM = 16;
/** Batches read per readiness callback before yielding to the event loop (fairness with QUIC input). */
const ROUNDS = 8;

/**
 * Handles one batch: packet i is bufs[i][TUN_HEADROOM, TUN_HEADROOM + sizes[i]).
 * The buffers are the reader's; they may be rewritten in place during the
 * call and are reused for the next batch after it returns.
 */
export type TunBatchHandler = (bufs: readonly Buffer[], sizes: Uint32Array, count: number) => void;

/**
 * Owns the read buffers of one TUN device and drives `onBatch` from its
 * readiness callback. A read error is reported once to `onError` and reading
 * stops: the device is unusable and the daemon must fail.
 */
export class TunReader {
  private readonly bufs: Buffer[];
  private readonly sizes: Uint32Array;

  constructor(
    private readonly tun: TunDevice,
    private readonly onBatch: TunBatchHandler,
    private readonly onError: (e: Error) => void,
  ) {
    // One allocation for the batch: the native read takes it whole (net/slot-arena.ts).
    this.bufs = allocSlots(tun.batchSize, TUN_HEADROOM + tun.mtu);
    this.sizes = new Uint32Array(tun.batchSize);
    tun.onReadable(this.onReadable);
  }

  private failed = false;
  private paused = false;

  /**
   * Stops reading for good: another reader owns the device (the agent's
   * TUN thread). Readiness callbacks stop and {@link pollOnce} does nothing.
   */
  pause(): void {
    if (this.paused) return;
    this.paused = true;
    if (!this.tun.closed) this.tun.pauseReadable?.();
  }

  /**
   * One read, now, without waiting for readiness: what the kernel queued
   * since the last read (e.g. its answers to packets just written into the
   * TUN) is handled at once. Nothing waiting costs one system call; a
   * closed device is not read.
   */
  pollOnce(): void {
    if (!this.tun.closed && !this.paused) this.readBatch();
  }

  private readonly onReadable = (): void => {
    if (this.paused) return;
    for (let round = 0; round < ROUNDS; round++) {
      const n = this.readBatch();
      if (n < this.bufs.length) return;
    }
  };

  /** Reads one batch and hands it to onBatch; returns its size (0 when nothing waited or the device failed). */
  private readBatch(): number {
    if (this.failed) return 0;
    let n: number;
    try {
      n = this.tun.read(this.bufs, this.sizes, TUN_HEADROOM);
    } catch (e) {
      // The data path is dead: report once; the daemon fails loudly (readyz 503, exit 3).
      this.failed = true;
      this.onError(e as Error);
      return 0;
    }
    if (n > 0) this.onBatch(this.bufs, this.sizes, n);
    return n;
  }
}
