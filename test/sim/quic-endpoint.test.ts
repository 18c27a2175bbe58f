/**
 * QUIC endpoint end to end over loopback UDP with quiche on both ends:
 * handshake, mTLS, Retry, datagrams, idle timeout, limits, keylog.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import dgram from 'node:dgram';
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { CRYPTO_ERROR_CERTIFICATE_REQUIRED } from '../../src/quic/engine.js';
import { Harness, getPki, sleep, streamRoundTrip, waitFor, whenClosed } from './quic-harness.js';
import { issueServerCert } from '../../src/certs/pki.js';

const enc = new TextEncoder();
let h = new Harness();

/**
 * A 1200-byte QUIC v1 Initial (RFC 9000 §17.2.2) with the given CIDs and
 * token and a random (undecryptable) payload: enough for header parsing,
 * Retry and token checks, which happen before decryption.
 */
function fakeInitial(dcid: Uint8Array, scid: Uint8Array, token: Uint8Array): Buffer {
  const varint = (n: number) => (n < 64 ? Buffer.from([n]) : Buffer.from([0x40 | (n >> 8), n & 0xff]));
  const head = Buffer.concat([
    Buffer.from([0xc3, 0, 0, 0, 1, dcid.length]), // long header, Initial, 4-byte packet number; version 1
    dcid,
    Buffer.from([scid.length]),
    scid,
    varint(token.length),
    token,
  ]);
  const rest = 1200 - head.length - 2;
  return Buffer.concat([head, Buffer.from([0x40 | (rest >> 8), rest & 0xff]), Buffer.alloc(rest, 0x5c)]);
}
afterEach(() => {
  h.cleanup();
  h = new Harness();
});

describe('QUIC handshake and streams (RFC 9000, RFC 9001)', () => {
  it('completes a handshake with ALPN h3 and SNI, verifies the server against the CA, echoes a stream', async () => {
    const { ep: server, port } = await h.server();
    const client = await h.client();
    const c = client.connect('127.0.0.1', port, 'localhost');
    await c.whenEstablished();
    expect(c.alpn()).toBe('h3');
    const back = await streamRoundTrip(c, 0, enc.encode('ping over quic'));
    expect(Buffer.from(back).toString()).toBe('ping over quic');
    await waitFor(() => h.accepted.length === 1, 2000, 'server connection');
    expect(h.accepted[0].serverName()).toBe('localhost');
    expect(h.accepted[0].peerIdentity).toBeNull();
    const st = c.stats();
    expect(st.sentPackets).toBeGreaterThan(0);
    expect(st.cwndBytes).toBeGreaterThan(0);
    expect(st.rttMs).not.toBeNull();
    // The allocation-free reading the gateway's per-second tick uses is the same figure.
    expect(c.rttMs()).toBe(st.rttMs);
    expect(server.counters.connectionsAccepted).toBe(1);
  });

  it('refuses a server whose certificate does not chain to the configured CA', async () => {
    const p = await getPki();
    const { port } = await h.server();
    const client = await h.client({ caPem: p.otherCa.certPem });
    const c = client.connect('127.0.0.1', port, 'localhost');
    await expect(c.whenEstablished()).rejects.toThrow(/closed before established/);
    // RFC 9001 §4.8: TLS alerts become CRYPTO_ERROR 0x100+alert (local side here).
    expect(c.closeInfo!.errorCode).toBeGreaterThanOrEqual(0x100);
    expect(c.closeInfo!.errorCode).toBeLessThan(0x200);
    expect(h.accepted.length).toBe(0);
  });

  it('replaces the server certificate for new connections (SIGHUP reload) and keeps the old one when the new one is bad', async () => {
    const p = await getPki();
    const { ep, port } = await h.server();
    const fromOther = await issueServerCert(p.otherCa);
    expect(() => ep.updateServerTls({ certPem: 'not a certificate', keyPem: p.server.keyPem })).toThrow(/TLS configuration rejected/);
    const still = (await h.client()).connect('127.0.0.1', port, 'localhost');
    await still.whenEstablished();
    ep.updateServerTls({ certPem: fromOther.certPem, keyPem: fromOther.keyPem });
    const trustsOld = (await h.client()).connect('127.0.0.1', port, 'localhost');
    await expect(trustsOld.whenEstablished()).rejects.toThrow(/closed before established/);
    const trustsNew = (await h.client({ caPem: p.otherCa.certPem })).connect('127.0.0.1', port, 'localhost');
    await trustsNew.whenEstablished();
    expect(still.isClosed).toBe(false);
  });

  it('refuses a server certificate for another name (SNI mismatch)', async () => {
    const { port } = await h.server();
    const client = await h.client();
    const c = client.connect('127.0.0.1', port, 'not-the-server.example');
    await expect(c.whenEstablished()).rejects.toThrow(/closed before established/);
  });

  it('resumes a TLS session on the second connection (1-RTT, no early data)', async () => {
    const { port } = await h.server();
    const client = await h.client();
    const c1 = client.connect('127.0.0.1', port, 'localhost');
    await c1.whenEstablished();
    expect(c1.isResumed()).toBe(false);
    await streamRoundTrip(c1, 0, enc.encode('one'));
    c1.close(true, 0, '');
    await whenClosed(c1);
    const c2 = client.connect('127.0.0.1', port, 'localhost');
    await c2.whenEstablished();
    expect(c2.isResumed()).toBe(true);
    expect(Buffer.from(await streamRoundTrip(c2, 0, enc.encode('two'))).toString()).toBe('two');
  });

  it('rotateTicketKey: a ticket issued before the rotation no longer resumes (#12 item 5; the shared server config must pick up the new key)', async () => {
    const { ep: server, port } = await h.server();
    const client = await h.client();
    const c1 = client.connect('127.0.0.1', port, 'localhost');
    await c1.whenEstablished();
    await streamRoundTrip(c1, 0, enc.encode('one'));
    c1.close(true, 0, '');
    await whenClosed(c1);
    server.rotateTicketKey();
    const c2 = client.connect('127.0.0.1', port, 'localhost');
    await c2.whenEstablished();
    expect(c2.isResumed()).toBe(false);
    await streamRoundTrip(c2, 0, enc.encode('two'));
    c2.close(true, 0, '');
    await whenClosed(c2);
    // The ticket c2 got under the new key resumes.
    const c3 = client.connect('127.0.0.1', port, 'localhost');
    await c3.whenEstablished();
    expect(c3.isResumed()).toBe(true);
  });

  it('enforces the peer stream limit (RFC 9000 §4.6): a stream past the limit is blocked, not opened', async () => {
    const { port } = await h.server({}, { maxStreamsBidi: 2 });
    const client = await h.client();
    const c = client.connect('127.0.0.1', port, 'localhost');
    await c.whenEstablished();
    expect(c.streamSend(0, enc.encode('a'), false)).toBe(1);
    expect(c.streamSend(4, enc.encode('b'), false)).toBe(1);
    expect(c.streamSend(8, enc.encode('c'), false)).toBe(0);
  });
});

