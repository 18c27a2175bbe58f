/**
 * An in-memory TunDevice for tests and the in-process sim tier (the
 * counterpart of wireguard-go's tuntest.ChannelTUN): the test plays the kernel.
 */
import { ClosedError } from '../net/udp.js';
import type { TunDevice } from './tun.js';

/** Options for {@link MemoryTun}. */
export interface MemoryTunOptions {
  name?: string;
  /** Default 64. */
  batchSize?: number;
  /** Largest packet accepted by inject(); read() needs this much room after offset. Default 1500. */
  mtu?: number;
  /** Packets waiting to be read at most; inject() beyond it drops and counts. Default 1024. */
  queueLimit?: number;
}

/**
 * A TUN device whose "kernel side" is the test: `inject()` queues a packet for
 * read(), and every packet the code under test writes is copied and handed to
 * the `onPacket` callback (or kept in `written`). Readiness is level-triggered
 * like the real device (setImmediate while packets wait). Not for the hot path:
 * it copies and allocates per packet.
 */
export class MemoryTun implements TunDevice {
  readonly name: string;
  readonly batchSize: number;
  readonly mtu: number;
  /** Packets written by the code under test, oldest first, when no onPacket handler is set. */
  readonly written: Buffer[] = [];
  /** inject() calls refused because the queue was full. */
  droppedFull = 0;
  /** inject() calls refused because the packet exceeded the MTU. */
  droppedTooBig = 0;
  private readonly queue: Buffer[] = [];
  private head = 0;
  private readonly queueLimit: number;
  private readableCb: (() => void) | undefined;
  private packetCb: ((p: Buffer) => void) | undefined;
  private scheduled = false;
  private isClosed = false;
  private failure: Error | null = null;

  constructor(opts: MemoryTunOptions = {}) {
    this.name = opts.name ?? 'mem0';
    this.batchSize = opts.batchSize ?? 64;
    this.mtu = opts.mtu ?? 1500;
    this.queueLimit = opts.queueLimit ?? 1024;
  }

  private check(): void {
    if (this.isClosed) throw new ClosedError(`tun ${this.name}`);
  }

  /** Kernel side: queues a copy of `packet` for read(). Returns false (and counts) when full or over the MTU. */
  inject(packet: Uint8Array): boolean {
    this.check();
    if (packet.length > this.mtu) {
      this.droppedTooBig++;
      return false;
    }
    if (this.queue.length - this.head >= this.queueLimit) {
      this.droppedFull++;
      return false;
    }
    this.queue.push(Buffer.from(packet));
    this.schedule();
    return true;
  }

  /** Kernel side: receives a copy of each written packet instead of `written`. */
  onPacket(cb: (packet: Buffer) => void): void {
    this.packetCb = cb;
  }

  /** Packets waiting for read(). */
  get pending(): number {
    return this.queue.length - this.head;
  }

  private schedule(): void {
    if (this.scheduled || !this.readableCb || this.pending === 0) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      if (this.isClosed || !this.readableCb || this.pending === 0) return;
      this.readableCb();
      this.schedule();
    });
  }

  read(bufs: Buffer[], sizes: Uint32Array, offset: number): number {
    this.check();
    if (this.failure !== null) throw this.failure;
    const max = Math.min(bufs.length, sizes.length, this.batchSize);
    let n = 0;
    while (n < max && this.head < this.queue.length) {
      const p = this.queue[this.head]!;
      const b = bufs[n]!;
      if (b.length - offset < this.mtu) {
        throw new TypeError(`tun: bufs[${n}] has ${b.length} bytes; needs offset ${offset} + MTU ${this.mtu}`);
      }
      p.copy(b, offset);
      sizes[n] = p.length;
      this.queue[this.head++] = undefined as unknown as Buffer;
      n++;
    }
    if (this.head === this.queue.length) {
      this.queue.length = 0;
      this.head = 0;
    }
    return n;
  }

  write(bufs: Buffer[], sizes: Uint32Array, offset: number, count: number): number {
    this.check();
    if (count > bufs.length || count > sizes.length) throw new TypeError('tun: count exceeds bufs or sizes length');
    for (let i = 0; i < count; i++) {
      const end = offset + sizes[i]!;
      if (end > bufs[i]!.length) throw new TypeError(`tun: packet ${i} runs past its buffer`);
      const copy = Buffer.from(bufs[i]!.subarray(offset, end));
      if (this.packetCb) this.packetCb(copy);
      else this.written.push(copy);
    }
    return count;
  }

  onReadable(cb: () => void): void {
    this.check();
    this.readableCb = cb;
    this.schedule();
  }

  /** True after close(). */
  get closed(): boolean {
    return this.isClosed;
  }

  /** Kernel side: makes every later read() throw `e`, as a failed poll of a real device does. */
  fail(e: Error): void {
    this.failure = e;
    if (this.readableCb) setImmediate(() => this.readableCb?.());
  }

  close(): void {
    this.isClosed = true;
    this.readableCb = undefined;
    this.queue.length = 0;
    this.head = 0;
  }
}
