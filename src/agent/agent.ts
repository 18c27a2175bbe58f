/**
 * The agent daemon: opens one CONNECT-IP session (RFC 9484) to the gateway
 * over QUIC + HTTP/3 and moves IP packets between it and a local TUN device,
 * reconnecting by itself. Wiring and pump loops only.
 */
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import type { Logger } from 'pino';
import type { AgentConfig } from '../config/index.js';
import { attachH3 } from '../h3/quic-binding.js';
import type { H3Connection } from '../h3/connection.js';
import { Direction } from '../inspect/flow-tracker.js';
import type { ConnectIpClientSession } from '../masque/connect-ip/client-session.js';
import { MASQUE_HEADROOM } from '../masque/connect-ip/datagram.js';
import { CONNECT_IP_DROP_NAMES } from '../masque/connect-ip/counters.js';
import type { ConnectIpEvent } from '../masque/connect-ip/session-base.js';
import { connectIp, connectUdp } from '../masque/h3-glue.js';
import { formatHostPort, formatIp, formatPrefix, parseIp, prefixCovers, rangesToPrefixes, type IpPrefix } from '../packet/ip-address.js';
import { openNativeUdp, type NativeUdpSocket } from '../net/native-udp.js';
import { clampTcpMss } from '../packet/rewrite.js';
import type { QuicConnection } from '../quic/connection.js';
import { QuicEndpoint } from '../quic/endpoint.js';
import {
  directionByLocalPrefixes,
  startAdminServer,
  Telemetry,
  TunnelCounterSync,
  type AdminServer,
  type DaemonStatus,
} from '../telemetry/index.js';
import { openTun, type NativeTun } from '../tun/native-tun.js';
import { runIpBatch } from '../tun/ip-config.js';
import { MTUN_VERSION } from '../version.js';
import { DaemonFlows } from '../daemon/flows.js';
import { TUN_WRITE_DROP_REASON, TunWriter } from '../daemon/tun-writer.js';
import { RouteSync } from '../daemon/route-sync.js';
import { TUN_HEADROOM, TunReader } from '../daemon/tun-reader.js';
import { UdpForwarder } from './udp-forwarder.js';
import { applySnat, removeSnat } from './snat.js';
import { DEFAULT_TUNNEL_MTU, MAX_UDP_PAYLOAD_BYTES, QUIC_IDLE_TIMEOUT_MS } from '../daemon/tunnel-constants.js';

/** Agent-level drop reason: a packet read from the TUN while no session is up. */
const DROP_NO_SESSION = 'no_session';

/** Connection state, as `/status` and `/readyz` report it. */
export type AgentState = 'connecting' | 'open' | 'backoff' | 'stopped';

/** The running agent. Create with {@link Agent.start}; stop with {@link Agent.stop}. */
export class Agent {
  state: AgentState = 'connecting';
  private tun: NativeTun | null = null;
  private tunMtu = 0;
  private tunWriter: TunWriter | null = null;
  private conn: QuicConnection | null = null;
  private h3: H3Connection | null = null;
  private session: ConnectIpClientSession | null = null;
  private sync: TunnelCounterSync | null = null;
  private sessionSince: Date | null = null;
  /** Kernel routes through the TUN for what the gateway advertises. */
  private routeSync: RouteSync | null = null;
  /** Serialises address and SNAT changes (remote access). */
  private addrQueue: Promise<void> = Promise.resolve();
  private assignedOnTun = new Set<string>();
  /** The SNAT rules currently installed ("v4|v6"), or null. */
  private snatKey: string | null = null;
  private attempt = 0;
  private reconnectTimer: NodeJS.Timeout | null = null;
  private readonly counterTimer: NodeJS.Timeout;
  private readonly flows: DaemonFlows;
  private readonly noSessionId: number;
  private admin: AdminServer | null = null;
  private readonly gatewayIdentity: string;
  private readonly gatewayAddr: Uint8Array | null;
  private readonly startedAt = Date.now();
  private connects = 0;
  private readonly forwarders: UdpForwarder[] = [];

  private constructor(
    private readonly config: AgentConfig,
    private readonly log: Logger,
    private readonly socket: NativeUdpSocket,
    private readonly endpoint: QuicEndpoint,
    private readonly telemetry: Telemetry,
  ) {
    this.gatewayIdentity = config.gateway.serverName ?? config.gateway.address.host;
    this.gatewayAddr = parseIp(config.gateway.address.host)?.address ?? null;
    this.flows = new DaemonFlows({
      telemetry,
      inspection: config.inspection,
      identityOf: () => this.gatewayIdentity,
      directionOf: directionByLocalPrefixes(config.advertise),
    });
    this.noSessionId = telemetry.metrics.dropReasonId(DROP_NO_SESSION);
    this.counterTimer = setInterval(() => this.syncCounters(), 1000);
    this.counterTimer.unref();
  }

