/**
 * Agent transport fallback and return (issue #15), site to site, without
 * root: the rig of ./h2-rig.ts (real Agent and Gateway, QUIC over a blockable
 * MemoryNet, HTTP/2 over real TCP on 127.0.0.1).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { craftUdp } from '../../src/packet/craft.js';
import { AGENT_ID, startFallbackRig, type FallbackRig } from './h2-rig.js';
import { metric, until } from './sim-helpers.js';

describe('agent: HTTP/3 first, HTTP/2 when UDP is blocked, back to HTTP/3 when it is not', () => {
  let rig: FallbackRig;
  /** Packets the gateway TUN received, with arrival times. */
  const atGateway: { at: number; seq: number }[] = [];
  const atAgent: number[] = [];
  let seq = 0;
  let pump: NodeJS.Timeout | null = null;

  const transport = () => rig.transport();
  const send = () => {
    const payload = Buffer.alloc(4);
    payload.writeUInt32BE(seq++);
    rig.agentTuns[0]!.inject(craftUdp({ src: '10.10.0.5', dst: '10.20.0.7', srcPort: 4000, dstPort: 53, payload }));
  };

  beforeAll(async () => {
    rig = await startFallbackRig({
      mode: 'site-to-site',
      blocked: true,
      onGatewayTun: (t) => t.onPacket((p) => atGateway.push({ at: Date.now(), seq: p.readUInt32BE(28) })),
      onAgentTun: (t) => t.onPacket(() => void atAgent.push(Date.now())),
    });
  }, 30_000);

  afterAll(async () => {
    if (pump !== null) clearInterval(pump);
    await rig?.stop();
  });

  it('UDP blocked before the agent starts: the tunnel comes up over HTTP/2 and carries packets both ways', async () => {
    await until(() => rig.agent.state === 'open', 10_000, 'the tunnel to come up');
    expect(transport()).toBe('h2');
    expect(rig.gw.status().sessions.map((s) => [s.transport, s.peerIdentity])).toEqual([['h2', AGENT_ID]]);
    send();
    await until(() => atGateway.length > 0, 5_000, 'a packet at the gateway over HTTP/2');
    expect(rig.gwTuns[0]!.inject(craftUdp({ src: '10.20.0.7', dst: '10.10.0.5', srcPort: 53, dstPort: 4000, payload: Buffer.from('back') }))).toBe(true);
    await until(() => atAgent.length > 0, 5_000, 'the reply at the agent over HTTP/2');
    expect(await metric(rig.agent.adminUrl!, 'mtun_agent_transport', { transport: 'h2' })).toBe(1);
    expect(await metric(rig.gw.adminUrl!, 'mtun_tunnel_sessions_by_transport', { transport: 'h2' })).toBe(1);
    expect(await metric(rig.gw.adminUrl!, 'mtun_h2_datagrams_total', { direction: 'received' })).toBeGreaterThanOrEqual(1);
  }, 20_000);

  it('UDP unblocked: the agent probes HTTP/3 and moves back, routes kept on both ends; the switch is logged and counted', async () => {
    rig.blocked = false;
    const t0 = Date.now();
    await until(() => rig.agent.state === 'open' && transport() === 'h3', 15_000, 'the move back to HTTP/3');
    expect(Date.now() - t0).toBeLessThan(30_000);
    expect(rig.agentLog.some((l) => l.msg === 'tunnel up: switched from h2 to h3')).toBe(true);
    expect(await metric(rig.agent.adminUrl!, 'mtun_agent_transport_switches_total', { from: 'h2', to: 'h3' })).toBe(1);
    await until(() => rig.gw.status().sessions.length === 1 && rig.gw.status().sessions[0]!.transport === 'h3', 5_000, 'one gateway session, over HTTP/3');
    await until(() => rig.gw.status().sessions[0]!.routes.includes('10.10.0.0/24'), 5_000, 'the site route owned by the new session');
    expect(rig.kernel.routesVia(rig.agentTuns[0]!.name)).toContain('10.20.0.0/24');
    const n = atGateway.length;
    send();
    await until(() => atGateway.length > n, 5_000, 'a packet over HTTP/3');
    const m = atAgent.length;
    rig.gwTuns[0]!.inject(craftUdp({ src: '10.20.0.7', dst: '10.10.0.5', srcPort: 53, dstPort: 4000, payload: Buffer.from('back') }));
    await until(() => atAgent.length > m, 5_000, 'a reply over HTTP/3');
  }, 30_000);

  it('UDP blocked mid-transfer: packets flow again over HTTP/2 within 3 s; the gateway drops the dead HTTP/3 session', async () => {
    pump = setInterval(send, 20);
    await until(() => atGateway.length > 20, 5_000, 'traffic over HTTP/3');
    rig.blocked = true;
    const blockedAt = Date.now();
    await until(() => atGateway.some((p) => p.at > blockedAt + 50) && transport() === 'h2', 10_000, 'packets over HTTP/2 after the block');
    const resumed = atGateway.find((p) => p.at > blockedAt + 50)!.at;
    expect(resumed - blockedAt).toBeLessThan(3_000);
    clearInterval(pump);
    pump = null;
    // Packets flow as soon as the session exists; the switch is logged once its routes are applied, a moment later.
    await until(() => rig.agentLog.some((l) => l.msg === 'tunnel up: switched from h3 to h2'), 5_000, 'the switch logged');
    // Superseded once, by the header (it comes first; the route takeover then finds no owner): one log line, one count.
    expect(rig.gwLog.filter((l) => l.msg === 'session superseded').map((l) => [l.cause, l.transport])).toEqual([['h2-fallback', 'h3']]);
    expect(await metric(rig.gw.adminUrl!, 'mtun_gateway_sessions_superseded_total')).toBe(1);
    await until(() => rig.gw.status().sessions.length === 1, 5_000, 'only the HTTP/2 session left on the gateway');
    expect(rig.gw.status().sessions[0]!.transport).toBe('h2');
    await until(() => rig.gw.status().sessions[0]!.routes.includes('10.10.0.0/24'), 5_000, 'the site route moved to the HTTP/2 session');
    const m = atAgent.length;
    rig.gwTuns[0]!.inject(craftUdp({ src: '10.20.0.7', dst: '10.10.0.5', srcPort: 53, dstPort: 4000, payload: Buffer.from('back') }));
    await until(() => atAgent.length > m, 5_000, 'a reply over HTTP/2');
  }, 30_000);
});
