/**
 * The capsule protocol (RFC 9297 §3): capsule codec and an incremental
 * per-stream reassembler with a size bound.
 */

import { encodeVarint, parseVarint, varintLength, varintLengthAt, VARINT_NEED_MORE } from '../quic/varint.js';
import { H3Error } from './errors.js';

/** RFC 9297 §3.5: the DATAGRAM capsule type. */
export const CAPSULE_DATAGRAM = 0x00;

/** Returned by {@link parseCapsule} when the capsule is not complete in the given bytes. */
export const CAPSULE_NEED_MORE = -1;

/** Filled by {@link parseCapsule}; reuse one per caller to stay allocation-free. */
export interface CapsuleInfo {
  /** Capsule type (RFC 9297 §3.2); unknown types are the caller's to skip. */
  type: number;
  /** Offset of the value in the buffer, or -1 while the header is incomplete. */
  valueOffset: number;
  /** Declared value length (valid when valueOffset ≥ 0, even if the value is not all there yet). */
  valueLength: number;
}

/** A fresh {@link CapsuleInfo}. */
export function newCapsuleInfo(): CapsuleInfo {
  return { type: 0, valueOffset: -1, valueLength: 0 };
}

/**
 * Parse one capsule (RFC 9297 §3.2: Type varint, Length varint, Value) from
 * the `len` bytes at buf[off]. Returns bytes consumed when the whole capsule
 * is there, else {@link CAPSULE_NEED_MORE} (with `out.valueOffset` ≥ 0 once
 * the header is complete, so the caller can check the declared length early).
 * The value stays in buf; nothing is copied. Never throws.
 */
export function parseCapsule(buf: Uint8Array, off: number, len: number, out: CapsuleInfo): number {
  const end = off + len;
  out.valueOffset = -1;
  const type = parseVarint(buf, off, end);
  if (type === VARINT_NEED_MORE) return CAPSULE_NEED_MORE;
  const tl = varintLengthAt(buf, off);
  const vlen = parseVarint(buf, off + tl, end);
  if (vlen === VARINT_NEED_MORE) return CAPSULE_NEED_MORE;
  const hl = tl + varintLengthAt(buf, off + tl);
  out.type = type;
  out.valueLength = vlen;
  out.valueOffset = off + hl;
  if (vlen > end - off - hl) return CAPSULE_NEED_MORE;
  return hl + vlen;
}

/** Bytes of a capsule header for this type and value length. */
export function capsuleHeaderLength(type: number, valueLength: number): number {
  return varintLength(type) + varintLength(valueLength);
}

/** Write a capsule header at out[off]; returns the offset where the value goes. */
export function encodeCapsuleHeader(type: number, valueLength: number, out: Uint8Array, off: number): number {
  return encodeVarint(valueLength, out, encodeVarint(type, out, off));
}

/** Write a whole capsule at out[off] (the caller sizes out); returns the offset past it. */
export function encodeCapsule(type: number, value: Uint8Array, out: Uint8Array, off: number): number {
  const p = encodeCapsuleHeader(type, value.length, out, off);
  out.set(value, p);
  return p + value.length;
}

/** Receives each whole capsule; buf[off, off+len) is the value, valid only during the call. */
export type CapsuleSink = (type: number, buf: Uint8Array, off: number, len: number) => void;

/** Largest capsule header: two 8-byte varints. */
const MAX_HEADER = 16;

/**
 * Reassembles capsules from a stream's DATA payload pieces (capsules may
 * span DATA frames, RFC 9297 §3.1). Whole capsules inside one piece are
 * delivered straight from it; only a split capsule is copied, into a buffer
 * grown up to the bound. After an error the reassembler stays failed.
 */
export class CapsuleReassembler {
  private buf: Uint8Array = new Uint8Array(0);
  private len = 0;
  /** Total bytes of the buffered capsule once its header is known, else 0. */
  private total = 0;
  private readonly info = newCapsuleInfo();
  /** The H3 error code after a failure, else 0. */
  failed = 0;

  /** `maxValueBytes` bounds one capsule's value; a larger one fails with H3_EXCESSIVE_LOAD. */
  constructor(
    private readonly maxValueBytes: number,
    private readonly sink: CapsuleSink,
  ) {}

  /** Bytes held of an incomplete capsule. */
  get pendingBytes(): number {
    return this.len;
  }

  /**
   * Feed chunk[off, end). Returns 0, or an H3 error code (the stream should
   * be aborted with it). The chunk is not retained.
   */
  push(chunk: Uint8Array, off: number, end: number): number {
    if (this.failed) return this.failed;
    const info = this.info;
    let pos = off;
    while (pos < end) {
      if (this.len === 0) {
        const r = parseCapsule(chunk, pos, end - pos, info);
        if (info.valueOffset >= 0 && info.valueLength > this.maxValueBytes) return this.fail(H3Error.H3_EXCESSIVE_LOAD);
        if (r > 0) {
          this.sink(info.type, chunk, info.valueOffset, info.valueLength);
          pos += r;
          continue;
        }
        this.total = info.valueOffset >= 0 ? info.valueOffset - pos + info.valueLength : 0;
        this.append(chunk, pos, end);
        return 0;
      }
      const want = this.total > 0 ? this.total - this.len : MAX_HEADER - this.len;
      const take = Math.min(want, end - pos);
      this.append(chunk, pos, pos + take);
      pos += take;
      const r = parseCapsule(this.buf, 0, this.len, info);
      if (info.valueOffset >= 0 && info.valueLength > this.maxValueBytes) return this.fail(H3Error.H3_EXCESSIVE_LOAD);
      if (r > 0) {
        // Bytes copied past this capsule came from this chunk: give them back.
        pos -= this.len - r;
        this.len = 0;
        this.total = 0;
        this.sink(info.type, this.buf, info.valueOffset, info.valueLength);
        continue;
      }
      if (info.valueOffset >= 0) this.total = info.valueOffset + info.valueLength;
    }
    return 0;
  }

  /**
   * The stream ended (FIN). Returns 0 when it ended between capsules, else
   * H3_MESSAGE_ERROR: a stream ending inside a capsule, or a capsule length
   * running past the data, is malformed (RFC 9297 §3.3).
   */
  finish(): number {
    if (this.failed) return this.failed;
    if (this.len > 0) return this.fail(H3Error.H3_MESSAGE_ERROR);
    return 0;
  }

  private fail(code: number): number {
    this.failed = code;
    this.len = 0;
    return code;
  }

  private append(src: Uint8Array, from: number, to: number): void {
    const n = to - from;
    if (this.len + n > this.buf.length) {
      const cap = Math.min(Math.max(this.buf.length * 2, this.len + n, 256), this.maxValueBytes + MAX_HEADER);
      const nb = new Uint8Array(Math.max(cap, this.len + n));
      nb.set(this.buf.subarray(0, this.len));
      this.buf = nb;
    }
    this.buf.set(src.subarray(from, to), this.len);
    this.len += n;
  }
}
