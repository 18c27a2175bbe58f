/**
 * Zero-copy parser for one IP packet (IPv4 with options and fragments, IPv6 with
 * the extension-header chain) and its TCP, UDP, ICMP or ICMPv6 header. Fills a
 * caller-owned {@link PacketInfo} in place and returns a drop reason code.
 */

/** IP protocol numbers (IANA "Assigned Internet Protocol Numbers"). */
export const IPPROTO = {
  HOPOPTS: 0,
  ICMP: 1,
  TCP: 6,
  UDP: 17,
  ROUTING: 43,
  FRAGMENT: 44,
  ESP: 50,
  AH: 51,
  ICMPV6: 58,
  NONE: 59,
  DSTOPTS: 60,
  MOBILITY: 135,
  HIP: 139,
  SHIM6: 140,
} as const;

/** TCP header flag bits (RFC 9293 §3.1). */
export const TCP_FLAG = { FIN: 0x01, SYN: 0x02, RST: 0x04, PSH: 0x08, ACK: 0x10, URG: 0x20, ECE: 0x40, CWR: 0x80 } as const;

/**
 * Why a packet could not be parsed (or, for the flow tracker, was not
 * tracked). 0 means parsed. Indexes {@link DROP_REASON_NAMES}; counters keyed
 * by these codes are plain typed arrays.
 */
export const DropReason = {
  NONE: 0,
  /** Fewer bytes than the fixed IP header. */
  TRUNCATED_IP: 1,
  /** Version nibble not 4 or 6. */
  BAD_VERSION: 2,
  /** IPv4 IHL below 5 or past the packet. */
  BAD_IHL: 3,
  /** IPv4 total length / IPv6 payload length does not fit the bytes we have. */
  BAD_LENGTH: 4,
  /** IPv6 extension header runs past the packet, or too many of them. */
  BAD_EXT_HEADER: 5,
  /** Transport header shorter than its fixed part. */
  TRUNCATED_L4: 6,
  /** TCP data offset below 5 or past the segment. */
  BAD_TCP_OFFSET: 7,
  /** UDP length field below 8 or past the datagram. */
  BAD_UDP_LENGTH: 8,
  /** Non-first IP fragment: no transport header to read (we do not reassemble). */
  FRAGMENT: 9,
  /** IPv6 jumbogram (payload length 0), not supported. */
  JUMBOGRAM: 10,
  /** A protocol we do not look inside (ESP, GRE, …). Parsed at IP level only. */
  UNSUPPORTED_PROTO: 11,
  /** TCP flag combination that no real stack sends (SYN+FIN, SYN+RST, none). */
  BAD_TCP_FLAGS: 12,
  /** Flow tracker: TCP segment outside any plausible window. */
  OUT_OF_WINDOW: 13,
  /** Flow tracker: RST whose sequence number is not in window (counted, not obeyed). */
  RST_OUT_OF_WINDOW: 14,
  /** Flow tracker: a flow was evicted to make room. */
  EVICTED: 15,
  /** Flow tracker: a non-SYN packet arrived for a flow already closed (absorbed). */
  AFTER_CLOSE: 16,
  /** Flow tracker: too many out-of-order holes; two were merged (byte count may be high). */
  HOLE_OVERFLOW: 17,
  /** Capture reader: frame is not IPv4/IPv6 (ARP, LLDP, …). */
  NOT_IP: 18,
  /** Capture reader: link-layer header truncated. */
  TRUNCATED_LINK: 19,
} as const;

/** Number of drop reason codes; size of counter arrays indexed by {@link DropReason}. */
export const DROP_REASON_COUNT = 20;

/** Snake-case label for each {@link DropReason} code (Prometheus `reason` label values). */
export const DROP_REASON_NAMES: readonly string[] = [
  'none', 'truncated_ip', 'bad_version', 'bad_ihl', 'bad_length', 'bad_ext_header', 'truncated_l4',
  'bad_tcp_offset', 'bad_udp_length', 'fragment', 'jumbogram', 'unsupported_proto', 'bad_tcp_flags',
  'out_of_window', 'rst_out_of_window', 'evicted', 'after_close', 'hole_overflow', 'not_ip', 'truncated_link',
];

/**
 * Everything {@link parseIpPacket} learns about one packet, as numbers and
 * offsets into the caller's buffer (never copies). One instance is meant to be
 * reused for every packet; its fields are only valid until the next parse and
 * only while the buffer is unchanged.
 */
