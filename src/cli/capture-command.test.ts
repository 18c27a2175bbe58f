import { afterEach, describe, expect, it, vi } from 'vitest';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startAdminServer, type AdminServer } from '../telemetry/admin-server.js';
import { Telemetry } from '../telemetry/telemetry.js';
import { craftTcp } from '../packet/craft.js';
import { CaptureReader } from '../pcap/capture-reader.js';
import { interfaceDescriptionBlock, interfaceStatisticsBlock, sectionHeaderBlock } from '../pcap/pcapng-writer.js';
import { CaptureSummary } from './capture-command.js';
import { main } from './main.js';

const servers: AdminServer[] = [];
afterEach(async () => {
  vi.restoreAllMocks();
  process.exitCode = undefined;
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

async function run(args: string[], during?: () => void): Promise<{ err: string; code: number }> {
  let err = '';
  vi.spyOn(process.stderr, 'write').mockImplementation((s: string | Uint8Array) => { err += String(s); return true; });
  process.exitCode = undefined;
  const p = main(['node', 'mtun', ...args]);
  during?.();
  await p;
  const code = Number(process.exitCode ?? 0);
  vi.restoreAllMocks();
  return { err, code };
}

describe('cli: mtun capture', () => {
  it('writes whole pcapng blocks only and reads the daemon statistics, however the stream is cut', () => {
    const blocks = Buffer.concat([sectionHeaderBlock('x'), interfaceDescriptionBlock(101, 100, 'gateway:tun-in'), interfaceDescriptionBlock(101, 100, 'gateway:tun-out'),
      interfaceStatisticsBlock(0, { startMs: 1, endMs: 2, received: 5, dropped: 2 }), interfaceStatisticsBlock(1, { startMs: 1, endMs: 2, received: 1, dropped: 0 })]);
    for (const cut of [1, 7, 13, 64]) {
      const s = new CaptureSummary();
      const out: Buffer[] = [];
      for (let i = 0; i < blocks.length; i += cut) out.push(s.push(blocks.subarray(i, i + cut)));
      expect(Buffer.concat(out)).toEqual(blocks);
      expect(s.partialBytes).toBe(0);
      expect(s.text()).toBe('0 packets (gateway:tun-in 0, gateway:tun-out 0); 2 dropped by the daemon (reader too slow)');
    }
    const early = new CaptureSummary();
    early.push(blocks.subarray(0, blocks.length - 10));
    expect(early.text()).toContain('daemon drop count not received');
    expect(() => new CaptureSummary().push(Buffer.from('0a0d0d0a05000000000000000000000000', 'hex'))).toThrow(/bad pcapng block/);
  });

  it('captures from a daemon into a file until the packet cap; refused captures exit 1 with the reason', async () => {
    const t = new Telemetry({ reporter: 'gateway', workloads: [], flowLog: null, processMetrics: false });
    const s = await startAdminServer({ host: '127.0.0.1', port: 0, registry: t.registry, telemetry: t, capture: { enabled: true, allowRemote: false, queueBytes: 1 << 20, queuePackets: 64 } });
    servers.push(s);
    const file = join(mkdtempSync(join(tmpdir(), 'mcap-')), 'out.pcapng');
    const pkt = craftTcp({ src: '10.1.0.5', dst: '10.2.0.10', srcPort: 40000, dstPort: 443, seq: 1, flags: 0x02 });
    const feed = setInterval(() => { if (t.capture.active) t.capture.offer(pkt, 0, pkt.length, 1, Date.now()); }, 5);
    const r = await run(['capture', '--admin', s.url, '-w', file, '-c', '4', '--port', '443', '--proto', 'tcp', '--prefix', '10.2.0.0/16']);
    clearInterval(feed);
    expect(r.code, r.err).toBe(0);
    expect(r.err).toContain('mtun capture: 4 packets (gateway:tun-in 0, gateway:tun-out 4); 0 dropped by the daemon');
    const rd = CaptureReader.open(file);
    let n = 0;
    while (rd.next()) n++;
    rd.close();
    expect(n).toBe(4);
    expect(readFileSync(file).includes(Buffer.from('gateway:tun-out'))).toBe(true);

    const off = await startAdminServer({ host: '127.0.0.1', port: 0, registry: t.registry, telemetry: t });
    servers.push(off);
    const refused = await run(['capture', '--admin', off.url, '-w', file]);
    expect(refused.code).toBe(1);
    expect(refused.err).toContain('refused (HTTP 403): capture is disabled on this daemon (set admin.capture.enabled: true');
    const bad = await run(['capture', '--admin', s.url, '-w', file, '--proto', 'sctp']);
    expect(bad.code).toBe(2);
    expect(bad.err).toContain("argument 'sctp' is invalid. Allowed choices are tcp, udp, icmp");
  });
});