describe('mTLS client authentication', () => {
  it('accepts a client certificate from the configured CA and exposes its SPIFFE ID', async () => {
    const p = await getPki();
    const { ep: server, port } = await h.server({ clientCaPem: p.ca.certPem });
    const client = await h.client({ certPem: p.client.certPem, keyPem: p.client.keyPem });
    const c = client.connect('127.0.0.1', port, 'localhost');
    await c.whenEstablished();
    expect(Buffer.from(await streamRoundTrip(c, 0, enc.encode('authd'))).toString()).toBe('authd');
    expect(h.accepted[0].peerIdentity?.spiffeId).toBe('spiffe://mesh.test/ns/default/sa/agent');
    expect(server.counters.mtlsRejected).toBe(0);
  });

  it('rejects a client certificate from another CA; the server never announces it', async () => {
    const p = await getPki();
    const { port } = await h.server({ clientCaPem: p.ca.certPem });
    const client = await h.client({ certPem: p.otherClient.certPem, keyPem: p.otherClient.keyPem });
    const c = client.connect('127.0.0.1', port, 'localhost');
    await whenClosed(c);
    expect(c.closeInfo!.byPeer).toBe(true);
    expect(c.closeInfo!.errorCode).toBeGreaterThanOrEqual(0x100); // RFC 9001 §4.8 crypto error
    expect(h.accepted.length).toBe(0);
  });

  it('rejects a client without a certificate with certificate_required (0x174)', async () => {
    const p = await getPki();
    const { ep: server, port } = await h.server({ clientCaPem: p.ca.certPem });
    const client = await h.client();
    const c = client.connect('127.0.0.1', port, 'localhost');
    await whenClosed(c);
    expect(c.closeInfo).toMatchObject({ byPeer: true, app: false, errorCode: CRYPTO_ERROR_CERTIFICATE_REQUIRED });
    // BoringSSL refuses it during the handshake (our post-handshake check is the backstop).
    await waitFor(() => server.counters.handshakesFailed === 1, 2000, 'handshake failure count');
    expect(h.accepted.length).toBe(0);
  });
});

