/**
 * Native memory of the ngtcp2 engine's per-Initial work, measured in a child
 * `node --expose-gc` process: what a flood of spoofed client Initials makes
 * the engine do (accept + recv + close of the admitted ones; the first
 * server flight of real handshakes; header parse, Retry and Version
 * Negotiation are TypeScript, src/quic/long-header.ts),
 * with RSS read after GC between rounds, and connections either released at
 * once (quicFree, as the endpoint does when one ends) or left to their
 * finalizer. Regression for the revert of the engine merge: spoofed
 * Initials grew a gateway's RSS by ~1.1 KB each while its JS heap stayed
 * flat. Each admitted one (they close at their first packet, so `retry:
 * 'auto'` hardly ever engages) allocated both DATAGRAM rings up front (1024
 * slots each, ~2.9 MB) plus the ngtcp2 connection and TLS session, all freed
 * only when GC reached the handle; the glibc heap kept the pages touched.
 */
import { execFile } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { nativeAddonPath } from '../native/addon.js';
import { createDevCa, issueServerCert } from '../certs/pki.js';

/** Runs in the child; prints one JSON line of per-call RSS growth (bytes). */
const CHILD = String.raw`
const n = require(process.env.ADDON);
const { randomBytes } = require('node:crypto');
const { certPem, keyPem, caPem } = JSON.parse(process.env.PKI);
const enc = (s) => new TextEncoder().encode(s);
// The endpoint's settings (endpoint.ts buildConfig): 1350-byte payloads, DATAGRAM queues of 1024.
function config(server) {
  const c = server ? n.quicConfigNew(false, null, enc(keyPem), enc(certPem)) : n.quicConfigNew(false, enc(caPem), null, null);
  n.quicConfigSetAlpn(c, [enc('h3')]);
  const set = [[0, 30000], [1, 1350], [2, 1350], [3, 16 << 20], [5, 1 << 20], [7, 100], [11, 1], [12, 1024], [13, 1024], [9, 1], [18, 1000], [19, 10000]];
  for (const [f, v] of set) n.quicConfigSet(c, f, v);
  if (server) n.quicConfigSetBytes(c, 1, randomBytes(16));
  return c;
}
const server = config(true), client = config(false);
const out = new Uint8Array(1500);
const res = new Float64Array(13); // INFO_LENGTH (src/quic/engine-abi.ts)
/** RFC 9000 §17.2.2 Initial, v1, random 16-byte DCID/SCID, no token, random (undecryptable) payload. */
function spoofed() {
  const b = randomBytes(1200);
  b[0] = 0xc0 | (b[0] & 0x0f); b.writeUInt32BE(1, 1); b[5] = 16; b[22] = 16; b[39] = 0; b[40] = 0x44; b[41] = 0x9e;
  return b;
}
const addr = (i) => '10.' + ((i >> 16) & 255) + '.' + ((i >> 8) & 255) + '.' + (i & 255);
function drain(q) { while (n.quicSend(q, out) > 0); }
const calls = {
  // An admitted spoofed Initial: the connection closes on its first packet (undecryptable).
  acceptSpoofed(i, free) {
    const q = n.quicAccept(server, randomBytes(16), null, '127.0.0.1', 443, addr(i), 1024 + (i & 0x7fff));
    n.quicRecv(q, spoofed());
    drain(q);
    n.quicInfo(q, res);
    if (res[3] !== 1) throw new Error('spoofed Initial did not close the connection');
    if (free) n.quicFree(q);
  },
  // A real client Initial: the server answers with its flight, then both sides give up.
  handshake(i, free) {
    const c = n.quicConnect(client, 'localhost', randomBytes(16), addr(i), 1024 + (i & 0x7fff), '127.0.0.1', 443);
    const len = n.quicSend(c, out);
    const q = n.quicAccept(server, randomBytes(16), null, '127.0.0.1', 443, addr(i), 1024 + (i & 0x7fff));
    n.quicRecv(q, out.slice(0, len));
    drain(q);
    n.quicClose(q, false, 0, null);
    drain(q);
    n.quicClose(c, false, 0, null);
    if (free) {
      n.quicFree(q);
      n.quicFree(c);
    }
  },
};
// Node runs N-API finalizers after GC on the event loop: yield between collections.
async function rss() {
  for (let k = 0; k < 4; k++) {
    gc();
    await new Promise((r) => setImmediate(r));
  }
  return process.memoryUsage().rss;
}
const result = {};
(async () => {
// [call, count, free]: free releases the native state at once as the endpoint does
// when a connection ends (quicFree); otherwise the handle is dropped for GC to finalize.
for (const [name, count, free] of JSON.parse(process.env.PLAN)) {
  const f = calls[name];
  // Warm-up rounds: the allocator's arenas reach their working size (RSS
  // settles after two or three rounds of the same work when nothing leaks).
  const warm = 3, rounds = 3;
  let k = 0;
  for (let r = 0; r < warm; r++) {
    for (let i = 0; i < count; i++) f(k++, free);
    await rss();
  }
  const before = await rss();
  for (let r = 0; r < rounds; r++) {
    for (let i = 0; i < count; i++) f(k++, free);
    await rss(); // GC between rounds: dropped handles are finalized
  }
  result[name + (free ? '' : 'Gc')] = Math.round(((await rss()) - before) / (rounds * count));
}
process.stdout.write(JSON.stringify(result) + '\n');
})();
`;

function runChild(plan: [string, number, boolean][], pki: Record<string, string>): Promise<Record<string, number>> {
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      ['--expose-gc', '-e', CHILD],
      { env: { ...process.env, ADDON: nativeAddonPath(), PKI: JSON.stringify(pki), PLAN: JSON.stringify(plan) }, timeout: 60_000, encoding: 'utf8' },
      (e, stdout, stderr) => (e ? reject(new Error(`${e.message}\n${stderr}`)) : resolve(JSON.parse(stdout) as Record<string, number>)),
    );
  });
}

describe('ngtcp2 engine: native memory per Initial (child process, RSS after GC)', () => {
  it('spoofed-Initial work (accept + close; first server flight) does not grow RSS', async () => {
    const ca = await createDevCa();
    const srv = await issueServerCert(ca);
    const growth = await runChild(
      [
        ['acceptSpoofed', 1_000, false],
        ['acceptSpoofed', 1_000, true],
        ['handshake', 300, false],
        ['handshake', 300, true],
      ],
      { certPem: srv.certPem, keyPem: srv.keyPem, caPem: ca.certPem },
    );
    console.log(`RSS growth per call (bytes): ${JSON.stringify(growth)}`);
    // Before the fix (DATAGRAM rings of 1024 slots allocated at accept, freed
    // only by the handle's finalizer): tens of KB per accepted spoofed
    // Initial, over a hundred per handshake pair.
    expect(growth['acceptSpoofedGc']).toBeLessThan(8192);
    expect(growth['acceptSpoofed']).toBeLessThan(8192);
    expect(growth['handshakeGc']).toBeLessThan(16384);
    expect(growth['handshake']).toBeLessThan(16384);
  }, 60_000);
});
