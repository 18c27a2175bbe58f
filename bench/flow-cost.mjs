// Per-flow cost of a SYN flood in one daemon's passive inspection and telemetry: each flow is a SYN out
// and a SYN-ACK back, never completed, with the flow table at its cap (16,384) so every new flow evicts
// one and emits its record. Run after tsc:  node bench/flow-cost.mjs [flows]   (prints µs per flow)
import { DaemonFlows } from '../dist/daemon/flows.js';
import { Telemetry } from '../dist/telemetry/index.js';
const N = Number(process.argv[2] ?? 200000);
const tel = new Telemetry({ reporter: 'gateway', workloads: [], flowLog: '/dev/null', processMetrics: false });
const flows = new DaemonFlows({ telemetry: tel, inspection: { maxFlows: 16384, peekBudgetBytes: 16 << 20, timeouts: {} },
  identityOf: () => 'spiffe://a', directionOf: () => 'outbound' });
const tr = flows.tracker;
function tcp(src, dst, sp, dp, seq, ack, flags) {
  const b = Buffer.alloc(40); b[0] = 0x45; b.writeUInt16BE(40, 2); b[8] = 64; b[9] = 6;
  b.writeUInt32BE(src, 12); b.writeUInt32BE(dst, 16); b.writeUInt16BE(sp, 20); b.writeUInt16BE(dp, 22);
  b.writeUInt32BE(seq, 24); b.writeUInt32BE(ack, 28); b[32] = 0x50; b[33] = flags; b.writeUInt16BE(65535, 34); return b;
}
let now = Date.now();
const run = (n, t0flow) => {
  for (let i = 0; i < n; i++) {
    const k = t0flow + i;
    const src = (10 << 24) | (10 << 16) | (k & 0xff), sp = 1024 + ((k >> 8) % 60000);
    const s = tcp(src, 0x0a140002, sp, 80, k * 7, 0, 0x02);
    tr.observe(s, 0, 40, 0, now);
    const a = tcp(0x0a140002, src, 80, sp, k * 13, k * 7 + 1, 0x12);
    tr.observe(a, 0, 40, 1, now + 0.5);
    now += 0.25;
    if ((i & 4095) === 0) flows.tick(now);
  }
};
run(30000, 0);
const t0 = process.hrtime.bigint();
run(N, 1e6);
const us = Number(process.hrtime.bigint() - t0) / 1000 / N;
console.log(`${us.toFixed(2)} µs per flow (SYN + SYN-ACK, table at cap ${tr.activeFlows})`);
