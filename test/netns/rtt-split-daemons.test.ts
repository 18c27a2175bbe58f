/**
 * The latency split through the real MASQUE tunnel (issue #16): the real
 * agent and gateway daemons of the lab (topology.sh), with known round-trip
 * delays on each segment — client↔agent 20 ms, tunnel 30 ms, gateway↔server
 * 5 ms, each direction half, plus 0–1 ms jitter. Checked from the daemons'
 * own flow logs and metrics:
 *   - the client and server segments (the cross-end split of the two
 *     records joined on flow_join_id) within ±10 % of their delay plus the
 *     base measured in the same run;
 *   - the tunnel measured by TCP across ends within ±10 % of its delay plus
 *     base, and cross-checked with QUIC's own view: the per-peer gauge
 *     mtun_tunnel_rtt_seconds (idle; both ends' mean within 10 % + 1 ms,
 *     each within 20 % + 1 ms), and the flow's rtt_tunnel samples (the
 *     carrying connection's smoothed RTT while the flow moved) not below it;
 *   - each end's one-end split (rtt_split) adds up to what it measured;
 *   - each daemon's RTT samples of the flow equal tshark's
 *     tcp.analysis.ack_rtt on `mtun capture` of the same traffic at that
 *     daemon (same minimum; same count and smoothed within ±1 % unless a
 *     segment was retransmitted, which Karn's rule leaves untimed).
 *
 *   client 10.10.0.2 ─ ca1 [impair 10 ms] mtun-a ─ agent ─ 127.0.0.1:4443 [relay 15 ms] ─ 192.0.2.1 ══ 192.0.2.2:4433 ─ gateway ─ mtun-g [impair 2.5 ms] cb1 ─ server 10.20.0.2:80 (echo)
 *          └──────────────── agent namespace (both impairers' TUN, the UDP relay) ────────┘              └──────────── gateway namespace ───────────┘
 *
 * The client and server segments are delayed by the project's impairer
 * (test/impair/) on the packets the daemons' TUNs exchange with the LAN
 * (ip rule iif ca1 / mtun-a, and cb1 / mtun-g). The tunnel is the QUIC
 * underlay itself, which both daemons terminate locally, so a small UDP
 * relay in the agent's namespace delays it instead: the agent dials the
 * relay, the relay forwards to the gateway's WAN address.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ChildProcess } from 'node:child_process';
import { LAB, Lab, REPO_ROOT, type FlowLogLine, type Role } from '../../src/lab/lab.js';
import type { FlowRecord, RttStats } from '../../src/inspect/flow-record.js';
import { splitRtt } from '../../src/inspect/rtt-split.js';
import { startImpairBridge, type ImpairBridge } from '../impair/impairer.js';
import { BASE_ONE_WAY_MS, CLIENT_MS, echoScript, JITTER_MS, median, pingerScript, ROUNDS, SERVER_MS, smooth, tsharkAckRtt, TUNNEL_MS } from './rtt-split-common.js';

const root = process.getuid?.() === 0;
if (!root) console.warn('SKIPPED test/netns/rtt-split-daemons.test.ts: needs root (network namespaces, TUN devices)');
const MTUN = join(REPO_ROOT, 'bin', 'mtun.js');

const BASE_ROUNDS = 300;
const RELAY_PORT = 4443;
const RELAY_CONTROL_PORT = 4444;

/**
 * UDP relay agent ↔ gateway with a settable one-way delay plus 0..jitter ms;
 * `delay N` on the control port changes it. Packets leave within ~0.1 ms of
 * their due time (the last ms is waited out with setImmediate, as the
 * impairer's preciseTimers), not setTimeout's ±1 ms.
 */
