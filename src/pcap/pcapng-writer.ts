/**
 * pcapng block encoders (draft-ietf-opsawg-pcapng, little-endian sections):
 * section header, interface description, enhanced packet and interface
 * statistics blocks, each written into a caller's buffer. `mtun capture`
 * streams them; {@link CaptureReader} reads them back.
 */

/** Block types (pcapng §4). */
const BT_SHB = 0x0a0d0d0a;
const BT_IDB = 0x00000001;
const BT_ISB = 0x00000005;
const BT_EPB = 0x00000006;
/** Byte-order magic (pcapng §4.1). */
const BYTE_ORDER_MAGIC = 0x1a2b3c4d;

/** Option codes (pcapng §3.5, §4.2, §4.6). */
const OPT_ENDOFOPT = 0;
const OPT_COMMENT = 1;
const SHB_USERAPPL = 4;
const IF_NAME = 2;
const IF_DESCRIPTION = 3;
const IF_TSRESOL = 9;
const ISB_STARTTIME = 2;
const ISB_ENDTIME = 3;
const ISB_IFRECV = 4;
const ISB_IFDROP = 5;

/** Timestamps are written in microseconds (if_tsresol 6, pcapng §4.2). */
const TSRESOL_MICROS = 6;

/** Fixed bytes of an EPB around the packet data: 28 before, 4 after (pcapng §4.3). */
export const EPB_OVERHEAD_BYTES = 32;

function pad4(n: number): number {
  return (n + 3) & ~3;
}

function optionLength(valueBytes: number): number {
  return 4 + pad4(valueBytes);
}

function writeOption(out: Buffer, off: number, code: number, value: Buffer): number {
  out.writeUInt16LE(code, off);
  out.writeUInt16LE(value.length, off + 2);
  value.copy(out, off + 4);
  out.fill(0, off + 4 + value.length, off + optionLength(value.length));
  return off + optionLength(value.length);
}

function writeTimestamp(out: Buffer, off: number, tsMs: number): void {
  const us = Math.max(0, Math.round(tsMs * 1000));
  out.writeUInt32LE(Math.floor(us / 4294967296), off);
  out.writeUInt32LE(us % 4294967296, off + 4);
}

function u64(v: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(Math.max(0, Math.floor(v))));
  return b;
}

function ts64(tsMs: number): Buffer {
  const b = Buffer.alloc(8);
  writeTimestamp(b, 0, tsMs);
  return b;
}

/** Options as (code, bytes) pairs → block body with the end-of-options marker. */
function block(type: number, fixed: Buffer, options: [number, Buffer][]): Buffer {
  let optLen = 0;
  for (const [, v] of options) optLen += optionLength(v.length);
  if (options.length > 0) optLen += 4;
  const total = 8 + fixed.length + optLen + 4;
  const out = Buffer.alloc(total);
  out.writeUInt32LE(type, 0);
  out.writeUInt32LE(total, 4);
  fixed.copy(out, 8);
  let p = 8 + fixed.length;
  for (const [code, v] of options) p = writeOption(out, p, code, v);
  if (options.length > 0) p = writeOption(out, p, OPT_ENDOFOPT, Buffer.alloc(0));
  out.writeUInt32LE(total, p);
  return out;
}

/** A Section Header Block (pcapng §4.1), section length unknown (-1), naming the writing application. Allocates. */
export function sectionHeaderBlock(application: string, comment?: string): Buffer {
  const fixed = Buffer.alloc(16);
  fixed.writeUInt32LE(BYTE_ORDER_MAGIC, 0);
  fixed.writeUInt16LE(1, 4); // major version
  fixed.writeUInt16LE(0, 6); // minor version
  fixed.writeBigInt64LE(-1n, 8); // section length not specified
  const opts: [number, Buffer][] = [[SHB_USERAPPL, Buffer.from(application)]];
  if (comment !== undefined) opts.push([OPT_COMMENT, Buffer.from(comment)]);
  return block(BT_SHB, fixed, opts);
}

/** An Interface Description Block (pcapng §4.2) with if_name, if_description and µs timestamps. Allocates. */
export function interfaceDescriptionBlock(linkType: number, snapLen: number, name: string, description?: string): Buffer {
  const fixed = Buffer.alloc(8);
  fixed.writeUInt16LE(linkType, 0);
  fixed.writeUInt32LE(snapLen, 4);
  const opts: [number, Buffer][] = [[IF_NAME, Buffer.from(name)]];
  if (description !== undefined) opts.push([IF_DESCRIPTION, Buffer.from(description)]);
  opts.push([IF_TSRESOL, Buffer.from([TSRESOL_MICROS])]);
  return block(BT_IDB, fixed, opts);
}

/** Counters of an Interface Statistics Block. */
export interface InterfaceStatistics {
  /** Capture start and end, ms since the epoch. */
  readonly startMs: number;
  readonly endMs: number;
  /** Packets that passed the capture's filter (isb_ifrecv). */
  readonly received: number;
  /** Of those, packets lost because the reader was slow (isb_ifdrop). */
  readonly dropped: number;
}

/** An Interface Statistics Block (pcapng §4.6) for interface `ifaceId`, stamped at `s.endMs`. Allocates. */
export function interfaceStatisticsBlock(ifaceId: number, s: InterfaceStatistics): Buffer {
  const fixed = Buffer.alloc(12);
  fixed.writeUInt32LE(ifaceId, 0);
  writeTimestamp(fixed, 4, s.endMs);
  return block(BT_ISB, fixed, [
    [ISB_STARTTIME, ts64(s.startMs)],
    [ISB_ENDTIME, ts64(s.endMs)],
    [ISB_IFRECV, u64(s.received)],
    [ISB_IFDROP, u64(s.dropped)],
  ]);
}

/** Bytes of an Enhanced Packet Block carrying `capLen` bytes of packet data (no options). */
export function enhancedPacketLength(capLen: number): number {
  return EPB_OVERHEAD_BYTES + pad4(capLen);
}

/**
 * Writes an Enhanced Packet Block (pcapng §4.3) at out[off]: `capLen` bytes
 * of data from src[srcOff…] (copied), `origLen` the packet's length on the
 * wire. `out` must have {@link enhancedPacketLength} bytes free at `off`.
 * Returns the offset after the block. Allocates nothing.
 */
export function writeEnhancedPacket(out: Buffer, off: number, ifaceId: number, tsMs: number, src: Uint8Array, srcOff: number, capLen: number, origLen: number): number {
  const total = enhancedPacketLength(capLen);
  out.writeUInt32LE(BT_EPB, off);
  out.writeUInt32LE(total, off + 4);
  out.writeUInt32LE(ifaceId, off + 8);
  writeTimestamp(out, off + 12, tsMs);
  out.writeUInt32LE(capLen, off + 20);
  out.writeUInt32LE(origLen, off + 24);
  out.set(src.subarray(srcOff, srcOff + capLen), off + 28);
  out.fill(0, off + 28 + capLen, off + total - 4);
  out.writeUInt32LE(total, off + total - 4);
  return off + total;
}
