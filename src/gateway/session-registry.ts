/**
 * The gateway's agent connections and their sessions, with the counts
 * admission needs: sessions per identity including CONNECT-UDP requests still
 * resolving or connecting (so a burst of opens cannot pass the limit).
 */
import type { IdentityPolicy } from '../config/index.js';
import type { ConnectIpGatewaySession } from '../masque/connect-ip/gateway-session.js';
import type { ConnectUdpGatewaySession } from '../masque/connect-udp/gateway-session.js';
import type { TunnelTransport } from '../h2/transport-metrics.js';
import type { TunnelCounterSync } from '../telemetry/index.js';

/** What the gateway reads of a connection, QUIC or HTTP/2 over TLS (QuicConnection satisfies it). */
export interface GwTransportConn {
  readonly isClosed: boolean;
  readonly handlerError: Error | null;
  readonly peerHost: string;
  /** QUIC only: the connection's stats, of which telemetry reads the smoothed RTT (QuicConnection.stats). */
  stats?(): { readonly rttMs: number | null };
  /** QUIC only: the smoothed RTT alone, without the snapshot (QuicConnection.rttMs). */
  rttMs?(): number | null;
  /** QUIC only: packets the endpoint handed to the connection so far (the RTT can only move when one arrives). */
  readonly packetsReceived?: number;
  /** QUIC only: frees the connection's empty DATAGRAM queues (QuicConnection.trimIdle). */
  trimIdle?(): void;
}

/** One agent connection. */
export interface GwConn {
  /** h3: QUIC + HTTP/3; h2: TCP + TLS + HTTP/2 (issue #15). */
  readonly transport: TunnelTransport;
  readonly conn: GwTransportConn;
  /** The HTTP layer: shutdown() sends GOAWAY. */
  readonly http: { shutdown(): void };
  /** Identity from the client certificate (mTLS), or null (token auth per request). */
  readonly certIdentity: string | null;
  readonly remote: string;
  readonly sessions: Set<GwSession>;
  /** conn.packetsReceived at the last {@link SessionRegistry.trimIdleConnections} (-1 before it). */
  rxAtTick?: number;
  /** conn.packetsReceived when its queues were last trimmed: once per idle stretch, not every tick. */
  trimmedAtRx?: number;
}

/** One CONNECT-IP or CONNECT-UDP session. */
export interface GwSession {
  readonly id: string;
  readonly kind: 'connect-ip' | 'connect-udp';
  readonly gc: GwConn;
  readonly identity: string;
  /** The bearer token that authenticated it (null: client certificate); revoked tokens end the session on reload. */
  readonly token: string | null;
  policy: IdentityPolicy;
  readonly ip: ConnectIpGatewaySession | null;
  readonly udp: ConnectUdpGatewaySession | null;
  /** CONNECT-UDP: the requested target (host as asked, port), re-checked on reload. */
  readonly udpTarget: { host: string; port: number } | null;
  readonly udpAddress: Uint8Array | null;
  readonly sync: TunnelCounterSync;
  readonly since: Date;
}

/**
 * Who gets an advertised prefix that overlaps routes other sessions own
 * (decide apart from do): a new session supersedes the owners only when
 * every one of them is a session of the claimant's own identity — an agent
 * restarted after a crash (SIGKILL) reclaims its site at once instead of
 * waiting for its dead session's idle timeout. A prefix owned by any other
 * identity is refused (`route-conflict`): no identity takes over another's site.
 */
export function routeConflictVerdict(claimant: string, owners: readonly string[]): 'supersede' | 'refuse' {
  return owners.length > 0 && owners.every((o) => o === claimant) ? 'supersede' : 'refuse';
}

/**
 * Why a session was superseded (closed for a new session of its identity):
 * its advertised routes were claimed ({@link routeConflictVerdict}), or the
 * agent fell back to HTTP/2 and said its HTTP/3 sessions are dead
 * (`mtun-supersedes: h3`, src/gateway/h2-listener.ts).
 */
