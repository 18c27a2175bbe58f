/**
 * In-place rewrites of forwarded packets: TTL / hop-limit decrement and TCP MSS
 * clamping, each fixing checksums incrementally (RFC 1624).
 */
import { checksumUpdate16 } from './checksum.js';
import { IPPROTO, PacketInfo, TCP_FLAG, parseIpPacket } from './ip-packet.js';

/**
 * Decrements the IPv4 TTL (fixing the header checksum, RFC 1624) or the IPv6
 * hop limit of the packet at buf[off, off+len), in place (RFC 9484 §7.2,
 * RFC 1812 §5.3.1).
 *
 * @returns the new TTL (≥ 1) when the packet may be forwarded; 0 when the
 * TTL was 0 or 1 — the packet must not be forwarded and the buffer is left
 * unchanged (answer with Time Exceeded); -1 when the buffer is not an IP packet.
 */
export function decrementTtl(buf: Uint8Array, off: number, len: number): number {
  if (len < 1) return -1;
  const v = buf[off]! >> 4;
  if (v === 4) {
    if (len < 20) return -1;
    const ttl = buf[off + 8]!;
    if (ttl <= 1) return 0;
    // TTL shares a 16-bit word with the protocol byte.
    const oldWord = (ttl << 8) | buf[off + 9]!;
    const newWord = ((ttl - 1) << 8) | buf[off + 9]!;
    const c = checksumUpdate16((buf[off + 10]! << 8) | buf[off + 11]!, oldWord, newWord);
    buf[off + 8] = ttl - 1;
    buf[off + 10] = c >> 8;
    buf[off + 11] = c & 0xff;
    return ttl - 1;
  }
  if (v === 6) {
    if (len < 40) return -1;
    const hl = buf[off + 7]!;
    if (hl <= 1) return 0;
    buf[off + 7] = hl - 1; // RFC 8200 §3: no header checksum in IPv6
    return hl - 1;
  }
  return -1;
}

/** Largest MSS that fits `mtuBytes` for the given IP version (no IP/TCP options assumed). RFC 9293 §3.7.1. */
export function mssForMtu(mtuBytes: number, ipVersion: number): number {
  return mtuBytes - (ipVersion === 4 ? 20 : 40) - 20;
}

const scratch = new PacketInfo();

/**
 * Clamps the MSS option of a SYN or SYN-ACK in the packet at buf[off, off+len)
 * to fit `mtuBytes` (like iptables TCPMSS --set-mss), fixing the TCP checksum
 * incrementally. Other packets, fragments and SYNs without an MSS option are
 * left untouched (RFC 9293 §3.7.1 default MSS of 536/1220 already fits any
 * tunnel MTU we accept).
 *
 * @returns the MSS now in the packet when it was lowered, 0 when nothing changed.
 */
export function clampTcpMss(buf: Uint8Array, off: number, len: number, mtuBytes: number): number {
  if (parseIpPacket(buf, off, len, scratch) !== 0) return 0;
  return clampTcpMssParsed(buf, scratch, mtuBytes);
}

/**
 * {@link clampTcpMss} for a packet the caller already parsed: `pi` is the
 * result of a successful `parseIpPacket` over `buf` as it is now. The clamp
 * rewrites two option bytes and the checksum, so `pi` stays valid after it.
 */
export function clampTcpMssParsed(buf: Uint8Array, pi: PacketInfo, mtuBytes: number): number {
  if (pi.proto !== IPPROTO.TCP || pi.isFragment || (pi.tcpFlags & TCP_FLAG.SYN) === 0) return 0;
  const limit = mssForMtu(mtuBytes, pi.ipVersion);
  if (limit <= 0) return 0;
  const t = pi.l4Off;
  const end = t + pi.tcpHeaderLen;
  let i = t + 20;
  while (i < end) {
    const kind = buf[i]!;
    if (kind === 0) break;
    if (kind === 1) { i++; continue; }
    if (i + 1 >= end) return 0;
    const olen = buf[i + 1]!;
    if (olen < 2 || i + olen > end) return 0;
    if (kind === 2 && olen === 4) {
      const mss = (buf[i + 2]! << 8) | buf[i + 3]!;
      if (mss <= limit) return 0;
      // The option word sits at an even or odd offset from the TCP header;
      // RFC 1624 needs 16-bit-aligned words of the checksummed data.
      const rel = i + 2 - t;
      const cks = (buf[t + 16]! << 8) | buf[t + 17]!;
      let c: number;
      if ((rel & 1) === 0) {
        c = checksumUpdate16(cks, mss, limit);
      } else {
        // Misaligned: the field straddles two words. Only the difference
        // m' - m enters the sum, so the neighbouring bytes can be taken as 0.
        c = checksumUpdate16(cks, mss >> 8, limit >> 8);
        c = checksumUpdate16(c, (mss & 0xff) << 8, (limit & 0xff) << 8);
      }
      buf[i + 2] = limit >> 8;
      buf[i + 3] = limit & 0xff;
      buf[t + 16] = c >> 8;
      buf[t + 17] = c & 0xff;
      return limit;
    }
    i += olen;
  }
  return 0;
}
