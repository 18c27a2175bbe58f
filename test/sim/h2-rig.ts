/**
 * The rig of the HTTP/2 fallback sim tests (issue #15), without root: a real
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
import { Agent } from '../../src/agent/agent.js';
import { parseAgentConfig, parseGatewayConfig } from '../../src/config/index.js';
import { MemoryKernel } from '../../src/daemon/memory-kernel.js';
import { systemClock } from '../../src/daemon/ports.js';
import { Gateway } from '../../src/gateway/gateway.js';
import { MemoryTun } from '../../src/tun/memory-tun.js';
import { getPki } from './quic-harness.js';
import { MemoryNet } from './quic-memory-udp.js';
import { freePort } from './sim-helpers.js';

/** The agent's client-certificate identity. */
export const AGENT_ID = 'spiffe://mesh.test/ns/default/sa/agent';

/** A running agent and gateway; see {@link startFallbackRig}. */
export interface FallbackRig {
  readonly gw: Gateway;
  readonly agent: Agent;
  readonly kernel: MemoryKernel;
  /** TUNs in the order the daemons opened them. */
  readonly agentTuns: MemoryTun[];
  readonly gwTuns: MemoryTun[];
  /** Every log line, parsed. */
  readonly agentLog: Array<Record<string, unknown>>;
  readonly gwLog: Array<Record<string, unknown>>;
  /** True: the MemoryNet drops every QUIC packet both ways. */
  blocked: boolean;
  /** The agent's current transport. */
  transport(): string | undefined;
  stop(): Promise<void>;
}

/** An openTun that makes MemoryTuns named `<prefix><n>`, keeps them in `list` and shows each to `hook`. */
function tunsInto(list: MemoryTun[], prefix: string, hook?: (t: MemoryTun) => void) {
  return async (req: { mtu: number }) => {
    const t = new MemoryTun({ name: `${prefix}${list.length}`, mtu: req.mtu });
    list.push(t);
    hook?.(t);
    return t;
  };
}

/**
 * Starts a gateway (pool 10.202.0.0/24, advertising 10.20.0.0/24) and an
 * agent with fast fallback timers, UDP blocked from the start when
 * `blocked`. `mode` remote-access: the agent advertises nothing and is
 * assigned an address; site-to-site: it advertises 10.10.0.0/24.
 * `onGatewayTun`/`onAgentTun` see each TUN the daemons open.
 */
export async function startFallbackRig(opts: {
  mode: 'site-to-site' | 'remote-access';
  blocked: boolean;
  onGatewayTun?: (t: MemoryTun) => void;
  onAgentTun?: (t: MemoryTun) => void;
}): Promise<FallbackRig> {
  const dir = mkdtempSync(join(tmpdir(), 'mtun-h2fb-'));
  const net = new MemoryNet();
  const kernel = new MemoryKernel();
  const agentTuns: MemoryTun[] = [];
  const gwTuns: MemoryTun[] = [];
  const agentLog: Array<Record<string, unknown>> = [];
  const gwLog: Array<Record<string, unknown>> = [];
  const logTo = (into: Array<Record<string, unknown>>) => pino({ level: 'info' }, { write: (l: string) => void into.push(JSON.parse(l) as Record<string, unknown>) });
  const pki = await getPki();
  for (const [f, v] of [['ca.pem', pki.ca.certPem], ['gw.pem', pki.server.certPem], ['gw-key.pem', pki.server.keyPem], ['agent.pem', pki.client.certPem], ['agent-key.pem', pki.client.keyPem]] as const) writeFileSync(join(dir, f), v);
  const port = await freePort();
  const site = opts.mode === 'site-to-site';
  const rig = { blocked: opts.blocked } as { blocked: boolean };
  net.drop = () => rig.blocked;
  const gw = await Gateway.start(parseGatewayConfig(`
listen: 127.0.0.1:${port}
tls: {cert: gw.pem, key: gw-key.pem, ca: ca.pem}
pools: {ipv4: 10.202.0.0/24}
advertise: [10.20.0.0/24]
policy:
  - identity: ${AGENT_ID}
    allow: [{prefixes: [10.20.0.0/24], protocols: [udp]}]
${site ? '    advertise: [10.10.0.0/24]' : ''}
admin: {enabled: true, listen: 127.0.0.1:${await freePort()}}
telemetry: {flowLog: {enabled: false}}
`, join(dir, 'gateway.yaml'), dir), {
    openTun: tunsInto(gwTuns, 'gw', opts.onGatewayTun),
    udp: net.open({ port }),
    kernel,
    clock: systemClock,
    log: logTo(gwLog),
  });
  const agent = await Agent.start(parseAgentConfig(`
gateway: {address: 127.0.0.1:${port}, serverName: localhost}
mode: ${opts.mode}
tls: {cert: agent.pem, key: agent-key.pem, ca: ca.pem}
${site ? 'advertise: [10.10.0.0/24]' : ''}
keepaliveIntervalMs: 1000
h2: {fallbackDelayMs: 300, quicDeadAfterMs: 1000, probeIntervalMs: 1000}
reconnect: {minDelayMs: 50, maxDelayMs: 500}
admin: {enabled: true, listen: 127.0.0.1:${await freePort()}}
telemetry: {flowLog: {enabled: false}}
`, join(dir, 'agent.yaml'), dir), {
    openTun: tunsInto(agentTuns, 'ag', opts.onAgentTun),
    udp: net.open(),
    kernel,
    clock: systemClock,
    log: logTo(agentLog),
  });
  return Object.assign(rig, {
    gw,
    agent,
    kernel,
    agentTuns,
    gwTuns,
    agentLog,
    gwLog,
    transport: () => agent.status().sessions[0]?.transport,
    stop: async () => {
      await agent.stop();
      await gw.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  });
}
