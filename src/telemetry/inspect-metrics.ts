/**
 * Metric families for what passive inspection learns about a flow beyond its
 * counters: RTT per segment (client, server, tunnel, and tunnel + far side
 * as one end sees it), QUIC handshakes inside the tunnel, HTTP/1 responses. Observed
 * once per flow, at its close, with the flow's label set (reporter,
 * workloads, peer identity); children are resolved once per label-set slot.
 */
import { Counter, type Registry } from 'prom-client';
import { QUIC_COUNTER_NAMES } from '../inspect/quic-peek.js';
import type { RttSummary } from './flow-types.js';
import { SlotHistogram } from './slot-histogram.js';

/** RTT histogram buckets, seconds (100 µs to 10 s). */
export const SEGMENT_RTT_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1, 2.5, 10];

/**
 * RTT segments as one end sees them. `client`: this end ↔ the initiator, at
 * the end on the initiator's side. `server`: this end ↔ the responder, at the
 * end on the responder's side. `beyond_tunnel`: this end → through the tunnel
 * to the far host and back (tunnel + far segment); the tunnel alone is the
 * difference between this and the other end's local segment (docs/telemetry.md).
 * `tunnel`: the smoothed RTT of the QUIC connection that carried the flow,
 * sampled while the flow moved, at both ends.
 */
export const Segment = { CLIENT: 0, SERVER: 1, BEYOND_TUNNEL: 2, TUNNEL: 3 } as const;
const SEGMENT_NAMES = ['client', 'server', 'beyond_tunnel', 'tunnel'] as const;

function segmentHelp(seg: (typeof SEGMENT_NAMES)[number]): string {
  const stat = '(stat: min, smoothed, max of its samples)';
  switch (seg) {
    case 'beyond_tunnel': return `TCP RTT from this end through the tunnel to the far host and back, per flow ${stat}.`;
    case 'tunnel': return `Smoothed RTT of the QUIC connection that carried the TCP flow (agent <-> gateway), sampled once a second while the flow moved, per flow ${stat}.`;
    default: return `TCP RTT of the ${seg} segment (this end <-> the ${seg === 'client' ? 'initiator' : 'responder'}), per flow, at the end on the ${seg}'s side ${stat}.`;
  }
}
/** Which statistic of a flow's samples an observation is (label `stat`). */
const STATS = ['min', 'smoothed', 'max'] as const;

type Labels = Record<string, string>;

/** The inspection metric families of one daemon; see the module comment. */
export class InspectMetrics {
  /** Per segment; child = slot * 3 + stat index. */
  private readonly rtt: SlotHistogram[];
  /** Child = slot. */
  private readonly quicHandshake: SlotHistogram;
  private readonly firstByte: SlotHistogram;
  /** HTTP responses per slot and class: slot * 5 + class. */
  private responses = new Float64Array(5 * 64);
  private readonly quicSources: Float64Array[] = [];

  constructor(registry: Registry, reporter: string, private readonly labelsOf: (slot: number) => Labels, private readonly slotCount: () => number) {
    const reg = [registry];
    const flowLabels = ['reporter', 'source_workload', 'destination_workload', 'peer_identity'];
    const withStat = (c: number): Labels => ({ ...labelsOf(Math.floor(c / 3)), stat: STATS[c % 3]! });
    this.rtt = SEGMENT_NAMES.map((seg) => new SlotHistogram({
      name: `mtun_tcp_${seg}_rtt_seconds`,
      help: segmentHelp(seg),
      buckets: SEGMENT_RTT_BUCKETS, registers: reg, labelsOf: withStat,
    }));
    this.quicHandshake = new SlotHistogram({
      name: 'mtun_quic_handshake_rtt_seconds',
      help: 'QUIC handshakes inside the tunnel: first client Initial to first server Handshake packet, at this end.',
      buckets: SEGMENT_RTT_BUCKETS, registers: reg, labelsOf,
    });
    this.firstByte = new SlotHistogram({
      name: 'mtun_http_first_byte_seconds',
      help: 'HTTP/1 connections: first request byte to first response byte, at this end.',
      buckets: SEGMENT_RTT_BUCKETS, registers: reg, labelsOf,
    });
    const responses: Counter<string> = new Counter({
      name: 'mtun_http_responses_total',
      help: 'HTTP/1 responses seen at connection start (bodies skipped), by status class.',
      labelNames: [...flowLabels, 'status_class'], registers: reg,
      collect: () => {
        responses.reset();
        const n = this.slotCount();
        for (let s = 0; s < n; s++) {
          for (let k = 0; k < 5; k++) {
            const v = this.responses[s * 5 + k] ?? 0;
            if (v > 0) responses.inc({ ...this.labelsOf(s), status_class: `${k + 1}xx` }, v);
          }
        }
      },
    });
    const quic: Counter<string> = new Counter({
      name: 'mtun_inspect_quic_events_total',
      help: 'QUIC handshake peek: flows, decrypted / failed Initials, ClientHellos, handshakes, timeouts, overflows (a bound hit).',
      labelNames: ['reporter', 'event'], registers: reg,
      collect: () => {
        quic.reset();
        for (let e = 0; e < QUIC_COUNTER_NAMES.length; e++) {
          let v = 0;
          for (const src of this.quicSources) v += src[e]!;
          quic.inc({ reporter, event: QUIC_COUNTER_NAMES[e]! }, v);
        }
      },
    });
  }

  /** Exposes a tracker's QUIC peek counters (FlowTracker.quicCounters); read at scrape time. */
  watchQuicCounters(counters: Float64Array): void {
    this.quicSources.push(counters);
  }

  /** One flow's RTT summary for `segment` ({@link Segment}): min, smoothed and max observed once each. */
  observeRtt(slot: number, segment: number, r: RttSummary): void {
    const h = this.rtt[segment]!;
    h.observe(slot * 3, r.minMs / 1000);
    h.observe(slot * 3 + 1, r.smoothedMs / 1000);
    h.observe(slot * 3 + 2, r.maxMs / 1000);
  }

  /** One QUIC handshake's RTT, ms. */
  observeQuicHandshake(slot: number, ms: number): void {
    this.quicHandshake.observe(slot, ms / 1000);
  }

  /** One HTTP/1 connection's request → first response byte time, ms. */
  observeFirstByte(slot: number, ms: number): void {
    this.firstByte.observe(slot, ms / 1000);
  }

  /** HTTP/1 responses of one flow by class (index 0 = 1xx … 4 = 5xx). */
  addResponses(slot: number, byClass: readonly number[]): void {
    if ((slot + 1) * 5 > this.responses.length) {
      const n = new Float64Array(Math.max(this.responses.length * 2, (slot + 1) * 5));
      n.set(this.responses);
      this.responses = n;
    }
    for (let k = 0; k < 5; k++) this.responses[slot * 5 + k]! += byClass[k] ?? 0;
  }
}
