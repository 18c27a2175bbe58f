/**
 * A path that refuses UDP GSO: the kernel answers a GSO send with EIO where
 * it cannot segment it (udp_send_skb: an IPsec (xfrm) route, UDP-Lite; older
 * kernels also a device without transmit checksum offload). This kernel
 * segments in software even without checksum offload and has no ESP, so the
 * refusal comes from an LD_PRELOAD shim around sendmmsg in both daemons
 * (fixtures/sendmmsg-faults.c, compiled here), which refuses exactly what the kernel
 * would: a message carrying UDP_SEGMENT with more than one segment.
 *
 * Both daemons must notice, send datagram by datagram from then on, and
 * lose nothing on the way: the packets of a refused train are resent one by
 * one. Before the fix the gateway's endpoint kept building GSO trains after
 * its socket had turned GSO off, and a refused train of the engine's was
 * dropped whole (counted nowhere an operator could see).
 *
 * Real daemons in the lab's namespaces; the agent's TUN thread sends the
 * upload (its own GSO trains), the gateway's endpoint the download.
 */
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Lab } from '../../src/lab/lab.js';
import { downloadAndUpload, labWithShim, sample } from './sendmmsg-shim.js';

const root = process.getuid?.() === 0;
if (!root) console.warn('SKIPPED test/netns/gso-refused.test.ts: needs root (network namespaces, TUN devices)');


describe.skipIf(!root)('UDP GSO refused by the path (EIO): both daemons fall back without loss', () => {
  let lab: Lab | undefined;
  let teardown: (() => Promise<void>) | undefined;

  beforeAll(async () => {
    ({ lab, down: teardown } = await labWithShim(`mgs${process.pid % 10000}`, { MTUN_SHIM_GSO_EIO: '1' }));
  }, 90_000);

  afterAll(async () => {
    await teardown?.();
  }, 30_000);

  it('a download and an upload complete; each sender (endpoint, TUN thread) logs the fallback once; no datagram is refused or lost to it', async () => {
    const l = lab!;
    const { down, up, gw, agent } = await downloadAndUpload(l);
    const gwLog = readFileSync(l.file('gateway.log'), 'utf8');
    const agentLog = readFileSync(l.file('agent.log'), 'utf8');
    const refused = {
      gateway: sample(gw, 'mtun_quic_udp_send_events_total', { event: 'refused' }),
      agent: sample(agent, 'mtun_quic_udp_send_events_total', { event: 'refused' }),
      agentThread: sample(agent, 'mtun_agent_tun_thread_events_total', { event: 'udp_dropped' }),
      gatewayThread: sample(gw, 'mtun_gateway_tun_thread_events_total', { event: 'udp_dropped' }),
    };
    const split = {
      gateway: sample(gw, 'mtun_quic_udp_send_events_total', { event: 'gso_refused' }) +
        sample(gw, 'mtun_gateway_tun_thread_events_total', { event: 'gso_refused' }),
      agent: sample(agent, 'mtun_quic_udp_send_events_total', { event: 'gso_refused' }) +
        sample(agent, 'mtun_agent_tun_thread_events_total', { event: 'gso_refused' }),
    };
    console.log(`GSO refused: download ${down.mbit.toFixed(0)} Mbit/s (${down.retransmits} retransmits), upload ${up.mbit.toFixed(0)} Mbit/s ` +
      `(${up.retransmits}); refused datagrams ${JSON.stringify(refused)}; trains split ${JSON.stringify(split)}`);
    // Each side sent GSO trains (a transfer fills the congestion window), the path refused them, and they were split.
    expect(split.gateway, 'the gateway saw the path refuse GSO').toBeGreaterThanOrEqual(1);
    expect(split.agent, 'the agent saw the path refuse GSO').toBeGreaterThanOrEqual(1);
    // ... once per socket sender: afterwards nothing tries GSO again (each daemon's endpoint and its TUN thread each learn it).
    expect(split.gateway).toBeLessThanOrEqual(2);
    expect(split.agent).toBeLessThanOrEqual(2);
    expect(refused).toEqual({ gateway: 0, agent: 0, agentThread: 0, gatewayThread: 0 });
    expect(gwLog.match(/UDP GSO refused/g)?.length ?? 0, 'the gateway logs the fallback (event loop and thread: at most once each)').toBeGreaterThanOrEqual(1);
    expect(gwLog.match(/UDP GSO refused/g)?.length ?? 0).toBeLessThanOrEqual(2);
    expect(agentLog.match(/UDP GSO refused/g)?.length ?? 0, 'the agent logs the fallback (event loop and thread: at most once each)').toBeGreaterThanOrEqual(1);
    expect(agentLog.match(/UDP GSO refused/g)?.length ?? 0).toBeLessThanOrEqual(2);
  }, 90_000);
});
