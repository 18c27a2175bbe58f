/**
 * A bounded FIFO of client Initial datagrams the endpoint could not start a
 * handshake for yet (its per-turn accept budget or its handshake concurrency
 * was used up), so a burst of new connections is admitted a slice per
 * event-loop turn instead of starving established connections.
 */
import { ADDR_SLOT_BYTES } from '../net/udp.js';
import { copyAddrSlot } from '../net/udp-batch.js';

/** Why {@link InitialQueue.push} refused a datagram. */
export const enum InitialQueueRefusal {
  /** Queued. */
  NONE = 0,
  /** Every slot is taken. */
  FULL = 1,
  /** The datagram is larger than a slot. */
  TOO_LARGE = 2,
}

/**
 * Fixed slots allocated on first use (a client-only endpoint never pays for
 * them); datagrams and their address slots are copied in, so the caller's
 * receive batch can be reused at once. Entries older than `maxWaitMs` are
 * dropped on the way out (the client has retransmitted by then).
 */
export class InitialQueue {
  /** Datagrams dropped because they waited longer than maxWaitMs. */
  staleDrops = 0;
  private bufs: Buffer[] | null = null;
  private readonly sizes: Uint32Array;
  private readonly at: Float64Array;
  /** Address slots, one per entry (see ADDR_SLOT_BYTES). */
  readonly addrs: Uint8Array;
  private head = 0;
  private count = 0;

  /**
   * @param slots  entries at most
   * @param slotBytes  largest datagram kept (RFC 9000 §14.1: Initials are ≥ 1200 bytes; clients rarely exceed the path MTU)
   * @param maxWaitMs  age after which an entry is dropped instead of returned
   */
  constructor(
    readonly slots: number,
    private readonly slotBytes: number,
    private readonly maxWaitMs: number,
  ) {
    if (!(slots >= 1)) throw new RangeError(`quic: initial queue needs at least one slot, got ${slots}`);
    this.sizes = new Uint32Array(slots);
    this.at = new Float64Array(slots);
    this.addrs = new Uint8Array(slots * ADDR_SLOT_BYTES);
  }

  /** Entries waiting. */
  get length(): number {
    return this.count;
  }

  /** Copies buf[off, off+len) and address slot `i` of `addrs`; a {@link InitialQueueRefusal} other than NONE when not queued. */
  push(buf: Uint8Array, off: number, len: number, addrs: Uint8Array, i: number, nowMs: number): InitialQueueRefusal {
    if (len > this.slotBytes) return InitialQueueRefusal.TOO_LARGE;
    if (this.count === this.slots) return InitialQueueRefusal.FULL;
    if (this.bufs === null) this.bufs = Array.from({ length: this.slots }, () => Buffer.allocUnsafe(this.slotBytes));
    const k = (this.head + this.count) % this.slots;
    this.bufs[k]!.set(buf.subarray(off, off + len), 0);
    this.sizes[k] = len;
    this.at[k] = nowMs;
    copyAddrSlot(addrs, i, this.addrs, k);
    this.count++;
    return InitialQueueRefusal.NONE;
  }

  /**
   * Slot index of the oldest entry younger than maxWaitMs (older ones are
   * dropped and counted in {@link staleDrops}), or -1 when empty. The entry
   * stays valid until the next {@link push}; call {@link shift} once done.
   */
  peek(nowMs: number): number {
    while (this.count > 0 && nowMs - this.at[this.head]! > this.maxWaitMs) {
      this.staleDrops++;
      this.shift();
    }
    return this.count > 0 ? this.head : -1;
  }

  /** The datagram in slot `k` (a view valid until the slot is reused). */
  datagram(k: number): Buffer {
    return this.bufs![k]!.subarray(0, this.sizes[k]);
  }

  /** Removes the oldest entry. */
  shift(): void {
    if (this.count === 0) return;
    this.head = (this.head + 1) % this.slots;
    this.count--;
  }
}
