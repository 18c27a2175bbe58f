/**
 * ICMPv6 Echo Request / Reply packets (RFC 4443 §4.1, §4.2) written into a
 * caller buffer: the bytes of the RFC 9484 §7.2 tunnel-link MTU probe and
 * of the answer to it. Allocation-free.
 */
import { transportChecksum } from './checksum.js';

/** ff02::1, all nodes on the link (RFC 4291 §2.7.1). */
export const ALL_NODES_6: Uint8Array = Uint8Array.of(0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1);
/** ICMPv6 Echo Request type (RFC 4443 §4.1). */
export const ICMP6_ECHO_REQUEST = 128;
/** ICMPv6 Echo Reply type (RFC 4443 §4.2). */
export const ICMP6_ECHO_REPLY = 129;
const IPPROTO_ICMPV6 = 58;

function fixChecksum(b: Uint8Array, o: number, icmpLen: number): void {
  b[o + 42] = 0;
  b[o + 43] = 0;
  const c = transportChecksum(b, 6, o + 8, o + 24, IPPROTO_ICMPV6, o + 40, icmpLen);
  b[o + 42] = c >> 8;
  b[o + 43] = c & 0xff;
}

/**
 * Writes an IPv6 packet carrying an Echo Request from `src` to `dst` (16
 * bytes each) with identifier `id`, sequence `seq` and `dataBytes` bytes of
 * data (byte i = i & 0xff), hop limit 255, at out[off..]. Returns its length
 * (48 + dataBytes). The caller guarantees the room.
 */
export function writeEcho6Request(out: Uint8Array, off: number, src: Uint8Array, dst: Uint8Array, id: number, seq: number, dataBytes: number): number {
  const n = 48 + dataBytes;
  out.fill(0, off, off + 48);
  out[off] = 0x60;
  out[off + 4] = (n - 40) >> 8;
  out[off + 5] = (n - 40) & 0xff;
  out[off + 6] = IPPROTO_ICMPV6;
  out[off + 7] = 255;
  out.set(src, off + 8);
  out.set(dst, off + 24);
  out[off + 40] = ICMP6_ECHO_REQUEST;
  out[off + 44] = (id >> 8) & 0xff;
  out[off + 45] = id & 0xff;
  out[off + 46] = (seq >> 8) & 0xff;
  out[off + 47] = seq & 0xff;
  for (let i = 0; i < dataBytes; i++) out[off + 48 + i] = i & 0xff;
  fixChecksum(out, off, n - 40);
  return n;
}

/**
 * Writes the Echo Reply to the IPv6 Echo Request at req[off..] into
 * out[outOff..]: the request's data entirely and unmodified (RFC 4443 §4.2),
 * to the requester, from `src`, hop limit 255. The length comes from the
 * request's Payload Length (40 + it), not from any trailing bytes. Returns
 * that length, or 0 when the request is not a whole Echo Request or `out`
 * has no room for it.
 */
export function writeEcho6Reply(req: Uint8Array, off: number, len: number, src: Uint8Array, out: Uint8Array, outOff: number): number {
  if (len < 48 || req[off]! >> 4 !== 6 || req[off + 6] !== IPPROTO_ICMPV6 || req[off + 40] !== ICMP6_ECHO_REQUEST) return 0;
  const n = 40 + ((req[off + 4]! << 8) | req[off + 5]!);
  if (n < 48 || n > len || outOff + n > out.length) return 0;
  out.set(req.subarray(off, off + n), outOff);
  out.set(req.subarray(off + 8, off + 24), outOff + 24); // to the requester
  out.set(src, outOff + 8);
  out[outOff + 7] = 255;
  out[outOff + 40] = ICMP6_ECHO_REPLY;
  fixChecksum(out, outOff, n - 40);
  return n;
}
