/**
 * A server-side HTTP/2 Extended CONNECT request (RFC 8441 §4) awaiting the
 * gateway's decision, as the same {@link ConnectRequest} the HTTP/3 layer
 * hands out, so admission, MASQUE request checks and sessions are shared.
 */
import type { IncomingHttpHeaders, ServerHttp2Stream } from 'node:http2';
import type { ConnectRequest } from '../h3/api.js';
import { checkTunnelResponse } from '../h3/extended-connect.js';
import { fieldValue, isCapsuleProtocol } from '../h3/message.js';
import type { FieldList } from '../h3/qpack.js';
import type { TunnelStream, TunnelStreamHandler } from '../h3/tunnel-stream.js';
import { H2Tunnel, type H2TunnelCounters, type H2TunnelOptions } from './h2-tunnel.js';

/** Regular (non-pseudo) request fields as a field list, names lowercase (HTTP/2 requires it, RFC 9113 §8.2.1). */
export function regularFields(headers: IncomingHttpHeaders): FieldList {
  const out: [string, string][] = [];
  for (const [name, v] of Object.entries(headers)) {
    if (name.startsWith(':') || v === undefined) continue;
    if (Array.isArray(v)) for (const x of v) out.push([name, x]);
    else out.push([name, String(v)]);
  }
  return out;
}

/** Response headers object for node's `respond()`, from a field list. */
function responseHeaders(status: number, fields: FieldList): Record<string, string | string[] | number> {
  const h: Record<string, string | string[] | number> = { ':status': status };
  for (const [n, v] of fields) {
    const prev = h[n];
    if (prev === undefined) h[n] = v;
    else h[n] = Array.isArray(prev) ? [...prev, v] : [String(prev), v];
  }
  return h;
}

/**
 * One Extended CONNECT request on an HTTP/2 stream. `accept` answers 2xx
 * with `capsule-protocol: ?1` (RFC 9297 §3.4) and returns an {@link H2Tunnel};
 * `reject` answers the status and ends the stream.
 */
export class H2PendingConnect implements ConnectRequest {
  readonly streamId: number;
  readonly protocol: string;
  readonly scheme: string;
  readonly authority: string;
  readonly path: string;
  readonly headers: FieldList;
  readonly capsuleProtocol: boolean;
  private done = false;

  constructor(
    private readonly stream: ServerHttp2Stream,
    head: IncomingHttpHeaders,
    private readonly limits: H2TunnelOptions,
    private readonly counters: H2TunnelCounters,
  ) {
    this.streamId = stream.id ?? -1;
    this.protocol = String(head[':protocol'] ?? '');
    this.scheme = String(head[':scheme'] ?? '');
    this.authority = String(head[':authority'] ?? '');
    this.path = String(head[':path'] ?? '');
    this.headers = regularFields(head);
    this.capsuleProtocol = isCapsuleProtocol(this.headers);
    // Until accepted, request DATA is not read: HTTP/2 flow control holds the client back.
    stream.pause();
  }

  get settled(): boolean {
    return this.done || this.stream.closed || this.stream.destroyed;
  }

  header(name: string): string | undefined {
    return fieldValue(this.headers, name);
  }

  accept(handler: TunnelStreamHandler, headers: FieldList = [], status = 200): TunnelStream | null {
    if (this.settled) return null;
    checkTunnelResponse(status, headers, 'h2');
    this.done = true;
    this.stream.respond(responseHeaders(status, [['capsule-protocol', '?1'], ...headers]));
    const t = new H2Tunnel(this.stream, handler, this.limits, this.counters);
    this.stream.resume();
    return t;
  }

  reject(status: number, headers: FieldList = [], body?: Uint8Array | string): void {
    if (this.settled) return;
    if (status >= 200 && status <= 299) throw new RangeError('h2: reject() needs a non-2xx status');
    this.done = true;
    const s = this.stream;
    s.respond(responseHeaders(status, headers), { endStream: body === undefined });
    if (body !== undefined) s.end(body);
    // The response is complete; what the client still sends is not read (RFC 9113 §8.1).
    s.resume();
  }
}
