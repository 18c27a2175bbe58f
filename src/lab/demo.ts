/**
 * `npm run demo`: two clusters in network namespaces joined by mtun, real
 * traffic through the tunnel (ping, curl, iperf3, UDP echo), a policy
 * denial and an unsolicited cluster B → A packet denied, and both ends'
 * flow telemetry printed side by side. Tears everything down on exit and on
 * Ctrl-C. Root only. `npm run demo -- --udp-blocked` drops UDP to the
 * gateway with nftables first, so the whole demo runs over HTTP/2 (issue #15).
 */
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { LAB, Lab, REPO_ROOT, type FlowLogLine } from './lab.js';
import { formatHostPort } from '../packet/ip-address.js';

const UDP_PROBE = join(REPO_ROOT, 'dist', 'lab', 'udp-probe.js');

const DIAGRAM = `
  cluster A                                   WAN                                cluster B
  client 10.10.0.2 ── agent [mtun-a TUN] ══ QUIC/HTTP3 CONNECT-IP ══ [mtun-g TUN] gateway ── server 10.20.0.2
         fd00:a::2                 192.0.2.1 ──────────────────── 192.0.2.2                        fd00:b::2
`;

const DIAGRAM_H2 = `
  cluster A                                   WAN                                cluster B
  client 10.10.0.2 ── agent [mtun-a TUN] ══ UDP ✕ (nftables) ══════════════ [mtun-g TUN] gateway ── server 10.20.0.2
                                          ╚═ TCP/TLS 1.3/HTTP2 CONNECT-IP ═╝
         fd00:a::2                 192.0.2.1 ──────────────────── 192.0.2.2                        fd00:b::2
`;

interface Step {
  readonly what: string;
  readonly reported: string;
}

function say(s: string): void {
  process.stdout.write(s + '\n');
}

function pad(s: string | number, n: number): string {
  const t = String(s);
  return t.length >= n ? t : t + ' '.repeat(n - t.length);
}

