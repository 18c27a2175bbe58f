/**
 * Streaming reader for packet capture files: classic pcap (µs and ns, either
 * byte order) and pcapng (SHB/IDB/EPB/SPB/PB), plus link-layer decapsulation
 * to the IP header for Ethernet, raw IP, Linux cooked (SLL, SLL2) and BSD loopback.
 */
import { closeSync, openSync, readSync } from 'node:fs';
import { DropReason } from '../packet/ip-packet.js';

/** LINKTYPE_* values we decapsulate (tcpdump.org/linktypes.html). */
export const LinkType = {
  NULL: 0,
  ETHERNET: 1,
  RAW_OPENBSD: 12,
  RAW_BSD: 14,
  RAW: 101,
  LOOP: 108,
  LINUX_SLL: 113,
  IPV4: 228,
  IPV6: 229,
  LINUX_SLL2: 276,
} as const;

/** The file is not a capture, or its structure is corrupt. Message prefixed `pcap: `. */
export class CaptureFormatError extends Error {
  constructor(message: string) {
    super(`pcap: ${message}`);
    this.name = 'CaptureFormatError';
  }
}

/** Largest frame or block we accept; anything bigger means a corrupt file. */
const MAX_RECORD_BYTES = 16 * 1024 * 1024;
const CHUNK_BYTES = 1 << 20;

const PCAPNG_SHB = 0x0a0d0d0a;
const PCAPNG_BOM = 0x1a2b3c4d;

/** pcapng interface: link type and timestamp units per second (IDB if_tsresol, if_tsoffset). */
interface Iface {
  linkType: number;
  unitsPerSec: number;
  offsetSec: number;
}

/**
 * Reads one capture file sequentially with a fixed window buffer. After
 * {@link next} returns true, the current frame is buf[off, off+len) with its
 * link type and timestamp; the bytes stay valid only until the next call.
 */
export class CaptureReader {
  /** "pcap" or "pcapng". */
  readonly format: 'pcap' | 'pcapng';
  /** Window buffer holding the current frame (reused; do not keep references). */
  buf: Buffer = Buffer.alloc(CHUNK_BYTES);
  /** Offset of the current frame in {@link buf}. */
  off = 0;
  /** Captured bytes of the current frame. */
  len = 0;
  /** Original length on the wire (≥ len when the snap length cut it). */
  origLen = 0;
  /** Timestamp, milliseconds since the Unix epoch (fractional). */
  tsMs = 0;
  /** LINKTYPE_* of the current frame. */
  linkType = 0;
  /** Frames read so far. */
  frames = 0;
  /** True when the file ended in the middle of a record (e.g. capture killed while writing). */
  truncated = false;

  private fd: number;
  private start = 0; // first unread byte in buf
  private end = 0; // end of valid bytes in buf
  private eof = false;
  private little = true;
  private nanos = false;
  private pcapLink = 0;
  private ifaces: Iface[] = [];

  private constructor(fd: number, format: 'pcap' | 'pcapng') {
    this.fd = fd;
    this.format = format;
  }

  /**
   * Opens `path` and reads its header. Throws {@link CaptureFormatError}
   * when it is not a pcap/pcapng file; fs errors (ENOENT, …) pass through.
   */
  static open(path: string): CaptureReader {
    const fd = openSync(path, 'r');
    const head = Buffer.alloc(4);
    const n = readSync(fd, head, 0, 4, 0);
    const m = n === 4 ? head.readUInt32BE(0) : 0;
    let fmt: 'pcap' | 'pcapng';
    if (m === PCAPNG_SHB) fmt = 'pcapng';
    else if (m === 0xa1b2c3d4 || m === 0xd4c3b2a1 || m === 0xa1b23c4d || m === 0x4d3cb2a1) fmt = 'pcap';
    else {
      closeSync(fd);
      throw new CaptureFormatError(`${path} is not a pcap or pcapng capture (magic ${head.subarray(0, n).toString('hex') || 'missing'})`);
    }
    const r = new CaptureReader(fd, fmt);
    try {
      if (fmt === 'pcap') r.pcapHeader();
      else if (!r.ensure(12)) throw new CaptureFormatError(`${path}: truncated section header`);
    } catch (e) {
      r.close();
      throw e;
    }
    return r;
  }

  /** Advances to the next frame. Returns false at the end of the file. Throws CaptureFormatError on corruption. */
  next(): boolean {
    return this.format === 'pcap' ? this.nextPcap() : this.nextPcapng();
  }

  /** Closes the file. Later calls to next() return false. */
  close(): void {
    if (this.fd >= 0) closeSync(this.fd);
    this.fd = -1;
    this.eof = true;
    this.start = this.end;
  }

