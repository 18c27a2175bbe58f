/**
 * The lifecycle both CONNECT-IP sessions share: capsule dispatch and
 * validation (RFC 9484 §4.7), context-ID handling (§6), close/abort, and the
 * IPv6 part's teardown (§7.2). The packet work is composed in: the send path
 * ({@link DatagramPath}: encapsulation, path-size cache, ICMP limiter), the
 * §7.2 probe ({@link Ipv6Probe}) and the pure verdicts of packet-judge.ts.
 */
import { H3Error } from '../../h3/errors.js';
import type { TunnelStream, TunnelStreamHandler } from '../../h3/tunnel-stream.js';
import { quarterStreamIdLength, writeQuarterStreamId } from '../../h3/datagram.js';
import { addressAssignLength, encodeAddressAssign, parseAddressAssign } from './address-assign.js';
import type { AddressEntry } from './address-entry.js';
import { addressRequestLength, encodeAddressRequest, parseAddressRequest, type AddressRequest } from './address-request.js';
import { CAPSULE_ADDRESS_ASSIGN, CAPSULE_ADDRESS_REQUEST, CAPSULE_ROUTE_ADVERTISEMENT } from './capsule-types.js';
import type { RouteRefusalReason } from './client-routes.js';
import { ConnectIpCounters, ConnectIpDrop } from './counters.js';
import { CONTEXT_MALFORMED, contextPayloadOffset } from './datagram.js';
import { DatagramPath } from './datagram-path.js';
import { judgeOutgoing } from './packet-judge.js';
import { IcmpError } from '../../packet/icmp-error.js';
import { IPV6_MIN_MTU, Ipv6Probe, LinkIcmp } from './ipv6-probe.js';
import {
  encodeRouteAdvertisement,
  parseRouteAdvertisement,
  routeAdvertisementLength,
  type IpAddressRange,
  type RouteAdvertisement,
} from './route-advertisement.js';

export { IPV6_MIN_MTU } from './ipv6-probe.js';

/** Receives an IP packet buf[offset, offset+length); the bytes are valid only during the call (copy to keep). */
export type PacketSink = (buf: Uint8Array, offset: number, length: number) => void;

/** Session events (control plane; objects allocated per event). */
export type ConnectIpEvent =
  /** The peer's current ADDRESS_ASSIGN list (addresses it let us use), and our requests it rejected. */
  | { readonly type: 'addresses-assigned'; readonly addresses: readonly AddressEntry[]; readonly rejected: readonly AddressEntry[] }
  /** We assigned addresses to the peer (gateway) — the full current list. */
  | { readonly type: 'addresses-granted'; readonly addresses: readonly AddressEntry[] }
  /** The peer's current ROUTE_ADVERTISEMENT (supersedes earlier ones, §4.7.3). */
  | { readonly type: 'routes'; readonly ranges: readonly IpAddressRange[] }
  /** An advertised prefix could not be installed because another session owns it or one overlapping it. */
  | { readonly type: 'route-conflict'; readonly prefix: string }
  /** Part of the peer's ROUTE_ADVERTISEMENT was refused before installation (policy, forbidden space, caps). */
  | { readonly type: 'route-refused'; readonly what: string; readonly reason: RouteRefusalReason }
  /** The path cannot carry 1280-byte IPv6 packets: IPv6 switched off for this session (RFC 9484 §7.2). */
  | { readonly type: 'ipv6-disabled'; readonly maxPacketSize: number; readonly reason: string }
  /** A 1280-byte ICMPv6 echo to ff02::1 came back: the tunnel carries the IPv6 minimum MTU (RFC 9484 §7.2). */
  | { readonly type: 'ipv6-verified' }
  /** The session ended; `error` is the H3 error code (0 clean), `reason` when we aborted it. */
  | { readonly type: 'closed'; readonly error: number; readonly reason?: string };

/** Options common to both session kinds. */
export interface ConnectIpSessionOptions {
  /** Control-plane events. */
  readonly onEvent?: (e: ConnectIpEvent) => void;
  /** RFC 9484 §7.2 when the path cannot carry 1280-byte IPv6: `disable-ipv6` (default: drop IPv6, retract its addresses/routes) or `abort` (abort the stream). */
  readonly ipv6MinMtuAction?: 'disable-ipv6' | 'abort';
  /** ICMP errors generated per second at most (token bucket); default 200. */
  readonly icmpPerSecond?: number;
  /** Monotonic clock in ms for the ICMP rate limit; default performance.now. */
  readonly nowMs?: () => number;
  /** Our IPv6 link-local address on the tunnel link (source of §7.2 probes and echo replies). Default fe80::1 (gateway) / fe80::2 (client). */
  readonly linkLocalV6?: Uint8Array;
  /** How long to wait for each §7.2 probe reply; default 2000 ms, 3 tries. */
  readonly ipv6ProbeTimeoutMs?: number;
}

