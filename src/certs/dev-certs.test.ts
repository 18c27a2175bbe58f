import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { checkDevCertsOptions, generateDevCerts } from './dev-certs.js';

const haveOpenssl = spawnSync('openssl', ['version']).status === 0;
if (!haveOpenssl) console.warn('certs tests: openssl not found; install the Debian package "openssl" — skipping openssl checks');

function openssl(...args: string[]): string {
  return execFileSync('openssl', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

describe.skipIf(!haveOpenssl)('certs: development PKI checked with openssl', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mtun-certs-'));
  let first: Awaited<ReturnType<typeof generateDevCerts>>;

  it('writes CA, gateway and agent certificates that verify against the CA', async () => {
    first = await generateDevCerts({ outDir: dir, trustDomain: 'mesh.example', agents: ['a', 'b'], gatewaySans: ['gw.example', '10.0.0.1'] });
    expect(first.reusedCa).toBe(false);
    expect(first.files.map((f) => f.path.slice(dir.length + 1)).sort()).toEqual([
      'agent-a-key.pem', 'agent-a.pem', 'agent-b-key.pem', 'agent-b.pem', 'ca-key.pem', 'ca.pem', 'gateway-key.pem', 'gateway.pem',
    ]);
    const ca = join(dir, 'ca.pem');
    expect(openssl('verify', '-CAfile', ca, '-purpose', 'sslserver', join(dir, 'gateway.pem')).trim()).toBe(`${join(dir, 'gateway.pem')}: OK`);
    for (const a of ['a', 'b']) {
      const f = join(dir, `agent-${a}.pem`);
      expect(openssl('verify', '-CAfile', ca, '-purpose', 'sslclient', f).trim()).toBe(`${f}: OK`);
    }
  });

  it('agent certificates: ECDSA P-256, client auth, SPIFFE URI SAN', () => {
    const text = openssl('x509', '-in', join(dir, 'agent-a.pem'), '-noout', '-text');
    expect(text).toContain('URI:spiffe://mesh.example/agent/a');
    expect(text).toContain('TLS Web Client Authentication');
    expect(text).toContain('ASN1 OID: prime256v1');
    expect(text).toContain('ecdsa-with-SHA256');
    expect(text).not.toContain('TLS Web Server Authentication');
  });

  it('gateway certificate: DNS and IP SANs, server auth, gateway SPIFFE ID', () => {
    const text = openssl('x509', '-in', join(dir, 'gateway.pem'), '-noout', '-text');
    for (const s of ['DNS:gateway', 'DNS:localhost', 'DNS:gw.example', 'IP Address:127.0.0.1', 'IP Address:0:0:0:0:0:0:0:1', 'IP Address:10.0.0.1', 'URI:spiffe://mesh.example/gateway/gateway']) {
      expect(text).toContain(s);
    }
    expect(text).toContain('TLS Web Server Authentication');
    // An agent certificate must not pass as a server certificate.
    const r = spawnSync('openssl', ['verify', '-CAfile', join(dir, 'ca.pem'), '-purpose', 'sslserver', join(dir, 'agent-a.pem')], { encoding: 'utf8' });
    expect(r.status).not.toBe(0);
  });

  it('keys are 0600 PKCS#8 and match their certificates', () => {
    for (const base of ['ca', 'gateway', 'agent-a']) {
      const key = join(dir, `${base}-key.pem`);
      expect(statSync(key).mode & 0o777).toBe(0o600);
      expect(statSync(join(dir, `${base}.pem`)).mode & 0o777).toBe(0o644);
      expect(readFileSync(key, 'utf8')).toMatch(/^-----BEGIN PRIVATE KEY-----\n/);
      const fromKey = openssl('pkey', '-in', key, '-pubout');
      const fromCert = openssl('x509', '-in', join(dir, `${base}.pem`), '-noout', '-pubkey');
      expect(fromKey).toBe(fromCert);
    }
  });

  it('a second run reuses the CA, so earlier certificates stay valid', async () => {
    const caBefore = readFileSync(join(dir, 'ca.pem'), 'utf8');
    const r = await generateDevCerts({ outDir: dir, trustDomain: 'mesh.example', agents: ['c'] });
    expect(r.reusedCa).toBe(true);
    expect(readFileSync(join(dir, 'ca.pem'), 'utf8')).toBe(caBefore);
    const ca = join(dir, 'ca.pem');
    for (const f of ['agent-a.pem', 'agent-c.pem']) expect(openssl('verify', '-CAfile', ca, join(dir, f)).trim()).toBe(`${join(dir, f)}: OK`);
    const r2 = await generateDevCerts({ outDir: dir, agents: ['c'], newCa: true });
    expect(r2.reusedCa).toBe(false);
    expect(readFileSync(join(dir, 'ca.pem'), 'utf8')).not.toBe(caBefore);
  });
});

describe('certs: option checks', () => {
  it('rejects bad names, SANs and duplicates with clear messages', async () => {
    expect(checkDevCertsOptions({ outDir: '/x' })).toEqual([]);
    expect(checkDevCertsOptions({ outDir: '/x', trustDomain: 'Bad Domain', agents: ['ok', 'no/slash', 'ok'], gatewaySans: ['not a name'], validDays: 0 })).toEqual([
      'trust domain "Bad Domain": expected lower-case letters, digits, ".", "-", "_"',
      'gateway SAN "not a name": expected a DNS name or IP address',
      'agent name "no/slash": expected 1-63 letters, digits, "-", "_", "."',
      'agent name "ok": given twice',
      'validity 0: expected whole days 1-3650',
    ]);
    await expect(generateDevCerts({ outDir: '/x', agents: [] })).rejects.toThrow('certs: agents: expected at least one agent name');
  });
});
