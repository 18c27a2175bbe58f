/**
 * tshark's view of a capture's TCP RTTs, for the latency-split tests
 * (rtt-split*.test.ts): its per-ACK `tcp.analysis.ack_rtt`, split by who
 * sent the ACK, and the RFC 6298 smoothing the flow tracker applies.
 */
import { execFileSync } from 'node:child_process';

/** tshark's tcp.analysis.ack_rtt of a capture (ms), split by who sent the ACK (the client's ACKs time data toward the client). */
export function tsharkAckRtt(file: string, clientPort: number): { toClient: number[]; toServer: number[] } {
  const out = execFileSync('tshark', ['-r', file, '-Y', 'tcp.analysis.ack_rtt', '-T', 'fields', '-e', 'tcp.srcport', '-e', 'tcp.analysis.ack_rtt'],
    { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  const toClient: number[] = [];
  const toServer: number[] = [];
  for (const line of out.trim().split('\n')) {
    const [port, rtt] = line.split('\t');
    if (rtt === undefined) continue;
    (Number(port) === clientPort ? toClient : toServer).push(Number(rtt) * 1000);
  }
  return { toClient, toServer };
}

/** The median of a series. */
export const median = (a: number[]): number => { const s = [...a].sort((x, y) => x - y); return s[Math.floor(s.length / 2)]!; };

/** RFC 6298 §2 smoothing (α = 1/8) over a series, as the tracker does. */
export const smooth = (a: number[]): number => a.reduce((srtt, r, i) => (i === 0 ? r : srtt * 0.875 + r * 0.125), 0);
