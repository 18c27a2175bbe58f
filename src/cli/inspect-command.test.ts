// `mtun inspect`: JSON lines with exactly the documented fields in order,
// readable table, exit code 2 for a file that is not a capture.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import { craftTcp } from '../packet/craft.js';
import { TCP_FLAG } from '../packet/ip-packet.js';
import { PcapWriter } from '../pcap/pcap-writer.js';
import { inspectCommand } from './inspect-command.js';

const dir = mkdtempSync(join(tmpdir(), 'mtun-inspect-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
afterEach(() => { vi.restoreAllMocks(); process.exitCode = undefined; });

async function run(args: string[]): Promise<{ out: string; err: string; code: number | undefined }> {
  let out = '', err = '';
  vi.spyOn(process.stdout, 'write').mockImplementation((s) => { out += String(s); return true; });
  vi.spyOn(process.stderr, 'write').mockImplementation((s) => { err += String(s); return true; });
  try {
    await inspectCommand().parseAsync(['node', 'inspect', ...args]);
  } catch (e) {
    if ((e as { exitCode?: number }).exitCode !== undefined) process.exitCode = (e as { exitCode: number }).exitCode;
    else throw e;
  }
  const code = process.exitCode as number | undefined;
  vi.restoreAllMocks();
  return { out, err, code };
}

describe('mtun inspect', () => {
  const cap = join(dir, 'one.pcap');
  const w = new PcapWriter(cap, 101);
  const { SYN, ACK, FIN, PSH } = TCP_FLAG;
  const c = (flags: number, seq: number, ack: number, p?: string) =>
    craftTcp({ src: '198.51.100.1', dst: '198.51.100.2', srcPort: 5555, dstPort: 80, seq, ack, flags, payload: p ? Buffer.from(p) : undefined });
  const s = (flags: number, seq: number, ack: number, p?: string) =>
    craftTcp({ src: '198.51.100.2', dst: '198.51.100.1', srcPort: 80, dstPort: 5555, seq, ack, flags, payload: p ? Buffer.from(p) : undefined });
  const req = 'GET / HTTP/1.1\r\nHost: x\r\n\r\n';
  const pk = [c(SYN, 10, 0), s(SYN | ACK, 90, 11), c(ACK, 11, 91), c(PSH | ACK, 11, 91, req), s(PSH | ACK, 91, 11 + req.length, 'HTTP/1.1 200 OK\r\n\r\n'),
    c(FIN | ACK, 11 + req.length, 110), s(FIN | ACK, 110, 12 + req.length), c(ACK, 12 + req.length, 111)];
  pk.forEach((p, i) => w.write(p, 0, p.length, 1_700_000_000_000 + i * 5));
  w.close();

  it('prints one JSON object per flow with exactly the documented fields, in order', async () => {
    const r = await run(['--json', cap]);
    expect(r.code ?? 0).toBe(0);
    const lines = r.out.trim().split('\n');
    expect(lines).toHaveLength(1);
    const o = JSON.parse(lines[0]!);
    expect(Object.keys(o)).toEqual(['proto', 'src', 'srcPort', 'dst', 'dstPort', 'opened', 'midstream', 'closeReason', 'bytesSent',
      'bytesReceived', 'packetsSent', 'packetsReceived', 'retransmits', 'handshakeRttMs', 'sni', 'alpn', 'httpRequests', 'firstSeen', 'lastSeen',
      'flowId', 'rttToClient', 'rttToServer', 'quicVersion', 'quicHandshakeRttMs', 'httpStatus', 'httpFirstByteMs']);
    expect(o).toMatchObject({ proto: 'tcp', src: '198.51.100.1', closeReason: 'fin', bytesSent: req.length, bytesReceived: 19,
      packetsSent: 5, packetsReceived: 3, handshakeRttMs: 10, httpRequests: 1, firstSeen: '2023-11-14T22:13:20.000Z',
      // Every segment is answered 5 ms later: SYN, request and FIN toward the server; SYN-ACK, response and FIN toward the client.
      rttToServer: { minMs: 5, smoothedMs: 5, maxMs: 5, samples: 3 }, rttToClient: { minMs: 5, smoothedMs: 5, maxMs: 5, samples: 3 },
      quicVersion: null, httpStatus: { '1xx': 0, '2xx': 1, '3xx': 0, '4xx': 0, '5xx': 0 }, httpFirstByteMs: 5 });
    expect(o.flowId).toMatch(/^[0-9a-f]{16}$/);
  });

  it('prints a table without --json', async () => {
    const r = await run([cap]);
    expect(r.out).toMatch(/^PROTO\s+SRC\s+DST/);
    expect(r.out).toMatch(/198\.51\.100\.1:5555\s+198\.51\.100\.2:80\s+fin/);
  });

  it('exits 2 with a clear error for a file that is not a capture, or a missing one', async () => {
    const bad = join(dir, 'notes.txt');
    writeFileSync(bad, 'just text\n');
    const r = await run([bad]);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/mtun inspect: pcap: .*not a pcap or pcapng capture/);
    const m = await run([join(dir, 'missing.pcap')]);
    expect(m.code).toBe(2);
    expect(m.err).toMatch(/no such file/);
    const n = await run(['--max-flows', '0', cap]);
    expect(n.code).toBe(2);
  });
});
