/**
 * Where a connection sends may follow its peer only after an authenticated
 * packet from the new address (RFC 9000 §9.3: a rebinding client), never
 * because a datagram carrying its connection ID arrived from there. The ID is
 * in clear on the wire: anyone who saw one packet could otherwise divert or
 * black-hole the tunnel with one junk datagram (independent review of the
 * engine glue: the address was taken from every datagram before it was
 * decrypted). In the closing period, the close is resent to where the
 * connection was, and not to every packet (RFC 9000 §10.2.1).
 *
 * In-memory sockets (test/sim/quic-memory-udp.ts): a rogue socket injects
 * datagrams as if from its own port; a "NAT" socket rewrites the client's
 * source port for the rebinding case.
 */
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { afterEach, describe, expect, it } from 'vitest';
import type { QuicConnection } from '../../src/quic/connection.js';
import { MemoryNet } from './quic-memory-udp.js';
import { countDatagrams, echo, memoryEndpointPair, sleep, waitFor } from './quic-harness.js';

const cleanups: (() => void)[] = [];
afterEach(() => {
  while (cleanups.length > 0) cleanups.pop()!();
});

/** A connected pair; the server's connection; the server's connection ID as the client sends it (from a short-header packet). */
async function setUp() {
  const net = new MemoryNet();
  let serverConn: QuicConnection | null = null;
  const pr = await memoryEndpointPair(net, { server: { onConnection: (c) => { serverConn = c; echo(c); } } });
  cleanups.push(pr.close);
  let dcid: Uint8Array | null = null;
  net.drop = (from, to, data) => {
    // A short header (RFC 9000 §17.3: the form bit clear; the fixed bit may be greased, RFC 9287), then the
    // destination connection ID.
    if (from === pr.cs.port && to === pr.port && (data[0]! & 0x80) === 0 && dcid === null) dcid = data.slice(1, 1 + 16);
    return false;
  };
  const c = pr.client.connect('127.0.0.1', pr.port, 'localhost');
  await c.whenEstablished();
  const echoes = countDatagrams(c);
  const payload = new Uint8Array(100).fill(1);
  const send = async (k: number): Promise<void> => {
    for (let i = 0; i < k; i++) c.dgramSend(payload, 0, payload.length);
    c.flush();
    await sleep(20);
  };
  // DATAGRAMs are unreliable (the first may meet a server still finishing its handshake): send until echoes come.
  for (let i = 0; i < 100 && !(echoes() >= 5 && dcid !== null && serverConn !== null); i++) await send(1);
  await waitFor(() => echoes() >= 5 && dcid !== null && serverConn !== null, 3000, 'first echoes');
  return { net, pr, c, server: serverConn! as QuicConnection, dcid: dcid! as Uint8Array, echoes, send };
}

