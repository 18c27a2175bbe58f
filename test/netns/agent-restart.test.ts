/**
 * An agent killed with SIGKILL and started again gets its site back at once
 * (docs/RELIABILITY.md, crash and restart). Before the fix its old session
 * held the site routes until the QUIC idle timeout, the new session's
 * ROUTE_ADVERTISEMENT was refused as route-conflict, and when the old session
 * finally closed the routes left with it: the site never came back.
 *
 *   client 10.10.0.2 ── agent ══ QUIC/UDP 192.0.2.1 → 192.0.2.2 ══ gateway ── server 10.20.0.2
 *                       (SIGKILL, restart)
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LAB, Lab } from '../../src/lab/lab.js';

const root = process.getuid?.() === 0;
if (!root) console.warn('SKIPPED test/netns/agent-restart.test.ts: needs root (network namespaces, TUN devices)');

/** Restarts measured (bounded: each waits at most RESUME_LIMIT_MS for traffic). */
const RESTARTS = 3;
const RESUME_LIMIT_MS = 15_000;

describe.skipIf(!root)('agent SIGKILL and restart (netns, real daemons)', () => {
  let lab: Lab;

  beforeAll(async () => {
    // The agent's data path on the event loop (tun.thread: false): the other labs run the default, the TUN thread.
    lab = await Lab.up({ prefix: `mar${process.pid % 10000}`, agentTunThread: false });
    await lab.startServers();
    await lab.startGateway();
    await lab.startAgent('agent');
  }, 90_000);

  afterAll(async () => {
    await lab?.down();
  }, 30_000);

  const ping = async () => (await lab.exec('client', 'ping', ['-c', '1', '-W', '1', LAB.server.v4])).code === 0;
  const connectIpSessions = async () =>
    (JSON.parse((await lab.admin('gw', LAB.gatewayAdmin, '/status')).stdout) as { sessions: { id: string; kind: string; routes: string[] }[] }).sessions.filter((s) => s.kind === 'connect-ip');

  it(`traffic resumes within 2 s of the restarted agent being up, ${RESTARTS} times; no route or TUN is left behind`, async () => {
    await lab.waitFor(ping, 10_000, 'traffic before the first kill');
    for (let i = 0; i < RESTARTS; i++) {
      expect(await lab.stop('agent', 'SIGKILL')).toBe(null);
      const spawned = Date.now();
      await lab.startAgent('agent');
      const ready = Date.now();
      let ok = false;
      while (!ok && Date.now() - ready < RESUME_LIMIT_MS) ok = await ping();
      const resumed = Date.now();
      console.log(`restart ${i + 1}: agent ready ${ready - spawned} ms after spawn; traffic ${resumed - ready} ms after ready`);
      expect(ok).toBe(true);
      expect(resumed - ready).toBeLessThan(2_000 + 1_000); // 2 s, plus one ping timeout of slack on a loaded box
      // Exactly one CONNECT-IP session holds the site; the kernel has one route for it, through the gateway TUN.
      const sessions = await connectIpSessions();
      expect(sessions.flatMap((s) => s.routes).filter((r) => r === '10.10.0.0/24')).toEqual(['10.10.0.0/24']);
      const routes = (await lab.exec('gw', 'ip', ['-4', 'route', 'show', '10.10.0.0/24'])).stdout.trim().split('\n').filter((l) => l !== '');
      expect(routes.length).toBe(1);
      expect(routes[0]).toContain('dev mtun-g');
      // The killed agent's TUN went with its process: one agent TUN in its namespace.
      const links = JSON.parse((await lab.exec('agent', 'ip', ['-j', 'link', 'show', 'type', 'tun'])).stdout || '[]') as { ifname: string }[];
      expect(links.length).toBe(1);
    }
    const log = lab.file('gateway.log');
    const { readFileSync } = await import('node:fs');
    expect(readFileSync(log, 'utf8').split('session superseded').length - 1).toBeGreaterThanOrEqual(RESTARTS);
  }, 120_000);
});
