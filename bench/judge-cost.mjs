#!/usr/bin/env node
// What the gateway's per-packet CONNECT-IP check costs, TypeScript against C (issue #13):
// judgeClientIp per packet, the addon's judgeBatch over batches of 64 (as a data-plane thread
// would call the C, minus the crossing) and judgeBatch with one packet per call (what moving the
// check alone into C, call by call from the event loop, would cost). Random sessions and packets
// from src/masque/testing/judge-fuzz.ts, the same for each; interleaved rounds, medians.
//   node bench/judge-cost.mjs [--rounds 7] [--packets 20000]      (needs a built dist/ and addon)
import { loadNative } from '../dist/native/addon.js';
import { PacketInfo } from '../dist/packet/ip-packet.js';
import { judgeClientIp } from '../dist/masque/connect-ip/packet-judge.js';
import { compileGatewayTable } from '../dist/masque/native-judge.js';
import { randomGatewayCase, randomPacket, Rng } from '../dist/masque/testing/judge-fuzz.js';

const arg = (name, dflt) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const ROUNDS = arg('--rounds', 7);
const PACKETS = arg('--packets', 20000);
const STRIDE = 2048;
const BATCH = 64;

const n = loadNative();
const r = new Rng(12345);
// A few sessions; each packet is judged against its own session's table, as a gateway with many sessions would.
const cases = Array.from({ length: 16 }, () => randomGatewayCase(r));
const tables = cases.map((c) => n.judgeTable(compileGatewayTable(c.ctx, c.switches, c.policy)));
const which = new Uint8Array(PACKETS);
const arena = new Uint8Array(STRIDE * PACKETS);
const lens = new Uint32Array(PACKETS);
for (let i = 0; i < PACKETS; i++) {
  // Runs of BATCH packets per session, as a batch from one connection would be.
  which[i] = Math.floor(i / BATCH) % cases.length;
  const p = randomPacket(r, cases[which[i]].pools);
  arena.set(p, i * STRIDE);
  lens[i] = p.length;
}
const out = new Int32Array(PACKETS);
const info = new PacketInfo();

function ts() {
  let pass = 0;
  for (let i = 0; i < PACKETS; i++) {
    const c = cases[which[i]];
    if (judgeClientIp(c.ctx, c.switches, arena, i * STRIDE, lens[i], info, true) === 0) pass++;
  }
  return pass;
}
function nativeBatched() {
  for (let i = 0; i < PACKETS; i += BATCH) {
    const k = Math.min(BATCH, PACKETS - i);
    n.judgeBatch(tables[which[i]], arena.subarray(i * STRIDE), STRIDE, 0, lens.subarray(i), k, out.subarray(i), true);
  }
  let pass = 0;
  for (let i = 0; i < PACKETS; i++) if (out[i] === 0) pass++;
  return pass;
}
const one = new Int32Array(1);
const lens1 = new Uint32Array(1);
function nativeEach() {
  let pass = 0;
  for (let i = 0; i < PACKETS; i++) {
    lens1[0] = lens[i];
    n.judgeBatch(tables[which[i]], arena, 0, i * STRIDE, lens1, 1, one, true);
    if (one[0] === 0) pass++;
  }
  return pass;
}

const runs = { ts, nativeBatched, nativeEach };
const ns = { ts: [], nativeBatched: [], nativeEach: [] };
let passes;
for (let round = 0; round <= ROUNDS; round++) {
  const got = {};
  for (const [name, f] of Object.entries(runs)) {
    const t0 = process.hrtime.bigint();
    got[name] = f();
    const dt = Number(process.hrtime.bigint() - t0) / PACKETS;
    if (round > 0) ns[name].push(dt); // round 0 warms the JIT
  }
  if (got.ts !== got.nativeBatched || got.ts !== got.nativeEach) throw new Error(`verdicts differ: ${JSON.stringify(got)}`);
  passes = got.ts;
}
const median = (a) => [...a].sort((x, y) => x - y)[a.length >> 1];
const res = Object.fromEntries(Object.entries(ns).map(([k, v]) => [k, { medianNs: +median(v).toFixed(1), min: +Math.min(...v).toFixed(1), max: +Math.max(...v).toFixed(1) }]));
console.log(JSON.stringify({ packets: PACKETS, rounds: ROUNDS, passed: passes, nsPerPacket: res }, null, 1));
