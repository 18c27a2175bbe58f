/**
 * CONNECT-IP capsule type codes (RFC 9484 §12.4) and the result shape every
 * capsule parser in this directory returns.
 */

/** ADDRESS_ASSIGN capsule type (RFC 9484 §4.7.1, §12.4). */
export const CAPSULE_ADDRESS_ASSIGN = 0x01;
/** ADDRESS_REQUEST capsule type (RFC 9484 §4.7.2, §12.4). */
export const CAPSULE_ADDRESS_REQUEST = 0x02;
/** ROUTE_ADVERTISEMENT capsule type (RFC 9484 §4.7.3, §12.4). */
export const CAPSULE_ROUTE_ADVERTISEMENT = 0x03;

/**
 * Result of a capsule parser: the decoded value, or why the capsule is
 * malformed. A malformed CONNECT-IP capsule means the receiver aborts the
 * request stream (RFC 9484 §4.7, RFC 9297 §3.3). Parsers never throw.
 */
export type CapsuleParse<T> = { ok: true; value: T } | { ok: false; error: string };

/** H3_GENERAL_PROTOCOL_ERROR (RFC 9114 §8.1): used to abort a stream that carried a malformed capsule. */
export const H3_GENERAL_PROTOCOL_ERROR = 0x101;
/** H3_DATAGRAM_ERROR (RFC 9297 §5.2). */
export const H3_DATAGRAM_ERROR = 0x33;
/** H3_REQUEST_CANCELLED (RFC 9114 §8.1): used when we end a session on our own (e.g. idle timeout). */
export const H3_REQUEST_CANCELLED = 0x10c;
/** H3_CONNECT_ERROR (RFC 9114 §8.1): the proxied connection (socket) failed. */
export const H3_CONNECT_ERROR = 0x10f;
