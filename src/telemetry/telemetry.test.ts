import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parsePrefix, type IpPrefix } from '../packet/ip-address.js';
import { IPPROTO_TCP, IPPROTO_UDP, type FlowOpenInfo } from './flow-types.js';
import { FlowLog, flowJoinKey } from './flow-log.js';
import { Telemetry } from './telemetry.js';

const p = (t: string): IpPrefix => parsePrefix(t)!;
const WORKLOADS = [
  { prefix: p('10.1.0.0/16'), name: 'cluster-a' },
  { prefix: p('10.2.0.0/16'), name: 'cluster-b' },
  { prefix: p('10.2.0.10/32'), name: 'web' },
  { prefix: p('fd00:2::/64'), name: 'cluster-b' },
];
const AGENT_ID = 'spiffe://cluster.local/agent/cluster-a';

function capture(): { lines: string[]; records: () => Record<string, unknown>[]; stream: { write(s: string): void } } {
  const lines: string[] = [];
  return { lines, stream: { write: (s: string) => { lines.push(s); } }, records: () => lines.map((l) => JSON.parse(l) as Record<string, unknown>) };
}

function make(reporter: 'agent' | 'gateway', opts: { maxIdentities?: number; maxLabelSets?: number } = {}) {
  const log = capture();
  const t = new Telemetry({ reporter, workloads: WORKLOADS, flowLog: log.stream, processMetrics: false, ...opts });
  return { t, log };
}

/** Value of one series in Prometheus text, or undefined when absent. */
function series(text: string, name: string, labels: Record<string, string>): number | undefined {
  for (const line of text.split('\n')) {
    if (!line.startsWith(name + '{')) continue;
    const body = line.slice(name.length + 1, line.lastIndexOf('}'));
    const got: Record<string, string> = {};
    for (const m of body.matchAll(/([a-z_]+)="((?:[^"\\]|\\.)*)"/g)) got[m[1]!] = m[2]!;
    if (Object.keys(labels).every((k) => got[k] === labels[k]) && Object.keys(got).length === Object.keys(labels).length) {
      return Number(line.slice(line.lastIndexOf(' ') + 1));
    }
  }
  return undefined;
}

const tcpFlow: FlowOpenInfo = {
  protocol: IPPROTO_TCP, srcAddr: '10.1.0.5', srcPort: 41234, dstAddr: '10.2.0.10', dstPort: 80,
  peerIdentity: AGENT_ID, direction: 'outbound', firstSeenMs: Date.UTC(2026, 0, 1, 0, 0, 0), initiatorIsn: 0xdeadbeef,
};
const L = { reporter: 'agent', source_workload: 'cluster-a', destination_workload: 'web', peer_identity: AGENT_ID };

