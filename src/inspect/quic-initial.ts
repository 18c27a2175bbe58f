/**
 * QUIC Initial packets as a passive observer reads them: long-header parsing
 * (RFC 9000 §17.2, §17.2.2), Initial key derivation from the version's
 * public salt (RFC 9001 §5.2 for v1, RFC 9369 §3.3 for v2), header
 * protection removal (RFC 9001 §5.4) and AES-128-GCM payload decryption
 * (RFC 9001 §5.3), and the frames an Initial may carry (RFC 9000 §12.4,
 * §19). Pure functions over caller-owned buffers; node:crypto does the
 * ciphers. Key derivation and decryption allocate (a few small objects per
 * Initial packet), which is why callers bound how often they run.
 */
import { createCipheriv, createDecipheriv, createHmac } from 'node:crypto';

/** QUIC version 1 (RFC 9000 §15). */
export const QUIC_V1 = 0x00000001;
/** QUIC version 2 (RFC 9369 §3.1). */
export const QUIC_V2 = 0x6b3343cf;

/** RFC 9001 §5.2: initial_salt for version 1. */
const SALT_V1 = Buffer.from('38762cf7f55934b34d179ae6a4c80cadccbb7f0a', 'hex');
/** RFC 9369 §3.3.1: initial_salt for version 2. */
const SALT_V2 = Buffer.from('0dede3def700a6db819381be6e269dcbf9bd2ed9', 'hex');

/** Long packet types, normalised to the v1 numbering (RFC 9000 §17.2; RFC 9369 §3.2 renumbers them for v2). */
export const PacketType = { INITIAL: 0, ZERO_RTT: 1, HANDSHAKE: 2, RETRY: 3 } as const;

/** True for the versions whose Initial salt we know. */
export function isKnownVersion(v: number): boolean {
  return v === QUIC_V1 || v === QUIC_V2;
}

/** "v1", "v2", or the version as 8 hex digits. */
export function versionName(v: number): string {
  return v === QUIC_V1 ? 'v1' : v === QUIC_V2 ? 'v2' : (v >>> 0).toString(16).padStart(8, '0');
}

/** The wire type bits of a long header, as a {@link PacketType} for `version`. */
export function longPacketType(version: number, firstByte: number): number {
  const bits = (firstByte >> 4) & 3;
  // RFC 9369 §3.2: Initial 0b01, 0-RTT 0b10, Handshake 0b11, Retry 0b00.
  return version === QUIC_V2 ? (bits + 3) & 3 : bits;
}

/** A parsed long header; offsets are absolute in the buffer it was parsed from. */
export class LongHeader {
  version = 0;
  /** {@link PacketType}. */
  type = 0;
  dcidOff = 0;
  dcidLen = 0;
  /** Offset of the (protected) packet number, for Initial, 0-RTT and Handshake. */
  pnOff = 0;
  /** End of this packet (pnOff + Length), so coalesced packets can be walked (RFC 9000 §12.2). */
  end = 0;
}

/** Reads a QUIC variable-length integer (RFC 9000 §16) at b[p]; -1 past `end`. Sets {@link varintLen}. */
export function readVarint(b: Uint8Array, p: number, end: number): number {
  if (p >= end) return -1;
  const n = 1 << (b[p]! >> 6);
  if (p + n > end) return -1;
  varintLen = n;
  let v = b[p]! & 0x3f;
  for (let k = 1; k < n; k++) v = v * 256 + b[p + k]!;
  return v;
}
/** Bytes the last successful {@link readVarint} consumed. */
export let varintLen = 0;

/**
 * Parses the long header at b[off, end) (RFC 9000 §17.2) into `h`. Only
 * versions 1 and 2 are parsed past the version field.
 * @returns false when it is not a long header of a known version, or is truncated.
 */
export function parseLongHeader(b: Uint8Array, off: number, end: number, h: LongHeader): boolean {
  if (off + 7 > end) return false;
  const b0 = b[off]!;
  if ((b0 & 0xc0) !== 0xc0) return false; // Header Form 1, Fixed Bit 1
  const v = ((b[off + 1]! << 24) | (b[off + 2]! << 16) | (b[off + 3]! << 8) | b[off + 4]!) >>> 0;
  if (!isKnownVersion(v)) return false;
  h.version = v;
  h.type = longPacketType(v, b0);
  let p = off + 5;
  const dl = b[p++]!;
  if (dl > 20 || p + dl >= end) return false; // RFC 9000 §17.2: at most 20 bytes in v1
  h.dcidOff = p;
  h.dcidLen = dl;
  p += dl;
  const sl = b[p++]!;
  if (sl > 20 || p + sl > end) return false;
  p += sl;
  if (h.type === PacketType.RETRY) { h.pnOff = p; h.end = end; return true; }
  if (h.type === PacketType.INITIAL) {
    const tl = readVarint(b, p, end); // RFC 9000 §17.2.2: Token Length, Token
    if (tl < 0) return false;
    p += varintLen + tl;
  }
  const len = readVarint(b, p, end);
  if (len < 0) return false;
  p += varintLen;
  if (p + len > end || len < 20) return false; // room for a 4-byte sample offset and a 16-byte sample
  h.pnOff = p;
  h.end = p + len;
  return true;
}

/** Client Initial packet protection keys (RFC 9001 §5.1–5.2). Buffers are owned by the object. */
export interface InitialKeys {
  key: Buffer;
  iv: Buffer;
  hp: Buffer;
}

