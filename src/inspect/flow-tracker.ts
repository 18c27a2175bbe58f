/**
 * Sans-IO passive flow tracker: one flow per 5-tuple (both directions), a TCP
 * state machine with exactly-once payload byte counting, UDP/ICMP pseudo-flows,
 * conntrack-style timeouts and a bounded table. Never terminates or alters TCP.
 * This file is the public face; the parts live in flow-table.ts (hashing,
 * index, LRU, eviction), tcp-state.ts, seq-coverage.ts, l7-peek.ts and
 * tls-client-hello.ts, and flow-record.ts (records).
 */
import { DropReason, IPPROTO, PacketInfo, parseIpPacket } from '../packet/ip-packet.js';
import { FlowCore, FlowCounter } from './flow-core.js';
import { addressOf, buildFlowMeta, buildFlowRecord, type CloseReason, type FlowMeta, type FlowRecord, type FlowSink } from './flow-record.js';
import { F_INIT0, F_L7, F_L7_TRIED, N_STATES, S_CLOSE, S_ESTABLISHED, S_FREE, S_ICMP, S_LAST_ACK, S_SYN_RECV, S_SYN_SENT, S_TIME_WAIT, S_UDP, S_UDP_STREAM } from './flow-table.js';
import { observeTcp } from './tcp-state.js';
import { looksLikeClientInitial, QuicPeek } from './quic-peek.js';
import type { PeekBudget } from './tls-client-hello.js';

export { FlowCounter, FLOW_COUNTER_NAMES } from './flow-core.js';
export { MAX_HOLES } from './seq-coverage.js';
export { DEFAULT_PEEK_BUDGET_BYTES, TLS_PEEK_MAX_BYTES } from './tls-client-hello.js';
export { QuicCounter, QUIC_COUNTER_NAMES } from './quic-peek.js';

/** Tunnel direction of a packet, as seen by the endpoint that observes it. */
export const Direction = {
  /** Agent → gateway (leaving the host through the tunnel). */
  OUT: 0,
  /** Gateway → agent (arriving from the tunnel). */
  IN: 1,
} as const;

/**
 * Per-state idle timeouts, modelled on Linux conntrack's defaults
 * (nf_conntrack_tcp_timeout_*; udp 30/120 s; icmp 30 s).
 */
export interface FlowTimeouts {
  /** SYN seen, no SYN-ACK (conntrack syn_sent 120 s), whatever else the initiator sends. */
  synSentMs: number;
  /** SYN-ACK seen, handshake not complete (syn_recv 60 s). */
  synRecvMs: number;
  /** Established, or picked up mid-stream (established 432000 s). */
  establishedMs: number;
  /** One FIN seen (fin_wait 120 s). */
  finWaitMs: number;
  /** Both FINs seen, last not acknowledged yet (last_ack 30 s). Expiry closes with "fin". */
  lastAckMs: number;
  /** After a FIN close: record emitted, late packets absorbed (time_wait 120 s). */
  timeWaitMs: number;
  /** After an RST close: record emitted, late packets absorbed (close 10 s). */
  closeMs: number;
  /** UDP, one direction seen (udp 30 s). */
  udpMs: number;
  /** UDP, both directions seen (udp_stream 120 s). */
  udpStreamMs: number;
  /** ICMP (icmp 30 s). */
  icmpMs: number;
}

/** conntrack defaults; see {@link FlowTimeouts}. */
export const DEFAULT_TIMEOUTS: Readonly<FlowTimeouts> = {
  synSentMs: 120_000, synRecvMs: 60_000, establishedMs: 432_000_000, finWaitMs: 120_000, lastAckMs: 30_000,
  timeWaitMs: 120_000, closeMs: 10_000, udpMs: 30_000, udpStreamMs: 120_000, icmpMs: 30_000,
};

/** Default bound on tracked flows. */
export const DEFAULT_MAX_FLOWS = 262_144;

