import { describe, expect, it } from 'vitest';
import { liveFlowsDocument } from './live-flows.js';
import { Telemetry } from './telemetry.js';

describe('telemetry: live flow rates (/flows)', () => {
  it('a flow rate runs over about two 1 s steps, and reads 0 once the flow is idle', () => {
    const t = new Telemetry({ reporter: 'gateway', workloads: [], flowLog: null, processMetrics: false });
    const h = t.onFlowOpen({ protocol: 6, srcAddr: '10.1.0.5', srcPort: 1, dstAddr: '10.2.0.1', dstPort: 80, peerIdentity: 'a', direction: 'inbound', firstSeenMs: 0 });
    const rate = (now: number) => liveFlowsDocument(t, now).flows[0]!.receivedBytesPerSec;
    t.onFlowDelta(h, 0, 1000, 0, 1, 0, 1000);
    expect(rate(1000)).toBe(1000); // 1000 B over the first second
    t.onFlowDelta(h, 0, 3000, 0, 3, 0, 2000);
    expect(rate(2000)).toBe(2000); // 4000 B over 0…2 s
    t.onFlowDelta(h, 0, 0, 0, 0, 0, 3000);
    expect(rate(3000)).toBe(1500); // 3000 B over 1…3 s
    t.onFlowDelta(h, 0, 0, 0, 0, 0, 4000);
    expect(rate(4000)).toBe(0); // nothing over 2…4 s
    t.onFlowDelta(h, 0, 500, 0, 1, 0, 5000);
    expect(rate(5000)).toBe(250);
    // No update for 2.5 s (a daemon syncs only flows that moved): shown idle.
    expect(rate(7400)).toBe(250);
    expect(rate(7500)).toBe(0);
    expect(liveFlowsDocument(t, 7500).totals).toMatchObject({ openFlows: 1, receivedBytesPerSec: 0 });
  });

  it('keeps the last 64 closed flows, oldest first, with their close reason and SNI', () => {
    const t = new Telemetry({ reporter: 'agent', workloads: [], flowLog: null, processMetrics: false });
    for (let i = 0; i < 70; i++) {
      const h = t.onFlowOpen({ protocol: 6, srcAddr: '10.1.0.5', srcPort: 1000 + i, dstAddr: '10.2.0.1', dstPort: 443, peerIdentity: 'a', direction: 'outbound', firstSeenMs: i });
      t.onFlowClose(h, { sentBytes: 1, receivedBytes: 2, sentPackets: 1, receivedPackets: 1, retransmits: 0, reason: i % 2 ? 'rst' : 'fin', lastSeenMs: i + 10, sni: `s${i}.example` });
    }
    const closed = liveFlowsDocument(t, 100).flows;
    expect(closed.length).toBe(64);
    expect(closed[0]).toMatchObject({ srcPort: 1006, state: 'closed', closeReason: 'fin', sni: 's6.example', ageMs: 10, receivedBytes: 2 });
    expect(closed[63]).toMatchObject({ srcPort: 1069, closeReason: 'rst' });
  });
});
