#!/usr/bin/env node
// Side-by-side packet I/O benchmark: UDP over loopback with node:dgram vs the
// native addon (sendmmsg/recvmmsg, + GSO, + GRO), and TUN write+read packets/s
// through a hairpin in a private namespace (root only).
//
// Run after a build:  npx tsc -p tsconfig.json && node bench/native-io.mjs [--seconds 2] [--size 1200]
// Every loop is bounded by packet count and wall time. Numbers are packets
// delivered end to end per wall second and per CPU second of this process
// (sender and receiver both run here, so CPU covers both sides).
//
//   netns mt<pid>xb0 (ip_forward=1)
//     tun mt<pid>xbt 10.90.0.1/24, route 10.91.0.0/24 -> tun
//     we write 10.90.0.2 -> 10.91.0.2 into the TUN; the kernel forwards it
//     back out of the same TUN; we read it again.
import dgram from 'node:dgram';
import { execFileSync, spawn } from 'node:child_process';
import { openNativeUdp } from '../dist/net/native-udp.js';
import { allocUdpBatch, writeAddrSlot } from '../dist/net/udp-batch.js';
import { openTun } from '../dist/tun/native-tun.js';

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : dflt;
};
const SECONDS = opt('seconds', 2);
const SIZE = opt('size', 1200);
const MAX_PACKETS = 5_000_000;
const WINDOW = 2048; // datagrams in flight at most (keeps loopback loss-free)

function measure(fn) {
  return new Promise((resolve, reject) => {
    const cpu0 = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    fn((packets, extra = {}) => {
      const wall = Number(process.hrtime.bigint() - t0) / 1e9;
      const c = process.cpuUsage(cpu0);
      const cpu = (c.user + c.system) / 1e6;
      resolve({ packets, wall, cpu, pps: packets / wall, perCpu: packets / cpu, ...extra });
    }, reject);
  });
}

async function benchDgram() {
  return measure((done) => {
    const rx = dgram.createSocket('udp4');
    const tx = dgram.createSocket('udp4');
    const payload = Buffer.alloc(SIZE, 7);
    let sent = 0;
    let received = 0;
    let pending = 0;
    const deadline = Date.now() + SECONDS * 1000;
    let finished = false;
    const finish = () => {
      if (finished) return;
      finished = true;
      rx.close();
      tx.close();
      done(received);
    };
    rx.on('message', () => {
      received++;
      if (received >= MAX_PACKETS || Date.now() > deadline) finish();
    });
    rx.bind(0, '127.0.0.1', () => {
      rx.setRecvBufferSize(4 << 20);
      const port = rx.address().port;
      const pump = () => {
        if (finished) return;
        while (sent - received < WINDOW && pending < 256 && sent < MAX_PACKETS) {
          sent++;
          pending++;
          tx.send(payload, port, '127.0.0.1', onSent);
        }
        if (Date.now() > deadline + 1000) finish();
      };
      function onSent() {
        pending--;
        pump();
      }
      pump();
      const t = setInterval(() => (finished ? clearInterval(t) : pump()), 1);
    });
  });
}

async function benchNative({ gso, gro }) {
  return measure((done) => {
    const rx = openNativeUdp({ host: '127.0.0.1', gro, batchSize: 64 });
    const tx = openNativeUdp({ host: '127.0.0.1', gso, batchSize: 64 });
    const port = rx.localAddress().port;
    const tb = allocUdpBatch(64, SIZE);
    for (let i = 0; i < 64; i++) {
      tb.sizes[i] = SIZE;
      writeAddrSlot(tb.addrs, i, '127.0.0.1', port);
    }
    const rb = allocUdpBatch(64, gro ? 65535 : 2048);
    let sent = 0;
    let received = 0;
    let finished = false;
    const deadline = Date.now() + SECONDS * 1000;
    const finish = () => {
      if (finished) return;
      finished = true;
      const st = tx.stats();
      rx.close();
      tx.close();
      clearInterval(timer);
      done(received, { gsoSends: st.txGsoSends, slotsPerRecv: 0 });
    };
    const pump = () => {
      if (finished) return;
      while (sent - received < WINDOW && sent < MAX_PACKETS) {
        const n = tx.send(tb, 64);
        sent += n;
        if (n < 64) break;
      }
    };
    rx.onReadable(() => {
      const n = rx.recv(rb);
      for (let i = 0; i < n; i++) {
        const seg = rb.segs[i];
        received += seg ? Math.ceil(rb.sizes[i] / seg) : 1;
      }
      if (received >= MAX_PACKETS || Date.now() > deadline) finish();
      else pump();
    });
    tx.onWritable(pump);
    const timer = setInterval(() => {
      if (Date.now() > deadline + 1000) finish();
      else pump();
    }, 1);
    pump();
  });
}