/** Options for {@link FlowTracker}. */
export interface FlowTrackerOptions {
  /** Receives each finished flow exactly once (synchronously, from observe/onTimeout/flush). */
  sink: FlowSink;
  /** Most flows tracked at once (default 262,144). When full, half-open then idle flows are evicted. */
  maxFlows?: number;
  /** Overrides of {@link DEFAULT_TIMEOUTS}. */
  timeouts?: Partial<FlowTimeouts>;
  /**
   * Bytes all flows' TLS peek buffers may hold together (default 16 MiB).
   * A flow whose buffer would pass it gives up its ClientHello peek (counted
   * in {@link FlowTracker.peekBudget}.refused).
   */
  peekBudgetBytes?: number;
  /** 8-byte key for the flow-table hash (tests only); default a random key per tracker. */
  hashKey?: Uint8Array;
  /**
   * HMAC key of the cross-end flow ID (flow-id.ts). Both ends must use the
   * same key for their IDs to match; default the public DEFAULT_FLOW_ID_KEY.
   */
  flowIdKey?: Uint8Array;
}

const P_UDP = 1;

/**
 * Where the initiator of an established TCP connection stands, from the
 * last segment it sent: enough to build a pure ACK it could have sent
 * (see {@link FlowTracker.establishedTcp}).
 */
export interface TcpStandpoint {
  /** Initiator and responder addresses, formatted as in flow records. */
  readonly src: string;
  readonly dst: string;
  readonly srcPort: number;
  readonly dstPort: number;
  /** The initiator's next sequence number (highest byte sent + 1). */
  readonly seq: number;
  /** The acknowledgment number it sent last: nothing beyond what it acknowledged itself. */
  readonly ack: number;
  /** The window field it sent last (unscaled, as on the wire). */
  readonly window: number;
}

/**
 * The passive tracker. Feed every packet with {@link observe} (raw bytes) or
 * {@link observeParsed} (a packet the caller already parsed); drive
 * {@link onTimeout} at {@link nextTimeoutMs}; call {@link flush} at the end.
 * Memory is struct-of-arrays sized for the current flow count (doubling up to
 * `maxFlows`), so established flows cost no allocation per packet; only
 * reordering (hole lists) and the first bytes of a connection whose handshake
 * was seen (L7 peek, within a global byte budget) allocate.
 */
export class FlowTracker {
  /** Aggregate counters indexed by {@link FlowCounter}; poll freely (e.g. from a Prometheus collect()). */
  readonly counters: Float64Array;
  /** Packets not tracked, or tracking anomalies, by {@link DropReason} code (see DROP_REASON_NAMES). */
  readonly drops: Float64Array;
  /** The TLS peek byte budget: `heldBytes` now, `refused` growths, `bytesCopied` / `bytesParsed` work done. Read only. */
  readonly peekBudget: PeekBudget;
  /** QUIC peek counters indexed by {@link QuicCounter} (labels in QUIC_COUNTER_NAMES). Read only. */
  readonly quicCounters: Float64Array;

  private readonly core: FlowCore;
  private readonly timeoutOf: Float64Array;
  private readonly pi = new PacketInfo();

  /** Creates an empty tracker. Throws `inspect: …` on a bad option. */
  constructor(opts: FlowTrackerOptions) {
    const maxFlows = opts.maxFlows ?? DEFAULT_MAX_FLOWS;
    if (!Number.isInteger(maxFlows) || maxFlows < 1 || maxFlows > 1 << 24) {
      throw new Error(`inspect: maxFlows must be an integer in 1..16777216, got ${opts.maxFlows}`);
    }
    const t = { ...DEFAULT_TIMEOUTS, ...opts.timeouts };
    for (const [k, v] of Object.entries(t)) {
      if (typeof v !== 'number' || !(v > 0)) throw new Error(`inspect: timeout ${k} must be a positive number of ms, got ${v}`);
    }
    this.timeoutOf = Float64Array.from([
      t.synSentMs, t.synRecvMs, t.establishedMs, t.finWaitMs, t.lastAckMs, t.timeWaitMs, t.closeMs, t.udpMs, t.udpStreamMs, t.icmpMs,
    ]);
    this.core = new FlowCore(opts.sink, maxFlows, opts.peekBudgetBytes, opts.hashKey, opts.flowIdKey);
    this.counters = this.core.counters;
    this.drops = this.core.drops;
    this.peekBudget = this.core.peekBudget;
    this.quicCounters = this.core.quic.counters;
  }

