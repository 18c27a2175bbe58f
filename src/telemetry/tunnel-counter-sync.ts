/**
 * Carries a tunnel session's own counters (e.g. src/masque's
 * ConnectIpCounters / ConnectUdpCounters) into the daemon's metrics as
 * deltas, so sessions keep their plain fields and metrics stay cumulative
 * across sessions that come and go.
 */
import type { MeshMetrics } from './metrics.js';

/** ICMP `type` label used while sessions count ICMP errors without a per-type breakdown. */
export const ICMP_TYPE_UNCLASSIFIED = 'unclassified';

/**
 * Reads the smoothed RTT of the QUIC connection carrying a session, in ms
 * (QuicConnection.stats().rttMs), or null when there is none (HTTP/2, or
 * the connection is gone).
 */
export type TunnelRttProbe = () => number | null;

/**
 * One per session. Resolves label ids once at construction. {@link update}
 * adds the counter deltas without allocating and, given a
 * {@link TunnelRttProbe}, samples the tunnel's RTT into the per-peer gauge
 * and the flows' tunnel segment: call it on the daemon's once-a-second tick
 * (the probe reads the QUIC engine's path stats). After the session
 * closes, call update one last time, then {@link close}.
 */
export class TunnelCounterSync {
  private readonly dropIds: Int32Array;
  private readonly lastDrops: Float64Array;
  private readonly icmpId: number;
  private lastSent = 0;
  private lastSentBytes = 0;
  private lastRecv = 0;
  private lastRecvBytes = 0;
  private lastIcmp = 0;
  private open = true;

  /**
   * @param identityId from `metrics.identityId(peerIdentity)`
   * @param dropNames the session's drop-reason names by index (e.g. CONNECT_IP_DROP_NAMES); index 0 ("none") is never counted
   * @param rttProbe the carrying connection's RTT, sampled by each update; null when the transport has none
   */
  constructor(private readonly metrics: MeshMetrics, private readonly identityId: number, dropNames: readonly string[], private readonly rttProbe: TunnelRttProbe | null = null) {
    this.dropIds = new Int32Array(dropNames.length).fill(-1);
    for (let i = 1; i < dropNames.length; i++) this.dropIds[i] = metrics.dropReasonId(dropNames[i]!);
    this.lastDrops = new Float64Array(dropNames.length);
    this.icmpId = metrics.icmpTypeId(ICMP_TYPE_UNCLASSIFIED);
    metrics.sessionOpened(identityId);
  }

  /** Adds what changed since the last call. Arguments are the session's cumulative values. */
  update(drops: Float64Array, datagramsSent: number, bytesSent: number, datagramsReceived: number, bytesReceived: number, icmpSent: number): void {
    const m = this.metrics;
    const n = Math.min(drops.length, this.lastDrops.length);
    for (let i = 1; i < n; i++) {
      const d = drops[i]! - this.lastDrops[i]!;
      if (d > 0) {
        m.drop(this.dropIds[i]!, d);
        this.lastDrops[i] = drops[i]!;
      }
    }
    const ds = datagramsSent - this.lastSent;
    const bs = bytesSent - this.lastSentBytes;
    if (ds > 0 || bs > 0) m.addTunnelSent(this.identityId, Math.max(0, ds), Math.max(0, bs));
    const dr = datagramsReceived - this.lastRecv;
    const br = bytesReceived - this.lastRecvBytes;
    if (dr > 0 || br > 0) m.addTunnelReceived(this.identityId, Math.max(0, dr), Math.max(0, br));
    if (icmpSent > this.lastIcmp) m.icmpErrorSent(this.icmpId, icmpSent - this.lastIcmp);
    this.lastSent = Math.max(this.lastSent, datagramsSent);
    this.lastSentBytes = Math.max(this.lastSentBytes, bytesSent);
    this.lastRecv = Math.max(this.lastRecv, datagramsReceived);
    this.lastRecvBytes = Math.max(this.lastRecvBytes, bytesReceived);
    this.lastIcmp = Math.max(this.lastIcmp, icmpSent);
    if (this.open && this.rttProbe !== null) {
      const rtt = this.rttProbe();
      if (rtt !== null) m.setTunnelRtt(this.identityId, rtt);
    }
  }

  /** The session ended: lowers the sessions gauge. Idempotent. */
  close(): void {
    if (!this.open) return;
    this.open = false;
    this.metrics.sessionClosed(this.identityId);
  }
}
