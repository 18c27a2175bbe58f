/**
 * The ngtcp2 engine's stateless packet functions, reached by any datagram
 * before a connection exists: header parsing (RFC 9000 §17.2), Version
 * Negotiation (§17.2.1) and Retry (§17.2.5). Random input never crashes the
 * process: it parses or throws `quic: …`.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ngtcp2Engine as e } from './ngtcp2.js';

const cid = (b: number) => new Uint8Array(16).fill(b);

describe('ngtcp2 engine: stateless packets', () => {
  it('random bytes: Header.fromSlice parses or throws a quic: error (RFC 9000 §17)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 0, maxLength: 1400 }), (b) => {
        try {
          const h = e.Header.fromSlice(b, 16);
          expect(h.dcid.length).toBeLessThanOrEqual(255);
        } catch (err) {
          expect((err as Error).message).toMatch(/^quic: /);
        }
      }),
      { numRuns: 5000 },
    );
  });

  it('a Retry it writes parses back: type Retry, the client SCID as DCID, our new SCID (RFC 9000 §17.2.5)', () => {
    const out = new Uint8Array(1350);
    const n = e.retry(cid(1), cid(2), cid(3), new Uint8Array([9, 9, 9]), 1, out);
    const h = e.Header.fromSlice(out.subarray(0, n), 16);
    expect(h.ty).toBe(e.Type.Retry);
    expect(Buffer.from(h.dcid)).toEqual(Buffer.from(cid(1)));
    expect(Buffer.from(h.scid)).toEqual(Buffer.from(cid(3)));
  });

  it('Version Negotiation lists QUIC v1 and swaps the client CIDs (RFC 9000 §17.2.1)', () => {
    const out = new Uint8Array(1350);
    const n = e.negotiateVersion(cid(1), cid(2), out);
    const v = out.subarray(0, n);
    expect(v[0]! & 0x80).toBe(0x80);
    expect(Buffer.from(v.subarray(1, 5)).readUInt32BE(0)).toBe(0); // version 0 marks VN
    expect(v[5]).toBe(16);
    expect(Buffer.from(v.subarray(6, 22))).toEqual(Buffer.from(cid(1)));
    expect(Buffer.from(v.subarray(n - 4, n)).readUInt32BE(0)).toBe(1);
    expect(e.versionIsSupported(1)).toBe(true);
    expect(e.versionIsSupported(0xff00001d)).toBe(false);
  });
});
