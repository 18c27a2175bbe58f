/**
 * The agent's QUIC liveness verdict (issue #15): when the fallback to HTTP/2
 * starts, and when it must not.
 */
import { describe, expect, it } from 'vitest';
import { newQuicLiveness, quicLooksDead, quicPingDue, type QuicPacketCounts } from './carrier.js';

type Counts = Omit<QuicPacketCounts, 'inFlight'> & Partial<Pick<QuicPacketCounts, 'inFlight'>>;
const full = (c: Counts): QuicPacketCounts => ({ inFlight: 0, ...c });

/** Feeds (sent, recv, lost, inFlight) every 250 ms from t=0; returns the first time judged dead, or -1. */
function run(steps: number, at: (i: number) => Counts, deadAfterMs = 1_500): number {
  const l = newQuicLiveness();
  for (let i = 0; i < steps; i++) if (quicLooksDead(l, full(at(i)), i * 250, deadAfterMs)) return i * 250;
  return -1;
}

describe('quicLooksDead', () => {
  it('a path that drops UDP both ways is dead once nothing arrived for deadAfterMs while packets went out', () => {
    // Healthy until step 8 (2 s), then sends keep going and nothing arrives.
    const t = run(40, (i) => ({ sent: 10 * i, recv: 10 * Math.min(i, 8), lost: 0 }));
    expect(t).toBe(2_000 + 1_500);
  });

  it('an idle tunnel (nothing sent, nothing received) is never judged, nor a lone ACK left unanswered (RFC 9000 §13.2.1)', () => {
    expect(run(400, () => ({ sent: 5, recv: 5, lost: 0 }))).toBe(-1);
    expect(run(400, (i) => ({ sent: i < 4 ? 5 : 7, recv: 5, lost: 0 }))).toBe(-1);
  });

  it('a stalled event loop (checks 2 s apart) is not mistaken for a dead path', () => {
    const l = newQuicLiveness();
    expect(quicLooksDead(l, full({ sent: 10, recv: 10, lost: 0, inFlight: 40 }), 0, 1_000)).toBe(false);
    expect(quicLooksDead(l, full({ sent: 10, recv: 10, lost: 0, inFlight: 40 }), 2_000, 1_000)).toBe(false);
    expect(quicLooksDead(l, full({ sent: 11, recv: 11, lost: 0, inFlight: 40 }), 2_250, 1_000)).toBe(false);
  });

  it('ordinary and heavy loss (1 %, 30 %) with ACKs still arriving is not judged', () => {
    expect(run(400, (i) => ({ sent: 100 * i, recv: 90 * i, lost: Math.floor(i) }))).toBe(-1);
    expect(run(400, (i) => ({ sent: 100 * i, recv: 60 * i, lost: 30 * i }))).toBe(-1);
  });

  it('nearly everything sent declared lost over the window, while packets still arrive, is dead (throttled towards the gateway)', () => {
    const t = run(40, (i) => ({ sent: 100 * i, recv: 50 * i, lost: i < 8 ? 0 : 100 * (i - 8) }));
    expect(t).toBeGreaterThan(2_000);
    expect(t).toBeLessThanOrEqual(2_000 + 1_500 + 500);
  });

  it('silence with an ack-eliciting packet unanswered in flight is dead, even with fewer than 3 packets sent (UDP dropped towards the gateway, the agent sending only ACKs and a PING)', () => {
    // The gateway's stream arrives until step 8 (2 s), then stops (its congestion window full of packets the agent's ACKs never acknowledged);
    // the agent's PING (40 bytes), sent after that last check, stays in flight from step 9 on, and it sends nothing else. The silence counts from the PING.
    const t = run(40, (i) => ({ sent: 3 * Math.min(i, 8) + (i >= 9 ? 1 : 0), recv: 50 * Math.min(i, 8), lost: 0, inFlight: i >= 9 ? 40 : 0 }));
    expect(t).toBe(2_250 + 1_500);
    // In flight already when the last packet arrived: the silence counts from then.
    expect(run(40, (i) => ({ sent: 3 * Math.min(i, 8), recv: 50 * Math.min(i, 8), lost: 0, inFlight: i >= 7 ? 40 : 0 }))).toBe(2_000 + 1_500);
  });

  it('an idle tunnel whose keepalive PING is answered is not judged; nor packets in flight while packets arrive', () => {
    // Keepalive every 5 s: a PING in flight for one check, then its ACK arrives.
    expect(run(400, (i) => ({ sent: 5 + Math.floor(i / 20), recv: 5 + Math.floor((i - 1) / 20), lost: 0, inFlight: i % 20 === 0 ? 40 : 0 }))).toBe(-1);
    // Bulk both ways: always something in flight, and the gateway's packets keep coming.
    expect(run(400, (i) => ({ sent: 100 * i, recv: 80 * i, lost: 0, inFlight: 60_000 }))).toBe(-1);
    // A keepalive PING sent after a long silence: in flight from this check, so the silence before it does not count.
    const l = newQuicLiveness();
    expect(quicLooksDead(l, full({ sent: 5, recv: 5, lost: 0 }), 0, 1_000)).toBe(false);
    expect(quicLooksDead(l, full({ sent: 5, recv: 5, lost: 0 }), 4_750, 1_000)).toBe(false);
    expect(quicLooksDead(l, full({ sent: 6, recv: 5, lost: 0, inFlight: 40 }), 5_000, 1_000)).toBe(false);
    expect(quicLooksDead(l, full({ sent: 6, recv: 6, lost: 0 }), 5_250, 1_000)).toBe(false);
  });
});

describe('quicPingDue (RFC 9000 §13.2.4)', () => {
  it('a tunnel that only receives sends one PING per half window while nothing is in flight; never when idle or with something in flight', () => {
    const l = newQuicLiveness();
    const pings: number[] = [];
    for (let i = 0; i < 40; i++) {
      const now = i * 250;
      // 0-2.5 s receiving, nothing in flight; 2.5-5 s receiving with data in flight; 5-10 s idle.
      const c = full({ sent: 10, recv: Math.min(i, 20) * 10, lost: 0, inFlight: i >= 10 && i < 20 ? 1200 : 0 });
      if (quicPingDue(l, c, now, 1_000)) pings.push(now);
    }
    expect(pings).toEqual([0, 500, 1_000, 1_500, 2_000, 5_000]);
  });
});
