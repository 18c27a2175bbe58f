import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { registerAuthCounters } from './auth-metrics.js';
import type { QuicEndpointCounters } from '../quic/endpoint.js';

describe('auth counters on /metrics (#12 items 4, 5)', () => {
  it('exposes certificate closes by reason and superseded sessions, read live at scrape time', async () => {
    const registry = new Registry();
    const endpoint = { peersRevoked: 0, peersExpired: 0, mtlsRejected: 0 } as QuicEndpointCounters;
    let superseded = 0;
    registerAuthCounters(registry, { endpoint, superseded: () => superseded });
    endpoint.peersRevoked = 2;
    endpoint.peersExpired = 1;
    endpoint.mtlsRejected = 5;
    superseded = 3;
    const text = await registry.metrics();
    expect(text).toContain('mtun_gateway_connections_closed_by_certificate_total{reason="revoked"} 2');
    expect(text).toContain('mtun_gateway_connections_closed_by_certificate_total{reason="expired"} 1');
    expect(text).toContain('mtun_gateway_connections_closed_by_certificate_total{reason="refused"} 5');
    expect(text).toContain('mtun_gateway_sessions_superseded_total 3');
  });
});
