/**
 * Packet impairer for tests (this kernel has no tc netem): seeded random loss,
 * delay and jitter (jitter reorders), reordering by holding chosen packets
 * back, payload corruption (checksum kept valid so the endpoint, not the
 * kernel, must notice) and a blackhole switch, as a sans-IO core plus a TUN bridge that
 * runs it inside a middle namespace. Reused by later end-to-end tests.
 *
 *   ns A ── veth ── ns M ── veth ── ns B
 *                    │  ip rule iif <veth> → table 100 → default dev <tun>
 *                    └─ <tun> ⇄ this process: Impairer (loss, delay, jitter) ⇄ write back into <tun>
 *                       (written packets arrive "from" the TUN and follow the main table onward)
 */
import { execFileSync } from 'node:child_process';
import { checksumUpdate16 } from '../../src/packet/checksum.js';
import { openTun, type NativeTun } from '../../src/tun/native-tun.js';

/** What the impairer does to each packet. */
export interface ImpairOptions {
  /** Percent of packets dropped, 0..100. */
  lossPercent: number;
  /** Fixed one-way delay added to every packet, ms. */
  delayMs: number;
  /** Extra uniform random delay 0..jitterMs per packet; packets overtake each other when it exceeds their spacing. */
  jitterMs: number;
  /** Percent of packets held back an extra `reorderDelayMs`, so the ones after them overtake. Default 0. */
  reorderPercent?: number;
  /** Extra hold of a reordered packet, ms. Default 10. */
  reorderDelayMs?: number;
  /**
   * Percent of packets with one payload byte flipped. For TCP and UDP the
   * transport checksum is patched (RFC 1624) so the kernel delivers the packet
   * and the endpoint's own integrity check (QUIC AEAD, TLS) must catch it.
   * Default 0.
   */
  corruptPercent?: number;
  /** RNG seed (xorshift32), so a failing run can be replayed. */
  seed: number;
  /** Packets held at most; beyond that, drops are counted as queueFull. Default 8192. */
  maxQueue?: number;
  /** Largest packet, bytes. Default 65535. */
  maxPacketBytes?: number;
  /**
   * Bridge only: release packets within ~0.1 ms of their due time (the last
   * millisecond is waited out with setImmediate) instead of setTimeout's 1 ms
   * granularity. Costs CPU while packets are nearly due; for low-rate
   * latency measurements. Default false.
   */
  preciseTimers?: boolean;
}

/** Counters of an {@link Impairer}. */
export interface ImpairStats {
  received: number;
  lost: number;
  queueFull: number;
  sent: number;
  /** Packets released before one that arrived earlier. */
  reordered: number;
  /** Packets with a flipped byte. */
  corrupted: number;
  /** Packets dropped while the blackhole was on. */
  blackholed: number;
}

/**
 * Sans-IO core: `offer` packets as they arrive, `take` the ones due. Packet
 * bytes are copied into preallocated slots on offer; the caller's buffer is
 * free again when offer returns.
 */
export class Impairer {
  readonly stats: ImpairStats = { received: 0, lost: 0, queueFull: 0, sent: 0, reordered: 0, corrupted: 0, blackholed: 0 };
  /** While true every offered packet is dropped (counted as `blackholed`): a dead path, switched at run time. */
  blackhole = false;
  private readonly slots: Buffer[];
  private readonly lens: Uint32Array;
  private readonly due: Float64Array;
  private readonly order: Float64Array; // arrival sequence, breaks ties and detects reordering
  private readonly heap: Int32Array;
  private heapLen = 0;
  private readonly free: Int32Array;
  private freeTop: number;
  private rng: number;
  private arrivals = 0;
  private lastReleased = -1;
  private readonly opts: Required<ImpairOptions>;

  constructor(opts: ImpairOptions) {
    this.opts = { maxQueue: 8192, maxPacketBytes: 65535, reorderPercent: 0, reorderDelayMs: 10, corruptPercent: 0, preciseTimers: false, ...opts };
    for (const k of ['lossPercent', 'reorderPercent', 'corruptPercent'] as const) {
      if (!(this.opts[k] >= 0 && this.opts[k] <= 100)) throw new Error(`impair: ${k} ${this.opts[k]} out of 0..100`);
    }
    const n = this.opts.maxQueue;
    this.slots = Array.from({ length: n }, () => Buffer.allocUnsafe(this.opts.maxPacketBytes));
    this.lens = new Uint32Array(n);
    this.due = new Float64Array(n);
    this.order = new Float64Array(n);
    this.heap = new Int32Array(n);
    this.free = new Int32Array(n);
    for (let i = 0; i < n; i++) this.free[i] = n - 1 - i;
    this.freeTop = n;
    this.rng = (opts.seed >>> 0) || 0x9e3779b9;
  }

