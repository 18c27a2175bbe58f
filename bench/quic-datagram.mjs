#!/usr/bin/env node
// QUIC DATAGRAM throughput client -> server on loopback, node:dgram socket vs
// the native batched socket (sendmmsg/recvmmsg, GSO, GRO), with a per-packet
// cost breakdown: time inside QUIC engine napi calls vs socket calls vs our code.
//
// Run after a build:  npx tsc -p tsconfig.json && node bench/quic-datagram.mjs [--seconds 3] [--size 1200]
//
// The server runs in a worker thread (its own event loop and core), the client
// in the main thread. Each run is bounded by wall time and packet count.
// Pass 1 per socket kind measures throughput with unmodified bindings; pass 2
// wraps the engine's connection and socket methods with timers (adds ~0.1 µs per call of
// its own) to split each side's busy time per packet.
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { performance, PerformanceObserver } from 'node:perf_hooks';
import { openDgramUdpSocket } from '../dist/net/dgram-udp.js';
import { QuicEndpoint } from '../dist/quic/endpoint.js';
import { createDevCa, issueServerCert } from '../dist/certs/pki.js';

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : dflt;
};
const SECONDS = opt('seconds', 3);
const SIZE = opt('size', 1200);
const MAX_PACKETS = 20_000_000;
const BURST = 128; // datagrams offered per client loop turn

async function openSocket(kind, gro) {
  if (kind === 'dgram') return openDgramUdpSocket({ host: '127.0.0.1' });
  const { openNativeUdp } = await import('../dist/net/native-udp.js');
  return openNativeUdp({ host: '127.0.0.1', gro });
}

// Wraps methods of `proto` to accumulate their time (ms) and calls into `acc[name]`.
function instrument(proto, names, acc) {
  for (const name of names) {
    const orig = proto[name];
    acc[name] = { ms: 0, calls: 0 };
    const a = acc[name];
    proto[name] = function (...xs) {
      const t = performance.now();
      try {
        return orig.apply(this, xs);
      } finally {
        a.ms += performance.now() - t;
        a.calls++;
      }
    };
  }
}

const ENGINE_METHODS = ['send', 'recv', 'dgramSend', 'dgramRecv', 'timeout', 'isReadable', 'isEstablished',
  'isClosed', 'isDraining', 'isDgramRecvQueueFull', 'dgramMaxWritableLen', 'onTimeout', 'session'];

async function instrumentAll(sock, acc) {
  const { Ngtcp2Connection } = await import('../dist/quic/ngtcp2.js');
  instrument(Ngtcp2Connection.prototype, ENGINE_METHODS, acc);
  const sockAcc = {};
  instrument(Object.getPrototypeOf(sock), ['recv', 'send'], sockAcc);
  acc['socket.recv'] = sockAcc.recv;
  acc['socket.send'] = sockAcc.send;
}

// Cost (ms) of the timing wrapper itself per call, measured on a no-op, so it
// can be taken out of "ours" (it is paid outside the timed region too).
const WRAP_MS = (() => {
  const o = { f() {} };
  const acc = {};
  instrument(o, ['f'], acc);
  const n = 200_000;
  for (let i = 0; i < n; i++) o.f();
  const t = performance.now();
  for (let i = 0; i < n; i++) o.f();
  return (performance.now() - t) / n;
})();

// GC pauses of this thread (ms), mostly from objects the binding allocates per call.
const gc = { ms: 0 };
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) gc.ms += e.duration;
}).observe({ entryTypes: ['gc'] });

function summarize(acc, busyMs, packets, gcMs) {
  let napi = 0;
  let sockMs = 0;
  let calls = 0;
  const parts = {};
  for (const [k, v] of Object.entries(acc)) {
    if (v.calls === 0) continue;
    calls += v.calls;
    if (k.startsWith('socket.')) sockMs += v.ms;
    else napi += v.ms;
    parts[k] = { usPerPkt: +((v.ms * 1000) / packets).toFixed(3), calls: v.calls };
  }
  const us = (x) => +((x * 1000) / packets).toFixed(3);
  const wrap = calls * WRAP_MS;
  return {
    totalUs: us(busyMs - wrap),
    napiUs: us(napi),
    socketUs: us(sockMs),
    oursUs: us(busyMs - napi - sockMs - wrap - gcMs),
    gcUs: us(gcMs),
    wrapUs: us(wrap),
    parts,
  };
}

