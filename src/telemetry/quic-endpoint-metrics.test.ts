import { describe, expect, it } from 'vitest';
import { Registry } from 'prom-client';
import { registerQuicEndpointMetrics } from './quic-endpoint-metrics.js';
import type { QuicEndpointCounters } from '../quic/endpoint.js';

describe('QUIC endpoint counters as Prometheus metrics', () => {
  it('reads the live counters at scrape time: drops by reason, Retry and Version Negotiation sent', async () => {
    const c = { datagramsIn: 0, datagramsOut: 0, retriesSent: 0, dropStatelessRateLimit: 0 } as Record<string, number>;
    const registry = new Registry();
    registerQuicEndpointMetrics(registry, 'gateway', c as unknown as QuicEndpointCounters);
    c.datagramsIn = 5000;
    c.retriesSent = 1200;
    c.dropStatelessRateLimit = 3800;
    c.dgramDropQueueDelay = 42;
    const text = await registry.metrics();
    expect(text).toContain('mtun_quic_datagrams_total{role="gateway",direction="in"} 5000');
    expect(text).toContain('mtun_quic_datagrams_dropped_total{role="gateway",reason="retry-rate-limit"} 3800');
    expect(text).toContain('mtun_quic_stateless_packets_sent_total{role="gateway",packet="retry"} 1200');
    // DATAGRAM frames a connection dropped from its send queue (CoDel, tun.queueDelay).
    expect(text).toContain('mtun_quic_dgram_frames_dropped_total{role="gateway",reason="queue-delay"} 42');
  });
});