  private rand(): number {
    let x = this.rng;
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    this.rng = x;
    return x / 4294967296;
  }

  /** Takes a copy of buf[off, off+len) arriving at nowMs. Returns false when it was dropped (loss or full queue). */
  offer(buf: Uint8Array, off: number, len: number, nowMs: number): boolean {
    this.stats.received++;
    const seq = this.arrivals++;
    if (this.blackhole) { this.stats.blackholed++; return false; }
    if (this.rand() * 100 < this.opts.lossPercent) { this.stats.lost++; return false; }
    if (this.freeTop === 0 || len > this.opts.maxPacketBytes) { this.stats.queueFull++; return false; }
    const s = this.free[--this.freeTop]!;
    this.slots[s]!.set(buf.subarray(off, off + len), 0);
    this.lens[s] = len;
    if (this.opts.corruptPercent > 0 && this.rand() * 100 < this.opts.corruptPercent && this.corrupt(this.slots[s]!, len)) this.stats.corrupted++;
    let hold = this.opts.delayMs + this.rand() * this.opts.jitterMs;
    if (this.opts.reorderPercent > 0 && this.rand() * 100 < this.opts.reorderPercent) hold += this.opts.reorderDelayMs;
    this.due[s] = nowMs + hold;
    this.order[s] = seq;
    // Sift up.
    let i = this.heapLen++;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.before(s, this.heap[p]!)) break;
      this.heap[i] = this.heap[p]!;
      i = p;
    }
    this.heap[i] = s;
    return true;
  }

  /** Changes the impairment of packets offered from now on (loss, delay, jitter, reordering, corruption); held packets keep their due time. */
  configure(opts: Partial<Pick<ImpairOptions, 'lossPercent' | 'delayMs' | 'jitterMs' | 'reorderPercent' | 'reorderDelayMs' | 'corruptPercent'>>): void {
    for (const k of ['lossPercent', 'reorderPercent', 'corruptPercent'] as const) {
      const v = opts[k];
      if (v !== undefined && !(v >= 0 && v <= 100)) throw new Error(`impair: ${k} ${v} out of 0..100`);
    }
    Object.assign(this.opts, opts);
  }

  /**
   * Flips one byte after the transport header (anywhere after the IP header
   * for other protocols) and patches the TCP/UDP checksum so it still
   * verifies. IPv6 extension headers are not walked (the packet is then
   * corrupted without a patch and the kernel drops it). Returns false when
   * there is no payload to corrupt.
   */
  private corrupt(p: Buffer, len: number): boolean {
    if (len < 20) return false;
    const v = p[0]! >> 4;
    const ipLen = v === 4 ? (p[0]! & 0x0f) * 4 : v === 6 ? 40 : 0;
    if (ipLen === 0 || len <= ipLen) return false;
    const proto = v === 4 ? p[9]! : p[6]!;
    let l4Len = 0;
    let csumOff = -1;
    if (proto === 17 && len >= ipLen + 8) { l4Len = 8; csumOff = ipLen + 6; }
    else if (proto === 6 && len >= ipLen + 20) { l4Len = (p[ipLen + 12]! >> 4) * 4; csumOff = ipLen + 16; }
    const start = ipLen + l4Len;
    if (len <= start) return false;
    const at = start + Math.floor(this.rand() * (len - start));
    const flip = 1 + Math.floor(this.rand() * 255);
    // RFC 1624 eqn. 3 on the 16-bit word holding the byte (words count from the transport header).
    const wordAt = at - ((at - ipLen) & 1);
    const oldWord = (p[wordAt]! << 8) | (wordAt + 1 < len ? p[wordAt + 1]! : 0);
    p[at] = p[at]! ^ flip;
    const newWord = (p[wordAt]! << 8) | (wordAt + 1 < len ? p[wordAt + 1]! : 0);
    if (csumOff >= 0) {
      const old = p.readUInt16BE(csumOff);
      // An IPv4 UDP checksum of 0 means "none" (RFC 768): nothing to patch.
      if (!(proto === 17 && v === 4 && old === 0)) {
        const next = checksumUpdate16(old, oldWord, newWord);
        p.writeUInt16BE(proto === 17 && next === 0 ? 0xffff : next, csumOff);
      }
    }
    return true;
  }

  private before(a: number, b: number): boolean {
    return this.due[a]! < this.due[b]! || (this.due[a] === this.due[b] && this.order[a]! < this.order[b]!);
  }

  /** When the next held packet is due, or Infinity. */
  nextDueMs(): number {
    return this.heapLen === 0 ? Infinity : this.due[this.heap[0]!]!;
  }

  /**
   * Moves up to `max` packets due at nowMs into `out` (slot buffers, valid
   * until {@link release}) with lengths in `sizes`. Returns the count.
   */
  take(nowMs: number, out: Buffer[], sizes: Uint32Array, max: number): number {
    let n = 0;
    out.length = 0;
    while (n < max && this.heapLen > 0 && this.due[this.heap[0]!]! <= nowMs) {
      const s = this.pop();
      out.push(this.slots[s]!);
      sizes[n] = this.lens[s]!;
      if (this.order[s]! < this.lastReleased) this.stats.reordered++;
      else this.lastReleased = this.order[s]!;
      this.taken[n] = s;
      n++;
    }
    this.takenCount = n;
    return n;
  }

  private readonly taken = new Int32Array(1024);
  private takenCount = 0;

  /** Returns the slots handed out by the last {@link take} to the pool; `sent` of them reached the device. */
  release(sent: number): void {
    this.stats.sent += sent;
    this.stats.queueFull += this.takenCount - sent;
    for (let i = 0; i < this.takenCount; i++) this.free[this.freeTop++] = this.taken[i]!;
    this.takenCount = 0;
  }

  private pop(): number {
    const top = this.heap[0]!;
    const last = this.heap[--this.heapLen]!;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= this.heapLen) break;
      const r = l + 1;
      const c = r < this.heapLen && this.before(this.heap[r]!, this.heap[l]!) ? r : l;
      if (!this.before(this.heap[c]!, last)) break;
      this.heap[i] = this.heap[c]!;
      i = c;
    }
    this.heap[i] = last;
    return top;
  }
}

