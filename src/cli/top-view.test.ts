import { describe, expect, it } from 'vitest';
import type { LiveFlow, LiveFlowsDocument } from '../telemetry/live-flows.js';
import { liveFlowFixture as flow } from '../telemetry/live-flow-fixtures.js';
import { renderTop, type TopState } from './top-view.js';

function doc(flows: LiveFlow[]): LiveFlowsDocument {
  return {
    reporter: 'gateway', nowMs: Date.UTC(2026, 0, 1, 10, 23, 4), flows, matchedFlows: flows.length, totalFlows: flows.length,
    totals: { openFlows: flows.filter((f) => f.state === 'open').length, sentBytesPerSec: 2048, receivedBytesPerSec: 1_048_576, tunnel: { sessions: 1, sentDatagrams: 1, receivedDatagrams: 1, sentBytes: 5 << 20, receivedBytes: 7 << 20 },
      tunnelRttMs: { 'spiffe://cluster.local/gateway': 31 } },
    drops: { no_route: 2, policy_denied: 7 }, capture: { active: false, queuedPackets: 0, droppedPackets: 0 },
  };
}

const state = (p: Partial<TopState> = {}): TopState => ({ sort: 'rate', filter: null, paused: false, editing: null, message: null, ...p });

describe('cli: mtun top view', () => {
  it('renders totals, drops, a row per flow within the terminal size, and the keys', () => {
    const flows = [
      flow({ srcPort: 40000, receivedBytesPerSec: 1_572_864, receivedBytes: 10 << 20, sni: 'api.example.com', handshakeRttMs: 12.345 }),
      flow({ srcPort: 40001, state: 'closed', closeReason: 'idle_timeout' }),
      flow({ srcPort: 40002, rtt: { client: 20.04, tunnel: 30.1, server: null } }),
      flow({ srcPort: 40003, protocol: 'udp', sni: 'h3.example', quicVersion: 'v1', quicHandshakeRttMs: 41.27 }),
    ];
    const lines = renderTop(doc(flows), state({ paused: true }), 200, 11);
    expect(lines.length).toBe(11);
    for (const l of lines) expect(l.length).toBeLessThanOrEqual(200);
    expect(lines[0]).toContain('mtun top — gateway  10:23:04  flows: 3 open  rate ↑ 2.0 KiB/s ↓ 1.0 MiB/s  tunnel ↑ 5.0 MiB ↓ 7.0 MiB  [PAUSED]');
    expect(lines[1]).toBe('drops: policy_denied=7 no_route=2  tunnel rtt: spiffe://cluster.local/gateway=31.0ms');
    expect(lines[2]).toContain('sort: rate  filter: none  showing 4 of 4');
    expect(lines[4]).toMatch(/^PROTO\s+SOURCE\s+DESTINATION\s+IDENTITY\s+SNI\s+RATE\s+TOTAL/);
    expect(lines[5]).toMatch(/10\.10\.0\.2:40000 .*…local\/agent\/cluster-a .*api\.example\.com .*1\.5 MiB\/s/);
    expect(lines[5]).toMatch(/ hs 12\.3 /); // before any data was timed: the handshake RTT
    expect(lines[6]).toMatch(/10\.10\.0\.2:40002 .* 20\.0\/30\.1\/- /);
    expect(lines[7]).toMatch(/^udp +10\.10\.0\.2:40003 .*h3\.example .* hs 41\.3 /); // a QUIC flow: its handshake RTT
    expect(lines[8]).toMatch(/10\.10\.0\.2:40001 .* idle_timeout$/);
    expect(lines[10]).toContain('q quit');
    // A small terminal shows what fits; a narrow one cuts lines.
    const small = renderTop(doc(flows), state(), 40, 7);
    expect(small.length).toBe(7);
    expect(small.filter((l) => l.includes('10.10.0.2:')).length).toBe(1);
    for (const l of small) expect(l.length).toBeLessThanOrEqual(40);
    // The filter being typed, and a message.
    const editing = renderTop(doc(flows), state({ editing: ':4000', message: 'filter: bad' }), 200, 11);
    expect(editing[2]).toContain('filter: /:4000▏');
    expect(editing[2]).toContain('! filter: bad');
  });
});
