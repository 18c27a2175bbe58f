/**
 * The admin `/flows` document behind `mtun top`: open and recently closed
 * flows with their current rate, totals, drops by reason and the capture
 * tap's state. Built per request, off the data path.
 */
import { formatHostPort } from '../packet/ip-address.js';
import type { HttpStatusClasses } from '../inspect/flow-record.js';
import { splitRttAtOneEnd, type SegmentRtt } from '../inspect/rtt-split.js';
import type { RttSummary } from './flow-types.js';
import { protocolName, flowJoinKey } from './flow-log.js';
import type { FlowHandle, Telemetry } from './telemetry.js';
import { DEFAULT_FLOWS_LIMIT, matchesFlowFilter, sortFlows, type FlowsQuery } from './flow-query.js';

/** A flow is shown with rate 0 once nothing moved for this long (two daemon ticks and a half). */
const IDLE_RATE_MS = 2_500;

/** One flow as `mtun top` shows it. Optional fields appear when the daemon's inspector reports them. */
export interface LiveFlow {
  /** The flow join key (`proto src>dst#isn`), equal at both ends. */
  readonly key: string;
  readonly state: 'open' | 'closed';
  /** `tcp`, `udp`, `icmp`, `ipv6-icmp`. */
  readonly protocol: string;
  /** `addr:port` (IPv6 in brackets). */
  readonly src: string;
  readonly dst: string;
  readonly srcAddr: string;
  readonly dstAddr: string;
  readonly srcPort: number;
  readonly dstPort: number;
  readonly direction: string;
  readonly peerIdentity: string;
  /** TLS SNI, or the QUIC Initial's SNI when the inspector reports one. */
  readonly sni: string | null;
  readonly alpn: string | null;
  readonly handshakeRttMs: number | null;
  /** Payload bytes so far, initiator → responder and back. */
  readonly sentBytes: number;
  readonly receivedBytes: number;
  /** Current rate, payload bytes per second. */
  readonly sentBytesPerSec: number;
  readonly receivedBytesPerSec: number;
  readonly ageMs: number;
  readonly idleMs: number;
  /** Why it closed (`fin`, `rst`, `idle_timeout`…), null while open. */
  readonly closeReason: string | null;
  /**
   * TCP, from the inspector's samples so far (ms): this end → initiator →
   * this end, and this end → responder → this end (see docs/telemetry.md,
   * "Latency split"); null without a sample.
   */
  readonly rttToClient: RttSummary | null;
  readonly rttToServer: RttSummary | null;
  /** The tunnel segment: the carrying QUIC connection's smoothed RTT, sampled while the flow moved; null over HTTP/2 or before a sample. */
  readonly rttTunnel: RttSummary | null;
  /**
   * Smoothed ms of the client, tunnel and server segments as this end alone
   * sees them (src/inspect/rtt-split.ts splitRttAtOneEnd: its own segment
   * measured, the far one = beyond the tunnel − tunnel); null entries are
   * unknown, and the whole is null for a flow without TCP RTT samples.
   */
  readonly rtt: { readonly client: number | null; readonly tunnel: number | null; readonly server: number | null } | null;
  /** QUIC flows: version of the client's Initial, and first Initial → first server Handshake packet, ms. */
  readonly quicVersion: string | null;
  readonly quicHandshakeRttMs: number | null;
  /** HTTP/1: responses by status class so far, and first request byte → first response byte, ms; null when not HTTP/1. */
  readonly httpStatus: Readonly<HttpStatusClasses> | null;
  readonly httpFirstByteMs: number | null;
}

/** The whole `/flows` document. */
export interface LiveFlowsDocument {
  readonly reporter: string;
  /** When the document was built, epoch ms. */
  readonly nowMs: number;
  /** The flows that matched the query's filter, sorted, at most its limit. */
  readonly flows: readonly LiveFlow[];
  /** How many flows matched the filter (before the limit), and how many there were (open and recently closed). */
  readonly matchedFlows: number;
  readonly totalFlows: number;
  readonly totals: {
    readonly openFlows: number;
    readonly sentBytesPerSec: number;
    readonly receivedBytesPerSec: number;
    readonly tunnel: ReturnType<Telemetry['metrics']['tunnelTotals']>;
    /** Smoothed RTT of each peer's QUIC tunnel connection now, ms, by peer identity (peers over HTTP/2 are absent). */
    readonly tunnelRttMs: Readonly<Record<string, number>>;
  };
  /** Packets dropped since start, by reason. */
  readonly drops: Readonly<Record<string, number>>;
  readonly capture: { readonly active: boolean; readonly queuedPackets: number; readonly droppedPackets: number };
}

