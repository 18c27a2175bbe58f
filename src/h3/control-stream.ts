/**
 * The peer's unidirectional streams (RFC 9114 §6.2): the stream-type
 * preface, and the control stream's frames (SETTINGS, GOAWAY, MAX_PUSH_ID,
 * CANCEL_PUSH) with every ordering and uniqueness rule. The connection is
 * told the outcome through {@link ControlHost}.
 */

import { parseVarint, varintLengthAt, VARINT_NEED_MORE } from '../quic/varint.js';
import { H3Error } from './errors.js';
import { FrameMode, type FrameSink } from './frame-reader.js';
import { FrameType, StreamType, isReservedH2FrameType } from './frame.js';
import { parseSettings, type H3Settings } from './settings.js';
import type { H3Counters } from './counters.js';

/** Largest SETTINGS frame we read. */
const MAX_CONTROL_FRAME = 4096;
/** Largest GOAWAY / MAX_PUSH_ID / CANCEL_PUSH payload (one varint). */
const MAX_ID_FRAME = 8;

/** What the control-stream reader needs from its connection. */
export interface ControlHost {
  readonly isServer: boolean;
  readonly closed: boolean;
  /** Raise a connection error (RFC 9114 §8); throws to unwind. */
  connError(code: number, reason: string): never;
  /** True when QUIC negotiated DATAGRAM frames (RFC 9221). */
  quicDatagramsSupported(): boolean;
  /** The peer's SETTINGS arrived and passed every check. */
  peerSettingsArrived(settings: H3Settings): void;
  /** A valid GOAWAY (never increasing, right kind of ID) arrived. */
  peerGoaway(id: number): void;
  /** The last GOAWAY ID received (Infinity when none). */
  readonly goawayReceived: number;
  /** The connection's counters (unknown frame types ignored, §9). */
  readonly counters: H3Counters;
}

/** What a peer unidirectional stream turned out to be. */
export const enum UniKind {
  Pending,
  Control,
  QpackEncoder,
  QpackDecoder,
  /** Unknown or reserved type: stop reading it (§6.2, §9). */
  Ignored,
  /** A connection error was raised. */
  Error,
}

/** Per-connection record of which critical peer streams exist (§6.2.1, RFC 9204 §4.2: one each). */
export class PeerUniStreams {
  private control = false;
  private encoder = false;
  private decoder = false;

  /** Classify a stream type; raises connection errors for duplicates and push streams. */
  classify(type: number, host: ControlHost): UniKind {
    switch (type) {
      case StreamType.CONTROL:
        // §6.2.1: only one control stream.
        if (this.control) return fail(host, H3Error.H3_STREAM_CREATION_ERROR, 'second control stream');
        this.control = true;
        return UniKind.Control;
      case StreamType.PUSH:
        // §6.2.2: a client must not open push streams; we never sent MAX_PUSH_ID (§4.6).
        if (host.isServer) return fail(host, H3Error.H3_STREAM_CREATION_ERROR, 'client-initiated push stream');
        return fail(host, H3Error.H3_ID_ERROR, 'push stream without MAX_PUSH_ID');
      case StreamType.QPACK_ENCODER:
        if (this.encoder) return fail(host, H3Error.H3_STREAM_CREATION_ERROR, 'second QPACK encoder stream');
        this.encoder = true;
        return UniKind.QpackEncoder;
      case StreamType.QPACK_DECODER:
        if (this.decoder) return fail(host, H3Error.H3_STREAM_CREATION_ERROR, 'second QPACK decoder stream');
        this.decoder = true;
        return UniKind.QpackDecoder;
      default:
        return UniKind.Ignored;
    }
  }
}

function fail(host: ControlHost, code: number, reason: string): UniKind {
  host.connError(code, reason);
  return UniKind.Error;
}

/** Reads the stream-type varint of a peer uni stream across reads (RFC 9114 §6.2). */
export class UniTypeReader {
  private readonly b = new Uint8Array(8);
  private n = 0;
  /** The type once complete, else -1. */
  type = -1;

  /** Feed bytes; returns the position after the type, or -1 when more are needed. */
  feed(buf: Uint8Array, pos: number, end: number): number {
    while (pos < end && this.n < 8) {
      this.b[this.n++] = buf[pos++]!;
      const t = parseVarint(this.b, 0, this.n);
      if (t === VARINT_NEED_MORE) continue;
      this.type = t;
      return pos;
    }
    return -1;
  }

  /** True while part of the type has arrived. */
  get partial(): boolean {
    return this.n > 0 && this.type < 0;
  }
}

/** The peer's control stream as a frame sink (RFC 9114 §6.2.1, §7.2). */
export class ControlStream implements FrameSink {
  private settingsSeen = false;

  constructor(private readonly host: ControlHost) {}

