// The tunnel segment of the latency split (issue #16): the QUIC connection's
// own smoothed RTT (RFC 9002 §5.3), sampled through TunnelCounterSync into
// the per-peer gauge, each flow's tunnel summary, the one-end split in the
// flow log and /flows, and the tunnel histogram family.
import { describe, expect, it } from 'vitest';
import { parsePrefix, type IpPrefix } from '../packet/ip-address.js';
import { Direction, FlowTracker } from '../inspect/flow-tracker.js';
import { TCP_FLAG } from '../packet/ip-packet.js';
import { conv } from '../inspect/fixtures.js';
import { CONNECT_IP_DROP_NAMES } from '../masque/connect-ip/counters.js';
import { directionByLocalPrefixes, FlowRecordTelemetry } from './flow-record-adapter.js';
import { liveFlowsDocument } from './live-flows.js';
import { Telemetry } from './telemetry.js';
import { TunnelCounterSync } from './tunnel-counter-sync.js';

const p = (t: string): IpPrefix => parsePrefix(t)!;
const ID = 'spiffe://cluster.local/gateway';
const { SYN, ACK, PSH, FIN } = TCP_FLAG;

function metric(text: string, name: string): number {
  const line = text.split('\n').find((l) => l.startsWith(name + '{') || l.startsWith(name + ' '));
  return line === undefined ? NaN : Number(line.slice(line.lastIndexOf(' ') + 1));
}

/**
 * One end's telemetry with a real tracker, and a session whose "QUIC
 * connection" reports `quicRtt.ms` (null: HTTP/2). The conversation
 * C=10.1.0.5 → S=10.2.0.10 has the client 20 ms and the server 50 ms away
 * from this end.
 */
function end(reporter: 'agent' | 'gateway') {
  const lines: string[] = [];
  const t = new Telemetry({ reporter, workloads: [], flowLog: { write: (s: string) => { lines.push(s); } }, processMetrics: false });
  const adapter = new FlowRecordTelemetry(t, { directionOf: directionByLocalPrefixes([p(reporter === 'agent' ? '10.1.0.0/16' : '10.2.0.0/16')]) });
  const tracker = new FlowTracker({ sink: (r, m) => adapter.onRecord(r, m, ID) });
  const quicRtt: { ms: number | null } = { ms: null };
  const sync = new TunnelCounterSync(t.metrics, t.metrics.identityId(ID), CONNECT_IP_DROP_NAMES, () => quicRtt.ms);
  const k = conv('10.1.0.5', '10.2.0.10', 40000, 80);
  const dirC = reporter === 'agent' ? Direction.OUT : Direction.IN;
  const dirS = reporter === 'agent' ? Direction.IN : Direction.OUT;
  const at = (b: Buffer, dir: number, now: number) => tracker.observe(b, 0, b.length, dir, now);
  /** One second of the daemon's tick: flows first, then the session's counters (as agent.ts / gateway.ts order them). */
  const tick = (now: number) => {
    adapter.syncLive(tracker.liveFlows(), ID, now);
    sync.update(new Float64Array(CONNECT_IP_DROP_NAMES.length), 0, 0, 0, 0, 0);
  };
  const T0 = 1_700_000_000_000;
  const open = () => {
    at(k.c(SYN, 0, 0), dirC, T0);
    at(k.s(SYN | ACK, 0, 1), dirS, T0 + 50);
    at(k.c(ACK, 1, 1), dirC, T0 + 70);
    at(k.c(ACK | PSH, 1, 1, new Uint8Array(100)), dirC, T0 + 80);
    at(k.s(ACK, 1, 101), dirS, T0 + 130);
    at(k.s(ACK | PSH, 1, 101, new Uint8Array(500)), dirS, T0 + 140);
    at(k.c(ACK, 101, 501), dirC, T0 + 160);
  };
  const close = () => {
    at(k.c(FIN | ACK, 101, 501), dirC, T0 + 2170);
    at(k.s(FIN | ACK, 501, 102), dirS, T0 + 2220);
    at(k.c(ACK, 102, 502), dirC, T0 + 2240);
    tracker.flush();
  };
  const closeRecord = () => lines.map((l) => JSON.parse(l) as Record<string, unknown>).find((r) => r.event === 'flow_close');
  return { t, sync, quicRtt, tick, open, close, closeRecord, T0 };
}

