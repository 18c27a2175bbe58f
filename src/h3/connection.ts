/**
 * A sans-IO HTTP/3 connection (RFC 9114) over one {@link QuicTransport}:
 * control and QPACK streams, requests and responses, Extended CONNECT
 * (RFC 9220) tunnels with capsules and HTTP Datagrams (RFC 9297), GOAWAY.
 */

import { QuicStreamError, type QuicTransport } from '../quic/transport.js';
import { encodeVarint, parseVarint, varintLength, varintLengthAt, VARINT_NEED_MORE } from '../quic/varint.js';
import { CAPSULE_DATAGRAM, CapsuleReassembler, capsuleHeaderLength, encodeCapsuleHeader } from './capsule.js';
import { parseQuarterStreamId, quarterStreamIdLength, QSID_TOO_LARGE, QSID_TOO_SHORT, writeQuarterStreamId } from './datagram.js';
import { H3Error, h3ErrorName } from './errors.js';
import {
  FrameType,
  StreamType,
  encodeFrame,
  encodeFrameHeader,
  frameHeaderLength,
  greaseValue,
  isReservedH2FrameType,
  parseFrameHeader,
  type FrameHeader,
} from './frame.js';
import {
  fieldValue,
  isCapsuleProtocol,
  validateRequest,
  validateResponse,
  validateTrailers,
  type RequestHead,
} from './message.js';
import { FIELD_LINE_OVERHEAD, decodeFieldSection, encodeFieldSection, type FieldLine, type FieldList } from './qpack.js';
import { SettingId, defaultSettings, encodeSettings, parseSettings, type H3Settings } from './settings.js';
import { H3_DATAGRAM_HEADROOM, type TunnelStream, type TunnelStreamHandler } from './tunnel-stream.js';

/** Tuning (not spec) defaults. */
const DEFAULT_MAX_FIELD_SECTION = 16 * 1024;
const DEFAULT_MAX_CAPSULE = 64 * 1024;
const DEFAULT_MAX_STREAM_QUEUE = 256 * 1024;
const DEFAULT_MAX_BODY = 64 * 1024;
const MAX_CONTROL_FRAME = 4096;
/** Out-of-order peer stream IDs remembered at most. */
const MAX_GAPS = 1024;
/** Bytes read from a stream per streamRecv call. */
const READ_CHUNK = 16 * 1024;
/** Largest QUIC DATAGRAM payload we read (bounded by UDP). */
const DGRAM_BUF = 65536;

/** A plain (non-Extended-CONNECT) request as the server application sees it. */
export interface H3Request {
  readonly streamId: number;
  readonly method: string;
  readonly scheme: string | undefined;
  readonly authority: string | undefined;
  readonly path: string | undefined;
  readonly headers: FieldList;
  /** The whole request body (bounded by maxBodyBytes; larger bodies are refused with 413). */
  readonly body: Uint8Array;
}

/** A response to a plain request. Content-Length is added when a body is given. */
export interface H3Response {
  readonly status: number;
  readonly headers?: FieldList;
  readonly body?: Uint8Array | string;
}

/** The server application's answer to plain requests (synchronous). */
export type H3RequestHandler = (req: H3Request) => H3Response;

/**
 * An Extended CONNECT request waiting for the application's decision. Until
 * `accept` or `reject` is called the stream is not read (QUIC flow control
 * holds the peer back) and its datagrams are dropped (counted). Both calls
 * may come later (after an async check); they return null / do nothing if
 * the stream or connection has gone meanwhile.
 */
export interface ConnectRequest {
  readonly streamId: number;
  /** `:protocol` (e.g. "connect-ip", "connect-udp"). */
  readonly protocol: string;
  readonly scheme: string;
  readonly authority: string;
  readonly path: string;
  /** Regular request fields (lowercase names), e.g. authorization. */
  readonly headers: FieldList;
  /** The request carried `capsule-protocol: ?1` (RFC 9297 §3.4). */
  readonly capsuleProtocol: boolean;
  /** First value of a request field. */
  header(name: string): string | undefined;
  /** True once accepted or rejected, or after the stream went away. */
  readonly settled: boolean;
  /**
   * Answer 2xx (default 200; never 204/205/206, RFC 9297 §3.2) with
   * `capsule-protocol: ?1` and no Content-Length, and bind the stream to
   * `handler`. Returns the tunnel, or null if the stream is gone.
   */
  accept(handler: TunnelStreamHandler, headers?: FieldList, status?: number): TunnelStream | null;
  /** Answer a non-2xx status (e.g. 403 with Proxy-Status) and end the stream. */
  reject(status: number, headers?: FieldList, body?: Uint8Array | string): void;
}

/** The server application's hook for Extended CONNECT requests. */
export type ConnectHandler = (req: ConnectRequest) => void;

/** What the client gives for an Extended CONNECT request (RFC 9220). */
export interface ConnectOptions {
  readonly protocol: string;
  readonly authority: string;
  readonly path: string;
  /** Default "https". */
  readonly scheme?: string;
  /** Extra request fields such as authorization (lowercase names). `capsule-protocol: ?1` is added. */
  readonly headers?: FieldList;
}

/** Client-side events of one Extended CONNECT stream. */
export interface ClientConnectHandler extends TunnelStreamHandler {
  /**
   * The final response. `tunnel` is non-null for 2xx; then capsules,
   * datagrams and onClose follow. For other statuses no callback follows;
   * the stream is finished by the layer.
   */
  onResponse(status: number, headers: FieldList, tunnel: TunnelStream | null): void;
}

/** A response to a plain client request, or the H3 error code that ended it. */
export type H3ClientResult =
  | { readonly ok: true; readonly status: number; readonly headers: FieldList; readonly body: Uint8Array }
  | { readonly ok: false; readonly error: number };

/** Options for {@link H3Connection}. */
export interface H3ConnectionOptions {
  /** Largest field section we accept, advertised as SETTINGS_MAX_FIELD_SECTION_SIZE (RFC 9114 §4.2.2). */
  maxFieldSectionSize?: number;
  /** Largest capsule value we reassemble (larger → stream error H3_EXCESSIVE_LOAD). */
  maxCapsuleBytes?: number;
  /** Bound on bytes queued for sending on one stream beyond QUIC flow control. */
  maxStreamQueueBytes?: number;
  /** Bound on plain request/response bodies collected. */
  maxBodyBytes?: number;
  /** Send SETTINGS_ENABLE_CONNECT_PROTOCOL=1 (RFC 9220 §3). Default true. */
  enableConnectProtocol?: boolean;
  /** Send SETTINGS_H3_DATAGRAM=1 (RFC 9297 §2.1.1). Default true. */
  enableDatagrams?: boolean;
  /** Send a reserved setting and a reserved frame type (RFC 9114 §7.2.4.1, §7.2.8). Default true. */
  grease?: boolean;
  /** Server: Extended CONNECT requests. Without it they are answered 501. */
  onConnect?: ConnectHandler;
  /** Server: other requests. Default {@link healthzHandler}. */
  onRequest?: H3RequestHandler;
  /** The peer's SETTINGS arrived. */
  onSettings?: (settings: H3Settings) => void;
  /** The peer sent GOAWAY (stream ID on a client, push ID on a server). */
  onGoaway?: (id: number) => void;
  /** The connection ended: by our error, the peer or the transport. Called once. */
  onClosed?: (errorCode: number, reason: string) => void;
}

