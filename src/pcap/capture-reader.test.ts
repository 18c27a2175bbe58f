// Capture reader: classic pcap (µs/ns, both byte orders), pcapng (via
// editcap when installed), link types Ethernet (+VLAN), raw, SLL, SLL2, NULL, LOOP.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { craftTcp, craftUdp } from '../packet/craft.js';
import { TCP_FLAG } from '../packet/ip-packet.js';
import { CaptureFormatError, CaptureReader, IpSpan, LinkType, locateIp } from './capture-reader.js';
import { PcapWriter } from './pcap-writer.js';
import { inspectCapture } from '../cli/inspect-command.js';

const dir = mkdtempSync(join(tmpdir(), 'mtun-pcap-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const ip4 = craftUdp({ src: '192.0.2.1', dst: '192.0.2.2', srcPort: 1000, dstPort: 53, payload: Buffer.from('hello') });
const ip6 = craftTcp({ src: '2001:db8::1', dst: '2001:db8::2', srcPort: 1, dstPort: 443, seq: 1, flags: TCP_FLAG.SYN });

function frames(link: number, ip: Buffer): Buffer {
  const et = (ip[0]! >> 4) === 4 ? 0x0800 : 0x86dd;
  switch (link) {
    case LinkType.ETHERNET: {
      // dst MAC, src MAC, 802.1Q tag (TPID 0x8100, VLAN 7), ethertype
      const h = Buffer.alloc(18);
      h.writeUInt16BE(0x8100, 12); h.writeUInt16BE(7, 14); h.writeUInt16BE(et, 16);
      return Buffer.concat([h, ip]);
    }
    case LinkType.LINUX_SLL: { const h = Buffer.alloc(16); h.writeUInt16BE(et, 14); return Buffer.concat([h, ip]); }
    case LinkType.LINUX_SLL2: { const h = Buffer.alloc(20); h.writeUInt16BE(et, 0); return Buffer.concat([h, ip]); }
    case LinkType.NULL: { const h = Buffer.alloc(4); h.writeUInt32LE(et === 0x0800 ? 2 : 30); return Buffer.concat([h, ip]); }
    case LinkType.LOOP: { const h = Buffer.alloc(4); h.writeUInt32BE(et === 0x0800 ? 2 : 24); return Buffer.concat([h, ip]); }
    default: return ip;
  }
}

describe('CaptureReader', () => {
  for (const [name, link] of Object.entries(LinkType)) {
    if (link === LinkType.IPV6) continue;
    it(`decapsulates ${name} (${link}) frames to the IP packet`, () => {
      const f = join(dir, `${name}.pcap`);
      const w = new PcapWriter(f, link);
      const pk = link === LinkType.IPV4 ? [ip4] : [ip4, ip6];
      pk.forEach((p, i) => { const fr = frames(link, p); w.write(fr, 0, fr.length, 1_700_000_000_123.5 + i); });
      w.close();
      const r = CaptureReader.open(f);
      const span = new IpSpan();
      for (let i = 0; i < pk.length; i++) {
        expect(r.next()).toBe(true);
        expect(r.tsMs).toBeCloseTo(1_700_000_000_123.5 + i, 3);
        expect(locateIp(r.linkType, r.buf, r.off, r.len, span)).toBe(0);
        expect(Buffer.from(r.buf.subarray(span.off, span.off + span.len)).equals(pk[i]!)).toBe(true);
      }
      expect(r.next()).toBe(false);
      r.close();
    });
  }

  it('reads big-endian nanosecond pcap and reports a truncated tail', () => {
    const f = join(dir, 'be-ns.pcap');
    const hdr = Buffer.alloc(24);
    hdr.writeUInt32BE(0xa1b23c4d); hdr.writeUInt16BE(2, 4); hdr.writeUInt16BE(4, 6); hdr.writeUInt32BE(65535, 16); hdr.writeUInt32BE(101, 20);
    const rec = Buffer.alloc(16);
    rec.writeUInt32BE(10); rec.writeUInt32BE(500_000_001, 4); rec.writeUInt32BE(ip4.length, 8); rec.writeUInt32BE(ip4.length, 12);
    writeFileSync(f, Buffer.concat([hdr, rec, ip4, rec, ip4.subarray(0, 5)]));
    const r = CaptureReader.open(f);
    expect(r.next()).toBe(true);
    expect(r.tsMs).toBeCloseTo(10_500.000001, 6);
    expect(r.next()).toBe(false);
    expect(r.truncated).toBe(true);
  });

  it('rejects a file that is not a capture with CaptureFormatError', () => {
    const f = join(dir, 'text.pcap');
    writeFileSync(f, 'hello world, not a capture\n');
    expect(() => CaptureReader.open(f)).toThrow(CaptureFormatError);
    expect(() => CaptureReader.open(f)).toThrow(/^pcap: .*not a pcap or pcapng/);
  });

  it('random bytes after a valid header never throw anything but CaptureFormatError', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 400 }), fc.boolean(), (junk, ng) => {
      const f = join(dir, 'fuzz.bin');
      const head = ng ? Buffer.from('0a0d0d0a1c0000004d3c2b1a01000000ffffffffffffffff1c000000', 'hex') : Buffer.from('d4c3b2a1020004000000000000000000ffff000001000000', 'hex');
      writeFileSync(f, Buffer.concat([head, junk]));
      try {
        const r = CaptureReader.open(f);
        const span = new IpSpan();
        while (r.next()) locateIp(r.linkType, r.buf, r.off, r.len, span);
        r.close();
      } catch (e) {
        if (!(e instanceof CaptureFormatError)) throw e;
      }
    }), { numRuns: 500 });
  });

  it('reads big-endian pcapng: IDB and EPB block types in the section byte order (found by fuzz seeds)', () => {
    // SHB (BOM 1a2b3c4d big-endian), IDB (raw IP), EPB with one IPv4 packet; every field big-endian.
    const be = (n: number, v: number) => { const b = Buffer.alloc(n); if (n === 2) b.writeUInt16BE(v); else b.writeUInt32BE(v); return b; };
    const block = (type: number, body: Buffer) => {
      const pad = Buffer.alloc((4 - (body.length % 4)) % 4);
      const total = 12 + body.length + pad.length;
      return Buffer.concat([be(4, type), be(4, total), body, pad, be(4, total)]);
    };
    const shb = block(0x0a0d0d0a, Buffer.concat([be(4, 0x1a2b3c4d), be(2, 1), be(2, 0), Buffer.alloc(8, 0xff)]));
    const idb = block(1, Buffer.concat([be(2, LinkType.RAW), be(2, 0), be(4, 65535)]));
    const epb = block(6, Buffer.concat([be(4, 0), be(4, 0), be(4, 1_000_000), be(4, ip4.length), be(4, ip4.length), ip4]));
    const f = join(dir, 'be.pcapng');
    writeFileSync(f, Buffer.concat([shb, idb, epb]));
    const r = CaptureReader.open(f);
    expect(r.next()).toBe(true);
    expect(r.linkType).toBe(LinkType.RAW);
    expect(Buffer.from(r.buf.subarray(r.off, r.off + r.len)).equals(ip4)).toBe(true);
    expect(r.tsMs).toBe(1000);
    expect(r.next()).toBe(false);
    r.close();
  });

  const hasEditcap = (() => { try { execFileSync('editcap', ['-h'], { stdio: 'pipe' }); return true; } catch { return false; } })();
  it.skipIf(!hasEditcap)('reads pcapng written by editcap (SHB, IDB with if_tsresol, EPB)', () => {
    const f = join(dir, 'eth.pcap');
    const w = new PcapWriter(f, LinkType.ETHERNET);
    const fr = frames(LinkType.ETHERNET, ip6);
    w.write(fr, 0, fr.length, 1_600_000_000_000.25);
    w.close();
    const ng = join(dir, 'eth.pcapng');
    execFileSync('editcap', ['-F', 'pcapng', f, ng]);
    expect(readFileSync(ng).readUInt32BE(0)).toBe(0x0a0d0d0a);
    const res = inspectCapture(ng);
    expect(res.frames).toBe(1);
    expect(res.flows[0]!.record).toMatchObject({ src: '2001:db8::1', dstPort: 443, firstSeen: '2020-09-13T12:26:40.000Z' });
  });
});
