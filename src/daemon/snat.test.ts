import { describe, expect, it } from 'vitest';
import { snatRuleset, snatTableName } from './snat.js';

describe('remote-access SNAT rules', () => {
  it('rewrites only sources that are not the assigned address, per family, out of the TUN', () => {
    const r = snatRuleset('mtun-a', '10.200.0.5', 'fd00:200::5');
    expect(r).toContain('table inet mtun_snat_mtun_a {');
    expect(r).toContain('oifname "mtun-a" meta nfproto ipv4 ip saddr != 10.200.0.5 snat ip to 10.200.0.5');
    expect(r).toContain('oifname "mtun-a" meta nfproto ipv6 ip6 saddr != fd00:200::5 snat ip6 to fd00:200::5');
    // Replaced as a whole: create-then-delete makes the delete safe when the table is new.
    expect(r.indexOf('delete table inet mtun_snat_mtun_a')).toBeLessThan(r.indexOf('table inet mtun_snat_mtun_a {'));
  });

  it('omits a family without an assigned address, and sanitises the table name', () => {
    const r = snatRuleset('tun.0', '10.200.0.9', null);
    expect(r).not.toContain('ip6');
    expect(snatTableName('tun.0')).toBe('mtun_snat_tun_0');
  });
});
