/**
 * One QUIC stream as the HTTP/3 connection tracks it: what kind it is, its
 * send queue, and exactly one reader for its kind (uni-stream type preface,
 * control frames, QPACK instructions, or a request). Allocated per stream,
 * never per packet. Also the narrow {@link StreamHost} the readers use to
 * act on their connection.
 */

import type { QuicTransport } from '../quic/transport.js';
import type { H3ConnectionOptions } from './api.js';
import type { UniTypeReader } from './control-stream.js';
import type { H3Counters } from './counters.js';
import type { FrameReader, FrameSink } from './frame-reader.js';
import type { FieldList } from './qpack.js';
import type { QpackInstructionReader } from './qpack-streams.js';
import type { RequestStream } from './request-stream.js';
import { SendQueue } from './send-queue.js';

/** What a stream is. */
export const enum Kind {
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

/** Per-stream state: the kind, the send side, and the reader for that kind. */
export class H3Stream {
  readonly send = new SendQueue();
  /** Peer uni stream: its type preface (until known). */
  uniType: UniTypeReader | null = null;
  /** Control and request streams: frame reader and where its frames go. */
  frames: FrameReader | null = null;
  sink: FrameSink | null = null;
  /** QPACK encoder/decoder stream. */
  qpack: QpackInstructionReader | null = null;
  /** Request streams: message and tunnel state. */
  req: RequestStream | null = null;
  /** Peer finished or reset its side. */
  remoteDone = false;
  /** We are done with it: no more reads or callbacks. */
  closed = false;

  constructor(
    readonly id: number,
    public kind: Kind,
  ) {}

  /** Bytes held for reading (collected frame payload plus held-back request bytes). */
  get bufferedBytes(): number {
    return (this.frames?.bufferedBytes ?? 0) + (this.req?.heldBytes ?? 0);
  }
}

/** Thrown internally to unwind processing after a connection error was raised. */
export class ConnectionClosed extends Error {}

/** Resolved connection options the stream readers consult. */
export type ResolvedOptions = Required<
  Pick<H3ConnectionOptions, 'maxFieldSectionSize' | 'maxCapsuleBytes' | 'maxStreamQueueBytes' | 'enableConnectProtocol' | 'enableDatagrams' | 'grease'>
>;

/**
 * What request-stream and Extended CONNECT code may do to their connection.
 * H3Connection implements it; nothing outside src/h3 uses it.
 */
export interface StreamHost {
  readonly isServer: boolean;
  readonly closed: boolean;
  readonly counters: H3Counters;
  readonly transport: QuicTransport;
  readonly limits: ResolvedOptions;
  readonly options: H3ConnectionOptions;
  /** Both sides sent SETTINGS_H3_DATAGRAM=1 (RFC 9297 §2.1.1). */
  readonly datagramsEnabled: boolean;
  /** Connection error (RFC 9114 §8); throws {@link ConnectionClosed} to unwind. */
  connError(code: number, reason: string): never;
  /** Stream error: reset and stop, count, forget; notify its owner if `notify`. */
  abortStream(s: H3Stream, code: number, notify: boolean): void;
  /** Done with a stream (it lingers only while its queue drains). */
  dropStream(s: H3Stream): void;
  /** Tell the stream's owner it ended with `code`. */
  notifyClosed(s: H3Stream, code: number): void;
  /** Queue bytes (taken over) and maybe FIN, then flush. */
  queue(s: H3Stream, data: Uint8Array, fin: boolean): void;
  /** Queue a HEADERS frame. */
  sendHeaders(s: H3Stream, fields: FieldList, fin: boolean): void;
  /** FIN after queued data (tunnel close). */
  finish(s: H3Stream): void;
  /** Resume reading an accepted Extended CONNECT stream once the current read unwinds. */
  scheduleResume(s: H3Stream): void;
}
