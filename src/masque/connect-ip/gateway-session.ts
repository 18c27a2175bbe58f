/**
 * CONNECT-IP gateway session, sans-IO (RFC 9484): answers ADDRESS_REQUEST
 * from the pools, exchanges ROUTE_ADVERTISEMENT both ways, and checks every
 * client packet (source §11, scope §4.6/§4.8, link-local and TTL §7.2) before
 * it reaches the gateway's network; sends return traffic with Packet Too Big.
 */
import type { TunnelStream } from '../../h3/tunnel-stream.js';
import { IcmpError } from '../../packet/icmp-error.js';
import { PacketInfo } from '../../packet/ip-packet.js';
import { decrementTtl } from '../../packet/rewrite.js';
import type { AddressPool } from '../address-pool.js';
import { addressBits, clipRangeToPrefix, formatPrefix, isZero, parseIp, prefixEnd, type IpPrefix } from '../../packet/ip-address.js';
import type { DestinationAllowance } from '../destination-policy.js';
import type { RouteTable } from '../route-table.js';
import { DEFAULT_MAX_CLIENT_PREFIXES, DEFAULT_MAX_RANGES_PER_ADVERTISEMENT, judgeRouteAdvertisement, type ClientRoute } from './client-routes.js';
import type { AddressEntry } from './address-entry.js';
import type { AddressRequest } from './address-request.js';
import { ConnectIpDrop } from './counters.js';
import { ClientPassCache, judgeClientIp, VERDICT_LINK_ICMP6, type ClientIpSwitches, type ClientPacketContext, type PacketPolicy } from './packet-judge.js';
import type { ConnectIpScope } from './request.js';
import { normalizeRanges, type IpAddressRange, type RouteAdvertisement } from './route-advertisement.js';
import { ConnectIpSessionBase, type ConnectIpSessionOptions } from './session-base.js';
import { TokenBucket } from '../../lib/token-bucket.js';
import { compileGatewayTable } from '../native-judge.js';
import type { IdentityPolicy } from '../../config/index.js';

export type { PacketPolicy } from './packet-judge.js';

/**
 * Receives a client packet that passed every check, with its parse (`info`,
 * ports 0 when unknown): both valid only during the call (copy to keep).
 */
export type ParsedPacketSink = (buf: Uint8Array, offset: number, length: number, info: PacketInfo) => void;

