import { X509Certificate } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { createDevCa, issueClientCert } from '../certs/pki.js';
import { parsePemBundle, peerChainDistrust, peerRejection } from './peer-trust.js';

const der = (pem: string) => new Uint8Array(new X509Certificate(pem).raw);
const ID = 'spiffe://mesh.test/ns/default/sa/agent';

describe('peer chain re-check after a client CA reload (#12 item 5, RFC 5280 §6.1)', async () => {
  const caA = await createDevCa('CA A');
  const caB = await createDevCa('CA B');
  const leafA = await issueClientCert(caA, ID);
  const expiredA = await issueClientCert(caA, ID, { validDays: -1 });
  const now = Date.now();

  it('trusts a chain issued by an anchor and refuses one from another CA', () => {
    expect(peerChainDistrust([der(leafA.certPem)], parsePemBundle(caA.certPem), now)).toBeNull();
    expect(peerChainDistrust([der(leafA.certPem)], parsePemBundle(caB.certPem), now)).toBe('not issued by the configured client CA');
  });

  it('reads every certificate of a bundle (a rotation that keeps the old CA keeps its clients)', () => {
    const bundle = parsePemBundle(`${caB.certPem}\n${caA.certPem}`);
    expect(bundle.length).toBe(2);
    expect(peerChainDistrust([der(leafA.certPem)], bundle, now)).toBeNull();
  });

  it('refuses an expired leaf, an expired anchor, garbage and an empty chain', async () => {
    expect(peerChainDistrust([der(expiredA.certPem)], parsePemBundle(caA.certPem), now)).toMatch(/outside its validity period/);
    expect(peerChainDistrust([der(leafA.certPem)], parsePemBundle(caA.certPem), caA.cert.notAfter.getTime() + 1)).toMatch(/outside its validity period/);
    expect(peerChainDistrust([Uint8Array.of(0x30, 3, 1, 2, 3)], parsePemBundle(caA.certPem), now)).toBe('unparsable certificate in the chain');
    expect(peerChainDistrust([], parsePemBundle(caA.certPem), now)).toBe('no certificate');
  });

  it('judges the authentication kind against the new mTLS setting (#12 item 4)', () => {
    const anchors = parsePemBundle(caA.certPem);
    expect(peerRejection(false, null, null, now)).toBeNull();
    expect(peerRejection(true, [der(leafA.certPem)], null, now)).toMatch(/no longer accepted/);
    expect(peerRejection(false, null, anchors, now)).toBe('a client certificate is now required');
    expect(peerRejection(true, [der(leafA.certPem)], anchors, now)).toBeNull();
  });
});

describe('peerIdentityFromChain reads SANs with node:crypto (RFC 5280 §4.2.1.6)', async () => {
  const { peerIdentityFromChain, uriSans } = await import('./peer-identity.js');
  const ca = await createDevCa('CA');

  it('returns URI SANs in order, the SPIFFE ID, the subject and notAfter', async () => {
    const c = await issueClientCert(ca, ID);
    const id = peerIdentityFromChain([der(c.certPem)])!;
    expect(id).toMatchObject({ uris: [ID], spiffeId: ID, subject: 'CN=agent, O=mtun development' });
    expect(id.notAfterMs).toBe(Date.parse(new X509Certificate(c.certPem).validTo));
  });

  it('decodes values node:crypto quotes (separators, quotes) and skips other name types', () => {
    expect(uriSans('URI:"spiffe://td/ns/a\\u002cb/sa/\\"q\\"", DNS:x.test, IP Address:0:0:0:0:0:0:0:1, URI:spiffe://td/x')).toEqual(['spiffe://td/ns/a,b/sa/"q"', 'spiffe://td/x']);
    expect(uriSans(undefined)).toEqual([]);
    expect(uriSans('DNS:localhost, IP Address:127.0.0.1')).toEqual([]);
  });
});
