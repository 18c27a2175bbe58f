#!/usr/bin/env node
// mtun over HTTP/3 against mtun over HTTP/2 (UDP blocked), side by side in
// one run on the lab topology (src/lab/lab.ts, test/netns/topology.sh):
// TCP throughput (iperf3, 5 s) and ping RTT under that load, for
//   h3            — QUIC DATAGRAM frames (the default path)
//   h2            — DATAGRAM capsules on TCP, h2.sendQueueBytes at its default
//   h2-queue-64k  — a 64 KiB send queue (more drops, less standing delay)
//   h2-queue-16m  — a 16 MiB send queue: what "queue instead of drop" does
// Variants are interleaved over BENCH_REPS (2) repetitions. Root only; needs dist/ (npx tsc).
// Usage: node bench/h2-fallback.mjs [--out results.json]
import { writeFileSync, readFileSync } from 'node:fs';
import { Lab, LAB } from '../dist/lab/lab.js';

const REPS = Number(process.env.BENCH_REPS ?? 2);
const VARIANTS = [
  { name: 'h3', block: false, queue: null },
  { name: 'h2', block: true, queue: null },
  { name: 'h2-queue-64k', block: true, queue: 64 * 1024 },
  { name: 'h2-queue-16m', block: true, queue: 16 * 1024 * 1024 },
];

function pct(xs, p) {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] : NaN;
}
const rtts = (out) => [...out.matchAll(/time=([\d.]+) ms/g)].map((m) => Number(m[1]));

async function measure(lab, v) {
  const original = { gw: readFileSync(lab.file('gateway.yaml'), 'utf8'), ag: readFileSync(lab.file('agent.yaml'), 'utf8') };
  const extra = v.queue !== null ? `h2:\n  sendQueueBytes: ${v.queue}\n` : '';
  writeFileSync(lab.file('gateway.yaml'), original.gw + extra);
  writeFileSync(lab.file('agent.yaml'), original.ag + extra);
  try {
    if (v.block) await lab.blockUdp();
    await lab.startGateway();
    await lab.startAgent('agent');
    const st = JSON.parse((await lab.admin('agent', LAB.agentAdmin, '/status')).stdout);
    const transport = st.sessions[0]?.transport;
    const idle = await lab.exec('client', 'ping', ['-c', '20', '-i', '0.05', LAB.server.v4]);
    const pingLoaded = lab.exec('client', 'ping', ['-c', '45', '-i', '0.1', LAB.server.v4], 20_000);
    await new Promise((r) => setTimeout(r, 300));
    const ip = await lab.exec('client', 'iperf3', ['-c', LAB.server.v4, '-t', '5', '-J'], 30_000);
    const loaded = await pingLoaded;
    const j = ip.code === 0 ? JSON.parse(ip.stdout) : null;
    const m = await lab.metrics('agent');
    const drops = [...m.matchAll(/^mtun_h2_drops_total\{[^}]*reason="backpressure"[^}]*\} (\S+)/gm)].reduce((a, x) => a + Number(x[1]), 0);
    const l = rtts(loaded.stdout);
    return {
      variant: v.name,
      transport,
      mbps: j ? j.end.sum_received.bits_per_second / 1e6 : NaN,
      retransmits: j ? j.end.sum_sent.retransmits : NaN,
      idleRttMs: pct(rtts(idle.stdout), 50),
      loadedRttP50Ms: pct(l, 50),
      loadedRttP99Ms: pct(l, 99),
      loadedRttMaxMs: Math.max(...l),
      loadedPingLost: 45 - l.length,
      agentBackpressureDrops: drops,
    };
  } finally {
    await lab.stop('agent');
    await lab.stop('gateway');
    await lab.unblockUdp();
    writeFileSync(lab.file('gateway.yaml'), original.gw);
    writeFileSync(lab.file('agent.yaml'), original.ag);
  }
}

const lab = await Lab.up({ prefix: `mhb${process.pid % 10000}`, logLevel: 'warn' });
const results = [];
try {
  await lab.startServers();
  for (let r = 0; r < REPS; r++) for (const v of VARIANTS) results.push(await measure(lab, v));
} finally {
  await lab.down();
}
const mean = (name, k) => {
  const xs = results.filter((x) => x.variant === name).map((x) => x[k]);
  return xs.reduce((a, b) => a + b, 0) / xs.length;
};
const h3 = mean('h3', 'mbps');
console.log(`| variant | transport | TCP Mbit/s | × h3 | retransmits | idle RTT ms | loaded RTT p50 / p99 / max ms | pings lost under load | agent backpressure drops |`);
console.log('|---|---|---|---|---|---|---|---|---|');
for (const v of VARIANTS) {
  const t = results.find((x) => x.variant === v.name)?.transport;
  const f = (k, d = 1) => mean(v.name, k).toFixed(d);
  console.log(`| ${v.name} | ${t} | ${f('mbps', 0)} | ${(mean(v.name, 'mbps') / h3).toFixed(2)} | ${f('retransmits', 0)} | ${f('idleRttMs', 2)} | ${f('loadedRttP50Ms')} / ${f('loadedRttP99Ms')} / ${f('loadedRttMaxMs')} | ${f('loadedPingLost', 1)} | ${f('agentBackpressureDrops', 0)} |`);
}
const outIdx = process.argv.indexOf('--out');
if (outIdx > 0) writeFileSync(process.argv[outIdx + 1], JSON.stringify(results, null, 2));
