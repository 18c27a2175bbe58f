import { existsSync, mkdtempSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { main } from './main.js';

afterEach(() => {
  vi.restoreAllMocks();
  process.exitCode = undefined;
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

describe('cli: mtun certs', () => {
  it('writes the CA, gateway and the named agents', async () => {
    const dir = join(mkdtempSync(join(tmpdir(), 'mtun-certs-cli-')), 'out');
    const r = await run(['certs', '--out', dir, '--agents', 'east,west', '--trust-domain', 'mesh.test', '--gateway-san', 'gw.mesh.test']);
    expect(r.code).toBe(0);
    expect(r.out).toContain(`created a new CA in ${dir}`);
    expect(r.out).toContain('URI:spiffe://mesh.test/agent/east');
    expect(r.out).toContain('DNS:gw.mesh.test');
    for (const f of ['ca.pem', 'gateway.pem', 'agent-east.pem', 'agent-west-key.pem']) expect(existsSync(join(dir, f))).toBe(true);
    expect(existsSync(join(dir, 'agent-cluster-a.pem'))).toBe(false); // --agents replaces the default
    expect(statSync(join(dir, 'agent-west-key.pem')).mode & 0o777).toBe(0o600);
  });

  it('bad arguments exit 2 with the reason', async () => {
    const r = await run(['certs', '--out', join(tmpdir(), 'never'), '--agents', 'a/b', '--days', 'x']);
    expect(r.code).toBe(2);
    expect(r.err).toContain('error: agent name "a/b": expected 1-63 letters, digits, "-", "_", "."');
    expect(r.err).toContain('error: --days "x": expected whole days 1-3650');
  });

  it('--help describes the files written', async () => {
    const r = await run(['certs', '--help']);
    expect(r.code).toBe(0);
    expect(r.out).toContain('agent-<name>.pem, agent-<name>-key.pem');
  });
});
