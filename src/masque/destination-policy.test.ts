/**
 * The shared destination rule (RFC 9298 §7, RFC 9484 §4.6/§11) and the
 * host addresses it reads: refused classes, the gateway's own addresses,
 * and one read of the interfaces shared by a burst of session opens.
 */
import os from 'node:os';
import { describe, expect, it, vi } from 'vitest';
import { LOCAL_ADDRESSES_TTL_MS, localAddresses, prohibitedDestination } from './destination-policy.js';
import { parseIp } from '../packet/ip-address.js';

const ip = (s: string): Uint8Array => parseIp(s)!.address;

describe('destination policy', () => {
  it('refuses unspecified, loopback, link-local, multicast and broadcast unless allowed, and the own addresses', () => {
    expect(prohibitedDestination(4, ip('0.1.2.3'), 0)).toMatch(/unspecified/);
    expect(prohibitedDestination(4, ip('127.0.0.1'), 0)).toMatch(/loopback/);
    expect(prohibitedDestination(4, ip('127.0.0.1'), 0, { loopback: true })).toBeNull();
    expect(prohibitedDestination(4, ip('169.254.169.254'), 0)).toMatch(/link-local/);
    expect(prohibitedDestination(4, ip('224.0.0.1'), 0)).toMatch(/multicast/);
    expect(prohibitedDestination(4, ip('255.255.255.255'), 0)).toMatch(/broadcast/);
    expect(prohibitedDestination(6, ip('::'), 0)).toMatch(/unspecified/);
    expect(prohibitedDestination(6, ip('fe80::1'), 0)).toMatch(/link-local/);
    // An IPv4-mapped address is judged as IPv4.
    expect(prohibitedDestination(6, ip('::ffff:127.0.0.1'), 0)).toMatch(/loopback/);
    const own = [ip('192.0.2.7'), ip('2001:db8::7')];
    expect(prohibitedDestination(4, ip('192.0.2.7'), 0, {}, own)).toMatch(/own address/);
    expect(prohibitedDestination(6, ip('2001:db8::7'), 0, {}, own)).toMatch(/own address/);
    expect(prohibitedDestination(4, ip('192.0.2.7'), 0, { ownAddresses: true }, own)).toBeNull();
    expect(prohibitedDestination(4, ip('192.0.2.8'), 0, {}, own)).toBeNull();
  });

  // Independent review, 7 December: the IPv6 metadata endpoints (and Alibaba's IPv4 one) sit outside
  // link-local space, so only an identity's policy kept a tunnel from reaching the gateway host's credentials;
  // allowLocalTargets opened 169.254.169.254 to CONNECT-UDP.
  it('refuses cloud metadata endpoints unless allowed, link-local ones even when link-local is allowed, and only those addresses', () => {
    for (const a of ['fd00:ec2::254', 'fd20:ce::254', '100.100.100.200', '::ffff:100.100.100.200']) {
      const v = a.includes(':') ? 6 : 4;
      expect(prohibitedDestination(v, ip(a), 0, {}, []), a).toBe('cloud metadata endpoint');
      expect(prohibitedDestination(v, ip(a), 0, { metadata: true }, []), a).toBeNull();
    }
    // The link-local ones stay refused when link-local destinations are allowed (connectUdp.allowLocalTargets).
    for (const a of ['169.254.169.254', '169.254.170.2']) {
      expect(prohibitedDestination(4, ip(a), 0, {}, []), a).toBe('link-local address');
      expect(prohibitedDestination(4, ip(a), 0, { linkLocal: true }, []), a).toBe('cloud metadata endpoint');
    }
    expect(prohibitedDestination(4, ip('169.254.170.3'), 0, { linkLocal: true }, [])).toBeNull();
    // EKS Pod Identity (second review): fd00:ec2::23 and 169.254.170.23.
    expect(prohibitedDestination(6, ip('fd00:ec2::23'), 0, {}, [])).toBe('cloud metadata endpoint');
    expect(prohibitedDestination(4, ip('169.254.170.23'), 0, { linkLocal: true }, [])).toBe('cloud metadata endpoint');
    expect(prohibitedDestination(6, ip('fd20:ce::23'), 0, {}, [])).toBeNull();
    for (const a of ['fd00:ec2::253', 'fd00:ec2:0:1::254', 'fd20:ce::255', 'fd00:ec3::254', '100.100.100.201', '100.100.101.200']) {
      expect(prohibitedDestination(a.includes(':') ? 6 : 4, ip(a), 0, {}, []), a).toBeNull();
    }
  });

  // Second review, 7 December: a NAT64 translator on the gateway's path reaches the IPv4 address inside
  // 64:ff9b::/96, so those are judged as that IPv4 address (as IPv4-mapped ones are).
  it('judges NAT64 well-known-prefix addresses by the IPv4 address inside', () => {
    expect(prohibitedDestination(6, ip('64:ff9b::a9fe:a9fe'), 0, {}, [])).toBe('link-local address');
    expect(prohibitedDestination(6, ip('64:ff9b::a9fe:a9fe'), 0, { linkLocal: true }, [])).toBe('cloud metadata endpoint');
    expect(prohibitedDestination(6, ip('64:ff9b::7f00:1'), 0, {}, [])).toBe('loopback address');
    expect(prohibitedDestination(6, ip('64:ff9b::c000:201'), 0, {}, [ip('192.0.2.1')])).toBe("the gateway's own address");
    expect(prohibitedDestination(6, ip('64:ff9b::c000:202'), 0, {}, [ip('192.0.2.1')])).toBeNull();
    // Not the well-known /96: a local-use NAT64 prefix places the IPv4 address elsewhere.
    expect(prohibitedDestination(6, ip('64:ff9b:1::a9fe:a9fe'), 0, {}, [])).toBeNull();
  });

  it("reads the host's addresses once per TTL: a burst of opens shares one frozen list; a later read returns the same list unless the addresses changed", () => {
    const t0 = 1e9;
    const a = localAddresses(t0);
    // Loopback is always there.
    expect(a.some((x) => x.length === 4 && x[0] === 127)).toBe(true);
    expect(Object.isFrozen(a)).toBe(true);
    expect(localAddresses(t0 + LOCAL_ADDRESSES_TTL_MS - 1)).toBe(a);
    // Interfaces mocked from here: netns tests running beside this one add and remove interfaces in the
    // root namespace (a CI flake of 12-07).
    const eth0 = (address: string) => ({ eth0: [{ address, netmask: '255.255.255.255', family: 'IPv4' as const, mac: '00:00:00:00:00:01', internal: false, cidr: `${address}/32` }] });
    const spy = vi.spyOn(os, 'networkInterfaces').mockReturnValue(eth0('192.0.2.2'));
    try {
      const b = localAddresses(t0 + LOCAL_ADDRESSES_TTL_MS);
      expect(b.map((x) => x.join('.'))).toEqual(['192.0.2.2']);
      expect(Object.isFrozen(b)).toBe(true);
      // Nothing changed: the same array (the gateway's tick tells a change by identity).
      expect(localAddresses(t0 + 2 * LOCAL_ADDRESSES_TTL_MS)).toBe(b);
      spy.mockReturnValue(eth0('192.0.2.3'));
      expect(localAddresses(t0 + 2 * LOCAL_ADDRESSES_TTL_MS + 1)).toBe(b); // within the TTL
      const c = localAddresses(t0 + 3 * LOCAL_ADDRESSES_TTL_MS);
      expect(c).not.toBe(b);
      expect(c.map((x) => x.join('.'))).toEqual(['192.0.2.3']);
      // A clock that went backwards (another caller's time base) reads again rather than trusting the cache.
      spy.mockReturnValue(eth0('192.0.2.4'));
      expect(localAddresses(t0).map((x) => x.join('.'))).toEqual(['192.0.2.4']);
    } finally {
      spy.mockRestore();
      localAddresses(2e10); // the cache read again from the real interfaces
    }
  });

  // Independent review, 7 December: only the interfaces' own addresses were refused, but a connected subnet's
  // broadcast and network addresses are delivered to the host too.
  it("counts an IPv4 subnet's network and broadcast addresses as the host's own (not a /31 or /32's)", () => {
    const spy = vi.spyOn(os, 'networkInterfaces').mockReturnValue({
      eth0: [{ address: '192.0.2.2', netmask: '255.255.255.0', family: 'IPv4', mac: '00:00:00:00:00:01', internal: false, cidr: '192.0.2.2/24' }],
      p2p: [{ address: '198.51.100.1', netmask: '255.255.255.254', family: 'IPv4', mac: '00:00:00:00:00:02', internal: false, cidr: '198.51.100.1/31' }],
    });
    try {
      const own = localAddresses(5e9).map((x) => x.join('.'));
      expect(own).toEqual(expect.arrayContaining(['192.0.2.2', '192.0.2.0', '192.0.2.255', '198.51.100.1']));
      expect(own).not.toContain('198.51.100.0');
      expect(prohibitedDestination(4, parseIp('192.0.2.255')!.address, 0, {}, localAddresses(5e9))).not.toBeNull();
    } finally {
      spy.mockRestore();
      localAddresses(1e10); // the cache read again from the real interfaces
    }
  });
});
