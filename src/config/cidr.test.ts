import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { formatIpAddress, parseIpAddress, parseIpPrefix, prefixContains, type IpPrefix } from './cidr.js';

describe('config: IP addresses and prefixes', () => {
  it('parses IPv4 and IPv6 (with ::, embedded IPv4) to bytes', () => {
    expect(Array.from(parseIpAddress('10.1.2.3')!)).toEqual([10, 1, 2, 3]);
    expect(Array.from(parseIpAddress('::1')!)).toEqual([...new Array(15).fill(0), 1]);
    expect(Array.from(parseIpAddress('fd00:1::ff')!)).toEqual([0xfd, 0, 0, 1, ...new Array(10).fill(0), 0, 0xff]);
    expect(Array.from(parseIpAddress('::ffff:1.2.3.4')!)).toEqual([...new Array(10).fill(0), 0xff, 0xff, 1, 2, 3, 4]);
    expect(parseIpAddress('1.2.3')).toBeNull();
    expect(parseIpAddress('gateway')).toBeNull();
  });

  it('formats IPv6 per RFC 5952 §4 (longest zero run compressed, lower case)', () => {
    expect(formatIpAddress(parseIpAddress('2001:DB8:0:0:1:0:0:1')!)).toBe('2001:db8::1:0:0:1');
    expect(formatIpAddress(parseIpAddress('2001:db8:0:1:1:1:1:1')!)).toBe('2001:db8:0:1:1:1:1:1');
    expect(formatIpAddress(parseIpAddress('::')!)).toBe('::');
  });

  it('property: format∘parse is identity on canonical IPv6 text', () => {
    fc.assert(fc.property(fc.uint8Array({ minLength: 16, maxLength: 16 }), (b) => {
      const t = formatIpAddress(b);
      expect(Array.from(parseIpAddress(t)!)).toEqual(Array.from(b));
    }));
  });

  it('parses prefixes, rejects host bits and bad lengths', () => {
    const p = parseIpPrefix('10.1.0.0/16') as IpPrefix;
    expect(p.text).toBe('10.1.0.0/16');
    expect(prefixContains(p, parseIpAddress('10.1.255.3')!)).toBe(true);
    expect(prefixContains(p, parseIpAddress('10.2.0.1')!)).toBe(false);
    expect(prefixContains(p, parseIpAddress('::1')!)).toBe(false);
    expect((parseIpPrefix('fd00:0:0:0::/61') as IpPrefix).text).toBe('fd00::/61');
    expect((parseIpPrefix('10.0.0.7') as IpPrefix).prefixLen).toBe(32);
    expect(parseIpPrefix('10.0.0.7/24')).toBe('expected the host bits of "10.0.0.7/24" to be zero (did you mean 10.0.0.0/24?)');
    expect(parseIpPrefix('::/129')).toBe('expected a prefix length 0-128 after "/", got "::/129"');
    expect(parseIpPrefix('fe80::1%eth0/128')).toMatch(/^expected an IP prefix/);
    const odd = parseIpPrefix('10.0.0.0/13') as IpPrefix;
    expect(prefixContains(odd, parseIpAddress('10.7.255.255')!)).toBe(true);
    expect(prefixContains(odd, parseIpAddress('10.8.0.0')!)).toBe(false);
  });
});