const RELAY = `
const dgram = require('node:dgram');
const [listen, host, port, control, jitter] = process.argv.slice(2).map((x, i) => (i === 1 ? x : Number(x)));
let delayMs = Number(process.argv[7]);
const front = dgram.createSocket('udp4');
const back = dgram.createSocket('udp4');
let agent = null;
const q = [];
let timer = null;
const pump = () => {
  timer = null;
  const now = performance.now();
  for (let i = 0; i < q.length;) {
    if (q[i].due <= now) { const x = q.splice(i, 1)[0]; x.sock.send(x.m, x.port, x.host); } else i++;
  }
  arm();
};
const arm = () => {
  if (timer !== null || q.length === 0) return;
  let next = Infinity;
  for (const x of q) next = Math.min(next, x.due);
  const wait = next - performance.now();
  timer = wait < 1.5 ? setImmediate(pump) : setTimeout(pump, Math.floor(wait) - 1);
};
const later = (sock, m, port, host) => { q.push({ due: performance.now() + delayMs + Math.random() * jitter, sock, m, port, host }); arm(); };
front.on('message', (m, r) => { agent = r; later(back, m, port, host); });
back.on('message', (m) => { const a = agent; if (a !== null) later(front, m, a.port, a.address); });
const ctl = dgram.createSocket('udp4');
ctl.on('message', (m, r) => { delayMs = Number(String(m).split(' ')[1]); ctl.send('ok ' + delayMs, r.port, r.address); });
let bound = 0;
const ready = () => { if (++bound === 3) console.log('ready'); };
front.bind(listen, '127.0.0.1', ready); back.bind(0, '192.0.2.1', ready); ctl.bind(control, '127.0.0.1', ready);
`;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function stats(v: unknown): RttStats | null {
  if (typeof v !== 'object' || v === null) return null;
  const o = v as Record<string, number>;
  return { minMs: o.min_ms!, smoothedMs: o.smoothed_ms!, maxMs: o.max_ms!, samples: o.samples ?? 0 };
}

/** The fields splitRtt reads, from a flow-log close line. */
function asRecord(l: FlowLogLine): FlowRecord {
  return { flowId: l.flow_join_id, rttToClient: stats(l.rtt_to_client), rttToServer: stats(l.rtt_to_server) } as FlowRecord;
}

