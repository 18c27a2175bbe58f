/**
 * A flood of spoofed client Initials against a server endpoint (in-memory
 * sockets, `retry: 'off'` so that every one is admitted): each admitted
 * Initial opens a connection that ends at its first packet (the payload
 * does not decrypt), and the endpoint must release that connection's native
 * state when it ends, not when the garbage collector reaches the handle. The
 * regression behind the revert of the engine merge grew a gateway's RSS by
 * ~1.1 KB per spoofed Initial while its JS heap stayed flat; then the
 * gateway's `retry: 'auto'` admitted most of them (each closes at once, so
 * few handshakes were ever in progress). Since `retryAutoNewPerSecond`
 * 'auto' answers such a flood with Retry; admitted connections still come
 * from a real client's retransmits, from floods under that rate, or with
 * Retry off, and this is their path.
 */
import { randomBytes } from 'node:crypto';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { afterEach, describe, expect, it } from 'vitest';
import { MemoryNet } from './quic-memory-udp.js';
import { memoryEndpointPair, sleep, streamRoundTrip } from './quic-harness.js';

const cleanups: (() => void)[] = [];
afterEach(() => {
  while (cleanups.length > 0) cleanups.pop()!();
});

/** RFC 9000 §17.2.2: a v1 Initial with random 16-byte CIDs, no token, and a payload that does not decrypt. */
function spoofedInitial(): Uint8Array {
  const b = randomBytes(1200);
  b[0] = 0xc0 | (b[0]! & 0x0f);
  b.writeUInt32BE(1, 1);
  b[5] = 16;
  b[22] = 16;
  b[39] = 0;
  b[40] = 0x44; // length varint 0x049e (1182)
  b[41] = 0x9e;
  return b;
}

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;
/** RSS less the V8 heap's reservation (which follows JS garbage, not native memory), after GC. */
async function nativeRssAfterGc(): Promise<number> {
  for (let k = 0; k < 4; k++) {
    gc();
    await sleep(0);
  }
  const m = process.memoryUsage();
  return m.rss - m.heapTotal;
}

describe('QUIC endpoint under a spoofed-Initial flood (in-memory sockets)', () => {
  it('releases each admitted connection natively when it ends: RSS stays flat, service continues', async () => {
    const net = new MemoryNet();
    const { server, client, ss, close } = await memoryEndpointPair(net, { server: { retry: 'off' } });
    cleanups.push(close);
    const flood = async (n: number): Promise<void> => {
      for (let i = 0; i < n; i++) {
        ss.inject(spoofedInitial(), 20_000 + (i % 40_000));
        if (i % 16 === 15) await sleep(0); // about one accept budget per turn: most are admitted
      }
      while (server.counters.datagramsIn < sent + n || server.handshakesInProgress > 0) await sleep(1);
      sent += n;
    };
    let sent = 0;
    await flood(4_000); // warm-up: allocator arenas reach their working size
    const before = await nativeRssAfterGc();
    const accepted = server.counters.connectionsAccepted;
    const N = 12_000;
    await flood(N);
    const grown = (await nativeRssAfterGc()) - before;
    const admitted = server.counters.connectionsAccepted - accepted;
    console.log(
      `spoofed Initials: ${N}, admitted: ${admitted}, Retry: ${server.counters.retriesSent}, ` +
        `RSS growth outside the JS heap ${(grown / 1048576).toFixed(1)} MB (${Math.round(grown / N)} B per Initial)`,
    );
    // The path under test: with Retry off, every spoofed Initial is admitted (each closes at once).
    expect(admitted).toBeGreaterThan(N / 2);
    expect(server.connectionCount).toBe(0);
    // Leaking: ~44 KB per admitted Initial.
    expect(grown / N).toBeLessThan(2048);
    const c = client.connect('127.0.0.1', ss.port, 'localhost');
    await c.whenEstablished();
    expect(Buffer.from(await streamRoundTrip(c, 0, new TextEncoder().encode('alive'))).toString()).toBe('alive');
  }, 60_000);
});