  /** Binds the UDP socket, starts the admin server and the first connection attempt. */
  static async start(config: AgentConfig, log: Logger): Promise<Agent> {
    const caPem = readFileSync(config.tls.ca, 'utf8');
    const certPem = config.tls.cert !== undefined ? readFileSync(config.tls.cert, 'utf8') : undefined;
    const keyPem = config.tls.key !== undefined ? readFileSync(config.tls.key, 'utf8') : undefined;
    const v4 = isIP(config.gateway.address.host) === 4;
    const socket = openNativeUdp({ host: v4 ? '0.0.0.0' : '::' });
    let started: Agent | null = null;
    try {
      const endpoint = new QuicEndpoint({
        socket,
        client: { caPem, certPem, keyPem },
        idleTimeoutMs: Math.max(QUIC_IDLE_TIMEOUT_MS, 3 * config.keepaliveIntervalMs),
        // PINGs on the endpoint's shared timer keep NAT bindings and the idle timer alive (RFC 9000 §10.1.2).
        keepAliveMs: config.keepaliveIntervalMs,
        maxUdpPayloadBytes: MAX_UDP_PAYLOAD_BYTES,
        keylogPath: config.tls.keylogPath ?? null,
      });
      const telemetry = new Telemetry({
        reporter: 'agent',
        workloads: config.telemetry.workloads,
        flowLog: config.telemetry.flowLog.enabled ? config.telemetry.flowLog.path : null,
      });
      const agent = new Agent(config, log, socket, endpoint, telemetry);
      started = agent;
      if (config.admin.enabled) {
        agent.admin = await startAdminServer({
          host: config.admin.listen.host,
          port: config.admin.listen.port,
          registry: telemetry.registry,
          readiness: () => (agent.state === 'open' ? { ready: true } : { ready: false, reason: agent.state }),
          status: () => agent.status(),
        });
      }
      for (const f of config.connectUdp.forwarders) {
        agent.forwarders.push(await UdpForwarder.start({
          listen: f.listen,
          target: f.target,
          open: (host, port, onPayload, onClose) => agent.openUdp(host, port, onPayload, onClose),
          flush: () => agent.conn?.flush(),
          log,
        }));
      }
      log.info({ gateway: config.gateway.address, mode: config.mode, admin: agent.admin?.url, udpForwarders: agent.forwarders.length }, 'agent started');
      void agent.connect();
      return agent;
    } catch (e) {
      // Release everything already bound (admin port, forwarders, timers) so a failed start exits cleanly.
      if (started !== null) await started.stop().catch(() => undefined);
      else socket.close();
      throw e;
    }
  }

  /** The admin server's base URL, if enabled. */
  get adminUrl(): string | undefined {
    return this.admin?.url;
  }

  // ---------------------------------------------------------------- control path

  private async connect(): Promise<void> {
    if (this.state === 'stopped') return;
    this.state = 'connecting';
    const { host, port } = this.config.gateway.address;
    let conn: QuicConnection;
    try {
      conn = this.endpoint.connect(host, port, this.config.gateway.serverName ?? host);
    } catch (e) {
      this.log.error({ err: (e as Error).message }, 'connect failed');
      this.scheduleReconnect();
      return;
    }
    this.conn = conn;
    let closedEarly = false;
    const h3 = attachH3(conn, { onGoaway: () => this.log.info('gateway sent GOAWAY') }, (ev) => {
      if (ev === 'readable') this.tunWriter?.flush();
      else if (ev === 'closed') {
        closedEarly = true;
        this.onDisconnected(conn);
      }
    });
    this.h3 = h3;
    try {
      await conn.whenEstablished();
      const headers = this.authHeaders();
      const authority = formatHostPort(this.config.gateway.serverName ?? host, port);
      // Capsules may arrive with the 2xx, before the promise resolves: events
      // until then are covered by applyRoutes() below, which reads the session's state.
      let opened: ConnectIpClientSession | null = null;
      const session = await connectIp(h3, authority, {
        onPacket: this.onGatewayPacket,
        onEvent: (e) => {
          if (opened !== null) this.onSessionEvent(opened, e);
        },
        headers,
      });
      if (closedEarly || (this.state as AgentState) === 'stopped') return;
      opened = session;
      this.session = session;
      this.sessionSince = new Date();
      this.sync?.close();
      this.sync = new TunnelCounterSync(this.telemetry.metrics, this.telemetry.metrics.identityId(this.gatewayIdentity), CONNECT_IP_DROP_NAMES);
      await this.ensureTun(session);
      if (this.superseded(conn, closedEarly)) return;
      if (this.config.mode === 'site-to-site') {
        if (this.config.advertise.length > 0) session.advertiseRoutes(this.config.advertise);
      } else {
        session.requestAddresses([{ version: 4 }, { version: 6 }]);
      }
      // RFC 9484 §7.2: check the path really carries 1280-byte IPv6 packets (probe answered by the gateway).
      if (session.ipv6Enabled) session.probeIpv6(Date.now());
      conn.flush();
      await this.applyRoutes(session);
      if (this.superseded(conn, closedEarly)) return;
      this.state = 'open';
      this.attempt = 0;
      this.connects++;
      this.log.info({ gateway: this.config.gateway.address, maxPacketSize: session.maxPacketSize(), tunMtu: this.tunMtu, resumed: conn.isResumed() }, 'tunnel up');
    } catch (e) {
      this.log.warn({ err: (e as Error).message }, 'tunnel setup failed');
      if (!conn.isClosed) conn.close(true, 0x10c, 'setup failed');
      if (!closedEarly) this.onDisconnected(conn);
    }
  }

