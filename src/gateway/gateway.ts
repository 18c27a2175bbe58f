/**
 * The gateway daemon: accepts agents over QUIC + HTTP/3, serves their
 * CONNECT-IP (RFC 9484) and CONNECT-UDP (RFC 9298) requests, and moves IP
 * packets between the sessions and its own TUN device. Wiring and pump loops
 * only; every protocol decision lives in src/masque, src/h3 and src/config.
 */
import { createHmac } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Logger } from 'pino';
import { compilePolicy, type CompiledPolicy, type GatewayConfig, type IdentityPolicy } from '../config/index.js';
import { attachH3 } from '../h3/quic-binding.js';
import type { ConnectRequest, H3Connection } from '../h3/connection.js';
import { Direction } from '../inspect/flow-tracker.js';
import type { FlowRecord } from '../inspect/flow-record.js';
import { AddressPool } from '../masque/address-pool.js';
import { CONNECT_IP_DROP_NAMES } from '../masque/connect-ip/counters.js';
import { ConnectIpGatewaySession } from '../masque/connect-ip/gateway-session.js';
import { MASQUE_HEADROOM } from '../masque/connect-ip/datagram.js';
import { CONNECT_UDP_DROP_NAMES } from '../masque/connect-udp/counters.js';
import { ConnectUdpGatewaySession } from '../masque/connect-udp/gateway-session.js';
import { checkConnectUdpRequest } from '../masque/connect-udp/request.js';
import { defaultIdleSweeper } from '../masque/connect-udp/idle-sweeper.js';
import { acceptConnectIp, acceptConnectUdp } from '../masque/h3-glue.js';
import { formatHostPort, formatPrefix, isLinkLocal4, isLinkLocal6, parseIp, prefixCovers, type IpPrefix } from '../packet/ip-address.js';
import { refuse } from '../masque/proxy-status.js';
import { localSubnets } from '../masque/destination-policy.js';
import { RouteTable } from '../masque/route-table.js';
import { openNativeUdp, type NativeUdpSocket } from '../net/native-udp.js';
import { QuicEndpoint } from '../quic/endpoint.js';
import type { QuicConnection } from '../quic/connection.js';
import {
  directionByLocalPrefixes,
  startAdminServer,
  Telemetry,
  TunnelCounterSync,
  type AdminServer,
  type DaemonStatus,
  type StatusSession,
} from '../telemetry/index.js';
import { openTun, type NativeTun } from '../tun/native-tun.js';
import { MTUN_VERSION } from '../version.js';
import { DaemonFlows } from '../daemon/flows.js';
import { TUN_WRITE_DROP_REASON, TunWriter } from '../daemon/tun-writer.js';
import { RouteSync } from '../daemon/route-sync.js';
import { TUN_HEADROOM, TunReader } from '../daemon/tun-reader.js';
import { DEFAULT_TUNNEL_MTU, MAX_UDP_PAYLOAD_BYTES, QUIC_IDLE_TIMEOUT_MS } from '../daemon/tunnel-constants.js';


/** One agent connection. */
interface GwConn {
  readonly conn: QuicConnection;
  readonly h3: H3Connection;
  /** Identity from the client certificate (mTLS), or null (token auth per request). */
  readonly certIdentity: string | null;
  readonly remote: string;
  readonly sessions: Set<GwSession>;
}

/** One CONNECT-IP or CONNECT-UDP session. */
interface GwSession {
  readonly id: string;
  readonly kind: 'connect-ip' | 'connect-udp';
  readonly gc: GwConn;
  readonly identity: string;
  /** The bearer token that authenticated it (null: client certificate); revoked tokens end the session on reload. */
  readonly token: string | null;
  policy: IdentityPolicy;
  readonly ip: ConnectIpGatewaySession | null;
  readonly udp: ConnectUdpGatewaySession | null;
  readonly sync: TunnelCounterSync;
  readonly since: Date;
}