function sh(...a) {
  return execFileSync(a[0], a.slice(1), { stdio: 'pipe', encoding: 'utf8' });
}

// IPv4 header with checksum (RFC 791) carrying a UDP datagram (checksum 0: allowed for IPv4, RFC 768).
function buildPacket(buf, off, size) {
  buf.fill(0, off, off + size);
  buf[off] = 0x45;
  buf.writeUInt16BE(size, off + 2);
  buf[off + 8] = 64;
  buf[off + 9] = 17;
  buf.set([10, 90, 0, 2], off + 12);
  buf.set([10, 91, 0, 2], off + 16);
  let sum = 0;
  for (let i = 0; i < 20; i += 2) sum += buf.readUInt16BE(off + i);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  buf.writeUInt16BE(~sum & 0xffff, off + 10);
  buf.writeUInt16BE(4000, off + 20);
  buf.writeUInt16BE(5000, off + 22);
  buf.writeUInt16BE(size - 20, off + 24);
}

async function benchTun() {
  const ns = `mt${process.pid % 100000}xb0`;
  sh('ip', 'netns', 'add', ns);
  try {
    sh('ip', 'netns', 'exec', ns, 'sysctl', '-qw', 'net.ipv4.ip_forward=1');
    sh('ip', 'netns', 'exec', ns, 'sysctl', '-qw', 'net.ipv4.conf.all.rp_filter=0');
    sh('ip', 'netns', 'exec', ns, 'sysctl', '-qw', 'net.ipv4.conf.default.rp_filter=0');
    const tun = await openTun({
      name: `mt${process.pid % 100000}xbt`, mtu: 1500, addresses: ['10.90.0.1/24'], routes: ['10.91.0.0/24'], netns: ns,
      batchSize: 64,
    });
    try {
      const HEAD = 16;
      const wb = Array.from({ length: 64 }, () => Buffer.alloc(HEAD + 1500));
      const ws = new Uint32Array(64);
      for (let i = 0; i < 64; i++) {
        buildPacket(wb[i], HEAD, SIZE);
        ws[i] = SIZE;
      }
      const rbufs = Array.from({ length: 64 }, () => Buffer.alloc(HEAD + 1500));
      const rs = new Uint32Array(64);
      return await measure((done) => {
        let written = 0;
        let read = 0;
        let lost = 0; // written but never read back: dropped inside the kernel
        let lastRead = -1;
        let finished = false;
        const deadline = Date.now() + SECONDS * 1000;
        const finish = () => {
          if (finished) return;
          finished = true;
          clearInterval(timer);
          done(read, { written, lost: written - read, stats: tun.stats() });
        };
        const pump = () => {
          // Keep the kernel's backlog short: past netdev_max_backlog it drops.
          while (!finished && written - read - lost < 256 && written < MAX_PACKETS) written += tun.write(wb, ws, HEAD, 64);
        };
        tun.onReadable(() => {
          for (;;) {
            const n = tun.read(rbufs, rs, HEAD);
            // Count only our packets (the kernel also sends IPv6 router solicitations and MLD).
            for (let i = 0; i < n; i++) if (rs[i] === SIZE && rbufs[i][HEAD] === 0x45) read++;
            if (n < 64) break;
          }
          if (read >= MAX_PACKETS || Date.now() > deadline) finish();
          else pump();
        });
        const timer = setInterval(() => {
          if (Date.now() > deadline + 1000) return finish();
          if (read === lastRead) lost = written - read; // no progress for a tick: the rest was dropped
          lastRead = read;
          pump();
        }, 5);
        pump();
      });
    } finally {
      tun.close();
    }
  } finally {
    sh('ip', 'netns', 'del', ns);
  }
}

