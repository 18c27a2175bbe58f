/**
 * `npm run reliability -- <part> [flags]` (root): the issue #12 campaign.
 * Parts: impair | crash | flood | soak | latency | all (latency is not in all). Each builds its own lab
 * (namespaces prefixed per run, removed on exit), prints one line per figure
 * and writes the rows as JSON to bench/reliability/results/<part>-<time>.json.
 *
 *   impair  [--cells loss,delay,...] [--blackhole-s 30] [--max-time-s 120] [--queue-delay-ms T] [--tun-thread on|off]   (both daemons' tun.queueDelay.targetMs, 0 = CoDel off; tun.thread)
 *   crash   [--kills 20] [--what gateway,agent,midtransfer] [--resume-wait-s 30]
 *   flood   [--floods syn,initial,slowloris,routes,addresses] [--seconds 10] [--max-flows 16384] [--initial-rate 50000] [--agent-tun-thread on|off]
 *   soak    [--minutes 30]
 *   latency [--delays 0,20] [--downloads 5] [--max-time-s 120]   ping alone and under downloads, per underlay delay (#13)
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { REPO_ROOT } from '../../src/lab/lab.js';
import type { Report } from './campaign-lab.js';
import { crashRestart } from './crash-restart.js';
import { floods } from './floods.js';
import { impairMatrix } from './impair-matrix.js';
import { latencyUnderLoad } from './latency.js';
import { soak } from './soak.js';

const argv = process.argv.slice(2);
const part = argv[0] ?? '';
function flag(name: string, dflt: string): string {
  const i = argv.indexOf(`--${name}`);
  return i > 0 && i + 1 < argv.length ? argv[i + 1]! : dflt;
}
/** --name on|off → true / false; absent → undefined (the product's default). */
function onOff(name: string): boolean | undefined {
  if (!argv.includes(`--${name}`)) return undefined;
  const v = flag(name, '');
  if (v !== 'on' && v !== 'off') throw new Error(`reliability: --${name} must be on or off`);
  return v === 'on';
}
function num(name: string, dflt: number, min: number, max: number): number {
  const v = Number(flag(name, String(dflt)));
  if (!Number.isFinite(v) || v < min || v > max) throw new Error(`reliability: --${name} must be a number in ${min}..${max}`);
  return v;
}
const list = (name: string, dflt: string) => flag(name, dflt).split(',').filter((x) => x !== '');
function delays(): number[] {
  const d = list('delays', '0,20').map(Number);
  if (d.length === 0 || d.some((x) => !Number.isInteger(x) || x < 0 || x > 500)) throw new Error('reliability: --delays must be whole milliseconds in 0..500, comma-separated');
  return d;
}

const parts: Record<string, () => Promise<Report>> = {
  impair: () => impairMatrix({ blackholeS: num('blackhole-s', 30, 1, 120), maxTimeS: num('max-time-s', 120, 10, 600), only: argv.includes('--cells') ? list('cells', '') : undefined,
    queueDelayTargetMs: argv.includes('--queue-delay-ms') ? num('queue-delay-ms', 1, 0, 1000) : undefined, tunThread: onOff('tun-thread') }),
  crash: () => crashRestart({ kills: num('kills', 20, 1, 100), what: list('what', 'gateway,agent,midtransfer'), resumeWaitS: num('resume-wait-s', 30, 2, 300) }),
  flood: () => floods({ which: list('floods', 'syn,initial,slowloris,routes,addresses'), seconds: num('seconds', 10, 2, 120), maxFlows: num('max-flows', 16384, 64, 1_000_000), initialRate: num('initial-rate', 50_000, 100, 200_000), alone: argv.includes('--alone'),
    agentTunThread: onOff('agent-tun-thread') }),
  soak: () => soak({ minutes: num('minutes', 30, 0.5, 240) }),
  latency: () => latencyUnderLoad({ delaysMs: delays(), maxTimeS: num('max-time-s', 120, 10, 600), downloads: num('downloads', 5, 1, 100) }),
};

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('reliability: needs root (network namespaces, TUN devices)');
  const todo = part === 'all' ? ['impair', 'crash', 'flood', 'soak'] : [part];
  if (!todo.every((p) => p in parts)) {
    console.error('usage: npm run reliability -- impair|crash|flood|soak|latency|all [flags]  (see bench/reliability/main.ts)');
    process.exit(2);
  }
  const dir = join(REPO_ROOT, 'bench', 'reliability', 'results');
  mkdirSync(dir, { recursive: true });
  for (const p of todo) {
    const t0 = Date.now();
    const load0 = loadavg();
    console.log(`[${p}] load average at start ${load0.map((x) => x.toFixed(1)).join(' ')} on ${cpus().length} CPUs`);
    const rep = await parts[p]!();
    const file = join(dir, `${p}-${new Date().toISOString().replace(/[:.]/g, '')}.json`);
    writeFileSync(file, JSON.stringify({ part: p, argv, seconds: (Date.now() - t0) / 1000, cpus: cpus().length, loadAvgStart: load0, loadAvgEnd: loadavg(), rows: rep.rows }, null, 2) + '\n');
    console.log(`[${p}] done in ${((Date.now() - t0) / 1000).toFixed(0)} s (load average at end ${loadavg().map((x) => x.toFixed(1)).join(' ')}); rows in ${file}`);
  }
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? e.stack ?? e.message : e);
  process.exit(1);
});
