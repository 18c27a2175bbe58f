import { describe, expect, it } from 'vitest';
import { parsePrefix, type IpPrefix } from '../packet/ip-address.js';
import type { FlowMeta, FlowRecord } from '../inspect/flow-record.js';
import { Direction, FlowTracker } from '../inspect/flow-tracker.js';
import { craftTcp } from '../packet/craft.js';
import { TCP_FLAG } from '../packet/ip-packet.js';
import { directionByLocalPrefixes, FlowRecordTelemetry } from './flow-record-adapter.js';
import { Telemetry } from './telemetry.js';

const p = (t: string): IpPrefix => parsePrefix(t)!;
const ID = 'spiffe://cluster.local/agent/cluster-a';

function setup(reporter: 'agent' | 'gateway') {
  const lines: string[] = [];
  const t = new Telemetry({ reporter, workloads: [{ prefix: p('10.1.0.0/16'), name: 'cluster-a' }, { prefix: p('10.2.0.0/16'), name: 'cluster-b' }], flowLog: { write: (s: string) => { lines.push(s); } }, processMetrics: false });
  const adapter = new FlowRecordTelemetry(t, { directionOf: directionByLocalPrefixes(reporter === 'agent' ? [p('10.1.0.0/16')] : [p('10.2.0.0/16')]) });
  const records = () => lines.map((l) => JSON.parse(l) as Record<string, unknown>);
  return { t, adapter, records };
}

function metric(text: string, name: string): number {
  const line = text.split('\n').find((l) => l.startsWith(name + '{'));
  return line === undefined ? NaN : Number(line.slice(line.lastIndexOf(' ') + 1));
}

