/**
 * The client's check of a packet the gateway delivers (issue #12 item 8):
 * it must be addressed to us (an assigned address or one of our advertised
 * site prefixes) and come from where the session is entitled to talk to
 * (the routes the gateway advertised to us, RFC 9484 §4.7.3). An ICMP error
 * passes when it goes back to the sender of the packet it quotes: the
 * gateway reports on whatever we sent into the tunnel, from its own
 * reporter address and also to sources outside our prefixes (RFC 9484 §11
 * answers a spoofed source), and it forwards errors from its network only
 * when they quote a flow we opened (inbound-filter.ts). Pure, allocation-free.
 */
import { DropReason, parseIpPacket, type PacketInfo } from '../../packet/ip-packet.js';
import { compareBytes, prefixContains } from '../../packet/ip-address.js';
import type { AddressEntry } from './address-entry.js';
import { ConnectIpDrop } from './counters.js';
import { inRanges, judgeGatewayPacket, VERDICT_LINK_ICMP6 } from './packet-judge.js';
import { isLinkIcmp6 } from './ipv6-probe.js';
import type { IpAddressRange } from './route-advertisement.js';
import { isIcmpError, readQuotedPacket } from '../inbound/quoted-packet.js';

/** What the client session knows when judging a received packet; the session keeps it current. */
export interface ReceiveContext {
  /** Addresses the gateway assigned us (ADDRESS_ASSIGN). */
  readonly assigned: readonly AddressEntry[];
  /** Our advertised site ranges (ROUTE_ADVERTISEMENT we sent). */
  readonly ourRanges: readonly IpAddressRange[];
  /** Ranges the gateway routes for us (its ROUTE_ADVERTISEMENT). */
  readonly peerRanges: readonly IpAddressRange[];
}

/** Is the address at buf[off] (family v) ours: assigned to us, or inside a range we advertise? */
function isOurs(c: ReceiveContext, buf: Uint8Array, off: number, v: 4 | 6): boolean {
  const a = c.assigned;
  for (let i = 0; i < a.length; i++) {
    const e = a[i]!;
    if (e.version === v && prefixContains(e.address, e.prefixLength, buf, off)) return true;
  }
  return inRanges(c.ourRanges, buf, off, v, 0);
}

/**
 * Verdict on a packet from the gateway, parsed into `p` (`quoted` is scratch
 * for an ICMP error's quoted header): 0 = deliver, else
 * {@link ConnectIpDrop.DESTINATION_NOT_OURS} or
 * {@link ConnectIpDrop.SOURCE_NOT_ROUTED}.
 */
export function judgeReceivedPacket(c: ReceiveContext, buf: Uint8Array, p: PacketInfo, quoted: PacketInfo, transportParsed = true): number {
  const v = p.ipVersion as 4 | 6;
  // A fragment or unknown protocol has no ICMP header of its own: the parse left icmpType as the previous packet's.
  if (transportParsed && isIcmpError(p)) {
    // RFC 792 / RFC 4443 §2.4(c): an error goes back to the source of the packet it quotes.
    const consistent = readQuotedPacket(buf, p, quoted) && compareBytes(buf, p.dstOff, buf, quoted.srcOff, v === 4 ? 4 : 16) === 0;
    return consistent ? 0 : ConnectIpDrop.MALFORMED_ICMP_ERROR;
  }
  if (!isOurs(c, buf, p.dstOff, v)) return ConnectIpDrop.DESTINATION_NOT_OURS;
  return inRanges(c.peerRanges, buf, p.srcOff, v, p.proto) ? 0 : ConnectIpDrop.SOURCE_NOT_ROUTED;
}

/**
 * The agent's whole verdict on an IP packet from the gateway (what the
 * session does before it writes one into its TUN, in this order): well
 * formed, IPv6 still carried, the link's own ICMPv6 handed to the probe
 * ({@link VERDICT_LINK_ICMP6}, unless `checkLink` is false), parsed (fragments
 * and protocols we do not look inside pass on addresses alone), then
 * {@link judgeReceivedPacket}. 0 = deliver. The native checks give the same
 * verdicts; this is their oracle.
 */
export function judgeGatewayIp(c: ReceiveContext, ipv6Enabled: boolean, linkLocal: Uint8Array, buf: Uint8Array, off: number, len: number, info: PacketInfo, quoted: PacketInfo, checkLink: boolean): number {
  const v = judgeGatewayPacket(buf, off, len, ipv6Enabled);
  if (v < 0) return -v;
  if (checkLink && v === 6 && isLinkIcmp6(buf, off, len, linkLocal)) return VERDICT_LINK_ICMP6;
  const pr = parseIpPacket(buf, off, len, info);
  if (pr !== DropReason.NONE && pr !== DropReason.FRAGMENT && pr !== DropReason.UNSUPPORTED_PROTO) return ConnectIpDrop.MALFORMED_IP;
  return judgeReceivedPacket(c, buf, info, quoted, pr === DropReason.NONE);
}
