/**
 * Passive look at the start of a TCP connection's initiator→responder byte
 * stream: TLS ClientHello SNI and ALPN (RFC 8446 §4.1.2, RFC 6066 §3,
 * RFC 7301 §3.1) and HTTP/1.x request lines counted across keep-alive
 * (RFC 9112 §3, §6). Observes only; never alters or terminates anything.
 */

import { type PeekBudget, TlsHelloCollector } from './tls-client-hello.js';

/** Longest request or header line prefix we keep (the rest of a long line is skipped, not stored). */
const LINE_KEEP = 256;

const K_UNDECIDED = 0;
const K_TLS = 1;
const K_HTTP = 2;
const K_NONE = 3;

const H_LINE = 0; // expecting a request line
const H_HEADERS = 1;
const H_BODY = 2;
const H_CHUNK_SIZE = 3;
const H_CHUNK_DATA = 4;
const H_CHUNK_CRLF = 5;
const H_TRAILERS = 6;
const H_LOST = 7;

const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH'];

/**
 * Per-connection peek state. Created by the flow tracker when the initiator
 * of a connection whose whole three-way handshake was seen sends its first
 * payload. TLS bytes go to a {@link TlsHelloCollector} whose buffer is charged
 * to the shared {@link PeekBudget}; HTTP keeps at most LINE_KEEP bytes.
 * Call {@link release} when the flow goes away.
 */
export class L7Peek {
  /** Server name from the ClientHello, or null. */
  sni: string | null = null;
  /** ALPN protocols offered in the ClientHello, comma-joined, or null. */
  alpn: string | null = null;
  /** HTTP/1.x request lines seen. */
  httpRequests = 0;
  /** Host header of the first HTTP request, or null. */
  httpHost: string | null = null;
  /** Method of the first HTTP request, or null. */
  httpMethod: string | null = null;
  /** Times the HTTP parser lost its place (stream gap) and had to resynchronise. */
  httpResyncs = 0;

  private kind = K_UNDECIDED;
  private readonly tls: TlsHelloCollector;
  private h = H_LINE;
  private remaining = 0;
  private line = Buffer.alloc(0);
  private lineLen = 0;
  private chunked = false;
  private contentLength = 0;

  /** A peek whose TLS buffer is charged to `budget`. */
  constructor(budget: PeekBudget) {
    this.tls = new TlsHelloCollector(budget);
  }

  /** True while more stream bytes could still change the result. */
  get wantsData(): boolean {
    return this.kind === K_UNDECIDED || this.kind === K_HTTP || (this.kind === K_TLS && !this.tls.done);
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
   * Feeds stream bytes buf[off, off+len) that start at stream offset
   * `streamOff` (0 = first payload byte after the SYN). `contiguous` is how
   * many stream bytes from 0 have been seen in full, after this segment.
   * `inOrder` is true when these bytes directly follow everything fed before
   * (HTTP parsing needs that; TLS collection does not). Never throws.
   */
  feed(buf: Uint8Array, off: number, len: number, streamOff: number, contiguous: number, inOrder: boolean): void {
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
    }
    if (this.kind === K_TLS) {
      this.tls.feed(buf, off, len, streamOff, contiguous, this);
      return;
    }
    if (this.kind === K_HTTP) {
      if (!inOrder) {
        if (this.h !== H_LOST) this.httpResyncs++;
        this.h = H_LOST;
        return;
      }
      this.http(buf, off, len);
    }
  }

  private http(buf: Uint8Array, off: number, len: number): void {
    let i = off;
    const end = off + len;
    while (i < end) {
      switch (this.h) {
        case H_BODY:
        case H_CHUNK_DATA: {
          const n = Math.min(this.remaining, end - i);
          i += n;
          this.remaining -= n;
          if (this.remaining === 0) this.h = this.h === H_BODY ? H_LINE : H_CHUNK_CRLF;
          break;
        }
        case H_LOST: {
          // Resynchronise only at a segment boundary that starts a request line.
          if (i === off && looksLikeRequestStart(buf, i, end)) { this.h = H_LINE; break; }
          return;
        }
        default: {
          // Line-oriented states: accumulate up to CRLF (or bare LF, RFC 9112 §2.2).
          const b = buf[i++]!;
          if (b === 0x0a) {
            this.onLine();
            this.lineLen = 0;
          } else if (b !== 0x0d) {
            if (this.lineLen < LINE_KEEP) {
              if (this.line.length === 0) this.line = Buffer.alloc(LINE_KEEP);
              this.line[this.lineLen] = b;
            }
            this.lineLen++;
          }
        }
      }
    }
  }

  private onLine(): void {
    const n = Math.min(this.lineLen, LINE_KEEP);
    const text = this.lineLen === 0 ? '' : this.line.toString('latin1', 0, n);
    switch (this.h) {
      case H_LINE: {
        if (text === '') return; // RFC 9112 §2.2: ignore leading empty lines
        const m = /^([A-Z]+) \S+ HTTP\/1\.[01]$/.exec(text);
        if (m === null || !METHODS.includes(m[1]!)) { this.h = H_LOST; this.httpResyncs++; return; }
        this.httpRequests++;
        if (this.httpMethod === null) this.httpMethod = m[1]!;
        this.h = H_HEADERS;
        this.chunked = false;
        this.contentLength = 0;
        return;
      }
      case H_HEADERS: {
        if (text === '') {
          if (this.chunked) this.h = H_CHUNK_SIZE;
          else if (this.contentLength > 0) { this.h = H_BODY; this.remaining = this.contentLength; }
          else this.h = H_LINE;
          return;
        }
        const c = text.indexOf(':');
        if (c <= 0) return;
        const name = text.slice(0, c).toLowerCase();
        const value = text.slice(c + 1).trim();
        if (name === 'content-length') {
          const v = /^\d{1,15}$/.test(value) ? Number(value) : -1;
          if (v < 0) { this.h = H_LOST; this.httpResyncs++; return; }
          this.contentLength = v;
        } else if (name === 'transfer-encoding') {
          this.chunked = /(^|,)\s*chunked\s*$/i.test(value); // RFC 9112 §6.1: chunked is last
        } else if (name === 'host' && this.httpHost === null) {
          this.httpHost = value;
        }
        return;
      }
      case H_CHUNK_SIZE: {
        const m = /^([0-9a-fA-F]{1,12})/.exec(text); // RFC 9112 §7.1: chunk-size [ chunk-ext ]
        if (m === null) { this.h = H_LOST; this.httpResyncs++; return; }
        const size = parseInt(m[1]!, 16);
        if (size === 0) { this.h = H_TRAILERS; return; }
        this.remaining = size;
        this.h = H_CHUNK_DATA;
        return;
      }
      case H_CHUNK_CRLF:
        this.h = H_CHUNK_SIZE;
        return;
      case H_TRAILERS:
        if (text === '') this.h = H_LINE;
        return;
    }
  }
}

function looksLikeRequestStart(buf: Uint8Array, i: number, end: number): boolean {
  for (const m of METHODS) {
    if (i + m.length + 1 > end) continue;
    let ok = buf[i + m.length] === 0x20;
    for (let k = 0; ok && k < m.length; k++) ok = buf[i + k] === m.charCodeAt(k);
    if (ok) return true;
  }
  return false;
}
