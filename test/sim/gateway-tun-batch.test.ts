/**
 * Issue #17: packets that agents' sessions send in one turn reach the
 * gateway's TUN in one write call, not one per connection. Real Gateway on
 * MemoryNet + MemoryTun, real QUIC + HTTP/3 + CONNECT-IP clients (token
 * auth, one session per connection, as bench/mtun-sessions-worker.mjs);
 * every session sends one ICMP echo in the same turn, so the gateway reads
 * them in one receive batch and each connection gets its own `readable` event.
 * Also (issue #13, latency): the kernel's answer to what the gateway wrote
 * into its TUN leaves in the same send batch as the QUIC ACK.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { parseGatewayConfig } from '../../src/config/index.js';
import { MemoryKernel } from '../../src/daemon/memory-kernel.js';
import { systemClock, type TunFactory } from '../../src/daemon/ports.js';
import { Gateway } from '../../src/gateway/gateway.js';
import { attachH3 } from '../../src/h3/quic-binding.js';
import { connectIp } from '../../src/masque/h3-glue.js';
import type { ConnectIpClientSession } from '../../src/masque/connect-ip/client-session.js';
import { craftIcmp } from '../../src/packet/craft.js';
import { QuicEndpoint } from '../../src/quic/endpoint.js';
import { MemoryTun } from '../../src/tun/memory-tun.js';
import { writePkiFiles } from './quic-harness.js';
import { MemoryNet } from './quic-memory-udp.js';

const silent = pino({ level: process.env.MTUN_SIM_LOG ?? 'silent' });
const SESSIONS = 8;
const token = (k: number) => `tun-batch-test-token-${String(k).padStart(16, '0')}`;

interface Rig {
  gw: Gateway;
  tun: MemoryTun;
  gwUdp: ReturnType<MemoryNet['open']>;
  ep: QuicEndpoint;
  sock: ReturnType<MemoryNet['open']>;
  sessions: Array<{ s: ConnectIpClientSession; src: string; received: Uint8Array[] }>;
}

/** A real gateway on MemoryNet + MemoryTun with `n` token-authenticated CONNECT-IP sessions, each assigned an address. */
async function startRig(dir: string, n: number): Promise<Rig> {
  const pki = await writePkiFiles(dir);
  const tokens = Array.from({ length: n }, (_, k) => `    - { identity: agent-${k}, token: ${token(k)} }`).join('\n');
  const cfg = parseGatewayConfig(`
listen: 127.0.0.1:1
tls: {cert: gw.pem, key: gw-key.pem, requireClientCert: false}
auth:
  tokens:
${tokens}
pools: {ipv4: 10.202.0.0/24}
advertise: [10.22.0.0/24]
policy:
  - identity: agent-*
    allow: [{prefixes: [10.22.0.0/24], protocols: [icmp]}]
tun: {name: tb}
h2: {enabled: false}
admin: {enabled: false}
telemetry: {flowLog: {enabled: false}}
`, join(dir, 'gateway.yaml'), dir);
  const net = new MemoryNet();
  let gwTun: MemoryTun | null = null;
  const tuns: TunFactory = async (req) => (gwTun = new MemoryTun({ name: req.name ?? 'tb', mtu: req.mtu }));
  const gwUdp = net.open({ batchSize: 64 });
  const gw = await Gateway.start(cfg, { openTun: tuns, udp: gwUdp, kernel: new MemoryKernel(), clock: systemClock, log: silent });
  const sock = net.open({ batchSize: 64 });
  const ep = new QuicEndpoint({ socket: sock, client: { caPem: pki.ca.certPem } });
  const sessions: Rig['sessions'] = [];
  for (let k = 0; k < n; k++) {
    const conn = ep.connect('127.0.0.1', gwUdp.port, 'localhost');
    const h3 = attachH3(conn);
    await conn.whenEstablished();
    let assigned!: (a: Uint8Array) => void;
    const got = new Promise<Uint8Array>((r) => (assigned = r));
    const received: Uint8Array[] = [];
    const s = await connectIp(h3, 'localhost', {
      headers: [['authorization', `Bearer ${token(k)}`]],
      onPacket: (buf, off, len) => received.push(buf.slice(off, off + len)),
      onEvent: (e) => {
        if (e.type === 'addresses-assigned' && e.addresses.length > 0) assigned(e.addresses[0]!.address);
      },
    });
    s.requestAddresses([{ version: 4 }]);
    conn.flush();
    sessions.push({ s, src: Array.from(await got).join('.'), received });
  }
  await new Promise((r) => setTimeout(r, 50)); // let the open traffic settle
  return { gw, tun: gwTun!, gwUdp, ep, sock, sessions };
}

