import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { CAPSULE_NEED_MORE, CapsuleReassembler, encodeCapsule, newCapsuleInfo, parseCapsule } from './capsule.js';
import { H3Error } from './errors.js';

const hex = (s: string) => Uint8Array.from(Buffer.from(s.replace(/\s+/g, ''), 'hex'));
const toHex = (b: Uint8Array) => Buffer.from(b).toString('hex');

describe('capsule codec (RFC 9297 §3.2)', () => {
  it('DATAGRAM capsule bytes: type 0x00, length 4, value (context ID 0 + payload)', () => {
    const b = hex('00 04 00 c0ffee');
    const info = newCapsuleInfo();
    expect(parseCapsule(b, 0, b.length, info)).toBe(6);
    expect(info).toEqual({ type: 0, valueOffset: 2, valueLength: 4 });
    const out = new Uint8Array(6);
    expect(encodeCapsule(0, hex('00c0ffee'), out, 0)).toBe(6);
    expect(toHex(out)).toBe('000400c0ffee');
  });

  it('two-byte type (ADDRESS_ASSIGN 0x01 is one byte; 0x4040 is two) and non-minimal length', () => {
    const b = hex('4040 4002 abcd');
    const info = newCapsuleInfo();
    expect(parseCapsule(b, 0, b.length, info)).toBe(6);
    expect(info.type).toBe(0x40);
    expect(info.valueLength).toBe(2);
  });

  it('need more: truncated header reports no header; truncated value reports the header early', () => {
    const info = newCapsuleInfo();
    expect(parseCapsule(hex('40'), 0, 1, info)).toBe(CAPSULE_NEED_MORE);
    expect(info.valueOffset).toBe(-1);
    expect(parseCapsule(hex('01 4064 0102'), 0, 5, info)).toBe(CAPSULE_NEED_MORE);
    expect(info.valueOffset).toBe(3);
    expect(info.valueLength).toBe(100);
    // parsing respects len even when the buffer is longer
    expect(parseCapsule(hex('00 02 aabb'), 0, 3, info)).toBe(CAPSULE_NEED_MORE);
  });
});

describe('CapsuleReassembler', () => {
  const collect = (max = 1 << 16) => {
    const got: Array<[number, string]> = [];
    const r = new CapsuleReassembler(max, (t, b, o, l) => got.push([t, toHex(b.subarray(o, o + l))]));
    return { r, got };
  };

  it('§3.3: a stream ending inside a capsule is H3_MESSAGE_ERROR', () => {
    const { r } = collect();
    expect(r.push(hex('01 05 aa'), 0, 3)).toBe(0);
    expect(r.pendingBytes).toBe(3);
    expect(r.finish()).toBe(H3Error.H3_MESSAGE_ERROR);
  });

  it('a capsule above the bound is H3_EXCESSIVE_LOAD as soon as its header is seen', () => {
    const { r } = collect(10);
    expect(r.push(hex('01 0b'), 0, 2)).toBe(H3Error.H3_EXCESSIVE_LOAD);
    expect(r.push(hex('00 00'), 0, 2)).toBe(H3Error.H3_EXCESSIVE_LOAD); // stays failed
  });

  it('property: any split of an encoded capsule sequence yields the same capsules', () => {
    const capsule = fc.tuple(fc.oneof(fc.integer({ min: 0, max: 63 }), fc.integer({ min: 0, max: 2 ** 40 })), fc.uint8Array({ maxLength: 300 }));
    fc.assert(
      fc.property(fc.array(capsule, { maxLength: 8 }), fc.array(fc.integer({ min: 1, max: 40 }), { minLength: 1, maxLength: 20 }), (caps, cuts) => {
        const buf = new Uint8Array(caps.reduce((n, [, v]) => n + v.length + 16, 0));
        let p = 0;
        for (const [t, v] of caps) p = encodeCapsule(t, v, buf, p);
        const { r, got } = collect();
        let off = 0;
        let i = 0;
        while (off < p) {
          const n = Math.min(cuts[i++ % cuts.length]!, p - off);
          expect(r.push(buf, off, off + n)).toBe(0);
          off += n;
        }
        expect(r.finish()).toBe(0);
        expect(got).toEqual(caps.map(([t, v]) => [t, toHex(v)]));
      }),
    );
  });

  it('property: random bytes never throw', () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 30 }), { maxLength: 10 }), (chunks) => {
        const { r } = collect(64);
        for (const c of chunks) r.push(c, 0, c.length);
        const e = r.finish();
        expect([0, H3Error.H3_MESSAGE_ERROR, H3Error.H3_EXCESSIVE_LOAD]).toContain(e);
      }),
    );
  });
});