  /**
   * After an await in connect(): true when this attempt no longer matters
   * (the connection closed, a newer one replaced it, or the agent stopped).
   * A TUN opened after stop() began is closed here.
   */
  private superseded(conn: QuicConnection, closedEarly: boolean): boolean {
    if (this.state === 'stopped') {
      if (this.tun !== null && !this.tun.closed) this.tun.close();
      return true;
    }
    return closedEarly || this.conn !== conn;
  }

  /** Request headers carrying the bearer token, when one is configured. */
  private authHeaders(): [string, string][] {
    const token = this.config.auth.token ?? (this.config.auth.tokenFile !== undefined ? readFileSync(this.config.auth.tokenFile, 'utf8').trim() : undefined);
    return token !== undefined ? [['authorization', `Bearer ${token}`]] : [];
  }

  /** Opens a CONNECT-UDP stream (RFC 9298) for a local forwarder over the current connection. */
  private async openUdp(host: string, port: number, onPayload: (b: Uint8Array, o: number, l: number) => void, onClose: () => void) {
    const h3 = this.h3;
    if (h3 === null || this.state !== 'open') throw new Error('agent: no tunnel to the gateway right now');
    const { host: gwHost, port: gwPort } = this.config.gateway.address;
    return connectUdp(h3, formatHostPort(this.config.gateway.serverName ?? gwHost, gwPort), host, port, {
      onPayload,
      onClose: () => onClose(),
      headers: this.authHeaders(),
    });
  }

  private onDisconnected(conn: QuicConnection): void {
    if (this.conn !== conn) return;
    const info = conn.closeInfo;
    this.conn = null;
    this.h3 = null;
    for (const f of this.forwarders) f.reset();
    if (this.session) {
      this.syncCounters();
      this.sync?.close();
      this.sync = null;
      this.session = null;
    }
    if (this.state === 'stopped') return;
    this.log.warn({ reason: info?.reason, code: info?.errorCode, byPeer: info?.byPeer, idle: info?.idleTimeout, handlerError: conn.handlerError?.stack }, 'tunnel down');
    this.scheduleReconnect();
  }

