/**
 * H2Tunnel against node's real http2 (cleartext loopback, Extended CONNECT
 * enabled): DATAGRAM capsules both ways (RFC 9297 §3.5), other capsule types
 * passed on (§3.2), and the bounded send queue that drops, counted, instead of
 * queueing behind a backpressured stream (docs/http2-fallback.md).
 */
import { connect, createServer, type ClientHttp2Session, type Http2Server, type ServerHttp2Stream } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { H3Error } from '../h3/errors.js';
import { H2Tunnel, H2TunnelCounters, h2CodeFor, h3CodeFor } from './h2-tunnel.js';

interface Pair {
  server: Http2Server;
  client: ClientHttp2Session;
  serverStream: ServerHttp2Stream;
  clientTunnel: H2Tunnel;
  counters: H2TunnelCounters;
  got: { type: number; bytes: Buffer }[];
}

const opened: Pair[] = [];

async function pair(sendQueueBytes: number, serverReads: boolean): Promise<Pair> {
  const server = createServer({ settings: { enableConnectProtocol: true } });
  const serverStream = new Promise<ServerHttp2Stream>((resolve) => server.on('stream', (st) => {
    st.respond({ ':status': 200, 'capsule-protocol': '?1' });
    if (!serverReads) st.pause();
    resolve(st);
  }));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const client = connect(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
  await new Promise((r) => client.once('remoteSettings', r));
  const st = client.request({ ':method': 'CONNECT', ':protocol': 'connect-ip', ':scheme': 'https', ':authority': 'x', ':path': '/', 'capsule-protocol': '?1' }, { endStream: false });
  await new Promise((r) => st.once('response', r));
  const counters = new H2TunnelCounters();
  const got: { type: number; bytes: Buffer }[] = [];
  const clientTunnel = new H2Tunnel(st, { onCapsule: () => undefined, onDatagram: () => undefined, onClose: () => undefined }, { maxCapsuleBytes: 4096, sendQueueBytes, maxDatagramPayloadBytes: 1400 }, counters);
  const p: Pair = { server, client, serverStream: await serverStream, clientTunnel, counters, got };
  opened.push(p);
  return p;
}

afterEach(async () => {
  for (const p of opened.splice(0)) {
    p.client.destroy();
    await new Promise((r) => p.server.close(r));
  }
});

describe('H2Tunnel (RFC 9297 §3 capsules on an HTTP/2 Extended CONNECT stream)', () => {
  it('RFC 9297 §3.5: datagrams arrive as DATAGRAM capsules; other capsule types reach onCapsule (§3.2)', async () => {
    const p = await pair(1 << 20, true);
    const seen: string[] = [];
    new H2Tunnel(p.serverStream, {
      onCapsule: (t, v) => void seen.push(`capsule ${t} ${Buffer.from(v).toString()}`),
      onDatagram: (b, o, l) => void seen.push(`dgram ${Buffer.from(b.subarray(o, o + l)).toString()}`),
      onClose: (e) => void seen.push(`close ${e}`),
    }, { maxCapsuleBytes: 4096, sendQueueBytes: 1 << 20, maxDatagramPayloadBytes: 1400 }, new H2TunnelCounters());
    const buf = Buffer.alloc(64);
    buf.write('hello', 16);
    expect(p.clientTunnel.sendDatagram(buf, 16, 5)).toBe(true);
    buf.fill(0, 16);
    expect(p.clientTunnel.sendCapsule(0x1234, Buffer.from('grease'))).toBe(true);
    p.clientTunnel.close();
    for (let i = 0; i < 200 && !seen.includes('close 0'); i++) await new Promise((r) => setTimeout(r, 5));
    // The payload was copied at send time: clearing the caller's buffer changed nothing.
    expect(seen).toEqual(['dgram hello', `capsule ${0x1234} grease`, 'close 0']);
    expect(p.counters.datagramsSent).toBe(1);
  });

  it('drops, counted, instead of queueing past sendQueueBytes when the peer does not read (no unbounded queue)', async () => {
    const bound = 32 * 1024;
    const p = await pair(bound, false);
    const pkt = Buffer.alloc(1300 + 16);
    let accepted = 0;
    let maxQueued = 0;
    for (let i = 0; i < 2000; i++) {
      if (p.clientTunnel.sendDatagram(pkt, 16, 1300)) accepted++;
      maxQueued = Math.max(maxQueued, p.clientTunnel.queuedBytes());
      if (i % 50 === 0) await new Promise((r) => setImmediate(r));
    }
    // The server never reads: its 64 KiB stream window plus the bound is all that can be in flight.
    expect(p.counters.datagramsDroppedBackpressure).toBe(2000 - accepted);
    expect(p.counters.datagramsDroppedBackpressure).toBeGreaterThan(1000);
    expect(maxQueued).toBeLessThanOrEqual(bound);
    expect(accepted * 1303).toBeLessThan(65_535 + bound + 16 * 1024 + 1303);
  });

  it('maps H3 error codes to the HTTP/2 codes of RFC 9113 §7 and back', () => {
    expect(h2CodeFor(H3Error.H3_MESSAGE_ERROR)).toBe(0x1); // PROTOCOL_ERROR (malformed, RFC 9113 §8.1.1)
    expect(h2CodeFor(H3Error.H3_EXCESSIVE_LOAD)).toBe(0xb); // ENHANCE_YOUR_CALM
    expect(h2CodeFor(H3Error.H3_DATAGRAM_ERROR)).toBe(0x1);
    expect(h2CodeFor(H3Error.H3_NO_ERROR)).toBe(0x0);
    expect(h3CodeFor(0x1)).toBe(H3Error.H3_MESSAGE_ERROR);
    expect(h3CodeFor(0x8)).toBe(H3Error.H3_REQUEST_CANCELLED);
    expect(h3CodeFor(0x0)).toBe(0);
  });
});
