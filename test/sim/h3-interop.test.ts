/**
 * Independent checks of our HTTP/3 against other implementations: Chromium
 * (headless) fetches /healthz from our server over HTTP/3, and tshark
 * decodes a keylogged capture of an Extended CONNECT with datagrams.
 * Each is skipped loudly when its program is missing.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash, X509Certificate } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Harness, getPki, sleep, waitFor } from './quic-harness.js';
import { attachH3 } from '../../src/h3/quic-binding.js';
import type { H3Connection, H3Request } from '../../src/h3/connection.js';
import { decodeFieldSection } from '../../src/h3/qpack.js';
import { H3_DATAGRAM_HEADROOM, type TunnelStream } from '../../src/h3/tunnel-stream.js';

const has = (prog: string) => spawnSync('sh', ['-c', `command -v ${prog}`]).status === 0;
const chromiumBin = ['chromium', 'chromium-browser', 'google-chrome'].find(has);
const hasTshark = has('tshark');
if (!chromiumBin) console.warn('h3-interop: SKIPPING the Chromium HTTP/3 check — no chromium binary (apt-get install chromium)');
if (!hasTshark) console.warn('h3-interop: SKIPPING the tshark decode check — no tshark (apt-get install tshark)');

let h = new Harness();
const children: ChildProcess[] = [];
const dirs: string[] = [];
afterEach(() => {
  for (const c of children.splice(0)) if (c.exitCode === null) c.kill('SIGKILL');
  h.cleanup();
  h = new Harness();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function run(cmd: string, args: string[], timeoutMs: number): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve) => {
    const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(p);
    let out = '';
    let err = '';
    p.stdout!.on('data', (d) => (out += d));
    p.stderr!.on('data', (d) => (err += d));
    const t = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
    p.on('close', (code) => {
      clearTimeout(t);
      resolve({ code, out, err });
    });
  });
}

describe.skipIf(!chromiumBin)('Chromium fetches /healthz over HTTP/3', () => {
  it('answers 200 "ok" to a stock HTTP/3 client (Huffman/QPACK from Chromium, its grease and QPACK streams)', async () => {
    const pki = await getPki();
    const seen: H3Request[] = [];
    const serverH3: H3Connection[] = [];
    const { port } = await h.server({
      onConnection: (c) => {
        serverH3.push(
          attachH3(c, {
            onRequest: (req) => {
              seen.push(req);
              return req.path === '/healthz' ? { status: 200, headers: [['content-type', 'text/plain']], body: 'ok\n' } : { status: 404 };
            },
          }),
        );
      },
    });
    const spki = createHash('sha256')
      .update(new X509Certificate(pki.server.certPem).publicKey.export({ type: 'spki', format: 'der' }))
      .digest('base64');
    const profile = mkdtempSync(join(tmpdir(), 'mtun-chromium-'));
    dirs.push(profile);
    const r = await run(
      chromiumBin!,
      [
        '--headless=new',
        '--no-sandbox',
        '--disable-gpu',
        '--no-first-run',
        `--user-data-dir=${profile}`,
        '--enable-quic',
        `--origin-to-force-quic-on=localhost:${port}`,
        `--ignore-certificate-errors-spki-list=${spki}`,
        '--host-resolver-rules=MAP localhost 127.0.0.1',
        '--dump-dom',
        `https://localhost:${port}/healthz`,
      ],
      45_000,
    );
    expect(r.out, `chromium stderr: ${r.err.slice(-2000)}`).toContain('ok');
    expect(seen.some((q) => q.path === '/healthz' && q.method === 'GET')).toBe(true);
    expect(serverH3[0]!.counters.connectionError).toBe(0);
  }, 60_000);
});

describe.skipIf(!hasTshark)('tshark decodes our HTTP/3 from a keylogged capture', () => {
  it('shows SETTINGS with Extended CONNECT enabled, the Extended CONNECT HEADERS and QUIC DATAGRAM frames', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'mtun-tshark-'));
    dirs.push(dir);
    const keylog = join(dir, 'keys.log');
    const pcap = join(dir, 'h3.pcapng');
    let tunnel: TunnelStream | null = null;
    const got: number[] = [];
    const { port } = await h.server(
      {
        onConnection: (c) => {
          attachH3(c, {
            onConnect: (req) => {
              tunnel = req.accept({ onCapsule() {}, onDatagram: (_b, _o, len) => got.push(len), onClose() {} });
            },
          });
        },
      },
      { keylogPath: keylog },
    );
    const cap = spawn('tshark', ['-i', 'lo', '-f', `udp port ${port}`, '-w', pcap], { stdio: ['ignore', 'ignore', 'pipe'] });
    children.push(cap);
    let capErr = '';
    cap.stderr!.on('data', (d) => (capErr += d));
    await waitFor(() => /Capturing on/.test(capErr), 15_000, `tshark capture start (${capErr})`);
    await sleep(1000); // dumpcap announces before its filter is live
    const ep = await h.client({}, { keylogPath: keylog });
    const c = ep.connect('127.0.0.1', port, 'localhost');
    const h3 = attachH3(c, {});
    await c.whenEstablished();
    await waitFor(() => h3.peerSettingsReceived, 3000, 'SETTINGS');
    let status = 0;
    let ct: TunnelStream | null = null;
    h3.connect(
      { protocol: 'connect-ip', authority: 'localhost', path: '/.well-known/masque/ip/*/*/' },
      { onResponse: (s, _h, t) => ((status = s), (ct = t)), onCapsule() {}, onDatagram() {}, onClose() {} },
    );
    c.flush();
    await waitFor(() => status === 200, 3000, 'CONNECT 200');
    const buf = new Uint8Array(H3_DATAGRAM_HEADROOM + 100);
    for (let i = 0; i < 5; i++) ct!.sendDatagram(buf, H3_DATAGRAM_HEADROOM, 100);
    c.flush();
    await waitFor(() => got.length >= 3, 3000, 'datagrams at the server');
    expect(tunnel).not.toBeNull();
    await sleep(300);
    cap.kill('SIGINT');
    await new Promise((r) => cap.once('close', r));
    expect(existsSync(pcap)).toBe(true);
    // Fields: frame | QUIC frame types | HTTP/3 frame types | HTTP/3 frame payloads | Extended CONNECT setting
    const d = await run(
      'tshark',
      ['-r', pcap, '-o', `tls.keylog_file:${keylog}`, '-T', 'fields', '-E', 'separator=|', '-e', 'frame.number', '-e', 'quic.frame_type', '-e', 'http3.frame_type', '-e', 'http3.frame_payload', '-e', 'http3.settings.extended_connect'],
      60_000,
    );
    const rows = d.out
      .trim()
      .split('\n')
      .map((l) => l.split('|'));
    expect(rows.length, d.err).toBeGreaterThan(5);
    // SETTINGS (type 4) with SETTINGS_ENABLE_CONNECT_PROTOCOL=1, one from each side (RFC 9220 §3)
    expect(rows.filter((r) => r[2]!.split(',').includes('4') && r[4] === '1').length).toBe(2);
    // HEADERS frames (type 1): tshark 4.0 does not decode QPACK, so the payloads it extracted are decoded here
    const heads = rows
      .filter((r) => r[2]!.split(',').includes('1'))
      .flatMap((r) => {
        const types = r[2]!.split(',');
        const payloads = r[3]!.split(',');
        return types.flatMap((t, i) => (t === '1' ? [Uint8Array.from(Buffer.from(payloads[i]!, 'hex'))] : []));
      })
      .map((b) => decodeFieldSection(b, 0, b.length, 1 << 16))
      .map((r) => (r.ok ? r.fields : []));
    expect(heads).toContainEqual(expect.arrayContaining([[':method', 'CONNECT'], [':protocol', 'connect-ip'], [':scheme', 'https'], ['capsule-protocol', '?1']]));
    expect(heads).toContainEqual(expect.arrayContaining([[':status', '200'], ['capsule-protocol', '?1']]));
    // QUIC DATAGRAM frames (type 0x31 = 49, RFC 9221 §4)
    const dgramFrames = rows.reduce((n, r) => n + r[1]!.split(',').filter((t) => t === '49').length, 0);
    expect(dgramFrames).toBeGreaterThanOrEqual(5);
  }, 90_000);
});