  /** Exponential backoff with jitter (config.reconnect). */
  private scheduleReconnect(): void {
    if (this.state === 'stopped' || this.reconnectTimer !== null) return;
    this.state = 'backoff';
    const r = this.config.reconnect;
    const base = Math.min(r.maxDelayMs, r.minDelayMs * 2 ** Math.min(this.attempt, 30));
    const delay = Math.max(0, Math.round(base * (1 + r.jitter * (2 * Math.random() - 1))));
    this.attempt++;
    this.log.info({ delayMs: delay, attempt: this.attempt }, 'reconnecting');
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      void this.connect();
    }, delay);
  }

  /** Opens the TUN on the first session, sized to what one datagram carries. */
  private async ensureTun(session: ConnectIpClientSession): Promise<void> {
    const pathMax = session.maxPacketSize();
    if (this.tun !== null) {
      if (pathMax < this.tunMtu) this.log.warn({ pathMax, tunMtu: this.tunMtu }, 'path now carries less than the TUN MTU: larger packets get Packet Too Big');
      return;
    }
    const limit = pathMax > 0 ? pathMax : DEFAULT_TUNNEL_MTU;
    const mtu = Math.min(this.config.tun.mtuBytes ?? limit, limit);
    this.tun = await openTun({ name: this.config.tun.name, mtu, addresses: [], offload: this.config.tun.offload, txQueueLen: this.config.tun.txQueueLen });
    this.tunMtu = mtu;
    const metrics = this.telemetry.metrics;
    const dropId = metrics.dropReasonId(TUN_WRITE_DROP_REASON);
    this.tunWriter = new TunWriter(this.tun, 65_535, (n) => metrics.drop(dropId, n));
    this.routeSync = new RouteSync(this.tun, this.log);
    new TunReader(this.tun, this.onTunBatch, (e) => this.log.error({ err: e.message }, 'TUN read failed'));
    this.log.info({ tun: this.tun.name, mtu }, 'TUN up');
  }

  private onSessionEvent(session: ConnectIpClientSession, e: ConnectIpEvent): void {
    if (e.type === 'routes' || e.type === 'addresses-assigned') {
      if (this.session === session) void this.applyRoutes(session);
    } else if (e.type === 'ipv6-disabled') {
      this.log.warn({ maxPacketSize: e.maxPacketSize }, 'IPv6 disabled: path cannot carry 1280-byte packets (RFC 9484 §7.2)');
    } else if (e.type === 'closed') {
      this.log.info({ error: e.error, reason: e.reason }, 'CONNECT-IP session closed');
      if (this.conn !== null && this.session === session && !this.conn.isClosed) this.conn.close(true, 0, 'session closed');
    }
  }

  /**
   * Installs routes for what the gateway advertises (skipping default routes
   * and prefixes that would capture the gateway's own address), and in
   * remote-access mode puts the assigned addresses on the TUN.
   */
  private async applyRoutes(session: ConnectIpClientSession): Promise<void> {
    const tun = this.tun;
    if (tun === null || tun.closed || this.routeSync === null) return;
    if (this.config.acceptRoutes) {
      const want: string[] = [];
      for (const p of rangesToPrefixes(session.peerRoutes())) {
        if (p.prefixLength === 0) continue;
        if (this.gatewayAddr !== null && coversAddress(p, this.gatewayAddr)) continue;
        want.push(formatPrefix(p));
      }
      await this.routeSync.set(this, want, 'routes from the gateway');
    }
    if (this.config.mode === 'remote-access') {
      const next = this.addrQueue.then(() => this.applyAddresses(session, tun));
      this.addrQueue = next.catch(() => undefined);
      await next;
    }
  }

  /**
   * Remote access: the TUN carries exactly the addresses the gateway assigned
   * now (a new lease after a reconnect replaces the old one), and SNAT
   * follows them. Runs serialised (addrQueue).
   */
  private async applyAddresses(session: ConnectIpClientSession, tun: NativeTun): Promise<void> {
    if (tun.closed) return;
    const assigned = session.assignedAddresses();
    const want = assigned.map((a) => formatPrefix({ version: a.version, address: a.address, prefixLength: a.prefixLength }));
    const add = want.filter((a) => !this.assignedOnTun.has(a));
    const del = [...this.assignedOnTun].filter((a) => !want.includes(a));
    for (const a of del) {
      try {
        await runIpBatch([`addr del ${a} dev ${tun.name}`]);
      } catch (e) {
        this.log.warn({ address: a, err: (e as Error).message }, 'removing an old assigned address failed');
      }
      this.assignedOnTun.delete(a);
    }
    for (const a of add) {
      try {
        await runIpBatch([`addr add ${a} dev ${tun.name}${a.includes(':') ? ' nodad' : ''}`]);
        this.assignedOnTun.add(a);
      } catch (e) {
        this.log.error({ address: a, err: (e as Error).message }, 'configuring an assigned address failed');
      }
    }
    if (add.length + del.length > 0) this.log.info({ added: add, removed: del }, 'assigned addresses configured');
    if (!this.config.snat) return;
    const v4 = assigned.find((a) => a.version === 4);
    const v6 = assigned.find((a) => a.version === 6);
    const a4 = v4 ? formatIp(v4.address) : null;
    const a6 = v6 ? formatIp(v6.address) : null;
    const key = `${a4}|${a6}`;
    if ((a4 === null && a6 === null) || key === this.snatKey) return;
    try {
      await applySnat(tun.name, a4, a6);
      this.snatKey = key;
      this.log.info({ v4: a4, v6: a6 }, 'SNAT to the assigned addresses installed');
    } catch (e) {
      this.log.error({ err: (e as Error).message }, 'installing SNAT failed');
    }
  }

  private syncCounters(): void {
    const s = this.session;
    if (s !== null) s.onTimeout(Date.now());
    if (s !== null && this.sync !== null) {
      const c = s.counters;
      this.sync.update(c.drops, c.packetsSent, c.bytesSent, c.packetsReceived, c.bytesReceived, c.icmpSent);
    }
  }

  /** The /status document. */
  status(): DaemonStatus {
    const s = this.session;
    const c = this.conn;
    return {
      reporter: 'agent',
      version: MTUN_VERSION,
      uptimeSeconds: Math.round((Date.now() - this.startedAt) / 1000),
      ready: this.state === 'open',
      addresses: this.tun ? [...this.assignedOnTun].map((a) => ({ interface: this.tun!.name, address: a })) : [],
      sessions: s && c ? [{
        id: `c${this.connects}`,
        kind: 'connect-ip',
        peerIdentity: this.gatewayIdentity,
        remote: formatHostPort(this.config.gateway.address.host, this.config.gateway.address.port),
        state: this.state,
        addresses: s.assignedAddresses().map((a) => formatPrefix({ version: a.version, address: a.address, prefixLength: a.prefixLength })),
        routes: this.routeSync?.routesOf(this) ?? [],
        since: (this.sessionSince ?? new Date()).toISOString(),
        sentBytes: s.counters.bytesSent,
        receivedBytes: s.counters.bytesReceived,
      }] : [],
      topFlows: this.telemetry.topFlows(10),
    };
  }

  // ---------------------------------------------------------------- data path

  /** Packets from the local network: inspect, clamp MSS, send as HTTP Datagrams. */
  private readonly onTunBatch = (bufs: readonly Buffer[], sizes: Uint32Array, n: number): void => {
    const s = this.session;
    if (s === null) {
      this.telemetry.metrics.drop(this.noSessionId, n);
      return;
    }
    const tracker = this.flows.tracker;
    const clamp = this.config.mssClamp;
    const mtu = this.tunMtu;
    const now = Date.now();
    for (let i = 0; i < n; i++) {
      const buf = bufs[i]!;
      const len = sizes[i]!;
      if (clamp) clampTcpMss(buf, TUN_HEADROOM, len, mtu);
      // Only what entered the tunnel is telemetry (link-local, too-big… are counted as drops by the session).
      if (s.sendPacket(buf, TUN_HEADROOM, len) === 0) tracker.observe(buf, TUN_HEADROOM, len, Direction.OUT, now);
      // A Packet Too Big about our own packet comes back to us: into the TUN (RFC 9484 §7.2.1).
      else if (s.icmpLength > 0) this.tunWriter?.push(s.icmpBuffer, MASQUE_HEADROOM, s.icmpLength);
    }
    this.conn?.flush();
    this.tunWriter?.flush();
  };

  /** Packets from the gateway: inspect, copy into the TUN batch (MSS clamped), written after the QUIC batch. */
  private readonly onGatewayPacket = (buf: Uint8Array, off: number, len: number): void => {
    this.flows.tracker.observe(buf, off, len, Direction.IN, Date.now());
    const w = this.tunWriter;
    if (w === null) return;
    const slot = w.push(buf, off, len);
    if (slot !== null && this.config.mssClamp) clampTcpMss(slot, 0, len, this.tunMtu);
  };

  // ---------------------------------------------------------------- shutdown

  /** Graceful stop (SIGTERM): flow records written, session closed, routes and TUN removed. */
  async stop(): Promise<void> {
    if (this.state === 'stopped') return;
    this.state = 'stopped';
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    clearInterval(this.counterTimer);
    this.syncCounters();
    this.flows.close();
    for (const f of this.forwarders) f.close();
    this.session?.close();
    this.h3?.shutdown();
    this.conn?.flush();
    await new Promise((r) => setTimeout(r, 50));
    this.endpoint.close(0, 'agent shutting down');
    await new Promise((r) => setTimeout(r, 50));
    this.socket.close();
    if (this.snatKey !== null && this.tun !== null) await removeSnat(this.tun.name).catch((e: Error) => this.log.warn({ err: e.message }, 'removing SNAT failed'));
    this.tun?.close();
    await this.admin?.close();
    await this.telemetry.shutdown();
    this.log.info('agent stopped');
  }
}

function coversAddress(p: IpPrefix, addr: Uint8Array): boolean {
  return prefixCovers(p, { version: addr.length === 4 ? 4 : 6, address: addr, prefixLength: addr.length * 8 });
}
