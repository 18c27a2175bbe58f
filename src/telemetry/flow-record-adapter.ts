/**
 * Adapter from the inspection layer's FlowTracker (src/inspect) to
 * Telemetry: the tracker's exactly-once close records become flow_close
 * records and final counter values; periodic live snapshots become
 * flow_open records and counter progress for long flows.
 */
import { parseIp, prefixHasAddress, type IpPrefix } from '../packet/ip-address.js';
import type { FlowMeta, FlowRecord } from '../inspect/flow-record.js';
import { IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP, type FlowDirection } from './flow-types.js';
import type { FlowHandle, Telemetry } from './telemetry.js';

/** src/inspect's Direction.OUT: agent → gateway. */
const TUNNEL_OUT = 0;

/** Options for {@link FlowRecordTelemetry}. */
export interface FlowRecordTelemetryOptions {
  /**
   * Direction of a flow seen first in a live snapshot (which carries no
   * tunnel direction). Typically {@link directionByLocalPrefixes} over the
   * prefixes on this end. Close records use the tracker's own direction.
   */
  readonly directionOf: (r: FlowRecord) => FlowDirection;
}

/**
 * Feeds one FlowTracker's output into a Telemetry. Call {@link onRecord}
 * from the tracker's sink, and {@link syncLive} off the packet path (e.g.
 * once a second with `tracker.liveFlows()`) so counters move before flows
 * close. Keeps one handle per open flow, keyed by 5-tuple and first-seen.
 */
export class FlowRecordTelemetry {
  private readonly handles = new Map<string, FlowHandle>();

  constructor(private readonly telemetry: Telemetry, private readonly opts: FlowRecordTelemetryOptions) {}

  /** Open flows currently tracked by the adapter. */
  get size(): number {
    return this.handles.size;
  }

  /**
   * Live snapshot: opens (and logs) flows not seen before and brings every
   * flow's counters up to the snapshot's totals. Allocates; off the packet path.
   */
  syncLive(records: readonly FlowRecord[], peerIdentity: string, nowMs: number): void {
    for (const r of records) {
      const key = recordKey(r);
      let h = this.handles.get(key);
      if (h === undefined) {
        h = this.open(r, peerIdentity, this.opts.directionOf(r));
        this.handles.set(key, h);
      }
      this.progress(h, r, nowMs);
    }
  }

  /**
   * A finished flow from the tracker's sink: opens it first if no live
   * snapshot saw it, then closes it with the record's final totals. The
   * record is used only during the call.
   */
  onRecord(r: FlowRecord, meta: FlowMeta, peerIdentity: string): void {
    const key = recordKey(r);
    let h = this.handles.get(key);
    if (h === undefined) {
      h = this.open(r, peerIdentity, this.directionFromMeta(meta));
    } else {
      this.handles.delete(key);
    }
    this.progress(h, r, meta.lastSeenMs);
    this.telemetry.onFlowClose(h, {
      sentBytes: r.bytesSent,
      receivedBytes: r.bytesReceived,
      sentPackets: r.packetsSent,
      receivedPackets: r.packetsReceived,
      retransmits: r.retransmits,
      reason: r.closeReason,
      lastSeenMs: meta.lastSeenMs,
      failed: r.proto === 'tcp' && !r.opened && !r.midstream,
      sni: r.sni ?? undefined,
      alpn: r.alpn ?? undefined,
      rttToClient: r.rttToClient ?? undefined,
      rttToServer: r.rttToServer ?? undefined,
      quicVersion: r.quicVersion ?? undefined,
      quicHandshakeRttMs: r.quicHandshakeRttMs ?? undefined,
      httpStatusClasses: r.httpRequests > 0
        ? [r.httpStatus['1xx'], r.httpStatus['2xx'], r.httpStatus['3xx'], r.httpStatus['4xx'], r.httpStatus['5xx']]
        : undefined,
      httpFirstByteMs: r.httpFirstByteMs ?? undefined,
    });
  }

  private open(r: FlowRecord, peerIdentity: string, direction: FlowDirection): FlowHandle {
    return this.telemetry.onFlowOpen({
      protocol: protoNumber(r),
      srcAddr: r.src,
      srcPort: r.srcPort,
      dstAddr: r.dst,
      dstPort: r.dstPort,
      peerIdentity,
      direction,
      firstSeenMs: Date.parse(r.firstSeen),
      joinId: r.flowId,
    });
  }

  private progress(h: FlowHandle, r: FlowRecord, nowMs: number): void {
    h.detail = r;
    this.telemetry.sampleTunnelRtt(h);
    if (r.handshakeRttMs !== null) this.telemetry.onHandshake(h, r.handshakeRttMs);
    this.telemetry.onFlowTotals(h, {
      sentBytes: r.bytesSent,
      receivedBytes: r.bytesReceived,
      sentPackets: r.packetsSent,
      receivedPackets: r.packetsReceived,
      retransmits: r.retransmits,
    }, nowMs);
  }

  private directionFromMeta(meta: FlowMeta): FlowDirection {
    // The initiator's first packet went agent → gateway: it started on the agent's side.
    const fromAgentSide = meta.tunnelDirection === TUNNEL_OUT;
    return fromAgentSide === (this.telemetry.metrics.reporter === 'agent') ? 'outbound' : 'inbound';
  }
}

/**
 * A `directionOf` for live flows: `outbound` when the initiator's address
 * lies in one of this end's local prefixes (the agent's advertised cluster
 * prefixes, or the gateway's), else `inbound`.
 */
export function directionByLocalPrefixes(prefixes: readonly IpPrefix[]): (r: FlowRecord) => FlowDirection {
  return (r) => {
    const a = parseIp(r.src);
    if (a !== null) for (const p of prefixes) if (prefixHasAddress(p, a.address)) return 'outbound';
    return 'inbound';
  };
}

function protoNumber(r: FlowRecord): number {
  if (r.proto === 'tcp') return IPPROTO_TCP;
  if (r.proto === 'udp') return IPPROTO_UDP;
  return r.src.includes(':') ? IPPROTO_ICMPV6 : IPPROTO_ICMP;
}

function recordKey(r: FlowRecord): string {
  return `${r.proto} ${r.src} ${r.srcPort} ${r.dst} ${r.dstPort} ${r.firstSeen}`;
}
