import { Registry, Counter } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { startAdminServer, type AdminServer, type Readiness } from './admin-server.js';

const servers: AdminServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

async function start(ready: () => Readiness, status?: () => unknown): Promise<{ s: AdminServer; reg: Registry }> {
  const reg = new Registry();
  const c = new Counter({ name: 'mtun_test_total', help: 'test', registers: [reg] });
  c.inc(3);
  const s = await startAdminServer({ host: '127.0.0.1', port: 0, registry: reg, readiness: ready, status });
  servers.push(s);
  return { s, reg };
}

describe('telemetry: admin server', () => {
  it('serves /metrics, /healthz, /readyz and /status', async () => {
    let ready: Readiness = { ready: false, reason: 'no session to the gateway' };
    const { s } = await start(() => ready, () => ({ reporter: 'agent', sessions: [] }));
    expect(s.url).toBe(`http://127.0.0.1:${s.port}`);
    const m = await fetch(`${s.url}/metrics`);
    expect(m.status).toBe(200);
    expect(m.headers.get('content-type')).toContain('text/plain');
    expect(await m.text()).toContain('mtun_test_total 3');
    expect((await fetch(`${s.url}/healthz`)).status).toBe(200);
    const nr = await fetch(`${s.url}/readyz`);
    expect(nr.status).toBe(503);
    expect(await nr.text()).toBe('not ready: no session to the gateway\n');
    ready = { ready: true };
    expect((await fetch(`${s.url}/readyz`)).status).toBe(200);
    const st = await fetch(`${s.url}/status`);
    expect(st.headers.get('content-type')).toBe('application/json');
    expect(await st.json()).toEqual({ reporter: 'agent', sessions: [] });
  });

  it('answers 404, 405 and 500 instead of crashing', async () => {
    const { s } = await start(() => ({ ready: true }), () => { throw new Error('status exploded'); });
    expect((await fetch(`${s.url}/nope`)).status).toBe(404);
    const post = await fetch(`${s.url}/metrics`, { method: 'POST', body: 'x' });
    expect(post.status).toBe(405);
    expect(post.headers.get('allow')).toBe('GET, HEAD');
    const err = await fetch(`${s.url}/status`);
    expect(err.status).toBe(500);
    expect(await err.text()).toBe('telemetry: status exploded\n');
    expect((await fetch(`${s.url}/healthz`)).status).toBe(200); // still alive
  });

  it('rejects with a clear error when the port is taken', async () => {
    const { s } = await start(() => ({ ready: true }));
    await expect(startAdminServer({ host: '127.0.0.1', port: s.port, registry: new Registry() }))
      .rejects.toThrow(`telemetry: admin listen 127.0.0.1:${s.port}: EADDRINUSE`);
  });

  it('close() is idempotent and stops serving', async () => {
    const { s } = await start(() => ({ ready: true }));
    await Promise.all([s.close(), s.close()]);
    await expect(fetch(`${s.url}/healthz`)).rejects.toThrow();
  });
});