/** Options for {@link ConnectIpGatewaySession}. */
export interface ConnectIpGatewayOptions extends ConnectIpSessionOptions {
  /** Client packets that passed every check (TTL decremented), with their parse: hand `info` to the flow tracker. */
  readonly onPacket: ParsedPacketSink;
  /** The accepted request scope (from checkConnectIpRequest). */
  readonly scope: ConnectIpScope;
  /** Pools to answer ADDRESS_REQUEST from; a missing family is rejected (RFC 9484 §4.7.2 all-zero answer). */
  readonly pools?: { readonly v4?: AddressPool; readonly v6?: AddressPool };
  /**
   * Routes advertised to the client (what it may reach through us); sorted
   * and narrowed to the request scope here. Default 0.0.0.0/0 and ::/0. For
   * a host-name scope pass the resolved addresses (RFC 9484 §4.6).
   * Client packets to destinations outside them are dropped as out of scope.
   */
  readonly routes?: readonly (IpPrefix | IpAddressRange)[];
  /** Shared return-path table: assigned addresses and accepted client routes are installed → this session. */
  readonly routeTable?: RouteTable<ConnectIpGatewaySession>;
  /** Whether to accept (route back through this session) a prefix the client advertises; default accepts all. */
  readonly acceptClientRoute?: (prefix: IpPrefix) => boolean;
  /**
   * An advertised prefix overlaps `owners`' routes in `routeTable`: may they
   * give way? The callee decides (e.g. a restarted agent of the same identity
   * supersedes its dead session) and, to say yes, closes them (their routes
   * leave the table synchronously) and returns true; the prefix is then
   * tried once more. Default: never (the prefix is a `route-conflict`).
   */
  readonly resolveRouteConflict?: (prefix: IpPrefix, owners: readonly ConnectIpGatewaySession[]) => boolean;
  /**
   * The prefixes the client may advertise (read at each advertisement, so a
   * reload applies): advertised ranges are clipped to them before they are
   * expanded (RFC 9484 §4.7.3). Undefined = no clipping (acceptClientRoute alone).
   */
  readonly advertisablePrefixes?: () => readonly IpPrefix[];
  /**
   * Prefixes no advertised prefix may cover or enter, besides link-local and
   * loopback ({@link ALWAYS_FORBIDDEN_PREFIXES}): the gateway's connected
   * subnets and the agents' underlay addresses. Read at each advertisement.
   */
  readonly forbiddenPrefixes?: () => readonly IpPrefix[];
  /** Ranges considered per ROUTE_ADVERTISEMENT; the rest are refused. Default {@link DEFAULT_MAX_RANGES_PER_ADVERTISEMENT}. */
  readonly maxRangesPerAdvertisement?: number;
  /** Client prefixes installed at most; the rest are refused. Default {@link DEFAULT_MAX_CLIENT_PREFIXES}. */
  readonly maxClientPrefixes?: number;
  /**
   * ROUTE_ADVERTISEMENTs applied per second (token bucket, burst of
   * `advertisementBurst`, default 1/s and 8). One arriving with no token is
   * not applied at once: it waits as the pending one, a later one replaces
   * it (each supersedes the last, RFC 9484 §4.7.3), and it is applied from
   * {@link ConnectIpGatewaySession.onTimeout} when a token is back.
   */
  readonly advertisementsPerSecond?: number;
  readonly advertisementBurst?: number;
  /**
   * Addresses of the gateway itself, never a destination of client packets
   * unless `allowDestinations.ownAddresses` (the CONNECT-UDP rule, RFC 9298 §7).
   * The accept glue fills in this host's addresses; default none.
   */
  readonly ownAddresses?: readonly Uint8Array[];
  /** Destination classes the operator allows despite the shared rule (loopback, multicast…); default none. */
  readonly allowDestinations?: DestinationAllowance;
  /**
   * For a host-name scope (RFC 9484 §4.6): the addresses the name resolved
   * to before the 2xx. Packets to any other address are out of scope; with
   * none given, a host-name scope reaches nothing.
   */
  readonly resolvedTarget?: readonly IpPrefix[];
  /** Who holds the leases (e.g. the identity), for the pools' per-owner lease cap. Default: this session alone. */
  readonly leaseOwner?: string;
  /**
   * Per-packet policy for client packets (e.g. per-identity destination/port
   * rules): `info` is the parsed packet (ports 0 for non-first fragments and
   * protocols without ports); false drops with ICMP administratively
   * prohibited. Must not allocate.
   */
  readonly policy?: PacketPolicy;
  /** Source of ICMP errors we generate: the gateway's own tunnel addresses. Default 192.0.0.8 (RFC 7600) and fe80::1. */
  readonly reporterV4?: Uint8Array;
  readonly reporterV6?: Uint8Array;
  /** Addresses/prefixes one session may hold at once; further requests are rejected (all-zero answer). Default 8. */
  readonly maxGrants?: number;
  /** Decrement TTL / hop limit of client packets before passing them on (Time Exceeded on expiry). Default true. */
  readonly decrementHopLimit?: boolean;
}

const DEFAULT_ROUTES: readonly IpPrefix[] = [
  { version: 4, address: new Uint8Array(4), prefixLength: 0 },
  { version: 6, address: new Uint8Array(16), prefixLength: 0 },
];

/** Default sources of the ICMP errors the gateway generates (RFC 7600's 192.0.0.8, link-local fe80::1): shared by all sessions, read only. */
const DEFAULT_REPORTER_V4 = parseIp('192.0.0.8')!.address;
const DEFAULT_REPORTER_V6 = parseIp('fe80::1')!.address;

/**
 * What judgeClientPacket reads of one session, kept here by the session
 * itself. The lists are frozen arrays the session replaces whole as
 * capsules and the host change them (the pass cache relies on it,
 * ClientPassCache). A class, not an object literal with
 * getters: V8 keeps such a literal in dictionary mode, and each per-packet
 * read of it went through the generic property lookup (BENCHMARKS.md,
 * "The gateway's receive path in JavaScript", 7 December 2026).
 */
class GatewayJudgeContext implements ClientPacketContext {
  // Each list is frozen as it is set: an edit in place (which would outlive a cached verdict) throws instead.
  private g: readonly AddressEntry[] = Object.freeze([]);
  private o: readonly ClientRoute[] = Object.freeze([]);
  private r: readonly IpAddressRange[];
  private w: readonly Uint8Array[];
  constructor(
    readonly scope: ConnectIpScope,
    readonly resolvedTarget: readonly IpPrefix[],
    readonly allow: DestinationAllowance | undefined,
    readonly policy: PacketPolicy | undefined,
    ourRanges: readonly IpAddressRange[],
    ownAddresses: readonly Uint8Array[],
  ) {
    this.r = Object.freeze(ourRanges);
    this.w = Object.freeze(ownAddresses);
  }

