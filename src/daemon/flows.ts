/**
 * One daemon's passive flow inspection wired to its telemetry: a
 * FlowTracker fed from the pump loops, its exactly-once records turned into
 * flow logs and metrics. The daemon's one once-a-second tick calls
 * {@link DaemonFlows.tick} for timeouts and live counter progress (so long
 * flows move their counters before they close).
 */
import type { AgentConfig } from '../config/index.js';
import { Counter, Gauge } from 'prom-client';
import { FlowTracker } from '../inspect/flow-tracker.js';
import type { FlowRecord } from '../inspect/flow-record.js';
import { FlowRecordTelemetry, type Telemetry } from '../telemetry/index.js';
import type { FlowDirection } from '../telemetry/flow-types.js';

type InspectionConfig = AgentConfig['inspection'];

/** What {@link DaemonFlows} needs. */
export interface DaemonFlowsOptions {
  readonly telemetry: Telemetry;
  readonly inspection: InspectionConfig;
  /** The peer identity a flow belongs to (the mTLS identity of the session that carries it). */
  readonly identityOf: (r: FlowRecord) => string;
  /** Direction of a flow first seen in a live snapshot. */
  readonly directionOf: (r: FlowRecord) => FlowDirection;
}

/** The tracker plus its telemetry adapter. Call {@link close} once. */
export class DaemonFlows {
  readonly tracker: FlowTracker;
  private readonly adapter: FlowRecordTelemetry;
  private lastTickMs = 0;

  constructor(private readonly opts: DaemonFlowsOptions) {
    this.adapter = new FlowRecordTelemetry(opts.telemetry, { directionOf: opts.directionOf });
    this.tracker = new FlowTracker({
      maxFlows: opts.inspection.maxFlows,
      timeouts: opts.inspection.timeouts,
      peekBudgetBytes: opts.inspection.peekBudgetBytes,
      sink: (r, meta) => this.adapter.onRecord(r, meta, opts.identityOf(r)),
    });
    opts.telemetry.metrics.inspect.watchQuicCounters(this.tracker.quicCounters);
    const tracker = this.tracker;
    const reporter = opts.telemetry.metrics.reporter;
    const tracked: Gauge<'reporter'> = new Gauge({
      name: 'mtun_inspect_tracked_flows',
      help: 'Flows in the passive inspection table now (bounded by inspection.maxFlows; half-open ones are evicted first)',
      labelNames: ['reporter'],
      registers: [opts.telemetry.registry],
      collect: () => tracked.set({ reporter }, tracker.activeFlows),
    });
    const discarded: Counter<'reporter'> = new Counter({
      name: 'mtun_inspect_rtt_samples_discarded_total',
      help: 'TCP RTT samples refused because the ACK was observed with an earlier time than the segment it answers (two packet readers handed over out of time order)',
      labelNames: ['reporter'],
      registers: [opts.telemetry.registry],
      collect: () => { discarded.reset(); discarded.inc({ reporter }, tracker.rttSamplesDiscarded); },
    });
  }

  /** Expires idle flows and brings live flows' counters up to date. Off the packet path. */
  tick(nowMs: number): void {
    this.tracker.onTimeout(nowMs);
    const byIdentity = new Map<string, FlowRecord[]>();
    // Only flows with packets since the last tick can have moved.
    const since = this.lastTickMs;
    this.lastTickMs = nowMs;
    // Flows still in their TCP handshake wait for their close record (a SYN flood's flows would cost a record each, every tick).
    for (const r of this.tracker.liveFlows(since, true)) {
      const id = this.opts.identityOf(r);
      let list = byIdentity.get(id);
      if (list === undefined) byIdentity.set(id, (list = []));
      list.push(r);
    }
    for (const [id, list] of byIdentity) this.adapter.syncLive(list, id, nowMs);
  }

  /** Emits a record for every open flow (close reason "open"). */
  close(nowMs: number): void {
    this.tick(nowMs);
    this.tracker.flush('open');
  }
}
