/**
 * What CONNECT-IP client and gateway sessions share: capsule dispatch and
 * validation (RFC 9484 §4.7), context-ID handling (§6), the datagram send
 * path with in-place context ID, path-size tracking (§7.2 IPv6 1280 minimum),
 * ICMP error generation with a rate limit, counters.
 */
import { H3Error } from '../../h3/errors.js';
import type { TunnelStream, TunnelStreamHandler } from '../../h3/tunnel-stream.js';
import { transportChecksum } from '../../packet/checksum.js';
import { buildIcmpError, ICMP6_ERROR_MAX_BYTES } from '../../packet/icmp-error.js';
import { addressAssignLength, encodeAddressAssign, parseAddressAssign } from './address-assign.js';
import type { AddressEntry } from './address-entry.js';
import { addressRequestLength, encodeAddressRequest, parseAddressRequest, type AddressRequest } from './address-request.js';
import { CAPSULE_ADDRESS_ASSIGN, CAPSULE_ADDRESS_REQUEST, CAPSULE_ROUTE_ADVERTISEMENT } from './capsule-types.js';
import { compareBytes, isLinkLocal4, isLinkLocal6 } from '../../packet/ip-address.js';
import type { RouteRefusalReason } from './client-routes.js';
import { ConnectIpCounters, ConnectIpDrop } from './counters.js';
import { CONTEXT_MALFORMED, MASQUE_HEADROOM, contextPayloadOffset } from './datagram.js';
import {
  encodeRouteAdvertisement,
  parseRouteAdvertisement,
  routeAdvertisementLength,
  type IpAddressRange,
  type RouteAdvertisement,
} from './route-advertisement.js';

/** Receives an IP packet buf[offset, offset+length); the bytes are valid only during the call (copy to keep). */
export type PacketSink = (buf: Uint8Array, offset: number, length: number) => void;

/** RFC 8200 §5: minimum IPv6 link MTU the tunnel must carry (RFC 9484 §7.2). */
export const IPV6_MIN_MTU = 1280;

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
  /** IP packets from the peer that passed the checks. */
  readonly onPacket: PacketSink;
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

/** RFC 9484 §7.2: 1232 bytes of echo data make a 1280-byte IPv6 packet (40 IPv6 + 8 ICMPv6). */
const PROBE_DATA_BYTES = 1232;
const PROBE_TRIES = 3;
const ALL_NODES = Uint8Array.of(0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1);

const MTU_REFRESH_EVERY = 256;

/** Base class; see {@link ConnectIpClientSession} and {@link ConnectIpGatewaySession}. */
export abstract class ConnectIpSessionBase implements TunnelStreamHandler {
  /** Traffic and drop counters (read by telemetry). */
  readonly counters = new ConnectIpCounters();
  protected closed = false;
  protected ipv6Disabled = false;
  protected readonly onPacket: PacketSink;
  protected readonly onEvent: (e: ConnectIpEvent) => void;
  private mtuCache = -1;
  private mtuCountdown = 0;
  /** Scratch for generated ICMP errors: headroom + largest error (1280). */
  protected readonly icmpBuf = new Uint8Array(MASQUE_HEADROOM + ICMP6_ERROR_MAX_BYTES);
  private readonly icmpRate: number;
  private icmpTokens: number;
  private icmpLastMs: number;
  /** The session's monotonic clock (ms): the `nowMs` option. */
  protected readonly now: () => number;
  private readonly ipv6Action: 'disable-ipv6' | 'abort';
  /** Our link-local IPv6 address on the tunnel link. */
  protected readonly linkLocal6: Uint8Array;
  private readonly probeTimeoutMs: number;
  private probeId = 0;
  private probeTries = 0;
  private probeDeadlineMs = -1;
  private probeBuf: Uint8Array | null = null;
  /** Scratch for echo replies on the tunnel link (§7.2); grows to the largest request answered. */
  private echoBuf = new Uint8Array(0);