  halted(): boolean {
    return this.host.closed;
  }

  frameStart(type: number, length: number): FrameMode {
    const host = this.host;
    if (isReservedH2FrameType(type)) {
      host.connError(H3Error.H3_FRAME_UNEXPECTED, `HTTP/2 frame type 0x${type.toString(16)}`); // §7.2.8
      return FrameMode.Skip;
    }
    if (!this.settingsSeen && type !== FrameType.SETTINGS) {
      host.connError(H3Error.H3_MISSING_SETTINGS, 'first control frame is not SETTINGS'); // §6.2.1
      return FrameMode.Skip;
    }
    switch (type) {
      case FrameType.SETTINGS:
        if (this.settingsSeen) {
          host.connError(H3Error.H3_FRAME_UNEXPECTED, 'second SETTINGS frame'); // §7.2.4
          return FrameMode.Skip;
        }
        this.settingsSeen = true;
        return bounded(host, length, MAX_CONTROL_FRAME, H3Error.H3_EXCESSIVE_LOAD);
      case FrameType.GOAWAY:
      case FrameType.MAX_PUSH_ID:
      case FrameType.CANCEL_PUSH:
        if (type === FrameType.MAX_PUSH_ID && !host.isServer) {
          host.connError(H3Error.H3_FRAME_UNEXPECTED, 'MAX_PUSH_ID from a server'); // §7.2.7
          return FrameMode.Skip;
        }
        return bounded(host, length, MAX_ID_FRAME, H3Error.H3_FRAME_ERROR);
      case FrameType.DATA:
      case FrameType.HEADERS:
      case FrameType.PUSH_PROMISE:
        host.connError(H3Error.H3_FRAME_UNEXPECTED, `frame 0x${type.toString(16)} on the control stream`);
        return FrameMode.Skip;
      default:
        host.counters.unknownFramesIgnored++; // §9: unknown frame types are ignored
        return FrameMode.Skip;
    }
  }

  frameData(): void {
    // Control frames are collected whole.
  }

  frameEnd(type: number, p: Uint8Array, len: number): void {
    const host = this.host;
    switch (type) {
      case FrameType.SETTINGS: {
        const r = parseSettings(p, 0, len);
        if (!r.ok) {
          host.connError(r.code, r.reason);
          return;
        }
        if (r.settings.h3Datagram && !host.quicDatagramsSupported()) {
          // RFC 9297 §2.1.1: H3_DATAGRAM=1 without the QUIC DATAGRAM extension
          // (RFC 9221 max_datagram_frame_size) is a connection error.
          host.connError(H3Error.H3_SETTINGS_ERROR, 'H3_DATAGRAM=1 without QUIC DATAGRAM support');
          return;
        }
        host.peerSettingsArrived(r.settings);
        return;
      }
      case FrameType.GOAWAY: {
        const id = singleVarint(p, len);
        if (id < 0) {
          host.connError(H3Error.H3_FRAME_ERROR, 'malformed GOAWAY');
          return;
        }
        // §5.2: a client-initiated bidirectional stream ID from a server; never increasing.
        if (!host.isServer && id % 4 !== 0) {
          host.connError(H3Error.H3_ID_ERROR, 'GOAWAY ID is not a client bidirectional stream');
          return;
        }
        if (id > host.goawayReceived) {
          host.connError(H3Error.H3_ID_ERROR, 'GOAWAY ID increased');
          return;
        }
        host.peerGoaway(id);
        return;
      }
      case FrameType.MAX_PUSH_ID:
        if (singleVarint(p, len) < 0) host.connError(H3Error.H3_FRAME_ERROR, 'malformed MAX_PUSH_ID');
        return; // we never push
      case FrameType.CANCEL_PUSH:
        if (singleVarint(p, len) < 0) {
          host.connError(H3Error.H3_FRAME_ERROR, 'malformed CANCEL_PUSH');
          return;
        }
        // §7.2.3: a client cancelling a push we never promised is fine to ignore; a server
        // cancelling one above a MAX_PUSH_ID we never sent is H3_ID_ERROR.
        if (!host.isServer) host.connError(H3Error.H3_ID_ERROR, 'CANCEL_PUSH without MAX_PUSH_ID');
        return;
    }
  }
}

function bounded(host: ControlHost, length: number, limit: number, code: number): FrameMode {
  if (length <= limit) return FrameMode.Buffer;
  host.connError(code, `frame of ${length} bytes exceeds ${limit}`);
  return FrameMode.Skip;
}

/** Parse a payload that must be exactly one varint; -1 otherwise. */
function singleVarint(p: Uint8Array, len: number): number {
  const v = parseVarint(p, 0, len);
  if (v === VARINT_NEED_MORE || varintLengthAt(p, 0) !== len) return -1;
  return v;
}
