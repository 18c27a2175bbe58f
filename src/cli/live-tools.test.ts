/** `mtun capture` and `mtun top --once` against real admin servers on loopback. */
import { afterEach, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startAdminServer, type AdminServer } from '../telemetry/admin-server.js';
import { Telemetry } from '../telemetry/telemetry.js';
import { craftTcp } from '../packet/craft.js';
import { CaptureReader } from '../pcap/capture-reader.js';
import { interfaceDescriptionBlock, interfaceStatisticsBlock, sectionHeaderBlock } from '../pcap/pcapng-writer.js';
import { CaptureSummary } from './capture-command.js';
import { runCli as run } from './cli-harness.js';

const servers: AdminServer[] = [];
afterEach(async () => {
  process.exitCode = undefined;
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

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
