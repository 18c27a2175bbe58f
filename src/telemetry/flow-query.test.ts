import { describe, expect, it } from 'vitest';
import { liveFlowFixture as flow } from './live-flow-fixtures.js';
import { matchesFlowFilter as matchesFilter, parseFlowFilter as parseTopFilter, parseFlowsQuery, sortFlows, type SortKey } from './flow-query.js';

describe('telemetry: live flow queries (filter, sort)', () => {
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
    // Outbound, with RTT samples: its whole round trip is its client segment (20) + beyond the tunnel (70) = 90.
    const d = flow({ srcPort: 4, receivedBytes: 10, ageMs: 10, rttToClient: { minMs: 19, smoothedMs: 20, maxMs: 21, samples: 5 },
      rttToServer: { minMs: 60, smoothedMs: 70, maxMs: 80, samples: 5 }, rtt: { client: 20, tunnel: 30, server: 40 } });
    // Inbound (this end on the server's side), no tunnel RTT: server segment 10 + beyond 30 = 40, below b's handshake 50.
    const e = flow({ srcPort: 5, receivedBytes: 5, ageMs: 5, direction: 'inbound', rttToClient: { minMs: 30, smoothedMs: 30, maxMs: 30, samples: 1 },
      rttToServer: { minMs: 10, smoothedMs: 10, maxMs: 10, samples: 1 }, rtt: { client: null, tunnel: null, server: 10 } });
    const order = (k: SortKey) => sortFlows([a, b, c, d, e], k).map((f) => f.srcPort);
    expect(order('rate')).toEqual([2, 1, 4, 5, 3]);
    expect(order('bytes')).toEqual([1, 2, 4, 5, 3]);
    expect(order('rtt')).toEqual([4, 2, 5, 1, 3]);
    expect(order('age')).toEqual([1, 2, 4, 5, 3]);
  });


  it('parses the /flows query: sort, filter, limit; bad ones are sentences', () => {
    expect(parseFlowsQuery(new URLSearchParams(''))).toMatchObject({ sort: 'rate', filter: null, limit: 1000 });
    expect(parseFlowsQuery(new URLSearchParams('sort=age&filter=:443&limit=20'))).toMatchObject({ sort: 'age', filter: { kind: 'port', port: 443 }, limit: 20 });
    expect(parseFlowsQuery(new URLSearchParams('sort=size'))).toMatch(/sort: expected one of rate, bytes, rtt, age/);
    expect(parseFlowsQuery(new URLSearchParams('filter=:0'))).toMatch(/filter: port 0 is not 1-65535/);
    expect(parseFlowsQuery(new URLSearchParams('limit=0'))).toMatch(/limit: expected an integer 1-10000/);
    expect(parseFlowsQuery(new URLSearchParams('limit=2x'))).toMatch(/limit: expected an integer/);
    expect(parseFlowsQuery(new URLSearchParams('top=1'))).toMatch(/unknown parameter "top"/);
  });
});
