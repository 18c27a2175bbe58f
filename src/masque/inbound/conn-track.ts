/**
 * Connection tracking for the inbound default-deny (issue #12 item 8):
 * flows opened from the agent side (agent → network packets seed them) or
 * admitted by an inbound rule, and the tests "is this network → agent packet
 * traffic of one of them" and "is this agent packet an answer to an
 * admitted one".
 * Sans-IO, allocation-free per packet. The slots, the keyed HalfSipHash
 * index and the per-state LRU lists are the passive inspector's FlowTable
 * (src/inspect/flow-table.ts), with its random per-instance hash key.
 */
import { IPPROTO, PacketInfo, TCP_FLAG } from '../../packet/ip-packet.js';
import { compareBytes } from '../../packet/ip-address.js';
import {
  FlowTable, N_STATES, S_CLOSE, S_ESTABLISHED, S_ICMP, S_SYN_SENT, S_TIME_WAIT, S_UDP, S_UDP_STREAM,
} from '../../inspect/flow-table.js';
import { isEchoReply, isEchoRequest, readQuotedPacket } from './quoted-packet.js';

/** Idle timeouts of tracked flows, per protocol and state (milliseconds). */
export interface InboundTimeouts {
  /** TCP seen from the agent side only (SYN sent, or picked up mid-stream): Linux syn_sent 120 s. */
  tcpOpeningMs: number;
  /** TCP with return traffic seen: Linux established 5 days. */
  tcpEstablishedMs: number;
  /** TCP after a FIN (Linux time_wait 120 s); after an RST a tenth of it, at least 1 s. */
  tcpClosingMs: number;
  /** UDP (and other protocols) seen from the agent side only: Linux udp 30 s. */
  udpMs: number;
  /** UDP with return traffic seen: Linux udp stream 120 s. */
  udpStreamMs: number;
  /** ICMP echo: Linux icmp 30 s. */
  icmpMs: number;
}

/** Defaults of {@link InboundTimeouts} (Linux conntrack's, see docs/rfc-checklist.md). */
export const DEFAULT_INBOUND_TIMEOUTS: Readonly<InboundTimeouts> = {
  tcpOpeningMs: 120_000, tcpEstablishedMs: 432_000_000, tcpClosingMs: 120_000, udpMs: 30_000, udpStreamMs: 120_000, icmpMs: 30_000,
};

/**
 * Flows of an owner that left are kept this long (ms): an agent that
 * restarts, falls back to HTTP/2 or reconnects after a path failure comes
 * back within it, and its transfers resume (a waiting client sends nothing
 * that could open the flow again).
 */
export const DEFAULT_OWNER_GRACE_MS = 120_000;

/** Who carries a flow: the gateway uses the peer identity, so a flow outlives the session that opened it. Compared with ===. */
export type FlowOwner = object | string;

/** Options of {@link ConnTrack}. */
export interface ConnTrackOptions {
  /** Tracked flows at most; a new flow past it evicts one (counted in {@link ConnTrack.evictions}). */
  readonly maxFlows: number;
  /**
   * Tracked flows one owner may hold at most (default: all of maxFlows). An
   * owner at it opens a new flow in place of its own least recently active
   * one (counted in {@link ConnTrack.ownerCapped}), so no one owner can fill
   * the table and evict the others' flows.
   */
  readonly maxFlowsPerOwner?: number;
  readonly timeouts?: Partial<InboundTimeouts>;
  /**
   * How long the flows of an owner that has left ({@link ConnTrack.ownerLeft})
   * are kept for its return (ms; default {@link DEFAULT_OWNER_GRACE_MS}).
   */
  readonly ownerGraceMs?: number;
  /** 8-byte hash key (tests); default random per instance. */
  readonly hashKey?: Uint8Array;
  /**
   * Called when live flows leave the table before their timeout: evicted at
   * maxFlows or maxFlowsPerOwner, or forgotten with their owner
   * ({@link forget}, {@link forgetWhere}). A cache of the table's answers
   * (the gateway's TUN thread) must drop what it holds.
   */
  readonly onDropped?: () => void;
}

