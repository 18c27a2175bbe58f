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

/**
 * tshark's tcp.analysis.ack_rtt of a capture (ms), split by who sent the ACK (the client's ACKs time data toward the
 * client). `toClient`/`toServer` hold every sample tshark reports. tshark times the ACK of a retransmitted range too
 * (against the retransmission, or against the original when the retransmission was spurious), which Karn's rule
 * (RFC 6298 §3) forbids; `cleanToClient`/`cleanToServer` leave out each sample whose acknowledged frame carried
 * sequence space that was sent more than once in the capture. Without retransmissions the two series are the same.
 */
export function tsharkAckRtt(file: string, clientPort: number): { toClient: number[]; toServer: number[]; cleanToClient: number[]; cleanToServer: number[] } {
  const out = execFileSync('tshark', ['-r', file, '-Y', 'tcp', '-T', 'fields', '-E', 'separator=/t', '-E', 'occurrence=f',
    '-e', 'frame.number', '-e', 'tcp.stream', '-e', 'tcp.srcport', '-e', 'tcp.seq', '-e', 'tcp.len', '-e', 'tcp.flags.syn', '-e', 'tcp.flags.fin',
    '-e', 'tcp.analysis.acks_frame', '-e', 'tcp.analysis.ack_rtt'],
  { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 64 << 20 });
  type Seg = { dir: string; start: number; end: number };
  const segs = new Map<number, Seg>();
  // How many times each (connection and sender, first sequence number) was seen carrying sequence space.
  const sent = new Map<string, number>();
  const acks: Array<{ port: number; acked: number; rtt: number }> = [];
  for (const line of out.trim().split('\n')) {
    const [frame, stream, port, seq, len, syn, fin, acked, rtt] = line.split('\t');
    const p = Number(port);
    const dir = `${stream}/${p}`;
    const space = Number(len) + (syn === '1' || syn === 'True' ? 1 : 0) + (fin === '1' || fin === 'True' ? 1 : 0);
    if (space > 0) {
      const start = Number(seq);
      segs.set(Number(frame), { dir, start, end: start + space });
      const k = `${dir}/${start}`;
      sent.set(k, (sent.get(k) ?? 0) + 1);
    }
    if (rtt) acks.push({ port: p, acked: Number(acked), rtt: Number(rtt) * 1000 });
  }
  // Ranges sent more than once, per connection and sender (the echo workload sends one segment per round, so a repeated start is a
  // retransmission of the same range; overlap is checked anyway, for repacketised retransmissions).
  const resent: Seg[] = [];
  for (const s of segs.values()) if ((sent.get(`${s.dir}/${s.start}`) ?? 0) > 1) resent.push(s);
  for (const a of segs.values()) {
    for (const b of segs.values()) {
      if (a !== b && a.dir === b.dir && a.start < b.end && b.start < a.end && a.start !== b.start) { resent.push(a); break; }
    }
  }
  const ambiguous = (s: Seg | undefined): boolean => s === undefined || resent.some((r) => r.dir === s.dir && r.start < s.end && s.start < r.end);
  const r = { toClient: [] as number[], toServer: [] as number[], cleanToClient: [] as number[], cleanToServer: [] as number[] };
  for (const a of acks) {
    const client = a.port === clientPort;
    (client ? r.toClient : r.toServer).push(a.rtt);
    if (!ambiguous(segs.get(a.acked))) (client ? r.cleanToClient : r.cleanToServer).push(a.rtt);
  }
  return r;
}

/** The median of a series. */
export const median = (a: number[]): number => { const s = [...a].sort((x, y) => x - y); return s[Math.floor(s.length / 2)]!; };

/** RFC 6298 §2 smoothing (α = 1/8) over a series, as the tracker does. */
export const smooth = (a: number[]): number => a.reduce((srtt, r, i) => (i === 0 ? r : srtt * 0.875 + r * 0.125), 0);