  /** Addresses assigned to the client. */
  get grants(): readonly AddressEntry[] {
    return this.g;
  }
  set grants(v: readonly AddressEntry[]) {
    this.g = Object.freeze(v);
  }

  /** Client prefixes this session owns (installed, or accepted when there is no table): exactly what the source check passes. */
  get owned(): readonly ClientRoute[] {
    return this.o;
  }
  set owned(v: readonly ClientRoute[]) {
    this.o = Object.freeze(v);
  }

  /** Routes advertised to the client, narrowed to the scope. */
  get ourRanges(): readonly IpAddressRange[] {
    return this.r;
  }
  set ourRanges(v: readonly IpAddressRange[]) {
    this.r = Object.freeze(v);
  }

  /** The gateway's own addresses, refused as destinations (replaced when the host's addresses change). */
  get ownAddresses(): readonly Uint8Array[] {
    return this.w;
  }
  set ownAddresses(v: readonly Uint8Array[]) {
    this.w = Object.freeze(v);
  }
}

/** The rest of what judgeClientIp reads of a session (a class for the same reason as {@link GatewayJudgeContext}). */
class GatewaySwitches implements ClientIpSwitches {
  constructor(
    private readonly session: { readonly ipv6Enabled: boolean },
    readonly decrementTtl: boolean,
    readonly linkLocal: Uint8Array,
  ) {}

  get ipv6Enabled(): boolean {
    return this.session.ipv6Enabled;
  }
}

/**
 * The gateway's end of one CONNECT-IP stream. The gateway calls
 * `checkConnectIpRequest` first, answers 2xx, then constructs this with the
 * scope, attaches it as the stream handler and calls {@link start}.
 * Client packets that pass go to `onPacket`; return traffic is sent with
 * {@link sendToClient}. After close, leases and routes are released.
 */
export class ConnectIpGatewaySession extends ConnectIpSessionBase {
  readonly scope: ConnectIpScope;
  private readonly opts: ConnectIpGatewayOptions;
  /** The client's latest ROUTE_ADVERTISEMENT, kept to re-evaluate it (reevaluateClientRoutes). */
  private lastAdvertisement: RouteAdvertisement | null = null;
  private readonly info = new PacketInfo();
  private readonly onPacket: ParsedPacketSink;
  /**
   * What judgeClientPacket reads, and where the session keeps it: the
   * addresses granted, the client prefixes it owns, the routes advertised to
   * the client, the gateway's own addresses.
   */
  private readonly ctx: GatewayJudgeContext;
  /** The rest of what judgeClientIp reads. */
  private readonly switches: ClientIpSwitches;
  /** The last packet that passed the address checks (its flow's next packets skip them; the policy still runs). */
  private readonly pass = new ClientPassCache();
  private readonly reporter4: Uint8Array;
  private readonly reporter6: Uint8Array;
  private readonly decrement: boolean;
  private started = false;
  private readonly leaseOwner: string | object;
  /** ROUTE_ADVERTISEMENTs applied (advertisementsPerSecond, burst advertisementBurst). */
  private readonly adBucket: TokenBucket;
  private pendingAd: RouteAdvertisement | null = null;
  private pendingAdAtMs = -1;
  /** Advertisements that waited for a token, and refused prefixes/ranges (telemetry). */
  advertisementsDeferred = 0;
  routesRefused = 0;
  /** Prefixes of the last applied advertisement refused as `route-conflict` (another session owned them). */
  routeConflicts = 0;

  constructor(stream: TunnelStream, opts: ConnectIpGatewayOptions) {
    super(stream, opts, 1);
    this.onPacket = opts.onPacket;
    this.decrement = opts.decrementHopLimit ?? true;
    this.switches = new GatewaySwitches(this, this.decrement, this.probe.linkLocal);
    this.opts = opts;
    this.scope = opts.scope;
    this.reporter4 = opts.reporterV4 ?? DEFAULT_REPORTER_V4;
    this.reporter6 = opts.reporterV6 ?? DEFAULT_REPORTER_V6;
    this.ctx = new GatewayJudgeContext(opts.scope, opts.resolvedTarget ?? [], opts.allowDestinations, opts.policy, this.scopedRanges(opts.routes ?? DEFAULT_ROUTES), opts.ownAddresses ?? []);
    this.leaseOwner = opts.leaseOwner ?? this;
    this.adBucket = new TokenBucket(opts.advertisementsPerSecond ?? 1, opts.advertisementBurst ?? 8, this.now());
  }

