/**
 * Metrics that say which HTTP version carries the tunnels: open sessions per
 * `transport` ("h3" or "h2"), the agent's current transport and its switches,
 * and the HTTP/2 tunnels' capsule counters. Values are read when /metrics is
 * scraped (collect callbacks), so the data path does no label lookups.
 */
import { Counter, Gauge, type Registry } from 'prom-client';
import type { H2TunnelCounters } from './h2-tunnel.js';

/** The HTTP version a tunnel rides on. */
export type TunnelTransport = 'h3' | 'h2';

/** Both transports, in preference order. */
export const TRANSPORTS: readonly TunnelTransport[] = ['h3', 'h2'];

/**
 * Registers `mtun_tunnel_sessions_by_transport{reporter, transport}`: open sessions per
 * transport, counted from `sessions()` at scrape time.
 */
export function registerSessionTransportGauge(
  registry: Registry,
  reporter: 'agent' | 'gateway',
  sessions: () => Iterable<{ readonly transport: TunnelTransport }>,
): void {
  new Gauge({
    name: 'mtun_tunnel_sessions_by_transport',
    help: 'Open MASQUE sessions by the HTTP version carrying them (h3: QUIC DATAGRAM frames; h2: DATAGRAM capsules on TCP)',
    labelNames: ['reporter', 'transport'],
    registers: [registry],
    collect() {
      let h3 = 0;
      let h2 = 0;
      for (const s of sessions()) {
        if (s.transport === 'h2') h2++;
        else h3++;
      }
      this.set({ reporter, transport: 'h3' }, h3);
      this.set({ reporter, transport: 'h2' }, h2);
    },
  });
}

/**
 * Registers the HTTP/2 capsule counters of one endpoint:
 * `mtun_h2_datagrams_total{reporter, direction}` and
 * `mtun_h2_drops_total{reporter, reason}` (backpressure, closed,
 * capsule_error), read from `c` at scrape time.
 */
export function registerH2Counters(registry: Registry, reporter: 'agent' | 'gateway', c: H2TunnelCounters): void {
  new Counter({
    name: 'mtun_h2_datagrams_total',
    help: 'HTTP Datagrams carried in DATAGRAM capsules over HTTP/2 (RFC 9297 §3.5)',
    labelNames: ['reporter', 'direction'],
    registers: [registry],
    collect() {
      this.reset();
      this.inc({ reporter, direction: 'sent' }, c.datagramsSent);
      this.inc({ reporter, direction: 'received' }, c.datagramCapsulesReceived);
    },
  });
  new Counter({
    name: 'mtun_h2_drops_total',
    help: 'HTTP/2 tunnel drops: backpressure (outer TCP send queue full), closed (stream gone), capsule_error (malformed or oversized capsule, stream reset)',
    labelNames: ['reporter', 'reason'],
    registers: [registry],
    collect() {
      this.reset();
      this.inc({ reporter, reason: 'backpressure' }, c.datagramsDroppedBackpressure);
      this.inc({ reporter, reason: 'closed' }, c.droppedClosed);
      this.inc({ reporter, reason: 'capsule_error' }, c.capsuleErrors);
    },
  });
}

/**
 * The agent's transport metrics: `mtun_agent_transport{transport}` (1 for the
 * current one, 0 for the other, both 0 while down) and
 * `mtun_agent_transport_switches_total{from, to}`.
 */
export class AgentTransportMetrics {
  private readonly switches: Counter;

  constructor(registry: Registry, current: () => TunnelTransport | null) {
    new Gauge({
      name: 'mtun_agent_transport',
      help: 'The HTTP version the agent\'s tunnel currently rides on (1) — h3 over QUIC, h2 over TCP when UDP is blocked',
      labelNames: ['transport'],
      registers: [registry],
      collect() {
        const t = current();
        for (const x of TRANSPORTS) this.set({ transport: x }, t === x ? 1 : 0);
      },
    });
    this.switches = new Counter({
      name: 'mtun_agent_transport_switches_total',
      help: 'Tunnel moves between HTTP/3 and HTTP/2 (fallback and return)',
      labelNames: ['from', 'to'],
      registers: [registry],
    });
  }

  /** Counts one switch (control path). */
  switched(from: TunnelTransport, to: TunnelTransport): void {
    this.switches.inc({ from, to });
  }
}
