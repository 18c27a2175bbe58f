#!/usr/bin/env node
// mtun gateway scaling: N concurrent agent sessions (each its own QUIC
// connection and CONNECT-IP stream, no TUN) against one running gateway.
// For each N: time until all sessions are open with an assigned address,
// then every session sends ICMP echo requests from its address to a host
// behind the gateway at a fixed per-session rate for a fixed time; reported:
// echo RTT (median, p99) and reply ratio, gateway CPU and RSS per session.
//
// Run from the agent-side namespace after a build (bench/run.sh does this):
//   node bench/mtun-sessions.mjs --gateway 192.0.2.2:4433 --certs DIR --target 10.20.0.1 \
//     --gateway-pid PID --counts 1,10,100 --seconds 3 --rate 50 --out sessions.json
import { readFileSync, writeFileSync } from 'node:fs';
import { attachH3 } from '../dist/h3/quic-binding.js';
import { connectIp } from '../dist/masque/h3-glue.js';
import { openNativeUdp } from '../dist/net/native-udp.js';
import { QuicEndpoint } from '../dist/quic/endpoint.js';
import { craftIcmp } from '../dist/packet/craft.js';

const argv = process.argv.slice(2);
const arg = (name, dflt) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : dflt;
};
const [GW_HOST, GW_PORT] = (arg('gateway', '192.0.2.2:4433')).split(':');
const CERTS = arg('certs');
const TARGET = arg('target', '10.20.0.1');
const GW_PID = Number(arg('gateway-pid', '0'));
const COUNTS = arg('counts', '1,10,100').split(',').map(Number);
const SECONDS = Number(arg('seconds', '3'));
const RATE = Number(arg('rate', '50')); // echo requests per second per session
const OUT = arg('out');
const OPEN_TIMEOUT_MS = 30_000;
const HEADROOM = 16;
const CLK_TCK = 100;

const ca = readFileSync(`${CERTS}/ca.pem`, 'utf8');
const cert = readFileSync(`${CERTS}/agent-cluster-a.pem`, 'utf8');
const key = readFileSync(`${CERTS}/agent-cluster-a-key.pem`, 'utf8');

