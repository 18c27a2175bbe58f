/**
 * ADDRESS_ASSIGN capsule value codec (RFC 9484 §4.7.1): zero or more
 * Assigned Addresses; the full current list each time (an empty list removes all).
 */
import { addressEntryLength, encodeAddressEntry, parseAddressEntries, type AddressEntry } from './address-entry.js';
import type { CapsuleParse } from './capsule-types.js';

/** Decoded ADDRESS_ASSIGN. Request ID 0 means "not in response to a request". */
export interface AddressAssign {
  readonly addresses: readonly AddressEntry[];
}

/** Parses an ADDRESS_ASSIGN capsule value in buf[off, off+len). Never throws. */
export function parseAddressAssign(buf: Uint8Array, off: number, len: number): CapsuleParse<AddressAssign> {
  const r = parseAddressEntries(buf, off, off + len, 'ADDRESS_ASSIGN');
  return r.ok ? { ok: true, value: { addresses: r.value } } : r;
}

/** Encoded length of the capsule value (without type and length). */
export function addressAssignLength(x: AddressAssign): number {
  let n = 0;
  for (const a of x.addresses) n += addressEntryLength(a);
  return n;
}

/** Writes the capsule value at out[off]; returns the offset past it. The caller ensures {@link addressAssignLength} bytes of room. */
export function encodeAddressAssign(x: AddressAssign, out: Uint8Array, off: number): number {
  for (const a of x.addresses) off = encodeAddressEntry(a, out, off);
  return off;
}
