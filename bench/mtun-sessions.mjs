#!/usr/bin/env node
// mtun gateway capacity in sessions (issue #17): N concurrent agent
// sessions (each its own QUIC connection and CONNECT-IP stream, no TUN)
// against one running gateway, driven by several load-generator processes
// (bench/mtun-sessions-worker.mjs), each on its own source address.
//
// Busy ladder (--counts): for each N, time until all sessions are open with
// an assigned address, then every session sends ICMP echoes from its address
// to --target at --rate per second for --seconds. Reported: open time, reply
// ratio, echo RTT median/p99, gateway CPU and the load generator's CPU (both
// in % of one core, over the same window), gateway RSS growth per session,
// and the 1-minute load average of the box.
//
// Idle test (--idle N): N sessions opened in ramps, then held for
// --hold-seconds with QUIC keepalives only (--keepalive-ms); reported:
// sessions lost, gateway CPU over the hold, RSS per session.
//
// Run from the agent-side namespace after a build (bench/mtun-sessions.sh does this):
//   node bench/mtun-sessions.mjs --gateway 192.0.2.2:4435 --certs DIR --target 10.22.0.1 \
//     --gateway-pid PID --binds 192.0.2.11,192.0.2.12 --workers 2 --counts 1,10,100 --out sessions.json
import { fork } from 'node:child_process';
import { loadavg } from 'node:os';
import { readFileSync, writeFileSync } from 'node:fs';

