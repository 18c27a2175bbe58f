/**
 * CONNECT-UDP client session, sans-IO (RFC 9298): sends UDP payloads to the
 * proxied target in HTTP Datagrams and delivers the target's replies.
 */
import type { TunnelStream, TunnelStreamHandler } from '../../h3/tunnel-stream.js';
import { MASQUE_HEADROOM } from '../connect-ip/datagram.js';
import { ConnectUdpCounters, ConnectUdpDrop, MAX_UDP_PAYLOAD, udpPayloadOffset } from './counters.js';

/** Receives a UDP payload buf[offset, offset+length), valid only during the call. */
export type PayloadSink = (buf: Uint8Array, offset: number, length: number) => void;

/** Options for {@link ConnectUdpClientSession}. */
export interface ConnectUdpClientOptions {
  readonly onPayload: PayloadSink;
  /** The stream ended (error = H3 code, 0 clean). */
  readonly onClose?: (error: number) => void;
}

/**
 * The client's end of one CONNECT-UDP stream; construct after the 2xx
 * response and attach as the stream handler. Buffers stay the caller's.
 */
export class ConnectUdpClientSession implements TunnelStreamHandler {
  readonly counters = new ConnectUdpCounters();
  private closed = false;

  constructor(
    readonly stream: TunnelStream,
    private readonly opts: ConnectUdpClientOptions,
  ) {}

  get isClosed(): boolean {
    return this.closed;
  }

  /** Largest UDP payload that fits one datagram now (path limit minus the context ID, at most 65,527). */
  maxPayloadSize(): number {
    const p = this.stream.maxDatagramPayload();
    return p > 1 ? Math.min(MAX_UDP_PAYLOAD, p - 1) : 0;
  }

  /**
   * Sends buf[offset, offset+length) as one UDP payload; needs MASQUE_HEADROOM
   * (9) writable bytes before `offset` (context ID written in place). Returns
   * 0 or a {@link ConnectUdpDrop} code (counted). Allocation-free.
   */
  sendPayload(buf: Uint8Array, offset: number, length: number): number {
    const c = this.counters;
    if (this.closed) return this.drop(ConnectUdpDrop.CLOSED);
    if (offset < MASQUE_HEADROOM) return this.drop(ConnectUdpDrop.NO_HEADROOM);
    // RFC 9298 §5: never send a payload above 65,527 bytes; and it must fit a datagram.
    if (length > this.maxPayloadSize()) return this.drop(ConnectUdpDrop.TOO_BIG);
    buf[offset - 1] = 0; // Context ID 0: UDP payload
    if (!this.stream.sendDatagram(buf, offset - 1, length + 1)) return this.drop(ConnectUdpDrop.SEND_FAILED);
    c.datagramsSent++;
    c.bytesSent += length;
    return 0;
  }

  private drop(r: number): number {
    this.counters.drops[r]++;
    return r;
  }

  /** @internal */
  onCapsule(_type: number, _value: Uint8Array): void {
    this.counters.capsulesSkipped++; // RFC 9297 §3.2
  }

  /** @internal */
  onDatagram(buf: Uint8Array, offset: number, length: number): void {
    const c = this.counters;
    const p = udpPayloadOffset(c, this.closed, buf, offset, length);
    if (p < 0) return;
    const n = offset + length - p;
    c.datagramsReceived++;
    c.bytesReceived += n;
    this.opts.onPayload(buf, p, n);
  }

  /** @internal */
  onClose(error: number): void {
    if (this.closed) return;
    this.closed = true;
    this.opts.onClose?.(error);
  }

  /** Ends the stream cleanly. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.stream.close();
  }
}