function gwTicks() {
  const s = readFileSync(`/proc/${GW_PID}/stat`, 'utf8');
  const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
  return Number(f[11]) + Number(f[12]);
}
function gwRssKb() {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${GW_PID}/status`, 'utf8'));
  return m ? Number(m[1]) : null;
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const pct = (xs, p) => {
  if (xs.length === 0) return null;
  const s = Float64Array.from(xs).sort();
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
};

/** Opens one session; resolves once the gateway assigned an IPv4 address. */
async function openSession(endpoint, idx, onReply) {
  const conn = endpoint.connect(GW_HOST, Number(GW_PORT), 'gateway');
  const h3 = attachH3(conn);
  await conn.whenEstablished();
  let assigned;
  const got = new Promise((resolve) => (assigned = resolve));
  const session = await connectIp(h3, `gateway:${GW_PORT}`, {
    onPacket: (buf, off, len) => onReply(idx, buf, off, len),
    onEvent: (e) => {
      if (e.type === 'addresses-assigned' && e.addresses.length > 0) assigned(e.addresses[0].address);
    },
  });
  session.requestAddresses([{ version: 4 }]);
  conn.flush();
  const addr = await got;
  return { conn, h3, session, src: Array.from(addr).join('.') };
}

async function measure(n) {
  const socket = openNativeUdp({ host: '0.0.0.0' });
  const endpoint = new QuicEndpoint({ socket, client: { caPem: ca, certPem: cert, keyPem: key }, idleTimeoutMs: 30_000 });
  const rssBefore = gwRssKb();
  const sentAt = []; // per session: Float64Array ring of send times by sequence
  const rtts = [];
  let replies = 0;
  const onReply = (idx, buf, off, len) => {
    // IPv4 header (20) + ICMP echo reply (type 0): identifier = session, sequence = ring slot.
    if (len < 28 || buf[off + 20] !== 0) return;
    const seq = (buf[off + 26] << 8) | buf[off + 27];
    const t = sentAt[idx][seq & 1023];
    if (t > 0) {
      rtts.push(performance.now() - t);
      sentAt[idx][seq & 1023] = 0;
      replies++;
    }
  };
  const t0 = performance.now();
  const opening = [];
  for (let i = 0; i < n; i++) {
    sentAt.push(new Float64Array(1024));
    opening.push(openSession(endpoint, i, onReply));
  }
  let timer;
  const sessions = await Promise.race([
    Promise.all(opening),
    new Promise((_, rej) => (timer = setTimeout(() => rej(new Error(`sessions: ${n} sessions not open after ${OPEN_TIMEOUT_MS} ms`)), OPEN_TIMEOUT_MS))),
  ]);
  clearTimeout(timer);
  const openMs = performance.now() - t0;
  await sleep(500);
  const rssOpen = gwRssKb();
  // Echo packets, crafted once per session; only the sequence and checksum change.
  const pkts = sessions.map((s, i) => {
    const p = craftIcmp({ src: s.src, dst: TARGET, type: 8, rest: (i << 16) >>> 0, payload: new Uint8Array(56) });
    const b = Buffer.alloc(HEADROOM + p.length);
    p.copy(b, HEADROOM);
    return b;
  });
  const intervalMs = 1000 / RATE;
  const rounds = Math.round(SECONDS * RATE);
  let sent = 0;
  const cpu0 = gwTicks();
  const w0 = performance.now();
  for (let r = 0; r < rounds; r++) {
    const seq = r & 0xffff;
    for (let i = 0; i < n; i++) {
      const b = pkts[i];
      const o = HEADROOM + 20;
      // Incremental ICMP checksum update (RFC 1624) for the new sequence number.
      const oldSeq = (b[o + 6] << 8) | b[o + 7];
      let sum = (~((b[o + 2] << 8) | b[o + 3]) & 0xffff) + (~oldSeq & 0xffff) + seq;
      sum = (sum & 0xffff) + (sum >>> 16);
      sum = (sum & 0xffff) + (sum >>> 16);
      const ck = ~sum & 0xffff;
      b[o + 2] = ck >> 8;
      b[o + 3] = ck & 0xff;
      b[o + 6] = seq >> 8;
      b[o + 7] = seq & 0xff;
      sentAt[i][seq & 1023] = performance.now();
      sessions[i].session.sendPacket(b, HEADROOM, b.length - HEADROOM);
      sessions[i].conn.flush();
      sent++;
    }
    const next = w0 + (r + 1) * intervalMs;
    const wait = next - performance.now();
    await sleep(wait > 0 ? wait : 0);
  }
  await sleep(300);
  const wall = (performance.now() - w0) / 1000;
  const gwCpuSec = (gwTicks() - cpu0) / CLK_TCK;
  for (const s of sessions) {
    s.session.close();
    s.h3.shutdown();
    s.conn.flush();
  }
  await sleep(200);
  endpoint.close(0, 'bench done');
  await sleep(100);
  socket.close();
  await sleep(1500); // let the gateway reap the sessions before the next N
  return {
    sessions: n,
    openMs,
    echoSent: sent,
    echoReplies: replies,
    replyRatio: sent ? replies / sent : 0,
    rttMedianMs: pct(rtts, 50),
    rttP99Ms: pct(rtts, 99),
    gatewayCpuPctOfBox: (100 * gwCpuSec) / wall / (await import('node:os')).cpus().length,
    gatewayCpuUsPerEcho: replies ? (gwCpuSec * 1e6) / (2 * replies) : null,
    gatewayRssKbBefore: rssBefore,
    gatewayRssKbOpen: rssOpen,
    gatewayRssKbPerSession: rssBefore && rssOpen ? (rssOpen - rssBefore) / n : null,
  };
}

const out = { target: TARGET, ratePerSession: RATE, seconds: SECONDS, results: [] };
for (const n of COUNTS) {
  try {
    const r = await measure(n);
    out.results.push(r);
    console.log(`bench: mtun ${String(n).padStart(3)} sessions: open in ${r.openMs.toFixed(0)} ms, echo rtt median ${r.rttMedianMs?.toFixed(3)} ms p99 ${r.rttP99Ms?.toFixed(3)} ms, replies ${(100 * r.replyRatio).toFixed(1)}%, gateway ${r.gatewayCpuPctOfBox.toFixed(1)}% of box, +${r.gatewayRssKbPerSession?.toFixed(0)} kB/session`);
  } catch (e) {
    console.error(`bench: mtun ${n} sessions failed: ${e.message}`);
    out.results.push({ sessions: n, error: e.message });
  }
  if (OUT) writeFileSync(OUT, JSON.stringify(out, null, 1));
}
process.exit(0);
