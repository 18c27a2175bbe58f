/**
 * The peer's QPACK encoder and decoder streams (RFC 9204 §4.2). We advertise
 * a zero-capacity dynamic table, so only "Set Dynamic Table Capacity 0"
 * (§4.3.1) and Stream Cancellation (§4.4.2) are legal; anything else is a
 * connection error.
 */

import { H3Error } from './errors.js';
import { PREFIX_INT_TOO_LARGE, PREFIX_INT_TRUNCATED, readPrefixInt } from './qpack.js';

/** A QPACK stream error: connection error `code` with `reason`. */
export interface QpackStreamError {
  readonly code: number;
  readonly reason: string;
}

/** Longest instruction we collect: one byte plus a prefix integer up to 2^49 (7 continuation bytes). */
const MAX_INSTRUCTION = 9;
const st = { v: 0 };

/** Reads one peer QPACK instruction stream, byte by byte across reads. */
export class QpackInstructionReader {
  private readonly instr = new Uint8Array(MAX_INSTRUCTION);
  private len = 0;

  /** `encoder`: the peer's encoder stream (else its decoder stream). */
  constructor(readonly encoder: boolean) {}

  /** Feed buf[pos, end) (read only). Returns null, or the connection error to raise. */
  feed(buf: Uint8Array, pos: number, end: number): QpackStreamError | null {
    const code = this.encoder ? H3Error.QPACK_ENCODER_STREAM_ERROR : H3Error.QPACK_DECODER_STREAM_ERROR;
    for (; pos < end; pos++) {
      if (this.len === MAX_INSTRUCTION) return { code, reason: 'QPACK integer too large' };
      this.instr[this.len++] = buf[pos]!;
      const b0 = this.instr[0]!;
      let prefix: number;
      if (this.encoder) {
        // §4.3.1 Set Dynamic Table Capacity: 001 + 5-bit prefix; other encoder instructions insert entries.
        if ((b0 & 0xe0) !== 0x20) return { code, reason: 'encoder stream inserts into a zero-capacity table' };
        prefix = 5;
      } else if (b0 & 0x80) {
        // §4.4.1 Section Acknowledgment: we never send sections with dynamic references.
        return { code, reason: 'section acknowledgment for a section without dynamic references' };
      } else {
        prefix = 6; // §4.4.2 Stream Cancellation (01) or §4.4.3 Insert Count Increment (00)
      }
      const p = readPrefixInt(this.instr, 0, this.len, prefix, st);
      if (p === PREFIX_INT_TOO_LARGE) return { code, reason: 'QPACK integer too large' };
      if (p === PREFIX_INT_TRUNCATED) continue;
      this.len = 0;
      // §4.3.1: capacity above our SETTINGS_QPACK_MAX_TABLE_CAPACITY (0).
      if (this.encoder && st.v !== 0) return { code, reason: `dynamic table capacity ${st.v} above 0` };
      // §4.4.3: an increment of 0, or one beyond what we inserted (nothing), is an error.
      if (!this.encoder && (b0 & 0x40) === 0) return { code, reason: 'insert count increment with an empty table' };
    }
    return null;
  }
}
