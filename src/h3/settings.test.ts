import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { H3Error } from './errors.js';
import { encodeSettings, parseSettings } from './settings.js';
import { FrameType, encodeFrame, isGrease, parseFrameHeader, greaseValue, isReservedH2FrameType } from './frame.js';

const hex = (s: string) => Uint8Array.from(Buffer.from(s.replace(/\s+/g, ''), 'hex'));
const parse = (b: Uint8Array) => parseSettings(b, 0, b.length);

describe('SETTINGS (RFC 9114 §7.2.4)', () => {
  it('our SETTINGS bytes: QPACK 0/0, ENABLE_CONNECT_PROTOCOL=1, H3_DATAGRAM=1', () => {
    const p = encodeSettings([
      [0x01, 0],
      [0x07, 0],
      [0x08, 1],
      [0x33, 1],
    ]);
    expect(Buffer.from(encodeFrame(FrameType.SETTINGS, p)).toString('hex')).toBe('0408' + '0100' + '0700' + '0801' + '3301');
    const r = parse(p);
    expect(r.ok && r.settings).toMatchObject({ enableConnectProtocol: true, h3Datagram: true, qpackMaxTableCapacity: 0 });
  });
  it('RFC 9297 §2.1.1: H3_DATAGRAM other than 0/1 → H3_SETTINGS_ERROR; RFC 8441 §3: ENABLE_CONNECT_PROTOCOL=2 too', () => {
    const a = parse(hex('3302'));
    expect(a.ok ? 0 : a.code).toBe(H3Error.H3_SETTINGS_ERROR);
    const b = parse(hex('0802'));
    expect(b.ok ? 0 : b.code).toBe(H3Error.H3_SETTINGS_ERROR);
  });
  it('§7.2.4.1: reserved HTTP/2 identifiers 0x02–0x05 and duplicates → H3_SETTINGS_ERROR; truncated → H3_FRAME_ERROR', () => {
    for (const h of ['0200', '0300', '0400', '0500', '3301 3301']) {
      const r = parse(hex(h));
      expect(r.ok ? 0 : r.code).toBe(H3Error.H3_SETTINGS_ERROR);
    }
    const t = parse(hex('33'));
    expect(t.ok ? 0 : t.code).toBe(H3Error.H3_FRAME_ERROR);
  });
  it('unknown and grease identifiers are ignored and counted', () => {
    const r = parse(encodeSettings([[greaseValue(3), 7], [0x4242, 1]]));
    expect(r.ok && r.settings.unknownCount).toBe(2);
  });
  it('property: parse∘encode keeps known values; random bytes never throw', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 2 ** 40 }), fc.boolean(), (size, dg) => {
        const r = parse(encodeSettings([[0x06, size], [0x33, dg ? 1 : 0]]));
        expect(r.ok && r.settings.maxFieldSectionSize).toBe(size);
        expect(r.ok && r.settings.h3Datagram).toBe(dg);
      }),
    );
    fc.assert(fc.property(fc.uint8Array({ maxLength: 40 }), (b) => void parse(b)));
  });
});

describe('frame header and type codes (RFC 9114 §7.1, §7.2.8)', () => {
  it('parses type/length with non-minimal varints; needs more when truncated', () => {
    const fh = { type: 0, length: 0, headerLength: 0 };
    expect(parseFrameHeader(hex('4001 80000003'), 0, 6, fh)).toBe(true);
    expect(fh).toEqual({ type: 1, length: 3, headerLength: 6 });
    expect(parseFrameHeader(hex('4001 8000'), 0, 4, fh)).toBe(false);
    expect(parseFrameHeader(hex(''), 0, 0, fh)).toBe(false);
  });
  it('grease values are 0x1f·N + 0x21; HTTP/2 frame types 0x02/0x06/0x08/0x09 are reserved', () => {
    expect(isGrease(0x21)).toBe(true);
    expect(isGrease(0x40)).toBe(true);
    expect(isGrease(0x41)).toBe(false);
    expect(isGrease(greaseValue(12345))).toBe(true);
    expect([0x02, 0x06, 0x08, 0x09].every(isReservedH2FrameType)).toBe(true);
    expect(isReservedH2FrameType(0x07)).toBe(false);
  });
  it('property: random bytes never throw', () => {
    const fh = { type: 0, length: 0, headerLength: 0 };
    fc.assert(fc.property(fc.uint8Array({ maxLength: 20 }), (b) => void parseFrameHeader(b, 0, b.length, fh)));
  });
});
