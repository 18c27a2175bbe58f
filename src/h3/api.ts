/**
 * What the application sees of src/h3: requests, responses, Extended
 * CONNECT hooks and connection options. src/h3/connection.ts re-exports all.
 */

import type { H3Settings } from './settings.js';
import type { FieldList } from './qpack.js';
import type { TunnelStream, TunnelStreamHandler } from './tunnel-stream.js';

/** A plain (non-Extended-CONNECT) request as the server application sees it. */
export interface H3Request {
  readonly streamId: number;
  readonly method: string;
  readonly scheme: string | undefined;
  readonly authority: string | undefined;
  readonly path: string | undefined;
  readonly headers: FieldList;
  /** Any request body is read and dropped unbuffered (counted in requestBodyBytesDropped). */
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

/**
 * Client-side events of one plain request stream (see
 * src/h3/testing/h3-request.ts). Buffers are valid only during the call.
 */
export interface ClientRequestHandler {
  /** The final response head (interim 1xx responses are skipped). */
  onResponse(status: number, headers: FieldList): void;
  /** A piece of the response body. */
  onData(buf: Uint8Array, offset: number, end: number): void;
  /** The response ended cleanly (the peer's FIN). */
  onEnd(): void;
  /** The stream ended with an H3 error code (reset, refusal, connection close). */
  onClose(error: number): void;
}

/** Options for {@link H3Connection}. */
export interface H3ConnectionOptions {
  /** Largest field section we accept, advertised as SETTINGS_MAX_FIELD_SECTION_SIZE (RFC 9114 §4.2.2). */
  maxFieldSectionSize?: number;
  /** Largest capsule value we reassemble (larger → stream error H3_EXCESSIVE_LOAD). */
  maxCapsuleBytes?: number;
  /** Bound on bytes queued for sending on one stream beyond QUIC flow control. */
  maxStreamQueueBytes?: number;
  /** Send SETTINGS_ENABLE_CONNECT_PROTOCOL=1 (RFC 9220 §3). Default true. */
  enableConnectProtocol?: boolean;
  /** Send SETTINGS_H3_DATAGRAM=1 (RFC 9297 §2.1.1). Default true. */
  enableDatagrams?: boolean;
  /** Send a reserved setting and a reserved frame type (RFC 9114 §7.2.4.1, §7.2.8). Default true. */
  grease?: boolean;
  /** Server: Extended CONNECT requests. Without it they are answered 501. */
  onConnect?: ConnectHandler;
  /** Server: other requests (e.g. src/telemetry/healthz.ts). Without it they are answered 404. */
  onRequest?: H3RequestHandler;
  /** The peer's SETTINGS arrived. */
  onSettings?: (settings: H3Settings) => void;
  /** The peer sent GOAWAY (stream ID on a client, push ID on a server). */
  onGoaway?: (id: number) => void;
  /** The connection ended: by our error, the peer or the transport. Called once. */
  onClosed?: (errorCode: number, reason: string) => void;
}
