/**
 * HTTP/3 (RFC 9114 §8.1), QPACK (RFC 9204 §6) and HTTP Datagram (RFC 9297 §5.2)
 * error codes.
 */

/** HTTP/3 application error codes (RFC 9114 §8.1) plus RFC 9204 §6 and RFC 9297 §5.2. */
export const H3Error = {
  H3_NO_ERROR: 0x100,
  H3_GENERAL_PROTOCOL_ERROR: 0x101,
  H3_INTERNAL_ERROR: 0x102,
  H3_STREAM_CREATION_ERROR: 0x103,
  H3_CLOSED_CRITICAL_STREAM: 0x104,
  H3_FRAME_UNEXPECTED: 0x105,
  H3_FRAME_ERROR: 0x106,
  H3_EXCESSIVE_LOAD: 0x107,
  H3_ID_ERROR: 0x108,
  H3_SETTINGS_ERROR: 0x109,
  H3_MISSING_SETTINGS: 0x10a,
  H3_REQUEST_REJECTED: 0x10b,
  H3_REQUEST_CANCELLED: 0x10c,
  H3_REQUEST_INCOMPLETE: 0x10d,
  H3_MESSAGE_ERROR: 0x10e,
  H3_CONNECT_ERROR: 0x10f,
  H3_VERSION_FALLBACK: 0x110,
  /** RFC 9204 §6 */
  QPACK_DECOMPRESSION_FAILED: 0x200,
  QPACK_ENCODER_STREAM_ERROR: 0x201,
  QPACK_DECODER_STREAM_ERROR: 0x202,
  /** RFC 9297 §5.2 */
  H3_DATAGRAM_ERROR: 0x33,
} as const;

/** Name of an H3 error code for logs and metric labels ("0x…" when unknown, e.g. grease). */
export function h3ErrorName(code: number): string {
  for (const [k, v] of Object.entries(H3Error)) if (v === code) return k;
  return `0x${code.toString(16)}`;
}
