/**
 * Runs one target over a seeded sequence of inputs and reports crashes,
 * hangs and outcome classes. Input i is: the i-th seed unchanged while
 * seeds last, then alternately random bytes (even i) and a mutated seed
 * (odd i). A crash is any exception the target does not declare typed
 * (including InvariantError); a hang is an input that takes more than
 * `hangMs` of wall time and then, re-run three times, more than `hangMs` of
 * CPU time each time. A real infinite loop is caught one level up: the CLI runs each
 * target in a worker and watches {@link CampaignOptions.beforeInput}'s progress.
 */
import { performance } from 'node:perf_hooks';
import { Mutator } from './mutate.js';
import { Rng } from './rng.js';
import { norm, type FuzzTarget, type RunContext } from './defs/common.js';

/** How a campaign over one target runs. */
export interface CampaignOptions {
  readonly iterations: number;
  readonly seed: number;
  /** An input slower than this is a hang (default 50 ms; a target with a larger own `hangMs` uses that). */
  readonly hangMs?: number;
  /** Called with each input before it runs (the worker mirrors it for the watchdog). */
  readonly beforeInput?: (input: Uint8Array, iteration: number) => void;
}

/** One crash or hang, with what reproduces it. */
export interface Finding {
  readonly kind: 'crash' | 'hang';
  /** Input index in the campaign (replay: same target and seed, `--iterations` index + 1). */
  readonly iteration: number;
  readonly mode: Mode;
  readonly error: string;
  readonly ms: number;
  /** The input, hex (first 4 KiB). */
  readonly inputHex: string;
}

type Mode = 'seed' | 'random' | 'mutated';

/** Inputs and how many a target accepted (an `ok…` outcome), per generation mode. */
export interface ModeStats {
  inputs: number;
  accepted: number;
}

/** The result of {@link runCampaign}. */
export interface TargetReport {
  readonly target: string;
  readonly hangMs: number;
  readonly covers: string;
  readonly seed: number;
  readonly iterations: number;
  readonly elapsedMs: number;
  readonly inputsPerSec: number;
  readonly crashes: number;
  readonly hangs: number;
  /** First findings in full (at most 20; each distinct error once). */
  readonly findings: Finding[];
  readonly slowestMs: number;
  /** Inputs over `hangMs` of wall time once but under it in CPU time when re-run (GC pause, CPU contention): not hangs. */
  readonly slowOnce: number;
  readonly byMode: Record<Mode, ModeStats>;
  /** Outcome class → [random count, mutated count]; the seeds' own outcomes are in neither. */
  readonly outcomes: Record<string, [number, number]>;
}

const MAX_FINDINGS = 20;
const MAX_OUTCOME_CLASSES = 400;

