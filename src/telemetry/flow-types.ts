/**
 * What the daemons tell telemetry about a flow: who it is at open, how its
 * counters move, and how it ended. Until src/inspect's FlowRecord is final,
 * daemons adapt to these shapes (see docs/telemetry.md).
 */

// IANA protocol numbers telemetry names; others are logged as numbers and have no flow metrics.
/** ICMP (IPv4). */
export const IPPROTO_ICMP = 1;
/** TCP: tcp_* metrics. */
export const IPPROTO_TCP = 6;
/** UDP: udp_* metrics. */
export const IPPROTO_UDP = 17;
/** ICMPv6. */
export const IPPROTO_ICMPV6 = 58;

/**
 * Direction of a flow relative to the reporter: `outbound` when the
 * initiator is on the reporter's local side (it entered the tunnel here),
 * `inbound` when it came out of the tunnel here.
 */
export type FlowDirection = 'outbound' | 'inbound';

/** A flow as seen when it is first observed. Addresses are as on the wire (no NAT in site-to-site). */
export interface FlowOpenInfo {
  /** IP protocol number (6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6). */
  readonly protocol: number;
  /** Initiator (source) address and port; ports are 0 for ICMP. */
  readonly srcAddr: string;
  readonly srcPort: number;
  /** Responder (destination) address and port. */
  readonly dstAddr: string;
  readonly dstPort: number;
  /** Authenticated identity of the tunnel peer (SPIFFE URI or token identity); "" if none. */
  readonly peerIdentity: string;
  readonly direction: FlowDirection;
  /** Wall-clock time of the first packet, epoch milliseconds. */
  readonly firstSeenMs: number;
  /**
   * TCP only: the initiator's initial sequence number from the SYN. Both ends
   * see the same value, which makes the flow join key exact across ends.
   */
  readonly initiatorIsn?: number;
  /**
   * The cross-end flow ID (src/inspect/flow-id.ts): equal in the agent's and
   * the gateway's records of one flow. Logged as `flow_join_id`.
   */
  readonly joinId?: string;
}

/**
 * Cumulative counters of one flow. `sent` is initiator → responder,
 * `received` is responder → initiator, at both ends, so the two ends'
 * numbers compare directly. Bytes are transport payload bytes.
 */
export interface FlowTotals {
  sentBytes: number;
  receivedBytes: number;
  sentPackets: number;
  receivedPackets: number;
  /** TCP segments seen again (retransmissions), both directions. */
  retransmits: number;
}

/** How a flow ended, with its final totals. */
export interface FlowCloseInfo extends FlowTotals {
  /**
   * Short snake_case reason, e.g. `fin`, `rst`, `idle_timeout`,
   * `handshake_timeout`, `evicted`, `shutdown`. At most 32 distinct values
   * become metric labels; more map to `other`.
   */
  readonly reason: string;
  /** Wall-clock time of the last packet (or of the close decision), epoch milliseconds. */
  readonly lastSeenMs: number;
  /** TCP: true when the handshake never completed (also counted in connections_failed). */
  readonly failed?: boolean;
  /** TLS SNI seen in the ClientHello (TCP, or QUIC's inside the tunnel), if any. */
  readonly sni?: string;
  /** ALPN protocols offered in the ClientHello, comma-joined, if any. */
  readonly alpn?: string;
  /** TCP: RTT this end ↔ initiator (min/smoothed/max of its samples). */
  readonly rttToClient?: RttSummary;
  /** TCP: RTT this end ↔ responder. */
  readonly rttToServer?: RttSummary;
  /**
   * The tunnel segment: smoothed RTT of the QUIC connection that carried the
   * flow, sampled once a second while it moved and at its close. Telemetry
   * fills it from the flow's handle when the caller leaves it out.
   */
  readonly tunnelRtt?: RttSummary;
  /** QUIC flows: version of the client's Initial ("v1", "v2", hex). */
  readonly quicVersion?: string;
  /** QUIC: first client Initial → first server Handshake packet, ms. */
  readonly quicHandshakeRttMs?: number;
  /** HTTP/1: responses by status class, index 0 = 1xx … 4 = 5xx. */
  readonly httpStatusClasses?: readonly number[];
  /** HTTP/1: first request byte → first response byte, ms. */
  readonly httpFirstByteMs?: number;
}

/** An RTT summary of one flow and segment, ms. */
export interface RttSummary {
  readonly minMs: number;
  readonly smoothedMs: number;
  readonly maxMs: number;
  readonly samples: number;
}
