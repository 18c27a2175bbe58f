/**
 * Per-flow peek at a QUIC handshake inside the tunnel: decrypts the
 * client's Initial packets (quic-initial.ts), reassembles the CRYPTO stream
 * across frames and packets (RFC 9000 §19.6: frames may arrive in any order
 * and overlap), parses the ClientHello (SNI, ALPN) and times Initial → first
 * server Handshake packet. Bounded like the TLS peek: buffers are charged to
 * the tracker's {@link PeekBudget}, at most {@link QUIC_PEEK_MAX_INITIALS}
 * client Initials are decrypted per flow, decryptions across all flows are
 * rate-limited, and a peek gives up after {@link QUIC_PEEK_TIMEOUT_MS};
 * every give-up is counted in {@link QuicCounter}.
 */
import { clientInitialKeys, decryptInitial, type InitialKeys, LongHeader, PacketType, parseLongHeader, versionName, walkInitialFrames } from './quic-initial.js';
import { parseClientHelloMessage, type PeekBudget, TLS_PEEK_MAX_BYTES } from './tls-client-hello.js';
import { TokenBucket } from '../lib/token-bucket.js';

/** Client Initial packets decrypted per flow at most. */
export const QUIC_PEEK_MAX_INITIALS = 8;
/** A peek not finished this long after the first client Initial gives up (counted as a timeout). */
export const QUIC_PEEK_TIMEOUT_MS = 3000;
/** Decryptions per second across all flows (token bucket), and the burst. */
export const QUIC_DECRYPTS_PER_SEC = 2000;
const DECRYPT_BURST = 500;
/** Disjoint CRYPTO ranges kept while the stream has holes. */
const MAX_RANGES = 16;
/** RFC 9000 §14.1: a client's Initial datagram is at least 1200 bytes. */
export const QUIC_MIN_INITIAL_DATAGRAM = 1200;

/** Indexes into {@link QuicShared.counters}. */
export const QuicCounter = {
  /** Flows whose first datagram was a client Initial of a known version (peeks started). */
  FLOWS: 0,
  /** Client Initial packets decrypted and authenticated. */
  DECRYPTED: 1,
  /** Client Initial packets that failed authentication (not QUIC after all, or corrupted). */
  DECRYPT_FAILED: 2,
  /** ClientHellos parsed. */
  HELLOS: 3,
  /** Handshakes seen: the server's first Handshake packet. */
  HANDSHAKES: 4,
  /** Peeks given up at {@link QUIC_PEEK_TIMEOUT_MS}. */
  TIMEOUTS: 5,
  /** Peeks given up for a bound: per-flow Initial limit, budget, rate limit, range list, malformed frames. */
  OVERFLOW: 6,
} as const;
/** Label for each {@link QuicCounter} index. */
export const QUIC_COUNTER_NAMES: readonly string[] = ['flows', 'decrypted', 'decrypt_failed', 'hellos', 'handshakes', 'timeouts', 'overflow'];

/** State all QUIC peeks of one tracker share: the byte budget, a plaintext scratch buffer, counters, the rate limit. */
export class QuicShared {
  readonly counters = new Float64Array(QUIC_COUNTER_NAMES.length);
  /** Plaintext of the packet being decrypted; valid only during one feed. */
  readonly scratch = new Uint8Array(65536);
  readonly hdr = new LongHeader();
  private readonly decrypts = new TokenBucket(QUIC_DECRYPTS_PER_SEC, DECRYPT_BURST, 0);

  constructor(readonly budget: PeekBudget) {}

  /** Takes one decryption token at `now`; false when the rate limit is spent. */
  takeDecrypt(now: number): boolean {
    return this.decrypts.take(now);
  }
}

/**
 * True when a flow's first datagram payload b[off, off+len) looks like a
 * client Initial worth peeking at: long header, version 1 or 2, type
 * Initial, in a datagram of at least 1200 bytes (RFC 9000 §14.1). Cheap.
 */
export function looksLikeClientInitial(b: Uint8Array, off: number, len: number): boolean {
  if (len < QUIC_MIN_INITIAL_DATAGRAM) return false;
  const b0 = b[off]!;
  if ((b0 & 0xc0) !== 0xc0) return false;
  const v = ((b[off + 1]! << 24) | (b[off + 2]! << 16) | (b[off + 3]! << 8) | b[off + 4]!) >>> 0;
  const bits = (b0 >> 4) & 3;
  return (v === 1 && bits === 0) || (v === 0x6b3343cf && bits === 1);
}

/**
 * One QUIC flow's peek. Create it on the flow's first (client) datagram,
 * feed client datagrams with {@link feedClient} and server datagrams with
 * {@link feedServer} while {@link wantsData}; call {@link release} when the
 * flow ends. The crypto buffer is charged to the shared budget and returned
 * as soon as the ClientHello is parsed or given up.
 */
export class QuicPeek {
  sni: string | null = null;
  alpn: string | null = null;
  /** "v1" / "v2" from the first client Initial. */
  versionName: string | null = null;
  /** First client Initial → first server Handshake packet, ms; NaN until seen. */
  handshakeRttMs = NaN;

  private keys: InitialKeys | null = null;
  private helloDone = false;
  private gaveUp = false;
  private initials = 0;
  private firstMs = NaN;
  private buf: Uint8Array | null = null;
  /** Received CRYPTO ranges as [start, end) pairs, sorted and disjoint. */
  private readonly ranges: number[] = [];
  private need = -1;

  constructor(private readonly shared: QuicShared) {}

  /** True while more datagrams could change the result. */
  get wantsData(): boolean {
    return !this.gaveUp && (!this.helloDone || this.handshakeRttMs !== this.handshakeRttMs);
  }

