/**
 * `npm run fuzz -- [--target NAME[,NAME…]] [--iterations N] [--seed S] [--hang-ms MS] [--stall-ms MS] [--out FILE]`
 *
 * Runs each target (default: all) in its own worker thread for N inputs
 * (default 1,000,000) and prints one line per target. A worker whose input
 * counter does not move for --stall-ms (default 10 s) is stopped and its
 * current input reported as a hang. Exit status 1 when any target crashed
 * or hung. --out writes the full reports (outcome classes, findings) as JSON.
 */
import { writeFileSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import type { TargetReport } from './harness.js';
import { TARGETS, targetByName } from './registry.js';
import type { WorkerJob } from './worker.js';

function parseArgs(argv: readonly string[]): { targets: string[]; iterations: number; seed: number; hangMs: number; stallMs: number; out?: string } {
  const o = { targets: TARGETS.map((t) => t.name), iterations: 1_000_000, seed: 1, hangMs: 50, stallMs: 10_000, out: undefined as string | undefined };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const v = argv[i + 1];
    const num = () => {
      const n = Number(v);
      if (v === undefined || !Number.isInteger(n) || n < 0) throw new Error(`fuzz: ${a} needs a non-negative integer, got ${v}`);
      i++;
      return n;
    };
    if (a === '--target') {
      if (!v) throw new Error('fuzz: --target needs a name');
      o.targets = v.split(',');
      i++;
    } else if (a === '--iterations') o.iterations = num();
    else if (a === '--seed') o.seed = num();
    else if (a === '--hang-ms') o.hangMs = num();
    else if (a === '--stall-ms') o.stallMs = num();
    else if (a === '--out') {
      o.out = v;
      i++;
    } else throw new Error(`fuzz: unknown argument ${a} (targets: ${TARGETS.map((t) => t.name).join(', ')})`);
  }
  for (const t of o.targets) if (!targetByName(t)) throw new Error(`fuzz: no target ${t} (targets: ${TARGETS.map((x) => x.name).join(', ')})`);
  return o;
}

/** Runs one target in a worker; resolves with its report, or a synthetic one when the watchdog stopped it. */
function runInWorker(job: Omit<WorkerJob, 'shared'>, stallMs: number, maxLen: number): Promise<TargetReport> {
  const shared = new SharedArrayBuffer(8 + maxLen);
  const head = new Int32Array(shared, 0, 2);
  const w = new Worker(new URL('./worker.js', import.meta.url), { workerData: { ...job, shared } satisfies WorkerJob });
  return new Promise((resolve, reject) => {
    let last = -1;
    let lastMoveMs = Date.now();
    const watch = setInterval(() => {
      const i = Atomics.load(head, 0);
      if (i !== last) {
        last = i;
        lastMoveMs = Date.now();
        return;
      }
      if (Date.now() - lastMoveMs < stallMs) return;
      clearInterval(watch);
      const n = Atomics.load(head, 1);
      const input = Buffer.from(new Uint8Array(shared, 8, n)).toString('hex');
      void w.terminate();
      const t = targetByName(job.target)!;
      resolve({
        target: job.target, hangMs: t.hangMs ?? job.hangMs, covers: t.covers, seed: job.seed, iterations: i, elapsedMs: 0, inputsPerSec: 0, crashes: 0, hangs: 1, slowOnce: 0,
        findings: [{ kind: 'hang', iteration: i, mode: 'random', error: `no progress for ${stallMs} ms (worker stopped)`, ms: stallMs, inputHex: input }],
        slowestMs: stallMs, byMode: { seed: { inputs: 0, accepted: 0 }, random: { inputs: 0, accepted: 0 }, mutated: { inputs: 0, accepted: 0 } }, outcomes: {},
      });
    }, 500);
    w.once('message', (r: TargetReport) => {
      clearInterval(watch);
      resolve(r);
    });
    w.once('error', (e) => {
      clearInterval(watch);
      reject(e);
    });
  });
}

async function main(): Promise<number> {
  const o = parseArgs(process.argv.slice(2));
  const reports: TargetReport[] = [];
  console.log(`fuzz: seed ${o.seed}, ${o.iterations} inputs per target, hang > ${o.hangMs} ms`);
  console.log('target               inputs      s   inputs/s crashes hangs slow1x max_ms  random ok  mutated ok  classes');
  for (const name of o.targets) {
    const t = targetByName(name)!;
    const r = await runInWorker({ target: name, iterations: o.iterations, seed: o.seed, hangMs: o.hangMs }, o.stallMs, t.maxLen);
    reports.push(r);
    const pct = (m: { inputs: number; accepted: number }) => `${m.accepted}/${m.inputs}`;
    console.log(
      `${name.padEnd(20)} ${String(r.iterations).padStart(7)} ${(r.elapsedMs / 1000).toFixed(0).padStart(6)} ${String(r.inputsPerSec).padStart(10)} ${String(r.crashes).padStart(7)} ${String(r.hangs).padStart(5)} ${String(r.slowOnce).padStart(6)} ${r.slowestMs.toFixed(1).padStart(6)}  ${pct(r.byMode.random).padStart(9)}  ${pct(r.byMode.mutated).padStart(10)}  ${Object.keys(r.outcomes).length}`,
    );
    for (const f of r.findings) console.log(`  ${f.kind} at input ${f.iteration} (${f.mode}): ${f.error.split('\n')[0]}\n    input ${f.inputHex.slice(0, 160)}${f.inputHex.length > 160 ? '…' : ''}`);
    if (o.out) writeFileSync(o.out, JSON.stringify(reports, null, 1));
  }
  return reports.some((r) => r.crashes > 0 || r.hangs > 0) ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    console.error(e instanceof Error ? e.message : e);
    process.exit(2);
  },
);
