/**
 * The telemetry facade the daemons call: flow open / progress / close feed
 * both the metrics (pre-resolved label slots) and the JSON flow log, and the
 * open flows are kept for the status endpoint's "top flows".
 */
import { Counter, type Registry } from 'prom-client';
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
  /** `telemetry.flowLog.maxFailedPerSecond` (default 100). */
  readonly flowLogMaxFailedPerSecond?: number;
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
  /**
   * The tunnel segment's RTT samples so far (QUIC smoothed RTT, ms): min,
   * smoothed, max, count; see {@link Telemetry.sampleTunnelRtt}. Plain fields,
   * not a typed array: a flow costs one object (a SYN flood makes many).
   */
  tunnelRttMin = 0;
  tunnelRttSmoothed = 0;
  tunnelRttMax = 0;
  tunnelRttSamples = 0;
  /** What has already been added to the counters; close adds only the rest. */
  readonly counted: FlowTotals = { sentBytes: 0, receivedBytes: 0, sentPackets: 0, receivedPackets: 0, retransmits: 0 };
  handshakeRttMs: number | undefined = undefined;
  closed = false;
  /** Its open record was written to the flow log (so its close record is too). */
  logged = false;
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
  rateOldMs: number;
  rateOldSent = 0;
  rateOldReceived = 0;
  rateNewMs: number;
  rateNewSent = 0;
  rateNewReceived = 0;

  constructor(readonly info: FlowOpenInfo, slot: number, readonly sourceWorkload: string, readonly destinationWorkload: string, identityId = 0) {
    this.slot = slot;
    this.identityId = identityId;
    this.lastSeenMs = info.firstSeenMs;
    this.rateOldMs = this.rateNewMs = info.firstSeenMs;
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
    this.flowLog = new FlowLog({
      reporter: opts.reporter,
      destination: opts.flowLog ?? '-',
      enabled: opts.flowLog !== null,
      maxFailedPerSecond: opts.flowLogMaxFailedPerSecond,
    });
    const log = this.flowLog;
    const suppressed: Counter<'reason'> = new Counter({
      name: 'mtun_flow_log_suppressed_total',
      help: 'Flow records not written to the flow log, by reason (failed-connection-rate: failed TCP connections over telemetry.flowLog.maxFailedPerSecond; they are still counted in the connection metrics)',
      labelNames: ['reason'],
      registers: [this.metrics.registry],
      collect: () => {
        suppressed.reset();
        suppressed.inc({ reason: 'failed-connection-rate' }, log.suppressedFailed);
      },
    });
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
    h.logged = this.flowLog.open(info, { source: h.sourceWorkload, destination: h.destinationWorkload });
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
      const dt = nowMs - h.rateOldMs;
      if (dt > 0) {
        h.sentBytesPerSec = ((c.sentBytes - h.rateOldSent) * 1000) / dt;
        h.receivedBytesPerSec = ((c.receivedBytes - h.rateOldReceived) * 1000) / dt;
      }
      if (nowMs - h.rateNewMs >= RATE_STEP_MS) {
        h.rateOldMs = h.rateNewMs; h.rateOldSent = h.rateNewSent; h.rateOldReceived = h.rateNewReceived;
        h.rateNewMs = nowMs; h.rateNewSent = c.sentBytes; h.rateNewReceived = c.receivedBytes;
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
    if (h.tunnelRttSamples === 0) {
      h.tunnelRttMin = h.tunnelRttSmoothed = h.tunnelRttMax = ms;
    } else {
      if (ms < h.tunnelRttMin) h.tunnelRttMin = ms;
      h.tunnelRttSmoothed += (ms - h.tunnelRttSmoothed) / 8;
      if (ms > h.tunnelRttMax) h.tunnelRttMax = ms;
    }
    h.tunnelRttSamples += 1;
  }

  /** The tunnel segment's summary of a flow so far, or undefined without a sample. */
  tunnelRttOf(h: FlowHandle): RttSummary | undefined {
    return h.tunnelRttSamples === 0
      ? undefined
      : { minMs: h.tunnelRttMin, smoothedMs: round3(h.tunnelRttSmoothed), maxMs: h.tunnelRttMax, samples: h.tunnelRttSamples };
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
    const tunnelRtt = c.tunnelRtt ?? this.tunnelRttOf(h);
    this.observeInspection(h, c, tunnelRtt);
    // The record carries the final totals as reported by the caller (a copy with the tunnel RTT only when logged).
    if (h.logged) {
      const closed = c.tunnelRtt !== undefined || tunnelRtt === undefined ? c : { ...c, tunnelRtt };
      this.flowLog.close(h.info, { source: h.sourceWorkload, destination: h.destinationWorkload }, closed, h.handshakeRttMs);
    }
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
   * segment (QUIC's RTT) is observed for TCP connections that opened, at both ends.
   */
  private observeInspection(h: FlowHandle, c: FlowCloseInfo, tunnelRtt: RttSummary | undefined): void {
    const im = this.metrics.inspect;
    const out = h.info.direction === 'outbound';
    if (c.rttToClient !== undefined) im.observeRtt(h.slot, out ? Segment.CLIENT : Segment.BEYOND_TUNNEL, c.rttToClient);
    if (c.rttToServer !== undefined) im.observeRtt(h.slot, out ? Segment.BEYOND_TUNNEL : Segment.SERVER, c.rttToServer);
    // Connections that opened: a failed one has no split to put the tunnel's share in (and a SYN flood would flood the histogram).
    if (tunnelRtt !== undefined && h.info.protocol === IPPROTO_TCP && c.failed !== true) im.observeRtt(h.slot, Segment.TUNNEL, tunnelRtt);
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