describe('stream credit (RFC 9000 §4.6)', () => {
  it('gives closed streams their credit back: 250 bidirectional streams one after another over one connection (limit 100 at a time)', async () => {
    const { port } = await h.server({});
    const client = await h.client();
    const c = client.connect('127.0.0.1', port, 'localhost');
    await c.whenEstablished();
    for (let i = 0; i < 250; i++) {
      const back = await Promise.race([
        streamRoundTrip(c, i * 4, enc.encode(`stream ${i}`)),
        sleep(3000).then(() => { throw new Error(`stream ${i} (id ${i * 4}) got no answer: out of stream credit?`); }),
      ]);
      expect(Buffer.from(back).toString()).toBe(`stream ${i}`);
    }
  }, 60_000);
});

describe('Retry and address validation (RFC 9000 §8.1)', () => {
  it('Retry on: every new client gets a Retry and then connects with the token', async () => {
    const { ep: server, port } = await h.server({ retry: 'on' });
    const client = await h.client();
    const c = client.connect('127.0.0.1', port, 'localhost');
    await c.whenEstablished();
    expect(Buffer.from(await streamRoundTrip(c, 0, enc.encode('after retry'))).toString()).toBe('after retry');
    expect(server.counters.retriesSent).toBe(1);
    expect(server.counters.dropBadToken).toBe(0);
  });

  it('Retry off: no Retry is sent', async () => {
    const { ep: server, port } = await h.server({ retry: 'off' });
    const client = await h.client();
    const c = client.connect('127.0.0.1', port, 'localhost');
    await c.whenEstablished();
    expect(server.counters.retriesSent).toBe(0);
  });

  it('Retry auto: switches on once the handshake threshold is reached', async () => {
    const { ep: server, port } = await h.server({ retry: 'auto', retryAutoHandshakes: 2 });
    const client = await h.client();
    const conns = Array.from({ length: 6 }, () => client.connect('127.0.0.1', port, 'localhost'));
    await Promise.all(conns.map((c) => c.whenEstablished()));
    expect(server.counters.retriesSent).toBeGreaterThan(0);
    expect(server.counters.retriesSent).toBeLessThanOrEqual(4);
    expect(server.counters.connectionsAccepted).toBe(6);
  });

  it('binds Retry tokens to the client address: the same token from another port is dropped (RFC 9000 §8.1.3)', async () => {
    const { ep: server, port } = await h.server({ retry: 'on' });
    const a = dgram.createSocket('udp4');
    const b = dgram.createSocket('udp4');
    await new Promise<void>((r) => a.bind(0, '127.0.0.1', r));
    await new Promise<void>((r) => b.bind(0, '127.0.0.1', r));
    try {
      const odcid = Buffer.alloc(8, 0x31);
      const scid = Buffer.alloc(8, 0x32);
      const retry = new Promise<Buffer>((r) => a.once('message', (m) => r(m)));
      a.send(fakeInitial(odcid, scid, Buffer.alloc(0)), port, '127.0.0.1');
      const pkt = await retry;
      // RFC 9000 §17.2.5: Retry = header | DCID (our SCID) | SCID (new) | token | 16-byte tag.
      expect(pkt[0] & 0xf0).toBe(0xf0);
      let o = 5;
      o += 1 + pkt[o];
      const retryScid = pkt.subarray(o + 1, o + 1 + pkt[o]);
      o += 1 + pkt[o];
      const token = pkt.subarray(o, pkt.length - 16);
      expect(server.counters.retriesSent).toBe(1);
      // Replayed from another port: refused.
      b.send(fakeInitial(retryScid, scid, token), port, '127.0.0.1');
      await waitFor(() => server.counters.dropBadToken === 1, 2000, 'bad token drop');
      expect(server.counters.connectionsAccepted).toBe(0);
      // A forged token: refused.
      const forged = Buffer.from(token);
      forged[forged.length - 1] ^= 0xff;
      a.send(fakeInitial(retryScid, scid, forged), port, '127.0.0.1');
      await waitFor(() => server.counters.dropBadToken === 2, 2000, 'forged token drop');
      // From the address it was minted for: accepted (a connection is created).
      a.send(fakeInitial(retryScid, scid, token), port, '127.0.0.1');
      await waitFor(() => server.counters.connectionsAccepted === 1, 2000, 'accept with a valid token');
    } finally {
      a.close();
      b.close();
    }
  });

  it('Retry auto under a handshake flood: abandoned handshakes fill the threshold, then every newcomer must prove its address', async () => {
    const { ep: server, port } = await h.server({ retry: 'auto', retryAutoHandshakes: 10 });
    const raw = dgram.createSocket('udp4');
    await new Promise<void>((r) => raw.bind(0, '127.0.0.1', r));
    try {
      // 50 genuine client Initials (engine clients that never answer), as a flooder would send.
      const { engine } = await import('../../src/quic/engine.js');
      const cfg = engine.Config.withTls(false, null, null, null);
      cfg.setApplicationProtos(['h3']);
      const out = new Uint8Array(1500);
      for (let i = 0; i < 50; i++) {
        const q = engine.Connection.connect('localhost', Buffer.alloc(16, i), { host: '127.0.0.1', port: 1 }, { host: '127.0.0.1', port }, cfg);
        const r = q.send(out)!;
        raw.send(Buffer.from(out.subarray(0, r[0])), port, '127.0.0.1'); // copy: dgram sends after this tick
      }
      await waitFor(() => server.counters.datagramsIn >= 50, 3000, 'flood processed');
      expect(server.counters.connectionsAccepted, JSON.stringify(server.counters)).toBe(10);
      expect(server.counters.retriesSent, JSON.stringify(server.counters)).toBe(40);
      expect(server.handshakesInProgress).toBe(10);
      // A real client still gets in, through a Retry.
      const client = await h.client();
      const c = client.connect('127.0.0.1', port, 'localhost');
      await c.whenEstablished();
      expect(server.counters.retriesSent).toBe(41);
      expect(Buffer.from(await streamRoundTrip(c, 0, enc.encode('validated'))).toString()).toBe('validated');
    } finally {
      raw.close();
    }
  });

  it('Retry auto under a flood of undecryptable Initials: the rate of new handshakes turns Retry on, though none stays in progress', async () => {
    const { ep: server, port } = await h.server({ retry: 'auto', retryAutoHandshakes: 10, retryAutoNewPerSecond: 20 });
    const raw = dgram.createSocket('udp4');
    await new Promise<void>((r) => raw.bind(0, '127.0.0.1', r));
    try {
      // Junk payloads: each accepted one fails at its first packet, so handshakes in progress stay near 0.
      for (let burst = 0; burst < 4; burst++) {
        for (let i = 0; i < 50; i++) raw.send(fakeInitial(randomBytes(8), randomBytes(8), Buffer.alloc(0)), port, '127.0.0.1');
        await sleep(5);
      }
      await waitFor(() => server.counters.datagramsIn >= 200, 3000, 'flood processed');
      const c = server.counters;
      expect(c.connectionsAccepted, JSON.stringify(c)).toBeLessThanOrEqual(21);
      expect(c.retriesSent, JSON.stringify(c)).toBeGreaterThanOrEqual(179);
      expect(server.handshakesInProgress).toBeLessThan(10);
    } finally {
      raw.close();
    }
  });

  it('caps Retry and Version Negotiation at maxRetriesPerSecond under a spoofed-Initial flood, counted; a real client still gets in (RFC 9000 §8.1, §21.1)', async () => {
    const rate = 100;
    const { ep: server, port } = await h.server({ retry: 'on', maxRetriesPerSecond: rate });
    const raw = dgram.createSocket('udp4');
    await new Promise<void>((r) => raw.bind(0, '127.0.0.1', r));
    try {
      const t0 = performance.now();
      // 600 tokenless Initials and 60 of an unknown version, in bursts the socket buffer holds.
      for (let burst = 0; burst < 12; burst++) {
        for (let i = 0; i < 55; i++) {
          const pkt = fakeInitial(randomBytes(8), randomBytes(8), Buffer.alloc(0));
          if (i === 54) pkt.writeUInt32BE(0x1a2a3a4a, 1);
          raw.send(pkt, port, '127.0.0.1');
        }
        await sleep(5);
      }
      await waitFor(() => server.counters.datagramsIn >= 600, 3000, 'flood processed');
      const elapsed = (performance.now() - t0) / 1000;
      const c = server.counters;
      const answered = c.retriesSent + c.versionNegotiationsSent;
      // The bucket's burst plus what refilled while the flood lasted; everything else dropped and counted.
      expect(answered, JSON.stringify(c)).toBeLessThanOrEqual(rate + Math.ceil(rate * elapsed) + 1);
      expect(answered + c.dropStatelessRateLimit).toBe(c.datagramsIn);
      expect(c.dropStatelessRateLimit).toBeGreaterThan(600 - 2 * rate);
      expect(c.versionNegotiationsSent).toBeGreaterThan(0);
      // The bucket refills: a real client gets its Retry and connects.
      await sleep(50);
      const client = await h.client();
      const conn = client.connect('127.0.0.1', port, 'localhost');
      await conn.whenEstablished();
      expect(Buffer.from(await streamRoundTrip(conn, 0, enc.encode('after the flood'))).toString()).toBe('after the flood');
    } finally {
      raw.close();
    }
  });

  it('sends at most 3x the bytes received to an unvalidated address (anti-amplification)', async () => {
    // A big server certificate makes the first flight larger than 3 x 1200 bytes.
    const p = await getPki();
    const names = ['localhost', '127.0.0.1', ...Array.from({ length: 120 }, (_, i) => `name-${i}.padding.mtun.test`)];
    const big = await issueServerCert(p.ca, names);
    expect(big.certPem.length).toBeGreaterThan(4000);
    const { port } = await h.server({ certPem: big.certPem, keyPem: big.keyPem });
    // Capture a genuine client Initial from our client and replay it from a silent socket.
    const capture = await h.client();
    const probe = dgram.createSocket('udp4');
    await new Promise<void>((r) => probe.bind(0, '127.0.0.1', r));
    let first: Buffer | null = null;
    const relay = dgram.createSocket('udp4');
    await new Promise<void>((r) => relay.bind(0, '127.0.0.1', r));
    relay.on('message', (m) => {
      first ??= Buffer.from(m);
    });
    capture.connect('127.0.0.1', (relay.address() as { port: number }).port, 'localhost');
    await waitFor(() => first !== null, 2000, 'client Initial');
    let received = 0;
    let datagrams = 0;
    probe.on('message', (m) => {
      received += m.length;
      datagrams++;
    });
    probe.send(first!, port, '127.0.0.1');
    await sleep(1500); // covers PTO retransmissions of the server's first flight
    probe.close();
    relay.close();
    expect(first!.length).toBeGreaterThanOrEqual(1200);
    expect(datagrams).toBeGreaterThan(0);
    expect(received).toBeLessThanOrEqual(3 * first!.length);
  });
});

