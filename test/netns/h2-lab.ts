/**
 * Helpers of the HTTP/2 fallback netns tests (issue #15) on the lab
 * (src/lab/lab.ts): the agent's current transport, and the replies of a
 * timestamped ping (`ping -D`) with the longest silence between them.
 */
import { LAB, Lab } from '../../src/lab/lab.js';

/** A lab with servers, gateway and agent running; `beforeDaemons` runs once the servers are up (e.g. to block UDP first). */
export async function startH2Lab(prefix: string, beforeDaemons?: (lab: Lab) => Promise<void>): Promise<Lab> {
  const lab = await Lab.up({ prefix: `${prefix}${process.pid % 10000}` });
  await lab.startServers();
  await beforeDaemons?.(lab);
  await lab.startGateway();
  await lab.startAgent('agent');
  return lab;
}

/** Runs `unblock` (errors ignored), then removes the lab (kept with MTUN_KEEP_LAB=1); a lab that never came up is skipped. */
export async function stopH2Lab(lab: Lab | undefined, unblock: () => Promise<void>): Promise<void> {
  if (lab === undefined) return;
  await unblock().catch(() => undefined);
  await lab.down(process.env.MTUN_KEEP_LAB === '1');
}

/** The transport of the agent's session from its /status (undefined while it has none). */
export async function agentTransport(lab: Lab): Promise<string | undefined> {
  const r = await lab.admin('agent', LAB.agentAdmin, '/status');
  if (r.code !== 0) return undefined;
  return (JSON.parse(r.stdout) as { sessions: { transport?: string }[] }).sessions[0]?.transport;
}

/** Reply times (epoch seconds) in `ping -D` output, and the longest gap between two of them (seconds). */
export function pingReplies(stdout: string): { times: number[]; longestGapS: number } {
  const times = [...stdout.matchAll(/^\[(\d+\.\d+)\].*icmp_seq=\d+/gm)].map((m) => Number(m[1]));
  let gap = 0;
  for (let i = 1; i < times.length; i++) gap = Math.max(gap, times[i]! - times[i - 1]!);
  return { times, longestGapS: gap };
}