/** Which side opened a flow (kept in the flow table's tunDir). */
const BY_AGENT = 0;
const BY_NETWORK = 1;
/** {@link ConnTrack.find}: the packet is not keyed on a flow. */
const NOT_KEYED = -2;

/** The states this tracker uses (a subset of the flow table's), each with its own LRU list and timeout. */
const STATES = [S_SYN_SENT, S_ESTABLISHED, S_TIME_WAIT, S_CLOSE, S_UDP, S_UDP_STREAM, S_ICMP] as const;

/**
 * Tracked flows, keyed on the 5-tuple (ICMP echo: the identifier stands for
 * the requester's port), each opened by the agent side (its packets seed
 * it) or by the network side under an inbound rule, and tagged with its
 * owner (the session that carries it): traffic counts only toward that
 * session. Owners are compared by identity and held until {@link forget}
 * or expiry.
 */
export class ConnTrack {
  /** Flows evicted to make room (table full at maxFlows). */
  evictions = 0;
  /** Flows that reached their idle timeout. */
  expired = 0;
  /** Flows evicted for a new flow of the same owner, which held maxFlowsPerOwner (its least recently active). */
  ownerCapped = 0;
  private readonly maxPerOwner: number;
  private readonly maxFlows: number;
  /** Per owner: its flows, least recently active first (a list through ownerPrev/ownerNext); owners with none are removed. */
  private readonly perOwner = new Map<FlowOwner, { n: number; head: number; tail: number }>();
  private ownerPrev = new Int32Array(0);
  private ownerNext = new Int32Array(0);
  private readonly table: FlowTable;
  private readonly timeoutOf = new Float64Array(N_STATES);
  private owners: (FlowOwner | null)[] = [];
  /** Owners that left, and when ({@link ownerLeft}); their flows go {@link ownerGraceMs} later. */
  private readonly left = new Map<FlowOwner, number>();
  private readonly ownerGraceMs: number;
  private readonly quoted = new PacketInfo();
  /** Hash of the key {@link find} loaded last. */
  private h = 0;

  private readonly onDropped: (() => void) | undefined;

  constructor(opts: ConnTrackOptions) {
    this.onDropped = opts.onDropped;
    this.ownerGraceMs = opts.ownerGraceMs ?? DEFAULT_OWNER_GRACE_MS;
    this.maxFlows = opts.maxFlows;
    this.maxPerOwner = Math.max(1, Math.min(opts.maxFlowsPerOwner ?? opts.maxFlows, opts.maxFlows));
    this.table = new FlowTable(opts.maxFlows, Math.min(1024, opts.maxFlows), opts.hashKey);
    const t = { ...DEFAULT_INBOUND_TIMEOUTS, ...opts.timeouts };
    this.timeoutOf[S_SYN_SENT] = t.tcpOpeningMs;
    this.timeoutOf[S_ESTABLISHED] = t.tcpEstablishedMs;
    this.timeoutOf[S_TIME_WAIT] = t.tcpClosingMs;
    this.timeoutOf[S_CLOSE] = Math.max(1000, t.tcpClosingMs / 10);
    this.timeoutOf[S_UDP] = t.udpMs;
    this.timeoutOf[S_UDP_STREAM] = t.udpStreamMs;
    this.timeoutOf[S_ICMP] = t.icmpMs;
  }

  /** Flows tracked now. */
  get size(): number {
    return this.table.count;
  }