export class PacketInfo {
  /** 4 or 6. */
  ipVersion = 0;
  /** Offset of the IP header in the buffer. */
  l3Off = 0;
  /** Bytes of the IP packet (IPv4 total length / 40 + IPv6 payload length); link padding excluded. */
  ipLen = 0;
  /** IPv4 TTL or IPv6 hop limit. */
  ttl = 0;
  /** Offset of the 4- or 16-byte source address. */
  srcOff = 0;
  /** Offset of the 4- or 16-byte destination address. */
  dstOff = 0;
  /** Upper-layer protocol after the IPv6 extension chain (TCP 6, UDP 17, ICMP 1, ICMPv6 58, …). */
  proto = 0;
  /** Offset of the transport header. */
  l4Off = 0;
  /** Bytes from the transport header to the end of the IP packet. */
  l4Len = 0;
  /** True for any fragment (MF set or non-zero offset). */
  isFragment = false;
  /** Fragment offset in bytes (0 for the first fragment or an unfragmented packet). */
  fragOffset = 0;
  /** IPv4 DF bit. */
  dontFragment = false;
  /** Source port (TCP/UDP); ICMP echo identifier; 0 otherwise. */
  srcPort = 0;
  /** Destination port (TCP/UDP); 0 otherwise. */
  dstPort = 0;
  /** TCP flags byte. */
  tcpFlags = 0;
  /** TCP sequence number (unsigned 32-bit). */
  tcpSeq = 0;
  /** TCP acknowledgment number (unsigned 32-bit). */
  tcpAck = 0;
  /** TCP window field, unscaled. */
  tcpWindow = 0;
  /** TCP header length in bytes. */
  tcpHeaderLen = 0;
  /** TCP MSS option, 0 if absent (only parsed on SYN segments). */
  tcpMss = 0;
  /** TCP window scale shift, -1 if absent (only parsed on SYN segments). */
  tcpWscale = -1;
  /** SACK-permitted option present (SYN only). */
  tcpSackPermitted = false;
  /** Timestamps option present (SYN only). */
  tcpTimestamps = false;
  /** A TCP option ran past the header; options parsing stopped there (not fatal). */
  tcpOptionsMalformed = false;
  /** Offset of the transport payload (TCP data, UDP data, ICMP body after the 8-byte header). */
  payloadOff = 0;
  /** Transport payload bytes present in this packet (UDP: from the UDP length field when fragmented). */
  payloadLen = 0;
  /** ICMP/ICMPv6 type. */
  icmpType = 0;
  /** ICMP/ICMPv6 code. */
  icmpCode = 0;
}

const MAX_EXT_HEADERS = 16;

/**
 * Parses the IP packet at buf[off, off+len) into `out` (reused; see
 * {@link PacketInfo}). Trailing bytes past the IP length (link padding) are
 * ignored. Never throws on any input and never allocates.
 *
 * @returns 0 ({@link DropReason.NONE}) when the IP and transport headers are
 * well formed, else a {@link DropReason} code. For FRAGMENT and
 * UNSUPPORTED_PROTO the IP-level fields of `out` are valid.
 */
