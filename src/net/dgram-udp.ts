/**
 * {@link UdpBatchSocket} over `node:dgram`: the portable fallback for the
 * native recvmmsg/sendmmsg socket. One kernel datagram per slot, no GSO/GRO,
 * no local address in the slots (node:dgram cannot read or set pktinfo).
 */
import dgram from 'node:dgram';
import { ADDR_SLOT_BYTES, ClosedError, type UdpBatch, type UdpBatchSocket } from './udp.js';
import { addrSlotEquals, isAddrSlotV4, readAddrSlotHost, readAddrSlotPort, writeAddrSlot } from './udp-batch.js';

/** Options for {@link openDgramUdpSocket}. */
export interface DgramUdpOptions {
  /** Local address to bind; IPv6 text selects an `udp6` socket (dual-stack when `::`). Default 127.0.0.1. */
  host?: string;
  /** Local port; 0 picks a free one. Default 0. */
  port?: number;
  /**
   * Datagrams held between the `message` event and `recv`; when full, new
   * ones are dropped and counted in {@link DgramUdpSocket.recvQueueDrops}. Default 4096.
   */
  recvQueueMax?: number;
  /** Requested SO_RCVBUF / SO_SNDBUF (the kernel caps these at rmem_max / wmem_max). Default 4 MiB. */
  socketBufferBytes?: number;
}

/**
 * A bound `node:dgram` socket behind the batch interface. `batchSize` is 1:
 * each `recv` moves at most one datagram and callers loop until it returns 0.
 *
 * Costs: Node allocates a Buffer per received datagram, which `recv` copies
 * into the caller's slot; `send` copies each slot (Node sends asynchronously
 * after an address lookup tick, by which time the caller may reuse the
 * slot). Node queues sends internally, so `send` always hands over all slots
 * and `onWritable` never fires.
 *
 * Local addresses: `node:dgram` exposes neither IP_PKTINFO nor
 * IPV6_PKTINFO, so `recv` always leaves the slot's local part zero and `send`
 * ignores it — the kernel picks the source by route. Bound to a wildcard on
 * a multi-homed host, replies may leave from another address than the peer
 * used (and a connected QUIC client then drops them): bind to a specific
 * address, or use the native socket, which answers from the right one.
 */
export class DgramUdpSocket implements UdpBatchSocket {
  readonly batchSize = 1;
  readonly gso = false;
  readonly gro = false;
  /** Datagrams dropped because the receive queue was full. */
  recvQueueDrops = 0;
  /** Datagrams dropped because they did not fit the caller's slot (counted, not truncated). */
  recvTooBigDrops = 0;
  /** Sends that failed asynchronously (the error is not reported per datagram). */
  sendErrors = 0;

  private readonly sock: dgram.Socket;
  /** An `udp6` socket: IPv4 peers must be given as ::ffff:a.b.c.d (Node refuses dotted quads with EINVAL). */
  private readonly v6: boolean;
  private readonly qBuf: Buffer[];
  private readonly qHost: string[];
  private readonly qPort: Int32Array;
  private qHead = 0;
  private qLen = 0;
  private readableCb: (() => void) | null = null;
  private drainScheduled = false;
  private closed = false;
  // Last destination seen by send(), so the slot is decoded to text once per peer.
  private readonly lastDst = new Uint8Array(ADDR_SLOT_BYTES);
  private lastDstHost = '';
  private lastDstPort = 0;
  private lastDstValid = false;
  // Last source seen by recv(), so the text is encoded into a slot once per peer.
  private lastSrcHost = '';
  private lastSrcPort = -1;
  private readonly lastSrc = new Uint8Array(ADDR_SLOT_BYTES);

  private constructor(sock: dgram.Socket, recvQueueMax: number, v6: boolean) {
    this.sock = sock;
    this.v6 = v6;
    this.qBuf = new Array<Buffer>(recvQueueMax);
    this.qHost = new Array<string>(recvQueueMax).fill('');
    this.qPort = new Int32Array(recvQueueMax);
    sock.on('message', this.onMessage);
    sock.on('error', () => {
      this.sendErrors++;
    });
  }

  /** Internal: use {@link openDgramUdpSocket}. */
  static async open(opts: DgramUdpOptions = {}): Promise<DgramUdpSocket> {
    const host = opts.host ?? '127.0.0.1';
    const port = opts.port ?? 0;
    const recvQueueMax = opts.recvQueueMax ?? 4096;
    if (!Number.isInteger(recvQueueMax) || recvQueueMax < 1) {
      throw new RangeError(`net: recvQueueMax ${recvQueueMax} must be a positive integer`);
    }
    const v6 = host.includes(':');
    const sock = dgram.createSocket({ type: v6 ? 'udp6' : 'udp4', ipv6Only: false });
    await new Promise<void>((resolve, reject) => {
      const onErr = (e: Error) => reject(new Error(`net: bind ${host}:${port} failed: ${e.message}`));
      sock.once('error', onErr);
      sock.bind(port, host, () => {
        sock.off('error', onErr);
        resolve();
      });
    });
    const bytes = opts.socketBufferBytes ?? 4 << 20;
    try {
      sock.setRecvBufferSize(bytes);
      sock.setSendBufferSize(bytes);
    } catch {
      // Best effort: the kernel limit applies; the socket still works.
    }
    return new DgramUdpSocket(sock, recvQueueMax, v6);
  }

