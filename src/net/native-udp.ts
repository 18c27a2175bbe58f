/**
 * The batched UDP socket over the C addon: recvmmsg/sendmmsg, UDP GSO on send
 * and GRO on receive, per-datagram local address (pktinfo), DF, large socket
 * buffers, uv_poll readiness.
 */
import { isIP } from 'node:net';
import { loadNative, POLL_READABLE, POLL_WRITABLE, type NativeBinding, type NativePoll } from '../native/addon.js';
import { slotArena } from './slot-arena.js';
import { readAddrSlotHost, readAddrSlotPort } from './udp-batch.js';
import { ClosedError, type UdpBatch, type UdpBatchSocket } from './udp.js';

/** Default slots per recv/send call. */
export const DEFAULT_UDP_BATCH = 64;
/** Default SO_RCVBUF / SO_SNDBUF request (FORCE variants are used when permitted, i.e. as root). */
export const DEFAULT_SOCKET_BUFFER_BYTES = 4 * 1024 * 1024;

/** What {@link openNativeUdp} needs. */
export interface NativeUdpOptions {
  /** Local address. Default `::` (dual-stack: IPv4 peers appear as ::ffff:a.b.c.d). */
  host?: string;
  /** Local port; 0 picks one. Default 0. */
  port?: number;
  /** With an IPv6 host: refuse IPv4-mapped traffic (IPV6_V6ONLY). Default false. */
  ipv6Only?: boolean;
  /** Slots per call at most (1..1024). Default 64. */
  batchSize?: number;
  /** SO_RCVBUF request in bytes. Default 4 MiB. */
  rcvbufBytes?: number;
  /** SO_SNDBUF request in bytes. Default 4 MiB. */
  sndbufBytes?: number;
  /**
   * Enable UDP GRO on receive: one slot may then hold several datagrams of
   * `segs[i]` bytes each. Only useful with 64 KiB slots (smaller slots lose
   * coalesced data as truncation drops). Default false.
   */
  gro?: boolean;
  /**
   * Coalesce consecutive equal-size slots to one peer into one UDP GSO send
   * when the kernel supports it. Default true.
   */
  gso?: boolean;
}

/** Counters of one socket; read with {@link NativeUdpSocket.stats}. */
export interface NativeUdpStats {
  rxDatagrams: number;
  rxBytes: number;
  txDatagrams: number;
  txBytes: number;
  /** Received datagrams larger than their slot: dropped. */
  rxTruncated: number;
  /** Slots the kernel refused (unreachable, too big, IPv6 peer on an IPv4 socket…): dropped. */
  txErrors: number;
  /** errno of the last refused slot (0: none). */
  txLastErrno: number;
  /** Send calls cut short by a full socket buffer. */
  txEagain: number;
  /** Messages sent as one GSO super-datagram. */
  txGsoSends: number;
  /** GSO sends the kernel refused (a path that cannot segment them): their datagrams were resent one by one. */
  txGsoRefused: number;
}

// Indexes into the native counter array (mirror enum in src/native/udp.c).
const S_RX_DATAGRAMS = 0;
const S_RX_BYTES = 1;
const S_TX_DATAGRAMS = 2;
const S_TX_BYTES = 3;
const S_RX_TRUNCATED = 4;
const S_TX_ERRORS = 5;
const S_TX_EAGAIN = 6;
const S_TX_GSO_SENDS = 7;
const S_TX_LAST_ERRNO = 8;
const S_GSO_FAILED = 9;
const S_GSO_REFUSED = 10;
const S_COUNT = 11;

/**
 * Opens and binds a non-blocking UDP socket with DF set (IP_PMTUDISC_PROBE /
 * IPV6_DONTFRAG: RFC 9000 §14 wants no fragmentation). Throws `udp: …` on a
 * bad address, a port in use (EADDRINUSE) or when the addon is not built.
 */