  constructor(
    /** The request stream; owned by the HTTP/3 layer, used until close. */
    readonly stream: TunnelStream,
    opts: ConnectIpSessionOptions,
  ) {
    this.onPacket = opts.onPacket;
    this.onEvent = opts.onEvent ?? (() => {});
    this.icmpRate = opts.icmpPerSecond ?? 200;
    this.icmpTokens = this.icmpRate;
    this.now = opts.nowMs ?? (() => performance.now());
    this.icmpLastMs = this.now();
    this.ipv6Action = opts.ipv6MinMtuAction ?? 'disable-ipv6';
    this.linkLocal6 = opts.linkLocalV6 ?? Uint8Array.of(0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, this.defaultLinkLocalSuffix());
    this.probeTimeoutMs = opts.ipv6ProbeTimeoutMs ?? 2000;
  }

  /** Last byte of the default link-local address (gateway 1, client 2). */
  protected abstract defaultLinkLocalSuffix(): number;

  /** True once the stream ended or the session was closed/aborted. */
  get isClosed(): boolean {
    return this.closed;
  }

  /** True while IPv6 is carried (false after the §7.2 1280-byte check failed). */
  get ipv6Enabled(): boolean {
    return !this.ipv6Disabled;
  }

  /**
   * Largest IP packet that fits one datagram now: the path's maximum HTTP
   * Datagram payload minus the 1-byte context ID (quarter stream ID already
   * excluded by the HTTP/3 layer). 0 when datagrams cannot be sent.
   */
  maxPacketSize(): number {
    const p = this.stream.maxDatagramPayload();
    return p > 1 ? p - 1 : 0;
  }

  /**
   * Re-reads the path size and applies the RFC 9484 §7.2 IPv6 minimum:
   * if IPv6 is in use and fewer than 1280 bytes fit, IPv6 is disabled (or
   * the stream aborted). The daemon calls this after path changes; the send
   * path calls it when a datagram is refused. Returns maxPacketSize().
   */
  checkPath(): number {
    const m = this.maxPacketSize();
    this.mtuCache = m;
    this.mtuCountdown = MTU_REFRESH_EVERY;
    if (m > 0 && m < IPV6_MIN_MTU && !this.ipv6Disabled && !this.closed && this.usesIpv6()) {
      this.ipv6Fail(`path carries ${m}-byte packets, below the IPv6 minimum of ${IPV6_MIN_MTU}`, m);
    }
    return m;
  }

  private ipv6Fail(reason: string, m: number): void {
    this.probeDeadlineMs = -1;
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
    this.probeTries = 0;
    this.probeId = (this.probeId + 1) & 0xffff;
    this.sendProbe(nowMs);
  }

  private sendProbe(nowMs: number): void {
    const b = (this.probeBuf ??= new Uint8Array(MASQUE_HEADROOM + IPV6_MIN_MTU));
    const o = MASQUE_HEADROOM;
    b.fill(0, o);
    b[o] = 0x60;
    b[o + 4] = (IPV6_MIN_MTU - 40) >> 8;
    b[o + 5] = (IPV6_MIN_MTU - 40) & 0xff;
    b[o + 6] = 58; // ICMPv6
    b[o + 7] = 255;
    b.set(this.linkLocal6, o + 8);
    b.set(ALL_NODES, o + 24);
    b[o + 40] = 128; // Echo Request (RFC 4443 §4.1)
    b[o + 44] = this.probeId >> 8;
    b[o + 45] = this.probeId & 0xff;
    b[o + 47] = ++this.probeTries;
    for (let i = 0; i < PROBE_DATA_BYTES; i++) b[o + 48 + i] = i & 0xff;
    const c = transportChecksum(b, 6, o + 8, o + 24, 58, o + 40, IPV6_MIN_MTU - 40);
    b[o + 42] = c >> 8;
    b[o + 43] = c & 0xff;
    const r = this.sendEncapsulated(b, o, IPV6_MIN_MTU);
    if (r === ConnectIpDrop.TOO_BIG) {
      this.ipv6Fail(`a 1280-byte IPv6 probe does not fit the path (${this.tooBigLimit()} bytes)`, this.tooBigLimit());
      return;
    }
    this.probeDeadlineMs = nowMs + this.probeTimeoutMs;
  }

  /** Earliest time (ms, same clock as onTimeout) this session needs onTimeout, or -1. */
  nextTimeoutMs(): number {
    return this.probeDeadlineMs;
  }

