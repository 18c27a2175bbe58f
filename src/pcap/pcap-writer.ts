/**
 * Writes classic pcap files (microsecond timestamps, little-endian) — for
 * tests and for dumping tunnel traffic to inspect later.
 */
import { closeSync, openSync, writeSync } from 'node:fs';

/**
 * Appends frames to a new pcap file. Each write is one syscall; the frame
 * bytes are copied out during the call and not kept.
 */
export class PcapWriter {
  private fd: number;
  private readonly hdr = Buffer.alloc(16);

  /** Creates (truncates) `path` and writes the file header for `linkType` (e.g. 101 raw IP). */
  constructor(path: string, linkType: number, snapLen = 262144) {
    this.fd = openSync(path, 'w');
    const h = Buffer.alloc(24);
    h.writeUInt32LE(0xa1b2c3d4, 0);
    h.writeUInt16LE(2, 4);
    h.writeUInt16LE(4, 6);
    h.writeUInt32LE(snapLen, 16);
    h.writeUInt32LE(linkType, 20);
    writeSync(this.fd, h);
  }

  /** Writes one frame buf[off, off+len) captured at `tsMs` (ms since the epoch). Throws `pcap: …` after close. */
  write(buf: Uint8Array, off: number, len: number, tsMs: number): void {
    if (this.fd < 0) throw new Error('pcap: writer is closed');
    const sec = Math.floor(tsMs / 1000);
    const usec = Math.round((tsMs - sec * 1000) * 1000);
    this.hdr.writeUInt32LE(sec, 0);
    this.hdr.writeUInt32LE(Math.min(usec, 999_999), 4);
    this.hdr.writeUInt32LE(len, 8);
    this.hdr.writeUInt32LE(len, 12);
    writeSync(this.fd, this.hdr);
    writeSync(this.fd, buf, off, len);
  }

  /** Closes the file; later writes throw. */
  close(): void {
    if (this.fd >= 0) closeSync(this.fd);
    this.fd = -1;
  }
}
