#!/usr/bin/env node
// Turns one bench/run.sh result directory into Markdown tables (medians,
// min–max, ratios of mtun to each peer) and an SVG chart of TCP throughput.
//
//   node bench/report/report.mjs --results bench/results/<run> [--command "npm run bench"] [--update]
//
// Always writes <run>/report.md and <run>/tcp-throughput.svg. With --update
// it also replaces the part of BENCHMARKS.md between the bench:begin/end
// markers and writes bench/report/tcp-throughput.svg (the committed chart).
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { groupOf, summariseProfile } from './profile.mjs';
import { tcpChartSvg } from './svg.mjs';

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = join(HERE, '..', '..');
const argv = process.argv.slice(2);
const arg = (name, dflt) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : dflt;
};
const DIR = arg('results');
const COMMAND = arg('command', 'npm run bench');
const UPDATE = argv.includes('--update');
if (!DIR) {
  console.error('usage: report.mjs --results DIR [--command CMD] [--update]');
  process.exit(2);
}

// ------------------------------------------------------------------ statistics

export function median(xs) {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}
const finite = (xs) => xs.filter((x) => Number.isFinite(x));
const min = (xs) => (finite(xs).length ? Math.min(...finite(xs)) : NaN);
const max = (xs) => (finite(xs).length ? Math.max(...finite(xs)) : NaN);

/** {med, lo, hi, n} over repetitions. */
function stat(xs) {
  return { med: median(xs), lo: min(xs), hi: max(xs), n: finite(xs).length };
}

function fmt(v, digits) {
  return Number.isFinite(v) ? v.toFixed(digits) : '–';
}
function cell(s, digits) {
  if (!Number.isFinite(s.med)) return '–';
  if (s.n < 2) return fmt(s.med, digits);
  return `**${fmt(s.med, digits)}** (${fmt(s.lo, digits)}–${fmt(s.hi, digits)})`;
}
function ratio(a, b, digits = 2) {
  return Number.isFinite(a) && Number.isFinite(b) && b !== 0 ? `${(a / b).toFixed(digits)}×` : '–';
}

// ------------------------------------------------------------------ per-tunnel numbers

const matrix = JSON.parse(readFileSync(join(DIR, 'matrix.json'), 'utf8'));
const test = (run, name) => run.tests.find((t) => t.test === name);

