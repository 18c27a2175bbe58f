#!/usr/bin/env node
// Summarises a V8 .cpuprofile (node --cpu-prof) of an mtun daemon: self time
// per function (top N) and per layer — our JS by dist/ directory, calls into
// the QUIC engine in our C addon (native calls made from dist/quic/ngtcp2.js),
// calls into the addon's sockets and TUN (from dist/net/ or dist/tun/), node internals,
// garbage collection, idle.
//
//   node bench/report/profile.mjs FILE.cpuprofile [--top 15] [--json]
import { readFileSync } from 'node:fs';

/**
 * Reads a profile and returns {totalMs, busyMs, layers: [{layer, ms}], top: [{fn, where, layer, ms}]}.
 * `busyMs` excludes "(idle)". Time of each sample is its following timeDelta.
 */
export function summariseProfile(path, topN = 15) {
  const p = JSON.parse(readFileSync(path, 'utf8'));
  const byId = new Map();
  for (const n of p.nodes) byId.set(n.id, n);
  const parent = new Map();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n);
  const selfUs = new Map();
  for (let i = 0; i < p.samples.length; i++) {
    const d = p.timeDeltas[i + 1] ?? 0;
    selfUs.set(p.samples[i], (selfUs.get(p.samples[i]) ?? 0) + d);
  }
  const layers = new Map();
  const fns = new Map();
  let totalUs = 0;
  let idleUs = 0;
  for (const [id, us] of selfUs) {
    const n = byId.get(id);
    const layer = layerOf(n, parent);
    totalUs += us;
    if (layer === 'idle') idleUs += us;
    layers.set(layer, (layers.get(layer) ?? 0) + us);
    const where = n.callFrame.url === '' ? `native, called from ${shortUrl(parent.get(id)?.callFrame.url ?? '')}` : `${shortUrl(n.callFrame.url)}:${n.callFrame.lineNumber + 1}`;
    const key = `${n.callFrame.functionName || '(anonymous)'}\u0000${where}`;
    const f = fns.get(key) ?? { fn: n.callFrame.functionName || '(anonymous)', where, layer, us: 0 };
    f.us += us;
    fns.set(key, f);
  }
  return {
    totalMs: totalUs / 1000,
    busyMs: (totalUs - idleUs) / 1000,
    layers: [...layers].map(([layer, us]) => ({ layer, ms: us / 1000 })).sort((a, b) => b.ms - a.ms),
    top: [...fns.values()].filter((f) => f.layer !== 'idle').sort((a, b) => b.us - a.us).slice(0, topN).map((f) => ({ fn: f.fn, where: f.where, layer: f.layer, ms: f.us / 1000 })),
  };
}

function shortUrl(url) {
  const m = /\/(dist|node_modules)\/(.*)$/.exec(url);
  if (m) return m[1] === 'dist' ? m[2] : `node_modules/${m[2].split('/')[0].startsWith('@') ? m[2].split('/').slice(0, 2).join('/') : m[2].split('/')[0]}`;
  return url.replace(/^file:\/\//, '') || '(native)';
}

/**
 * Native calls made through N-API do not get frames of their own in a V8
 * profile: their time is the self time of the JS function that made the
 * call. These wrappers do little besides that call, so their self time is
 * booked to the native side (an upper bound: their own JS is included).
 */
const NATIVE_WRAPPERS = [
  [/\/dist\/quic\/ngtcp2\.js$/, 'recv', 'QUIC engine: recv (decrypt, frames)'],
  [/\/dist\/quic\/ngtcp2\.js$/, 'recvSegments', 'QUIC engine: recv (decrypt, frames)'],
  [/\/dist\/quic\/ngtcp2\.js$/, 'send', 'QUIC engine: send (packetize, encrypt)'],
  [/\/dist\/quic\/ngtcp2\.js$/, 'drain', 'QUIC engine: send (packetize, encrypt)'],
  [/\/dist\/quic\/ngtcp2\.js$/, '*', 'QUIC engine: other calls (dgram queues, streams, timers)'],
  [/\/dist\/net\/native-udp\.js$/, 'send', 'syscalls: UDP sendmmsg (+ kernel stack)'],
  [/\/dist\/net\/native-udp\.js$/, 'recv', 'syscalls: UDP recvmmsg'],
  [/\/dist\/tun\/native-tun\.js$/, 'write', 'syscalls: TUN write (+ GRO in C, kernel stack)'],
  [/\/dist\/tun\/native-tun\.js$/, 'read', 'syscalls: TUN read'],
];

function layerOf(n, parent) {
  const name = n.callFrame.functionName;
  const url = n.callFrame.url;
  if (name === '(idle)') return 'idle';
  if (name === '(garbage collector)') return 'gc';
  if (name === '(program)' || name === '(root)') return 'v8/native (unattributed)';
  for (const [re, fn, layer] of NATIVE_WRAPPERS) if (re.test(url) && (fn === '*' || fn === name)) return layer;
  if (url === '') return 'node internals';
  const m = /\/dist\/([^/]+)\//.exec(url);
  if (m) return `mtun js: ${m[1]}`;
  if (url.includes('/node_modules/')) return `deps: ${shortUrl(url).replace('node_modules/', '')}`;
  return 'node internals';
}

/** Coarse group of a layer: QUIC engine, syscalls, ours (mtun JS), gc, other. */
export function groupOf(layer) {
  if (layer.startsWith('QUIC engine')) return 'QUIC engine (addon)';
  if (layer.startsWith('syscalls')) return 'syscalls + kernel';
  if (layer.startsWith('mtun js')) return 'mtun JS';
  if (layer === 'gc') return 'GC';
  return 'node/deps/other';
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const file = process.argv[2];
  const i = process.argv.indexOf('--top');
  const s = summariseProfile(file, i > 0 ? Number(process.argv[i + 1]) : 15);
  if (process.argv.includes('--json')) {
    console.log(JSON.stringify(s, null, 1));
  } else {
    console.log(`${file}: ${s.totalMs.toFixed(0)} ms sampled, ${s.busyMs.toFixed(0)} ms busy`);
    for (const l of s.layers) console.log(`  ${(100 * l.ms / s.busyMs).toFixed(1).padStart(5)}%  ${l.layer}`);
    for (const f of s.top) console.log(`  ${(100 * f.ms / s.busyMs).toFixed(1).padStart(5)}%  ${f.fn}  (${f.where})`);
  }
}
