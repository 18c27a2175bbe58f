/**
 * The send side of one HTTP/3 stream: bytes waiting for QUIC flow-control
 * credit, then the FIN. Bounded by the caller (capsules check
 * {@link SendQueue.bytes} against maxStreamQueueBytes before queueing).
 */

import { QuicStreamError, type QuicTransport } from '../quic/transport.js';

const EMPTY = new Uint8Array(0);

/** {@link SendQueue.flush} result: nothing went wrong. */
export const FLUSH_OK = -1;

/**
 * Chunks queued for one stream. Queued chunks are owned by the queue (callers
 * hand over freshly encoded frames and must not reuse them).
 */
export class SendQueue {
  private readonly chunks: Uint8Array[] = [];
  /** Bytes queued and not yet accepted by QUIC. */
  bytes = 0;
  /** A FIN follows the queued bytes; nothing more may be queued. */
  finQueued = false;
  /** QUIC accepted the FIN (or the send side was reset). */
  finSent = false;

  /** True while bytes or a FIN wait for credit. */
  get pending(): boolean {
    return this.chunks.length > 0 || (this.finQueued && !this.finSent);
  }

  /** True when nothing is queued and no FIN waits. */
  get idle(): boolean {
    return this.chunks.length === 0 && (this.finSent || !this.finQueued);
  }

  /** Queue `data` (taken over) and maybe the FIN. Ignored after a FIN was queued. */
  push(data: Uint8Array, fin: boolean): void {
    if (this.finQueued) return;
    if (data.length > 0) {
      this.chunks.push(data);
      this.bytes += data.length;
    }
    if (fin) this.finQueued = true;
  }

  /** Drop everything queued and treat the send side as finished (after a reset). */
  clear(): void {
    this.chunks.length = 0;
    this.bytes = 0;
    this.finQueued = true;
    this.finSent = true;
  }

  /**
   * Hand queued bytes (then the FIN) to QUIC until it takes no more.
   * Returns {@link FLUSH_OK}, or the peer's STOP_SENDING code (RFC 9000 §3.5).
   */
  flush(t: QuicTransport, streamId: number): number {
    try {
      while (this.chunks.length > 0) {
        const head = this.chunks[0]!;
        const last = this.chunks.length === 1;
        const n = t.streamSend(streamId, head, last && this.finQueued);
        if (n === head.length) {
          this.chunks.shift();
          this.bytes -= n;
          if (last && this.finQueued) this.finSent = true;
          continue;
        }
        if (n > 0) {
          this.chunks[0] = head.subarray(n);
          this.bytes -= n;
        }
        return FLUSH_OK;
      }
      if (this.finQueued && !this.finSent) {
        t.streamSend(streamId, EMPTY, true);
        this.finSent = true;
      }
    } catch (e) {
      if (e instanceof QuicStreamError) return e.errorCode;
      throw e;
    }
    return FLUSH_OK;
  }
}
