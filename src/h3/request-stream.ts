/**
 * One request stream's message (RFC 9114 §4.1): HEADERS, DATA and trailers
 * in order, request and response heads, plain requests answered at FIN
 * (their bodies are read and dropped, never buffered), and the hand-off of
 * Extended CONNECT streams to src/h3/extended-connect.ts.
 */

import type { ClientConnectHandler, ClientRequestHandler, H3Request, H3RequestHandler, H3Response } from './api.js';
import { H3Error } from './errors.js';
import { encodeFrame, encodeFrameHeader, frameHeaderLength, FrameType, isReservedH2FrameType } from './frame.js';
import { FrameMode, FrameReader, type FrameSink } from './frame-reader.js';
import { bindClientTunnel, startServerConnect, type PendingConnect, type TunnelBinding } from './extended-connect.js';
import { fieldValue, isCapsuleProtocol, validateRequest, validateResponse, validateTrailers, type RequestHead } from './message.js';
import { decodeFieldSection, encodeFieldSection, FIELD_LINE_OVERHEAD, type FieldLine, type FieldList } from './qpack.js';
import type { H3Stream, StreamHost } from './stream.js';

/** Which end of which kind of request this stream is. */
export const enum Role {
  /** Server side of a request stream. */
  ServerRequest,
  /** Client side, Extended CONNECT. */
  ClientConnect,
  /** Client side, plain request. */
  ClientPlain,
}

const enum Phase {
  /** Waiting for the (final) HEADERS. */
  Head,
  /** After the head: DATA, maybe trailers. */
  Body,
  /** After trailers: nothing but unknown frames. */
  Trailers,
}

/** Without an application handler, plain requests get 404 (src/telemetry/healthz.ts serves /healthz). */
const notFound: H3RequestHandler = () => ({ status: 404, headers: [['content-type', 'text/plain']], body: 'not found\n' });

/** Message state and frame sink of one request stream. */
export class RequestStream implements FrameSink {
  private phase = Phase.Head;
  /** Server: Extended CONNECT awaiting the application's decision. */
  pending: PendingConnect | null = null;
  /** Not read while paused (QUIC flow control holds the peer); bytes already read wait in `held`. */
  paused = false;
  held: Uint8Array | null = null;
  /** An accepted / established Extended CONNECT tunnel. */
  tunnel: TunnelBinding | null = null;
  clientConnect: ClientConnectHandler | null = null;
  clientPlain: ClientRequestHandler | null = null;
  private head: RequestHead | null = null;

  constructor(
    private readonly host: StreamHost,
    readonly s: H3Stream,
    readonly role: Role,
  ) {}

  /** Bytes held back while paused. */
  get heldBytes(): number {
    return this.held?.length ?? 0;
  }

  /** Datagrams for this stream are dropped (counted) rather than an error: its CONNECT is undecided. */
  get awaitingDecision(): boolean {
    return this.pending !== null || (this.role === Role.ClientConnect && this.phase === Phase.Head);
  }

  halted(): boolean {
    return this.s.closed || this.host.closed || this.paused;
  }

  frameStart(type: number, length: number): FrameMode {
    const host = this.host;
    if (isReservedH2FrameType(type)) {
      host.connError(H3Error.H3_FRAME_UNEXPECTED, `HTTP/2 frame type 0x${type.toString(16)}`); // §7.2.8
      return FrameMode.Skip;
    }
    switch (type) {
      case FrameType.HEADERS:
        if (this.phase === Phase.Trailers) {
          host.connError(H3Error.H3_FRAME_UNEXPECTED, 'HEADERS after trailers'); // §4.1
          return FrameMode.Skip;
        }
        // §4.2.2: refuse a field section above our advertised limit before reading it.
        if (length > host.limits.maxFieldSectionSize) {
          host.abortStream(this.s, H3Error.H3_EXCESSIVE_LOAD, true);
          return FrameMode.Skip;
        }
        return FrameMode.Buffer;
      case FrameType.DATA:
        if (this.phase !== Phase.Body) {
          host.connError(H3Error.H3_FRAME_UNEXPECTED, 'DATA before HEADERS or after trailers'); // §4.1
          return FrameMode.Skip;
        }
        return FrameMode.Stream;
      case FrameType.PUSH_PROMISE:
        if (host.isServer) host.connError(H3Error.H3_FRAME_UNEXPECTED, 'PUSH_PROMISE from a client'); // §7.2.5
        else host.connError(H3Error.H3_ID_ERROR, 'PUSH_PROMISE without MAX_PUSH_ID'); // §4.6
        return FrameMode.Skip;
      case FrameType.SETTINGS:
      case FrameType.GOAWAY:
      case FrameType.MAX_PUSH_ID:
      case FrameType.CANCEL_PUSH:
        host.connError(H3Error.H3_FRAME_UNEXPECTED, `frame 0x${type.toString(16)} on a request stream`);
        return FrameMode.Skip;
      default:
        host.counters.unknownFramesIgnored++; // §9
        return FrameMode.Skip;
    }
  }

