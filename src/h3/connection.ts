/**
 * A sans-IO HTTP/3 connection (RFC 9114) over one {@link QuicTransport}: the
 * driver that reads streams and datagrams, routes them to their readers
 * (control-stream.ts, qpack-streams.ts, request-stream.ts,
 * extended-connect.ts), flushes send queues, and owns GOAWAY and errors.
 */

import { QuicStreamError, type QuicTransport } from '../quic/transport.js';
import { encodeVarint, varintLength, varintLengthAt } from '../quic/varint.js';
import type { ClientConnectHandler, ClientRequestHandler, ConnectOptions, H3ConnectionOptions } from './api.js';
import { ControlStream, PeerUniStreams, UniKind, UniTypeReader, type ControlHost } from './control-stream.js';
import { countStreamError, newCounters, type H3Counters } from './counters.js';
import { parseQuarterStreamId, QSID_TOO_LARGE, QSID_TOO_SHORT } from './datagram.js';
import { H3Error } from './errors.js';
import { FrameReader } from './frame-reader.js';
import { FrameType, StreamType, encodeFrame, greaseValue } from './frame.js';
import type { FieldLine, FieldList } from './qpack.js';
import { QpackInstructionReader } from './qpack-streams.js';
import { encodeHeadersFrame, fieldSectionSize, RequestStream, Role } from './request-stream.js';
import { FLUSH_OK } from './send-queue.js';
import { SettingId, defaultSettings, encodeSettings, type H3Settings } from './settings.js';
import { ConnectionClosed, H3Stream, Kind, type ResolvedOptions, type StreamHost } from './stream.js';

export type * from './api.js';
export type { H3Counters } from './counters.js';

/** Tuning (not spec) defaults. */
const DEFAULT_MAX_FIELD_SECTION = 16 * 1024;
const DEFAULT_MAX_CAPSULE = 64 * 1024;
const DEFAULT_MAX_STREAM_QUEUE = 256 * 1024;
/** Out-of-order peer stream IDs remembered at most. */
const MAX_GAPS = 1024;
/** Bytes read from a stream per streamRecv call. */
const READ_CHUNK = 16 * 1024;
/** Largest QUIC DATAGRAM payload we read (bounded by UDP). */
const DGRAM_BUF = 65536;
/** Reads of a stream we no longer track, per readable event. */
const DISCARD_READS = 64;

/**
 * One HTTP/3 connection, client or server (`transport.isServer`). Sans-IO:
 * the QUIC driver calls {@link start} once the handshake is done, then
 * {@link handleReadable}, {@link handleDatagrams} and {@link handleWritable}
 * when QUIC reports data or credit, and {@link handleTransportClosed} when
 * the connection is gone. Everything is synchronous; callbacks run inside
 * those calls. After close every method is a no-op.
 *
 * Tunnel lifecycle: `onClose(0)` after the peer's FIN (we FIN back if the
 * application has not); `onClose(code)` after a peer reset/STOP_SENDING, a
 * malformed capsule stream (H3_MESSAGE_ERROR, RFC 9297 §3.3) or a connection
 * error. After the application's own `abort()` no callback follows.
 * Buffers handed to callbacks are only valid during the call; buffers the
 * application passes in are copied (capsules) or used in place and released
 * on return (datagrams, whose headroom is overwritten).
 */
export class H3Connection implements StreamHost, ControlHost {
  /** Counters for telemetry. */
  readonly counters: H3Counters = newCounters();
  /** The peer's settings (defaults until its SETTINGS frame arrives). */
  peerSettings: H3Settings = defaultSettings();
  /** True once the peer's SETTINGS frame arrived. */
  peerSettingsReceived = false;
  /** Set when the connection ended. */
  closed = false;
  /** GOAWAY ID we received (Infinity when none). */
  goawayReceived = Infinity;
  /** GOAWAY ID we sent (Infinity when none). */
  goawaySent = Infinity;

