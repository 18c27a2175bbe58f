/**
 * One direction of an HTTP/1.x connection followed passively: start lines
 * and header fields are read a line at a time (at most LINE_KEEP bytes of a
 * line are kept), message bodies are skipped by Content-Length or chunked
 * framing (RFC 9112 §6, §7.1) and never buffered. Requests (RFC 9112 §3) and
 * responses (§4) differ only in the start line and in which responses have
 * no body (RFC 9112 §6.3: HEAD, 1xx, 204, 304); a response body delimited by
 * the connection's close ends the peek.
 */

/** Longest start or header line prefix kept (the rest of a long line is skipped, not stored). */
const LINE_KEEP = 256;

const H_LINE = 0; // expecting a start line
const H_HEADERS = 1;
const H_BODY = 2;
const H_CHUNK_SIZE = 3;
const H_CHUNK_DATA = 4;
const H_CHUNK_CRLF = 5;
const H_TRAILERS = 6;
const H_LOST = 7;

const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH'];

/** Most requests remembered (HEAD or not) while their responses are outstanding. */
const MAX_PENDING = 30;

/**
 * The request side and the response side of one connection. The request
 * side remembers which outstanding requests were HEAD (their responses have
 * no body) in a 30-bit queue; the response side consumes it.
 */
export class Http1Stream {
  /** Request lines (request side) or final responses (response side) seen. */
  messages = 0;
  /** Times the parser lost its place (stream gap, malformed line) and had to resynchronise. */
  resyncs = 0;
  /** Request side: Host of the first request. */
  host: string | null = null;
  /** Request side: method of the first request. */
  method: string | null = null;
  /** Response side: responses by status class, index 0 = 1xx … 4 = 5xx. */
  readonly statusClasses = [0, 0, 0, 0, 0];

  private h = H_LINE;
  private remaining = 0;
  private line = Buffer.alloc(0);
  private lineLen = 0;
  private chunked = false;
  private contentLength = -1;
  private noBody = false;
  /** Request side: HEAD bits of outstanding requests (bit k = k-th oldest), and how many. */
  headBits = 0;
  pending = 0;

  /** `peer` is the request side when this is the response side (null for the request side). */
  constructor(private readonly peer: Http1Stream | null) {}

  /** Feeds in-order stream bytes buf[off, off+len); `inOrder` false means bytes were skipped before these. */
  feed(buf: Uint8Array, off: number, len: number, inOrder: boolean): void {
    if (!inOrder) {
      if (this.h !== H_LOST) this.resyncs++;
      this.h = H_LOST;
      return;
    }
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
          // Requests resynchronise at a segment boundary that starts a request line; responses do not.
          if (this.peer === null && i === off && looksLikeRequestStart(buf, i, end)) { this.h = H_LINE; break; }
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

  private lost(): void {
    this.h = H_LOST;
    this.resyncs++;
  }

  private startLine(text: string): void {
    this.chunked = false;
    this.contentLength = -1;
    this.noBody = false;
    if (this.peer === null) {
      const m = /^([A-Z]+) \S+ HTTP\/1\.[01]$/.exec(text);
      if (m === null || !METHODS.includes(m[1]!)) { this.lost(); return; }
      this.messages++;
      if (this.method === null) this.method = m[1]!;
      if (this.pending < MAX_PENDING) {
        if (m[1] === 'HEAD') this.headBits |= 1 << this.pending;
        this.pending++;
      }
      this.h = H_HEADERS;
      return;
    }
    // RFC 9112 §4: status-line = HTTP-version SP status-code SP [ reason-phrase ]
    const m = /^HTTP\/1\.[01] ([1-5])(\d\d)(?: |$)/.exec(text);
    if (m === null) { this.lost(); return; }
    const cls = m[1]!.charCodeAt(0) - 0x31;
    const code = Number(m[1]! + m[2]!);
    this.statusClasses[cls]! += 1;
    const rq = this.peer;
    if (cls === 0) {
      this.noBody = true; // RFC 9112 §6.3: 1xx has no body and is not the final response (101 switches protocols)
      if (code === 101) { this.h = H_LOST; return; }
    } else {
      this.messages++;
      const head = rq.pending > 0 && (rq.headBits & 1) !== 0;
      if (rq.pending > 0) { rq.headBits >>>= 1; rq.pending--; }
      this.noBody = head || code === 204 || code === 304;
    }
    this.h = H_HEADERS;
  }

  private onLine(): void {
    const n = Math.min(this.lineLen, LINE_KEEP);
    const text = this.lineLen === 0 ? '' : this.line.toString('latin1', 0, n);
    switch (this.h) {
      case H_LINE:
        if (text !== '') this.startLine(text); // RFC 9112 §2.2: ignore leading empty lines
        return;
      case H_HEADERS: {
        if (text === '') { this.endOfHeaders(); return; }
        const c = text.indexOf(':');
        if (c <= 0) return;
        const name = text.slice(0, c).toLowerCase();
        const value = text.slice(c + 1).trim();
        if (name === 'content-length') {
          const v = /^\d{1,15}$/.test(value) ? Number(value) : -1;
          if (v < 0) { this.lost(); return; }
          this.contentLength = v;
        } else if (name === 'transfer-encoding') {
          this.chunked = /(^|,)\s*chunked\s*$/i.test(value); // RFC 9112 §6.1: chunked is last
        } else if (name === 'host' && this.peer === null && this.host === null) {
          this.host = value;
        }
        return;
      }
      case H_CHUNK_SIZE: {
        const m = /^([0-9a-fA-F]{1,12})/.exec(text); // RFC 9112 §7.1: chunk-size [ chunk-ext ]
        if (m === null) { this.lost(); return; }
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

  /** RFC 9112 §6.3: how the body after the header section is delimited. */
  private endOfHeaders(): void {
    if (this.noBody) this.h = H_LINE;
    else if (this.chunked) this.h = H_CHUNK_SIZE;
    else if (this.contentLength > 0) { this.h = H_BODY; this.remaining = this.contentLength; }
    else if (this.contentLength === 0 || this.peer === null) this.h = H_LINE; // a request without either has no body
    else this.h = H_LOST; // a response delimited by the connection's close: nothing more to follow
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
