// One load-generator process for bench/mtun-sessions.mjs (forked, IPC with
// 'advanced' serialization). It opens `count` agent sessions (each its own
// QUIC connection and CONNECT-IP stream, no TUN) on one UDP socket bound to
// its own source address, then on command either sends ICMP echoes at a
// fixed per-session rate (busy) or only holds the sessions with QUIC
// keepalives (idle). It reports its own CPU time so the coordinator can
// print it next to the gateway's.
//
// Messages in:  {cmd:'open'} {cmd:'echo', startAtEpochMs, seconds, rate} {cmd:'status'} {cmd:'close'}
// Messages out: {ev:'open', ok, openMs, error?} {ev:'echo', sent, replies, rtts:Float64Array, sentOffsets:Float64Array, cpuMs}
//               {ev:'status', open, lost, cpuMs} {ev:'closed'}
import { readFileSync } from 'node:fs';
import { attachH3 } from '../dist/h3/quic-binding.js';
import { connectIp } from '../dist/masque/h3-glue.js';
import { openNativeUdp } from '../dist/net/native-udp.js';
import { QuicEndpoint } from '../dist/quic/endpoint.js';
import { craftIcmp } from '../dist/packet/craft.js';

const o = JSON.parse(process.argv[2]);
// o: {gateway:"h:p", bind, certs, target, count, offset (first global session index), keepAliveMs, openConcurrency, openTimeoutMs, index, workers}
const [GW_HOST, GW_PORT] = o.gateway.split(':');
const HEADROOM = 16;
const RING = 1024; // send-time slots per session (sequence & 1023)

const ca = readFileSync(`${o.certs}/ca.pem`, 'utf8');
const cert = readFileSync(`${o.certs}/agent-cluster-a.pem`, 'utf8');
const key = readFileSync(`${o.certs}/agent-cluster-a-key.pem`, 'utf8');

const socket = openNativeUdp({ host: o.bind });
const endpoint = new QuicEndpoint({
  socket,
  client: { caPem: ca, certPem: cert, keyPem: key },
  idleTimeoutMs: Math.max(30_000, 3 * o.keepAliveMs),
  keepAliveMs: o.keepAliveMs,
  maxConnections: o.count + 16,
});
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const cpuMs = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};

let sessions = [];
let lost = 0;
let sentAt = new Float64Array(0);
let rtts = new Float64Array(0);
// When each answered echo was sent, ms after the echo phase began (same index as rtts).
let sentOffsets = new Float64Array(0);
let echoStart = 0;
let nRtt = 0;
let replies = 0;
const progress = { established: 0, assigned: 0 };

function onReply(idx, buf, off, len) {
  // IPv4 header (20) + ICMP echo reply (type 0); sequence = ring slot.
  if (len < 28 || buf[off + 20] !== 0) return;
  const seq = (buf[off + 26] << 8) | buf[off + 27];
  const slot = idx * RING + (seq & (RING - 1));
  const t = sentAt[slot];
  if (t > 0) {
    if (nRtt < rtts.length) {
      sentOffsets[nRtt] = t - echoStart;
      rtts[nRtt++] = performance.now() - t;
    }
    sentAt[slot] = 0;
    replies++;
  }
}

async function openSession(idx) {
  const conn = endpoint.connect(GW_HOST, Number(GW_PORT), 'gateway');
  const h3 = attachH3(conn);
  await conn.whenEstablished();
  progress.established++;
  let assigned;
  const got = new Promise((resolve) => (assigned = resolve));
  // One identity per 4 sessions (bench/mtun-sessions.sh writes the tokens).
  const k = Math.floor((o.offset + idx) / 4);
  const session = await connectIp(h3, `gateway:${GW_PORT}`, {
    headers: [['authorization', `Bearer bench-session-token-${String(k).padStart(12, '0')}`]],
    onPacket: (buf, off, len) => onReply(idx, buf, off, len),
    onEvent: (e) => {
      if (e.type === 'addresses-assigned' && e.addresses.length > 0) assigned(e.addresses[0].address);
    },
  });
  session.requestAddresses([{ version: 4 }]);
  conn.flush();
  const addr = await got;
  progress.assigned++;
  const s = { conn, h3, session, src: Array.from(addr).join('.'), open: true, pkt: null };
  const prev = conn.onEvent;
  conn.onEvent = (c, ev) => {
    if (ev === 'closed' && s.open) {
      s.open = false;
      lost++;
    }
    prev?.(c, ev);
  };
  return s;
}

