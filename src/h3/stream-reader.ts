/**
 * The read side of an HTTP/3 connection: pulls readable QUIC streams, opens
 * state for new peer streams, routes bytes to the reader of each stream's
 * kind (uni-stream type, control frames, QPACK instructions, request
 * frames), and handles FIN and RESET_STREAM. Paused Extended CONNECT
 * streams are resumed here once their read has unwound.
 */

import { QuicStreamError } from '../quic/transport.js';
import { ControlStream, PeerUniStreams, UniKind, UniTypeReader, type ControlHost } from './control-stream.js';
import { countStreamError } from './counters.js';
import { H3Error } from './errors.js';
import { FrameReader } from './frame-reader.js';
import { QpackInstructionReader } from './qpack-streams.js';
import { attachRequest, Role } from './request-stream.js';
import type { StreamIds } from './stream-ids.js';
import { ScratchPool } from './scratch.js';
import { ConnectionClosed, H3Stream, Kind, type StreamHost } from './stream.js';

/** Bytes read from a stream per streamRecv call. */
const READ_CHUNK = 16 * 1024;
/** Stream read buffers, shared by all connections (see ScratchPool). */
const readScratch = new ScratchPool(READ_CHUNK);
/** Reads of a stream we no longer track, per readable event. */
const DISCARD_READS = 64;

/** What the stream reader needs from its connection. */
export interface ReadHost extends StreamHost, ControlHost {
  readonly streams: Map<number, H3Stream>;
  readonly ids: StreamIds;
  /** GOAWAY ID we sent (Infinity when none). */
  readonly goawaySent: number;
}

/** One per connection; reads into a buffer borrowed from the process-wide pool (valid only during callbacks). */
export class StreamReader {
  private readonly uni = new PeerUniStreams();
  private readonly control: ControlStream;
  /** Streams whose accept() came while another read was in progress: resumed after it. */
  private readonly resumeQueue: H3Stream[] = [];
  private depth = 0;

  constructor(private readonly host: ReadHost) {
    this.control = new ControlStream(host);
  }

  /** Read every stream QUIC reports readable. */
  readAll(): void {
    const t = this.host.transport;
    // Most readable events of a tunnel are datagrams only: no stream list to build then.
    if (t.hasReadableStreams !== undefined && !t.hasReadableStreams()) return;
    this.begin();
    try {
      const ids = t.readableStreams();
      // A snapshot: reading may change what the transport reports.
      for (const id of Array.isArray(ids) ? (ids as number[]) : Array.from(ids)) {
        if (this.host.closed) return;
        this.readStream(id);
      }
    } catch (e) {
      if (!(e instanceof ConnectionClosed)) throw e;
    } finally {
      this.end();
    }
  }

  /** A read (or datagram delivery) starts: accept() calls inside it defer their resume. */
  begin(): void {
    this.depth++;
  }

  /** The read ends; at the outermost level, run deferred resumes. */
  end(): void {
    if (--this.depth === 0) this.drainResumes();
  }

  private readStream(id: number): void {
    const buf = readScratch.take();
    try {
      this.readStreamInto(id, buf);
    } finally {
      readScratch.give(buf);
    }
  }

