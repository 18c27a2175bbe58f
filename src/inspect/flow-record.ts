/**
 * The per-flow record the tracker emits exactly once when a flow ends, and its
 * JSON-lines form (`mtun inspect --json`, flow logs), and how both are built
 * from a flow table slot.
 */
import { formatAddress, IPPROTO } from '../packet/ip-packet.js';
import { computeFlowId } from './flow-id.js';
import { F_ISN, F_MIDSTREAM, F_OPENED, type FlowTable } from './flow-table.js';
import type { L7Peek } from './l7-peek.js';
import type { QuicPeek } from './quic-peek.js';

/** Why a flow's record was emitted. "open": the capture (or process) ended first. */
export type CloseReason = 'fin' | 'rst' | 'idle_timeout' | 'evicted' | 'open';

/** Transport of a flow. ICMP and ICMPv6 are both "icmp". */
export type FlowProto = 'tcp' | 'udp' | 'icmp';

/**
 * RTT of one segment as sampled through a flow (rtt-sampler.ts): min,
 * smoothed (RFC 6298 §2, α = 1/8) and max, ms, and the number of samples.
 */
export interface RttStats {
  minMs: number;
  smoothedMs: number;
  maxMs: number;
  samples: number;
}

/** HTTP/1 responses seen at a connection's start, by status class (RFC 9110 §15). */
export interface HttpStatusClasses {
  '1xx': number;
  '2xx': number;
  '3xx': number;
  '4xx': number;
  '5xx': number;
}

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
  /** Cross-end join ID (flow-id.ts): the agent's and the gateway's records of one flow carry the same value. */
  flowId: string;
  /**
   * TCP: observation point → client (initiator) → observation point, from
   * the responder's data timed against the initiator's ACKs. At the end on
   * the client's side this is the client segment; at the other end it is
   * tunnel + client segment. Null without a sample.
   */
  rttToClient: RttStats | null;
  /** TCP: observation point → server (responder) → back; at the end on the server's side the server segment. */
  rttToServer: RttStats | null;
  /** QUIC flows: version of the client's Initial ("v1", "v2" or hex), else null. */
  quicVersion: string | null;
  /** QUIC: first client Initial → first server Handshake packet, ms, at the observation point; null when not seen. */
  quicHandshakeRttMs: number | null;
  /** HTTP/1 responses by status class. */
  httpStatus: HttpStatusClasses;
  /** HTTP/1: first request's first byte → first response byte, ms; null when not seen. */
  httpFirstByteMs: number | null;
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
    flowId: r.flowId, rttToClient: r.rttToClient, rttToServer: r.rttToServer,
    quicVersion: r.quicVersion, quicHandshakeRttMs: r.quicHandshakeRttMs,
    httpStatus: r.httpStatus, httpFirstByteMs: r.httpFirstByteMs,
  });
}

/** Round to µs; null when not measured (NaN) or negative. */
function ms(x: number): number | null {
  return Number.isFinite(x) && x >= 0 ? Math.round(x * 1000) / 1000 : null;
}

let isoSecond = NaN;
let isoPrefix = '';

/**
 * `new Date(ms).toISOString()`, with the date and time up to the second
 * formatted once per second: a flood closes thousands of flows within one.
 */
export function isoTime(ms: number): string {
  if (!(ms >= 0 && ms <= 253_402_300_799_999)) return new Date(ms).toISOString(); // outside years 1970–9999: as Date does (or throws)
  const whole = Math.floor(ms);
  const sec = Math.floor(whole / 1000);
  if (sec !== isoSecond) {
    isoSecond = sec;
    isoPrefix = new Date(sec * 1000).toISOString().slice(0, 20);
  }
  const r = whole - sec * 1000;
  return isoPrefix + (r < 10 ? '00' : r < 100 ? '0' : '') + r + 'Z';
}

const addrScratch = new Uint8Array(16);

/** Address of slot s's endpoint at key word w0 (0: initiator, 4: responder), formatted for IP version v. */
export function addressOf(t: FlowTable, s: number, w0: number, v: number): string {
  const b = addrScratch;
  for (let w = 0; w < 4; w++) {
    const x = t.kAddr[s * 8 + w0 + w]!;
    b[4 * w] = x >>> 24; b[4 * w + 1] = (x >>> 16) & 0xff; b[4 * w + 2] = (x >>> 8) & 0xff; b[4 * w + 3] = x & 0xff;
  }
  return formatAddress(b, 0, v);
}

