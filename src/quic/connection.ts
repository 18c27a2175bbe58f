/**
 * One QUIC connection driven by {@link QuicEndpoint}: the {@link QuicTransport}
 * the HTTP/3 layer uses, plus events, peer identity and telemetry.
 */
import { QuicStreamError, type QuicTransport, type StreamDirection } from './transport.js';
import { engine, ENGINE_DONE, type EngineConnection, type EngineRecvInfo } from './engine.js';
import type { TimerEntry } from './timer-heap.js';
import type { PeerIdentity } from './peer-identity.js';
import { ADDR_SLOT_BYTES } from '../net/udp.js';
import { addrSlotEquals, readAddrSlotHost, readAddrSlotPort } from '../net/udp-batch.js';

/**
 * What a connection reports to the layer above:
 * - `established`: handshake done (and, on a server requiring mTLS, the client certificate checked);
 * - `readable`: streams or datagrams wait to be read (after an input batch);
 * - `writable`: after an input batch, while {@link QuicConnection.watchWritable} is set;
 * - `closed`: final; {@link QuicConnection.closeInfo} says why. No events follow.
 */
export type QuicConnectionEvent = 'established' | 'readable' | 'writable' | 'closed';

/** Why a connection ended. */
export interface QuicCloseInfo {
  /** True when the peer closed it, false when we did (or the engine did on our side). */
  readonly byPeer: boolean;
  /** Application (HTTP/3) error code space rather than transport. */
  readonly app: boolean;
  /** The error code (transport codes per RFC 9000 §20.1; 0x100+alert for TLS, RFC 9001 §4.8). */
  readonly errorCode: number;
  /** The reason phrase sent with CONNECTION_CLOSE. */
  readonly reason: string;
  /** Closed by the idle timeout (RFC 9000 §10.1) with no CONNECTION_CLOSE. */
  readonly idleTimeout: boolean;
  /** Closed by a stateless reset carrying the peer's token (RFC 9000 §10.3): the peer has no state for it. Optional: false when absent. */
  readonly statelessReset?: boolean;
}

/** Per-connection counters for telemetry (control path: allocates). */
export interface QuicConnectionStats {
  /** Smoothed RTT of the active path in whole ms as the binding reports it (0 on loopback; null without a path). */
  rttMs: number | null;
  /** Congestion window of the active path in bytes. */
  cwndBytes: number | null;
  /** Path MTU in use (bytes of UDP payload). */
  pmtuBytes: number | null;
  sentPackets: number;
  recvPackets: number;
  lostPackets: number;
  retransPackets: number;
  sentBytes: number;
  recvBytes: number;
  lostBytes: number;
  /** Bytes of ack-eliciting packets not yet acknowledged or declared lost. */
  inFlightBytes: number;
  /** PTO anchor frames queued ({@link QuicConnection.setPtoAnchor}). */
  ptoAnchors: number;
  /** DATAGRAM frames queued for sending. */
  dgramSent: number;
  /** DATAGRAM payloads read by the layer above. */
  dgramRecv: number;
  /** Datagrams refused by dgramSend because the send queue was full. */
  dgramDropQueueFull: number;
  /** Datagrams refused by dgramSend because they exceed the writable length. */
  dgramDropTooBig: number;
  /** Input batches after which the engine's datagram receive queue was full (it then drops the oldest). */
  dgramRecvQueueFullEvents: number;
  /** Datagrams CoDel dropped from the engine's send queue: they waited too long (as of the last input; QuicEndpointOptions.dgramQueueDelay). */
  dgramDropQueueDelay: number;
}

/** What a connection needs from its endpoint (internal). */
export interface ConnectionOwner {
  /** The connection has output; send it now unless the endpoint is mid-batch. */
  flushConnection(c: QuicConnection): void;
  /** Mark for sending at the end of the current batch. */
  markDirty(c: QuicConnection): void;
}

const READ = engine.Shutdown.Read;
const WRITE = engine.Shutdown.Write;
const STREAM_RESET_RE = /Stream(?:Reset|Stopped)\((\d+)\)/;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * A connection on a {@link QuicEndpoint}. Created by the endpoint (accept or
 * connect), never directly. After `closed` every method is a no-op or
 * returns null/0/false; the engine state is released with the object.
 */
