/**
 * The agent's data path on a native thread (issue #13; the C side is
 * `src/native/dataplane.c`, the design `docs/decisions/0003-data-plane-threads.md`).
 *
 * TUN → UDP: while attached to a QUIC connection, the thread reads the TUN,
 * queues the plain packets on the connection (HTTP Datagram prefix written
 * in front of each) and packetizes, encrypts and sends them without waking
 * the event loop.
 *
 * UDP → TUN, when attached with the session's receive table: the thread is
 * the socket's reader. It hands the connection its packets, writes the
 * session's plain packets (the receive check passes, no fragment; a SYN's MSS clamped)
 * into the TUN, and sends the ACKs. A DATAGRAM for the event loop's path
 * holds it: that one and all after it wait in the connection's queue for
 * HTTP/3 as always, and the thread reads nothing until {@link resume}.
 * Datagrams for another connection ID or from another address go to the
 * endpoint through a second ring ({@link drainEndpoint}).
 *
 * Every packet either way is handed to JavaScript in order through a ring:
 * those the thread sent or wrote only to be observed (flow tracker,
 * counters, capture), the others to go through the TypeScript path as if
 * JavaScript had read them (the session's checks, Packet
 * Too Big, counted drops). The rings' slots are this object's; a handler may
 * read and rewrite a packet during its call only.
 */
import { loadNative, type NativeBinding, type NativeDataPlane, type NativeJudgeTable } from '../native/addon.js';
import { ADDR_SLOT_BYTES } from '../net/udp.js';
import { allocSlots, slotArena } from '../net/slot-arena.js';
import type { UdpBatchSocket } from '../net/udp.js';
import type { TunDevice } from '../tun/tun.js';

/** Ring entry kinds (dataplane.c DP_KIND_*). */
export const TUN_THREAD_SENT = 1;
export const TUN_THREAD_JS = 2;
/** A packet from the gateway the thread wrote into the TUN. */
export const TUN_THREAD_IN = 3;
/** An HTTP Datagram payload (quarter stream ID first) the thread took from the connection, for HTTP/3 (another stream or context, a failed check). */
export const TUN_THREAD_H3 = 4;

/**
 * Slots of the endpoint ring and their size: datagrams the thread does not
 * handle (another connection ID or source: rare on an agent), and the rest
 * of a receive round after a hold — at most 8 GRO super-datagrams of 64
 * segments (dataplane.c DP_RX_SLOTS).
 */
const ENDPOINT_SLOTS = 512;
/**
 * A gateway's endpoint ring: the thread also hands it every connection it
 * does not carry (handshakes, CONNECT-UDP-only connections), and what does
 * not fit is dropped (counted, RX_DROPPED): at 1,000 agents opening at once
 * the 512 slots overflowed by thousands. 2,048 slots of 2 kB, touched only
 * when used.
 */
export const GATEWAY_ENDPOINT_SLOTS = 2048;
const ENDPOINT_SLOT_BYTES = 2048;

/** Slots in the ring (a power of two: the indices wrap at 2^32): what JavaScript may fall behind by before the thread stops reading (the TUN queue holds the rest). */
const RING_SLOTS = 2048;

/** dpStats indices (dataplane.c DP_S_*). */
export const enum TunThreadStat {
  READ, READ_BYTES, QUEUED, TO_JS, UDP_DATAGRAMS, UDP_BYTES, UDP_CALLS, UDP_GSO, UDP_DROPPED, RING_FULL, WAKES,
  RX_DATAGRAMS, RX_BYTES, RX_TUN, RX_TUN_BYTES, RX_TUN_DROPPED, RX_HELD, RX_TO_ENDPOINT, RX_DROPPED, RX_ERRORS, RX_REFUSED, RX_TO_H3, UDP_GSO_REFUSED, RX_GRO, UDP_STALLS, LENGTH,
}

/**
 * Handles one packet of the ring: buf[off, off + len), read at `atMs` (the
 * daemon's clock); kind TUN_THREAD_*; `slot` the attachment it was sent,
 * written or taken for (TUN_THREAD_SENT, _IN, _H3), -1 for TUN_THREAD_JS.
 */
export type TunThreadHandler = (buf: Buffer, off: number, len: number, kind: number, atMs: number, slot: number) => void;

