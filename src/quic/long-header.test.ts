import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { quicheStateless as quiche } from '../../test/sim/quiche-peer.js';
import {
  LongHeaderError,
  LongType,
  QUIC_V1,
  newLongHeaderView,
  parseLongHeader,
  retryScratchBytes,
  writeRetry,
  writeVersionNegotiation,
} from './long-header.js';

/** A long-header datagram: first byte, version, CIDs, then (Initial) token and a filler payload. */
function longPacket(first: number, version: number, dcid: Uint8Array, scid: Uint8Array, token: Uint8Array | null, size = 1200): Buffer {
  const varint = (n: number) => (n < 64 ? Buffer.from([n]) : Buffer.from([0x40 | (n >> 8), n & 0xff]));
  const v = Buffer.alloc(4);
  v.writeUInt32BE(version >>> 0);
  const head = Buffer.concat([
    Buffer.from([first]),
    v,
    Buffer.from([dcid.length]),
    dcid,
    Buffer.from([scid.length]),
    scid,
    ...(token !== null ? [varint(token.length), token] : []),
  ]);
  return Buffer.concat([head, Buffer.alloc(Math.max(0, size - head.length), 0x5c)]);
}

const cid = (min: number, max: number) => fc.uint8Array({ minLength: min, maxLength: max });

describe('QUIC long header parse (RFC 9000 §17.2, RFC 8999 §5.1)', () => {
  it('reads version, CIDs and the Initial token as quiche does (RFC 9000 §17.2.2)', () => {
    const h = newLongHeaderView();
    fc.assert(
      fc.property(cid(8, 20), cid(0, 20), fc.uint8Array({ maxLength: 200 }), (dcid, scid, token) => {
        const pkt = longPacket(0xc3, QUIC_V1, dcid, scid, token);
        expect(parseLongHeader(pkt, 0, pkt.length, h)).toBe(LongHeaderError.OK);
        const q = quiche.Header.fromSlice(pkt, 16);
        expect(h.version).toBe(q.version);
        expect(h.type).toBe(LongType.INITIAL);
        expect(pkt.subarray(h.dcidOff, h.dcidOff + h.dcidLen)).toEqual(Buffer.from(q.dcid));
        expect(pkt.subarray(h.scidOff, h.scidOff + h.scidLen)).toEqual(Buffer.from(q.scid));
        expect(pkt.subarray(h.tokenOff, h.tokenOff + h.tokenLen)).toEqual(Buffer.from(q.token ?? new Uint8Array(0)));
      }),
      { numRuns: 300 },
    );
  });

  it('reads the invariant fields of any version, with CIDs up to 255 bytes (RFC 8999 §5.1)', () => {
    const h = newLongHeaderView();
    const pkt = longPacket(0x80, 0x1a2a3a4a, new Uint8Array(100).fill(1), new Uint8Array(255).fill(2), null);
    expect(parseLongHeader(pkt, 0, pkt.length, h)).toBe(LongHeaderError.OK);
    expect([h.version, h.dcidLen, h.scidLen, h.tokenLen]).toEqual([0x1a2a3a4a, 100, 255, -1]);
  });

  it('refuses v1 CIDs over 20 bytes, truncated headers and tokens past the end, without throwing', () => {
    const h = newLongHeaderView();
    const long = longPacket(0xc3, QUIC_V1, new Uint8Array(21), new Uint8Array(8), new Uint8Array(0));
    expect(parseLongHeader(long, 0, long.length, h)).toBe(LongHeaderError.CID_TOO_LONG);
    const p = longPacket(0xc3, QUIC_V1, new Uint8Array(8), new Uint8Array(8), new Uint8Array(0), 0);
    expect(parseLongHeader(p, 0, 10, h)).toBe(LongHeaderError.TRUNCATED);
    // Token length 16383 in a 1200-byte datagram.
    const t = longPacket(0xc3, QUIC_V1, new Uint8Array(8), new Uint8Array(8), null);
    t[23] = 0x7f;
    t[24] = 0xff;
    expect(parseLongHeader(t, 0, t.length, h)).toBe(LongHeaderError.BAD_TOKEN);
    expect(parseLongHeader(Buffer.from([0x40, 1, 2, 3, 4, 5, 6]), 0, 7, h)).toBe(LongHeaderError.TRUNCATED);
  });

  it('never throws and never reads past the datagram on random bytes', () => {
    const h = newLongHeaderView();
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 80 }), fc.nat(10), (bytes, pad) => {
        const buf = new Uint8Array(bytes.length + pad + 4).fill(0xee);
        buf.set(bytes, pad);
        const r = parseLongHeader(buf, pad, bytes.length, h);
        if (r === LongHeaderError.OK) {
          const end = pad + bytes.length;
          expect(h.scidOff + h.scidLen).toBeLessThanOrEqual(end);
          if (h.tokenLen >= 0) expect(h.tokenOff + h.tokenLen).toBeLessThanOrEqual(end);
        }
      }),
      { numRuns: 5000 },
    );
  });
});

describe('Retry and Version Negotiation writers', () => {
  it('writes the same Retry as quiche, integrity tag included (RFC 9000 §17.2.5, RFC 9001 §5.8)', () => {
    const h = newLongHeaderView();
    const out = new Uint8Array(1500);
    const scratch = new Uint8Array(retryScratchBytes(64));
    const qOut = new Uint8Array(1500);
    fc.assert(
      fc.property(cid(8, 20), cid(0, 20), cid(16, 16), fc.uint8Array({ minLength: 1, maxLength: 64 }), (dcid, scid, newScid, token) => {
        const pkt = longPacket(0xc0, QUIC_V1, dcid, scid, new Uint8Array(0));
        expect(parseLongHeader(pkt, 0, pkt.length, h)).toBe(LongHeaderError.OK);
        const n = writeRetry(pkt, h, newScid, token, out, scratch);
        const m = quiche.retry(scid, dcid, newScid, token, QUIC_V1, qOut);
        expect(n).toBe(m);
        // The four unused bits of byte 0 are arbitrary (§17.2.5); the rest is fixed by the inputs.
        expect(out[0]! & 0xf0).toBe(qOut[0]! & 0xf0);
        expect(Buffer.from(out.subarray(1, n))).toEqual(Buffer.from(qOut.subarray(1, m)));
      }),
      { numRuns: 200 },
    );
  });

  it('refuses to write a Retry that does not fit', () => {
    const h = newLongHeaderView();
    const pkt = longPacket(0xc0, QUIC_V1, new Uint8Array(8), new Uint8Array(8), new Uint8Array(0));
    parseLongHeader(pkt, 0, pkt.length, h);
    expect(writeRetry(pkt, h, new Uint8Array(16), new Uint8Array(40), new Uint8Array(60), new Uint8Array(200))).toBe(-1);
  });

  it('answers an unknown version with the CIDs swapped and v1 listed (RFC 9000 §17.2.1)', () => {
    const h = newLongHeaderView();
    const dcid = Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8]);
    const scid = Uint8Array.from([9, 10, 11]);
    const pkt = longPacket(0xc0, 0x0a0a0a0a, dcid, scid, null);
    parseLongHeader(pkt, 0, pkt.length, h);
    const out = new Uint8Array(100);
    const n = writeVersionNegotiation(pkt, h, out, 0x33);
    const q = new Uint8Array(100);
    const m = quiche.negotiateVersion(scid, dcid, q);
    expect(out[0]! & 0x80).toBe(0x80);
    expect(Buffer.from(out.subarray(1, n))).toEqual(Buffer.from(q.subarray(1, m)));
  });
});
