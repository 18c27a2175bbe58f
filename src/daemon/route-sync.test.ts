import { describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { RouteSync, type RouteTarget } from './route-sync.js';

/** An in-memory TUN route table that fails on demand, with a delay so calls would overlap if not serialised. */
function fakeTun(failAdd = new Set<string>()): RouteTarget & { routes: Set<string>; log: string[] } {
  const routes = new Set<string>();
  const log: string[] = [];
  const tick = () => new Promise((r) => setTimeout(r, 2));
  return {
    name: 't0', closed: false, routes, log,
    async addRoutes(rs) {
      await tick();
      for (const r of rs) {
        if (routes.has(r) || failAdd.has(r)) throw new Error(`tun: RTNETLINK answers: File exists (${r})`);
        routes.add(r);
        log.push(`add ${r}`);
      }
    },
    async removeRoutes(rs) {
      await tick();
      for (const r of rs) {
        if (!routes.delete(r)) throw new Error('tun: RTNETLINK answers: No such process');
        log.push(`del ${r}`);
      }
    },
  };
}

const silent = pino({ level: 'silent' });

describe('RouteSync', () => {
  it('applies changes in call order: a release followed by another owner taking the prefix ends with the route installed', async () => {
    const tun = fakeTun();
    const rs = new RouteSync(tun, silent);
    const a = {};
    const b = {};
    await rs.set(a, ['10.1.0.0/24']);
    // Not awaited in between: a session closes while another advertises the same prefix.
    const p1 = rs.set(a, []);
    const p2 = rs.set(b, ['10.1.0.0/24']);
    await Promise.all([p1, p2]);
    expect([...tun.routes]).toEqual(['10.1.0.0/24']);
    expect(rs.routesOf(b)).toEqual(['10.1.0.0/24']);
    expect(tun.log).toEqual(['add 10.1.0.0/24', 'del 10.1.0.0/24', 'add 10.1.0.0/24']);
  });

  it('keeps going after one route fails and retries it on the next change', async () => {
    const fail = new Set(['10.2.0.0/24']);
    const tun = fakeTun(fail);
    const rs = new RouteSync(tun, silent);
    const o = {};
    await rs.set(o, ['10.2.0.0/24', '10.3.0.0/24']);
    expect([...tun.routes]).toEqual(['10.3.0.0/24']);
    expect(rs.routesOf(o)).toEqual(['10.3.0.0/24']);
    fail.clear();
    await rs.set(o, ['10.2.0.0/24', '10.3.0.0/24']);
    expect([...tun.routes].sort()).toEqual(['10.2.0.0/24', '10.3.0.0/24']);
  });

  it('never rejects, and does nothing once the TUN is closed', async () => {
    const tun = { ...fakeTun(), closed: true };
    const rs = new RouteSync(tun, silent);
    await expect(rs.set({}, ['10.4.0.0/24'])).resolves.toBeUndefined();
    expect(tun.routes.size).toBe(0);
  });
});