describe('DATAGRAM frames (RFC 9221)', () => {
  it('exchanges datagrams both ways with intact payloads', async () => {
    const { port } = await h.server();
    const client = await h.client();
    const c = client.connect('127.0.0.1', port, 'localhost');
    await c.whenEstablished();
    const max = c.dgramMaxWritableLen()!;
    expect(max).toBeGreaterThan(1000);
    const got = new Set<number>();
    const buf = new Uint8Array(2000);
    c.onEvent = (conn, ev) => {
      if (ev !== 'readable') return;
      let n: number | null;
      while ((n = conn.dgramRecv(buf)) !== null) {
        const id = buf[0] | (buf[1] << 8);
        // Payload pattern check: byte k = (id + k) & 0xff beyond the id.
        let ok = n === 100 + (id % 900);
        for (let k = 2; ok && k < n; k++) ok = buf[k] === ((id + k) & 0xff);
        if (ok) got.add(id);
      }
    };
    const count = 200;
    const payload = new Uint8Array(1100);
    for (let id = 0; id < count; id++) {
      const n = 100 + (id % 900);
      payload[0] = id & 0xff;
      payload[1] = id >> 8;
      for (let k = 2; k < n; k++) payload[k] = (id + k) & 0xff;
      // Offset/length into a larger buffer: only [off, off+n) is sent.
      const big = new Uint8Array(n + 10);
      big.set(payload.subarray(0, n), 5);
      expect(c.dgramSend(big, 5, n)).toBe(true);
      if (id % 20 === 19) {
        c.flush();
        await sleep(2);
      }
    }
    c.flush();
    // Loopback may still drop under load; RFC 9221 datagrams are unreliable.
    await waitFor(() => got.size >= count * 0.95, 5000, 'echoed datagrams');
    expect(c.stats().dgramSent).toBe(count);
    expect(c.dgramSend(new Uint8Array(max + 1), 0, max + 1)).toBe(false);
    expect(c.stats().dgramDropTooBig).toBe(1);
  });
});

