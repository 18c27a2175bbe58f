/**
 * Counters of one HTTP/3 connection: every drop and error reason, as plain
 * numbers the telemetry layer reads off the data path.
 */

import { h3ErrorName } from './errors.js';

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
  /** Datagrams read in one batch with others after which the connection closed or a handler failed (handleDatagrams). */
  datagramsDroppedConnectionClosed: number;
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
  /** Bytes of plain (non-CONNECT) request bodies read and dropped unbuffered. */
  requestBodyBytesDropped: number;
}

/** Fresh zeroed counters (one object per connection). */
export function newCounters(): H3Counters {
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
    datagramsDroppedConnectionClosed: 0,
    datagramsDroppedPending: 0,
    datagramsNoSemantics: 0,
    datagramsDroppedNotAllowed: 0,
    datagramsDroppedTransport: 0,
    streamErrorsSent: {},
    streamErrorsReceived: {},
    connectionError: 0,
    handlerErrors: 0,
    requestBodyBytesDropped: 0,
  };
}

/** Count one stream error under its H3 error name (`byName` is a counters map). */
export function countStreamError(byName: Record<string, number>, code: number): void {
  const name = h3ErrorName(code);
  byName[name] = (byName[name] ?? 0) + 1;
}
