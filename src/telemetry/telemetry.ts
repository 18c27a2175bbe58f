/**
 * The telemetry facade the daemons call: flow open / progress / close feed
 * both the metrics (pre-resolved label slots) and the JSON flow log, and the
 * open flows are kept for the status endpoint's "top flows".
 */
import type { Registry } from 'prom-client';
import { FlowLog } from './flow-log.js';
import { IPPROTO_TCP, IPPROTO_UDP, type FlowCloseInfo, type FlowOpenInfo, type FlowTotals, type RttSummary } from './flow-types.js';
import { Segment } from './inspect-metrics.js';
import { MeshMetrics, type Reporter } from './metrics.js';
import type { StatusFlow } from './status.js';
import { WorkloadMap, type WorkloadMapEntry } from './workload-map.js';
import { CaptureTap } from './capture-tap.js';
import { formatHostPort } from '../packet/ip-address.js';
import type { DestinationStream } from 'pino';
import type { FlowRecord } from '../inspect/flow-record.js';

/** Options for {@link Telemetry}. */
export interface TelemetryOptions {
  readonly reporter: Reporter;
  /** `telemetry.workloads` from the config. */
  readonly workloads: readonly WorkloadMapEntry[];
  /** Flow log destination: `-` (stdout), a file path, or a stream; `null` disables flow logs. */
  readonly flowLog: string | DestinationStream | null;
  /** See MeshMetricsOptions. */
  readonly registry?: Registry;
  readonly maxIdentities?: number;
  readonly maxLabelSets?: number;
  readonly processMetrics?: boolean;
}

/**
 * Per-flow state telemetry keeps between open and close. Allocated once per
 * flow by {@link Telemetry.onFlowOpen}; the caller stores it with its own
 * flow entry and passes it back. Fields are read-only for callers.
 */
export class FlowHandle {
  /** Metric label-set slot (see MeshMetrics.labelSet). */
  readonly slot: number;
  /** The peer identity's id (MeshMetrics.identityId), for the tunnel RTT of its connection. */
  readonly identityId: number;
  /** The tunnel segment's RTT samples so far (QUIC smoothed RTT, ms): min, smoothed, max, count; see {@link Telemetry.sampleTunnelRtt}. */
  readonly tunnelRtt = new Float64Array(4);
  /** What has already been added to the counters; close adds only the rest. */
  readonly counted: FlowTotals = { sentBytes: 0, receivedBytes: 0, sentPackets: 0, receivedPackets: 0, retransmits: 0 };
  handshakeRttMs: number | undefined = undefined;
  closed = false;
  /** Last known time of activity, epoch ms (for the status view). */
  lastSeenMs: number;
  /**
   * The latest record src/inspect's tracker gave for the flow (live
   * snapshot, or the close record), for the live view; replaced, never
   * mutated. Null for flows fed without a tracker.
   */
  detail: FlowRecord | null = null;
  /** Current rate, payload bytes per second each way, over about two {@link RATE_STEP_MS} steps. */
  sentBytesPerSec = 0;
  receivedBytesPerSec = 0;
  /** Two baselines (time, sent, received): the rate runs from the older one; the newer one becomes the older every step. */
  readonly rateBase = new Float64Array(6);

  constructor(readonly info: FlowOpenInfo, slot: number, readonly sourceWorkload: string, readonly destinationWorkload: string, identityId = 0) {
    this.slot = slot;
    this.identityId = identityId;
    this.lastSeenMs = info.firstSeenMs;
    this.rateBase[0] = this.rateBase[3] = info.firstSeenMs;
  }
}

/** A flow's current rate is measured over about two of these steps (2 s, iftop's shortest average; the daemons' tick is 1 s). */
export const RATE_STEP_MS = 1_000;

/** A flow that closed recently, kept for the live view. */
export interface ClosedFlow {
  readonly handle: FlowHandle;
  readonly reason: string;
  readonly sni: string | undefined;
}

/** How many recently closed flows the live view keeps. */
const RECENTLY_CLOSED = 64;

/**
 * One daemon's telemetry: metrics registry (serve it with the admin server),
 * flow log, and the set of open flows. Methods marked hot path allocate
 * nothing and do no label lookups.
 */
export class Telemetry {
  readonly metrics: MeshMetrics;
  readonly flowLog: FlowLog;
  /** The packet capture tap the data path offers packets to (inactive until the admin endpoint starts a capture). */
  readonly capture = new CaptureTap();
  private readonly open = new Set<FlowHandle>();
  private readonly closedRing: ClosedFlow[] = [];
  private closedNext = 0;

  constructor(opts: TelemetryOptions) {
    this.metrics = new MeshMetrics({
      reporter: opts.reporter,
      workloads: new WorkloadMap(opts.workloads),
      registry: opts.registry,
      maxIdentities: opts.maxIdentities,
      maxLabelSets: opts.maxLabelSets,
      processMetrics: opts.processMetrics,
    });
    this.flowLog = new FlowLog({ reporter: opts.reporter, destination: opts.flowLog ?? '-', enabled: opts.flowLog !== null });
  }