/** IANA protocol number of UDP (policy checks of CONNECT-UDP targets). */
const IPPROTO_UDP = 17;

/** Gateway-level drop reasons (packets read from the TUN). */
const GW_DROP_NO_ROUTE = 'no_route';
/** Same reason name the CONNECT-IP sessions use for link-local traffic (RFC 9484 §7.2: never forwarded). */
const GW_DROP_LINK_LOCAL = 'link_local';

/** Link-local destination (IPv4 169.254/16, IPv6 fe80::/10 or ff02::/16): stays on the gateway. Allocation-free. */
function isLinkScopeDestination(buf: Uint8Array, off: number, len: number): boolean {
  const v = len > 0 ? buf[off]! >> 4 : 0;
  if (v === 4) return len >= 20 && isLinkLocal4(buf, off + 16);
  if (v === 6) return len >= 40 && isLinkLocal6(buf, off + 24);
  return false;
}

/** The running gateway. Create with {@link Gateway.start}; stop with {@link Gateway.stop}. */
export class Gateway {
  private policy: CompiledPolicy;
  private tokens: Map<string, string>;
  private readonly routes = new RouteTable<ConnectIpGatewaySession>();
  /** Kernel routes through the TUN for each session's advertised site prefixes (serialised). */
  private readonly kernelRoutes: RouteSync;
  private readonly byIp = new Map<ConnectIpGatewaySession, GwSession>();
  private readonly conns = new Set<GwConn>();
  private readonly pools: { v4?: AddressPool; v6?: AddressPool };
  private readonly poolPrefixes: IpPrefix[];
  private readonly telemetry: Telemetry;
  private readonly flows: DaemonFlows;
  private readonly tunWriter: TunWriter;
  private readonly noRouteId: number;
  private readonly linkLocalId: number;
  private readonly counterTimer: NodeJS.Timeout;
  private nextSessionId = 1;
  /** CONNECT-UDP requests resolving/connecting (count against maxSessions). */
  private pendingUdp = 0;
  private admin: AdminServer | null = null;
  private stopping = false;
  private readonly startedAt = Date.now();

  private constructor(
    private config: GatewayConfig,
    private readonly log: Logger,
    private readonly tun: NativeTun,
    private readonly socket: NativeUdpSocket,
    private readonly endpoint: QuicEndpoint,
    telemetry: Telemetry,
  ) {
    this.policy = compilePolicy(config.policy);
    this.tokens = loadTokens(config);
    this.telemetry = telemetry;
    this.kernelRoutes = new RouteSync(tun, log);
    this.pools = {
      v4: config.pools.ipv4 ? new AddressPool({ prefix: formatPrefix(config.pools.ipv4) }) : undefined,
      v6: config.pools.ipv6 ? new AddressPool({ prefix: formatPrefix(config.pools.ipv6) }) : undefined,
    };
    this.poolPrefixes = [config.pools.ipv4, config.pools.ipv6].filter((p) => p !== undefined);
    this.flows = new DaemonFlows({
      telemetry,
      inspection: config.inspection,
      identityOf: (r) => this.identityOfFlow(r),
      directionOf: directionByLocalPrefixes(config.advertise),
    });
    const dropId = telemetry.metrics.dropReasonId(TUN_WRITE_DROP_REASON);
    this.tunWriter = new TunWriter(tun, 65_535, (n) => telemetry.metrics.drop(dropId, n));
    this.noRouteId = telemetry.metrics.dropReasonId(GW_DROP_NO_ROUTE);
    this.linkLocalId = telemetry.metrics.dropReasonId(GW_DROP_LINK_LOCAL);
    this.counterTimer = setInterval(() => {
      this.syncCounters();
      this.driveSessionTimers();
    }, 1000);
    this.counterTimer.unref();
    new TunReader(tun, this.onTunBatch, (e) => this.log.error({ err: e.message }, 'TUN read failed'));
  }

