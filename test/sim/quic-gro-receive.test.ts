/**
 * The endpoint's receive of UDP GRO trains (quicRecvSegments): a server
 * socket that coalesces what it receives, as the kernel's UDP GRO does,
 * and a client sending DATAGRAMs one per packet. Every DATAGRAM arrives, the
 * trains went to the engine whole, the counters add up datagram by
 * datagram, and the engine's bounded DATAGRAM queue is drained every 256
 * datagrams even when every slot is a whole train (independent review, 7
 * December: a `continue` skipped that dispatch).
 */
import { describe, expect, it } from 'vitest';
import { MemoryNet } from './quic-memory-udp.js';
import { countDatagrams, memoryEndpointPair, sleep } from './quic-harness.js';
import type { QuicConnection } from '../../src/quic/connection.js';

describe('GRO trains into the engine in one call', () => {
  it('delivers every DATAGRAM of trains, counts each datagram, and loses none to the receive queue', async () => {
    const net = new MemoryNet();
    let count: (() => number) | null = null;
    let conn: QuicConnection | null = null;
    const pair = await memoryEndpointPair(net, {
      serverGro: true,
      client: { dgramQueueDelay: null }, // no CoDel: the test sends faster than the path on purpose
      // Room for one dispatch interval (256 datagrams, and the rest of a 64-segment slot) and little more:
      // a receive that handed the engine its trains without dispatching would overflow it.
      serverEndpoint: { dgramQueueLen: 330 },
      server: {
        onConnection: (c) => {
          conn = c;
          count = countDatagrams(c);
        },
      },
    });
    try {
      const c = pair.client.connect('127.0.0.1', pair.port, 'localhost');
      await c.whenEstablished();
      const payload = new Uint8Array(1100).fill(7);
      const total = 4000;
      let sent = 0;
      const deadline = Date.now() + 20_000;
      while (sent < total && Date.now() < deadline) {
        while (sent < total && c.dgramSend(payload, 0, payload.length)) sent++;
        c.flush();
        await sleep(1);
      }
      expect(sent).toBe(total);
      while ((count?.() ?? 0) < total && Date.now() < deadline) await sleep(5);
      expect(count!()).toBe(total);
      expect(pair.ss.groSlots).toBeGreaterThan(10);
      const k = pair.server.counters;
      expect(k.groReceives).toBeGreaterThan(10);
      // Each datagram counted once, whether it went in as part of a train or alone.
      expect(k.datagramsIn).toBe(pair.ss.taken);
      expect(k.dropRecvError).toBe(0);
      expect(conn!.stats().dgramRecvQueueFullEvents).toBe(0);
    } finally {
      pair.close();
    }
  });
});
