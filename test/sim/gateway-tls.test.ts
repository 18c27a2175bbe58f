/**
 * The gateway's TLS state over reloads and restarts (#12 items 4 and 5), in
 * one process: a real Gateway on MemoryNet with MemoryTun, and a QUIC client
 * with mTLS. Session tickets do not survive a restart or a reload (the ticket
 * key is random per process and rotated); a reload that rotates the client CA
 * closes the connections the new CA does not vouch for.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseGatewayConfig } from '../../src/config/index.js';
import { MemoryKernel } from '../../src/daemon/memory-kernel.js';
import { systemClock, type TunFactory } from '../../src/daemon/ports.js';
import { Gateway } from '../../src/gateway/gateway.js';
import { attachH3 } from '../../src/h3/quic-binding.js';
import { QuicEndpoint } from '../../src/quic/endpoint.js';
import { CRYPTO_ERROR_CERTIFICATE_REVOKED } from '../../src/quic/engine.js';
import { MemoryTun } from '../../src/tun/memory-tun.js';
import { whenClosed, writePkiFiles } from './quic-harness.js';
import { MemoryNet } from './quic-memory-udp.js';

const AGENT_ID = 'spiffe://mesh.test/ns/default/sa/agent';

describe('gateway TLS across restarts and reloads (#12 items 4, 5)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mtun-gwtls-'));
  const net = new MemoryNet();
  const kernel = new MemoryKernel();
  const log: Array<Record<string, unknown>> = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => void log.push(JSON.parse(line) as Record<string, unknown>) });
  const tuns: TunFactory = async (req) => new MemoryTun({ name: req.name ?? 'gt', mtu: req.mtu });
  let port = 0;
  const config = (ca = 'ca.pem') => parseGatewayConfig(`
listen: 127.0.0.1:1
tls: {cert: gw.pem, key: gw-key.pem, ca: ${ca}}
pools: {ipv4: 10.201.0.0/24}
policy:
  - identity: ${AGENT_ID}
    allow: [{prefixes: [10.20.0.0/24]}]
tun: {name: gt}
admin: {enabled: false}
`, join(dir, 'gateway.yaml'), dir);
  const start = () => {
    const udp = net.open(port === 0 ? {} : { port });
    port = udp.port;
    return Gateway.start(config(), { openTun: tuns, udp, kernel, clock: systemClock, log: logger });
  };
  let client: QuicEndpoint;
  /** One mTLS connection to the gateway with HTTP/3 attached; resolves once established. */
  const connect = async () => {
    const c = client.connect('127.0.0.1', port, 'localhost');
    attachH3(c, {}, () => undefined);
    await c.whenEstablished();
    // The session ticket (TLS 1.3 NewSessionTicket) follows the handshake.
    await new Promise((r) => setTimeout(r, 100));
    return c;
  };
  const closeOne = async (c: ReturnType<QuicEndpoint['connect']>) => {
    c.close(true, 0, '');
    await whenClosed(c);
  };

  beforeAll(async () => {
    const pki = await writePkiFiles(dir);
    client = new QuicEndpoint({ socket: net.open(), client: { caPem: pki.ca.certPem, certPem: pki.client.certPem, keyPem: pki.client.keyPem } });
  });
  afterAll(() => {
    client?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('a ticket from before a restart (same server key) or a reload resumes nothing', async () => {
    let gw = await start();
    try {
      await closeOne(await connect());
      const resumed = await connect();
      expect(resumed.isResumed()).toBe(true); // tickets work within one process
      await closeOne(resumed);
    } finally {
      await gw.stop();
    }
    // Before the fix the ticket key was derived from the server key: the restarted gateway resumed this session.
    gw = await start();
    try {
      const afterRestart = await connect();
      expect(afterRestart.isResumed()).toBe(false);
      await closeOne(afterRestart);
      gw.reload(config());
      const afterReload = await connect();
      expect(afterReload.isResumed()).toBe(false);
      await closeOne(afterReload);
    } finally {
      await gw.stop();
    }
  }, 20_000);

  it('a reload that replaces the client CA closes connections the new CA does not vouch for, and logs why', async () => {
    const gw = await start();
    try {
      const c = await connect();
      gw.reload(config('other-ca.pem'));
      await whenClosed(c);
      expect(c.closeInfo).toMatchObject({ byPeer: true, app: false, errorCode: CRYPTO_ERROR_CERTIFICATE_REVOKED });
      const line = log.find((l) => l.msg === 'closing agent connection on reload: client CA changed');
      expect(line).toMatchObject({ reason: 'not issued by the configured client CA' });
      expect(log.filter((l) => l.msg === 'certificates, policy and tokens reloaded').at(-1)).toMatchObject({ revokedConnections: 1 });
    } finally {
      await gw.stop();
    }
  }, 20_000);
});
