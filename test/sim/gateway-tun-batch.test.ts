/**
 * Issue #17: packets that agents' sessions send in one turn reach the
 * gateway's TUN in one write call, not one per connection. Real Gateway on
 * MemoryNet + MemoryTun, real QUIC + HTTP/3 + CONNECT-IP clients (token
 * auth, one session per connection, as bench/mtun-sessions-worker.mjs);
 * every session sends one ICMP echo in the same turn, so the gateway reads
 * them in one receive batch and each connection gets its own `readable` event.
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

describe('gateway: agent packets of one receive batch share one TUN write', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mtun-tunbatch-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it(`${SESSIONS} sessions each send an echo in the same turn: the gateway TUN gets them in one write call`, async () => {
    const pki = await writePkiFiles(dir);
    const tokens = Array.from({ length: SESSIONS }, (_, k) => `    - { identity: agent-${k}, token: ${token(k)} }`).join('\n');
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
    try {
      const sessions: Array<{ s: ConnectIpClientSession; src: string }> = [];
      for (let k = 0; k < SESSIONS; k++) {
        const conn = ep.connect('127.0.0.1', gwUdp.port, 'localhost');
        const h3 = attachH3(conn);
        await conn.whenEstablished();
        let assigned!: (a: Uint8Array) => void;
        const got = new Promise<Uint8Array>((r) => (assigned = r));
        const s = await connectIp(h3, 'localhost', {
          headers: [['authorization', `Bearer ${token(k)}`]],
          onPacket: () => undefined,
          onEvent: (e) => {
            if (e.type === 'addresses-assigned' && e.addresses.length > 0) assigned(e.addresses[0]!.address);
          },
        });
        s.requestAddresses([{ version: 4 }]);
        conn.flush();
        sessions.push({ s, src: Array.from(await got).join('.') });
      }
      const tun = gwTun!;
      await new Promise((r) => setTimeout(r, 50)); // let the open traffic settle
      let writeCalls = 0;
      const write = tun.write.bind(tun);
      tun.write = (bufs, sizes, offset, count) => (writeCalls++, write(bufs, sizes, offset, count));
      const before = tun.written.length;
      for (const { s, src } of sessions) {
        const p = craftIcmp({ src, dst: '10.22.0.1', type: 8, rest: 0x01020001, payload: new Uint8Array(32) });
        const b = Buffer.alloc(16 + p.length);
        p.copy(b, 16);
        expect(s.sendPacket(b, 16, p.length)).toBe(0); // 0: sent (else a drop reason)
      }
      ep.flush(); // one send batch: the gateway reads all of them in one receive batch
      const end = Date.now() + 5000;
      while (tun.written.length - before < SESSIONS && Date.now() < end) await new Promise((r) => setTimeout(r, 5));
      expect(tun.written.length - before).toBe(SESSIONS);
      expect(writeCalls).toBe(1);
    } finally {
      ep.close();
      sock.close();
      await gw.stop();
    }
  }, 30_000);
});