export class QuicConnection implements QuicTransport, TimerEntry {
  readonly isServer: boolean;
  /** Hook the layer above installs; called synchronously, one event at a time. */
  onEvent: ((c: QuicConnection, ev: QuicConnectionEvent) => void) | null = null;
  /** When true, a `writable` event follows every input batch (for flow-control-blocked senders). */
  watchWritable = false;
  /** Authenticated client identity (server with mTLS) — null otherwise or before `established`. */
  peerIdentity: PeerIdentity | null = null;
  /** Set once, when the connection is gone. */
  closeInfo: QuicCloseInfo | null = null;
  /** Peer address text (updated when the peer's address changes). */
  peerHost: string;
  peerPort: number;
  /** Free for the layer above (e.g. its HTTP/3 connection). */
  userData: unknown = null;
  /**
   * The exception an event handler threw, if one did (the endpoint then
   * closes the connection with INTERNAL_ERROR); kept so the layer above can
   * log the cause instead of losing it.
   */
  handlerError: Error | null = null;

  // ---- endpoint-internal state (not API) ----
  /** @internal */ readonly q: EngineConnection;
  /** @internal Our source connection ID (CID_BYTES long). */ readonly scid: Uint8Array;
  /** @internal Demux key: last 4 bytes of scid (cidKey). */ readonly scidKey: number;
  /** @internal Client's original DCID (server, until established). */ odcidKey: string | null = null;
  /** @internal A datagram offered as a possible stateless reset closed it (RFC 9000 §10.3.1). */ resetByPeer = false;
  /** @internal */ deadlineMs = 0;
  /** @internal Next keep-alive PING (ms, performance.now clock); Infinity when off. */ keepAliveDueMs = Infinity;
  /** @internal */ heapIndex = -1;
  /** @internal */ dirty = false;
  /** @internal */ touched = false;
  /** @internal Packets delivered by the endpoint ({@link packetsReceived}). */ rxPackets = 0;
  /** @internal */ established = false;
  /** @internal Refused after the handshake (mTLS); never announced. */ refused = false;
  /** @internal Client CA (PEM) in force when accepted, which its TLS config asked certificates for; null: no mTLS. */ clientCaPem: string | null = null;
  /** @internal */ gone = false;
  /** @internal */ sessionTries = 0;
  /** @internal Peer address slot for sending. */ readonly sendAddr = new Uint8Array(ADDR_SLOT_BYTES);
  /** @internal */ sendHost = '';
  /** @internal */ sendPort = -1;
  /** @internal The engine's peer address object sendHost/sendPort were last compared with (identity changes when the peer moves). */ sendTo: object | null = null;
  /** @internal Session cache key (client). */ sessionKey: string | null = null;
  /** @internal Per-peer-IP key for connection limits (server). */ peerIpKey: string | null = null;

  private readonly owner: ConnectionOwner;
  private readonly recvInfo: EngineRecvInfo;
  private readonly recvAddr = new Uint8Array(ADDR_SLOT_BYTES);
  private dgramMax = -1;
  private established_: Promise<void> | null = null;
  private resolveEst: (() => void) | null = null;
  private rejectEst: ((e: Error) => void) | null = null;
  private dgramSent = 0;
  private dgramRecvd = 0;
  private dgramDropQueueFull = 0;
  private dgramDropTooBig = 0;
  /** @internal */ dgramRecvQueueFullEvents = 0;
  /** @internal The engine's count of CoDel drops, as of the endpoint's last snapshot. */
  dgramDropQueueDelay = 0;
  /**
   * @internal What the endpoint's snapshot before a `readable` event said
   * (set only during that event, -1 otherwise): whether a stream is
   * readable, and how many DATAGRAMs wait. The H3 reader's first questions
   * are answered from it instead of asking the engine again; the datagram
   * count falls as they are read, so the read that would find none is not
   * made. Nothing adds input during the synchronous event.
   */
  readableHint = -1;
  /** @internal */ dgramHint = -1;

  /** @internal */
  constructor(
    owner: ConnectionOwner,
    q: EngineConnection,
    isServer: boolean,
    scid: Uint8Array,
    local: { host: string; port: number },
    peerAddrs: Uint8Array,
    peerSlot: number,
  ) {
    this.owner = owner;
    this.q = q;
    this.isServer = isServer;
    this.scid = scid;
    this.scidKey = cidKey(scid, 0);
    this.peerHost = readAddrSlotHost(peerAddrs, peerSlot);
    this.peerPort = readAddrSlotPort(peerAddrs, peerSlot);
    const o = peerSlot * ADDR_SLOT_BYTES;
    this.recvAddr.set(peerAddrs.subarray(o, o + ADDR_SLOT_BYTES));
    this.sendAddr.set(this.recvAddr);
    this.sendHost = this.peerHost;
    this.sendPort = this.peerPort;
    this.recvInfo = { from: { host: this.peerHost, port: this.peerPort }, to: { host: local.host, port: local.port } };
  }