  /** Makes n bytes available at buf[start..]; false when the file ends first. */
  private ensure(n: number): boolean {
    if (this.end - this.start >= n) return true;
    if (n > this.buf.length) {
      const b = Buffer.alloc(Math.max(n, this.buf.length * 2));
      this.buf.copy(b, 0, this.start, this.end);
      this.buf = b;
    } else if (this.start > 0) {
      this.buf.copy(this.buf, 0, this.start, this.end);
    }
    this.end -= this.start;
    this.start = 0;
    while (this.end - this.start < n && !this.eof) {
      const got = readSync(this.fd, this.buf, this.end, this.buf.length - this.end, null);
      if (got === 0) this.eof = true;
      this.end += got;
    }
    return this.end - this.start >= n;
  }

  private u32(o: number): number {
    return this.little ? this.buf.readUInt32LE(o) : this.buf.readUInt32BE(o);
  }

  private u16(o: number): number {
    return this.little ? this.buf.readUInt16LE(o) : this.buf.readUInt16BE(o);
  }

  private pcapHeader(): void {
    if (!this.ensure(24)) throw new CaptureFormatError('truncated pcap file header');
    const m = this.buf.readUInt32LE(0);
    this.little = m === 0xa1b2c3d4 || m === 0xa1b23c4d;
    this.nanos = m === 0xa1b23c4d || m === 0x4d3cb2a1;
    this.pcapLink = this.u32(20) & 0x0fffffff; // upper bits: FCS length flags
    this.start = 24;
  }

  private nextPcap(): boolean {
    if (!this.ensure(16)) {
      this.truncated = this.end > this.start;
      return false;
    }
    const s = this.start;
    const sec = this.u32(s);
    const frac = this.u32(s + 4);
    const incl = this.u32(s + 8);
    const orig = this.u32(s + 12);
    if (incl > MAX_RECORD_BYTES) throw new CaptureFormatError(`record ${this.frames + 1} claims ${incl} captured bytes (corrupt file)`);
    if (!this.ensure(16 + incl)) {
      this.truncated = true;
      return false;
    }
    this.off = this.start + 16;
    this.len = incl;
    this.origLen = orig;
    this.tsMs = sec * 1000 + (this.nanos ? frac / 1e6 : frac / 1e3);
    this.linkType = this.pcapLink;
    this.start += 16 + incl;
    this.frames++;
    return true;
  }

  private nextPcapng(): boolean {
    for (;;) {
      if (!this.ensure(12)) {
        this.truncated = this.end > this.start;
        return false;
      }
      const s = this.start;
      // The SHB type reads the same in both byte orders; every other block type is in the section's order.
      let type = this.u32(s);
      if (type === PCAPNG_SHB) {
        // Section header: byte order from the byte-order magic; interfaces reset.
        const bom = this.buf.readUInt32LE(s + 8);
        if (bom === PCAPNG_BOM) this.little = true;
        else if (this.buf.readUInt32BE(s + 8) === PCAPNG_BOM) this.little = false;
        else throw new CaptureFormatError('pcapng section header has a bad byte-order magic');
        this.ifaces = [];
        type = PCAPNG_SHB;
      }
      const blen = this.u32(s + 4);
      if (blen < 12 || blen % 4 !== 0 || blen > MAX_RECORD_BYTES) {
        throw new CaptureFormatError(`pcapng block of type 0x${type.toString(16)} has bad length ${blen}`);
      }
      if (!this.ensure(blen)) {
        this.truncated = true;
        return false;
      }
      const b = this.start; // ensure() may have moved the window
      this.start += blen;
      if (type === 1) {
        // Interface Description Block.
        if (blen < 20) throw new CaptureFormatError('pcapng interface block too short');
        const iface: Iface = { linkType: this.u16(b + 8), unitsPerSec: 1e6, offsetSec: 0 };
        let p = b + 16;
        const end = b + blen - 4;
        while (p + 4 <= end) {
          const code = this.u16(p);
          const olen = this.u16(p + 2);
          if (code === 0) break;
          if (p + 4 + olen > end) break;
          if (code === 9 && olen >= 1) {
            const v = this.buf[p + 4]!;
            iface.unitsPerSec = v & 0x80 ? 2 ** (v & 0x7f) : 10 ** v;
          } else if (code === 14 && olen >= 8) {
            iface.offsetSec = Number(this.little ? this.buf.readBigInt64LE(p + 4) : this.buf.readBigInt64BE(p + 4));
          }
          p += 4 + ((olen + 3) & ~3);
        }
        this.ifaces.push(iface);
        continue;
      }
      if (type === 6 || type === 2) {
        // Enhanced Packet Block / obsolete Packet Block.
        if (blen < 32) throw new CaptureFormatError('pcapng packet block too short');
        const ifId = type === 6 ? this.u32(b + 8) : this.u16(b + 8);
        const iface = this.ifaces[ifId];
        if (iface === undefined) throw new CaptureFormatError(`pcapng packet refers to undeclared interface ${ifId}`);
        const ts = this.u32(b + 12) * 4294967296 + this.u32(b + 16);
        const cap = this.u32(b + 20);
        if (28 + cap > blen - 4) throw new CaptureFormatError('pcapng packet block shorter than its captured length');
        this.off = b + 28;
        this.len = cap;
        this.origLen = this.u32(b + 24);
        this.tsMs = (ts / iface.unitsPerSec + iface.offsetSec) * 1000;
        this.linkType = iface.linkType;
        this.frames++;
        return true;
      }
      if (type === 3) {
        // Simple Packet Block: interface 0, no timestamp.
        const iface = this.ifaces[0];
        if (iface === undefined) throw new CaptureFormatError('pcapng simple packet before any interface');
        const orig = this.u32(b + 8);
        this.off = b + 12;
        this.len = Math.min(orig, blen - 16);
        this.origLen = orig;
        this.linkType = iface.linkType;
        this.frames++;
        return true;
      }
      // Other blocks (name resolution, statistics, custom, SHB) carry no packets.
    }
  }
}

