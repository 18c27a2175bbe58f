#!/usr/bin/env node
// mtun over HTTP/3 against mtun over HTTP/2 (UDP blocked), side by side in
// one run on the lab topology (src/lab/lab.ts, test/netns/topology.sh):
// TCP throughput (iperf3, 5 s) and ping RTT under that load, for
//   h3            — QUIC DATAGRAM frames (the default path)
//   h2            — DATAGRAM capsules on TCP, h2.sendQueueBytes at its default
//   h2-queue-64k  — a 64 KiB send queue (more drops, less standing delay)
//   h2-queue-16m  — a 16 MiB send queue: what "queue instead of drop" does
// each at every underlay loss rate of BENCH_LOSS (percent, default "0,1"):
// nftables in the agent's and the gateway's namespaces drops that share of
// the tunnel's own packets arriving there (`numgen random mod 100 < N`, TCP
// and UDP to or from the gateway port), so both directions lose N %; the
// kernel here has no netem. nftables sees what the veth carries: with
// segmentation offloads on, one QUIC GSO batch or one TSO burst is one skb,
// and dropping 1 % of skbs would drop 1 % of bursts; so the underlay veths
// (wa0, wg0) run with tso, gso, gro and tx-udp-segmentation off for the whole
// run (every variant alike), and the share actually dropped is counted
// against every tunnel packet seen. Variants and loss rates are interleaved over
// BENCH_REPS (2) repetitions. Root only; needs dist/ (npx tsc).
// Usage: node bench/h2-fallback.mjs [--out results.json] | --from results.json (re-print a table)
import { writeFileSync, readFileSync } from 'node:fs';
import { Lab, LAB } from '../dist/lab/lab.js';

const REPS = Number(process.env.BENCH_REPS ?? 2);
const LOSS_PCTS = (process.env.BENCH_LOSS ?? '0,1').split(',').map(Number);
const VARIANTS = [
  { name: 'h3', block: false, queue: null },
  { name: 'h2', block: true, queue: null },
  { name: 'h2-queue-64k', block: true, queue: 64 * 1024 },
  { name: 'h2-queue-16m', block: true, queue: 16 * 1024 * 1024 },
];
/** This bench's nftables table (apart from Lab.blockUdp's). */
const LOSS_TABLE = 'mtun_bench_loss';

function pct(xs, p) {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] : NaN;
}
const rtts = (out) => [...out.matchAll(/time=([\d.]+) ms/g)].map((m) => Number(m[1]));

/** The underlay veths carry one packet per skb (see the header); fails loudly when ethtool cannot. */
async function offloadsOff(lab) {
  for (const [role, dev] of [['agent', 'wa0'], ['gw', 'wg0']]) {
    const r = await lab.exec(role, 'ethtool', ['-K', dev, 'tso', 'off', 'gso', 'off', 'gro', 'off', 'tx-udp-segmentation', 'off']);
    if (r.code !== 0) throw new Error(`bench: ethtool -K ${dev} in ${role}: ${r.stderr.trim()}`);
  }
}

/** Drops `lossPct` % of the tunnel's packets (either transport) arriving in the gateway's and in the agent's namespace. */
async function addLoss(lab, lossPct) {
  for (const [role, match] of [['gw', 'dport'], ['agent', 'sport']]) {
    const tunnel = ['meta', 'l4proto', '{', 'tcp', ',', 'udp', '}', 'th', match, String(LAB.gatewayPort)];
    for (const args of [
      ['add', 'table', 'inet', LOSS_TABLE],
      ['add', 'chain', 'inet', LOSS_TABLE, 'in', '{', 'type', 'filter', 'hook', 'input', 'priority', '-10', ';', '}'],
      ['add', 'rule', 'inet', LOSS_TABLE, 'in', ...tunnel, 'counter'],
      ['add', 'rule', 'inet', LOSS_TABLE, 'in', ...tunnel, 'numgen', 'random', 'mod', '100', '<', String(lossPct), 'counter', 'drop'],
    ]) {
      const r = await lab.exec(role, 'nft', args);
      if (r.code !== 0) throw new Error(`bench: nft ${args.join(' ')} in ${role}: ${r.stderr.trim()}`);
    }
  }
}
/** Tunnel packets seen and dropped by the loss rules in both namespaces (first and second counter of each table). */
async function lossCounts(lab) {
  let seen = 0;
  let dropped = 0;
  for (const role of ['gw', 'agent']) {
    const c = [...(await lab.exec(role, 'nft', ['list', 'table', 'inet', LOSS_TABLE])).stdout.matchAll(/packets (\d+)/g)].map((m) => Number(m[1]));
    seen += c[0] ?? 0;
    dropped += c[1] ?? 0;
  }
  return { seen, dropped };
}
async function removeLoss(lab) {
  for (const role of ['gw', 'agent']) await lab.exec(role, 'nft', ['delete', 'table', 'inet', LOSS_TABLE]);
}

