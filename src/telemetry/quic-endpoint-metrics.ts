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

/** Counter field → the `reason` label of `mtun_quic_dgram_frames_dropped_total` (DATAGRAM frames, inside connections). */
const DGRAM_DROPS: ReadonlyArray<[keyof QuicEndpointCounters, string]> = [
  ['dgramDropQueueDelay', 'queue-delay'],
];

/** Counter field → the `packet` label of `mtun_quic_stateless_packets_sent_total`. */
const STATELESS: ReadonlyArray<[keyof QuicEndpointCounters, string]> = [
  ['retriesSent', 'retry'],
  ['versionNegotiationsSent', 'version-negotiation'],
  ['statelessResetsSent', 'stateless-reset'],
];

/** Counter field → the `direction` label of `mtun_quic_datagrams_total`. */
const DATAGRAMS: ReadonlyArray<[keyof QuicEndpointCounters, string]> = [
  ['datagramsIn', 'in'],
  ['datagramsOut', 'out'],
];

/** Counter field → the `offload` label of `mtun_quic_udp_offload_total`. */
const OFFLOADS: ReadonlyArray<[keyof QuicEndpointCounters, string]> = [
  ['gsoSends', 'gso_send'],
  ['groReceives', 'gro_receive'],
];

/** Counter field → the `event` label of `mtun_quic_udp_send_events_total`. */
const SENDS: ReadonlyArray<[keyof QuicEndpointCounters, string]> = [
  ['sendRefused', 'refused'],
  ['gsoRefused', 'gso_refused'],
  ['sendStalls', 'stalled'],
];

/** Counter field → the `result` label of `mtun_quic_handshakes_total`. */
const HANDSHAKES: ReadonlyArray<[keyof QuicEndpointCounters, string]> = [
  ['connectionsAccepted', 'accepted'],
  ['connectionsConnected', 'connected'],
  ['handshakesFailed', 'failed'],
  ['handshakesDeferred', 'deferred'],
];

/** Counter field → the `event` label of `mtun_quic_keepalives_total`. */
const KEEPALIVES: ReadonlyArray<[keyof QuicEndpointCounters, string]> = [
  ['keepAlivesSent', 'sent'],
];

/**
 * Registers on `registry`, labelled with `role` (gateway or agent):
 * `mtun_quic_datagrams_total{direction}`, `mtun_quic_datagrams_dropped_total{reason}`,
 * `mtun_quic_dgram_frames_dropped_total{reason}`, `mtun_quic_stateless_packets_sent_total{packet}`,
 * `mtun_quic_udp_send_events_total{event}` (refused, gso_refused, stalled),
 * `mtun_quic_udp_offload_total{offload}` (gso_send, gro_receive),
 * `mtun_quic_handshakes_total{result}` (accepted, connected, failed, deferred) and
 * `mtun_quic_keepalives_total{event}` (sent).
 */
export function registerQuicEndpointMetrics(registry: Registry, role: 'gateway' | 'agent', c: Readonly<QuicEndpointCounters>): void {
  /** One counter whose `label` values are counter fields of `c`, read at scrape time. */
  const fields = (name: string, help: string, label: string, table: ReadonlyArray<[keyof QuicEndpointCounters, string]>): void => {
    const m: Counter<string> = new Counter({
      name, help, labelNames: ['role', label], registers: [registry],
      collect: () => {
        m.reset();
        for (const [k, value] of table) m.inc({ role, [label]: value }, c[k]);
      },
    });
  };
  fields('mtun_quic_datagrams_total', 'UDP datagrams the QUIC endpoint received (in) and sent (out)', 'direction', DATAGRAMS);
  fields('mtun_quic_datagrams_dropped_total', 'Datagrams the QUIC endpoint dropped before any connection took them, by reason (retry-rate-limit: an Initial over quic maxRetriesPerSecond)', 'reason', DROPS);
  fields('mtun_quic_dgram_frames_dropped_total', 'QUIC DATAGRAM frames (the tunnel\'s packets) a connection dropped from its send queue, by reason (queue-delay: CoDel, they waited too long behind a bulk transfer)', 'reason', DGRAM_DROPS);
  fields('mtun_quic_stateless_packets_sent_total', 'Packets sent without connection state: Retry, Version Negotiation, stateless reset', 'packet', STATELESS);
  fields('mtun_quic_udp_send_events_total', 'The endpoint\'s UDP sends the kernel refused: datagrams dropped (refused; QUIC resends their frames), and GSO sends the path could not segment (gso_refused; their datagrams resent one by one, GSO off after an EIO)', 'event', SENDS);
  fields('mtun_quic_udp_offload_total', 'UDP segmentation offloads: sends of GSO trains (gso_send) and receives the kernel coalesced (gro_receive), each several datagrams in one call', 'offload', OFFLOADS);
  fields('mtun_quic_keepalives_total', 'Keep-alive PINGs the QUIC endpoint sent (sent); the agent pings every keepaliveIntervalMs, the gateway does not ping', 'event', KEEPALIVES);
  fields('mtun_quic_handshakes_total', 'QUIC handshakes: accepted (server) or connected (client) started, failed before completion, deferred to the admission queue', 'result', HANDSHAKES);
}
