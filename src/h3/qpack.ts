/**
 * QPACK field sections (RFC 9204) with a zero-capacity dynamic table: static
 * table, literals, Huffman strings. Any dynamic-table reference is an error.
 */

import { H3Error } from './errors.js';
import { HUFFMAN_INVALID, huffmanDecode, huffmanEncode, huffmanEncodedLength } from './huffman.js';

/** One field line: lowercase name and value, as decoded text. */
export type FieldLine = readonly [name: string, value: string];
/** A field section in order (pseudo-header fields first). */
export type FieldList = readonly FieldLine[];

/** RFC 9204 Appendix A: the static table (99 entries, index 0..98). */
export const QPACK_STATIC_TABLE: readonly FieldLine[] = [
  [':authority', ''], [':path', '/'], ['age', '0'], ['content-disposition', ''], ['content-length', '0'],
  ['cookie', ''], ['date', ''], ['etag', ''], ['if-modified-since', ''], ['if-none-match', ''],
  ['last-modified', ''], ['link', ''], ['location', ''], ['referer', ''], ['set-cookie', ''],
  [':method', 'CONNECT'], [':method', 'DELETE'], [':method', 'GET'], [':method', 'HEAD'], [':method', 'OPTIONS'],
  [':method', 'POST'], [':method', 'PUT'], [':scheme', 'http'], [':scheme', 'https'], [':status', '103'],
  [':status', '200'], [':status', '304'], [':status', '404'], [':status', '503'], ['accept', '*/*'],
  ['accept', 'application/dns-message'], ['accept-encoding', 'gzip, deflate, br'], ['accept-ranges', 'bytes'],
  ['access-control-allow-headers', 'cache-control'], ['access-control-allow-headers', 'content-type'],
  ['access-control-allow-origin', '*'], ['cache-control', 'max-age=0'], ['cache-control', 'max-age=2592000'],
  ['cache-control', 'max-age=604800'], ['cache-control', 'no-cache'], ['cache-control', 'no-store'],
  ['cache-control', 'public, max-age=31536000'], ['content-encoding', 'br'], ['content-encoding', 'gzip'],
  ['content-type', 'application/dns-message'], ['content-type', 'application/javascript'],
  ['content-type', 'application/json'], ['content-type', 'application/x-www-form-urlencoded'],
  ['content-type', 'image/gif'], ['content-type', 'image/jpeg'], ['content-type', 'image/png'],
  ['content-type', 'text/css'], ['content-type', 'text/html; charset=utf-8'], ['content-type', 'text/plain'],
  ['content-type', 'text/plain;charset=utf-8'], ['range', 'bytes=0-'], ['strict-transport-security', 'max-age=31536000'],
  ['strict-transport-security', 'max-age=31536000; includesubdomains'],
  ['strict-transport-security', 'max-age=31536000; includesubdomains; preload'], ['vary', 'accept-encoding'],
  ['vary', 'origin'], ['x-content-type-options', 'nosniff'], ['x-xss-protection', '1; mode=block'],
  [':status', '100'], [':status', '204'], [':status', '206'], [':status', '302'], [':status', '400'],
  [':status', '403'], [':status', '421'], [':status', '425'], [':status', '500'], ['accept-language', ''],
  ['access-control-allow-credentials', 'FALSE'], ['access-control-allow-credentials', 'TRUE'],
  ['access-control-allow-headers', '*'], ['access-control-allow-methods', 'get'],
  ['access-control-allow-methods', 'get, post, options'], ['access-control-allow-methods', 'options'],
  ['access-control-expose-headers', 'content-length'], ['access-control-request-headers', 'content-type'],
  ['access-control-request-method', 'get'], ['access-control-request-method', 'post'], ['alt-svc', 'clear'],
  ['authorization', ''], ['content-security-policy', "script-src 'none'; object-src 'none'; base-uri 'none'"],
  ['early-data', '1'], ['expect-ct', ''], ['forwarded', ''], ['if-range', ''], ['origin', ''],
  ['purpose', 'prefetch'], ['server', ''], ['timing-allow-origin', '*'], ['upgrade-insecure-requests', '1'],
  ['user-agent', ''], ['x-forwarded-for', ''], ['x-frame-options', 'deny'], ['x-frame-options', 'sameorigin'],
];

/** RFC 9114 §4.2.2: each field line counts name + value + 32 bytes. */
export const FIELD_LINE_OVERHEAD = 32;

const STATIC_FULL = new Map<string, number>();
const STATIC_NAME = new Map<string, number>();
QPACK_STATIC_TABLE.forEach(([n, v], i) => {
  const k = `${n}\0${v}`;
  if (!STATIC_FULL.has(k)) STATIC_FULL.set(k, i);
  if (!STATIC_NAME.has(n)) STATIC_NAME.set(n, i);
});