describe('telemetry: tunnel RTT from the QUIC connection (issue #16)', () => {
  it('the agent (client side): gauge per peer, tunnel summary per flow, client / tunnel / server split in the log, /flows and the histogram', async () => {
    const e = end('agent');
    e.open();
    e.quicRtt.ms = 30;
    e.tick(e.T0 + 1000); // the flow is synced before the first RTT sample of the session
    let text = await e.t.metrics.text();
    expect(text).toMatch(/mtun_tunnel_rtt_seconds\{reporter="agent",peer_identity="spiffe:\/\/cluster.local\/gateway"\} 0\.03\n/);
    e.quicRtt.ms = 32;
    e.tick(e.T0 + 2000); // sample 30 (read at the last tick), then the session reads 32
    const live = liveFlowsDocument(e.t, e.T0 + 2000).flows[0]!;
    expect(live.rttToClient).toMatchObject({ minMs: 20, smoothedMs: 20, maxMs: 20 });
    expect(live.rttTunnel).toEqual({ minMs: 30, smoothedMs: 30, maxMs: 30, samples: 1 });
    // Outbound at the agent: the client segment is its own, the server's = beyond the tunnel (50) − tunnel (30).
    expect(live.rtt).toEqual({ client: 20, tunnel: 30, server: 20 });
    expect(liveFlowsDocument(e.t, e.T0 + 2000).totals.tunnelRttMs).toEqual({ [ID]: 32 });
    e.close(); // the close samples 32 once more
    const r = e.closeRecord()!;
    expect(r.rtt_tunnel).toEqual({ min_ms: 30, smoothed_ms: 30.25, max_ms: 32, samples: 2 });
    expect(r.rtt_split).toEqual({
      client: { min_ms: 20, smoothed_ms: 20, max_ms: 20 },
      tunnel: { min_ms: 30, smoothed_ms: 30.25, max_ms: 32 },
      server: { min_ms: 20, smoothed_ms: 19.75, max_ms: 18 },
    });
    text = await e.t.metrics.text();
    expect(text).toMatch(/mtun_tcp_tunnel_rtt_seconds_count\{[^}]*peer_identity="spiffe:\/\/cluster.local\/gateway",stat="max"\} 1/);
    expect(metric(text, 'mtun_tcp_tunnel_rtt_seconds_sum{reporter="agent",source_workload="unknown",destination_workload="unknown",peer_identity="spiffe://cluster.local/gateway",stat="max"}')).toBeCloseTo(0.032, 6);
    // The session ends: the gauge disappears instead of showing a stale value.
    e.sync.close();
    expect(await e.t.metrics.text()).not.toMatch(/mtun_tunnel_rtt_seconds\{/);
    expect(e.t.metrics.tunnelRttMs(e.t.metrics.identityId(ID))).toBeNull();
  });

  it('the gateway (server side): the client segment is what lies beyond the tunnel minus the tunnel', () => {
    const e = end('gateway');
    e.open();
    e.quicRtt.ms = 15;
    e.tick(e.T0 + 1000);
    e.close();
    const r = e.closeRecord()!;
    expect(r.direction).toBe('inbound');
    // Here rttToClient (20) is tunnel + client segment, rttToServer (50) the server segment.
    expect(r.rtt_split).toEqual({
      client: { min_ms: 5, smoothed_ms: 5, max_ms: 5 },
      tunnel: { min_ms: 15, smoothed_ms: 15, max_ms: 15 },
      server: { min_ms: 50, smoothed_ms: 50, max_ms: 50 },
    });
  });

  it('over HTTP/2 (no QUIC RTT) a flow has no tunnel segment: no gauge, no split, no tunnel histogram, and /flows says unknown', async () => {
    const e = end('agent');
    e.open();
    e.tick(e.T0 + 1000);
    expect(liveFlowsDocument(e.t, e.T0 + 1000).flows[0]!.rtt).toEqual({ client: 20, tunnel: null, server: null });
    e.close();
    const r = e.closeRecord()!;
    expect(r.rtt_tunnel).toBeUndefined();
    expect(r.rtt_split).toBeUndefined();
    expect(r.rtt_to_server).toMatchObject({ min_ms: 50 });
    const text = await e.t.metrics.text();
    expect(text).not.toMatch(/mtun_tunnel_rtt_seconds\{/);
    expect(text).not.toMatch(/mtun_tcp_tunnel_rtt_seconds_count\{/);
  });
});
