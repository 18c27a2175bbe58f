// Cost of the capture tap on the data path, side by side in one run with
// repetitions interleaved (A B C D A B C D …), as ratios to the same loop
// without the hook. The loop is what a daemon does per packet next to the
// hook: the flow tracker's observe() over 1,000 concurrent TCP flows
// (full-size segments plus ACKs).
//   A  no hook (and A2, the same again: the noise floor of the run)
//   B  the hook, no capture running (what every daemon pays: one boolean read)
//   C  a capture running whose filter matches nothing (port 9): parse + filter per packet
//   D  a capture running that keeps every packet (snap 128), drained every 256 packets
// GC events during B, C and D show whether the hook allocates per packet.
// Run: npm run build && node --expose-gc bench/capture-tap.mjs [packets-per-rep]
import { PerformanceObserver } from 'node:perf_hooks';
import { FlowTracker } from '../dist/inspect/flow-tracker.js';
import { CaptureTap } from '../dist/telemetry/capture-tap.js';
import { craftTcp } from '../dist/packet/craft.js';
import { TCP_FLAG } from '../dist/packet/ip-packet.js';

const { SYN, ACK } = TCP_FLAG;
const FLOWS = 1000;
const MSS = 1448;
const PER_REP = Number(process.argv[2] ?? 2_000_000);
const REPS = 5;
if (typeof globalThis.gc !== 'function') {
  console.error('run with node --expose-gc');
  process.exit(2);
}

function setup() {
  const payload = new Uint8Array(MSS).fill(0x17);
  const tracker = new FlowTracker({ sink: () => {} });
  const flows = [];
  for (let i = 0; i < FLOWS; i++) {
    const c = `10.1.${i >> 8}.${i & 255}`, s = '192.0.2.10', cp = 10000 + i, sp = 443;
    const isnC = (i * 7919) >>> 0, isnS = (i * 104729 + 12345) >>> 0;
    for (const p of [
      craftTcp({ src: c, dst: s, srcPort: cp, dstPort: sp, seq: isnC, flags: SYN }),
      craftTcp({ src: s, dst: c, srcPort: sp, dstPort: cp, seq: isnS, ack: isnC + 1, flags: SYN | ACK }),
      craftTcp({ src: c, dst: s, srcPort: cp, dstPort: sp, seq: isnC + 1, ack: isnS + 1, flags: ACK }),
    ]) tracker.observe(p, 0, p.length, 0, 0);
    flows.push({
      data: craftTcp({ src: s, dst: c, srcPort: sp, dstPort: cp, seq: isnS + 1, ack: isnC + 1, flags: ACK, payload }),
      ack: craftTcp({ src: c, dst: s, srcPort: cp, dstPort: sp, seq: isnC + 1, ack: isnS + 1, flags: ACK }),
      next: isnS + 1,
    });
  }
  return { tracker, flows };
}

const noop = () => {};

/** One measured pass of `packets` packets; `hook` says whether the tap check is in the loop. */
function pass(env, tap, hook, drainEvery, packets) {
  const { tracker, flows } = env;
  let gcs = 0;
  const obs = new PerformanceObserver((l) => { gcs += l.getEntries().length; });
  obs.observe({ entryTypes: ['gc'] });
  const rounds = Math.ceil(packets / (2 * FLOWS));
  let now = 1;
  let n = 0;
  const t0 = process.hrtime.bigint();
  for (let r = 0; r < rounds; r++) {
    now += 0.001;
    for (let i = 0; i < FLOWS; i++) {
      const f = flows[i];
      const d = f.data;
      d.writeUInt32BE(f.next >>> 0, 24);
      tracker.observe(d, 0, d.length, 1, now);
      if (hook && tap.active) tap.offer(d, 0, d.length, 1, now);
      f.next = (f.next + MSS) >>> 0;
      f.ack.writeUInt32BE(f.next, 28);
      tracker.observe(f.ack, 0, f.ack.length, 0, now);
      if (hook && tap.active) tap.offer(f.ack, 0, f.ack.length, 0, now);
      n += 2;
      if (drainEvery > 0 && n % drainEvery === 0) tap.drain(1 << 30, noop);
    }
  }
  const ns = Number(process.hrtime.bigint() - t0);
  obs.disconnect();
  return { nsPerPacket: ns / (rounds * FLOWS * 2), gcs };
}

const env = setup();
const ring = { queueBytes: 4 << 20, queuePackets: 8192 };
const big = { snapLenBytes: 65535, maxPackets: 1e15, maxBytes: 1e15 };
const cases = {
  A: () => pass(env, new CaptureTap(), false, 0, PER_REP),
  A2: () => pass(env, new CaptureTap(), false, 0, PER_REP),
  B: () => pass(env, new CaptureTap(), true, 0, PER_REP),
  C: () => { const t = new CaptureTap(); t.start({ ...big, port: 9 }, ring); return pass(env, t, true, 0, PER_REP); },
  D: () => { const t = new CaptureTap(); t.start({ ...big, snapLenBytes: 128 }, ring); const r = pass(env, t, true, 256, PER_REP); r.dropped = t.dropped[0] + t.dropped[1]; return r; },
};
for (const k of Object.keys(cases)) cases[k](); // warm-up (JIT), not counted
const res = { A: [], A2: [], B: [], C: [], D: [] };
for (let r = 0; r < REPS; r++) for (const k of Object.keys(cases)) { globalThis.gc(); res[k].push(cases[k]()); }
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const a = median(res.A.map((x) => x.nsPerPacket));
console.log(`capture tap cost, ${REPS} interleaved reps of ${PER_REP} packets over ${FLOWS} TCP flows (median ns/packet, ratio to A):`);
for (const [k, label] of [['A', 'no hook'], ['A2', 'no hook (again: noise floor)'], ['B', 'hook, no capture'], ['C', 'capture, filter matches nothing'], ['D', 'capture, every packet kept (snap 128)']]) {
  const m = median(res[k].map((x) => x.nsPerPacket));
  const gcs = res[k].reduce((s, x) => s + x.gcs, 0);
  console.log(`  ${k} ${label.padEnd(40)} ${m.toFixed(1).padStart(7)} ns  ×${(m / a).toFixed(3)}  gc events ${gcs}${res[k][0].dropped !== undefined ? `  ring drops ${res[k].reduce((s, x) => s + x.dropped, 0)}` : ''}`);
}
