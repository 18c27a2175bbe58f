import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { H3Error } from './errors.js';
import { QPACK_STATIC_TABLE, decodeFieldSection, encodeFieldSection, type FieldLine } from './qpack.js';

const hex = (s: string) => Uint8Array.from(Buffer.from(s.replace(/\s+/g, ''), 'hex'));
const dec = (b: Uint8Array, max = 16384) => decodeFieldSection(b, 0, b.length, max);

describe('QPACK field sections (RFC 9204)', () => {
  it('Appendix A: static table has 99 entries in RFC order (spot checks)', () => {
    expect(QPACK_STATIC_TABLE).toHaveLength(99);
    expect(QPACK_STATIC_TABLE[0]).toEqual([':authority', '']);
    expect(QPACK_STATIC_TABLE[1]).toEqual([':path', '/']);
    expect(QPACK_STATIC_TABLE[15]).toEqual([':method', 'CONNECT']);
    expect(QPACK_STATIC_TABLE[23]).toEqual([':scheme', 'https']);
    expect(QPACK_STATIC_TABLE[25]).toEqual([':status', '200']);
    expect(QPACK_STATIC_TABLE[63]).toEqual([':status', '100']);
    expect(QPACK_STATIC_TABLE[84]).toEqual(['authorization', '']);
    expect(QPACK_STATIC_TABLE[98]).toEqual(['x-frame-options', 'sameorigin']);
  });

  it('Appendix B.1: literal field line with static name reference (:path=/index.html)', () => {
    // 0000: Required Insert Count 0, Base 0; 51: 01 N=0 T=1 index 1; 0b: length 11, no Huffman
    const r = dec(hex('0000 510b 2f696e6465782e68746d6c'));
    expect(r).toEqual({ ok: true, fields: [[':path', '/index.html']], size: 5 + 11 + 32 });
  });

  it('§4.5.2 indexed static field line and §4.1.2 Huffman value (RFC 7541 §C.4.1 string)', () => {
    // d1: indexed, T=1, index 17 (:method GET); 50 8c …: :authority with a 12-byte Huffman value
    const r = dec(hex('0000 d1 508c f1e3c2e5f23a6ba0ab90f4ff'));
    expect(r.ok && r.fields).toEqual([
      [':method', 'GET'],
      [':authority', 'www.example.com'],
    ]);
  });

  it('§4.5.6 literal name (Huffman-coded name and value) round-trips', () => {
    const fields: FieldLine[] = [
      [':method', 'CONNECT'],
      [':protocol', 'connect-ip'],
      [':scheme', 'https'],
      [':authority', 'gateway.mesh.local:443'],
      [':path', '/.well-known/masque/ip/*/*/'],
      ['capsule-protocol', '?1'],
      ['authorization', 'Bearer abc.def'],
    ];
    const enc = encodeFieldSection(fields);
    expect(enc[0]).toBe(0);
    expect(enc[1]).toBe(0);
    expect(enc[2]).toBe(0xcf); // indexed static 15 (:method CONNECT)
    expect(dec(enc)).toMatchObject({ ok: true, fields });
  });

  it('§2.2.3: every dynamic-table reference is QPACK_DECOMPRESSION_FAILED', () => {
    const F = H3Error.QPACK_DECOMPRESSION_FAILED;
    for (const h of [
      '0381 10 11', // Appendix B.2 request: Required Insert Count > 0
      '0000 80', // indexed field line, T=0 (dynamic)
      '0000 10', // indexed with post-base index
      '0000 40 00', // literal with dynamic name reference (T=0)
      '0000 00 00', // literal with post-base name reference
    ]) {
      const r = dec(hex(h));
      expect(r.ok ? 0 : r.code).toBe(F);
    }
  });

  it('malformed sections fail cleanly: truncated prefix/string, bad static index, invalid Huffman', () => {
    for (const h of ['', '00', '0000 51', '0000 510b 2f', '0000 ff 7f', '0000 5081 ff']) {
      const r = dec(hex(h));
      expect(r.ok).toBe(false);
    }
  });

  it('RFC 9114 §4.2.2: a section above the size limit is H3_EXCESSIVE_LOAD', () => {
    const enc = encodeFieldSection([['x-big', 'v'.repeat(200)]]);
    const r = dec(enc, 100);
    expect(r.ok ? 0 : r.code).toBe(H3Error.H3_EXCESSIVE_LOAD);
  });

  it('property: decode∘encode is identity; random bytes never throw', () => {
    const name = fc.stringMatching(/^[a-z0-9-]{1,20}$/);
    const value = fc.string({ maxLength: 40 }).map((s) => Buffer.from(s, 'utf8').toString('latin1'));
    fc.assert(
      fc.property(fc.array(fc.tuple(name, value), { maxLength: 12 }), (fields) => {
        const r = dec(encodeFieldSection(fields), 1 << 20);
        expect(r.ok && r.fields).toEqual(fields);
      }),
    );
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (b) => {
        const r = dec(b);
        expect(typeof r.ok).toBe('boolean');
      }),
      { numRuns: 2000 },
    );
  });
});