describe('QUIC: a datagram from elsewhere does not move the connection', () => {
  it('a junk packet with the server connection ID from a rogue address: the server keeps sending to the client, nothing reaches the rogue', async () => {
    const { net, pr, c, server, dcid, echoes, send } = await setUp();
    const rogue = net.open();
    let rogueGot = 0;
    rogue.onReadable(() => {
      const b = { bufs: [Buffer.alloc(2048)], sizes: new Uint32Array(1), addrs: new Uint8Array(36), segs: new Uint32Array(1) };
      while (rogue.recv(b) > 0) rogueGot++;
    });
    const before = echoes();
    for (let i = 0; i < 3; i++) pr.ss.inject(Uint8Array.of(0x41, ...dcid, ...randomBytes(60)), rogue.port);
    await sleep(20);
    // The server speaks first after the junk (a tunnel packet from its network): where does it go?
    const b = new Uint8Array(100).fill(2);
    for (let i = 0; i < 3; i++) server.dgramSend(b, 0, b.length);
    server.flush();
    await sleep(20);
    await send(10);
    await waitFor(() => echoes() >= before + 13, 3000, "the server's datagrams and the echoes after the junk");
    expect(rogueGot, 'datagrams the server sent to the rogue address').toBe(0);
    expect(server.peerPort).toBe(pr.cs.port);
    expect(c.isClosed).toBe(false);
  });

  it('a rebinding client (its source port changes under a NAT): the server follows it after its first authenticated packet', async () => {
    const { net, pr, server, echoes, send } = await setUp();
    // The NAT: the client's datagrams reach the server from natPort; the server's answers to natPort reach the client.
    const nat = net.open();
    nat.onReadable(() => {
      const b = { bufs: [Buffer.alloc(2048)], sizes: new Uint32Array(1), addrs: new Uint8Array(36), segs: new Uint32Array(1) };
      while (nat.recv(b) > 0) pr.cs.inject(b.bufs[0]!.subarray(0, b.sizes[0]!), pr.port);
    });
    net.drop = (from, to, data) => {
      if (from !== pr.cs.port || to !== pr.port) return false;
      pr.ss.inject(data, nat.port);
      return true;
    };
    const before = echoes();
    await send(10);
    await waitFor(() => echoes() >= before + 10, 3000, 'echoes through the NAT');
    expect(server.peerPort).toBe(nat.port);
  });

  it('an authenticated packet replayed from elsewhere moves the server there only until validation fails; then it sends to the client again at once', async () => {
    const { net, pr, server, dcid } = await setUp();
    // The client's next packet is held back and replayed from the rogue port: the server (RFC 9000 §9.3) moves
    // there and validates the path, within the anti-amplification limit; the rogue never answers.
    let held: Uint8Array | null = null;
    net.drop = (from, to, data) => {
      if (held === null && from === pr.cs.port && to === pr.port && (data[0]! & 0x80) === 0 && data.subarray(1, 17).every((b, i) => b === dcid[i])) {
        held = data.slice();
        return true;
      }
      return false;
    };
    const rogue = net.open();
    const rogueAt: number[] = [];
    rogue.onReadable(() => {
      const b = { bufs: [Buffer.alloc(2048)], sizes: new Uint32Array(1), addrs: new Uint8Array(36), segs: new Uint32Array(1) };
      while (rogue.recv(b) > 0) rogueAt.push(performance.now());
    });
    const p = new Uint8Array(100).fill(3);
    server.dgramSend(p, 0, p.length); // the client acknowledges: that packet is held
    server.flush();
    await waitFor(() => held !== null, 3000, 'a client packet to replay');
    net.drop = null;
    pr.ss.inject(held!, rogue.port);
    await waitFor(() => server.peerPort === rogue.port, 3000, 'the server moving to the replayed address');
    // The client stays silent; the server keeps sending (a tunnel packet every 50 ms) until it is back.
    const start = performance.now();
    let back = 0;
    while (performance.now() - start < 15_000 && back === 0) {
      server.dgramSend(p, 0, p.length);
      server.flush();
      await sleep(50);
      if (server.peerPort === pr.cs.port) back = performance.now();
    }
    expect(back, 'validation of the rogue path failed and the server went back to the client').toBeGreaterThan(0);
    // Toward the unvalidated path only what the anti-amplification limit allows (3 × the one replayed packet).
    expect(rogueAt.length, 'datagrams the server sent to the replayed address').toBeLessThanOrEqual(8);
  }, 30_000);

  it('in the closing period the close goes to where the connection was, to the 1st, 2nd, 4th, 8th … packet only', async () => {
    const { net, pr, server, dcid } = await setUp();
    let toClient = 0;
    net.drop = (from, to) => {
      if (from === pr.port && to === pr.cs.port) toClient++;
      return true; // the client hears nothing more (and sends nothing that arrives)
    };
    const rogue = net.open();
    let rogueGot = 0;
    rogue.onReadable(() => {
      const b = { bufs: [Buffer.alloc(2048)], sizes: new Uint32Array(1), addrs: new Uint8Array(36), segs: new Uint32Array(1) };
      while (rogue.recv(b) > 0) rogueGot++;
    });
    server.close(true, 0, 'bye');
    server.flush();
    await waitFor(() => toClient >= 1, 1000, 'the close');
    const afterClose = toClient;
    expect(afterClose, 'the close itself').toBeGreaterThanOrEqual(1);
    // All within the closing period (three PTOs, at least 75 ms here with the 25 ms max_ack_delay).
    for (let i = 0; i < 64; i++) pr.ss.inject(Uint8Array.of(0x41, ...dcid, ...randomBytes(20)), rogue.port);
    await sleep(50);
    expect(rogueGot, 'closes sent to the rogue address').toBe(0);
    // 64 packets in the closing period: answered 7 times (the 1st, 2nd, 4th … 64th), not 64.
    expect(toClient - afterClose).toBeGreaterThanOrEqual(1);
    expect(toClient - afterClose).toBeLessThanOrEqual(7);
  });
});