function tunnelStats(t) {
  const runs = matrix.runs.filter((r) => r.tunnel === t.name);
  const get = (f) => runs.map((r) => {
    try {
      return f(r);
    } catch {
      return NaN;
    }
  });
  const cpuOf = (x) => x?.cpu;
  const tunnelCpu = (c) => (t.kind === 'user' ? c.tunnelCpuSec : NaN);
  return {
    tcp1: stat(get((r) => test(r, 'tcp1').bps / 1e9)),
    tcp4: stat(get((r) => test(r, 'tcp4').bps / 1e9)),
    retr1: stat(get((r) => test(r, 'tcp1').retransmits)),
    udp: stat(get((r) => (test(r, 'udp').best ? test(r, 'udp').best.receivedBps / 1e6 : 0))),
    udpAtTop: runs.some((r) => test(r, 'udp')?.atLadderTop),
    udpOffered: stat(get((r) => test(r, 'udp').maxMbpsUnder1pctLoss)),
    pingIdle: stat(get((r) => median(test(r, 'ping_idle').samplesMs))),
    ping500: stat(get((r) => median(test(r, 'ping_500pps').samplesMs))),
    pingLoad: stat(get((r) => median(test(r, 'tcp1').pingUnderLoad.samplesMs))),
    // The same with the sender on cubic (measure.mjs tcp1_cubic; absent in runs before 2026-12-06 23:50).
    pingLoadCubic: stat(get((r) => median(test(r, 'tcp1_cubic').pingUnderLoad.samplesMs))),
    tcp1Cubic: stat(get((r) => test(r, 'tcp1_cubic').bps / 1e9)),
    retr1Cubic: stat(get((r) => test(r, 'tcp1_cubic').retransmits)),
    pingLoadLoss: stat(get((r) => {
      const p = test(r, 'tcp1').pingUnderLoad;
      return p.sent ? (100 * (p.sent - p.received)) / p.sent : NaN;
    })),
    // CPU during the 1-stream TCP run: tunnel processes (userspace) and the whole box.
    cpuPct: stat(get((r) => {
      const c = cpuOf(test(r, 'tcp1'));
      return (100 * tunnelCpu(c)) / (c.wallSec * c.ncpu);
    })),
    cpuPerGbit: stat(get((r) => {
      const x = test(r, 'tcp1');
      return tunnelCpu(x.cpu) / ((x.bytes * 8) / 1e9);
    })),
    // Tunnel processes + both iperf3 processes + irq/softirq: the test's own CPU, without the other tenants.
    testPerGbit: stat(get((r) => {
      const x = test(r, 'tcp1');
      const ip = x.iperfCpuPct;
      const iperfSec = ip ? ((ip.client + ip.server) / 100) * x.cpu.wallSec : NaN;
      const tun = t.kind === 'user' ? x.cpu.tunnelCpuSec : 0;
      return (tun + iperfSec + x.cpu.boxSoftirqSec) / ((x.bytes * 8) / 1e9);
    })),
    // Whole-box busy time not explained by the test (tunnel + iperf3 + softirq): other tenants of a shared machine.
    otherPct: stat(get((r) => {
      const x = test(r, 'tcp1');
      const ip = x.iperfCpuPct;
      const ours = (t.kind === 'user' ? x.cpu.tunnelCpuSec : 0) + ((ip.client + ip.server) / 100) * x.cpu.wallSec + x.cpu.boxSoftirqSec;
      return Math.max(0, (100 * (x.cpu.boxBusySec - ours)) / (x.cpu.wallSec * x.cpu.ncpu));
    })),
    boxPct: stat(get((r) => {
      const c = cpuOf(test(r, 'tcp1'));
      return (100 * c.boxBusySec) / (c.wallSec * c.ncpu);
    })),
    boxPerGbit: stat(get((r) => {
      const x = test(r, 'tcp1');
      return x.cpu.boxBusySec / ((x.bytes * 8) / 1e9);
    })),
    softirqPerGbit: stat(get((r) => {
      const x = test(r, 'tcp1');
      return x.cpu.boxSoftirqSec / ((x.bytes * 8) / 1e9);
    })),
    rss: matrix.peakRssKb?.[t.name] ?? {},
  };
}

const tunnels = matrix.tunnels.map((t) => ({ ...t, s: tunnelStats(t) }));

// ------------------------------------------------------------------ markdown

const md = [];
md.push(`Run ${matrix.startedAt} → ${matrix.finishedAt ?? '(interrupted)'}; ${matrix.reps} repetitions interleaved; ` +
  `TCP ${matrix.tcpSeconds} s per test; UDP ${matrix.udpPayloadBytes}-byte payloads, ${matrix.udpSeconds} s per rate step.`);