  readonly isServer: boolean;
  /** @internal */ readonly transport: QuicTransport;
  /** @internal */ readonly limits: ResolvedOptions;
  /** @internal */ readonly options: H3ConnectionOptions;
  private readonly streams = new Map<number, H3Stream>();
  private readonly rbuf = new Uint8Array(READ_CHUNK);
  private readonly dbuf = new Uint8Array(DGRAM_BUF);
  private readonly uni = new PeerUniStreams();
  private readonly control = new ControlStream(this);
  private started = false;
  private controlId = -1;
  /** Next client-initiated bidirectional stream ID we open (client). */
  private nextBidi = 0;
  /** Highest peer-initiated bidirectional stream ID seen (server), -4 if none. */
  private maxPeerBidi = -4;
  /**
   * Peer bidirectional IDs below maxPeerBidi not seen yet (QUIC may deliver
   * streams out of order). Bounded by the peer's stream limit in practice
   * and by MAX_GAPS here; IDs dropped from it count as closed.
   */
  private readonly bidiGaps = new Set<number>();
  /** Streams whose accept() came while another read was in progress: resumed after it. */
  private readonly resumeQueue: H3Stream[] = [];
  private readDepth = 0;
  /** Client requests waiting for the peer's SETTINGS. */
  private readonly waiting: Array<() => void> = [];
  private draining = false;
  /** A driver call happened since our GOAWAY was queued, so it had a chance to leave. */
  private goawayOut = false;
  /** The peer sent GOAWAY: close once our last request ends. */
  private peerDraining = false;

  /** The transport must outlive the connection; nothing is sent until {@link start}. */
  constructor(transport: QuicTransport, options: H3ConnectionOptions = {}) {
    this.transport = transport;
    this.isServer = transport.isServer;
    this.options = options;
    this.limits = {
      maxFieldSectionSize: options.maxFieldSectionSize ?? DEFAULT_MAX_FIELD_SECTION,
      maxCapsuleBytes: options.maxCapsuleBytes ?? DEFAULT_MAX_CAPSULE,
      maxStreamQueueBytes: options.maxStreamQueueBytes ?? DEFAULT_MAX_STREAM_QUEUE,
      enableConnectProtocol: options.enableConnectProtocol ?? true,
      enableDatagrams: options.enableDatagrams ?? true,
      grease: options.grease ?? true,
    };
  }

  /** True when both sides sent SETTINGS_H3_DATAGRAM=1 (RFC 9297 §2.1.1). */
  get datagramsEnabled(): boolean {
    return this.limits.enableDatagrams && this.peerSettings.h3Datagram;
  }

  /** Bytes held for reading across all streams (collected frame payloads, held-back requests). A test and telemetry hook. */
  bufferedBytes(): number {
    let n = 0;
    for (const s of this.streams.values()) n += s.bufferedBytes;
    return n;
  }

  /** Open our control stream and send SETTINGS (RFC 9114 §6.2.1). Call once, when QUIC is established. */
  start(): void {
    if (this.started || this.closed) return;
    this.started = true;
    this.controlId = this.isServer ? 3 : 2;
    const s = new H3Stream(this.controlId, Kind.LocalUni);
    this.streams.set(s.id, s);
    const o = this.limits;
    const pairs: Array<[number, number]> = [
      [SettingId.QPACK_MAX_TABLE_CAPACITY, 0],
      [SettingId.QPACK_BLOCKED_STREAMS, 0],
      [SettingId.MAX_FIELD_SECTION_SIZE, o.maxFieldSectionSize],
    ];
    if (o.enableConnectProtocol) pairs.push([SettingId.ENABLE_CONNECT_PROTOCOL, 1]);
    if (o.enableDatagrams) pairs.push([SettingId.H3_DATAGRAM, 1]);
    if (o.grease) pairs.push([greaseValue((Math.random() * 1000) | 0), (Math.random() * 1000) | 0]);
    this.guard(() => {
      this.queue(s, new Uint8Array([StreamType.CONTROL]), false);
      this.queue(s, encodeFrame(FrameType.SETTINGS, encodeSettings(pairs)), false);
      // §7.2.8: a reserved frame type the peer must ignore.
      if (o.grease) this.queue(s, encodeFrame(greaseValue((Math.random() * 1000) | 0), new Uint8Array([0x6d, 0x74])), false);
    });
  }

  // ---------------------------------------------------------------- client API

