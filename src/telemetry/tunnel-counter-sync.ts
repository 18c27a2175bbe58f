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
 * One per session. Resolves label ids once at construction; {@link update}
 * is allocation-free and may run per batch or on a timer. After the
 * session closes, call update one last time, then {@link close}.
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
   */
  constructor(private readonly metrics: MeshMetrics, private readonly identityId: number, dropNames: readonly string[]) {
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
  }

  /** The session ended: lowers the sessions gauge. Idempotent. */
  close(): void {
    if (!this.open) return;
    this.open = false;
    this.metrics.sessionClosed(this.identityId);
  }
}