describe('telemetry: FlowTracker adapter', () => {
  it('a real tracked TCP connection: live progress, then exact totals and one open + one close record', async () => {
    const { t, adapter, records } = setup('agent');
    const tracker = new FlowTracker({ sink: (r, m) => adapter.onRecord(r, m, ID) });
    const c = { src: '10.1.0.5', dst: '10.2.0.10', srcPort: 40000, dstPort: 80 };
    const s = { src: c.dst, dst: c.src, srcPort: 80, dstPort: 40000 };
    const A = TCP_FLAG.ACK;
    let now = 1_700_000_000_000;
    const send = (b: Buffer, dir: number): void => { tracker.observe(b, 0, b.length, dir, now); now += 1; };
    send(craftTcp({ ...c, seq: 1000, flags: TCP_FLAG.SYN }), Direction.OUT);
    send(craftTcp({ ...s, seq: 5000, ack: 1001, flags: TCP_FLAG.SYN | A }), Direction.IN);
    send(craftTcp({ ...c, seq: 1001, ack: 5001, flags: A }), Direction.OUT);
    send(craftTcp({ ...c, seq: 1001, ack: 5001, flags: A, payload: new Uint8Array(300) }), Direction.OUT);
    adapter.syncLive(tracker.liveFlows(), ID, now);
    let text = await t.metrics.text();
    expect(metric(text, 'mtun_tcp_sent_bytes_total')).toBe(300); // moved before close
    expect(metric(text, 'mtun_tcp_connections_opened_total')).toBe(1);
    send(craftTcp({ ...s, seq: 5001, ack: 1301, flags: A, payload: new Uint8Array(1200) }), Direction.IN);
    send(craftTcp({ ...c, seq: 1301, ack: 6201, flags: A | TCP_FLAG.FIN }), Direction.OUT);
    send(craftTcp({ ...s, seq: 6201, ack: 1302, flags: A | TCP_FLAG.FIN }), Direction.IN);
    send(craftTcp({ ...c, seq: 1302, ack: 6202, flags: A }), Direction.OUT);
    tracker.flush();
    text = await t.metrics.text();
    expect(metric(text, 'mtun_tcp_sent_bytes_total')).toBe(300);
    expect(metric(text, 'mtun_tcp_received_bytes_total')).toBe(1200);
    expect(text).toMatch(/mtun_tcp_connections_closed_total\{[^}]*reason="fin"[^}]*\} 1/);
    expect(metric(text, 'mtun_tcp_handshake_rtt_seconds_count')).toBe(1);
    // Outbound at the agent: the local segment is the client's; rttToServer reaches beyond the tunnel.
    expect(text).toMatch(/mtun_tcp_client_rtt_seconds_count\{[^}]*peer_identity="spiffe:\/\/cluster.local\/agent\/cluster-a"[^}]*stat="smoothed"\} 1/);
    expect(text).toMatch(/mtun_tcp_beyond_tunnel_rtt_seconds_count\{[^}]*stat="min"\} 1/);
    expect(text).not.toMatch(/mtun_tcp_server_rtt_seconds_count\{/);
    const recs = records();
    expect(recs[1]!.flow_join_id).toMatch(/^[0-9a-f]{16}$/);
    expect(recs[1]!.rtt_to_client).toEqual({ min_ms: 1, smoothed_ms: 1, max_ms: 1, samples: 3 });
    expect(recs.map((r) => r.event)).toEqual(['flow_open', 'flow_close']);
    expect(recs[1]).toMatchObject({ direction: 'outbound', sent_bytes: 300, received_bytes: 1200, close_reason: 'fin', source_workload: 'cluster-a', destination_workload: 'cluster-b', peer_identity: ID, failed: false });
    expect(adapter.size).toBe(0);
  });

  it('a flow never seen live is opened and closed from its record; gateway direction from the tunnel direction', () => {
    const { adapter, records } = setup('gateway');
    const r: FlowRecord = {
      proto: 'tcp', src: '10.1.0.5', srcPort: 1, dst: '10.2.0.10', dstPort: 443, opened: false, midstream: false, closeReason: 'idle_timeout',
      bytesSent: 0, bytesReceived: 0, packetsSent: 3, packetsReceived: 0, retransmits: 2, handshakeRttMs: null, sni: null, alpn: null,
      httpRequests: 0, firstSeen: '2026-01-01T00:00:00.000Z', lastSeen: '2026-01-01T00:02:00.000Z',
      flowId: '0123456789abcdef', rttToClient: null, rttToServer: { minMs: 4, smoothedMs: 5, maxMs: 6, samples: 2 },
      quicVersion: null, quicHandshakeRttMs: null, httpStatus: { '1xx': 0, '2xx': 0, '3xx': 0, '4xx': 0, '5xx': 0 }, httpFirstByteMs: null,
    };
    const meta: FlowMeta = { ordinal: 0, tunnelDirection: Direction.OUT, outOfOrder: 0, rstIgnored: 0, synAckLegMs: null, ackLegMs: null, httpHost: null, firstSeenMs: Date.parse(r.firstSeen), lastSeenMs: Date.parse(r.lastSeen) };
    adapter.onRecord(r, meta, ID);
    const recs = records();
    expect(recs.map((x) => x.event)).toEqual(['flow_open', 'flow_close']);
    expect(recs[1]).toMatchObject({ direction: 'inbound', failed: true, close_reason: 'idle_timeout', duration_ms: 120_000, reporter: 'gateway' });
    // Inbound at the gateway: the responder is local, so rttToServer is the server segment.
    expect(recs[1]).toMatchObject({ flow_join_id: '0123456789abcdef', rtt_to_server: { min_ms: 4, smoothed_ms: 5, max_ms: 6, samples: 2 } });
  });

  it('QUIC handshakes and HTTP/1 responses reach their metric families', async () => {
    const { t, adapter } = setup('gateway');
    const base: FlowRecord = {
      proto: 'udp', src: '10.1.0.5', srcPort: 50000, dst: '10.2.0.10', dstPort: 443, opened: false, midstream: false, closeReason: 'idle_timeout',
      bytesSent: 1200, bytesReceived: 0, packetsSent: 1, packetsReceived: 1, retransmits: 0, handshakeRttMs: null, sni: 'example.com', alpn: 'h3',
      httpRequests: 0, firstSeen: '2026-01-01T00:00:00.000Z', lastSeen: '2026-01-01T00:00:01.000Z',
      flowId: 'aa', rttToClient: null, rttToServer: null, quicVersion: 'v1', quicHandshakeRttMs: 12,
      httpStatus: { '1xx': 0, '2xx': 0, '3xx': 0, '4xx': 0, '5xx': 0 }, httpFirstByteMs: null,
    };
    const meta: FlowMeta = { ordinal: 0, tunnelDirection: Direction.OUT, outOfOrder: 0, rstIgnored: 0, synAckLegMs: null, ackLegMs: null, httpHost: null, firstSeenMs: 0, lastSeenMs: 1 };
    adapter.onRecord(base, meta, ID);
    adapter.onRecord({ ...base, proto: 'tcp', srcPort: 1, quicVersion: null, quicHandshakeRttMs: null, httpRequests: 3, httpFirstByteMs: 7,
      httpStatus: { '1xx': 0, '2xx': 2, '3xx': 0, '4xx': 1, '5xx': 0 } }, meta, ID);
    const text = await t.metrics.text();
    expect(metric(text, 'mtun_quic_handshake_rtt_seconds_count')).toBe(1);
    expect(metric(text, 'mtun_quic_handshake_rtt_seconds_sum')).toBeCloseTo(0.012, 6);
    expect(metric(text, 'mtun_http_first_byte_seconds_count')).toBe(1);
    expect(text).toMatch(/mtun_http_responses_total\{[^}]*status_class="2xx"\} 2/);
    expect(text).toMatch(/mtun_http_responses_total\{[^}]*status_class="4xx"\} 1/);
  });
});
