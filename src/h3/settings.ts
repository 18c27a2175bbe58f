/**
 * HTTP/3 SETTINGS (RFC 9114 §7.2.4) with the QPACK (RFC 9204 §5),
 * Extended CONNECT (RFC 9220 §3) and HTTP Datagram (RFC 9297 §2.1.1) settings.
 */

import { encodeVarint, parseVarint, varintLength, varintLengthAt, VARINT_NEED_MORE } from '../quic/varint.js';
import { H3Error } from './errors.js';

/** Setting identifiers we understand. */
export const SettingId = {
  /** RFC 9204 §5 */
  QPACK_MAX_TABLE_CAPACITY: 0x01,
  /** RFC 9114 §7.2.4.1 */
  MAX_FIELD_SECTION_SIZE: 0x06,
  /** RFC 9204 §5 */
  QPACK_BLOCKED_STREAMS: 0x07,
  /** RFC 9220 §3 (RFC 8441 §3) */
  ENABLE_CONNECT_PROTOCOL: 0x08,
  /** RFC 9297 §2.1.1 */
  H3_DATAGRAM: 0x33,
} as const;

/** The peer's settings as we interpret them; defaults apply to absent ones (RFC 9114 §7.2.4.1). */
export interface H3Settings {
  qpackMaxTableCapacity: number;
  /** Infinity when the peer set no limit. */
  maxFieldSectionSize: number;
  qpackBlockedStreams: number;
  enableConnectProtocol: boolean;
  h3Datagram: boolean;
  /** Count of setting identifiers we ignored (unknown or grease). */
  unknownCount: number;
}

/** Settings a peer has before its SETTINGS frame arrives (RFC 9114 §7.2.4.2 defaults). */
export function defaultSettings(): H3Settings {
  return {
    qpackMaxTableCapacity: 0,
    maxFieldSectionSize: Infinity,
    qpackBlockedStreams: 0,
    enableConnectProtocol: false,
    h3Datagram: false,
    unknownCount: 0,
  };
}

/** Result of {@link parseSettings}. */
export type SettingsResult =
  | { readonly ok: true; readonly settings: H3Settings }
  | { readonly ok: false; readonly code: number; readonly reason: string };

const bad = (code: number, reason: string): SettingsResult => ({ ok: false, code, reason });

/**
 * Parse a SETTINGS frame payload buf[off, end). Never throws. Errors:
 * a truncated pair → H3_FRAME_ERROR (§7.1); a repeated identifier, a reserved
 * HTTP/2 identifier 0x02–0x05 (§7.2.4.1), ENABLE_CONNECT_PROTOCOL or
 * H3_DATAGRAM other than 0/1 (RFC 8441 §3, RFC 9297 §2.1.1) → H3_SETTINGS_ERROR.
 */
export function parseSettings(buf: Uint8Array, off: number, end: number): SettingsResult {
  const s = defaultSettings();
  const seen: number[] = [];
  let p = off;
  while (p < end) {
    const id = parseVarint(buf, p, end);
    if (id === VARINT_NEED_MORE) return bad(H3Error.H3_FRAME_ERROR, 'truncated setting identifier');
    p += varintLengthAt(buf, p);
    const value = parseVarint(buf, p, end);
    if (value === VARINT_NEED_MORE) return bad(H3Error.H3_FRAME_ERROR, 'truncated setting value');
    p += varintLengthAt(buf, p);
    if (seen.includes(id)) return bad(H3Error.H3_SETTINGS_ERROR, `setting 0x${id.toString(16)} repeated`);
    seen.push(id);
    switch (id) {
      case 0x02:
      case 0x03:
      case 0x04:
      case 0x05:
        // §7.2.4.1: HTTP/2 settings with no HTTP/3 equivalent.
        return bad(H3Error.H3_SETTINGS_ERROR, `reserved HTTP/2 setting 0x${id.toString(16)}`);
      case SettingId.QPACK_MAX_TABLE_CAPACITY:
        s.qpackMaxTableCapacity = value;
        break;
      case SettingId.MAX_FIELD_SECTION_SIZE:
        s.maxFieldSectionSize = value;
        break;
      case SettingId.QPACK_BLOCKED_STREAMS:
        s.qpackBlockedStreams = value;
        break;
      case SettingId.ENABLE_CONNECT_PROTOCOL:
        if (value > 1) return bad(H3Error.H3_SETTINGS_ERROR, `ENABLE_CONNECT_PROTOCOL=${value}`);
        s.enableConnectProtocol = value === 1;
        break;
      case SettingId.H3_DATAGRAM:
        // RFC 9297 §2.1.1: any value other than 0 or 1 is a connection error.
        if (value > 1) return bad(H3Error.H3_SETTINGS_ERROR, `SETTINGS_H3_DATAGRAM=${value}`);
        s.h3Datagram = value === 1;
        break;
      default:
        s.unknownCount++; // §7.2.4: unknown and grease identifiers are ignored
    }
  }
  return { ok: true, settings: s };
}

/** Encode (identifier, value) pairs as a SETTINGS payload (new buffer; control path). */
export function encodeSettings(pairs: ReadonlyArray<readonly [number, number]>): Uint8Array {
  let n = 0;
  for (const [id, v] of pairs) n += varintLength(id) + varintLength(v);
  const out = new Uint8Array(n);
  let p = 0;
  for (const [id, v] of pairs) {
    p = encodeVarint(id, out, p);
    p = encodeVarint(v, out, p);
  }
  return out;
}
