import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { MIN_SHARED_SECRET_BYTES, quicServerKeys, readSharedSecret } from './quic-keys.js';

const dir = mkdtempSync(join(tmpdir(), 'mtun-quic-keys-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function secretFile(name: string, bytes: string, mode: number): string {
  const p = join(dir, name);
  writeFileSync(p, bytes);
  chmodSync(p, mode);
  return p;
}

describe('gateway QUIC keys (quic.statelessResetKeyFile, RFC 9000 §10.3.2)', () => {
  it('replicas reading the same secret derive the same reset and ticket keys; another secret gives others', () => {
    const a = secretFile('a', 'f'.repeat(64), 0o600);
    const b = secretFile('b', 'f'.repeat(64), 0o640);
    const c = secretFile('c', 'e'.repeat(64), 0o400);
    const ka = quicServerKeys(a, 'tls key of replica 0');
    const kb = quicServerKeys(b, 'tls key of replica 1');
    expect(ka.statelessResetKey.equals(kb.statelessResetKey)).toBe(true);
    expect(ka.statelessResetKey.length).toBeGreaterThanOrEqual(32);
    expect(quicServerKeys(c, '').statelessResetKey.equals(ka.statelessResetKey)).toBe(false);
    expect(ka.source).toBe(`shared secret ${a}`);
  });

  it('without the file, keys come from the TLS key: stable across restarts, different per key', () => {
    expect(quicServerKeys(undefined, 'k1').statelessResetKey.equals(quicServerKeys(undefined, 'k1').statelessResetKey)).toBe(true);
    expect(quicServerKeys(undefined, 'k1').statelessResetKey.equals(quicServerKeys(undefined, 'k2').statelessResetKey)).toBe(false);
    expect(quicServerKeys(undefined, 'k1').source).toBe('tls.key');
  });

  it('refuses a secret others can read or write, naming the mode and the fix', () => {
    const p = secretFile('open', 'x'.repeat(64), 0o644);
    expect(() => readSharedSecret(p)).toThrow(`gateway: quic.statelessResetKeyFile ${p} is accessible to every user (mode 0644); whoever reads it can reset any agent's connection: chmod o-rwx ${p}`);
    chmodSync(p, 0o602);
    expect(() => readSharedSecret(p)).toThrow(/mode 0602/);
  });

  it('refuses a short secret and a missing file', () => {
    const p = secretFile('short', 'x'.repeat(MIN_SHARED_SECRET_BYTES - 1), 0o600);
    expect(() => readSharedSecret(p)).toThrow(`holds 31 bytes; expected at least 32`);
    expect(() => readSharedSecret(join(dir, 'none'))).toThrow(/^gateway: cannot read quic\.statelessResetKeyFile .*ENOENT/);
  });
});