md.push('');
md.push(`Command: \`${COMMAND}\` (as root). Kernel ${matrix.kernel}, ${matrix.ncpu} × ${matrix.cpuModel}, node ${matrix.node}, ${matrix.iperf3}.`);
md.push('');
const bg = (b) => (b ? `${b.pctOfBox.toFixed(0)}%` : '?');
md.push(`Other tenants of the box (busy share over 3 s with every tunnel idle): ${bg(matrix.backgroundBefore)} before the matrix, ${bg(matrix.backgroundAfter)} after.`);
md.push('');
md.push('| tunnel | version | inner MTU |');
md.push('|---|---|---|');
for (const t of tunnels) md.push(`| ${t.name} | ${t.version} | ${t.mtu} |`);
md.push('');
md.push('### Throughput and latency (median, min–max over repetitions)');
md.push('');
md.push('| tunnel | TCP 1 stream Gbit/s | TCP 4 streams Gbit/s | UDP 1200 B, max rate < 1% loss, Mbit/s received | ping idle (50/s) ms | ping at 500/s ms | ping under TCP load ms | TCP 1 stream retransmits |');
md.push('|---|---|---|---|---|---|---|---|');
for (const t of tunnels) {
  const s = t.s;
  md.push(`| ${t.name} | ${cell(s.tcp1, 2)} | ${cell(s.tcp4, 2)} | ${s.udpAtTop ? '≥ ' : ''}${cell(s.udp, 0)} | ${cell(s.pingIdle, 3)} | ${cell(s.ping500, 3)} | ${cell(s.pingLoad, 2)} | ${cell(s.retr1, 0)} |`);
}
md.push('');
md.push(`The TCP sender above uses the host's congestion control (${matrix.tcpCongestionControl ?? 'the kernel default'}). The same 1-stream test with the sender on cubic (\`iperf3 -C cubic\`), the default of most Linux hosts and the kind of TCP a queue-delay drop (mtun's \`tun.queueDelay\`) slows down:`);
md.push('');
md.push('| tunnel | TCP 1 stream, cubic, Gbit/s | ping under that load ms | retransmits |');
md.push('|---|---|---|---|');
for (const t of tunnels) md.push(`| ${t.name} | ${cell(t.s.tcp1Cubic, 2)} | ${cell(t.s.pingLoadCubic, 2)} | ${cell(t.s.retr1Cubic, 0)} |`);
md.push('');
md.push('### CPU and memory during the 1-stream TCP test');
md.push('');
md.push('"Tunnel processes" is utime+stime of the tunnel daemons on both sides (/proc/<pid>/stat); kernel tunnels have none — their work is in softirq. "Test total" adds both iperf3 processes (iperf3\'s own CPU report) and the box\'s irq+softirq time: the CPU this test cost, without the other tenants that "whole box" includes. Percent of the box = of all ' + `${matrix.ncpu} cores.`);
md.push('');
md.push('| tunnel | tunnel processes % of box | tunnel CPU-s per Gbit | test total CPU-s per Gbit | of which irq+softirq CPU-s per Gbit | whole box % busy | of which not this test (other tenants, kernel threads) % | peak RSS (VmHWM) MB |');
md.push('|---|---|---|---|---|---|---|---|');
for (const t of tunnels) {
  const s = t.s;
  const rss = Object.entries(s.rss).map(([role, kb]) => `${role === 'a' ? (t.name.startsWith('mtun') ? 'agent' : 'A') : (t.name.startsWith('mtun') ? 'gateway' : 'B')} ${kb ? (kb / 1024).toFixed(0) : '?'}`).join(', ') || '–';
  md.push(`| ${t.name} | ${cell(s.cpuPct, 0)} | ${cell(s.cpuPerGbit, 2)} | ${cell(s.testPerGbit, 2)} | ${cell(s.softirqPerGbit, 2)} | ${cell(s.boxPct, 0)} | ${cell(s.otherPct, 0)} | ${rss} |`);
}
md.push('');
const variants = tunnels.filter((t) => t.name.startsWith('mtun'));
if (variants.length > 0) {
  md.push('### mtun relative to each peer (ratio of medians; > 1× means mtun has more of it)');
  md.push('');
  md.push('| | TCP 1 stream | TCP 4 streams | UDP < 1% loss | ping idle | ping under load | ping under load, cubic sender | test total CPU-s per Gbit | tunnel CPU-s per Gbit |');
  md.push('|---|---|---|---|---|---|---|---|---|');
  for (const v of variants) {
    for (const t of tunnels) {
      if (t === v || (t.name.startsWith('mtun') && v.name !== 'mtun-offload')) continue;
      const a = v.s;
      const b = t.s;
      md.push(`| ${v.name} vs ${t.name} | ${ratio(a.tcp1.med, b.tcp1.med)} | ${ratio(a.tcp4.med, b.tcp4.med)} | ${ratio(a.udp.med, b.udp.med)} | ${ratio(a.pingIdle.med, b.pingIdle.med)} | ${ratio(a.pingLoad.med, b.pingLoad.med)} | ${ratio(a.pingLoadCubic.med, b.pingLoadCubic.med)} | ${ratio(a.testPerGbit.med, b.testPerGbit.med)} | ${ratio(a.cpuPerGbit.med, b.cpuPerGbit.med)} |`);
    }
  }
  md.push('');
}
md.push('![TCP throughput per tunnel](bench/report/tcp-throughput.svg)');
md.push('');