  /** RTT samples refused as negative (an ACK handed over before the segment it answers), since start. */
  get rttSamplesDiscarded(): number {
    return this.core.table.rttDiscarded;
  }

  /** Flows currently in the table that have not yet emitted their record. */
  get activeFlows(): number {
    return this.core.activeFlows;
  }

  /**
   * Observes one IP packet at buf[off, off+len) travelling in tunnel
   * direction `direction` ({@link Direction}) at time `nowMs`. The buffer is
   * only read during the call. Never throws on packet contents. For
   * captures and callers that have not parsed the packet.
   *
   * @returns 0 when the packet was accounted to a flow, else the
   * {@link DropReason} code it was counted under.
   */
  observe(buf: Uint8Array, off: number, len: number, direction: number, nowMs: number): number {
    const pi = this.pi;
    const c = this.counters;
    const td = direction === 1 ? 1 : 0;
    c[FlowCounter.PACKETS_OUT + td]! += 1;
    c[FlowCounter.IP_BYTES_OUT + td]! += len;
    const r = parseIpPacket(buf, off, len, pi);
    if (r !== 0) {
      this.drops[r]! += 1;
      return r;
    }
    return this.track(buf, pi, td, nowMs);
  }

  /**
   * {@link observe} for a packet the caller has already parsed (parse once:
   * the daemons parse for the MSS clamp and their checks, then pass the view
   * along). `pi` must be the result of a successful `parseIpPacket` over
   * `buf` as it is now (rewrites such as the MSS clamp keep its offsets
   * valid); IP bytes are counted as `pi.ipLen`. Both are only read during the
   * call. Never throws on packet contents.
   *
   * @returns 0 when accounted to a flow, else the {@link DropReason} code.
   */
  observeParsed(buf: Uint8Array, pi: PacketInfo, direction: number, nowMs: number): number {
    const c = this.counters;
    const td = direction === 1 ? 1 : 0;
    c[FlowCounter.PACKETS_OUT + td]! += 1;
    c[FlowCounter.IP_BYTES_OUT + td]! += pi.ipLen;
    return this.track(buf, pi, td, nowMs);
  }

  private track(buf: Uint8Array, pi: PacketInfo, td: number, now: number): number {
    const proto = pi.proto;
    if (proto === IPPROTO.TCP) return observeTcp(this.core, buf, pi, td, now);
    if (proto === IPPROTO.UDP) return this.datagram(buf, pi, td, now, P_UDP, pi.srcPort, pi.dstPort);
    if (proto === IPPROTO.ICMP || proto === IPPROTO.ICMPV6) {
      const t = pi.icmpType;
      // Echo pairs by identifier: request is (id → 0), reply (0 → id) so it matches the reverse tuple.
      if (t === 8 || t === 128) return this.datagram(buf, pi, td, now, 0, pi.srcPort, 0);
      if (t === 0 || t === 129) return this.datagram(buf, pi, td, now, 0, 0, pi.srcPort);
      return this.datagram(buf, pi, td, now, 0, t, pi.icmpCode);
    }
    this.drops[DropReason.UNSUPPORTED_PROTO]! += 1;
    return DropReason.UNSUPPORTED_PROTO;
  }

