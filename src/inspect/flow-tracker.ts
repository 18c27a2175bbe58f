/**
 * Sans-IO passive flow tracker: one flow per 5-tuple (both directions), a TCP
 * state machine with exactly-once payload byte counting, UDP/ICMP pseudo-flows,
 * conntrack-style timeouts and a bounded table. Never terminates or alters TCP.
 */
import { formatAddress, DropReason, DROP_REASON_COUNT, IPPROTO, PacketInfo, TCP_FLAG, parseIpPacket } from '../packet/ip-packet.js';
import type { CloseReason, FlowMeta, FlowProto, FlowRecord, FlowSink } from './flow-record.js';
import { L7Peek } from './l7-peek.js';

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
  /** SYN seen, no SYN-ACK (conntrack syn_sent 120 s). */
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
}

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

// Flow states; each is also a timeout class with its own LRU list.
const S_SYN_SENT = 0;
const S_SYN_RECV = 1;
const S_ESTABLISHED = 2;
const S_FIN_WAIT = 3;
const S_LAST_ACK = 4;
const S_TIME_WAIT = 5; // emitted
const S_CLOSE = 6; // emitted (RST)
const S_UDP = 7;
const S_UDP_STREAM = 8;
const S_ICMP = 9;
const N_STATES = 10;
const S_FREE = 255;

const F_MIDSTREAM = 1;
const F_OPENED = 2;
const F_SYN_SEEN = 4;
const F_SYNACK_SEEN = 8;
const F_INIT0 = 16; // sequence space of direction 0 known (F_INIT0 << d)
const F_FIN0 = 64;
const F_FINACK0 = 256;
const F_HOLES0 = 1024;
const F_L7 = 4096;
const F_WS = 8192;
const F_L7_TRIED = 16384;

const P_UDP = 1;
const P_ICMP = 2;

/** Segments further than this from the next expected sequence number are out of window (RFC 7323 §2.3 max window). */
const MAX_SEQ_DELTA = 1 << 30;
/** Out-of-order intervals kept per direction before two are merged (counted as HOLE_OVERFLOW). */
export const MAX_HOLES = 64;

function mix(h: number, k: number): number {
  k = Math.imul(k, 0xcc9e2d51);
  k = (k << 15) | (k >>> 17);
  k = Math.imul(k, 0x1b873593);
  h ^= k;
  h = (h << 13) | (h >>> 19);
  return (Math.imul(h, 5) + 0xe6546b64) | 0;
}

function fmix(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h;
}

