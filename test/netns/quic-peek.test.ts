/**
 * QUIC inside the tunnel, seen by both ends' inspectors: headless Chromium
 * in the client namespace opens an HTTP/3 (QUIC v1) connection through the
 * real agent and gateway to a QUIC server (our QUIC endpoint, ALPN h3) in
 * the server namespace. Both daemons' flow-log records of that UDP flow must
 * carry Chromium's SNI, its ALPN (h3), the QUIC version, a handshake RTT
 * (client Initial → server Handshake packet) and the same flow_join_id.
 *
 *   client 10.10.0.2 (chromium) ── agent ══ QUIC 192.0.2.1 → 192.0.2.2 ══ gateway ── server 10.20.0.2:443 (QUIC, h3)
 *
 * The server completes the QUIC handshake but does not speak HTTP/3 (it is
 * the transport endpoint of src/quic, which is all the inspector needs to
 * see): Chromium's request gets no response and the test does not expect a
 * page, only the handshake and what the inspectors saw.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LAB, Lab, REPO_ROOT, type FlowLogLine } from '../../src/lab/lab.js';

const root = process.getuid?.() === 0;
const hasChromium = (() => { try { execFileSync('sh', ['-c', 'command -v chromium'], { stdio: 'pipe' }); return true; } catch { return false; } })();
if (!root || !hasChromium) console.warn(`SKIPPED test/netns/quic-peek.test.ts: ${!root ? 'needs root' : 'no chromium'}`);

const SNI = 'h3.mtun.test';

const SERVER = `
import { readFileSync } from 'node:fs';
const { QuicEndpoint } = await import(${JSON.stringify(join(REPO_ROOT, 'dist', 'quic', 'endpoint.js'))});
const { openDgramUdpSocket } = await import(${JSON.stringify(join(REPO_ROOT, 'dist', 'net', 'dgram-udp.js'))});
const [cert, key] = process.argv.slice(2);
const socket = await openDgramUdpSocket({ host: '0.0.0.0', port: 443 });
let n = 0;
new QuicEndpoint({ socket, keylogPath: null, alpn: ['h3'], server: {
  certPem: readFileSync(cert, 'utf8'), keyPem: readFileSync(key, 'utf8'), retry: 'off',
  onConnection: () => { console.log('connection ' + (++n)); },
} });
console.log('ready');
`;

describe.skipIf(!root || !hasChromium)('QUIC inside the tunnel: Chromium over HTTP/3 (netns, real daemons)', () => {
  let lab: Lab;
  let profile = '';

  beforeAll(async () => {
    lab = await Lab.up({});
    profile = mkdtempSync(join(tmpdir(), 'mtun-chromium-'));
    writeFileSync(join(lab.dir, 'quic-server.mjs'), SERVER);
    lab.spawn('server', 'quic-server', process.execPath,
      [join(lab.dir, 'quic-server.mjs'), join(lab.dir, 'certs', 'gateway.pem'), join(lab.dir, 'certs', 'gateway-key.pem')]);
    const log = lab.file('quic-server.log');
    for (let i = 0; !(existsSync(log) && readFileSync(log, 'utf8').includes('ready')); i++) {
      if (i > 100) throw new Error(`quic server did not start: ${existsSync(log) ? readFileSync(log, 'utf8') : ''}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    await lab.startGateway();
    await lab.startAgent();
    await lab.waitAgentReady();
  }, 180_000);

  afterAll(async () => {
    await lab?.down();
    if (profile) rmSync(profile, { recursive: true, force: true });
  });

  it('both ends report Chromium\'s SNI, ALPN h3, QUIC v1 and the handshake RTT, under one flow_join_id', async () => {
    const r = await lab.exec('client', 'timeout', ['25', 'chromium', '--headless=new', '--no-sandbox', '--disable-gpu',
      `--user-data-dir=${profile}`, '--enable-quic', `--origin-to-force-quic-on=${SNI}:443`,
      `--host-resolver-rules=MAP ${SNI} ${LAB.server.v4}`, '--ignore-certificate-errors', '--timeout=8000',
      '--dump-dom', `https://${SNI}/`], 40_000);
    console.log(`chromium exit ${r.code}; stderr tail: ${r.stderr.split('\n').slice(-4).join(' | ')}`);
    // Flows still open are emitted (close reason "open") when the daemons stop.
    await lab.stop('agent');
    await lab.stop('gateway');
    const pick = (lines: FlowLogLine[]) => lines.filter((l) => l.event === 'flow_close' && l.protocol === 'udp' && l.dst_port === 443 && l.dst_addr === LAB.server.v4);
    const a = pick(lab.flowLog('agent'));
    const g = pick(lab.flowLog('gateway'));
    console.log(JSON.stringify({ agent: a, gateway: g }, null, 1));
    expect(a.length).toBeGreaterThan(0);
    for (const side of [a, g]) {
      const rec = side.find((l) => l.sni !== undefined);
      expect(rec, 'a QUIC flow with an SNI').toBeDefined();
      expect(rec).toMatchObject({ sni: SNI, quic_version: 'v1' });
      expect(String(rec!.alpn).split(',')).toContain('h3');
      expect(rec!.quic_handshake_rtt_ms as number).toBeGreaterThan(0);
    }
    const ids = (side: FlowLogLine[]) => side.filter((l) => l.sni !== undefined).map((l) => l.flow_join_id).sort();
    expect(ids(a)).toEqual(ids(g));
  }, 120_000);
});
