/**
 * The state the tracker's protocol handlers share: the flow table, hole
 * lists, L7 peeks and their byte budget, aggregate counters, and the one
 * place a flow's record is emitted (exactly once) and its slot freed.
 */
import { DropReason, DROP_REASON_COUNT } from '../packet/ip-packet.js';
import { buildFlowMeta, buildFlowRecord, type CloseReason, type FlowSink } from './flow-record.js';
import { F_L7, F_L7_TRIED, FlowTable, S_CLOSE, S_TIME_WAIT } from './flow-table.js';
import { DEFAULT_FLOW_ID_KEY } from './flow-id.js';
import { L7Peek } from './l7-peek.js';
import { QuicShared, type QuicPeek } from './quic-peek.js';
import { Coverage } from './seq-coverage.js';
import { PeekBudget } from './tls-client-hello.js';

/** Indexes into {@link FlowTracker.counters}: aggregate counters that move with every packet. */
export const FlowCounter = {
  PACKETS_OUT: 0,
  PACKETS_IN: 1,
  IP_BYTES_OUT: 2,
  IP_BYTES_IN: 3,
  /** Unique TCP payload + UDP/ICMP payload bytes (retransmissions not counted), tunnel direction out. */
  PAYLOAD_BYTES_OUT: 4,
  PAYLOAD_BYTES_IN: 5,
  RETRANSMITS: 6,
  OUT_OF_ORDER: 7,
  FLOWS_OPENED: 8,
  FLOWS_CLOSED: 9,
} as const;
/** Label for each {@link FlowCounter} index. */
export const FLOW_COUNTER_NAMES: readonly string[] = [
  'packets_out', 'packets_in', 'ip_bytes_out', 'ip_bytes_in', 'payload_bytes_out', 'payload_bytes_in',
  'retransmits', 'out_of_order', 'flows_opened', 'flows_closed',
];

/** Shared tracker state; owned by one FlowTracker. */
export class FlowCore {
  readonly counters = new Float64Array(FLOW_COUNTER_NAMES.length);
  readonly drops = new Float64Array(DROP_REASON_COUNT);
  /** Flows in the table that have not emitted their record. */
  activeFlows = 0;
  readonly table: FlowTable;
  /** Sparse: intervals beyond the main run, by `slot * 2 + d`, only for directions with reordering holes. */
  readonly holes = new Map<number, number[]>();
  /** Sparse: L7 peeks in progress or with a result, by slot. */
  readonly peeks = new Map<number, L7Peek>();
  /** Sparse: QUIC handshake peeks of UDP flows, by slot. */
  readonly quicPeeks = new Map<number, QuicPeek>();
  readonly peekBudget: PeekBudget;
  /** What the QUIC peeks share (budget, scratch, counters, rate limit). */
  readonly quic: QuicShared;
  /** HMAC key of the cross-end flow ID (flow-id.ts). */
  readonly flowIdKey: Uint8Array;
  /** Scratch result of seqCover for the packet being handled. */
  readonly cov = new Coverage();

  constructor(private readonly sink: FlowSink, maxFlows: number, peekBudgetBytes: number | undefined, hashKey: Uint8Array | undefined,
    flowIdKey: Uint8Array | undefined) {
    this.table = new FlowTable(maxFlows, Math.min(1024, maxFlows), hashKey);
    this.peekBudget = new PeekBudget(peekBudgetBytes);
    this.quic = new QuicShared(this.peekBudget);
    // A copy: the flow ID's key states are computed once per key object (flow-id.ts), so later changes to the caller's bytes must not matter.
    this.flowIdKey = Uint8Array.from(flowIdKey ?? DEFAULT_FLOW_ID_KEY);
  }

  /** A new flow in state st for the table's loaded key (hash h), evicting one first when full. */
  newFlow(h: number, st: number, initiatorIsDst: number, td: number, now: number): number {
    const t = this.table;
    if (t.needsEviction()) {
      const v = t.evictionVictim();
      const st0 = t.state[v]!;
      if (st0 !== S_TIME_WAIT && st0 !== S_CLOSE) {
        this.drops[DropReason.EVICTED]! += 1;
        this.finish(v, 'evicted');
      }
      this.release(v);
    }
    this.activeFlows++;
    this.counters[FlowCounter.FLOWS_OPENED]! += 1;
    return t.create(h, st, initiatorIsDst, td, now);
  }

  /** Emits slot s's record with `reason` unless it already did, and moves it to its lingering state. */
  finish(s: number, reason: CloseReason): void {
    const t = this.table;
    const st = t.state[s]!;
    if (st === S_TIME_WAIT || st === S_CLOSE) return; // already emitted: exactly once
    const p = this.peeks.get(s);
    const rec = buildFlowRecord(t, s, reason, p, this.quicPeeks.get(s), this.flowIdKey);
    const meta = buildFlowMeta(t, s, p);
    this.dropSide(s);
    this.counters[FlowCounter.FLOWS_CLOSED]! += 1;
    this.activeFlows--;
    // Mark emitted before calling out so a re-entrant flush cannot emit twice.
    t.unlink(s);
    t.link(s, reason === 'rst' ? S_CLOSE : S_TIME_WAIT);
    this.sink(rec, meta);
  }

  /** Frees slot s (an emitted one, or counts it inactive). */
  release(s: number): void {
    const st = this.table.state[s]!;
    if (st !== S_TIME_WAIT && st !== S_CLOSE) this.activeFlows--;
    this.dropSide(s);
    this.table.release(s);
  }

  private dropSide(s: number): void {
    this.holes.delete(s * 2);
    this.holes.delete(s * 2 + 1);
    const p = this.peeks.get(s);
    if (p !== undefined) {
      p.release();
      this.peeks.delete(s);
    }
    const q = this.quicPeeks.get(s);
    if (q !== undefined) {
      q.release();
      this.quicPeeks.delete(s);
    }
  }

  /**
   * Feeds initiator stream bytes to slot s's L7 peek, creating it on the
   * first payload (the caller checks that the handshake was seen).
   */
  peek(s: number, buf: Uint8Array, off: number, len: number, streamOff: number, contiguous: number, inOrder: boolean, now: number): void {
    const t = this.table;
    let f = t.flags[s]!;
    let p: L7Peek | undefined;
    if ((f & F_L7) !== 0) p = this.peeks.get(s);
    else if ((f & F_L7_TRIED) === 0) {
      p = new L7Peek(this.peekBudget);
      this.peeks.set(s, p);
      f |= F_L7 | F_L7_TRIED;
    }
    if (p === undefined) return;
    p.feed(buf, off, len, streamOff, contiguous, inOrder, now);
    if (!p.wantsData) {
      f &= ~F_L7;
      p.release();
      // Nothing learned (neither TLS nor HTTP): free the peek instead of holding it until the flow ends.
      if (p.sni === null && p.alpn === null && p.httpRequests === 0) this.peeks.delete(s);
    }
    t.flags[s] = f;
  }
}
