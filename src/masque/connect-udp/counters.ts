/**
 * Drop reasons and counters of CONNECT-UDP sessions (RFC 9298), typed arrays
 * indexed by reason code.
 */
import { CONTEXT_MALFORMED, contextPayloadOffset } from '../connect-ip/datagram.js';
import { dropNames } from '../drop-names.js';

/** Why a CONNECT-UDP session did not pass a payload on. Indexes {@link CONNECT_UDP_DROP_NAMES}. */
export const ConnectUdpDrop = {
  NONE: 0,
  /** Caller left fewer than MASQUE_HEADROOM bytes before the payload. */
  NO_HEADROOM: 1,
  /** Session closed (or not yet open on the client side). */
  CLOSED: 2,
  /** Payload does not fit one datagram on the path now. */
  TOO_BIG: 3,
  /** The HTTP/3 layer refused the datagram (queue full). */
  SEND_FAILED: 4,
  /** Context ID other than 0 (RFC 9298 §5: dropped). */
  UNKNOWN_CONTEXT: 5,
  /** Datagram too short to hold a context ID. */
  MALFORMED_DATAGRAM: 6,
  /** Pre-accept buffer full (RFC 9298 §5: bounded buffering before the request is accepted). */
  PREACCEPT_FULL: 7,
  /** The UDP socket reported an error for a send. */
  SOCKET_ERROR: 8,
  /** The target answered with ICMP port unreachable (ECONNREFUSED on the connected socket). */
  TARGET_REFUSED: 9,
} as const;

/** Snake-case names of {@link ConnectUdpDrop} codes (metric `reason` label values), from the code table's keys. */
export const CONNECT_UDP_DROP_NAMES: readonly string[] = dropNames(ConnectUdpDrop);

/** Number of {@link ConnectUdpDrop} codes. */
export const CONNECT_UDP_DROP_COUNT = CONNECT_UDP_DROP_NAMES.length;

/** Per-session counters; written only by the session. */
export class ConnectUdpCounters {
  readonly drops = new Float64Array(CONNECT_UDP_DROP_COUNT);
  /** Payloads (and bytes) towards the target / the client side's peer. */
  datagramsSent = 0;
  bytesSent = 0;
  /** Payloads (and bytes) received and passed on. */
  datagramsReceived = 0;
  bytesReceived = 0;
  /** Capsules of unknown type skipped (RFC 9297 §3.2). */
  capsulesSkipped = 0;

  /** Drops as name → count (allocates; status output and tests). */
  dropsByName(): Record<string, number> {
    const o: Record<string, number> = {};
    for (let i = 1; i < CONNECT_UDP_DROP_COUNT; i++) if (this.drops[i]! > 0) o[CONNECT_UDP_DROP_NAMES[i]!] = this.drops[i]!;
    return o;
  }
}

/** RFC 9298 §5: largest UDP payload a datagram may carry (65,535 − 8-byte UDP header); larger → abort the stream. */
export const MAX_UDP_PAYLOAD = 65_527;

/**
 * The receive preamble both CONNECT-UDP sessions share: an HTTP Datagram on a
 * closed session, without a context ID, or with one other than 0 (RFC 9298
 * §5) is counted as a drop. Returns the payload offset, or -1 when dropped.
 * Allocation-free.
 */
export function udpPayloadOffset(c: ConnectUdpCounters, closed: boolean, buf: Uint8Array, offset: number, length: number): number {
  if (closed) {
    c.drops[ConnectUdpDrop.CLOSED]++;
    return -1;
  }
  const p = contextPayloadOffset(buf, offset, length);
  if (p < 0) {
    c.drops[p === CONTEXT_MALFORMED ? ConnectUdpDrop.MALFORMED_DATAGRAM : ConnectUdpDrop.UNKNOWN_CONTEXT]++;
    return -1;
  }
  return p;
}
