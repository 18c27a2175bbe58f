/**
 * Interop with an independent QUIC stack (issue #13): a quiche client
 * (BoringSSL; quiche-peer.ts) against our endpoint on the ngtcp2 + GnuTLS
 * engine, over loopback UDP. Covers the RFC 9000/9001 handshake with mTLS
 * (the SPIFFE identity read from the client's chain), ALPN h3, stream data,
 * RFC 9221 DATAGRAMs both ways, Retry (RFC 9000 §8.1.2), TLS resumption and
 * the application CONNECTION_CLOSE code (RFC 9000 §19.19). Chromium
 * (h3-interop.test.ts) and tshark (quic-tshark.test.ts) are the other independent
 * peers.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { QuicConnection } from '../../src/quic/connection.js';
import { echo, getPki, Harness, waitFor } from './quic-harness.js';
import { QuichePeer } from './quiche-peer.js';

const h = new Harness();
const peers: QuichePeer[] = [];
afterEach(() => {
  for (const p of peers) p.stop();
  peers.length = 0;
  h.cleanup();
});

/** Our server with mTLS against the test CA. */
async function serve(retry: 'on' | 'off') {
  const p = await getPki();
  const accepted: QuicConnection[] = [];
  const { ep: server, port } = await h.server({
    clientCaPem: p.ca.certPem,
    retry,
    onConnection: (c) => {
      accepted.push(c);
      echo(c);
    },
  });
  return { server, port, accepted };
}

/** A quiche client with the agent's certificate, connected to `port`. */
async function dial(port: number, session: Uint8Array | null = null): Promise<QuichePeer> {
  const p = await getPki();
  const client = await QuichePeer.connect({ host: '127.0.0.1', port }, { caPem: p.ca.certPem, certPem: p.client.certPem, keyPem: p.client.keyPem, session });
  peers.push(client);
  client.flush();
  await waitFor(() => client.conn.isEstablished(), 5_000, 'handshake');
  return client;
}

/** Sends `data` on `sid` with FIN and collects the echo until FIN. */
async function roundTrip(c: QuichePeer, sid: number, data: Uint8Array): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  let off = 0;
  let fin = false;
  await waitFor(() => {
    if (off < data.length) off = c.write(sid, data, off);
    const r = c.read(sid);
    if (r.data.length > 0) parts.push(r.data);
    fin ||= r.fin;
    return fin;
  }, 10_000, `echo on stream ${sid}`);
  return Buffer.concat(parts);
}

describe('quiche client → our server on the ngtcp2 engine', () => {
  it('handshake with mTLS and ALPN h3, 200 KB stream echo, DATAGRAMs both ways, app close code at the server', async () => {
    const { port, accepted } = await serve('off');
    const client = await dial(port);
    expect(new TextDecoder().decode(client.conn.applicationProto())).toBe('h3');
    await waitFor(() => accepted.length === 1, 3_000, 'server connection');
    // RFC 8446 §4.4.2: the client chain reached the server; src/quic extracts the SPIFFE ID.
    expect(accepted[0]!.peerIdentity?.spiffeId).toBe('spiffe://mesh.test/ns/default/sa/agent');
    const data = new Uint8Array(200_000);
    for (let i = 0; i < data.length; i++) data[i] = (i * 7) & 0xff;
    const back = await roundTrip(client, 0, data);
    expect(Buffer.from(back).equals(Buffer.from(data))).toBe(true);
    // RFC 9221: 20 datagrams out, echoed back by the server.
    const d = new Uint8Array(1000).fill(0xab);
    for (let i = 0; i < 20; i++) client.conn.dgramSend(d);
    client.flush();
    let got = 0;
    const buf = new Uint8Array(2048);
    await waitFor(() => {
      let n: number | null;
      while ((n = client.conn.dgramRecv(buf)) !== null) if (n === 1000 && buf[999] === 0xab) got++;
      return got >= 18;
    }, 3_000, 'datagrams echoed');
    // RFC 9000 §10.2: an application CONNECTION_CLOSE carries its code to the peer.
    const s = accepted[0]!;
    client.conn.close(true, 0x10c, new TextEncoder().encode('bye'));
    client.flush();
    await waitFor(() => s.isClosed, 3_000, 'server side closed');
    expect(s.closeInfo).toMatchObject({ byPeer: true, app: true, errorCode: 0x10c, reason: 'bye' });
  });

  it('Retry (RFC 9000 §8.1.2): the client follows the Retry and connects with the token', async () => {
    const { server, port } = await serve('on');
    const client = await dial(port);
    expect(server.counters.retriesSent).toBe(1);
    const back = await roundTrip(client, 0, new TextEncoder().encode('after retry'));
    expect(Buffer.from(back).toString()).toBe('after retry');
  });

  it('resumes the TLS session on a second connection (1-RTT, no early data)', async () => {
    const { port } = await serve('off');
    const first = await dial(port);
    await roundTrip(first, 0, new TextEncoder().encode('ticket'));
    await waitFor(() => first.conn.session() !== null, 3_000, 'session ticket');
    const second = await dial(port, first.conn.session());
    expect(second.conn.isResumed()).toBe(true);
    expect(second.conn.isInEarlyData()).toBe(false);
  });
});
