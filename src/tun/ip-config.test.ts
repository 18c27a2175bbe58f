import { describe, expect, it } from 'vitest';
import { buildTunBatch, explainIpFailure, parseCidr, parseIpForceFailures, routeLine, validateIfName, validateMtu } from './ip-config.js';

describe('ip-config validation', () => {
  it('checks interface names like the kernel', () => {
    expect(() => validateIfName('mtun0')).not.toThrow();
    expect(() => validateIfName('mtun%d')).not.toThrow();
    expect(() => validateIfName('a'.repeat(15))).not.toThrow();
    expect(() => validateIfName('a'.repeat(16))).toThrow(/tun: interface name "a{16}" is too long \(16 bytes/);
    expect(() => validateIfName('')).toThrow(/empty/);
    for (const bad of ['a/b', 'a:b', 'a b', '.', '..']) expect(() => validateIfName(bad)).toThrow(/invalid/);
  });
  it('checks MTU range, with the IPv6 minimum of 1280 (RFC 8200 §5)', () => {
    expect(() => validateMtu(68, false)).not.toThrow();
    expect(() => validateMtu(65535, true)).not.toThrow();
    expect(() => validateMtu(67, false)).toThrow(/tun: MTU 67 out of range 68\.\.65535/);
    expect(() => validateMtu(65536, false)).toThrow(/MTU 65536/);
    expect(() => validateMtu(1500.5, false)).toThrow(/MTU 1500.5/);
    expect(() => validateMtu(1279, true)).toThrow(/below 1280/);
  });
  it('parses CIDRs and rejects bad ones by name', () => {
    expect(parseCidr('10.0.0.1/24')).toEqual({ address: '10.0.0.1', prefix: 24, family: 4, text: '10.0.0.1/24' });
    expect(parseCidr('fd00::1')).toMatchObject({ prefix: 128, family: 6 });
    expect(() => parseCidr('10.0.0.1/33')).toThrow(/tun: "10.0.0.1\/33" has an invalid prefix length \(0\.\.32\)/);
    expect(() => parseCidr('fd00::/129')).toThrow(/0\.\.128/);
    expect(() => parseCidr('10.0.0/8')).toThrow(/not an IP address/);
    expect(() => parseCidr('10.0.0.1/x')).toThrow(/prefix/);
  });
  it('builds the ip -batch text', () => {
    expect(buildTunBatch('t0', 1400, [parseCidr('10.0.0.1/24'), parseCidr('fd00::1/64')], [parseCidr('10.1.0.0/16')])).toEqual([
      'link set dev t0 mtu 1400',
      'addr add 10.0.0.1/24 dev t0',
      'addr add fd00::1/64 dev t0 nodad',
      'link set dev t0 up',
      'route add 10.1.0.0/16 dev t0',
    ]);
    expect(buildTunBatch('t0', 1400, [], [], 64)).toEqual(['link set dev t0 mtu 1400', 'link set dev t0 txqueuelen 64', 'link set dev t0 up']);
    expect(routeLine('del', 't0', parseCidr('fd01::/48'))).toBe('route del fd01::/48 dev t0');
  });
  it('explains ip failures by the failing line', () => {
    const lines = ['link set dev t0 mtu 1400', 'addr add 10.0.0.1/24 dev t0', 'route add 10.1.0.0/16 dev t0'];
    expect(explainIpFailure('RTNETLINK answers: File exists\nCommand failed -:2\n', lines)).toBe(
      'tun: address 10.0.0.1/24 is already in use (RTNETLINK answers: File exists)',
    );
    expect(explainIpFailure('RTNETLINK answers: File exists\nCommand failed -:3\n', lines)).toMatch(/route 10\.1\.0\.0\/16 already exists/);
    expect(explainIpFailure('RTNETLINK answers: Operation not permitted\nCommand failed -:1\n', lines)).toMatch(/CAP_NET_ADMIN/);
    expect(explainIpFailure('weird\n', lines)).toBe('tun: ip failed: weird');
  });
});

describe('parseIpForceFailures', () => {
  it('pairs each "Command failed -:N" with the reason printed before it (0-based index)', () => {
    const stderr = 'RTNETLINK answers: File exists\nCommand failed -:2\nRTNETLINK answers: No such process\nCommand failed -:5\n';
    expect(parseIpForceFailures(stderr)).toEqual([
      { index: 1, reason: 'RTNETLINK answers: File exists' },
      { index: 4, reason: 'RTNETLINK answers: No such process' },
    ]);
    expect(parseIpForceFailures('')).toEqual([]);
  });
});