// TUN<->TUN forwarder in this process; iperf3 TCP client in one namespace, server in another.
async function benchForwarder(offload) {
  const id = process.pid % 100000;
  const A = `mt${id}xf${offload ? 1 : 0}a`;
  const B = `mt${id}xf${offload ? 1 : 0}b`;
  for (const n of [A, B]) {
    sh('ip', 'netns', 'add', n);
    sh('ip', '-n', n, 'link', 'set', 'lo', 'up');
  }
  const kids = [];
  try {
    const a = await openTun({ name: `mt${id}xfa`, mtu: 1500, offload, netns: A, addresses: ['10.60.0.1/24'], routes: ['10.61.0.0/24'] });
    const b = await openTun({ name: `mt${id}xfb`, mtu: 1500, offload, netns: B, addresses: ['10.61.0.2/24'], routes: ['10.60.0.0/24'] });
    try {
      for (const [from, to] of [[a, b], [b, a]]) {
        const bufs = Array.from({ length: 64 }, () => Buffer.alloc(32 + 1500));
        const sizes = new Uint32Array(64);
        from.onReadable(() => {
          const n = from.read(bufs, sizes, 32);
          if (n) to.write(bufs, sizes, 32, n);
        });
      }
      const srv = spawn('ip', ['netns', 'exec', B, 'iperf3', '-s', '-1', '-B', '10.61.0.2'], { stdio: 'ignore' });
      kids.push(srv);
      await new Promise((r) => setTimeout(r, 400));
      const cpu0 = process.cpuUsage();
      const cli = spawn('ip', ['netns', 'exec', A, 'iperf3', '-J', '-c', '10.61.0.2', '-t', String(SECONDS)], { stdio: ['ignore', 'pipe', 'ignore'] });
      kids.push(cli);
      let out = '';
      cli.stdout.on('data', (d) => (out += d));
      await new Promise((r) => cli.on('exit', r));
      const c = process.cpuUsage(cpu0);
      const j = JSON.parse(out);
      const st = a.stats();
      return {
        mbps: j.end.sum_received.bits_per_second / 1e6,
        retrans: j.end.sum_sent.retransmits,
        packets: st.rxPackets,
        reads: offload ? st.rxSuper : st.rxPackets,
        cpu: (c.user + c.system) / 1e6,
        wall: SECONDS,
      };
    } finally {
      a.close();
      b.close();
    }
  } finally {
    for (const k of kids) k.kill('SIGKILL');
    for (const n of [A, B]) sh('ip', 'netns', 'del', n);
  }
}

const fmt = (n) => (n >= 1e6 ? `${(n / 1e6).toFixed(2)}M` : `${(n / 1e3).toFixed(1)}k`);
const rows = [];
const add = (name, r) => {
  rows.push({ name, ...r });
  console.log(
    `${name.padEnd(34)} ${fmt(r.pps).padStart(8)} pkt/s  ${fmt(r.perCpu).padStart(8)} pkt/CPU-s  (${r.packets} pkts, ${r.wall.toFixed(2)} s, cpu ${r.cpu.toFixed(2)} s)`,
  );
};

console.log(`# UDP loopback, ${SIZE}-byte payloads, ~${SECONDS} s each`);
const base = await benchDgram();
add('node:dgram send/message', base);
const plain = await benchNative({ gso: false, gro: false });
add('addon sendmmsg/recvmmsg', plain);
const gso = await benchNative({ gso: true, gro: false });
add('addon sendmmsg+GSO/recvmmsg', gso);
const gro = await benchNative({ gso: true, gro: true });
add('addon sendmmsg+GSO/recvmmsg+GRO', gro);
console.log('# ratios vs node:dgram (packets per CPU-second)');
for (const r of rows.slice(1)) console.log(`${r.name.padEnd(34)} ${(r.perCpu / base.perCpu).toFixed(1)}x  (wall pps ${(r.pps / base.pps).toFixed(1)}x)`);

if (process.getuid?.() === 0) {
  console.log(`# TUN hairpin (write -> kernel forward -> read), ${SIZE}-byte IPv4/UDP packets, batch 64`);
  const t = await benchTun();
  add('TUN write+read (plain, no offload)', t);
  console.log(`TUN written ${t.written}, read back ${t.packets}, lost in kernel ${t.lost}`);
  console.log(`# TCP (iperf3, ${SECONDS} s) through a TUN<->TUN forwarder in this process, MTU 1500`);
  const f = [];
  for (const offload of [false, true]) {
    const r = await benchForwarder(offload);
    f.push(r);
    console.log(
      `${(offload ? 'offload (TSO split + GRO on write)' : 'plain').padEnd(34)} ${r.mbps.toFixed(0).padStart(6)} Mbit/s  ` +
        `${fmt(r.packets / r.wall).padStart(8)} pkt/s read  ${fmt(r.packets / r.cpu).padStart(8)} pkt/CPU-s  ` +
        `${(r.packets / Math.max(1, r.reads)).toFixed(1)} pkts/read  retrans ${r.retrans}`,
    );
  }
  console.log(`offload vs plain: ${(f[1].mbps / f[0].mbps).toFixed(2)}x throughput, ${(f[1].packets / f[1].cpu / (f[0].packets / f[0].cpu)).toFixed(2)}x packets per CPU-second`);
} else {
  console.warn('SKIP TUN benchmark: needs root');
}
