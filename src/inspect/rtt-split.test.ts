// The latency split of one TCP flow (issue #16): across ends from two
// records, and from one end with the tunnel taken from QUIC's smoothed RTT
// (RFC 9002 §5.3).
import { describe, expect, it } from 'vitest';
import type { FlowRecord, RttStats } from './flow-record.js';
import { splitRtt, splitRttAtOneEnd } from './rtt-split.js';

const r = (minMs: number, smoothedMs: number, maxMs: number): RttStats => ({ minMs, smoothedMs, maxMs, samples: 10 });
const rec = (flowId: string, toClient: RttStats | null, toServer: RttStats | null) => ({ flowId, rttToClient: toClient, rttToServer: toServer }) as FlowRecord;

describe('inspect: RTT split', () => {
  it('across ends: each end its own segment, the tunnel the mean of the two differences', () => {
    // client 20, tunnel 30 (31 seen via the server data, 29 via the client data), server 5.
    const clientEnd = rec('ab', r(20, 21, 30), r(36, 38, 50));
    const serverEnd = rec('ab', r(49, 50, 70), r(5, 6, 9));
    expect(splitRtt(clientEnd, serverEnd)).toEqual({
      client: { minMs: 20, smoothedMs: 21, maxMs: 30 },
      tunnel: { minMs: 30, smoothedMs: 30.5, maxMs: 40.5 },
      server: { minMs: 5, smoothedMs: 6, maxMs: 9 },
    });
    expect(() => splitRtt(clientEnd, rec('cd', null, null))).toThrow(/inspect: records of different flows/);
  });

  it('from one end with QUIC\'s tunnel RTT: the far segment is beyond the tunnel minus the tunnel, never below 0', () => {
    const quic = r(30, 31, 33);
    // The end on the client's side: rttToServer = tunnel + server.
    expect(splitRttAtOneEnd(r(20, 21, 30), r(36, 38, 50), quic, true)).toEqual({
      client: { minMs: 20, smoothedMs: 21, maxMs: 30 },
      tunnel: { minMs: 30, smoothedMs: 31, maxMs: 33 },
      server: { minMs: 6, smoothedMs: 7, maxMs: 17 },
    });
    // The end on the server's side: rttToClient = tunnel + client; QUIC above the TCP view clamps at 0.
    expect(splitRttAtOneEnd(r(29, 50, 70), r(5, 6, 9), quic, false)).toEqual({
      client: { minMs: 0, smoothedMs: 19, maxMs: 37 },
      tunnel: { minMs: 30, smoothedMs: 31, maxMs: 33 },
      server: { minMs: 5, smoothedMs: 6, maxMs: 9 },
    });
    // No tunnel RTT (HTTP/2): only this end's own segment.
    expect(splitRttAtOneEnd(r(20, 21, 30), r(36, 38, 50), null, true)).toEqual({ client: { minMs: 20, smoothedMs: 21, maxMs: 30 }, tunnel: null, server: null });
  });
});