/** Attachments a thread carries at once (dataplane.c DP_ATT_MAX): slots 0 to this minus one. */
export const TUN_THREAD_SLOTS = 4096;

/** Handles one datagram for the endpoint: buf[off, off + len) from address slot `i` of `addrs`. */
export type TunThreadDatagramHandler = (buf: Buffer, off: number, len: number, addrs: Uint8Array, i: number) => void;

export class TunThread {
  private readonly native: NativeBinding;
  private readonly dp: NativeDataPlane;
  private readonly slots: Buffer[];
  private readonly meta: Uint32Array;
  private readonly stamps: Float64Array;
  private readonly ctl = new Uint32Array(4);
  private readonly uslots: Buffer[];
  private readonly umeta: Uint32Array;
  private readonly uaddrs: Uint8Array;
  private readonly uslotCount: number;
  /** One address slot handed to the endpoint's handler (its index 0). */
  private readonly uaddr = new Uint8Array(ADDR_SLOT_BYTES);
  private readonly st = new Float64Array(TunThreadStat.LENGTH);
  /** performance.now() minus the ring stamps' clock (both monotonic; fixed). */
  private readonly perfOffset: number;
  private closed = false;
  /** The connection in each attached slot. */
  private readonly attachedTo = new Map<number, unknown>();
  /** Slots attached with a receive table. */
  private readonly rxSlots = new Set<number>();

  /**
   * Opens the thread on `tun` and the endpoint's `udp` socket; null when
   * either has no kernel fd (in-memory devices in tests), and the caller
   * keeps the TypeScript path. `onReady` runs on the event loop after the
   * thread published a packet for the event loop's path, a quarter of the
   * ring, packets that waited 2 ms, or its read failed; it calls {@link drain}.
   * Packets the thread sent wait in the ring until then, or until the owner
   * drains it for another reason ({@link hasPending}). `slotMtu`: the
   * largest IP packet a ring slot takes (default the TUN's MTU; a gateway
   * passes the largest an agent may send, which the agent's TUN MTU sets,
   * not the gateway's). `endpointSlots` (a power of two): the endpoint
   * ring's size ({@link GATEWAY_ENDPOINT_SLOTS} for a gateway).
   */
  static open(tun: TunDevice, udp: UdpBatchSocket, headroom: number, onReady: () => void, slotMtu = tun.mtu, endpointSlots = ENDPOINT_SLOTS): TunThread | null {
    if (tun.nativeFd === undefined || udp.nativeFd === undefined) return null;
    return new TunThread(tun, udp, headroom, onReady, slotMtu, endpointSlots);
  }

  private constructor(tun: TunDevice, udp: UdpBatchSocket, readonly headroom: number, onReady: () => void, slotMtu: number, endpointSlots: number) {
    this.native = loadNative();
    const { fd, vnet } = tun.nativeFd!();
    this.slots = allocSlots(RING_SLOTS, headroom + slotMtu);
    const arena = slotArena(this.slots)!;
    this.meta = new Uint32Array(2 * RING_SLOTS);
    this.stamps = new Float64Array(RING_SLOTS);
    this.uslotCount = endpointSlots;
    this.umeta = new Uint32Array(endpointSlots);
    this.uaddrs = new Uint8Array(endpointSlots * ADDR_SLOT_BYTES);
    this.uslots = allocSlots(endpointSlots, ENDPOINT_SLOT_BYTES);
    const uarena = slotArena(this.uslots)!;
    this.dp = this.native.dpOpen(fd, vnet, udp.nativeFd!(), udp.gso, arena.buf, arena.stride, headroom, slotMtu,
      this.meta, this.stamps, this.ctl, onReady, uarena.buf, uarena.stride, this.umeta, this.uaddrs);
    this.perfOffset = performance.now() - this.native.dpNow();
  }

  /** The connection the thread sends on in slot 0 (an agent's only one; an engine handle), or null. */
  get attached(): unknown {
    return this.attachedTo.get(0) ?? null;
  }

  /** Attachments in all slots. */
  get attachedCount(): number {
    return this.attachedTo.size;
  }

  /** True while the thread also receives (some slot attached with a receive table): the endpoint must not read the socket. */
  get receiving(): boolean {
    return this.rxSlots.size > 0;
  }