describe.skipIf(!root)('RTT split through the real tunnel: client / tunnel (QUIC) / server segments (netns, impaired)', () => {
  let lab: Lab;
  const bridges: ImpairBridge[] = [];

  beforeAll(async () => {
    lab = await Lab.up({ prefix: `mrs${process.pid % 10000}` });
    // The agent dials the relay; its TLS name stays the gateway's.
    const agentYaml = readFileSync(lab.file('agent.yaml'), 'utf8');
    writeFileSync(lab.file('agent.yaml'), agentYaml.replace(`address: ${LAB.gatewayWan.v4}:${LAB.gatewayPort}`, `address: 127.0.0.1:${RELAY_PORT}`));
    // Captures (for tshark) are off by default: enable them at both ends.
    for (const f of ['agent.yaml', 'gateway.yaml']) {
      writeFileSync(lab.file(f), readFileSync(lab.file(f), 'utf8').replace(/^admin:\n  listen: (.*)\n/m, 'admin:\n  listen: $1\n  capture:\n    enabled: true\n'));
    }
    for (const [name, text] of [['relay.cjs', RELAY], ['echo.cjs', echoScript(80)], ['pinger.cjs', pingerScript(LAB.server.v4, 80)]] as const) writeFileSync(lab.file(name), text);
    lab.spawn('agent', 'relay', process.execPath, [lab.file('relay.cjs'), String(RELAY_PORT), LAB.gatewayWan.v4, String(LAB.gatewayPort), String(RELAY_CONTROL_PORT), String(JITTER_MS), String(BASE_ONE_WAY_MS)]);
    lab.spawn('server', 'echo', process.execPath, [lab.file('echo.cjs')]);
    for (const log of ['relay.log', 'echo.log']) await lab.waitFor(() => readFileSync(lab.file(log), 'utf8').includes('ready'), 10_000, log);
    await lab.startGateway();
    await lab.startAgent();
    const base = { lossPercent: 0, delayMs: BASE_ONE_WAY_MS, jitterMs: JITTER_MS, preciseTimers: true };
    bridges.push(await startImpairBridge(lab.ns('agent'), 'impc', ['ca1', 'mtun-a'], { ...base, seed: 11 }));
    bridges.push(await startImpairBridge(lab.ns('gw'), 'imps', ['cb1', 'mtun-g'], { ...base, seed: 33 }));
  }, 120_000);

  afterAll(async () => {
    for (const b of bridges) b.close();
    await lab?.down(process.env.MTUN_KEEP_LAB === '1');
  }, 30_000);

  async function setTunnelDelay(oneWayMs: number): Promise<void> {
    const r = await lab.exec('agent', 'sh', ['-c', `echo "delay ${oneWayMs}" | socat -t1 - UDP:127.0.0.1:${RELAY_CONTROL_PORT}`]);
    expect(r.stdout, r.stderr).toContain(`ok ${oneWayMs}`);
  }

  /** Lets QUIC's smoothed RTT settle at the new delay and the daemons' 1 s tick read it (ICMP through the tunnel). */
  async function warmUp(): Promise<void> {
    const r = await lab.exec('client', 'ping', ['-c', '15', '-i', '0.2', '-W', '2', LAB.server.v4], 20_000);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    await sleep(2200);
  }

  /** One ping-pong connection; the close lines both daemons logged for it. */
  async function run(rounds: number): Promise<{ agent: FlowLogLine; gateway: FlowLogLine }> {
    const r = await lab.exec('client', process.execPath, [lab.file('pinger.cjs'), String(rounds)], 90_000);
    const m = /done (\d+) (\d+)/.exec(r.stdout);
    expect(m?.[1], r.stdout + r.stderr).toBe(String(rounds));
    const port = Number(m![2]);
    const find = (which: 'agent' | 'gateway') => lab.flowLog(which).find((l) => l.event === 'flow_close' && l.src_port === port);
    await lab.waitFor(() => find('agent') !== undefined && find('gateway') !== undefined, 15_000, 'both close records');
    return { agent: find('agent')!, gateway: find('gateway')! };
  }

  /** Starts `mtun capture` of TCP port 80 at a daemon; resolves once the daemon reports it running. */
  async function startCapture(role: Role, port: number, file: string): Promise<ChildProcess> {
    const p = lab.spawn(role, `capture-${role}`, process.execPath, [MTUN, 'capture', '--admin', `127.0.0.1:${port}`, '-w', lab.file(file), '--proto', 'tcp', '--port', '80']);
    await lab.waitFor(async () => {
      const r = await lab.admin(role, port, '/flows');
      return r.code === 0 && (JSON.parse(r.stdout) as { capture: { active: boolean } }).capture.active;
    }, 10_000, `capture at ${role}`, p);
    return p;
  }

  async function stopCapture(p: ChildProcess): Promise<void> {
    const done = new Promise<number | null>((r) => (p.exitCode !== null ? r(p.exitCode) : p.once('exit', (c) => r(c))));
    p.kill('SIGINT');
    expect(await done).toBe(0);
  }

  const tunnelGauge = (text: string): number => Number(/^mtun_tunnel_rtt_seconds\{[^}]*\} (\S+)$/m.exec(text)?.[1] ?? NaN) * 1000;

  it('each segment within ±10 % of its delay plus the measured base; QUIC\'s tunnel RTT agrees with the TCP difference across ends', async () => {
    await warmUp();
    const base = await run(BASE_ROUNDS);
    const b = splitRtt(asRecord(base.agent), asRecord(base.gateway));
    const bq = { agent: stats(base.agent.rtt_tunnel)!, gateway: stats(base.gateway.rtt_tunnel)! };

    bridges[0]!.impairer.configure({ delayMs: CLIENT_MS / 2 });
    bridges[1]!.impairer.configure({ delayMs: SERVER_MS / 2 });
    await setTunnelDelay(TUNNEL_MS / 2);
    await warmUp();
    const gauges = { agent: tunnelGauge(await lab.metrics('agent')), gateway: tunnelGauge(await lab.metrics('gw')) };
    const captures = [await startCapture('agent', LAB.agentAdmin, 'agent.pcapng'), await startCapture('gw', LAB.gatewayAdmin, 'gateway.pcapng')];
    const d = await run(ROUNDS);
    for (const c of captures) await stopCapture(c);
    const s = splitRtt(asRecord(d.agent), asRecord(d.gateway));
    const q = { agent: stats(d.agent.rtt_tunnel)!, gateway: stats(d.gateway.rtt_tunnel)! };
    console.log(JSON.stringify({ base: { split: b, quic: bq }, delayed: { split: s, quic: q, gauges, agentSplit: d.agent.rtt_split, gatewaySplit: d.gateway.rtt_split } }, null, 1));

    expect(d.agent.flow_join_id).toBe(d.gateway.flow_join_id);
    // Client and server segments (and the TCP tunnel), each end's measured segment, joined across ends.
    for (const [name, seg, baseSeg, ms] of [
      ['client', s.client, b.client, CLIENT_MS], ['tunnel (TCP, across ends)', s.tunnel, b.tunnel, TUNNEL_MS], ['server', s.server, b.server, SERVER_MS],
    ] as const) {
      const want = ms + baseSeg!.minMs - 2 * BASE_ONE_WAY_MS;
      const msg = `${name}: min ${seg!.minMs} ms (smoothed ${seg!.smoothedMs}) vs ${ms} + base ${(baseSeg!.minMs - 2 * BASE_ONE_WAY_MS).toFixed(3)}`;
      console.log(msg);
      // ±10 %, but at least 0.75 ms: the delays come from a userspace impairer, and with another test file
      // running beside this one on two cores (maxWorkers 2) a whole window's minimum once came out 0.58 ms
      // late on a 5.6 ms segment (clean-clone CI, 2026-12-07). A segment attributed wrongly is off by ≥ 5 ms.
      expect(Math.abs(seg!.minMs - want), msg).toBeLessThanOrEqual(Math.max(want * 0.1, 0.75));
    }
    // The tunnel as QUIC sees it, at each end. Idle (the per-peer gauge, read just before the flow) each end's
    // value includes its peer's socket-to-engine latency, which no ACK delay reports: here the gateway reads 3-4 ms
    // above the TCP tunnel and the agent 1-2 ms below (the binding also truncates to whole ms). So each end within
    // ±20 % + 1 ms, and the two ends' mean — as the cross-end split averages its two differences — within ±10 % + 1 ms.
    // Under the flow's traffic QUIC's smoothed RTT also carries the engines' own queueing and processing (on this
    // loaded 2-core box up to ~50 % more), so the flow's samples are held to a floor (QUIC never sees the tunnel
    // much shorter than it is) and a ceiling that still catches a wrong unit or connection.
    const tcpTunnel = s.tunnel!.minMs;
    const idleMean = (gauges.agent + gauges.gateway) / 2;
    expect(Math.abs(idleMean - tcpTunnel), `QUIC tunnel RTT idle, mean of both ends ${idleMean} vs TCP ${tcpTunnel}`).toBeLessThanOrEqual(tcpTunnel * 0.1 + 1);
    for (const end of ['agent', 'gateway'] as const) {
      const msg = `${end}: QUIC tunnel RTT idle ${gauges[end]}; during the flow min/smoothed/max ${q[end].minMs}/${q[end].smoothedMs}/${q[end].maxMs} (${q[end].samples} samples; base run ${bq[end].minMs}) vs TCP across ends ${tcpTunnel}`;
      console.log(msg);
      expect(Math.abs(gauges[end] - tcpTunnel), msg).toBeLessThanOrEqual(tcpTunnel * 0.2 + 1);
      expect(q[end].samples, msg).toBeGreaterThanOrEqual(3);
      expect(q[end].minMs, msg).toBeGreaterThanOrEqual(tcpTunnel * 0.8 - 1);
      expect(q[end].minMs, msg).toBeLessThanOrEqual(tcpTunnel * 2);
    }
    // Each end's one-end split: its own segment as measured, the far one = beyond the tunnel − QUIC's tunnel RTT.
    const as = d.agent.rtt_split as Record<string, Record<string, number>>;
    const gs = d.gateway.rtt_split as Record<string, Record<string, number>>;
    expect(as.client!.min_ms).toBe(stats(d.agent.rtt_to_client)!.minMs);
    expect(as.server!.min_ms).toBeCloseTo(Math.max(0, stats(d.agent.rtt_to_server)!.minMs - q.agent.minMs), 3);
    expect(gs.server!.min_ms).toBe(stats(d.gateway.rtt_to_server)!.minMs);
    expect(gs.client!.min_ms).toBeCloseTo(Math.max(0, stats(d.gateway.rtt_to_client)!.minMs - q.gateway.minMs), 3);
    // Their error is exactly QUIC's against the TCP tunnel (beyond − QUIC vs beyond − TCP tunnel): never more than
    // 20 % + 1 ms too large (the floor above), and no smaller than 0.
    expect(as.server!.min_ms!, 'agent: server segment from one end').toBeLessThanOrEqual(s.server!.minMs + tcpTunnel * 0.2 + 1);
    expect(gs.client!.min_ms!, 'gateway: client segment from one end').toBeLessThanOrEqual(s.client!.minMs + tcpTunnel * 0.2 + 1);
    // Each daemon's samples are tshark's ack_rtt on the capture of the same packets at the same point.
    for (const [file, l] of [['agent.pcapng', d.agent], ['gateway.pcapng', d.gateway]] as const) {
      const ts = tsharkAckRtt(lab.file(file), l.src_port);
      for (const [dir, ours, theirs, clean] of [['toClient', stats(l.rtt_to_client)!, ts.toClient, ts.cleanToClient],
        ['toServer', stats(l.rtt_to_server)!, ts.toServer, ts.cleanToServer]] as const) {
        const msg = `${file} ${dir}: ours min/smoothed/max ${ours.minMs}/${ours.smoothedMs}/${ours.maxMs} (${ours.samples}) ` +
          `tshark min/smoothed/median/max ${Math.min(...theirs).toFixed(3)}/${smooth(theirs).toFixed(3)}/${median(theirs).toFixed(3)}/${Math.max(...theirs).toFixed(3)} (${theirs.length}; ` +
          `${clean.length} of unretransmitted segments, min ${Math.min(...clean).toFixed(3)})`;
        console.log(msg);
        // The minimum lies between tshark's over every sample and tshark's over the segments sent once (Karn): with
        // no retransmission the two are the same and ours must equal them. A retransmission lets tshark time an ACK
        // against the wrong copy (a spurious one's ACK arrives just after it), which the tracker never does.
        expect(clean.length, msg).toBeGreaterThan(ROUNDS / 2);
        expect(ours.minMs, msg).toBeGreaterThanOrEqual(Math.min(...theirs) - 0.002);
        expect(ours.minMs, msg).toBeLessThanOrEqual(Math.min(...clean) + 0.002);
        // Karn (RFC 6298 §3): the tracker never times a retransmitted segment, tshark times its ACK too. Without
        // retransmissions the two series are the same; with some (a loaded box), tshark has at most that many more.
        const retransmits = l.retransmits as number;
        expect(theirs.length - ours.samples, `${msg}; ${retransmits} retransmits`).toBeGreaterThanOrEqual(0);
        expect(theirs.length - ours.samples, `${msg}; ${retransmits} retransmits`).toBeLessThanOrEqual(retransmits);
        if (retransmits === 0) expect(Math.abs(ours.smoothedMs - smooth(theirs)), msg).toBeLessThanOrEqual(smooth(theirs) * 0.01);
      }
    }
    // The tunnel histogram family has the flow, labelled with the peer identity.
    expect(await lab.metrics('agent')).toMatch(/mtun_tcp_tunnel_rtt_seconds_count\{reporter="agent",[^}]*peer_identity="gateway",stat="min"\} [1-9]/);
    expect(await lab.metrics('gw')).toMatch(/mtun_tcp_tunnel_rtt_seconds_count\{reporter="gateway",[^}]*peer_identity="spiffe:\/\/cluster.local\/agent\/cluster-a",stat="min"\} [1-9]/);
    // Samples refused as negative (hand-overs out of time order) are counted, at each end.
    for (const end of ['agent', 'gw']) {
      const m = /^mtun_inspect_rtt_samples_discarded_total\{[^}]*\} (\d+)$/m.exec(await lab.metrics(end));
      expect(m, `${end}: mtun_inspect_rtt_samples_discarded_total`).not.toBeNull();
      console.log(`${end}: RTT samples discarded ${m![1]}`);
    }
  }, 180_000);
});