  /** Returns the crypto buffer to the budget. */
  release(): void {
    if (this.buf !== null) {
      this.shared.budget.give(this.buf.length);
      this.buf = null;
    }
  }

  /** Client → server datagram b[off, off+len) at `now`. Never throws. */
  feedClient(b: Uint8Array, off: number, len: number, now: number): void {
    if (this.firstMs !== this.firstMs) {
      this.firstMs = now;
      this.shared.counters[QuicCounter.FLOWS]! += 1;
    }
    if (this.timedOut(now) || this.helloDone) return;
    const h = this.shared.hdr;
    let p = off;
    const end = off + len;
    // RFC 9000 §12.2: coalesced packets; an Initial is first when present.
    while (p < end && !this.helloDone && !this.gaveUp && parseLongHeader(b, p, end, h)) {
      if (h.type === PacketType.INITIAL) this.initial(b, p, h, now);
      p = h.end;
    }
  }

  /** Server → client datagram b[off, off+len) at `now`: stops the handshake clock at the first Handshake packet. */
  feedServer(b: Uint8Array, off: number, len: number, now: number): void {
    if (this.timedOut(now) || this.handshakeRttMs === this.handshakeRttMs) return;
    const h = this.shared.hdr;
    let p = off;
    const end = off + len;
    while (p < end && parseLongHeader(b, p, end, h)) {
      if (h.type === PacketType.HANDSHAKE) {
        this.handshakeRttMs = now - this.firstMs;
        this.shared.counters[QuicCounter.HANDSHAKES]! += 1;
        return;
      }
      if (h.type === PacketType.RETRY) return;
      p = h.end;
    }
  }

  private timedOut(now: number): boolean {
    if (this.gaveUp) return true;
    if (now - this.firstMs <= QUIC_PEEK_TIMEOUT_MS) return false;
    this.shared.counters[QuicCounter.TIMEOUTS]! += 1;
    this.giveUp();
    return true;
  }

  private giveUp(): void {
    this.gaveUp = true;
    this.release();
  }

  private overflow(): void {
    this.shared.counters[QuicCounter.OVERFLOW]! += 1;
    this.giveUp();
  }

  private initial(b: Uint8Array, start: number, h: LongHeader, now: number): void {
    const sh = this.shared;
    if (this.initials >= QUIC_PEEK_MAX_INITIALS || !sh.takeDecrypt(now)) { this.overflow(); return; }
    this.initials++;
    if (this.keys === null) {
      // RFC 9001 §5.2: keys come from the DCID of the client's first Initial; later ones reuse them.
      this.keys = clientInitialKeys(h.version, b, h.dcidOff, h.dcidLen);
      this.versionName = versionName(h.version);
    }
    const n = decryptInitial(b, start, h, this.keys, sh.scratch);
    if (n < 0) {
      sh.counters[QuicCounter.DECRYPT_FAILED]! += 1;
      if (this.initials === 1) this.giveUp(); // the first one must authenticate, or this is not QUIC
      return;
    }
    sh.counters[QuicCounter.DECRYPTED]! += 1;
    if (!walkInitialFrames(sh.scratch, n, this)) { this.overflow(); return; }
    const have = this.ranges.length >= 2 && this.ranges[0] === 0 ? this.ranges[1]! : 0;
    const bf = this.buf;
    if (bf !== null && this.need < 0 && have >= 4) {
      if (bf[0] !== 1) { this.overflow(); return; } // HandshakeType client_hello (RFC 8446 §4)
      this.need = 4 + ((bf[1]! << 16) | (bf[2]! << 8) | bf[3]!);
      if (this.need > TLS_PEEK_MAX_BYTES) { this.overflow(); return; }
    }
    if (bf !== null && this.need > 0 && have >= this.need) {
      sh.budget.bytesParsed += this.need;
      parseClientHelloMessage(bf, this.need, this);
      sh.counters[QuicCounter.HELLOS]! += 1;
      this.helloDone = true;
      this.release();
    }
  }

  /** CRYPTO frame sink (walkInitialFrames): stores stream bytes [offset, offset+len) and records the range. */
  crypto(offset: number, data: Uint8Array, dOff: number, len: number): void {
    if (this.gaveUp || len === 0) return;
    const endOff = offset + len;
    if (endOff > TLS_PEEK_MAX_BYTES) { this.overflow(); return; }
    if (!this.reserve(endOff)) return;
    this.buf!.set(data.subarray(dOff, dOff + len), offset);
    this.shared.budget.bytesCopied += len;
    if (!addRange(this.ranges, offset, endOff)) this.overflow();
  }

  private reserve(size: number): boolean {
    const cur = this.buf === null ? 0 : this.buf.length;
    if (size <= cur) return true;
    let cap = Math.max(cur * 2, 2048);
    while (cap < size) cap *= 2;
    if (cap > TLS_PEEK_MAX_BYTES) cap = TLS_PEEK_MAX_BYTES;
    if (!this.shared.budget.take(cap - cur)) { this.overflow(); return false; }
    const nb = new Uint8Array(cap);
    if (this.buf !== null) nb.set(this.buf);
    this.buf = nb;
    return true;
  }
}

/**
 * Merges [s, e) into the sorted disjoint range list r (flat pairs).
 * @returns false when the list would pass MAX_RANGES.
 */
export function addRange(r: number[], s: number, e: number): boolean {
  let i = 0;
  while (i < r.length && r[i + 1]! < s) i += 2;
  let j = i;
  let ns = s;
  let ne = e;
  while (j < r.length && r[j]! <= e) {
    if (r[j]! < ns) ns = r[j]!;
    if (r[j + 1]! > ne) ne = r[j + 1]!;
    j += 2;
  }
  if (j === i && r.length >= MAX_RANGES * 2) return false;
  r.splice(i, j - i, ns, ne);
  return true;
}
