/**
 * A full UDP send buffer on both daemons: sendmmsg answers EAGAIN. On a
 * veth the kernel frees each datagram as it sends it, so the buffer never
 * fills here; an LD_PRELOAD shim (fixtures/sendmmsg-faults.c,
 * MTUN_SHIM_EAGAIN_EVERY / _RUN) makes 3 of every 25 send calls of each
 * daemon fail with EAGAIN, three in a row, as a full buffer would.
 *
 * What must hold: the endpoint keeps what the socket did not take and sends
 * it when the socket is writable (event loop path); the agent's TUN thread
 * waits for room twice and then drops what is left, counted
 * (`mtun_agent_tun_thread_events_total{event="udp_dropped"}`), QUIC resends
 * it; transfers both ways complete and the tunnel keeps answering (a ping
 * whose datagram the thread dropped is lost, as on any lossy path).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LAB, Lab } from '../../src/lab/lab.js';
import { downloadAndUpload, labWithShim, sample } from './sendmmsg-shim.js';

const root = process.getuid?.() === 0;
if (!root) console.warn('SKIPPED test/netns/send-eagain.test.ts: needs root (network namespaces, TUN devices)');


describe.skipIf(!root)('UDP sends refused with EAGAIN (a full socket buffer): nothing stalls, what is dropped is counted', () => {
  let lab: Lab | undefined;
  let teardown: (() => Promise<void>) | undefined;

  beforeAll(async () => {
    ({ lab, down: teardown } = await labWithShim(`mea${process.pid % 10000}`, { MTUN_SHIM_EAGAIN_EVERY: '25', MTUN_SHIM_EAGAIN_RUN: '3' }));
  }, 90_000);

  afterAll(async () => {
    await teardown?.();
  }, 30_000);

  it('a download and an upload complete; the TUN thread counts what it dropped; pings still answer', async () => {
    const l = lab!;
    const { down, up, gw, agent } = await downloadAndUpload(l);
    const threadDropped = sample(agent, 'mtun_agent_tun_thread_events_total', { event: 'udp_dropped' });
    const threadSent = sample(agent, 'mtun_agent_tun_thread_events_total', { event: 'udp_datagrams' });
    const refused = sample(gw, 'mtun_quic_udp_send_events_total', { event: 'refused' }) + sample(agent, 'mtun_quic_udp_send_events_total', { event: 'refused' });
    const gwStalled = sample(gw, 'mtun_quic_udp_send_events_total', { event: 'stalled' });
    const pings = await l.exec('client', 'ping', ['-c', '10', '-i', '0.1', '-W', '1', LAB.server.v4]);
    console.log(`EAGAIN: download ${down.mbit.toFixed(0)} Mbit/s, upload ${up.mbit.toFixed(0)} Mbit/s; the TUN thread sent ${threadSent} datagrams, ` +
      `dropped ${threadDropped} after waiting; the gateway's endpoint kept and retried a batch ${gwStalled} times; refused by the kernel ${refused}; ${pings.stdout.trim().split('\n').at(-2)}`);
    expect(down.mbit).toBeGreaterThan(1);
    expect(up.mbit).toBeGreaterThan(1);
    // The thread sent the upload, met runs of three EAGAINs (it tries three times), dropped and counted.
    expect(threadSent).toBeGreaterThan(1000);
    expect(threadDropped, 'the thread counted the datagrams it dropped on a full buffer').toBeGreaterThan(0);
    expect(threadDropped).toBeLessThan(threadSent);
    // The gateway sends from its event loop: a batch the socket did not take is kept and retried once writable.
    expect(gwStalled, 'the gateway endpoint met the full buffer and kept its batch').toBeGreaterThan(0);
    // EAGAIN is not a refusal: nothing is counted as refused by the kernel.
    expect(refused).toBe(0);
    // The tunnel still answers. A ping whose datagram the thread dropped is lost (nothing resends it): about one
    // in 25 here, where every 25th send call begins a run of three EAGAINs.
    const received = Number(/(\d+) received/.exec(pings.stdout)?.[1] ?? 0);
    expect(received, pings.stdout).toBeGreaterThanOrEqual(5);
  }, 90_000);
});