  /**
   * Sends the plain packets on `conn` (QuicConnection's engine handle), each
   * after `prefix` (quarter stream ID, context ID 0); IPv6 only while `ipv6`.
   * With `receiveTable` (the session's receive check from `judgeTable`) the
   * thread also reads the socket. An agent's table (`compileAgentTable`):
   * the agent's legs. A gateway's (`compileGatewayTable`): the thread also
   * decrements the TTL of what it writes into the TUN when the table says
   * so, and of what it reads from the TUN sends only the answers on flows it
   * saw the agent send on within `flowTtlMs` (no RST or FIN: those, and
   * everything else, take the event loop's path and its inbound filter).
   * `mssMtu` (0: none) clamps the MSS of SYNs both ways, as the agent's
   * `mssClamp`. `slot` (0 to {@link TUN_THREAD_SLOTS} − 1): a gateway
   * attaches each agent connection in a slot of its own (one connection per
   * slot), and the ring's entries for it carry the slot; reuse a slot only
   * after draining what was published before its detach. Replaces an
   * earlier attachment in the slot (and forgets its flows). `local` (16
   * bytes, the local part of an address slot): the source address of what
   * the thread sends until it receives for the connection (then the address
   * the peer's datagrams arrive at, as the endpoint does).
   * (The TUN is the thread's from {@link open} on, attached or not: the
   * caller never reads it itself.)
   */
  attach(conn: unknown, prefix: Uint8Array, ipv6: boolean, receiveTable: NativeJudgeTable | null = null, mssMtu = 0, flowTtlMs = 0, slot = 0, local?: Uint8Array): void {
    if (this.closed) return;
    this.native.dpAttach(this.dp, conn, prefix, ipv6, receiveTable, mssMtu, flowTtlMs, slot, local);
    this.attachedTo.set(slot, conn);
    if (receiveTable !== null) this.rxSlots.add(slot);
    else this.rxSlots.delete(slot);
  }

  /**
   * The attachments whose connections the thread fed QUIC packets since the
   * last call: pairs [slot, packets] in `out`; returns the pairs written (at
   * most out.length / 2; call again while it fills `out`).
   */
  touched(out: Uint32Array): number {
    return this.closed ? 0 : this.native.dpTouched(this.dp, out);
  }

  /**
   * A gateway's thread forgets the flows it saw the agent send on: their
   * answers take the event loop's path (and its inbound filter) until the
   * agent sends on them again. For when the inbound table dropped flows
   * before their timeout (evicted at its limits, forgotten with an owner).
   */
  forgetFlows(): void {
    if (!this.closed) this.native.dpForgetFlows(this.dp);
  }

  /**
   * The event loop handled what held the receive leg (the connection's
   * DATAGRAM queue): the thread receives again. `held` is
   * {@link TunThreadStat.RX_HELD} as read before the event loop looked at
   * the queue; a hold the thread set after that stays.
   */
  resume(held: number): void {
    if (!this.closed && this.rxSlots.size > 0) this.native.dpResume(this.dp, held);
  }

  /** True when the endpoint ring holds datagrams (no call into C; also after {@link close}: the ring is ours). */
  hasEndpointPending(): boolean {
    return Atomics.load(this.ctl, 2) !== (this.uconsTaken ?? this.ctl[3]);
  }

  /**
   * Hands every datagram of the endpoint ring to `handler`, oldest first,
   * then releases them (with `release` false, only at {@link releaseEndpoint}:
   * a gateway releases them after writing what it took into the TUN, since
   * a connection attached meanwhile waits for that release before the
   * thread writes its newer packets). Returns how many. After {@link close}
   * it hands what the thread received before it stopped.
   */
  drainEndpoint(handler: TunThreadDatagramHandler, release = true): number {
    const ctl = this.ctl;
    const prod = Atomics.load(ctl, 2);
    let cons = this.uconsTaken ?? ctl[3]!;
    let count = 0;
    try {
      while (cons !== prod) {
        const i = cons % this.uslotCount;
        cons = (cons + 1) >>> 0;
        count++;
        this.uaddr.set(this.uaddrs.subarray(i * ADDR_SLOT_BYTES, (i + 1) * ADDR_SLOT_BYTES));
        handler(this.uslots[i]!, 0, this.umeta[i]!, this.uaddr, 0);
      }
    } finally {
      this.uconsTaken = cons;
      if (release) this.releaseEndpoint();
    }
    return count;
  }

