/**
 * Incremental HTTP/3 frame reader (RFC 9114 §7.1) for control and request
 * streams: frame headers split across reads, payloads skipped, streamed or
 * collected. Collected payloads grow as bytes arrive, never to the declared
 * length up front, so a peer that declares a large frame and sends little
 * costs only what it sent.
 */

import { parseFrameHeader, type FrameHeader } from './frame.js';

/** What the reader does with a frame's payload. */
export const enum FrameMode {
  /** Discard. */
  Skip,
  /** Collect and hand over whole at the frame's end. */
  Buffer,
  /** Hand over as it arrives. */
  Stream,
}

/** First allocation for a collected payload; it doubles up to the declared length. */
const FIRST_CHUNK = 256;

/** Receives one stream's frames. Buffers are valid only during the call. */
export interface FrameSink {
  /** True to stop feeding (stream closed, paused or connection gone). */
  halted(): boolean;
  /** A frame header arrived; return how to treat the payload (its length was checked here). */
  frameStart(type: number, length: number): FrameMode;
  /** Payload bytes of a {@link FrameMode.Stream} frame. */
  frameData(buf: Uint8Array, off: number, end: number): void;
  /** A {@link FrameMode.Buffer} frame is complete: payload[0, len). */
  frameEnd(type: number, payload: Uint8Array, len: number): void;
}

const fh: FrameHeader = { type: 0, length: 0, headerLength: 0 };
const EMPTY = new Uint8Array(0);

/** Per-stream frame reader state (one per control or request stream). */
export class FrameReader {
  private readonly hdr = new Uint8Array(16);
  private hdrLen = 0;
  private frameType = 0;
  /** Payload bytes left in the current frame, or -1 when reading a header. */
  private remaining = -1;
  private mode = FrameMode.Skip;
  private payload: Uint8Array = EMPTY;
  private payloadLen = 0;
  private declared = 0;

  /** True when the stream stopped inside a frame (header or payload); RFC 9114 §7.1. */
  get insideFrame(): boolean {
    return this.remaining >= 0 || this.hdrLen > 0;
  }

  /** Bytes this reader holds allocated for a payload being collected. */
  get bufferedBytes(): number {
    return this.payload.length;
  }

  /** Drop a collected payload (stream closed). */
  release(): void {
    this.payload = EMPTY;
    this.payloadLen = 0;
    this.mode = FrameMode.Skip;
  }

  /**
   * Feed buf[pos, end) (read only, not kept). Returns where it stopped: `end`,
   * or earlier when the sink halted (the caller keeps the rest).
   */
  feed(buf: Uint8Array, pos: number, end: number, sink: FrameSink): number {
    while (pos < end) {
      if (sink.halted()) return pos;
      if (this.remaining < 0) {
        const before = this.hdrLen;
        let take = 0;
        while (this.hdrLen < 16 && pos + take < end) this.hdr[this.hdrLen++] = buf[pos + take++]!;
        if (!parseFrameHeader(this.hdr, 0, this.hdrLen, fh)) {
          pos += take;
          continue;
        }
        pos += fh.headerLength - before;
        this.hdrLen = 0;
        this.frameType = fh.type;
        this.remaining = fh.length;
        this.mode = sink.frameStart(fh.type, fh.length);
        if (this.mode === FrameMode.Buffer) {
          this.declared = fh.length;
          this.payloadLen = 0;
        }
        if (sink.halted()) return pos;
        if (fh.length === 0) this.end(sink);
        continue;
      }
      const take = Math.min(this.remaining, end - pos);
      if (this.mode === FrameMode.Buffer) this.collect(buf, pos, take);
      else if (this.mode === FrameMode.Stream) sink.frameData(buf, pos, pos + take);
      pos += take;
      this.remaining -= take;
      if (this.remaining === 0) this.end(sink);
    }
    return pos;
  }

  private collect(buf: Uint8Array, pos: number, take: number): void {
    const need = this.payloadLen + take;
    if (need > this.payload.length) {
      // Grow with what arrived (doubling), never past the declared length.
      const cap = Math.min(this.declared, Math.max(need, this.payload.length * 2, FIRST_CHUNK));
      const next = new Uint8Array(cap);
      next.set(this.payload.subarray(0, this.payloadLen));
      this.payload = next;
    }
    this.payload.set(buf.subarray(pos, pos + take), this.payloadLen);
    this.payloadLen = need;
  }

  private end(sink: FrameSink): void {
    this.remaining = -1;
    if (this.mode !== FrameMode.Buffer) return;
    const payload = this.payload;
    const len = this.payloadLen;
    this.release();
    sink.frameEnd(this.frameType, payload, len);
  }
}
