/**
 * What one spoofed Initial costs the QUIC endpoint, in-process and without
 * the kernel: a Retry-always server on in-memory sockets answers `count`
 * Initials (random CIDs, 1200 bytes; every tenth of an unknown version) and
 * one JSON line gives the busy µs per Initial (the generator's own work
 * included) and RSS after a full GC, warm-up and three rounds.
 *
 *   node --expose-gc --import ./bench/reliability/register.mjs bench/reliability/initial-cost.ts [count]
 */
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { QuicEndpoint } from '../../src/quic/endpoint.js';
import { allocUdpBatch } from '../../src/net/udp-batch.js';
import { MemoryNet } from '../../test/sim/quic-memory-udp.js';
import { getPki, sleep } from '../../test/sim/quic-harness.js';

const count = Number(process.argv[2] ?? 50_000);
const gc = (globalThis as { gc?: () => void }).gc;
if (gc === undefined) throw new Error('run with node --expose-gc');

const seed = randomBytes(8);
let serial = 0;
/** Distinct CIDs without a randomFillSync per packet (that costs more than the endpoint's work). */
function initial(version: number): Uint8Array {
  const pkt = new Uint8Array(1200).fill(0x5c);
  pkt.set([0xc3, version >>> 24, (version >> 16) & 0xff, (version >> 8) & 0xff, version & 0xff, 8], 0);
  pkt.set(seed, 6);
  new DataView(pkt.buffer).setUint32(10, serial++);
  pkt[14] = 8;
  pkt.set(seed, 15);
  pkt[23] = 0; // no token
  pkt[24] = 0x44; // Length, 2-byte varint
  pkt[25] = 0x9e;
  return pkt;
}

const p = await getPki();
const net = new MemoryNet();
const ss = net.open();
const sink = net.open(); // the "spoofed" senders: answers land here and are dropped
const sinkBatch = allocUdpBatch(16, 1500);
sink.onReadable(() => {
  while (sink.recv(sinkBatch) > 0);
});
const server = new QuicEndpoint({
  socket: ss,
  keylogPath: null,
  server: { certPem: p.server.certPem, keyPem: p.server.keyPem, retry: 'on', maxRetriesPerSecond: 1e9, onConnection: () => {} },
});

async function flood(n: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    ss.inject(initial(i % 10 === 9 ? 0x1a2a3a4a : 1), sink.port);
    if (i % 500 === 499) await sleep(0);
  }
  await sleep(20);
}

async function settledRss(): Promise<number> {
  gc!();
  await sleep(50);
  gc!();
  return process.memoryUsage().rss;
}

await flood(5_000); // warm-up: pools, JIT, slot buffers
const rounds: number[] = [await settledRss()];
let busyMs = 0;
for (let r = 0; r < 3; r++) {
  const t = performance.now();
  await flood(Math.round(count / 3));
  busyMs += performance.now() - t - 20;
  rounds.push(await settledRss());
}
const before = rounds[0]!;
const after = rounds[3]!;
const c = server.counters;
console.log(
  JSON.stringify({
    count,
    usPerInitial: Math.round((busyMs * 1000 / count) * 100) / 100,
    rssGrowthBytes: after - before,
    rssRoundsMB: rounds.map((b) => Math.round(b / 1e5) / 10),
    retriesSent: c.retriesSent,
    versionNegotiationsSent: c.versionNegotiationsSent,
    connectionsAccepted: c.connectionsAccepted,
  }),
);
server.close();
ss.close();
sink.close();
