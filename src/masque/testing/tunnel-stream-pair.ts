/**
 * In-memory double of two connected {@link TunnelStream}s (client and
 * gateway end of one Extended CONNECT stream), for MASQUE tests without QUIC.
 * Deterministic like quiche's test Pipe: nothing moves until `flush()`.
 */
import { H3_DATAGRAM_HEADROOM, type TunnelStream, type TunnelStreamHandler } from '../../h3/tunnel-stream.js';

type Ev = { kind: 'capsule'; type: number; value: Uint8Array } | { kind: 'datagram'; data: Uint8Array } | { kind: 'close'; error: number };

/** Options for {@link TunnelStreamPair}. */
export interface TunnelStreamPairOptions {
  /** Largest datagram payload (after the quarter stream ID) each end may send; default 1400. */
  readonly maxDatagramPayload?: number;
  /** Datagrams queued per direction before `sendDatagram` returns false; default 100,000. */
  readonly datagramQueueLimit?: number;
  /** Quarter stream ID written into the headroom (checks that senders leave it); default 1. */
  readonly streamId?: number;
}

/** One end of the pair. Counters let tests assert what went over the "wire". */
export class MemoryTunnelStream implements TunnelStream {
  readonly streamId: number;
  handler: TunnelStreamHandler | null = null;
  /** Events queued toward this end's peer. */
  readonly outbox: Ev[] = [];
  peer!: MemoryTunnelStream;
  maxPayload: number;
  closed = false;
  /** Error code passed to `abort`, or null. */
  abortedWith: number | null = null;
  /** Every capsule sent, as (type, copy of value). */
  readonly sentCapsules: { type: number; value: Uint8Array }[] = [];
  datagramsSent = 0;
  datagramsRefused = 0;
  private queued = 0;
  private head = 0;

  constructor(
    streamId: number,
    maxPayload: number,
    private readonly queueLimit: number,
  ) {
    this.streamId = streamId;
    this.maxPayload = maxPayload;
  }

  /** Attaches the session that receives this end's events. */
  attach(h: TunnelStreamHandler): void {
    this.handler = h;
  }

  /** Copies the capsule into the peer's queue (and `sentCapsules`). */
  sendCapsule(type: number, value: Uint8Array): boolean {
    if (this.closed) return false;
    const copy = Uint8Array.from(value);
    this.sentCapsules.push({ type, value: copy });
    this.outbox.push({ kind: 'capsule', type, value: copy });
    return true;
  }

  /** Overwrites the headroom like HTTP/3 would, copies the payload into the peer's queue; false when closed, too big or the queue is full. */
  sendDatagram(buf: Uint8Array, offset: number, length: number): boolean {
    if (offset < H3_DATAGRAM_HEADROOM) throw new Error(`test double: sendDatagram without ${H3_DATAGRAM_HEADROOM} bytes headroom (offset ${offset})`);
    if (this.closed || length > this.maxPayload || this.queued >= this.queueLimit) {
      this.datagramsRefused++;
      return false;
    }
    // Simulate the HTTP/3 layer writing the quarter stream ID in place (RFC 9297 §2.1).
    buf.fill(0xee, offset - H3_DATAGRAM_HEADROOM, offset);
    this.outbox.push({ kind: 'datagram', data: buf.slice(offset, offset + length) });
    this.queued++;
    this.datagramsSent++;
    return true;
  }

  /** The configured limit (0 once closed). */
  maxDatagramPayload(): number {
    return this.closed ? 0 : this.maxPayload;
  }

  /** FIN after queued events: the peer gets onClose(0). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.outbox.push({ kind: 'close', error: 0 });
  }

  /** Reset: queued events are discarded and the peer gets onClose(errorCode). */
  abort(errorCode: number): void {
    if (this.closed) return;
    this.closed = true;
    this.abortedWith = errorCode;
    // A reset overtakes queued data.
    this.outbox.length = 0;
    this.head = 0;
    this.outbox.push({ kind: 'close', error: errorCode });
  }

  /** Discards everything queued (the stream was reset). */
  dropQueued(): void {
    this.outbox.length = 0;
    this.head = 0;
  }

  /** Delivers queued events to the peer's handler; returns how many. */
  deliver(max: number): number {
    let n = 0;
    while (n < max && this.head < this.outbox.length) {
      const ev = this.outbox[this.head++]!;
      if (this.head === this.outbox.length) {
        this.outbox.length = 0;
        this.head = 0;
      }
      n++;
      const h = this.peer.handler;
      if (ev.kind === 'datagram') {
        this.queued--;
        if (!h || this.peer.closed) continue;
        // Leave headroom in the delivered buffer like a real receive path would.
        const b = new Uint8Array(ev.data.length + 16);
        b.set(ev.data, 16);
        h.onDatagram(b, 16, ev.data.length);
      } else if (ev.kind === 'capsule') {
        if (h && !this.peer.closed) h.onCapsule(ev.type, ev.value);
      } else {
        const wasClosed = this.peer.closed;
        this.peer.closed = true;
        h?.onClose(ev.error);
        if (!wasClosed && ev.error !== 0) this.peer.dropQueued();
      }
    }
    return n;
  }
}

/** A connected client/gateway pair of in-memory streams. */
export class TunnelStreamPair {
  readonly client: MemoryTunnelStream;
  readonly gateway: MemoryTunnelStream;

  constructor(opts: TunnelStreamPairOptions = {}) {
    const max = opts.maxDatagramPayload ?? 1400;
    const limit = opts.datagramQueueLimit ?? 100_000;
    const id = opts.streamId ?? 0;
    this.client = new MemoryTunnelStream(id, max, limit);
    this.gateway = new MemoryTunnelStream(id, max, limit);
    this.client.peer = this.gateway;
    this.gateway.peer = this.client;
  }

  /** Sets the path's datagram limit for both ends (simulates a PMTU change). */
  setMaxDatagramPayload(n: number): void {
    this.client.maxPayload = n;
    this.gateway.maxPayload = n;
  }

  /** Delivers everything queued both ways, including what handlers send in response; returns the number of events. Bounded. */
  flush(maxEvents = 10_000_000): number {
    let total = 0;
    for (;;) {
      const n = this.client.deliver(maxEvents - total) + this.gateway.deliver(maxEvents - total);
      total += n;
      if (n === 0 || total >= maxEvents) return total;
    }
  }
}
