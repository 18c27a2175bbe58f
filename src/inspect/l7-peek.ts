/**
 * Passive look at the start of a TCP connection's initiator→responder byte
 * stream: TLS ClientHello SNI and ALPN (RFC 8446 §4.1.2, RFC 6066 §3,
 * RFC 7301 §3.1) and HTTP/1.x request lines counted across keep-alive
 * (RFC 9112 §3, §6). Observes only; never alters or terminates anything.
 */

/** Bytes of stream we are willing to buffer to find a ClientHello split over segments and records. */
export const TLS_PEEK_MAX_BYTES = 32 * 1024;
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
 * Per-connection peek state. Created by the flow tracker when an observed
 * handshake's initiator sends its first payload; fed in-order stream bytes.
 * Holds at most TLS_PEEK_MAX_BYTES (TLS) or LINE_KEEP bytes (HTTP).
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
  private tls: Buffer | null = null;
  private tlsDone = false;
  private h = H_LINE;
  private remaining = 0;
  private line = Buffer.alloc(0);
  private lineLen = 0;
  private chunked = false;
  private contentLength = 0;

  /** True while more stream bytes could still change the result. */
  get wantsData(): boolean {
    return this.kind === K_UNDECIDED || this.kind === K_HTTP || (this.kind === K_TLS && !this.tlsDone);
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
        // The first bytes are still missing (reordering): keep these in case it is TLS.
        this.store(buf, off, len, streamOff);
        return;
      }
      const b0 = buf[off]!;
      this.kind = b0 === 0x16 ? K_TLS : b0 >= 0x41 && b0 <= 0x5a ? K_HTTP : K_NONE;
      if (this.kind !== K_TLS) this.tls = null;
      if (this.kind === K_NONE) return;
    }
    if (this.kind === K_TLS) {
      this.collectTls(buf, off, len, streamOff, contiguous);
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

  private store(buf: Uint8Array, off: number, len: number, streamOff: number): void {
    if (streamOff >= TLS_PEEK_MAX_BYTES) return;
    if (this.tls === null) this.tls = Buffer.alloc(TLS_PEEK_MAX_BYTES);
    const n = Math.min(len, TLS_PEEK_MAX_BYTES - streamOff);
    this.tls.set(buf.subarray(off, off + n), streamOff);
  }

  /** Buffers TLS bytes by stream offset and parses once the ClientHello is contiguous. */
  private collectTls(buf: Uint8Array, off: number, len: number, streamOff: number, contiguous: number): void {
    if (this.tlsDone) return;
    this.store(buf, off, len, streamOff);
    if (this.tls === null) { this.tlsDone = true; return; }
    const r = parseClientHello(this.tls, Math.min(contiguous, TLS_PEEK_MAX_BYTES), this);
    if (r !== 0 || contiguous >= TLS_PEEK_MAX_BYTES) {
      this.tlsDone = true;
      this.tls = null; // release the buffer once decided
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

/**
 * Parses a TLS ClientHello from the first `avail` bytes of a stream in `b`,
 * reassembling the handshake message across records (RFC 8446 §5.1). Sets
 * `out.sni` / `out.alpn`.
 *
 * @returns 0 when more bytes are needed, 1 when parsed, -1 when the stream is
 * not a ClientHello or is malformed (give up).
 */
export function parseClientHello(b: Uint8Array, avail: number, out: { sni: string | null; alpn: string | null }): number {
  // Gather handshake-layer bytes from consecutive handshake records.
  const hs: number[] = [];
  let p = 0;
  let need = -1;
  while (p + 5 <= avail) {
    if (b[p] !== 22) return -1; // ContentType handshake
    if (b[p + 1] !== 3) return -1; // legacy_record_version 3.x
    const rlen = (b[p + 3]! << 8) | b[p + 4]!;
    if (rlen === 0 || rlen > 16384 + 256) return -1;
    const take = Math.min(rlen, avail - p - 5);
    for (let k = 0; k < take; k++) hs.push(b[p + 5 + k]!);
    if (need < 0 && hs.length >= 4) {
      if (hs[0] !== 1) return -1; // HandshakeType client_hello
      need = 4 + ((hs[1]! << 16) | (hs[2]! << 8) | hs[3]!);
      if (need > TLS_PEEK_MAX_BYTES) return -1;
    }
    if (need >= 0 && hs.length >= need) break;
    if (take < rlen) return 0;
    p += 5 + rlen;
  }
  if (need < 0 || hs.length < need) return 0;
  const m = Uint8Array.from(hs.slice(0, need));
  let q = 4 + 2 + 32; // type+len, legacy_version, random
  if (q + 1 > need) return -1;
  q += 1 + m[q]!; // legacy_session_id
  if (q + 2 > need) return -1;
  q += 2 + ((m[q]! << 8) | m[q + 1]!); // cipher_suites
  if (q + 1 > need) return -1;
  q += 1 + m[q]!; // legacy_compression_methods
  if (q === need) return 1; // no extensions
  if (q + 2 > need) return -1;
  const extEnd = q + 2 + ((m[q]! << 8) | m[q + 1]!);
  if (extEnd > need) return -1;
  q += 2;
  while (q + 4 <= extEnd) {
    const type = (m[q]! << 8) | m[q + 1]!;
    const len = (m[q + 2]! << 8) | m[q + 3]!;
    const d = q + 4;
    if (d + len > extEnd) return -1;
    if (type === 0 && len >= 2) {
      // RFC 6066 §3: ServerNameList; the first host_name entry.
      let s = d + 2;
      const sEnd = Math.min(d + 2 + ((m[d]! << 8) | m[d + 1]!), d + len);
      while (s + 3 <= sEnd) {
        const nl = (m[s + 1]! << 8) | m[s + 2]!;
        if (s + 3 + nl > sEnd) break;
        if (m[s] === 0) { out.sni = Buffer.from(m.subarray(s + 3, s + 3 + nl)).toString('latin1'); break; }
        s += 3 + nl;
      }
    } else if (type === 16 && len >= 2) {
      // RFC 7301 §3.1: ProtocolNameList.
      const names: string[] = [];
      let s = d + 2;
      const sEnd = Math.min(d + 2 + ((m[d]! << 8) | m[d + 1]!), d + len);
      while (s + 1 <= sEnd) {
        const nl = m[s]!;
        if (nl === 0 || s + 1 + nl > sEnd) break;
        names.push(Buffer.from(m.subarray(s + 1, s + 1 + nl)).toString('latin1'));
        s += 1 + nl;
      }
      if (names.length > 0) out.alpn = names.join(',');
    }
    q = d + len;
  }
  return 1;
}
