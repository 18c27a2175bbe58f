import { afterEach, describe, expect, it, vi } from 'vitest';
import { startAdminServer, type AdminServer } from '../telemetry/admin-server.js';
import { Telemetry } from '../telemetry/telemetry.js';
import { main } from './main.js';

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

describe('cli: mtun top --once', () => {
  it('prints a table or the filtered, sorted, limited JSON; bad arguments exit 2, an unreachable daemon 1', async () => {
    const t = new Telemetry({ reporter: 'agent', workloads: [], flowLog: null, processMetrics: false });
    for (let i = 0; i < 4; i++) {
      const h = t.onFlowOpen({ protocol: 6, srcAddr: '10.10.0.2', srcPort: 50000 + i, dstAddr: '10.20.0.2', dstPort: i === 3 ? 22 : 443, peerIdentity: 'gateway', direction: 'outbound', firstSeenMs: Date.now() - 5000 });
      t.onFlowDelta(h, 100, 1000 * (i + 1), 1, 1, 0, Date.now());
    }
    const s = await startAdminServer({ host: '127.0.0.1', port: 0, registry: t.registry, telemetry: t });
    servers.push(s);
    const table = await run(['top', '--once', '--admin', s.url, '--sort', 'bytes']);
    expect(table.code, table.err).toBe(0);
    const rows = table.out.split('\n').filter((l) => l.startsWith('tcp '));
    expect(rows.map((l) => /:(5000\d)/.exec(l)![1])).toEqual(['50003', '50002', '50001', '50000']);
    expect(table.out).toContain('mtun top — agent');
    expect(table.out).not.toContain('q quit');
    const json = await run(['top', '--once', '--json', '--admin', s.url, '--filter', ':443', '--sort', 'bytes', '--limit', '2']);
    const doc = JSON.parse(json.out) as { flows: { srcPort: number }[]; matchedFlows: number; totalFlows: number };
    expect(doc.flows.map((f) => f.srcPort)).toEqual([50002, 50001]);
    expect([doc.matchedFlows, doc.totalFlows]).toEqual([3, 4]);
    for (const [args, msg] of [
      [['--sort', 'size'], "argument 'size' is invalid. Allowed choices are rate, bytes, rtt, age"],
      [['--json'], '--json needs --once'],
      [['--once', '--limit', '0'], '--limit must be an integer 1-10000'],
      [['--once', '--interval-ms', '50'], '--interval-ms must be an integer ≥ 200'],
      [['--once', '--filter', '10.0.0.0/33'], '--filter: expected a prefix length 0-32'],
      [['--once', '--admin', 'http://[zz'], 'is not a URL'],
    ] as const) {
      const r = await run(['top', ...args]);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.err).toContain(msg);
    }
    const gone = await run(['top', '--once', '--admin', '127.0.0.1:1']);
    expect(gone.code).toBe(1);
    expect(gone.err).toContain('no daemon is answering at http://127.0.0.1:1');
  });
});