  /**
   * An agent → network packet that passed every check (parsed into `p` from
   * `buf`; ports as the parser left them): opens or refreshes its flow for
   * `owner`, or moves on a flow the network side opened (an answer).
   * Non-first fragments, RSTs and ICMP other than echo open nothing.
   * Allocation-free (the table grows in steps up to maxFlows).
   */
  seed(buf: Uint8Array, p: PacketInfo, owner: FlowOwner, now: number): void {
    const s = this.find(buf, p, now);
    if (s === NOT_KEYED) return;
    const t = this.table;
    if (s >= 0) {
      // Agent → network is the opening direction of agent-opened flows (tunDir 0), the answering one otherwise.
      if (t.dir === t.tunDir[s] && t.tunDir[s] === BY_AGENT && this.owners[s] !== owner) this.setOwner(s, owner); // the address may have moved to another session
      this.advance(s, p, t.tunDir[s] === BY_NETWORK || t.dir !== t.tunDir[s], now);
      return;
    }
    this.open(p, BY_AGENT, owner, now);
  }

  /**
   * A network → agent packet an inbound rule of `owner`'s identity allowed:
   * opens its flow (the network side as opener), so the agent's answers
   * pass the gateway's outbound policy ({@link isAnswerFromAgent}).
   */
  admit(buf: Uint8Array, p: PacketInfo, owner: FlowOwner, now: number): void {
    if (this.find(buf, p, now) === -1) this.open(p, BY_NETWORK, owner, now);
  }

  /**
   * Is the network → agent packet `p` (parsed from `buf`) traffic of a flow
   * of `owner`: the return traffic of one the agent opened, or more of one an
   * inbound rule admitted? TCP, UDP and other protocols by the 5-tuple, ICMP
   * echo by its identifier. A match refreshes the flow. Allocation-free.
   */
  matchReturn(buf: Uint8Array, p: PacketInfo, owner: FlowOwner, now: number): boolean {
    const s = this.find(buf, p, now);
    if (s < 0 || this.owners[s] !== owner) return false;
    const t = this.table;
    // Network → agent packets run against the opening direction of agent-opened flows (dir 1), along it otherwise.
    const inbound = t.tunDir[s] === BY_AGENT ? t.dir === 1 : t.dir === 0;
    if (inbound) this.advance(s, p, t.tunDir[s] === BY_AGENT, now);
    return inbound;
  }

  /**
   * Is the agent → network packet `p` an answer on a flow an inbound rule
   * admitted for `owner` (e.g. the SYN-ACK of an allowed connection)? The
   * gateway lets these past its outbound policy. Does not refresh the flow
   * ({@link seed} does, once the packet passed). Allocation-free.
   */
  isAnswerFromAgent(buf: Uint8Array, p: PacketInfo, owner: FlowOwner, now: number): boolean {
    const s = this.find(buf, p, now);
    return s >= 0 && this.table.tunDir[s] === BY_NETWORK && this.table.dir === 1 && this.owners[s] === owner;
  }

  /**
   * Is the ICMP error `p` (parsed from `buf`) about a packet `owner` sent on
   * one of its tracked flows? The quoted packet (RFC 792 / RFC 4443 §2.4(c)
   * quote its header and ports) must have travelled agent → network, and
   * the error must be addressed to its source.
   */
  matchIcmpError(buf: Uint8Array, p: PacketInfo, owner: FlowOwner, now: number): boolean {
    const q = this.quoted;
    if (!readQuotedPacket(buf, p, q)) return false;
    if (compareBytes(buf, p.dstOff, buf, q.srcOff, p.ipVersion === 4 ? 4 : 16) !== 0) return false;
    const t = this.table;
    // The quoted header is keyed as sent: an echo request's identifier is its srcPort already.
    const s = this.live(t.lookup(t.loadKey(buf, q, q.srcPort, q.dstPort)), now);
    return s >= 0 && t.dir === t.tunDir[s] && this.owners[s] === owner;
  }

  /**
   * `owner` has no session now: its flows are forgotten after the grace
   * period unless it comes back ({@link ownerBack}) first. Control path.
   */
  ownerLeft(owner: FlowOwner, now: number): void {
    if (!this.left.has(owner)) this.left.set(owner, now);
  }