function rpad(s: string | number, n: number): string {
  const t = String(s);
  return t.length >= n ? t : ' '.repeat(n - t.length) + t;
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) {
    say('npm run demo needs root: it builds network namespaces and TUN devices (try: sudo npm run demo)');
    process.exitCode = 2;
    return;
  }
  const udpBlocked = process.argv.includes('--udp-blocked');
  say(`mtun demo — building two clusters in network namespaces${udpBlocked ? ' (UDP to the gateway blocked: HTTP/2 fallback)' : ''}`);
  say(udpBlocked ? DIAGRAM_H2 : DIAGRAM);
  const lab = await Lab.up({ prefix: `mtd${process.pid % 10000}`, logLevel: 'warn' });
  let tornDown = false;
  const teardown = async () => {
    if (tornDown) return;
    tornDown = true;
    await lab.down();
  };
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      say(`\n${sig}: tearing down`);
      void teardown().then(() => process.exit(130));
    });
  }
  try {
    const steps: Step[] = [];
    writeFileSync(lab.file('blob.bin'), randomBytes(10 * 1024 * 1024));
    writeFileSync(lab.file('upload.bin'), randomBytes(5 * 1024 * 1024));
    await lab.startServers();
    if (udpBlocked) {
      await lab.blockUdp();
      say('nftables: dropping UDP to and from port 4433 between agent and gateway (QUIC cannot pass)');
    }
    say('gateway: starting (mTLS with development certificates from `mtun certs`; QUIC on UDP 4433, HTTP/2 on TCP 4433)');
    await lab.startGateway();
    say('agent:   starting, opening CONNECT-IP to 192.0.2.2:4433 (HTTP/3 first, HTTP/2 if QUIC does not answer)');
    await lab.startAgent('agent');
    const transport = await agentTransport(lab);
    say(`tunnel up over ${transport === 'h2' ? 'HTTP/2 (TCP + TLS 1.3, RFC 8441 Extended CONNECT, DATAGRAM capsules)' : transport === 'h3' ? 'HTTP/3 (QUIC DATAGRAM frames)' : `an unknown transport (${transport})`}`);
    if (udpBlocked) say(`  ${await lab.udpBlockDrops()} QUIC packets dropped by the firewall while the agent tried HTTP/3\n`);
    else say('');

    const ping4 = await lab.exec('client', 'ping', ['-c', '3', '-i', '0.2', '-W', '2', LAB.server.v4]);
    const ping6 = await lab.exec('client', 'ping', ['-6', '-c', '3', '-i', '0.2', '-W', '2', LAB.server.v6]);
    const rtt = (s: string) => /rtt min\/avg\/max\/mdev = [\d.]+\/([\d.]+)/.exec(s)?.[1] ?? '?';
    say(`ping ${LAB.server.v4}: ${/(\d+) received/.exec(ping4.stdout)?.[1] ?? 0}/3 replies, avg ${rtt(ping4.stdout)} ms`);
    say(`ping ${LAB.server.v6}: ${/(\d+) received/.exec(ping6.stdout)?.[1] ?? 0}/3 replies, avg ${rtt(ping6.stdout)} ms`);

    const fmt = '%{local_port} %{size_request} %{size_upload} %{size_header} %{size_download} %{speed_download} %{speed_upload}';
    const dl = await lab.exec('client', 'curl', ['-sf', '--max-time', '60', '-o', '/dev/null', '-w', fmt, `http://${LAB.server.v4}/files/blob.bin`], 70_000);
    const d = dl.stdout.trim().split(' ').map(Number);
    say(`curl download 10 MiB over IPv4: ${dl.code === 0 ? 'ok' : 'FAILED'}, ${((d[5]! * 8) / 1e6).toFixed(0)} Mbit/s; curl counted ${d[1]! + d[2]!} bytes sent, ${d[3]! + d[4]!} received`);
    steps.push({ what: `curl GET :${d[0]}`, reported: `${d[1]! + d[2]!} / ${d[3]! + d[4]!}` });

    const ul = await lab.exec('client', 'curl', ['-sf', '--max-time', '60', '-T', lab.file('upload.bin'), '-o', '/dev/null', '-w', fmt, `http://[${LAB.server.v6}]/upload`], 70_000);
    const u = ul.stdout.trim().split(' ').map(Number);
    say(`curl upload 5 MiB over IPv6:    ${ul.code === 0 ? 'ok' : 'FAILED'}, ${((u[6]! * 8) / 1e6).toFixed(0)} Mbit/s; curl counted ${u[1]! + u[2]!} bytes sent, ${u[3]! + u[4]!} received`);

    const ip = await lab.exec('client', 'iperf3', ['-c', LAB.server.v4, '-t', '3', '-J'], 30_000);
    if (ip.code === 0) {
      const j = JSON.parse(ip.stdout) as { end: { sum_sent: { bits_per_second: number; retransmits: number }; sum_received: { bits_per_second: number } } };
      say(`iperf3 TCP 3 s:                 ${(j.end.sum_received.bits_per_second / 1e6).toFixed(0)} Mbit/s received, ${j.end.sum_sent.retransmits} retransmits`);
    } else say(`iperf3 failed: ${ip.stderr.trim()}`);

    const udp = await lab.exec('client', process.execPath, [UDP_PROBE, LAB.server.v4, '7', '100', '1000'], 60_000);
    say(`UDP echo 100 × 1000 bytes:      ${udp.stdout.trim()}`);

    const denied = await lab.exec('client', 'curl', ['-s', '--max-time', '2', `http://${LAB.server.v4}:8080/`]);
    say(`curl to port 8080 (not in policy): ${denied.code === 0 ? 'unexpectedly allowed' : 'dropped by the gateway, as configured'}`);

    // Inbound default-deny (issue #12 item 8): cluster B may answer the client, not open flows to it.
    const unsolicited = async () => sum(await lab.metrics('gw'), 'mtun_tunnel_dropped_packets_total', 'reason="inbound_unsolicited"');
    const before = await unsolicited();
    await lab.exec('server', 'sh', ['-c', `printf unsolicited | socat -u - UDP:${LAB.client.v4}:9999`]);
    const syn = await lab.exec('server', 'curl', ['-s', '--max-time', '2', `http://${LAB.client.v4}:8081/`]);
    const dropped = (await unsolicited()) - before;
    say(`server → client UDP + TCP SYN (unsolicited, cluster B → A): ${dropped > 0 && syn.code !== 0 ? `dropped by the gateway's inbound default-deny (${dropped} packets counted as inbound_unsolicited)` : 'NOT dropped'}`);

    say('\nwaiting for flows to close (FIN handshakes, UDP idle) …');
    await lab.waitFor(() => countClosed(lab.flowLog('agent')) >= 4 && countClosed(lab.flowLog('gateway')) >= 4, 20_000, 'flow records').catch(() => undefined);
    await new Promise((r) => setTimeout(r, 1500));
    printFlowTable(lab.flowLog('agent'), lab.flowLog('gateway'));

    const ga = await lab.metrics('gw');
    const am = await lab.metrics('agent');
    say('\ntunnel counters (Prometheus, from each end\'s admin /metrics):');
    // mtun_quic_dgram_frames_dropped_total: CoDel's drops from the DATAGRAM send queues (tun.queueDelay) — the sent − received gap.
    for (const name of ['mtun_tunnel_sent_datagrams_total', 'mtun_tunnel_received_datagrams_total', 'mtun_quic_dgram_frames_dropped_total', 'mtun_tcp_connections_opened_total', 'mtun_tcp_sent_bytes_total', 'mtun_tcp_received_bytes_total']) {
      say(`  ${pad(name, 40)} agent ${rpad(sum(am, name), 12)}   gateway ${rpad(sum(ga, name), 12)}`);
    }
    for (const line of ga.split('\n')) {
      if (line.startsWith('mtun_tunnel_dropped_packets_total') && !line.endsWith(' 0')) say(`  gateway drop: ${line.replace('mtun_tunnel_dropped_packets_total', '')}`);
    }
    // The agent's data path on its native thread (tun.thread): what it sent and wrote itself, and what it left to the event loop.
    for (const line of am.split('\n')) {
      if (line.startsWith('mtun_agent_tun_thread_packets_total')) say(`  agent TUN thread: ${line.replace('mtun_agent_tun_thread_packets_total', 'packets')}`);
      const rx = /^mtun_agent_tun_thread_events_total\{event="(rx_tun_written|rx_held|rx_to_endpoint|rx_tun_dropped)"\} (\S+)/.exec(line);
      if (rx) say(`  agent TUN thread: ${rx[1]} ${rx[2]}`);
    }
    if (udpBlocked) {
      say(`  ${pad('mtun_h2_datagrams_total (DATAGRAM capsules)', 40)} agent ${rpad(sum(am, 'mtun_h2_datagrams_total'), 12)}   gateway ${rpad(sum(ga, 'mtun_h2_datagrams_total'), 12)}`);
      say(`  ${pad('mtun_h2_drops_total (backpressure…)', 40)} agent ${rpad(sum(am, 'mtun_h2_drops_total'), 12)}   gateway ${rpad(sum(ga, 'mtun_h2_drops_total'), 12)}`);
      say(`\nthe whole demo ran over ${(await agentTransport(lab)) === 'h2' ? 'HTTP/2' : 'NOT HTTP/2 (the agent moved to HTTP/3?)'}: UDP to the gateway was blocked throughout.`);
    }
    say('\nflow logs are JSON lines (one at open, one at close, per end); metrics at /metrics on the admin port.');
    say('done — tearing down the namespaces');
  } finally {
    if (udpBlocked) await lab.unblockUdp();
    await teardown();
  }
}