// ------------------------------------------------------------------ mtun alone

// Rows written by bench/mtun-sessions.sh (one per gateway label and step).
const sessionsFile = join(DIR, 'sessions', 'sessions.json');
if (existsSync(sessionsFile)) {
  const rows = JSON.parse(readFileSync(sessionsFile, 'utf8'));
  md.push('### mtun: sessions on one gateway (issue #17)');
  md.push('');
  md.push('Each session is its own QUIC connection + CONNECT-IP stream (no TUN) with its own identity (bearer token), from several load-generator processes (bench/mtun-sessions.sh); busy: ICMP echoes at 50/s per session to a host behind the gateway; idle: QUIC keepalives only. CPU in % of one core over the measured window; load average of the shared box beside each row.');
  md.push('');
  md.push('| gateway | sessions | all open in ms | echo replies | RTT median / p99 ms | gateway CPU | load-generator CPU | RSS growth per session kB | load avg |');
  md.push('|---|---|---|---|---|---|---|---|---|');
  for (const r of rows) {
    const n = r.sessions ?? `${r.idleSessions} idle`;
    if (r.error) {
      md.push(`| ${r.label} | ${n} | failed: ${r.error} | | | | | | ${fmt(r.loadAvg1, 1)} |`);
      continue;
    }
    const echo = r.idleSessions ? `${r.sessionsLost} lost in ${fmt(r.holdSeconds, 0)} s` : `${fmt(100 * r.replyRatio, 2)}%`;
    const rtt = r.idleSessions ? '' : `${fmt(r.rttMedianMs, 2)} / ${fmt(r.rttP99Ms, 2)}`;
    md.push(`| ${r.label} | ${n} | ${fmt(r.openMs, 0)} | ${echo} | ${rtt} | ${fmt(r.gatewayCpuPctOfCore, 1)}% | ${fmt(r.loadgenCpuPctOfCore, 1)}% | ${fmt(r.gatewayRssKbPerSession, 1)} | ${fmt(r.loadAvg1, 1)} |`);
  }
  md.push('');
}

