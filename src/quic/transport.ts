/**
 * The narrow interface between one QUIC connection and the HTTP/3 layer.
 * src/quic implements it over the QUIC engine's connection; tests may implement it
 * with an in-memory pair. HTTP/3 never sees engine types.
 */

/** Stream directions for shutdown (RFC 9000 §3: STOP_SENDING / RESET_STREAM). */
export type StreamDirection = 'read' | 'write';

/** One established (or establishing) QUIC connection as HTTP/3 sees it. */
export interface QuicTransport {
  /** True on the server (gateway) side. */
  readonly isServer: boolean;
  /**
   * Queue bytes on a stream (opening it if it is new and ours to open).
   * Returns bytes accepted: fewer than data.length under flow control, 0 when
   * blocked. Throws QuicStreamError when the peer stopped or reset it.
   */
  streamSend(streamId: number, data: Uint8Array, fin: boolean): number;
  /**
   * Read into buf. Returns [bytesRead, fin], or null when nothing is ready.
   * Throws QuicStreamError when the peer reset the stream.
   */
  streamRecv(streamId: number, buf: Uint8Array): [number, boolean] | null;
  /** Streams with data, a FIN or a reset waiting to be read (a list of the caller's own: an array is not copied). */
  readableStreams(): Iterable<number>;
  /**
   * Optional: whether {@link readableStreams} would name any stream, without
   * building the list (a datagram-only `readable` event then skips it).
   * Absent: the reader asks readableStreams every time.
   */
  hasReadableStreams?(): boolean;
  /**
   * Optional: while DATAGRAMs go out, keep `frame` (whole bytes the peer
   * ignores, at most 8) in flight on our open stream `streamId`, so that the
   * engine's probe timeout covers them (ngtcp2 0.12 arms none for DATAGRAM
   * packets, and an outage longer than a round trip would stall the
   * connection for good). An empty frame turns it off; until then every
   * write on that stream must be a whole frame.
   */
  setPtoAnchor?(streamId: number, frame: Uint8Array): void;
  /** Streams that accept more data now. */
  writableStreams(): Iterable<number>;
  /** STOP_SENDING (read) or RESET_STREAM (write) with an application error code. */
  streamShutdown(streamId: number, dir: StreamDirection, errorCode: number): void;
  /**
   * Queue one QUIC DATAGRAM frame with payload data[offset, offset+length).
   * The bytes are copied before return. Returns false when dropped (too big
   * for the path now, or the send queue is full); the caller counts it.
   */
  dgramSend(data: Uint8Array, offset: number, length: number): boolean;
  /**
   * Take the waiting DATAGRAM payloads, oldest first, back to back into buf
   * while the next fits, their lengths into lens (at most lens.length); how
   * many, 0 when none waits. One call for a receive batch instead of one per
   * datagram.
   */
  dgramRecvBatch(buf: Uint8Array, lens: Uint32Array): number;
  /** Largest DATAGRAM payload that fits the path now; null before the peer allowed datagrams. */
  dgramMaxWritableLen(): number | null;
  /** Close the connection with an application (app=true) or transport error code. */
  close(app: boolean, errorCode: number, reason: string): void;
  /**
   * Optional: send what was queued (stream data, datagrams) now instead of
   * at the end of the endpoint's current batch. Call once after a burst of
   * writes from outside the transport's own event callbacks (e.g. a TUN
   * read batch); packets are coalesced per call, not per datagram.
   */
  flush?(): void;
}

/** A stream was reset or stopped by the peer. */
export class QuicStreamError extends Error {
  constructor(
    readonly streamId: number,
    readonly errorCode: number,
  ) {
    super(`quic: stream ${streamId} closed by peer with code 0x${errorCode.toString(16)}`);
    this.name = 'QuicStreamError';
  }
}
