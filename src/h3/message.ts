/**
 * HTTP/3 message validation (RFC 9114 §4.2, §4.3) including Extended
 * CONNECT (RFC 9220 §3, RFC 8441 §4). Pure functions over decoded fields.
 */

import type { FieldLine } from './qpack.js';

/** A validated request head; `headers` holds the regular (non-pseudo) fields in order. */
export interface RequestHead {
  readonly method: string;
  readonly scheme: string | undefined;
  readonly authority: string | undefined;
  readonly path: string | undefined;
  /** RFC 9220 `:protocol` for Extended CONNECT, else undefined. */
  readonly protocol: string | undefined;
  readonly headers: FieldLine[];
}

/** A validated response head. */
export interface ResponseHead {
  readonly status: number;
  readonly headers: FieldLine[];
}

/** Validation outcome: the head, or why the message is malformed (→ H3_MESSAGE_ERROR, RFC 9114 §4.1.2). */
export type Validated<T> = { readonly ok: true; readonly head: T } | { readonly ok: false; readonly reason: string };

/** RFC 9114 §4.2: connection-specific fields are malformed in HTTP/3. */
const CONNECTION_SPECIFIC = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade']);

/** Name check (RFC 9114 §4.2, §10.3): non-empty, no uppercase, no controls, SP, DEL or non-ASCII. */
function badName(n: string): string | null {
  if (n.length === 0) return 'empty field name';
  for (let i = 0; i < n.length; i++) {
    const c = n.charCodeAt(i);
    if (c >= 0x41 && c <= 0x5a) return `uppercase in field name "${n}"`;
    if (c <= 0x20 || c >= 0x7f) return 'invalid character in field name';
    if (c === 0x3a && i > 0) return 'colon inside field name';
  }
  return null;
}

/** Value check (RFC 9110 §5.5, RFC 9114 §10.3): no NUL/CR/LF, no leading or trailing whitespace. */
function badValue(v: string): string | null {
  for (let i = 0; i < v.length; i++) {
    const c = v.charCodeAt(i);
    if (c === 0 || c === 0x0a || c === 0x0d) return 'NUL, CR or LF in field value';
  }
  if (v.length > 0) {
    const a = v.charCodeAt(0);
    const z = v.charCodeAt(v.length - 1);
    if (a === 0x20 || a === 0x09 || z === 0x20 || z === 0x09) return 'whitespace around field value';
  }
  return null;
}

/** Checks on regular fields shared by requests, responses and trailers. */
function checkRegular(n: string, v: string): string | null {
  const bn = badName(n);
  if (bn) return bn;
  const bv = badValue(v);
  if (bv) return bv;
  if (CONNECTION_SPECIFIC.has(n)) return `connection-specific field "${n}"`;
  if (n === 'te' && v !== 'trailers') return 'TE other than "trailers"';
  return null;
}

/**
 * Validate a request field section (RFC 9114 §4.3.1). `connectProtocolEnabled`
 * tells whether we sent SETTINGS_ENABLE_CONNECT_PROTOCOL=1: only then is
 * `:protocol` accepted (RFC 9220 §3, RFC 8441 §4). Extended CONNECT must
 * carry `:scheme`, `:path` and `:authority`; plain CONNECT carries only
 * `:authority` (RFC 9114 §4.4).
 */
