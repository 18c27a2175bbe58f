#!/usr/bin/env node
// Builds the ngtcp2 prototype, makes throw-away certificates, and runs it side
// by side with today's quiche bench (bench/quic-datagram.mjs), repetitions
// interleaved; then the mTLS / SPIFFE checks and the keylog + tshark check.
//
//   npx tsc -p tsconfig.json && node bench/engine-proto/run.mjs [--reps 3] [--seconds 3]
//
// Every child runs under a timeout; the temp directory is removed on exit.
// Prints a Markdown summary (medians, min–max) and writes the raw results as
// JSON next to the certificates' temp dir (path printed at the end).
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '../..');
const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : dflt;
};
if (args.includes('--help')) {
  console.log('usage: node bench/engine-proto/run.mjs [--reps 3] [--seconds 3]  (after npx tsc -p tsconfig.json)');
  process.exit(0);
}
const REPS = Math.min(Math.max(opt('reps', 3), 1), 9);
const SECONDS = Math.min(Math.max(opt('seconds', 3), 0.5), 10);
const bin = join(here, 'build', 'engine-proto');
const log = (...xs) => console.error('[engine-proto]', ...xs);

if (!existsSync(join(root, 'dist/quic/endpoint.js'))) {
  console.error('engine-proto: dist/ is missing; run `npx tsc -p tsconfig.json` first');
  process.exit(2);
}
const make = spawnSync('make', ['-C', here, '-s'], { stdio: 'inherit', timeout: 120_000 });
if (make.status !== 0) process.exit(2);

const tmp = mkdtempSync(join(tmpdir(), 'engine-proto-'));
const certs = join(tmp, 'certs');
const keep = args.includes('--keep');
process.on('exit', () => {
  if (!keep) rmSync(tmp, { recursive: true, force: true });
});
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(130));
spawnSync('mkdir', [certs]);
const gen = spawnSync('bash', [join(here, 'gen-certs.sh'), certs], { stdio: 'inherit', timeout: 30_000 });
if (gen.status !== 0) process.exit(2);

/** Runs the prototype once; returns its JSON line, exit status and stderr. */
function proto(extra, env = {}) {
  const r = spawnSync(bin, ['--certs', certs, ...extra], {
    encoding: 'utf8',
    timeout: 60_000,
    env: { ...process.env, ...env },
  });
  const line = (r.stdout || '').trim().split('\n').pop();
  let json = null;
  try {
    json = JSON.parse(line);
  } catch {
    // reported below through status/stderr
  }
  return { status: r.status, json, stderr: r.stderr };
}