/**
 * Default plain-request handler: `GET /healthz` (or HEAD) → 200 "ok\n", other
 * paths 404, other methods 405. Load balancers and stock HTTP/3 clients probe it.
 */
export const healthzHandler: H3RequestHandler = (req) => {
  if (req.path === '/healthz' || req.path?.startsWith('/healthz?')) {
    if (req.method === 'GET' || req.method === 'HEAD') {
      return { status: 200, headers: [['content-type', 'text/plain']], body: req.method === 'GET' ? 'ok\n' : undefined };
    }
    return { status: 405, headers: [['allow', 'GET, HEAD']] };
  }
  return { status: 404, headers: [['content-type', 'text/plain']], body: 'not found\n' };
};

/** Counters for every drop and error reason. Plain numbers; read them any time. */
export interface H3Counters {
  requestsReceived: number;
  connectRequestsReceived: number;
  connectAccepted: number;
  connectRejected: number;
  requestsSent: number;
  requestsRejectedGoaway: number;
  malformedMessages: number;
  unknownFramesIgnored: number;
  unknownStreamsIgnored: number;
  unknownSettingsIgnored: number;
  capsulesReceived: number;
  capsulesSent: number;
  capsulesDroppedClosed: number;
  capsulesDroppedQueueFull: number;
  datagramCapsulesReceived: number;
  datagramsReceived: number;
  datagramsSent: number;
  /** Datagram for a stream that has closed (RFC 9297 §2.1: dropped, not an error). */
  datagramsDroppedClosedStream: number;
  /** Datagram for a stream not (yet) opened. */
  datagramsDroppedUnknownStream: number;
  /** Datagram for an Extended CONNECT not yet answered. */
  datagramsDroppedPending: number;
  /** Datagram on a stream without datagram semantics (the stream is aborted, RFC 9297 §2). */
  datagramsNoSemantics: number;
  /** Send refused: the peer did not send SETTINGS_H3_DATAGRAM=1 or the stream is closed. */
  datagramsDroppedNotAllowed: number;
  /** Send refused by QUIC (too big or queue full). */
  datagramsDroppedTransport: number;
  /** Stream errors we sent, by H3 error name. */
  streamErrorsSent: Record<string, number>;
  /** Stream resets/stops received, by H3 error name. */
  streamErrorsReceived: Record<string, number>;
  /** Our connection error (0 while open or after a clean close). */
  connectionError: number;
  /** The application's onRequest/onConnect threw (answered 500). */
  handlerErrors: number;
}

function newCounters(): H3Counters {
  return {
    requestsReceived: 0,
    connectRequestsReceived: 0,
    connectAccepted: 0,
    connectRejected: 0,
    requestsSent: 0,
    requestsRejectedGoaway: 0,
    malformedMessages: 0,
    unknownFramesIgnored: 0,
    unknownStreamsIgnored: 0,
    unknownSettingsIgnored: 0,
    capsulesReceived: 0,
    capsulesSent: 0,
    capsulesDroppedClosed: 0,
    capsulesDroppedQueueFull: 0,
    datagramCapsulesReceived: 0,
    datagramsReceived: 0,
    datagramsSent: 0,
    datagramsDroppedClosedStream: 0,
    datagramsDroppedUnknownStream: 0,
    datagramsDroppedPending: 0,
    datagramsNoSemantics: 0,
    datagramsDroppedNotAllowed: 0,
    datagramsDroppedTransport: 0,
    streamErrorsSent: {},
    streamErrorsReceived: {},
    connectionError: 0,
    handlerErrors: 0,
  };
}

const enum Kind {
  /** Peer uni stream whose type varint has not arrived. */
  UniPending,
  Control,
  QpackEncoder,
  QpackDecoder,
  /** Unknown/grease uni stream: discarded. */
  Ignored,
  /** Our own uni stream (send only). */
  LocalUni,
  Request,
}

const enum Mode {
  Skip,
  Buffer,
  Stream,
}

const enum Phase {
  /** Waiting for the (final) HEADERS. */
  Head,
  /** After the head: DATA, maybe trailers. */
  Body,
  /** After trailers: nothing but unknown frames. */
  Trailers,
}

const enum Role {
  /** Server side of a request stream. */
  ServerRequest,
  /** Client side, Extended CONNECT. */
  ClientConnect,
  /** Client side, plain request. */
  ClientPlain,
}

/** Per-stream state (allocated per stream, never per packet). */
class Stream {
  kind: Kind;
  role = Role.ServerRequest;
  // frame reader
  readonly hdr = new Uint8Array(16);
  hdrLen = 0;
  frameType = 0;
  /** Payload bytes left in the current frame, or -1 when reading a header. */
  frameRemaining = -1;
  mode = Mode.Skip;
  payload: Uint8Array | null = null;
  payloadLen = 0;
  // request/response
  phase = Phase.Head;
  settingsSeen = false;
  /** Held bytes of a paused stream (Extended CONNECT awaiting a decision). */
  held: Uint8Array | null = null;
  paused = false;
  capsules: CapsuleReassembler | null = null;
  tunnel: TunnelImpl | null = null;
  datagrams = false;
  pending: PendingConnect | null = null;
  clientHandler: ClientConnectHandler | null = null;
  plainCb: ((r: H3ClientResult) => void) | null = null;
  respStatus = 0;
  respHeaders: FieldList = [];
  reqHead: RequestHead | null = null;
  body: Uint8Array[] = [];
  bodyLen = 0;
  // QPACK instruction streams: small partial instruction buffer
  instr: number[] = [];
  // send side
  sendQueue: Uint8Array[] = [];
  queuedBytes = 0;
  finQueued = false;
  finSent = false;
  /** Peer finished or reset its side. */
  remoteDone = false;
  closed = false;

  constructor(
    readonly id: number,
    kind: Kind,
  ) {
    this.kind = kind;
  }
}

