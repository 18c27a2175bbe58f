/**
 * iperf3 through a lab, for tests that run transfers back to back: the lab's
 * iperf3 server takes one test at a time, and after a lossy transfer it may
 * still be closing the last one when the next client asks ("the server is
 * busy running a test", or a control connection reset at once); those
 * answers are retried, for up to 10 s.
 */
import type { Lab, Role } from '../../src/lab/lab.js';

/**
 * Answers at the start of a test while the server is still closing the last
 * one: "the server is busy running a test", or its control connection reset
 * as the client reads the first control message (CI, 12-07, send-eagain).
 */
const RETRY = /server is busy|unable to receive control message: Connection reset by peer/;

/** The outcome of one iperf3 run: received rate, the sender's retransmits, the exit code and stderr. */
export interface IperfResult {
  readonly mbit: number;
  readonly retransmits: number;
  readonly code: number;
  readonly stderr: string;
}

/** Runs `iperf3 -J` with `args` in `role`'s namespace; throws when iperf3 gives no result, with its error. */
export async function iperf(l: Lab, role: Role, args: string[], timeoutMs = 60_000): Promise<IperfResult> {
  const until = Date.now() + 10_000;
  for (;;) {
    const r = await l.exec(role, 'iperf3', [...args, '-J'], timeoutMs);
    let j: { error?: string; end?: { sum_received?: { bits_per_second: number }; sum_sent?: { retransmits?: number } } };
    try {
      j = JSON.parse(r.stdout);
    } catch {
      throw new Error(`iperf3 ${args.join(' ')}: no JSON (exit ${r.code}): ${r.stderr.slice(-300)}`);
    }
    if (j.end?.sum_received !== undefined) {
      return { mbit: j.end.sum_received.bits_per_second / 1e6, retransmits: j.end.sum_sent?.retransmits ?? 0, code: r.code, stderr: r.stderr };
    }
    if (!RETRY.test(j.error ?? '') || Date.now() > until) throw new Error(`iperf3 ${args.join(' ')}: no result (exit ${r.code}): ${j.error ?? r.stdout.slice(-300)}`);
    await new Promise((res) => setTimeout(res, 500));
  }
}
