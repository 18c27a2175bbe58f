/**
 * CONNECT-IP capsule type codes (RFC 9484 §12.4) and the result shape every
 * capsule parser in this directory returns. HTTP/3 error codes live in h3/errors.ts.
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
