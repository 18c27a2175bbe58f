import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { AddressPool } from './address-pool.js';
import { RouteTable } from './route-table.js';
import { formatIp, formatPrefix, parseIp, parsePrefix, rangeToPrefixes } from '../packet/ip-address.js';
import { CONNECT_IP_DEFAULT_TEMPLATE, CONNECT_UDP_DEFAULT_TEMPLATE, TemplateMatcher, expandTemplate, splitUrl } from './uri-template.js';
import { proxyStatusValue } from './proxy-status.js';

describe('ip-address', () => {
  it('parses and formats IPv4/IPv6 (RFC 5952 canonical)', () => {
    expect(formatIp(parseIp('2001:0db8:0:0:0:0:0:42')!.address)).toBe('2001:db8::42');
    expect(formatIp(parseIp('::ffff:192.0.2.1')!.address)).toBe('::ffff:c000:201');
    expect(formatIp(parseIp('2001:db8:0:1:0:0:0:1')!.address)).toBe('2001:db8:0:1::1');
    expect(formatIp(parseIp('10.1.2.3')!.address)).toBe('10.1.2.3');
    for (const bad of ['1.2.3', '1.2.3.256', '01.2.3.4', 'fe80::1%eth0', '1::2::3', '12345::', 'g::1', '']) expect(parseIp(bad)).toBeNull();
  });
  it('round-trips random addresses', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 16, maxLength: 16 }), fc.boolean(), (b, v6) => {
        const a = v6 ? b : b.slice(0, 4);
        expect(parseIp(formatIp(a))!.address).toEqual(a);
      }),
    );
  });
  it('decomposes ranges into minimal prefixes', () => {
    const r = rangeToPrefixes(4, parseIp('10.0.0.1')!.address, parseIp('10.0.0.6')!.address).map(formatPrefix);
    expect(r).toEqual(['10.0.0.1/32', '10.0.0.2/31', '10.0.0.4/31', '10.0.0.6/32']);
    expect(rangeToPrefixes(4, parseIp('0.0.0.0')!.address, parseIp('255.255.255.255')!.address).map(formatPrefix)).toEqual(['0.0.0.0/0']);
    expect(rangeToPrefixes(6, parseIp('2001:db8::')!.address, parseIp('2001:db8::ffff:ffff')!.address).map(formatPrefix)).toEqual(['2001:db8::/96']);
  });
});

describe('URI templates (RFC 6570) for MASQUE', () => {
  it('RFC 9484 §4.6: IPv6 prefix target is percent-encoded (colons %3A, slash %2F)', () => {
    const url = expandTemplate(CONNECT_IP_DEFAULT_TEMPLATE, { gateway: 'gw.example:443', target: '2001:db8::/32', ipproto: '17' });
    expect(url).toBe('https://gw.example:443/.well-known/masque/ip/2001%3Adb8%3A%3A%2F32/17/');
    expect(expandTemplate(CONNECT_IP_DEFAULT_TEMPLATE, { gateway: 'g', target: '*', ipproto: '*' })).toBe('https://g/.well-known/masque/ip/*/*/');
  });
  it('matches back: simple, query (level 3 {?a,b}) and missing variables', () => {
    const m = new TemplateMatcher(CONNECT_IP_DEFAULT_TEMPLATE);
    expect(m.match('/.well-known/masque/ip/2001%3Adb8%3A%3A%2F32/17/')).toEqual({ target: '2001:db8::/32', ipproto: '17' });
    expect(m.match('/.well-known/masque/ip/%2A/%2A/')).toEqual({ target: '*', ipproto: '*' });
    expect(m.match('/other')).toBeNull();
    expect(m.match('/.well-known/masque/ip/%zz/1/')).toBeNull();
    const q = new TemplateMatcher('https://proxy.example/masque{?target,ipproto}');
    const url = expandTemplate(q.template, { target: '192.0.2.0/24', ipproto: '6' });
    expect(url).toBe('https://proxy.example/masque?target=192.0.2.0%2F24&ipproto=6');
    expect(q.match(splitUrl(url).path)).toEqual({ target: '192.0.2.0/24', ipproto: '6' });
    expect(q.match('/masque')).toEqual({});
    const u = new TemplateMatcher(CONNECT_UDP_DEFAULT_TEMPLATE);
    expect(u.match('/.well-known/masque/udp/192.0.2.6/443/')).toEqual({ target_host: '192.0.2.6', target_port: '443' });
  });
  it('rejects malformed templates', () => {
    expect(() => expandTemplate('/{a', {})).toThrow(/masque/);
    expect(() => new TemplateMatcher('/{a:3}')).toThrow(/masque/);
  });
});