async function open() {
  const t0 = performance.now();
  let timer;
  try {
    // At most o.openConcurrency handshakes in flight (0: all at once), as a fleet with reconnect jitter would arrive.
    const limit = o.openConcurrency > 0 ? o.openConcurrency : o.count;
    const all = new Array(o.count);
    let next = 0;
    const lane = async () => {
      while (next < o.count) {
        const i = next++;
        all[i] = await openSession(i);
      }
    };
    sessions = await Promise.race([
      Promise.all(Array.from({ length: Math.min(limit, o.count) }, lane)).then(() => all),
      new Promise((_, rej) => (timer = setTimeout(() => rej(new Error(`worker ${o.index}: of ${o.count} sessions ${progress.established} established, ${progress.assigned} with an address after ${o.openTimeoutMs} ms`)), o.openTimeoutMs))),
    ]);
    clearTimeout(timer);
    sentAt = new Float64Array(o.count * RING);
    process.send({ ev: 'open', ok: true, openMs: performance.now() - t0 });
  } catch (e) {
    clearTimeout(timer);
    process.send({ ev: 'open', ok: false, error: e.message, openMs: performance.now() - t0, open: endpoint.connectionCount });
  }
}

/** Busy phase: every session sends `rate` echoes/s; all sends of a round leave in one endpoint flush. */
async function echo(m) {
  const n = sessions.length;
  const pkts = sessions.map((s, i) => {
    const p = craftIcmp({ src: s.src, dst: o.target, type: 8, rest: (((o.index << 12) + i) << 16) >>> 0, payload: new Uint8Array(56) });
    const b = Buffer.alloc(HEADROOM + p.length);
    p.copy(b, HEADROOM);
    return b;
  });
  const rounds = Math.round(m.seconds * m.rate);
  rtts = new Float64Array(rounds * n);
  sentOffsets = new Float64Array(rounds * n);
  nRtt = 0;
  replies = 0;
  const intervalMs = 1000 / m.rate;
  // Spread this worker's rounds over the interval so workers do not fire in lockstep.
  const w0 = m.startAtEpochMs - Date.now() + performance.now() + (o.index * intervalMs) / o.workers;
  while (performance.now() < w0) await sleep(Math.max(0, w0 - performance.now()));
  const c0 = cpuMs();
  echoStart = performance.now();
  let sent = 0;
  for (let r = 0; r < rounds; r++) {
    const seq = r & 0xffff;
    for (let i = 0; i < n; i++) {
      const s = sessions[i];
      if (!s.open) continue;
      const b = pkts[i];
      const q = HEADROOM + 20;
      // Incremental ICMP checksum update (RFC 1624) for the new sequence number.
      const oldSeq = (b[q + 6] << 8) | b[q + 7];
      let sum = (~((b[q + 2] << 8) | b[q + 3]) & 0xffff) + (~oldSeq & 0xffff) + seq;
      sum = (sum & 0xffff) + (sum >>> 16);
      sum = (sum & 0xffff) + (sum >>> 16);
      const ck = ~sum & 0xffff;
      b[q + 2] = ck >> 8;
      b[q + 3] = ck & 0xff;
      b[q + 6] = seq >> 8;
      b[q + 7] = seq & 0xff;
      sentAt[i * RING + (seq & (RING - 1))] = performance.now();
      s.session.sendPacket(b, HEADROOM, b.length - HEADROOM);
      sent++;
    }
    endpoint.flush(); // one send batch for every session of the round
    const wait = w0 + (r + 1) * intervalMs - performance.now();
    await sleep(wait > 0 ? wait : 0);
  }
  await sleep(300);
  process.send({ ev: 'echo', sent, replies, rtts: rtts.subarray(0, nRtt), sentOffsets: sentOffsets.subarray(0, nRtt), cpuMs: cpuMs() - c0 });
}

async function close() {
  for (const s of sessions) {
    if (!s.open) continue;
    s.open = false;
    s.session.close();
    s.h3.shutdown();
  }
  endpoint.flush();
  await sleep(200);
  endpoint.close(0, 'bench done');
  await sleep(100);
  socket.close();
  process.send({ ev: 'closed' });
}

process.on('message', (m) => {
  if (m.cmd === 'open') void open();
  else if (m.cmd === 'echo') void echo(m);
  else if (m.cmd === 'status') process.send({ ev: 'status', open: sessions.filter((s) => s.open).length, lost, cpuMs: cpuMs() });
  else if (m.cmd === 'close') void close().then(() => process.exit(0));
});
process.on('disconnect', () => process.exit(0));