export function parseIpPacket(buf: Uint8Array, off: number, len: number, out: PacketInfo): number {
  if (len < 1 || off < 0 || off + len > buf.length) return DropReason.TRUNCATED_IP;
  const v = buf[off]! >> 4;
  out.l3Off = off;
  out.srcPort = 0;
  out.dstPort = 0;
  out.tcpFlags = 0;
  out.payloadLen = 0;
  out.payloadOff = 0;
  let proto: number;
  let p: number;
  let end: number;
  if (v === 4) {
    if (len < 20) return DropReason.TRUNCATED_IP;
    const ihl = (buf[off]! & 0x0f) << 2;
    if (ihl < 20 || ihl > len) return DropReason.BAD_IHL;
    const total = (buf[off + 2]! << 8) | buf[off + 3]!;
    if (total < ihl || total > len) return DropReason.BAD_LENGTH;
    out.ipVersion = 4;
    out.ipLen = total;
    out.ttl = buf[off + 8]!;
    out.srcOff = off + 12;
    out.dstOff = off + 16;
    const ff = (buf[off + 6]! << 8) | buf[off + 7]!;
    out.dontFragment = (ff & 0x4000) !== 0;
    out.fragOffset = (ff & 0x1fff) << 3;
    out.isFragment = (ff & 0x3fff) !== 0; // RFC 791 §3.1: MF or offset
    proto = buf[off + 9]!;
    p = off + ihl;
    end = off + total;
  } else if (v === 6) {
    if (len < 40) return DropReason.TRUNCATED_IP;
    const plen = (buf[off + 4]! << 8) | buf[off + 5]!;
    if (plen === 0) return DropReason.JUMBOGRAM; // RFC 2675: needs the HBH jumbo option
    if (40 + plen > len) return DropReason.BAD_LENGTH;
    out.ipVersion = 6;
    out.ipLen = 40 + plen;
    out.ttl = buf[off + 7]!;
    out.srcOff = off + 8;
    out.dstOff = off + 24;
    out.dontFragment = true; // RFC 8200 §5: routers never fragment IPv6
    out.fragOffset = 0;
    out.isFragment = false;
    proto = buf[off + 6]!;
    p = off + 40;
    end = off + 40 + plen;
    // RFC 8200 §4.1: walk the extension-header chain to the upper layer.
    for (let n = 0; ; n++) {
      if (proto === IPPROTO.HOPOPTS || proto === IPPROTO.ROUTING || proto === IPPROTO.DSTOPTS
        || proto === IPPROTO.MOBILITY || proto === IPPROTO.HIP || proto === IPPROTO.SHIM6) {
        if (n >= MAX_EXT_HEADERS || p + 8 > end) return DropReason.BAD_EXT_HEADER;
        const hlen = (buf[p + 1]! + 1) << 3; // RFC 8200 §4.3: 8-octet units, not counting the first 8
        if (p + hlen > end) return DropReason.BAD_EXT_HEADER;
        proto = buf[p]!;
        p += hlen;
      } else if (proto === IPPROTO.FRAGMENT) {
        if (n >= MAX_EXT_HEADERS || p + 8 > end) return DropReason.BAD_EXT_HEADER;
        const fo = (buf[p + 2]! << 8) | buf[p + 3]!; // RFC 8200 §4.5: offset(13) res(2) M(1)
        out.fragOffset = fo & 0xfff8;
        out.isFragment = true;
        proto = buf[p]!;
        p += 8;
      } else if (proto === IPPROTO.AH) {
        if (n >= MAX_EXT_HEADERS || p + 8 > end) return DropReason.BAD_EXT_HEADER;
        const hlen = (buf[p + 1]! + 2) << 2; // RFC 4302 §2.2: 32-bit words minus 2
        if (p + hlen > end) return DropReason.BAD_EXT_HEADER;
        proto = buf[p]!;
        p += hlen;
      } else {
        break;
      }
    }
  } else {
    return DropReason.BAD_VERSION;
  }
  out.proto = proto;
  out.l4Off = p;
  out.l4Len = end - p;
  if (out.fragOffset !== 0) return DropReason.FRAGMENT;
  const l4Len = end - p;
  if (proto === IPPROTO.TCP) {
    if (l4Len < 20) return out.isFragment ? DropReason.FRAGMENT : DropReason.TRUNCATED_L4;
    const hl = (buf[p + 12]! >> 4) << 2;
    if (hl < 20 || hl > l4Len) return DropReason.BAD_TCP_OFFSET;
    out.srcPort = (buf[p]! << 8) | buf[p + 1]!;
    out.dstPort = (buf[p + 2]! << 8) | buf[p + 3]!;
    out.tcpSeq = ((buf[p + 4]! << 24) | (buf[p + 5]! << 16) | (buf[p + 6]! << 8) | buf[p + 7]!) >>> 0;
    out.tcpAck = ((buf[p + 8]! << 24) | (buf[p + 9]! << 16) | (buf[p + 10]! << 8) | buf[p + 11]!) >>> 0;
    const flags = buf[p + 13]!;
    out.tcpFlags = flags;
    out.tcpWindow = (buf[p + 14]! << 8) | buf[p + 15]!;
    out.tcpHeaderLen = hl;
    out.payloadOff = p + hl;
    out.payloadLen = l4Len - hl;
    if ((flags & TCP_FLAG.SYN) !== 0) {
      parseTcpOptions(buf, p, hl, out);
    } else {
      out.tcpMss = 0;
      out.tcpWscale = -1;
      out.tcpSackPermitted = false;
      out.tcpTimestamps = false;
      out.tcpOptionsMalformed = false;
    }
    return 0;
  }
  if (proto === IPPROTO.UDP) {
    if (l4Len < 8) return out.isFragment ? DropReason.FRAGMENT : DropReason.TRUNCATED_L4;
    const ulen = (buf[p + 4]! << 8) | buf[p + 5]!;
    // RFC 768: length includes the header. A first fragment holds less than ulen.
    if (ulen < 8 || (ulen > l4Len && !out.isFragment)) return DropReason.BAD_UDP_LENGTH;
    out.srcPort = (buf[p]! << 8) | buf[p + 1]!;
    out.dstPort = (buf[p + 2]! << 8) | buf[p + 3]!;
    out.payloadOff = p + 8;
    out.payloadLen = ulen - 8;
    return 0;
  }
  if (proto === IPPROTO.ICMP || proto === IPPROTO.ICMPV6) {
    if (l4Len < 8) return out.isFragment ? DropReason.FRAGMENT : DropReason.TRUNCATED_L4;
    out.icmpType = buf[p]!;
    out.icmpCode = buf[p + 1]!;
    out.srcPort = (buf[p + 4]! << 8) | buf[p + 5]!; // echo identifier (RFC 792, RFC 4443 §4.1)
    out.payloadOff = p + 8;
    out.payloadLen = l4Len - 8;
    return 0;
  }
  return DropReason.UNSUPPORTED_PROTO;
}