  /**
   * Opens the TUN (routes for the address pools through it), binds the QUIC
   * listener, starts the admin server. Throws with a clear message when any
   * of them fails (no CAP_NET_ADMIN, port in use, bad certificate…).
   */
  static async start(config: GatewayConfig, log: Logger): Promise<Gateway> {
    const certPem = readFileSync(config.tls.cert, 'utf8');
    const keyPem = readFileSync(config.tls.key, 'utf8');
    const caPem = config.tls.ca !== undefined ? readFileSync(config.tls.ca, 'utf8') : undefined;
    const poolRoutes = [config.pools.ipv4, config.pools.ipv6].filter((p) => p !== undefined).map(formatPrefix);
    const tun = await openTun({ name: config.tun.name, mtu: config.tun.mtuBytes ?? DEFAULT_TUNNEL_MTU, addresses: [], routes: poolRoutes, offload: config.tun.offload, txQueueLen: config.tun.txQueueLen });
    let socket: NativeUdpSocket | null = null;
    try {
      socket = openNativeUdp({ host: config.listen.host, port: config.listen.port });
      const telemetry = new Telemetry({
        reporter: 'gateway',
        workloads: config.telemetry.workloads,
        flowLog: config.telemetry.flowLog.enabled ? config.telemetry.flowLog.path : null,
      });
      let gw: Gateway | null = null;
      const endpoint = new QuicEndpoint({
        socket,
        server: {
          certPem,
          keyPem,
          clientCaPem: config.tls.requireClientCert ? caPem : undefined,
          statelessResetKey: derivedKey(keyPem, 'mtun stateless reset v1'),
          ticketKey: derivedKey(keyPem, 'mtun ticket key v1').subarray(0, 48),
          onConnection: (c) => gw!.onConnection(c),
        },
        // The connection's idle timeout is the smaller of both ends' (RFC 9000 §10.1): leave room for 3 agent keepalives.
        idleTimeoutMs: Math.max(QUIC_IDLE_TIMEOUT_MS, 3 * config.keepaliveIntervalMs),
        maxUdpPayloadBytes: MAX_UDP_PAYLOAD_BYTES,
        keylogPath: config.tls.keylogPath ?? null,
      });
      gw = new Gateway(config, log, tun, socket, endpoint, telemetry);
      if (config.admin.enabled) {
        gw.admin = await startAdminServer({
          host: config.admin.listen.host,
          port: config.admin.listen.port,
          registry: telemetry.registry,
          readiness: () => (gw!.stopping ? { ready: false, reason: 'draining' } : { ready: true }),
          status: () => gw!.status(),
        });
      }
      log.info({ listen: endpoint.localAddress(), tun: tun.name, mtu: tun.mtu, admin: gw.admin?.url }, 'gateway started');
      return gw;
    } catch (e) {
      socket?.close();
      tun.close();
      throw e;
    }
  }

  /** The QUIC listener's address. */
  get listenAddress(): { host: string; port: number } {
    return this.endpoint.localAddress();
  }

  /** The admin server's base URL, if enabled. */
  get adminUrl(): string | undefined {
    return this.admin?.url;
  }

  // ---------------------------------------------------------------- control path

  private onConnection(conn: QuicConnection): void {
    const id = conn.peerIdentity;
    const gc: GwConn = {
      conn,
      h3: null as unknown as H3Connection,
      certIdentity: id ? (id.spiffeId ?? id.uris[0] ?? id.subject) : null,
      remote: formatPeer(conn.peerHost, conn.peerPort),
      sessions: new Set(),
    };
    (gc as { h3: H3Connection }).h3 = attachH3(
      conn,
      {
        onConnect: (req) => this.onConnect(gc, req),
        onClosed: (code, reason) => this.log.info({ remote: gc.remote, identity: gc.certIdentity, code, reason }, 'agent connection closed'),
      },
      (ev) => {
        if (ev === 'readable') this.tunWriter.flush();
        else if (ev === 'closed') this.onConnectionClosed(gc);
      },
    );
    this.conns.add(gc);
    this.log.info({ remote: gc.remote, identity: gc.certIdentity }, 'agent connected');
  }

