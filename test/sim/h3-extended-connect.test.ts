/**
 * HTTP/3 over real loopback QUIC (our QUIC engine on both ends): SETTINGS, Extended
 * CONNECT with capsules and HTTP Datagrams both ways, /healthz, GOAWAY, and
 * malformed datagrams that must close one connection but not the server.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { Harness, waitFor } from './quic-harness.js';
import { attachH3 } from '../../src/h3/quic-binding.js';
import type { H3Connection } from '../../src/h3/connection.js';
import { h3Request, type H3ClientResult } from '../../src/h3/testing/h3-request.js';
import { healthzHandler } from '../../src/telemetry/healthz.js';
import { H3Error } from '../../src/h3/errors.js';
import type { FieldList } from '../../src/h3/qpack.js';
import { H3_DATAGRAM_HEADROOM, type TunnelStream, type TunnelStreamHandler } from '../../src/h3/tunnel-stream.js';
import type { QuicConnection } from '../../src/quic/connection.js';

let h = new Harness();
afterEach(() => {
  h.cleanup();
  h = new Harness();
});

/** Server app: Bearer auth, then echo capsules (type+1) and datagrams back. */
async function h3Server() {
  const serverH3: H3Connection[] = [];
  const serverConns: QuicConnection[] = [];
  const echoed = { datagrams: 0, capsules: 0 };
  const { ep, port } = await h.server({
    onConnection: (c) => {
      serverConns.push(c);
      const h3 = attachH3(c, {
        onRequest: healthzHandler,
        onConnect: (req) => {
          if (req.header('authorization') !== 'Bearer s3cret') {
            req.reject(401, [['proxy-status', 'mtun; error=http_request_denied']]);
            return;
          }
          let tunnel: TunnelStream | null = null;
          const out = new Uint8Array(H3_DATAGRAM_HEADROOM + 2048);
          tunnel = req.accept({
            onCapsule(type, value) {
              echoed.capsules++;
              tunnel!.sendCapsule(type + 1, value.slice());
            },
            onDatagram(buf, off, len) {
              echoed.datagrams++;
              out.set(buf.subarray(off, off + len), H3_DATAGRAM_HEADROOM);
              tunnel!.sendDatagram(out, H3_DATAGRAM_HEADROOM, len);
            },
            onClose() {},
          });
        },
      });
      serverH3.push(h3);
    },
  });
  return { ep, port, serverH3, serverConns, echoed };
}

async function h3Client(port: number) {
  const ep = await h.client();
  const c = ep.connect('127.0.0.1', port, 'localhost');
  const goaways: number[] = [];
  const h3 = attachH3(c, { onGoaway: (id) => goaways.push(id) });
  await c.whenEstablished();
  await waitFor(() => h3.peerSettingsReceived, 3000, 'server SETTINGS');
  return { ep, c, h3, goaways };
}

class Client implements TunnelStreamHandler {
  status = 0;
  headers: FieldList = [];
  tunnel: TunnelStream | null = null;
  capsules: Array<[number, string]> = [];
  datagrams: string[] = [];
  closed: number[] = [];
  onResponse(status: number, headers: FieldList, tunnel: TunnelStream | null) {
    this.status = status;
    this.headers = headers;
    this.tunnel = tunnel;
  }
  onCapsule(type: number, value: Uint8Array) {
    this.capsules.push([type, Buffer.from(value).toString('hex')]);
  }
  onDatagram(buf: Uint8Array, off: number, len: number) {
    this.datagrams.push(Buffer.from(buf.subarray(off, off + len)).toString('hex'));
  }
  onClose(e: number) {
    this.closed.push(e);
  }
}

function payload(hexBody: string) {
  const b = Buffer.from(hexBody, 'hex');
  const buf = new Uint8Array(H3_DATAGRAM_HEADROOM + b.length);
  buf.set(b, H3_DATAGRAM_HEADROOM);
  return { buf, off: H3_DATAGRAM_HEADROOM, len: b.length };
}