  /** Routes we advertise, narrowed to the request scope (RFC 9484 §4.6). */
  private scopedRanges(routes: readonly (IpPrefix | IpAddressRange)[]): IpAddressRange[] {
    const t = this.scope.target;
    const proto = this.scope.ipProtocol ?? 0;
    let ranges: IpAddressRange[] = routes.map((r) => ('start' in r ? r : { version: r.version, start: r.address, end: prefixEnd(r), ipProtocol: 0 }));
    // RFC 9484 §4.6: routes only toward the target (a host name: the addresses it resolved to).
    const targets = t.kind === 'prefix' ? [t.prefix] : t.kind === 'hostname' ? (this.opts.resolvedTarget ?? []) : null;
    if (targets !== null) {
      const clipped: IpAddressRange[] = [];
      for (const r of ranges) for (const p of targets) {
        const c = p.version === r.version ? clipRangeToPrefix(r.start, r.end, p) : null;
        if (c) clipped.push({ version: r.version, start: c[0], end: c[1], ipProtocol: r.ipProtocol });
      }
      ranges = clipped;
    }
    if (proto !== 0) ranges = ranges.map((r) => ({ ...r, ipProtocol: r.ipProtocol === 0 ? proto : r.ipProtocol })).filter((r) => r.ipProtocol === proto);
    return normalizeRanges(ranges);
  }

  /** Sends the gateway's ROUTE_ADVERTISEMENT and checks the path (RFC 9484 §7.2). Call once after the 2xx response. */
  start(): void {
    if (this.started || this.closed) return;
    this.started = true;
    this.sendRouteAdvertisement(this.ctx.ourRanges);
    this.checkPath();
  }

  /** Replaces the routes advertised to the client (e.g. after a policy reload). */
  setRoutes(routes: readonly (IpPrefix | IpAddressRange)[]): void {
    this.ctx.ourRanges = this.scopedRanges(routes);
    if (this.ipv6Disabled) this.ctx.ourRanges = this.ctx.ourRanges.filter((r) => r.version === 4);
    if (this.started && !this.closed) this.sendRouteAdvertisement(this.ctx.ourRanges);
  }

  /**
   * Replaces the gateway's own addresses the destination check refuses
   * (the gateway calls it when the host's addresses change: an address
   * added after the session opened is refused from then on).
   */
  setOwnAddresses(own: readonly Uint8Array[]): void {
    this.ctx.ownAddresses = own;
  }

  /** Addresses currently assigned to the client. */
  grantedAddresses(): readonly AddressEntry[] {
    return this.ctx.grants;
  }

  /** Client prefixes this session owns (accepted and installed from its advertisements). */
  clientRoutes(): readonly ClientRoute[] {
    return this.ctx.owned;
  }

  protected usesIpv6(): boolean {
    const t = this.scope.target;
    if (t.kind === 'prefix') return t.prefix.version === 6;
    return this.ctx.grants.some((g) => g.version === 6) || this.ctx.ourRanges.some((r) => r.version === 6) || this.opts.pools?.v6 !== undefined;
  }

  protected disableIpv6(): void {
    // "Abort the IPv6 part": release IPv6 leases and routes, tell the client.
    const v6 = this.ctx.grants.filter((g) => g.version === 6);
    if (v6.length > 0) {
      for (const g of v6) this.releaseGrant(g);
      this.ctx.grants = this.ctx.grants.filter((g) => g.version === 4);
      this.sendAddressAssign(this.ctx.grants);
    }
    for (const r of this.ctx.owned) if (r.prefix.version === 6) this.opts.routeTable?.remove(r.prefix, this);
    this.ctx.owned = this.ctx.owned.filter((r) => r.prefix.version === 4);
    if (this.ctx.ourRanges.some((r) => r.version === 6)) {
      this.ctx.ourRanges = this.ctx.ourRanges.filter((r) => r.version === 4);
      if (this.started) this.sendRouteAdvertisement(this.ctx.ourRanges);
    }
  }

  /**
   * This session's check of a client's packet as a native table
   * (`compileGatewayTable`, with the identity's `policy`): what
   * {@link receivePacket} asks of a packet, for a reader outside this object
   * (the gateway's TUN thread). It leaves out the answers on flows an
   * inbound rule admitted, which only the connection table knows: those fail
   * it and are judged here. Compile it again after the grants, either side's
   * routes, IPv6, the policy or the gateway's own addresses changed.
   */
  receiveTable(policy: IdentityPolicy | null): Uint8Array {
    return compileGatewayTable(this.ctx, this.switches, policy);
  }

