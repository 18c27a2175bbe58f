/**
 * End to end through real kernels: client → agent (TUN) → CONNECT-IP over
 * QUIC → gateway (TUN) → server, in the namespaces of topology.sh, with the
 * real daemons and real programs (ping, curl, iperf3, a UDP echo). Asserts
 * traffic and both ends' telemetry (metrics and flow logs, exact bytes).
 * The namespaces are built once per file (that takes seconds); each test
 * then states the daemons and configs it needs (beforeEach `baseline`,
 * `agent2`, `gatewayConfig`), so tests pass alone and in any order.
 *
 *   client 10.10.0.2 ── agent ══ QUIC/UDP 192.0.2.1 → 192.0.2.2 ══ gateway ── server 10.20.0.2
 */
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { LAB, Lab, REPO_ROOT } from '../../src/lab/lab.js';
import { closeRecord, metric } from './netns.js';

const root = process.getuid?.() === 0;
if (!root) console.warn('SKIPPED test/netns/tunnel-e2e.test.ts: needs root (network namespaces, TUN devices)');

const UDP_PROBE = join(REPO_ROOT, 'dist', 'lab', 'udp-probe.js');

describe.skipIf(!root)('tunnel end to end (netns, real daemons)', () => {
  let lab: Lab;
  const blob = randomBytes(10 * 1024 * 1024);
  const blobSha = createHash('sha256').update(blob).digest('hex');

  // Each test states what it needs (which daemons run, in which mode, with
  // which config) through these helpers, so any test can run alone
  // (`-t NAME`) or in any order; the config files are put back to these
  // originals after every test that edits them.
  const original: Record<string, string> = {};
  const alive = (name: string) => {
    const p = lab.process(name);
    return p !== undefined && p.exitCode === null && p.signalCode === null;
  };
  /** The shipped gateway config with `edit` applied, live (SIGHUP) if the gateway runs. */
  const gatewayConfig = async (edit: (yaml: string) => string = (y) => y) => {
    const want = edit(original['gateway.yaml']!);
    if (readFileSync(lab.file('gateway.yaml'), 'utf8') === want) return;
    writeFileSync(lab.file('gateway.yaml'), want);
    if (!alive('gateway')) return;
    const log = lab.file('gateway.log');
    const reloads = () => readFileSync(log, 'utf8').split('certificates, policy and tokens reloaded').length;
    const before = reloads();
    lab.process('gateway')!.kill('SIGHUP');
    await lab.waitFor(() => reloads() > before, 5_000, 'gateway reload');
  };
  /** Gateway and the cluster-a agent running with the shipped configs, tunnel up. */
  const baseline = async () => {
    await gatewayConfig();
    if (!alive('gateway')) await lab.startGateway();
    if (!alive('agent')) await lab.startAgent('agent');
    await lab.waitAgentReady('agent');
  };
  /** agent2 (cluster-c) running with its shipped config plus `edit`. */
  const agent2 = async (edit: (yaml: string) => string = (y) => y) => {
    const want = edit(original['agent2.yaml']!);
    if (alive('agent2') && readFileSync(lab.file('agent2.yaml'), 'utf8') === want) return;
    if (alive('agent2')) expect(await lab.stop('agent2', 'SIGTERM')).toBe(0);
    writeFileSync(lab.file('agent2.yaml'), want);
    await lab.startAgent('agent2');
  };

  beforeAll(async () => {
    // The agents run their data path on the TUN thread (tun.thread, the default); test/netns/agent-restart.test.ts runs the event loop's.
    lab = await Lab.up({ prefix: `mte${process.pid % 10000}`, secondCluster: true });
    writeFileSync(lab.file('blob.bin'), blob);
    for (const f of ['gateway.yaml', 'agent2.yaml']) original[f] = readFileSync(lab.file(f), 'utf8');
    await lab.startServers();
  }, 90_000);

  beforeEach(baseline, 60_000);

  afterAll(async () => {
    await lab?.down(process.env.MTUN_KEEP_LAB === '1');
  }, 30_000);

  it('carries ping across the clusters, IPv4 and IPv6 (RFC 9484 §6 full IP packets in context 0)', async () => {
    const v4 = await lab.exec('client', 'ping', ['-c', '3', '-i', '0.2', '-W', '2', LAB.server.v4]);
    expect(v4.stdout).toContain('3 received');
    const v6 = await lab.exec('client', 'ping', ['-6', '-c', '3', '-i', '0.2', '-W', '2', LAB.server.v6]);
    expect(v6.stdout).toContain('3 received');
  });

  it('keeps addresses end to end: the server sees the client\'s own address (no NAT)', async () => {
    const r = await lab.exec('client', 'curl', ['-sf', '--max-time', '10', `http://${LAB.server.v4}/`]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`you are ::ffff:${LAB.client.v4}`);
    const r6 = await lab.exec('client', 'curl', ['-sf', '--max-time', '10', `http://[${LAB.server.v6}]/`]);
    expect(r6.stdout).toContain(`you are ${LAB.client.v6}`);
  });

  it('downloads and uploads 10 MB with matching sha256; both ends count exactly the bytes curl reports', async () => {
    const out = lab.file('dl.bin');
    const fmt = '%{local_port} %{size_request} %{size_upload} %{size_header} %{size_download}';
    const dl = await lab.exec('client', 'curl', ['-sf', '--max-time', '60', '-o', out, '-w', fmt, `http://${LAB.server.v4}/files/blob.bin`], 70_000);
    expect(dl.code).toBe(0);
    expect(createHash('sha256').update(readFileSync(out)).digest('hex')).toBe(blobSha);
    const [port, req, up, hdr, body] = dl.stdout.trim().split(' ').map(Number) as [number, number, number, number, number];
    expect(body).toBe(blob.length);

    const ul = await lab.exec('client', 'curl', ['-sf', '--max-time', '60', '-T', lab.file('blob.bin'), '-w', `\n${fmt}`, `http://[${LAB.server.v6}]/upload`], 70_000);
    expect(ul.code).toBe(0);
    const lines = ul.stdout.trim().split('\n').filter((l) => l.trim() !== '');
    const json = lines[0]!;
    const stats = lines[lines.length - 1]!;
    expect(JSON.parse(json)).toEqual({ bytes: blob.length, sha256: blobSha });
    const [uport, ureq, uup, uhdr, ubody] = stats.split(' ').map(Number) as [number, number, number, number, number];

    // Flow records are written when the flows close (FIN seen both ways, then last ACK).
    for (const which of ['agent', 'gateway'] as const) {
      await lab.waitFor(() => closeRecord(lab.flowLog(which), port, 80) !== undefined && closeRecord(lab.flowLog(which), uport, 80) !== undefined, 40_000, `${which} flow records`);
      const d = closeRecord(lab.flowLog(which), port, 80)!;
      expect(d.sent_bytes, `${which} download request bytes`).toBe(req + up);
      expect(d.received_bytes, `${which} download response bytes`).toBe(hdr + body);
      expect(d.close_reason).toBe('fin');
      expect(d.src_addr).toBe(LAB.client.v4);
      const u = closeRecord(lab.flowLog(which), uport, 80)!;
      expect(u.sent_bytes, `${which} upload request bytes`).toBe(ureq + uup);
      expect(u.received_bytes, `${which} upload response bytes`).toBe(uhdr + ubody);
      expect(u.src_addr).toBe(LAB.client.v6);
    }
    const gw = closeRecord(lab.flowLog('gateway'), port, 80)!;
    expect(gw.peer_identity).toBe('spiffe://cluster.local/agent/cluster-a');
    expect(gw.source_workload).toBe('cluster-a');
    expect(gw.destination_workload).toBe('server');
  }, 120_000);

  it('runs iperf3 TCP for 5 s; the metrics move and both ends count the data flow alike', async () => {
    const before = metric(await lab.metrics('gw'), 'mtun_tcp_sent_bytes_total', { reporter: 'gateway' });
    const opened = metric(await lab.metrics('agent'), 'mtun_tcp_connections_opened_total', { reporter: 'agent' });
    const r = await lab.exec('client', 'iperf3', ['-c', LAB.server.v4, '-t', '5', '-J'], 30_000);
    expect(r.code, r.stderr).toBe(0);
    const j = JSON.parse(r.stdout) as {
      start: { connected: { local_port: number }[] };
      end: { sum_sent: { bytes: number; bits_per_second: number }; sum_received: { bytes: number } };
    };
    expect(j.end.sum_sent.bits_per_second).toBeGreaterThan(10e6);
    console.log(`iperf3 through the tunnel: ${(j.end.sum_sent.bits_per_second / 1e6).toFixed(0)} Mbit/s`);
    // iperf3's sum_sent counts what the client wrote into its socket, including
    // bytes still queued when it ends the stream; sum_received is what the
    // server read, and every one of those bytes crossed the gateway.
    const received = j.end.sum_received.bytes;
    await lab.waitFor(async () => metric(await lab.metrics('gw'), 'mtun_tcp_sent_bytes_total', { reporter: 'gateway' }) - before >= received, 10_000, 'gateway counters');
    // The data connection, flow by flow: the server read no more than the
    // gateway forwarded, and the gateway forwarded no more than the agent
    // took from the client (each counts unique payload bytes once).
    const port = j.start.connected[0]!.local_port;
    const record = (which: 'agent' | 'gateway') => closeRecord(lab.flowLog(which), port, 5201);
    await lab.waitFor(() => record('agent') !== undefined && record('gateway') !== undefined, 40_000, 'iperf3 data flow records');
    const a = record('agent')!.sent_bytes!;
    const g = record('gateway')!.sent_bytes!;
    expect(g, 'gateway counted less than the server read').toBeGreaterThanOrEqual(received);
    expect(a, 'agent counted less than the gateway forwarded').toBeGreaterThanOrEqual(g);
    // iperf3 opens the data connection with its 37-byte cookie (COOKIE_SIZE in
    // iperf_api.h), which sum_sent leaves out.
    expect(a, 'agent counted more than iperf3 wrote').toBeLessThanOrEqual(j.end.sum_sent.bytes + 37);
    const agent = await lab.metrics('agent');
    expect(metric(agent, 'mtun_tunnel_sent_datagrams_total')).toBeGreaterThan(1000);
    // The agent's TUN thread (tun.thread, on in this lab) carried the upload, and the byte counts above held with it.
    expect(metric(agent, 'mtun_agent_tun_thread_packets_total', { path: 'thread' })).toBeGreaterThan(1000);
    // iperf3's control connection and its data connection.
    expect(metric(agent, 'mtun_tcp_connections_opened_total', { reporter: 'agent' }) - opened).toBeGreaterThanOrEqual(2);
  }, 90_000);

  it('echoes UDP with exact payloads through CONNECT-IP', async () => {
    const r = await lab.exec('client', process.execPath, [UDP_PROBE, LAB.server.v4, '7', '200', '1000'], 60_000);
    expect(JSON.parse(r.stdout)).toEqual({ sent: 200, received: 200, mismatched: 0, lost: 0 });
    const r6 = await lab.exec('client', process.execPath, [UDP_PROBE, LAB.server.v6, '7', '50', '1200'], 60_000);
    expect(JSON.parse(r6.stdout)).toEqual({ sent: 50, received: 50, mismatched: 0, lost: 0 });
  }, 90_000);

  it('forwards a local UDP port through CONNECT-UDP (RFC 9298) with exact payloads', async () => {
    const r = await lab.exec('agent', process.execPath, [UDP_PROBE, '127.0.0.1', '7007', '50', '800'], 60_000);
    expect(JSON.parse(r.stdout)).toEqual({ sent: 50, received: 50, mismatched: 0, lost: 0 });
    const status = JSON.parse((await lab.admin('gw', LAB.gatewayAdmin, '/status')).stdout) as { sessions: { kind: string }[] };
    expect(status.sessions.some((s) => s.kind === 'connect-udp')).toBe(true);
  }, 90_000);

  it('limits the sessions one identity may hold (maxSessionsPerIdentity, applied on SIGHUP); the forwarder makes room by closing its idlest client', async () => {
    // cluster-a holds its CONNECT-IP session and, once a local client used
    // the forwarder, that client's CONNECT-UDP session: two in all.
    const first = await lab.exec('agent', process.execPath, [UDP_PROBE, '127.0.0.1', '7007', '1', '100'], 30_000);
    expect(JSON.parse(first.stdout)).toMatchObject({ received: 1 });
    const evicted = async () => metric(await lab.metrics('agent'), 'mtun_agent_udp_forwarder_datagrams_total', { event: 'evicted_idle' });
    const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
    const evicted0 = await evicted();
    try {
      await gatewayConfig((y) => y.replace('tun:\n  name: mtun-g', 'maxSessionsPerIdentity: 2\ntun:\n  name: mtun-g'));
      await sleep(2100); // the first client is now idle long enough to be closed early
      // A new local client (a new source port per probe, as DNS-like clients do) needs a new
      // stream: the gateway refuses its first try with 429, the forwarder closes the idle
      // client's stream, and the second datagram gets through.
      // (Earlier tests' clients are idle too: each refusal closes one, until the gateway has room.)
      const second = JSON.parse((await lab.exec('agent', process.execPath, [UDP_PROBE, '127.0.0.1', '7007', '4', '100'], 30_000)).stdout) as { received: number; lost: number };
      expect(readFileSync(lab.file('gateway.log'), 'utf8')).toContain('per-identity session limit');
      expect(await evicted()).toBeGreaterThanOrEqual(evicted0 + 1);
      expect(second.received).toBeGreaterThanOrEqual(1);
      expect(second.lost).toBeGreaterThanOrEqual(1);
      // One session in all (the tunnel's): no stream can be opened, eviction or not.
      await gatewayConfig((y) => y.replace('tun:\n  name: mtun-g', 'maxSessionsPerIdentity: 1\ntun:\n  name: mtun-g'));
      await sleep(2100);
      const refused = await lab.exec('agent', process.execPath, [UDP_PROBE, '127.0.0.1', '7007', '2', '100'], 30_000);
      expect(JSON.parse(refused.stdout)).toMatchObject({ received: 0 });
    } finally {
      await gatewayConfig();
    }
    await lab.waitFor(async () => {
      const r = await lab.exec('agent', process.execPath, [UDP_PROBE, '127.0.0.1', '7007', '1', '100'], 30_000);
      return (JSON.parse(r.stdout) as { received: number }).received === 1;
    }, 15_000, 'CONNECT-UDP allowed again');
  }, 60_000);

  it('answers packets larger than the tunnel MTU with Fragmentation Needed / Packet Too Big (RFC 9484 §7.2.1)', async () => {
    const r = await lab.exec('client', 'ping', ['-M', 'do', '-s', '1472', '-c', '2', '-W', '2', LAB.server.v4]);
    expect(r.stdout + r.stderr).toMatch(/mtu = 1[34]\d\d|Frag needed/i);
    const r6 = await lab.exec('client', 'ping', ['-6', '-M', 'do', '-s', '1452', '-c', '2', '-W', '2', LAB.server.v6]);
    expect(r6.stdout + r6.stderr).toMatch(/mtu=1[34]\d\d|Packet too big/i);
  });

  it('drops and counts a destination outside the identity\'s policy, and a spoofed source (RFC 9484 §11)', async () => {
    const before = await lab.metrics('gw');
    const denied = await lab.exec('client', 'curl', ['-s', '--max-time', '2', `http://${LAB.server.v4}:8080/`]);
    expect(denied.code).not.toBe(0);
    // A source outside the agent's advertised prefixes: the agent forwards it, the gateway must not.
    await lab.exec('client', 'ip', ['addr', 'replace', '10.99.0.2/32', 'dev', 'ca0']);
    try {
      const spoof = await lab.exec('client', 'ping', ['-I', '10.99.0.2', '-c', '2', '-W', '1', LAB.server.v4]);
      expect(spoof.stdout).toContain('0 received');
    } finally {
      await lab.exec('client', 'ip', ['addr', 'del', '10.99.0.2/32', 'dev', 'ca0']);
    }
    await lab.waitFor(async () => {
      const m = await lab.metrics('gw');
      return metric(m, 'mtun_tunnel_dropped_packets_total', { reason: 'policy' }) > metric(before, 'mtun_tunnel_dropped_packets_total', { reason: 'policy' })
        && metric(m, 'mtun_tunnel_dropped_packets_total', { reason: 'spoofed_source' }) >= metric(before, 'mtun_tunnel_dropped_packets_total', { reason: 'spoofed_source' }) + 2;
    }, 5_000, 'policy and spoofed-source drops counted');
  });

  it('serves two agents from two clusters reaching the same server', async () => {
    await agent2();
    const r = await lab.exec('client2', 'curl', ['-sf', '--max-time', '10', `http://${LAB.server.v4}/`]);
    expect(r.stdout).toContain(`you are ::ffff:${LAB.client2.v4}`);
    const a = await lab.exec('client', 'curl', ['-sf', '--max-time', '10', `http://${LAB.server.v4}/`]);
    expect(a.stdout).toContain(`you are ::ffff:${LAB.client.v4}`);
    const status = JSON.parse((await lab.admin('gw', LAB.gatewayAdmin, '/status')).stdout) as { sessions: { kind: string; peerIdentity: string }[] };
    expect(status.sessions.filter((s) => s.kind === 'connect-ip').map((s) => s.peerIdentity).sort()).toEqual(['spiffe://cluster.local/agent/cluster-a', 'spiffe://cluster.local/agent/cluster-c']);
    // The gateway's TUN thread carries both agents' connections, each in a slot of its own (issues #13, #17): before,
    // it served the only HTTP/3 connection and a second agent sent both to the event loop. Each agent's echo
    // requests cross the thread into the TUN and the replies leave by it, from the address the agent sent to (it
    // answered agent2 from its other address, and agent2's HTTP/3 heard nothing and fell back to HTTP/2).
    const attached = readFileSync(lab.file('gateway.log'), 'utf8').split('\n').filter((l) => l.includes('"TUN thread attached"'));
    expect(new Set(attached.map((l) => (JSON.parse(l) as { identity: string }).identity))).toEqual(
      new Set(['spiffe://cluster.local/agent/cluster-a', 'spiffe://cluster.local/agent/cluster-c']));
    for (const [client, server] of [['client2', LAB.server.v4], ['client', LAB.server.v4]] as const) {
      const before = await lab.metrics('gw');
      const ping = await lab.exec(client, 'ping', ['-c', '5', '-i', '0.2', '-W', '2', server]);
      expect(ping.stdout).toContain('5 received');
      const after = await lab.metrics('gw');
      const d = (path: string) => metric(after, 'mtun_gateway_tun_thread_packets_total', { path }) - metric(before, 'mtun_gateway_tun_thread_packets_total', { path });
      const written = metric(after, 'mtun_gateway_tun_thread_events_total', { event: 'rx_tun_written' }) - metric(before, 'mtun_gateway_tun_thread_events_total', { event: 'rx_tun_written' });
      expect(d('thread'), `${client}: replies the thread sent`).toBeGreaterThanOrEqual(5);
      expect(written, `${client}: requests the thread wrote into the TUN`).toBeGreaterThanOrEqual(5);
    }
    const st = JSON.parse((await lab.admin('gw', LAB.gatewayAdmin, '/status')).stdout) as { sessions: { kind: string; transport?: string }[] };
    expect(st.sessions.filter((s) => s.kind === 'connect-ip').map((s) => s.transport)).toEqual(['h3', 'h3']);
    // cluster-c's policy allows only TCP 80 to the server.
    const denied = await lab.exec('client2', 'iperf3', ['-c', LAB.server.v4, '-t', '1', '--connect-timeout', '1500']);
    expect(denied.code).not.toBe(0);
  }, 60_000);

  it('remote access: the agent uses the address the gateway assigns (ADDRESS_REQUEST/ASSIGN, RFC 9484 §4.7) and SNATs its clients to it', async () => {
    await agent2((y) => y.replace('mode: site-to-site', 'mode: remote-access\nsnat: true').replace(/advertise: \[[^\]]*\]/, 'advertise: []'));
    const st = JSON.parse((await lab.admin('agent2', LAB.agentAdmin, '/status')).stdout) as { addresses: { address: string }[] };
    const v4 = st.addresses.map((a) => a.address).find((a) => a.startsWith('10.200.0.'));
    expect(v4, JSON.stringify(st)).toBeDefined();
    const r = await lab.exec('client2', 'curl', ['-sf', '--max-time', '10', `http://${LAB.server.v4}/`]);
    expect(r.stdout).toContain(`you are ::ffff:${v4!.split('/')[0]}`);
    expect(await lab.stop('agent2', 'SIGTERM')).toBe(0);
    const tables = await lab.exec('agent2', 'nft', ['list', 'tables']);
    expect(tables.stdout).not.toContain('mtun_snat');
  }, 60_000);

  it('recovers from a gateway SIGKILL: the agent reconnects and traffic flows within 5 s of the restart', async () => {
    expect(await lab.stop('gateway', 'SIGKILL')).toBe(null);
    const restarted = Date.now();
    await lab.startGateway();
    let ok = false;
    while (!ok && Date.now() - restarted < 15_000) {
      ok = (await lab.exec('client', 'ping', ['-c', '1', '-W', '1', LAB.server.v4])).code === 0;
    }
    const elapsed = Date.now() - restarted;
    console.log(`traffic flowed again ${elapsed} ms after the gateway restart began`);
    expect(ok).toBe(true);
    expect(elapsed).toBeLessThan(5_000 + 3_000); // 5 s budget after the gateway is up (its start takes ≤ ~3 s here)
  }, 40_000);

  it('reloads policy on SIGHUP without dropping the tunnel', async () => {
    const sessions = async () => (JSON.parse((await lab.admin('gw', LAB.gatewayAdmin, '/status')).stdout) as { sessions: { id: string; kind: string }[] }).sessions.filter((x) => x.kind === 'connect-ip').map((x) => x.id).sort();
    const before = await sessions();
    try {
      await gatewayConfig((y) => y.replace('ports: [80, 443, 5201, 7]', 'ports: [443, 5201, 7]'));
      await lab.waitFor(async () => (await lab.exec('client', 'curl', ['-s', '--max-time', '1', `http://${LAB.server.v4}/`])).code !== 0, 10_000, 'port 80 denied after reload');
      expect((await lab.exec('client', 'ping', ['-c', '1', '-W', '2', LAB.server.v4])).code).toBe(0);
      expect(await sessions()).toEqual(before);
    } finally {
      await gatewayConfig();
    }
    await lab.waitFor(async () => (await lab.exec('client', 'curl', ['-s', '--max-time', '1', `http://${LAB.server.v4}/`])).code === 0, 10_000, 'port 80 allowed again');
  }, 40_000);

  it('re-checks advertised site prefixes on SIGHUP: a prefix the policy stops allowing stops passing, and comes back when allowed again (RFC 9484 §11)', async () => {
    const sessions = async () => (JSON.parse((await lab.admin('gw', LAB.gatewayAdmin, '/status')).stdout) as { sessions: { id: string; kind: string; routes: string[] }[] }).sessions.filter((x) => x.kind === 'connect-ip');
    const before = (await sessions()).map((x) => x.id).sort();
    try {
      await gatewayConfig((y) => y.replace('advertise: [10.10.0.0/24, fd00:a::/64]', 'advertise: [fd00:a::/64]'));
      await lab.waitFor(async () => (await lab.exec('client', 'ping', ['-c', '1', '-W', '1', LAB.server.v4])).code !== 0, 10_000, 'IPv4 site prefix withdrawn');
      expect((await lab.exec('client', 'ping', ['-6', '-c', '1', '-W', '2', LAB.server.v6])).code).toBe(0);
      expect((await sessions()).flatMap((x) => x.routes)).not.toContain('10.10.0.0/24');
    } finally {
      await gatewayConfig();
    }
    await lab.waitFor(async () => (await lab.exec('client', 'ping', ['-c', '1', '-W', '1', LAB.server.v4])).code === 0, 10_000, 'IPv4 site prefix back');
    expect((await sessions()).map((x) => x.id).sort()).toEqual(before);
  }, 60_000);

  it('drains on SIGTERM: exit 0, open flows recorded, TUN removed', async () => {
    const code = await lab.stop('gateway', 'SIGTERM');
    expect(code).toBe(0);
    const links = await lab.exec('gw', 'ip', ['-j', 'link', 'show']);
    expect(links.stdout).not.toContain('mtun-g');
  }, 30_000);
});