  private readStreamInto(id: number, buf: Uint8Array): void {
    let s = this.host.streams.get(id);
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
    for (;;) {
      let r: [number, boolean] | null;
      try {
        r = this.host.transport.streamRecv(id, buf);
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
      if (this.host.closed || s.closed) return;
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
    const buf = readScratch.take();
    try {
      for (let i = 0; i < DISCARD_READS; i++) {
        let r: [number, boolean] | null;
        try {
          r = this.host.transport.streamRecv(id, buf);
        } catch {
          return;
        }
        if (r === null || r[1] || r[0] === 0) return;
      }
    } finally {
      readScratch.give(buf);
    }
  }

  private newPeerStream(id: number): H3Stream | undefined {
    const host = this.host;
    if (!host.ids.peerInitiated(id)) return undefined; // one of ours that has been closed
    if ((id & 2) !== 0) {
      const s = new H3Stream(id, Kind.UniPending);
      s.uniType = new UniTypeReader();
      host.streams.set(id, s);
      return s;
    }
    if (!host.isServer) {
      // RFC 9114 §6.1: server-initiated bidirectional streams are an error.
      host.connError(H3Error.H3_STREAM_CREATION_ERROR, 'server-initiated bidirectional stream');
      return undefined;
    }
    if (!host.ids.admitPeerBidi(id)) return undefined; // already handled and closed
    const s = new H3Stream(id, Kind.Request);
    attachRequest(host, s, Role.ServerRequest);
    host.streams.set(id, s);
    if (id >= host.goawaySent) {
      // RFC 9114 §5.2: requests at or above our GOAWAY ID are not processed.
      host.counters.requestsRejectedGoaway++;
      host.abortStream(s, H3Error.H3_REQUEST_REJECTED, false);
      return undefined;
    }
    return s;
  }

  private onStreamData(s: H3Stream, buf: Uint8Array, pos: number, end: number): void {
    if (s.kind === Kind.UniPending) {
      pos = s.uniType!.feed(buf, pos, end);
      if (pos < 0) return;
      this.classifyUni(s, s.uniType!.type);
      if (this.host.closed || (s.kind as Kind) === Kind.Ignored) return;
    }
    if (s.qpack !== null) {
      const err = s.qpack.feed(buf, pos, end);
      if (err !== null) this.host.connError(err.code, err.reason);
      return;
    }
    if (s.frames === null) return;
    const stop = s.frames.feed(buf, pos, end, s.sink!);
    const r = s.req;
    if (stop < end && r !== null && r.paused && !s.closed) r.held = concat(r.held, buf.subarray(stop, end));
  }

  private classifyUni(s: H3Stream, type: number): void {
    s.uniType = null;
    switch (this.uni.classify(type, this.host)) {
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
        this.host.counters.unknownStreamsIgnored++;
        s.kind = Kind.Ignored;
        this.host.transport.streamShutdown(s.id, 'read', H3Error.H3_STREAM_CREATION_ERROR);
        return;
    }
  }

  private onStreamFin(s: H3Stream): void {
    s.remoteDone = true;
    if (s.kind === Kind.Request && (s.frames?.insideFrame ?? false)) {
      // §7.1: a stream ending inside a frame.
      this.host.connError(H3Error.H3_FRAME_ERROR, 'stream ended inside a frame');
      return;
    }
    switch (s.kind) {
      case Kind.Control:
      case Kind.QpackEncoder:
      case Kind.QpackDecoder:
        this.host.connError(H3Error.H3_CLOSED_CRITICAL_STREAM, 'critical stream closed'); // §6.2.1
        return;
      case Kind.Request:
        s.req!.onFin();
        return;
      default:
        this.host.dropStream(s);
    }
  }

  private onPeerReset(s: H3Stream, code: number): void {
    countStreamError(this.host.counters.streamErrorsReceived, code);
    switch (s.kind) {
      case Kind.Control:
      case Kind.QpackEncoder:
      case Kind.QpackDecoder:
        this.host.connError(H3Error.H3_CLOSED_CRITICAL_STREAM, 'critical stream reset'); // §6.2.1
        return;
      case Kind.Request:
        s.remoteDone = true;
        if (!s.send.finSent) this.host.transport.streamShutdown(s.id, 'write', H3Error.H3_REQUEST_CANCELLED);
        s.send.clear();
        this.host.dropStream(s);
        this.host.notifyClosed(s, code);
        return;
      default:
        this.host.dropStream(s);
    }
  }

  /** Resume a stream whose Extended CONNECT was accepted: held bytes first, then QUIC. */
  private resume(s: H3Stream): void {
    const r = s.req!;
    r.paused = false;
    const held = r.held;
    r.held = null;
    this.depth++;
    try {
      if (held) this.onStreamData(s, held, 0, held.length);
      if (s.closed || this.host.closed) return;
      if (s.remoteDone) this.onStreamFin(s);
      else this.readStream(s.id);
    } catch (e) {
      if (!(e instanceof ConnectionClosed)) throw e;
    } finally {
      this.depth--;
    }
  }

  private drainResumes(): void {
    while (this.resumeQueue.length > 0 && !this.host.closed) {
      const s = this.resumeQueue.shift()!;
      if (!s.closed) this.resume(s);
    }
  }

  /** Resume `s` once the current read unwinds (at once when none is running). */
  scheduleResume(s: H3Stream): void {
    this.resumeQueue.push(s);
    if (this.depth === 0) this.drainResumes();
  }
}

function concat(a: Uint8Array | null, b: Uint8Array): Uint8Array {
  if (a === null) return b.slice();
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}