  private releaseGrant(g: AddressEntry): void {
    const p: IpPrefix = { version: g.version, address: g.address, prefixLength: g.prefixLength };
    (g.version === 4 ? this.opts.pools?.v4 : this.opts.pools?.v6)?.release(p);
    this.opts.routeTable?.remove(p, this);
  }

  protected onAddressAssign(addresses: readonly AddressEntry[]): void {
    // Clients normally do not assign addresses to the gateway; we use none, so nothing to track.
    void addresses;
  }

  protected onAddressRequest(req: AddressRequest): void {
    const answers: AddressEntry[] = [];
    for (const want of req.addresses) {
      const pool = want.version === 4 ? this.opts.pools?.v4 : this.opts.pools?.v6;
      let got: IpPrefix | null = null;
      if (pool && !(want.version === 6 && this.ipv6Disabled) && this.ctx.grants.length < (this.opts.maxGrants ?? 8)) {
        const preferred = isZero(want.address, 0, want.address.length) ? undefined : want.address;
        got = pool.allocate(want.prefixLength, preferred, this.leaseOwner);
      }
      if (got && this.opts.routeTable && !this.opts.routeTable.add(got, this)) {
        pool!.release(got);
        got = null;
      }
      if (got) {
        // A new list, never an edit in place: the pass cache keys on the lists (ClientPassCache).
        this.ctx.grants = [...this.ctx.grants, { requestId: want.requestId, version: got.version, address: got.address, prefixLength: got.prefixLength }];
      } else {
        // RFC 9484 §4.7.2: not assigned → all-zero address, maximum prefix length, same Request ID.
        answers.push({ requestId: want.requestId, version: want.version, address: new Uint8Array(want.address.length), prefixLength: addressBits(want.version) });
      }
    }
    // Every ADDRESS_ASSIGN carries the full current list (§4.7.1), plus this request's rejections.
    this.sendAddressAssign([...this.ctx.grants, ...answers]);
    this.onEvent({ type: 'addresses-granted', addresses: this.ctx.grants });
    this.checkPath();
  }

  /**
   * Re-applies the client's last ROUTE_ADVERTISEMENT (RFC 9484 §4.7.3) under
   * the current `acceptClientRoute` — after a policy reload, prefixes now
   * allowed are installed and ones no longer allowed removed (their packets
   * then fail the source check). A no-op before any advertisement or after close.
   */
  reevaluateClientRoutes(): void {
    if (this.lastAdvertisement !== null && !this.closed) this.onRouteAdvertisement(this.lastAdvertisement);
  }

  protected onRouteAdvertisement(ra: RouteAdvertisement): void {
    // Token bucket (tuning): refill, then apply now or keep as the pending one.
    const now = this.now();
    if (this.adBucket.has(now) && this.pendingAd === null) {
      this.adBucket.take(now);
      this.applyAdvertisement(ra);
      return;
    }
    // RFC 9484 §4.7.3: each advertisement supersedes the last, so only the latest waiting one matters.
    this.advertisementsDeferred++;
    this.pendingAd = ra;
    this.pendingAdAtMs = this.adBucket.nextTokenAtMs();
  }

  /** Earliest time (ms, the `nowMs` clock) this session needs {@link onTimeout}: an outstanding probe or a deferred advertisement; -1 for none. */
  override nextTimeoutMs(): number {
    const p = super.nextTimeoutMs();
    if (this.pendingAd === null) return p;
    return p < 0 ? this.pendingAdAtMs : Math.min(p, this.pendingAdAtMs);
  }

  /** Timer callback (the `nowMs` clock): applies a deferred advertisement once a token is back; drives the §7.2 probe. */
  override onTimeout(nowMs: number): void {
    super.onTimeout(nowMs);
    if (this.pendingAd === null || this.closed || nowMs < this.pendingAdAtMs) return;
    const ra = this.pendingAd;
    this.pendingAd = null;
    this.onRouteAdvertisement(ra);
  }

