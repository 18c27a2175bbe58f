/**
 * The per-stream parts on their own: frame reader (any split of the input
 * gives the same frames), stream-ID bookkeeping, QPACK instruction streams
 * and the send queue against the memory transport.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { H3Error } from './errors.js';
import { FrameMode, FrameReader, type FrameSink } from './frame-reader.js';
import { encodeFrame, FrameType } from './frame.js';
import { QpackInstructionReader } from './qpack-streams.js';
import { FLUSH_OK, SendQueue } from './send-queue.js';
import { StreamIds } from './stream-ids.js';
import { memoryTransportPair } from './testing/memory-transport.js';

/** Records frames: HEADERS collected whole, DATA streamed, others skipped. */
class Collect implements FrameSink {
  readonly frames: string[] = [];
  private data = '';
  halted(): boolean {
    return false;
  }
  frameStart(type: number): FrameMode {
    if (type === FrameType.HEADERS) return FrameMode.Buffer;
    if (type === FrameType.DATA) {
      this.data = '';
      this.frames.push('DATA:');
      return FrameMode.Stream;
    }
    this.frames.push(`skip ${type}`);
    return FrameMode.Skip;
  }
  frameData(buf: Uint8Array, off: number, end: number): void {
    this.data += Buffer.from(buf.subarray(off, end)).toString('hex');
    this.frames[this.frames.length - 1] = `DATA:${this.data}`;
  }
  frameEnd(_type: number, payload: Uint8Array, len: number): void {
    this.frames.push(`HEADERS:${Buffer.from(payload.subarray(0, len)).toString('hex')}`);
  }
}

const frameArb = fc.record({
  type: fc.constantFrom(FrameType.HEADERS, FrameType.DATA, 0x21, 0x1f * 7 + 0x21),
  payload: fc.uint8Array({ maxLength: 700 }),
});

describe('FrameReader', () => {
  it('any split of a frame sequence gives the same frames as one read', () => {
    fc.assert(
      fc.property(fc.array(frameArb, { maxLength: 8 }), fc.array(fc.integer({ min: 1, max: 50 }), { minLength: 1, maxLength: 20 }), (frames, cuts) => {
        const bytes = Uint8Array.from(Buffer.concat(frames.map((f) => encodeFrame(f.type, f.payload))));
        const whole = new Collect();
        new FrameReader().feed(bytes, 0, bytes.length, whole);
        const pieces = new Collect();
        const r = new FrameReader();
        let p = 0;
        for (let i = 0; p < bytes.length; i++) {
          const n = Math.min(bytes.length - p, cuts[i % cuts.length]!);
          expect(r.feed(bytes.subarray(p, p + n), 0, n, pieces)).toBe(n);
          p += n;
        }
        expect(pieces.frames).toEqual(whole.frames);
        expect(r.insideFrame).toBe(false);
      }),
      { numRuns: 300 },
    );
  });

  it('stops where the sink halts and reports being inside a frame', () => {
    let halt = false;
    const sink: FrameSink = {
      halted: () => halt,
      frameStart: () => ((halt = true), FrameMode.Skip),
      frameData: () => {},
      frameEnd: () => {},
    };
    const bytes = encodeFrame(0x21, new Uint8Array(5));
    const r = new FrameReader();
    expect(r.feed(bytes, 0, bytes.length, sink)).toBe(2);
    expect(r.insideFrame).toBe(true);
  });
});

describe('StreamIds', () => {
  it('server: out-of-order peer streams are new once; IDs seen and closed are not new again', () => {
    const ids = new StreamIds(true);
    expect(ids.admitPeerBidi(8)).toBe(true);
    expect(ids.opened(4)).toBe(false); // a gap: not seen yet
    expect(ids.admitPeerBidi(4)).toBe(true);
    expect(ids.admitPeerBidi(4)).toBe(false);
    expect(ids.opened(0)).toBe(false);
    expect(ids.opened(12)).toBe(false);
    expect(ids.firstUnseenPeerBidi).toBe(12);
    expect(ids.peerInitiated(0)).toBe(true);
    expect(ids.peerInitiated(3)).toBe(false);
  });

  it('client: IDs go up by 4 and stop at a GOAWAY limit', () => {
    const ids = new StreamIds(false);
    expect([ids.allocBidi(Infinity), ids.allocBidi(Infinity), ids.allocBidi(8)]).toEqual([0, 4, -1]);
    expect(ids.opened(4)).toBe(true);
    expect(ids.opened(8)).toBe(false);
  });
});

describe('QpackInstructionReader', () => {
  it('accepts Set Dynamic Table Capacity 0 and Stream Cancellation split across reads', () => {
    const enc = new QpackInstructionReader(true);
    expect(enc.feed(Uint8Array.of(0x20), 0, 1)).toBeNull();
    const dec = new QpackInstructionReader(false);
    // Stream Cancellation of stream 100: 01 + 6-bit prefix 63, then 37.
    expect(dec.feed(Uint8Array.of(0x7f), 0, 1)).toBeNull();
    expect(dec.feed(Uint8Array.of(37), 0, 1)).toBeNull();
  });

  it('refuses a non-zero capacity, inserts, acknowledgments and integers too large', () => {
    expect(new QpackInstructionReader(true).feed(Uint8Array.of(0x21), 0, 1)).toEqual({
      code: H3Error.QPACK_ENCODER_STREAM_ERROR,
      reason: 'dynamic table capacity 1 above 0',
    });
    expect(new QpackInstructionReader(true).feed(Uint8Array.of(0x80), 0, 1)?.code).toBe(H3Error.QPACK_ENCODER_STREAM_ERROR);
    expect(new QpackInstructionReader(false).feed(Uint8Array.of(0x80), 0, 1)?.code).toBe(H3Error.QPACK_DECODER_STREAM_ERROR);
    expect(new QpackInstructionReader(false).feed(Uint8Array.of(0x01), 0, 1)?.reason).toBe('insert count increment with an empty table');
    const huge = Uint8Array.of(0x3f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01);
    expect(new QpackInstructionReader(true).feed(huge, 0, huge.length)?.reason).toBe('QPACK integer too large');
  });
});

describe('SendQueue', () => {
  it('holds what flow control refuses, sends the FIN after the last byte, reports a peer stop', () => {
    const [a, b] = memoryTransportPair({ streamWindowBytes: 10 });
    const q = new SendQueue();
    q.push(new Uint8Array(8), false);
    q.push(new Uint8Array(8), true);
    expect(q.flush(a, 0)).toBe(FLUSH_OK);
    expect(q.bytes).toBe(6);
    expect(q.pending).toBe(true);
    expect(b.streamRecv(0, new Uint8Array(64))).toEqual([10, false]);
    expect(q.flush(a, 0)).toBe(FLUSH_OK);
    expect(q.finSent).toBe(true);
    expect(q.idle).toBe(true);
    expect(b.streamRecv(0, new Uint8Array(64))).toEqual([6, true]);

    const q2 = new SendQueue();
    b.streamShutdown(4, 'read', H3Error.H3_REQUEST_CANCELLED);
    q2.push(new Uint8Array(4), false);
    expect(q2.flush(a, 4)).toBe(H3Error.H3_REQUEST_CANCELLED);
  });
});