  private readonly onMessage = (msg: Buffer, rinfo: dgram.RemoteInfo): void => {
    const cap = this.qBuf.length;
    if (this.qLen === cap) {
      this.recvQueueDrops++;
      return;
    }
    const idx = (this.qHead + this.qLen) % cap;
    this.qBuf[idx] = msg;
    this.qHost[idx] = rinfo.address;
    this.qPort[idx] = rinfo.port;
    this.qLen++;
    this.scheduleDrain();
  };

  // Datagrams that arrive in one event-loop poll phase are delivered together
  // in the check phase, so the consumer can coalesce its replies per batch.
  private scheduleDrain(): void {
    if (this.drainScheduled || this.readableCb === null) return;
    this.drainScheduled = true;
    setImmediate(this.drain);
  }

  private readonly drain = (): void => {
    this.drainScheduled = false;
    if (this.closed || this.readableCb === null) return;
    if (this.qLen > 0) this.readableCb();
    // Level-triggered: the consumer may have stopped early (budget).
    if (this.qLen > 0) this.scheduleDrain();
  };

  recv(batch: UdpBatch): number {
    if (this.closed) throw new ClosedError('net: dgram socket');
    while (this.qLen > 0) {
      const idx = this.qHead;
      const msg = this.qBuf[idx];
      const host = this.qHost[idx];
      const port = this.qPort[idx];
      this.qBuf[idx] = undefined as unknown as Buffer;
      this.qHead = (idx + 1) % this.qBuf.length;
      this.qLen--;
      const slot = batch.bufs[0];
      if (msg.length > slot.length) {
        this.recvTooBigDrops++;
        continue;
      }
      msg.copy(slot, 0, 0, msg.length);
      batch.sizes[0] = msg.length;
      batch.segs[0] = 0;
      if (host !== this.lastSrcHost || port !== this.lastSrcPort) {
        writeAddrSlot(this.lastSrc, 0, host, port);
        this.lastSrcHost = host;
        this.lastSrcPort = port;
      }
      batch.addrs.set(this.lastSrc, 0);
      return 1;
    }
    return 0;
  }

  send(batch: UdpBatch, count: number): number {
    if (this.closed) throw new ClosedError('net: dgram socket');
    for (let i = 0; i < count; i++) {
      if (!this.lastDstValid || !addrSlotEquals(batch.addrs, i, this.lastDst, 0)) {
        const host = readAddrSlotHost(batch.addrs, i);
        this.lastDstHost = this.v6 && isAddrSlotV4(batch.addrs, i) ? `::ffff:${host}` : host;
        this.lastDstPort = readAddrSlotPort(batch.addrs, i);
        this.lastDst.set(batch.addrs.subarray(i * ADDR_SLOT_BYTES, (i + 1) * ADDR_SLOT_BYTES), 0);
        this.lastDstValid = true;
      }
      const size = batch.sizes[i];
      const seg = batch.segs[i];
      const src = batch.bufs[i];
      // No GSO here: split a GSO-style slot into its segments.
      const step = seg > 0 && seg < size ? seg : size;
      for (let off = 0; off < size; off += step) {
        const n = Math.min(step, size - off);
        const copy = Buffer.allocUnsafe(n);
        src.copy(copy, 0, off, off + n);
        this.sock.send(copy, 0, n, this.lastDstPort, this.lastDstHost, this.onSent);
      }
    }
    return count;
  }

  private readonly onSent = (err: Error | null): void => {
    if (err) this.sendErrors++;
  };

  onReadable(cb: () => void): void {
    if (this.closed) throw new ClosedError('net: dgram socket');
    this.readableCb = cb;
    if (this.qLen > 0) this.scheduleDrain();
  }

  onWritable(_cb: () => void): void {
    if (this.closed) throw new ClosedError('net: dgram socket');
    // Node buffers sends itself; send() never returns short, so this never fires.
  }

  localAddress(): { address: string; port: number; family: 4 | 6 } {
    if (this.closed) throw new ClosedError('net: dgram socket');
    const a = this.sock.address();
    return { address: a.address, port: a.port, family: a.family === 'IPv6' ? 6 : 4 };
  }

  close(): void {
    if (this.closed) throw new ClosedError('net: dgram socket');
    this.closed = true;
    this.readableCb = null;
    this.qLen = 0;
    this.qBuf.fill(undefined as unknown as Buffer);
    this.sock.off('message', this.onMessage);
    this.sock.close();
  }
}

/**
 * Binds a `node:dgram` socket (default 127.0.0.1, free port) and wraps it
 * as a {@link UdpBatchSocket}. Rejects with `net: bind …` when binding fails.
 * The caller owns the socket and must `close()` it.
 */
export function openDgramUdpSocket(opts: DgramUdpOptions = {}): Promise<DgramUdpSocket> {
  return DgramUdpSocket.open(opts);
}