/** Runs `target` for opts.iterations inputs. Never throws for target behaviour; findings are in the report. */
export function runCampaign(target: FuzzTarget, opts: CampaignOptions): TargetReport {
  const hangMs = Math.max(target.hangMs ?? 0, opts.hangMs ?? 50);
  const seeds = target.seeds();
  const gen = new Rng(opts.seed);
  const aux = new Rng(opts.seed ^ 0x5bd1e995);
  const mutator = new Mutator(seeds, target.maxLen, target.dict);
  const random = new Uint8Array(target.maxLen);
  const byMode: Record<Mode, ModeStats> = { seed: { inputs: 0, accepted: 0 }, random: { inputs: 0, accepted: 0 }, mutated: { inputs: 0, accepted: 0 } };
  const outcomes = new Map<string, [number, number]>();
  const findings: Finding[] = [];
  const seen = new Set<string>();
  let crashes = 0;
  let hangs = 0;
  let slowestMs = 0;
  let slowOnce = 0;
  let mode: Mode = 'seed';
  let accepted = false;
  const ctx: RunContext = {
    rng: aux,
    note(raw: string) {
      if (raw.startsWith('ok')) accepted = true;
      if (mode === 'seed') return;
      let label = norm(raw); // numbers and quoted values folded: classes, not instances
      let c = outcomes.get(label);
      if (c === undefined) {
        if (outcomes.size >= MAX_OUTCOME_CLASSES) label = '(other classes)';
        c = outcomes.get(label) ?? [0, 0];
        outcomes.set(label, c);
      }
      c[mode === 'random' ? 0 : 1]++;
    },
  };
  const record = (f: Finding, key: string) => {
    if (findings.length < MAX_FINDINGS && !seen.has(key)) {
      seen.add(key);
      findings.push(f);
    }
  };
  for (const s of seeds) runQuietly(target, Uint8Array.from(s), ctx); // warm-up: first calls compile code
  const start = performance.now();
  for (let i = 0; i < opts.iterations; i++) {
    let input: Uint8Array;
    if (i < seeds.length) {
      mode = 'seed';
      input = Uint8Array.from(seeds[i]!);
    } else if ((i & 1) === 0) {
      mode = 'random';
      const n = gen.length(target.maxLen);
      gen.fill(random, 0, n);
      input = random.slice(0, n);
    } else {
      mode = 'mutated';
      input = mutator.next(gen);
    }
    const copy = Uint8Array.from(input); // the target may rewrite its input
    opts.beforeInput?.(input, i);
    accepted = false;
    const t0 = performance.now();
    let crash: unknown = null;
    try {
      target.run(input, ctx);
    } catch (e) {
      if (target.typed(e)) {
        ctx.note(`throw ${(e as Error).name}: ${(e as Error).message.split('\n')[0]!}`);
      } else {
        crash = e;
      }
    }
    const ms = performance.now() - t0;
    byMode[mode].inputs++;
    if (accepted) byMode[mode].accepted++;
    if (ms > slowestMs) slowestMs = ms;
    if (crash !== null) {
      crashes++;
      const err = crash instanceof Error ? `${crash.name}: ${crash.message}\n${(crash.stack ?? '').split('\n').slice(1, 4).join('\n')}` : String(crash);
      record({ kind: 'crash', iteration: i, mode, error: err, ms, inputHex: hex(copy) }, `c:${norm(err)}`);
    }
    if (ms > hangMs) {
      // A GC pause or the shared box's scheduler can stall one input; a hang must use the CPU time again when re-run.
      const again = timeAgain(target, copy, ctx);
      if (again > hangMs) {
        hangs++;
        record({ kind: 'hang', iteration: i, mode, error: `took ${ms.toFixed(1)} ms wall, least CPU time of 3 re-runs ${again.toFixed(1)} ms (> ${hangMs} ms)`, ms, inputHex: hex(copy) }, `h:${i}`);
      } else {
        slowOnce++;
      }
    }
  }
  const elapsedMs = performance.now() - start;
  return {
    target: target.name, hangMs, covers: target.covers, seed: opts.seed, iterations: opts.iterations, elapsedMs,
    inputsPerSec: Math.round(opts.iterations / (elapsedMs / 1000)), crashes, hangs, slowOnce, findings, slowestMs, byMode,
    outcomes: Object.fromEntries([...outcomes].sort((a, b) => b[1][0] + b[1][1] - a[1][0] - a[1][1])),
  };
}

/**
 * Re-runs an input three times (errors ignored: the first run classified it)
 * and returns the least CPU time one run used, in ms. CPU time, not wall
 * time: on a shared machine a run can wait for a core far longer than it
 * computes, and waiting is not a hang.
 */
function timeAgain(target: FuzzTarget, input: Uint8Array, ctx: RunContext): number {
  let best = Infinity;
  for (let k = 0; k < 3; k++) {
    const c0 = process.cpuUsage();
    runQuietly(target, Uint8Array.from(input), ctx);
    const c = process.cpuUsage(c0);
    best = Math.min(best, (c.user + c.system) / 1000);
  }
  return best;
}

function runQuietly(target: FuzzTarget, input: Uint8Array, ctx: RunContext): void {
  const quiet: RunContext = { rng: ctx.rng, note: () => undefined };
  try {
    target.run(input, quiet);
  } catch {
    // classified by the timed run
  }
}

function hex(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, Math.min(b.byteLength, 4096)).toString('hex');
}
