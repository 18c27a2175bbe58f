/**
 * The stateless server side of QUIC long headers, in TypeScript: parsing a
 * client's first datagram (RFC 9000 §17.2, RFC 8999 §5.1 invariants) and
 * writing Retry (RFC 9000 §17.2.5 with the RFC 9001 §5.8 integrity tag) and
 * Version Negotiation (RFC 9000 §17.2.1) packets.
 *
 * This is the path every spoofed Initial of a flood takes, so it must be
 * cheap: the binding's `Header.fromSlice`, `retry` and `negotiateVersion`
 * allocate objects and buffers across napi on every call (about 4 and 9 µs
 * for the first two). Here the header is read into a reused view object
 * and packets are written into the caller's buffer;
 * bench/reliability/initial-cost.ts measures the whole per-Initial cost.
 */
import { createCipheriv } from 'node:crypto';
import { parseVarint, varintLengthAt, VARINT_NEED_MORE } from './varint.js';

/** QUIC version 1 (RFC 9000 §15). The only version this endpoint speaks. */
export const QUIC_V1 = 0x00000001;
/** RFC 9000 §17.2: connection IDs in v1 long headers are at most 20 bytes. */
export const MAX_CID_BYTES = 20;
/** RFC 9001 §5.8: Retry integrity tag length (AES-128-GCM tag). */
const RETRY_TAG_BYTES = 16;
/** RFC 9001 §5.8: the fixed v1 Retry integrity key and nonce. */
const RETRY_KEY_V1 = Buffer.from('be0c690b9f66575a1d766b54e368c84e', 'hex');
const RETRY_NONCE_V1 = Buffer.from('461599d35d632bf2239825bb', 'hex');

/** RFC 9000 §17.2 long packet types (v1), bits 4–5 of the first byte. */
export const enum LongType {
  INITIAL = 0,
  ZERO_RTT = 1,
  HANDSHAKE = 2,
  RETRY = 3,
}

/**
 * A parsed long header as offsets into the datagram it came from; one
 * object is reused for every packet. Token fields are set for v1 Initials
 * only (tokenLen -1 otherwise).
 */
export interface LongHeaderView {
  version: number;
  /** Long packet type (v1 only; meaningless for other versions). */
  type: number;
  dcidOff: number;
  dcidLen: number;
  scidOff: number;
  scidLen: number;
  tokenOff: number;
  tokenLen: number;
}

/** A view to pass to {@link parseLongHeader}. */
export function newLongHeaderView(): LongHeaderView {
  return { version: 0, type: 0, dcidOff: 0, dcidLen: 0, scidOff: 0, scidLen: 0, tokenOff: 0, tokenLen: -1 };
}

/** Why {@link parseLongHeader} refused a datagram. */
export const enum LongHeaderError {
  OK = 0,
  /** Not a long header, or it ends inside the version or a connection ID. */
  TRUNCATED = 1,
  /** A v1 connection ID over 20 bytes. */
  CID_TOO_LONG = 2,
  /** A v1 Initial whose token length does not fit the datagram. */
  BAD_TOKEN = 3,
}

/**
 * Reads the long header at buf[off, off+len) into `h`. For any version it
 * reads what RFC 8999 §5.1 fixes (version, DCID, SCID, each CID up to 255
 * bytes); for v1 it also checks the 20-byte CID limit and, for Initials,
 * reads the token (RFC 9000 §17.2.2). Allocates nothing.
 */
export function parseLongHeader(buf: Uint8Array, off: number, len: number, h: LongHeaderView): LongHeaderError {
  const end = off + len;
  if (len < 7 || (buf[off]! & 0x80) === 0) return LongHeaderError.TRUNCATED;
  const version = ((buf[off + 1]! << 24) | (buf[off + 2]! << 16) | (buf[off + 3]! << 8) | buf[off + 4]!) >>> 0;
  const dcidLen = buf[off + 5]!;
  const dcidOff = off + 6;
  if (dcidOff + dcidLen + 1 > end) return LongHeaderError.TRUNCATED;
  const scidLen = buf[dcidOff + dcidLen]!;
  const scidOff = dcidOff + dcidLen + 1;
  if (scidOff + scidLen > end) return LongHeaderError.TRUNCATED;
  h.version = version;
  h.type = (buf[off]! >> 4) & 0x03;
  h.dcidOff = dcidOff;
  h.dcidLen = dcidLen;
  h.scidOff = scidOff;
  h.scidLen = scidLen;
  h.tokenOff = 0;
  h.tokenLen = -1;
  if (version !== QUIC_V1) return LongHeaderError.OK;
  if (dcidLen > MAX_CID_BYTES || scidLen > MAX_CID_BYTES) return LongHeaderError.CID_TOO_LONG;
  if (h.type !== LongType.INITIAL) return LongHeaderError.OK;
  const p = scidOff + scidLen;
  const tokenLen = parseVarint(buf, p, end);
  if (tokenLen === VARINT_NEED_MORE) return LongHeaderError.BAD_TOKEN;
  const tokenOff = p + varintLengthAt(buf, p);
  if (tokenLen > end - tokenOff) return LongHeaderError.BAD_TOKEN;
  h.tokenOff = tokenOff;
  h.tokenLen = tokenLen;
  return LongHeaderError.OK;
}

