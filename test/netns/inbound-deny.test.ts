/**
 * Inbound default-deny through real kernels (issue #12 item 8): a host in
 * cluster B (the server) sends unsolicited UDP datagrams and TCP SYNs to the
 * client in cluster A; the gateway must drop and count them, pass them once
 * the identity's `inbound` rules allow them (applied by SIGHUP), and keep
 * passing the return traffic of flows the client opened (ping, curl, UDP).
 * On e2aee95 the unsolicited datagrams were delivered (the held-out probe).
 *
 *   client 10.10.0.2 ── agent ══ QUIC/UDP 192.0.2.1 → 192.0.2.2 ══ gateway ── server 10.20.0.2
 *     (listens UDP 9999, TCP 8081)                                    (sends unsolicited)
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LAB, Lab, REPO_ROOT } from '../../src/lab/lab.js';
import { metric } from './netns.js';

const root = process.getuid?.() === 0;
if (!root) console.warn('SKIPPED test/netns/inbound-deny.test.ts: needs root (network namespaces, TUN devices)');

const UDP_PROBE = join(REPO_ROOT, 'dist', 'lab', 'udp-probe.js');

/** The client's listeners: every UDP datagram and accepted TCP connection is one line on stdout (listener.log). */
const LISTENER = `
const dgram = require('node:dgram'), net = require('node:net');
for (const [type, host] of [['udp4', '0.0.0.0'], ['udp6', '::']]) {
  const s = dgram.createSocket({ type, ipv6Only: type === 'udp6' });
  s.on('message', (m, r) => console.log('udp ' + r.address + ' ' + m.toString()));
  s.bind(9999, host);
}
net.createServer((c) => { console.log('tcp ' + c.remoteAddress); c.end('inbound-ok\\n'); }).listen(8081, '::');
`;

/** The inbound rule the allow test adds to cluster-a's policy entry. */
const ALLOW = `    inbound:
      - sources: [10.20.0.0/24, fd00:b::/64]
        prefixes: [10.10.0.2/32, fd00:a::2/128]
        protocols: [tcp, udp]
        ports: [8081, 9999]
`;

