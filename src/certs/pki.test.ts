import { describe, expect, it } from 'vitest';
import { X509Certificate } from 'node:crypto';
import { createDevCa, issueClientCert, issueServerCert, loadDevCa } from './dev-certs.js';
import { peerIdentityFromChain } from './peer-identity.js';

describe('dev PKI', () => {
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
    expect(srvX.checkHost('gw.mesh.test')).toBe('gw.mesh.test');
    expect(srvX.checkIP('10.0.0.1')).toBe('10.0.0.1');
    expect(srvX.publicKey.asymmetricKeyDetails?.namedCurve).toBe('prime256v1');
    expect(cliX.subjectAltName).toBe('URI:spiffe://mesh.test/ns/a/sa/b');
    expect(srv.keyPem).toMatch(/^-----BEGIN PRIVATE KEY-----/);
  });

  it('reads the SPIFFE identity from a DER chain', async () => {
    const ca = await createDevCa();
    const cli = await issueClientCert(ca, 'spiffe://td/ns/x/sa/y');
    const der = new X509Certificate(cli.certPem).raw;
    expect(peerIdentityFromChain([der])).toMatchObject({ spiffeId: 'spiffe://td/ns/x/sa/y', uris: ['spiffe://td/ns/x/sa/y'] });
    expect(peerIdentityFromChain(null)).toBeNull();
    expect(() => peerIdentityFromChain([new Uint8Array([0x30, 0x03, 1, 2, 3])])).toThrow(/^quic: unparsable/);
  });

  it('reloads a CA from PEM and keeps issuing; refuses non-CA certificates', async () => {
    const ca = await createDevCa();
    const again = await loadDevCa(ca.certPem, ca.keyPem);
    const cli = await issueClientCert(again, 'spiffe://td/ns/x/sa/z');
    expect(new X509Certificate(cli.certPem).verify(new X509Certificate(ca.certPem).publicKey)).toBe(true);
    await expect(loadDevCa(cli.certPem, cli.keyPem)).rejects.toThrow(/not a CA/);
    await expect(loadDevCa('garbage', ca.keyPem)).rejects.toThrow(/^quic: cannot load CA/);
    await expect(issueClientCert(ca, 'not a uri')).rejects.toThrow(/not a URI/);
  });
});