/** Result of {@link decodeFieldSection}. */
export type DecodeResult =
  | { readonly ok: true; readonly fields: FieldLine[]; readonly size: number }
  | { readonly ok: false; readonly code: number; readonly reason: string };

/** Field bytes as a byte string (ISO-8859-1), one char per byte, so decode∘encode is exact. */
function latin1(buf: Uint8Array, start: number, end: number): string {
  return Buffer.from(buf.buffer, buf.byteOffset + start, end - start).toString('latin1');
}
const fail = (code: number, reason: string): DecodeResult => ({ ok: false, code, reason });

// Reused decode scratch for Huffman strings; grown on demand up to the section limit.
let scratch = new Uint8Array(4096);

/** {@link readPrefixInt}: the integer continues past `end`. */
export const PREFIX_INT_TRUNCATED = -1;
/** {@link readPrefixInt}: the integer exceeds 2^49 (no legal QPACK value is that large). */
export const PREFIX_INT_TOO_LARGE = -2;

/**
 * Read a prefix integer (RFC 7541 §5.1) at buf[pos] with an N-bit prefix.
 * Writes the value to st.v and returns the new position, or
 * {@link PREFIX_INT_TRUNCATED} / {@link PREFIX_INT_TOO_LARGE} (both negative;
 * field-section callers treat either as malformed). Reads buf only.
 */
export function readPrefixInt(buf: Uint8Array, pos: number, end: number, prefixBits: number, st: { v: number }): number {
  if (pos >= end) return PREFIX_INT_TRUNCATED;
  const mask = (1 << prefixBits) - 1;
  let v = buf[pos++]! & mask;
  if (v < mask) {
    st.v = v;
    return pos;
  }
  let m = 1;
  for (;;) {
    if (pos >= end) return PREFIX_INT_TRUNCATED;
    const b = buf[pos++]!;
    v += (b & 0x7f) * m;
    m *= 128;
    if ((b & 0x80) === 0) break;
    if (m > 2 ** 49) return PREFIX_INT_TOO_LARGE;
  }
  st.v = v;
  return pos;
}

/** Write a prefix integer (RFC 7541 §5.1); `first` holds the flag bits above the prefix. Returns the new offset. */
function writePrefixInt(out: Uint8Array, pos: number, prefixBits: number, first: number, v: number): number {
  const mask = (1 << prefixBits) - 1;
  if (v < mask) {
    out[pos++] = first | v;
    return pos;
  }
  out[pos++] = first | mask;
  v -= mask;
  while (v >= 128) {
    out[pos++] = (v % 128) | 0x80;
    v = Math.floor(v / 128);
  }
  out[pos++] = v;
  return pos;
}

/**
 * Decode one encoded field section (the payload of a HEADERS frame,
 * RFC 9204 §4.5) from buf[off, end). `maxSize` bounds the decoded size as
 * RFC 9114 §4.2.2 counts it. Never throws: malformed input, and any
 * reference to the dynamic table (we advertise capacity 0, RFC 9204 §3.2.3),
 * give QPACK_DECOMPRESSION_FAILED; an oversize section gives
 * H3_EXCESSIVE_LOAD. The returned strings own their memory.
 */
export function decodeFieldSection(buf: Uint8Array, off: number, end: number, maxSize: number): DecodeResult {
  const F = H3Error.QPACK_DECOMPRESSION_FAILED;
  const st = { v: 0 };
  // §4.5.1: Required Insert Count (8-bit prefix) and Delta Base (7-bit prefix with sign bit).
  let p = readPrefixInt(buf, off, end, 8, st);
  if (p < 0) return fail(F, 'truncated field section prefix');
  if (st.v !== 0) return fail(F, 'field section references the dynamic table (Required Insert Count > 0)');
  p = readPrefixInt(buf, p, end, 7, st);
  if (p < 0) return fail(F, 'truncated field section prefix');
  const fields: FieldLine[] = [];
  let size = 0;
  while (p < end) {
    const b = buf[p]!;
    let name: string;
    let value: string;
    if (b & 0x80) {
      // §4.5.2 Indexed Field Line: 1 T index(6)
      if ((b & 0x40) === 0) return fail(F, 'indexed field line references the dynamic table');
      p = readPrefixInt(buf, p, end, 6, st);
      if (p < 0) return fail(F, 'truncated indexed field line');
      const e = QPACK_STATIC_TABLE[st.v];
      if (!e) return fail(F, `static table index ${st.v} out of range`);
      [name, value] = e;
    } else if (b & 0x40) {
      // §4.5.4 Literal Field Line with Name Reference: 01 N T index(4)
      if ((b & 0x10) === 0) return fail(F, 'literal field line names a dynamic table entry');
      p = readPrefixInt(buf, p, end, 4, st);
      if (p < 0) return fail(F, 'truncated name reference');
      const e = QPACK_STATIC_TABLE[st.v];
      if (!e) return fail(F, `static table index ${st.v} out of range`);
      name = e[0];
      const r = readString(buf, p, end, 7, maxSize);
      if (typeof r === 'string') return fail(r === TOO_LONG ? H3Error.H3_EXCESSIVE_LOAD : F, r);
      p = r.pos;
      value = r.text;
    } else if (b & 0x20) {
      // §4.5.6 Literal Field Line with Literal Name: 001 N H namelen(3)
      const rn = readString(buf, p, end, 3, maxSize);
      if (typeof rn === 'string') return fail(rn === TOO_LONG ? H3Error.H3_EXCESSIVE_LOAD : F, rn);
      p = rn.pos;
      name = rn.text;
      const rv = readString(buf, p, end, 7, maxSize);
      if (typeof rv === 'string') return fail(rv === TOO_LONG ? H3Error.H3_EXCESSIVE_LOAD : F, rv);
      p = rv.pos;
      value = rv.text;
    } else {
      // §4.5.3 Indexed Field Line with Post-Base Index (0001) and §4.5.5 Literal
      // with Post-Base Name Reference (0000): both address the dynamic table.
      return fail(F, 'post-base reference to the dynamic table');
    }
    size += name.length + value.length + FIELD_LINE_OVERHEAD;
    if (size > maxSize) return fail(H3Error.H3_EXCESSIVE_LOAD, `field section exceeds ${maxSize} bytes`);
    fields.push([name, value]);
  }
  return { ok: true, fields, size };
}