  /** `owner` has a session again: its flows stay. */
  ownerBack(owner: FlowOwner): void {
    this.left.delete(owner);
  }

  /** Drops every flow of `owner` now. O(capacity); control path. */
  forget(owner: FlowOwner): void {
    this.left.delete(owner); // also when it has no flow left
    this.forgetWhere((o) => o === owner);
  }

  /**
   * Drops every flow whose owner `pred` picks (a reload changed what that
   * identity may do: its flows must be opened again under the new rules).
   * Returns how many. O(capacity); control path.
   */
  forgetWhere(pred: (owner: FlowOwner) => boolean): number {
    const o = this.owners;
    const verdict = new Map<FlowOwner, boolean>();
    let n = 0;
    for (let s = 0; s < o.length; s++) {
      const w = o[s];
      if (w === null || w === undefined) continue;
      let drop = verdict.get(w);
      if (drop === undefined) verdict.set(w, (drop = pred(w)));
      if (drop) {
        this.release(s);
        n++;
      }
    }
    for (const w of verdict.keys()) if (verdict.get(w)) this.left.delete(w);
    if (n > 0) this.onDropped?.();
    return n;
  }

  /** Expires flows idle past their state's timeout. Call about once a second, off the packet path. */
  onTimeout(now: number): void {
    for (const [owner, since] of this.left) if (now - since >= this.ownerGraceMs) this.forget(owner);
    const t = this.table;
    for (const st of STATES) {
      for (let s = t.headOf[st]!; s >= 0 && this.isExpired(s, now); s = t.headOf[st]!) {
        this.expired++;
        this.release(s);
      }
    }
  }

  /**
   * Loads p's key and finds its live flow: the slot (table.dir set), -1 when
   * none, or {@link NOT_KEYED} for packets no flow is keyed on (non-first
   * fragments, ICMP other than echo). Echo requests key as (identifier, 0),
   * replies as (0, identifier), so a reply finds its request's flow reversed.
   */
  private find(buf: Uint8Array, p: PacketInfo, now: number): number {
    if (p.isFragment && p.fragOffset !== 0) return NOT_KEYED;
    const proto = p.proto;
    const t = this.table;
    if (proto === IPPROTO.ICMP || proto === IPPROTO.ICMPV6) {
      if (isEchoRequest(p)) this.h = t.loadKey(buf, p, p.srcPort, 0);
      else if (isEchoReply(p)) this.h = t.loadKey(buf, p, 0, p.srcPort);
      else return NOT_KEYED;
    } else this.h = t.loadKey(buf, p, p.srcPort, p.dstPort);
    return this.live(t.lookup(this.h), now);
  }

  /** New flow for the key {@link find} loaded, opened by `side`; RSTs and echo replies open nothing. */
  private open(p: PacketInfo, side: number, owner: FlowOwner, now: number): void {
    const proto = p.proto;
    const icmp = proto === IPPROTO.ICMP || proto === IPPROTO.ICMPV6;
    if ((proto === IPPROTO.TCP && (p.tcpFlags & TCP_FLAG.RST) !== 0) || (icmp && !isEchoRequest(p))) return;
    const st = proto === IPPROTO.TCP ? ((p.tcpFlags & TCP_FLAG.FIN) !== 0 ? S_TIME_WAIT : S_SYN_SENT) : icmp ? S_ICMP : S_UDP;
    const t = this.table;
    const mine = this.perOwner.get(owner);
    if (mine !== undefined && mine.n >= this.maxPerOwner && this.maxPerOwner < this.maxFlows) {
      // At its cap: the new flow takes the place of the owner's own least recently active flow.
      const v = mine.head;
      if (this.isExpired(v, now)) this.expired++; else { this.ownerCapped++; this.onDropped?.(); }
      this.release(v); // leaves the loaded key as it is
    }
    if (t.needsEviction()) {
      const v = t.evictionVictim();
      if (this.isExpired(v, now)) this.expired++; else { this.evictions++; this.onDropped?.(); }
      this.release(v); // leaves the loaded key as it is
    }
    const s = t.create(this.h, st, 0, side, now);
    if (this.owners.length < t.cap) this.growOwners(t.cap);
    this.owners[s] = null;
    this.setOwner(s, owner);
  }

