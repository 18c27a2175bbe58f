/**
 * One Extended CONNECT stream over HTTP/2 (RFC 8441) as the {@link TunnelStream}
 * MASQUE sessions use: HTTP Datagrams travel as DATAGRAM capsules (RFC 9297
 * §3.5, type 0x00) on the stream, parsed by the capsule codec HTTP/3 uses
 * (`h3/capsule.ts`). The session cannot tell it from an HTTP/3 stream.
 */
import { constants as h2c, type Http2Stream } from 'node:http2';
import { CAPSULE_DATAGRAM, CapsuleReassembler, capsuleHeaderLength, encodeCapsuleHeader } from '../h3/capsule.js';
import { H3Error } from '../h3/errors.js';
import type { TunnelStream, TunnelStreamHandler } from '../h3/tunnel-stream.js';

/** Limits and hooks of one HTTP/2 tunnel stream. */
export interface H2TunnelOptions {
  /** Largest capsule value accepted; a larger one resets the stream with ENHANCE_YOUR_CALM. */
  readonly maxCapsuleBytes: number;
  /**
   * Bytes that may wait in the stream's (and its TCP connection's) send
   * buffers; a DATAGRAM capsule that would pass it is dropped and counted
   * instead of queued (inner TCP over outer TCP, docs/http2-fallback.md).
   */
  readonly sendQueueBytes: number;
  /** What {@link H2Tunnel.maxDatagramPayload} reports: the payload the tunnel MTU is sized from (the daemons pass H2_DATAGRAM_PAYLOAD_BYTES). */
  readonly maxDatagramPayloadBytes: number;
  /** Called after each DATA chunk was handled (the daemon flushes its TUN write batch). */
  readonly afterData?: () => void;
}

/** Counters shared by every tunnel of one HTTP/2 endpoint (gateway listener or agent client). */
export class H2TunnelCounters {
  capsulesReceived = 0;
  datagramCapsulesReceived = 0;
  capsulesSent = 0;
  datagramsSent = 0;
  /** DATAGRAM capsules dropped because the outer stream was backpressured (send queue past its bound). */
  datagramsDroppedBackpressure = 0;
  /** Capsules or datagrams dropped because the stream had closed. */
  droppedClosed = 0;
  /** Streams reset for a malformed capsule stream (RFC 9297 §3.3) or an oversized capsule. */
  capsuleErrors = 0;
}

/**
 * HTTP/2 error code (RFC 9113 §7) for the H3 code a session aborts with: a
 * malformed message is PROTOCOL_ERROR (RFC 9113 §8.1.1), excessive load
 * ENHANCE_YOUR_CALM, cancellation CANCEL.
 */
export function h2CodeFor(h3Code: number): number {
  switch (h3Code) {
    case H3Error.H3_NO_ERROR:
    case 0:
      return h2c.NGHTTP2_NO_ERROR;
    case H3Error.H3_MESSAGE_ERROR:
    case H3Error.H3_GENERAL_PROTOCOL_ERROR:
    case H3Error.H3_DATAGRAM_ERROR:
    case H3Error.H3_FRAME_ERROR:
    case H3Error.H3_FRAME_UNEXPECTED:
      return h2c.NGHTTP2_PROTOCOL_ERROR;
    case H3Error.H3_EXCESSIVE_LOAD:
      return h2c.NGHTTP2_ENHANCE_YOUR_CALM;
    case H3Error.H3_REQUEST_CANCELLED:
      return h2c.NGHTTP2_CANCEL;
    case H3Error.H3_REQUEST_REJECTED:
      return h2c.NGHTTP2_REFUSED_STREAM;
    case H3Error.H3_CONNECT_ERROR:
      return h2c.NGHTTP2_CONNECT_ERROR;
    default:
      return h2c.NGHTTP2_INTERNAL_ERROR;
  }
}

/** The H3 code a session sees for an HTTP/2 reset code (0 for NO_ERROR: a clean end). */
export function h3CodeFor(h2Code: number): number {
  switch (h2Code) {
    case h2c.NGHTTP2_NO_ERROR:
      return 0;
    case h2c.NGHTTP2_PROTOCOL_ERROR:
      return H3Error.H3_MESSAGE_ERROR;
    case h2c.NGHTTP2_ENHANCE_YOUR_CALM:
      return H3Error.H3_EXCESSIVE_LOAD;
    case h2c.NGHTTP2_CANCEL:
      return H3Error.H3_REQUEST_CANCELLED;
    case h2c.NGHTTP2_REFUSED_STREAM:
      return H3Error.H3_REQUEST_REJECTED;
    case h2c.NGHTTP2_CONNECT_ERROR:
      return H3Error.H3_CONNECT_ERROR;
    default:
      return H3Error.H3_INTERNAL_ERROR;
  }
}

