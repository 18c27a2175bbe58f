import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  formatIp, formatPrefix, maskAddress, parseAddressWithLength, parseIp, parsePrefix, parsePrefixOrReason, prefixCovers, prefixHasAddress, rangesToPrefixes, formatHostPort, type IpPrefix } from './ip-address.js';

describe('packet: IP addresses and prefixes as configuration writes them', () => {
  it('parses IPv4 and IPv6 (with ::, embedded IPv4) to bytes', () => {
    expect(Array.from(parseIp('10.1.2.3')!.address)).toEqual([10, 1, 2, 3]);
    expect(Array.from(parseIp('::1')!.address)).toEqual([...new Array(15).fill(0), 1]);
    expect(Array.from(parseIp('fd00:1::ff')!.address)).toEqual([0xfd, 0, 0, 1, ...new Array(10).fill(0), 0, 0xff]);
    expect(Array.from(parseIp('::ffff:1.2.3.4')!.address)).toEqual([...new Array(10).fill(0), 0xff, 0xff, 1, 2, 3, 4]);
    expect(parseIp('1.2.3')).toBeNull();
    expect(parseIp('gateway')).toBeNull();
  });

  it('formats IPv6 per RFC 5952 §4 (longest zero run compressed, lower case)', () => {
    expect(formatIp(parseIp('2001:DB8:0:0:1:0:0:1')!.address)).toBe('2001:db8::1:0:0:1');
    expect(formatIp(parseIp('2001:db8:0:1:1:1:1:1')!.address)).toBe('2001:db8:0:1:1:1:1:1');
    expect(formatIp(parseIp('::')!.address)).toBe('::');
  });

  it('property: format∘parse is identity on canonical IPv6 text', () => {
    fc.assert(fc.property(fc.uint8Array({ minLength: 16, maxLength: 16 }), (b) => {
      const t = formatIp(b);
      expect(Array.from(parseIp(t)!.address)).toEqual(Array.from(b));
    }));
  });

  it('parses prefixes, rejects host bits and bad lengths', () => {
    const p = parsePrefixOrReason('10.1.0.0/16') as IpPrefix;
    expect(formatPrefix(p)).toBe('10.1.0.0/16');
    expect(prefixHasAddress(p, parseIp('10.1.255.3')!.address)).toBe(true);
    expect(prefixHasAddress(p, parseIp('10.2.0.1')!.address)).toBe(false);
    expect(prefixHasAddress(p, parseIp('::1')!.address)).toBe(false);
    expect(formatPrefix(parsePrefixOrReason('fd00:0:0:0::/61') as IpPrefix)).toBe('fd00::/61');
    expect((parsePrefixOrReason('10.0.0.7') as IpPrefix).prefixLength).toBe(32);
    expect(parsePrefixOrReason('10.0.0.7/24')).toBe('expected the host bits of "10.0.0.7/24" to be zero (did you mean 10.0.0.0/24?)');
    expect(parsePrefixOrReason('::/129')).toBe('expected a prefix length 0-128 after "/", got "::/129"');
    expect(parsePrefixOrReason('fe80::1%eth0/128')).toMatch(/^expected an IP prefix/);
    const odd = parsePrefixOrReason('10.0.0.0/13') as IpPrefix;
    expect(prefixHasAddress(odd, parseIp('10.7.255.255')!.address)).toBe(true);
    expect(prefixHasAddress(odd, parseIp('10.8.0.0')!.address)).toBe(false);
  });

  it('parsePrefix is parsePrefixOrReason without the reason (one parser for every layer)', () => {
    for (const t of ['10.0.0.0/8', '10.0.0.1/8', 'fd00::/64', 'fd00::1/64', '::/0', '0.0.0.0/33', '1.2.3.4', 'x', '10.0.0.0/', '10.0.0.0/08']) {
      const r = parsePrefixOrReason(t);
      expect(parsePrefix(t)).toEqual(typeof r === 'string' ? null : r);
    }
    fc.assert(fc.property(fc.string({ maxLength: 50 }), (t) => {
      const r = parsePrefixOrReason(t);
      expect(parsePrefix(t)).toEqual(typeof r === 'string' ? null : r);
    }));
  });

  it('maskAddress clears host bits without touching its input (RFC 4632 §3.1)', () => {
    const a = parseIp('10.7.255.255')!.address;
    expect(formatIp(maskAddress(a, 13))).toBe('10.0.0.0');
    expect(formatIp(a)).toBe('10.7.255.255');
    expect(formatIp(maskAddress(parseIp('fd00:200::1:2')!.address, 64))).toBe('fd00:200::');
  });

  it('prefixCovers: same version, no longer, same leading bits', () => {
    const p = (t: string): IpPrefix => parsePrefix(t)!;
    expect(prefixCovers(p('10.0.0.0/8'), p('10.20.0.0/16'))).toBe(true);
    expect(prefixCovers(p('10.0.0.0/8'), p('10.0.0.0/8'))).toBe(true);
    expect(prefixCovers(p('10.20.0.0/16'), p('10.0.0.0/8'))).toBe(false);
    expect(prefixCovers(p('10.0.0.0/13'), p('10.7.0.0/16'))).toBe(true);
    expect(prefixCovers(p('10.0.0.0/13'), p('10.8.0.0/16'))).toBe(false);
    expect(prefixCovers(p('::/0'), p('10.0.0.0/8'))).toBe(false);
    expect(prefixCovers(p('fd00::/8'), p('fd00:a::/64'))).toBe(true);
  });

  it('rangesToPrefixes decomposes ROUTE_ADVERTISEMENT ranges in order (RFC 9484 §4.7.3)', () => {
    const a = (t: string): Uint8Array => parseIp(t)!.address;
    const out = rangesToPrefixes([
      { version: 4, start: a('10.0.0.1'), end: a('10.0.0.6') },
      { version: 6, start: a('fd00::'), end: a('fd00::ffff') },
    ]).map(formatPrefix);
    expect(out).toEqual(['10.0.0.1/32', '10.0.0.2/31', '10.0.0.4/31', '10.0.0.6/32', 'fd00::/112']);
    expect(rangesToPrefixes([])).toEqual([]);
  });

  it('parseAddressWithLength keeps host bits (interface addresses) and names the wrong part', () => {
    const a = parseAddressWithLength('10.0.0.1/24') as IpPrefix;
    expect([formatIp(a.address), a.prefixLength, a.version]).toEqual(['10.0.0.1', 24, 4]);
    expect((parseAddressWithLength('fd00::1') as IpPrefix).prefixLength).toBe(128);
    expect(parseAddressWithLength('10.0.0.256/24')).toBe('address');
    expect(parseAddressWithLength('fe80::1%eth0/64')).toBe('address');
    expect(parseAddressWithLength('10.0.0.1/33')).toBe('length');
    expect(parseAddressWithLength('fd00::/1x')).toBe('length');
    expect(parseAddressWithLength('10.0.0.1/')).toBe('length');
  });
});