describe('telemetry: metrics follow the flows', () => {
  it('TCP counters move with deltas and reach the close totals exactly', async () => {
    const { t } = make('agent');
    const h = t.onFlowOpen(tcpFlow);
    t.onHandshake(h, 1.5);
    t.onFlowDelta(h, 1000, 50, 2, 1, 0, tcpFlow.firstSeenMs + 10);
    let text = await t.metrics.text();
    expect(series(text, 'mtun_tcp_connections_opened_total', L)).toBe(1);
    expect(series(text, 'mtun_tcp_sent_bytes_total', L)).toBe(1000); // moves before close
    expect(series(text, 'mtun_tcp_received_bytes_total', L)).toBe(50);
    expect(series(text, 'mtun_tcp_connections_closed_total', { ...L, reason: 'fin' })).toBeUndefined();
    // Cumulative totals from the flow table: only the new part is added.
    t.onFlowTotals(h, { sentBytes: 5000, receivedBytes: 70, sentPackets: 6, receivedPackets: 3, retransmits: 1 }, 0);
    t.onFlowClose(h, { sentBytes: 10_485_760, receivedBytes: 300, sentPackets: 7300, receivedPackets: 900, retransmits: 2, reason: 'fin', lastSeenMs: tcpFlow.firstSeenMs + 2500 });
    t.onFlowClose(h, { sentBytes: 1, receivedBytes: 1, sentPackets: 1, receivedPackets: 1, retransmits: 1, reason: 'rst', lastSeenMs: 0 }); // ignored: once only
    text = await t.metrics.text();
    expect(series(text, 'mtun_tcp_sent_bytes_total', L)).toBe(10_485_760);
    expect(series(text, 'mtun_tcp_received_bytes_total', L)).toBe(300);
    expect(series(text, 'mtun_tcp_retransmits_total', L)).toBe(2);
    expect(series(text, 'mtun_tcp_connections_closed_total', { ...L, reason: 'fin' })).toBe(1);
    expect(series(text, 'mtun_tcp_connections_closed_total', { ...L, reason: 'rst' })).toBeUndefined();
    expect(series(text, 'mtun_tcp_connections_failed_total', L)).toBe(0);
    expect(series(text, 'mtun_tcp_handshake_rtt_seconds_count', L)).toBe(1);
    expect(series(text, 'mtun_tcp_handshake_rtt_seconds_sum', L)).toBe(0.0015);
    expect(series(text, 'mtun_tcp_handshake_rtt_seconds_bucket', { ...L, le: '0.0025' })).toBe(1);
    expect(series(text, 'mtun_tcp_handshake_rtt_seconds_bucket', { ...L, le: '0.001' })).toBe(0);
    expect(t.openFlowCount).toBe(0);
  });

  it('failed handshakes count as failed and closed; unknown addresses label "unknown"', async () => {
    const { t } = make('gateway');
    const h = t.onFlowOpen({ ...tcpFlow, srcAddr: '192.168.7.7', direction: 'inbound' });
    t.onFlowClose(h, { sentBytes: 0, receivedBytes: 0, sentPackets: 3, receivedPackets: 0, retransmits: 2, reason: 'Handshake Timeout', lastSeenMs: tcpFlow.firstSeenMs + 20_000, failed: true });
    const text = await t.metrics.text();
    const G = { reporter: 'gateway', source_workload: 'unknown', destination_workload: 'web', peer_identity: AGENT_ID };
    expect(series(text, 'mtun_tcp_connections_failed_total', G)).toBe(1);
    expect(series(text, 'mtun_tcp_connections_closed_total', { ...G, reason: 'handshake_timeout' })).toBe(1);
  });

  it('logs failed connections up to flowLog.maxFailedPerSecond, counts the rest as suppressed, and still counts every one in the metrics', async () => {
    const log = capture();
    const t = new Telemetry({ reporter: 'gateway', workloads: WORKLOADS, flowLog: log.stream, processMetrics: false, flowLogMaxFailedPerSecond: 5 });
    const close = { sentBytes: 0, receivedBytes: 0, sentPackets: 1, receivedPackets: 0, retransmits: 0, reason: 'syn_timeout', lastSeenMs: tcpFlow.firstSeenMs + 1, failed: true };
    for (let i = 0; i < 50; i++) {
      const h = t.onFlowOpen({ ...tcpFlow, srcPort: 1000 + i, direction: 'inbound', failed: true });
      t.onFlowClose(h, close);
    }
    // A completed connection is never held back by the budget.
    const ok = t.onFlowOpen({ ...tcpFlow, srcPort: 9999 });
    t.onFlowClose(ok, { ...close, failed: false, reason: 'fin' });
    const events = log.records().map((r) => [r.event, r.src_port]);
    expect(events.filter((e) => e[0] === 'flow_open')).toHaveLength(6);
    expect(events.filter((e) => e[0] === 'flow_close')).toHaveLength(6); // each logged open has its close, no orphan
    expect(events).toContainEqual(['flow_close', 9999]);
    const text = await t.metrics.text();
    expect(series(text, 'mtun_flow_log_suppressed_total', { reason: 'failed-connection-rate' })).toBe(45);
    const G = { reporter: 'gateway', source_workload: 'cluster-a', destination_workload: 'web', peer_identity: AGENT_ID };
    expect(series(text, 'mtun_tcp_connections_failed_total', G)).toBe(50);
  });

  it('UDP flows have their own counters', async () => {
    const { t } = make('agent');
    const h = t.onFlowOpen({ protocol: IPPROTO_UDP, srcAddr: '10.1.0.5', srcPort: 5000, dstAddr: 'fd00:2::7', dstPort: 7, peerIdentity: AGENT_ID, direction: 'outbound', firstSeenMs: 1 });
    t.onFlowDelta(h, 100, 100, 1, 1, 0, 2);
    t.onFlowClose(h, { sentBytes: 300, receivedBytes: 200, sentPackets: 3, receivedPackets: 2, retransmits: 0, reason: 'idle_timeout', lastSeenMs: 120_002 });
    const text = await t.metrics.text();
    const U = { reporter: 'agent', source_workload: 'cluster-a', destination_workload: 'cluster-b', peer_identity: AGENT_ID };
    expect(series(text, 'mtun_udp_flows_opened_total', U)).toBe(1);
    expect(series(text, 'mtun_udp_flows_closed_total', { ...U, reason: 'idle_timeout' })).toBe(1);
    expect(series(text, 'mtun_udp_sent_bytes_total', U)).toBe(300);
    expect(series(text, 'mtun_udp_received_bytes_total', U)).toBe(200);
    expect(series(text, 'mtun_udp_sent_packets_total', U)).toBe(3);
    expect(series(text, 'mtun_udp_received_packets_total', U)).toBe(2);
    expect(series(text, 'mtun_tcp_sent_bytes_total', U)).toBe(0);
  });

  it('tunnel counters: sessions gauge, datagrams and bytes each way, drops by reason, ICMP errors by type', async () => {
    const { t } = make('gateway');
    const m = t.metrics;
    const id = m.identityId(AGENT_ID);
    const policy = m.dropReasonId('policy_denied');
    const spoof = m.dropReasonId('source_check');
    const ptb = m.icmpTypeId('packet_too_big');
    m.sessionOpened(id);
    m.sessionOpened(id);
    m.sessionClosed(id);
    m.addTunnelSent(id, 10, 14_000);
    m.addTunnelReceived(id, 4, 400);
    m.drop(policy, 3);
    m.drop(spoof);
    m.icmpErrorSent(ptb);
    const text = await m.text();
    const T = { reporter: 'gateway', peer_identity: AGENT_ID };
    expect(series(text, 'mtun_tunnel_sessions', T)).toBe(1);
    expect(series(text, 'mtun_tunnel_sessions_opened_total', T)).toBe(2);
    expect(series(text, 'mtun_tunnel_sent_datagrams_total', T)).toBe(10);
    expect(series(text, 'mtun_tunnel_sent_bytes_total', T)).toBe(14_000);
    expect(series(text, 'mtun_tunnel_received_datagrams_total', T)).toBe(4);
    expect(series(text, 'mtun_tunnel_received_bytes_total', T)).toBe(400);
    expect(series(text, 'mtun_tunnel_dropped_packets_total', { reporter: 'gateway', reason: 'policy_denied' })).toBe(3);
    expect(series(text, 'mtun_tunnel_dropped_packets_total', { reporter: 'gateway', reason: 'source_check' })).toBe(1);
    expect(series(text, 'mtun_tunnel_icmp_errors_sent_total', { reporter: 'gateway', type: 'packet_too_big' })).toBe(1);
  });

  it('bounded cardinality: identities and label sets overflow into "other"; no addresses or ports as labels', async () => {
    const { t } = make('gateway', { maxIdentities: 3, maxLabelSets: 4 });
    for (let i = 0; i < 50; i++) {
      const h = t.onFlowOpen({ ...tcpFlow, srcAddr: `10.1.${i}.1`, srcPort: 1000 + i, peerIdentity: `spiffe://x/agent/${i}` });
      t.onFlowClose(h, { sentBytes: 1, receivedBytes: 0, sentPackets: 1, receivedPackets: 0, retransmits: 0, reason: `reason-${i}`, lastSeenMs: tcpFlow.firstSeenMs + 1 });
    }
    const text = await t.metrics.text();
    const opened = text.split('\n').filter((l) => l.startsWith('mtun_tcp_connections_opened_total{'));
    expect(opened.length).toBeLessThanOrEqual(4);
    expect(opened.reduce((s, l) => s + Number(l.slice(l.lastIndexOf(' ') + 1)), 0)).toBe(50);
    expect(text).toContain('peer_identity="other"');
    const closed = text.split('\n').filter((l) => l.startsWith('mtun_tcp_connections_closed_total{'));
    expect(new Set(closed.map((l) => /reason="([^"]*)"/.exec(l)![1])).size).toBeLessThanOrEqual(32);
    expect(text).toContain('reason="other"');
    expect(text).not.toMatch(/10\.1\.\d+\.1|src_port|dst_port/);
  });

  it('topFlows lists open flows by bytes', () => {
    const { t } = make('agent');
    const a = t.onFlowOpen(tcpFlow);
    const b = t.onFlowOpen({ ...tcpFlow, srcPort: 41235, dstAddr: 'fd00:2::10' });
    t.onFlowDelta(a, 10, 0, 1, 0, 0, 0);
    t.onFlowDelta(b, 1000, 0, 1, 0, 0, 0);
    const top = t.topFlows(5, tcpFlow.firstSeenMs + 1000);
    expect(top.map((f) => f.dst)).toEqual(['[fd00:2::10]:80', '10.2.0.10:80']);
    expect(top[0]).toMatchObject({ protocol: 'tcp', src: '10.1.0.5:41235', sentBytes: 1000, durationMs: 1000, peerIdentity: AGENT_ID });
    expect(t.topFlows(1)).toHaveLength(1);
  });
});

describe('telemetry: JSON flow logs', () => {
  it('one open and one close record per flow per end, joinable across ends', () => {
    const agent = make('agent');
    const gw = make('gateway');
    for (const [end, dir] of [[agent, 'outbound'], [gw, 'inbound']] as const) {
      // The gateway sees the SYN a little later; the 5-tuple and ISN are the same.
      const firstSeen = tcpFlow.firstSeenMs + (dir === 'inbound' ? 7 : 0);
      const h = end.t.onFlowOpen({ ...tcpFlow, direction: dir, firstSeenMs: firstSeen });
      end.t.onHandshake(h, 2);
      end.t.onFlowClose(h, { sentBytes: 10_485_760, receivedBytes: 512, sentPackets: 7000, receivedPackets: 800, retransmits: 0, reason: 'fin', lastSeenMs: firstSeen + 1234, sni: 'web.example' });
    }
    const a = agent.log.records();
    const g = gw.log.records();
    expect(a.map((r) => r.event)).toEqual(['flow_open', 'flow_close']);
    expect(g.map((r) => r.event)).toEqual(['flow_open', 'flow_close']);
    const close = a[1]!;
    expect(close).toMatchObject({
      level: 'info', reporter: 'agent', protocol: 'tcp',
      src_addr: '10.1.0.5', src_port: 41234, dst_addr: '10.2.0.10', dst_port: 80,
      direction: 'outbound', peer_identity: AGENT_ID, source_workload: 'cluster-a', destination_workload: 'web',
      sent_bytes: 10_485_760, received_bytes: 512, sent_packets: 7000, received_packets: 800, retransmits: 0,
      duration_ms: 1234, close_reason: 'fin', sni: 'web.example', handshake_rtt_ms: 2, failed: false,
      first_seen: '2026-01-01T00:00:00.000Z', initiator_isn: 0xdeadbeef,
    });
    expect(typeof close.time).toBe('string');
    expect(g[1]).toMatchObject({ reporter: 'gateway', direction: 'inbound', sent_bytes: 10_485_760 });
    // The join key is identical at both ends; the per-end flow_id differs by first-seen.
    expect(a[1]!.flow_key).toBe(g[1]!.flow_key);
    expect(a[1]!.flow_key).toBe('tcp 10.1.0.5:41234>10.2.0.10:80#3735928559');
    expect(a[0]!.flow_key).toBe(a[1]!.flow_key);
    expect(a[1]!.flow_id).not.toBe(g[1]!.flow_id);
  });

  it('join keys bracket IPv6 and omit the ISN when unknown', () => {
    expect(flowJoinKey({ ...tcpFlow, protocol: IPPROTO_UDP, srcAddr: 'fd00:1::5', dstAddr: 'fd00:2::10', dstPort: 53, initiatorIsn: undefined }))
      .toBe('udp [fd00:1::5]:41234>[fd00:2::10]:53');
  });

  it('a disabled flow log writes nothing; a file destination gets JSON lines', async () => {
    const off = capture();
    const disabled = new FlowLog({ reporter: 'agent', destination: off.stream, enabled: false });
    disabled.open(tcpFlow, { source: 'a', destination: 'b' });
    expect(off.lines).toEqual([]);

    const dir = mkdtempSync(join(tmpdir(), 'mtun-flowlog-'));
    const file = join(dir, 'sub', 'flows.jsonl');
    const t = new Telemetry({ reporter: 'gateway', workloads: WORKLOADS, flowLog: file, processMetrics: false });
    const h = t.onFlowOpen(tcpFlow);
    t.onFlowClose(h, { sentBytes: 7, receivedBytes: 9, sentPackets: 1, receivedPackets: 1, retransmits: 0, reason: 'rst', lastSeenMs: tcpFlow.firstSeenMs + 5 });
    await t.shutdown();
    const recs = readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(recs.map((r) => [r.event, r.reporter, r.close_reason])).toEqual([['flow_open', 'gateway', undefined], ['flow_close', 'gateway', 'rst']]);
  });
});