  /** Timer callback: retries or fails an outstanding §7.2 probe. */
  onTimeout(nowMs: number): void {
    if (this.probeDeadlineMs < 0 || nowMs < this.probeDeadlineMs || this.closed) return;
    if (this.probeTries < PROBE_TRIES) this.sendProbe(nowMs);
    else this.ipv6Fail(`no reply to ${PROBE_TRIES} 1280-byte IPv6 probes`, this.maxPacketSize());
  }

  /**
   * Link-local ICMPv6 on the tunnel link (RFC 9484 §7.2: reply to link-local
   * multicast): answers an echo request to ff02::1 or to our link-local
   * address, and recognises the reply to our own probe. Returns true when the
   * packet was consumed here. Allocation-free.
   */
  protected handleLinkIcmp6(buf: Uint8Array, off: number, len: number): boolean {
    if (len < 48 || buf[off]! >> 4 !== 6 || buf[off + 6] !== 58) return false;
    const dstAllNodes = compareBytes(buf, off + 24, ALL_NODES, 0, 16) === 0;
    const dstUs = compareBytes(buf, off + 24, this.linkLocal6, 0, 16) === 0;
    if (!dstAllNodes && !dstUs) return false;
    const type = buf[off + 40];
    if (type === 129 && dstUs) {
      this.counters.echoRepliesReceived++;
      if (this.probeDeadlineMs >= 0 && ((buf[off + 44]! << 8) | buf[off + 45]!) === this.probeId && len >= IPV6_MIN_MTU) {
        this.probeDeadlineMs = -1;
        this.onEvent({ type: 'ipv6-verified' });
      }
      return true;
    }
    if (type !== 128) return false;
    // RFC 4443 §4.2: the reply carries the request's data entirely and unmodified, so it is as long as
    // the request's IPv6 packet (not the datagram, which may carry trailing bytes). Echo replies have
    // their own buffer, grown to the largest request seen (rare: link-local probes only).
    const n = 40 + ((buf[off + 4]! << 8) | buf[off + 5]!);
    if (n > len || n < 48) return false;
    const o = MASQUE_HEADROOM;
    if (this.echoBuf.length < o + n) this.echoBuf = new Uint8Array(o + n);
    const b = this.echoBuf;
    b.set(buf.subarray(off, off + n), o);
    b.set(buf.subarray(off + 8, off + 24), o + 24); // to the requester
    b.set(this.linkLocal6, o + 8); // from our link-local address
    b[o + 7] = 255;
    b[o + 40] = 129; // Echo Reply
    b[o + 42] = 0;
    b[o + 43] = 0;
    const c = transportChecksum(b, 6, o + 8, o + 24, 58, o + 40, n - 40);
    b[o + 42] = c >> 8;
    b[o + 43] = c & 0xff;
    this.counters.echoRepliesSent++;
    this.sendEncapsulated(b, o, n);
    return true;
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

  // ---- sending ----

  /**
   * Sends the IP packet at buf[off, off+len) in an HTTP Datagram with
   * context ID 0 written in place at buf[off-1] (the HTTP/3 layer then uses
   * the 8 bytes before that). Returns 0 or a {@link ConnectIpDrop} code
   * (counted here). Too-big packets return TOO_BIG and the caller decides on
   * ICMP (see {@link tooBigLimit}).
   */
  /**
   * What both ends check before an IP packet enters the tunnel: it is a
   * well-formed IPv4/IPv6 packet, IPv6 is still carried, and neither address
   * is link-local (RFC 9484 §7.2: link-local traffic stays on its link).
   * Returns the IP version, or the negated {@link ConnectIpDrop} code it was
   * counted under. Allocation-free.
   */
  protected admitOutgoing(buf: Uint8Array, off: number, len: number): number {
    const v = ipVersionOf(buf, off, len);
    if (v === 0) return -this.drop(ConnectIpDrop.MALFORMED_IP);
    if (v === 6 && this.ipv6Disabled) return -this.drop(ConnectIpDrop.IPV6_DISABLED);
    if (v === 4 ? isLinkLocal4(buf, off + 12) || isLinkLocal4(buf, off + 16) : isLinkLocal6(buf, off + 8) || isLinkLocal6(buf, off + 24)) {
      return -this.drop(ConnectIpDrop.LINK_LOCAL);
    }
    return v;
  }

  protected sendEncapsulated(buf: Uint8Array, off: number, len: number): number {
    const c = this.counters;
    if (this.closed) return this.drop(ConnectIpDrop.CLOSED);
    if (off < MASQUE_HEADROOM) return this.drop(ConnectIpDrop.NO_HEADROOM);
    if (--this.mtuCountdown <= 0 || this.mtuCache <= 0) this.checkPath();
    if (len > this.mtuCache) {
      this.checkPath();
      // 0 = datagrams cannot be sent at all right now (not negotiated yet, or closing): not a size problem.
      if (this.mtuCache === 0) return this.drop(ConnectIpDrop.SEND_FAILED);
      if (len > this.mtuCache) return this.drop(ConnectIpDrop.TOO_BIG);
    }
    buf[off - 1] = 0; // RFC 9484 §6: Context ID 0 = full IP packet.
    if (!this.stream.sendDatagram(buf, off - 1, len + 1)) {
      // The path may have shrunk since we last looked.
      this.checkPath();
      return this.drop(this.mtuCache > 0 && len > this.mtuCache ? ConnectIpDrop.TOO_BIG : ConnectIpDrop.SEND_FAILED);
    }
    c.packetsSent++;
    c.bytesSent += len;
    return 0;
  }

  /** The limit to put in a Packet Too Big after a TOO_BIG drop: the true current maximum (RFC 9484 §7.2.1). */
  protected tooBigLimit(): number {
    return this.mtuCache;
  }

  protected drop(reason: number): number {
    this.counters.drops[reason]++;
    return reason;
  }

  /** Token bucket for generated ICMP (RFC 4443 §2.4(f) rate limiting). */
  private icmpAllowed(): boolean {
    const now = this.now();
    const dt = now - this.icmpLastMs;
    if (dt > 0) {
      this.icmpTokens = Math.min(this.icmpRate, this.icmpTokens + (dt * this.icmpRate) / 1000);
      this.icmpLastMs = now;
    }
    if (this.icmpTokens < 1) return false;
    this.icmpTokens -= 1;
    return true;
  }

  /**
   * Builds an ICMP error about buf[off, off+len) into {@link icmpBuf} at
   * MASQUE_HEADROOM, from `reporter` (4/16 bytes). Returns its length, or 0
   * when suppressed (error about an error, bad source, rate limit…).
   */
  protected buildIcmp(kind: number, mtu: number, buf: Uint8Array, off: number, len: number, reporter: Uint8Array): number {
    if (!this.icmpAllowed()) {
      this.counters.icmpSuppressed++;
      return 0;
    }
    const n = buildIcmpError(kind, mtu, buf, off, len, reporter, 0, this.icmpBuf, MASQUE_HEADROOM, this.icmpBuf.length - MASQUE_HEADROOM);
    if (n <= 0) {
      this.counters.icmpSuppressed++;
      return 0;
    }
    this.counters.icmpSent++;
    return n;
  }

  /** Sends a built ICMP error (in icmpBuf) to the peer through the tunnel. */
  protected sendIcmpToPeer(n: number): void {
    if (n <= 0) return;
    const r = this.sendEncapsulated(this.icmpBuf, MASQUE_HEADROOM, n);
    if (r !== 0) this.counters.icmpSent--; // counted as a drop instead
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

/** Allocation-free sanity check of an IP header at buf[off, off+len): returns 4, 6, or 0 when malformed. */
export function ipVersionOf(buf: Uint8Array, off: number, len: number): 0 | 4 | 6 {
  if (len < 1) return 0;
  const v = buf[off]! >> 4;
  if (v === 4) {
    if (len < 20) return 0;
    const ihl = (buf[off]! & 0x0f) * 4;
    const total = (buf[off + 2]! << 8) | buf[off + 3]!;
    return ihl >= 20 && total >= ihl && total <= len ? 4 : 0;
  }
  if (v === 6) {
    if (len < 40) return 0;
    const pl = (buf[off + 4]! << 8) | buf[off + 5]!;
    return pl + 40 <= len ? 6 : 0;
  }
  return 0;
}
