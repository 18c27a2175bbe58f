/**
 * Per-connection native memory in the ngtcp2 engine (issue #17), checked on
 * real ngtcp2 pairs in memory:
 * - a server frees its GnuTLS session once the handshake is done
 *   (qe_tls_retire in src/native/quic-tls.c) and still answers what the
 *   endpoint asks later: ALPN, the client's SNI, the client's certificate
 *   chain (mTLS; the endpoint re-judges it when the CA is reloaded) and
 *   whether the session was resumed (RFC 8446 §2.2 tickets);
 * - the page pool ngtcp2 allocates from (src/native/quic-pages.c) gives its
 *   blocks back: waves of connections opened and freed leave the native heap
 *   where it was, rather than growing it wave after wave;
 * - DATAGRAM rings (src/native/quic-stream.c) are given back at an idle
 *   connection's keep-alive, however large a burst made them, and not before
 *   (a busy connection keeps its ring rather than regrowing it per burst).
 */
import { describe, expect, it } from 'vitest';
import { randomBytes, X509Certificate } from 'node:crypto';
import { engine, type EngineConfig, type EngineConnection } from './engine.js';
import { createDevCa, issueClientCert, issueServerCert } from '../certs/pki.js';
import { loadNative } from '../native/addon.js';
import { PAIR_CLIENT, PAIR_SERVER, pumpEngines } from './testing/engine-pair.js';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

// A full GC before each reading: garbage of earlier tests (the worker process may have run other files) freed by a
// collection in the middle of a measurement made malloc's bytes in use shrink while a ring grew (a CI flake of 12-07).
setFlagsFromString('--expose-gc');
const collect = runInNewContext('gc') as () => void;
const stats = new Float64Array(4);
/** glibc's bytes in use plus the engine's page pool (ngtcp2's blocks), after a full GC. */
function inUse(): number {
  collect();
  loadNative().mallocStats(stats);
  return stats[0]! + stats[3]!;
}

const enc = (s: string): Uint8Array => new TextEncoder().encode(s);
const CLIENT = PAIR_CLIENT;
const SERVER = PAIR_SERVER;

function setup(c: EngineConfig): void {
  c.setApplicationProtos(['h3']);
  c.setMaxIdleTimeout(30_000);
  c.setInitialMaxData(1 << 20);
  c.setInitialMaxStreamsBidi(10);
  c.setInitialMaxStreamsUni(10);
  c.setInitialMaxStreamDataBidiLocal(1 << 16);
  c.setInitialMaxStreamDataBidiRemote(1 << 16);
  c.setInitialMaxStreamDataUni(1 << 16);
  c.enableDgram(true, 64, 64);
}

/** Runs the handshake (and whatever follows) until neither side has a packet to send; both must be established. */
function pump(client: EngineConnection, sc: EngineConfig, server: EngineConnection | null): EngineConnection {
  const s = pumpEngines(client, sc, server);
  expect(client.isEstablished() && s?.isEstablished()).toBe(true);
  return s!;
}

