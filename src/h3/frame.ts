/**
 * HTTP/3 frame and stream type codes (RFC 9114 §7.2, §6.2) and the frame
 * header codec (type and length varints).
 */

import { parseVarint, varintLength, varintLengthAt, encodeVarint, VARINT_NEED_MORE } from '../quic/varint.js';

/** RFC 9114 §7.2 frame types. */
export const FrameType = {
  DATA: 0x00,
  HEADERS: 0x01,
  CANCEL_PUSH: 0x03,
  SETTINGS: 0x04,
  PUSH_PROMISE: 0x05,
  GOAWAY: 0x07,
  MAX_PUSH_ID: 0x0d,
} as const;

/** RFC 9114 §7.2.8: HTTP/2 frame types with no HTTP/3 equivalent; receiving one is H3_FRAME_UNEXPECTED. */
export function isReservedH2FrameType(t: number): boolean {
  return t === 0x02 || t === 0x06 || t === 0x08 || t === 0x09;
}

/** RFC 9114 §6.2 unidirectional stream types. */
export const StreamType = {
  CONTROL: 0x00,
  PUSH: 0x01,
  /** RFC 9204 §4.2 */
  QPACK_ENCODER: 0x02,
  /** RFC 9204 §4.2 */
  QPACK_DECODER: 0x03,
} as const;

/**
 * True for the reserved "grease" code points 0x1f * N + 0x21 used for frame
 * types, stream types, settings and error codes (RFC 9114 §7.2.8, §6.2.3,
 * §7.2.4.1, §8.1). Exact for values below 2^53.
 */
export function isGrease(v: number): boolean {
  return v >= 0x21 && (v - 0x21) % 0x1f === 0;
}

/** A reserved (grease) value 0x1f * n + 0x21 for a small n (kept within 4-byte varints). */
export function greaseValue(n: number): number {
  return 0x1f * (n % 0x100000) + 0x21;
}

/** Parsed frame header: filled by {@link parseFrameHeader}. */
export interface FrameHeader {
  type: number;
  /** Payload length in bytes. */
  length: number;
  /** Bytes taken by the type and length varints. */
  headerLength: number;
}

/**
 * Parse a frame header (RFC 9114 §7.1) at buf[off, end) into out. Returns
 * true when both varints are present, false when more bytes are needed.
 * Never throws; allocation-free.
 */
export function parseFrameHeader(buf: Uint8Array, off: number, end: number, out: FrameHeader): boolean {
  const type = parseVarint(buf, off, end);
  if (type === VARINT_NEED_MORE) return false;
  const tl = varintLengthAt(buf, off);
  const length = parseVarint(buf, off + tl, end);
  if (length === VARINT_NEED_MORE) return false;
  out.type = type;
  out.length = length;
  out.headerLength = tl + varintLengthAt(buf, off + tl);
  return true;
}

/** Bytes needed for a frame header with this type and payload length. */
export function frameHeaderLength(type: number, length: number): number {
  return varintLength(type) + varintLength(length);
}

/** Write a frame header at out[off]; returns the offset past it. The caller sizes out. */
export function encodeFrameHeader(type: number, length: number, out: Uint8Array, off: number): number {
  off = encodeVarint(type, out, off);
  return encodeVarint(length, out, off);
}

/** A whole frame (header + copy of payload) in a new buffer; for the control path, not per packet. */
export function encodeFrame(type: number, payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(frameHeaderLength(type, payload.length) + payload.length);
  const p = encodeFrameHeader(type, payload.length, out, 0);
  out.set(payload, p);
  return out;
}
