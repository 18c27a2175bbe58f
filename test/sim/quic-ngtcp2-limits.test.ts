/**
 * The ngtcp2 engine's own buffers are bounded and count what they refuse
 * (issue #13): ngtcp2 0.12 keeps no DATAGRAM queues and no stream send data,
 * so src/native/quic-stream.c does. RFC 9221 §5 (DATAGRAM frames may be
 * dropped, never block), RFC 9000 §2.2 / §4 (stream data kept until ACKed,
 * bounded per stream).
 */
import { afterAll, describe, expect, it, vi } from 'vitest';
import { openDgramUdpSocket } from '../../src/net/dgram-udp.js';
import type { UdpBatchSocket } from '../../src/net/udp.js';
import { QuicEndpoint, type QuicEndpointOptions } from '../../src/quic/endpoint.js';
import type { QuicConnection } from '../../src/quic/connection.js';
import { echo, getPki } from './quic-harness.js';

const opened: { eps: QuicEndpoint[]; socks: UdpBatchSocket[] } = { eps: [], socks: [] };
afterAll(() => {
  for (const e of opened.eps) e.close();
  for (const s of opened.socks) s.close();
});

async function pair(extra: Partial<QuicEndpointOptions>, onConnection: (c: QuicConnection) => void = echo) {
  const p = await getPki();
  const ss = await openDgramUdpSocket();
  const cs = await openDgramUdpSocket();
  opened.socks.push(ss, cs);
  const server = new QuicEndpoint({ socket: ss, keylogPath: null, ...extra, server: { certPem: p.server.certPem, keyPem: p.server.keyPem, retry: 'off', onConnection } });
  const client = new QuicEndpoint({ socket: cs, keylogPath: null, ...extra, client: { caPem: p.ca.certPem } });
  opened.eps.push(server, client);
  const c = client.connect('127.0.0.1', ss.localAddress().port, 'localhost');
  await c.whenEstablished();
  return { server, client, c };
}

describe('ngtcp2 engine: bounded queues with counted drops', () => {
  it('DATAGRAM send queue: beyond dgramQueueLen a send is refused and counted; too big is refused and counted', async () => {
    const { c } = await pair({ dgramQueueLen: 8 });
    const max = c.dgramMaxWritableLen();
    expect(max).toBeGreaterThanOrEqual(1200);
    const d = new Uint8Array(1000);
    // One synchronous burst: the endpoint sends only after it (microtask), so the queue fills.
    let ok = 0;
    for (let i = 0; i < 20; i++) if (c.dgramSend(d, 0, d.length)) ok++;
    expect(ok).toBe(8);
    expect(c.stats().dgramDropQueueFull).toBe(12);
    expect(c.dgramSend(new Uint8Array(max! + 1), 0, max! + 1)).toBe(false);
    expect(c.stats().dgramDropTooBig).toBe(1);
    // The queue drains: sending works again once it has gone out.
    await vi.waitFor(() => expect(c.dgramSend(d, 0, d.length)).toBe(true), { timeout: 2000 });
  });

  it('DATAGRAM receive queue: an application that does not read loses the oldest, and the full queue is reported', async () => {
    let server: QuicConnection | null = null;
    const { c } = await pair({ dgramQueueLen: 4 }, (s) => void (server = s));
    await vi.waitFor(() => expect(server).not.toBeNull(), { timeout: 2000 });
    const s = server as unknown as QuicConnection;
    const d = new Uint8Array(100);
    for (let round = 0; round < 5; round++) {
      for (let i = 0; i < 4; i++) {
        d[0] = round * 4 + i;
        c.dgramSend(d, 0, d.length);
      }
      await new Promise((r) => setTimeout(r, 30));
    }
    await vi.waitFor(() => expect(s.stats().dgramRecvQueueFullEvents).toBeGreaterThan(0), { timeout: 2000 });
    // What is left are the newest four, in order.
    const buf = new Uint8Array(200);
    const firsts: number[] = [];
    let n: number | null;
    while ((n = s.dgramRecv(buf)) !== null) {
      expect(n).toBe(100);
      firsts.push(buf[0]!);
    }
    expect(firsts).toEqual([16, 17, 18, 19]);
  });

  it('stream send buffer: at most 1 MiB unacknowledged per stream is taken; the rest waits, and 3 MiB arrive intact', async () => {
    const { c } = await pair({});
    const data = new Uint8Array(3 << 20);
    for (let i = 0; i < data.length; i++) data[i] = (i * 13) & 0xff;
    const first = c.streamSend(0, data, true);
    expect(first).toBe(1 << 20);
    expect(c.streamSend(0, data.subarray(first), true)).toBe(0);
    const got: Uint8Array[] = [];
    let off = first;
    const buf = new Uint8Array(65_536);
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`timeout: sent ${off}, got ${got.reduce((a, b) => a + b.length, 0)}`)), 20_000);
      c.watchWritable = true;
      c.onEvent = (conn, ev) => {
        if (ev === 'writable' && off < data.length) {
          off += conn.streamSend(0, data.subarray(off), true);
          conn.watchWritable = off < data.length;
        }
        if (ev !== 'readable') return;
        let r: [number, boolean] | null;
        while ((r = conn.streamRecv(0, buf)) !== null) {
          got.push(buf.slice(0, r[0]));
          if (r[1]) {
            clearTimeout(timer);
            resolve();
            return;
          }
        }
      };
    });
    expect(Buffer.concat(got).equals(Buffer.from(data))).toBe(true);
  });
});