// ------------------------------------------------------------------ server
if (!isMainThread) {
  const { kind, certPem, keyPem, profile } = workerData;
  const sock = await openSocket(kind, true);
  const acc = {};
  if (profile) await instrumentAll(sock, acc);
  let received = 0;
  let bytes = 0;
  let elu0 = null;
  let conn = null;
  const buf = new Uint8Array(2048);
  const ep = new QuicEndpoint({
    socket: sock,
    keylogPath: null,
    batchSize: 64,
    server: {
      certPem,
      keyPem,
      retry: 'off',
      onConnection: (c) => {
        conn = c;
        c.onEvent = (conn, ev) => {
          if (ev !== 'readable') return;
          let n;
          while ((n = conn.dgramRecv(buf)) !== null) {
            received++;
            bytes += n;
          }
        };
      },
    },
  });
  parentPort.on('message', (m) => {
    if (m === 'start') {
      received = 0;
      bytes = 0;
      for (const v of Object.values(acc)) {
        v.ms = 0;
        v.calls = 0;
      }
      elu0 = performance.eventLoopUtilization();
      gc.ms = 0;
    } else if (m === 'stop') {
      const elu = performance.eventLoopUtilization(elu0);
      parentPort.postMessage({ received, bytes, busyMs: elu.active, breakdown: profile ? summarize(acc, elu.active, received, gc.ms) : null, recvQueueFull: conn?.stats().dgramRecvQueueFullEvents ?? -1 });
      ep.close();
      sock.close();
      parentPort.close();
    }
  });
  parentPort.postMessage({ port: sock.localAddress().port, gso: sock.gso, gro: sock.gro });
} else {
  // ---------------------------------------------------------------- client
  const ca = await createDevCa();
  const srv = await issueServerCert(ca);

  async function run(kind, profile) {
    const worker = new Worker(new URL(import.meta.url), {
      workerData: { kind, certPem: srv.certPem, keyPem: srv.keyPem, profile },
    });
    const msgs = [];
    let wake = null;
    worker.on('message', (m) => {
      msgs.push(m);
      wake?.();
    });
    const next = async () => {
      while (msgs.length === 0) await new Promise((r) => (wake = r));
      return msgs.shift();
    };
    const info = await next();
    const sock = await openSocket(kind, true);
    const acc = {};
    if (profile) await instrumentAll(sock, acc);
    const ep = new QuicEndpoint({ socket: sock, keylogPath: null, batchSize: 64, client: { caPem: ca.certPem } });
    const c = ep.connect('127.0.0.1', info.port, 'localhost');
    await c.whenEstablished();
    const size = Math.min(SIZE, c.dgramMaxWritableLen());
    const payload = new Uint8Array(size).fill(0x5a);
    // Warm up (cwnd growth, JIT) for 300 ms, then measure.
    let offered = 0;
    let queued = 0;
    const pump = (until, done) => {
      const loop = () => {
        for (let i = 0; i < BURST && offered < MAX_PACKETS; i++) {
          offered++;
          if (c.dgramSend(payload, 0, size)) queued++;
          else break;
        }
        c.flush();
        if (performance.now() < until && offered < MAX_PACKETS) setImmediate(loop);
        else done();
      };
      loop();
    };
    await new Promise((r) => pump(performance.now() + 300, r));
    worker.postMessage('start');
    for (const v of Object.values(acc)) {
      v.ms = 0;
      v.calls = 0;
    }
    offered = 0;
    queued = 0;
    const st0 = c.stats();
    const elu0 = performance.eventLoopUtilization();
    gc.ms = 0;
    const t0 = performance.now();
    await new Promise((r) => pump(t0 + SECONDS * 1000, r));
    const elapsed = (performance.now() - t0) / 1000;
    const elu = performance.eventLoopUtilization(elu0);
    const gcMs = gc.ms;
    // Let the tail arrive.
    await new Promise((r) => setTimeout(r, 100));
    worker.postMessage('stop');
    const res = await next();
    const st1 = c.stats();
    ep.close();
    sock.close();
    const sentPkts = st1.sentPackets - st0.sentPackets;
    return {
      kind,
      gso: info.gso,
      gro: info.gro,
      size,
      seconds: +elapsed.toFixed(2),
      pps: Math.round(res.received / elapsed),
      gbps: +((res.bytes * 8) / elapsed / 1e9).toFixed(3),
      offered,
      queued,
      received: res.received,
      lostPackets: st1.lostPackets - st0.lostPackets,
      rttMs: st1.rttMs,
      cwndBytes: st1.cwndBytes,
      clientBusy: +(elu.utilization * 100).toFixed(1),
      serverBusyMs: Math.round(res.busyMs),
      recvQueueFull: res.recvQueueFull,
      clientBreakdown: profile ? summarize(acc, elu.active, sentPkts, gcMs) : null,
      serverBreakdown: res.breakdown,
    };
  }

  const kinds = ['dgram'];
  try {
    const { openNativeUdp } = await import('../dist/net/native-udp.js');
    openNativeUdp({ host: '127.0.0.1' }).close();
    kinds.push('native');
  } catch (e) {
    console.warn(`native socket unavailable, benchmarking node:dgram only: ${e.message}`);
  }
  const results = [];
  for (const kind of kinds) results.push(await run(kind, false));
  for (const r of results) {
    console.log(
      `${r.kind.padEnd(6)} gso=${r.gso} gro=${r.gro} payload=${r.size}B  ${r.pps.toLocaleString()} dgram/s  ${r.gbps} Gbps` +
        `  (offered ${r.offered}, queued ${r.queued}, received ${r.received}, lost pkts ${r.lostPackets}, rtt ${r.rttMs} ms, cwnd ${r.cwndBytes} B, client loop busy ${r.clientBusy}%, server busy ${r.serverBusyMs} ms, server DATAGRAM queue full after ${r.recvQueueFull} batches)`,
    );
  }
  if (results.length === 2) console.log(`native/dgram throughput ratio: ${(results[1].pps / results[0].pps).toFixed(2)}x`);
  console.log('\nper-packet cost breakdown (instrumented run; µs per datagram):');
  for (const kind of kinds) {
    const r = await run(kind, true);
    for (const [side, b] of [['client', r.clientBreakdown], ['server', r.serverBreakdown]]) {
      const top = Object.entries(b.parts)
        .sort((x, y) => y[1].usPerPkt - x[1].usPerPkt)
        .slice(0, 5)
        .map(([k, v]) => `${k} ${v.usPerPkt}`)
        .join(', ');
      console.log(
        `${kind.padEnd(6)} ${side}: total ${b.totalUs}  napi ${b.napiUs}  socket ${b.socketUs}  gc ${b.gcUs}  ours ${b.oursUs}   [${top}]  (timer overhead ${b.wrapUs} removed)  (${r.pps.toLocaleString()} dgram/s instrumented)`,
      );
    }
  }
}
