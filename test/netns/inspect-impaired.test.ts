/**
 * `mtun inspect` under loss AND reordering: a userspace impairer (TUN bridge
 * in a middle namespace; 5% loss, 1–6 ms delay jitter) between curl and a Node
 * HTTP server. Retransmissions and reordering must not change the byte counts.
 *
 *   ns <p>0 client                  ns <p>1 middle                        ns <p>2 server
 *   curl, tcpdump -i c0             m0 ── ip rule iif → tun ── m1          node HTTP :8080
 *   c0 10.33.0.1/24 ══ veth ══ m0 10.33.0.254   m1 10.34.0.254 ══ veth ══ s0 10.34.0.2/24
 *                                   tun <p>t ⇄ Impairer (this process)
 */
import { execFileSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inspectCapture } from '../../src/cli/inspect-command.js';
import { startImpairBridge, type ImpairBridge } from '../impair/impairer.js';
import { cleanupAll, createNetns, exec, execAsync, isRoot, runPrefix, spawnIn, veth, warnIfNotRoot } from './netns.js';

warnIfNotRoot('test/netns/inspect-impaired.test.ts');
const has = (cmd: string) => { try { execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'pipe' }); return true; } catch { return false; } };
const missing = ['tcpdump', 'curl', 'tshark'].filter((t) => !has(t));
if (missing.length > 0) console.warn(`SKIP test/netns/inspect-impaired.test.ts: missing ${missing.join(', ')}`);

const SERVER = `
const http = require('node:http');
const chunk = Buffer.alloc(65536, 98);
http.createServer((req, res) => {
  res.on('error', () => {});
  if (req.method === 'POST') { let n = 0; req.on('data', (c) => { n += c.length; }); req.on('end', () => res.end('ok ' + n)); return; }
  let left = Number((/^\\/dl\\/(\\d+)$/.exec(req.url) || [])[1] || 0);
  res.setHeader('content-length', left);
  const pump = () => {
    while (left > 0) { const k = Math.min(left, chunk.length); left -= k; if (!res.write(chunk.subarray(0, k))) { res.once('drain', pump); return; } }
    res.end();
  };
  pump();
}).listen(8080, '0.0.0.0', () => console.log('ready'));
`;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
function waitOutput(child: ChildProcess, stream: 'stdout' | 'stderr', re: RegExp): Promise<void> {
  return new Promise((resolve, reject) => {
    let acc = '';
    const t = setTimeout(() => reject(new Error(`timed out waiting for ${re}: ${acc}`)), 10_000);
    child[stream]!.on('data', (d: Buffer) => { acc += d.toString(); if (re.test(acc)) { clearTimeout(t); resolve(); } });
  });
}

describe.skipIf(!isRoot() || missing.length > 0)('mtun inspect under loss and reordering (TUN impairer)', () => {
  let A = '', M = '', B = '', dir = '';
  let bridge: ImpairBridge | null = null;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'mtun-impair-'));
    const p = runPrefix('m');
    A = createNetns(p); M = createNetns(p); B = createNetns(p);
    veth(A, 'c0', M, 'm0', { a: ['10.33.0.1/24'], b: ['10.33.0.254/24'] });
    veth(M, 'm1', B, 's0', { a: ['10.34.0.254/24'], b: ['10.34.0.2/24'] });
    exec(A, 'ip', 'route', 'add', 'default', 'via', '10.33.0.254');
    exec(B, 'ip', 'route', 'add', 'default', 'via', '10.34.0.254');
    if (has('ethtool')) for (const [ns, d] of [[A, 'c0'], [M, 'm0'], [M, 'm1'], [B, 's0']]) exec(ns, 'ethtool', '-K', d, 'tso', 'off', 'gso', 'off', 'gro', 'off');
    bridge = await startImpairBridge(M, `${p}t`, ['m0', 'm1'], { lossPercent: 5, delayMs: 1, jitterMs: 5, seed: 20261127 });
    writeFileSync(join(dir, 'server.cjs'), SERVER);
    const srv = spawnIn(B, process.execPath, [join(dir, 'server.cjs')]);
    await waitOutput(srv, 'stdout', /ready/);
  });

  afterAll(() => {
    bridge?.close();
    cleanupAll();
    if (dir && !process.env.MTUN_KEEP_CAPTURES) rmSync(dir, { recursive: true, force: true });
  });

  it('download 2 MB and upload 500 kB: bytes equal curl, retransmissions and reordering seen', async () => {
    const file = join(dir, 'impaired.pcap');
    const body = join(dir, 'body.bin');
    writeFileSync(body, Buffer.alloc(500_000, 0x42));
    const td = spawnIn(A, 'tcpdump', ['-i', 'c0', '--immediate-mode', '-U', '-B', '65536', '-s', '0', '-Z', 'root', '-w', file, 'tcp']);
    let err = '';
    td.stderr!.on('data', (d: Buffer) => { err += d.toString(); });
    await waitOutput(td, 'stderr', /listening on/);
    const fmt = ['-w', '%{size_request} %{size_header} %{size_download} %{size_upload}\\n'];
    const dl = await execAsync(A, 'curl', ['-s', '--fail', '-o', '/dev/null', ...fmt, 'http://10.34.0.2:8080/dl/2000000'], 60_000);
    const up = await execAsync(A, 'curl', ['-s', '--fail', '-o', '/dev/null', ...fmt, '--data-binary', `@${body}`, 'http://10.34.0.2:8080/up'], 60_000);
    expect(dl.code, dl.stderr).toBe(0);
    expect(up.code, up.stderr).toBe(0);
    let size = -1;
    for (let i = 0, still = 0; i < 100 && still < 3; i++) {
      await sleep(200);
      const now = statSync(file).size;
      still = now === size ? still + 1 : 0;
      size = now;
    }
    const done = new Promise((r) => td.once('exit', r));
    td.kill('SIGINT');
    await done;
    expect(/(\d+) packets? dropped by kernel/.exec(err)?.[1], err).toBe('0');

    const [dReq, dHdr, dBody] = dl.stdout.trim().split(' ').map(Number) as [number, number, number, number];
    const [uReq, uHdr, uBody, uUp] = up.stdout.trim().split(' ').map(Number) as [number, number, number, number];
    const res = inspectCapture(file);
    const flows = res.flows.filter((f) => f.record.proto === 'tcp');
    expect(flows).toHaveLength(2);
    const [d, u] = flows as [typeof flows[0], typeof flows[0]];
    expect(d.record.bytesSent).toBe(dReq);
    expect(d.record.bytesReceived).toBe(dHdr + dBody);
    expect(uUp).toBe(500_000);
    expect(u.record.bytesSent).toBe(uReq + uUp); // large body: size_request counts the headers only
    expect(u.record.bytesReceived).toBe(uHdr + uBody);
    for (const f of flows) expect(f.record).toMatchObject({ opened: true, closeReason: 'fin', httpRequests: 1 });
    const st = bridge!.impairer.stats;
    expect(st.lost).toBeGreaterThan(0);
    expect(st.reordered).toBeGreaterThan(0);
    expect(d.record.retransmits + u.record.retransmits).toBeGreaterThan(0);
    expect(d.meta.outOfOrder + u.meta.outOfOrder).toBeGreaterThan(0);
    const conv = execFileSync('tshark', ['-r', file, '-q', '-z', 'conv,tcp'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    console.log(`impairer ${JSON.stringify(st)}\n${conv}\nmtun inspect --json:\n${flows.map((f) => JSON.stringify(f.record)).join('\n')}\n` +
      `out-of-order: ${flows.map((f) => f.meta.outOfOrder).join(', ')}`);
  });
});
