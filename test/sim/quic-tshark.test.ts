/**
 * Independent check of our QUIC packets: capture a keylogged handshake and
 * DATAGRAM exchange on loopback with tcpdump and let Wireshark's dissector
 * (tshark) decrypt and decode it. Root only; skipped loudly without the tools.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Harness, countDatagrams, echo, sleep, waitFor } from './quic-harness.js';

function have(cmd: string): boolean {
  try {
    execFileSync('which', [cmd], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}
const isRoot = process.getuid?.() === 0;
const ready = isRoot && have('tshark') && have('tcpdump');
if (!ready) {
  console.warn(`quic-tshark: SKIPPED — needs root, tshark and tcpdump (root=${isRoot}, tshark=${have('tshark')}, tcpdump=${have('tcpdump')})`);
}

const dir = mkdtempSync(join(tmpdir(), 'mtun-quic-tshark-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe.skipIf(!ready)('tshark decodes our QUIC (RFC 9000/9001/9221)', () => {
  it('decrypts the handshake with the key log and shows ALPN h3 and DATAGRAM frames both ways', async () => {
    const keys = join(dir, 'keys.log');
    const pcap = join(dir, 'quic.pcap');
    const h = new Harness();
    try {
      const { port } = await h.server({ onConnection: (c) => echo(c) }, { keylogPath: keys });
      const client = await h.client({}, { keylogPath: keys });
      const cap = spawn('tcpdump', ['-i', 'lo', '--immediate-mode', '-U', '-n', '-w', pcap, 'udp', 'port', String(port)], {
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      let capErr = '';
      cap.stderr.on('data', (d) => (capErr += d));
      const exited = new Promise((r) => cap.on('exit', r));
      try {
        await waitFor(() => capErr.includes('listening on'), 5000, 'tcpdump to start');
        const c = client.connect('127.0.0.1', port, 'localhost');
        await c.whenEstablished();
        const echoed = countDatagrams(c);
        for (let i = 0; i < 3; i++) expect(c.dgramSend(new Uint8Array(100).fill(i), 0, 100)).toBe(true);
        c.flush();
        await waitFor(() => echoed() === 3, 3000, 'echoed datagrams');
        c.close(true, 0, 'done');
        await sleep(200);
      } finally {
        cap.kill('SIGINT');
        await Promise.race([exited, sleep(3000)]);
      }
      const out = execFileSync(
        'tshark',
        ['-r', pcap, '-o', `tls.keylog_file:${keys}`, '-Y', 'quic', '-T', 'fields', '-E', 'separator=|',
          '-e', 'udp.srcport', '-e', 'quic.frame_type', '-e', 'tls.handshake.type', '-e', 'tls.handshake.extensions_alpn_str'],
        { encoding: 'utf8', timeout: 30_000, stdio: ['ignore', 'pipe', 'ignore'] },
      );
      const rows = out.trim().split('\n').map((l) => { const f = l.split('|'); while (f.length < 4) f.push(''); return f; });
      const hsTypes = new Set(rows.flatMap((r) => r[2].split(',')).filter(Boolean).map(Number));
      // RFC 8446 handshake messages, decrypted: ClientHello, ServerHello, EncryptedExtensions, Certificate, CertificateVerify, Finished.
      for (const t of [1, 2, 8, 11, 15, 20]) expect(hsTypes.has(t)).toBe(true);
      expect(rows.some((r) => r[3].split(',').includes('h3'))).toBe(true);
      // RFC 9221 §4: DATAGRAM frames are type 0x30/0x31; sent by the client and echoed by the server.
      const isDgram = (r: string[]) => r[1].split(',').some((f) => f === '48' || f === '49');
      expect(rows.filter((r) => isDgram(r) && Number(r[0]) !== port).length).toBeGreaterThan(0);
      expect(rows.filter((r) => isDgram(r) && Number(r[0]) === port).length).toBeGreaterThan(0);
    } finally {
      h.cleanup();
    }
  });
});
