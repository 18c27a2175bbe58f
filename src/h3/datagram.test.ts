import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { MAX_QUARTER_STREAM_ID, QSID_TOO_LARGE, QSID_TOO_SHORT, parseQuarterStreamId, quarterStreamIdLength, writeQuarterStreamId } from './datagram.js';
import { H3_DATAGRAM_HEADROOM } from './tunnel-stream.js';
import { varintLengthAt } from '../quic/varint.js';

const hex = (s: string) => Uint8Array.from(Buffer.from(s.replace(/\s+/g, ''), 'hex'));

describe('HTTP Datagram quarter stream ID (RFC 9297 §2.1)', () => {
  it('bytes: stream 0 → 00, stream 4 → 01, stream 400 → 4064, written in place before the payload', () => {
    const cases: Array<[number, string]> = [
      [0, '00'],
      [4, '01'],
      [400, '4064'],
    ];
    for (const [sid, prefix] of cases) {
      const buf = new Uint8Array(H3_DATAGRAM_HEADROOM + 2);
      buf.set(hex('00aa'), H3_DATAGRAM_HEADROOM); // context ID 0, one payload byte
      const start = writeQuarterStreamId(sid, buf, H3_DATAGRAM_HEADROOM);
      expect(H3_DATAGRAM_HEADROOM - start).toBe(quarterStreamIdLength(sid));
      expect(Buffer.from(buf.subarray(start)).toString('hex')).toBe(prefix + '00aa');
      expect(parseQuarterStreamId(buf, start, buf.length)).toBe(sid / 4);
    }
  });

  it('2^60 − 1 is the largest legal QSID; 2^60 and above are H3_DATAGRAM_ERROR; empty/truncated too short', () => {
    expect(parseQuarterStreamId(hex('cfffffffffffffff'), 0, 8)).toBe(Number(2n ** 60n - 1n));
    expect(parseQuarterStreamId(hex('d000000000000000'), 0, 8)).toBe(QSID_TOO_LARGE);
    expect(parseQuarterStreamId(hex('ffffffffffffffff'), 0, 8)).toBe(QSID_TOO_LARGE);
    expect(parseQuarterStreamId(hex(''), 0, 0)).toBe(QSID_TOO_SHORT);
    expect(parseQuarterStreamId(hex('80'), 0, 1)).toBe(QSID_TOO_SHORT);
    expect(MAX_QUARTER_STREAM_ID).toBe(2 ** 60 - 1);
  });

  it('non-minimal quarter stream IDs are legal (RFC 9000 §16)', () => {
    const b = hex('4001 00');
    expect(parseQuarterStreamId(b, 0, 3)).toBe(1);
    expect(varintLengthAt(b, 0)).toBe(2);
  });

  it('property: parse∘write is identity; random bytes never throw', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 2 ** 50 }), (q) => {
        const buf = new Uint8Array(H3_DATAGRAM_HEADROOM + 1);
        const start = writeQuarterStreamId(q * 4, buf, H3_DATAGRAM_HEADROOM);
        expect(start).toBeGreaterThanOrEqual(0);
        expect(parseQuarterStreamId(buf, start, buf.length)).toBe(q);
      }),
    );
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 10 }), (b) => {
        const v = parseQuarterStreamId(b, 0, b.length);
        expect(v === QSID_TOO_SHORT || v === QSID_TOO_LARGE || (v >= 0 && v <= MAX_QUARTER_STREAM_ID)).toBe(true);
      }),
    );
  });
});
