/**
 * The CONNECT-IP / CONNECT-UDP HTTP Datagram payload: Context ID (i) then the
 * payload (RFC 9484 §6, RFC 9298 §5). Context ID 0 carries a full IP packet
 * (CONNECT-IP) or a UDP payload (CONNECT-UDP); mtun registers no other IDs.
 */
import { H3_DATAGRAM_HEADROOM } from '../../h3/tunnel-stream.js';
import { VARINT_NEED_MORE, parseVarint, varintLengthAt } from '../../quic/varint.js';

/** Headroom a caller leaves before a packet handed to a MASQUE session: the context ID byte plus the HTTP/3 layer's quarter stream ID. */
export const MASQUE_HEADROOM = H3_DATAGRAM_HEADROOM + 1;

/** Result of {@link contextPayloadOffset} for a datagram too short to hold a context ID. */
export const CONTEXT_MALFORMED = -1;
/** Result of {@link contextPayloadOffset} for a context ID other than 0 (RFC 9484 §6 / RFC 9298 §5: drop). */
export const CONTEXT_UNKNOWN = -2;

/**
 * For a datagram payload buf[off, off+len): the offset of the context-0
 * payload, or {@link CONTEXT_MALFORMED} / {@link CONTEXT_UNKNOWN}. A
 * non-minimal encoding of 0 (e.g. 0x4000) is context 0 (RFC 9000 §16).
 * Allocation-free.
 */
export function contextPayloadOffset(buf: Uint8Array, off: number, len: number): number {
  if (len < 1) return CONTEXT_MALFORMED;
  if (buf[off] === 0) return off + 1;
  const v = parseVarint(buf, off, off + len);
  if (v === VARINT_NEED_MORE) return CONTEXT_MALFORMED;
  if (v !== 0) return CONTEXT_UNKNOWN;
  return off + varintLengthAt(buf, off);
}
