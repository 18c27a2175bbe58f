#!/usr/bin/env node
// Per-connection cost of the QUIC endpoint with many connections (issue #17):
// N client connections over loopback, each sending one 100-byte DATAGRAM per
// round that the server echoes back on the same connection; both endpoints
// in this process. Reports process CPU per echo and, with --count-calls, how
// many N-API calls into the addon each echo took (deterministic, unlike CPU
// on a shared box).
//
//   npx tsc -p tsconfig.json && node bench/quic-echo-many.mjs [--root DIR] [--conns 300] [--rounds 300] [--count-calls]
//
// --root DIR runs another checkout's dist/ (with its build/), for A/B runs
// interleaved by the caller. Bounded: rounds x conns datagrams, 5 ms apart per round.
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : dflt;
};
const root = opt('root', fileURLToPath(new URL('..', import.meta.url)));
const N = Number(opt('conns', 300));
const ROUNDS = Number(opt('rounds', 300));
const COUNT = args.includes('--count-calls');

const { QuicEndpoint } = await import(`${root}/dist/quic/endpoint.js`);
const { openNativeUdp } = await import(`${root}/dist/net/native-udp.js`);
const { createDevCa, issueServerCert } = await import(`${root}/dist/certs/pki.js`);
const { loadNative } = await import(`${root}/dist/native/addon.js`);

const counts = {};
let counting = false;
if (COUNT) {
  const nat = loadNative();
  for (const k of Object.keys(nat)) {
    const f = nat[k];
    if (typeof f !== 'function') continue;
    nat[k] = function (...a) {
      if (counting) counts[k] = (counts[k] ?? 0) + 1;
      return f.apply(this, a);
    };
  }
}

const buf = new Uint8Array(2048);
const ca = await createDevCa();
const srv = await issueServerCert(ca);
const echo = (conn, ev) => {
  if (ev !== 'readable') return;
  for (let n = conn.dgramRecv(buf); n !== null; n = conn.dgramRecv(buf)) conn.dgramSend(buf, 0, n);
};
const server = new QuicEndpoint({
  socket: openNativeUdp({ host: '127.0.0.1' }),
  server: { certPem: srv.certPem, keyPem: srv.keyPem, onConnection: (c) => (c.onEvent = echo) },
  maxConnections: N + 10,
});
const client = new QuicEndpoint({ socket: openNativeUdp({ host: '127.0.0.1' }), client: { caPem: ca.certPem }, maxConnections: N + 10 });
let got = 0;
const conns = [];
for (let i = 0; i < N; i++) {
  const c = client.connect('127.0.0.1', server.localAddress().port, 'localhost');
  await c.whenEstablished();
  c.onEvent = (conn, ev) => {
    if (ev === 'readable') while (conn.dgramRecv(buf) !== null) got++;
  };
  conns.push(c);
}
const payload = new Uint8Array(100);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
await sleep(200);
counting = true;
const u0 = process.cpuUsage();
const t0 = performance.now();
let sent = 0;
for (let r = 0; r < ROUNDS; r++) {
  for (const c of conns) if (c.dgramSend(payload, 0, payload.length)) sent++;
  client.flush();
  await sleep(5);
}
await sleep(300);
const u = process.cpuUsage(u0);
counting = false;
const out = { root, conns: N, sent, echoed: got, cpuUsPerEcho: +((u.user + u.system) / Math.max(1, got)).toFixed(2), wallS: +((performance.now() - t0) / 1000).toFixed(2) };
if (COUNT) out.napiCallsPerEcho = Object.fromEntries(Object.entries(counts).sort((a, b) => b[1] - a[1]).map(([k, v]) => [k, +(v / Math.max(1, got)).toFixed(2)]));
console.log(JSON.stringify(out));
process.exit(0);