/**
 * Writes a v1 Retry (RFC 9000 §17.2.5) answering the Initial whose header
 * `h` describes in `pkt`: DCID = the client's SCID, SCID = `retryScid`,
 * then `token` and the integrity tag over the pseudo-packet that prefixes
 * the client's original DCID (RFC 9001 §5.8). Returns the length written
 * to `out`, or -1 when it does not fit.
 */
export function writeRetry(
  pkt: Uint8Array,
  h: LongHeaderView,
  retryScid: Uint8Array,
  token: Uint8Array,
  out: Uint8Array,
  scratch: Uint8Array,
): number {
  const n = 1 + 4 + 1 + h.scidLen + 1 + retryScid.length + token.length;
  const pseudoLen = 1 + h.dcidLen + n;
  if (n + RETRY_TAG_BYTES > out.length || pseudoLen > scratch.length) return -1;
  // Header form 1, fixed bit 1, type Retry (3); the four unused bits are zero.
  let p = 0;
  out[p++] = 0xf0;
  out[p++] = QUIC_V1 >>> 24;
  out[p++] = (QUIC_V1 >>> 16) & 0xff;
  out[p++] = (QUIC_V1 >>> 8) & 0xff;
  out[p++] = QUIC_V1 & 0xff;
  out[p++] = h.scidLen;
  out.set(pkt.subarray(h.scidOff, h.scidOff + h.scidLen), p);
  p += h.scidLen;
  out[p++] = retryScid.length;
  out.set(retryScid, p);
  p += retryScid.length;
  out.set(token, p);
  p += token.length;
  // Pseudo-packet: ODCID length, ODCID, then the Retry without its tag.
  scratch[0] = h.dcidLen;
  scratch.set(pkt.subarray(h.dcidOff, h.dcidOff + h.dcidLen), 1);
  scratch.set(out.subarray(0, n), 1 + h.dcidLen);
  const gcm = createCipheriv('aes-128-gcm', RETRY_KEY_V1, RETRY_NONCE_V1);
  gcm.setAAD(scratch.subarray(0, pseudoLen));
  gcm.final();
  out.set(gcm.getAuthTag(), n);
  return n + RETRY_TAG_BYTES;
}

/** Bytes a scratch buffer for {@link writeRetry} needs for a token of `tokenBytes`. */
export function retryScratchBytes(tokenBytes: number): number {
  return 1 + 255 + 1 + 4 + 1 + 255 + 1 + MAX_CID_BYTES + tokenBytes;
}

/**
 * Writes a Version Negotiation packet (RFC 9000 §17.2.1) answering the long
 * header `h` of `pkt`: DCID = its SCID, SCID = its DCID, and v1 as the one
 * supported version. Returns the length, or -1 when it does not fit `out`.
 */
export function writeVersionNegotiation(pkt: Uint8Array, h: LongHeaderView, out: Uint8Array, firstByteRandom: number): number {
  const n = 1 + 4 + 1 + h.scidLen + 1 + h.dcidLen + 4;
  if (n > out.length) return -1;
  let p = 0;
  // RFC 9000 §17.2.1: header form 1, the other seven bits unused (random).
  out[p++] = 0x80 | (firstByteRandom & 0x7f);
  out[p++] = 0;
  out[p++] = 0;
  out[p++] = 0;
  out[p++] = 0;
  out[p++] = h.scidLen;
  out.set(pkt.subarray(h.scidOff, h.scidOff + h.scidLen), p);
  p += h.scidLen;
  out[p++] = h.dcidLen;
  out.set(pkt.subarray(h.dcidOff, h.dcidOff + h.dcidLen), p);
  p += h.dcidLen;
  out[p++] = QUIC_V1 >>> 24;
  out[p++] = (QUIC_V1 >>> 16) & 0xff;
  out[p++] = (QUIC_V1 >>> 8) & 0xff;
  out[p++] = QUIC_V1 & 0xff;
  return p;
}