  /** The prom-client registry to expose on /metrics. */
  get registry(): Registry {
    return this.metrics.registry;
  }

  /**
   * A flow was first seen: resolves its label slot (workload longest-prefix
   * match, identity id), counts it opened (TCP, UDP), logs the open record,
   * and returns the handle to pass to the other flow methods.
   */
  onFlowOpen(info: FlowOpenInfo): FlowHandle {
    const m = this.metrics;
    const srcW = m.workloads.lookupText(info.srcAddr);
    const dstW = m.workloads.lookupText(info.dstAddr);
    const identity = m.identityId(info.peerIdentity);
    const slot = m.labelSetByIds(srcW, dstW, identity);
    const h = new FlowHandle(info, slot, m.workloads.names[srcW]!, m.workloads.names[dstW]!, identity);
    if (info.protocol === IPPROTO_TCP) m.tcpOpened(slot);
    else if (info.protocol === IPPROTO_UDP) m.udpOpened(slot);
    this.open.add(h);
    this.flowLog.open(info, { source: h.sourceWorkload, destination: h.destinationWorkload });
    return h;
  }

  /**
   * Hot path: counters moved by these deltas (bytes are transport payload;
   * `sent` = initiator → responder). `nowMs` updates the flow's last-seen
   * time for the status view (pass 0 to leave it).
   */
  onFlowDelta(h: FlowHandle, sentBytes: number, receivedBytes: number, sentPackets: number, receivedPackets: number, retransmits: number, nowMs: number): void {
    if (h.closed) return;
    const c = h.counted;
    c.sentBytes += sentBytes;
    c.receivedBytes += receivedBytes;
    c.sentPackets += sentPackets;
    c.receivedPackets += receivedPackets;
    c.retransmits += retransmits;
    if (nowMs > 0) {
      h.lastSeenMs = nowMs;
      // Rate over the window since the older baseline (two steps back), then the baselines move on.
      const b = h.rateBase;
      const dt = nowMs - b[0]!;
      if (dt > 0) {
        h.sentBytesPerSec = ((c.sentBytes - b[1]!) * 1000) / dt;
        h.receivedBytesPerSec = ((c.receivedBytes - b[2]!) * 1000) / dt;
      }
      if (nowMs - b[3]! >= RATE_STEP_MS) {
        b[0] = b[3]!; b[1] = b[4]!; b[2] = b[5]!;
        b[3] = nowMs; b[4] = c.sentBytes; b[5] = c.receivedBytes;
      }
    }
    this.addToMetrics(h, sentBytes, receivedBytes, sentPackets, receivedPackets, retransmits);
  }

  /**
   * Hot path, for callers that keep cumulative counters (the inspection flow
   * table does): adds only what is new since the last call. Totals that go
   * backwards are ignored for that field.
   */
  onFlowTotals(h: FlowHandle, t: FlowTotals, nowMs: number): void {
    const c = h.counted;
    this.onFlowDelta(h,
      pos(t.sentBytes - c.sentBytes), pos(t.receivedBytes - c.receivedBytes),
      pos(t.sentPackets - c.sentPackets), pos(t.receivedPackets - c.receivedPackets),
      pos(t.retransmits - c.retransmits), nowMs);
  }

  /** TCP handshake completed with this RTT as seen by this end (milliseconds). Once per flow. */
  onHandshake(h: FlowHandle, rttMs: number): void {
    if (h.closed || h.handshakeRttMs !== undefined) return;
    h.handshakeRttMs = rttMs;
    this.metrics.observeHandshakeRtt(h.slot, rttMs / 1000);
  }

  /**
   * Takes one sample of the tunnel segment for a flow: the current smoothed
   * RTT of the QUIC connection carrying its peer identity (set by
   * TunnelCounterSync), folded into the flow's min, smoothed (α = 1/8, as
   * RFC 6298 §2) and max. No-op while the identity has none (HTTP/2, no
   * session). Off the packet path: once a second per moving flow, and at close.
   */
  sampleTunnelRtt(h: FlowHandle): void {
    if (h.closed) return;
    const ms = this.metrics.tunnelRttMs(h.identityId);
    if (ms === null) return;
    const t = h.tunnelRtt;
    if (t[3] === 0) {
      t[0] = t[1] = t[2] = ms;
    } else {
      if (ms < t[0]!) t[0] = ms;
      t[1] = t[1]! + (ms - t[1]!) / 8;
      if (ms > t[2]!) t[2] = ms;
    }
    t[3]! += 1;
  }

  /** The tunnel segment's summary of a flow so far, or undefined without a sample. */
  tunnelRttOf(h: FlowHandle): RttSummary | undefined {
    const t = h.tunnelRtt;
    return t[3] === 0 ? undefined : { minMs: t[0]!, smoothedMs: round3(t[1]!), maxMs: t[2]!, samples: t[3]! };
  }