function rttOf(t: FlowTable, i: number): RttStats | null {
  const n = t.rttN[i]!;
  if (n === 0) return null;
  return { minMs: ms(t.rttMin[i]!)!, smoothedMs: ms(t.rttSrtt[i]!)!, maxMs: ms(t.rttMax[i]!)!, samples: n };
}

const wordsA = new Uint32Array(4);
const wordsB = new Uint32Array(4);

/** The cross-end flow ID of slot s (flow-id.ts), computed once per flow and ISN (cached in the table). Allocates the first time. */
export function flowIdOf(t: FlowTable, s: number, key: Uint8Array): string {
  const isn = (t.flags[s]! & F_ISN) !== 0 ? t.kIsn[s]! : -1;
  const cached = t.flowIdCache[s];
  if (cached !== undefined && t.flowIdIsn[s] === isn) return cached;
  const meta = t.kMeta[s]!;
  for (let w = 0; w < 4; w++) { wordsA[w] = t.kAddr[s * 8 + w]!; wordsB[w] = t.kAddr[s * 8 + 4 + w]!; }
  const id = computeFlowId(key, meta & 0xff, meta >> 8 ? 6 : 4, wordsA, t.kPorts[s]! >>> 16, wordsB, t.kPorts[s]! & 0xffff, isn);
  t.flowIdCache[s] = id;
  t.flowIdIsn[s] = isn;
  return id;
}

/**
 * The record of table slot s, closing (or snapshotted) with `reason`;
 * `peek` is the flow's L7 peek, `quic` its QUIC peek, if any; `idKey` the
 * flow ID key. Allocates.
 */
export function buildFlowRecord(t: FlowTable, s: number, reason: CloseReason, peek: L7Peek | undefined,
  quic: QuicPeek | undefined, idKey: Uint8Array): FlowRecord {
  const meta = t.kMeta[s]!;
  const proto = meta & 0xff;
  const v = meta >> 8 ? 6 : 4;
  const f = t.flags[s]!;
  return {
    proto: proto === IPPROTO.TCP ? 'tcp' : proto === IPPROTO.UDP ? 'udp' : 'icmp',
    src: addressOf(t, s, 0, v),
    srcPort: t.kPorts[s]! >>> 16,
    dst: addressOf(t, s, 4, v),
    dstPort: t.kPorts[s]! & 0xffff,
    opened: (f & F_OPENED) !== 0,
    midstream: (f & F_MIDSTREAM) !== 0,
    closeReason: reason,
    bytesSent: t.bytes[s * 2]!,
    bytesReceived: t.bytes[s * 2 + 1]!,
    packetsSent: t.packets[s * 2]!,
    packetsReceived: t.packets[s * 2 + 1]!,
    retransmits: t.retrans[s * 2]! + t.retrans[s * 2 + 1]!,
    handshakeRttMs: ms(t.tAck[s]! - t.tSyn[s]!),
    sni: peek?.sni ?? quic?.sni ?? null,
    alpn: peek?.alpn ?? quic?.alpn ?? null,
    httpRequests: peek?.httpRequests ?? 0,
    firstSeen: isoTime(t.first[s]!),
    lastSeen: isoTime(t.last[s]!),
    flowId: flowIdOf(t, s, idKey),
    rttToClient: rttOf(t, s * 2 + 1),
    rttToServer: rttOf(t, s * 2),
    quicVersion: quic?.versionName ?? null,
    quicHandshakeRttMs: quic === undefined ? null : ms(quic.handshakeRttMs),
    httpStatus: peek === undefined ? { '1xx': 0, '2xx': 0, '3xx': 0, '4xx': 0, '5xx': 0 } : peek.statusClasses(),
    httpFirstByteMs: peek === undefined ? null : ms(peek.firstByteMs),
  };
}

/** The {@link FlowMeta} of table slot s. Allocates. */
export function buildFlowMeta(t: FlowTable, s: number, peek: L7Peek | undefined): FlowMeta {
  return {
    ordinal: t.ordinal[s]!,
    tunnelDirection: t.tunDir[s]!,
    outOfOrder: t.ooo[s * 2]! + t.ooo[s * 2 + 1]!,
    rstIgnored: t.rstIgnored[s]!,
    synAckLegMs: ms(t.tSynAck[s]! - t.tSyn[s]!),
    ackLegMs: ms(t.tAck[s]! - t.tSynAck[s]!),
    httpHost: peek?.httpHost ?? null,
    firstSeenMs: t.first[s]!,
    lastSeenMs: t.last[s]!,
  };
}
