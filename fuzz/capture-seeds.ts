/**
 * Valid capture files built byte by byte as fuzz seeds: classic pcap (µs and
 * ns magic, both byte orders) and pcapng (SHB, IDB with if_tsresol and
 * if_tsoffset, EPB, SPB, obsolete PB, an unknown block), around the IP
 * packets the caller passes. Link types: raw IP, Ethernet (with a VLAN tag),
 * Linux SLL, SLL2 and BSD loopback.
 */
import { concat } from './defs/common.js';

/** LINKTYPE_* values used here (tcpdump.org/linktypes.html). */
const LT = { NULL: 0, ETHERNET: 1, RAW: 101, LINUX_SLL: 113, LINUX_SLL2: 276 } as const;

/** Wraps an IP packet in the link-layer header of `linkType`. */
function frame(linkType: number, ip: Uint8Array): Uint8Array {
  const v6 = ip[0]! >> 4 === 6;
  const et = v6 ? [0x86, 0xdd] : [0x08, 0x00];
  let hdr: number[];
  if (linkType === LT.ETHERNET) hdr = [2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x81, 0x00, 0x00, 0x07, ...et];
  else if (linkType === LT.LINUX_SLL) hdr = [0, 0, 0, 1, 0, 6, 2, 0, 0, 0, 0, 2, 0, 0, ...et];
  else if (linkType === LT.LINUX_SLL2) hdr = [...et, 0, 0, 0, 0, 0, 2, 0, 1, 0, 6, 2, 0, 0, 0, 0, 2, 0, 0];
  else if (linkType === LT.NULL) hdr = v6 ? [30, 0, 0, 0] : [2, 0, 0, 0];
  else hdr = [];
  const out = new Uint8Array(hdr.length + ip.length);
  out.set(hdr, 0);
  out.set(ip, hdr.length);
  return out;
}

/** A classic pcap file holding `packets` framed for `linkType`. */
function pcapFile(packets: readonly Uint8Array[], linkType: number, little: boolean, nanos: boolean): Uint8Array {
  const frames = packets.map((p) => frame(linkType, p));
  const size = 24 + frames.reduce((n, f) => n + 16 + f.length, 0);
  const out = new Uint8Array(size);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, nanos ? 0xa1b23c4d : 0xa1b2c3d4, little);
  dv.setUint16(4, 2, little);
  dv.setUint16(6, 4, little);
  dv.setUint32(16, 65535, little);
  dv.setUint32(20, linkType, little);
  let p = 24;
  frames.forEach((f, i) => {
    dv.setUint32(p, 1_700_000_000 + i, little);
    dv.setUint32(p + 4, 1000 * i, little);
    dv.setUint32(p + 8, f.length, little);
    dv.setUint32(p + 12, f.length, little);
    out.set(f, p + 16);
    p += 16 + f.length;
  });
  return out;
}

/** One pcapng block: type, total length, body padded to 4, total length again. */
function block(type: number, body: Uint8Array, little: boolean): Uint8Array {
  const padded = (body.length + 3) & ~3;
  const total = 12 + padded;
  const out = new Uint8Array(total);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, type, little);
  dv.setUint32(4, total, little);
  out.set(body, 8);
  dv.setUint32(total - 4, total, little);
  return out;
}

function bytes(n: number, fill: (dv: DataView) => void): Uint8Array {
  const b = new Uint8Array(n);
  fill(new DataView(b.buffer));
  return b;
}

/** A pcapng file: SHB, an IDB with options, then EPB, SPB and PB blocks around `packets`. */
function pcapngFile(packets: readonly Uint8Array[], linkType: number, little: boolean): Uint8Array {
  const parts: Uint8Array[] = [];
  parts.push(block(0x0a0d0d0a, bytes(16, (dv) => {
    dv.setUint32(0, 0x1a2b3c4d, little);
    dv.setUint16(4, 1, little);
    dv.setInt32(8, -1, little);
    dv.setInt32(12, -1, little);
  }), little));
  // IDB: linktype, reserved, snaplen; options if_tsresol (9) = 10^-9, if_tsoffset (14), opt_endofopt.
  parts.push(block(1, bytes(8 + 8 + 12 + 4, (dv) => {
    dv.setUint16(0, linkType, little);
    dv.setUint32(4, 65535, little);
    dv.setUint16(8, 9, little);
    dv.setUint16(10, 1, little);
    dv.setUint8(12, 9);
    dv.setUint16(16, 14, little);
    dv.setUint16(18, 8, little);
    dv.setBigInt64(20, 3n, little);
  }), little));
  packets.forEach((ip, i) => {
    const f = frame(linkType, ip);
    if (i % 3 === 1) {
      parts.push(block(3, bytes(4 + f.length, (dv) => {
        dv.setUint32(0, f.length, little);
        new Uint8Array(dv.buffer).set(f, 4);
      }), little));
      return;
    }
    // EPB (6) or obsolete PB (2): interface 0, timestamp (EPB: high word set), captured and original length.
    const type = i % 3 === 0 ? 6 : 2;
    parts.push(block(type, bytes(20 + f.length, (dv) => {
      if (type === 6) dv.setUint32(4, 0x00060000, little);
      dv.setUint32(8, i, little);
      dv.setUint32(12, f.length, little);
      dv.setUint32(16, f.length, little);
      new Uint8Array(dv.buffer).set(f, 20);
    }), little));
  });
  parts.push(block(5, new Uint8Array(8), little)); // interface statistics: skipped by readers
  return concat(parts);
}

/** Seeds: every supported container × byte order × link type around `packets` (2–3 each). */
export function captureSeeds(packets: readonly Uint8Array[]): Uint8Array[] {
  const out: Uint8Array[] = [];
  const links = [LT.RAW, LT.ETHERNET, LT.LINUX_SLL, LT.LINUX_SLL2, LT.NULL];
  links.forEach((lt, i) => {
    const some = [packets[i % packets.length]!, packets[(i + 1) % packets.length]!, packets[(i + 2) % packets.length]!];
    out.push(pcapFile(some, lt, true, false), pcapFile(some, lt, false, i % 2 === 0));
    out.push(pcapngFile(some, lt, true), pcapngFile(some, lt, false));
  });
  return out;
}
