/**
 * In-memory {@link UdpBatchSocket} double for the QUIC sim tests: sockets on a
 * shared {@link MemoryNet} exchange datagrams through queues, with a drop
 * hook, optional GSO (segments are split on delivery, like the kernel) and
 * optional GRO (a receive coalesces a run of equal-size datagrams from one
 * source into one slot, the last may be shorter, at most 64, as UDP GRO).
 */
import { ADDR_SLOT_BYTES, ClosedError, type UdpBatch, type UdpBatchSocket } from '../../src/net/udp.js';
import { readAddrSlotPort, writeAddrSlot } from '../../src/net/udp-batch.js';

/** A loopback "network" of memory sockets keyed by port on 127.0.0.1. */
export class MemoryNet {
  readonly sockets = new Map<number, MemoryUdp>();
  private nextPort = 40_000;
  /** Return true to drop a datagram (src port, dst port, bytes). */
  drop: ((from: number, to: number, data: Uint8Array) => boolean) | null = null;
  delivered = 0;
  dropped = 0;
  /** The first few drops, for failure messages. */
  readonly dropLog: string[] = [];

  /** `port` reopens a known port (a restarted server); it must be free. */
  open(opts: { gso?: boolean; gro?: boolean; batchSize?: number; port?: number } = {}): MemoryUdp {
    const port = opts.port ?? this.nextPort++;
    if (this.sockets.has(port)) throw new Error(`memory udp: port ${port} is in use`);
    const s = new MemoryUdp(this, port, opts.gso ?? false, opts.batchSize ?? 16, opts.gro ?? false);
    this.sockets.set(s.port, s);
    return s;
  }
}

/** One memory socket; see {@link MemoryNet}. */
export class MemoryUdp implements UdpBatchSocket {
  /** Receives coalesced into GRO slots. */
  groSlots = 0;
  /** Datagrams recv() handed out (each GRO segment counts). */
  taken = 0;
  private readonly queue: { data: Uint8Array; from: number }[] = [];
  private readableCb: (() => void) | null = null;
  private writableCb: (() => void) | null = null;
  /** When set, each send() takes at most this many slots (a full socket buffer); onWritable fires on the next turn. */
  sendLimit = Infinity;
  /** send() calls cut short by sendLimit. */
  shortSends = 0;
  /** Slots refused by a short send, checked against the head of the next send (the caller must retry them first, unchanged). */
  private refused: { bytes: Uint8Array; addr: Uint8Array }[] = [];
  /** Refused slots that came back unchanged / changed or missing. */
  tailChecks = 0;
  tailMismatches = 0;
  private scheduled = false;
  private closed = false;

  constructor(
    private readonly net: MemoryNet,
    readonly port: number,
    readonly gso: boolean,
    readonly batchSize: number,
    readonly gro = false,
  ) {}

  /** Inject a datagram as if sent from 127.0.0.1:`fromPort`. */
  inject(data: Uint8Array, fromPort: number): void {
    this.queue.push({ data: Uint8Array.from(data), from: fromPort });
    this.schedule();
  }

  private schedule(): void {
    if (this.scheduled || this.readableCb === null) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      if (this.closed || this.readableCb === null) return;
      if (this.queue.length > 0) this.readableCb();
      if (this.queue.length > 0) this.schedule();
    });
  }

  recv(batch: UdpBatch): number {
    if (this.closed) throw new ClosedError('memory udp');
    let n = 0;
    const max = Math.min(this.batchSize, batch.bufs.length);
    while (n < max && this.queue.length > 0) {
      const d = this.queue.shift()!;
      if (d.data.length > batch.bufs[n].length) continue;
      batch.bufs[n].set(d.data, 0);
      let size = d.data.length;
      let segs = 1;
      // GRO: the same source's next datagrams of the same size (the last may be shorter) join the slot.
      while (this.gro && segs < 64 && size > 0 && this.queue.length > 0) {
        const e = this.queue[0]!;
        if (e.from !== d.from || e.data.length > d.data.length || e.data.length === 0 || size + e.data.length > batch.bufs[n].length) break;
        this.queue.shift();
        batch.bufs[n].set(e.data, size);
        size += e.data.length;
        segs++;
        if (e.data.length < d.data.length) break;
      }
      batch.sizes[n] = size;
      batch.segs[n] = segs > 1 ? d.data.length : 0;
      this.taken += segs;
      if (segs > 1) this.groSlots++;
      writeAddrSlot(batch.addrs, n, '127.0.0.1', d.from);
      n++;
    }
    return n;
  }

  send(batch: UdpBatch, count: number): number {
    if (this.closed) throw new ClosedError('memory udp');
    for (let r = 0; r < this.refused.length; r++) {
      const want = this.refused[r];
      const o = r * ADDR_SLOT_BYTES;
      const got = r < count ? batch.bufs[r].subarray(0, batch.sizes[r]) : null;
      const same =
        got !== null &&
        Buffer.from(got).equals(Buffer.from(want.bytes)) &&
        Buffer.from(batch.addrs.subarray(o, o + ADDR_SLOT_BYTES)).equals(want.addr);
      if (same) this.tailChecks++;
      else {
        this.tailMismatches++;
      }
    }
    this.refused = [];
    const take = Math.min(count, this.sendLimit);
    for (let r = take; r < count; r++) {
      this.refused.push({
        bytes: Uint8Array.prototype.slice.call(batch.bufs[r], 0, batch.sizes[r]),
        addr: batch.addrs.slice(r * ADDR_SLOT_BYTES, (r + 1) * ADDR_SLOT_BYTES),
      });
    }
    if (take < count) {
      this.shortSends++;
      setImmediate(() => {
        if (!this.closed) this.writableCb?.();
      });
    }
    for (let i = 0; i < take; i++) {
      const to = readAddrSlotPort(batch.addrs, i);
      const ip = batch.addrs.subarray(i * ADDR_SLOT_BYTES, i * ADDR_SLOT_BYTES + 16);
      const isLoopback = ip[10] === 0xff && ip[11] === 0xff && ip[12] === 127;
      const size = batch.sizes[i];
      const seg = batch.segs[i] > 0 ? batch.segs[i] : size;
      if (!this.gso && batch.segs[i] > 0) throw new Error('memory udp: segs set on a socket without GSO');
      for (let off = 0; off < size; off += seg) {
        // Copy: Buffer#slice is a view, and the sender reuses its slots at once.
        const data = Uint8Array.prototype.slice.call(batch.bufs[i], off, Math.min(size, off + seg));
        const dst = isLoopback ? this.net.sockets.get(to) : undefined;
        if (dst === undefined || dst.closed || (this.net.drop !== null && this.net.drop(this.port, to, data))) {
          this.net.dropped++;
          if (this.net.dropLog.length < 5) this.net.dropLog.push(`${this.port}->${to} ${dst === undefined ? 'no socket' : dst.closed ? 'closed' : 'hook'} ${data.length}B`);
          continue;
        }
        this.net.delivered++;
        dst.queue.push({ data, from: this.port });
        dst.schedule();
      }
    }
    return take;
  }

  onReadable(cb: () => void): void {
    this.readableCb = cb;
    this.schedule();
  }

  onWritable(cb: () => void): void {
    this.writableCb = cb;
  }

  localAddress(): { address: string; port: number; family: 4 | 6 } {
    return { address: '127.0.0.1', port: this.port, family: 4 };
  }

  close(): void {
    if (this.closed) throw new ClosedError('memory udp');
    this.closed = true;
    this.readableCb = null;
    this.net.sockets.delete(this.port);
  }
}