export function openNativeUdp(opts: NativeUdpOptions = {}): NativeUdpSocket {
  const host = opts.host ?? '::';
  const fam = isIP(host);
  if (fam === 0) throw new TypeError(`udp: "${host}" is not an IP address`);
  const family: 0 | 4 | 6 = fam === 4 ? 4 : opts.ipv6Only ? 6 : 0;
  const port = opts.port ?? 0;
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new RangeError(`udp: port ${port} out of range 0..65535`);
  const batchSize = opts.batchSize ?? DEFAULT_UDP_BATCH;
  if (!Number.isInteger(batchSize) || batchSize < 1 || batchSize > 1024) {
    throw new RangeError(`udp: batch size ${batchSize} out of range 1..1024`);
  }
  const rcv = opts.rcvbufBytes ?? DEFAULT_SOCKET_BUFFER_BYTES;
  const snd = opts.sndbufBytes ?? DEFAULT_SOCKET_BUFFER_BYTES;
  for (const [what, v] of [['rcvbufBytes', rcv], ['sndbufBytes', snd]] as const) {
    if (!Number.isInteger(v) || v < 0 || v > 0x3fffffff) throw new RangeError(`udp: ${what} ${v} out of range 0..2^30-1`);
  }
  const native = loadNative();
  const r = native.udpOpen(family, host, port, rcv, snd, opts.gro ?? false);
  return new NativeUdpSocket(native, r.fd, family, batchSize, r.gso && (opts.gso ?? true), r.gro, r.pktinfo, r.rcvbuf,
    r.sndbuf);
}

/**
 * A socket from {@link openNativeUdp}. The batch arrays stay the caller's;
 * nothing is retained after a call. After close() every method throws
 * {@link ClosedError}.
 *
 * Local addresses: `recv` writes the address each datagram arrived on into
 * the local part of its slot (IP_PKTINFO / IPV6_PKTINFO), and `send` sends a
 * slot whose local part is set from that address. So copying a received slot
 * into the reply slot (`copyAddrSlot` in udp-batch.ts) answers from the address the
 * peer used, even when bound to `::` / `0.0.0.0` on a multi-homed host.
 */
export class NativeUdpSocket implements UdpBatchSocket {
  readonly batchSize: number;
  /** 4: IPv4 socket; 6: IPv6-only; 0: dual-stack. */
  readonly family: 0 | 4 | 6;
  /** Effective SO_RCVBUF (the kernel doubles the request for bookkeeping). */
  readonly rcvbufBytes: number;
  /** Effective SO_SNDBUF. */
  readonly sndbufBytes: number;
  readonly gro: boolean;
  /** True when recv reports local addresses (IP_PKTINFO / IPV6_RECVPKTINFO accepted by the kernel). */
  readonly pktinfo: boolean;
  private gsoOn: boolean;
  private fd: number;
  private readonly native: NativeBinding;
  private readonly counters = new Float64Array(S_COUNT);
  private poll: NativePoll | undefined;
  private events = 0;
  private readableCb: (() => void) | undefined;
  private writableCb: (() => void) | undefined;
  private readonly onPoll = (ev: number): void => {
    // An error wakes whoever is waiting, so that their next call sees it; a paused reader is not (another reader owns the socket then).
    if (ev < 0) ev = this.events & (POLL_READABLE | POLL_WRITABLE);
    if (ev & POLL_WRITABLE) {
      this.setEvents(this.events & ~POLL_WRITABLE);
      this.writableCb?.();
    }
    if (ev & POLL_READABLE && this.fd >= 0) this.readableCb?.();
  };

  /** @internal Use {@link openNativeUdp}. */
  constructor(native: NativeBinding, fd: number, family: 0 | 4 | 6, batchSize: number, gso: boolean, gro: boolean,
    pktinfo: boolean, rcvbuf: number, sndbuf: number) {
    this.native = native;
    this.fd = fd;
    this.family = family;
    this.batchSize = batchSize;
    this.gsoOn = gso;
    this.gro = gro;
    this.pktinfo = pktinfo;
    this.rcvbufBytes = rcvbuf;
    this.sndbufBytes = sndbuf;
  }

  /** True while UDP GSO is used (turned off for good if the kernel refuses it with EIO). */
  get gso(): boolean {
    return this.gsoOn;
  }

  /** Datagrams the kernel refused on send (dropped; see {@link stats}). */
  get txRefused(): number {
    return this.counters[S_TX_ERRORS]!;
  }

  /** GSO sends the kernel refused, their datagrams resent one by one. */
  get txGsoRefused(): number {
    return this.counters[S_GSO_REFUSED]!;
  }

