/**
 * What the latency-split tests (rtt-split*.test.ts) share: the delays the
 * issue asks for on each segment, the TCP ping-pong that produces RTT
 * samples, and tshark's view of a capture's RTTs (its per-ACK
 * `tcp.analysis.ack_rtt`, split by who sent the ACK, and the RFC 6298
 * smoothing the flow tracker applies).
 */
import { execFileSync } from 'node:child_process';

/** Round-trip delay added per segment, ms (each direction gets half). */
export const CLIENT_MS = 20;
export const TUNNEL_MS = 30;
export const SERVER_MS = 5;
/** Extra random delay per packet, 0..JITTER_MS ms. */
export const JITTER_MS = 1;
/** One-way delay of every segment during the base run, ms. */
export const BASE_ONE_WAY_MS = 1;
/** Ping-pong rounds of the delayed run. */
export const ROUNDS = 120;

/** A TCP echo server on `port` (TCP_NODELAY); prints `ready` once listening. */
export function echoScript(port: number): string {
  return `
const net = require('node:net');
net.createServer((s) => { s.setNoDelay(true); s.on('data', (d) => s.write(d)); s.on('error', () => {}); })
  .listen(${port}, '0.0.0.0', () => console.log('ready'));
`;
}

/**
 * A ping-pong client of `host:port`: argv[2] rounds of 200 bytes over one
 * connection with TCP_NODELAY (the next message leaves as soon as the echo
 * arrives, so every ACK rides on data at once and no delayed-ACK timer
 * inflates a sample); prints `done <rounds> <local port>` at close.
 */
export function pingerScript(host: string, port: number): string {
  return `
const net = require('node:net');
const rounds = Number(process.argv[2]);
const msg = Buffer.alloc(200, 120);
let port = 0;
const s = net.connect(${port}, '${host}', () => { port = s.localPort; s.setNoDelay(true); s.write(msg); });
let got = 0, n = 0;
s.on('data', (d) => { got += d.length; while (got >= msg.length) { got -= msg.length; if (++n === rounds) { s.end(); return; } s.write(msg); } });
s.on('close', () => console.log('done ' + n + ' ' + port));
`;
}

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