const profRoot = join(DIR, 'profile');
const profDirs = existsSync(profRoot) ? readdirSync(profRoot).map((d) => join(profRoot, d)).filter((d) => existsSync(join(d, 'meta.json'))) : [];
for (const profDir of profDirs) {
  const meta = JSON.parse(readFileSync(join(profDir, 'meta.json'), 'utf8'));
  let load = null;
  try {
    load = JSON.parse(readFileSync(join(profDir, 'iperf3.json'), 'utf8')).end.sum_received.bits_per_second / 1e9;
  } catch {
    /* none */
  }
  const files = readdirSync(profDir).filter((f) => f.endsWith('.cpuprofile'));
  md.push(`### ${meta.variant ?? 'mtun'}: CPU profile under load`);
  md.push('');
  md.push(`\`node --cpu-prof\` on both daemons, one iperf3 TCP stream for ${meta.seconds} s` + (load ? ` (${load.toFixed(2)} Gbit/s)` : '') + '. Self time by layer, as a share of each process\'s busy (non-idle) time; µs per datagram = busy time of that layer / datagrams the process sent + received in the window (from /metrics). N-API calls have no frame of their own in a V8 profile, so the self time of the thin JS wrappers that make them is booked to the QUIC engine or to the syscalls (bench/report/profile.mjs lists them); the syscall rows include the kernel work done inside the call (the TUN write runs the receiving TCP stack, sendmmsg runs the veth and the peer\'s UDP receive).');
  md.push('');
  for (const [role, pidKey, dg] of [['agent', 'agentPid', meta.agentDatagrams], ['gateway', 'gatewayPid', meta.gatewayDatagrams]]) {
    const f = files.find((x) => x.includes(`.${meta[pidKey]}.`));
    if (!f) continue;
    const s = summariseProfile(join(profDir, f), 12);
    const nDg = dg.sent + dg.received;
    const per = (ms) => (nDg > 0 ? ((ms * 1000) / nDg).toFixed(2) : '–');
    md.push(`**${meta.variant ?? 'mtun'} ${role}** — ${s.busyMs.toFixed(0)} ms busy of ${s.totalMs.toFixed(0)} ms sampled; ${dg.sent} datagrams sent, ${dg.received} received; ${per(s.busyMs)} µs busy per datagram.`);
    md.push('');
    const groups = new Map();
    for (const l of s.layers) if (l.layer !== 'idle') groups.set(groupOf(l.layer), (groups.get(groupOf(l.layer)) ?? 0) + l.ms);
    md.push('| group | share of busy | µs per datagram |');
    md.push('|---|---|---|');
    for (const [g, ms] of [...groups].sort((a, b) => b[1] - a[1])) md.push(`| ${g} | ${fmt((100 * ms) / s.busyMs, 1)}% | ${per(ms)} |`);
    md.push('');
    md.push('| layer | share of busy | µs per datagram |');
    md.push('|---|---|---|');
    for (const l of s.layers.filter((x) => x.layer !== 'idle' && x.ms / s.busyMs >= 0.005)) md.push(`| ${l.layer} | ${fmt((100 * l.ms) / s.busyMs, 1)}% | ${per(l.ms)} |`);
    md.push('');
    md.push('| top functions (self) | where | share of busy |');
    md.push('|---|---|---|');
    for (const t of s.top) md.push(`| \`${t.fn}\` | ${t.where} | ${fmt((100 * t.ms) / s.busyMs, 1)}% |`);
    md.push('');
    const insp = s.layers.filter((l) => l.layer === 'mtun js: inspect').reduce((a, l) => a + l.ms, 0);
    if (role === 'agent') md.push(`Inspector (dist/inspect/: flow tracker, TCP state, L7 peek) share of the agent's busy CPU: **${fmt((100 * insp) / s.busyMs, 1)}%** (${per(insp)} µs per datagram).\n`);
  }
}

const body = md.join('\n');
const svg = tcpChartSvg(tunnels.map((t) => ({ name: t.name, tcp1: t.s.tcp1, tcp4: t.s.tcp4 })), `TCP throughput through each tunnel (iperf3, ${matrix.tcpSeconds} s; bar = median, line = min–max of ${matrix.reps})`, 1.2);
writeFileSync(join(DIR, 'report.md'), body + '\n');
writeFileSync(join(DIR, 'tcp-throughput.svg'), svg);
console.log(body);

if (UPDATE) {
  const path = join(ROOT, 'BENCHMARKS.md');
  const begin = '<!-- bench:begin (generated by bench/report/report.mjs; edit outside these markers) -->';
  const end = '<!-- bench:end -->';
  let doc = existsSync(path) ? readFileSync(path, 'utf8') : `# Benchmarks\n\n${begin}\n${end}\n`;
  const i = doc.indexOf(begin);
  const j = doc.indexOf(end);
  doc = i >= 0 && j > i ? doc.slice(0, i + begin.length) + '\n' + body + '\n' + doc.slice(j) : doc + `\n${begin}\n${body}\n${end}\n`;
  writeFileSync(path, doc);
  writeFileSync(join(HERE, 'tcp-throughput.svg'), svg);
  console.error('bench: BENCHMARKS.md and bench/report/tcp-throughput.svg updated');
}