const TOO_LONG = 'string literal longer than the field section limit';

/** Read a string literal (RFC 9204 §4.1.2) whose H flag sits just above an N-bit length prefix. */
function readString(
  buf: Uint8Array,
  pos: number,
  end: number,
  prefixBits: number,
  maxLen: number,
): { pos: number; text: string } | string {
  if (pos >= end) return 'truncated string literal';
  const huff = (buf[pos]! & (1 << prefixBits)) !== 0;
  const st = { v: 0 };
  const p = readPrefixInt(buf, pos, end, prefixBits, st);
  if (p < 0) return 'truncated string length';
  const len = st.v;
  if (len > end - p) return 'string literal runs past the field section';
  if (len > maxLen) return TOO_LONG;
  if (!huff) return { pos: p + len, text: latin1(buf, p, p + len) };
  // Huffman output is at most 8/5 of the input.
  const need = Math.ceil((len * 8) / 5) + 1;
  if (scratch.length < need) scratch = new Uint8Array(need);
  const n = huffmanDecode(buf, p, p + len, scratch, 0);
  if (n === HUFFMAN_INVALID || n < 0) return 'invalid Huffman string';
  return { pos: p + len, text: latin1(scratch, 0, n) };
}

/** Bytes of a field name or value on the wire: one byte per char (ISO-8859-1); callers keep text to that range. */
function toBytes(s: string): Uint8Array {
  return Buffer.from(s, 'latin1');
}

function writeString(out: Uint8Array, pos: number, prefixBits: number, flags: number, s: Uint8Array): number {
  const hlen = huffmanEncodedLength(s);
  if (hlen < s.length) {
    pos = writePrefixInt(out, pos, prefixBits, flags | (1 << prefixBits), hlen);
    return huffmanEncode(s, 0, s.length, out, pos);
  }
  pos = writePrefixInt(out, pos, prefixBits, flags, s.length);
  out.set(s, pos);
  return pos + s.length;
}

/**
 * Encode a field section (RFC 9204 §4.5) using only the static table and
 * literals, Huffman-coding strings when shorter. Names must be lowercase.
 * Returns a new buffer owned by the caller (not a hot path).
 */
export function encodeFieldSection(fields: FieldList): Uint8Array {
  let cap = 2;
  const bytes: Array<[Uint8Array, Uint8Array]> = [];
  for (const [n, v] of fields) {
    const nb = toBytes(n);
    const vb = toBytes(v);
    bytes.push([nb, vb]);
    cap += nb.length + vb.length + 16;
  }
  const out = new Uint8Array(cap);
  out[0] = 0; // §4.5.1 Required Insert Count = 0
  out[1] = 0; // S = 0, Delta Base = 0
  let p = 2;
  for (let i = 0; i < fields.length; i++) {
    const [n, v] = fields[i]!;
    const full = STATIC_FULL.get(`${n}\0${v}`);
    if (full !== undefined) {
      p = writePrefixInt(out, p, 6, 0xc0, full); // §4.5.2, T=1
      continue;
    }
    const [nb, vb] = bytes[i]!;
    const nameIdx = STATIC_NAME.get(n);
    if (nameIdx !== undefined) {
      p = writePrefixInt(out, p, 4, 0x50, nameIdx); // §4.5.4: 01 N=0 T=1
      p = writeString(out, p, 7, 0, vb);
    } else {
      p = writeString(out, p, 3, 0x20, nb); // §4.5.6: 001 N=0 H
      p = writeString(out, p, 7, 0, vb);
    }
  }
  return out.slice(0, p);
}