describe('timeouts and limits', () => {
  it('closes both ends after the idle timeout (RFC 9000 §10.1)', async () => {
    const { ep: server, port } = await h.server({}, { idleTimeoutMs: 300 });
    const client = await h.client({}, { idleTimeoutMs: 300 });
    const c = client.connect('127.0.0.1', port, 'localhost');
    await c.whenEstablished();
    await waitFor(() => h.accepted.length === 1, 2000, 'server side');
    const s = h.accepted[0];
    const t0 = Date.now();
    await Promise.all([whenClosed(c), whenClosed(s)]);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(250);
    expect(c.closeInfo!.idleTimeout).toBe(true);
    expect(s.closeInfo!.idleTimeout).toBe(true);
    expect(server.connectionCount).toBe(0);
  });

  it('keeps a quiet connection alive past the idle timeout with keep-alive PINGs (RFC 9000 §10.1.2)', async () => {
    const { port } = await h.server({}, { idleTimeoutMs: 400 });
    const client = await h.client({}, { idleTimeoutMs: 400, keepAliveMs: 100 });
    const c = client.connect('127.0.0.1', port, 'localhost');
    await c.whenEstablished();
    const sent0 = c.stats().sentPackets;
    await sleep(1000);
    expect(c.isClosed).toBe(false);
    expect(c.stats().sentPackets - sent0).toBeGreaterThanOrEqual(5);
    expect(client.counters.keepAlivesSent).toBeGreaterThanOrEqual(5); // mtun_quic_keepalives_total{event="sent"}
    expect(Buffer.from(await streamRoundTrip(c, 0, enc.encode('alive'))).toString()).toBe('alive');
  });

  it('serves 50 concurrent connections from 5 client sockets', async () => {
    const { ep: server, port } = await h.server({ retry: 'auto', retryAutoHandshakes: 16 });
    const clients = await Promise.all(Array.from({ length: 5 }, () => h.client()));
    const timers = () => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
    const timersBefore = timers();
    const conns = Array.from({ length: 50 }, (_, i) => clients[i % 5].connect('127.0.0.1', port, 'localhost'));
    await Promise.all(conns.map((c) => c.whenEstablished()));
    // One timer per endpoint (6 endpoints), not one per connection.
    expect(timers() - timersBefore).toBeLessThanOrEqual(6);
    const replies = await Promise.all(conns.map((c, i) => streamRoundTrip(c, 0, enc.encode(`conn ${i}`))));
    replies.forEach((r, i) => expect(Buffer.from(r).toString()).toBe(`conn ${i}`));
    expect(server.connectionCount).toBe(50);
    expect(server.counters.connectionsAccepted).toBe(50);
  });

  it('limits connections per peer IP (RFC 9000 §21 resource limits) and refuses new ones after stopAccepting', async () => {
    const { ep: server, port } = await h.server({}, { maxConnectionsPerPeerIp: 2, idleTimeoutMs: 30_000 });
    const client = await h.client();
    const a = client.connect('127.0.0.1', port, 'localhost');
    const b = client.connect('127.0.0.1', port, 'localhost');
    await Promise.all([a.whenEstablished(), b.whenEstablished()]);
    const late = await h.client({}, { idleTimeoutMs: 300 });
    await expect(late.connect('127.0.0.1', port, 'localhost').whenEstablished()).rejects.toThrow(/idle timeout/);
    expect(server.counters.dropPeerIpLimit).toBeGreaterThan(0);
    // Closing one frees a slot for this IP; stopAccepting then refuses it anyway.
    a.close(true, 0, '');
    await waitFor(() => server.connectionCount === 1, 3000, 'server reaps the closed connection');
    server.stopAccepting();
    await expect(late.connect('127.0.0.1', port, 'localhost').whenEstablished()).rejects.toThrow(/idle timeout/);
    expect(server.counters.dropNotAccepting).toBeGreaterThan(0);
    // The existing connection keeps working.
    expect(Buffer.from(await streamRoundTrip(b, 0, enc.encode('still on'))).toString()).toBe('still on');
  });

  it('drops new connections past maxConnections (counted)', async () => {
    const { ep: server, port } = await h.server({}, { maxConnections: 2, idleTimeoutMs: 5000 });
    const client = await h.client();
    const a = client.connect('127.0.0.1', port, 'localhost');
    const b = client.connect('127.0.0.1', port, 'localhost');
    await Promise.all([a.whenEstablished(), b.whenEstablished()]);
    // A third client that gives up before the first two go idle.
    const late = await h.client({}, { idleTimeoutMs: 400 });
    const c = late.connect('127.0.0.1', port, 'localhost');
    await expect(c.whenEstablished()).rejects.toThrow(/idle timeout/);
    expect(server.counters.dropConnectionLimit).toBeGreaterThan(0);
  });
});

