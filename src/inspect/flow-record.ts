/**
 * The per-flow record the tracker emits exactly once when a flow ends, and its
 * JSON-lines form (`mtun inspect --json`, flow logs).
 */

/** Why a flow's record was emitted. "open": the capture (or process) ended first. */
export type CloseReason = 'fin' | 'rst' | 'idle_timeout' | 'evicted' | 'open';

/** Transport of a flow. ICMP and ICMPv6 are both "icmp". */
export type FlowProto = 'tcp' | 'udp' | 'icmp';

/**
 * One finished flow. The initiator (SYN sender, or first sender when picked
 * up mid-stream) is `src`. For ICMP echo, `srcPort` is the identifier and
 * `dstPort` 0; for other ICMP messages they are type and code.
 * Field order is the JSON field order.
 */
export interface FlowRecord {
  proto: FlowProto;
  src: string;
  srcPort: number;
  dst: string;
  dstPort: number;
  /** The three-way handshake was seen. */
  opened: boolean;
  /** Picked up after its start (no SYN seen). */
  midstream: boolean;
  closeReason: CloseReason;
  /** Initiator → responder payload bytes, each sequence byte counted once. */
  bytesSent: number;
  /** Responder → initiator payload bytes, each sequence byte counted once. */
  bytesReceived: number;
  packetsSent: number;
  packetsReceived: number;
  /** Segments carrying already-seen bytes, both directions. */
  retransmits: number;
  /** SYN → ACK completing the handshake, at the observation point (from the last SYN if it was retransmitted); null when not seen. */
  handshakeRttMs: number | null;
  sni: string | null;
  alpn: string | null;
  httpRequests: number;
  /** ISO 8601. */
  firstSeen: string;
  /** ISO 8601. */
  lastSeen: string;
}

/** Details that do not belong in the JSON line but that telemetry may want. */
export interface FlowMeta {
  /** Creation order within the tracker (0, 1, 2, …): sort by it for "order of first packet". */
  ordinal: number;
  /** Tunnel direction (as passed to observe) of the flow's first packet. */
  tunnelDirection: number;
  /** Segments that arrived above the next expected sequence number, both directions. */
  outOfOrder: number;
  /** RSTs seen but not obeyed (out of window). */
  rstIgnored: number;
  /** SYN → SYN-ACK leg, ms, or null. */
  synAckLegMs: number | null;
  /** SYN-ACK → ACK leg, ms, or null. */
  ackLegMs: number | null;
  /** HTTP Host of the first request, or null. */
  httpHost: string | null;
  firstSeenMs: number;
  lastSeenMs: number;
}

/** Receives each finished flow exactly once. Must not call back into the tracker. */
export type FlowSink = (record: FlowRecord, meta: FlowMeta) => void;

/** The JSON line for a record (no trailing newline), fields in the documented order. */
export function flowRecordJson(r: FlowRecord): string {
  return JSON.stringify({
    proto: r.proto, src: r.src, srcPort: r.srcPort, dst: r.dst, dstPort: r.dstPort,
    opened: r.opened, midstream: r.midstream, closeReason: r.closeReason,
    bytesSent: r.bytesSent, bytesReceived: r.bytesReceived,
    packetsSent: r.packetsSent, packetsReceived: r.packetsReceived, retransmits: r.retransmits,
    handshakeRttMs: r.handshakeRttMs, sni: r.sni, alpn: r.alpn, httpRequests: r.httpRequests,
    firstSeen: r.firstSeen, lastSeen: r.lastSeen,
  });
}
