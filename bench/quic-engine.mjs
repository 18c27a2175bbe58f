#!/usr/bin/env node
// The two QUIC engines side by side through the same TypeScript endpoint
// (issue #13): bench/quic-datagram.mjs run unchanged with
// MTUN_QUIC_ENGINE=quiche and =ngtcp2, interleaved, with the per-thread CPU
// preload of bench/engine-proto (cpu-window.mjs). Reports µs of CPU per
// received datagram per side (client = main thread, server = worker) and the
// ngtcp2/quiche ratios, medians of the repetitions.
//
//   npx tsc -p tsconfig.json && node bench/quic-engine.mjs [--reps 3] [--seconds 3] [--socket native|dgram]
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadavg } from 'node:os';

const here = dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : dflt;
};
const REPS = Number(opt('reps', 3));
const SECONDS = Number(opt('seconds', 3));
const SOCKET = opt('socket', 'native');
const ENGINES = ['quiche', 'ngtcp2'];

/** One bench run; returns the first (uninstrumented) window of the chosen socket kind. */
function runOnce(engine) {
  const r = spawnSync(
    process.execPath,
    ['--import', join(here, 'engine-proto', 'cpu-window.mjs'), join(here, 'quic-datagram.mjs'), '--seconds', String(SECONDS)],
    { env: { ...process.env, MTUN_QUIC_ENGINE: engine }, encoding: 'utf8', timeout: 30 * SECONDS * 1000 + 60_000 },
  );
  if (r.status !== 0) throw new Error(`${engine}: bench exited ${r.status}: ${r.stderr.slice(-2000)}`);
  const lines = r.stdout.split('\n');
  const windows = lines.filter((l) => l.startsWith('cpu-window ')).map((l) => JSON.parse(l.slice(11)));
  const results = lines.filter((l) => /^(dgram|native) +gso=/.test(l));
  // quic-datagram.mjs runs the kinds in order (dgram, then native) before its instrumented pass.
  const k = results.findIndex((l) => l.startsWith(SOCKET));
  if (k < 0 || windows.length <= k) throw new Error(`${engine}: no ${SOCKET} result in:\n${r.stdout}`);
  const line = results[k];
  const received = Number(/received (\d+)/.exec(line)[1]);
  const pps = Number(/([\d,]+) dgram\/s/.exec(line)[1].replaceAll(',', ''));
  const w = windows[k];
  return {
    engine,
    pps,
    received,
    clientUs: (w.clientCpuS * 1e6) / received,
    serverUs: (w.serverCpuS * 1e6) / received,
    totalUs: (w.totalCpuS * 1e6) / received,
  };
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
};

const load0 = loadavg()[0];
const runs = [];
for (let rep = 0; rep < REPS; rep++) for (const e of ENGINES) runs.push(runOnce(e));
const load1 = loadavg()[0];

const summary = {};
for (const e of ENGINES) {
  const rs = runs.filter((r) => r.engine === e);
  summary[e] = {
    pps: median(rs.map((r) => r.pps)),
    clientUs: median(rs.map((r) => r.clientUs)),
    serverUs: median(rs.map((r) => r.serverUs)),
    totalUs: median(rs.map((r) => r.totalUs)),
  };
}
const f = (x) => x.toFixed(2);
console.log(`QUIC engines through the TypeScript endpoint, ${SOCKET} socket, ${SECONDS} s x ${REPS} interleaved reps, load ${load0.toFixed(1)} -> ${load1.toFixed(1)}`);
console.log('| engine | dgram/s | client µs CPU/dgram | server µs CPU/dgram | all threads µs CPU/dgram |');
console.log('|---|---|---|---|---|');
for (const e of ENGINES) {
  const s = summary[e];
  console.log(`| ${e} | ${s.pps.toLocaleString()} | ${f(s.clientUs)} | ${f(s.serverUs)} | ${f(s.totalUs)} |`);
}
const q = summary.quiche;
const n = summary.ngtcp2;
console.log(`ngtcp2/quiche CPU per datagram: client ${f(n.clientUs / q.clientUs)}x, server ${f(n.serverUs / q.serverUs)}x, all ${f(n.totalUs / q.totalUs)}x; throughput ${f(n.pps / q.pps)}x`);
console.log(`runs: ${JSON.stringify(runs.map((r) => ({ e: r.engine, pps: r.pps, c: +f(r.clientUs), s: +f(r.serverUs) })))}`);
