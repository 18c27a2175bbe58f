/**
 * The QUIC endpoint over the native batched socket (sendmmsg/recvmmsg, UDP
 * GSO on send, GRO on receive): handshake, bulk datagrams, small Initials,
 * many connections. Skipped loudly when the addon is not built.
 */
import { afterEach, describe, expect, it } from 'vitest';
import dgram from 'node:dgram';
import { Harness, echo, getPki, nativeUdpAvailable, streamRoundTrip, waitFor } from './quic-harness.js';
import { QuicEndpoint } from '../../src/quic/endpoint.js';
import type { UdpBatchSocket } from '../../src/net/udp.js';

const nativeOk = await nativeUdpAvailable('quic-native');

const enc = new TextEncoder();
let h = new Harness('native');
afterEach(() => {
  h.cleanup();
  h = new Harness('native');
});

describe.skipIf(!nativeOk)('QUIC over the native UDP socket', () => {
  it('handshakes and echoes a 200 KB stream (GSO trains on a full cwnd)', async () => {
    const { ep: server, port } = await h.server();
    const client = await h.client();
    const c = client.connect('127.0.0.1', port, 'localhost');
    await c.whenEstablished();
    const data = new Uint8Array(200_000).map((_, i) => (i * 7) & 0xff);
    const back = await streamRoundTrip(c, 0, data);
    expect(Buffer.from(back).equals(Buffer.from(data))).toBe(true);
    expect(server.counters.datagramsOut).toBeGreaterThan(100);
  });

  it('moves 5000 datagrams client→server with GSO on send', async () => {
    const { port } = await h.server();
    const client = await h.client();
    const c = client.connect('127.0.0.1', port, 'localhost');
    await c.whenEstablished();
    await waitFor(() => h.accepted.length === 1, 2000, 'server conn');
    const s = h.accepted[0];
    let got = 0;
    let badLen = 0;
    const buf = new Uint8Array(2000);
    s.onEvent = (conn, ev) => {
      if (ev !== 'readable') return;
      let n: number | null;
      while ((n = conn.dgramRecv(buf)) !== null) {
        if (n === 1200) got++;
        else badLen++;
      }
    };
    const payload = new Uint8Array(1200).fill(1);
    let queued = 0;
    for (let round = 0; round < 50; round++) {
      for (let i = 0; i < 100; i++) if (c.dgramSend(payload, 0, 1200)) queued++;
      c.flush();
      await new Promise((r) => setImmediate(r));
    }
    await waitFor(() => got >= queued * 0.95, 5000, 'datagrams at the server');
    expect(badLen).toBe(0);
    expect(queued).toBeGreaterThan(4500);
    expect(client.counters.gsoSends).toBeGreaterThan(0);
  });

  it('serves IPv6 (::1) and IPv4-mapped clients on one dual-stack socket', async () => {
    const { openNativeUdp } = await import('../../src/net/native-udp.js');
    const p = await getPki();
    const socks: UdpBatchSocket[] = [];
    const eps: QuicEndpoint[] = [];
    try {
      const ss = openNativeUdp({ host: '::' });
      socks.push(ss);
      const peers: string[] = [];
      const server = new QuicEndpoint({
        socket: ss,
        keylogPath: null,
        server: { certPem: p.server.certPem, keyPem: p.server.keyPem, retry: 'on', onConnection: (c) => (peers.push(c.peerHost), echo(c)) },
      });
      eps.push(server);
      const port = ss.localAddress().port;
      for (const [bind, target] of [['::1', '::1'], ['127.0.0.1', '127.0.0.1']]) {
        const cs = openNativeUdp({ host: bind });
        socks.push(cs);
        const client = new QuicEndpoint({ socket: cs, keylogPath: null, client: { caPem: p.ca.certPem } });
        eps.push(client);
        const c = client.connect(target, port, 'localhost');
        await c.whenEstablished();
        expect(Buffer.from(await streamRoundTrip(c, 0, enc.encode(`via ${target}`))).toString()).toBe(`via ${target}`);
      }
      expect(peers).toEqual(['::1', '127.0.0.1']);
      expect(server.counters.retriesSent).toBe(2);
    } finally {
      for (const e of eps) e.close();
      for (const s of socks) s.close();
    }
  });

  it('drops small Initials (RFC 9000 §14.1) and serves 20 connections meanwhile', async () => {
    const { ep: server, port } = await h.server({ retry: 'auto', retryAutoHandshakes: 8 });
    const raw = dgram.createSocket('udp4');
    await new Promise<void>((r) => raw.bind(0, '127.0.0.1', r));
    const pkt = Buffer.alloc(600, 0);
    pkt[0] = 0xc0;
    pkt.writeUInt32BE(1, 1);
    pkt[5] = 8;
    for (let i = 0; i < 30; i++) raw.send(pkt, port, '127.0.0.1');
    const clients = await Promise.all([h.client(), h.client()]);
    const conns = Array.from({ length: 20 }, (_, i) => clients[i % 2].connect('127.0.0.1', port, 'localhost'));
    await Promise.all(conns.map((c) => c.whenEstablished()));
    const replies = await Promise.all(conns.map((c, i) => streamRoundTrip(c, 0, enc.encode(`n${i}`))));
    replies.forEach((r, i) => expect(Buffer.from(r).toString()).toBe(`n${i}`));
    await waitFor(() => server.counters.dropSmallInitial === 30, 2000, 'small Initial drops');
    raw.close();
  });
});
