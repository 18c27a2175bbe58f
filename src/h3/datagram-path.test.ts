import { describe, expect, it } from 'vitest';
import { H3Connection } from './connection.js';
import { memoryTransportPair, pump } from './testing/memory-transport.js';
import { H3_DATAGRAM_HEADROOM, type TunnelStream } from './tunnel-stream.js';

/**
 * A client and a server H3Connection over memory transports with one
 * CONNECT-IP tunnel open; `received()` counts datagrams the server's tunnel got.
 */
function openTunnel(seen?: (buf: Uint8Array, off: number, len: number) => void) {
  const [ct, st] = memoryTransportPair();
  let got = 0;
  const srv = new H3Connection(st, {
    onConnect: (r) => void r.accept({ onCapsule() {}, onDatagram: (b, o, l) => {
      got++;
      seen?.(b, o, l);
    }, onClose() {} }),
  });
  const cli = new H3Connection(ct, {});
  srv.start();
  cli.start();
  const run = () => pump({ t: ct, h: cli }, { t: st, h: srv });
  run();
  let tunnel: TunnelStream | null = null;
  cli.connect({ protocol: 'connect-ip', authority: 'gw', path: '/ip' }, { onResponse: (_s, _h, t) => void (tunnel = t), onCapsule() {}, onDatagram() {}, onClose() {} });
  run();
  expect(tunnel).not.toBeNull();
  return { ct, st, srv, tunnel: tunnel as unknown as TunnelStream, received: () => got };
}

/**
 * Cost of our own HTTP Datagram path (QSID write/parse, stream lookup,
 * handler call) with the QUIC calls stubbed out. The issue budgets "well
 * under 1 µs" per packet on top of quiche; the bound here is loose (2 µs for
 * send + receive) and taken from the best of 12 short rounds, so a machine
 * shared with other CPU-heavy work (load average 24 on 2 cores once gave a
 * single 3-round best of 2.8 µs) does not flake; the figure is printed.
 * Measured here: 0.2 to 0.5 µs send + receive.
 */
describe('HTTP Datagram hot path cost', () => {
  it('send + receive of a 1200-byte datagram costs well under 1 µs of our code', () => {
    const { ct, st, srv, tunnel, received } = openTunnel();
    // Stub the QUIC datagram calls: accept every send, replay `left` copies of one datagram on receive.
    let sent = 0;
    ct.dgramSend = () => (sent++, true);
    let left = 0;
    const wire = new Uint8Array(1201); // QSID 0, context ID 0, payload
    st.dgramRecvBatch = (buf, lens) => {
      let k = 0;
      for (let off = 0; left > 0 && k < lens.length && off + wire.length <= buf.length; off += wire.length) {
        left--;
        buf[off] = wire[0]!;
        lens[k++] = wire.length;
      }
      return k;
    };
    const buf = new Uint8Array(H3_DATAGRAM_HEADROOM + 1200);
    const N = 64_000;
    const ROUNDS = 12;
    let best = Infinity;
    let bestSend = 0;
    let bestRecv = 0;
    for (let round = 0; round < ROUNDS; round++) {
      const t0 = process.hrtime.bigint();
      for (let i = 0; i < N; i++) tunnel.sendDatagram(buf, H3_DATAGRAM_HEADROOM, 1200);
      const t1 = process.hrtime.bigint();
      for (let i = 0; i < N / 64; i++) {
        left = 64;
        srv.handleDatagrams();
      }
      const t2 = process.hrtime.bigint();
      const send = Number(t1 - t0) / N;
      const recv = Number(t2 - t1) / N;
      if (send + recv < best) {
        best = send + recv;
        bestSend = send;
        bestRecv = recv;
      }
    }
    console.log(`h3 datagram path: send ${bestSend.toFixed(0)} ns/pkt, receive ${bestRecv.toFixed(0)} ns/pkt (QUIC calls stubbed)`);
    expect(sent).toBe(ROUNDS * N);
    expect(received()).toBe(ROUNDS * N);
    expect(best).toBeLessThan(2000);
  });
});

describe('datagram-only readable events', () => {
  it('read the datagrams without listing streams or walking them for pending writes', () => {
    const { st, srv, tunnel, received } = openTunnel();
    let listed = 0;
    const list = st.readableStreams.bind(st);
    st.readableStreams = () => (listed++, list());
    const buf = new Uint8Array(H3_DATAGRAM_HEADROOM + 100);
    for (let i = 0; i < 10; i++) tunnel.sendDatagram(buf, H3_DATAGRAM_HEADROOM, 100);
    // What the QUIC driver does on `readable` (attachH3).
    srv.handleReadable();
    srv.handleDatagrams();
    srv.handleWritable();
    expect(received()).toBe(10);
    expect(listed).toBe(0);
    // Stream data still gets listed and read.
    tunnel.sendCapsule(0x2a, new Uint8Array(4));
    srv.handleReadable();
    expect(listed).toBe(1);
  });
});

describe('HTTP Datagrams read in batches (QuicTransport.dgramRecvBatch)', () => {
  it('hands each datagram to its tunnel in order, at its own offset', () => {
    const payloads: number[][] = [];
    const { srv, tunnel } = openTunnel((b, o, l) => payloads.push([l, b[o]!, b[o + l - 1]!]));
    const sizes = [1, 1190, 7, 300, 1190, 2];
    for (const [i, n] of sizes.entries()) {
      const buf = new Uint8Array(H3_DATAGRAM_HEADROOM + n).fill(i + 1);
      buf[H3_DATAGRAM_HEADROOM] = 0; // context ID 0 for the first byte, then i + 1
      expect(tunnel.sendDatagram(buf, H3_DATAGRAM_HEADROOM, n)).toBe(true);
    }
    srv.handleDatagrams();
    // The payload as the tunnel sees it (after the quarter stream ID): [length, first byte (context ID 0), last byte].
    expect(payloads).toEqual(sizes.map((n, i) => [n, 0, n > 1 ? i + 1 : 0]));
    expect(srv.counters.datagramsReceived).toBe(sizes.length);
  });

  it('counts the rest of a batch as dropped when a datagram in it closes the connection', () => {
    const { st, srv, received } = openTunnel();
    st.injectDatagram(Uint8Array.of(0, 0, 1)); // quarter stream ID 0 (the tunnel), context 0
    st.injectDatagram(new Uint8Array(0)); // too short for a quarter stream ID: H3_DATAGRAM_ERROR closes the connection (RFC 9297 §2.1)
    st.injectDatagram(Uint8Array.of(0, 0, 2));
    st.injectDatagram(Uint8Array.of(0, 0, 3));
    srv.handleDatagrams();
    expect(received()).toBe(1);
    expect(srv.counters.datagramsReceived).toBe(4);
    expect(srv.counters.datagramsDroppedConnectionClosed).toBe(2);
  });

  it('stops at a handler that throws: the error comes out, the rest of the batch is counted as dropped', () => {
    let n = 0;
    const { st, srv } = openTunnel(() => {
      if (++n === 2) throw new Error('handler bug');
    });
    for (let i = 1; i <= 4; i++) st.injectDatagram(Uint8Array.of(0, 0, i));
    expect(() => srv.handleDatagrams()).toThrow('handler bug');
    expect(n).toBe(2);
    expect(srv.counters.datagramsReceived).toBe(4);
    expect(srv.counters.datagramsDroppedConnectionClosed).toBe(2);
  });
});
