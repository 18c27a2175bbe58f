/**
 * Prometheus series of the inbound connection table (issue #12 item 8):
 * tracked flows, evictions and expiries. Read from the table's counters
 * when /metrics is scraped, never on the packet path.
 */
import { Counter, Gauge, type Registry } from 'prom-client';
import type { ConnTrack } from '../masque/inbound/conn-track.js';

/**
 * Registers `mtun_inbound_tracked_flows`, `mtun_inbound_flow_evictions_total`,
 * `mtun_inbound_flow_identity_cap_evictions_total` and `mtun_inbound_flow_expiries_total` for `track`.
 */
export function registerInboundMetrics(registry: Registry, track: ConnTrack): void {
  const flows: Gauge = new Gauge({
    name: 'mtun_inbound_tracked_flows', help: 'Flows opened from the agent side whose return traffic is admitted (inbound default-deny).',
    registers: [registry], collect: () => flows.set(track.size),
  });
  const evictions: Counter = new Counter({
    name: 'mtun_inbound_flow_evictions_total', help: 'Tracked flows evicted because the inbound flow table was full (inboundTracking.maxFlows).',
    registers: [registry], collect: () => { evictions.reset(); evictions.inc(track.evictions); },
  });
  const capped: Counter = new Counter({
    name: 'mtun_inbound_flow_identity_cap_evictions_total',
    help: 'Tracked flows evicted for a new flow of the same identity, which held inboundTracking.maxFlowsPerIdentity (its least recently active).',
    registers: [registry], collect: () => { capped.reset(); capped.inc(track.ownerCapped); },
  });
  const expiries: Counter = new Counter({
    name: 'mtun_inbound_flow_expiries_total', help: 'Tracked flows that reached their idle timeout.',
    registers: [registry], collect: () => { expiries.reset(); expiries.inc(track.expired); },
  });
}