  /**
   * @internal RecvInfo for a datagram from slot `i`; reuses the cached object while the source address is
   * unchanged. The source is not the peer's address yet (peerHost): that follows the engine, which moves
   * only after an authenticated packet (the endpoint's followPeer).
   */
  recvInfoFor(addrs: Uint8Array, i: number): EngineRecvInfo {
    if (!addrSlotEquals(addrs, i, this.recvAddr, 0)) {
      const o = i * ADDR_SLOT_BYTES;
      this.recvAddr.set(addrs.subarray(o, o + ADDR_SLOT_BYTES));
      this.recvInfo.from = { host: readAddrSlotHost(addrs, i), port: readAddrSlotPort(addrs, i) };
    }
    return this.recvInfo;
  }

  /** @internal Local-address part of the last received datagram's slot (a view; all zero when unknown). */
  recvLocal(): Uint8Array {
    return this.recvAddr.subarray(ADDR_SLOT_BYTES - 16, ADDR_SLOT_BYTES);
  }

  /**
   * @internal Called by the endpoint after input for this connection, with
   * the engine's largest DATAGRAM payload from its snapshot (input can change
   * it: path MTU, a new connection ID); -1 leaves it to be asked at the next send.
   */
  setDgramMax(m: number): void {
    this.dgramMax = m;
  }

  /** @internal Emit an event, isolating handler failures. Returns false if the handler threw. */
  emit(ev: QuicConnectionEvent): boolean {
    const h = this.onEvent;
    if (h === null) return true;
    try {
      h(this, ev);
      return true;
    } catch (e) {
      this.handlerError = e instanceof Error ? e : new Error(String(e));
      return false;
    }
  }

  /** @internal */
  markEstablished(): void {
    this.established = true;
    this.resolveEst?.();
    this.resolveEst = this.rejectEst = null;
  }

  /** @internal */
  markClosed(info: QuicCloseInfo): void {
    this.gone = true;
    this.closeInfo = info;
    if (this.rejectEst !== null) {
      this.rejectEst(
        new Error(
          `quic: connection closed before established (${info.byPeer ? 'peer' : 'local'} ${info.app ? 'app' : 'transport'} error 0x${info.errorCode.toString(16)}${info.reason ? `: ${info.reason}` : ''}${info.idleTimeout ? ', idle timeout' : ''})`,
        ),
      );
    }
    this.resolveEst = this.rejectEst = null;
  }

  /**
   * Resolves when the handshake completes (after mTLS checks); rejects with
   * `quic: connection closed before established (…)` if it closes first.
   */
  whenEstablished(): Promise<void> {
    if (this.established_ === null) {
      if (this.established) this.established_ = Promise.resolve();
      else if (this.gone) this.established_ = Promise.reject(new Error('quic: connection closed before established'));
      else
        this.established_ = new Promise<void>((res, rej) => {
          this.resolveEst = res;
          this.rejectEst = rej;
        });
    }
    return this.established_;
  }

  /** True after `established` and before `closed`. */
  get isEstablished(): boolean {
    return this.established && !this.gone;
  }

  /** True once closed (no more events). */
  get isClosed(): boolean {
    return this.gone;
  }

  /** Whether this (client) connection resumed a TLS session. */
  isResumed(): boolean {
    return !this.gone && this.q.isResumed();
  }

  /** Negotiated ALPN protocol ('' before the handshake). */
  alpn(): string {
    return this.gone ? '' : decoder.decode(this.q.applicationProto());
  }

  /** SNI the client sent (server) or requested (client), or null. */
  serverName(): string | null {
    return this.gone ? null : this.q.serverName();
  }

  /** DER certificates the peer presented (leaf first), or null. */
  peerCertChain(): Uint8Array[] | null {
    return this.gone ? null : this.q.peerCertChain();
  }

  // ---- QuicTransport ----

  streamSend(streamId: number, data: Uint8Array, fin: boolean): number {
    if (this.gone) return 0;
    let n: number | null;
    try {
      n = this.q.streamSend(streamId, data, fin);
    } catch (e) {
      const msg = (e as Error).message;
      const m = STREAM_RESET_RE.exec(msg);
      if (m !== null) throw new QuicStreamError(streamId, Number(m[1]));
      // StreamLimit: the peer has not granted this stream yet — blocked, retry later.
      if (msg.startsWith('StreamLimit') || msg === ENGINE_DONE) return 0;
      throw new Error(`quic: streamSend on stream ${streamId} failed: ${msg}`);
    }
    if (n === null) return 0;
    if (n > 0 || fin) this.owner.markDirty(this);
    return n;
  }

