/**
 * binding.gyp takes the QUIC engine's compiler and linker flags from
 * quic-deps.sh; without the libraries `npm install` must fail naming the
 * Debian packages (docs/decisions/0001-quic-engine.md).
 */
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const script = join(dirname(fileURLToPath(import.meta.url)), 'quic-deps.sh');

describe('quic-deps.sh (build dependency check)', () => {
  it('prints the link flags of ngtcp2, its GnuTLS crypto helper and GnuTLS', () => {
    const r = spawnSync('sh', [script, '--libs'], { encoding: 'utf8' });
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('-lngtcp2');
    expect(r.stdout).toContain('-lngtcp2_crypto_gnutls');
    expect(r.stdout).toContain('-lgnutls');
  });

  it('fails with the Debian package names when pkg-config cannot find the libraries', () => {
    const r = spawnSync('sh', [script, '--libs'], {
      encoding: 'utf8',
      env: { ...process.env, PKG_CONFIG_LIBDIR: '/nonexistent', PKG_CONFIG_PATH: '' },
    });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('libngtcp2-dev');
    expect(r.stderr).toContain('libngtcp2-crypto-gnutls-dev');
    expect(r.stderr).toContain('libgnutls28-dev');
  });
});
