/**
 * The QUIC endpoint's own counters (datagrams, drops by reason, Retry,
 * Version Negotiation, stateless resets, handshakes) as Prometheus metrics,
 * read from the live counter object at scrape time, off the data path. This
 * is how an operator sees a flood of spoofed Initials being answered with
 * Retry or dropped over the rate limit.
 */
import { Counter, type Registry } from 'prom-client';
import type { QuicEndpointCounters } from '../quic/endpoint.js';

/** Counter field → the `reason` label of `mtun_quic_datagrams_dropped_total`. */
const DROPS: ReadonlyArray<[keyof QuicEndpointCounters, string]> = [
  ['dropSmallInitial', 'small-initial'],
  ['dropMalformed', 'malformed'],
  ['dropUnknownCid', 'unknown-cid'],
  ['dropConnectionLimit', 'connection-limit'],
  ['dropNotAccepting', 'not-accepting'],
  ['dropPeerIpLimit', 'peer-ip-limit'],
  ['dropBadToken', 'bad-retry-token'],
  ['dropAcceptError', 'accept-error'],
  ['dropHandshakeQueueFull', 'handshake-queue-full'],
  ['dropHandshakeQueueStale', 'handshake-queue-stale'],
  ['dropRecvError', 'quic-recv-error'],
  ['dropStatelessRateLimit', 'retry-rate-limit'],
];

/** Counter field → the `packet` label of `mtun_quic_stateless_packets_sent_total`. */
const STATELESS: ReadonlyArray<[keyof QuicEndpointCounters, string]> = [
  ['retriesSent', 'retry'],
  ['versionNegotiationsSent', 'version-negotiation'],
  ['statelessResetsSent', 'stateless-reset'],
];

/**
 * Registers on `registry`, labelled with `role` (gateway or agent):
 * `mtun_quic_datagrams_total{direction}`, `mtun_quic_datagrams_dropped_total{reason}`,
 * `mtun_quic_stateless_packets_sent_total{packet}` and
 * `mtun_quic_handshakes_total{result}` (accepted, connected, failed, deferred).
 */
export function registerQuicEndpointMetrics(registry: Registry, role: 'gateway' | 'agent', c: Readonly<QuicEndpointCounters>): void {
  const datagrams: Counter<'role' | 'direction'> = new Counter({
    name: 'mtun_quic_datagrams_total',
    help: 'UDP datagrams the QUIC endpoint received (in) and sent (out)',
    labelNames: ['role', 'direction'],
    registers: [registry],
    collect: () => {
      datagrams.reset();
      datagrams.inc({ role, direction: 'in' }, c.datagramsIn);
      datagrams.inc({ role, direction: 'out' }, c.datagramsOut);
    },
  });
  const dropped: Counter<'role' | 'reason'> = new Counter({
    name: 'mtun_quic_datagrams_dropped_total',
    help: 'Datagrams the QUIC endpoint dropped before any connection took them, by reason (retry-rate-limit: an Initial over quic maxRetriesPerSecond)',
    labelNames: ['role', 'reason'],
    registers: [registry],
    collect: () => {
      dropped.reset();
      for (const [k, reason] of DROPS) dropped.inc({ role, reason }, c[k]);
    },
  });
  const stateless: Counter<'role' | 'packet'> = new Counter({
    name: 'mtun_quic_stateless_packets_sent_total',
    help: 'Packets sent without connection state: Retry, Version Negotiation, stateless reset',
    labelNames: ['role', 'packet'],
    registers: [registry],
    collect: () => {
      stateless.reset();
      for (const [k, packet] of STATELESS) stateless.inc({ role, packet }, c[k]);
    },
  });
  const handshakes: Counter<'role' | 'result'> = new Counter({
    name: 'mtun_quic_handshakes_total',
    help: 'QUIC handshakes: accepted (server) or connected (client) started, failed before completion, deferred to the admission queue',
    labelNames: ['role', 'result'],
    registers: [registry],
    collect: () => {
      handshakes.reset();
      handshakes.inc({ role, result: 'accepted' }, c.connectionsAccepted);
      handshakes.inc({ role, result: 'connected' }, c.connectionsConnected);
      handshakes.inc({ role, result: 'failed' }, c.handshakesFailed);
      handshakes.inc({ role, result: 'deferred' }, c.handshakesDeferred);
    },
  });
}
