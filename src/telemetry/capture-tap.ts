/**
 * The packet capture tap on a daemon's data path: one hook per direction
 * (`if (tap.active) tap.offer(…)`), a filter, and a bounded byte ring the
 * admin endpoint drains into pcapng. Inactive it costs one field read.
 */
import { parseIpPacket, PacketInfo } from '../packet/ip-packet.js';
import type { IpPrefix } from '../packet/ip-address.js';

/** Interface ids of the tap, in pcapng interface order. */
export const TapInterface = {
  /** Read from this daemon's TUN and sent into the tunnel. */
  TUN_IN: 0,
  /** Received from the tunnel and written to this daemon's TUN. */
  TUN_OUT: 1,
} as const;

/** Interface names as written in the pcapng IDBs, e.g. `agent:tun-in`. */
export function tapInterfaceNames(reporter: string): readonly [string, string] {
  return [`${reporter}:tun-in`, `${reporter}:tun-out`];
}

/** Transport protocol filter; `icmp` matches ICMP and ICMPv6. */
export type CaptureProtocol = 'tcp' | 'udp' | 'icmp';

/** What one capture keeps. Every field optional except the limits. */
export interface CaptureFilter {
  /** Keep packets whose source or destination lies in this prefix. */
  readonly prefix?: IpPrefix;
  /** Keep TCP/UDP packets with this source or destination port. */
  readonly port?: number;
  readonly protocol?: CaptureProtocol;
  /** Bytes kept of each packet (1…65535). */
  readonly snapLenBytes: number;
  /** Stop after this many packets were queued. */
  readonly maxPackets: number;
  /** Stop after this many packet bytes (after the snap length) were queued. */
  readonly maxBytes: number;
}

/** Sizing of a capture's ring (`admin.capture` in the config). */
export interface CaptureRingSize {
  /** Bytes of packet data the ring holds while the reader catches up. */
  readonly queueBytes: number;
  /** Packets the ring holds. */
  readonly queuePackets: number;
}

/** Why a capture stopped taking packets. */
export type CaptureEnd = 'packet_cap' | 'byte_cap' | 'stopped';

/**
 * One capture at a time. The data path calls {@link offer} only while
 * {@link active}; the admin endpoint {@link start}s it, {@link drain}s it
 * and {@link stop}s it. The ring is allocated at start and released at stop.
 */
export class CaptureTap {
  /** Read on the data path before calling {@link offer}. */
  active = false;
  /** Set when the filter's packet or byte cap ended the capture (the reader drains what is left). */
  ended: CaptureEnd | null = null;
  /** Per interface: packets that passed the filter, and of those, dropped because the ring was full. */
  readonly matched = new Float64Array(2);
  readonly dropped = new Float64Array(2);
  /** Packets and bytes queued so far (what the caps count). */
  queuedPackets = 0;
  queuedBytes = 0;

  private filter: CaptureFilter | null = null;
  private readonly info = new PacketInfo();
  private arena: Buffer | null = null;
  private ts = new Float64Array(0);
  private start0 = new Uint32Array(0);
  private capLen = new Uint32Array(0);
  private origLen = new Uint32Array(0);
  private iface = new Uint8Array(0);
  private head = 0;
  private count = 0;
  private wpos = 0;

  /** Whether a capture is running (or its ring still holds packets to drain). */
  get busy(): boolean {
    return this.filter !== null;
  }

  /** Starts a capture with `filter`; allocates a ring of `ring` size. Throws `capture: …` if one is running. */
  start(filter: CaptureFilter, ring: CaptureRingSize): void {
    if (this.filter !== null) throw new Error('capture: a capture is already running');
    this.filter = filter;
    const n = ring.queuePackets;
    this.arena = Buffer.allocUnsafe(ring.queueBytes);
    this.ts = new Float64Array(n);
    this.start0 = new Uint32Array(n);
    this.capLen = new Uint32Array(n);
    this.origLen = new Uint32Array(n);
    this.iface = new Uint8Array(n);
    this.head = this.count = this.wpos = 0;
    this.matched.fill(0);
    this.dropped.fill(0);
    this.queuedPackets = this.queuedBytes = 0;
    this.ended = null;
    this.active = true;
  }

  /** Ends the capture and releases the ring. Idempotent. */
  stop(): void {
    this.active = false;
    this.filter = null;
    this.arena = null;
    this.count = 0;
    if (this.ended === null) this.ended = 'stopped';
  }