const RESULT_RE = /^(dgram|native)\s+gso=\S+ gro=\S+ payload=\d+B\s+([\d,]+) dgram\/s\s+([\d.]+) Gbps\s+\(offered (\d+), queued (\d+), received (\d+), lost pkts (\d+), rtt ([\d.]+) ms/;
const SPLIT_RE = /^(dgram|native)\s+(client|server): total ([\d.]+)\s+napi ([\d.]+)\s+socket ([\d.]+)\s+gc ([\d.]+)\s+ours ([\d.]+)/;

/** Runs bench/quic-datagram.mjs unchanged, with cpu-window.mjs preloaded. */
function quiche() {
  const r = spawnSync(process.execPath, ['--import', join(here, 'cpu-window.mjs'), join(root, 'bench/quic-datagram.mjs'), '--seconds', String(SECONDS)], {
    cwd: root,
    encoding: 'utf8',
    timeout: 240_000,
  });
  const windows = [];
  const runs = {};
  const split = {};
  for (const line of (r.stdout || '').split('\n')) {
    if (line.startsWith('cpu-window ')) windows.push(JSON.parse(line.slice(11)));
    let m = RESULT_RE.exec(line);
    if (m) runs[m[1]] = { pps: Number(m[2].replace(/,/g, '')), gbps: Number(m[3]), queued: Number(m[5]), received: Number(m[6]), lostPkts: Number(m[7]), rttMs: Number(m[8]) };
    m = SPLIT_RE.exec(line);
    if (m) split[`${m[1]} ${m[2]}`] = { total: +m[3], napi: +m[4], socket: +m[5], gc: +m[6], ours: +m[7] };
  }
  // Windows come in run order: dgram, native (plain), then the instrumented pair.
  const kinds = Object.keys(runs);
  kinds.forEach((k, i) => {
    const w = windows[i];
    const run = runs[k];
    if (!w) return;
    run.clientCpuUs = (w.clientCpuS * 1e6) / run.received;
    run.serverCpuUs = (w.serverCpuS * 1e6) / run.received;
    run.totalCpuUs = (w.totalCpuS * 1e6) / run.received;
    run.lossPct = Math.max(0, 100 * (1 - run.received / run.queued));
  });
  return { status: r.status, runs, split, stderr: r.stderr };
}

const raw = { when: new Date().toISOString(), seconds: SECONDS, reps: REPS, load: readFileSync('/proc/loadavg', 'utf8').trim(), proto: [], protoNoPacing: [], quiche: [] };
let failed = false;
for (let rep = 1; rep <= REPS; rep++) {
  for (const [key, extra] of [['proto', []], ['protoNoPacing', ['--no-pacing']]]) {
    const r = proto(['--seconds', String(SECONDS), ...extra]);
    if (r.status !== 0 || !r.json) {
      failed = true;
      log(`${key} rep ${rep} failed (status ${r.status}): ${r.json ? JSON.stringify(r.json) : r.stderr}`);
    } else log(`${key} rep ${rep}: ${r.json.delivered_per_s} dgram/s, ${r.json.gbps} Gbps, loss ${r.json.loss_pct} %`);
    raw[key].push(r.json);
  }
  const q = quiche();
  if (q.status !== 0 || !q.runs.native) {
    failed = true;
    log(`quiche rep ${rep} failed (status ${q.status}): ${q.stderr}`);
  } else log(`quiche rep ${rep}: native ${q.runs.native.pps} dgram/s, dgram ${q.runs.dgram?.pps} dgram/s`);
  raw.quiche.push(q);
}
raw.loadAfter = readFileSync('/proc/loadavg', 'utf8').trim();

// ---- mTLS: SPIFFE identity read from the client certificate; refusal without one.
const mtls = proto(['--seconds', '0.5', '--mtls']);
const refused = proto(['--seconds', '0.5', '--mtls', '--no-client-cert']);
raw.mtls = { ok: mtls.json, refused: refused.json };
const mtlsOk = mtls.status === 0 && mtls.json?.server.peer_id === 'spiffe://mtun.test/agent/a1';
const refusedOk = refused.status !== 0 && /alert 116/.test(refused.json?.server.error ?? '');
log(`mTLS: peer identity ${JSON.stringify(mtls.json?.server.peer_id)} ${mtlsOk ? 'ok' : 'FAILED'}; without a client certificate: ${refused.json?.server.error} ${refusedOk ? 'ok' : 'FAILED'}`);
failed ||= !mtlsOk || !refusedOk;

// ---- keylog: GnuTLS honours SSLKEYLOGFILE; tshark decrypts and finds DATAGRAM frames.
const keylog = join(tmp, 'keylog.txt');
raw.keylog = await keylogCheck();
log(`keylog: ${JSON.stringify(raw.keylog)}`);

async function keylogCheck() {
  const port = 20000 + (process.pid % 20000);
  const pcap = join(tmp, 'cap.pcapng');
  const canCapture = process.getuid?.() === 0 && spawnSync('tshark', ['--version'], { timeout: 10_000 }).status === 0;
  let cap = null;
  if (canCapture) {
    cap = spawn('tshark', ['-i', 'lo', '-f', `udp port ${port}`, '-c', '3000', '-a', 'duration:15', '-w', pcap], { stdio: ['ignore', 'ignore', 'pipe'] });
    // Wait (at most 10 s) until dumpcap says it captures; a busy box takes seconds.
    await new Promise((r) => {
      const t = setTimeout(r, 10_000);
      cap.stderr.on('data', (d) => {
        if (/Capture started|Capturing on/.test(String(d))) {
          clearTimeout(t);
          setTimeout(r, 500);
        }
      });
    });
  }
  // Without GSO/GRO, so that every QUIC packet is its own UDP datagram in the capture
  // (tshark dissects only the first short-header packet of a GSO super-datagram).
  const r = proto(['--seconds', '0.2', '--warmup', '0', '--port', String(port), '--no-gso', '--no-gro'], { SSLKEYLOGFILE: keylog });
  const labels = existsSync(keylog) ? [...new Set(readFileSync(keylog, 'utf8').split('\n').filter(Boolean).map((l) => l.split(' ')[0]))] : [];
  const out = { protoStatus: r.status, labels };
  if (!cap) return { ...out, tshark: 'skipped (needs root and tshark)' };
  await new Promise((r) => {
    const t = setTimeout(() => cap.kill('SIGINT'), 1500); // flush what was captured
    cap.on('exit', () => {
      clearTimeout(t);
      r();
    });
  });
  const dec = spawnSync('tshark', ['-r', pcap, '-o', `tls.keylog_file:${keylog}`, '-d', `udp.port==${port},quic`, '-Y', 'quic.frame_type == 0x31', '-T', 'fields', '-e', 'frame.number'], { encoding: 'utf8', timeout: 60_000 });
  const frames = (dec.stdout || '').split('\n').filter(Boolean).length;
    return { ...out, tsharkDatagramPackets: frames, capturedPacketsMax: 3000 };
}
failed ||= raw.keylog.labels.length < 4 || (typeof raw.keylog.tsharkDatagramPackets === 'number' && raw.keylog.tsharkDatagramPackets === 0);

// ---- summary
const med = (xs) => {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const fmt = (xs, digits) => {
  const v = xs.filter((x) => Number.isFinite(x));
  if (v.length === 0) return 'n/a';
  const f = (x) => x.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
  return `${f(med(v))} (${f(Math.min(...v))}–${f(Math.max(...v))})`;
};
const rows = [];
const protoRow = (name, rs) => {
  rs = rs.filter(Boolean);
  rows.push([name, fmt(rs.map((r) => r.delivered_per_s / 1000), 0), fmt(rs.map((r) => r.gbps), 2), fmt(rs.map((r) => r.loss_pct), 2), fmt(rs.map((r) => r.client.cpu_us_per_dgram), 2), fmt(rs.map((r) => r.server.cpu_us_per_dgram), 2), fmt(rs.map((r) => r.client.cpu_us_per_dgram + r.server.cpu_us_per_dgram), 2)]);
};
const quicheRow = (name, kind) => {
  const rs = raw.quiche.map((q) => q.runs[kind]).filter(Boolean);
  rows.push([name, fmt(rs.map((r) => r.pps / 1000), 0), fmt(rs.map((r) => r.gbps), 2), fmt(rs.map((r) => r.lossPct), 2), fmt(rs.map((r) => r.clientCpuUs), 2), fmt(rs.map((r) => r.serverCpuUs), 2), fmt(rs.map((r) => r.totalCpuUs), 2)]);
};
protoRow('ngtcp2 0.12 + GnuTLS, C, paced', raw.proto);
protoRow('ngtcp2 0.12 + GnuTLS, C, no pacing', raw.protoNoPacing);
quicheRow('quiche napi, native socket (GSO/GRO)', 'native');
quicheRow('quiche napi, node:dgram', 'dgram');
console.log(`\n### DATAGRAM 1200 B, client → server, 127.0.0.1, ${SECONDS} s × ${REPS} interleaved (load avg before ${raw.load.split(' ').slice(0, 3).join(' ')}, after ${raw.loadAfter.split(' ').slice(0, 3).join(' ')})\n`);
console.log('| engine | k dgram/s delivered | Gbit/s | loss % | client CPU µs/dgram | server CPU µs/dgram | both sides µs/dgram |');
console.log('|---|---|---|---|---|---|---|');
for (const r of rows) console.log(`| ${r.join(' | ')} |`);
console.log('\nngtcp2 prototype, wall-time split inside the window (µs per datagram, median; includes time preempted):');
for (const side of ['client', 'server']) {
  const parts = ['write', 'send', 'recv_sys', 'read_pkt', 'expiry'].map((k) => `${k} ${med(raw.proto.filter(Boolean).map((r) => r[side].split_us[k])).toFixed(2)}`);
  console.log(`  ${side}: ${parts.join(', ')}; content check ${med(raw.proto.filter(Boolean).map((r) => r.check_ns_per_dgram)).toFixed(0)} ns (in server read_pkt)`);
}
console.log('quiche instrumented run (busy µs per datagram, median):');
for (const k of ['native client', 'native server']) {
  const xs = raw.quiche.map((q) => q.split[k]).filter(Boolean);
  const parts = ['total', 'napi', 'socket', 'gc', 'ours'].map((f) => `${f} ${med(xs.map((x) => x[f])).toFixed(2)}`);
  console.log(`  ${k}: ${parts.join(', ')}`);
}
console.log(`\nmTLS: SPIFFE id from the client certificate ${mtlsOk ? 'read' : 'NOT read'} (${mtls.json?.server.peer_id}); without a client certificate the server ${refusedOk ? 'refused' : 'did NOT refuse'} (${refused.json?.server.error})`);
console.log(`keylog: ${raw.keylog.labels.join(', ')}; tshark DATAGRAM packets decrypted: ${raw.keylog.tsharkDatagramPackets ?? raw.keylog.tshark}`);
const out = join(tmpdir(), `engine-proto-${raw.when.replace(/[:.]/g, '-')}.json`);
writeFileSync(out, JSON.stringify(raw, null, 1));
console.log(`raw results: ${out}`);
process.exit(failed ? 1 : 0);
