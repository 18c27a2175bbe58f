/**
 * The address entry shared by ADDRESS_ASSIGN and ADDRESS_REQUEST
 * (RFC 9484 §4.7.1 Figure 8, §4.7.2 Figure 10): Request ID (i), IP Version (8),
 * IP Address (32..128), IP Prefix Length (8).
 */
import { VARINT_NEED_MORE, encodeVarint, parseVarint, varintLength, varintLengthAt } from '../../quic/varint.js';
import { hostBitsZero, type IpVersion } from '../../packet/ip-address.js';

/** One Assigned Address or Requested Address. `address` is 4 (IPv4) or 16 (IPv6) bytes. */
export interface AddressEntry {
  readonly requestId: number;
  readonly version: IpVersion;
  readonly address: Uint8Array;
  readonly prefixLength: number;
}

/** Encoded length of one entry. */
export function addressEntryLength(e: AddressEntry): number {
  return varintLength(e.requestId) + 1 + (e.version === 4 ? 4 : 16) + 1;
}

/** Writes one entry at out[off]; returns the offset past it. The caller ensures room. */
export function encodeAddressEntry(e: AddressEntry, out: Uint8Array, off: number): number {
  off = encodeVarint(e.requestId, out, off);
  out[off++] = e.version;
  out.set(e.address, off);
  off += e.address.length;
  out[off++] = e.prefixLength;
  return off;
}

/** Parses entries from buf[off, end). Returns the list or an error (malformed: bad version, prefix too long, host bits set, truncated, Request ID above 2^53 − 1). */
export function parseAddressEntries(
  buf: Uint8Array,
  off: number,
  end: number,
  what: string,
): { ok: true; value: AddressEntry[] } | { ok: false; error: string } {
  const out: AddressEntry[] = [];
  while (off < end) {
    const requestId = parseVarint(buf, off, end);
    if (requestId === VARINT_NEED_MORE) return { ok: false, error: `masque: ${what}: truncated Request ID` };
    // RFC 9484 §4.7.1 allows any varint, but a number above 2^53 − 1 is not exact (2^62 − 1 rounds to
    // 2^62, which no varint can carry): echoing it back would throw. We refuse such IDs as malformed.
    if (requestId > Number.MAX_SAFE_INTEGER) {
      return { ok: false, error: `masque: ${what}: Request ID ${requestId} above 2^53 - 1 (unsupported)` };
    }
    off += varintLengthAt(buf, off);
    if (off >= end) return { ok: false, error: `masque: ${what}: truncated IP Version` };
    const version = buf[off++]!;
    // RFC 9484 §4.7.1/§4.7.2: IP Version MUST be 4 or 6.
    if (version !== 4 && version !== 6) return { ok: false, error: `masque: ${what}: IP Version ${version} is not 4 or 6` };
    const alen = version === 4 ? 4 : 16;
    if (off + alen + 1 > end) return { ok: false, error: `masque: ${what}: truncated IPv${version} address` };
    const address = buf.slice(off, off + alen);
    off += alen;
    const prefixLength = buf[off++]!;
    // RFC 9484 §4.7.1/§4.7.2: prefix length ≤ address length in bits.
    if (prefixLength > alen * 8) {
      return { ok: false, error: `masque: ${what}: prefix length ${prefixLength} exceeds ${alen * 8}` };
    }
    // RFC 9484 §4.7.1/§4.7.2: bits not covered by the prefix MUST be zero.
    if (!hostBitsZero(address, prefixLength)) {
      return { ok: false, error: `masque: ${what}: host bits set beyond prefix length ${prefixLength}` };
    }
    out.push({ requestId, version, address, prefixLength });
  }
  return { ok: true, value: out };
}
