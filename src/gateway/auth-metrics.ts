/**
 * Prometheus counters for connections and sessions the gateway ended on
 * authentication grounds (#12 items 4, 5) and for sessions superseded by a
 * restarted agent: read from the live counters at scrape time, off the data path.
 */
import { Counter, type Registry } from 'prom-client';
import type { QuicEndpointCounters } from '../quic/endpoint.js';

/** What the counters read (live objects, kept by their owners). */
export interface AuthCounterSources {
  readonly endpoint: Readonly<QuicEndpointCounters>;
  /** Sessions closed because a new session of the same identity claimed their routes. */
  readonly superseded: () => number;
}

/**
 * Registers `mtun_gateway_connections_closed_by_certificate_total{reason}`
 * (`revoked`: a reloaded client CA no longer admits the peer; `expired`: its
 * certificate passed notAfter; `refused`: no or unparsable certificate at
 * the handshake) and `mtun_gateway_sessions_superseded_total` on `registry`.
 */
export function registerAuthCounters(registry: Registry, src: AuthCounterSources): void {
  const byCert: Counter<'reason'> = new Counter({
    name: 'mtun_gateway_connections_closed_by_certificate_total',
    help: 'Agent connections closed because of their client certificate, by reason (revoked by a CA reload, expired, refused at the handshake)',
    labelNames: ['reason'],
    registers: [registry],
    collect: () => {
      byCert.reset();
      byCert.inc({ reason: 'revoked' }, src.endpoint.peersRevoked);
      byCert.inc({ reason: 'expired' }, src.endpoint.peersExpired);
      byCert.inc({ reason: 'refused' }, src.endpoint.mtlsRejected);
    },
  });
  const superseded: Counter = new Counter({
    name: 'mtun_gateway_sessions_superseded_total',
    help: 'CONNECT-IP sessions closed because a new session of the same identity replaced them: it claimed their site routes (a restarted agent) or fell back to HTTP/2 (mtun-supersedes: h3)',
    registers: [registry],
    collect: () => {
      superseded.reset();
      superseded.inc(src.superseded());
    },
  });
}
