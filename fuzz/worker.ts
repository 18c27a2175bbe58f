/**
 * Worker-thread side of the CLI: runs one target's campaign and mirrors each
 * input into shared memory first, so the parent can report the input that
 * stalled if the worker stops making progress (an infinite loop).
 */
import { parentPort, workerData } from 'node:worker_threads';
import { runCampaign } from './harness.js';
import { cleanup, targetByName } from './registry.js';

/** What the parent passes in workerData. */
export interface WorkerJob {
  readonly target: string;
  readonly iterations: number;
  readonly seed: number;
  readonly hangMs: number;
  /** [0] = iteration being run, [1] = its input length; bytes follow at offset 8. */
  readonly shared: SharedArrayBuffer;
}

const job = workerData as WorkerJob;
const target = targetByName(job.target);
if (!target) throw new Error(`fuzz: no target ${job.target}`);
const head = new Int32Array(job.shared, 0, 2);
const bytes = new Uint8Array(job.shared, 8);
try {
  const report = runCampaign(target, {
    iterations: job.iterations,
    seed: job.seed,
    hangMs: job.hangMs,
    beforeInput(input, i) {
      const n = Math.min(input.length, bytes.length);
      bytes.set(input.subarray(0, n), 0);
      Atomics.store(head, 1, n);
      Atomics.store(head, 0, i);
    },
  });
  parentPort!.postMessage(report);
} finally {
  cleanup();
}
