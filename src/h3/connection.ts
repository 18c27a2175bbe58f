/**
 * A sans-IO HTTP/3 connection (RFC 9114) over one {@link QuicTransport}: the
 * driver that reads streams and datagrams, routes them to their readers
 * (control-stream.ts, qpack-streams.ts, request-stream.ts,
 * extended-connect.ts), flushes send queues, and owns GOAWAY and errors.
 */

import type { QuicTransport } from '../quic/transport.js';
import { encodeVarint, varintLength, varintLengthAt } from '../quic/varint.js';
import type { ClientConnectHandler, ClientRequestHandler, ConnectOptions, H3ConnectionOptions } from './api.js';
import type { ControlHost } from './control-stream.js';
import { countStreamError, newCounters, type H3Counters } from './counters.js';
import { parseQuarterStreamId, QSID_TOO_LARGE, QSID_TOO_SHORT } from './datagram.js';
import { H3Error } from './errors.js';
import { FrameType, StreamType, encodeFrame, greaseValue } from './frame.js';
import type { FieldLine, FieldList } from './qpack.js';
import { attachRequest, encodeHeadersFrame, fieldSectionSize, Role } from './request-stream.js';
import { FLUSH_OK } from './send-queue.js';
import { SettingId, defaultSettings, encodeSettings, type H3Settings } from './settings.js';
import { StreamIds } from './stream-ids.js';
import { StreamReader, type ReadHost } from './stream-reader.js';
import { ScratchPool } from './scratch.js';
import { ConnectionClosed, H3Stream, Kind, type ResolvedOptions } from './stream.js';

export type * from './api.js';
export type { H3Counters } from './counters.js';