const argv = process.argv.slice(2);
const arg = (name, dflt) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : dflt;
};
const GATEWAY = arg('gateway', '192.0.2.2:4435');
const CERTS = arg('certs');
const TARGET = arg('target', '10.22.0.1');
const GW_PID = Number(arg('gateway-pid', '0'));
const COUNTS = (arg('counts', '') || '').split(',').filter(Boolean).map(Number);
const SECONDS = Number(arg('seconds', '3'));
const RATE = Number(arg('rate', '50'));
const WARMUP_MS = 1000; // rttWarm*: echoes sent after this much of the echo phase
const BINDS = arg('binds', '0.0.0.0').split(',');
const WORKERS = Number(arg('workers', String(BINDS.length)));
const IDLE = Number(arg('idle', '0'));
const HOLD_SECONDS = Number(arg('hold-seconds', '300'));
const KEEPALIVE_MS = Number(arg('keepalive-ms', '15000'));
const LABEL = arg('label', '');
const OUT = arg('out');
const OPEN_TIMEOUT_MS = Number(arg('open-timeout-ms', '30000'));
// Handshakes in flight per load generator while opening (0 = all at once; the busy ladder's burst).
const OPEN_CONCURRENCY = Number(arg('open-concurrency', '0'));
const CLK_TCK = 100;
const WORKER = new URL('./mtun-sessions-worker.mjs', import.meta.url).pathname;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
function gwTicks() {
  const s = readFileSync(`/proc/${GW_PID}/stat`, 'utf8');
  const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
  return Number(f[11]) + Number(f[12]);
}
function gwRssKb() {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${GW_PID}/status`, 'utf8'));
  return m ? Number(m[1]) : null;
}
const pct = (s, p) => (s.length === 0 ? null : s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]);

/** A forked load generator; `next(ev)` resolves with its next message of that kind. */
function spawnWorker(index, count, offset, keepAliveMs) {
  const opts = { gateway: GATEWAY, bind: BINDS[index % BINDS.length], certs: CERTS, target: TARGET, count, offset, keepAliveMs, openConcurrency: OPEN_CONCURRENCY, openTimeoutMs: OPEN_TIMEOUT_MS, index, workers: WORKERS };
  const child = fork(WORKER, [JSON.stringify(opts)], { serialization: 'advanced', stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const waiting = new Map();
  child.on('message', (m) => {
    const w = waiting.get(m.ev);
    if (w) {
      waiting.delete(m.ev);
      w(m);
    }
  });
  const exited = new Promise((r) => child.on('exit', r));
  return {
    child,
    exited,
    ask(cmd, ev, extra = {}) {
      const p = new Promise((resolve, reject) => {
        waiting.set(ev, resolve);
        exited.then(() => reject(new Error(`load generator ${index} exited`)));
      });
      child.send({ cmd, ...extra });
      return p;
    },
  };
}

/** Splits n sessions over the workers: [count, first global index] each. */
function split(n) {
  const w = Math.min(WORKERS, n);
  let off = 0;
  return Array.from({ length: w }, (_, i) => {
    const c = Math.floor(n / w) + (i < n % w ? 1 : 0);
    off += c;
    return [c, off - c];
  });
}

async function closeAll(ws) {
  await Promise.allSettled(ws.map((w) => w.ask('close', 'closed')));
  await Promise.race([Promise.all(ws.map((w) => w.exited)), sleep(3000)]);
  for (const w of ws) w.child.kill('SIGKILL');
}

async function busy(n) {
  const rssBefore = gwRssKb();
  const ws = split(n).map(([c, off], i) => spawnWorker(i, c, off, 0));
  try {
    const t0 = performance.now();
    const opened = await Promise.all(ws.map((w) => w.ask('open', 'open')));
    const openMs = performance.now() - t0;
    const bad = opened.find((r) => !r.ok);
    if (bad) throw new Error(`quic/masque: ${bad.error}`);
    await sleep(500);
    const rssOpen = gwRssKb();
    const load1 = loadavg()[0];
    const startAtEpochMs = Date.now() + 200;
    const cpu0 = gwTicks();
    const w0 = performance.now();
    const rs = await Promise.all(ws.map((w) => w.ask('echo', 'echo', { startAtEpochMs, seconds: SECONDS, rate: RATE })));
    const wall = (performance.now() - w0 - 200) / 1000;
    const gwCpuSec = (gwTicks() - cpu0) / CLK_TCK;
    const sent = rs.reduce((a, r) => a + r.sent, 0);
    const replies = rs.reduce((a, r) => a + r.replies, 0);
    const all = new Float64Array(rs.reduce((a, r) => a + r.rtts.length, 0));
    let k = 0;
    for (const r of rs) {
      all.set(r.rtts, k);
      k += r.rtts.length;
    }
    all.sort();
    // The same, for echoes sent after the first second: the gateway's JIT warm-up and the first
    // packets of every flow (flow-table and telemetry set-up) fall in that second.
    const warm = [];
    for (const r of rs) for (let i = 0; i < r.rtts.length; i++) if (r.sentOffsets[i] >= WARMUP_MS) warm.push(r.rtts[i]);
    const warmAll = Float64Array.from(warm).sort();
    return {
      sessions: n,
      workers: ws.length,
      openMs,
      echoSent: sent,
      echoReplies: replies,
      replyRatio: sent ? replies / sent : 0,
      rttMedianMs: pct(all, 50),
      rttP99Ms: pct(all, 99),
      rttWarmMedianMs: warmAll.length ? pct(warmAll, 50) : null,
      rttWarmP99Ms: warmAll.length ? pct(warmAll, 99) : null,
      gatewayCpuPctOfCore: (100 * gwCpuSec) / wall,
      loadgenCpuPctOfCore: rs.reduce((a, r) => a + r.cpuMs, 0) / 10 / wall,
      gatewayCpuUsPerEcho: replies ? (gwCpuSec * 1e6) / replies : null,
      gatewayRssKbBefore: rssBefore,
      gatewayRssKbOpen: rssOpen,
      gatewayRssKbPerSession: rssBefore && rssOpen ? (rssOpen - rssBefore) / n : null,
      loadAvg1: load1,
    };
  } finally {
    await closeAll(ws);
    await sleep(Math.min(5000, 1000 + n * 2)); // let the gateway reap the sessions before the next N
  }
}

async function idle(n) {
  const rssBefore = gwRssKb();
  const parts = split(n);
  const ws = [];
  const t0 = performance.now();
  try {
    for (let i = 0; i < parts.length; i++) ws.push(spawnWorker(i, parts[i][0], parts[i][1], KEEPALIVE_MS));
    const opened = await Promise.all(ws.map((w) => w.ask('open', 'open')));
    const openMs = performance.now() - t0;
    const bad = opened.find((r) => !r.ok);
    if (bad) throw new Error(`quic/masque: ${bad.error}`);
    await sleep(2000);
    const rssOpen = gwRssKb();
    const cpu0 = gwTicks();
    const lc0 = (await Promise.all(ws.map((w) => w.ask('status', 'status')))).reduce((a, s) => a + s.cpuMs, 0);
    const h0 = performance.now();
    const loads = [];
    let lost = 0;
    while (performance.now() - h0 < HOLD_SECONDS * 1000) {
      await sleep(Math.min(10_000, HOLD_SECONDS * 1000 - (performance.now() - h0)));
      loads.push(loadavg()[0]);
      const st = await Promise.all(ws.map((w) => w.ask('status', 'status')));
      lost = st.reduce((a, s) => a + s.lost, 0);
      if (lost > 0) console.error(`bench: idle: ${lost} sessions lost after ${((performance.now() - h0) / 1000).toFixed(0)} s`);
    }
    const wall = (performance.now() - h0) / 1000;
    const gwCpuSec = (gwTicks() - cpu0) / CLK_TCK;
    // Again at the end of the hold: keep-alives have run (an idle connection frees its DATAGRAM rings then).
    const rssHeld = gwRssKb();
    const st = await Promise.all(ws.map((w) => w.ask('status', 'status')));
    const lc1 = st.reduce((a, s) => a + s.cpuMs, 0);
    return {
      idleSessions: n,
      workers: ws.length,
      openMs,
      holdSeconds: wall,
      keepAliveMs: KEEPALIVE_MS,
      sessionsLost: st.reduce((a, s) => a + s.lost, 0),
      sessionsOpenAtEnd: st.reduce((a, s) => a + s.open, 0),
      gatewayCpuPctOfCore: (100 * gwCpuSec) / wall,
      loadgenCpuPctOfCore: (lc1 - lc0) / 10 / wall,
      gatewayRssKbBefore: rssBefore,
      gatewayRssKbOpen: rssOpen,
      gatewayRssKbPerSession: rssBefore && rssOpen ? (rssOpen - rssBefore) / n : null,
      gatewayRssKbHeld: rssHeld,
      gatewayRssKbPerSessionHeld: rssBefore && rssHeld ? (rssHeld - rssBefore) / n : null,
      loadAvg1: loads.length ? loads.reduce((a, b) => a + b, 0) / loads.length : loadavg()[0],
    };
  } finally {
    await closeAll(ws);
  }
}

const out = { label: LABEL, target: TARGET, ratePerSession: RATE, seconds: SECONDS, workers: WORKERS, results: [] };
const save = () => OUT && writeFileSync(OUT, JSON.stringify(out, null, 1));
const tag = LABEL ? `${LABEL}: ` : '';
for (const n of COUNTS) {
  try {
    const r = await busy(n);
    out.results.push(r);
    console.log(`bench: ${tag}${String(n).padStart(4)} sessions: open in ${r.openMs.toFixed(0)} ms, replies ${(100 * r.replyRatio).toFixed(2)}%, rtt median ${r.rttMedianMs?.toFixed(2)} ms p99 ${r.rttP99Ms?.toFixed(2)} ms (after the first second: ${r.rttWarmMedianMs?.toFixed(2) ?? '-'} / ${r.rttWarmP99Ms?.toFixed(2) ?? '-'} ms), gateway ${r.gatewayCpuPctOfCore.toFixed(0)}% of a core, load generator ${r.loadgenCpuPctOfCore.toFixed(0)}% (${r.workers} procs), +${r.gatewayRssKbPerSession?.toFixed(1)} kB/session, load avg ${r.loadAvg1.toFixed(2)}`);
  } catch (e) {
    console.error(`bench: ${tag}${n} sessions failed: ${e.message}`);
    out.results.push({ sessions: n, error: e.message, loadAvg1: loadavg()[0] });
  }
  save();
}
if (IDLE > 0) {
  try {
    const r = await idle(IDLE);
    out.idle = r;
    console.log(`bench: ${tag}idle ${IDLE} sessions: open in ${(r.openMs / 1000).toFixed(1)} s, held ${r.holdSeconds.toFixed(0)} s (keepalive ${KEEPALIVE_MS} ms), lost ${r.sessionsLost}, gateway ${r.gatewayCpuPctOfCore.toFixed(1)}% of a core, load generator ${r.loadgenCpuPctOfCore.toFixed(1)}%, +${r.gatewayRssKbPerSession?.toFixed(1)} kB/session (+${r.gatewayRssKbPerSessionHeld?.toFixed(1)} at the end of the hold), load avg ${r.loadAvg1.toFixed(2)}`);
  } catch (e) {
    console.error(`bench: ${tag}idle ${IDLE} sessions failed: ${e.message}`);
    out.idle = { idleSessions: IDLE, error: e.message };
  }
  save();
}
process.exit(0);
