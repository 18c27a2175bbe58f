import { describe, expect, it } from 'vitest';
import { CONNECT_IP_DROP_NAMES, ConnectIpCounters, ConnectIpDrop } from '../masque/connect-ip/counters.js';
import { MeshMetrics } from './metrics.js';
import { TunnelCounterSync } from './tunnel-counter-sync.js';
import { WorkloadMap } from './workload-map.js';

function value(text: string, prefix: string): number {
  const line = text.split('\n').find((l) => l.startsWith(prefix));
  return line === undefined ? NaN : Number(line.slice(line.lastIndexOf(' ') + 1));
}

describe('telemetry: tunnel counter sync from CONNECT-IP session counters', () => {
  it('adds deltas, survives sessions coming and going, lowers the gauge on close', async () => {
    const m = new MeshMetrics({ reporter: 'gateway', workloads: new WorkloadMap([]), processMetrics: false });
    const id = m.identityId('spiffe://td/agent/a');
    const c1 = new ConnectIpCounters();
    const s1 = new TunnelCounterSync(m, id, CONNECT_IP_DROP_NAMES);
    c1.packetsSent = 10; c1.bytesSent = 1000; c1.packetsReceived = 3; c1.bytesReceived = 300;
    c1.drops[ConnectIpDrop.POLICY] = 2; c1.drops[ConnectIpDrop.SPOOFED_SOURCE] = 1; c1.icmpSent = 3;
    s1.update(c1.drops, c1.packetsSent, c1.bytesSent, c1.packetsReceived, c1.bytesReceived, c1.icmpSent);
    s1.update(c1.drops, c1.packetsSent, c1.bytesSent, c1.packetsReceived, c1.bytesReceived, c1.icmpSent); // no change: no double count
    const s2 = new TunnelCounterSync(m, id, CONNECT_IP_DROP_NAMES);
    const c2 = new ConnectIpCounters();
    c2.packetsSent = 5; c2.bytesSent = 500; c2.drops[ConnectIpDrop.POLICY] = 1;
    s2.update(c2.drops, c2.packetsSent, c2.bytesSent, c2.packetsReceived, c2.bytesReceived, c2.icmpSent);
    let text = await m.text();
    const L = '{reporter="gateway",peer_identity="spiffe://td/agent/a"}';
    expect(value(text, `mtun_tunnel_sessions${L}`)).toBe(2);
    expect(value(text, `mtun_tunnel_sent_datagrams_total${L}`)).toBe(15);
    expect(value(text, `mtun_tunnel_sent_bytes_total${L}`)).toBe(1500);
    expect(value(text, `mtun_tunnel_received_bytes_total${L}`)).toBe(300);
    expect(value(text, 'mtun_tunnel_dropped_packets_total{reporter="gateway",reason="policy"}')).toBe(3);
    expect(value(text, 'mtun_tunnel_dropped_packets_total{reporter="gateway",reason="spoofed_source"}')).toBe(1);
    expect(value(text, 'mtun_tunnel_icmp_errors_sent_total{reporter="gateway",type="unclassified"}')).toBe(3);
    expect(text).not.toContain('reason="none"');
    s1.close();
    s1.close();
    text = await m.text();
    expect(value(text, `mtun_tunnel_sessions${L}`)).toBe(1);
    expect(value(text, `mtun_tunnel_sessions_opened_total${L}`)).toBe(2);
  });
});
