import { describe, expect, it } from 'vitest';
import { parsePrefix, type IpPrefix } from '../packet/ip-address.js';
import { WorkloadMap } from './workload-map.js';

const p = (t: string): IpPrefix => parsePrefix(t)!;

describe('telemetry: workload map', () => {
  const map = new WorkloadMap([
    { prefix: p('10.0.0.0/8'), name: 'corp' },
    { prefix: p('10.2.0.0/16'), name: 'cluster-b' },
    { prefix: p('10.2.0.10/32'), name: 'web' },
    { prefix: p('fd00:2::/64'), name: 'cluster-b' },
  ]);

  it('resolves by longest prefix, "unknown" otherwise', () => {
    expect(map.nameOf('10.2.0.10')).toBe('web');
    expect(map.nameOf('10.2.0.11')).toBe('cluster-b');
    expect(map.nameOf('10.9.9.9')).toBe('corp');
    expect(map.nameOf('192.168.1.1')).toBe('unknown');
    expect(map.nameOf('fd00:2::10')).toBe('cluster-b');
    expect(map.nameOf('fd00:3::10')).toBe('unknown');
    expect(map.nameOf('not-an-address')).toBe('unknown');
  });

  it('matches IPv4-mapped IPv6 addresses against IPv4 prefixes', () => {
    expect(map.nameOf('::ffff:10.2.0.10')).toBe('web');
  });

  it('gives one id per distinct name, 0 for unknown', () => {
    expect(map.names).toEqual(['unknown', 'corp', 'cluster-b', 'web']);
    expect(map.lookupText('10.2.0.1')).toBe(map.lookupText('fd00:2::1'));
    expect(map.lookupText('8.8.8.8')).toBe(0);
  });
});
