import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { addressAssignLength, encodeAddressAssign, parseAddressAssign, type AddressAssign } from './address-assign.js';
import { addressRequestLength, encodeAddressRequest, parseAddressRequest, type AddressRequest } from './address-request.js';
import {
  checkRangeOrder,
  encodeRouteAdvertisement,
  parseRouteAdvertisement,
  routeAdvertisementLength,
  normalizeRanges,
  sortRanges,
  type IpAddressRange,
  type RouteAdvertisement,
} from './route-advertisement.js';
import type { AddressEntry } from './address-entry.js';
import { parseIp, hostBitsZero } from '../../packet/ip-address.js';

const hex = (s: string) => Uint8Array.from(Buffer.from(s.replace(/\s+|#[^\n]*/g, ''), 'hex'));
const ip = (t: string) => parseIp(t)!.address;

function roundTrip<T>(x: T, len: (x: T) => number, enc: (x: T, o: Uint8Array, off: number) => number): Uint8Array {
  const out = new Uint8Array(len(x) + 3);
  const end = enc(x, out, 3);
  expect(end).toBe(3 + len(x));
  return out.subarray(3, end);
}

describe('RFC 9484 §4.7.1 ADDRESS_ASSIGN', () => {
  it('encodes hand-checked bytes: ID 1, 192.0.2.11/32 and ID 0, 2001:db8:1::/64', () => {
    const x: AddressAssign = {
      addresses: [
        { requestId: 1, version: 4, address: ip('192.0.2.11'), prefixLength: 32 },
        { requestId: 0, version: 6, address: ip('2001:db8:1::'), prefixLength: 64 },
      ],
    };
    const expected = hex(`
      01 04 c0 00 02 0b 20                              # id 1, v4, 192.0.2.11, /32
      00 06 20 01 0d b8 00 01 00 00 00 00 00 00 00 00 00 00 40  # id 0, v6, 2001:db8:1::, /64
    `);
    expect(Buffer.from(roundTrip(x, addressAssignLength, encodeAddressAssign)).toString('hex')).toBe(
      Buffer.from(expected).toString('hex'),
    );
    const p = parseAddressAssign(expected, 0, expected.length);
    expect(p).toEqual({ ok: true, value: x });
  });
  it('an empty ADDRESS_ASSIGN is valid (all addresses removed)', () => {
    expect(parseAddressAssign(new Uint8Array(0), 0, 0)).toEqual({ ok: true, value: { addresses: [] } });
  });
  it('malformed: IPv4 prefix length 33', () => {
    const r = parseAddressAssign(hex('01 04 c0000200 21'), 0, 7);
    expect(r.ok).toBe(false);
    expect(!r.ok && r.error).toMatch(/prefix length 33/);
  });
  it('malformed: IPv6 prefix length 129', () => {
    const b = hex('01 06 20010db8000000000000000000000000 81');
    const r = parseAddressAssign(b, 0, b.length);
    expect(!r.ok && r.error).toMatch(/prefix length 129/);
  });
  it('malformed: host bits set (192.0.2.1/24)', () => {
    const r = parseAddressAssign(hex('01 04 c0000201 18'), 0, 7);
    expect(!r.ok && r.error).toMatch(/host bits/);
  });
  it('malformed: IP Version 5, truncated address', () => {
    expect(parseAddressAssign(hex('01 05 c0000201 18'), 0, 7).ok).toBe(false);
    expect(parseAddressAssign(hex('01 04 c00002'), 0, 5).ok).toBe(false);
    expect(parseAddressAssign(hex('40'), 0, 1).ok).toBe(false);
  });
});

describe('RFC 9484 §4.7.2 ADDRESS_REQUEST', () => {
  it('encodes hand-checked bytes: ID 1 any IPv4 /32, ID 2 any IPv6 /64', () => {
    const x: AddressRequest = {
      addresses: [
        { requestId: 1, version: 4, address: ip('0.0.0.0'), prefixLength: 32 },
        { requestId: 2, version: 6, address: ip('::'), prefixLength: 64 },
      ],
    };
    const expected = hex('01 04 00000000 20   02 06 00000000000000000000000000000000 40');
    expect(Buffer.from(roundTrip(x, addressRequestLength, encodeAddressRequest))).toEqual(Buffer.from(expected));
    expect(parseAddressRequest(expected, 0, expected.length)).toEqual({ ok: true, value: x });
  });
  it('malformed: zero Requested Addresses (abort the stream)', () => {
    const r = parseAddressRequest(new Uint8Array(0), 0, 0);
    expect(!r.ok && r.error).toMatch(/zero Requested Addresses/);
  });
  it('malformed: Request ID 0 and repeated Request IDs', () => {
    expect(parseAddressRequest(hex('00 04 00000000 20'), 0, 7).ok).toBe(false);
    const dup = hex('05 04 00000000 20 05 04 00000000 20');
    expect(parseAddressRequest(dup, 0, dup.length).ok).toBe(false);
  });
  it('malformed: prefix length 33 / 129, host bits set', () => {
    expect(parseAddressRequest(hex('01 04 00000000 21'), 0, 7).ok).toBe(false);
    const v6 = hex('01 06 00000000000000000000000000000000 81');
    expect(parseAddressRequest(v6, 0, v6.length).ok).toBe(false);
    expect(parseAddressRequest(hex('01 04 0a000001 08'), 0, 7).ok).toBe(false);
  });
});

describe('RFC 9484 §4.7.3 ROUTE_ADVERTISEMENT', () => {
  const full4: IpAddressRange = { version: 4, start: ip('0.0.0.0'), end: ip('255.255.255.255'), ipProtocol: 0 };
  it('encodes hand-checked bytes: 0.0.0.0–255.255.255.255 all protocols, then 2001:db8::–2001:db8::ffff UDP', () => {
    const x: RouteAdvertisement = {
      ranges: [full4, { version: 6, start: ip('2001:db8::'), end: ip('2001:db8::ffff'), ipProtocol: 17 }],
    };
    const expected = hex(`
      04 00000000 ffffffff 00
      06 20010db8000000000000000000000000 20010db800000000000000000000ffff 11
    `);
    expect(Buffer.from(roundTrip(x, routeAdvertisementLength, encodeRouteAdvertisement))).toEqual(Buffer.from(expected));
    expect(parseRouteAdvertisement(expected, 0, expected.length)).toEqual({ ok: true, value: x });
  });
  it('malformed: unordered versions (IPv6 before IPv4)', () => {
    const b = hex('06 00000000000000000000000000000000 00000000000000000000000000000001 00  04 0a000000 0a0000ff 00');
    const r = parseRouteAdvertisement(b, 0, b.length);
    expect(!r.ok && r.error).toMatch(/IP Version not ordered/);
  });
  it('malformed: unordered protocols, start after end, overlapping ranges', () => {
    const proto = hex('04 0a000000 0a0000ff 11  04 0b000000 0b0000ff 06');
    expect(parseRouteAdvertisement(proto, 0, proto.length).ok).toBe(false);
    const rev = hex('04 0a0000ff 0a000000 00');
    expect(parseRouteAdvertisement(rev, 0, rev.length).ok).toBe(false);
    const overlap = hex('04 0a000000 0a0000ff 00  04 0a0000ff 0a0001ff 00');
    const r = parseRouteAdvertisement(overlap, 0, overlap.length);
    expect(!r.ok && r.error).toMatch(/overlaps/);
    const unordered = hex('04 0b000000 0b0000ff 00  04 0a000000 0a0000ff 00');
    expect(parseRouteAdvertisement(unordered, 0, unordered.length).ok).toBe(false);
    const zeroOverlap = hex('04 0a000000 0a0000ff 00  04 0a000010 0a000020 06');
    expect(parseRouteAdvertisement(zeroOverlap, 0, zeroOverlap.length).ok).toBe(false);
  });
  it('adjacent, ordered ranges are fine; truncation and version 5 are not', () => {
    const ok = hex('04 0a000000 0a0000ff 00  04 0a000100 0a0001ff 00');
    expect(parseRouteAdvertisement(ok, 0, ok.length).ok).toBe(true);
    expect(parseRouteAdvertisement(hex('04 0a000000 0a0000'), 0, 7).ok).toBe(false);
    expect(parseRouteAdvertisement(hex('05 0a000000 0a0000ff 00'), 0, 10).ok).toBe(false);
  });
});

describe('normalizeRanges', () => {
  const R = (a: string, b: string, p = 0): IpAddressRange => ({ version: parseIp(a)!.version, start: ip(a), end: ip(b), ipProtocol: p });
  it('merges overlapping and adjacent ranges, drops specifics covered by an all-protocol range', () => {
    const n = normalizeRanges([R('10.1.0.0', '10.1.255.255'), R('10.0.0.0', '10.0.255.255'), R('10.1.5.0', '10.2.0.0'), R('10.1.0.0', '10.1.0.9', 6), R('192.0.2.0', '192.0.2.9', 17), R('::', '::1')]);
    expect(n.map((r) => `${r.ipProtocol} ${Buffer.from(r.start).toString('hex')}-${Buffer.from(r.end).toString('hex')}`)).toEqual([
      '0 0a000000-0a020000',
      '17 c0000200-c0000209',
      '0 00000000000000000000000000000000-00000000000000000000000000000001',
    ]);
    expect(checkRangeOrder(n)).toBeNull();
  });
  it('always yields a valid advertisement (property)', () => {
    fc.assert(
      fc.property(fc.array(fc.record({ a: fc.integer({ min: 0, max: 300 }), n: fc.integer({ min: 0, max: 40 }), p: fc.constantFrom(0, 6, 17) }), { maxLength: 12 }), (xs) => {
        const rs = xs.map(({ a, n, p }) => ({ version: 4 as const, start: Uint8Array.of(10, 0, a >> 8, a & 255), end: Uint8Array.of(10, 0, (a + n) >> 8, (a + n) & 255), ipProtocol: p }));
        expect(checkRangeOrder(normalizeRanges(rs))).toBeNull();
      }),
    );
  });
});

// ---- properties ----
const arbEntry = (allowZeroId: boolean): fc.Arbitrary<AddressEntry> =>
  fc
    .record({
      requestId: fc.integer({ min: allowZeroId ? 0 : 1, max: Number.MAX_SAFE_INTEGER }),
      v6: fc.boolean(),
      bytes: fc.uint8Array({ minLength: 16, maxLength: 16 }),
      len: fc.integer({ min: 0, max: 128 }),
    })
    .map(({ requestId, v6, bytes, len }) => {
      const version = v6 ? 6 : 4;
      const address = bytes.slice(0, v6 ? 16 : 4);
      const prefixLength = len % ((v6 ? 128 : 32) + 1);
      for (let bit = prefixLength; bit < address.length * 8; bit++) address[bit >> 3]! &= ~(0x80 >> (bit & 7));
      expect(hostBitsZero(address, prefixLength)).toBe(true);
      return { requestId, version, address, prefixLength } as AddressEntry;
    });

describe('capsule codecs: properties', () => {
  it('ADDRESS_ASSIGN encode∘parse is identity', () => {
    fc.assert(
      fc.property(fc.array(arbEntry(true), { maxLength: 8 }), (addresses) => {
        const x = { addresses };
        const b = roundTrip(x, addressAssignLength, encodeAddressAssign);
        expect(parseAddressAssign(b, 0, b.length)).toEqual({ ok: true, value: x });
      }),
    );
  });
  it('ADDRESS_REQUEST encode∘parse is identity', () => {
    fc.assert(
      fc.property(fc.uniqueArray(arbEntry(false), { minLength: 1, maxLength: 8, selector: (e) => e.requestId }), (addresses) => {
        const x = { addresses };
        const b = roundTrip(x, addressRequestLength, encodeAddressRequest);
        expect(parseAddressRequest(b, 0, b.length)).toEqual({ ok: true, value: x });
      }),
    );
  });
  it('ROUTE_ADVERTISEMENT encode∘parse is identity for valid (sorted, disjoint) ranges', () => {
    const arbRange = fc
      .record({ v6: fc.boolean(), a: fc.uint8Array({ minLength: 16, maxLength: 16 }), b: fc.uint8Array({ minLength: 16, maxLength: 16 }), p: fc.integer({ min: 0, max: 255 }) })
      .map(({ v6, a, b, p }) => {
        const n = v6 ? 16 : 4;
        const s = a.slice(0, n);
        const e = b.slice(0, n);
        const [lo, hi] = Buffer.compare(Buffer.from(s), Buffer.from(e)) <= 0 ? [s, e] : [e, s];
        return { version: (v6 ? 6 : 4) as 4 | 6, start: lo, end: hi, ipProtocol: p };
      });
    fc.assert(
      fc.property(fc.array(arbRange, { maxLength: 6 }), (rs) => {
        const sorted = sortRanges(rs);
        fc.pre(checkRangeOrder(sorted) === null);
        const x = { ranges: sorted };
        const b = roundTrip(x, routeAdvertisementLength, encodeRouteAdvertisement);
        expect(parseRouteAdvertisement(b, 0, b.length)).toEqual({ ok: true, value: x });
      }),
    );
  });
  it('random bytes never throw in any parser', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 80 }), fc.nat(10), (b, skip) => {
        const off = Math.min(skip, b.length);
        for (const p of [parseAddressAssign, parseAddressRequest, parseRouteAdvertisement]) {
          const r = p(b, off, b.length - off);
          expect(typeof r.ok).toBe('boolean');
        }
      }),
      { numRuns: 2000 },
    );
  });
});