  /** Flow s now belongs to `owner`: off its old owner's list, onto the new one's as the most recently active. */
  private setOwner(s: number, owner: FlowOwner | null): void {
    const old = this.owners[s];
    if (old !== null && old !== undefined) this.unlinkOwner(s, old);
    this.owners[s] = owner;
    if (owner !== null) this.linkOwner(s, owner);
  }

  private unlinkOwner(s: number, owner: FlowOwner): void {
    const l = this.perOwner.get(owner)!;
    const p = this.ownerPrev[s]!, n = this.ownerNext[s]!;
    if (p >= 0) this.ownerNext[p] = n; else l.head = n;
    if (n >= 0) this.ownerPrev[n] = p; else l.tail = p;
    if (--l.n === 0) this.perOwner.delete(owner);
  }

  private linkOwner(s: number, owner: FlowOwner): void {
    let l = this.perOwner.get(owner);
    if (l === undefined) this.perOwner.set(owner, (l = { n: 0, head: -1, tail: -1 }));
    this.ownerPrev[s] = l.tail;
    this.ownerNext[s] = -1;
    if (l.tail >= 0) this.ownerNext[l.tail] = s; else l.head = s;
    l.tail = s;
    l.n++;
  }

  /** The shortest time a flow stays in the table after its last packet, in any state (ms). */
  get shortestTimeoutMs(): number {
    let m = Infinity;
    for (const st of STATES) m = Math.min(m, this.timeoutOf[st]!);
    return m;
  }

  /** Flows `owner` holds now. */
  flowsOf(owner: FlowOwner): number {
    return this.perOwner.get(owner)?.n ?? 0;
  }

  private isExpired(s: number, now: number): boolean {
    const t = this.table;
    return t.last[s]! + this.timeoutOf[t.state[s]!]! <= now;
  }

  /** s itself, or -1 when s is -1 or idle past its timeout (then released). */
  private live(s: number, now: number): number {
    if (s < 0 || !this.isExpired(s, now)) return s;
    this.expired++;
    this.release(s);
    return -1;
  }

  /** Moves flow s on for packet p (`answer`: from the far side), refreshing it. */
  private advance(s: number, p: PacketInfo, answer: boolean, now: number): void {
    const t = this.table;
    let st = t.state[s]!;
    if (p.proto === IPPROTO.TCP) {
      const f = p.tcpFlags;
      if ((f & TCP_FLAG.RST) !== 0) st = S_CLOSE;
      else if ((f & TCP_FLAG.FIN) !== 0) st = S_TIME_WAIT;
      else if (answer && st === S_SYN_SENT) st = S_ESTABLISHED;
    } else if (answer && st === S_UDP) st = S_UDP_STREAM;
    t.last[s] = now;
    t.relink(s, st);
    const o = this.owners[s];
    if (o !== null && o !== undefined && this.perOwner.get(o)!.tail !== s) { // most recently active of its owner now
      this.unlinkOwner(s, o);
      this.linkOwner(s, o);
    }
  }

  private release(s: number): void {
    this.setOwner(s, null);
    this.table.release(s);
  }

  private growOwners(cap: number): void {
    const o = this.owners;
    for (let i = o.length; i < cap; i++) o.push(null);
    const prev = new Int32Array(cap).fill(-1), next = new Int32Array(cap).fill(-1);
    prev.set(this.ownerPrev);
    next.set(this.ownerNext);
    this.ownerPrev = prev;
    this.ownerNext = next;
  }
}
