import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { HUFFMAN_CODES, HUFFMAN_INVALID, HUFFMAN_LENGTHS, huffmanDecode, huffmanEncode, huffmanEncodedLength } from './huffman.js';

const hex = (s: string) => Uint8Array.from(Buffer.from(s.replace(/\s+/g, ''), 'hex'));
const enc = (s: string) => {
  const src = Buffer.from(s, 'latin1');
  const out = new Uint8Array(huffmanEncodedLength(src));
  expect(huffmanEncode(src, 0, src.length, out, 0)).toBe(out.length);
  return Buffer.from(out).toString('hex');
};
const dec = (b: Uint8Array) => {
  const out = new Uint8Array(b.length * 2);
  const n = huffmanDecode(b, 0, b.length, out, 0);
  return n < 0 ? n : Buffer.from(out.subarray(0, n)).toString('latin1');
};

describe('RFC 7541 Appendix B Huffman code', () => {
  it('canonical codes reproduce the RFC hex column (spot checks across lengths)', () => {
    const expected: Array<[number, number, number]> = [
      [0, 0x1ff8, 13], [1, 0x7fffd8, 23], [9, 0xffffea, 24], [10, 0x3ffffffc, 30], [32, 0x14, 6],
      [48, 0x0, 5], [58, 0x5c, 7], [88, 0xfc, 8], [92, 0x7fff0, 19], [123, 0x7ffe, 15], [127, 0xffffffc, 28],
      [128, 0xfffe6, 20], [153, 0x1fffdc, 21], [199, 0x1ffffec, 25], [203, 0x7ffffde, 27], [255, 0x3ffffee, 26],
      [256, 0x3fffffff, 30],
    ];
    for (const [sym, code, len] of expected) {
      expect([sym, HUFFMAN_CODES[sym], HUFFMAN_LENGTHS[sym]]).toEqual([sym, code, len]);
    }
    // Kraft equality: a complete prefix code
    let kraft = 0;
    for (let s = 0; s < 257; s++) kraft += 2 ** -HUFFMAN_LENGTHS[s]!;
    expect(kraft).toBe(1);
  });
  it('RFC 7541 §C.4.1–C.4.3 request examples encode and decode', () => {
    const vectors: Array<[string, string]> = [
      ['www.example.com', 'f1e3c2e5f23a6ba0ab90f4ff'], // §C.4.1
      ['no-cache', 'a8eb10649cbf'], // §C.4.2
      ['custom-key', '25a849e95ba97d7f'], // §C.4.3
      ['custom-value', '25a849e95bb8e8b4bf'], // §C.4.3
    ];
    for (const [text, h] of vectors) {
      expect(enc(text)).toBe(h);
      expect(dec(hex(h))).toBe(text);
    }
  });
  it('RFC 7541 §C.6 response examples', () => {
    const vectors: Array<[string, string]> = [
      ['302', '6402'],
      ['private', 'aec3771a4b'],
      ['Mon, 21 Oct 2013 20:13:21 GMT', 'd07abe941054d444a8200595040b8166e082a62d1bff'],
      ['https://www.example.com', '9d29ad171863c78f0b97c8e9ae82ae43d3'],
    ];
    for (const [text, h] of vectors) {
      expect(enc(text)).toBe(h);
      expect(dec(hex(h))).toBe(text);
    }
  });
  it('§5.2: padding longer than 7 bits, padding not all ones, and EOS are errors', () => {
    expect(dec(hex('ff'))).toBe(HUFFMAN_INVALID); // 8 bits of padding
    expect(dec(hex('1f'))).toBe('a'); // 'a'=00011 then 111 padding
    expect(dec(hex('18'))).toBe(HUFFMAN_INVALID); // 'a' then 000 padding (not EOS prefix)
    expect(dec(hex('fffffffc'))).toBe(HUFFMAN_INVALID); // EOS (30 ones) then 00
  });
  it('property: decode∘encode is identity; random bytes never throw', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (src) => {
        const out = new Uint8Array(huffmanEncodedLength(src));
        huffmanEncode(src, 0, src.length, out, 0);
        const back = new Uint8Array(src.length);
        const n = huffmanDecode(out, 0, out.length, back, 0);
        expect(n).toBe(src.length);
        expect(Buffer.from(back).equals(Buffer.from(src))).toBe(true);
      }),
    );
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (b) => {
        const out = new Uint8Array(b.length * 2);
        const n = huffmanDecode(b, 0, b.length, out, 0);
        expect(n === HUFFMAN_INVALID || n >= 0).toBe(true);
      }),
    );
  });
});
