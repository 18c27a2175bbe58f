// What one engine call costs from JavaScript, through the engine-lock trampoline
// (src/native/quic-napi.c locked_call: every quic* function runs under qe_lock,
// issue #13). Cheap calls on one client connection, best of 7 runs of 2,000,000
// each; dpNow (no engine, no lock) is the bare N-API call for scale.
//
//   npx tsc -p tsconfig.json && node bench/engine-lock-cost.mjs
//
// To see the trampoline's share, build once with qn_export_locked exporting the
// function itself (napi_create_function(..., cb, NULL, ...)) and run again
// (docs/decisions/0003-data-plane-threads.md, "Step 1 as built").
import { loadNative } from '../dist/native/addon.js';

const n = loadNative();
const cfg = n.quicConfigNew(false, null, null, null);
const c = n.quicConnect(cfg, 'x', new Uint8Array(16).fill(7), '127.0.0.1', 40000, '127.0.0.1', 40001);
const info = new Float64Array(16);
const N = 2_000_000;
const best = { quicTimeout: Infinity, quicInfo: Infinity, dpNow: Infinity };
const time = (f) => {
  const t0 = process.hrtime.bigint();
  for (let k = 0; k < N; k++) f();
  return Number(process.hrtime.bigint() - t0) / N;
};
for (let rep = 0; rep < 7; rep++) {
  best.quicTimeout = Math.min(best.quicTimeout, time(() => n.quicTimeout(c)));
  best.quicInfo = Math.min(best.quicInfo, time(() => n.quicInfo(c, info)));
  best.dpNow = Math.min(best.dpNow, time(() => n.dpNow()));
}
console.log(JSON.stringify(Object.fromEntries(Object.entries(best).map(([k, v]) => [`${k}Ns`, Number(v.toFixed(1))]))));