async function measure(lab, v, lossPct) {
  const original = { gw: readFileSync(lab.file('gateway.yaml'), 'utf8'), ag: readFileSync(lab.file('agent.yaml'), 'utf8') };
  const extra = v.queue !== null ? `h2:\n  sendQueueBytes: ${v.queue}\n` : '';
  writeFileSync(lab.file('gateway.yaml'), original.gw + extra);
  writeFileSync(lab.file('agent.yaml'), original.ag + extra);
  try {
    if (v.block) await lab.blockUdp();
    await lab.startGateway();
    await lab.startAgent('agent');
    // The loss starts once the tunnel is up (the measurement is of the data path, not of a lossy race).
    if (lossPct > 0) await addLoss(lab, lossPct);
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
    const after = JSON.parse((await lab.admin('agent', LAB.agentAdmin, '/status')).stdout).sessions[0]?.transport;
    const l = rtts(loaded.stdout);
    const u = lossPct > 0 ? await lossCounts(lab) : { seen: 0, dropped: 0 };
    return {
      variant: v.name,
      lossPct,
      transport,
      // A transport switch during the run (the loss judged as a dead path) would mix two transports in one row.
      transportAfter: after,
      mbps: j ? j.end.sum_received.bits_per_second / 1e6 : NaN,
      retransmits: j ? j.end.sum_sent.retransmits : NaN,
      idleRttMs: pct(rtts(idle.stdout), 50),
      loadedRttP50Ms: pct(l, 50),
      loadedRttP99Ms: pct(l, 99),
      loadedRttMaxMs: Math.max(...l),
      loadedPingLost: 45 - l.length,
      agentBackpressureDrops: drops,
      underlayDrops: u.dropped,
      underlayLossPct: u.seen > 0 ? (100 * u.dropped) / u.seen : 0,
    };
  } finally {
    await lab.stop('agent');
    await lab.stop('gateway');
    await lab.unblockUdp();
    await removeLoss(lab);
    writeFileSync(lab.file('gateway.yaml'), original.gw);
    writeFileSync(lab.file('agent.yaml'), original.ag);
  }
}

/** Median of numbers (NaN for none). */
function median(xs) {
  const s = xs.filter((x) => !Number.isNaN(x)).sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

/**
 * The table: per variant and loss rate, medians over the repetitions (TCP
 * throughput also min–max); "× h3" is the median of the per-repetition
 * ratios to h3 at the same loss rate in the same repetition (measured
 * minutes apart at most, so the box's other load moves both alike).
 */
function report(results) {
  const med = (rows, k) => median(rows.map((x) => x[k]));
  console.log('| underlay loss | variant | transport | TCP Mbit/s median (min–max) | × h3, same loss and repetition | inner retransmits | idle RTT ms | RTT under load p50 / p99 / max ms | pings lost under load (of 45) | agent backpressure drops | underlay packets dropped (share of the tunnel\'s) |');
  console.log('|---|---|---|---|---|---|---|---|---|---|---|');
  for (const loss of [...new Set(results.map((x) => x.lossPct))]) {
    for (const name of [...new Set(results.map((x) => x.variant))]) {
      const rows = results.filter((x) => x.variant === name && x.lossPct === loss);
      const t = [...new Set(rows.flatMap((x) => [x.transport, x.transportAfter]))].join('→');
      const ratios = rows.map((x) => x.mbps / (results.find((y) => y.variant === 'h3' && y.lossPct === loss && y.rep === x.rep)?.mbps ?? NaN));
      const mbps = rows.map((x) => x.mbps);
      const f = (k, d = 1) => med(rows, k).toFixed(d);
      console.log(`| ${loss} % | ${name} | ${t} | ${f('mbps', 0)} (${Math.min(...mbps).toFixed(0)}–${Math.max(...mbps).toFixed(0)}) | ${median(ratios).toFixed(2)} | ${f('retransmits', 0)} | ${f('idleRttMs', 2)} | ${f('loadedRttP50Ms')} / ${f('loadedRttP99Ms')} / ${f('loadedRttMaxMs')} | ${f('loadedPingLost', 0)} | ${f('agentBackpressureDrops', 0)} | ${f('underlayDrops', 0)} (${f('underlayLossPct', 2)} %) |`);
    }
  }
  console.log(`\n${results.length} runs, ${new Set(results.map((x) => x.rep)).size} repetitions.`);
}

const fromIdx = process.argv.indexOf('--from');
if (fromIdx > 0) {
  // Re-print the table of an earlier run's --out file.
  report(JSON.parse(readFileSync(process.argv[fromIdx + 1], 'utf8')));
  process.exit(0);
}
const lab = await Lab.up({ prefix: `mhb${process.pid % 10000}`, logLevel: 'warn' });
const results = [];
try {
  await lab.startServers();
  await offloadsOff(lab);
  for (let r = 0; r < REPS; r++) for (const loss of LOSS_PCTS) for (const v of VARIANTS) results.push({ rep: r, ...(await measure(lab, v, loss)) });
} finally {
  await lab.down();
}
report(results);
const outIdx = process.argv.indexOf('--out');
if (outIdx > 0) writeFileSync(process.argv[outIdx + 1], JSON.stringify(results, null, 2));