function word(b: Uint8Array, o: number): number {
  return ((b[o]! << 24) | (b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!) >>> 0;
}

/**
 * The passive tracker. Feed every packet with {@link observe}; drive
 * {@link onTimeout} at {@link nextTimeoutMs}; call {@link flush} at the end.
 * Memory is struct-of-arrays sized for the current flow count (doubling up to
 * `maxFlows`), so established flows cost no allocation per packet; only
 * reordering (hole lists) and the first bytes of a connection (L7 peek)
 * allocate.
 */
export class FlowTracker {
  /** Aggregate counters indexed by {@link FlowCounter}; poll freely (e.g. from a Prometheus collect()). */
  readonly counters = new Float64Array(FLOW_COUNTER_NAMES.length);
  /** Packets not tracked, or tracking anomalies, by {@link DropReason} code (see DROP_REASON_NAMES). */
  readonly drops = new Float64Array(DROP_REASON_COUNT);
  /** Flows currently in the table that have not yet emitted their record. */
  activeFlows = 0;

  private readonly sink: FlowSink;
  private readonly maxFlows: number;
  private readonly timeoutOf: Float64Array;
  private readonly pi = new PacketInfo();

  private cap = 0;
  private count = 0; // slots in use (including emitted lingering ones)
  private nextOrdinal = 0;
  private freeTop = 0;
  private free = new Int32Array(0);
  private index = new Int32Array(0); // slot + 1, 0 = empty (linear probing)
  private mask = 0;

  // Per flow.
  private kAddr = new Uint32Array(0); // 8 words: A address (4), B address (4)
  private kPorts = new Uint32Array(0); // A port << 16 | B port
  private kMeta = new Uint16Array(0); // proto | (ipv6 ? 0x100 : 0)
  private kHash = new Int32Array(0);
  private state = new Uint8Array(0);
  private inList = new Uint8Array(0); // which state's LRU list the slot is on
  private flags = new Uint16Array(0);
  private tunDir = new Uint8Array(0);
  private ordinal = new Float64Array(0);
  private first = new Float64Array(0);
  private last = new Float64Array(0);
  private tSyn = new Float64Array(0);
  private tSynAck = new Float64Array(0);
  private tAck = new Float64Array(0);
  private rstIgnored = new Uint16Array(0);
  private prev = new Int32Array(0);
  private next = new Int32Array(0);
  // Per flow and direction (slot * 2 + d; d 0 = initiator → responder).
  private lo = new Float64Array(0);
  private hi = new Float64Array(0);
  private hiSeq = new Uint32Array(0);
  private finSeq = new Uint32Array(0);
  private bytes = new Float64Array(0);
  private packets = new Float64Array(0);
  private retrans = new Uint32Array(0);
  private ooo = new Uint32Array(0);
  private win = new Uint32Array(0);
  private wscale = new Int8Array(0);

  private readonly headOf = new Int32Array(N_STATES).fill(-1);
  private readonly tailOf = new Int32Array(N_STATES).fill(-1);
  // Sparse side tables: only flows with reordering holes or an L7 peek in progress.
  private readonly holes = new Map<number, number[]>();
  private readonly peeks = new Map<number, L7Peek>();

  // Scratch for the packet being handled.
  private readonly key = new Uint32Array(8);
  private dir = 0;
  private readonly addrScratch = new Uint8Array(16);

  /** Creates an empty tracker. Throws `inspect: …` on a bad option. */
  constructor(opts: FlowTrackerOptions) {
    this.sink = opts.sink;
    this.maxFlows = opts.maxFlows ?? DEFAULT_MAX_FLOWS;
    if (!Number.isInteger(this.maxFlows) || this.maxFlows < 1 || this.maxFlows > 1 << 24) {
      throw new Error(`inspect: maxFlows must be an integer in 1..16777216, got ${opts.maxFlows}`);
    }
    const t = { ...DEFAULT_TIMEOUTS, ...opts.timeouts };
    for (const [k, v] of Object.entries(t)) {
      if (typeof v !== 'number' || !(v > 0)) throw new Error(`inspect: timeout ${k} must be a positive number of ms, got ${v}`);
    }
    this.timeoutOf = Float64Array.from([
      t.synSentMs, t.synRecvMs, t.establishedMs, t.finWaitMs, t.lastAckMs, t.timeWaitMs, t.closeMs, t.udpMs, t.udpStreamMs, t.icmpMs,
    ]);
    this.grow(Math.min(1024, this.maxFlows));
  }

  /**
   * Observes one IP packet at buf[off, off+len) travelling in tunnel
   * direction `direction` ({@link Direction}) at time `nowMs`. The buffer is
   * only read during the call. Never throws on packet contents.
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
    const proto = pi.proto;
    if (proto === IPPROTO.TCP) return this.tcp(buf, td, nowMs);
    if (proto === IPPROTO.UDP) return this.datagram(buf, td, nowMs, P_UDP, pi.srcPort, pi.dstPort);
    if (proto === IPPROTO.ICMP || proto === IPPROTO.ICMPV6) {
      const t = pi.icmpType;
      // Echo pairs by identifier: request is (id → 0), reply (0 → id) so it matches the reverse tuple.
      if (t === 8 || t === 128) return this.datagram(buf, td, nowMs, P_ICMP, pi.srcPort, 0);
      if (t === 0 || t === 129) return this.datagram(buf, td, nowMs, P_ICMP, 0, pi.srcPort);
      return this.datagram(buf, td, nowMs, P_ICMP, t, pi.icmpCode);
    }
    this.drops[DropReason.UNSUPPORTED_PROTO]! += 1;
    return DropReason.UNSUPPORTED_PROTO;
  }

  /** Earliest time at which {@link onTimeout} has work, or Infinity when the table is empty. */
  nextTimeoutMs(): number {
    let t = Infinity;
    for (let s = 0; s < N_STATES; s++) {
      const h = this.headOf[s]!;
      if (h >= 0) {
        const e = this.last[h]! + this.timeoutOf[s]!;
        if (e < t) t = e;
      }
    }
    return t;
  }

  /** Expires every flow idle past its state's timeout at `nowMs`, emitting records ("idle_timeout", or "fin" from LAST_ACK). */
  onTimeout(nowMs: number): void {
    for (let s = 0; s < N_STATES; s++) {
      const to = this.timeoutOf[s]!;
      let h = this.headOf[s]!;
      while (h >= 0 && this.last[h]! + to <= nowMs) {
        this.finish(h, s === S_LAST_ACK ? 'fin' : 'idle_timeout');
        this.release(h);
        h = this.headOf[s]!;
      }
    }
  }

  /**
   * Emits every flow that has not emitted yet, with close reason `reason`
   * (default "open"; a flow whose both FINs were seen reports "fin"), in
   * order of first packet, and empties the table. The tracker stays usable.
   */
  flush(reason: CloseReason = 'open'): void {
    const live: number[] = [];
    for (let s = 0; s < this.cap; s++) if (this.state[s] !== S_FREE) live.push(s);
    live.sort((a, b) => this.ordinal[a]! - this.ordinal[b]!);
    for (const s of live) {
      if (this.state[s] !== S_TIME_WAIT && this.state[s] !== S_CLOSE) this.finish(s, this.state[s] === S_LAST_ACK ? 'fin' : reason);
      this.release(s);
    }
  }

  /**
   * Snapshot records of flows still open (closeReason "open"), in order of
   * first packet, so long-lived flows can be reported before they close.
   * With `activeSinceMs`, only flows that saw a packet at or after that time
   * (pass the previous snapshot's time to skip idle flows cheaply).
   * Allocates; call off the packet path.
   */
  liveFlows(activeSinceMs = -Infinity): FlowRecord[] {
    return this.liveFlowEntries(activeSinceMs).map((x) => x.record);
  }

  /** {@link liveFlows} with each flow's {@link FlowMeta} (tunnel direction, legs, …). Allocates. */
  liveFlowEntries(activeSinceMs = -Infinity): { record: FlowRecord; meta: FlowMeta }[] {
    const out: { record: FlowRecord; meta: FlowMeta }[] = [];
    for (let s = 0; s < this.cap; s++) {
      const st = this.state[s]!;
      if (st === S_FREE || st === S_TIME_WAIT || st === S_CLOSE || this.last[s]! < activeSinceMs) continue;
      out.push({ record: this.record(s, 'open'), meta: this.metaOf(s) });
    }
    return out.sort((a, b) => a.meta.ordinal - b.meta.ordinal);
  }

  /**
   * Bytes held by the flow table's typed arrays (capacity, not just used
   * slots), excluding the sparse hole lists and L7 peeks. Cheap; for a gauge.
   */
  tableBytes(): number {
    let n = this.index.byteLength + this.free.byteLength;
    for (const a of [this.kAddr, this.kPorts, this.kMeta, this.kHash, this.state, this.inList, this.flags, this.tunDir,
      this.ordinal, this.first, this.last, this.tSyn, this.tSynAck, this.tAck, this.rstIgnored, this.prev, this.next,
      this.lo, this.hi, this.hiSeq, this.finSeq, this.bytes, this.packets, this.retrans, this.ooo, this.win, this.wscale]) n += a.byteLength;
    return n;
  }

  /** Slots in use (open flows plus closed ones lingering to absorb late packets). */
  get tableSize(): number {
    return this.count;
  }

  // ---------------------------------------------------------------- TCP

  private tcp(buf: Uint8Array, td: number, now: number): number {
    const pi = this.pi;
    const fl = pi.tcpFlags;
    const SYN = TCP_FLAG.SYN, ACK = TCP_FLAG.ACK, RST = TCP_FLAG.RST, FIN = TCP_FLAG.FIN;
    // SYN+FIN, SYN+RST and flagless segments are never legitimate (RFC 9293 §3.10.7.4; nmap/flood patterns).
    if (((fl & SYN) !== 0 && (fl & (FIN | RST)) !== 0) || (fl & (SYN | ACK | RST | FIN)) === 0) {
      this.drops[DropReason.BAD_TCP_FLAGS]! += 1;
      return DropReason.BAD_TCP_FLAGS;
    }
    this.loadKey(buf, pi.srcPort, pi.dstPort);
    const h = this.hashKey(IPPROTO.TCP);
    let s = this.lookup(h, IPPROTO.TCP);
    if (s >= 0 && (this.state[s] === S_TIME_WAIT || this.state[s] === S_CLOSE)) {
      // A closed flow absorbs late packets; a fresh SYN reuses the tuple (conntrack does the same in TIME_WAIT).
      if ((fl & SYN) !== 0 && (fl & ACK) === 0) {
        this.release(s);
        s = -1;
      } else {
        this.drops[DropReason.AFTER_CLOSE]! += 1;
        return DropReason.AFTER_CLOSE;
      }
    }
    if (s < 0) {
      if ((fl & RST) !== 0) {
        // No flow to reset: counted, never creates state (RST storms stay bounded).
        this.drops[DropReason.RST_OUT_OF_WINDOW]! += 1;
        return DropReason.RST_OUT_OF_WINDOW;
      }
      const synAck = (fl & (SYN | ACK)) === (SYN | ACK);
      s = this.create(h, IPPROTO.TCP, synAck ? 1 : 0, td, now);
      if ((fl & SYN) !== 0) {
        this.state[s] = synAck ? S_SYN_RECV : S_SYN_SENT;
        if (synAck) {
          // The initiator's SYN was missed, but the SYN-ACK acknowledges its ISN + 1.
          this.flags[s] = F_INIT0;
          this.hiSeq[s * 2] = pi.tcpAck;
        }
      } else {
        this.state[s] = S_ESTABLISHED;
        this.flags[s] = F_MIDSTREAM;
      }
    }
    const d = this.dir;
    const o = d ^ 1;
    const i = s * 2 + d;
    const j = s * 2 + o;
    let f = this.flags[s]!;
    let st = this.state[s]!;
    this.last[s] = now;
    this.packets[i]! += 1;

    let dataSeq = pi.tcpSeq;
    if ((fl & SYN) !== 0) {
      dataSeq = (dataSeq + 1) >>> 0; // RFC 9293 §3.4: the SYN occupies one sequence number
      if (d === 0 && (fl & ACK) === 0) {
        if (st === S_SYN_SENT) {
          if ((f & F_SYN_SEEN) !== 0) this.retrans[i]! += 1;
          f |= F_SYN_SEEN | F_INIT0;
          this.tSyn[s] = now; // the latest SYN: a retransmitted SYN restarts the RTT clock
          this.hiSeq[i] = dataSeq;
          this.lo[i] = 0;
          this.hi[i] = 0;
          this.wscale[i] = pi.tcpWscale;
        } else if (st === S_SYN_RECV) {
          this.retrans[i]! += 1; // SYN again after the SYN-ACK (the SYN-ACK was lost downstream)
        }
      } else if (d === 1 && (fl & ACK) !== 0) {
        if (st === S_SYN_SENT || st === S_SYN_RECV) {
          if ((f & F_SYNACK_SEEN) !== 0) this.retrans[i]! += 1;
          else this.tSynAck[s] = now;
          f |= F_SYNACK_SEEN | F_INIT0 << 1;
          this.hiSeq[i] = dataSeq;
          this.lo[i] = 0;
          this.hi[i] = 0;
          this.wscale[i] = pi.tcpWscale;
          if (this.wscale[s * 2]! >= 0 && pi.tcpWscale >= 0) f |= F_WS; // RFC 7323 §2.2: both sides must offer it
          st = S_SYN_RECV;
        }
      }
    } else if (st === S_SYN_RECV && d === 0 && (fl & ACK) !== 0 && (fl & RST) === 0) {
      // The ACK completing the three-way handshake (RFC 9293 §3.5).
      if ((f & F_SYNACK_SEEN) !== 0 && (((pi.tcpAck - this.hiSeq[j]!) | 0) >= 0)) {
        st = S_ESTABLISHED;
        f |= F_OPENED;
        this.tAck[s] = now;
      }
    } else if (st === S_SYN_SENT && (fl & RST) === 0) {
      // Handshake partly missed at this observation point: carry on as established.
      st = S_ESTABLISHED;
    }

    if ((fl & RST) !== 0) {
      if (this.rstInWindow(s, d, f)) {
        this.flags[s] = f;
        this.state[s] = st;
        this.finish(s, 'rst');
        this.relink(s, S_CLOSE);
        return 0;
      }
      this.rstIgnored[s] = Math.min(this.rstIgnored[s]! + 1, 0xffff);
      this.drops[DropReason.RST_OUT_OF_WINDOW]! += 1;
      this.flags[s] = f;
      this.relink(s, st);
      return DropReason.RST_OUT_OF_WINDOW;
    }

    if ((f & (F_INIT0 << d)) === 0) {
      // First packet seen from this side of a mid-stream flow: its sequence number is where we start.
      f |= F_INIT0 << d;
      this.hiSeq[i] = dataSeq;
      this.lo[i] = 0;
      this.hi[i] = 0;
      this.wscale[i] = -1;
    }
    this.flags[s] = f;
    const plen = pi.payloadLen;
    let result = 0;
    if (plen > 0) result = this.account(s, d, dataSeq, plen, buf, pi.payloadOff, td);
    f = this.flags[s]!;

    if ((fl & FIN) !== 0 && (f & (F_FIN0 << d)) === 0) {
      f |= F_FIN0 << d;
      this.finSeq[i] = (dataSeq + plen) >>> 0;
    }
    if ((fl & ACK) !== 0 && (f & (F_FIN0 << o)) !== 0 && (f & (F_FINACK0 << o)) === 0
      && ((pi.tcpAck - this.finSeq[j]!) | 0) >= 1) {
      f |= F_FINACK0 << o; // the FIN of the other side is acknowledged (RFC 9293 §3.6)
    }
    this.win[i] = pi.tcpWindow;
    this.flags[s] = f;
    if ((f & (F_FIN0 | F_FIN0 << 1)) !== 0 && st >= S_ESTABLISHED) {
      if ((f & (F_FIN0 | F_FIN0 << 1 | F_FINACK0 | F_FINACK0 << 1)) === (F_FIN0 | F_FIN0 << 1 | F_FINACK0 | F_FINACK0 << 1)) {
        this.state[s] = st;
        this.finish(s, 'fin');
        this.relink(s, S_TIME_WAIT);
        return result;
      }
      st = (f & (F_FIN0 | F_FIN0 << 1)) === (F_FIN0 | F_FIN0 << 1) ? S_LAST_ACK : S_FIN_WAIT;
    }
    this.relink(s, st);
    return result;
  }

  /** RST acceptance (RFC 9293 §3.10.7.4 / RFC 5961 §3, as conntrack applies it): sequence number in the receiver's window. */
  private rstInWindow(s: number, d: number, f: number): boolean {
    const pi = this.pi;
    const i = s * 2 + d;
    const j = s * 2 + (d ^ 1);
    if ((f & (F_INIT0 << d)) !== 0) {
      const delta = (pi.tcpSeq - this.hiSeq[i]!) | 0;
      let w = this.win[j]!;
      if (w === 0) w = 65535;
      const sc = (f & F_WS) !== 0 ? this.wscale[j]! : (f & F_MIDSTREAM) !== 0 ? 14 : 0;
      const window = w * (1 << sc);
      // +1: after our FIN the sender's next sequence number is one past its data.
      return delta >= 0 && delta <= window + 1;
    }
    if ((f & (F_INIT0 << (d ^ 1))) !== 0) {
      // Sender's sequence space unknown (e.g. RST,ACK refusing a SYN): it must acknowledge the peer plausibly.
      if ((pi.tcpFlags & TCP_FLAG.ACK) === 0) return false;
      const delta = (pi.tcpAck - this.hiSeq[j]!) | 0;
      return delta >= -MAX_SEQ_DELTA && delta <= MAX_SEQ_DELTA;
    }
    return true;
  }

  /**
   * Counts payload bytes [seq, seq+len) of direction d exactly once.
   * Fast path: the segment starts at the next expected byte and there are no holes.
   */
  private account(s: number, d: number, seq: number, len: number, buf: Uint8Array, pOff: number, td: number): number {
    const i = s * 2 + d;
    const delta = (seq - this.hiSeq[i]!) | 0;
    const f = this.flags[s]!;
    const hiOld = this.hi[i]!;
    if (delta === 0 && (f & (F_HOLES0 << d)) === 0) {
      this.bytes[i]! += len;
      this.hi[i] = hiOld + len;
      this.hiSeq[i] = (seq + len) >>> 0;
      this.counters[FlowCounter.PAYLOAD_BYTES_OUT + td]! += len;
      if (d === 0 && (f & (F_L7 | F_L7_TRIED | F_MIDSTREAM)) !== F_L7_TRIED) this.peek(s, f, buf, pOff, len, hiOld, hiOld + len, true);
      return 0;
    }
    if (delta > MAX_SEQ_DELTA || delta < -MAX_SEQ_DELTA) {
      this.drops[DropReason.OUT_OF_WINDOW]! += 1;
      return DropReason.OUT_OF_WINDOW;
    }
    let a = hiOld + delta;
    let b = a + len;
    let skip = 0;
    const lo = this.lo[i]!;
    if (a < lo && (f & F_MIDSTREAM) === 0) {
      // Before the first byte after the SYN: not data (keep-alive probes and the like).
      if (b <= lo) {
        this.retrans[i]! += 1;
        this.counters[FlowCounter.RETRANSMITS]! += 1;
        return 0;
      }
      skip = lo - a;
      a = lo;
    }
    // Seen set: [lo, hi) plus sorted, disjoint, non-adjacent hole-list intervals.
    const extra = (f & (F_HOLES0 << d)) !== 0 ? this.holes.get(i)! : null;
    const iv: number[] = [];
    let placedMain = false;
    if (extra !== null) {
      for (let k = 0; k < extra.length; k += 2) {
        if (!placedMain && extra[k]! > hiOld) { iv.push(lo, hiOld); placedMain = true; }
        iv.push(extra[k]!, extra[k + 1]!);
      }
    }
    if (!placedMain) iv.push(lo, hiOld);
    let covered = 0;
    for (let k = 0; k < iv.length; k += 2) {
      const x = Math.max(iv[k]!, a);
      const y = Math.min(iv[k + 1]!, b);
      if (y > x) covered += y - x;
    }
    // Merge [a, b) in (adjacent intervals join).
    const merged: number[] = [];
    let na = a, nb = b, placed = false;
    for (let k = 0; k < iv.length; k += 2) {
      const x = iv[k]!, y = iv[k + 1]!;
      if (y < na) merged.push(x, y);
      else if (x > nb) {
        if (!placed) { merged.push(na, nb); placed = true; }
        merged.push(x, y);
      } else {
        if (x < na) na = x;
        if (y > nb) nb = y;
      }
    }
    if (!placed) merged.push(na, nb);
    let newBytes = len - skip - covered;
    // The interval that now holds the old main one becomes main.
    let m = 0;
    for (let k = 0; k < merged.length; k += 2) {
      if (merged[k]! <= lo && merged[k + 1]! >= hiOld) { m = k; break; }
    }
    let rest: number[] = [];
    for (let k = 0; k < merged.length; k += 2) if (k !== m) rest.push(merged[k]!, merged[k + 1]!);
    let mainLo = merged[m]!;
    let mainHi = merged[m + 1]!;
    if (rest.length > MAX_HOLES * 2) {
      // Too many holes: close the smallest gap, counting its bytes as if seen (TCP will fill it).
      const all = merged;
      let best = 2, gap = Infinity;
      for (let k = 2; k < all.length; k += 2) {
        const g = all[k]! - all[k - 1]!;
        if (g < gap) { gap = g; best = k; }
      }
      newBytes += gap;
      all.splice(best - 1, 2);
      this.drops[DropReason.HOLE_OVERFLOW]! += 1;
      m = 0;
      for (let k = 0; k < all.length; k += 2) {
        if (all[k]! <= lo && all[k + 1]! >= hiOld) { m = k; break; }
      }
      mainLo = all[m]!;
      mainHi = all[m + 1]!;
      rest = [];
      for (let k = 0; k < all.length; k += 2) if (k !== m) rest.push(all[k]!, all[k + 1]!);
    }
    this.lo[i] = mainLo;
    this.hi[i] = mainHi;
    this.hiSeq[i] = (this.hiSeq[i]! + (mainHi - hiOld)) >>> 0;
    if (rest.length === 0) {
      this.holes.delete(i);
      this.flags[s] = f & ~(F_HOLES0 << d);
    } else {
      this.holes.set(i, rest);
      this.flags[s] = f | (F_HOLES0 << d);
    }
    this.bytes[i]! += newBytes;
    this.counters[FlowCounter.PAYLOAD_BYTES_OUT + td]! += newBytes;
    if (covered > 0 || skip > 0) {
      this.retrans[i]! += 1;
      this.counters[FlowCounter.RETRANSMITS]! += 1;
    } else if (a !== hiOld) {
      this.ooo[i]! += 1;
      this.counters[FlowCounter.OUT_OF_ORDER]! += 1;
    }
    if (d === 0 && (f & F_MIDSTREAM) === 0 && newBytes > 0) {
      // In order for the HTTP parser only if it extended the main run and nothing beyond it was merged.
      const inOrder = a <= hiOld && mainHi === b;
      const from = inOrder ? hiOld : a;
      this.peek(s, this.flags[s]!, buf, pOff + skip + (from - a), b - from, from, mainHi, inOrder);
    }
    return 0;
  }

  private peek(s: number, f: number, buf: Uint8Array, off: number, len: number, streamOff: number, contiguous: number, inOrder: boolean): void {
    if ((f & F_MIDSTREAM) !== 0) return;
    let p: L7Peek | undefined;
    if ((f & F_L7) !== 0) p = this.peeks.get(s);
    else if ((f & F_L7_TRIED) === 0) {
      p = new L7Peek();
      this.peeks.set(s, p);
      f |= F_L7 | F_L7_TRIED;
    }
    if (p === undefined) return;
    p.feed(buf, off, len, streamOff, contiguous, inOrder);
    if (!p.wantsData) {
      f &= ~F_L7;
      // Nothing learned (neither TLS nor HTTP): free the peek instead of holding it until the flow ends.
      if (p.sni === null && p.alpn === null && p.httpRequests === 0) this.peeks.delete(s);
    }
    this.flags[s] = f;
  }

  // ---------------------------------------------------------------- UDP / ICMP

  private datagram(buf: Uint8Array, td: number, now: number, pclass: number, sport: number, dport: number): number {
    const pi = this.pi;
    const proto = pi.proto;
    this.loadKey(buf, sport, dport);
    const h = this.hashKey(proto);
    let s = this.lookup(h, proto);
    if (s < 0) {
      s = this.create(h, proto, 0, td, now);
      this.state[s] = pclass === P_UDP ? S_UDP : S_ICMP;
    }
    const d = this.dir;
    const i = s * 2 + d;
    this.last[s] = now;
    this.packets[i]! += 1;
    this.bytes[i]! += pi.payloadLen;
    this.counters[FlowCounter.PAYLOAD_BYTES_OUT + td]! += pi.payloadLen;
    let st = this.state[s]!;
    if (st === S_UDP && d === 1) st = S_UDP_STREAM; // conntrack: replies seen → longer timeout
    this.relink(s, st);
    return 0;
  }

  // ---------------------------------------------------------------- table

  private loadKey(buf: Uint8Array, sport: number, dport: number): void {
    const pi = this.pi;
    const k = this.key;
    if (pi.ipVersion === 4) {
      k[0] = word(buf, pi.srcOff); k[1] = 0; k[2] = 0; k[3] = 0;
      k[4] = word(buf, pi.dstOff); k[5] = 0; k[6] = 0; k[7] = 0;
    } else {
      for (let w = 0; w < 4; w++) {
        k[w] = word(buf, pi.srcOff + 4 * w);
        k[4 + w] = word(buf, pi.dstOff + 4 * w);
      }
    }
    this.kp = ((sport << 16) | dport) >>> 0;
  }

  private kp = 0;

  private hashKey(proto: number): number {
    const k = this.key;
    const p = this.kp;
    // Symmetric: both orientations of a tuple hash alike.
    const hs = mix(mix(mix(mix(mix(0x9747b28c, k[0]!), k[1]!), k[2]!), k[3]!), p >>> 16);
    const hd = mix(mix(mix(mix(mix(0x9747b28c, k[4]!), k[5]!), k[6]!), k[7]!), p & 0xffff);
    return fmix((hs + hd) ^ (proto | (this.pi.ipVersion << 8)));
  }

  private lookup(h: number, proto: number): number {
    const meta = proto | (this.pi.ipVersion === 6 ? 0x100 : 0);
    const k = this.key;
    const p = this.kp;
    const pr = ((p << 16) | (p >>> 16)) >>> 0;
    let x = h & this.mask;
    for (;;) {
      const e = this.index[x]!;
      if (e === 0) return -1;
      const s = e - 1;
      if (this.kHash[s] === h && this.kMeta[s] === meta) {
        const b = s * 8;
        const a = this.kAddr;
        const kp = this.kPorts[s]!;
        if (kp === p && a[b] === k[0] && a[b + 1] === k[1] && a[b + 2] === k[2] && a[b + 3] === k[3]
          && a[b + 4] === k[4] && a[b + 5] === k[5] && a[b + 6] === k[6] && a[b + 7] === k[7]) {
          this.dir = 0;
          return s;
        }
        if (kp === pr && a[b] === k[4] && a[b + 1] === k[5] && a[b + 2] === k[6] && a[b + 3] === k[7]
          && a[b + 4] === k[0] && a[b + 5] === k[1] && a[b + 6] === k[2] && a[b + 7] === k[3]) {
          this.dir = 1;
          return s;
        }
      }
      x = (x + 1) & this.mask;
    }
  }

  /** New flow for the current key. `initiatorIsDst` 1 when the packet travels responder → initiator. */
  private create(h: number, proto: number, initiatorIsDst: number, td: number, now: number): number {
    if (this.count === this.cap) {
      if (this.cap < this.maxFlows) this.grow(Math.min(this.cap * 2, this.maxFlows));
      else this.evictOne();
    }
    const s = this.free[--this.freeTop]!;
    this.count++;
    this.activeFlows++;
    this.counters[FlowCounter.FLOWS_OPENED]! += 1;
    const k = this.key;
    const b = s * 8;
    const first = initiatorIsDst === 1 ? 4 : 0;
    for (let w = 0; w < 4; w++) {
      this.kAddr[b + w] = k[first + w]!;
      this.kAddr[b + 4 + w] = k[(first ^ 4) + w]!;
    }
    const p = this.kp;
    this.kPorts[s] = initiatorIsDst === 1 ? ((p << 16) | (p >>> 16)) >>> 0 : p;
    this.kMeta[s] = proto | (this.pi.ipVersion === 6 ? 0x100 : 0);
    this.kHash[s] = h;
    this.dir = initiatorIsDst;
    this.flags[s] = 0;
    this.tunDir[s] = initiatorIsDst === 1 ? td ^ 1 : td;
    this.ordinal[s] = this.nextOrdinal++;
    this.first[s] = now;
    this.last[s] = now;
    this.tSyn[s] = NaN;
    this.tSynAck[s] = NaN;
    this.tAck[s] = NaN;
    this.rstIgnored[s] = 0;
    for (let d = 0; d < 2; d++) {
      const i = s * 2 + d;
      this.lo[i] = 0; this.hi[i] = 0; this.hiSeq[i] = 0; this.finSeq[i] = 0;
      this.bytes[i] = 0; this.packets[i] = 0; this.retrans[i] = 0; this.ooo[i] = 0;
      this.win[i] = 0; this.wscale[i] = -1;
    }
    this.prev[s] = -1;
    this.next[s] = -1;
    this.state[s] = S_ESTABLISHED; // caller sets the real state; relink puts it on a list
    this.link(s, S_ESTABLISHED);
    let x = h & this.mask;
    while (this.index[x] !== 0) x = (x + 1) & this.mask;
    this.index[x] = s + 1;
    return s;
  }

  /** Evicts the least valuable flow: a closed one lingering, then the oldest half-open, then the oldest idle. */
  private evictOne(): void {
    let v = this.oldestOf(S_TIME_WAIT, S_CLOSE, -1);
    if (v >= 0) { this.release(v); return; }
    v = this.oldestOf(S_SYN_SENT, S_SYN_RECV, -1);
    if (v < 0) {
      for (const st of [S_ESTABLISHED, S_FIN_WAIT, S_LAST_ACK, S_UDP, S_UDP_STREAM, S_ICMP]) v = this.oldestOf(st, -1, v);
    }
    if (v < 0) throw new Error('inspect: flow table full with nothing to evict (bug)');
    this.drops[DropReason.EVICTED]! += 1;
    this.finish(v, 'evicted');
    this.release(v);
  }

  private oldestOf(a: number, b: number, best: number): number {
    for (const st of [a, b]) {
      if (st < 0) continue;
      const h = this.headOf[st]!;
      if (h >= 0 && (best < 0 || this.last[h]! < this.last[best]!)) best = h;
    }
    return best;
  }

  private link(s: number, st: number): void {
    this.state[s] = st;
    this.inList[s] = st;
    const t = this.tailOf[st]!;
    this.prev[s] = t;
    this.next[s] = -1;
    if (t >= 0) this.next[t] = s; else this.headOf[st] = s;
    this.tailOf[st] = s;
  }

  private unlink(s: number): void {
    const st = this.inList[s]!;
    const p = this.prev[s]!;
    const n = this.next[s]!;
    if (p >= 0) this.next[p] = n; else this.headOf[st] = n;
    if (n >= 0) this.prev[n] = p; else this.tailOf[st] = p;
  }

  /** Moves s to the tail of state st's list (its most recently active end). */
  private relink(s: number, st: number): void {
    if (this.inList[s] === st && this.tailOf[st] === s) { this.state[s] = st; return; }
    this.unlink(s);
    this.link(s, st);
  }

  /** Frees a slot: out of its list, out of the hash index (backward-shift deletion), side tables dropped. */
  private release(s: number): void {
    const st = this.state[s]!;
    if (st !== S_TIME_WAIT && st !== S_CLOSE) this.activeFlows--;
    this.unlink(s);
    this.state[s] = S_FREE;
    this.holes.delete(s * 2);
    this.holes.delete(s * 2 + 1);
    this.peeks.delete(s);
    const mask = this.mask;
    let x = this.kHash[s]! & mask;
    while (this.index[x] !== s + 1) x = (x + 1) & mask;
    this.index[x] = 0;
    let y = x;
    for (;;) {
      y = (y + 1) & mask;
      const e = this.index[y]!;
      if (e === 0) break;
      const home = this.kHash[e - 1]! & mask;
      // Move e back into the hole unless its home lies cyclically in (x, y].
      const inRange = x <= y ? home > x && home <= y : home > x || home <= y;
      if (!inRange) {
        this.index[x] = e;
        this.index[y] = 0;
        x = y;
      }
    }
    this.free[this.freeTop++] = s;
    this.count--;
  }

  private grow(newCap: number): void {
    const old = this.cap;
    const g = <T extends Float64Array | Uint32Array | Int32Array | Uint16Array | Uint8Array | Int8Array>(a: T, per: number): T => {
      const n = new (a.constructor as new (len: number) => T)(newCap * per);
      n.set(a as never);
      return n;
    };
    this.kAddr = g(this.kAddr, 8); this.kPorts = g(this.kPorts, 1); this.kMeta = g(this.kMeta, 1); this.kHash = g(this.kHash, 1);
    this.state = g(this.state, 1); this.inList = g(this.inList, 1); this.flags = g(this.flags, 1); this.tunDir = g(this.tunDir, 1);
    this.ordinal = g(this.ordinal, 1); this.first = g(this.first, 1); this.last = g(this.last, 1);
    this.tSyn = g(this.tSyn, 1); this.tSynAck = g(this.tSynAck, 1); this.tAck = g(this.tAck, 1);
    this.rstIgnored = g(this.rstIgnored, 1); this.prev = g(this.prev, 1); this.next = g(this.next, 1);
    this.lo = g(this.lo, 2); this.hi = g(this.hi, 2); this.hiSeq = g(this.hiSeq, 2); this.finSeq = g(this.finSeq, 2);
    this.bytes = g(this.bytes, 2); this.packets = g(this.packets, 2); this.retrans = g(this.retrans, 2); this.ooo = g(this.ooo, 2);
    this.win = g(this.win, 2); this.wscale = g(this.wscale, 2);
    this.state.fill(S_FREE, old);
    const free = new Int32Array(newCap);
    free.set(this.free.subarray(0, this.freeTop));
    // New slots are taken lowest first.
    for (let s = newCap - 1; s >= old; s--) free[this.freeTop++] = s;
    this.free = free;
    this.cap = newCap;
    let size = 1;
    while (size < newCap * 2) size <<= 1;
    this.index = new Int32Array(size);
    this.mask = size - 1;
    for (let s = 0; s < old; s++) {
      if (this.state[s] === S_FREE) continue;
      let x = this.kHash[s]! & this.mask;
      while (this.index[x] !== 0) x = (x + 1) & this.mask;
      this.index[x] = s + 1;
    }
  }

  // ---------------------------------------------------------------- records

  private finish(s: number, reason: CloseReason): void {
    const st = this.state[s]!;
    if (st === S_TIME_WAIT || st === S_CLOSE) return; // already emitted: exactly once
    const rec = this.record(s, reason);
    const meta = this.metaOf(s);
    this.peeks.delete(s);
    this.holes.delete(s * 2);
    this.holes.delete(s * 2 + 1);
    this.counters[FlowCounter.FLOWS_CLOSED]! += 1;
    this.activeFlows--;
    // Mark emitted before calling out so a re-entrant flush cannot emit twice.
    this.unlink(s);
    this.link(s, reason === 'rst' ? S_CLOSE : S_TIME_WAIT);
    this.sink(rec, meta);
  }

  private metaOf(s: number): FlowMeta {
    const p = this.peeks.get(s);
    return {
      ordinal: this.ordinal[s]!,
      tunnelDirection: this.tunDir[s]!,
      outOfOrder: this.ooo[s * 2]! + this.ooo[s * 2 + 1]!,
      rstIgnored: this.rstIgnored[s]!,
      synAckLegMs: ms(this.tSynAck[s]! - this.tSyn[s]!),
      ackLegMs: ms(this.tAck[s]! - this.tSynAck[s]!),
      httpHost: p?.httpHost ?? null,
      firstSeenMs: this.first[s]!,
      lastSeenMs: this.last[s]!,
    };
  }

  private record(s: number, reason: CloseReason): FlowRecord {
    const meta = this.kMeta[s]!;
    const proto = meta & 0xff;
    const v = meta >> 8 ? 6 : 4;
    const pstr: FlowProto = proto === IPPROTO.TCP ? 'tcp' : proto === IPPROTO.UDP ? 'udp' : 'icmp';
    const p = this.peeks.get(s);
    const f = this.flags[s]!;
    return {
      proto: pstr,
      src: this.addr(s, 0, v),
      srcPort: this.kPorts[s]! >>> 16,
      dst: this.addr(s, 4, v),
      dstPort: this.kPorts[s]! & 0xffff,
      opened: (f & F_OPENED) !== 0,
      midstream: (f & F_MIDSTREAM) !== 0,
      closeReason: reason,
      bytesSent: this.bytes[s * 2]!,
      bytesReceived: this.bytes[s * 2 + 1]!,
      packetsSent: this.packets[s * 2]!,
      packetsReceived: this.packets[s * 2 + 1]!,
      retransmits: this.retrans[s * 2]! + this.retrans[s * 2 + 1]!,
      handshakeRttMs: ms(this.tAck[s]! - this.tSyn[s]!),
      sni: p?.sni ?? null,
      alpn: p?.alpn ?? null,
      httpRequests: p?.httpRequests ?? 0,
      firstSeen: new Date(this.first[s]!).toISOString(),
      lastSeen: new Date(this.last[s]!).toISOString(),
    };
  }

  private addr(s: number, w0: number, v: number): string {
    const b = this.addrScratch;
    for (let w = 0; w < 4; w++) {
      const x = this.kAddr[s * 8 + w0 + w]!;
      b[4 * w] = x >>> 24; b[4 * w + 1] = (x >>> 16) & 0xff; b[4 * w + 2] = (x >>> 8) & 0xff; b[4 * w + 3] = x & 0xff;
    }
    return formatAddress(b, 0, v);
  }
}

function ms(x: number): number | null {
  return Number.isFinite(x) && x >= 0 ? Math.round(x * 1000) / 1000 : null;
}