/** Tuning (not spec) defaults. */
const DEFAULT_MAX_FIELD_SECTION = 16 * 1024;
const DEFAULT_MAX_CAPSULE = 64 * 1024;
const DEFAULT_MAX_STREAM_QUEUE = 256 * 1024;
/** Largest QUIC DATAGRAM payload we read (bounded by UDP). */
const DGRAM_BUF = 65536;
/** Datagram read buffers, shared by all connections (64 KiB each would be most of a session's memory). */
const dgramScratch = new ScratchPool(DGRAM_BUF);
/** Length arrays for dgramRecvBatch (64 datagrams a call), pooled as the buffers are: a handler may run another connection's handleDatagrams inside. */
const dgramLensFree: Uint32Array[] = [];

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
export class H3Connection implements ReadHost, ControlHost {
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
  /** @internal */ readonly streams = new Map<number, H3Stream>();
  /** @internal */ readonly ids: StreamIds;
  private readonly reader: StreamReader;
  private started = false;
  private controlId = -1;
  /** The engine keeps PTO_ANCHOR in flight on our control stream (QuicTransport.setPtoAnchor). */
  private anchorOn = false;
  /** start() queued SETTINGS: the anchor may go on once QUIC has taken every byte queued on the control stream. */
  private settingsQueued = false;
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
    this.ids = new StreamIds(this.isServer);
    this.reader = new StreamReader(this);
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
    this.settingsQueued = true;
    this.anchorIfIdle(s);
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
    const r = attachRequest(this, s, role);
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
    return this.ids.allocBidi(this.goawayReceived);
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
    const id = this.isServer ? this.ids.firstUnseenPeerBidi : 0;
    this.goawaySent = id;
    const ctl = this.streams.get(this.controlId);
    if (this.anchorOn) {
      // The GOAWAY must not be split by an anchor frame should QUIC take only part of it (on again once it is taken whole).
      this.anchorOn = false;
      this.transport.setPtoAnchor?.(this.controlId, EMPTY);
    }
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
    this.reader.readAll();
    this.maybeFinishDrain();
  }

  /** Flush queued stream data (call when QUIC reports credit). */
  handleWritable(): void {
    if (this.closed) return;
    this.enter();
    // Every readable event asks; usually nothing waits for credit.
    if (this.wantsWritable()) {
      this.guard(() => {
        for (const s of Array.from(this.streams.values())) if (s.send.pending) this.flush(s);
      });
    }
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
    const buf = dgramScratch.take();
    this.reader.begin();
    try {
      // One engine call per batch of datagrams, each handled at its offset (the handler may rewrite it in place only).
      const lens = dgramLensFree.pop() ?? new Uint32Array(64);
      let failed: unknown = null;
      try {
        for (;;) {
          const k = this.transport.dgramRecvBatch(buf, lens);
          if (k === 0) break;
          let off = 0;
          let i = 0;
          let gone = false;
          for (; i < k && !this.closed && !gone && failed === null; i++) {
            try {
              this.onDatagram(buf, off, lens[i]!);
            } catch (e) {
              if (e instanceof ConnectionClosed) gone = true;
              else failed = e; // the connection is closed for it (the endpoint's handlerFailed): nothing more is handled
            }
            off += lens[i]!;
          }
          if (i < k) {
            // The connection closed, or a handler failed, part way: the rest of the batch is dropped, and counted.
            this.counters.datagramsReceived += k - i;
            this.counters.datagramsDroppedConnectionClosed += k - i;
          }
          if (this.closed || gone || failed !== null) break;
        }
      } finally {
        if (dgramLensFree.length < 4) dgramLensFree.push(lens);
      }
      if (failed !== null) throw failed;
    } catch (e) {
      if (!(e instanceof ConnectionClosed)) throw e;
    } finally {
      dgramScratch.give(buf);
      this.reader.end();
    }
  }

  /**
   * An HTTP Datagram payload (quarter stream ID first) at buf[0, n) that
   * another reader took from the QUIC connection (the agent's TUN thread),
   * handled as if read here.
   */
  receiveDatagram(buf: Uint8Array, n: number): void {
    if (!this.closed) this.onDatagram(buf, 0, n);
  }

  /** The HTTP Datagram payload at buf[at, at + n). */
  private onDatagram(buf: Uint8Array, at: number, n: number): void {
    this.counters.datagramsReceived++;
    const q = parseQuarterStreamId(buf, at, at + n);
    if (q === QSID_TOO_SHORT || q === QSID_TOO_LARGE) {
      // RFC 9297 §2.1
      this.connError(H3Error.H3_DATAGRAM_ERROR, q === QSID_TOO_SHORT ? 'datagram too short' : 'quarter stream ID above 2^60-1');
      return;
    }
    const id = q * 4;
    const s = this.streams.get(id);
    const r = s?.req;
    if (s === undefined || r == null || s.closed) {
      const opened = this.ids.opened(id);
      if (opened) this.counters.datagramsDroppedClosedStream++;
      else this.counters.datagramsDroppedUnknownStream++;
      return;
    }
    if (r.tunnel !== null) {
      const len = varintLengthAt(buf, at);
      r.tunnel.handler.onDatagram(buf, at + len, n - len);
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

  // ---------------------------------------------------------------- reader and control-stream hosts

  /** @internal StreamHost */
  scheduleResume(s: H3Stream): void {
    this.reader.scheduleResume(s);
  }

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
    if (s.id === this.controlId) this.anchorIfIdle(s);
    if (s.closed) this.dropStream(s); // finished flushing a stream we are done with
    else if (s.send.finSent && s.remoteDone && s.req?.tunnel) this.dropStream(s);
  }

  /**
   * Turns the PTO anchor on once QUIC holds every byte we queued on the
   * control stream (SETTINGS, or a GOAWAY after shutdown() turned it off):
   * from then on the engine may add its frames between ours.
   */
  private anchorIfIdle(s: H3Stream): void {
    if (this.anchorOn || !this.settingsQueued || !s.send.idle || !this.transport.setPtoAnchor) return;
    this.anchorOn = true;
    this.transport.setPtoAnchor(this.controlId, PTO_ANCHOR);
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
/**
 * The frame the engine keeps in flight on our control stream while DATAGRAMs
 * go out (QuicTransport.setPtoAnchor): the first reserved frame type, 0x21,
 * empty (RFC 9114 §7.2.8: the peer ignores it).
 */
const PTO_ANCHOR = new Uint8Array([0x21, 0x00]);

/** Headroom a caller of TunnelStream.sendDatagram leaves; re-exported for convenience. */
export { H3_DATAGRAM_HEADROOM } from './tunnel-stream.js';
