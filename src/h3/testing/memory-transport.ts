/**
 * An in-memory {@link QuicTransport} pair for deterministic HTTP/3 tests:
 * streams with per-stream flow-control windows, resets and stops, and a
 * bounded datagram queue, with no sockets, clocks or randomness.
 */

import { QuicStreamError, type QuicTransport, type StreamDirection } from '../../quic/transport.js';

/** Options for {@link memoryTransportPair}. */
export interface MemoryTransportOptions {
  /** Unread bytes a stream may hold at the receiver before streamSend returns short (default 1 MiB). */
  streamWindowBytes?: number;
  /** Largest DATAGRAM payload (default 1200); null disables datagrams. */
  dgramMaxBytes?: number | null;
  /** Datagrams queued at a receiver before dgramSend drops (default 1024). */
  dgramQueue?: number;
}

interface RecvStream {
  chunks: Uint8Array[];
  /** Read offset into chunks[0]. */
  off: number;
  bytes: number;
  fin: boolean;
  finRead: boolean;
  reset: number | null;
  resetRead: boolean;
  /**
   * We shut the read side (STOP_SENDING): as in the QUIC engine, buffered and later
   * bytes are discarded and neither FIN nor RESET_STREAM is reported.
   */
  stopped: boolean;
}

interface SendStream {
  stop: number | null;
  finished: boolean;
}

/** How a transport was closed. */
export interface MemoryCloseInfo {
  readonly app: boolean;
  readonly errorCode: number;
  readonly reason: string;
  readonly byPeer: boolean;
}

/**
 * One end of an in-memory QUIC connection. Data written with streamSend is
 * copied into the peer's receive buffers immediately; the test decides when
 * each side reads (see {@link pump}).
 */
export class MemoryQuicTransport implements QuicTransport {
  peer!: MemoryQuicTransport;
  /** Set once closed (by us or the peer). */
  closeInfo: MemoryCloseInfo | null = null;
  /** Set to drop every datagram this end sends (counted in droppedDatagrams). */
  dropOutgoingDatagrams = false;
  droppedDatagrams = 0;
  /** STOP_SENDING / RESET_STREAM this end sent: [streamId, dir, code]. */
  readonly shutdowns: Array<[number, StreamDirection, number]> = [];
  /** Operations that moved something (reads, writes, shutdowns); {@link pump} stops when it stays put. */
  ops = 0;
  private readonly recv = new Map<number, RecvStream>();
  private readonly send = new Map<number, SendStream>();
  private readonly dgrams: Uint8Array[] = [];

  constructor(
    readonly isServer: boolean,
    private readonly opt: Required<MemoryTransportOptions>,
  ) {}

  private recvStream(id: number): RecvStream {
    let r = this.recv.get(id);
    if (!r) {
      r = { chunks: [], off: 0, bytes: 0, fin: false, finRead: false, reset: null, resetRead: false, stopped: false };
      this.recv.set(id, r);
    }
    return r;
  }

  private sendStream(id: number): SendStream {
    let s = this.send.get(id);
    if (!s) {
      s = { stop: null, finished: false };
      this.send.set(id, s);
    }
    return s;
  }

  streamSend(streamId: number, data: Uint8Array, fin: boolean): number {
    if (this.closeInfo) return 0;
    const locallyInitiated = ((streamId & 1) === 1) === this.isServer;
    if ((streamId & 2) !== 0 && !locallyInitiated) throw new Error(`memory: cannot send on peer's uni stream ${streamId}`);
    const s = this.sendStream(streamId);
    if (s.stop !== null) throw new QuicStreamError(streamId, s.stop);
    if (s.finished) throw new Error(`memory: send after FIN on stream ${streamId}`);
    const r = this.peer.recvStream(streamId);
    const room = Math.max(0, this.opt.streamWindowBytes - r.bytes);
    const n = Math.min(room, data.length);
    if (!r.stopped && r.reset === null && n > 0) {
      r.chunks.push(data.slice(0, n));
      r.bytes += n;
    }
    if (fin && n === data.length) {
      s.finished = true;
      r.fin = true;
    }
    if (n > 0 || fin) this.ops++;
    return n;
  }

  streamRecv(streamId: number, buf: Uint8Array): [number, boolean] | null {
    if (this.closeInfo) return null;
    const r = this.recv.get(streamId);
    if (!r || r.stopped) return null;
    if (r.reset !== null) {
      if (r.resetRead) return null;
      r.resetRead = true;
      this.ops++;
      throw new QuicStreamError(streamId, r.reset);
    }
    if (r.bytes === 0) {
      if (r.fin && !r.finRead) {
        r.finRead = true;
        this.ops++;
        return [0, true];
      }
      return null;
    }
    let n = 0;
    while (n < buf.length && r.chunks.length > 0) {
      const c = r.chunks[0]!;
      const take = Math.min(buf.length - n, c.length - r.off);
      buf.set(c.subarray(r.off, r.off + take), n);
      n += take;
      r.off += take;
      if (r.off === c.length) {
        r.chunks.shift();
        r.off = 0;
      }
    }
    r.bytes -= n;
    this.ops++;
    const fin = r.bytes === 0 && r.fin;
    if (fin) r.finRead = true;
    return [n, fin];
  }

  readableStreams(): Iterable<number> {
    return this.readableIds();
  }

  private readableIds(): number[] {
    const out: number[] = [];
    if (this.closeInfo) return out;
    for (const [id, r] of this.recv) {
      if (r.stopped) continue;
      if ((r.reset !== null && !r.resetRead) || r.bytes > 0 || (r.fin && !r.finRead)) out.push(id);
    }
    return out;
  }

