import { Registry } from 'prom-client';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { parsePrefix } from '../packet/ip-address.js';
import { startAdminServer, type AdminServer } from '../telemetry/admin-server.js';
import type { DaemonStatus } from '../telemetry/status.js';
import { Telemetry } from '../telemetry/telemetry.js';
import { main } from './main.js';
import { bytes, duration } from './status-command.js';

const servers: AdminServer[] = [];
afterEach(async () => {
  vi.restoreAllMocks();
  process.exitCode = undefined;
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

async function run(args: string[]): Promise<{ out: string; err: string; code: number }> {
  let out = '';
  let err = '';
  vi.spyOn(process.stdout, 'write').mockImplementation((s: string | Uint8Array) => { out += String(s); return true; });
  vi.spyOn(process.stderr, 'write').mockImplementation((s: string | Uint8Array) => { err += String(s); return true; });
  process.exitCode = undefined;
  await main(['node', 'mtun', ...args]);
  const code = Number(process.exitCode ?? 0);
  vi.restoreAllMocks();
  return { out, err, code };
}

async function daemon(): Promise<AdminServer> {
  const t = new Telemetry({ reporter: 'gateway', workloads: [{ prefix: parsePrefix('10.2.0.0/16')!, name: 'cluster-b' }], flowLog: null, processMetrics: false, registry: new Registry() });
  const h = t.onFlowOpen({ protocol: 6, srcAddr: '10.1.0.5', srcPort: 40000, dstAddr: '10.2.0.10', dstPort: 80, peerIdentity: 'spiffe://cluster.local/agent/a', direction: 'inbound', firstSeenMs: Date.now() - 65_000 });
  t.onFlowDelta(h, 10_485_760, 2048, 10, 5, 0, Date.now());
  const status = (): DaemonStatus => ({
    reporter: 'gateway', version: '0.1.0', uptimeSeconds: 3725, ready: true,
    addresses: [{ interface: 'mtun-gw0', address: '10.200.0.1/24' }],
    sessions: [{ id: 'c1/s0', kind: 'connect-ip', peerIdentity: 'spiffe://cluster.local/agent/a', remote: '192.0.2.10:51000', state: 'open', addresses: ['10.200.0.2/32'], routes: ['10.1.0.0/16'], since: '2026-01-01T00:00:00.000Z', sentBytes: 1536, receivedBytes: 10_500_000 }],
    topFlows: t.topFlows(10),
  });
  const s = await startAdminServer({ host: '127.0.0.1', port: 0, registry: t.registry, status });
  servers.push(s);
  return s;
}

describe('cli: mtun status', () => {
  it('prints sessions, addresses and top flows as tables', async () => {
    const s = await daemon();
    const r = await run(['status', '--admin', s.url]);
    expect(r.code).toBe(0);
    expect(r.err).toBe('');
    expect(r.out).toContain('mtun gateway 0.1.0  up 1h02m  ready');
    expect(r.out).toMatch(/Addresses \(1\)\n\s+INTERFACE\s+ADDRESS\n\s+mtun-gw0\s+10\.200\.0\.1\/24/);
    expect(r.out).toMatch(/c1\/s0\s+connect-ip\s+spiffe:\/\/cluster\.local\/agent\/a\s+192\.0\.2\.10:51000\s+open\s+10\.200\.0\.2\/32\s+10\.1\.0\.0\/16\s+1\.5 KiB\s+10\.0 MiB/);
    expect(r.out).toMatch(/tcp\s+10\.1\.0\.5:40000\s+10\.2\.0\.10:80\s+inbound\s+spiffe:\/\/cluster\.local\/agent\/a\s+10\.0 MiB\s+2\.0 KiB\s+1m0[45]s/);
  });

  it('--json prints the raw document', async () => {
    const s = await daemon();
    const r = await run(['status', '--admin', s.url.replace('http://', ''), '--json']);
    expect(r.code).toBe(0);
    const doc = JSON.parse(r.out) as DaemonStatus;
    expect(doc.sessions[0]!.id).toBe('c1/s0');
    expect(doc.topFlows[0]!.sentBytes).toBe(10_485_760);
  });

  it('says clearly when no daemon is running (exit 1)', async () => {
    const s = await daemon();
    const port = s.port;
    await s.close();
    const r = await run(['status', '--admin', `http://127.0.0.1:${port}`]);
    expect(r.code).toBe(1);
    expect(r.err).toBe(`mtun status: no daemon is answering at http://127.0.0.1:${port} (connection refused) — is mtun gateway/agent running, with admin.listen at this address?\n`);
  });

  it('rejects a non-mtun endpoint and a bad URL', async () => {
    const reg = new Registry();
    const s = await startAdminServer({ host: '127.0.0.1', port: 0, registry: reg }); // no status callback → 404
    servers.push(s);
    const r = await run(['status', '--admin', s.url]);
    expect(r.code).toBe(1);
    expect(r.err).toContain('answered HTTP 404 (is this an mtun admin endpoint?)');
    const bad = await run(['status', '--admin', 'http://[zz']);
    expect(bad.code).toBe(2);
    expect(bad.err).toContain('error: --admin "http://[zz" is not a URL');
  });

  it('formats bytes and durations', () => {
    expect([bytes(0), bytes(1023), bytes(1536), bytes(10 * 1024 * 1024)]).toEqual(['0 B', '1023 B', '1.5 KiB', '10.0 MiB']);
    expect([duration(850), duration(12_000), duration(184_000), duration(7_500_000), duration(3 * 86_400_000 + 4 * 3_600_000)]).toEqual(['850ms', '12s', '3m04s', '2h05m', '3d04h']);
  });
});
