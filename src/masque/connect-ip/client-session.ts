/**
 * CONNECT-IP client (agent) session, sans-IO (RFC 9484): sends IP packets
 * from the TUN in HTTP Datagrams, delivers the gateway's packets, requests
 * addresses and advertises the site's routes with capsules.
 */
import type { TunnelStream } from '../../h3/tunnel-stream.js';
import { addressBits, addressBytes, hostBitsZero, isZero, prefixEnd, type IpPrefix, type IpVersion } from '../../packet/ip-address.js';
import type { AddressEntry } from './address-entry.js';
import type { AddressRequest } from './address-request.js';
import { ConnectIpDrop } from './counters.js';
import { checkRangeOrder, normalizeRanges, type IpAddressRange, type RouteAdvertisement } from './route-advertisement.js';
import { VERDICT_LINK_ICMP6 } from './packet-judge.js';
import { compileAgentTable } from '../native-judge.js';
import { judgeGatewayIp, type ReceiveContext } from './receive-check.js';
import { PacketInfo } from '../../packet/ip-packet.js';
import { ConnectIpSessionBase, type ConnectIpSessionOptions, type PacketSink } from './session-base.js';

/** Options for {@link ConnectIpClientSession}. */
export interface ConnectIpClientOptions extends ConnectIpSessionOptions {
  /** IP packets from the gateway that passed the checks (valid during the call). */
  readonly onPacket: PacketSink;
  /** Source address of locally generated ICMP errors per family (4/16 bytes); default: the first address assigned to us of that family. */
  readonly icmpSourceV4?: Uint8Array;
  readonly icmpSourceV6?: Uint8Array;
}

/** One address to ask the gateway for (RFC 9484 §4.7.2). */
export interface AddressWish {
  readonly version: IpVersion;
  /** Preferred address (host bits past `prefixLength` zero); omitted = any. */
  readonly address?: Uint8Array;
  /** Requested prefix length; default a single address (32/128). */
  readonly prefixLength?: number;
}

/**
 * The lists the receive check reads (a class with plain fields: an object
 * literal with getters is a dictionary-mode object in V8, slow to read per
 * packet; see GatewayJudgeContext in gateway-session.ts).
 */
class ReceiveLists implements ReceiveContext {
  assigned: readonly AddressEntry[] = [];
  ourRanges: readonly IpAddressRange[] = [];
  peerRanges: readonly IpAddressRange[] = [];
}

/**
 * The agent's end of one CONNECT-IP stream. Construct it once the gateway
 * answered 2xx, and attach it as the stream's handler. All packet buffers
 * stay the caller's; received packets are valid only during `onPacket`.
 */
export class ConnectIpClientSession extends ConnectIpSessionBase {
  private nextRequestId = 1;
  private readonly pending = new Map<number, AddressEntry>();
  /** What the receive check reads, kept here by the session: the addresses assigned to us, our ranges, the gateway's. */
  private readonly rx = new ReceiveLists();
  private readonly onPacket: PacketSink;
  private readonly icmpSrc4: Uint8Array | undefined;
  private readonly icmpSrc6: Uint8Array | undefined;
  private readonly info = new PacketInfo();
  private readonly quoted = new PacketInfo();

  constructor(stream: TunnelStream, opts: ConnectIpClientOptions) {
    super(stream, opts, 2);
    this.onPacket = opts.onPacket;
    this.icmpSrc4 = opts.icmpSourceV4;
    this.icmpSrc6 = opts.icmpSourceV6;
  }

  /**
   * Sends one IP packet read from the TUN: buf[offset, offset+length), with at
   * least MASQUE_HEADROOM (9) writable bytes before `offset` (context ID and
   * quarter stream ID go there). Returns 0 when queued, else a
   * {@link ConnectIpDrop} code (already counted). A packet larger than
   * {@link maxPacketSize} gets a Packet Too Big / Fragmentation Needed with
   * the current limit (RFC 9484 §7.2.1), returned to the caller in
   * {@link icmpBuffer} / {@link icmpLength} to write back into the TUN.
   * Allocation-free. The buffer is free for reuse on return.
   */
  sendPacket(buf: Uint8Array, offset: number, length: number): number {
    // Link-local here is e.g. the kernel's router solicitations and MLD reports on the TUN.
    return this.sendIpPacket(buf, offset, length, false);
  }

  /**
   * This session's receive check as a native table (`compileAgentTable`):
   * what {@link receivePacket} asks of a packet from the gateway, for a
   * reader outside this object (the agent's TUN thread). Compile it again
   * after the assigned addresses, either side's routes or IPv6 changed.
   */
  receiveTable(): Uint8Array {
    return compileAgentTable(this.rx, !this.ipv6Disabled, this.probe.linkLocal);
  }

  protected icmpSource(v: 4 | 6): Uint8Array | undefined {
    return v === 4 ? this.icmpSrc4 ?? this.firstAssigned(4) : this.icmpSrc6 ?? this.firstAssigned(6);
  }

  private firstAssigned(version: IpVersion): Uint8Array | undefined {
    for (const a of this.rx.assigned) if (a.version === version) return a.address;
    return undefined;
  }