describe('Proxy-Status (RFC 9209)', () => {
  it('formats name, error type, escaped details', () => {
    expect(proxyStatusValue('mtun', 'destination_ip_prohibited', 'say "no"\n')).toBe('mtun; error=destination_ip_prohibited; details="say \\"no\\"?"');
    expect(proxyStatusValue('gw 1', 'dns_error', undefined, { rcode: 'NXDOMAIN' })).toBe('"gw 1"; error=dns_error; rcode="NXDOMAIN"');
  });
});

describe('AddressPool', () => {
  it('hands out single IPv4 addresses, skipping the network and reserved addresses, and reuses released ones', () => {
    const p = new AddressPool({ prefix: '10.89.0.0/30', reserved: ['10.89.0.1'] });
    const a = p.allocate(32)!;
    expect(formatPrefix(a)).toBe('10.89.0.2/32');
    expect(formatPrefix(p.allocate(32)!)).toBe('10.89.0.3/32');
    expect(p.allocate(32)).toBeNull();
    expect(p.release(a)).toBe(true);
    expect(p.release(a)).toBe(false);
    expect(p.release(parsePrefix('10.89.0.1/32')!)).toBe(false); // reserved stays reserved
    expect(formatPrefix(p.allocate()!)).toBe('10.89.0.2/32');
  });
  it('hands out aligned IPv6 prefixes and honours a free preferred address', () => {
    const p = new AddressPool({ prefix: 'fd00:89::/48', minPrefixLength: 56 });
    expect(formatPrefix(p.allocate(64)!)).toBe('fd00:89:0:1::/64');
    expect(formatPrefix(p.allocate(56)!)).toBe('fd00:89:0:100::/56');
    expect(formatPrefix(p.allocate(48)!)).toBe('fd00:89:0:200::/56'); // raised to the minimum
    expect(formatPrefix(p.allocate(128, parseIp('fd00:89::77')!.address)!)).toBe('fd00:89::77/128');
    expect(formatPrefix(p.allocate(128, parseIp('fd00:89::77')!.address)!)).not.toBe('fd00:89::77/128');
  });
  it('never hands out overlapping blocks (property)', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 24, max: 32 }), { maxLength: 40 }), (lens) => {
        const p = new AddressPool({ prefix: '10.0.0.0/24', minPrefixLength: 24 });
        const got = lens.map((l) => p.allocate(l)).filter((x) => x !== null);
        const seen = new Set<number>();
        for (const g of got) {
          const base = g.address[3]!;
          for (let i = 0; i < 1 << (32 - g.prefixLength); i++) {
            expect(seen.has(base + i)).toBe(false);
            seen.add(base + i);
          }
        }
      }),
    );
  });
  it('rejects bad configuration', () => {
    expect(() => new AddressPool({ prefix: '10.0.0.1/24' })).toThrow(/masque/);
    expect(() => new AddressPool({ prefix: '10.0.0.0/24', reserved: ['::1'] })).toThrow(/masque/);
  });
});