  streamRecv(streamId: number, buf: Uint8Array): [number, boolean] | null {
    if (this.gone) return null;
    let r: [number, boolean] | null;
    try {
      r = this.q.streamRecv(streamId, buf);
    } catch (e) {
      const msg = (e as Error).message;
      const m = STREAM_RESET_RE.exec(msg);
      if (m !== null) throw new QuicStreamError(streamId, Number(m[1]));
      // InvalidStreamState(id): the stream is finished and already collected.
      if (msg === ENGINE_DONE || msg.startsWith('InvalidStreamState')) return null;
      throw new Error(`quic: streamRecv on stream ${streamId} failed: ${msg}`);
    }
    // Reading frees flow-control credit: MAX_STREAM_DATA may need sending.
    if (r !== null) this.owner.markDirty(this);
    return r;
  }

  readableStreams(): Iterable<number> {
    return this.gone ? [] : this.q.readable();
  }

  hasReadableStreams(): boolean {
    if (this.gone) return false;
    const h = this.readableHint;
    if (h < 0) return this.q.hasReadableStream();
    this.readableHint = -1; // one answer: reading streams changes it
    return h === 1;
  }

  writableStreams(): Iterable<number> {
    return this.gone ? [] : this.q.writable();
  }

  streamShutdown(streamId: number, dir: StreamDirection, errorCode: number): void {
    if (this.gone) return;
    try {
      this.q.streamShutdown(streamId, dir === 'read' ? READ : WRITE, errorCode);
    } catch (e) {
      const msg = (e as Error).message;
      if (msg !== ENGINE_DONE && !msg.startsWith('InvalidStreamState')) {
        throw new Error(`quic: streamShutdown on stream ${streamId} failed: ${msg}`);
      }
    }
    this.owner.markDirty(this);
  }

  dgramSend(data: Uint8Array, offset: number, length: number): boolean {
    if (this.gone) return false;
    let max = this.dgramMax;
    if (max < 0) {
      const m = this.q.dgramMaxWritableLen();
      if (m === null) {
        this.dgramDropTooBig++;
        return false;
      }
      max = this.dgramMax = m;
    }
    if (length > max) {
      this.dgramDropTooBig++;
      return false;
    }
    let r: void | null;
    try {
      r = this.q.dgramSend(data, offset, length);
    } catch {
      // InvalidState (not negotiated) or BufferTooShort after a path MTU change.
      this.dgramMax = -1;
      this.dgramDropTooBig++;
      return false;
    }
    if (r === null) {
      this.dgramDropQueueFull++;
      return false;
    }
    this.dgramSent++;
    this.owner.markDirty(this);
    return true;
  }

  /** Counts `n` DATAGRAM frames queued on this connection by another sender (the agent's TUN thread, which calls the engine itself). */
  noteDgramsSent(n: number): void {
    this.dgramSent += n;
  }

  /** Counts `n` DATAGRAM frames another reader took from this connection's queue (the agent's data-plane thread). */
  noteDgramsRecv(n: number): void {
    this.dgramRecvd += n;
  }

  dgramRecv(buf: Uint8Array): number | null {
    if (this.gone || this.dgramHint === 0) return null;
    let n: number | null;
    try {
      n = this.q.dgramRecv(buf);
    } catch {
      // BufferTooShort: the caller's buffer cannot hold the next datagram.
      throw new Error(`quic: dgramRecv buffer of ${buf.length} bytes too small for the next datagram`);
    }
    if (n !== null) {
      this.dgramRecvd++;
      if (this.dgramHint > 0) this.dgramHint--;
    }
    return n;
  }

  dgramRecvBatch(buf: Uint8Array, lens: Uint32Array): number {
    if (this.gone || this.dgramHint === 0) return 0;
    let n: number;
    try {
      n = this.q.dgramRecvBatch(buf, lens);
    } catch (e) {
      if ((e as Error).message !== 'BufferTooShort') throw e;
      throw new Error(`quic: dgramRecv buffer of ${buf.length} bytes too small for the next datagram`);
    }
    this.dgramRecvd += n;
    if (this.dgramHint > 0) this.dgramHint = n > this.dgramHint ? 0 : this.dgramHint - n;
    return n;
  }

  dgramMaxWritableLen(): number | null {
    if (this.gone) return null;
    return this.q.dgramMaxWritableLen();
  }

  close(app: boolean, errorCode: number, reason: string): void {
    if (this.gone) return;
    try {
      this.q.close(app, errorCode, encoder.encode(reason));
    } catch {
      // Already closing: the engine reports Done.
    }
    this.owner.flushConnection(this);
  }

