/**
 * The narrow interface between HTTP/3 and MASQUE: one accepted (or
 * established) Extended CONNECT request stream speaking the capsule
 * protocol (RFC 9297 §3) with HTTP Datagrams (RFC 9297 §2).
 * src/h3 implements it; MASQUE sessions (src/masque) consume it, and tests
 * may implement it in memory.
 */

/** Headroom the HTTP/3 layer may overwrite before a datagram payload (quarter stream ID, ≤ 8 bytes). */
export const H3_DATAGRAM_HEADROOM = 8;

/** What a MASQUE session may do with its request stream. */
export interface TunnelStream {
  /** The request stream's QUIC stream ID. */
  readonly streamId: number;
  /** Send one capsule (type and value) on the stream (RFC 9297 §3.2). Returns false if the stream is closed. */
  sendCapsule(type: number, value: Uint8Array): boolean;
  /**
   * Send one HTTP Datagram whose payload (context ID and beyond) is
   * buf[offset, offset+length). The layer writes the quarter stream ID into
   * buf[offset-H3_DATAGRAM_HEADROOM, offset) in place, so the caller must
   * leave that headroom. Returns false when dropped (too big or queue full).
   */
  sendDatagram(buf: Uint8Array, offset: number, length: number): boolean;
  /** Largest HTTP Datagram payload (after the quarter stream ID) that fits now; 0 if none can be sent. */
  maxDatagramPayload(): number;
  /** End the stream cleanly (FIN) after queued capsules. */
  close(): void;
  /** Abort both directions with an HTTP/3 error code (RFC 9114 §8.1). */
  abort(errorCode: number): void;
}

/** What the HTTP/3 layer delivers to a MASQUE session. */
export interface TunnelStreamHandler {
  /** A whole capsule arrived. `value` is only valid during the call. Unknown types are passed too; the session skips them. */
  onCapsule(type: number, value: Uint8Array): void;
  /** An HTTP Datagram for this stream; payload is buf[offset, offset+length), valid only during the call. */
  onDatagram(buf: Uint8Array, offset: number, length: number): void;
  /** The stream ended (FIN, reset or connection close); `error` is the H3 error code, 0 for a clean end. */
  onClose(error: number): void;
}