  private onConnectionClosed(gc: GwConn): void {
    this.conns.delete(gc);
    if (gc.conn.handlerError !== null) this.log.error({ remote: gc.remote, err: gc.conn.handlerError.stack }, 'connection closed after a handler error');
    for (const s of [...gc.sessions]) this.sessionClosed(s);
  }

  /** Authenticates and authorises one Extended CONNECT request, then hands it to MASQUE. */
  private onConnect(gc: GwConn, req: ConnectRequest): void {
    const token = gc.certIdentity === null ? bearerToken(req.header('authorization')) : null;
    const identity = gc.certIdentity ?? (token !== null ? (this.tokens.get(token) ?? null) : null);
    if (identity === null) {
      const r = refuse(401, 'http_request_denied', 'no client certificate and no valid bearer token');
      req.reject(r.status, [['proxy-status', r.proxyStatus], ['www-authenticate', 'Bearer']]);
      this.log.warn({ remote: gc.remote, protocol: req.protocol }, 'request refused: not authenticated');
      return;
    }
    if (this.byIp.size + this.udpSessionCount() + this.pendingUdp >= this.config.maxSessions) {
      const r = refuse(503, 'proxy_internal_error', 'session limit reached');
      req.reject(r.status, [['proxy-status', r.proxyStatus]]);
      return;
    }
    let perIdentity = 0;
    for (const c of this.conns) for (const x of c.sessions) if (x.identity === identity) perIdentity++;
    if (perIdentity >= this.config.maxSessionsPerIdentity) {
      const r = refuse(429, 'proxy_internal_error', `session limit of ${this.config.maxSessionsPerIdentity} per identity reached`);
      req.reject(r.status, [['proxy-status', r.proxyStatus]]);
      this.log.warn({ remote: gc.remote, identity }, 'request refused: per-identity session limit');
      return;
    }
    const policy = this.policy.forIdentity(identity);
    if (policy.pattern === null) {
      const r = refuse(403, 'http_request_denied', 'no policy for this identity (default deny)');
      req.reject(r.status, [['proxy-status', r.proxyStatus]]);
      this.log.warn({ remote: gc.remote, identity }, 'request refused: no policy for identity');
      return;
    }
    if (req.protocol === 'connect-ip') {
      this.acceptIp(gc, req, identity, token, policy).catch((e: Error) => {
        this.log.error({ remote: gc.remote, identity, err: e.stack }, 'CONNECT-IP setup failed');
        if (!req.settled) req.reject(500, [['proxy-status', refuse(500, 'proxy_internal_error', 'setup failed').proxyStatus]]);
      });
    }
    else if (req.protocol === 'connect-udp') {
      this.acceptUdp(gc, req, identity, token).catch((e: Error) => {
        this.log.error({ remote: gc.remote, identity, err: e.stack }, 'CONNECT-UDP setup failed');
        if (!req.settled) req.reject(500, [['proxy-status', refuse(500, 'proxy_internal_error', 'setup failed').proxyStatus]]);
      });
    }
    else {
      const r = refuse(501, 'http_request_error', `unsupported :protocol ${JSON.stringify(req.protocol)}`);
      req.reject(r.status, [['proxy-status', r.proxyStatus]]);
    }
  }

  /** Prefixes no agent may advertise (#12 item 9): this host's connected subnets and every agent's underlay address. */
  private forbiddenClientPrefixes(): IpPrefix[] {
    const out = localSubnets();
    for (const c of this.conns) {
      const ip = parseIp(c.conn.peerHost);
      if (ip) out.push({ version: ip.version, address: ip.address, prefixLength: ip.version === 4 ? 32 : 128 });
    }
    return out;
  }

