/**
 * Client authentication across a TLS reload (#12 items 4 and 5), QUIC
 * endpoints over loopback UDP: `requireClientCert` switched by a reload
 * applies to new handshakes; a client CA rotation closes the connections it
 * no longer vouches for (RFC 9001 §4.8 crypto errors); a connection ends at
 * its certificate's notAfter; a rotated ticket key resumes nothing.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { CRYPTO_ERROR_CERTIFICATE_EXPIRED, CRYPTO_ERROR_CERTIFICATE_REQUIRED, CRYPTO_ERROR_CERTIFICATE_REVOKED } from '../../src/quic/engine.js';
import { Harness, getPki, streamRoundTrip, waitFor, whenClosed } from './quic-harness.js';

const enc = new TextEncoder();
let h = new Harness();
afterEach(() => {
  h.cleanup();
  h = new Harness();
});

/** A server requiring client certificates from the test CA, and one authenticated connection to it, announced. */
async function mtlsConnection() {
  const p = await getPki();
  const { ep: server, port } = await h.server({ clientCaPem: p.ca.certPem });
  const c = (await h.client({ certPem: p.client.certPem, keyPem: p.client.keyPem })).connect('127.0.0.1', port, 'localhost');
  await c.whenEstablished();
  await waitFor(() => h.accepted.length === 1, 2000, 'the connection announced');
  return { p, server, port, c };
}

describe('reload switches requireClientCert for new handshakes (#12 item 4)', () => {
  it('off → on: a client without a certificate is refused with certificate_required (0x174)', async () => {
    const p = await getPki();
    const { ep: server, port } = await h.server();
    server.updateServerTls({ certPem: p.server.certPem, keyPem: p.server.keyPem, clientCaPem: p.ca.certPem });
    const anon = (await h.client()).connect('127.0.0.1', port, 'localhost');
    await whenClosed(anon);
    expect(anon.closeInfo).toMatchObject({ byPeer: true, errorCode: CRYPTO_ERROR_CERTIFICATE_REQUIRED });
    expect(h.accepted.length).toBe(0);
    const authd = (await h.client({ certPem: p.client.certPem, keyPem: p.client.keyPem })).connect('127.0.0.1', port, 'localhost');
    await authd.whenEstablished();
    await waitFor(() => h.accepted.length === 1, 2000, 'the certificate client announced');
    expect(h.accepted[0]!.peerIdentity?.spiffeId).toBe('spiffe://mesh.test/ns/default/sa/agent');
  });

  it('on → off: a client without a certificate is accepted (token mode), not refused as before', async () => {
    const p = await getPki();
    const { port, ep: server } = await h.server({ clientCaPem: p.ca.certPem });
    server.updateServerTls({ certPem: p.server.certPem, keyPem: p.server.keyPem });
    const c = (await h.client()).connect('127.0.0.1', port, 'localhost');
    await c.whenEstablished();
    expect(Buffer.from(await streamRoundTrip(c, 0, enc.encode('token mode'))).toString()).toBe('token mode');
    expect(h.accepted[0]!.peerIdentity).toBeNull();
    expect(server.counters.mtlsRejected).toBe(0);
  });

  it('on → off closes connections that authenticated by certificate; off → on closes those without one', async () => {
    const { p, server, port, c } = await mtlsConnection();
    const off = server.updateServerTls({ certPem: p.server.certPem, keyPem: p.server.keyPem });
    expect(off.map((x) => x.reason)).toEqual(['client certificates are no longer accepted (mTLS turned off)']);
    await whenClosed(c);
    expect(c.closeInfo).toMatchObject({ byPeer: true, errorCode: CRYPTO_ERROR_CERTIFICATE_REVOKED });

    const anon = (await h.client()).connect('127.0.0.1', port, 'localhost');
    await anon.whenEstablished();
    await waitFor(() => h.accepted.length === 2, 2000, 'announced');
    const on = server.updateServerTls({ certPem: p.server.certPem, keyPem: p.server.keyPem, clientCaPem: p.ca.certPem });
    expect(on.map((x) => x.reason)).toEqual(['a client certificate is now required']);
    await whenClosed(anon);
    expect(anon.closeInfo).toMatchObject({ byPeer: true, errorCode: CRYPTO_ERROR_CERTIFICATE_REQUIRED });
    expect(server.counters.peersRevoked).toBe(2);
  });
});

describe('CA rotation and certificate expiry end connections (#12 item 5)', () => {
  it('a new client CA closes connections whose chain it does not vouch for (certificate_revoked), keeps the others', async () => {
    const { p, server, c } = await mtlsConnection();
    // A bundle that still holds the old CA keeps its clients.
    const kept = server.updateServerTls({ certPem: p.server.certPem, keyPem: p.server.keyPem, clientCaPem: `${p.otherCa.certPem}\n${p.ca.certPem}` });
    expect(kept).toEqual([]);
    expect(Buffer.from(await streamRoundTrip(c, 0, enc.encode('still here'))).toString()).toBe('still here');
    // Dropping the old CA revokes them.
    const revoked = server.updateServerTls({ certPem: p.server.certPem, keyPem: p.server.keyPem, clientCaPem: p.otherCa.certPem });
    expect(revoked.map((x) => x.reason)).toEqual(['not issued by the configured client CA']);
    await whenClosed(c);
    expect(c.closeInfo).toMatchObject({ byPeer: true, app: false, errorCode: CRYPTO_ERROR_CERTIFICATE_REVOKED });
    expect(server.counters.peersRevoked).toBe(1);
  });

  it('closes a connection at its client certificate notAfter (certificate_expired), not before', async () => {
    const { server, c } = await mtlsConnection();
    const notAfter = h.accepted[0]!.peerIdentity!.notAfterMs;
    expect(notAfter).toBeGreaterThan(Date.now());
    expect(server.closeExpiredPeers(notAfter - 1)).toEqual([]);
    const expired = server.closeExpiredPeers(notAfter);
    expect(expired.length).toBe(1);
    // The next tick finds it closing (draining): not closed or counted again.
    expect(server.closeExpiredPeers(notAfter + 1000)).toEqual([]);
    expect(expired[0]!.reason).toMatch(/^client certificate expired at /);
    await whenClosed(c);
    expect(c.closeInfo).toMatchObject({ byPeer: true, app: false, errorCode: CRYPTO_ERROR_CERTIFICATE_EXPIRED });
    expect(server.counters.peersExpired).toBe(1);
  });

  it('a rotated ticket key resumes no earlier session (full handshake)', async () => {
    const { ep: server, port } = await h.server();
    const client = await h.client();
    for (const [rotate, resumed] of [[false, false], [false, true], [true, false]] as const) {
      if (rotate) server.rotateTicketKey();
      const c = client.connect('127.0.0.1', port, 'localhost');
      await c.whenEstablished();
      expect(c.isResumed()).toBe(resumed);
      await streamRoundTrip(c, 0, enc.encode('x'));
      c.close(true, 0, '');
      await whenClosed(c);
    }
  });
});