  /**
   * Client: send an Extended CONNECT (RFC 9220) with `:protocol`, `:scheme`
   * (https), `:authority`, `:path`, `capsule-protocol: ?1` and the given
   * fields. If the server's SETTINGS have not arrived the request waits for
   * them; if the server did not enable Extended CONNECT it fails with
   * onClose(H3_REQUEST_REJECTED) and no request is sent. Returns the stream ID.
   */
  connect(req: ConnectOptions, handler: ClientConnectHandler): number {
    if (this.isServer) throw new Error('h3: connect() is for clients');
    const fields: FieldLine[] = [
      [':method', 'CONNECT'],
      [':protocol', req.protocol],
      [':scheme', req.scheme ?? 'https'],
      [':authority', req.authority],
      [':path', req.path],
      ['capsule-protocol', '?1'],
      ...(req.headers ?? []),
    ];
    return this.openRequest(Role.ClientConnect, fields, null, handler);
  }

  /**
   * @internal Client: open a request stream with `fields` (and `body`, then
   * FIN; without a body the HEADERS carry the FIN). Extended CONNECT waits
   * for the server's SETTINGS. Extended CONNECT when `handler` is a
   * {@link ClientConnectHandler} (role ClientConnect). Returns the stream ID,
   * or -1 when no stream may be opened (closed, draining, after GOAWAY).
   * Plain requests: src/h3/testing/h3-request.ts.
   */
  openRequest(role: Role, fields: FieldList, body: Uint8Array | null, handler: ClientConnectHandler | ClientRequestHandler): number {
    const id = this.allocBidi();
    if (id < 0) {
      queueMicrotask(() => handler.onClose(H3Error.H3_REQUEST_REJECTED));
      return -1;
    }
    const s = new H3Stream(id, Kind.Request);
    const r = this.attachRequest(s, role);
    if (role === Role.ClientConnect) r.clientConnect = handler as ClientConnectHandler;
    else r.clientPlain = handler as ClientRequestHandler;
    this.streams.set(id, s);
    const send = () => {
      if (s.closed || this.closed) return;
      if (role === Role.ClientConnect && !this.peerSettings.enableConnectProtocol) {
        // RFC 9220 §3: no :protocol unless the server sent ENABLE_CONNECT_PROTOCOL=1.
        this.dropStream(s);
        handler.onClose(H3Error.H3_REQUEST_REJECTED);
        return;
      }
      if (fieldSectionSize(fields) > this.peerSettings.maxFieldSectionSize) {
        // RFC 9114 §4.2.2: do not send a header section above the peer's limit.
        this.dropStream(s);
        handler.onClose(H3Error.H3_EXCESSIVE_LOAD);
        return;
      }
      const hasBody = body !== null && body.length > 0;
      this.guard(() => {
        this.sendHeaders(s, fields, role === Role.ClientPlain && !hasBody);
        if (hasBody) this.queue(s, encodeFrame(FrameType.DATA, body), true);
      });
      this.counters.requestsSent++;
    };
    // Only Extended CONNECT depends on the server's SETTINGS (RFC 9220 §3).
    if (this.peerSettingsReceived || role === Role.ClientPlain) send();
    else this.waiting.push(send);
    return id;
  }

  private allocBidi(): number {
    if (this.closed || this.draining) return -1;
    const id = this.nextBidi;
    if (id >= this.goawayReceived) return -1;
    this.nextBidi += 4;
    return id;
  }

  private attachRequest(s: H3Stream, role: Role): RequestStream {
    const r = new RequestStream(this, s, role);
    s.req = r;
    s.sink = r;
    s.frames = new FrameReader();
    return r;
  }

  // ---------------------------------------------------------------- shutdown

  /**
   * Graceful shutdown (RFC 9114 §5.2): send GOAWAY (server: the first request
   * ID we will not process; client: push ID 0), refuse new requests, and close
   * the connection with H3_NO_ERROR once the last request stream ends.
   */
  shutdown(): void {
    if (this.closed || this.draining) return;
    this.draining = true;
    const id = this.isServer ? this.maxPeerBidi + 4 : 0;
    this.goawaySent = id;
    const ctl = this.streams.get(this.controlId);
    if (ctl) {
      const payload = new Uint8Array(varintLength(id));
      encodeVarint(id, payload, 0);
      this.guard(() => this.queue(ctl, encodeFrame(FrameType.GOAWAY, payload), false));
    }
    // The close (if nothing is open) waits for the next driver call so the
    // GOAWAY is not discarded with the connection.
  }

