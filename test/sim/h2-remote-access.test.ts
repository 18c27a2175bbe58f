/**
 * HTTP/2 fallback of a remote-access agent (issue #15): it advertises no
 * routes, so nothing but the agent's `mtun-supersedes: h3` request header
 * tells the gateway that the HTTP/3 session left behind by the fallback is
 * dead. Its address lease must move to the new session, so the agent keeps
 * its address (RFC 9484 §4.7.2: it asks for the address it had) both ways.
 * The rig of ./h2-rig.ts: real Agent and Gateway, QUIC over a blockable
 * MemoryNet, HTTP/2 over real TCP on 127.0.0.1.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { craftUdp } from '../../src/packet/craft.js';
import { startFallbackRig, type FallbackRig } from './h2-rig.js';
import { metric, until } from './sim-helpers.js';

describe('remote-access agent: the address survives HTTP/3 → HTTP/2 → HTTP/3', () => {
  let rig: FallbackRig;
  const atGateway: string[] = [];
  const addresses = () => rig.agent.status().sessions[0]?.addresses ?? [];
  let first: readonly string[] = [];
  /** One packet from the agent's address to network B; resolves once the gateway's TUN has it. */
  const sendFrom = async (addr: string) => {
    const n = atGateway.length;
    rig.agentTuns[0]!.inject(craftUdp({ src: addr.split('/')[0]!, dst: '10.20.0.7', srcPort: 4000, dstPort: 53, payload: Buffer.from('ra') }));
    await until(() => atGateway.length > n, 5_000, `a packet from ${addr} at the gateway`);
    return atGateway[atGateway.length - 1];
  };
  const superseded = () => metric(rig.gw.adminUrl!, 'mtun_gateway_sessions_superseded_total');

  beforeAll(async () => {
    rig = await startFallbackRig({
      mode: 'remote-access',
      blocked: false,
      onGatewayTun: (t) => t.onPacket((p) => void atGateway.push(`${p[12]}.${p[13]}.${p[14]}.${p[15]}`)),
    });
  }, 30_000);

  afterAll(async () => {
    await rig?.stop();
  });

  it('over HTTP/3 the agent is assigned an address from the pool', async () => {
    await until(() => rig.agent.state === 'open' && addresses().length > 0, 10_000, 'an address over HTTP/3');
    expect(rig.transport()).toBe('h3');
    first = addresses();
    expect(first[0]).toMatch(/^10\.202\.0\.\d+\/32$/);
    expect(await sendFrom(first[0]!)).toBe(first[0]!.split('/')[0]);
  }, 20_000);

  it('UDP blocked: over HTTP/2 the agent has the same address; the gateway superseded the dead HTTP/3 session (counted, logged once)', async () => {
    const before = await superseded();
    rig.blocked = true;
    await until(() => rig.transport() === 'h2' && rig.agent.state === 'open' && addresses().length > 0, 10_000, 'the tunnel over HTTP/2 with an address');
    expect(addresses()).toEqual(first);
    await until(() => rig.gw.status().sessions.length === 1, 5_000, 'only the HTTP/2 session left on the gateway');
    expect(rig.gw.status().sessions[0]!.transport).toBe('h2');
    expect(await superseded()).toBe(before + 1);
    const lines = rig.gwLog.filter((l) => l.msg === 'session superseded');
    expect(lines.length).toBe(1);
    expect(lines[0]).toMatchObject({ cause: 'h2-fallback' });
    expect(await sendFrom(first[0]!)).toBe(first[0]!.split('/')[0]);
  }, 20_000);

  it('UDP unblocked: back over HTTP/3 with the same address', async () => {
    rig.blocked = false;
    await until(() => rig.transport() === 'h3' && rig.agent.state === 'open' && addresses().length > 0, 15_000, 'the tunnel back over HTTP/3');
    expect(addresses()).toEqual(first);
    await until(() => rig.gw.status().sessions.length === 1 && rig.gw.status().sessions[0]!.transport === 'h3', 5_000, 'one gateway session, over HTTP/3');
    expect(await sendFrom(first[0]!)).toBe(first[0]!.split('/')[0]);
  }, 20_000);
});