/** Shared lifecycle; see {@link ConnectIpClientSession} and {@link ConnectIpGatewaySession}. */
export abstract class ConnectIpSessionBase implements TunnelStreamHandler {
  /** Traffic and drop counters (read by telemetry). */
  readonly counters = new ConnectIpCounters();
  protected closed = false;
  protected ipv6Disabled = false;
  protected readonly onEvent: (e: ConnectIpEvent) => void;
  /** The session's monotonic clock (ms): the `nowMs` option. */
  protected readonly now: () => number;
  /** Datagram send path: encapsulation, path size, generated ICMP. */
  protected readonly path: DatagramPath;
  /** RFC 9484 §7.2 probe and link responder. */
  protected readonly probe: Ipv6Probe;
  private readonly ipv6Action: 'disable-ipv6' | 'abort';

  constructor(
    /** The request stream; owned by the HTTP/3 layer, used until close. */
    readonly stream: TunnelStream,
    opts: ConnectIpSessionOptions,
    defaultLinkLocalSuffix: number,
  ) {
    this.onEvent = opts.onEvent ?? (() => {});
    this.now = opts.nowMs ?? (() => performance.now());
    this.ipv6Action = opts.ipv6MinMtuAction ?? 'disable-ipv6';
    this.path = new DatagramPath(stream, this.counters, this.now, opts.icmpPerSecond ?? 200, (m) => this.onPathSize(m));
    const ll = opts.linkLocalV6 ?? Uint8Array.of(0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, defaultLinkLocalSuffix);
    this.probe = new Ipv6Probe(ll, (b, o, l) => this.sendOut(b, o, l), ConnectIpDrop.TOO_BIG, opts.ipv6ProbeTimeoutMs ?? 2000);
  }

  /**
   * What goes in front of an IP packet in this session's HTTP Datagrams over
   * HTTP/3: the Quarter Stream ID (RFC 9297 §2.1) and Context ID 0 (RFC 9484
   * §6), for a sender outside this object (a daemon's TUN thread).
   */
  datagramPrefix(): Uint8Array {
    const n = quarterStreamIdLength(this.stream.streamId);
    const b = new Uint8Array(n + 1);
    writeQuarterStreamId(this.stream.streamId, b, n);
    b[n] = 0;
    return b;
  }

  /** Counts packets another reader took for this session and wrote into the TUN (a daemon's TUN thread), as {@link receivePacket} counts its own. */
  countReceived(packets: number, bytes: number): void {
    this.counters.packetsReceived += packets;
    this.counters.bytesReceived += bytes;
  }

  /** Counts packets another sender queued for this session (a daemon's TUN thread), as {@link sendPacket} counts its own. */
  countSent(packets: number, bytes: number): void {
    this.counters.packetsSent += packets;
    this.counters.bytesSent += bytes;
  }

  /** True once the stream ended or the session was closed/aborted. */
  get isClosed(): boolean {
    return this.closed;
  }

  /** True while IPv6 is carried (false after the §7.2 1280-byte check failed). */
  get ipv6Enabled(): boolean {
    return !this.ipv6Disabled;
  }

  /**
   * After a send call returned a drop code: the ICMP error generated for the
   * caller (Packet Too Big / Fragmentation Needed, RFC 9484 §7.2.1) is the
   * IP packet at {@link icmpBuffer}[MASQUE_HEADROOM, +icmpLength); 0 when
   * none. The bytes are valid until the next call on this session; the
   * caller injects them (connect-ip-go's WritePacket returns them likewise).
   */
  get icmpLength(): number {
    return this.path.icmpLength;
  }

  /** Buffer holding the ICMP error described by {@link icmpLength}; shared by all sessions, valid until the next send call. */
  get icmpBuffer(): Uint8Array {
    return this.path.icmpBuffer;
  }

  /**
   * Largest IP packet that fits one datagram now: the path's maximum HTTP
   * Datagram payload minus the 1-byte context ID (quarter stream ID already
   * excluded by the HTTP/3 layer). 0 when datagrams cannot be sent.
   */
  maxPacketSize(): number {
    return this.path.maxPacketSize();
  }

