/**
 * The RFC 9484 §7.2 check that the tunnel carries 1280-byte IPv6 packets: a
 * 1280-byte ICMPv6 echo to ff02::1, retried, and the answer to the peer's
 * own probes. Sans-IO: the owner sends what it is handed and drives
 * {@link Ipv6Probe.nextTimeoutMs} / {@link Ipv6Probe.onTimeout}.
 */
import { compareBytes } from '../../packet/ip-address.js';
import { ALL_NODES_6, ICMP6_ECHO_REPLY, ICMP6_ECHO_REQUEST, writeEcho6Reply, writeEcho6Request } from '../../packet/icmp-echo.js';
import { MASQUE_HEADROOM } from './datagram.js';

/** RFC 8200 §5: minimum IPv6 link MTU the tunnel must carry (RFC 9484 §7.2). */
export const IPV6_MIN_MTU = 1280;
/** 1232 bytes of echo data make a 1280-byte IPv6 packet (40 IPv6 + 8 ICMPv6). */
const PROBE_DATA_BYTES = IPV6_MIN_MTU - 48;
const PROBE_TRIES = 3;

/** Sends an IP packet at buf[off, off+len) (off ≥ MASQUE_HEADROOM) through the tunnel; returns 0 or a drop code. */
export type PacketSend = (buf: Uint8Array, off: number, len: number) => number;

/** What a link-local ICMPv6 packet was to the probe. */
export const LinkIcmp = {
  /** Not ours: an ordinary packet. */
  NOT_LINK: 0,
  /** An echo request we answered, or a stray reply: consumed. */
  CONSUMED: 1,
  /** The reply to our outstanding probe: IPv6 is verified. */
  VERIFIED: 2,
} as const;

/** Where probes are built: one per process (sessions run on one thread; `send` copies). */
const probeScratch = new Uint8Array(MASQUE_HEADROOM + IPV6_MIN_MTU);
/** Where echo replies are built, as the probes; grows to the largest request answered (rare: link-local probes only). */
let echoScratch = new Uint8Array(0);

/**
 * Is buf[off, off+len) link-scoped ICMPv6 for the tunnel link itself: an
 * ICMPv6 packet (no extension headers) of at least 48 bytes to ff02::1 or to
 * `linkLocal`? Those go to {@link Ipv6Probe.handle} before any check; the
 * native checks (`src/native/judge.c`) hand them back to TypeScript the same way.
 */
export function isLinkIcmp6(buf: Uint8Array, off: number, len: number, linkLocal: Uint8Array): boolean {
  if (len < 48 || buf[off]! >> 4 !== 6 || buf[off + 6] !== 58) return false;
  return compareBytes(buf, off + 24, ALL_NODES_6, 0, 16) === 0 || compareBytes(buf, off + 24, linkLocal, 0, 16) === 0;
}

/**
 * One session's §7.2 probe state and link responder. `send` returns a drop
 * code; `tooBig` is the code meaning the probe does not fit the path.
 */
export class Ipv6Probe {
  private id = 0;
  private tries = 0;
  private deadlineMs = -1;

  constructor(
    /** Our link-local address on the tunnel link (16 bytes): source of probes and replies. */
    readonly linkLocal: Uint8Array,
    private readonly send: PacketSend,
    private readonly tooBig: number,
    private readonly timeoutMs: number,
  ) {}

  /** Earliest time (ms, the caller's clock) {@link onTimeout} is needed, or -1. */
  nextTimeoutMs(): number {
    return this.deadlineMs;
  }

  /** Stops waiting for a reply. */
  cancel(): void {
    this.deadlineMs = -1;
  }

  /** Sends a fresh probe. Returns null, or why IPv6 must be torn down (the probe does not fit the path). */
  start(nowMs: number): string | null {
    this.tries = 0;
    this.id = (this.id + 1) & 0xffff;
    return this.sendProbe(nowMs);
  }

  /** Retries an unanswered probe, or after 3 tries returns why IPv6 must be torn down; null otherwise. */
  onTimeout(nowMs: number): string | null {
    if (this.deadlineMs < 0 || nowMs < this.deadlineMs) return null;
    if (this.tries < PROBE_TRIES) return this.sendProbe(nowMs);
    this.deadlineMs = -1;
    return `no reply to ${PROBE_TRIES} 1280-byte IPv6 probes`;
  }

  private sendProbe(nowMs: number): string | null {
    const o = MASQUE_HEADROOM;
    const n = writeEcho6Request(probeScratch, o, this.linkLocal, ALL_NODES_6, this.id, ++this.tries, PROBE_DATA_BYTES);
    if (this.send(probeScratch, o, n) === this.tooBig) {
      this.deadlineMs = -1;
      return 'a 1280-byte IPv6 probe does not fit the path';
    }
    this.deadlineMs = nowMs + this.timeoutMs;
    return null;
  }

  /**
   * Link-local ICMPv6 on the tunnel link (RFC 9484 §7.2: answer link-local
   * multicast): answers an echo request to ff02::1 or to our link-local
   * address, and recognises the reply to our own probe. `onReplySent` /
   * `onReplyReceived` count. Returns a {@link LinkIcmp} code. The IPv6
   * packet at buf[off, off+len) has been checked well-formed by the caller.
   */
  handle(buf: Uint8Array, off: number, len: number, counters: { echoRepliesSent: number; echoRepliesReceived: number }): number {
    if (!isLinkIcmp6(buf, off, len, this.linkLocal)) return LinkIcmp.NOT_LINK;
    const dstUs = compareBytes(buf, off + 24, this.linkLocal, 0, 16) === 0;
    const type = buf[off + 40];
    if (type === ICMP6_ECHO_REPLY && dstUs) {
      counters.echoRepliesReceived++;
      if (this.deadlineMs >= 0 && ((buf[off + 44]! << 8) | buf[off + 45]!) === this.id && len >= IPV6_MIN_MTU) {
        this.deadlineMs = -1;
        return LinkIcmp.VERIFIED;
      }
      return LinkIcmp.CONSUMED;
    }
    if (type !== ICMP6_ECHO_REQUEST) return LinkIcmp.NOT_LINK;
    const o = MASQUE_HEADROOM;
    if (echoScratch.length < o + len) echoScratch = new Uint8Array(o + len);
    const n = writeEcho6Reply(buf, off, len, this.linkLocal, echoScratch, o);
    if (n === 0) return LinkIcmp.NOT_LINK;
    counters.echoRepliesSent++;
    this.send(echoScratch, o, n);
    return LinkIcmp.CONSUMED;
  }
}
