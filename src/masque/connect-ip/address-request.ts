/**
 * ADDRESS_REQUEST capsule value codec (RFC 9484 §4.7.2): one or more
 * Requested Addresses; an all-zero address asks for any address of that family.
 */
import { addressEntryLength, encodeAddressEntry, parseAddressEntries, type AddressEntry } from './address-entry.js';
import type { CapsuleParse } from './capsule-types.js';

/** Decoded ADDRESS_REQUEST (at least one entry, all Request IDs non-zero and distinct). */
export interface AddressRequest {
  readonly addresses: readonly AddressEntry[];
}

/**
 * Parses an ADDRESS_REQUEST capsule value in buf[off, off+len). Never throws.
 * Malformed (→ abort the stream): zero entries (§4.7.2), Request ID 0 (§4.7.2
 * "MUST NOT be zero"), a Request ID repeated within the capsule, or any entry
 * error from the shared entry format.
 */
export function parseAddressRequest(buf: Uint8Array, off: number, len: number): CapsuleParse<AddressRequest> {
  const r = parseAddressEntries(buf, off, off + len, 'ADDRESS_REQUEST');
  if (!r.ok) return r;
  // RFC 9484 §4.7.2: zero Requested Addresses → abort the request stream.
  if (r.value.length === 0) return { ok: false, error: 'masque: ADDRESS_REQUEST: zero Requested Addresses' };
  const seen = new Set<number>();
  for (const e of r.value) {
    if (e.requestId === 0) return { ok: false, error: 'masque: ADDRESS_REQUEST: Request ID 0' };
    if (seen.has(e.requestId)) return { ok: false, error: `masque: ADDRESS_REQUEST: Request ID ${e.requestId} repeated` };
    seen.add(e.requestId);
  }
  return { ok: true, value: { addresses: r.value } };
}

/** Encoded length of the capsule value (without type and length). */
export function addressRequestLength(x: AddressRequest): number {
  let n = 0;
  for (const a of x.addresses) n += addressEntryLength(a);
  return n;
}

/** Writes the capsule value at out[off]; returns the offset past it. The caller ensures {@link addressRequestLength} bytes of room. */
export function encodeAddressRequest(x: AddressRequest, out: Uint8Array, off: number): number {
  for (const a of x.addresses) off = encodeAddressEntry(a, out, off);
  return off;
}
