import { describe, expect, it } from 'vitest';
import type { Clock } from '../daemon/ports.js';
import { backoffDelayMs, IMMEDIATE_RECONNECT_SPACING_MS, Reconnector } from './reconnect.js';

const C = { minDelayMs: 250, maxDelayMs: 30_000, jitter: 0.2 };

describe('backoffDelayMs', () => {
  it('doubles from the minimum and stops at the maximum (no jitter at random = 0.5)', () => {
    expect([0, 1, 2, 3, 6, 7, 20, 1000].map((a) => backoffDelayMs(a, C, 0.5))).toEqual([250, 500, 1000, 2000, 16_000, 30_000, 30_000, 30_000]);
  });

  it('spreads by ±jitter and never goes negative', () => {
    expect(backoffDelayMs(0, C, 0)).toBe(200);
    expect(backoffDelayMs(0, C, 0.999999)).toBe(300);
    expect(backoffDelayMs(0, { ...C, jitter: 1 }, 0)).toBe(0);
  });
});

describe('Reconnector', () => {
  it('schedules one attempt at a time, grows the delay, and resets after success', () => {
    const delays: number[] = [];
    const fire: Array<() => void> = [];
    const clock: Clock = {
      now: () => 0,
      after: (ms, fn) => { delays.push(ms); fire.push(fn); return { cancel: () => undefined }; },
      every: () => ({ cancel: () => undefined }),
    };
    let runs = 0;
    const r = new Reconnector(C, clock, () => runs++, () => 0.5);
    expect(r.schedule()).toBe(250);
    expect(r.schedule()).toBe(-1); // one waits already
    fire.shift()!();
    expect(runs).toBe(1);
    expect(r.schedule()).toBe(500);
    fire.shift()!();
    r.succeeded();
    expect(r.schedule()).toBe(250);
    expect(delays).toEqual([250, 500, 250]);
  });

  it('after a stateless reset (RFC 9000 §10.3) reconnects at once, but only first after a success and once per spacing', () => {
    let now = 1_000_000;
    const delays: number[] = [];
    const fire: Array<() => void> = [];
    const clock: Clock = {
      now: () => now,
      after: (ms, fn) => { delays.push(ms); fire.push(fn); return { cancel: () => undefined }; },
      every: () => ({ cancel: () => undefined }),
    };
    const r = new Reconnector(C, clock, () => undefined, () => 0.5);
    expect(r.schedule(true)).toBe(0);
    fire.shift()!();
    expect(r.schedule(true)).toBe(500); // the immediate attempt failed: back off as usual
    fire.shift()!();
    r.succeeded();
    now += IMMEDIATE_RECONNECT_SPACING_MS - 1;
    expect(r.schedule(true)).toBe(250); // reset again too soon: no spinning
    fire.shift()!();
    r.succeeded();
    now += 1;
    expect(r.schedule(true)).toBe(0);
  });
});
