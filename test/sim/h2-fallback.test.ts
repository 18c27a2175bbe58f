/**
 * Agent transport fallback and return (issue #15), without root: a real
 * Agent and Gateway; QUIC runs over a MemoryNet whose drop hook plays the
 * firewall that blocks UDP, HTTP/2 over real TCP on 127.0.0.1 (same port
 * number as the gateway's QUIC socket).
 *
 *   site A 10.10.0.0/24                                              network B 10.20.0.0/24
 *   [test] ─▶ agent MemoryTun ─▶ Agent ══ MemoryNet (QUIC, blockable) ══▶ Gateway ─▶ MemoryTun ─▶ [test]
 *                                      ╚══ TCP 127.0.0.1 (TLS, HTTP/2) ══╝
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent } from '../../src/agent/agent.js';
import { parseAgentConfig, parseGatewayConfig } from '../../src/config/index.js';
import { MemoryKernel } from '../../src/daemon/memory-kernel.js';
import { systemClock } from '../../src/daemon/ports.js';
import { Gateway } from '../../src/gateway/gateway.js';
import { craftUdp } from '../../src/packet/craft.js';
import { MemoryTun } from '../../src/tun/memory-tun.js';
import { getPki } from './quic-harness.js';
import { MemoryNet } from './quic-memory-udp.js';
import { freePort, metric, until } from './sim-helpers.js';

const AGENT_ID = 'spiffe://mesh.test/ns/default/sa/agent';
const agentLog: Array<Record<string, unknown>> = [];
const gwLog: Array<Record<string, unknown>> = [];
const logTo = (into: Array<Record<string, unknown>>) => pino({ level: 'info' }, { write: (l: string) => void into.push(JSON.parse(l) as Record<string, unknown>) });

describe('agent: HTTP/3 first, HTTP/2 when UDP is blocked, back to HTTP/3 when it is not', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mtun-h2fb-'));
  const net = new MemoryNet();
  const kernel = new MemoryKernel();
  const agentTuns: MemoryTun[] = [];
  const gwTuns: MemoryTun[] = [];
  let gw: Gateway;
  let agent: Agent;
  let blocked = true;
  /** Packets the gateway TUN received, with arrival times. */
  const atGateway: { at: number; seq: number }[] = [];
  const atAgent: number[] = [];
  let seq = 0;
  let pump: NodeJS.Timeout | null = null;

  const transport = () => agent.status().sessions[0]?.transport;
  const send = () => {
    const payload = Buffer.alloc(4);
    payload.writeUInt32BE(seq++);
    agentTuns[0]!.inject(craftUdp({ src: '10.10.0.5', dst: '10.20.0.7', srcPort: 4000, dstPort: 53, payload }));
  };

  beforeAll(async () => {
    const pki = await getPki();
    for (const [f, v] of [['ca.pem', pki.ca.certPem], ['gw.pem', pki.server.certPem], ['gw-key.pem', pki.server.keyPem], ['agent.pem', pki.client.certPem], ['agent-key.pem', pki.client.keyPem]] as const) writeFileSync(join(dir, f), v);
    const port = await freePort();
    net.drop = () => blocked;
    gw = await Gateway.start(parseGatewayConfig(`
listen: 127.0.0.1:${port}
tls: {cert: gw.pem, key: gw-key.pem, ca: ca.pem}
pools: {ipv4: 10.202.0.0/24}
advertise: [10.20.0.0/24]
policy:
  - identity: ${AGENT_ID}
    allow: [{prefixes: [10.20.0.0/24], protocols: [udp]}]
    advertise: [10.10.0.0/24]
admin: {enabled: true, listen: 127.0.0.1:${await freePort()}}
telemetry: {flowLog: {enabled: false}}
`, join(dir, 'gateway.yaml'), dir), {
      openTun: async (req) => {
        const t = new MemoryTun({ name: `gw${gwTuns.length}`, mtu: req.mtu });
        gwTuns.push(t);
        t.onPacket((p) => atGateway.push({ at: Date.now(), seq: p.readUInt32BE(28) }));
        return t;
      },
      udp: net.open({ port }),
      kernel,
      clock: systemClock,
      log: logTo(gwLog),
    });
    agent = await Agent.start(parseAgentConfig(`
gateway: {address: 127.0.0.1:${port}, serverName: localhost}
tls: {cert: agent.pem, key: agent-key.pem, ca: ca.pem}
advertise: [10.10.0.0/24]
keepaliveIntervalMs: 1000
h2: {fallbackDelayMs: 300, quicDeadAfterMs: 1000, probeIntervalMs: 1000}
reconnect: {minDelayMs: 50, maxDelayMs: 500}
admin: {enabled: true, listen: 127.0.0.1:${await freePort()}}
telemetry: {flowLog: {enabled: false}}
`, join(dir, 'agent.yaml'), dir), {
      openTun: async (req) => {
        const t = new MemoryTun({ name: `ag${agentTuns.length}`, mtu: req.mtu });
        agentTuns.push(t);
        t.onPacket(() => void atAgent.push(Date.now()));
        return t;
      },
      udp: net.open(),
      kernel,
      clock: systemClock,
      log: logTo(agentLog),
    });
  }, 30_000);

  afterAll(async () => {
    if (pump !== null) clearInterval(pump);
    await agent?.stop();
    await gw?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('UDP blocked before the agent starts: the tunnel comes up over HTTP/2 and carries packets both ways', async () => {
    await until(() => agent.state === 'open', 10_000, 'the tunnel to come up');
    expect(transport()).toBe('h2');
    expect(gw.status().sessions.map((s) => [s.transport, s.peerIdentity])).toEqual([['h2', AGENT_ID]]);
    send();
    await until(() => atGateway.length > 0, 5_000, 'a packet at the gateway over HTTP/2');
    expect(gwTuns[0]!.inject(craftUdp({ src: '10.20.0.7', dst: '10.10.0.5', srcPort: 53, dstPort: 4000, payload: Buffer.from('back') }))).toBe(true);
    await until(() => atAgent.length > 0, 5_000, 'the reply at the agent over HTTP/2');
    expect(await metric(agent.adminUrl!, 'mtun_agent_transport', { transport: 'h2' })).toBe(1);
    expect(await metric(gw.adminUrl!, 'mtun_tunnel_sessions_by_transport', { transport: 'h2' })).toBe(1);
    expect(await metric(gw.adminUrl!, 'mtun_h2_datagrams_total', { direction: 'received' })).toBeGreaterThanOrEqual(1);
  }, 20_000);

  it('UDP unblocked: the agent probes HTTP/3 and moves back, routes kept on both ends; the switch is logged and counted', async () => {
    blocked = false;
    const t0 = Date.now();
    await until(() => agent.state === 'open' && transport() === 'h3', 15_000, 'the move back to HTTP/3');
    expect(Date.now() - t0).toBeLessThan(30_000);
    expect(agentLog.some((l) => l.msg === 'tunnel up: switched from h2 to h3')).toBe(true);
    expect(await metric(agent.adminUrl!, 'mtun_agent_transport_switches_total', { from: 'h2', to: 'h3' })).toBe(1);
    await until(() => gw.status().sessions.length === 1 && gw.status().sessions[0]!.transport === 'h3', 5_000, 'one gateway session, over HTTP/3');
    await until(() => gw.status().sessions[0]!.routes.includes('10.10.0.0/24'), 5_000, 'the site route owned by the new session');
    expect(kernel.routesVia(agentTuns[0]!.name)).toContain('10.20.0.0/24');
    const n = atGateway.length;
    send();
    await until(() => atGateway.length > n, 5_000, 'a packet over HTTP/3');
    const m = atAgent.length;
    gwTuns[0]!.inject(craftUdp({ src: '10.20.0.7', dst: '10.10.0.5', srcPort: 53, dstPort: 4000, payload: Buffer.from('back') }));
    await until(() => atAgent.length > m, 5_000, 'a reply over HTTP/3');
  }, 30_000);

  it('UDP blocked mid-transfer: packets flow again over HTTP/2 within 3 s; the gateway drops the dead HTTP/3 session', async () => {
    pump = setInterval(send, 20);
    await until(() => atGateway.length > 20, 5_000, 'traffic over HTTP/3');
    blocked = true;
    const blockedAt = Date.now();
    await until(() => atGateway.some((p) => p.at > blockedAt + 50) && transport() === 'h2', 10_000, 'packets over HTTP/2 after the block');
    const resumed = atGateway.find((p) => p.at > blockedAt + 50)!.at;
    expect(resumed - blockedAt).toBeLessThan(3_000);
    clearInterval(pump);
    pump = null;
    expect(agentLog.some((l) => l.msg === 'tunnel up: switched from h3 to h2')).toBe(true);
    expect(gwLog.some((l) => l.msg === 'HTTP/3 session superseded by the agent\'s HTTP/2 fallback')).toBe(true);
    await until(() => gw.status().sessions.length === 1, 5_000, 'only the HTTP/2 session left on the gateway');
    expect(gw.status().sessions[0]!.transport).toBe('h2');
    await until(() => gw.status().sessions[0]!.routes.includes('10.10.0.0/24'), 5_000, 'the site route moved to the HTTP/2 session');
    const m = atAgent.length;
    gwTuns[0]!.inject(craftUdp({ src: '10.20.0.7', dst: '10.10.0.5', srcPort: 53, dstPort: 4000, payload: Buffer.from('back') }));
    await until(() => atAgent.length > m, 5_000, 'a reply over HTTP/2');
  }, 30_000);
});