  /** Close now with an H3 error code (RFC 9114 §8.1); tunnels get onClose(code). */
  close(code: number = H3Error.H3_NO_ERROR, reason = ''): void {
    this.raise(code, reason);
  }

  /** The QUIC connection is gone (peer close, idle timeout); notify streams. Idempotent. */
  handleTransportClosed(errorCode: number = H3Error.H3_NO_ERROR, reason = ''): void {
    if (this.closed) return;
    this.closed = true;
    this.teardown(errorCode === 0 ? H3Error.H3_NO_ERROR : errorCode, reason);
  }

  // ---------------------------------------------------------------- driver entry points

  /** Read every readable stream (call after QUIC reported input). */
  handleReadable(): void {
    if (this.closed) return;
    this.enter();
    this.readDepth++;
    try {
      for (const id of Array.from(this.transport.readableStreams())) {
        if (this.closed) return;
        this.readStream(id);
      }
    } catch (e) {
      if (!(e instanceof ConnectionClosed)) throw e;
    } finally {
      this.readDepth--;
    }
    this.drainResumes();
    this.maybeFinishDrain();
  }

  /** Flush queued stream data (call when QUIC reports credit). */
  handleWritable(): void {
    if (this.closed) return;
    this.enter();
    this.guard(() => {
      for (const s of Array.from(this.streams.values())) if (s.send.pending) this.flush(s);
    });
    this.maybeFinishDrain();
  }

  /** True while some stream has bytes queued beyond QUIC flow control. */
  wantsWritable(): boolean {
    for (const s of this.streams.values()) if (s.send.pending) return true;
    return false;
  }

  /**
   * Read every waiting QUIC DATAGRAM as an HTTP Datagram (RFC 9297 §2.1) and
   * hand it to its tunnel. The hot path: no allocation per datagram.
   */
  handleDatagrams(): void {
    if (this.closed) return;
    const buf = this.dbuf;
    this.readDepth++;
    try {
      for (;;) {
        const n = this.transport.dgramRecv(buf);
        if (n === null) break;
        this.onDatagram(buf, n);
        if (this.closed) break;
      }
    } catch (e) {
      if (!(e instanceof ConnectionClosed)) throw e;
    } finally {
      this.readDepth--;
    }
    this.drainResumes();
  }

  private onDatagram(buf: Uint8Array, n: number): void {
    this.counters.datagramsReceived++;
    const q = parseQuarterStreamId(buf, 0, n);
    if (q === QSID_TOO_SHORT || q === QSID_TOO_LARGE) {
      // RFC 9297 §2.1
      this.connError(H3Error.H3_DATAGRAM_ERROR, q === QSID_TOO_SHORT ? 'datagram too short' : 'quarter stream ID above 2^60-1');
      return;
    }
    const id = q * 4;
    const s = this.streams.get(id);
    const r = s?.req;
    if (s === undefined || r == null || s.closed) {
      const opened = this.isServer ? id <= this.maxPeerBidi && !this.bidiGaps.has(id) : id < this.nextBidi;
      if (opened) this.counters.datagramsDroppedClosedStream++;
      else this.counters.datagramsDroppedUnknownStream++;
      return;
    }
    if (r.tunnel !== null) {
      const off = varintLengthAt(buf, 0);
      r.tunnel.handler.onDatagram(buf, off, n - off);
      return;
    }
    if (r.awaitingDecision) {
      this.counters.datagramsDroppedPending++;
      return;
    }
    // RFC 9297 §2: a request without datagram semantics.
    this.counters.datagramsNoSemantics++;
    this.abortStream(s, H3Error.H3_DATAGRAM_ERROR, true);
  }

  // ---------------------------------------------------------------- reading