  private async acceptIp(gc: GwConn, req: ConnectRequest, identity: string, token: string | null, policy: IdentityPolicy): Promise<void> {
    let gs: GwSession | null = null;
    const result = await acceptConnectIp(req, {}, () => ({
      onPacket: this.onClientPacket,
      onEvent: (e) => {
        if (gs === null) return;
        if (e.type === 'routes' || e.type === 'addresses-granted') void this.syncKernelRoutes(gs);
        else if (e.type === 'route-conflict') this.log.warn({ session: gs.id, identity, prefix: e.prefix }, 'advertised route already owned by another session');
        else if (e.type === 'ipv6-disabled') this.log.warn({ session: gs.id, maxPacketSize: e.maxPacketSize }, 'IPv6 disabled: path cannot carry 1280-byte packets (RFC 9484 §7.2)');
        else if (e.type === 'closed') this.sessionClosed(gs);
      },
      pools: this.pools,
      routes: this.advertisedRoutes(policy),
      routeTable: this.routes,
      acceptClientRoute: (p) => gs !== null && gs.policy.mayAdvertise(p),
      leaseOwner: identity,
      advertisablePrefixes: () => gs?.policy.advertisablePrefixes() ?? [],
      forbiddenPrefixes: () => this.forbiddenClientPrefixes(),
      policy: (buf, info) => gs !== null && gs.policy.allowsPacket(buf, info),
    }));
    if (!(result instanceof ConnectIpGatewaySession)) {
      this.log.warn({ remote: gc.remote, identity, status: result.status, reason: result.reason }, 'CONNECT-IP refused');
      return;
    }
    if (result.isClosed) return; // the stream went away before the 2xx
    gs = this.addSession(gc, 'connect-ip', identity, token, policy, result, null);
    // Capsules that arrived with the request were handled before gs existed: sync routes now.
    void this.syncKernelRoutes(gs);
  }

  private async acceptUdp(gc: GwConn, req: ConnectRequest, identity: string, token: string | null): Promise<void> {
    const cu = this.config.connectUdp;
    if (!cu.enabled) {
      const r = refuse(501, 'http_request_error', 'CONNECT-UDP is not enabled on this gateway');
      req.reject(r.status, [['proxy-status', r.proxyStatus]]);
      return;
    }
    // Operator allow-list first; RFC 9298 §7 checks and the identity's policy
    // (per resolved address, so host-name targets are covered) follow inside open().
    const pre = checkConnectUdpRequest({ method: 'CONNECT', ...req });
    if (pre.ok && !udpTargetAllowed(this.config, pre.target.host, pre.target.port)) {
      const r = refuse(403, 'destination_ip_prohibited', `target ${pre.target.host}:${pre.target.port} is not in connectUdp.targets`);
      req.reject(r.status, [['proxy-status', r.proxyStatus]]);
      this.log.warn({ remote: gc.remote, identity, target: `${pre.target.host}:${pre.target.port}` }, 'CONNECT-UDP refused: target not allowed');
      return;
    }
    let gs: GwSession | null = null;
    let result: Awaited<ReturnType<typeof acceptConnectUdp>>;
    this.pendingUdp++;
    try {
      result = await acceptConnectUdp(req, {}, {
        allow: cu.allowLocalTargets ? { loopback: true, linkLocal: true, multicast: true, broadcast: true } : undefined,
        idleTimeoutMs: cu.idleTimeoutMs,
        sweeper: defaultIdleSweeper(),
        // Re-read the policy here: a SIGHUP during resolution applies.
        vetAddress: (_v, address, port) => {
          const p = this.policy.forIdentity(identity);
          if (p.pattern === null) return `no policy for ${identity}`;
          return p.allows(IPPROTO_UDP, address, 0, address.length, port) ? null : `the policy of ${identity} does not allow UDP there`;
        },
        onEvent: (e) => {
          if (e.type === 'closed' && gs !== null) this.sessionClosed(gs);
        },
      });
    } finally {
      this.pendingUdp--;
    }
    if (!(result instanceof ConnectUdpGatewaySession)) {
      this.log.warn({ remote: gc.remote, identity, status: result.status, reason: result.reason }, 'CONNECT-UDP refused');
      return;
    }
    if (result.isClosed || gc.conn.isClosed) {
      this.log.info({ remote: gc.remote, identity }, 'CONNECT-UDP stream ended while its target was being opened');
      return;
    }
    gs = this.addSession(gc, 'connect-udp', identity, token, this.policy.forIdentity(identity), null, result);
  }