describe('HTTP/3 over loopback QUIC', () => {
  it('SETTINGS both ways: Extended CONNECT and HTTP Datagrams enabled (RFC 9220 §3, RFC 9297 §2.1.1)', async () => {
    const { port, serverH3 } = await h3Server();
    const { h3 } = await h3Client(port);
    expect(h3.peerSettings.enableConnectProtocol).toBe(true);
    expect(h3.peerSettings.h3Datagram).toBe(true);
    expect(h3.datagramsEnabled).toBe(true);
    await waitFor(() => serverH3[0]?.peerSettingsReceived === true, 3000, 'client SETTINGS');
    expect(serverH3[0]!.datagramsEnabled).toBe(true);
  });

  it('Extended CONNECT with capsule-protocol, capsules and datagrams both ways', async () => {
    const { port, serverH3, echoed } = await h3Server();
    const { c, h3 } = await h3Client(port);
    const cl = new Client();
    h3.connect(
      { protocol: 'connect-ip', authority: 'localhost:443', path: '/.well-known/masque/ip/*/*/', headers: [['authorization', 'Bearer s3cret']] },
      cl,
    );
    c.flush();
    await waitFor(() => cl.status !== 0, 3000, 'CONNECT response');
    expect(cl.status).toBe(200);
    expect(cl.headers).toContainEqual(['capsule-protocol', '?1']);
    const t = cl.tunnel!;
    expect(t.maxDatagramPayload()).toBeGreaterThan(1000);
    t.sendCapsule(0x02, Uint8Array.from([1, 2, 3]));
    for (let i = 0; i < 50; i++) {
      const p = payload('00' + i.toString(16).padStart(2, '0') + 'abcdef');
      expect(t.sendDatagram(p.buf, p.off, p.len)).toBe(true);
    }
    c.flush();
    // Loopback, 50 small datagrams, 1024-deep engine DATAGRAM queues: nothing may be lost.
    await waitFor(() => cl.capsules.length === 1 && cl.datagrams.length === 50, 3000, 'echoes');
    expect(cl.capsules[0]).toEqual([0x03, '010203']);
    expect([...cl.datagrams].sort()).toEqual(Array.from({ length: 50 }, (_, i) => '00' + i.toString(16).padStart(2, '0') + 'abcdef'));
    expect(echoed.capsules).toBe(1);
    expect(echoed.datagrams).toBe(50);
    expect(serverH3[0]!.counters.datagramsReceived).toBe(50);
    expect(h3.counters.datagramsSent).toBe(50);
    expect(h3.counters.datagramsReceived).toBe(50);
    t.close();
    c.flush();
    await waitFor(() => cl.closed.length === 1, 3000, 'tunnel close');
    expect(cl.closed).toEqual([0]);
  });

  it('rejected CONNECT gets 401 + Proxy-Status; GET /healthz answers 200 "ok"', async () => {
    const { port } = await h3Server();
    const { c, h3 } = await h3Client(port);
    const cl = new Client();
    h3.connect({ protocol: 'connect-udp', authority: 'localhost:443', path: '/udp/10.0.0.1/53/' }, cl);
    let res: H3ClientResult | undefined;
    h3Request(h3, { method: 'GET', authority: 'localhost:443', path: '/healthz' }, (r) => (res = r));
    c.flush();
    await waitFor(() => cl.status !== 0 && res !== undefined, 3000, 'responses');
    expect(cl.status).toBe(401);
    expect(cl.tunnel).toBeNull();
    expect(cl.headers).toContainEqual(['proxy-status', 'mtun; error=http_request_denied']);
    expect(res!.ok && res!.status).toBe(200);
    expect(res!.ok && Buffer.from(res!.body).toString()).toBe('ok\n');
  });

  it('GOAWAY: the open tunnel keeps working, new requests are refused, then a clean H3_NO_ERROR close (RFC 9114 §5.2)', async () => {
    const { port, serverH3, serverConns } = await h3Server();
    const { c, h3, goaways } = await h3Client(port);
    const cl = new Client();
    h3.connect({ protocol: 'connect-ip', authority: 'localhost', path: '/ip', headers: [['authorization', 'Bearer s3cret']] }, cl);
    c.flush();
    await waitFor(() => cl.status === 200, 3000, 'tunnel');
    serverH3[0]!.shutdown();
    serverConns[0]!.flush();
    await waitFor(() => goaways.length === 1, 3000, 'GOAWAY');
    expect(goaways[0]).toBe(4);
    expect(h3.connect({ protocol: 'connect-ip', authority: 'localhost', path: '/ip' }, new Client())).toBe(-1);
    const p = payload('00ee');
    cl.tunnel!.sendDatagram(p.buf, p.off, p.len);
    c.flush();
    await waitFor(() => cl.datagrams.length === 1, 3000, 'datagram after GOAWAY');
    cl.tunnel!.close();
    c.flush();
    await waitFor(() => c.isClosed, 3000, 'connection close');
    expect(c.closeInfo!.app).toBe(true);
    expect(c.closeInfo!.errorCode).toBe(H3Error.H3_NO_ERROR);
  });

  it('RFC 9297 §2.1: a quarter stream ID above 2^60−1 closes that connection with H3_DATAGRAM_ERROR; other clients keep being served', async () => {
    const { port } = await h3Server();
    const bad = await h3Client(port);
    const good = await h3Client(port);
    const raw = Uint8Array.from(Buffer.from('d00000000000000000', 'hex'));
    expect(bad.c.dgramSend(raw, 0, raw.length)).toBe(true);
    bad.c.flush();
    await waitFor(() => bad.c.isClosed, 3000, 'bad client closed');
    expect(bad.c.closeInfo!.byPeer).toBe(true);
    expect(bad.c.closeInfo!.app).toBe(true);
    expect(bad.c.closeInfo!.errorCode).toBe(H3Error.H3_DATAGRAM_ERROR);
    expect(bad.h3.closed).toBe(true);
    let res: H3ClientResult | undefined;
    h3Request(good.h3, { method: 'GET', authority: 'localhost', path: '/healthz' }, (r) => (res = r));
    good.c.flush();
    await waitFor(() => res !== undefined, 3000, 'healthz on the other connection');
    expect(res!.ok && res!.status).toBe(200);
  });

  it('50 concurrent tunnels on one connection each get their own datagrams (quarter stream IDs 0..49)', async () => {
    const { port, serverH3 } = await h3Server();
    const { c, h3 } = await h3Client(port);
    const clients: Client[] = [];
    for (let i = 0; i < 50; i++) {
      const cl = new Client();
      clients.push(cl);
      h3.connect({ protocol: 'connect-ip', authority: 'localhost', path: `/ip/${i}`, headers: [['authorization', 'Bearer s3cret']] }, cl);
    }
    c.flush();
    await waitFor(() => clients.every((cl) => cl.status === 200), 5000, '50 tunnels');
    clients.forEach((cl, i) => {
      const p = payload('00' + i.toString(16).padStart(4, '0'));
      cl.tunnel!.sendDatagram(p.buf, p.off, p.len);
    });
    c.flush();
    await waitFor(() => clients.every((cl) => cl.datagrams.length === 1), 5000, 'echoes on 50 tunnels');
    clients.forEach((cl, i) => expect(cl.datagrams).toEqual(['00' + i.toString(16).padStart(4, '0')]));
    expect(serverH3[0]!.counters.datagramsReceived).toBe(50);
    expect(clients.map((cl) => cl.tunnel!.streamId)).toEqual(clients.map((_, i) => i * 4));
    expect(serverH3[0]!.counters.connectAccepted).toBe(50);
  });

  it('QUIC idle timeout ends every tunnel with onClose(H3_REQUEST_CANCELLED) on both sides', async () => {
    const closes: number[] = [];
    const { port } = await h.server(
      {
        onConnection: (c) => {
          attachH3(c, { onConnect: (req) => void req.accept({ onCapsule() {}, onDatagram() {}, onClose: (e) => void closes.push(e) }) });
        },
      },
      { idleTimeoutMs: 400 },
    );
    const ep = await h.client({}, { idleTimeoutMs: 400 });
    const c = ep.connect('127.0.0.1', port, 'localhost');
    const h3 = attachH3(c, {});
    await c.whenEstablished();
    await waitFor(() => h3.peerSettingsReceived, 3000, 'SETTINGS');
    const cl = new Client();
    h3.connect({ protocol: 'connect-ip', authority: 'localhost', path: '/ip' }, cl);
    c.flush();
    await waitFor(() => cl.status === 200, 3000, 'tunnel');
    await waitFor(() => cl.closed.length === 1 && closes.length === 1, 5000, 'idle timeout');
    expect(cl.closed).toEqual([H3Error.H3_REQUEST_CANCELLED]);
    expect(closes).toEqual([H3Error.H3_REQUEST_CANCELLED]);
    expect(c.closeInfo!.idleTimeout).toBe(true);
  });
});