  /**
   * Asks the gateway for addresses (ADDRESS_REQUEST, RFC 9484 §4.7.2). Each
   * wish gets a fresh, never reused, non-zero Request ID, returned in order.
   * Throws `masque: …` on an empty list or a malformed wish (caller bug).
   */
  requestAddresses(wishes: readonly AddressWish[]): number[] {
    if (wishes.length === 0) throw new Error('masque: requestAddresses needs at least one address (RFC 9484 §4.7.2)');
    const entries: AddressEntry[] = [];
    for (const w of wishes) {
      const bits = addressBits(w.version);
      const len = w.prefixLength ?? bits;
      const address = w.address ?? new Uint8Array(addressBytes(w.version));
      if (address.length !== addressBytes(w.version) || len < 0 || len > bits || !hostBitsZero(address, len)) {
        throw new Error(`masque: bad address request for IPv${w.version}/${len}`);
      }
      const e: AddressEntry = { requestId: this.nextRequestId++, version: w.version, address, prefixLength: len };
      entries.push(e);
      this.pending.set(e.requestId, e);
    }
    this.sendAddressRequest({ addresses: entries });
    return entries.map((e) => e.requestId);
  }

  /**
   * Advertises the prefixes or ranges behind this agent (site-to-site,
   * RFC 9484 §4.7.3). The list replaces any earlier one; it is sorted into
   * §4.7.3 order and overlapping ranges are merged here. Throws `masque: …`
   * on a range whose start is after its end (caller bug).
   */
  advertiseRoutes(routes: readonly (IpPrefix | IpAddressRange)[]): void {
    const ranges = normalizeRanges(routes.map(toRange));
    const err = checkRangeOrder(ranges);
    if (err) throw new Error(`masque: advertised routes invalid: ${err}`);
    this.rx.ourRanges = ranges;
    this.sendRouteAdvertisement(ranges);
  }

  /** Addresses the gateway currently assigns us (latest ADDRESS_ASSIGN, rejections excluded). */
  assignedAddresses(): readonly AddressEntry[] {
    return this.rx.assigned;
  }

  /** Ranges the gateway currently routes for us (latest ROUTE_ADVERTISEMENT). */
  peerRoutes(): readonly IpAddressRange[] {
    return this.rx.peerRanges;
  }

  protected usesIpv6(): boolean {
    return this.rx.assigned.some((a) => a.version === 6) || this.rx.peerRanges.some((r) => r.version === 6) || this.rx.ourRanges.some((r) => r.version === 6);
  }

  protected disableIpv6(): void {
    // Stop advertising IPv6 site routes; the gateway stops routing IPv6 to us.
    if (this.rx.ourRanges.some((r) => r.version === 6)) {
      this.rx.ourRanges = this.rx.ourRanges.filter((r) => r.version === 4);
      this.sendRouteAdvertisement(this.rx.ourRanges);
    }
  }

  protected onAddressAssign(addresses: readonly AddressEntry[]): void {
    const kept: AddressEntry[] = [];
    const rejected: AddressEntry[] = [];
    for (const a of addresses) {
      // RFC 9484 §4.7.2: all-zero address with maximum prefix length = request not granted.
      if (a.prefixLength === addressBits(a.version) && isZero(a.address, 0, a.address.length)) {
        const req = this.pending.get(a.requestId);
        if (req) rejected.push(req);
      } else {
        kept.push(a);
      }
      this.pending.delete(a.requestId);
    }
    this.rx.assigned = kept;
    this.onEvent({ type: 'addresses-assigned', addresses: kept, rejected });
    this.checkPath();
  }

  protected onAddressRequest(req: AddressRequest): void {
    // The agent has no pool: RFC 9484 §4.7.2 still requires an answer per Request ID — all rejections.
    this.sendAddressAssign(
      req.addresses.map((a) => ({ requestId: a.requestId, version: a.version, address: new Uint8Array(a.address.length), prefixLength: addressBits(a.version) })),
    );
  }

  protected onRouteAdvertisement(ra: RouteAdvertisement): void {
    this.rx.peerRanges = ra.ranges;
    this.onEvent({ type: 'routes', ranges: ra.ranges });
    this.checkPath();
  }

  protected receivePacket(buf: Uint8Array, off: number, len: number): void {
    // Issue #12 item 8: only packets for us from where this session may talk to (ICMP errors: back to the sender they quote).
    const ll = this.probe.linkLocal;
    let verdict = judgeGatewayIp(this.rx, !this.ipv6Disabled, ll, buf, off, len, this.info, this.quoted, true);
    if (verdict === VERDICT_LINK_ICMP6) {
      if (this.handleLinkIcmp6(buf, off, len)) return;
      verdict = judgeGatewayIp(this.rx, !this.ipv6Disabled, ll, buf, off, len, this.info, this.quoted, false);
    }
    if (verdict !== 0) {
      this.counters.drops[verdict]++;
      return;
    }
    this.counters.packetsReceived++;
    this.counters.bytesReceived += len;
    this.onPacket(buf, off, len);
  }

  protected cleanup(): void {
    this.pending.clear();
  }
}

function toRange(r: IpPrefix | IpAddressRange): IpAddressRange {
  if ('start' in r) return r;
  return { version: r.version, start: r.address, end: prefixEnd(r), ipProtocol: 0 };
}