/** The agent's current transport from its /status (`h3`, `h2`, or `?`). */
async function agentTransport(lab: Lab): Promise<string> {
  const r = await lab.admin('agent', LAB.agentAdmin, '/status');
  if (r.code !== 0) return '?';
  return (JSON.parse(r.stdout) as { sessions: { transport?: string }[] }).sessions[0]?.transport ?? '?';
}

function countClosed(lines: readonly FlowLogLine[]): number {
  return lines.filter((l) => l.event === 'flow_close' && (l.protocol === 'tcp' || l.protocol === 'udp')).length;
}

/** Sum of a metric's samples (those whose labels contain `label`, when given). */
function sum(text: string, name: string, label = ''): number {
  let s = 0;
  for (const line of text.split('\n')) if (line.startsWith(name + '{') && line.includes(label)) s += Number(line.slice(line.lastIndexOf(' ') + 1));
  return s;
}

function printFlowTable(agent: readonly FlowLogLine[], gateway: readonly FlowLogLine[]): void {
  const key = (l: FlowLogLine) => `${l.protocol} ${l.src_addr}:${l.src_port}>${l.dst_addr}:${l.dst_port}`;
  const gw = new Map<string, FlowLogLine>();
  for (const l of gateway) if (l.event === 'flow_close') gw.set(key(l), l);
  say('\nflows seen by both ends (bytes are unique payload bytes, retransmissions counted once):');
  say(`  ${pad('flow', 44)} ${rpad('agent sent', 11)} ${rpad('agent recv', 11)} ${rpad('gw sent', 11)} ${rpad('gw recv', 11)}  ${pad('close', 6)} rtt ms  identity (gateway view)`);
  for (const a of agent) {
    if (a.event !== 'flow_close' || (a.protocol !== 'tcp' && a.protocol !== 'udp')) continue;
    const g = gw.get(key(a));
    const flow = `${a.protocol} ${formatHostPort(a.src_addr, a.src_port)} → ${formatHostPort(a.dst_addr, a.dst_port)}`;
    say(`  ${pad(flow, 44)} ${rpad(a.sent_bytes ?? '-', 11)} ${rpad(a.received_bytes ?? '-', 11)} ${rpad(g?.sent_bytes ?? '-', 11)} ${rpad(g?.received_bytes ?? '-', 11)}  ${pad(a.close_reason ?? '-', 6)} ${rpad(String(a['handshake_rtt_ms'] ?? '-'), 6)}  ${g?.peer_identity ?? '(not seen)'}`);
  }
}

main().catch((e) => {
  process.stderr.write(`demo failed: ${(e as Error).message}\n`);
  process.exitCode = 1;
});
