#!/usr/bin/env node
// The measurement matrix for bench/run.sh: every tunnel set up by
// bench/tunnels/<name>.sh is measured in turn, repetitions interleaved
// (A B C A B C …), and each raw observation is written to a JSON file.
//
//   node bench/tunnels/measure.mjs --nsa NS --nsb NS --work DIR --tunnels a,b,c --reps 3 --out results.json
//
// Per tunnel and repetition: ping RTT idle; iperf3 TCP 1 stream (with ping
// under load), again with the sender on cubic (`-C cubic`: the hosts here run
// BBR, most Linux hosts run cubic, and a loss-based TCP is what an AQM such
// as mtun's tun.queueDelay acts on), and 4 streams; a UDP rate search at 1200-byte payloads (paced
// by iperf3 -b; highest rate with < 1% loss). Around each iperf3 run the
// CPU ticks of the tunnel processes (/proc/<pid>/stat utime+stime) and of
// the whole box (/proc/stat) are read. Every child runs under a timeout.
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';

const argv = process.argv.slice(2);
const arg = (name, dflt) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : dflt;
};
const NSA = arg('nsa');
const NSB = arg('nsb');
const WORK = arg('work');
const TUNNELS = (arg('tunnels') ?? '').split(',').filter(Boolean);
const REPS = Number(arg('reps', '3'));
const OUT = arg('out');
const TCP_SECONDS = Number(arg('tcp-seconds', '5'));
const UDP_SECONDS = Number(arg('udp-seconds', '2'));
const UDP_PAYLOAD = 1200;
const LOSS_LIMIT_PCT = 1;
/** UDP offered rates (Mbit/s) the search walks along. */
const UDP_LADDER = [50, 75, 100, 150, 200, 250, 300, 400, 500, 650, 800, 1000, 1250, 1600, 2000, 2500, 3200, 4000, 5000, 6400, 8000, 10000];
const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim());
const NCPU = Number(execFileSync('nproc').toString().trim());
if (!NSA || !NSB || !WORK || !OUT || TUNNELS.length === 0) {
  console.error('usage: measure.mjs --nsa NS --nsb NS --work DIR --tunnels a,b --reps N --out FILE');
  process.exit(2);
}

// ------------------------------------------------------------------ helpers

function readEnv(t) {
  const env = {};
  for (const line of readFileSync(`${WORK}/${t}/env`, 'utf8').split('\n')) {
    const m = /^([A-Z_]+)=(.*)$/.exec(line);
    if (m) env[m[1]] = m[2].replace(/^"(.*)"$/, '$1');
  }
  const pids = (env.PIDS ?? '').split(' ').filter(Boolean).map((x) => {
    const [role, pid] = x.split(':');
    return { role, pid: Number(pid) };
  });
  return { name: t, src: env.SRC, dst: env.DST, dstNs: env.DSTNS || NSB, kind: env.KIND, mtu: Number(env.MTU), version: env.VERSION, pids };
}