/**
 * Reads the options of the TCP header at buf[tcpOff, tcpOff+headerLen) into
 * `out` (MSS, window scale, SACK-permitted, timestamps — RFC 9293 §3.2,
 * RFC 7323 §2–3, RFC 2018 §2). A malformed option stops the walk and sets
 * `out.tcpOptionsMalformed`; nothing throws.
 */
export function parseTcpOptions(buf: Uint8Array, tcpOff: number, headerLen: number, out: PacketInfo): void {
  out.tcpMss = 0;
  out.tcpWscale = -1;
  out.tcpSackPermitted = false;
  out.tcpTimestamps = false;
  out.tcpOptionsMalformed = false;
  let i = tcpOff + 20;
  const end = tcpOff + headerLen;
  while (i < end) {
    const kind = buf[i]!;
    if (kind === 0) break; // End of Option List
    if (kind === 1) { i++; continue; } // NOP
    if (i + 1 >= end) { out.tcpOptionsMalformed = true; return; }
    const olen = buf[i + 1]!;
    if (olen < 2 || i + olen > end) { out.tcpOptionsMalformed = true; return; }
    if (kind === 2 && olen === 4) out.tcpMss = (buf[i + 2]! << 8) | buf[i + 3]!;
    else if (kind === 3 && olen === 3) out.tcpWscale = Math.min(buf[i + 2]!, 14); // RFC 7323 §2.3: cap at 14
    else if (kind === 4 && olen === 2) out.tcpSackPermitted = true;
    else if (kind === 8 && olen === 10) out.tcpTimestamps = true;
    i += olen;
  }
}

/** True when the IPv4 header checksum of the packet at buf[off..] verifies (RFC 791 §3.1). Caller checked IHL. */
export function ipv4HeaderChecksumOk(buf: Uint8Array, off: number): boolean {
  const ihl = (buf[off]! & 0x0f) << 2;
  let sum = 0;
  for (let i = 0; i < ihl; i += 2) sum += (buf[off + i]! << 8) | buf[off + i + 1]!;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return sum === 0xffff;
}

/**
 * Formats the 4- or 16-byte address at buf[off..] as text (dotted quad, or
 * RFC 5952 IPv6 with the longest zero run compressed). Allocates a string:
 * for logs and records, not the per-packet path.
 */
export function formatAddress(buf: Uint8Array, off: number, ipVersion: number): string {
  if (ipVersion === 4) return `${buf[off]}.${buf[off + 1]}.${buf[off + 2]}.${buf[off + 3]}`;
  const w: number[] = [];
  for (let i = 0; i < 16; i += 2) w.push((buf[off + i]! << 8) | buf[off + i + 1]!);
  // RFC 5952 §4.2.3: compress the longest run of two or more zero groups (first on ties).
  let bestStart = -1, bestLen = 1, curStart = -1, curLen = 0;
  for (let i = 0; i < 8; i++) {
    if (w[i] === 0) {
      if (curStart < 0) { curStart = i; curLen = 0; }
      curLen++;
      if (curLen > bestLen) { bestLen = curLen; bestStart = curStart; }
    } else curStart = -1;
  }
  const hex = (a: number[]) => a.map((x) => x.toString(16)).join(':');
  if (bestStart < 0) return hex(w);
  return `${hex(w.slice(0, bestStart))}::${hex(w.slice(bestStart + bestLen))}`;
}