describe('formatHostPort', () => {
  it('brackets IPv6 hosts (RFC 3986 §3.2.2) and leaves IPv4 and names alone', () => {
    expect(formatHostPort('fd00::1', 4433)).toBe('[fd00::1]:4433');
    expect(formatHostPort('192.0.2.2', 4433)).toBe('192.0.2.2:4433');
    expect(formatHostPort('gateway', 443)).toBe('gateway:443');
  });
});

describe('parseIp: IPv4 text (the character-loop parser against the strict definition)', () => {
  /** The definition: four dot-separated parts, each 0–255 written in 1–3 digits with no leading zero. */
  const reference = (t: string): number[] | null => {
    const parts = t.split('.');
    if (parts.length !== 4) return null;
    const out: number[] = [];
    for (const p of parts) {
      if (!/^(0|[1-9][0-9]{0,2})$/.test(p) || Number(p) > 255) return null;
      out.push(Number(p));
    }
    return out;
  };
  it('accepts and rejects exactly what the definition does, for any short string of digits, dots and a stray character', () => {
    const text = fc.array(fc.constantFrom('0', '1', '2', '5', '9', '.', '.', 'a', ' ', ':'), { maxLength: 18 }).map((cs) => cs.join(''));
    const quad = fc.tuple(fc.nat(300), fc.nat(300), fc.nat(300), fc.nat(300)).map((q) => q.join('.'));
    fc.assert(fc.property(fc.oneof(text, quad), (t) => {
      const r = reference(t);
      const got = parseIp(t);
      if (r === null) expect(got === null || got.version === 6, t).toBe(true);
      else expect(got !== null && got.version === 4 ? [...got.address] : null, t).toEqual(r);
    }), { numRuns: 5000 });
    for (const bad of ['01.2.3.4', '1.2.3', '1.2.3.4.', '.1.2.3', '1..2.3', '256.1.1.1', '1.2.3.1000', '']) expect(parseIp(bad), bad).toBeNull();
  });
});
