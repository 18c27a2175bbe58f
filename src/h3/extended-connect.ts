/**
 * Extended CONNECT (RFC 9220) tunnels: the server's pending decision
 * (accept / reject), the binding of an accepted or established stream to a
 * {@link TunnelStreamHandler} with a capsule reassembler (RFC 9297 §3), and
 * the {@link TunnelStream} MASQUE uses to send capsules and HTTP Datagrams.
 */

import type { ConnectRequest } from './api.js';
import { CAPSULE_DATAGRAM, CapsuleReassembler, capsuleHeaderLength, encodeCapsuleHeader } from './capsule.js';
import { quarterStreamIdLength, writeQuarterStreamId } from './datagram.js';
import { H3Error } from './errors.js';
import { encodeFrameHeader, frameHeaderLength, FrameType } from './frame.js';
import { fieldValue, isCapsuleProtocol, type RequestHead } from './message.js';
import type { FieldList } from './qpack.js';
import { sendResponse, type RequestStream } from './request-stream.js';
import { ConnectionClosed, type H3Stream, type StreamHost } from './stream.js';
import type { TunnelStream, TunnelStreamHandler } from './tunnel-stream.js';

/** A request stream bound to a tunnel handler. */
export interface TunnelBinding {
  readonly handler: TunnelStreamHandler;
  readonly capsules: CapsuleReassembler;
  readonly stream: TunnelStream;
}

/**
 * Server: hand a validated Extended CONNECT head to the application. The
 * stream is paused until accept() or reject(); a throwing handler is
 * answered 500 and counted.
 */
export function startServerConnect(host: StreamHost, r: RequestStream, head: RequestHead): void {
  r.paused = true;
  const pc = new PendingConnect(host, r, head);
  r.pending = pc;
  try {
    host.options.onConnect!(pc);
  } catch {
    host.counters.handlerErrors++;
    pc.reject(500, [['proxy-status', 'mtun; error=proxy_internal_error']]);
  }
}

/** Client: the 2xx response arrived; bind the stream to its handler. */
export function bindClientTunnel(host: StreamHost, r: RequestStream, handler: TunnelStreamHandler): TunnelStream {
  return bind(host, r, handler).stream;
}

function bind(host: StreamHost, r: RequestStream, handler: TunnelStreamHandler): TunnelBinding {
  const c = host.counters;
  const capsules = new CapsuleReassembler(host.limits.maxCapsuleBytes, (type, buf, off, len) => {
    c.capsulesReceived++;
    if (type === CAPSULE_DATAGRAM) {
      // RFC 9297 §3.5: a DATAGRAM capsule carries an HTTP Datagram payload.
      c.datagramCapsulesReceived++;
      handler.onDatagram(buf, off, len);
    } else {
      handler.onCapsule(type, buf.subarray(off, off + len));
    }
  });
  const binding: TunnelBinding = { handler, capsules, stream: new TunnelImpl(host, r.s) };
  r.tunnel = binding;
  return binding;
}

/** The {@link TunnelStream} of one accepted or established Extended CONNECT stream. */
class TunnelImpl implements TunnelStream {
  readonly streamId: number;
  constructor(
    private readonly host: StreamHost,
    private readonly s: H3Stream,
  ) {
    this.streamId = s.id;
  }

  sendCapsule(type: number, value: Uint8Array): boolean {
    const { host, s } = this;
    if (host.closed || s.closed || s.send.finQueued) {
      host.counters.capsulesDroppedClosed++;
      return false;
    }
    const clen = capsuleHeaderLength(type, value.length) + value.length;
    if (s.send.bytes + clen > host.limits.maxStreamQueueBytes) {
      host.counters.capsulesDroppedQueueFull++;
      return false;
    }
    const out = new Uint8Array(frameHeaderLength(FrameType.DATA, clen) + clen);
    let p = encodeFrameHeader(FrameType.DATA, clen, out, 0);
    p = encodeCapsuleHeader(type, value.length, out, p);
    out.set(value, p);
    try {
      host.queue(s, out, false);
    } catch (e) {
      if (e instanceof ConnectionClosed) return false;
      throw e;
    }
    host.counters.capsulesSent++;
    return true;
  }

