/**
 * HTTP Datagram framing on QUIC DATAGRAM frames (RFC 9297 §2.1): the
 * Quarter Stream ID prefix, written in place into caller headroom.
 */

import { encodeVarintLen, parseVarint, varintLength, varintLengthAt, VARINT_NEED_MORE } from '../quic/varint.js';

/** RFC 9297 §2.1: the largest legal Quarter Stream ID (stream IDs are below 2^62). */
export const MAX_QUARTER_STREAM_ID = 2 ** 60 - 1;

/** {@link parseQuarterStreamId}: the payload is too short to hold a Quarter Stream ID. */
export const QSID_TOO_SHORT = -1;
/** {@link parseQuarterStreamId}: the Quarter Stream ID exceeds 2^60 − 1. */
export const QSID_TOO_LARGE = -2;

/**
 * Read the Quarter Stream ID at buf[off, end). Returns it, or
 * {@link QSID_TOO_SHORT} / {@link QSID_TOO_LARGE} — both a connection error
 * H3_DATAGRAM_ERROR (RFC 9297 §2.1). The HTTP Datagram payload starts at
 * off + varintLengthAt(buf, off). Allocation-free; never throws.
 */
export function parseQuarterStreamId(buf: Uint8Array, off: number, end: number): number {
  const v = parseVarint(buf, off, end);
  if (v === VARINT_NEED_MORE) return QSID_TOO_SHORT;
  // An 8-byte varint carries bits 56..61 in its first byte; bits 60/61 set means ≥ 2^60.
  // Checked on the raw byte because doubles cannot tell 2^60 − 1 from 2^60.
  if (varintLengthAt(buf, off) === 8 && (buf[off]! & 0x30) !== 0) return QSID_TOO_LARGE;
  return v;
}

/** Bytes the Quarter Stream ID of this request stream takes (minimal varint). */
export function quarterStreamIdLength(streamId: number): number {
  return varintLength(streamId / 4);
}

/**
 * Write the Quarter Stream ID of `streamId` (a client-initiated
 * bidirectional stream) just before buf[payloadOff], in the caller's
 * headroom, and return where the DATAGRAM frame payload now starts.
 * The caller guarantees payloadOff ≥ {@link quarterStreamIdLength}.
 */
export function writeQuarterStreamId(streamId: number, buf: Uint8Array, payloadOff: number): number {
  const q = streamId / 4;
  const n = varintLength(q);
  const start = payloadOff - n;
  encodeVarintLen(q, n, buf, start);
  return start;
}