  private addSession(
    gc: GwConn,
    kind: 'connect-ip' | 'connect-udp',
    identity: string,
    token: string | null,
    policy: IdentityPolicy,
    ip: ConnectIpGatewaySession | null,
    udp: ConnectUdpGatewaySession | null,
  ): GwSession {
    const m = this.telemetry.metrics;
    const gs: GwSession = {
      id: `s${this.nextSessionId++}`,
      kind,
      gc,
      identity,
      token,
      policy,
      ip,
      udp,
      sync: new TunnelCounterSync(m, m.identityId(identity), kind === 'connect-ip' ? CONNECT_IP_DROP_NAMES : CONNECT_UDP_DROP_NAMES),
      since: new Date(),
    };
    gc.sessions.add(gs);
    if (ip) this.byIp.set(ip, gs);
    this.log.info({ session: gs.id, kind, identity, remote: gc.remote }, 'session opened');
    return gs;
  }

  private sessionClosed(gs: GwSession): void {
    if (!gs.gc.sessions.delete(gs)) return;
    this.syncSession(gs);
    gs.sync.close();
    if (gs.ip) {
      this.byIp.delete(gs.ip);
      this.routes.removeAll(gs.ip);
      // While stopping, closing the TUN removes every route through it at once.
      if (!this.stopping) void this.kernelRoutes.set(gs, [], 'routes to agent sites');
    }
    this.log.info({ session: gs.id, kind: gs.kind, identity: gs.identity }, 'session closed');
  }

  /**
   * Mirrors the session's client-advertised routes (those outside the address
   * pools, which are routed to the TUN as a whole) into the kernel, so return
   * traffic for the agent's site reaches the TUN.
   */
  private syncKernelRoutes(gs: GwSession): Promise<void> {
    if (!gs.ip || !gs.gc.sessions.has(gs)) return Promise.resolve();
    const want: string[] = [];
    for (const p of this.routes.prefixes(gs.ip)) {
      if (!this.poolPrefixes.some((pool) => prefixCovers(pool, p))) want.push(formatPrefix(p));
    }
    return this.kernelRoutes.set(gs, want, 'routes to agent sites');
  }

  /** Routes advertised to an identity: the gateway's prefixes, else what its policy lets it reach. */
  private advertisedRoutes(policy: IdentityPolicy): IpPrefix[] {
    const src = this.config.advertise.length > 0 ? this.config.advertise : policy.reachablePrefixes();
    return [...src];
  }


  private udpSessionCount(): number {
    let n = 0;
    for (const gc of this.conns) for (const s of gc.sessions) if (s.kind === 'connect-udp') n++;
    return n;
  }

  private identityOfFlow(r: FlowRecord): string {
    for (const a of [r.src, r.dst]) {
      const bytes = parseIp(a)?.address;
      if (bytes === undefined) continue;
      const s = bytes.length === 4 ? this.routes.lookup4(bytes, 0) : this.routes.lookup6(bytes, 0);
      if (s !== undefined) return this.byIp.get(s)?.identity ?? 'unknown';
    }
    return 'unknown';
  }

  private syncSession(gs: GwSession): void {
    const ipc = gs.ip?.counters;
    if (ipc) gs.sync.update(ipc.drops, ipc.packetsSent, ipc.bytesSent, ipc.packetsReceived, ipc.bytesReceived, ipc.icmpSent);
    else {
      const u = gs.udp!.counters;
      gs.sync.update(u.drops, u.datagramsSent, u.bytesSent, u.datagramsReceived, u.bytesReceived, 0);
    }
  }