  /** Zero-copy HTTP Datagram send (RFC 9297 §2.1): the quarter stream ID goes into the caller's headroom. */
  sendDatagram(buf: Uint8Array, offset: number, length: number): boolean {
    const { host, s } = this;
    if (host.closed || s.closed || !host.datagramsEnabled) {
      host.counters.datagramsDroppedNotAllowed++;
      return false;
    }
    const start = writeQuarterStreamId(s.id, buf, offset);
    if (host.transport.dgramSend(buf, start, offset - start + length)) {
      host.counters.datagramsSent++;
      return true;
    }
    host.counters.datagramsDroppedTransport++;
    return false;
  }

  maxDatagramPayload(): number {
    const { host, s } = this;
    if (host.closed || s.closed || !host.datagramsEnabled) return 0;
    const m = host.transport.dgramMaxWritableLen();
    if (m === null) return 0;
    return Math.max(0, m - quarterStreamIdLength(s.id));
  }

  close(): void {
    this.host.finish(this.s);
  }

  abort(errorCode: number): void {
    if (this.host.closed || this.s.closed) return;
    this.host.abortStream(this.s, errorCode, false);
  }
}

/**
 * RFC 9297 §3.2: a capsule-protocol response is a 2xx other than
 * 204/205/206 and carries no Content-Length. Throws RangeError (a caller
 * bug), its message prefixed by `layer`.
 */
export function checkTunnelResponse(status: number, headers: FieldList, layer: 'h3' | 'h2'): void {
  if (status < 200 || status > 299 || status === 204 || status === 205 || status === 206) {
    throw new RangeError(`${layer}: tunnel status must be 2xx other than 204/205/206 (RFC 9297 §3.2), got ${status}`);
  }
  for (const [n] of headers) {
    if (n === 'content-length') throw new RangeError(`${layer}: capsule-protocol responses carry no Content-Length (RFC 9297 §3.2)`);
  }
}

/** Server-side Extended CONNECT awaiting accept/reject. */
export class PendingConnect implements ConnectRequest {
  readonly streamId: number;
  readonly protocol: string;
  readonly scheme: string;
  readonly authority: string;
  readonly path: string;
  readonly headers: FieldList;
  readonly capsuleProtocol: boolean;
  private done = false;

  constructor(
    private readonly host: StreamHost,
    private readonly r: RequestStream,
    head: RequestHead,
  ) {
    this.streamId = r.s.id;
    this.protocol = head.protocol!;
    this.scheme = head.scheme!;
    this.authority = head.authority!;
    this.path = head.path!;
    this.headers = head.headers;
    this.capsuleProtocol = isCapsuleProtocol(head.headers);
  }

  get settled(): boolean {
    return this.done || this.host.closed || this.r.s.closed;
  }

  header(name: string): string | undefined {
    return fieldValue(this.headers, name);
  }

  accept(handler: TunnelStreamHandler, headers: FieldList = [], status = 200): TunnelStream | null {
    if (this.settled) return null;
    checkTunnelResponse(status, headers, 'h3');
    this.done = true;
    const { host, r } = this;
    r.pending = null;
    host.counters.connectAccepted++;
    host.sendHeaders(r.s, [[':status', String(status)], ['capsule-protocol', '?1'], ...headers], false);
    const t = bind(host, r, handler).stream;
    // The shared read buffer may be in use (accept() from inside a callback,
    // maybe for this very stream): resume once the current read unwinds.
    // With nothing held back, unpausing now keeps order and lets a read of
    // this stream that is on the stack carry on.
    if (r.held === null) r.paused = false;
    host.scheduleResume(r.s);
    return r.s.closed ? null : t;
  }

  reject(status: number, headers: FieldList = [], body?: Uint8Array | string): void {
    if (this.settled) return;
    if (status >= 200 && status <= 299) throw new RangeError('h3: reject() needs a non-2xx status');
    this.done = true;
    const { host, r } = this;
    r.pending = null;
    host.counters.connectRejected++;
    sendResponse(host, r.s, { status, headers, body });
    // RFC 9114 §4.1: the response is complete; stop reading the request.
    if (!r.s.remoteDone) host.transport.streamShutdown(r.s.id, 'read', H3Error.H3_NO_ERROR);
    host.dropStream(r.s);
  }
}