/** Runs `ip netns exec NS cmd…`, resolves {code, out, err}; killed after timeoutMs. */
function run(ns, cmd, timeoutMs) {
  return new Promise((resolve) => {
    const c = spawn('ip', ['netns', 'exec', ns, ...cmd], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    c.stdout.on('data', (d) => (out += d));
    c.stderr.on('data', (d) => (err += d));
    const timer = setTimeout(() => {
      err += `\n(bench: killed after ${timeoutMs} ms)`;
      c.kill('SIGKILL');
    }, timeoutMs);
    c.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, out, err });
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function procTicks(pid) {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return Number(f[11]) + Number(f[12]); // utime, stime (fields 14, 15)
  } catch {
    return NaN;
  }
}

function boxTicks() {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const [user, nice, system, idle, iowait, irq, softirq, steal] = f;
  const total = f.slice(0, 8).reduce((a, b) => a + b, 0);
  return { busy: total - idle - iowait, softirq: softirq + irq, total, user: user + nice, system, steal };
}

function cpuSnapshot(t) {
  return { at: performance.now(), box: boxTicks(), procs: t.pids.map((p) => procTicks(p.pid)) };
}

function cpuDelta(t, a, b) {
  const wallSec = (b.at - a.at) / 1000;
  const procSec = t.pids.map((p, i) => (b.procs[i] - a.procs[i]) / CLK_TCK);
  return {
    wallSec,
    tunnelCpuSec: procSec.reduce((x, y) => x + y, 0),
    perProcessCpuSec: Object.fromEntries(t.pids.map((p, i) => [p.role, procSec[i]])),
    boxBusySec: (b.box.busy - a.box.busy) / CLK_TCK,
    boxSoftirqSec: (b.box.softirq - a.box.softirq) / CLK_TCK,
    ncpu: NCPU,
  };
}

function vmHwmKb(pid) {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

function pingTimes(out) {
  const ms = [];
  for (const m of out.matchAll(/time=([\d.]+) ms/g)) ms.push(Number(m[1]));
  const tx = /(\d+) packets transmitted, (\d+) received/.exec(out);
  return { samplesMs: ms, sent: tx ? Number(tx[1]) : 0, received: tx ? Number(tx[2]) : 0 };
}

// ------------------------------------------------------------------ iperf3 servers

// One server per tunnel, bound to its inner address: a wildcard-bound UDP
// server answers from whatever source the route to the client picks (with
// several tunnels' addresses on lo that can be another tunnel's address,
// which mtun's gateway then drops as out of scope). Same port 5201 for all.
// A tunnel whose env names DSTNS (mtun: a host behind the gateway) has its server there.
const servers = new Map();
async function startServer(t) {
  const c = spawn('ip', ['netns', 'exec', t.dstNs, 'iperf3', '-s', '-B', t.dst, '-p', '5201'], { stdio: 'ignore' });
  servers.set(t.name, c);
  c.on('exit', () => {
    if (servers.get(t.name) === c) servers.delete(t.name);
  });
  await sleep(300);
}
async function restartServer(t) {
  const c = servers.get(t.name);
  if (c) {
    c.kill('SIGKILL');
    await sleep(200);
  }
  await startServer(t);
}
function stopServers() {
  for (const c of servers.values()) c.kill('SIGKILL');
  servers.clear();
}

async function iperf(t, extra, seconds) {
  const r = await run(NSA, ['iperf3', '-c', t.dst, '-B', t.src, '-p', '5201', '-J', '-t', String(seconds), ...extra], (seconds + 15) * 1000);
  let j = null;
  try {
    j = JSON.parse(r.out);
  } catch {
    /* below */
  }
  if (r.code !== 0 || j === null || j.error) {
    const why = j?.error ?? r.err.trim().split('\n').pop();
    console.error(`bench: iperf3 ${t.name} ${extra.join(' ')} failed: ${why}`);
    await restartServer(t);
    return { error: String(why) };
  }
  return { json: j };
}

// ------------------------------------------------------------------ tests

async function pingIdle(t) {
  const r = await run(NSA, ['ping', '-n', '-c', '40', '-i', '0.02', '-W', '1', '-I', t.src, t.dst], 10_000);
  return { test: 'ping_idle', ...pingTimes(r.out) };
}

/** Same path at 500 echo requests/s: separates per-packet work from wake-up latency after idle. */
async function pingPaced(t) {
  const r = await run(NSA, ['ping', '-n', '-c', '200', '-i', '0.002', '-W', '1', '-I', t.src, t.dst], 10_000);
  return { test: 'ping_500pps', ...pingTimes(r.out) };
}

/** Busy share of the whole box over `ms` while nothing of ours runs: the other tenants' load. */
async function backgroundLoad(ms) {
  const a = boxTicks();
  await sleep(ms);
  const b = boxTicks();
  return { pctOfBox: (100 * (b.busy - a.busy)) / (b.total - a.total), seconds: ms / 1000 };
}

/** iperf3 TCP with `streams` streams; `withPing`: ping at 20/s alongside; `cc`: the sender's congestion control (-C), else the host's. */
async function tcp(t, streams, withPing, cc) {
  const a = cpuSnapshot(t);
  const pingP = withPing
    ? sleep(1000).then(() => run(NSA, ['ping', '-n', '-c', String(Math.max(10, (TCP_SECONDS - 2) * 20)), '-i', '0.05', '-W', '1', '-I', t.src, t.dst], (TCP_SECONDS + 5) * 1000))
    : null;
  // BENCH_TCP_REVERSE=1: the server sends (-R), the download direction (gateway → agent for mtun).
  const r = await iperf(t, ['-P', String(streams), ...(cc ? ['-C', cc] : []), ...(process.env.BENCH_TCP_REVERSE === '1' ? ['-R'] : [])], TCP_SECONDS);
  const b = cpuSnapshot(t);
  const ping = pingP ? pingTimes((await pingP).out) : null;
  const name = `tcp${streams}${cc ? `_${cc}` : ''}`;
  if (r.error) return { test: name, error: r.error };
  const end = r.json.end;
  return {
    test: name,
    bps: end.sum_received.bits_per_second,
    bytes: end.sum_received.bytes,
    retransmits: end.sum_sent.retransmits ?? null,
    cpu: cpuDelta(t, a, b),
    // iperf3's own CPU (percent of one core, sender and receiver), to count the test's CPU apart from other tenants.
    iperfCpuPct: end.cpu_utilization_percent ? { client: end.cpu_utilization_percent.host_total, server: end.cpu_utilization_percent.remote_total } : null,
    pingUnderLoad: ping,
  };
}

async function udpStep(t, mbps) {
  const a = cpuSnapshot(t);
  // -w 4M: the receiving iperf3's socket buffer (default ~200 KB) overflows first on
  // 2 busy cores, for every tunnel; the bigger buffer leaves the loss to the tunnel.
  const r = await iperf(t, ['-u', '-l', String(UDP_PAYLOAD), '-b', `${mbps}M`, '-w', '4M'], UDP_SECONDS);
  const b = cpuSnapshot(t);
  if (r.error) return { mbps, error: r.error };
  const s = r.json.end.sum;
  const lost = s.lost_packets ?? 0;
  const packets = s.packets ?? 0;
  const lossPct = packets > 0 ? (100 * lost) / packets : 100;
  return {
    mbps,
    sentBps: s.bits_per_second,
    packets,
    lost,
    lossPct,
    receivedBps: s.bits_per_second * (1 - lossPct / 100),
    cpu: cpuDelta(t, a, b),
  };
}

/** Walks the ladder from a start near `hintBps`: up while loss < 1%, down while above. */
async function udpSearch(t, hintBps) {
  const steps = [];
  const ok = (s) => !s.error && s.lossPct < LOSS_LIMIT_PCT;
  let i = 0;
  while (i + 1 < UDP_LADDER.length && UDP_LADDER[i + 1] * 1e6 <= hintBps * 0.5) i++;
  let s = await udpStep(t, UDP_LADDER[i]);
  steps.push(s);
  let best = null;
  if (ok(s)) {
    best = s;
    for (i++; i < UDP_LADDER.length; i++) {
      s = await udpStep(t, UDP_LADDER[i]);
      steps.push(s);
      if (!ok(s)) break;
      best = s;
    }
  } else {
    for (i--; i >= 0; i--) {
      s = await udpStep(t, UDP_LADDER[i]);
      steps.push(s);
      if (ok(s)) {
        best = s;
        break;
      }
    }
  }
  return { test: 'udp', maxMbpsUnder1pctLoss: best ? best.mbps : 0, atLadderTop: best?.mbps === UDP_LADDER[UDP_LADDER.length - 1], best, steps };
}

// ------------------------------------------------------------------ main

const tunnels = TUNNELS.map(readEnv);
const results = {
  startedAt: new Date().toISOString(),
  kernel: execFileSync('uname', ['-r']).toString().trim(),
  cpuModel: (/model name\s*:\s*(.*)/.exec(readFileSync('/proc/cpuinfo', 'utf8')) ?? [])[1] ?? 'unknown',
  ncpu: NCPU,
  node: process.version,
  iperf3: execFileSync('iperf3', ['--version']).toString().split('\n')[0].trim(),
  // The TCP sender's congestion control where iperf3 -c runs (per network namespace).
  tcpCongestionControl: execFileSync('ip', ['netns', 'exec', NSA, 'cat', '/proc/sys/net/ipv4/tcp_congestion_control']).toString().trim(),
  reps: REPS,
  tcpSeconds: TCP_SECONDS,
  udpSeconds: UDP_SECONDS,
  udpPayloadBytes: UDP_PAYLOAD,
  tunnels: tunnels.map((t) => ({ name: t.name, kind: t.kind, mtu: t.mtu, version: t.version, src: t.src, dst: t.dst, roles: t.pids.map((p) => p.role) })),
  runs: [],
  peakRssKb: {},
};
const save = () => writeFileSync(OUT, JSON.stringify(results, null, 1));

// Ctrl-C reaches iperf3/ping too (same process group); keep what was measured and leave.
let stopping = false;
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    stopping = true;
    stopServers();
    save();
    process.exit(130);
  });
}