  frameData(buf: Uint8Array, off: number, end: number): void {
    const t = this.tunnel;
    if (t !== null) {
      const err = t.capsules.push(buf, off, end);
      if (err !== 0) {
        this.host.counters.malformedMessages++;
        this.host.abortStream(this.s, err, true);
      }
      return;
    }
    if (this.role === Role.ClientPlain) this.clientPlain?.onData(buf, off, end);
    // A plain request body: no handler here reads one, so it is dropped as it
    // arrives (counted) instead of buffered before anyone authenticated.
    else if (this.role === Role.ServerRequest) this.host.counters.requestBodyBytesDropped += end - off;
  }

  frameEnd(_type: number, payload: Uint8Array, len: number): void {
    const host = this.host;
    const dec = decodeFieldSection(payload, 0, len, host.limits.maxFieldSectionSize);
    if (!dec.ok) {
      if (dec.code === H3Error.QPACK_DECOMPRESSION_FAILED) host.connError(dec.code, dec.reason); // RFC 9204 §2.2
      else host.abortStream(this.s, dec.code, true);
      return;
    }
    if (this.phase === Phase.Body) {
      if (validateTrailers(dec.fields)) {
        this.malformed();
        return;
      }
      this.phase = Phase.Trailers;
      return;
    }
    if (this.role === Role.ServerRequest) this.onRequestHead(dec.fields);
    else this.onResponseHead(dec.fields);
  }

  private malformed(): void {
    // RFC 9114 §4.1.2: a malformed message is a stream error H3_MESSAGE_ERROR.
    this.host.counters.malformedMessages++;
    this.host.abortStream(this.s, H3Error.H3_MESSAGE_ERROR, true);
  }

  private onRequestHead(fields: FieldLine[]): void {
    const host = this.host;
    const v = validateRequest(fields, host.limits.enableConnectProtocol);
    if (!v.ok) {
      this.malformed();
      return;
    }
    this.phase = Phase.Body;
    this.head = v.head;
    host.counters.requestsReceived++;
    if (v.head.protocol === undefined) return; // plain request: answered at FIN
    host.counters.connectRequestsReceived++;
    if (!host.options.onConnect) {
      sendResponse(host, this.s, { status: 501, body: 'extended CONNECT not served here\n' });
      host.transport.streamShutdown(this.s.id, 'read', H3Error.H3_NO_ERROR);
      host.dropStream(this.s);
      return;
    }
    startServerConnect(host, this, v.head);
  }

  private onResponseHead(fields: FieldLine[]): void {
    const host = this.host;
    const v = validateResponse(fields);
    if (!v.ok) {
      this.malformed();
      return;
    }
    const { status, headers } = v.head;
    if (status < 200) return; // §4.1: interim responses; the final one follows
    this.phase = Phase.Body;
    if (this.role === Role.ClientPlain) {
      this.clientPlain?.onResponse(status, headers);
      return;
    }
    const h = this.clientConnect!;
    if (status >= 200 && status <= 299) {
      // RFC 9297 §3.2: no capsule protocol with Content-Length or 204/205/206.
      const capsule = isCapsuleProtocol(headers);
      if (status === 204 || status === 205 || status === 206 || (capsule && fieldValue(headers, 'content-length') !== undefined)) {
        this.malformed();
        return;
      }
      h.onResponse(status, headers, bindClientTunnel(host, this, h));
      return;
    }
    this.clientConnect = null;
    h.onResponse(status, headers, null);
    if (this.s.closed) return;
    host.transport.streamShutdown(this.s.id, 'read', H3Error.H3_NO_ERROR);
    host.finish(this.s);
    host.dropStream(this.s);
  }

