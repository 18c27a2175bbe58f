/**
 * The latency split of one TCP flow from the two ends' records (joined on
 * `flowId`): client segment, tunnel, server segment. The end on the
 * client's side (where the initiator's packets enter the tunnel) measures
 * the client segment directly (`rttToClient`) and tunnel + server segment
 * (`rttToServer`); the end on the server's side measures the server segment
 * directly (`rttToServer`) and tunnel + client segment (`rttToClient`). So
 * the tunnel is measured twice, by difference:
 *   via server data  = clientEnd.rttToServer − serverEnd.rttToServer
 *   via client data  = serverEnd.rttToClient − clientEnd.rttToClient
 * and the split reports their mean (each statistic taken separately: min of
 * the difference is estimated as the difference of mins). Pure; allocates
 * the result. Cross-check the tunnel against QUIC's smoothed RTT of the
 * session that carried the flow.
 */
import type { FlowRecord, RttStats } from './flow-record.js';

/** One segment's estimate, ms. */
export interface SegmentRtt {
  minMs: number;
  smoothedMs: number;
  maxMs: number;
}

/** The three segments of a flow; null where not enough was sampled. */
export interface RttSplit {
  client: SegmentRtt | null;
  tunnel: SegmentRtt | null;
  server: SegmentRtt | null;
}

function seg(r: RttStats | null): SegmentRtt | null {
  return r === null ? null : { minMs: r.minMs, smoothedMs: r.smoothedMs, maxMs: r.maxMs };
}

function diff(a: RttStats | null, b: RttStats | null): SegmentRtt | null {
  if (a === null || b === null) return null;
  return { minMs: a.minMs - b.minMs, smoothedMs: a.smoothedMs - b.smoothedMs, maxMs: a.maxMs - b.maxMs };
}

/**
 * Splits a flow's RTT from the record of the end on the client's side and
 * the record of the end on the server's side (same `flowId`). Throws
 * `inspect: …` when the records are not of the same flow.
 */
export function splitRtt(clientEnd: FlowRecord, serverEnd: FlowRecord): RttSplit {
  if (clientEnd.flowId !== serverEnd.flowId) throw new Error(`inspect: records of different flows (${clientEnd.flowId}, ${serverEnd.flowId})`);
  const viaServer = diff(clientEnd.rttToServer, serverEnd.rttToServer);
  const viaClient = diff(serverEnd.rttToClient, clientEnd.rttToClient);
  let tunnel: SegmentRtt | null = viaServer ?? viaClient;
  if (viaServer !== null && viaClient !== null) {
    tunnel = {
      minMs: (viaServer.minMs + viaClient.minMs) / 2,
      smoothedMs: (viaServer.smoothedMs + viaClient.smoothedMs) / 2,
      maxMs: (viaServer.maxMs + viaClient.maxMs) / 2,
    };
  }
  return { client: seg(clientEnd.rttToClient), tunnel, server: seg(serverEnd.rttToServer) };
}

function minus(a: RttStats | null, b: RttStats | null): SegmentRtt | null {
  if (a === null || b === null) return null;
  return { minMs: Math.max(0, a.minMs - b.minMs), smoothedMs: Math.max(0, a.smoothedMs - b.smoothedMs), maxMs: Math.max(0, a.maxMs - b.maxMs) };
}

/**
 * The split as one end alone sees it, with the tunnel's RTT taken from the
 * QUIC connection that carried the flow (its smoothed RTT sampled through
 * the flow, RFC 9002 §5.3) instead of from the other end's record. The end
 * on the client's side (`clientSide`) measures the client segment
 * (`rttToClient`) and tunnel + server segment (`rttToServer`), so the
 * server segment is `rttToServer − tunnel`; the end on the server's side
 * mirrors it. Each statistic is subtracted separately and never goes
 * below 0. Pure; allocates the result.
 */
export function splitRttAtOneEnd(rttToClient: RttStats | null, rttToServer: RttStats | null, tunnel: RttStats | null, clientSide: boolean): RttSplit {
  return clientSide
    ? { client: seg(rttToClient), tunnel: seg(tunnel), server: minus(rttToServer, tunnel) }
    : { client: minus(rttToClient, tunnel), tunnel: seg(tunnel), server: seg(rttToServer) };
}