  /** Datagrams handed over by {@link drainEndpoint} and not released yet: the consumer index to store. */
  private uconsTaken: number | null = null;

  /** Releases what {@link drainEndpoint} handed over without releasing. */
  releaseEndpoint(): void {
    if (this.uconsTaken === null) return;
    Atomics.store(this.ctl, 3, this.uconsTaken);
    this.uconsTaken = null;
  }

  /**
   * The thread forgets the connection in `slot`, or every one: on return it
   * no longer uses it, and what it read before is in the ring. It goes on
   * reading the TUN and hands what it reads for it to the event loop's path.
   */
  detach(slot?: number): void {
    if (this.closed) return;
    if (slot === undefined) {
      if (this.attachedTo.size === 0) return;
      this.native.dpDetach(this.dp);
      this.attachedTo.clear();
      this.rxSlots.clear();
      return;
    }
    if (!this.attachedTo.has(slot)) return;
    this.native.dpDetach(this.dp, slot);
    this.attachedTo.delete(slot);
    this.rxSlots.delete(slot);
  }

  /**
   * One read on this thread without sending (what the kernel answered inside
   * a TUN write, just before the endpoint sends); what it read is in the
   * ring for {@link drain}. Throws `tun: read: …` once the device failed.
   * `out`: out[0] the attachments it queued packets on, their slots after
   * it; their connections must be sent (the caller marks them).
   */
  poll(out?: Uint32Array): void {
    if (this.closed) {
      if (out !== undefined && out.length > 0) out[0] = 0;
      return;
    }
    this.native.dpPoll(this.dp, out);
  }

  /** True when the ring holds packets not yet drained (no call into C). */
  hasPending(): boolean {
    return !this.closed && Atomics.load(this.ctl, 0) !== this.ctl[1];
  }

  /**
   * Hands every published packet to `handler`, oldest first, then releases
   * their slots. Returns how many. `nowMs` is the daemon's clock now: each
   * packet's time is it minus how long ago the thread read the packet, in
   * whole µs.
   */
  drain(handler: TunThreadHandler, nowMs: number): number {
    if (this.closed) return 0;
    return this.take(handler, nowMs, true);
  }

  private take(handler: TunThreadHandler, nowMs: number, release: boolean): number {
    const ctl = this.ctl;
    const prod = Atomics.load(ctl, 0);
    let cons = ctl[1]!;
    if (prod === cons) return 0;
    const perfNow = performance.now();
    const n = this.slots.length;
    let count = 0;
    try {
      while (cons !== prod) {
        const i = cons % n;
        const age = perfNow - (this.stamps[i]! + this.perfOffset);
        cons = (cons + 1) >>> 0;
        count++;
        // Whole µs, as the daemon's clock gives them (preciseNowMs): the capture tap and the tracker see the same times.
        const kind = this.meta[2 * i + 1]!;
        handler(this.slots[i]!, this.headroom, this.meta[2 * i]!, kind & 0xff, age > 0 ? Math.round((nowMs - age) * 1000) / 1000 : nowMs, (kind >>> 8) - 1);
      }
    } finally {
      // Released even when a handler threw: the thread must not wait on a slot nobody will hand back.
      Atomics.store(ctl, 1, cons);
      if (release) this.native.dpRelease(this.dp);
    }
    return count;
  }

  /** errno of a failed TUN read (the data path is dead), 0 while healthy. */
  readError(): number {
    return this.closed ? 0 : this.native.dpError(this.dp);
  }

  /** The thread's counters (TunThreadStat indices); the array is reused. */
  stats(): Float64Array {
    if (!this.closed) this.native.dpStats(this.dp, this.st);
    return this.st;
  }

  /**
   * Stops and joins the thread, then hands what it read to `handler` (all
   * of it: the thread has stopped). Idempotent. The TUN and the socket stay
   * their owners'.
   */
  close(handler?: TunThreadHandler, nowMs = 0): void {
    if (this.closed) return;
    this.detach();
    this.native.dpStats(this.dp, this.st);
    this.native.dpClose(this.dp);
    this.closed = true;
    if (handler) this.take(handler, nowMs, false);
  }
}