/** Where the IP packet sits inside a link-layer frame; filled by {@link locateIp}. */
export class IpSpan {
  off = 0;
  len = 0;
}

/**
 * Finds the IPv4/IPv6 packet inside a frame of the given link type. Fills
 * `out` and returns 0, or returns DropReason.NOT_IP / TRUNCATED_LINK. Never throws.
 */
export function locateIp(linkType: number, buf: Uint8Array, off: number, len: number, out: IpSpan): number {
  let hdr: number;
  let ethertype = -1;
  switch (linkType) {
    case LinkType.ETHERNET: {
      if (len < 14) return DropReason.TRUNCATED_LINK;
      hdr = 14;
      ethertype = (buf[off + 12]! << 8) | buf[off + 13]!;
      // IEEE 802.1Q / 802.1ad tags, up to two.
      for (let t = 0; t < 2 && (ethertype === 0x8100 || ethertype === 0x88a8 || ethertype === 0x9100); t++) {
        if (len < hdr + 4) return DropReason.TRUNCATED_LINK;
        ethertype = (buf[off + hdr + 2]! << 8) | buf[off + hdr + 3]!;
        hdr += 4;
      }
      break;
    }
    case LinkType.LINUX_SLL:
      if (len < 16) return DropReason.TRUNCATED_LINK;
      hdr = 16;
      ethertype = (buf[off + 14]! << 8) | buf[off + 15]!;
      break;
    case LinkType.LINUX_SLL2:
      if (len < 20) return DropReason.TRUNCATED_LINK;
      hdr = 20;
      ethertype = (buf[off]! << 8) | buf[off + 1]!;
      break;
    case LinkType.NULL:
    case LinkType.LOOP: {
      if (len < 4) return DropReason.TRUNCATED_LINK;
      hdr = 4;
      // DLT_NULL: address family in the capturing host's byte order; DLT_LOOP: network order.
      const be = (buf[off]! << 24) | (buf[off + 1]! << 16) | (buf[off + 2]! << 8) | buf[off + 3]!;
      const le = (buf[off + 3]! << 24) | (buf[off + 2]! << 16) | (buf[off + 1]! << 8) | buf[off]!;
      const af = linkType === LinkType.LOOP ? be : be < 256 ? be : le;
      if (af === 2) ethertype = 0x0800;
      else if (af === 24 || af === 28 || af === 30 || af === 10) ethertype = 0x86dd; // BSDs, macOS, Linux
      else return DropReason.NOT_IP;
      break;
    }
    case LinkType.RAW:
    case LinkType.RAW_BSD:
    case LinkType.RAW_OPENBSD:
    case LinkType.IPV4:
    case LinkType.IPV6:
      hdr = 0;
      break;
    default:
      return DropReason.NOT_IP;
  }
  if (ethertype !== -1 && ethertype !== 0x0800 && ethertype !== 0x86dd) return DropReason.NOT_IP;
  if (len <= hdr) return DropReason.TRUNCATED_LINK;
  const v = buf[off + hdr]! >> 4;
  if (v !== 4 && v !== 6) return DropReason.NOT_IP;
  out.off = off + hdr;
  out.len = len - hdr;
  return 0;
}
