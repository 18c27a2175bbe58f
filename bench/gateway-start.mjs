#!/usr/bin/env node
/**
 * Gateway restart time, in the lab's namespaces (root): SIGKILL the gateway,
 * spawn it again, and time (a) spawn → /readyz 200 and (b) spawn → the first
 * ping reply from the client to the server through the agent, which stays
 * up. Polls every 20 ms (curl / ping inside the namespaces). Prints every
 * run and the medians as JSON.
 *
 *   node bench/gateway-start.mjs [runs=10] [--base DIR]     (after `npm run build`)
 *
 * With --base, DIR is another built checkout (e.g. `git archive <commit>`
 * unpacked, `node_modules` and `build` linked, `npx tsc`): its gateway and
 * this one take turns (A B A B …, `runs` each) in the same lab, and the
 * medians are reported side by side with their ratio.
 */
import { performance } from 'node:perf_hooks';
import { join } from 'node:path';
import { LAB, Lab, REPO_ROOT } from '../dist/lab/lab.js';
import { DAEMON_NODE_FLAGS } from '../dist/daemon/tunnel-constants.js';

const runs = Number(process.argv[2] ?? 10);
const baseAt = process.argv.indexOf('--base');
const variants = [{ name: 'this', mtun: join(REPO_ROOT, 'bin', 'mtun.js') }];
if (baseAt > 0) variants.push({ name: 'base', mtun: join(process.argv[baseAt + 1], 'bin', 'mtun.js') });
const LIMIT_MS = 30_000;
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

const lab = await Lab.up({ prefix: `gst${process.pid % 10000}` });
const onSignal = () => void lab.down().then(() => process.exit(130));
process.on('SIGINT', onSignal);
process.on('SIGTERM', onSignal);
const results = [];
try {
  await lab.startServers();
  await lab.startGateway();
  await lab.startAgent('agent');
  const ping = async () => (await lab.exec('client', 'ping', ['-c', '1', '-W', '1', LAB.server.v4])).code === 0;
  await lab.waitFor(ping, 15_000, 'traffic before the first kill');
  for (let n = 0; n < runs * variants.length; n++) {
    const i = Math.floor(n / variants.length);
    const v = variants[n % variants.length];
    await lab.stop('gateway', 'SIGKILL');
    const t0 = performance.now();
    lab.spawn('gw', 'gateway', process.execPath, [...DAEMON_NODE_FLAGS, v.mtun, 'gateway', '-c', lab.file('gateway.yaml')]);
    let readyMs = NaN;
    let trafficMs = NaN;
    while (performance.now() - t0 < LIMIT_MS && (Number.isNaN(readyMs) || Number.isNaN(trafficMs))) {
      if (Number.isNaN(readyMs) && (await lab.admin('gw', LAB.gatewayAdmin, '/readyz')).code === 0) readyMs = performance.now() - t0;
      if (!Number.isNaN(readyMs) && Number.isNaN(trafficMs) && (await lab.exec('client', 'ping', ['-c', '1', '-W', '1', LAB.server.v4])).code === 0) trafficMs = performance.now() - t0;
      await new Promise((r) => setTimeout(r, 20));
    }
    const r = { variant: v.name, run: i + 1, readyMs: Math.round(readyMs), trafficMs: Math.round(trafficMs) };
    results.push(r);
    console.error(JSON.stringify(r));
  }
} finally {
  await lab.down(process.env.KEEP_LAB === '1');
}
const summary = {};
for (const v of variants) {
  const mine = results.filter((r) => r.variant === v.name);
  summary[v.name] = {
    runs: mine.length,
    readyMedianMs: Math.round(median(mine.map((r) => r.readyMs))),
    trafficMedianMs: Math.round(median(mine.map((r) => r.trafficMs))),
    trafficMaxMs: Math.max(...mine.map((r) => r.trafficMs)),
  };
}
if (summary.base) summary.readyRatioThisToBase = +(summary.this.readyMedianMs / summary.base.readyMedianMs).toFixed(2);
summary.loadAverage1m = (await import('node:os')).loadavg()[0];
console.log(JSON.stringify(summary));
