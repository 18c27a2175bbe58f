import { describe, expect, it } from 'vitest';
import { explainOpenError } from './native-tun.js';

const err = (code: string): Error & { code: string } => Object.assign(new Error(`tun: x: ${code}`), { code });

describe('explainOpenError', () => {
  it('says how to fix a missing /dev/net/tun', () => {
    for (const c of ['ENOENT', 'ENODEV', 'ENXIO']) {
      expect(explainOpenError(err(c), 't0').message).toMatch(/^tun: \/dev\/net\/tun is missing: load the driver \(modprobe tun\)/);
    }
  });
  it('says how to fix a missing CAP_NET_ADMIN', () => {
    expect(explainOpenError(err('EPERM'), 't0').message).toMatch(/not permitted to create TUN interface "t0": run as root or grant CAP_NET_ADMIN/);
    expect(explainOpenError(err('EACCES'), 't0').message).toMatch(/CAP_NET_ADMIN/);
  });
  it('names a taken interface name', () => {
    expect(explainOpenError(err('EBUSY'), 'mt1').message).toBe('tun: interface name "mt1" is taken (a TUN device of that name is already open)');
    expect(explainOpenError(err('EINVAL'), 'lo').message).toMatch(/"lo" is taken by a non-TUN interface/);
    expect(explainOpenError(err('EIO'), 'x').message).toMatch(/^tun: cannot open TUN "x": /);
  });
});