  private readStream(id: number): void {
    let s = this.streams.get(id);
    if (s === undefined) {
      s = this.newPeerStream(id);
      if (s === undefined) {
        this.discard(id);
        return;
      }
    }
    if (s.closed) {
      this.discard(id);
      return;
    }
    if (s.req?.paused) return; // Extended CONNECT awaiting a decision: leave data in QUIC
    const buf = this.rbuf;
    for (;;) {
      let r: [number, boolean] | null;
      try {
        r = this.transport.streamRecv(id, buf);
      } catch (e) {
        if (e instanceof QuicStreamError) {
          this.onPeerReset(s, e.errorCode);
          return;
        }
        throw e;
      }
      if (r === null) return;
      const [n, fin] = r;
      if (n > 0) this.onStreamData(s, buf, 0, n);
      if (this.closed || s.closed) return;
      if (s.req?.paused) {
        if (fin) s.remoteDone = true;
        return;
      }
      if (fin) {
        this.onStreamFin(s);
        return;
      }
      if (n === 0) return;
    }
  }

  /** Read and drop whatever arrives on a stream we no longer track. */
  private discard(id: number): void {
    for (let i = 0; i < DISCARD_READS; i++) {
      let r: [number, boolean] | null;
      try {
        r = this.transport.streamRecv(id, this.rbuf);
      } catch {
        return;
      }
      if (r === null || r[1] || r[0] === 0) return;
    }
  }

  private newPeerStream(id: number): H3Stream | undefined {
    const peerInitiated = ((id & 1) === 1) === !this.isServer;
    if (!peerInitiated) return undefined; // one of ours that has been closed
    if ((id & 2) !== 0) {
      const s = new H3Stream(id, Kind.UniPending);
      s.uniType = new UniTypeReader();
      this.streams.set(id, s);
      return s;
    }
    if (!this.isServer) {
      // RFC 9114 §6.1: server-initiated bidirectional streams are an error.
      this.connError(H3Error.H3_STREAM_CREATION_ERROR, 'server-initiated bidirectional stream');
      return undefined;
    }
    if (id <= this.maxPeerBidi) {
      if (!this.bidiGaps.delete(id)) return undefined; // already handled and closed
    } else {
      for (let g = this.maxPeerBidi + 4; g < id && this.bidiGaps.size < MAX_GAPS; g += 4) this.bidiGaps.add(g);
      this.maxPeerBidi = id;
    }
    const s = new H3Stream(id, Kind.Request);
    this.attachRequest(s, Role.ServerRequest);
    this.streams.set(id, s);
    if (id >= this.goawaySent) {
      // RFC 9114 §5.2: requests at or above our GOAWAY ID are not processed.
      this.counters.requestsRejectedGoaway++;
      this.abortStream(s, H3Error.H3_REQUEST_REJECTED, false);
      return undefined;
    }
    return s;
  }

  private onStreamData(s: H3Stream, buf: Uint8Array, pos: number, end: number): void {
    if (s.kind === Kind.UniPending) {
      pos = s.uniType!.feed(buf, pos, end);
      if (pos < 0) return;
      this.classifyUni(s, s.uniType!.type);
      if (this.closed || (s.kind as Kind) === Kind.Ignored) return;
    }
    if (s.qpack !== null) {
      const err = s.qpack.feed(buf, pos, end);
      if (err !== null) this.connError(err.code, err.reason);
      return;
    }
    if (s.frames === null) return;
    const stop = s.frames.feed(buf, pos, end, s.sink!);
    const r = s.req;
    if (stop < end && r !== null && r.paused && !s.closed) r.held = concat(r.held, buf.subarray(stop, end));
  }

  private classifyUni(s: H3Stream, type: number): void {
    s.uniType = null;
    switch (this.uni.classify(type, this)) {
      case UniKind.Control:
        s.kind = Kind.Control;
        s.frames = new FrameReader();
        s.sink = this.control;
        return;
      case UniKind.QpackEncoder:
        s.kind = Kind.QpackEncoder;
        s.qpack = new QpackInstructionReader(true);
        return;
      case UniKind.QpackDecoder:
        s.kind = Kind.QpackDecoder;
        s.qpack = new QpackInstructionReader(false);
        return;
      case UniKind.Ignored:
        // §6.2 / §9: unknown and reserved stream types are ignored; we stop reading them.
        this.counters.unknownStreamsIgnored++;
        s.kind = Kind.Ignored;
        this.transport.streamShutdown(s.id, 'read', H3Error.H3_STREAM_CREATION_ERROR);
        return;
    }
  }