const ALL: FlowsQuery = { sort: 'rate', filter: null, limit: DEFAULT_FLOWS_LIMIT };

/**
 * Builds the `/flows` document: the open flows and the recently closed ones
 * that match `query`, sorted and limited; totals over all open flows.
 * Allocates; off the data path.
 */
export function liveFlowsDocument(t: Telemetry, nowMs: number, query: FlowsQuery = ALL): LiveFlowsDocument {
  const flows: LiveFlow[] = [];
  let sentRate = 0;
  let receivedRate = 0;
  for (const h of t.openFlows()) {
    const f = liveFlow(t, h, nowMs, null, undefined);
    sentRate += f.sentBytesPerSec;
    receivedRate += f.receivedBytesPerSec;
    flows.push(f);
  }
  for (const c of t.recentlyClosed()) flows.push(liveFlow(t, c.handle, nowMs, c.reason, c.sni));
  const tap = t.capture;
  const matched = sortFlows(query.filter === null ? flows : flows.filter((f) => matchesFlowFilter(query.filter, f)), query.sort);
  return {
    reporter: t.metrics.reporter,
    nowMs,
    flows: matched.slice(0, query.limit),
    matchedFlows: matched.length,
    totalFlows: flows.length,
    totals: { openFlows: t.openFlowCount, sentBytesPerSec: sentRate, receivedBytesPerSec: receivedRate, tunnel: t.metrics.tunnelTotals(), tunnelRttMs: t.metrics.tunnelRtts() },
    drops: t.metrics.dropsByReason(),
    capture: { active: tap.active, queuedPackets: tap.queuedPackets, droppedPackets: tap.dropped[0]! + tap.dropped[1]! },
  };
}

function liveFlow(t: Telemetry, h: FlowHandle, nowMs: number, closeReason: string | null, closeSni: string | undefined): LiveFlow {
  const i = h.info;
  const d = h.detail;
  const moving = closeReason === null && nowMs - h.lastSeenMs < IDLE_RATE_MS;
  const rttToClient = d?.rttToClient ?? null;
  const rttToServer = d?.rttToServer ?? null;
  const rttTunnel = t.tunnelRttOf(h) ?? null;
  return {
    key: flowJoinKey(i),
    state: closeReason === null ? 'open' : 'closed',
    protocol: protocolName(i.protocol),
    src: formatHostPort(i.srcAddr, i.srcPort),
    dst: formatHostPort(i.dstAddr, i.dstPort),
    srcAddr: i.srcAddr,
    dstAddr: i.dstAddr,
    srcPort: i.srcPort,
    dstPort: i.dstPort,
    direction: i.direction,
    peerIdentity: i.peerIdentity,
    sni: closeSni ?? str(d?.sni),
    alpn: str(d?.alpn),
    handshakeRttMs: h.handshakeRttMs ?? null,
    sentBytes: h.counted.sentBytes,
    receivedBytes: h.counted.receivedBytes,
    sentBytesPerSec: moving ? Math.round(h.sentBytesPerSec) : 0,
    receivedBytesPerSec: moving ? Math.round(h.receivedBytesPerSec) : 0,
    ageMs: Math.max(0, (closeReason === null ? nowMs : h.lastSeenMs) - i.firstSeenMs),
    idleMs: Math.max(0, nowMs - h.lastSeenMs),
    closeReason,
    rttToClient,
    rttToServer,
    rttTunnel,
    rtt: smoothedSplit(rttToClient, rttToServer, rttTunnel, i.direction === 'outbound'),
    quicVersion: d?.quicVersion ?? null,
    quicHandshakeRttMs: d?.quicHandshakeRttMs ?? null,
    httpStatus: d !== null && d.httpRequests > 0 ? d.httpStatus : null,
    httpFirstByteMs: d?.httpFirstByteMs ?? null,
  };
}

function smoothedSplit(toClient: RttSummary | null, toServer: RttSummary | null, tunnel: RttSummary | null, clientSide: boolean): LiveFlow['rtt'] {
  if (toClient === null && toServer === null) return null;
  const s = splitRttAtOneEnd(toClient, toServer, tunnel, clientSide);
  const ms = (x: SegmentRtt | null): number | null => (x === null ? null : Math.round(x.smoothedMs * 1000) / 1000);
  return { client: ms(s.client), tunnel: ms(s.tunnel), server: ms(s.server) };
}

function str(v: unknown): string | null {
  return typeof v === 'string' && v !== '' ? v : null;
}
