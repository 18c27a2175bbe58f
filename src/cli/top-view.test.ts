import { describe, expect, it } from 'vitest';
import type { LiveFlow, LiveFlowsDocument } from '../telemetry/live-flows.js';
import { matchesFilter, parseTopFilter, renderTop, rttSplit, sortFlows, type TopState } from './top-view.js';

function flow(p: Partial<LiveFlow> & { srcPort: number }): LiveFlow {
  const src = p.srcAddr ?? '10.10.0.2';
  const dst = p.dstAddr ?? '10.20.0.2';
  return {
    key: `tcp ${src}:${p.srcPort}>${dst}:80`, state: 'open', protocol: 'tcp', src: `${src}:${p.srcPort}`, dst: `${dst}:${p.dstPort ?? 80}`,
    srcAddr: src, dstAddr: dst, dstPort: 80, direction: 'outbound', peerIdentity: 'spiffe://cluster.local/agent/cluster-a',
    sni: null, alpn: null, handshakeRttMs: null, sentBytes: 0, receivedBytes: 0, sentBytesPerSec: 0, receivedBytesPerSec: 0,
    ageMs: 1000, idleMs: 0, closeReason: null, ...p,
  };
}

function doc(flows: LiveFlow[]): LiveFlowsDocument {
  return {
    reporter: 'gateway', nowMs: Date.UTC(2026, 0, 1, 10, 23, 4), flows,
    totals: { openFlows: flows.filter((f) => f.state === 'open').length, sentBytesPerSec: 2048, receivedBytesPerSec: 1_048_576, tunnel: { sessions: 1, sentDatagrams: 1, receivedDatagrams: 1, sentBytes: 5 << 20, receivedBytes: 7 << 20 } },
    drops: { no_route: 2, policy_denied: 7 }, capture: { active: false, queuedPackets: 0, droppedPackets: 0 },
  };
}

const state = (p: Partial<TopState> = {}): TopState => ({ sort: 'rate', filter: null, paused: false, editing: null, message: null, ...p });

