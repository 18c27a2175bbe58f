/**
 * Connection tracking for the inbound default-deny (issue #12 item 8):
 * flows opened from the agent side (agent → network packets seed them) and
 * the test "is this network → agent packet return traffic of one of them".
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

/** Options of {@link ConnTrack}. */
export interface ConnTrackOptions {
  /** Tracked flows at most; a new flow past it evicts one (counted in {@link ConnTrack.evictions}). */
  readonly maxFlows: number;
  readonly timeouts?: Partial<InboundTimeouts>;
  /** 8-byte hash key (tests); default random per instance. */
  readonly hashKey?: Uint8Array;
}

/** The states this tracker uses (a subset of the flow table's), each with its own LRU list and timeout. */
const STATES = [S_SYN_SENT, S_ESTABLISHED, S_TIME_WAIT, S_CLOSE, S_UDP, S_UDP_STREAM, S_ICMP] as const;

/**
 * Flows opened from the agent side, keyed on the 5-tuple (ICMP echo: the
 * identifier stands for the agent-side port) and tagged with their owner
 * (the session that carries them): return traffic counts only toward the
 * session that opened the flow. Owners are compared by identity and held
 * until {@link forget} or expiry.
 */
export class ConnTrack {
  /** Flows evicted to make room (table full at maxFlows). */
  evictions = 0;
  /** Flows that reached their idle timeout. */
  expired = 0;
  private readonly table: FlowTable;
  private readonly timeoutOf = new Float64Array(N_STATES);
  private owners: (object | null)[] = [];
  private readonly quoted = new PacketInfo();

  constructor(opts: ConnTrackOptions) {
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
   * `owner`. Non-first fragments, RSTs and ICMP other than echo requests
   * open nothing. Allocation-free (the table grows in steps up to maxFlows).
   */
  seed(buf: Uint8Array, p: PacketInfo, owner: object, now: number): void {
    if (p.isFragment && p.fragOffset !== 0) return;
    const proto = p.proto;
    const icmp = proto === IPPROTO.ICMP || proto === IPPROTO.ICMPV6;
    if (icmp && !isEchoRequest(p)) return;
    const t = this.table;
    const h = t.loadKey(buf, p, p.srcPort, icmp ? 0 : p.dstPort);
    let s = this.live(t.lookup(h), now);
    if (s >= 0) {
      if (t.dir === 1) { this.advance(s, p, true, now); return; } // a reply to a flow the far side opened
      this.owners[s] = owner; // the address may have moved to another session
      this.advance(s, p, false, now);
      return;
    }
    const rst = proto === IPPROTO.TCP && (p.tcpFlags & TCP_FLAG.RST) !== 0;
    if (rst) return;
    const st = proto === IPPROTO.TCP ? ((p.tcpFlags & TCP_FLAG.FIN) !== 0 ? S_TIME_WAIT : S_SYN_SENT) : icmp ? S_ICMP : S_UDP;
    if (t.needsEviction()) {
      const v = t.evictionVictim();
      if (this.isExpired(v, now)) this.expired++; else this.evictions++;
      this.release(v); // leaves the loaded key (and h) as they are
    }
    s = t.create(h, st, 0, 0, now);
    if (this.owners.length < t.cap) this.growOwners(t.cap);
    this.owners[s] = owner;
  }

  /**
   * Is the network → agent packet `p` (parsed from `buf`) return traffic of
   * a flow `owner` opened? TCP, UDP and other protocols by the reversed
   * 5-tuple, ICMP by an echo reply to a tracked echo request. A match
   * refreshes the flow (and marks it answered). Allocation-free.
   */
  matchReturn(buf: Uint8Array, p: PacketInfo, owner: object, now: number): boolean {
    const proto = p.proto;
    const icmp = proto === IPPROTO.ICMP || proto === IPPROTO.ICMPV6;
    if (icmp && !isEchoReply(p)) return false;
    const t = this.table;
    const s = this.live(t.lookup(t.loadKey(buf, p, icmp ? 0 : p.srcPort, icmp ? p.srcPort : p.dstPort)), now);
    if (s < 0 || t.dir !== 1 || this.owners[s] !== owner) return false;
    this.advance(s, p, true, now);
    return true;
  }

  /**
   * Is the ICMP error `p` (parsed from `buf`) about a packet of a flow
   * `owner` opened? The quoted packet must be one the agent side sent on a
   * tracked flow (RFC 792 / RFC 4443 §2.4(c) quote its header and ports),
   * and the error must be addressed to that packet's source.
   */
  matchIcmpError(buf: Uint8Array, p: PacketInfo, owner: object, now: number): boolean {
    const q = this.quoted;
    if (!readQuotedPacket(buf, p, q)) return false;
    if (compareBytes(buf, p.dstOff, buf, q.srcOff, p.ipVersion === 4 ? 4 : 16) !== 0) return false;
    const t = this.table;
    const s = this.live(t.lookup(t.loadKey(buf, q, q.srcPort, q.dstPort)), now);
    return s >= 0 && t.dir === 0 && this.owners[s] === owner;
  }

  /** Drops every flow of `owner` (its session closed). O(capacity); control path. */
  forget(owner: object): void {
    const o = this.owners;
    for (let s = 0; s < o.length; s++) if (o[s] === owner) this.release(s);
  }

  /** Expires flows idle past their state's timeout. Call about once a second, off the packet path. */
  onTimeout(now: number): void {
    const t = this.table;
    for (const st of STATES) {
      for (let s = t.headOf[st]!; s >= 0 && this.isExpired(s, now); s = t.headOf[st]!) {
        this.expired++;
        this.release(s);
      }
    }
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
  }

  private release(s: number): void {
    this.owners[s] = null;
    this.table.release(s);
  }

  private growOwners(cap: number): void {
    const o = this.owners;
    for (let i = o.length; i < cap; i++) o.push(null);
  }
}
