/**
 * The agent's QUIC liveness verdict (issue #15): when the fallback to HTTP/2
 * starts, and when it must not.
 */
import { describe, expect, it } from 'vitest';
import { newQuicLiveness, quicLooksDead } from './carrier.js';

/** Feeds (sent, recv, lost) every 250 ms from t=0; returns the first time judged dead, or -1. */
function run(steps: number, at: (i: number) => { sent: number; recv: number; lost: number }, deadAfterMs = 1_500): number {
  const l = newQuicLiveness();
  for (let i = 0; i < steps; i++) if (quicLooksDead(l, at(i), i * 250, deadAfterMs)) return i * 250;
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
    expect(quicLooksDead(l, { sent: 10, recv: 10, lost: 0 }, 0, 1_000)).toBe(false);
    expect(quicLooksDead(l, { sent: 40, recv: 10, lost: 0 }, 2_000, 1_000)).toBe(false);
    expect(quicLooksDead(l, { sent: 41, recv: 11, lost: 0 }, 2_250, 1_000)).toBe(false);
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
});