describe('cli: mtun top view', () => {
  it('parses filters: prefix or address, port, identity; bad ones are sentences', () => {
    expect(parseTopFilter('')).toBeNull();
    expect(parseTopFilter('10.0.0.0/8')).toMatchObject({ kind: 'prefix', prefix: { prefixLength: 8 } });
    expect(parseTopFilter('fd00:b::2')).toMatchObject({ kind: 'prefix', prefix: { version: 6, prefixLength: 128 } });
    expect(parseTopFilter(':443')).toMatchObject({ kind: 'port', port: 443 });
    expect(parseTopFilter('port:53')).toMatchObject({ kind: 'port', port: 53 });
    expect(parseTopFilter('8080')).toMatchObject({ kind: 'port', port: 8080 });
    expect(parseTopFilter('id:Cluster-A')).toMatchObject({ kind: 'identity', needle: 'cluster-a' });
    expect(parseTopFilter('cluster-c')).toMatchObject({ kind: 'identity', needle: 'cluster-c' });
    expect(parseTopFilter(':70000')).toBe('port 70000 is not 1-65535');
    expect(parseTopFilter('port:https')).toMatch(/expected a port number/);
    expect(parseTopFilter('10.0.0.0/99')).toMatch(/prefix length/);
  });

  it('filters on either end', () => {
    const f = flow({ srcPort: 40000, dstAddr: '10.20.0.9', peerIdentity: 'spiffe://x/agent/cluster-a' });
    expect(matchesFilter(parseTopFilter('10.20.0.0/24') as never, f)).toBe(true);
    expect(matchesFilter(parseTopFilter('10.10.0.2') as never, f)).toBe(true);
    expect(matchesFilter(parseTopFilter('10.30.0.0/16') as never, f)).toBe(false);
    expect(matchesFilter(parseTopFilter(':40000') as never, f)).toBe(true);
    expect(matchesFilter(parseTopFilter(':80') as never, f)).toBe(true);
    expect(matchesFilter(parseTopFilter(':81') as never, f)).toBe(false);
    expect(matchesFilter(parseTopFilter('cluster-a') as never, f)).toBe(true);
    expect(matchesFilter(parseTopFilter('cluster-b') as never, f)).toBe(false);
  });

  it('sorts by rate, bytes, rtt and age, open flows first', () => {
    const a = flow({ srcPort: 1, receivedBytesPerSec: 10, receivedBytes: 9000, handshakeRttMs: 5, ageMs: 9000 });
    const b = flow({ srcPort: 2, receivedBytesPerSec: 500, receivedBytes: 1000, handshakeRttMs: 50, ageMs: 100 });
    const c = flow({ srcPort: 3, receivedBytesPerSec: 0, receivedBytes: 99999, state: 'closed', closeReason: 'rst', ageMs: 99999 });
    const d = flow({ srcPort: 4, receivedBytes: 10, rtt: { client: { srttMs: 20 }, tunnel: 30, server: { minMs: 1, srttMs: 40 } }, ageMs: 10 });
    const order = (k: TopState['sort']) => sortFlows([a, b, c, d], k).map((f) => f.srcPort);
    expect(order('rate')).toEqual([2, 1, 4, 3]);
    expect(order('bytes')).toEqual([1, 2, 4, 3]);
    expect(order('rtt')).toEqual([4, 2, 1, 3]);
    expect(order('age')).toEqual([1, 2, 4, 3]);
    expect(rttSplit(d)).toEqual({ client: 20, tunnel: 30, server: 40 });
    expect(rttSplit(a)).toBeNull();
  });

  it('renders totals, drops, a row per flow within the terminal size, and the keys', () => {
    const flows = [
      flow({ srcPort: 40000, receivedBytesPerSec: 1_572_864, receivedBytes: 10 << 20, sni: 'api.example.com', handshakeRttMs: 12.345 }),
      flow({ srcPort: 40001, state: 'closed', closeReason: 'idle_timeout' }),
      flow({ srcPort: 40002, rtt: { client: 20.04, tunnel: { srttMs: 30.1 }, server: null } }),
    ];
    const lines = renderTop(doc(flows), state({ paused: true }), 200, 10);
    expect(lines.length).toBe(10);
    for (const l of lines) expect(l.length).toBeLessThanOrEqual(200);
    expect(lines[0]).toContain('mtun top — gateway  10:23:04  flows: 2 open  rate ↑ 2.0 KiB/s ↓ 1.0 MiB/s  tunnel ↑ 5.0 MiB ↓ 7.0 MiB  [PAUSED]');
    expect(lines[1]).toBe('drops: policy_denied=7 no_route=2');
    expect(lines[2]).toContain('sort: rate  filter: none  showing 3 of 3');
    expect(lines[4]).toMatch(/^PROTO\s+SOURCE\s+DESTINATION\s+IDENTITY\s+SNI\s+RATE\s+TOTAL/);
    expect(lines[5]).toMatch(/10\.10\.0\.2:40000 .*…local\/agent\/cluster-a .*api\.example\.com .*1\.5 MiB\/s/);
    expect(lines[5]).toMatch(/ 12\.3 /);
    expect(lines[6]).toMatch(/10\.10\.0\.2:40002 .* 20\.0\/30\.1\/- /);
    expect(lines[7]).toMatch(/10\.10\.0\.2:40001 .* idle_timeout$/);
    expect(lines[9]).toContain('q quit');
    // A small terminal shows what fits; a narrow one cuts lines.
    const small = renderTop(doc(flows), state(), 40, 7);
    expect(small.length).toBe(7);
    expect(small.filter((l) => l.includes('10.10.0.2:')).length).toBe(1);
    for (const l of small) expect(l.length).toBeLessThanOrEqual(40);
    // The filter being typed, and a message.
    const editing = renderTop(doc(flows), state({ editing: ':4000', message: 'filter: bad' }), 200, 10);
    expect(editing[2]).toContain('filter: /:4000▏');
    expect(editing[2]).toContain('! filter: bad');
  });
});
