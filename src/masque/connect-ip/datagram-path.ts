/**
 * The CONNECT-IP datagram send path of one session: context ID written in
 * place (RFC 9484 §6), a cached path size re-read every 256 sends and on
 * refusal, and generated ICMP errors with a token-bucket rate limit
 * (RFC 4443 §2.4(f)) built into a buffer the caller reads.
 */
import type { TunnelStream } from '../../h3/tunnel-stream.js';
import { buildIcmpError, ICMP6_ERROR_MAX_BYTES } from '../../packet/icmp-error.js';
import { ConnectIpDrop, type ConnectIpCounters } from './counters.js';
import { MASQUE_HEADROOM } from './datagram.js';
import { TokenBucket } from '../../lib/token-bucket.js';

const MTU_REFRESH_EVERY = 256;
/**
 * Where every session builds its ICMP errors: one per process, not one per
 * session (1.3 kB each, issue #17). Sessions run on one thread and each
 * caller reads the error right after the send call that built it.
 */
const icmpScratch = new Uint8Array(MASQUE_HEADROOM + ICMP6_ERROR_MAX_BYTES);

/**
 * Owns no packet buffers ({@link icmpBuffer} is shared by all sessions); the stream is the
 * HTTP/3 layer's. `onSize` is told each fresh path size (the session applies
 * the RFC 9484 §7.2 IPv6 minimum there).
 */
export class DatagramPath {
  private cache = -1;
  private countdown = 0;
  /**
   * The last ICMP error built ({@link buildIcmp}): IP packet at
   * [MASQUE_HEADROOM, MASQUE_HEADROOM + {@link icmpLength}). Valid until the
   * next send call on any session (the buffer is shared); copy to keep.
   */
  get icmpBuffer(): Uint8Array {
    return icmpScratch;
  }
  /** Length of the ICMP error the last send call produced for its caller; 0 for none. */
  icmpLength = 0;
  /** ICMP errors this path may still generate (icmpPerSecond, a burst of as many). */
  private readonly icmpBucket: TokenBucket;

  constructor(
    private readonly stream: TunnelStream,
    private readonly counters: ConnectIpCounters,
    private readonly now: () => number,
    icmpPerSecond: number,
    private readonly onSize: (maxPacketSize: number) => void,
  ) {
    this.icmpBucket = new TokenBucket(icmpPerSecond, icmpPerSecond, now());
  }

  /** Largest IP packet one datagram carries now: the HTTP Datagram payload limit minus the 1-byte context ID; 0 when datagrams cannot be sent. */
  maxPacketSize(): number {
    const p = this.stream.maxDatagramPayload();
    return p > 1 ? p - 1 : 0;
  }

  /** Re-reads the path size, tells `onSize`, returns it. */
  refresh(): number {
    const m = this.maxPacketSize();
    this.cache = m;
    this.countdown = MTU_REFRESH_EVERY;
    this.onSize(m);
    return m;
  }

  /** The limit to put in a Packet Too Big after a TOO_BIG drop: the true current maximum (RFC 9484 §7.2.1). */
  get limit(): number {
    return this.cache;
  }

  /**
   * Sends buf[off, off+len) with context ID 0 written at buf[off-1] (the
   * HTTP/3 layer uses the 8 bytes before). Returns 0 or a counted
   * {@link ConnectIpDrop} code. Allocation-free.
   */
  send(buf: Uint8Array, off: number, len: number): number {
    const c = this.counters;
    if (off < MASQUE_HEADROOM) return this.drop(ConnectIpDrop.NO_HEADROOM);
    if (--this.countdown <= 0 || this.cache <= 0) this.refresh();
    if (len > this.cache) {
      this.refresh();
      // 0 = datagrams cannot be sent at all right now (not negotiated yet, or closing): not a size problem.
      if (this.cache === 0) return this.drop(ConnectIpDrop.SEND_FAILED);
      if (len > this.cache) return this.drop(ConnectIpDrop.TOO_BIG);
    }
    buf[off - 1] = 0; // RFC 9484 §6: Context ID 0 = full IP packet.
    if (!this.stream.sendDatagram(buf, off - 1, len + 1)) {
      // The path may have shrunk since we last looked.
      this.refresh();
      return this.drop(this.cache > 0 && len > this.cache ? ConnectIpDrop.TOO_BIG : ConnectIpDrop.SEND_FAILED);
    }
    c.packetsSent++;
    c.bytesSent += len;
    return 0;
  }

  /** Counts a drop; returns its code. */
  drop(reason: number): number {
    this.counters.drops[reason]++;
    return reason;
  }

  private allowed(): boolean {
    return this.icmpBucket.take(this.now());
  }

  /**
   * Builds an ICMP error of `kind` (IcmpError) about buf[off, off+len) from
   * `reporter` into {@link icmpBuffer}. Returns its length, or 0 when
   * suppressed (an error about an error, bad source, rate limit…), counted.
   */
  buildIcmp(kind: number, mtu: number, buf: Uint8Array, off: number, len: number, reporter: Uint8Array): number {
    if (!this.allowed()) {
      this.counters.icmpSuppressed++;
      return 0;
    }
    const b = icmpScratch;
    const n = buildIcmpError(kind, mtu, buf, off, len, reporter, 0, b, MASQUE_HEADROOM, b.length - MASQUE_HEADROOM);
    if (n <= 0) {
      this.counters.icmpSuppressed++;
      return 0;
    }
    this.counters.icmpSent++;
    return n;
  }

  /** Builds an ICMP error and sends it to the peer through the tunnel (a failed send counts as a drop, not as sent). */
  icmpToPeer(kind: number, buf: Uint8Array, off: number, len: number, reporter: Uint8Array): void {
    const n = this.buildIcmp(kind, 0, buf, off, len, reporter);
    if (n > 0 && this.send(icmpScratch, MASQUE_HEADROOM, n) !== 0) this.counters.icmpSent--;
  }
}