/** A running bridge; {@link close} stops it and removes the TUN. */
export interface ImpairBridge {
  readonly impairer: Impairer;
  readonly tun: NativeTun;
  close(): void;
}

/**
 * Starts an impairing TUN bridge in namespace `ns`: every packet that enters
 * `ns` on one of `ifaces` and would be forwarded is routed into a TUN, held
 * by an {@link Impairer}, then written back into the TUN to continue on the
 * main routing table. Enables forwarding and disables rp_filter in `ns`.
 */
export async function startImpairBridge(ns: string, tunName: string, ifaces: string[], opts: ImpairOptions): Promise<ImpairBridge> {
  const sh = (...a: string[]) => execFileSync('ip', ['netns', 'exec', ns, ...a], { stdio: 'pipe' });
  sh('sysctl', '-qw', 'net.ipv4.ip_forward=1', 'net.ipv6.conf.all.forwarding=1', 'net.ipv4.conf.all.rp_filter=0', 'net.ipv4.conf.default.rp_filter=0');
  const tun = await openTun({ name: tunName, mtu: 1500, addresses: [], netns: ns, batchSize: 64 });
  sh('sysctl', '-qw', `net.ipv4.conf.${tunName}.rp_filter=0`);
  for (const v of ['-4', '-6']) {
    sh('ip', v, 'route', 'add', 'default', 'dev', tunName, 'table', '100');
    for (const i of ifaces) sh('ip', v, 'rule', 'add', 'iif', i, 'lookup', '100');
  }
  const imp = new Impairer(opts);
  const bs = tun.batchSize;
  const bufs = Array.from({ length: bs }, () => Buffer.alloc(65535));
  const sizes = new Uint32Array(bs);
  const out: Buffer[] = [];
  const outSizes = new Uint32Array(bs);
  let timer: NodeJS.Timeout | NodeJS.Immediate | null = null;
  let closed = false;
  const flushDue = () => {
    timer = null;
    if (closed) return;
    const now = performance.now();
    for (;;) {
      const n = imp.take(now, out, outSizes, bs);
      if (n === 0) break;
      imp.release(tun.write(out, outSizes, 0, n));
    }
    arm();
  };
  const arm = () => {
    const next = imp.nextDueMs();
    if (next === Infinity || timer !== null) return;
    const wait = next - performance.now();
    if (opts.preciseTimers === true) timer = wait < 1.5 ? setImmediate(flushDue) : setTimeout(flushDue, Math.floor(wait) - 1);
    else timer = setTimeout(flushDue, Math.max(0, wait));
  };
  tun.onReadable(() => {
    for (;;) {
      const n = tun.read(bufs, sizes, 0);
      if (n === 0) break;
      const now = performance.now();
      for (let i = 0; i < n; i++) imp.offer(bufs[i]!, 0, sizes[i]!, now);
    }
    arm();
  });
  return {
    impairer: imp,
    tun,
    close() {
      closed = true;
      if (timer) { clearTimeout(timer as NodeJS.Timeout); clearImmediate(timer as NodeJS.Immediate); }
      tun.close();
    },
  };
}