/**
 * The {@link TunnelStream} of one accepted (gateway) or established (agent)
 * HTTP/2 Extended CONNECT stream. Reads DATA into a bounded
 * {@link CapsuleReassembler}; DATAGRAM capsules go to `handler.onDatagram`,
 * every other type to `handler.onCapsule` (unknown ones are the session's to
 * skip, RFC 9297 §3.2). `onClose` is called exactly once.
 */
export class H2Tunnel implements TunnelStream {
  private readonly capsules: CapsuleReassembler;
  private closedReported = false;

  /** Takes over `stream` (its 'data', 'end' and 'close' events); `counters` may be shared. */
  constructor(
    private readonly stream: Http2Stream,
    private readonly handler: TunnelStreamHandler,
    private readonly limits: H2TunnelOptions,
    private readonly counters: H2TunnelCounters,
  ) {
    this.capsules = new CapsuleReassembler(limits.maxCapsuleBytes, (type, buf, off, len) => {
      counters.capsulesReceived++;
      if (type === CAPSULE_DATAGRAM) {
        // RFC 9297 §3.5: the value is an HTTP Datagram payload (context ID first).
        counters.datagramCapsulesReceived++;
        handler.onDatagram(buf, off, len);
      } else {
        handler.onCapsule(type, buf.subarray(off, off + len));
      }
    });
    stream.on('data', (chunk: Buffer) => {
      const err = this.capsules.push(chunk, 0, chunk.length);
      if (err !== 0) this.failCapsules(err);
      limits.afterData?.();
    });
    stream.on('end', () => {
      // RFC 9297 §3.3: a stream ending inside a capsule is malformed.
      const err = this.capsules.finish();
      if (err !== 0) {
        this.failCapsules(err);
        return;
      }
      this.reportClose(0);
      if (!stream.closed && !stream.writableEnded) stream.end();
    });
    stream.on('error', () => undefined); // 'close' follows with the code
    stream.on('close', () => this.reportClose(h3CodeFor(stream.rstCode ?? h2c.NGHTTP2_NO_ERROR)));
  }

  get streamId(): number {
    return this.stream.id ?? -1;
  }

  /** True once the stream closed or ended in either direction. */
  get isClosed(): boolean {
    return this.closedReported || this.stream.closed || this.stream.destroyed || this.stream.writableEnded;
  }

  /** Bytes waiting to be written: this stream's queue plus its TCP connection's. */
  queuedBytes(): number {
    const sock = this.stream.session?.socket as { writableLength?: number } | undefined;
    return this.stream.writableLength + (sock?.writableLength ?? 0);
  }

  sendCapsule(type: number, value: Uint8Array): boolean {
    if (this.isClosed) {
      this.counters.droppedClosed++;
      return false;
    }
    // Control capsules are small and rare; they are queued even under backpressure (never dropped).
    const hl = capsuleHeaderLength(type, value.length);
    const out = Buffer.allocUnsafe(hl + value.length);
    encodeCapsuleHeader(type, value.length, out, 0);
    out.set(value, hl);
    this.stream.write(out);
    this.counters.capsulesSent++;
    return true;
  }

  /**
   * One HTTP Datagram as a DATAGRAM capsule (RFC 9297 §3.5). The payload is
   * copied (HTTP/2 keeps what it is given until the socket took it), so the
   * caller's buffer is free on return. Dropped, counted, when the stream is
   * closed or its send queue would pass `sendQueueBytes`.
   * TODO(cost): one small Buffer per datagram (from Node's pooled slab).
   */
  sendDatagram(buf: Uint8Array, offset: number, length: number): boolean {
    if (this.isClosed) {
      this.counters.droppedClosed++;
      return false;
    }
    const hl = capsuleHeaderLength(CAPSULE_DATAGRAM, length);
    if (this.queuedBytes() + hl + length > this.limits.sendQueueBytes) {
      this.counters.datagramsDroppedBackpressure++;
      return false;
    }
    const out = Buffer.allocUnsafe(hl + length);
    encodeCapsuleHeader(CAPSULE_DATAGRAM, length, out, 0);
    out.set(buf.subarray(offset, offset + length), hl);
    this.stream.write(out);
    this.counters.datagramsSent++;
    return true;
  }

  maxDatagramPayload(): number {
    return this.isClosed ? 0 : this.limits.maxDatagramPayloadBytes;
  }

  close(): void {
    if (!this.stream.closed && !this.stream.writableEnded) this.stream.end();
  }

  abort(errorCode: number): void {
    if (this.stream.closed || this.stream.destroyed) return;
    this.stream.close(h2CodeFor(errorCode));
  }

  /** The capsule stream is malformed or a capsule too large: reset with the matching HTTP/2 code. */
  private failCapsules(h3Code: number): void {
    this.counters.capsuleErrors++;
    this.abort(h3Code);
    this.reportClose(h3Code);
  }

  private reportClose(code: number): void {
    if (this.closedReported) return;
    this.closedReported = true;
    this.handler.onClose(code);
  }
}