// Twice: on the gateway's event loop, and with its TUN thread (tun.thread) carrying the one agent's packets, which
// must send back only what the inbound filter passes.
for (const gwThread of [false, true]) describe.skipIf(!root)(`inbound default-deny (netns, real daemons, issue #12 item 8; gateway ${gwThread ? 'TUN thread' : 'event loop'})`, () => {
  let lab: Lab;
  let original = '';
  const listened = () => readFileSync(lab.file('listener.log'), 'utf8');
  const unsolicited = async () => metric(await lab.metrics('gw'), 'mtun_tunnel_dropped_packets_total', { reason: 'inbound_unsolicited' });

  /** The lab's gateway config with `edit` applied, live by SIGHUP. */
  const gatewayConfig = async (edit: (yaml: string) => string) => {
    const want = edit(original);
    if (readFileSync(lab.file('gateway.yaml'), 'utf8') === want) return;
    writeFileSync(lab.file('gateway.yaml'), want);
    const reloads = () => readFileSync(lab.file('gateway.log'), 'utf8').split('certificates, policy and tokens reloaded').length;
    const before = reloads();
    lab.process('gateway')!.kill('SIGHUP');
    await lab.waitFor(() => reloads() > before, 5_000, 'gateway reload');
  };

  /** From the server (cluster B): one UDP datagram to the client per address, then a TCP connection attempt (curl exit code). */
  const fromClusterB = async (tag: string, tcpTimeoutS: number) => {
    for (const dst of [LAB.client.v4, `[${LAB.client.v6}]`]) {
      await lab.exec('server', 'sh', ['-c', `printf '${tag}' | socat -u - UDP:${dst}:9999`]);
    }
    return (await lab.exec('server', 'curl', ['-s', '--http0.9', '--max-time', String(tcpTimeoutS), `http://${LAB.client.v4}:8081/`])).code;
  };

  beforeAll(async () => {
    lab = await Lab.up({ prefix: `mi${gwThread ? 't' : 'd'}${process.pid % 10000}`, gatewayTunThread: gwThread });
    original = readFileSync(lab.file('gateway.yaml'), 'utf8');
    await lab.startServers();
    await lab.startGateway();
    await lab.startAgent('agent');
    await lab.waitAgentReady('agent');
    lab.spawn('client', 'listener', process.execPath, ['-e', LISTENER]);
    await lab.waitFor(async () => (await lab.exec('client', 'ss', ['-Hltn', 'sport = :8081'])).stdout.includes('8081'), 10_000, 'client listening');
    // The listener works: a datagram from the client's own namespace arrives.
    await lab.exec('client', 'sh', ['-c', `printf local | socat -u - UDP:127.0.0.1:9999`]);
    await lab.waitFor(() => listened().includes('udp 127.0.0.1 local'), 5_000, 'local datagram received');
  }, 90_000);

  afterAll(async () => {
    await lab?.down();
  }, 30_000);

  it('drops unsolicited UDP and TCP SYNs from cluster B to the cluster-A client, counted as inbound_unsolicited', async () => {
    const before = await unsolicited();
    const curl = await fromClusterB('unsolicited', 3);
    expect(curl, 'the connection from cluster B must not complete').not.toBe(0);
    // SYN-RECV at the client would mean the SYN got through, even if the answer did not.
    const synRecv = await lab.exec('client', 'ss', ['-Htn', 'state', 'syn-recv', '( sport = :8081 )']);
    expect(synRecv.stdout.trim()).toBe('');
    expect(listened()).not.toContain('unsolicited');
    expect(listened()).not.toMatch(/^tcp /m);
    // Two datagrams and at least one SYN (curl retransmits within 3 s).
    expect(await unsolicited() - before).toBeGreaterThanOrEqual(3);
  }, 30_000);

  it('passes the same traffic once an inbound rule of the identity allows it (SIGHUP), and denies it again when the rule goes', async () => {
    try {
      await gatewayConfig((y) => y.replace('    advertise: [10.10.0.0/24, fd00:a::/64]\n', `    advertise: [10.10.0.0/24, fd00:a::/64]\n${ALLOW}`));
      const r = await lab.exec('server', 'curl', ['-s', '--http0.9', '--max-time', '10', `http://${LAB.client.v4}:8081/`]);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toBe('inbound-ok\n');
      await fromClusterB('allowed', 10);
      await lab.waitFor(() => listened().includes(`udp ${LAB.server.v4} allowed`) && listened().includes(`udp ${LAB.server.v6} allowed`), 5_000, 'allowed datagrams received');
      // The rule names ports: another port stays closed.
      expect((await lab.exec('server', 'curl', ['-s', '--max-time', '2', `http://${LAB.client.v4}:8082/`])).code).not.toBe(0);
    } finally {
      await gatewayConfig((y) => y);
    }
    const before = await unsolicited();
    await fromClusterB('after-reload', 2);
    expect(listened()).not.toContain('after-reload');
    expect(await unsolicited() - before).toBeGreaterThanOrEqual(3);
  }, 60_000);

  it('keeps return traffic of flows the client opened: ping, curl, UDP echo (IPv4 and IPv6)', async () => {
    const evictionsBefore = metric(await lab.metrics('gw'), 'mtun_inbound_flow_evictions_total');
    expect((await lab.exec('client', 'ping', ['-c', '3', '-i', '0.2', '-W', '2', LAB.server.v4])).stdout).toContain('3 received');
    expect((await lab.exec('client', 'ping', ['-6', '-c', '3', '-i', '0.2', '-W', '2', LAB.server.v6])).stdout).toContain('3 received');
    const c4 = await lab.exec('client', 'curl', ['-sf', '--max-time', '10', `http://${LAB.server.v4}/`]);
    expect(c4.stdout).toContain(`you are ::ffff:${LAB.client.v4}`);
    const c6 = await lab.exec('client', 'curl', ['-sf', '--max-time', '10', `http://[${LAB.server.v6}]/`]);
    expect(c6.stdout).toContain(`you are ${LAB.client.v6}`);
    const udp = await lab.exec('client', process.execPath, [UDP_PROBE, LAB.server.v4, '7', '50', '500'], 30_000);
    expect(JSON.parse(udp.stdout)).toEqual({ sent: 50, received: 50, mismatched: 0, lost: 0 });
    const m = await lab.metrics('gw');
    expect(metric(m, 'mtun_inbound_tracked_flows')).toBeGreaterThan(0);
    expect(metric(m, 'mtun_inbound_flow_evictions_total')).toBe(evictionsBefore);
  }, 60_000);

  it.runIf(gwThread)('the gateway\'s TUN thread carried the client\'s traffic meanwhile', async () => {
    expect(readFileSync(lab.file('gateway.log'), 'utf8')).toContain('TUN thread attached');
    const m = await lab.metrics('gw');
    expect(metric(m, 'mtun_gateway_tun_thread_packets_total', { path: 'thread' })).toBeGreaterThan(0);
    expect(metric(m, 'mtun_gateway_tun_thread_events_total', { event: 'rx_tun_written' })).toBeGreaterThan(0);
  });
});