  /**
   * Send a PING now (an ack-eliciting packet, RFC 9000 §19.2): a receiver
   * that sends only ACKs learns from its acknowledgement whether the peer
   * still hears it (RFC 9000 §13.2.4).
   */
  ping(): void {
    if (this.gone) return;
    this.q.sendAckEliciting();
    this.owner.flushConnection(this);
  }

  /** See {@link QuicTransport.setPtoAnchor}. */
  setPtoAnchor(streamId: number, frame: Uint8Array): void {
    if (!this.gone) this.q.setPtoAnchor(streamId, frame);
  }

  /**
   * Send what the layer above queued (stream data, datagrams, shutdowns)
   * now. Inside the endpoint's own event dispatch this only marks the
   * connection, and packets leave at the end of the batch.
   */
  flush(): void {
    if (!this.gone) this.owner.flushConnection(this);
  }

  /**
   * Packets handed to this connection (decrypted or not): by the endpoint,
   * and by a TUN thread that receives for it natively, as its owner carries
   * them over ({@link noteThreadReceived}, once per drain of the thread's
   * ring). Cheap to read: a per-second sweep over every session asks
   * {@link rttMs} only when this moved.
   */
  get packetsReceived(): number {
    return this.rxPackets;
  }

  /** Counts `n` UDP datagrams a TUN thread fed this connection's engine itself (it reads the socket while attached). */
  noteThreadReceived(n: number): void {
    this.rxPackets += n;
  }

  /**
   * The connection carried nothing for a while: its empty DATAGRAM queues are
   * freed until it carries a DATAGRAM again, as a keep-alive PING does at the
   * agent. The gateway, which sends no keep-alives, calls it from its tick
   * for connections that received nothing for a second; before that, a
   * queue an upload burst had grown stayed until the connection closed.
   */
  trimIdle(): void {
    if (!this.gone) this.q.trimIdle();
  }

  /** Smoothed RTT of the active path in ms, as {@link stats} reports it, without allocating (a per-second sweep over every session reads it). */
  rttMs(): number | null {
    return this.gone ? null : this.q.srttMs();
  }

  /** Telemetry snapshot (allocates; call from a metrics scrape, not per packet). */
  stats(): QuicConnectionStats {
    const s = {
      rttMs: null as number | null,
      cwndBytes: null as number | null,
      pmtuBytes: null as number | null,
      sentPackets: 0,
      recvPackets: 0,
      lostPackets: 0,
      retransPackets: 0,
      sentBytes: 0,
      recvBytes: 0,
      lostBytes: 0,
      inFlightBytes: 0,
      ptoAnchors: 0,
      dgramSent: this.dgramSent,
      dgramRecv: this.dgramRecvd,
      dgramDropQueueFull: this.dgramDropQueueFull,
      dgramDropTooBig: this.dgramDropTooBig,
      dgramRecvQueueFullEvents: this.dgramRecvQueueFullEvents,
      dgramDropQueueDelay: this.dgramDropQueueDelay,
    };
    if (this.gone) return s;
    const st = this.q.stats();
    s.sentPackets = st.sent;
    s.recvPackets = st.recv;
    s.lostPackets = st.lost;
    s.retransPackets = st.retrans;
    s.sentBytes = st.sentBytes;
    s.recvBytes = st.recvBytes;
    s.lostBytes = st.lostBytes;
    s.inFlightBytes = st.inFlightBytes;
    s.ptoAnchors = st.ptoAnchors;
    for (const p of this.q.pathStats()) {
      if (!p.active) continue;
      s.rttMs = p.rtt;
      s.cwndBytes = p.cwnd;
      s.pmtuBytes = p.pmtu;
      break;
    }
    return s;
  }
}

/**
 * Offset of the demux key in our connection IDs: their last 4 octets
 * (CID_BYTES 16 − 4), which are random also when the leading octets carry a
 * QUIC-LB server ID (quic-lb.ts: the nonce is last and at least 4 octets).
 */
const CID_KEY_OFFSET = 12;

/** Demux key of one of our connection IDs starting at buf[off] (its last 4 octets, big-endian u32). */
export function cidKey(buf: Uint8Array, off: number): number {
  const o = off + CID_KEY_OFFSET;
  return ((buf[o] << 24) | (buf[o + 1] << 16) | (buf[o + 2] << 8) | buf[o + 3]) >>> 0;
}

/** True when buf[off..off+cid.length) equals cid. */
export function cidMatches(cid: Uint8Array, buf: Uint8Array, off: number): boolean {
  for (let k = 0; k < cid.length; k++) if (buf[off + k] !== cid[k]) return false;
  return true;
}