  /**
   * Data path, only while {@link active}: buf[off, off+len) is an IP packet
   * crossing the tunnel on interface `ifaceId` at `tsMs`. If it passes the
   * filter its first snap-length bytes are copied into the ring, or it is
   * counted dropped when the ring is full. The buffer is not kept.
   */
  offer(buf: Uint8Array, off: number, len: number, ifaceId: number, tsMs: number): void {
    const f = this.filter;
    if (f === null || len <= 0 || !this.matches(f, buf, off, len)) return;
    this.matched[ifaceId]! += 1;
    const cap = len < f.snapLenBytes ? len : f.snapLenBytes;
    const at = this.reserve(cap);
    if (at < 0) {
      this.dropped[ifaceId]! += 1;
      return;
    }
    // Buffer#copy accepts any Uint8Array source and allocates no view.
    bufferCopy.call(buf, this.arena!, at, off, off + cap);
    const i = (this.head + this.count) % this.ts.length;
    this.ts[i] = tsMs;
    this.start0[i] = at;
    this.capLen[i] = cap;
    this.origLen[i] = len;
    this.iface[i] = ifaceId;
    this.count++;
    this.wpos = at + cap;
    this.queuedPackets++;
    this.queuedBytes += cap;
    if (this.queuedPackets >= f.maxPackets) this.end('packet_cap');
    else if (this.queuedBytes >= f.maxBytes) this.end('byte_cap');
  }

  /**
   * Off the data path: hands each queued packet, oldest first, to `emit`
   * (bytes borrowed for the call: arena[off, off+capLen)), up to `max`.
   * Returns how many were emitted.
   */
  drain(max: number, emit: (ifaceId: number, tsMs: number, arena: Buffer, off: number, capLen: number, origLen: number) => void): number {
    const a = this.arena;
    if (a === null) return 0;
    let n = 0;
    while (this.count > 0 && n < max) {
      const i = this.head;
      emit(this.iface[i]!, this.ts[i]!, a, this.start0[i]!, this.capLen[i]!, this.origLen[i]!);
      this.head = (i + 1) % this.ts.length;
      this.count--;
      n++;
    }
    return n;
  }

  /** Captured length of the oldest queued packet (0 when none). */
  get nextCapLen(): number {
    return this.count > 0 ? this.capLen[this.head]! : 0;
  }

  /** Packets waiting in the ring. */
  get pending(): number {
    return this.count;
  }

  private end(why: CaptureEnd): void {
    this.ended = why;
    this.active = false;
  }

  /** Offset in the arena where `cap` contiguous bytes fit, or -1 (ring full). */
  private reserve(cap: number): number {
    const size = this.arena!.length;
    if (this.count === this.ts.length || cap > size) return -1;
    if (this.count === 0) return 0;
    const rpos = this.start0[this.head]!;
    if (this.wpos >= rpos) {
      if (this.wpos + cap <= size) return this.wpos;
      return cap < rpos ? 0 : -1;
    }
    return this.wpos + cap < rpos ? this.wpos : -1;
  }

  private matches(f: CaptureFilter, buf: Uint8Array, off: number, len: number): boolean {
    if (f.prefix === undefined && f.port === undefined && f.protocol === undefined) return true;
    const pi = this.info;
    if (parseIpPacket(buf, off, len, pi) !== 0) return false;
    if (f.protocol !== undefined) {
      const p = pi.proto;
      if (f.protocol === 'tcp' ? p !== 6 : f.protocol === 'udp' ? p !== 17 : p !== 1 && p !== 58) return false;
    }
    if (f.port !== undefined) {
      if (pi.proto !== 6 && pi.proto !== 17) return false;
      if (pi.srcPort !== f.port && pi.dstPort !== f.port) return false;
    }
    if (f.prefix !== undefined) {
      const p = f.prefix;
      if ((p.version === 4) !== (pi.ipVersion === 4)) return false;
      if (!inPrefix(p, buf, pi.srcOff) && !inPrefix(p, buf, pi.dstOff)) return false;
    }
    return true;
  }
}

const bufferCopy = Buffer.prototype.copy as (this: Uint8Array, target: Uint8Array, targetStart: number, sourceStart: number, sourceEnd: number) => number;

function inPrefix(p: IpPrefix, buf: Uint8Array, at: number): boolean {
  let bits = p.prefixLength;
  for (let i = 0; bits > 0; i++, bits -= 8) {
    const mask = bits >= 8 ? 0xff : (0xff << (8 - bits)) & 0xff;
    if ((buf[at + i]! & mask) !== (p.address[i]! & mask)) return false;
  }
  return true;
}