  hasReadableStreams(): boolean {
    return this.readableIds().length > 0;
  }

  writableStreams(): Iterable<number> {
    const out: number[] = [];
    if (this.closeInfo) return out;
    for (const [id, s] of this.send) {
      if (s.finished || s.stop !== null) continue;
      const r = this.peer.recv.get(id);
      if (!r || r.bytes < this.opt.streamWindowBytes) out.push(id);
    }
    return out;
  }

  streamShutdown(streamId: number, dir: StreamDirection, errorCode: number): void {
    if (this.closeInfo) return;
    this.shutdowns.push([streamId, dir, errorCode]);
    this.ops++;
    if (dir === 'write') {
      const s = this.sendStream(streamId);
      if (s.finished) return; // RFC 9000 §3.1: no reset after all data was sent (simplified)
      s.finished = true;
      const r = this.peer.recvStream(streamId);
      if (!r.stopped) r.reset = errorCode; // a stopped read side never reports the reset
      r.chunks = [];
      r.bytes = 0;
    } else {
      const r = this.recvStream(streamId);
      r.stopped = true;
      r.chunks = [];
      r.bytes = 0;
      if (!r.fin) this.peer.sendStream(streamId).stop = errorCode;
    }
  }

  dgramSend(data: Uint8Array, offset: number, length: number): boolean {
    if (this.closeInfo || this.opt.dgramMaxBytes === null) return false;
    if (length > this.opt.dgramMaxBytes) return false;
    if (this.dropOutgoingDatagrams || this.peer.dgrams.length >= this.opt.dgramQueue) {
      this.droppedDatagrams++;
      return false;
    }
    this.peer.dgrams.push(data.slice(offset, offset + length));
    this.ops++;
    return true;
  }

  /** Test hook: deliver a raw DATAGRAM payload to this end, as if the peer sent it. */
  injectDatagram(payload: Uint8Array): void {
    this.dgrams.push(payload.slice());
  }

  dgramRecvBatch(buf: Uint8Array, lens: Uint32Array): number {
    if (this.closeInfo) return 0;
    let k = 0;
    let off = 0;
    while (k < lens.length && this.dgrams.length > 0) {
      const d = this.dgrams[0]!;
      if (d.length > buf.length - off) {
        if (k === 0) throw new Error(`memory transport: a ${d.length}-byte datagram does not fit a ${buf.length}-byte buffer`);
        break;
      }
      this.dgrams.shift();
      this.ops++;
      buf.set(d, off);
      lens[k++] = d.length;
      off += d.length;
    }
    return k;
  }

  dgramMaxWritableLen(): number | null {
    return this.closeInfo ? null : this.opt.dgramMaxBytes;
  }

  close(app: boolean, errorCode: number, reason: string): void {
    if (this.closeInfo) return;
    this.closeInfo = { app, errorCode, reason, byPeer: false };
    if (!this.peer.closeInfo) this.peer.closeInfo = { app, errorCode, reason, byPeer: true };
  }

  /** True when this end has stream data, FINs, resets or datagrams waiting to be read. */
  hasInput(): boolean {
    if (this.closeInfo) return false;
    if (this.dgrams.length > 0) return true;
    return this.readableIds().length > 0;
  }
}

/** A connected client/server transport pair. */
export function memoryTransportPair(options: MemoryTransportOptions = {}): [client: MemoryQuicTransport, server: MemoryQuicTransport] {
  const opt: Required<MemoryTransportOptions> = {
    streamWindowBytes: options.streamWindowBytes ?? 1 << 20,
    dgramMaxBytes: options.dgramMaxBytes === undefined ? 1200 : options.dgramMaxBytes,
    dgramQueue: options.dgramQueue ?? 1024,
  };
  const c = new MemoryQuicTransport(false, opt);
  const s = new MemoryQuicTransport(true, opt);
  c.peer = s;
  s.peer = c;
  return [c, s];
}

/** What {@link pump} drives on each side (an H3Connection fits). */
export interface PumpSide {
  handleReadable(): void;
  handleDatagrams(): void;
  handleWritable(): void;
  handleTransportClosed(errorCode?: number, reason?: string): void;
}

/**
 * Move everything until both sides are idle (bounded by `maxRounds`):
 * each round lets each side read streams and datagrams and flush. A side
 * whose transport was closed by the peer is told once. Returns rounds used.
 */
export function pump(
  a: { t: MemoryQuicTransport; h: PumpSide },
  b: { t: MemoryQuicTransport; h: PumpSide },
  maxRounds = 100,
): number {
  const told = new Set<PumpSide>();
  for (let round = 1; round <= maxRounds; round++) {
    const before = a.t.ops + b.t.ops;
    let closedNow = false;
    for (const side of [a, b]) {
      if (side.t.closeInfo) {
        if (side.t.closeInfo.byPeer && !told.has(side.h)) {
          told.add(side.h);
          side.h.handleTransportClosed(side.t.closeInfo.errorCode, side.t.closeInfo.reason);
          closedNow = true;
        }
        continue;
      }
      side.h.handleWritable();
      if (side.t.hasInput()) {
        side.h.handleReadable();
        side.h.handleDatagrams();
      }
    }
    if (a.t.ops + b.t.ops === before && !closedNow) return round;
  }
  throw new Error(`memory: pump did not settle in ${maxRounds} rounds`);
}
