/**
 * Incremental TLS ClientHello collection for the L7 peek: SNI (RFC 6066 §3)
 * and ALPN (RFC 7301 §3.1) from the first handshake message (RFC 8446
 * §4.1.2), reassembled across TCP segments and TLS records (RFC 8446 §5.1)
 * with every stream byte stored, moved and parsed a bounded number of times,
 * in buffers charged to one {@link PeekBudget} shared by all flows.
 */

/** Most stream bytes one flow may buffer to find its ClientHello. */
export const TLS_PEEK_MAX_BYTES = 32 * 1024;
/** Default bound on the bytes all flows' peek buffers hold together. */
export const DEFAULT_PEEK_BUDGET_BYTES = 16 * 1024 * 1024;
/** First buffer size; it doubles as bytes arrive (up to TLS_PEEK_MAX_BYTES). */
const FIRST_ALLOC = 2048;
/** RFC 8446 §5.1: TLSPlaintext.length ≤ 2^14 (+256 tolerated as for TLSCiphertext). */
const MAX_RECORD = 16384 + 256;

/**
 * The global byte budget for peek buffers, shared by every flow of a tracker,
 * and the work counters that show the peek's cost per byte.
 */
export class PeekBudget {
  /** Bytes currently reserved by peek buffers. */
  heldBytes = 0;
  /** Times a peek buffer could not grow because the budget was spent (that flow's TLS peek is abandoned). */
  refused = 0;
  /** Stream bytes copied into, moved within or grown across peek buffers, in total. */
  bytesCopied = 0;
  /** Handshake bytes handed to the ClientHello parser, in total. */
  bytesParsed = 0;

  constructor(readonly limitBytes: number = DEFAULT_PEEK_BUDGET_BYTES) {
    if (!Number.isInteger(limitBytes) || limitBytes < 0) throw new Error(`inspect: peek budget must be a byte count ≥ 0, got ${limitBytes}`);
  }

  /** Reserves n bytes; false (counted) when that would pass the limit. */
  take(n: number): boolean {
    if (this.heldBytes + n > this.limitBytes) { this.refused++; return false; }
    this.heldBytes += n;
    return true;
  }

  /** Returns n reserved bytes. */
  give(n: number): void {
    this.heldBytes -= n;
  }
}

/**
 * One flow's ClientHello collector. Raw stream bytes are stored at their
 * stream offset (so segments may arrive in any order); as the contiguous
 * prefix grows, record headers are consumed once and handshake bytes are
 * moved down to the front of the same buffer, once each; the message is
 * parsed once, when complete. The buffer is returned to the budget as soon
 * as the result is known ({@link done}).
 */
export class TlsHelloCollector {
  /** Set when finished (parsed, malformed, too long or out of budget); no buffer is held then. */
  done = false;
  private buf: Uint8Array | null = null;
  private scan = 0; // stream offset of the next raw byte not yet consumed
  private hsLen = 0; // handshake-layer bytes gathered at buf[0, hsLen)
  private recLeft = 0; // payload bytes left in the current record
  private need = -1; // handshake message length (4 + body) once known

  constructor(private readonly budget: PeekBudget) {}

  /** Bytes this collector holds. */
  get heldBytes(): number {
    return this.buf === null ? 0 : this.buf.length;
  }

  /**
   * Stores buf[off, off+len) at stream offset `streamOff`, then consumes the
   * stream up to `contiguous` (bytes [0, contiguous) all seen). Writes
   * `out.sni` / `out.alpn` when the ClientHello is complete.
   */
  feed(b: Uint8Array, off: number, len: number, streamOff: number, contiguous: number,
    out: { sni: string | null; alpn: string | null }): void {
    if (this.done) return;
    if (streamOff < this.scan) {
      // Already consumed (and possibly overwritten by handshake bytes moved down): skip it.
      const cut = Math.min(this.scan - streamOff, len);
      off += cut;
      len -= cut;
      streamOff += cut;
    }
    if (streamOff < TLS_PEEK_MAX_BYTES && len > 0) {
      const n = Math.min(len, TLS_PEEK_MAX_BYTES - streamOff);
      if (!this.reserve(streamOff + n)) return;
      this.buf!.set(b.subarray(off, off + n), streamOff);
      this.budget.bytesCopied += n;
    }
    this.advance(Math.min(contiguous, TLS_PEEK_MAX_BYTES), out);
    if (!this.done && contiguous >= TLS_PEEK_MAX_BYTES) this.finish();
  }

  /** Stops collecting and returns the buffer to the budget. */
  finish(): void {
    this.done = true;
    if (this.buf !== null) {
      this.budget.give(this.buf.length);
      this.buf = null;
    }
  }

  private reserve(size: number): boolean {
    const cur = this.buf === null ? 0 : this.buf.length;
    if (size <= cur) return true;
    let cap = Math.max(cur * 2, FIRST_ALLOC);
    while (cap < size) cap *= 2;
    if (cap > TLS_PEEK_MAX_BYTES) cap = TLS_PEEK_MAX_BYTES;
    if (!this.budget.take(cap - cur)) { this.finish(); return false; }
    const nb = new Uint8Array(cap);
    if (this.buf !== null) {
      nb.set(this.buf);
      this.budget.bytesCopied += cur;
    }
    this.buf = nb;
    return true;
  }

  /** Consumes raw stream bytes [scan, limit): record headers checked, handshake bytes moved to buf[hsLen…). */
  private advance(limit: number, out: { sni: string | null; alpn: string | null }): void {
    const b = this.buf;
    if (b === null) return;
    while (!this.done) {
      if (this.recLeft === 0) {
        if (this.scan + 5 > limit) return;
        const p = this.scan;
        // RFC 8446 §5.1: ContentType handshake (22), legacy_record_version 3.x, length.
        const rlen = (b[p + 3]! << 8) | b[p + 4]!;
        if (b[p] !== 22 || b[p + 1] !== 3 || rlen === 0 || rlen > MAX_RECORD) { this.finish(); return; }
        this.recLeft = rlen;
        this.scan = p + 5;
      }
      const n = Math.min(this.recLeft, limit - this.scan);
      if (n <= 0) return;
      b.copyWithin(this.hsLen, this.scan, this.scan + n);
      this.budget.bytesCopied += n;
      this.hsLen += n;
      this.scan += n;
      this.recLeft -= n;
      if (this.need < 0 && this.hsLen >= 4) {
        if (b[0] !== 1) { this.finish(); return; } // HandshakeType client_hello
        this.need = 4 + ((b[1]! << 16) | (b[2]! << 8) | b[3]!);
        if (this.need > TLS_PEEK_MAX_BYTES) { this.finish(); return; }
      }
      if (this.need >= 0 && this.hsLen >= this.need) {
        this.budget.bytesParsed += this.need;
        parseClientHelloMessage(b, this.need, out);
        this.finish();
      }
    }
  }
}

/**
 * Parses one complete ClientHello handshake message m[0, need) (type, 24-bit
 * length, body; RFC 8446 §4.1.2) and sets `out.sni` / `out.alpn` from its
 * extensions. Reads only; never throws.
 *
 * @returns 1 when parsed, -1 when malformed.
 */
export function parseClientHelloMessage(m: Uint8Array, need: number, out: { sni: string | null; alpn: string | null }): number {
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