  private syncCounters(): void {
    for (const gc of this.conns) for (const gs of gc.sessions) this.syncSession(gs);
  }

  /** Sans-IO session timers (deferred ROUTE_ADVERTISEMENTs, §7.2 probes): due ones fire, on the sessions' clock (performance.now). */
  private driveSessionTimers(): void {
    const now = performance.now();
    for (const gc of this.conns) for (const gs of gc.sessions) {
      const due = gs.ip?.nextTimeoutMs() ?? -1;
      if (due >= 0 && due <= now) gs.ip!.onTimeout(now);
    }
  }

  /**
   * SIGHUP: re-reads the certificate, key and client CA (for new
   * connections), the policy and the tokens. Tunnels keep running; their
   * policy and advertised routes are updated. Throws, changing nothing, when
   * the new TLS material does not load.
   */
  reload(config: GatewayConfig): void {
    // Everything that can fail is read and checked first; then all of it is switched at once.
    const tls = {
      certPem: readFileSync(config.tls.cert, 'utf8'),
      keyPem: readFileSync(config.tls.key, 'utf8'),
      clientCaPem: config.tls.requireClientCert && config.tls.ca !== undefined ? readFileSync(config.tls.ca, 'utf8') : undefined,
    };
    const policy = compilePolicy(config.policy);
    const tokens = loadTokens(config);
    this.endpoint.updateServerTls(tls);
    this.policy = policy;
    this.tokens = tokens;
    this.config = { ...this.config, tls: config.tls, policy: config.policy, auth: config.auth, advertise: config.advertise, maxSessionsPerIdentity: config.maxSessionsPerIdentity };
    for (const gc of this.conns) {
      for (const gs of [...gc.sessions]) {
        gs.policy = this.policy.forIdentity(gs.identity);
        const revoked = gs.token !== null && this.tokens.get(gs.token) !== gs.identity;
        if (gs.policy.pattern === null || revoked) {
          const reason = revoked ? 'token revoked' : 'no policy';
          this.log.warn({ session: gs.id, identity: gs.identity, reason }, 'closing session on reload');
          gs.ip?.close();
          gs.udp?.close();
          continue;
        }
        gs.ip?.setRoutes(this.advertisedRoutes(gs.policy));
        // Site prefixes are re-checked against the new policy: newly allowed ones are
        // installed, ones no longer allowed removed (their packets then fail the source check).
        gs.ip?.reevaluateClientRoutes();
      }
    }
    this.log.info({ identities: config.policy.length }, 'certificates, policy and tokens reloaded');
  }

  /** The /status document. */
  status(): DaemonStatus {
    const sessions: StatusSession[] = [];
    for (const gc of this.conns) {
      for (const gs of gc.sessions) {
        const ipc = gs.ip?.counters;
        sessions.push({
          id: gs.id,
          kind: gs.kind,
          peerIdentity: gs.identity,
          remote: gc.remote,
          state: this.stopping ? 'draining' : 'open',
          addresses: gs.ip ? gs.ip.grantedAddresses().map((a) => formatPrefix({ version: a.version, address: a.address, prefixLength: a.prefixLength })) : [],
          routes: gs.ip ? this.kernelRoutes.routesOf(gs) : [],
          since: gs.since.toISOString(),
          sentBytes: ipc ? ipc.bytesSent : gs.udp!.counters.bytesSent,
          receivedBytes: ipc ? ipc.bytesReceived : gs.udp!.counters.bytesReceived,
        });
      }
    }
    return {
      reporter: 'gateway',
      version: MTUN_VERSION,
      uptimeSeconds: Math.round((Date.now() - this.startedAt) / 1000),
      ready: !this.stopping,
      addresses: this.poolPrefixes.map((p) => ({ interface: this.tun.name, address: formatPrefix(p) })),
      sessions,
      topFlows: this.telemetry.topFlows(10),
    };
  }

  // ---------------------------------------------------------------- data path