export function validateRequest(fields: readonly FieldLine[], connectProtocolEnabled: boolean): Validated<RequestHead> {
  let method: string | undefined;
  let scheme: string | undefined;
  let authority: string | undefined;
  let path: string | undefined;
  let protocol: string | undefined;
  let host: string | undefined;
  let regular = false;
  const headers: FieldLine[] = [];
  for (const f of fields) {
    const [n, v] = f;
    if (n.charCodeAt(0) === 0x3a) {
      // §4.3: pseudo-header fields come first, once each, only the defined ones.
      if (regular) return { ok: false, reason: `pseudo-header ${n} after regular fields` };
      const bv = badValue(v);
      if (bv) return { ok: false, reason: bv };
      switch (n) {
        case ':method':
          if (method !== undefined) return { ok: false, reason: 'duplicate :method' };
          method = v;
          break;
        case ':scheme':
          if (scheme !== undefined) return { ok: false, reason: 'duplicate :scheme' };
          scheme = v;
          break;
        case ':authority':
          if (authority !== undefined) return { ok: false, reason: 'duplicate :authority' };
          authority = v;
          break;
        case ':path':
          if (path !== undefined) return { ok: false, reason: 'duplicate :path' };
          path = v;
          break;
        case ':protocol':
          if (protocol !== undefined) return { ok: false, reason: 'duplicate :protocol' };
          protocol = v;
          break;
        default:
          return { ok: false, reason: `pseudo-header ${n} not allowed in a request` };
      }
      continue;
    }
    regular = true;
    const bad = checkRegular(n, v);
    if (bad) return { ok: false, reason: bad };
    if (n === 'host') host = v;
    headers.push(f);
  }
  if (method === undefined || method.length === 0) return { ok: false, reason: 'missing :method' };
  if (protocol !== undefined) {
    // RFC 9220 §3 / RFC 8441 §4
    if (!connectProtocolEnabled) return { ok: false, reason: ':protocol without SETTINGS_ENABLE_CONNECT_PROTOCOL' };
    if (method !== 'CONNECT') return { ok: false, reason: ':protocol on a non-CONNECT request' };
    if (protocol.length === 0) return { ok: false, reason: 'empty :protocol' };
    if (!scheme || !path || !authority) return { ok: false, reason: 'Extended CONNECT needs :scheme, :path and :authority' };
  } else if (method === 'CONNECT') {
    // RFC 9114 §4.4: plain CONNECT has :authority and no :scheme/:path.
    if (scheme !== undefined || path !== undefined) return { ok: false, reason: 'CONNECT with :scheme or :path' };
    if (!authority) return { ok: false, reason: 'CONNECT without :authority' };
  } else {
    // §4.3.1: :method, :scheme and a non-empty :path; authority for http(s).
    if (!scheme) return { ok: false, reason: 'missing :scheme' };
    if (!path) return { ok: false, reason: 'missing or empty :path' };
    if ((scheme === 'http' || scheme === 'https') && !authority && !host) {
      return { ok: false, reason: 'missing :authority and Host' };
    }
  }
  if (authority !== undefined && host !== undefined && authority !== host) {
    return { ok: false, reason: ':authority and Host differ' };
  }
  return { ok: true, head: { method, scheme, authority, path, protocol, headers } };
}

/** Validate a response field section (RFC 9114 §4.3.2): exactly one three-digit `:status`. */
export function validateResponse(fields: readonly FieldLine[]): Validated<ResponseHead> {
  let status: number | undefined;
  let regular = false;
  const headers: FieldLine[] = [];
  for (const f of fields) {
    const [n, v] = f;
    if (n.charCodeAt(0) === 0x3a) {
      if (regular) return { ok: false, reason: `pseudo-header ${n} after regular fields` };
      if (n !== ':status') return { ok: false, reason: `pseudo-header ${n} not allowed in a response` };
      if (status !== undefined) return { ok: false, reason: 'duplicate :status' };
      if (!/^[1-9][0-9][0-9]$/.test(v)) return { ok: false, reason: `bad :status "${v}"` };
      status = Number(v);
      continue;
    }
    regular = true;
    const bad = checkRegular(n, v);
    if (bad) return { ok: false, reason: bad };
    headers.push(f);
  }
  if (status === undefined) return { ok: false, reason: 'missing :status' };
  if (status === 101) return { ok: false, reason: '101 is not used in HTTP/3' }; // RFC 9114 §4.5
  return { ok: true, head: { status, headers } };
}

/** Validate a trailer section (RFC 9114 §4.1): regular fields only. */
export function validateTrailers(fields: readonly FieldLine[]): string | null {
  for (const [n, v] of fields) {
    if (n.charCodeAt(0) === 0x3a) return `pseudo-header ${n} in trailers`;
    const bad = checkRegular(n, v);
    if (bad) return bad;
  }
  return null;
}

/** First value of a field by lowercase name, or undefined. */
export function fieldValue(fields: readonly FieldLine[], name: string): string | undefined {
  for (const [n, v] of fields) if (n === name) return v;
  return undefined;
}

/** RFC 9297 §3.4: the Capsule-Protocol header is a Structured Field boolean; `?1` means true. */
export function isCapsuleProtocol(fields: readonly FieldLine[]): boolean {
  const v = fieldValue(fields, 'capsule-protocol');
  if (v === undefined) return false;
  // sf-boolean with optional parameters (RFC 8941 §3.3.6); parameters are ignored.
  const semi = v.indexOf(';');
  return (semi < 0 ? v : v.slice(0, semi)).trim() === '?1';
}