  /**
   * The flow ended: brings the counters up to the final totals (so metrics
   * equal the close record exactly), counts the close by reason, writes the
   * close record. Exactly once per flow; later calls are ignored.
   */
  onFlowClose(h: FlowHandle, c: FlowCloseInfo): void {
    if (h.closed) return;
    this.onFlowTotals(h, c, c.lastSeenMs);
    h.closed = true;
    this.open.delete(h);
    const done: ClosedFlow = { handle: h, reason: c.reason, sni: c.sni };
    if (this.closedRing.length < RECENTLY_CLOSED) this.closedRing.push(done);
    else this.closedRing[this.closedNext] = done;
    this.closedNext = (this.closedNext + 1) % RECENTLY_CLOSED;
    const m = this.metrics;
    const proto = h.info.protocol;
    if (proto === IPPROTO_TCP) m.tcpClosed(h.slot, m.closeReasonId(c.reason), c.failed === true);
    else if (proto === IPPROTO_UDP) m.udpClosed(h.slot, m.closeReasonId(c.reason));
    const closed = c.tunnelRtt !== undefined ? c : { ...c, tunnelRtt: this.tunnelRttOf(h) };
    this.observeInspection(h, closed);
    // The record carries the final totals as reported by the caller.
    this.flowLog.close(h.info, { source: h.sourceWorkload, destination: h.destinationWorkload }, closed, h.handshakeRttMs);
  }

  /** The open flows, for the live view (off the data path). */
  openFlows(): IterableIterator<FlowHandle> {
    return this.open.values();
  }

  /** Up to the last 64 closed flows, oldest first, for the live view. */
  recentlyClosed(): ClosedFlow[] {
    const r = this.closedRing;
    return r.length < RECENTLY_CLOSED ? [...r] : [...r.slice(this.closedNext), ...r.slice(0, this.closedNext)];
  }

  /**
   * RTT per segment, QUIC handshake and HTTP/1 figures of a closing flow.
   * The initiator is on this end's side for an `outbound` flow: then the
   * local segment is the client's and rttToServer reaches beyond the tunnel;
   * for an `inbound` flow the local segment is the server's. The tunnel
   * segment (QUIC's RTT) is observed for TCP flows at both ends.
   */
  private observeInspection(h: FlowHandle, c: FlowCloseInfo): void {
    const im = this.metrics.inspect;
    const out = h.info.direction === 'outbound';
    if (c.rttToClient !== undefined) im.observeRtt(h.slot, out ? Segment.CLIENT : Segment.BEYOND_TUNNEL, c.rttToClient);
    if (c.rttToServer !== undefined) im.observeRtt(h.slot, out ? Segment.BEYOND_TUNNEL : Segment.SERVER, c.rttToServer);
    if (c.tunnelRtt !== undefined && h.info.protocol === IPPROTO_TCP) im.observeRtt(h.slot, Segment.TUNNEL, c.tunnelRtt);
    if (c.quicHandshakeRttMs !== undefined) im.observeQuicHandshake(h.slot, c.quicHandshakeRttMs);
    if (c.httpFirstByteMs !== undefined) im.observeFirstByte(h.slot, c.httpFirstByteMs);
    if (c.httpStatusClasses !== undefined) im.addResponses(h.slot, c.httpStatusClasses);
  }

  /** Number of flows opened and not yet closed. */
  get openFlowCount(): number {
    return this.open.size;
  }

  /** The `n` open flows with the most bytes (both directions), for /status. Off the data path. */
  topFlows(n: number, nowMs = Date.now()): StatusFlow[] {
    const all = [...this.open];
    all.sort((a, b) => (b.counted.sentBytes + b.counted.receivedBytes) - (a.counted.sentBytes + a.counted.receivedBytes));
    return all.slice(0, Math.max(0, n)).map((h) => ({
      protocol: h.info.protocol === IPPROTO_TCP ? 'tcp' : h.info.protocol === IPPROTO_UDP ? 'udp' : String(h.info.protocol),
      src: formatHostPort(h.info.srcAddr, h.info.srcPort),
      dst: formatHostPort(h.info.dstAddr, h.info.dstPort),
      peerIdentity: h.info.peerIdentity,
      direction: h.info.direction,
      sentBytes: h.counted.sentBytes,
      receivedBytes: h.counted.receivedBytes,
      durationMs: Math.max(0, nowMs - h.info.firstSeenMs),
      idleMs: Math.max(0, nowMs - h.lastSeenMs),
    }));
  }

  /** Flushes the flow log. Call on shutdown after the last onFlowClose. */
  async shutdown(): Promise<void> {
    await this.flowLog.shutdown();
  }

  private addToMetrics(h: FlowHandle, sb: number, rb: number, sp: number, rp: number, rt: number): void {
    const proto = h.info.protocol;
    if (proto === IPPROTO_TCP) this.metrics.addTcp(h.slot, sb, rb, rt);
    else if (proto === IPPROTO_UDP) this.metrics.addUdp(h.slot, sb, rb, sp, rp);
  }
}

function round3(x: number): number {
  return Math.round(x * 1000) / 1000;
}

function pos(x: number): number {
  return x > 0 ? x : 0;
}
