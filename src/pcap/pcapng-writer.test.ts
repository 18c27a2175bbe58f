import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { CaptureReader, LinkType } from './capture-reader.js';
import { enhancedPacketLength, interfaceDescriptionBlock, interfaceStatisticsBlock, sectionHeaderBlock, writeEnhancedPacket } from './pcapng-writer.js';
import { craftTcp, craftUdp } from '../packet/craft.js';

const dir = mkdtempSync(join(tmpdir(), 'pcapng-'));

function capture(packets: { iface: number; tsMs: number; pkt: Buffer; snap?: number }[]): string {
  const parts = [sectionHeaderBlock('mtun test'), interfaceDescriptionBlock(LinkType.RAW, 65535, 'agent:tun-in', 'in'), interfaceDescriptionBlock(LinkType.RAW, 65535, 'agent:tun-out')];
  for (const p of packets) {
    const cap = Math.min(p.pkt.length, p.snap ?? 65535);
    const b = Buffer.alloc(enhancedPacketLength(cap));
    expect(writeEnhancedPacket(b, 0, p.iface, p.tsMs, p.pkt, 0, cap, p.pkt.length)).toBe(b.length);
    parts.push(b);
  }
  parts.push(interfaceStatisticsBlock(0, { startMs: 1000, endMs: 2000, received: packets.length, dropped: 3 }));
  const f = join(dir, `c${Math.random().toString(16).slice(2)}.pcapng`);
  writeFileSync(f, Buffer.concat(parts));
  return f;
}

describe('pcap: pcapng writer (draft-ietf-opsawg-pcapng §4.1 SHB, §4.2 IDB, §4.3 EPB, §4.6 ISB)', () => {
  it('round-trips through CaptureReader: interfaces, µs timestamps, snap length, original length', () => {
    const a = craftTcp({ src: '10.0.0.1', dst: '10.0.0.2', srcPort: 40000, dstPort: 80, seq: 1, ack: 0, flags: 0x02 });
    const b = craftUdp({ src: 'fd00::1', dst: 'fd00::2', srcPort: 5353, dstPort: 53, payload: Buffer.alloc(101, 7) });
    const f = capture([{ iface: 0, tsMs: 1_700_000_000_123.456, pkt: a }, { iface: 1, tsMs: 1_700_000_000_124, pkt: b, snap: 50 }]);
    const r = CaptureReader.open(f);
    expect(r.format).toBe('pcapng');
    expect(r.next()).toBe(true);
    expect(r.linkType).toBe(LinkType.RAW);
    expect(r.tsMs).toBeCloseTo(1_700_000_000_123.456, 3);
    expect(Buffer.from(r.buf.subarray(r.off, r.off + r.len))).toEqual(a);
    expect(r.next()).toBe(true);
    expect(r.len).toBe(50);
    expect(r.origLen).toBe(b.length);
    expect(Buffer.from(r.buf.subarray(r.off, r.off + r.len))).toEqual(b.subarray(0, 50));
    expect(r.next()).toBe(false);
    expect(r.truncated).toBe(false);
    r.close();
  });

  it('tshark decodes it: interface names and packets; capinfos reads the statistics block', () => {
    const a = craftTcp({ src: '10.0.0.1', dst: '10.0.0.2', srcPort: 40000, dstPort: 80, seq: 1, ack: 0, flags: 0x02 });
    const f = capture([{ iface: 0, tsMs: 1_700_000_000_000, pkt: a }, { iface: 1, tsMs: 1_700_000_000_001, pkt: a }]);
    const out = execFileSync('tshark', ['-r', f, '-T', 'fields', '-e', 'frame.interface_name', '-e', 'ip.src', '-e', 'tcp.dstport'], { encoding: 'utf8' });
    expect(out.trim().split('\n')).toEqual(['agent:tun-in\t10.0.0.1\t80', 'agent:tun-out\t10.0.0.1\t80']);
    const info = execFileSync('capinfos', ['-M', f], { encoding: 'utf8' });
    expect(info).toMatch(/Number of packets:\s+2/);
    expect(info).toMatch(/Capture application: mtun test/);
    const iface0 = info.slice(info.indexOf('Interface #0'), info.indexOf('Interface #1'));
    expect(iface0).toMatch(/Number of stat entries = 1/);
  });
});