/** RFC 8446 §7.1 HKDF-Expand-Label with an empty context, output ≤ 32 bytes (one HMAC-SHA256 block). */
function expandLabel(secret: Uint8Array, label: string, length: number): Buffer {
  const full = Buffer.from(`tls13 ${label}`, 'latin1');
  const info = Buffer.alloc(4 + full.length);
  info.writeUInt16BE(length, 0);
  info[2] = full.length;
  full.copy(info, 3);
  info[3 + full.length] = 0; // context length
  // RFC 5869 §2.3: T(1) = HMAC(PRK, info | 0x01).
  return createHmac('sha256', secret).update(info).update(Buffer.of(1)).digest().subarray(0, length);
}

/**
 * Derives the client's Initial keys for `version` from the Destination
 * Connection ID of the client's first Initial, dcid = b[off, off+len)
 * (RFC 9001 §5.2; RFC 9369 §3.3.1–3.3.2 for v2's salt and "quicv2" labels).
 * Allocates.
 */
export function clientInitialKeys(version: number, b: Uint8Array, off: number, len: number): InitialKeys {
  const salt = version === QUIC_V2 ? SALT_V2 : SALT_V1;
  const initialSecret = createHmac('sha256', salt).update(b.subarray(off, off + len)).digest(); // HKDF-Extract
  const client = expandLabel(initialSecret, 'client in', 32);
  const p = version === QUIC_V2 ? 'quicv2 ' : 'quic ';
  return { key: expandLabel(client, `${p}key`, 16), iv: expandLabel(client, `${p}iv`, 12), hp: expandLabel(client, `${p}hp`, 16) };
}

/**
 * Removes header protection and decrypts the Initial packet described by `h`
 * (from buffer b, which is only read) into `out` (caller-owned scratch at
 * least h.end - h.pnOff bytes). RFC 9001 §5.4.2: the sample starts 4 bytes
 * after the packet number offset; §5.3: nonce = iv XOR packet number, AAD =
 * the unprotected header.
 * @returns plaintext length, or -1 when authentication fails.
 */
export function decryptInitial(b: Uint8Array, start: number, h: LongHeader, keys: InitialKeys, out: Uint8Array): number {
  const sample = b.subarray(h.pnOff + 4, h.pnOff + 20);
  const ecb = createCipheriv('aes-128-ecb', keys.hp, null);
  ecb.setAutoPadding(false);
  const mask = ecb.update(sample);
  const first = b[start]! ^ (mask[0]! & 0x0f); // long header: the low 4 bits are protected
  const pnLen = (first & 3) + 1;
  const hdrLen = h.pnOff - start + pnLen;
  const aad = Buffer.allocUnsafe(hdrLen);
  aad.set(b.subarray(start, start + hdrLen));
  aad[0] = first;
  let pn = 0;
  for (let k = 0; k < pnLen; k++) {
    const x = b[h.pnOff + k]! ^ mask[1 + k]!;
    aad[h.pnOff - start + k] = x;
    pn = pn * 256 + x;
  }
  const nonce = Buffer.from(keys.iv);
  for (let k = 0; k < 4; k++) nonce[11 - k]! ^= (pn >>> (8 * k)) & 0xff; // RFC 9001 §5.3: left-padded pn XOR iv
  const ctStart = h.pnOff + pnLen;
  const ctEnd = h.end - 16;
  if (ctEnd <= ctStart) return -1;
  try {
    const d = createDecipheriv('aes-128-gcm', keys.key, nonce);
    d.setAAD(aad);
    d.setAuthTag(b.subarray(ctEnd, h.end));
    const a = d.update(b.subarray(ctStart, ctEnd));
    const z = d.final();
    out.set(a, 0);
    if (z.length > 0) out.set(z, a.length);
    return a.length + z.length;
  } catch {
    return -1;
  }
}

/** Receives the CRYPTO frames of one decrypted Initial payload. */
export interface CryptoFrameSink {
  /** Crypto stream bytes [offset, offset+len) are at data[dOff, dOff+len). */
  crypto(offset: number, data: Uint8Array, dOff: number, len: number): void;
}

/**
 * Walks the frames of an Initial packet's plaintext p[0, len) (RFC 9000
 * §12.4: PADDING, PING, ACK, CRYPTO, CONNECTION_CLOSE) and hands every CRYPTO
 * frame (§19.6) to `sink`.
 * @returns false on a frame type not allowed in Initial packets or a truncated frame.
 */
export function walkInitialFrames(p: Uint8Array, len: number, sink: CryptoFrameSink): boolean {
  let i = 0;
  while (i < len) {
    const t = p[i]!;
    if (t === 0x00 || t === 0x01) { i++; continue; } // PADDING, PING
    if (t === 0x06) {
      const off = readVarint(p, i + 1, len);
      if (off < 0) return false;
      let q = i + 1 + varintLen;
      const n = readVarint(p, q, len);
      if (n < 0) return false;
      q += varintLen;
      if (q + n > len) return false;
      sink.crypto(off, p, q, n);
      i = q + n;
      continue;
    }
    if (t === 0x02 || t === 0x03) {
      // ACK (§19.3): Largest, Delay, Range Count, First Range, ranges (Gap, Length), ECN counts (0x03).
      let q = i + 1;
      let count = 0;
      for (let k = 0; k < 4; k++) {
        const v = readVarint(p, q, len);
        if (v < 0) return false;
        if (k === 2) count = v;
        q += varintLen;
      }
      const more = count * 2 + (t === 0x03 ? 3 : 0);
      if (more > len) return false;
      for (let k = 0; k < more; k++) {
        if (readVarint(p, q, len) < 0) return false;
        q += varintLen;
      }
      i = q;
      continue;
    }
    return false; // CONNECTION_CLOSE or anything else: nothing more to learn
  }
  return true;
}