async function stopRig(r: Rig): Promise<void> {
  r.ep.close();
  r.sock.close();
  await r.gw.stop();
}

function echo(src: string, seq: number): [Buffer, number, number] {
  const p = craftIcmp({ src, dst: '10.22.0.1', type: 8, rest: 0x01020000 + seq, payload: new Uint8Array(32) });
  const b = Buffer.alloc(16 + p.length);
  p.copy(b, 16);
  return [b, 16, p.length];
}

describe('gateway: agent packets of one receive batch share one TUN write', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mtun-tunbatch-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it(`${SESSIONS} sessions each send an echo in the same turn: the gateway TUN gets them in one write call`, async () => {
    const r = await startRig(dir, SESSIONS);
    try {
      const tun = r.tun;
      let writeCalls = 0;
      const write = tun.write.bind(tun);
      tun.write = (bufs, sizes, offset, count) => (writeCalls++, write(bufs, sizes, offset, count));
      const before = tun.written.length;
      for (const { s, src } of r.sessions) expect(s.sendPacket(...echo(src, 1))).toBe(0); // 0: sent (else a drop reason)
      r.ep.flush(); // one send batch: the gateway reads all of them in one receive batch
      const end = Date.now() + 5000;
      while (tun.written.length - before < SESSIONS && Date.now() < end) await new Promise((res) => setTimeout(res, 5));
      expect(tun.written.length - before).toBe(SESSIONS);
      expect(writeCalls).toBe(1);
    } finally {
      await stopRig(r);
    }
  }, 30_000);

  it('the kernel\'s answer, queued during the TUN write, leaves with the QUIC ACK in one datagram', async () => {
    // Before endpoint.setBeforeSend (on caf5eab), the gateway sent an ACK-only packet first (ngtcp2 0.12
    // acknowledges at once) and wrote the TUN after it, so every echo cost it two datagrams and the agent two wakes.
    const dir1 = mkdtempSync(join(tmpdir(), 'mtun-tunanswer-'));
    const r = await startRig(dir1, 1);
    try {
      // The "kernel" answers each echo request inside the write, as Linux does for a host behind the TUN.
      const ip4 = (b: Uint8Array, off: number) => Array.from(b.subarray(off, off + 4)).join('.');
      r.tun.onPacket((p) => {
        if (p[9] !== 1 || p[20] !== 8) return;
        r.tun.inject(craftIcmp({ src: ip4(p, 16), dst: ip4(p, 12), type: 0, rest: p.readUInt32BE(24), payload: p.subarray(28) }));
      });
      let datagrams = 0;
      const send = r.gwUdp.send.bind(r.gwUdp);
      r.gwUdp.send = (batch, count) => {
        for (let i = 0; i < count; i++) datagrams += batch.segs[i]! > 0 ? Math.ceil(batch.sizes[i]! / batch.segs[i]!) : 1;
        return send(batch, count);
      };
      const { s, src, received } = r.sessions[0]!;
      for (let seq = 1; seq <= 5; seq++) {
        await new Promise((res) => setTimeout(res, 30)); // idle between echoes, as a ping is
        const sentBefore = datagrams;
        const got = received.length;
        expect(s.sendPacket(...echo(src, seq))).toBe(0);
        r.ep.flush();
        const end = Date.now() + 5000;
        while (received.length === got && Date.now() < end) await new Promise((res) => setImmediate(res));
        expect(received.length).toBe(got + 1);
        expect(datagrams - sentBefore).toBe(1);
      }
    } finally {
      await stopRig(r);
      rmSync(dir1, { recursive: true, force: true });
    }
  }, 30_000);
});