results.backgroundBefore = await backgroundLoad(3000);
console.log(`bench: background load before: ${results.backgroundBefore.pctOfBox.toFixed(0)}% of the box`);
for (const t of tunnels) await startServer(t);
try {
  for (let rep = 0; rep < REPS && !stopping; rep++) {
    for (const t of tunnels) {
      if (stopping) break;
      const t0 = performance.now();
      const idle = await pingIdle(t);
      const paced = await pingPaced(t);
      const tcp1 = await tcp(t, 1, true);
      const tcp1cubic = await tcp(t, 1, true, 'cubic');
      const tcp4 = await tcp(t, 4, false);
      const udp = await udpSearch(t, tcp1.bps ?? 100e6);
      results.runs.push({ tunnel: t.name, rep, tests: [idle, paced, tcp1, tcp1cubic, tcp4, udp] });
      console.log(
        `bench: rep ${rep + 1}/${REPS} ${t.name.padEnd(13)} tcp1 ${((tcp1.bps ?? 0) / 1e9).toFixed(2)} Gbit/s, tcp4 ${((tcp4.bps ?? 0) / 1e9).toFixed(2)} Gbit/s, ` +
          `udp<1% ${udp.maxMbpsUnder1pctLoss} Mbit/s, ping ${median(idle.samplesMs).toFixed(3)} ms (${((performance.now() - t0) / 1000).toFixed(0)} s)`,
      );
      save();
    }
  }
  for (const t of tunnels) results.peakRssKb[t.name] = Object.fromEntries(t.pids.map((p) => [p.role, vmHwmKb(p.pid)]));
  stopServers();
  results.backgroundAfter = await backgroundLoad(3000);
  console.log(`bench: background load after: ${results.backgroundAfter.pctOfBox.toFixed(0)}% of the box`);
  results.finishedAt = new Date().toISOString();
  save();
} finally {
  stopServers();
}

function median(xs) {
  if (!xs || xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}