export type SupersedeCause = 'route-takeover' | 'h2-fallback';

/** Connections, sessions and pending opens; counts kept as they change. */
export class SessionRegistry {
  readonly conns = new Set<GwConn>();
  readonly byIp = new Map<ConnectIpGatewaySession, GwSession>();
  /** Every open session, in the order they opened: the once-a-second sweeps walk it (10,000 idle sessions, issue #17). */
  private readonly all = new Set<GwSession>();
  private readonly perIdentity = new Map<string, number>();
  /** Open CONNECT-IP sessions per identity. */
  private readonly ipPerIdentity = new Map<string, number>();
  private total = 0;
  private udpCount = 0;
  /** Sessions closed for a new session of their identity ({@link SupersedeCause}). */
  superseded = 0;

  /** Sessions open plus opens pending, gateway-wide. */
  get count(): number {
    return this.total;
  }

  /** Open CONNECT-UDP sessions. */
  get udpSessions(): number {
    return this.udpCount;
  }

  /** Sessions open plus opens pending of `identity`. */
  countOf(identity: string): number {
    return this.perIdentity.get(identity) ?? 0;
  }

  private bump(identity: string, by: number): void {
    countBy(this.perIdentity, identity, by);
    this.total += by;
  }

  /** Reserves a slot for an open in progress; call the returned function exactly once when it ends (either way). */
  reserve(identity: string): () => void {
    this.bump(identity, 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.bump(identity, -1);
    };
  }

  /** Has `identity` an open CONNECT-IP session? */
  hasIpSession(identity: string): boolean {
    return this.ipPerIdentity.has(identity);
  }

  add(gs: GwSession): void {
    gs.gc.sessions.add(gs);
    this.all.add(gs);
    if (gs.ip) {
      this.byIp.set(gs.ip, gs);
      countBy(this.ipPerIdentity, gs.identity, 1);
    }
    if (gs.kind === 'connect-udp') this.udpCount++;
    this.bump(gs.identity, 1);
  }

  /** Removes `gs`; false when it was already gone. */
  remove(gs: GwSession): boolean {
    if (!gs.gc.sessions.delete(gs)) return false;
    this.all.delete(gs);
    if (gs.ip) {
      this.byIp.delete(gs.ip);
      countBy(this.ipPerIdentity, gs.identity, -1);
    }
    if (gs.kind === 'connect-udp') this.udpCount--;
    this.bump(gs.identity, -1);
    return true;
  }

  /** Every open session, in the order they opened (a session added while iterating is visited too, as with any Set). */
  sessions(): IterableIterator<GwSession> {
    return this.all.values();
  }

  /**
   * Call once a tick. The gateway sends no keep-alives, and a keep-alive is
   * where an agent frees a connection's empty DATAGRAM queues. So here a
   * QUIC connection that received nothing since the last call has them
   * freed (`trimIdle`). That happens once per idle stretch: 10,000 idle
   * connections would otherwise cost a native call each, every second.
   * Before this, a queue an upload burst had grown to hundreds of packets
   * stayed until the connection closed. Connections without
   * `packetsReceived` (HTTP/2) are skipped. Returns how many were trimmed.
   */
  trimIdleConnections(): number {
    let n = 0;
    for (const gc of this.conns) {
      const rx = gc.conn.packetsReceived;
      if (rx === undefined) continue;
      if (rx === gc.rxAtTick && rx !== gc.trimmedAtRx && gc.conn.trimIdle !== undefined) {
        gc.conn.trimIdle();
        gc.trimmedAtRx = rx;
        n++;
      }
      gc.rxAtTick = rx;
    }
    return n;
  }
}

/** Adds `by` to the count of `key` in `m`; a count that reaches 0 is removed, so the map holds only identities with sessions. */
function countBy(m: Map<string, number>, key: string, by: number): void {
  const n = (m.get(key) ?? 0) + by;
  if (n <= 0) m.delete(key);
  else m.set(key, n);
}
