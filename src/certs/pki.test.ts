import { describe, expect, it } from 'vitest';
import { X509Certificate } from 'node:crypto';
import { createDevCa, DevCaLoadError, issueClientCert, issueServerCert, loadDevCa } from './pki.js';
import { peerIdentityFromChain } from '../quic/peer-identity.js';

const DAY_MS = 86_400_000;

describe('certs: in-memory dev PKI', () => {
  it('issues P-256 server and client certificates that chain to the CA', async () => {
    const ca = await createDevCa('test CA');
    const srv = await issueServerCert(ca, ['gw.mesh.test', '10.0.0.1']);
    const cli = await issueClientCert(ca, 'spiffe://mesh.test/ns/a/sa/b');
    const caX = new X509Certificate(ca.certPem);
    const srvX = new X509Certificate(srv.certPem);
    const cliX = new X509Certificate(cli.certPem);
    expect(caX.ca).toBe(true);
    expect(srvX.verify(caX.publicKey)).toBe(true);
    expect(cliX.verify(caX.publicKey)).toBe(true);
    expect(srvX.checkIssued(caX)).toBe(true);
    expect(srvX.checkHost('gw.mesh.test')).toBe('gw.mesh.test');
    expect(srvX.checkIP('10.0.0.1')).toBe('10.0.0.1');
    expect(srvX.publicKey.asymmetricKeyDetails?.namedCurve).toBe('prime256v1');
    expect(caX.publicKey.asymmetricKeyDetails?.namedCurve).toBe('prime256v1');
    expect(cliX.subjectAltName).toBe('URI:spiffe://mesh.test/ns/a/sa/b');
    expect(srv.sans).toEqual(['DNS:gw.mesh.test', 'IP:10.0.0.1']);
    expect(cli.sans).toEqual(['URI:spiffe://mesh.test/ns/a/sa/b']);
    expect(srv.keyPem).toMatch(/^-----BEGIN PRIVATE KEY-----/);
    expect(cliX.subject).toBe('CN=b\nO=mtun development');
  });

  it('RFC 5280 §4.2.1.9/§4.2.1.3/§4.2.1.12: CA and leaf constraints, key usages and EKUs', async () => {
    const ca = await createDevCa('constraints CA', { uris: ['spiffe://td'] });
    const caX = new X509Certificate(ca.certPem);
    const srvX = new X509Certificate((await issueServerCert(ca, undefined, { uris: ['spiffe://td/gateway/g'] })).certPem);
    const cliX = new X509Certificate((await issueClientCert(ca, 'spiffe://td/agent/a')).certPem);
    expect(caX.subjectAltName).toBe('URI:spiffe://td');
    expect(caX.keyUsage).toBeUndefined(); // node reports EKU only; the CA has none
    expect(srvX.ca).toBe(false);
    expect(cliX.ca).toBe(false);
    expect(srvX.keyUsage).toEqual(['1.3.6.1.5.5.7.3.1']); // serverAuth
    expect(cliX.keyUsage).toEqual(['1.3.6.1.5.5.7.3.2']); // clientAuth
    expect(srvX.subjectAltName).toBe('DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1, URI:spiffe://td/gateway/g');
  });

  it('RFC 5280 §4.1.2.2: serials are positive 16-octet integers, distinct per certificate', async () => {
    const ca = await createDevCa();
    const serials = new Set<string>([new X509Certificate(ca.certPem).serialNumber]);
    for (let i = 0; i < 8; i++) serials.add(new X509Certificate((await issueServerCert(ca)).certPem).serialNumber);
    expect(serials.size).toBe(9);
    for (const s of serials) {
      expect(s).toMatch(/^[0-9A-F]{32}$/);
      expect(parseInt(s.slice(0, 2), 16)).toBeGreaterThanOrEqual(0x10);
      expect(parseInt(s.slice(0, 2), 16)).toBeLessThan(0x80);
    }
  });

  it('backdates notBefore for clock skew and caps leaf validity at the CA notAfter', async () => {
    const ca = await createDevCa('short CA', { validDays: 2 });
    const caX = new X509Certificate(ca.certPem);
    const leaf = new X509Certificate((await issueServerCert(ca, ['a.test'], { validDays: 30 })).certPem);
    expect(Date.parse(leaf.validFrom)).toBeLessThan(Date.now() - 60_000);
    expect(Date.parse(leaf.validTo)).toBe(Date.parse(caX.validTo));
    const short = new X509Certificate((await issueServerCert(ca, ['a.test'], { validDays: 1 })).certPem);
    expect(Date.parse(short.validTo)).toBeLessThan(Date.parse(caX.validTo));
    expect(Math.abs(Date.parse(short.validTo) - Date.now() - DAY_MS)).toBeLessThan(60_000);
  });

  it('negative validity makes an already-expired leaf; an expired CA refuses to issue', async () => {
    const ca = await createDevCa();
    const old = new X509Certificate((await issueClientCert(ca, 'spiffe://td/x', { validDays: -1 })).certPem);
    expect(Date.parse(old.validTo)).toBeLessThan(Date.now());
    const dead = await createDevCa('dead CA', { validDays: -1 });
    await expect(issueServerCert(dead)).rejects.toThrow(/^certs: the CA expired/);
    await expect(createDevCa('x', { validDays: 0 })).rejects.toThrow(/^certs: validity 0/);
    await expect(issueServerCert(ca, ['a.test'], { validDays: 1.5 })).rejects.toThrow(/^certs: validity 1.5/);
  });

  it('refuses bad server names and URIs with certs: errors', async () => {
    const ca = await createDevCa();
    await expect(issueServerCert(ca, [])).rejects.toThrow(/^certs: a server certificate needs at least one/);
    await expect(issueServerCert(ca, ['ok.test', 'not a name'])).rejects.toThrow(/^certs: server name "not a name"/);
    await expect(issueServerCert(ca, ['ok.test'], { uris: ['nope'] })).rejects.toThrow(/^certs: "nope" is not a URI/);
    await expect(issueClientCert(ca, 'not a uri')).rejects.toThrow(/not a URI/);
    // Duplicates are dropped rather than written twice.
    expect((await issueServerCert(ca, ['a.test', 'a.test', '::1'])).sans).toEqual(['DNS:a.test', 'IP:::1']);
  });

  it('reads the SPIFFE identity from a DER chain', async () => {
    const ca = await createDevCa();
    const cli = await issueClientCert(ca, 'spiffe://td/ns/x/sa/y');
    const der = new X509Certificate(cli.certPem).raw;
    expect(peerIdentityFromChain([der])).toMatchObject({ spiffeId: 'spiffe://td/ns/x/sa/y', uris: ['spiffe://td/ns/x/sa/y'] });
    expect(peerIdentityFromChain(null)).toBeNull();
    expect(() => peerIdentityFromChain([new Uint8Array([0x30, 0x03, 1, 2, 3])])).toThrow(/^quic: unparsable/);
  });

  it('reloads a CA from PEM and keeps issuing; refuses non-CA certificates and mismatched keys', async () => {
    const ca = await createDevCa();
    const again = await loadDevCa(ca.certPem, ca.keyPem);
    const cli = await issueClientCert(again, 'spiffe://td/ns/x/sa/z');
    expect(new X509Certificate(cli.certPem).verify(new X509Certificate(ca.certPem).publicKey)).toBe(true);
    expect(new X509Certificate(cli.certPem).checkIssued(new X509Certificate(ca.certPem))).toBe(true);
    await expect(loadDevCa(cli.certPem, cli.keyPem)).rejects.toThrow(/not a CA/);
    await expect(loadDevCa('garbage', ca.keyPem)).rejects.toThrow(/^certs: cannot load CA: unparsable certificate/);
    await expect(loadDevCa(ca.certPem, 'garbage')).rejects.toThrow(/^certs: cannot load CA: private key is not/);
    const other = await createDevCa();
    const err = await loadDevCa(ca.certPem, other.keyPem).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DevCaLoadError);
    expect((err as DevCaLoadError).reason).toBe('private key does not match the certificate');
  });
});