  private check(): number {
    if (this.fd < 0) throw new ClosedError('udp socket');
    return this.fd;
  }

  nativeFd(): number {
    return this.check();
  }

  /**
   * One recvmmsg into slots [0, min(batch size, bufs.length)): data, size,
   * address slot (source, and the local address it arrived on — zero when
   * the kernel did not say), GRO segment size (0 when not coalesced). Returns
   * the count; 0 when nothing is waiting. Oversized datagrams are dropped
   * and counted (rxTruncated).
   */
  recv(batch: UdpBatch): number {
    const a = slotArena(batch.bufs);
    return this.native.udpRecv(this.check(), a !== undefined ? a.buf : batch.bufs, batch.sizes, batch.addrs, batch.segs, this.batchSize,
      this.counters, a !== undefined ? a.stride : 0);
  }

  /**
   * Sends slots [0, count) to their address slots, from the slot's local
   * address when set (IP_PKTINFO / IPV6_PKTINFO; a local address the host no
   * longer has makes the kernel refuse the slot). Consecutive equal-size
   * slots to one peer from one local address go as one GSO send; segs[i] > 0
   * sends slot i as one GSO super-datagram of that segment size. Returns
   * slots consumed: sent, or refused by the kernel (dropped and counted in
   * txErrors). When the
   * socket buffer is full the rest stay the caller's and onWritable fires
   * once there is room.
   */
  send(batch: UdpBatch, count: number): number {
    const fd = this.check();
    const n = this.native.udpSend(fd, this.family, batch.bufs, batch.sizes, batch.addrs, batch.segs, count,
      this.gsoOn, this.counters);
    if (this.counters[S_GSO_FAILED] === 1) this.gsoOn = false;
    if (n < count) this.setEvents(this.events | POLL_WRITABLE);
    return n;
  }

  private setEvents(ev: number): void {
    if (this.fd < 0 || ev === this.events) return;
    this.events = ev;
    if (!this.poll) this.poll = this.native.pollStart(this.fd, ev, this.onPoll);
    else this.native.pollSet(this.poll, ev);
  }

  /** Level-triggered: cb runs on every loop turn while datagrams wait. One callback; replaces the last. */
  onReadable(cb: () => void): void {
    this.check();
    this.readableCb = cb;
    this.setEvents(this.events | POLL_READABLE);
  }

  /** Stops read readiness (the event loop may exit) until onReadable is called again. */
  pauseReadable(): void {
    this.check();
    this.setEvents(this.events & ~POLL_READABLE);
  }

  /** cb runs once after a short send, when the socket has room again. One callback; replaces the last. */
  onWritable(cb: () => void): void {
    this.check();
    this.writableCb = cb;
  }

  /** Bound address (IPv4 as dotted quad, IPv6 in RFC 5952 form). */
  localAddress(): { address: string; port: number; family: 4 | 6 } {
    const r = this.native.udpLocal(this.check());
    return { address: readAddrSlotHost(r.slot, 0), port: readAddrSlotPort(r.slot, 0), family: r.family };
  }

  /** A snapshot of the counters. */
  stats(): NativeUdpStats {
    const c = this.counters;
    return {
      rxDatagrams: c[S_RX_DATAGRAMS]!,
      rxBytes: c[S_RX_BYTES]!,
      txDatagrams: c[S_TX_DATAGRAMS]!,
      txBytes: c[S_TX_BYTES]!,
      rxTruncated: c[S_RX_TRUNCATED]!,
      txErrors: c[S_TX_ERRORS]!,
      txLastErrno: c[S_TX_LAST_ERRNO]!,
      txEagain: c[S_TX_EAGAIN]!,
      txGsoSends: c[S_TX_GSO_SENDS]!,
      txGsoRefused: c[S_GSO_REFUSED]!,
    };
  }

  /** Stops readiness callbacks and closes the fd. Idempotent; other calls afterwards throw ClosedError. */
  close(): void {
    if (this.fd < 0) return;
    if (this.poll) {
      this.native.pollClose(this.poll);
      this.poll = undefined;
    }
    const fd = this.fd;
    this.fd = -1;
    this.readableCb = undefined;
    this.writableCb = undefined;
    this.native.closeFd(fd);
  }
}
