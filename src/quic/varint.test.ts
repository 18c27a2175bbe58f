import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  VARINT_NEED_MORE,
  encodeVarint,
  encodeVarintLen,
  parseVarint,
  parseVarintBig,
  varintLength,
  varintLengthAt,
} from './varint.js';

const hex = (s: string) => Uint8Array.from(Buffer.from(s.replace(/\s+/g, ''), 'hex'));

describe('RFC 9000 §16 / §A.1 varints', () => {
  it('§A.1 sample: 8-byte 0xc2197c5eff14e88c = 151288809941952652', () => {
    const b = hex('c2197c5eff14e88c');
    expect(varintLengthAt(b, 0)).toBe(8);
    expect(parseVarintBig(b, 0)).toBe(151288809941952652n);
    // above 2^53: the number form is the nearest double
    expect(parseVarint(b, 0)).toBe(Number(151288809941952652n));
  });
  it('§A.1 sample: 4-byte 0x9d7f3e7d = 494878333', () => {
    const b = hex('9d7f3e7d');
    expect(parseVarint(b, 0)).toBe(494878333);
    expect(varintLengthAt(b, 0)).toBe(4);
  });
  it('§A.1 sample: 2-byte 0x7bbd = 15293', () => {
    expect(parseVarint(hex('7bbd'), 0)).toBe(15293);
  });
  it('§A.1 sample: 1-byte 0x25 = 37', () => {
    expect(parseVarint(hex('25'), 0)).toBe(37);
  });
  it('§A.1/§16: non-minimal encodings are legal and parsed (0x4025, 0x80000025, 0xc000000000000025 = 37)', () => {
    expect(parseVarint(hex('4025'), 0)).toBe(37);
    expect(varintLengthAt(hex('4025'), 0)).toBe(2);
    expect(parseVarint(hex('80000025'), 0)).toBe(37);
    expect(parseVarint(hex('c000000000000025'), 0)).toBe(37);
    expect(varintLengthAt(hex('c000000000000025'), 0)).toBe(8);
  });
  it('truncated varints report need-more, never throw', () => {
    expect(parseVarint(hex(''), 0)).toBe(VARINT_NEED_MORE);
    expect(parseVarint(hex('7b'), 0)).toBe(VARINT_NEED_MORE);
    expect(parseVarint(hex('9d7f3e'), 0)).toBe(VARINT_NEED_MORE);
    expect(parseVarint(hex('c2197c5eff14e8'), 0)).toBe(VARINT_NEED_MORE);
    // end bound respected even when the buffer is longer
    expect(parseVarint(hex('9d7f3e7d'), 0, 3)).toBe(VARINT_NEED_MORE);
    expect(parseVarintBig(hex('c2'), 0)).toBeNull();
  });
  it('encodes minimally, and with a chosen longer length', () => {
    const out = new Uint8Array(8);
    expect(encodeVarint(15293, out, 0)).toBe(2);
    expect(Buffer.from(out.subarray(0, 2)).toString('hex')).toBe('7bbd');
    expect(encodeVarint(494878333, out, 0)).toBe(4);
    expect(Buffer.from(out.subarray(0, 4)).toString('hex')).toBe('9d7f3e7d');
    expect(encodeVarintLen(37, 2, out, 0)).toBe(2);
    expect(Buffer.from(out.subarray(0, 2)).toString('hex')).toBe('4025');
    expect(encodeVarint(2 ** 40 + 5, out, 0)).toBe(8);
    expect(parseVarint(out, 0)).toBe(2 ** 40 + 5);
    expect(() => encodeVarintLen(64, 1, out, 0)).toThrow(/quic: /);
  });
  it('length boundaries', () => {
    expect(varintLength(0)).toBe(1);
    expect(varintLength(63)).toBe(1);
    expect(varintLength(64)).toBe(2);
    expect(varintLength(16383)).toBe(2);
    expect(varintLength(16384)).toBe(4);
    expect(varintLength(2 ** 30 - 1)).toBe(4);
    expect(varintLength(2 ** 30)).toBe(8);
    expect(() => varintLength(2 ** 62)).toThrow(RangeError);
    expect(() => varintLength(-1)).toThrow(RangeError);
    expect(() => varintLength(1.5)).toThrow(RangeError);
  });
  it('property: encode∘parse is identity for safe integers', () => {
    const out = new Uint8Array(16);
    fc.assert(
      fc.property(fc.oneof(fc.integer({ min: 0, max: 0x3fff }), fc.integer({ min: 0, max: 2 ** 31 }), fc.maxSafeInteger()), fc.nat(7), (v, off) => {
        const v2 = Math.abs(v);
        const end = encodeVarint(v2, out, off);
        expect(end - off).toBe(varintLength(v2));
        expect(varintLengthAt(out, off)).toBe(varintLength(v2));
        expect(parseVarint(out, off, end)).toBe(v2);
      }),
    );
  });
  it('property: random bytes never throw; number and bigint parses agree below 2^53', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 12 }), fc.nat(12), (b, off) => {
        const v = parseVarint(b, off);
        const big = parseVarintBig(b, off);
        if (v === VARINT_NEED_MORE) expect(big).toBeNull();
        else if (big !== null && big < 2n ** 53n) expect(BigInt(v)).toBe(big);
      }),
    );
  });
});