  /** Earliest time at which {@link onTimeout} has work, or Infinity when the table is empty. */
  nextTimeoutMs(): number {
    const tb = this.core.table;
    let t = Infinity;
    for (let s = 0; s < N_STATES; s++) {
      const h = tb.headOf[s]!;
      if (h >= 0) {
        const e = tb.last[h]! + this.timeoutOf[s]!;
        if (e < t) t = e;
      }
    }
    return t;
  }

  /** Expires every flow idle past its state's timeout at `nowMs`, emitting records ("idle_timeout", or "fin" from LAST_ACK). */
  onTimeout(nowMs: number): void {
    const tb = this.core.table;
    for (let s = 0; s < N_STATES; s++) {
      const to = this.timeoutOf[s]!;
      let h = tb.headOf[s]!;
      while (h >= 0 && tb.last[h]! + to <= nowMs) {
        this.core.finish(h, s === S_LAST_ACK ? 'fin' : 'idle_timeout');
        this.core.release(h);
        h = tb.headOf[s]!;
      }
    }
  }

  /**
   * Emits every flow that has not emitted yet, with close reason `reason`
   * (default "open"; a flow whose both FINs were seen reports "fin"), in
   * order of first packet, and empties the table. The tracker stays usable.
   */
  flush(reason: CloseReason = 'open'): void {
    const tb = this.core.table;
    const live: number[] = [];
    for (let s = 0; s < tb.cap; s++) if (tb.state[s] !== S_FREE) live.push(s);
    live.sort((a, b) => tb.ordinal[a]! - tb.ordinal[b]!);
    for (const s of live) {
      const st = tb.state[s]!;
      if (st !== S_TIME_WAIT && st !== S_CLOSE) this.core.finish(s, st === S_LAST_ACK ? 'fin' : reason);
      this.core.release(s);
    }
  }

  /**
   * Snapshot records of flows still open (closeReason "open"), in order of
   * first packet, so long-lived flows can be reported before they close.
   * With `activeSinceMs`, only flows that saw a packet at or after that time
   * (pass the previous snapshot's time to skip idle flows cheaply).
   * Allocates; call off the packet path.
   */
  liveFlows(activeSinceMs = -Infinity, skipHandshaking = false): FlowRecord[] {
    return this.liveFlowEntries(activeSinceMs, skipHandshaking).map((x) => x.record);
  }

  /**
   * {@link liveFlows} with each flow's {@link FlowMeta} (tunnel direction, legs, …).
   * `skipHandshaking` leaves out TCP flows whose handshake has not completed
   * (SYN or SYN-ACK seen, no ACK yet): they carry no payload to report, a
   * real one completes within a round trip, and under a SYN flood they are
   * nearly every flow in the table; their record still comes when they
   * close. Allocates.
   */
  liveFlowEntries(activeSinceMs = -Infinity, skipHandshaking = false): { record: FlowRecord; meta: FlowMeta }[] {
    const tb = this.core.table;
    const peeks = this.core.peeks;
    const out: { record: FlowRecord; meta: FlowMeta }[] = [];
    for (let s = 0; s < tb.cap; s++) {
      const st = tb.state[s]!;
      if (st === S_FREE || st === S_TIME_WAIT || st === S_CLOSE || tb.last[s]! < activeSinceMs) continue;
      if (skipHandshaking && (st === S_SYN_SENT || st === S_SYN_RECV)) continue;
      const p = peeks.get(s);
      const q = this.core.quicPeeks.get(s);
      out.push({ record: buildFlowRecord(tb, s, 'open', p, q, this.core.flowIdKey), meta: buildFlowMeta(tb, s, p) });
    }
    return out.sort((a, b) => a.meta.ordinal - b.meta.ordinal);
  }