  /**
   * Re-reads the path size and applies the RFC 9484 §7.2 IPv6 minimum:
   * if IPv6 is in use and fewer than 1280 bytes fit, IPv6 is disabled (or
   * the stream aborted). The daemon calls this after path changes; the send
   * path calls it when a datagram is refused. Returns maxPacketSize().
   */
  checkPath(): number {
    return this.path.refresh();
  }

  private onPathSize(m: number): void {
    if (m > 0 && m < IPV6_MIN_MTU && !this.ipv6Disabled && !this.closed && this.usesIpv6()) {
      this.ipv6Fail(`path carries ${m}-byte packets, below the IPv6 minimum of ${IPV6_MIN_MTU}`, m);
    }
  }

  private ipv6Fail(reason: string, m: number): void {
    this.probe.cancel();
    if (this.ipv6Action === 'abort') {
      this.fail(reason, H3Error.H3_REQUEST_CANCELLED);
    } else {
      this.ipv6Disabled = true;
      this.disableIpv6();
      this.onEvent({ type: 'ipv6-disabled', maxPacketSize: m, reason });
    }
  }

  /**
   * RFC 9484 §7.2: sends an ICMPv6 echo request with 1232 bytes of data
   * (a 1280-byte packet) to ff02::1 through the tunnel; the peer answers
   * it. Without a reply after 3 tries ({@link onTimeout}) — or at once if
   * the packet cannot be sent because it is too big — IPv6 is torn down
   * like in {@link checkPath}. Drive with nextTimeoutMs()/onTimeout(now).
   */
  probeIpv6(nowMs: number): void {
    if (this.closed || this.ipv6Disabled) return;
    const why = this.probe.start(nowMs);
    if (why !== null) this.ipv6Fail(`${why} (${this.path.limit} bytes)`, this.path.limit);
  }

  /** Earliest time (ms, same clock as onTimeout) this session needs onTimeout, or -1. */
  nextTimeoutMs(): number {
    return this.probe.nextTimeoutMs();
  }

  /** Timer callback: retries or fails an outstanding §7.2 probe. */
  onTimeout(nowMs: number): void {
    if (this.closed) return;
    const why = this.probe.onTimeout(nowMs);
    if (why !== null) this.ipv6Fail(why, this.path.limit > 0 ? this.path.limit : this.maxPacketSize());
  }

  /** Link-local ICMPv6 on the tunnel link (§7.2 probe and its answers); true when consumed. */
  protected handleLinkIcmp6(buf: Uint8Array, off: number, len: number): boolean {
    const r = this.probe.handle(buf, off, len, this.counters);
    if (r === LinkIcmp.VERIFIED) this.onEvent({ type: 'ipv6-verified' });
    return r !== LinkIcmp.NOT_LINK;
  }

  /**
   * Admits (judgeOutgoing) and sends one IP packet from the caller's
   * network. On TOO_BIG, a Packet Too Big / Frag Needed with the current
   * limit (RFC 9484 §7.2.1) from {@link icmpSource} is left for the caller
   * ({@link icmpLength}); an IPv4 packet without DF is instead counted as
   * TOO_BIG_NO_DF when `noDfApart` (a router would fragment it; we cannot).
   */
  protected sendIpPacket(buf: Uint8Array, off: number, len: number, noDfApart: boolean): number {
    const path = this.path;
    path.icmpLength = 0;
    const v = judgeOutgoing(buf, off, len, !this.ipv6Disabled);
    if (v < 0) return path.drop(-v);
    const r = this.sendOut(buf, off, len);
    if (r !== ConnectIpDrop.TOO_BIG) return r;
    if (noDfApart && v === 4 && (buf[off + 6]! & 0x40) === 0) {
      this.counters.drops[ConnectIpDrop.TOO_BIG]--;
      return path.drop(ConnectIpDrop.TOO_BIG_NO_DF);
    }
    const src = this.icmpSource(v as 4 | 6);
    if (src) path.icmpLength = path.buildIcmp(IcmpError.PACKET_TOO_BIG, path.limit, buf, off, len, src);
    else this.counters.icmpSuppressed++;
    return r;
  }

  /** Source address of a Packet Too Big about a packet of IP version `v` (undefined: none known, suppressed). */
  protected abstract icmpSource(v: 4 | 6): Uint8Array | undefined;

  /** Sends an IP packet (headroom before `off`) through the tunnel; 0 or a counted drop code. */
  protected sendOut(buf: Uint8Array, off: number, len: number): number {
    if (this.closed) return this.path.drop(ConnectIpDrop.CLOSED);
    return this.path.send(buf, off, len);
  }