  private applyAdvertisement(ra: RouteAdvertisement): void {
    this.lastAdvertisement = ra;
    const table = this.opts.routeTable;
    for (const r of this.ctx.owned) table?.remove(r.prefix, this);
    const j = judgeRouteAdvertisement(ra.ranges, {
      allowed: this.opts.advertisablePrefixes?.(),
      accept: this.opts.acceptClientRoute,
      forbidden: this.opts.forbiddenPrefixes?.(),
      maxRanges: this.opts.maxRangesPerAdvertisement ?? DEFAULT_MAX_RANGES_PER_ADVERTISEMENT,
      maxPrefixes: this.opts.maxClientPrefixes ?? DEFAULT_MAX_CLIENT_PREFIXES,
      ipv6Enabled: !this.ipv6Disabled,
    });
    this.routesRefused += j.refused.length;
    for (const x of j.refused) this.onEvent({ type: 'route-refused', what: x.what, reason: x.reason });
    const owned: ClientRoute[] = [];
    let conflicts = 0;
    for (const r of j.routes) {
      // RFC 9484 §11: only prefixes this session owns pass the source check; a conflicting one is not ours.
      if (!table || table.add(r.prefix, this) || (this.opts.resolveRouteConflict?.(r.prefix, table.ownersOverlapping(r.prefix, this)) === true && !this.closed && table.add(r.prefix, this))) owned.push(r);
      else {
        conflicts++;
        this.onEvent({ type: 'route-conflict', prefix: formatPrefix(r.prefix) });
      }
    }
    this.routeConflicts = conflicts;
    this.ctx.owned = owned;
    this.onEvent({ type: 'routes', ranges: owned.map((r) => ({ version: r.prefix.version, start: r.prefix.address, end: prefixEnd(r.prefix), ipProtocol: r.ipProtocol })) });
    this.checkPath();
  }

  protected receivePacket(buf: Uint8Array, off: number, len: number): void {
    const c = this.counters;
    const info = this.info;
    let verdict = judgeClientIp(this.ctx, this.switches, buf, off, len, info, true, this.pass);
    // RFC 9484 §7.2: answer link-local ICMPv6 echo (the 1280-byte MTU probe) on the tunnel link itself.
    if (verdict === VERDICT_LINK_ICMP6) {
      if (this.handleLinkIcmp6(buf, off, info.ipLen)) return;
      verdict = judgeClientIp(this.ctx, this.switches, buf, off, len, info, false, this.pass);
    }
    const ipLen = info.ipLen;
    if (verdict !== 0) {
      c.drops[verdict]++;
      if (verdict === ConnectIpDrop.MALFORMED_IP || verdict === ConnectIpDrop.IPV6_DISABLED || verdict === ConnectIpDrop.LINK_LOCAL) return;
      // RFC 9484 §11: spoofed source → source policy failure; scope and policy → administratively prohibited;
      // RFC 9484 §7.2 / RFC 1812 §5.3.1: an expired TTL → Time Exceeded.
      const kind = verdict === ConnectIpDrop.SPOOFED_SOURCE ? IcmpError.SOURCE_POLICY : verdict === ConnectIpDrop.TTL_EXPIRED ? IcmpError.TIME_EXCEEDED : IcmpError.ADMIN_PROHIBITED;
      this.path.icmpToPeer(kind, buf, off, ipLen, info.ipVersion === 4 ? this.reporter4 : this.reporter6);
      return;
    }
    if (this.decrement) decrementTtl(buf, off, ipLen);
    c.packetsReceived++;
    c.bytesReceived += ipLen;
    // The parsed packet goes along, so the daemon's flow tracker need not parse it again.
    this.onPacket(buf, off, ipLen, info);
  }

  /**
   * Sends return traffic (routed to this session, e.g. by the shared
   * RouteTable) to the client: buf[offset, offset+length) with at least
   * MASQUE_HEADROOM (9) writable bytes before it. A packet that does not
   * fit is dropped; a Packet Too Big / Fragmentation Needed with the true
   * current limit (RFC 9484 §7.2.1) is then returned to the caller in
   * {@link icmpBuffer} / {@link icmpLength}, to write into the gateway's
   * network. Returns 0 or a {@link ConnectIpDrop} code (counted). Allocation-free.
   */
  sendToClient(buf: Uint8Array, offset: number, length: number): number {
    return this.sendIpPacket(buf, offset, length, true);
  }

  protected icmpSource(v: 4 | 6): Uint8Array {
    return v === 4 ? this.reporter4 : this.reporter6;
  }

  protected cleanup(): void {
    for (const g of this.ctx.grants) this.releaseGrant(g);
    this.ctx.grants = [];
    this.opts.routeTable?.removeAll(this);
    this.ctx.owned = [];
    this.pendingAd = null;
  }
}