  /**
   * Established TCP connections whose initiator's packets travel in tunnel
   * direction `direction`, with the initiator's standpoint ({@link TcpStandpoint}),
   * oldest first, at most `limit`. Connections with a FIN or RST seen, and
   * ones whose initiator's sequence space or ACK is unknown, are left out.
   * Allocates; call off the packet path.
   */
  establishedTcp(direction: number, limit: number): TcpStandpoint[] {
    const t = this.core.table;
    const out: TcpStandpoint[] = [];
    for (let s = t.headOf[S_ESTABLISHED]!; s >= 0 && out.length < limit; s = t.next[s]!) {
      const i = s * 2;
      if (t.tunDir[s] !== direction || (t.kMeta[s]! & 0xff) !== IPPROTO.TCP || (t.flags[s]! & F_INIT0) === 0 || t.packets[i]! === 0) continue;
      const v = (t.kMeta[s]! & 0x100) !== 0 ? 6 : 4;
      const ports = t.kPorts[s]!;
      out.push({ src: addressOf(t, s, 0, v), dst: addressOf(t, s, 4, v), srcPort: ports >>> 16, dstPort: ports & 0xffff, seq: t.hiSeq[i]!, ack: t.ack[i]!, window: t.win[i]! });
    }
    return out;
  }

  /**
   * Bytes held by the flow table's typed arrays (capacity, not just used
   * slots), excluding the sparse hole lists and L7 peeks (see
   * {@link peekBudget}.heldBytes). Cheap; for a gauge.
   */
  tableBytes(): number {
    return this.core.table.byteLength();
  }

  /** Slots in use (open flows plus closed ones lingering to absorb late packets). */
  get tableSize(): number {
    return this.core.table.count;
  }

  /** Longest probe sequence in the flow table's hash index. O(table); for tests and diagnostics. */
  maxProbeLength(): number {
    return this.core.table.maxProbeLength();
  }

  // ---------------------------------------------------------------- UDP / ICMP

  private datagram(buf: Uint8Array, pi: PacketInfo, td: number, now: number, pclass: number, sport: number, dport: number): number {
    const tb = this.core.table;
    const h = tb.loadKey(buf, pi, sport, dport);
    let s = tb.lookup(h);
    let created = false;
    if (s < 0) {
      s = this.core.newFlow(h, pclass === P_UDP ? S_UDP : S_ICMP, 0, td, now);
      created = true;
    }
    const d = tb.dir;
    const i = s * 2 + d;
    tb.last[s] = now;
    tb.packets[i]! += 1;
    tb.bytes[i]! += pi.payloadLen;
    this.counters[FlowCounter.PAYLOAD_BYTES_OUT + td]! += pi.payloadLen;
    let st = tb.state[s]!;
    if (st === S_UDP && d === 1) st = S_UDP_STREAM; // conntrack: replies seen → longer timeout
    tb.relink(s, st);
    if (pclass === P_UDP && (created || (tb.flags[s]! & F_L7) !== 0)) this.quicPeek(s, d, created, buf, pi, now);
    return 0;
  }

  /** QUIC peek of a UDP flow: started when its first datagram is a client Initial, on any port. */
  private quicPeek(s: number, d: number, created: boolean, buf: Uint8Array, pi: PacketInfo, now: number): void {
    const tb = this.core.table;
    const peeks = this.core.quicPeeks;
    let q: QuicPeek | undefined;
    if (created) {
      if (!looksLikeClientInitial(buf, pi.payloadOff, pi.payloadLen)) return;
      q = new QuicPeek(this.core.quic);
      peeks.set(s, q);
      tb.flags[s] = tb.flags[s]! | F_L7 | F_L7_TRIED;
    } else {
      q = peeks.get(s);
      if (q === undefined) return;
    }
    if (d === 0) q.feedClient(buf, pi.payloadOff, pi.payloadLen, now);
    else q.feedServer(buf, pi.payloadOff, pi.payloadLen, now);
    if (!q.wantsData) {
      tb.flags[s] = tb.flags[s]! & ~F_L7;
      q.release();
      if (q.versionName === null) peeks.delete(s);
    }
  }
}
