/**
 * Drop reasons and counters of CONNECT-IP sessions: every packet a session
 * does not pass on is counted under one reason (typed arrays, no label lookups).
 */
import { dropNames } from '../drop-names.js';

/** Why a CONNECT-IP session did not pass a packet on. Indexes {@link CONNECT_IP_DROP_NAMES}. 0 = not dropped. */
export const ConnectIpDrop = {
  NONE: 0,
  /** Caller left fewer than CONNECT_IP_HEADROOM bytes before the packet. */
  NO_HEADROOM: 1,
  /** Session closed. */
  CLOSED: 2,
  /** Larger than the datagram path allows now (answered with Packet Too Big where possible, RFC 9484 §7.2.1). */
  TOO_BIG: 3,
  /** The HTTP/3 layer refused the datagram (queue full or stream gone). */
  SEND_FAILED: 4,
  /** HTTP Datagram with a context ID we never registered (RFC 9484 §6: drop). */
  UNKNOWN_CONTEXT: 5,
  /** HTTP Datagram too short to hold a context ID. */
  MALFORMED_DATAGRAM: 6,
  /** Payload of context 0 is not a well-formed IPv4/IPv6 packet. */
  MALFORMED_IP: 7,
  /** IPv6 switched off because the path cannot carry 1280-byte packets (RFC 9484 §7.2). */
  IPV6_DISABLED: 8,
  /** Source not among the addresses assigned or routes advertised by the client (RFC 9484 §11, BCP 38). */
  SPOOFED_SOURCE: 9,
  /** Destination or protocol outside the request scope (RFC 9484 §4.6). */
  OUT_OF_SCOPE: 10,
  /** Refused by the gateway's per-identity policy. */
  POLICY: 11,
  /** TTL / hop limit would reach zero (RFC 9484 §7.2; answered with Time Exceeded). */
  TTL_EXPIRED: 12,
  /** Link-local source or destination: never forwarded beyond the tunnel (RFC 9484 §7.2). */
  LINK_LOCAL: 13,
  /** IPv4 packet without DF too big for the tunnel (we do not fragment). */
  TOO_BIG_NO_DF: 14,
  /** Client: a packet from the gateway to an address that is neither assigned to us nor inside our advertised prefixes (#12 item 8). */
  DESTINATION_NOT_OURS: 15,
  /** Client: a packet from the gateway whose source is outside the routes the gateway advertised to us (#12 item 8). */
  SOURCE_NOT_ROUTED: 16,
  /** Client: an ICMP error from the gateway not addressed to the source of the packet it quotes, or quoting nothing usable. */
  MALFORMED_ICMP_ERROR: 17,
} as const;

/** Snake-case names of {@link ConnectIpDrop} codes (metric `reason` label values), from the code table's keys. */
export const CONNECT_IP_DROP_NAMES: readonly string[] = dropNames(ConnectIpDrop);

/** Number of {@link ConnectIpDrop} codes. */
export const CONNECT_IP_DROP_COUNT = CONNECT_IP_DROP_NAMES.length;

/** Per-session traffic counters. Read by telemetry; written only by the session. */
export class ConnectIpCounters {
  /** Drops indexed by {@link ConnectIpDrop}. */
  readonly drops = new Float64Array(CONNECT_IP_DROP_COUNT);
  /** IP packets (and bytes) sent to the peer in datagrams. */
  packetsSent = 0;
  bytesSent = 0;
  /** IP packets (and bytes) received from the peer and passed on. */
  packetsReceived = 0;
  bytesReceived = 0;
  /** ICMP errors generated (to the peer or to the local network). */
  icmpSent = 0;
  /** ICMP errors not generated (RFC 4443 §2.4(e) / RFC 1812 suppression, or rate limit). */
  icmpSuppressed = 0;
  /** Capsules of unknown type skipped (RFC 9297 §3.2). */
  capsulesSkipped = 0;
  /** ICMPv6 echo replies sent for link-local echo requests (RFC 9484 §7.2 probes). */
  echoRepliesSent = 0;
  /** ICMPv6 echo replies received on the tunnel link (answers to our probes, or stray ones), consumed here. */
  echoRepliesReceived = 0;

  /** Drops as a name → count object (allocates; for status output and tests). */
  dropsByName(): Record<string, number> {
    const o: Record<string, number> = {};
    for (let i = 1; i < CONNECT_IP_DROP_COUNT; i++) if (this.drops[i]! > 0) o[CONNECT_IP_DROP_NAMES[i]!] = this.drops[i]!;
    return o;
  }
}