describe('malformed and hostile input', () => {
  it('drops client Initials in datagrams under 1200 bytes (RFC 9000 §14.1) and keeps serving others', async () => {
    const { ep: server, port } = await h.server();
    const raw = dgram.createSocket('udp4');
    await new Promise<void>((r) => raw.bind(0, '127.0.0.1', r));
    // Long header, Initial type, version 1, DCID len 8, SCID len 8, token len 0 — padded to 1100 bytes.
    const pkt = Buffer.alloc(1100, 0);
    pkt[0] = 0xc0;
    pkt.writeUInt32BE(1, 1);
    pkt[5] = 8;
    pkt.fill(0xaa, 6, 14);
    pkt[14] = 8;
    for (let i = 0; i < 50; i++) raw.send(pkt, port, '127.0.0.1');
    const client = await h.client();
    const c = client.connect('127.0.0.1', port, 'localhost');
    for (let i = 0; i < 50; i++) raw.send(pkt.subarray(0, 200 + i), port, '127.0.0.1');
    await c.whenEstablished();
    expect(Buffer.from(await streamRoundTrip(c, 0, enc.encode('still here'))).toString()).toBe('still here');
    await waitFor(() => server.counters.dropSmallInitial === 100, 2000, 'drop counter');
    expect(server.counters.connectionsAccepted).toBe(1);
    raw.close();
  });

  it('answers an unknown version with Version Negotiation listing QUIC v1 (RFC 9000 §6)', async () => {
    const { ep: server, port } = await h.server();
    const raw = dgram.createSocket('udp4');
    await new Promise<void>((r) => raw.bind(0, '127.0.0.1', r));
    const reply = new Promise<Buffer>((r) => raw.once('message', (m) => r(m)));
    const pkt = Buffer.alloc(1200, 0);
    pkt[0] = 0xc0;
    pkt.writeUInt32BE(0x1a2a3a4a, 1); // reserved version (RFC 9000 §15)
    pkt[5] = 8;
    pkt.fill(0x11, 6, 14);
    pkt[14] = 8;
    pkt.fill(0x22, 15, 23);
    raw.send(pkt, port, '127.0.0.1');
    const vn = await reply;
    raw.close();
    expect(vn[0] & 0x80).toBe(0x80);
    expect(vn.readUInt32BE(1)).toBe(0); // RFC 9000 §17.2.1: version 0
    // DCID of the reply is the client's SCID.
    expect(vn[5]).toBe(8);
    expect(vn.subarray(6, 14).equals(Buffer.alloc(8, 0x22))).toBe(true);
    const versions: number[] = [];
    const off = 6 + 8 + 1 + vn[14];
    for (let o = off; o + 4 <= vn.length; o += 4) versions.push(vn.readUInt32BE(o));
    expect(versions).toContain(1);
    expect(server.counters.versionNegotiationsSent).toBe(1);
  });

  it('drops garbage and unknown short-header packets with counted reasons', async () => {
    const { ep: server, port } = await h.server();
    const raw = dgram.createSocket('udp4');
    await new Promise<void>((r) => raw.bind(0, '127.0.0.1', r));
    raw.send(Buffer.alloc(0), port, '127.0.0.1');
    raw.send(Buffer.from([0x40, 1, 2, 3]), port, '127.0.0.1');
    raw.send(Buffer.alloc(60, 0x41), port, '127.0.0.1');
    await waitFor(() => server.counters.datagramsIn === 3, 2000, 'datagrams');
    raw.close();
    expect(server.counters.dropMalformed).toBe(2);
    expect(server.counters.dropUnknownCid).toBe(1);
    expect(server.counters.statelessResetsSent).toBe(1);
  });

  it('paces stateless resets with a token bucket: a burst of unknown short-header packets gets at most a tenth of the per-second rate at once (RFC 9000 §10.3 rate limit; a fixed window sent its whole second at once)', async () => {
    const rate = 100;
    const { ep: server, port } = await h.server({ maxStatelessResetsPerSecond: rate });
    const raw = dgram.createSocket('udp4');
    await new Promise<void>((r) => raw.bind(0, '127.0.0.1', r));
    try {
      const t0 = performance.now();
      for (let burst = 0; burst < 6; burst++) {
        for (let i = 0; i < 50; i++) raw.send(Buffer.alloc(60, 0x41), port, '127.0.0.1');
        await sleep(2);
      }
      await waitFor(() => server.counters.datagramsIn >= 300, 3000, 'burst processed');
      const elapsed = (performance.now() - t0) / 1000;
      const c = server.counters;
      expect(c.statelessResetsSent + c.statelessResetsSuppressed, JSON.stringify(c)).toBe(300);
      // Burst of rate/10, plus what refilled while the burst lasted.
      expect(c.statelessResetsSent, `elapsed ${elapsed} s`).toBeLessThanOrEqual(rate / 10 + Math.ceil(rate * elapsed) + 1);
      expect(c.statelessResetsSent).toBeGreaterThanOrEqual(rate / 10);
    } finally {
      raw.close();
    }
  });

  it('maxStatelessResetsPerSecond 0 sends no stateless reset at all (counted as suppressed)', async () => {
    const { ep: server, port } = await h.server({ maxStatelessResetsPerSecond: 0 });
    const raw = dgram.createSocket('udp4');
    await new Promise<void>((r) => raw.bind(0, '127.0.0.1', r));
    try {
      for (let i = 0; i < 5; i++) raw.send(Buffer.alloc(60, 0x41), port, '127.0.0.1');
      await waitFor(() => server.counters.datagramsIn >= 5, 3000, 'datagrams');
      expect(server.counters.statelessResetsSent).toBe(0);
      expect(server.counters.statelessResetsSuppressed).toBe(5);
    } finally {
      raw.close();
    }
  });

  it('sends a stateless reset after a restart with the same key; the client closes at once (RFC 9000 §10.3)', async () => {
    const key = new Uint8Array(32).fill(7);
    const { port } = await h.server({ statelessResetKey: key });
    const client = await h.client();
    const c = client.connect('127.0.0.1', port, 'localhost');
    await c.whenEstablished();
    await streamRoundTrip(c, 0, enc.encode('before crash'));
    // "Restart": a fresh endpoint with the same reset key takes over the socket, knowing no connections.
    const { QuicEndpoint } = await import('../../src/quic/endpoint.js');
    const p = await getPki();
    const restarted = new QuicEndpoint({
      socket: h.sockets[0],
      keylogPath: null,
      server: { certPem: p.server.certPem, keyPem: p.server.keyPem, statelessResetKey: key, onConnection: () => {} },
    });
    h.endpoints.push(restarted);
    const t0 = Date.now();
    c.streamSend(4, enc.encode('after crash'), true);
    c.flush();
    await whenClosed(c);
    expect(Date.now() - t0).toBeLessThan(1000); // not the 30 s idle timeout
    expect(c.closeInfo!.idleTimeout).toBe(false);
    expect(c.closeInfo!.statelessReset).toBe(true);
    expect(restarted.counters.statelessResetsSent).toBeGreaterThan(0);
  });

  it('ignores a stateless reset from an endpoint with another key: the token does not match (RFC 9000 §10.3.1)', async () => {
    const { port } = await h.server({ statelessResetKey: new Uint8Array(32).fill(7) });
    const client = await h.client();
    const c = client.connect('127.0.0.1', port, 'localhost');
    await c.whenEstablished();
    const { QuicEndpoint } = await import('../../src/quic/endpoint.js');
    const p = await getPki();
    const other = new QuicEndpoint({
      socket: h.sockets[0],
      keylogPath: null,
      server: { certPem: p.server.certPem, keyPem: p.server.keyPem, statelessResetKey: new Uint8Array(32).fill(8), onConnection: () => {} },
    });
    h.endpoints.push(other);
    c.streamSend(4, enc.encode('after crash'), true);
    c.flush();
    await waitFor(() => other.counters.statelessResetsSent > 0, 2000, 'a reset sent');
    await new Promise((r) => setTimeout(r, 300));
    expect(client.counters.resetCandidates).toBeGreaterThan(0);
    expect(c.isClosed).toBe(false);
  });
});

describe('key log', () => {
  it('writes NSS key log lines for both ends when a keylog path is set', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'mtun-keylog-'));
    const path = join(dir, 'keys.log');
    try {
      const { port } = await h.server({}, { keylogPath: path });
      const client = await h.client({}, { keylogPath: path });
      const c = client.connect('127.0.0.1', port, 'localhost');
      await c.whenEstablished();
      await streamRoundTrip(c, 0, enc.encode('k'));
      const text = readFileSync(path, 'utf8');
      expect(text).toMatch(/^CLIENT_HANDSHAKE_TRAFFIC_SECRET [0-9a-f]{64} [0-9a-f]+$/m);
      expect(text).toMatch(/^SERVER_TRAFFIC_SECRET_0 /m);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