  private onStreamFin(s: H3Stream): void {
    s.remoteDone = true;
    if (s.kind === Kind.Request && (s.frames?.insideFrame ?? false)) {
      // §7.1: a stream ending inside a frame.
      this.connError(H3Error.H3_FRAME_ERROR, 'stream ended inside a frame');
      return;
    }
    switch (s.kind) {
      case Kind.Control:
      case Kind.QpackEncoder:
      case Kind.QpackDecoder:
        this.connError(H3Error.H3_CLOSED_CRITICAL_STREAM, 'critical stream closed'); // §6.2.1
        return;
      case Kind.Request:
        s.req!.onFin();
        return;
      default:
        this.dropStream(s);
    }
  }

  private onPeerReset(s: H3Stream, code: number): void {
    countStreamError(this.counters.streamErrorsReceived, code);
    switch (s.kind) {
      case Kind.Control:
      case Kind.QpackEncoder:
      case Kind.QpackDecoder:
        this.connError(H3Error.H3_CLOSED_CRITICAL_STREAM, 'critical stream reset'); // §6.2.1
        return;
      case Kind.Request:
        s.remoteDone = true;
        if (!s.send.finSent) this.transport.streamShutdown(s.id, 'write', H3Error.H3_REQUEST_CANCELLED);
        s.send.clear();
        this.dropStream(s);
        this.notifyClosed(s, code);
        return;
      default:
        this.dropStream(s);
    }
  }

  /** Resume a stream whose Extended CONNECT was accepted: held bytes first, then QUIC. */
  private resume(s: H3Stream): void {
    const r = s.req!;
    r.paused = false;
    const held = r.held;
    r.held = null;
    this.readDepth++;
    try {
      if (held) this.onStreamData(s, held, 0, held.length);
      if (s.closed || this.closed) return;
      if (s.remoteDone) this.onStreamFin(s);
      else this.readStream(s.id);
    } catch (e) {
      if (!(e instanceof ConnectionClosed)) throw e;
    } finally {
      this.readDepth--;
    }
  }

  private drainResumes(): void {
    while (this.resumeQueue.length > 0 && !this.closed) {
      const s = this.resumeQueue.shift()!;
      if (!s.closed) this.resume(s);
    }
  }

  /** @internal StreamHost */
  scheduleResume(s: H3Stream): void {
    this.resumeQueue.push(s);
    if (this.readDepth === 0) this.drainResumes();
  }

  // ---------------------------------------------------------------- control-stream host

  /** @internal ControlHost */
  quicDatagramsSupported(): boolean {
    return this.transport.dgramMaxWritableLen() !== null;
  }

  /** @internal ControlHost */
  peerSettingsArrived(settings: H3Settings): void {
    this.peerSettings = settings;
    this.peerSettingsReceived = true;
    this.counters.unknownSettingsIgnored += settings.unknownCount;
    this.options.onSettings?.(settings);
    for (const f of this.waiting.splice(0)) f();
  }

  /** @internal ControlHost */
  peerGoaway(id: number): void {
    this.goawayReceived = id;
    this.peerDraining = true;
    if (!this.isServer) {
      for (const s of Array.from(this.streams.values())) {
        if (s.kind === Kind.Request && s.id >= id && !s.closed) {
          // Not processed by the server: safe to retry elsewhere.
          this.counters.requestsRejectedGoaway++;
          this.abortStream(s, H3Error.H3_REQUEST_CANCELLED, false);
          this.notifyClosed(s, H3Error.H3_REQUEST_REJECTED);
        }
      }
    }
    this.options.onGoaway?.(id);
    this.maybeFinishDrain();
  }

  /** @internal ControlHost */
  unknownFrame(): void {
    this.counters.unknownFramesIgnored++;
  }

  // ---------------------------------------------------------------- sending

  /** @internal StreamHost */
  sendHeaders(s: H3Stream, fields: FieldList, fin: boolean): void {
    this.queue(s, encodeHeadersFrame(fields), fin);
  }

  /** @internal StreamHost */
  queue(s: H3Stream, data: Uint8Array, fin: boolean): void {
    s.send.push(data, fin);
    this.flush(s);
  }

  /** @internal StreamHost: tunnel close(), FIN after queued capsules. */
  finish(s: H3Stream): void {
    if (this.closed || s.send.finQueued) return;
    this.guard(() => this.queue(s, EMPTY, true));
    if (s.remoteDone && s.req?.tunnel) this.dropStream(s);
  }