  /** Whether this session carries or may carry IPv6 (has IPv6 addresses, routes or scope). */
  protected abstract usesIpv6(): boolean;
  /** Retract the IPv6 part of the tunnel (addresses, routes). */
  protected abstract disableIpv6(): void;
  protected abstract onAddressAssign(addresses: readonly AddressEntry[]): void;
  protected abstract onAddressRequest(req: AddressRequest): void;
  protected abstract onRouteAdvertisement(ra: RouteAdvertisement): void;
  /** A context-0 IP packet from the peer at buf[off, off+len). */
  protected abstract receivePacket(buf: Uint8Array, off: number, len: number): void;
  /** Release resources (pool leases, routes) once closed. */
  protected abstract cleanup(): void;

  // ---- TunnelStreamHandler ----

  /** @internal HTTP/3 delivers a capsule. Malformed CONNECT-IP capsules abort the stream (RFC 9484 §4.7, RFC 9297 §3.3). */
  onCapsule(type: number, value: Uint8Array): void {
    if (this.closed) return;
    switch (type) {
      case CAPSULE_ADDRESS_ASSIGN: {
        const r = parseAddressAssign(value, 0, value.length);
        if (!r.ok) return this.fail(r.error, H3Error.H3_GENERAL_PROTOCOL_ERROR);
        return this.onAddressAssign(r.value.addresses);
      }
      case CAPSULE_ADDRESS_REQUEST: {
        const r = parseAddressRequest(value, 0, value.length);
        if (!r.ok) return this.fail(r.error, H3Error.H3_GENERAL_PROTOCOL_ERROR);
        return this.onAddressRequest(r.value);
      }
      case CAPSULE_ROUTE_ADVERTISEMENT: {
        const r = parseRouteAdvertisement(value, 0, value.length);
        if (!r.ok) return this.fail(r.error, H3Error.H3_GENERAL_PROTOCOL_ERROR);
        return this.onRouteAdvertisement(r.value);
      }
      default:
        // RFC 9297 §3.2: unknown capsule types are skipped. (DATAGRAM capsules are decoded by the HTTP/3 layer.)
        this.counters.capsulesSkipped++;
    }
  }

  /** @internal HTTP/3 delivers an HTTP Datagram payload for this stream. */
  onDatagram(buf: Uint8Array, offset: number, length: number): void {
    if (this.closed) {
      this.counters.drops[ConnectIpDrop.CLOSED]++;
      return;
    }
    this.path.icmpLength = 0;
    const p = contextPayloadOffset(buf, offset, length);
    if (p < 0) {
      // RFC 9484 §6: unknown context IDs are dropped (we register none besides 0, so no buffering helps).
      this.counters.drops[p === CONTEXT_MALFORMED ? ConnectIpDrop.MALFORMED_DATAGRAM : ConnectIpDrop.UNKNOWN_CONTEXT]++;
      return;
    }
    this.receivePacket(buf, p, offset + length - p);
  }

  /** @internal The stream ended. */
  onClose(error: number): void {
    if (this.closed) return;
    this.closed = true;
    this.cleanup();
    this.onEvent({ type: 'closed', error });
  }

  /** Ends the session cleanly (FIN after queued capsules) and releases its addresses and routes. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.stream.close();
    this.cleanup();
    this.onEvent({ type: 'closed', error: 0 });
  }

  /** Aborts the stream with `errorCode` (RFC 9114 §8.1) and releases resources. */
  abort(errorCode: number, reason = 'aborted locally'): void {
    this.fail(reason, errorCode);
  }

  protected fail(reason: string, errorCode: number): void {
    if (this.closed) return;
    this.closed = true;
    this.stream.abort(errorCode);
    this.cleanup();
    this.onEvent({ type: 'closed', error: errorCode, reason });
  }

  // ---- capsule senders (control plane) ----

  protected sendAddressAssign(addresses: readonly AddressEntry[]): void {
    const x = { addresses };
    const b = new Uint8Array(addressAssignLength(x));
    encodeAddressAssign(x, b, 0);
    this.stream.sendCapsule(CAPSULE_ADDRESS_ASSIGN, b);
  }

  protected sendAddressRequest(x: AddressRequest): void {
    const b = new Uint8Array(addressRequestLength(x));
    encodeAddressRequest(x, b, 0);
    this.stream.sendCapsule(CAPSULE_ADDRESS_REQUEST, b);
  }

  protected sendRouteAdvertisement(ranges: readonly IpAddressRange[]): void {
    const x = { ranges };
    const b = new Uint8Array(routeAdvertisementLength(x));
    encodeRouteAdvertisement(x, b, 0);
    this.stream.sendCapsule(CAPSULE_ROUTE_ADVERTISEMENT, b);
  }
}
