/**
 * HTTP/2 fallback end to end through real kernels (issue #15): nftables drops
 * the UDP flow to the gateway's port both ways, as a firewall on the path
 * would (input hooks in the gateway's and the agent's namespaces, so no
 * sender sees EPERM); the real daemons, curl and ping run in the namespaces
 * of topology.sh. The rules live only in this test's namespaces and are
 * deleted when unblocking and before the namespaces go.
 *
 *   client 10.10.0.2 ── agent ══ UDP 4433 ✕ (Lab.blockUdp: nft drop, ${P}gw and ${P}agent input) ══ gateway ── server 10.20.0.2
 *                              ╚═ TCP 4433: TLS 1.3, HTTP/2, DATAGRAM capsules ═╝
 */
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LAB, type Lab } from '../../src/lab/lab.js';
import { agentTransport, pingReplies, startH2Lab, stopH2Lab } from './h2-lab.js';
import { closeRecord, metric } from './netns.js';

const root = process.getuid?.() === 0;
if (!root) console.warn('SKIPPED test/netns/h2-fallback-e2e.test.ts: needs root (network namespaces, TUN devices, nftables)');

describe.skipIf(!root)('HTTP/2 fallback end to end (netns, nftables, real daemons)', () => {
  let lab: Lab;
  const blob = randomBytes(10 * 1024 * 1024);
  const blobSha = createHash('sha256').update(blob).digest('hex');

  const block = () => lab.blockUdp();
  const unblock = () => lab.unblockUdp();
  const transport = () => agentTransport(lab);

  beforeAll(async () => {
    lab = await startH2Lab('mth', async (l) => {
      writeFileSync(l.file('blob.bin'), blob);
      await l.blockUdp();
    });
  }, 90_000);

  afterAll(() => stopH2Lab(lab, unblock), 30_000);

  it('UDP blocked before the agent starts: the tunnel is up over HTTP/2; 10 MB sha256 and both ends\' exact byte counts hold', async () => {
    expect(await transport()).toBe('h2');
    expect(await lab.udpBlockDrops()).toBeGreaterThan(0);
    expect(metric(await lab.metrics('agent'), 'mtun_agent_transport', { transport: 'h2' })).toBe(1);
    const out = lab.file('dl.bin');
    const fmt = '%{local_port} %{size_request} %{size_upload} %{size_header} %{size_download}';
    const dl = await lab.exec('client', 'curl', ['-sf', '--max-time', '60', '-o', out, '-w', fmt, `http://${LAB.server.v4}/files/blob.bin`], 70_000);
    expect(dl.code, dl.stderr).toBe(0);
    expect(createHash('sha256').update(readFileSync(out)).digest('hex')).toBe(blobSha);
    const [port, req, up, hdr, body] = dl.stdout.trim().split(' ').map(Number) as [number, number, number, number, number];
    expect(body).toBe(blob.length);
    for (const which of ['agent', 'gateway'] as const) {
      await lab.waitFor(() => closeRecord(lab.flowLog(which), port, 80) !== undefined, 40_000, `${which} flow record`);
      const d = closeRecord(lab.flowLog(which), port, 80)!;
      expect(d.sent_bytes, `${which} request bytes`).toBe(req + up);
      expect(d.received_bytes, `${which} response bytes`).toBe(hdr + body);
      expect(d.close_reason).toBe('fin');
    }
    const gw = await lab.metrics('gw');
    expect(metric(gw, 'mtun_tunnel_sessions_by_transport', { transport: 'h2' })).toBe(1);
    // The client's side of a 10 MB download is mostly its TCP ACKs: how many depends on its receive offloads and
    // delayed ACKs (exactly 500 once, on a faster machine), so the floor only says the capsules carried them.
    expect(metric(gw, 'mtun_h2_datagrams_total', { direction: 'received' })).toBeGreaterThan(100);
  }, 120_000);

  it('UDP unblocked: the agent returns to HTTP/3 within 30 s', async () => {
    await unblock();
    const t0 = Date.now();
    await lab.waitFor(async () => (await transport()) === 'h3', 30_000, 'the return to HTTP/3');
    console.log(`returned to HTTP/3 after ${Date.now() - t0} ms`);
    const ping = await lab.exec('client', 'ping', ['-c', '3', '-i', '0.2', '-W', '2', LAB.server.v4]);
    expect(ping.stdout).toContain('3 received');
  }, 60_000);

  it('UDP blocked mid-transfer: traffic resumes over HTTP/2 within 3 s and the download completes intact', async () => {
    await lab.waitFor(async () => (await transport()) === 'h3', 30_000, 'a tunnel over HTTP/3');
    const out = lab.file('dl2.bin');
    // ~7 s of download and 10 s of pings at 20 per second; the block lands 2 s in.
    const curl = lab.exec('client', 'curl', ['-sf', '--max-time', '60', '--limit-rate', '1500K', '-o', out, `http://${LAB.server.v4}/files/blob.bin`], 70_000);
    const ping = lab.exec('client', 'ping', ['-D', '-i', '0.05', '-c', '200', '-W', '1', LAB.server.v4], 30_000);
    await new Promise((r) => setTimeout(r, 2_000));
    await block();
    const blockedAt = Date.now() / 1000;
    const [c, p] = await Promise.all([curl, ping]);
    expect(c.code, c.stderr).toBe(0);
    expect(createHash('sha256').update(readFileSync(out)).digest('hex')).toBe(blobSha);
    // Replies by time ([epoch] … icmp_seq=N): the longest silence between two replies is the outage.
    const { times, longestGapS: gap } = pingReplies(p.stdout);
    console.log(`longest silence between ping replies: ${(gap * 1000).toFixed(0)} ms; ${times.length}/200 replies; block at ${blockedAt}`);
    for (const l of readFileSync(lab.file('agent.log'), 'utf8').split('\n')) if (/falling back|switched|tunnel down|setup failed/.test(l)) console.log(l.slice(0, 300));
    expect(times.filter((t) => t > blockedAt + 3).length).toBeGreaterThan(50);
    expect(gap).toBeLessThan(3);
    expect(await transport()).toBe('h2');
    expect(readFileSync(lab.file('agent.log'), 'utf8')).toContain('switched from h3 to h2');
    expect(metric(await lab.metrics('agent'), 'mtun_agent_transport_switches_total', { from: 'h3', to: 'h2' })).toBe(1);
    // The dead HTTP/3 session went at once (mtun-supersedes: h3), counted and logged once.
    expect(metric(await lab.metrics('gw'), 'mtun_gateway_sessions_superseded_total')).toBe(1);
    const superseded = readFileSync(lab.file('gateway.log'), 'utf8').split('\n').filter((l) => l.includes('"session superseded"'));
    expect(superseded.length).toBe(1);
    expect(superseded[0]).toContain('"cause":"h2-fallback"');
  }, 90_000);
});