  /** The peer's FIN, after the frame reader ended cleanly. */
  onFin(): void {
    const host = this.host;
    const s = this.s;
    if (this.phase === Phase.Head) {
      // §4.1: a request stream that ends without a complete request.
      if (this.role === Role.ServerRequest) host.abortStream(s, H3Error.H3_REQUEST_INCOMPLETE, true);
      else this.malformed();
      return;
    }
    if (this.role === Role.ServerRequest && this.tunnel === null && this.pending === null) {
      this.answerPlain();
      return;
    }
    if (this.role === Role.ClientPlain) {
      const h = this.clientPlain;
      this.clientPlain = null;
      host.dropStream(s);
      h?.onEnd();
      return;
    }
    const t = this.tunnel;
    if (t !== null) {
      const err = t.capsules.finish();
      if (err !== 0) {
        // RFC 9297 §3.3: ended inside a capsule.
        host.counters.malformedMessages++;
        host.abortStream(s, err, true);
        return;
      }
      // Clean end of the tunnel: finish our side too.
      host.finish(s);
      host.dropStream(s);
      host.notifyClosed(s, 0);
    }
  }

  private answerPlain(): void {
    const host = this.host;
    const head = this.head!;
    const req: H3Request = {
      streamId: this.s.id,
      method: head.method,
      scheme: head.scheme,
      authority: head.authority,
      path: head.path,
      headers: head.headers,
    };
    let res: H3Response;
    try {
      res = (host.options.onRequest ?? notFound)(req);
    } catch {
      // An application bug must not take the connection down: answer 500, count it.
      host.counters.handlerErrors++;
      res = { status: 500, headers: [['content-type', 'text/plain']], body: 'internal error\n' };
    }
    sendResponse(host, this.s, head.method === 'HEAD' ? { status: res.status, headers: res.headers } : res);
    host.dropStream(this.s);
  }

  /** Tell whoever owns this stream that it ended with `code` (once). */
  notifyClosed(code: number): void {
    if (this.pending !== null) {
      this.pending = null;
      return;
    }
    const t = this.tunnel;
    if (t !== null) {
      this.tunnel = null;
      t.handler.onClose(code);
      return;
    }
    const h = this.clientConnect;
    if (h !== null) {
      this.clientConnect = null;
      h.onClose(code);
      return;
    }
    const p = this.clientPlain;
    if (p !== null) {
      this.clientPlain = null;
      p.onClose(code);
    }
  }
}

/** Make `s` a request stream with a frame reader feeding a new {@link RequestStream}. */
export function attachRequest(host: StreamHost, s: H3Stream, role: Role): RequestStream {
  const r = new RequestStream(host, s, role);
  s.req = r;
  s.sink = r;
  s.frames = new FrameReader();
  return r;
}

/** RFC 9114 §4.2.2 size of a field section: name + value + 32 per line. */
export function fieldSectionSize(fields: FieldList): number {
  let n = 0;
  for (const [k, v] of fields) n += k.length + v.length + FIELD_LINE_OVERHEAD;
  return n;
}

/** A HEADERS frame carrying `fields` (a fresh buffer the caller may queue). */
export function encodeHeadersFrame(fields: FieldList): Uint8Array {
  const block = encodeFieldSection(fields);
  const out = new Uint8Array(frameHeaderLength(FrameType.HEADERS, block.length) + block.length);
  const p = encodeFrameHeader(FrameType.HEADERS, block.length, out, 0);
  out.set(block, p);
  return out;
}

/** Queue a response: HEADERS (with Content-Length when a body is given) and DATA, then FIN. */
export function sendResponse(host: StreamHost, s: H3Stream, res: H3Response): void {
  const body = typeof res.body === 'string' ? new TextEncoder().encode(res.body) : res.body;
  const fields: FieldLine[] = [[':status', String(res.status)], ...(res.headers ?? [])];
  if (body !== undefined && !fields.some(([n]) => n === 'content-length')) fields.push(['content-length', String(body.length)]);
  const hasBody = body !== undefined && body.length > 0;
  host.sendHeaders(s, fields, !hasBody);
  if (hasBody) host.queue(s, encodeFrame(FrameType.DATA, body!), true);
}