/** Thrown internally to unwind processing after a connection error was raised. */
class ConnectionClosed extends Error {}

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
export class H3Connection {
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
  private readonly t: QuicTransport;
  private readonly o: Required<
    Pick<
      H3ConnectionOptions,
      'maxFieldSectionSize' | 'maxCapsuleBytes' | 'maxStreamQueueBytes' | 'maxBodyBytes' | 'enableConnectProtocol' | 'enableDatagrams' | 'grease'
    >
  >;
  private readonly opts: H3ConnectionOptions;
  private readonly streams = new Map<number, Stream>();
  private readonly rbuf = new Uint8Array(READ_CHUNK);
  private readonly dbuf = new Uint8Array(DGRAM_BUF);
  private readonly fh: FrameHeader = { type: 0, length: 0, headerLength: 0 };
  private started = false;
  private controlId = -1;
  private hasPeerControl = false;
  private hasPeerEncoder = false;
  private hasPeerDecoder = false;
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
  private readonly resumeQueue: Stream[] = [];
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
    this.t = transport;
    this.isServer = transport.isServer;
    this.opts = options;
    this.o = {
      maxFieldSectionSize: options.maxFieldSectionSize ?? DEFAULT_MAX_FIELD_SECTION,
      maxCapsuleBytes: options.maxCapsuleBytes ?? DEFAULT_MAX_CAPSULE,
      maxStreamQueueBytes: options.maxStreamQueueBytes ?? DEFAULT_MAX_STREAM_QUEUE,
      maxBodyBytes: options.maxBodyBytes ?? DEFAULT_MAX_BODY,
      enableConnectProtocol: options.enableConnectProtocol ?? true,
      enableDatagrams: options.enableDatagrams ?? true,
      grease: options.grease ?? true,
    };
  }

  /** True when both sides sent SETTINGS_H3_DATAGRAM=1 (RFC 9297 §2.1.1). */
  get datagramsEnabled(): boolean {
    return this.o.enableDatagrams && this.peerSettings.h3Datagram;
  }

  /** Open our control stream and send SETTINGS (RFC 9114 §6.2.1). Call once, when QUIC is established. */
  start(): void {
    try {
      this.start_();
    } catch (e) {
      if (!(e instanceof ConnectionClosed)) throw e;
    }
  }

  private start_(): void {
    if (this.started || this.closed) return;
    this.started = true;
    this.controlId = this.isServer ? 3 : 2;
    const s = new Stream(this.controlId, Kind.LocalUni);
    this.streams.set(s.id, s);
    const pairs: Array<[number, number]> = [
      [SettingId.QPACK_MAX_TABLE_CAPACITY, 0],
      [SettingId.QPACK_BLOCKED_STREAMS, 0],
      [SettingId.MAX_FIELD_SECTION_SIZE, this.o.maxFieldSectionSize],
    ];
    if (this.o.enableConnectProtocol) pairs.push([SettingId.ENABLE_CONNECT_PROTOCOL, 1]);
    if (this.o.enableDatagrams) pairs.push([SettingId.H3_DATAGRAM, 1]);
    if (this.o.grease) pairs.push([greaseValue((Math.random() * 1000) | 0), (Math.random() * 1000) | 0]);
    const typeByte = new Uint8Array([StreamType.CONTROL]);
    this.queue(s, typeByte, false);
    this.queue(s, encodeFrame(FrameType.SETTINGS, encodeSettings(pairs)), false);
    if (this.o.grease) {
      // §7.2.8: a reserved frame type the peer must ignore.
      this.queue(s, encodeFrame(greaseValue((Math.random() * 1000) | 0), new Uint8Array([0x6d, 0x74])), false);
    }
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
    const id = this.allocBidi();
    if (id < 0) {
      queueMicrotask(() => handler.onClose(H3Error.H3_REQUEST_REJECTED));
      return -1;
    }
    const s = new Stream(id, Kind.Request);
    s.role = Role.ClientConnect;
    s.clientHandler = handler;
    this.streams.set(id, s);
    const send = () => {
      if (s.closed || this.closed) return;
      if (!this.peerSettings.enableConnectProtocol) {
        // RFC 9220 §3: no :protocol unless the server sent ENABLE_CONNECT_PROTOCOL=1.
        this.dropStream(s);
        handler.onClose(H3Error.H3_REQUEST_REJECTED);
        return;
      }
      const fields: FieldLine[] = [
        [':method', 'CONNECT'],
        [':protocol', req.protocol],
        [':scheme', req.scheme ?? 'https'],
        [':authority', req.authority],
        [':path', req.path],
        ['capsule-protocol', '?1'],
        ...(req.headers ?? []),
      ];
      if (fieldSectionSize(fields) > this.peerSettings.maxFieldSectionSize) {
        // RFC 9114 §4.2.2: do not send a header section above the peer's limit.
        this.dropStream(s);
        handler.onClose(H3Error.H3_EXCESSIVE_LOAD);
        return;
      }
      this.sendHeaders(s, fields, false);
      this.counters.requestsSent++;
    };
    if (this.peerSettingsReceived) send();
    else this.waiting.push(send);
    return id;
  }

  /**
   * Client: send a plain request (e.g. GET /healthz) and collect the response
   * body (bounded by maxBodyBytes). `done` is called exactly once.
   */
  request(
    req: { method: string; authority: string; path: string; scheme?: string; headers?: FieldList; body?: Uint8Array },
    done: (r: H3ClientResult) => void,
  ): number {
    if (this.isServer) throw new Error('h3: request() is for clients');
    const id = this.allocBidi();
    if (id < 0) {
      queueMicrotask(() => done({ ok: false, error: H3Error.H3_REQUEST_REJECTED }));
      return -1;
    }
    const s = new Stream(id, Kind.Request);
    s.role = Role.ClientPlain;
    s.plainCb = done;
    this.streams.set(id, s);
    const fields: FieldLine[] = [
      [':method', req.method],
      [':scheme', req.scheme ?? 'https'],
      [':authority', req.authority],
      [':path', req.path],
      ...(req.headers ?? []),
    ];
    const body = req.body;
    if (fieldSectionSize(fields) > this.peerSettings.maxFieldSectionSize) {
      // RFC 9114 §4.2.2
      this.dropStream(s);
      queueMicrotask(() => done({ ok: false, error: H3Error.H3_EXCESSIVE_LOAD }));
      return id;
    }
    this.sendHeaders(s, fields, !body || body.length === 0);
    if (body && body.length > 0) this.sendData(s, body, true);
    this.counters.requestsSent++;
    return id;
  }

  private allocBidi(): number {
    if (this.closed || this.draining) return -1;
    const id = this.nextBidi;
    if (id >= this.goawayReceived) return -1;
    this.nextBidi += 4;
    return id;
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
      this.queue(ctl, encodeFrame(FrameType.GOAWAY, payload), false);
    }
    // The close (if nothing is open) waits for the next driver call so the
    // GOAWAY is not discarded with the connection.
  }

  /** Close now with an H3 error code (RFC 9114 §8.1); tunnels get onClose(code). */
  close(code: number = H3Error.H3_NO_ERROR, reason = ''): void {
    this.connError(code, reason, false);
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
      for (const id of Array.from(this.t.readableStreams())) {
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

  private drainResumes(): void {
    while (this.resumeQueue.length > 0 && !this.closed) {
      const s = this.resumeQueue.shift()!;
      if (!s.closed) this.resume(s);
    }
  }

  /** Flush queued stream data (call when QUIC reports credit). */
  handleWritable(): void {
    if (this.closed) return;
    this.enter();
    try {
      for (const s of Array.from(this.streams.values())) if (s.sendQueue.length > 0 || (s.finQueued && !s.finSent)) this.flush(s);
    } catch (e) {
      if (!(e instanceof ConnectionClosed)) throw e;
    }
    this.maybeFinishDrain();
  }

  /** True while some stream has bytes queued beyond QUIC flow control. */
  wantsWritable(): boolean {
    for (const s of this.streams.values()) if (s.sendQueue.length > 0 || (s.finQueued && !s.finSent)) return true;
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
        const n = this.t.dgramRecv(buf);
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
    if (s === undefined || s.kind !== Kind.Request || s.closed) {
      const opened = this.isServer ? id <= this.maxPeerBidi && !this.bidiGaps.has(id) : id < this.nextBidi;
      if (opened) this.counters.datagramsDroppedClosedStream++;
      else this.counters.datagramsDroppedUnknownStream++;
      return;
    }
    if (s.tunnel !== null && s.datagrams) {
      const off = varintLengthAt(buf, 0);
      s.tunnel.handler.onDatagram(buf, off, n - off);
      return;
    }
    if (s.pending !== null || (s.role === Role.ClientConnect && s.phase === Phase.Head)) {
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
    if (s.paused) return; // Extended CONNECT awaiting a decision: leave data in QUIC
    const buf = this.rbuf;
    for (;;) {
      let r: [number, boolean] | null;
      try {
        r = this.t.streamRecv(id, buf);
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
      if (s.paused) {
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
    for (let i = 0; i < 64; i++) {
      let r: [number, boolean] | null;
      try {
        r = this.t.streamRecv(id, this.rbuf);
      } catch {
        return;
      }
      if (r === null || r[1] || r[0] === 0) return;
    }
  }

  private newPeerStream(id: number): Stream | undefined {
    const peerInitiated = ((id & 1) === 1) === !this.isServer;
    if (!peerInitiated) return undefined; // one of ours that has been closed
    if ((id & 2) === 0) {
      // Bidirectional.
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
      const s = new Stream(id, Kind.Request);
      s.role = Role.ServerRequest;
      this.streams.set(id, s);
      if (id >= this.goawaySent) {
        // RFC 9114 §5.2: requests at or above our GOAWAY ID are not processed.
        this.counters.requestsRejectedGoaway++;
        this.abortStream(s, H3Error.H3_REQUEST_REJECTED, false);
        return undefined;
      }
      return s;
    }
    const s = new Stream(id, Kind.UniPending);
    this.streams.set(id, s);
    return s;
  }

  private onStreamData(s: Stream, buf: Uint8Array, off: number, end: number): void {
    let pos = off;
    if (s.kind === Kind.UniPending) {
      pos = this.readUniType(s, buf, pos, end);
      if (pos < 0) return;
    }
    switch (s.kind) {
      case Kind.UniPending:
      case Kind.Ignored:
      case Kind.LocalUni:
        return;
      case Kind.QpackEncoder:
      case Kind.QpackDecoder:
        this.onQpackInstructions(s, buf, pos, end);
        return;
      default:
        this.feedFrames(s, buf, pos, end);
    }
  }

  /** Read the stream type varint of a peer uni stream (RFC 9114 §6.2). Returns the next position or -1. */
  private readUniType(s: Stream, buf: Uint8Array, pos: number, end: number): number {
    while (pos < end && s.hdrLen < 8) {
      s.hdr[s.hdrLen++] = buf[pos++]!;
      const t = parseVarint(s.hdr, 0, s.hdrLen);
      if (t === VARINT_NEED_MORE) continue;
      s.hdrLen = 0;
      switch (t) {
        case StreamType.CONTROL:
          // §6.2.1: only one control stream.
          if (this.hasPeerControl) return this.connError(H3Error.H3_STREAM_CREATION_ERROR, 'second control stream');
          this.hasPeerControl = true;
          s.kind = Kind.Control;
          break;
        case StreamType.PUSH:
          // §6.2.2: a client must not open push streams; we never sent MAX_PUSH_ID (§4.6).
          if (this.isServer) return this.connError(H3Error.H3_STREAM_CREATION_ERROR, 'client-initiated push stream');
          return this.connError(H3Error.H3_ID_ERROR, 'push stream without MAX_PUSH_ID');
        case StreamType.QPACK_ENCODER:
          // RFC 9204 §4.2: at most one of each.
          if (this.hasPeerEncoder) return this.connError(H3Error.H3_STREAM_CREATION_ERROR, 'second QPACK encoder stream');
          this.hasPeerEncoder = true;
          s.kind = Kind.QpackEncoder;
          break;
        case StreamType.QPACK_DECODER:
          if (this.hasPeerDecoder) return this.connError(H3Error.H3_STREAM_CREATION_ERROR, 'second QPACK decoder stream');
          this.hasPeerDecoder = true;
          s.kind = Kind.QpackDecoder;
          break;
        default:
          // §6.2 / §9: unknown and reserved stream types are ignored; we stop reading them.
          this.counters.unknownStreamsIgnored++;
          s.kind = Kind.Ignored;
          this.t.streamShutdown(s.id, 'read', H3Error.H3_STREAM_CREATION_ERROR);
          return -1;
      }
      return pos;
    }
    return -1;
  }

  /**
   * QPACK encoder/decoder stream instructions (RFC 9204 §4.3, §4.4). With a
   * zero-capacity table only "Set Dynamic Table Capacity 0", Stream
   * Cancellation and an Insert Count Increment of… nothing are legal.
   */
  private onQpackInstructions(s: Stream, buf: Uint8Array, pos: number, end: number): void {
    for (; pos < end; pos++) {
      s.instr.push(buf[pos]!);
      const b0 = s.instr[0]!;
      const enc = s.kind === Kind.QpackEncoder;
      let prefix: number;
      if (enc) {
        // §4.3.1 Set Dynamic Table Capacity: 001 + 5-bit prefix; other encoder instructions insert entries.
        if ((b0 & 0xe0) !== 0x20) {
          this.connError(H3Error.QPACK_ENCODER_STREAM_ERROR, 'encoder stream inserts into a zero-capacity table');
          return;
        }
        prefix = 5;
      } else if (b0 & 0x80) {
        // §4.4.1 Section Acknowledgment: we never send sections with dynamic references.
        this.connError(H3Error.QPACK_DECODER_STREAM_ERROR, 'section acknowledgment for a section without dynamic references');
        return;
      } else {
        prefix = 6; // §4.4.2 Stream Cancellation (01) or §4.4.3 Insert Count Increment (00)
      }
      const v = prefixIntFromBytes(s.instr, prefix);
      if (v === -2) {
        this.connError(enc ? H3Error.QPACK_ENCODER_STREAM_ERROR : H3Error.QPACK_DECODER_STREAM_ERROR, 'QPACK integer too large');
        return;
      }
      if (v === -1) continue; // incomplete
      s.instr.length = 0;
      if (enc && v !== 0) {
        // §4.3.1: capacity above our SETTINGS_QPACK_MAX_TABLE_CAPACITY (0).
        this.connError(H3Error.QPACK_ENCODER_STREAM_ERROR, `dynamic table capacity ${v} above 0`);
        return;
      }
      if (!enc && (b0 & 0x40) === 0) {
        // §4.4.3: an increment of 0, or one beyond what we inserted (nothing), is an error.
        this.connError(H3Error.QPACK_DECODER_STREAM_ERROR, 'insert count increment with an empty table');
        return;
      }
    }
  }

  /** Frame reader shared by control and request streams (RFC 9114 §7.1). */
  private feedFrames(s: Stream, buf: Uint8Array, pos: number, end: number): void {
    const fh = this.fh;
    while (pos < end) {
      if (s.closed || this.closed || s.paused) {
        if (s.paused && pos < end) s.held = concat(s.held, buf.subarray(pos, end));
        return;
      }
      if (s.frameRemaining < 0) {
        const before = s.hdrLen;
        let take = 0;
        while (s.hdrLen < 16 && pos + take < end) s.hdr[s.hdrLen++] = buf[pos + take++]!;
        if (!parseFrameHeader(s.hdr, 0, s.hdrLen, fh)) {
          pos += take;
          continue;
        }
        pos += fh.headerLength - before;
        s.hdrLen = 0;
        s.frameType = fh.type;
        s.frameRemaining = fh.length;
        this.onFrameStart(s, fh.type, fh.length);
        if (s.closed || this.closed) return;
        if (fh.length === 0) {
          s.frameRemaining = -1;
          this.onFrameEnd(s);
        }
        continue;
      }
      const take = Math.min(s.frameRemaining, end - pos);
      if (s.mode === Mode.Buffer) {
        s.payload!.set(buf.subarray(pos, pos + take), s.payloadLen);
        s.payloadLen += take;
      } else if (s.mode === Mode.Stream) {
        this.onFrameData(s, buf, pos, pos + take);
      }
      pos += take;
      s.frameRemaining -= take;
      if (s.frameRemaining === 0) {
        s.frameRemaining = -1;
        this.onFrameEnd(s);
      }
    }
  }

  private startBuffer(s: Stream, length: number, limit: number, code: number, stream: boolean): void {
    if (length > limit) {
      if (stream) this.abortStream(s, code, true);
      else this.connError(code, `frame of ${length} bytes exceeds ${limit}`);
      return;
    }
    s.mode = Mode.Buffer;
    s.payload = new Uint8Array(length);
    s.payloadLen = 0;
  }

  private onFrameStart(s: Stream, type: number, length: number): void {
    s.mode = Mode.Skip;
    if (isReservedH2FrameType(type)) {
      this.connError(H3Error.H3_FRAME_UNEXPECTED, `HTTP/2 frame type 0x${type.toString(16)}`); // §7.2.8
      return;
    }
    if (s.kind === Kind.Control) {
      if (!s.settingsSeen && type !== FrameType.SETTINGS) {
        this.connError(H3Error.H3_MISSING_SETTINGS, 'first control frame is not SETTINGS'); // §6.2.1
        return;
      }
      switch (type) {
        case FrameType.SETTINGS:
          if (s.settingsSeen) {
            this.connError(H3Error.H3_FRAME_UNEXPECTED, 'second SETTINGS frame'); // §7.2.4
            return;
          }
          s.settingsSeen = true;
          this.startBuffer(s, length, MAX_CONTROL_FRAME, H3Error.H3_EXCESSIVE_LOAD, false);
          return;
        case FrameType.GOAWAY:
        case FrameType.MAX_PUSH_ID:
        case FrameType.CANCEL_PUSH:
          if (type === FrameType.MAX_PUSH_ID && !this.isServer) {
            this.connError(H3Error.H3_FRAME_UNEXPECTED, 'MAX_PUSH_ID from a server'); // §7.2.7
            return;
          }
          this.startBuffer(s, length, 8, H3Error.H3_FRAME_ERROR, false);
          return;
        case FrameType.DATA:
        case FrameType.HEADERS:
        case FrameType.PUSH_PROMISE:
          this.connError(H3Error.H3_FRAME_UNEXPECTED, `frame 0x${type.toString(16)} on the control stream`);
          return;
        default:
          this.counters.unknownFramesIgnored++; // §9: unknown frame types are ignored
          return;
      }
    }
    // Request stream.
    switch (type) {
      case FrameType.HEADERS:
        if (s.phase === Phase.Trailers) {
          this.connError(H3Error.H3_FRAME_UNEXPECTED, 'HEADERS after trailers'); // §4.1
          return;
        }
        this.startBuffer(s, length, this.o.maxFieldSectionSize, H3Error.H3_EXCESSIVE_LOAD, true);
        return;
      case FrameType.DATA:
        if (s.phase !== Phase.Body) {
          this.connError(H3Error.H3_FRAME_UNEXPECTED, 'DATA before HEADERS or after trailers'); // §4.1
          return;
        }
        s.mode = Mode.Stream;
        return;
      case FrameType.PUSH_PROMISE:
        if (this.isServer) this.connError(H3Error.H3_FRAME_UNEXPECTED, 'PUSH_PROMISE from a client'); // §7.2.5
        else this.connError(H3Error.H3_ID_ERROR, 'PUSH_PROMISE without MAX_PUSH_ID'); // §4.6
        return;
      case FrameType.SETTINGS:
      case FrameType.GOAWAY:
      case FrameType.MAX_PUSH_ID:
      case FrameType.CANCEL_PUSH:
        this.connError(H3Error.H3_FRAME_UNEXPECTED, `frame 0x${type.toString(16)} on a request stream`);
        return;
      default:
        this.counters.unknownFramesIgnored++;
        return;
    }
  }

  private onFrameData(s: Stream, buf: Uint8Array, off: number, end: number): void {
    // DATA payload on a request stream.
    if (s.capsules !== null) {
      const err = s.capsules.push(buf, off, end);
      if (err !== 0) {
        this.counters.malformedMessages++;
        this.abortStream(s, err, true);
      }
      return;
    }
    if (s.role === Role.ClientConnect) return; // cannot happen: non-2xx streams are dropped
    if (s.bodyLen + (end - off) > this.o.maxBodyBytes) {
      if (s.role === Role.ServerRequest) {
        this.sendResponse(s, { status: 413, body: 'request body too large\n' });
        this.t.streamShutdown(s.id, 'read', H3Error.H3_NO_ERROR);
        this.dropStream(s);
      } else {
        this.abortStream(s, H3Error.H3_EXCESSIVE_LOAD, true);
      }
      return;
    }
    s.body.push(buf.slice(off, end));
    s.bodyLen += end - off;
  }

  private onFrameEnd(s: Stream): void {
    if (s.mode !== Mode.Buffer) return;
    const payload = s.payload!;
    const len = s.payloadLen;
    s.payload = null;
    s.mode = Mode.Skip;
    if (s.kind === Kind.Control) {
      this.onControlFrame(s.frameType, payload, len);
      return;
    }
    // HEADERS on a request stream.
    const dec = decodeFieldSection(payload, 0, len, this.o.maxFieldSectionSize);
    if (!dec.ok) {
      if (dec.code === H3Error.QPACK_DECOMPRESSION_FAILED) this.connError(dec.code, dec.reason); // RFC 9204 §2.2
      else this.abortStream(s, dec.code, true);
      return;
    }
    if (s.phase === Phase.Body) {
      const bad = validateTrailers(dec.fields);
      if (bad) {
        this.malformed(s);
        return;
      }
      s.phase = Phase.Trailers;
      return;
    }
    if (s.role === Role.ServerRequest) this.onRequestHead(s, dec.fields);
    else this.onResponseHead(s, dec.fields);
  }

  private malformed(s: Stream): void {
    // RFC 9114 §4.1.2: a malformed message is a stream error H3_MESSAGE_ERROR.
    this.counters.malformedMessages++;
    this.abortStream(s, H3Error.H3_MESSAGE_ERROR, true);
  }

  private onControlFrame(type: number, p: Uint8Array, len: number): void {
    switch (type) {
      case FrameType.SETTINGS: {
        const r = parseSettings(p, 0, len);
        if (!r.ok) {
          this.connError(r.code, r.reason);
          return;
        }
        if (r.settings.h3Datagram && this.t.dgramMaxWritableLen() === null) {
          // RFC 9297 §2.1.1: H3_DATAGRAM=1 without the QUIC DATAGRAM extension
          // (RFC 9221 max_datagram_frame_size) is a connection error.
          this.connError(H3Error.H3_SETTINGS_ERROR, 'H3_DATAGRAM=1 without QUIC DATAGRAM support');
          return;
        }
        this.peerSettings = r.settings;
        this.peerSettingsReceived = true;
        this.counters.unknownSettingsIgnored += r.settings.unknownCount;
        this.opts.onSettings?.(r.settings);
        const w = this.waiting.splice(0);
        for (const f of w) f();
        return;
      }
      case FrameType.GOAWAY: {
        const id = singleVarint(p, len);
        if (id < 0) {
          this.connError(H3Error.H3_FRAME_ERROR, 'malformed GOAWAY');
          return;
        }
        // §5.2: a client-initiated bidirectional stream ID from a server; never increasing.
        if (!this.isServer && id % 4 !== 0) {
          this.connError(H3Error.H3_ID_ERROR, 'GOAWAY ID is not a client bidirectional stream');
          return;
        }
        if (id > this.goawayReceived) {
          this.connError(H3Error.H3_ID_ERROR, 'GOAWAY ID increased');
          return;
        }
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
        this.opts.onGoaway?.(id);
        this.maybeFinishDrain();
        return;
      }
      case FrameType.MAX_PUSH_ID:
        if (singleVarint(p, len) < 0) this.connError(H3Error.H3_FRAME_ERROR, 'malformed MAX_PUSH_ID');
        return; // we never push
      case FrameType.CANCEL_PUSH:
        if (singleVarint(p, len) < 0) {
          this.connError(H3Error.H3_FRAME_ERROR, 'malformed CANCEL_PUSH');
          return;
        }
        // §7.2.3: a client cancelling a push we never promised is fine to ignore; a server
        // cancelling one above a MAX_PUSH_ID we never sent is H3_ID_ERROR.
        if (!this.isServer) this.connError(H3Error.H3_ID_ERROR, 'CANCEL_PUSH without MAX_PUSH_ID');
        return;
    }
  }

  private onRequestHead(s: Stream, fields: FieldLine[]): void {
    const v = validateRequest(fields, this.o.enableConnectProtocol);
    if (!v.ok) {
      this.malformed(s);
      return;
    }
    const head = v.head;
    s.phase = Phase.Body;
    s.reqHead = head;
    this.counters.requestsReceived++;
    if (head.protocol === undefined) return; // plain request: answered at FIN
    this.counters.connectRequestsReceived++;
    if (!this.opts.onConnect) {
      this.sendResponse(s, { status: 501, body: 'extended CONNECT not served here\n' });
      this.t.streamShutdown(s.id, 'read', H3Error.H3_NO_ERROR);
      this.dropStream(s);
      return;
    }
    s.paused = true;
    const pc = new PendingConnect(this, s, head);
    s.pending = pc;
    try {
      this.opts.onConnect(pc);
    } catch {
      this.counters.handlerErrors++;
      pc.reject(500, [['proxy-status', 'mtun; error=proxy_internal_error']]);
    }
  }

  /** @internal PendingConnect.accept */
  acceptConnect(pc: PendingConnect, handler: TunnelStreamHandler, headers: FieldList, status: number): TunnelStream | null {
    const s = pc.stream;
    if (this.closed || s.closed) return null;
    if (status < 200 || status > 299 || status === 204 || status === 205 || status === 206) {
      throw new RangeError(`h3: tunnel status must be 2xx other than 204/205/206 (RFC 9297 §3.2), got ${status}`);
    }
    for (const [n] of headers) {
      if (n === 'content-length') throw new RangeError('h3: capsule-protocol responses carry no Content-Length (RFC 9297 §3.2)');
    }
    s.pending = null;
    this.counters.connectAccepted++;
    this.sendHeaders(s, [[':status', String(status)], ['capsule-protocol', '?1'], ...headers], false);
    const tunnel = new TunnelImpl(this, s, handler);
    this.bindTunnel(s, tunnel);
    // The shared read buffer may be in use (accept() from inside a callback,
    // maybe for this very stream): resume once the current read unwinds.
    // With nothing held back, unpausing now keeps order and lets a read of
    // this stream that is on the stack carry on.
    if (s.held === null) s.paused = false;
    this.resumeQueue.push(s);
    if (this.readDepth === 0) this.drainResumes();
    return s.closed ? null : tunnel;
  }

  /** @internal PendingConnect.reject */
  rejectConnect(pc: PendingConnect, status: number, headers: FieldList, body: Uint8Array | string | undefined): void {
    const s = pc.stream;
    if (this.closed || s.closed) return;
    if (status >= 200 && status <= 299) throw new RangeError('h3: reject() needs a non-2xx status');
    s.pending = null;
    this.counters.connectRejected++;
    this.sendResponse(s, { status, headers, body });
    // §4.1: the response is complete; stop reading the request.
    if (!s.remoteDone) this.t.streamShutdown(s.id, 'read', H3Error.H3_NO_ERROR);
    this.dropStream(s);
  }

  private bindTunnel(s: Stream, tunnel: TunnelImpl): void {
    s.tunnel = tunnel;
    s.datagrams = true;
    const handler = tunnel.handler;
    const c = this.counters;
    s.capsules = new CapsuleReassembler(this.o.maxCapsuleBytes, (type, buf, off, len) => {
      c.capsulesReceived++;
      if (type === CAPSULE_DATAGRAM) {
        // RFC 9297 §3.5: a DATAGRAM capsule carries an HTTP Datagram payload.
        c.datagramCapsulesReceived++;
        handler.onDatagram(buf, off, len);
      } else {
        handler.onCapsule(type, buf.subarray(off, off + len));
      }
    });
  }

  private resume(s: Stream): void {
    s.paused = false;
    const held = s.held;
    s.held = null;
    this.readDepth++;
    try {
      if (held) this.feedFrames(s, held, 0, held.length);
      if (s.closed || this.closed) return;
      if (s.remoteDone) this.onStreamFin(s);
      else this.readStream(s.id);
    } catch (e) {
      if (!(e instanceof ConnectionClosed)) throw e;
    } finally {
      this.readDepth--;
    }
  }

  private onResponseHead(s: Stream, fields: FieldLine[]): void {
    const v = validateResponse(fields);
    if (!v.ok) {
      this.malformed(s);
      return;
    }
    const { status, headers } = v.head;
    if (status < 200) return; // §4.1: interim responses; the final one follows
    s.phase = Phase.Body;
    s.respStatus = status;
    s.respHeaders = headers;
    if (s.role === Role.ClientPlain) return; // delivered at FIN
    const h = s.clientHandler!;
    if (status >= 200 && status <= 299) {
      // RFC 9297 §3.2: no capsule protocol with Content-Length or 204/205/206.
      const capsule = isCapsuleProtocol(headers);
      if (status === 204 || status === 205 || status === 206 || (capsule && fieldValue(headers, 'content-length') !== undefined)) {
        this.malformed(s);
        return;
      }
      const tunnel = new TunnelImpl(this, s, h);
      this.bindTunnel(s, tunnel);
      h.onResponse(status, headers, tunnel);
      return;
    }
    s.clientHandler = null;
    h.onResponse(status, headers, null);
    if (s.closed) return;
    this.t.streamShutdown(s.id, 'read', H3Error.H3_NO_ERROR);
    this.finish(s);
    this.dropStream(s);
  }

  private onStreamFin(s: Stream): void {
    s.remoteDone = true;
    if (s.frameRemaining >= 0 || s.hdrLen > 0) {
      if (s.kind === Kind.Request) {
        // §7.1: a stream ending inside a frame.
        this.connError(H3Error.H3_FRAME_ERROR, 'stream ended inside a frame');
        return;
      }
    }
    switch (s.kind) {
      case Kind.Control:
      case Kind.QpackEncoder:
      case Kind.QpackDecoder:
        this.connError(H3Error.H3_CLOSED_CRITICAL_STREAM, 'critical stream closed'); // §6.2.1
        return;
      case Kind.UniPending:
      case Kind.Ignored:
      case Kind.LocalUni:
        this.dropStream(s);
        return;
    }
    if (s.phase === Phase.Head) {
      if (s.role === Role.ServerRequest) {
        // §4.1: a request stream that ends without a complete request.
        this.abortStream(s, H3Error.H3_REQUEST_INCOMPLETE, true);
      } else {
        this.malformed(s);
      }
      return;
    }
    if (s.role === Role.ServerRequest && s.tunnel === null && s.pending === null) {
      const head = s.reqHead!;
      const req: H3Request = {
        streamId: s.id,
        method: head.method,
        scheme: head.scheme,
        authority: head.authority,
        path: head.path,
        headers: head.headers,
        body: joinChunks(s.body, s.bodyLen),
      };
      s.body = [];
      let res: H3Response;
      try {
        res = (this.opts.onRequest ?? healthzHandler)(req);
      } catch {
        // An application bug must not take the connection down: answer 500, count it.
        this.counters.handlerErrors++;
        res = { status: 500, headers: [['content-type', 'text/plain']], body: 'internal error\n' };
      }
      const bodyless = head.method === 'HEAD';
      this.sendResponse(s, bodyless ? { status: res.status, headers: res.headers } : res);
      this.dropStream(s);
      return;
    }
    if (s.role === Role.ClientPlain) {
      const cb = s.plainCb!;
      s.plainCb = null;
      const body = joinChunks(s.body, s.bodyLen);
      this.dropStream(s);
      cb({ ok: true, status: s.respStatus, headers: s.respHeaders, body });
      return;
    }
    if (s.tunnel !== null) {
      const err = s.capsules!.finish();
      if (err !== 0) {
        // RFC 9297 §3.3: ended inside a capsule.
        this.counters.malformedMessages++;
        this.abortStream(s, err, true);
        return;
      }
      // Clean end of the tunnel: finish our side too.
      this.finish(s);
      this.dropStream(s);
      this.notifyClosed(s, 0);
    }
  }

  private onPeerReset(s: Stream, code: number): void {
    const name = h3ErrorName(code);
    this.counters.streamErrorsReceived[name] = (this.counters.streamErrorsReceived[name] ?? 0) + 1;
    switch (s.kind) {
      case Kind.Control:
      case Kind.QpackEncoder:
      case Kind.QpackDecoder:
        this.connError(H3Error.H3_CLOSED_CRITICAL_STREAM, 'critical stream reset'); // §6.2.1
        return;
      case Kind.Request:
        s.remoteDone = true;
        if (!s.finSent) this.t.streamShutdown(s.id, 'write', H3Error.H3_REQUEST_CANCELLED);
        s.sendQueue.length = 0;
        s.queuedBytes = 0;
        s.finQueued = true;
        s.finSent = true;
        this.dropStream(s);
        this.notifyClosed(s, code);
        return;
      default:
        this.dropStream(s);
    }
  }

  // ---------------------------------------------------------------- sending

  private sendHeaders(s: Stream, fields: FieldList, fin: boolean): void {
    const block = encodeFieldSection(fields);
    const out = new Uint8Array(frameHeaderLength(FrameType.HEADERS, block.length) + block.length);
    const p = encodeFrameHeader(FrameType.HEADERS, block.length, out, 0);
    out.set(block, p);
    this.queue(s, out, fin);
  }

  private sendData(s: Stream, body: Uint8Array, fin: boolean): void {
    this.queue(s, encodeFrame(FrameType.DATA, body), fin);
  }

  private sendResponse(s: Stream, res: H3Response): void {
    const body = typeof res.body === 'string' ? new TextEncoder().encode(res.body) : res.body;
    const fields: FieldLine[] = [[':status', String(res.status)], ...(res.headers ?? [])];
    if (body !== undefined && !fields.some(([n]) => n === 'content-length')) fields.push(['content-length', String(body.length)]);
    const hasBody = body !== undefined && body.length > 0;
    this.sendHeaders(s, fields, !hasBody);
    if (hasBody) this.sendData(s, body!, true);
  }

  /** @internal Send one capsule as a DATA frame; false when closed or the queue is full. */
  sendCapsule(s: Stream, type: number, value: Uint8Array): boolean {
    if (this.closed || s.closed || s.finQueued) {
      this.counters.capsulesDroppedClosed++;
      return false;
    }
    const clen = capsuleHeaderLength(type, value.length) + value.length;
    if (s.queuedBytes + clen > this.o.maxStreamQueueBytes) {
      this.counters.capsulesDroppedQueueFull++;
      return false;
    }
    const out = new Uint8Array(frameHeaderLength(FrameType.DATA, clen) + clen);
    let p = encodeFrameHeader(FrameType.DATA, clen, out, 0);
    p = encodeCapsuleHeader(type, value.length, out, p);
    out.set(value, p);
    try {
      this.queue(s, out, false);
    } catch (e) {
      if (e instanceof ConnectionClosed) return false;
      throw e;
    }
    this.counters.capsulesSent++;
    return true;
  }

  /** @internal Zero-copy HTTP Datagram send (RFC 9297 §2.1). */
  sendDatagram(s: Stream, buf: Uint8Array, offset: number, length: number): boolean {
    if (this.closed || s.closed || !this.datagramsEnabled) {
      this.counters.datagramsDroppedNotAllowed++;
      return false;
    }
    const start = writeQuarterStreamId(s.id, buf, offset);
    if (this.t.dgramSend(buf, start, offset - start + length)) {
      this.counters.datagramsSent++;
      return true;
    }
    this.counters.datagramsDroppedTransport++;
    return false;
  }

  /** @internal */
  maxDatagramPayload(s: Stream): number {
    if (this.closed || s.closed || !this.datagramsEnabled) return 0;
    const m = this.t.dgramMaxWritableLen();
    if (m === null) return 0;
    return Math.max(0, m - quarterStreamIdLength(s.id));
  }

  /** @internal Tunnel close(): FIN after queued capsules. */
  finish(s: Stream): void {
    if (this.closed || s.finQueued) return;
    try {
      this.queue(s, EMPTY, true);
    } catch (e) {
      if (!(e instanceof ConnectionClosed)) throw e;
    }
    if (s.remoteDone && s.tunnel !== null) this.dropStream(s);
  }

  /** @internal Tunnel abort(): reset both directions. */
  abortFromApp(s: Stream, code: number): void {
    if (this.closed || s.closed) return;
    this.abortStream(s, code, false);
  }

  private queue(s: Stream, data: Uint8Array, fin: boolean): void {
    if (s.finQueued) return;
    if (data.length > 0) {
      s.sendQueue.push(data);
      s.queuedBytes += data.length;
    }
    if (fin) s.finQueued = true;
    this.flush(s);
  }

  private flush(s: Stream): void {
    if (this.closed) return;
    while (s.sendQueue.length > 0) {
      const head = s.sendQueue[0]!;
      const last = s.sendQueue.length === 1;
      let n: number;
      try {
        n = this.t.streamSend(s.id, head, last && s.finQueued);
      } catch (e) {
        if (e instanceof QuicStreamError) {
          this.onPeerStop(s, e.errorCode);
          return;
        }
        throw e;
      }
      if (n === head.length) {
        s.sendQueue.shift();
        s.queuedBytes -= n;
        if (last && s.finQueued) s.finSent = true;
        continue;
      }
      if (n > 0) {
        s.sendQueue[0] = head.subarray(n);
        s.queuedBytes -= n;
      }
      return;
    }
    if (s.finQueued && !s.finSent) {
      try {
        this.t.streamSend(s.id, EMPTY, true);
        s.finSent = true;
      } catch (e) {
        if (e instanceof QuicStreamError) this.onPeerStop(s, e.errorCode);
        else throw e;
      }
    }
    if (s.closed) this.dropStream(s); // finished flushing a stream we are done with
    else if (s.finSent && s.remoteDone && s.kind === Kind.Request && s.tunnel !== null) this.dropStream(s);
  }

  private onPeerStop(s: Stream, code: number): void {
    // The peer sent STOP_SENDING (or reset): RFC 9000 §3.5 → reset our side.
    if (s.kind === Kind.LocalUni) {
      this.connError(H3Error.H3_CLOSED_CRITICAL_STREAM, 'peer stopped our control stream');
      return;
    }
    const name = h3ErrorName(code);
    this.counters.streamErrorsReceived[name] = (this.counters.streamErrorsReceived[name] ?? 0) + 1;
    s.sendQueue.length = 0;
    s.queuedBytes = 0;
    s.finQueued = true;
    s.finSent = true;
    this.t.streamShutdown(s.id, 'write', code);
    if (!s.remoteDone && !s.closed) this.t.streamShutdown(s.id, 'read', code);
    const wasOpen = !s.closed;
    this.dropStream(s);
    if (wasOpen) this.notifyClosed(s, code);
  }

  // ---------------------------------------------------------------- errors and cleanup

  /** Stream error: reset and stop the stream, count, forget it; notify its owner if `notify`. */
  private abortStream(s: Stream, code: number, notify: boolean): void {
    if (s.closed) return;
    const name = h3ErrorName(code);
    this.counters.streamErrorsSent[name] = (this.counters.streamErrorsSent[name] ?? 0) + 1;
    if (!s.remoteDone) this.t.streamShutdown(s.id, 'read', code);
    if (!s.finSent) this.t.streamShutdown(s.id, 'write', code);
    s.finQueued = true;
    s.finSent = true;
    s.sendQueue.length = 0;
    s.queuedBytes = 0;
    this.dropStream(s);
    if (notify) this.notifyClosed(s, code);
  }

  private notifyClosed(s: Stream, code: number): void {
    if (s.pending !== null) {
      s.pending = null;
      return;
    }
    const t = s.tunnel;
    if (t !== null) {
      s.tunnel = null;
      t.handler.onClose(code);
      return;
    }
    const h = s.clientHandler;
    if (h !== null) {
      s.clientHandler = null;
      h.onClose(code);
      return;
    }
    const cb = s.plainCb;
    if (cb !== null) {
      s.plainCb = null;
      cb({ ok: false, error: code });
    }
  }

  /**
   * We are done with a stream: no more reads or callbacks. It stays in the
   * map only while queued bytes (a response, a FIN) still wait for credit.
   */
  private dropStream(s: Stream): void {
    s.closed = true;
    s.paused = false;
    s.held = null;
    s.capsules = null;
    if (s.sendQueue.length === 0 && (s.finSent || !s.finQueued)) {
      if (this.streams.get(s.id) === s) this.streams.delete(s.id);
    }
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

  /** Connection error (RFC 9114 §8): close QUIC with `code`, notify every stream. Throws to unwind when `unwind`. */
  private connError(code: number, reason: string, unwind = true): never | -1 {
    if (!this.closed) {
      this.closed = true;
      if (code !== H3Error.H3_NO_ERROR) this.counters.connectionError = code;
      this.t.close(true, code, `h3: ${reason}`);
      this.teardown(code, reason);
    }
    if (unwind) throw new ConnectionClosed(reason);
    return -1;
  }

  private teardown(code: number, reason: string): void {
    const all = Array.from(this.streams.values());
    this.streams.clear();
    for (const s of all) {
      s.closed = true;
      this.notifyClosed(s, code);
    }
    this.waiting.length = 0;
    this.opts.onClosed?.(code, reason);
  }

  /** @internal for TunnelImpl / PendingConnect */
  isOpen(s: Stream): boolean {
    return !this.closed && !s.closed;
  }
}

const EMPTY = new Uint8Array(0);

/** The {@link TunnelStream} of one accepted or established Extended CONNECT stream. */
class TunnelImpl implements TunnelStream {
  readonly streamId: number;
  constructor(
    private readonly conn: H3Connection,
    private readonly s: Stream,
    readonly handler: TunnelStreamHandler,
  ) {
    this.streamId = s.id;
  }
  sendCapsule(type: number, value: Uint8Array): boolean {
    return this.conn.sendCapsule(this.s, type, value);
  }
  sendDatagram(buf: Uint8Array, offset: number, length: number): boolean {
    return this.conn.sendDatagram(this.s, buf, offset, length);
  }
  maxDatagramPayload(): number {
    return this.conn.maxDatagramPayload(this.s);
  }
  close(): void {
    this.conn.finish(this.s);
  }
  abort(errorCode: number): void {
    this.conn.abortFromApp(this.s, errorCode);
  }
}

/** Server-side Extended CONNECT awaiting accept/reject. */
class PendingConnect implements ConnectRequest {
  readonly streamId: number;
  readonly protocol: string;
  readonly scheme: string;
  readonly authority: string;
  readonly path: string;
  readonly headers: FieldList;
  readonly capsuleProtocol: boolean;
  private done = false;
  constructor(
    private readonly conn: H3Connection,
    readonly stream: Stream,
    head: RequestHead,
  ) {
    this.streamId = stream.id;
    this.protocol = head.protocol!;
    this.scheme = head.scheme!;
    this.authority = head.authority!;
    this.path = head.path!;
    this.headers = head.headers;
    this.capsuleProtocol = isCapsuleProtocol(head.headers);
  }
  get settled(): boolean {
    return this.done || !this.conn.isOpen(this.stream);
  }
  header(name: string): string | undefined {
    return fieldValue(this.headers, name);
  }
  accept(handler: TunnelStreamHandler, headers: FieldList = [], status = 200): TunnelStream | null {
    if (this.settled) return null;
    this.done = true;
    return this.conn.acceptConnect(this, handler, headers, status);
  }
  reject(status: number, headers: FieldList = [], body?: Uint8Array | string): void {
    if (this.settled) return;
    this.done = true;
    this.conn.rejectConnect(this, status, headers, body);
  }
}

/** RFC 9114 §4.2.2 size of a field section: name + value + 32 per line. */
function fieldSectionSize(fields: FieldList): number {
  let n = 0;
  for (const [k, v] of fields) n += k.length + v.length + FIELD_LINE_OVERHEAD;
  return n;
}

/** Parse a payload that must be exactly one varint; -1 otherwise. */
function singleVarint(p: Uint8Array, len: number): number {
  const v = parseVarint(p, 0, len);
  if (v === VARINT_NEED_MORE || varintLengthAt(p, 0) !== len) return -1;
  return v;
}

/** RFC 7541 §5.1 prefix integer from collected bytes: value, -1 incomplete, -2 too large. */
function prefixIntFromBytes(b: number[], prefix: number): number {
  const mask = (1 << prefix) - 1;
  let v = b[0]! & mask;
  if (v < mask) return b.length === 1 ? v : -2;
  let m = 1;
  for (let i = 1; i < b.length; i++) {
    v += (b[i]! & 0x7f) * m;
    m *= 128;
    if ((b[i]! & 0x80) === 0) return v;
    if (m > 2 ** 49) return -2;
  }
  return -1;
}

function concat(a: Uint8Array | null, b: Uint8Array): Uint8Array {
  if (a === null) return b.slice();
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

function joinChunks(chunks: Uint8Array[], total: number): Uint8Array {
  if (chunks.length === 1) return chunks[0]!;
  const out = new Uint8Array(total);
  let p = 0;
  for (const c of chunks) {
    out.set(c, p);
    p += c.length;
  }
  return out;
}

/** Headroom a caller of TunnelStream.sendDatagram leaves; re-exported for convenience. */
export { H3_DATAGRAM_HEADROOM };
