/**
 * Engine interop (issue #13): the ngtcp2 + GnuTLS engine against the quiche
 * binding, an independent QUIC stack, in both roles over loopback UDP. The
 * two engines are two module graphs of src/quic loaded side by side
 * (MTUN_QUIC_ENGINE read at import). Covers the RFC 9000/9001 handshake with
 * mTLS (SPIFFE identity), ALPN h3, stream data, RFC 9221 DATAGRAM both ways,
 * Retry (RFC 9000 §8.1.2), TLS resumption and CONNECTION_CLOSE codes.
 */
import { afterAll, describe, expect, it, vi } from 'vitest';
import { openDgramUdpSocket } from '../../src/net/dgram-udp.js';
import type { UdpBatchSocket } from '../../src/net/udp.js';
import type { QuicEndpoint as Endpoint } from '../../src/quic/endpoint.js';
import type { QuicConnection } from '../../src/quic/connection.js';
import { echo, getPki } from './quic-harness.js';
import { endpointClass, type Engine } from './quic-engines.js';

const opened: { eps: Endpoint[]; socks: UdpBatchSocket[] } = { eps: [], socks: [] };
afterAll(() => {
  for (const e of opened.eps) e.close();
  for (const s of opened.socks) s.close();
});

async function pair(serverEngine: Engine, clientEngine: Engine, retry: 'on' | 'off' = 'off') {
  const p = await getPki();
  const accepted: QuicConnection[] = [];
  const ss = await openDgramUdpSocket();
  const cs = await openDgramUdpSocket();
  opened.socks.push(ss, cs);
  const Server = await endpointClass(serverEngine);
  const Client = await endpointClass(clientEngine);
  const server = new Server({
    socket: ss,
    keylogPath: null,
    server: {
      certPem: p.server.certPem,
      keyPem: p.server.keyPem,
      clientCaPem: p.ca.certPem,
      retry,
      onConnection: (c) => {
        accepted.push(c);
        echo(c);
      },
    },
  });
  const client = new Client({
    socket: cs,
    keylogPath: null,
    client: { caPem: p.ca.certPem, certPem: p.client.certPem, keyPem: p.client.keyPem },
  });
  opened.eps.push(server, client);
  return { server, client, accepted, port: ss.localAddress().port };
}

/** Sends `data` on stream `sid` with FIN and collects the echo until FIN. */
function roundTrip(c: QuicConnection, sid: number, data: Uint8Array): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    const chunks: Uint8Array[] = [];
    const buf = new Uint8Array(65_536);
    let off = 0;
    const pump = (): void => {
      while (off < data.length) {
        const n = c.streamSend(sid, data.subarray(off), true);
        if (n === 0) break;
        off += n;
      }
      c.watchWritable = off < data.length;
      c.flush();
    };
    const timer = setTimeout(() => reject(new Error(`stream ${sid}: timeout after ${off} bytes sent`)), 10_000);
    c.onEvent = (conn, ev) => {
      if (ev === 'writable') pump();
      if (ev !== 'readable') return;
      let r: [number, boolean] | null;
      while ((r = conn.streamRecv(sid, buf)) !== null) {
        chunks.push(buf.slice(0, r[0]));
        if (r[1]) {
          clearTimeout(timer);
          resolve(Buffer.concat(chunks));
          return;
        }
      }
    };
    pump();
  });
}

function datagramsBack(c: QuicConnection, count: number): Promise<number> {
  return new Promise((resolve) => {
    let got = 0;
    const buf = new Uint8Array(2048);
    const prev = c.onEvent;
    const timer = setTimeout(() => resolve(got), 3000);
    c.onEvent = (conn, ev) => {
      prev?.(conn, ev);
      if (ev !== 'readable') return;
      let n: number | null;
      while ((n = conn.dgramRecv(buf)) !== null) if (n === 1000 && buf[999] === 0xab) got++;
      if (got === count) {
        clearTimeout(timer);
        resolve(got);
      }
    };
    const d = new Uint8Array(1000).fill(0xab);
    for (let i = 0; i < count; i++) c.dgramSend(d, 0, d.length);
    c.flush();
  });
}

const directions: [Engine, Engine][] = [
  ['ngtcp2', 'quiche'],
  ['quiche', 'ngtcp2'],
];

describe.each(directions)('server %s ← client %s', (serverEngine, clientEngine) => {
  it('handshake with mTLS and ALPN h3, 200 KB stream echo, DATAGRAMs both ways, app close code at the peer', async () => {
    const { client, accepted, port } = await pair(serverEngine, clientEngine);
    const c = client.connect('127.0.0.1', port, 'localhost');
    await c.whenEstablished();
    expect(c.alpn()).toBe('h3');
    await vi.waitFor(() => expect(accepted.length).toBe(1), { timeout: 3000 });
    // RFC 8446 §4.4.2: the client chain reached the server; src/quic extracts the SPIFFE ID.
    expect(accepted[0]!.peerIdentity?.spiffeId).toBe('spiffe://mesh.test/ns/default/sa/agent');
    const data = new Uint8Array(200_000);
    for (let i = 0; i < data.length; i++) data[i] = (i * 7) & 0xff;
    const back = await roundTrip(c, 0, data);
    expect(Buffer.from(back).equals(Buffer.from(data))).toBe(true);
    // RFC 9221: 20 datagrams out, echoed back by the server.
    expect(await datagramsBack(c, 20)).toBeGreaterThanOrEqual(18);
    // RFC 9000 §10.2: an application CONNECTION_CLOSE carries its code to the peer.
    const s = accepted[0]!;
    c.close(true, 0x10c, 'bye');
    await vi.waitFor(() => expect(s.isClosed).toBe(true), { timeout: 3000 });
    expect(s.closeInfo).toMatchObject({ byPeer: true, app: true, errorCode: 0x10c, reason: 'bye' });
  });

  it('Retry (RFC 9000 §8.1.2): the client follows the Retry and connects with the token', async () => {
    const { server, client, port } = await pair(serverEngine, clientEngine, 'on');
    const c = client.connect('127.0.0.1', port, 'localhost');
    await c.whenEstablished();
    expect(server.counters.retriesSent).toBe(1);
    const back = await roundTrip(c, 0, new TextEncoder().encode('after retry'));
    expect(Buffer.from(back).toString()).toBe('after retry');
  });

  it('resumes the TLS session on a second connection (1-RTT, no early data)', async () => {
    const { client, port } = await pair(serverEngine, clientEngine);
    const a = client.connect('127.0.0.1', port, 'localhost');
    await a.whenEstablished();
    await roundTrip(a, 0, new TextEncoder().encode('ticket'));
    a.close(true, 0, '');
    await vi.waitFor(() => expect(a.isClosed).toBe(true), { timeout: 3000 });
    const b = client.connect('127.0.0.1', port, 'localhost');
    await b.whenEstablished();
    expect(b.isResumed()).toBe(true);
  });
});