describe('RouteTable longest-prefix match', () => {
  const P = (s: string) => parsePrefix(s)!;
  const A = (s: string) => parseIp(s)!.address;
  it('picks the longest match over IPv4 and IPv6', () => {
    const t = new RouteTable<string>({ overlap: 'allow' });
    expect(t.add(P('0.0.0.0/0'), 'default')).toBe(true);
    expect(t.add(P('10.0.0.0/8'), 'a')).toBe(true);
    expect(t.add(P('10.1.0.0/16'), 'b')).toBe(true);
    expect(t.add(P('10.1.2.3/32'), 'c')).toBe(true);
    expect(t.add(P('2001:db8::/32'), 'v6')).toBe(true);
    expect(t.add(P('2001:db8:1::/48'), 'v6b')).toBe(true);
    expect(t.lookup4(A('10.1.2.3'), 0)).toBe('c');
    expect(t.lookup4(A('10.1.2.4'), 0)).toBe('b');
    expect(t.lookup4(A('10.2.0.1'), 0)).toBe('a');
    expect(t.lookup4(A('192.0.2.1'), 0)).toBe('default');
    expect(t.lookup6(A('2001:db8:1::5'), 0)).toBe('v6b');
    expect(t.lookup6(A('2001:db8:2::5'), 0)).toBe('v6');
    expect(t.lookup6(A('2001:db9::'), 0)).toBeUndefined();
    expect(t.add(P('10.1.0.0/16'), 'other')).toBe(false);
    t.removeAll('b');
    expect(t.lookup4(A('10.1.2.4'), 0)).toBe('a');
    expect(t.remove(P('10.1.2.3/32'), 'x')).toBe(false);
    expect(t.remove(P('10.1.2.3/32'), 'c')).toBe(true);
    expect(t.lookup4(A('10.1.2.3'), 0)).toBe('a');
  });
  it('agrees with a linear scan (property), and survives many removals', () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ a: fc.uint8Array({ minLength: 4, maxLength: 4 }), l: fc.integer({ min: 0, max: 32 }) }), { maxLength: 30 }),
        fc.array(fc.uint8Array({ minLength: 4, maxLength: 4 }), { maxLength: 20 }),
        (routes, probes) => {
          const t = new RouteTable<number>({ overlap: 'allow' });
          const list: { a: Uint8Array; l: number; v: number }[] = [];
          routes.forEach(({ a, l }, i) => {
            const addr = a.slice();
            for (let bit = l; bit < 32; bit++) addr[bit >> 3]! &= ~(0x80 >> (bit & 7));
            if (t.add({ version: 4, address: addr, prefixLength: l }, i)) list.push({ a: addr, l, v: i });
          });
          for (const p of probes) {
            const n = ((p[0]! << 24) | (p[1]! << 16) | (p[2]! << 8) | p[3]!) >>> 0;
            let best: { l: number; v: number } | undefined;
            for (const r of list) {
              const rn = ((r.a[0]! << 24) | (r.a[1]! << 16) | (r.a[2]! << 8) | r.a[3]!) >>> 0;
              const mask = r.l === 0 ? 0 : (0xffffffff << (32 - r.l)) >>> 0;
              if (((n & mask) >>> 0) === rn && (!best || r.l > best.l)) best = r;
            }
            expect(t.lookup4(p, 0)).toBe(best?.v);
          }
        },
      ),
    );
    const t = new RouteTable<number>({ overlap: 'allow' });
    for (let i = 0; i < 6000; i++) {
      const p = { version: 4 as const, address: Uint8Array.of(10, (i >> 8) & 255, i & 255, 0), prefixLength: 24 };
      t.add(p, i);
      t.remove(p, i);
    }
    t.add(P('10.0.0.0/8'), 1);
    expect(t.lookup4(A('10.5.5.5'), 0)).toBe(1);
    expect(t.size).toBe(1);
  });
  it('looks up the destination of an IP packet', () => {
    const t = new RouteTable<string>();
    t.add(P('192.0.2.0/24'), 'x');
    const pkt = new Uint8Array(20);
    pkt[0] = 0x45;
    pkt.set(A('192.0.2.9'), 16);
    expect(t.lookupDestination(pkt, 0, 20)).toBe('x');
    expect(t.lookupDestination(pkt, 0, 10)).toBeUndefined();
  });
});