  /** A client packet that passed every check: observe it and queue it for the TUN. */
  private readonly onClientPacket = (buf: Uint8Array, off: number, len: number): void => {
    this.flows.tracker.observe(buf, off, len, Direction.OUT, Date.now());
    this.tunWriter.push(buf, off, len);
  };

  /** Packets from the gateway's network: find the session by longest-prefix match and send. */
  private readonly onTunBatch = (bufs: readonly Buffer[], sizes: Uint32Array, n: number): void => {
    const tracker = this.flows.tracker;
    const now = Date.now();
    for (let i = 0; i < n; i++) {
      const buf = bufs[i]!;
      const len = sizes[i]!;
      const s = this.routes.lookupDestination(buf, TUN_HEADROOM, len);
      if (s === undefined) {
        // The TUN's own link-scope chatter (IPv6 MLD, router solicitations) is not a routing failure.
        this.telemetry.metrics.drop(isLinkScopeDestination(buf, TUN_HEADROOM, len) ? this.linkLocalId : this.noRouteId);
        continue;
      }
      // Only what entered the tunnel is telemetry (too-big, link-local… are counted as drops by the session).
      if (s.sendToClient(buf, TUN_HEADROOM, len) === 0) tracker.observe(buf, TUN_HEADROOM, len, Direction.IN, now);
      // Packet Too Big for return traffic goes to the gateway's own network (RFC 9484 §7.2.1).
      else if (s.icmpLength > 0) this.tunWriter.push(s.icmpBuffer, MASQUE_HEADROOM, s.icmpLength);
    }
    // Every connection written to leaves in one send batch; ICMP errors for our network in one TUN write.
    this.endpoint.flush();
    this.tunWriter.flush();
  };

  // ---------------------------------------------------------------- shutdown

  /**
   * Graceful stop (SIGTERM): GOAWAY to every agent, flow records of open
   * flows written, routes and the TUN removed, sockets closed.
   */
  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    this.endpoint.stopAccepting();
    this.log.info({ connections: this.conns.size }, 'gateway draining');
    for (const gc of this.conns) gc.h3.shutdown();
    await new Promise((r) => setTimeout(r, 100));
    clearInterval(this.counterTimer);
    this.syncCounters();
    this.flows.close();
    this.endpoint.close(0, 'gateway shutting down');
    await new Promise((r) => setTimeout(r, 50));
    this.socket.close();
    this.tun.close();
    await this.admin?.close();
    await this.telemetry.shutdown();
    this.log.info('gateway stopped');
  }
}

/** The token of an `Authorization: Bearer …` header, or null. */
function bearerToken(authorization: string | undefined): string | null {
  if (authorization === undefined) return null;
  const m = /^Bearer\s+(\S+)\s*$/i.exec(authorization);
  return m ? m[1]! : null;
}

function loadTokens(config: GatewayConfig): Map<string, string> {
  const m = new Map<string, string>();
  for (const t of config.auth.tokens) {
    const value = t.token ?? readFileSync(t.tokenFile!, 'utf8').trim();
    m.set(value, t.identity);
  }
  return m;
}

function udpTargetAllowed(config: GatewayConfig, host: string, port: number): boolean {
  for (const t of config.connectUdp.targets) {
    if (t.host !== host) continue;
    for (const p of t.ports) if (port >= p.from && port <= p.to) return true;
  }
  return false;
}

/** A key that stays the same across restarts of this gateway (so agents of a crashed instance get stateless resets at once). */
function derivedKey(keyPem: string, label: string): Buffer {
  const a = createHmac('sha256', keyPem).update(label).digest();
  const b = createHmac('sha256', keyPem).update(label + ' 2').digest();
  return Buffer.concat([a, b]);
}

/** A peer's address for logs and status: an IPv4-mapped IPv6 host is shown as plain IPv4. */
function formatPeer(host: string, port: number): string {
  return formatHostPort(host.startsWith('::ffff:') && host.includes('.') ? host.slice(7) : host, port);
}