  private flush(s: H3Stream): void {
    if (this.closed) return;
    const stop = s.send.flush(this.transport, s.id);
    if (stop !== FLUSH_OK) {
      this.onPeerStop(s, stop);
      return;
    }
    if (s.closed) this.dropStream(s); // finished flushing a stream we are done with
    else if (s.send.finSent && s.remoteDone && s.req?.tunnel) this.dropStream(s);
  }

  private onPeerStop(s: H3Stream, code: number): void {
    // The peer sent STOP_SENDING (or reset): RFC 9000 §3.5 → reset our side.
    if (s.kind === Kind.LocalUni) {
      this.connError(H3Error.H3_CLOSED_CRITICAL_STREAM, 'peer stopped our control stream');
      return;
    }
    countStreamError(this.counters.streamErrorsReceived, code);
    s.send.clear();
    this.transport.streamShutdown(s.id, 'write', code);
    if (!s.remoteDone && !s.closed) this.transport.streamShutdown(s.id, 'read', code);
    const wasOpen = !s.closed;
    this.dropStream(s);
    if (wasOpen) this.notifyClosed(s, code);
  }

  // ---------------------------------------------------------------- errors and cleanup

  /** @internal StreamHost: stream error — reset and stop the stream, count, forget it; notify its owner if `notify`. */
  abortStream(s: H3Stream, code: number, notify: boolean): void {
    if (s.closed) return;
    countStreamError(this.counters.streamErrorsSent, code);
    if (!s.remoteDone) this.transport.streamShutdown(s.id, 'read', code);
    if (!s.send.finSent) this.transport.streamShutdown(s.id, 'write', code);
    s.send.clear();
    this.dropStream(s);
    if (notify) this.notifyClosed(s, code);
  }

  /** @internal StreamHost */
  notifyClosed(s: H3Stream, code: number): void {
    s.req?.notifyClosed(code);
  }

  /**
   * @internal StreamHost: we are done with a stream: no more reads or
   * callbacks. It stays in the map only while queued bytes (a response, a
   * FIN) still wait for credit.
   */
  dropStream(s: H3Stream): void {
    s.closed = true;
    const r = s.req;
    if (r !== null) {
      r.paused = false;
      r.held = null;
    }
    s.frames?.release();
    if (s.send.idle && this.streams.get(s.id) === s) this.streams.delete(s.id);
    this.maybeFinishDrain();
  }

  private maybeFinishDrain(): void {
    if (this.closed) return;
    if (!(this.draining && this.goawayOut) && !this.peerDraining) return;
    for (const s of this.streams.values()) if (s.kind === Kind.Request) return;
    this.close(H3Error.H3_NO_ERROR, 'graceful shutdown');
  }

  /** Driver entry bookkeeping for graceful shutdown. */
  private enter(): void {
    if (this.draining) this.goawayOut = true;
  }

  /** @internal Connection error (RFC 9114 §8): close QUIC, notify every stream, throw to unwind. */
  connError(code: number, reason: string): never {
    this.raise(code, reason);
    throw new ConnectionClosed(reason);
  }

  private raise(code: number, reason: string): void {
    if (this.closed) return;
    this.closed = true;
    if (code !== H3Error.H3_NO_ERROR) this.counters.connectionError = code;
    this.transport.close(true, code, `h3: ${reason}`);
    this.teardown(code, reason);
  }

  /** Run `f`, absorbing the unwind of a connection error it raised. */
  private guard(f: () => void): void {
    try {
      f();
    } catch (e) {
      if (!(e instanceof ConnectionClosed)) throw e;
    }
  }

  private teardown(code: number, reason: string): void {
    const all = Array.from(this.streams.values());
    this.streams.clear();
    for (const s of all) {
      s.closed = true;
      s.frames?.release();
      this.notifyClosed(s, code);
    }
    this.waiting.length = 0;
    this.options.onClosed?.(code, reason);
  }
}

const EMPTY = new Uint8Array(0);

function concat(a: Uint8Array | null, b: Uint8Array): Uint8Array {
  if (a === null) return b.slice();
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

/** Headroom a caller of TunnelStream.sendDatagram leaves; re-exported for convenience. */
export { H3_DATAGRAM_HEADROOM } from './tunnel-stream.js';
