/**
 * The gateway drives its sessions' sans-IO timers on the clock it is given
 * (DaemonIo.clock), not on performance.now: a deferred ROUTE_ADVERTISEMENT
 * (RFC 9484 §4.7.3, rate-limited by `masque.advertisementsPerSecond`) is
 * applied when that clock says its token is back. Real Agent and Gateway in
 * memory (MemoryNet, MemoryTun, MemoryKernel); the gateway's clock is
 * stepped by the test and its once-a-second tick is run by hand. The site
 * prefix is one no host here is likely to have as a connected subnet (those
 * may not be advertised, #12 item 9).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { Agent } from '../../src/agent/agent.js';
import { parseAgentConfig, parseGatewayConfig } from '../../src/config/index.js';
import { MemoryKernel } from '../../src/daemon/memory-kernel.js';
import { systemClock, type Clock, type TunFactory } from '../../src/daemon/ports.js';
import { Gateway } from '../../src/gateway/gateway.js';
import { MemoryTun } from '../../src/tun/memory-tun.js';
import { writePkiFiles } from './quic-harness.js';
import { MemoryNet } from './quic-memory-udp.js';

const AGENT_ID = 'spiffe://mesh.test/ns/default/sa/agent';
const silent = pino({ level: process.env.MTUN_SIM_LOG ?? 'silent' });

async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('gateway session timers run on the injected clock', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mtun-gwclock-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('a deferred ROUTE_ADVERTISEMENT is applied once the injected clock has moved a token\'s worth, on the next tick', async () => {
    await writePkiFiles(dir);
    // The gateway's clock: real timers, a time the test steps, and the 1 s tick run by hand.
    let skew = 0;
    const ticks: Array<() => void> = [];
    const clock: Clock = { now: () => Date.now() + skew, after: systemClock.after, every: (ms, fn) => (ms === 1000 ? (ticks.push(fn), { cancel: () => undefined }) : systemClock.every(ms, fn)) };
    const gwYaml = (site: string) => `
listen: 127.0.0.1:1
tls: {cert: gw.pem, key: gw-key.pem, ca: ca.pem}
pools: {ipv4: 10.202.0.0/24}
masque: {advertisementsPerSecond: 1, advertisementBurst: 1}
policy:
  - identity: ${AGENT_ID}
    allow: [{prefixes: [10.20.0.0/24]}]
    advertise: [${site}]
tun: {name: gc}
admin: {enabled: false}
`;
    const net = new MemoryNet();
    const kernel = new MemoryKernel();
    const tuns: TunFactory = async (req) => new MemoryTun({ name: req.name ?? 'mem', mtu: req.mtu });
    const udp = net.open();
    const gw = await Gateway.start(parseGatewayConfig(gwYaml('10.213.7.0/24'), join(dir, 'gateway.yaml'), dir), { openTun: tuns, udp, kernel, clock, log: silent });
    const agent = await Agent.start(parseAgentConfig(`
gateway: {address: 127.0.0.1:${udp.port}, serverName: localhost}
tls: {cert: agent.pem, key: agent-key.pem, ca: ca.pem}
advertise: [10.213.7.0/24]
tun: {name: ac}
admin: {enabled: false}
telemetry: {flowLog: {enabled: false}}
`, join(dir, 'agent.yaml'), dir), { openTun: tuns, udp: net.open(), kernel: new MemoryKernel(), clock: systemClock, log: silent });
    const siteRoutes = () => gw.status().sessions.flatMap((s) => s.routes);
    try {
      await until(() => siteRoutes().includes('10.213.7.0/24'), 10_000, 'the site route');
      // The reload re-applies the advertisement under a policy that no longer allows the site;
      // the one token was spent on the first advertisement, so it waits (1 s at 1/s).
      gw.reload(parseGatewayConfig(gwYaml('10.99.0.0/24'), join(dir, 'gateway.yaml'), dir));
      for (const t of ticks) t();
      await new Promise((r) => setTimeout(r, 50));
      expect(siteRoutes()).toContain('10.213.7.0/24');
      skew += 1_000;
      for (const t of ticks) t();
      await until(() => !siteRoutes().includes('10.213.7.0/24'), 300, 'the deferred advertisement applied on the stepped clock');
    } finally {
      await agent.stop();
      await gw.stop();
    }
  }, 30_000);
});
