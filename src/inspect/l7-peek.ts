/**
 * Passive look at the start of a TCP connection: TLS ClientHello SNI and
 * ALPN (RFC 8446 §4.1.2, RFC 6066 §3, RFC 7301 §3.1) from the initiator's
 * bytes, or HTTP/1.x requests and responses counted across keep-alive
 * (RFC 9112 §3, §4, §6) with response status classes and the time from the
 * first request to the first response byte. Observes only; never alters or
 * terminates anything.
 */

import { Http1Stream } from './http1-stream.js';
import type { HttpStatusClasses } from './flow-record.js';
import { type PeekBudget, TlsHelloCollector } from './tls-client-hello.js';

const K_UNDECIDED = 0;
const K_TLS = 1;
const K_HTTP = 2;
const K_NONE = 3;

/**
 * Per-connection peek state. Created by the flow tracker when the initiator
 * of a connection whose whole three-way handshake was seen sends its first
 * payload. TLS bytes go to a {@link TlsHelloCollector} whose buffer is charged
 * to the shared {@link PeekBudget}; HTTP keeps at most one 256-byte line per
 * direction and skips bodies. Call {@link release} when the flow goes away.
 */
export class L7Peek {
  /** Server name from the ClientHello, or null. */
  sni: string | null = null;
  /** ALPN protocols offered in the ClientHello, comma-joined, or null. */
  alpn: string | null = null;
  /** First request's first byte → first response byte, ms; NaN until seen. */
  firstByteMs = NaN;

  private kind = K_UNDECIDED;
  private readonly tls: TlsHelloCollector;
  private readonly req = new Http1Stream(null);
  private readonly res = new Http1Stream(this.req);
  private firstRequestAt = NaN;

  /** A peek whose TLS buffer is charged to `budget`. */
  constructor(budget: PeekBudget) {
    this.tls = new TlsHelloCollector(budget);
  }

  /** HTTP/1.x request lines seen. */
  get httpRequests(): number {
    return this.req.messages;
  }

  /** Host header of the first HTTP request, or null. */
  get httpHost(): string | null {
    return this.req.host;
  }

  /** Method of the first HTTP request, or null. */
  get httpMethod(): string | null {
    return this.req.method;
  }

  /** Times the request parser lost its place (stream gap) and had to resynchronise. */
  get httpResyncs(): number {
    return this.req.resyncs;
  }

  /** HTTP/1 responses by status class (a new object). */
  statusClasses(): HttpStatusClasses {
    const c = this.res.statusClasses;
    return { '1xx': c[0]!, '2xx': c[1]!, '3xx': c[2]!, '4xx': c[3]!, '5xx': c[4]! };
  }

  /** True while more stream bytes could still change the result. */
  get wantsData(): boolean {
    return this.kind === K_UNDECIDED || this.kind === K_HTTP || (this.kind === K_TLS && !this.tls.done);
  }

  /** True when the connection was recognised as HTTP/1.x (responder bytes are wanted too). */
  get isHttp(): boolean {
    return this.kind === K_HTTP;
  }

  /** Bytes of peek buffer held (charged to the budget). */
  get heldBytes(): number {
    return this.tls.heldBytes;
  }

  /** Returns any buffer to the budget; the peek learns nothing more about TLS. */
  release(): void {
    this.tls.finish();
  }

  /**
   * Feeds initiator stream bytes buf[off, off+len) that start at stream
   * offset `streamOff` (0 = first payload byte after the SYN), seen at
   * `now`. `contiguous` is how many stream bytes from 0 have been seen in
   * full, after this segment. `inOrder` is true when these bytes directly
   * follow everything fed before (HTTP parsing needs that; TLS collection
   * does not). Never throws.
   */
  feed(buf: Uint8Array, off: number, len: number, streamOff: number, contiguous: number, inOrder: boolean, now = 0): void {
    if (len <= 0) return;
    if (this.kind === K_UNDECIDED) {
      if (streamOff !== 0) {
        if (contiguous > 0) {
          // The stream's first bytes went by before the peek began (data in the SYN, TCP Fast Open;
          // data before the handshake completed): nothing to decide from.
          this.kind = K_NONE;
          this.tls.finish();
          return;
        }
        // The first bytes are still missing (reordering): keep these in case it is TLS.
        this.tls.feed(buf, off, len, streamOff, 0, this);
        return;
      }
      const b0 = buf[off]!;
      this.kind = b0 === 0x16 ? K_TLS : b0 >= 0x41 && b0 <= 0x5a ? K_HTTP : K_NONE;
      if (this.kind !== K_TLS) this.tls.finish();
      if (this.kind === K_NONE) return;
      if (this.kind === K_HTTP) this.firstRequestAt = now;
    }
    if (this.kind === K_TLS) {
      this.tls.feed(buf, off, len, streamOff, contiguous, this);
      return;
    }
    if (this.kind === K_HTTP) this.req.feed(buf, off, len, inOrder);
  }

  /**
   * Feeds responder stream bytes of an HTTP/1.x connection (ignored
   * otherwise) seen at `now`; `inOrder` as for {@link feed}. Bodies are
   * skipped, never stored. Never throws.
   */
  feedResponse(buf: Uint8Array, off: number, len: number, inOrder: boolean, now: number): void {
    if (this.kind !== K_HTTP || len <= 0) return;
    if (this.firstByteMs !== this.firstByteMs && this.req.messages > 0) this.firstByteMs = now - this.firstRequestAt;
    this.res.feed(buf, off, len, inOrder);
  }
}
