import { describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { MemoryKernel } from './memory-kernel.js';
import { systemClock, type Clock } from './ports.js';
import { ROUTE_RETRY_MS, RouteSync } from './route-sync.js';

const silent = pino({ level: 'silent' });

/** A clock whose `after` timers fire only when the test says so. */
function manualClock(): Clock & { fire(): void; pending: number } {
  let timers: Array<() => void> = [];
  return {
    now: () => 0,
    after(_ms, fn) {
      timers.push(fn);
      return { cancel: () => { timers = timers.filter((t) => t !== fn); } };
    },
    every: systemClock.every,
    get pending() { return timers.length; },
    fire() {
      const t = timers;
      timers = [];
      for (const f of t) f();
    },
  };
}

describe('RouteSync', () => {
  it('a release followed by another owner taking the prefix ends with the route installed, owned by the new owner', async () => {
    const k = new MemoryKernel();
    const rs = new RouteSync('t0', k, systemClock, silent);
    const a = {};
    const b = {};
    await rs.set(a, ['10.1.0.0/24']);
    const p1 = rs.set(a, []);
    const p2 = rs.set(b, ['10.1.0.0/24']);
    await Promise.all([p1, p2]);
    expect(k.routesVia('t0')).toEqual(['10.1.0.0/24']);
    expect(rs.routesOf(b)).toEqual(['10.1.0.0/24']);
    expect(rs.routesOf(a)).toEqual([]);
  });

  // #12 item 3: on the old RouteSync (one `ip` run per route per change, queued
  // serially) these 10,000 toggles queued 10,000 kernel runs.
  it('10,000 advertisement toggles make a bounded number of batches and end in the right state', async () => {
    const k = new MemoryKernel();
    const rs = new RouteSync('t0', k, systemClock, silent);
    const flapper = {};
    const steady = {};
    const done: Promise<void>[] = [rs.set(steady, ['10.9.0.0/24'])];
    for (let i = 0; i < 10_000; i++) done.push(rs.set(flapper, i % 2 === 0 ? ['10.1.0.0/24', '10.2.0.0/24'] : ['10.3.0.0/24']));
    await Promise.all(done);
    // Last state wanted: odd i → 10.3.0.0/24.
    expect(k.routesVia('t0')).toEqual(['10.3.0.0/24', '10.9.0.0/24']);
    expect(rs.routesOf(flapper)).toEqual(['10.3.0.0/24']);
    expect(k.batches).toBeLessThanOrEqual(2);
    expect(k.lines).toBeLessThanOrEqual(4);
  });

  it('retries failed lines on a timer, without waiting for the next change', async () => {
    const k = new MemoryKernel();
    let failing = true;
    k.failLine = (l) => (failing && l.includes('10.2.0.0/24') ? 'RTNETLINK answers: Network is down' : null);
    const clock = manualClock();
    const rs = new RouteSync('t0', k, clock, silent);
    const o = {};
    await rs.set(o, ['10.2.0.0/24', '10.3.0.0/24']);
    expect(k.routesVia('t0')).toEqual(['10.3.0.0/24']);
    expect(clock.pending).toBe(1);
    failing = false;
    clock.fire();
    await new Promise((r) => setTimeout(r, 20));
    expect(k.routesVia('t0')).toEqual(['10.2.0.0/24', '10.3.0.0/24']);
    expect(rs.routesOf(o).sort()).toEqual(['10.2.0.0/24', '10.3.0.0/24']);
    expect(clock.pending).toBe(0);
    expect(ROUTE_RETRY_MS).toBeGreaterThan(0);
  });

  it('adopts a route left behind by an earlier run (replace, not add)', async () => {
    const k = new MemoryKernel();
    k.routes.add('10.4.0.0/24 dev t0');
    const rs = new RouteSync('t0', k, systemClock, silent);
    await rs.set({}, ['10.4.0.0/24']);
    expect(k.routesVia('t0')).toEqual(['10.4.0.0/24']);
    expect(rs.installedRoutes()).toEqual(['10.4.0.0/24']);
  });

  it('does nothing after close', async () => {
    const k = new MemoryKernel();
    const rs = new RouteSync('t0', k, systemClock, silent);
    rs.close();
    await expect(rs.set({}, ['10.5.0.0/24'])).resolves.toBeUndefined();
    expect(k.batches).toBe(0);
  });
});