describe('ngtcp2 engine: per-connection memory', () => {
  it('a server without its TLS session still reports ALPN, SNI, the client chain and resumption', async () => {
    const ca = await createDevCa();
    const srv = await issueServerCert(ca);
    const cli = await issueClientCert(ca, 'spiffe://mtun.test/agent/a');
    const sc = engine.Config.withTls(true, enc(ca.certPem), enc(srv.keyPem), enc(srv.certPem));
    setup(sc);
    sc.setTicketKey(randomBytes(64));
    const cc = engine.Config.withTls(true, enc(ca.certPem), enc(cli.keyPem), enc(cli.certPem));
    setup(cc);

    const client = engine.Connection.connect('localhost', randomBytes(16), CLIENT, SERVER, cc);
    const server = pump(client, sc, null);
    expect(new TextDecoder().decode(server.applicationProto())).toBe('h3');
    expect(server.serverName()).toBe('localhost');
    expect(server.isResumed()).toBe(false);
    const chain = server.peerCertChain();
    expect(chain).not.toBeNull();
    expect(new X509Certificate(chain![0]!).fingerprint256).toBe(new X509Certificate(cli.certPem).fingerprint256);
    // Asked again (the endpoint does on a CA reload): the same answer.
    expect(server.peerCertChain()!.map((d) => Buffer.from(d).toString('hex'))).toEqual(chain!.map((d) => Buffer.from(d).toString('hex')));
    // The connection still works after the handshake: a stream and a DATAGRAM each way.
    expect(client.streamSend(0, enc('ping'), true)).toBe(4);
    expect(client.dgramSend(enc('d1'))).not.toBeNull();
    pump(client, sc, server);
    const out = new Uint8Array(64);
    expect(server.streamRecv(0, out)).toEqual([4, true]);
    expect(server.dgramRecv(out)).toBe(2);
    expect(server.streamSend(0, enc('pong'), true)).toBe(4);
    expect(server.dgramSend(enc('d2'))).not.toBeNull();
    pump(client, sc, server);
    expect(client.streamRecv(0, out)).toEqual([4, true]);
    expect(client.dgramRecv(out)).toBe(2);

    // The ticket the retired server sent resumes a second connection.
    const ticket = client.session();
    expect(ticket).not.toBeNull();
    const again = engine.Connection.connect('localhost', randomBytes(16), { ...CLIENT, port: 40001 }, SERVER, cc);
    again.setSession(ticket!);
    const server2 = pump(again, sc, null);
    expect(again.isResumed()).toBe(true);
    expect(server2.isResumed()).toBe(true);
    expect(server2.serverName()).toBe('localhost');
    for (const c of [client, server, again, server2]) c.free();
  });

  it('gives connection memory back: waves of connections opened and freed do not grow the native heap', async () => {
    const ca = await createDevCa();
    const srv = await issueServerCert(ca);
    const sc = engine.Config.withTls(false, null, enc(srv.keyPem), enc(srv.certPem));
    setup(sc);
    const cc = engine.Config.withTls(true, enc(ca.certPem), null, null);
    setup(cc);
    const wave = (): number => {
      const conns: EngineConnection[] = [];
      for (let i = 0; i < 40; i++) {
        const client = engine.Connection.connect('localhost', randomBytes(16), { ...CLIENT, port: 41000 + i }, SERVER, cc);
        const server = pump(client, sc, null);
        client.streamSend(0, new Uint8Array(3000), false);
        pump(client, sc, server);
        conns.push(client, server);
      }
      const peak = inUse();
      for (const c of conns) c.free();
      return peak;
    };
    wave(); // warm up: TLS caches, V8 code, the pool's first blocks
    const before = inUse();
    const peak = wave();
    const after1 = inUse();
    wave();
    wave();
    const after3 = inUse();
    // 80 connections held tens of kB each...
    expect(peak - before).toBeGreaterThan(80 * 20_000);
    // ...and closing them gave (nearly) all of it back, wave after wave.
    expect(after1 - before).toBeLessThan((peak - before) / 4);
    expect(after3 - after1).toBeLessThan((peak - before) / 4);
  });

  it('keeps a DATAGRAM ring a burst grew while the connection is busy and frees it, as an idle connection\'s rings, at its keep-alive', async () => {
    const ca = await createDevCa();
    const srv = await issueServerCert(ca);
    const sc = engine.Config.withTls(false, null, enc(srv.keyPem), enc(srv.certPem));
    setup(sc);
    sc.enableDgram(true, 1024, 1024);
    const cc = engine.Config.withTls(true, enc(ca.certPem), null, null);
    setup(cc);
    cc.enableDgram(true, 1024, 1024);
    const client = engine.Connection.connect('localhost', randomBytes(16), CLIENT, SERVER, cc);
    const server = pump(client, sc, null);
    // A burst: 600 datagrams queued at once grow the send ring to 1,024 slots of a packet each.
    const before = inUse();
    const payload = new Uint8Array(1000);
    for (let i = 0; i < 600; i++) expect(client.dgramSend(payload)).not.toBeNull();
    const grown = inUse() - before;
    expect(grown).toBeGreaterThan(600 * 1000);
    // Sent (and received, and read) until both sides are empty.
    const out = new Uint8Array(1500);
    let got = 0;
    for (let round = 0; round < 200 && (client.dgramSendQueueLen() > 0 || got < 600); round++) {
      pump(client, sc, server);
      while (server.dgramRecv(out) !== null) got++;
    }
    expect(client.dgramSendQueueLen()).toBe(0);
    expect(got).toBeGreaterThan(500); // DATAGRAMs may be lost to congestion control, never kept
    // Empty but kept: freeing a ring whenever it empties regrew it (a copy per doubling) on every burst.
    expect(inUse() - before).toBeGreaterThan(grown / 2);
    // The keep-alive of an idle connection gives the grown rings back (the client's send ring, the server's
    // receive ring). Read around the two calls alone: what else the burst left (ngtcp2's packet records,
    // more of them on a busy box) stays with the connection and is not the rings'.
    const beforeTrim = inUse();
    client.sendAckEliciting(); // the agent: its keep-alive
    server.trimIdle(); // the gateway, which sends none: its tick saw nothing arrive
    expect(beforeTrim - inUse()).toBeGreaterThan(1024 * 1300); // at least the 1,024-slot send ring

    // Many idle connections, each with a datagram through each ring, then a keep-alive.
    const conns: EngineConnection[] = [];
    for (let i = 0; i < 50; i++) {
      const c = engine.Connection.connect('localhost', randomBytes(16), { ...CLIENT, port: 42000 + i }, SERVER, cc);
      const s = pump(c, sc, null);
      c.dgramSend(enc('x'));
      s.dgramSend(enc('y'));
      pump(c, sc, s);
      expect(s.dgramRecv(out)).toBe(1);
      expect(c.dgramRecv(out)).toBe(1);
      conns.push(c, s);
    }
    const idle = inUse();
    // Clients ping (the agent's keep-alive); servers are trimmed without a PING (the gateway's tick: nothing arrived).
    for (let i = 0; i < conns.length; i++) {
      if (i % 2 === 0) conns[i]!.sendAckEliciting();
      else conns[i]!.trimIdle();
    }
    // Two rings of two packet-sized slots per connection, 100 connections (measured ~4.2 kB each): at least 3 kB each.
    expect(idle - inUse()).toBeGreaterThan(100 * 3000);
    // And they still carry datagrams afterwards.
    conns[0]!.dgramSend(enc('z'));
    pump(conns[0]!, sc, conns[1]!);
    expect(conns[1]!.dgramRecv(out)).toBe(1);
    for (const c of [client, server, ...conns]) c.free();
  });
});
