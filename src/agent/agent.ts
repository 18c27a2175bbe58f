/**
 * The agent daemon: opens one CONNECT-IP session (RFC 9484) to the gateway
 * over QUIC + HTTP/3 and moves IP packets between it and a local TUN device,
 * reconnecting by itself (`reconnect.ts`). Wiring and pump loops only: it is
 * given its TUN factory, UDP socket, kernel-config port and clock ({@link DaemonIo}).
 */
import { readFileSync } from 'node:fs';
import type { AgentConfig } from '../config/index.js';
import { Direction } from '../inspect/flow-tracker.js';
import type { ConnectIpClientSession } from '../masque/connect-ip/client-session.js';
import { MASQUE_HEADROOM } from '../masque/connect-ip/datagram.js';
import { CONNECT_IP_DROP_NAMES } from '../masque/connect-ip/counters.js';
import type { ConnectIpEvent } from '../masque/connect-ip/session-base.js';
import { connectIp, connectUdp } from '../masque/h3-glue.js';
import { formatHostPort, formatIp, formatPrefix, parseIp, prefixCovers, rangesToPrefixes, type IpPrefix } from '../packet/ip-address.js';
import { clampTcpMss, clampTcpMssParsed } from '../packet/rewrite.js';
import { PacketInfo, parseIpPacket } from '../packet/ip-packet.js';
import { QuicEndpoint } from '../quic/endpoint.js';
import { GSO_REFUSED_LOG } from '../net/udp.js';
import { H2TunnelCounters } from '../h2/h2-tunnel.js';
import { AgentTransportMetrics, registerH2Counters, registerSessionTransportGauge, type TunnelTransport } from '../h2/transport-metrics.js';
import { registerQuicEndpointMetrics } from '../telemetry/quic-endpoint-metrics.js';
import {
  directionByLocalPrefixes,
  startAdminServer,
  TapInterface,
  Telemetry,
  TunnelCounterSync,
  type AdminServer,
  type DaemonStatus,
} from '../telemetry/index.js';
import { MTUN_VERSION } from '../version.js';
import { AddressSync } from '../daemon/address-sync.js';
import { DaemonFlows } from '../daemon/flows.js';
import type { ClockTimer, DaemonIo, OwnedTun } from '../daemon/ports.js';
import { TUN_WRITE_DROP_REASON, TunWriter, tunQueueDelay, tunRecvBudget } from '../daemon/tun-writer.js';
import { RouteSync } from '../daemon/route-sync.js';
import { TUN_HEADROOM, TunReader } from '../daemon/tun-reader.js';
import { TUN_THREAD_H3, TUN_THREAD_IN, TUN_THREAD_SENT, TunThread, TunThreadStat } from '../daemon/tun-thread.js';
import { carryThreadCounters, registerTunThreadCounters } from '../daemon/tun-thread-metrics.js';
import { loadNative } from '../native/addon.js';
import type { QuicConnection } from '../quic/connection.js';
import { UdpForwarder } from './udp-forwarder.js';
import { Counter, type Registry } from 'prom-client';
import { FlowResync } from './flow-resync.js';
import { Reconnector } from './reconnect.js';
import { openH2, openH3, raceCarriers, type Carrier, type CarrierHooks } from './carrier.js';
import { TransportWatch } from './transport-watch.js';
import { DEFAULT_TUNNEL_MTU, H2_DATAGRAM_PAYLOAD_BYTES, MAX_UDP_PAYLOAD_BYTES, QUIC_IDLE_TIMEOUT_MS } from '../daemon/tunnel-constants.js';

/** Agent-level drop reason: a packet read from the TUN while no session is up. */
const DROP_NO_SESSION = 'no_session';

/** How long stop() waits for the connection to close after GOAWAY before closing it itself. */
export const AGENT_DRAIN_DEADLINE_MS = 1_000;

/** Connection state, as `/status` and `/readyz` report it. */
export type AgentState = 'connecting' | 'open' | 'backoff' | 'failed' | 'stopped';

/** The running agent. Create with {@link Agent.start}; stop with {@link Agent.stop}. */
export class Agent {
  state: AgentState = 'connecting';
  private tun: OwnedTun | null = null;
  private tunMtu = 0;
  private tunWriter: TunWriter | null = null;
  /** The TUN → UDP leg on a native thread (tun.thread), attached while the session runs over HTTP/3. */
  private tunThread: TunThread | null = null;
  /** Packets and bytes the thread sent since the last drain (counted onto the session after it). */
  private threadPackets = 0;
  private threadBytes = 0;
  /** Packets and bytes the thread wrote into the TUN since the last drain (counted onto the session after it). */
  private threadRxPackets = 0;
  private threadRxBytes = 0;
  /** The thread's counters as last carried into the endpoint's and the TUN write drops (deltas from it). */
  private readonly threadStatsSeen = new Float64Array(TunThreadStat.LENGTH);
  private threadGsoRefusedLogged = false;
  /** Set while a ring entry is handed to HTTP/3: the ring is being drained already (no nested drain). */
  private inThreadDrain = false;
  private tunDropId = -1;
  /** The connection the session rides on (HTTP/3 or HTTP/2), or null while down. */
  private conn: Carrier | null = null;
  private session: ConnectIpClientSession | null = null;
  private sync: TunnelCounterSync | null = null;
  private sessionSince: Date | null = null;
  /** Kernel routes through the TUN for what the gateway advertises. */
  private routeSync: RouteSync | null = null;
  /** Remote access: assigned addresses on the TUN and the SNAT following them. */
  private addressSync: AddressSync | null = null;
  private readonly reconnect: Reconnector;
  /** The daemon's one once-a-second tick (flows, session timers, tunnel counters, forwarder expiry). */
  private readonly tick: ClockTimer;
  private failure: Error | null = null;
  private onDrained: (() => void) | null = null;
  private readonly flows: DaemonFlows;
  private readonly noSessionId: number;
  private admin: AdminServer | null = null;
  private readonly gatewayIdentity: string;
  private readonly gatewayAddr: Uint8Array | null;
  private readonly startedAt: number;
  private connects = 0;
  private readonly forwarders: UdpForwarder[] = [];
  private readonly log: DaemonIo['log'];
  /** TLS material, kept for HTTP/2 connections. */
  private pems: { caPem: string; certPem?: string; keyPem?: string } = { caPem: '' };
  private readonly h2Counters = new H2TunnelCounters();
  private readonly transportMetrics: AgentTransportMetrics;
  private readonly resync: FlowResync;
  /** Fallback and return between the transports (QUIC liveness, HTTP/3 probes). */
  private readonly watch: TransportWatch;
  /** Addresses of the last session, asked for again after a transport switch (RFC 9484 §4.7.2 preferred address). */
  private lastAddresses: { version: 4 | 6; address: Uint8Array; prefixLength: number }[] = [];

  private constructor(
    private readonly config: AgentConfig,
    private readonly io: DaemonIo,
    private readonly endpoint: QuicEndpoint,
    private readonly telemetry: Telemetry,
  ) {
    this.log = io.log;
    this.startedAt = io.clock.now();
    this.gatewayIdentity = config.gateway.serverName ?? config.gateway.address.host;
    this.gatewayAddr = parseIp(config.gateway.address.host)?.address ?? null;
    this.flows = new DaemonFlows({
      telemetry,
      inspection: config.inspection,
      identityOf: () => this.gatewayIdentity,
      directionOf: directionByLocalPrefixes(config.advertise),
    });
    this.noSessionId = telemetry.metrics.dropReasonId(DROP_NO_SESSION);
    this.reconnect = new Reconnector(config.reconnect, io.clock, () => void this.connect());
    this.tick = io.clock.every(1000, () => this.onTick());
    const registry = telemetry.registry;
    this.transportMetrics = new AgentTransportMetrics(registry, () => (this.state === 'open' ? this.conn?.transport ?? null : null));
    registerSessionTransportGauge(registry, 'agent', () => (this.session !== null && this.conn !== null ? [{ transport: this.conn.transport }] : []));
    registerTunThreadCounters(registry, 'agent', () => this.tunThread?.stats() ?? null);
    registerH2Counters(registry, 'agent', this.h2Counters);
    registerQuicEndpointMetrics(registry, 'agent', endpoint.counters);
    this.resync = new FlowResync(registry);
    this.watch = new TransportWatch(config.h2, io.clock, {
      current: () => (this.state === 'open' ? this.conn : null),
      quicFailed: () => this.fallBack(),
      probeH3: () => this.probeH3(),
    });
  }

  /**
   * Starts QUIC on `io.udp` (bound by the caller to the gateway's family),
   * the admin server, the UDP forwarders and the first connection attempt.
   * The TUN is opened through `io.openTun` once the first session says how
   * large a packet the path carries. On failure everything opened is closed.
   */
  static async start(config: AgentConfig, io: DaemonIo): Promise<Agent> {
    const log = io.log;
    let started: Agent | null = null;
    try {
      const caPem = readFileSync(config.tls.ca, 'utf8');
      const certPem = config.tls.cert !== undefined ? readFileSync(config.tls.cert, 'utf8') : undefined;
      const keyPem = config.tls.key !== undefined ? readFileSync(config.tls.key, 'utf8') : undefined;
      const endpoint = new QuicEndpoint({
        socket: io.udp,
        client: { caPem, certPem, keyPem },
        idleTimeoutMs: Math.max(QUIC_IDLE_TIMEOUT_MS, 3 * config.keepaliveIntervalMs),
        // PINGs on the endpoint's shared timer keep NAT bindings and the idle timer alive (RFC 9000 §10.1.2).
        keepAliveMs: config.keepaliveIntervalMs,
        maxUdpPayloadBytes: MAX_UDP_PAYLOAD_BYTES,
        keylogPath: config.tls.keylogPath ?? null,
        recvBudget: tunRecvBudget(config.tun.txQueueLen),
        dgramQueueDelay: tunQueueDelay(config.tun.queueDelay),
        onGsoOff: () => io.log.warn({ socket: 'endpoint' }, GSO_REFUSED_LOG),
      });
      const telemetry = new Telemetry({
        reporter: 'agent',
        workloads: config.telemetry.workloads,
        flowLog: config.telemetry.flowLog.enabled ? config.telemetry.flowLog.path : null,
        flowLogMaxFailedPerSecond: config.telemetry.flowLog.maxFailedPerSecond,
      });
      const agent = new Agent(config, io, endpoint, telemetry);
      started = agent;
      agent.pems = { caPem, certPem, keyPem };
      if (config.admin.enabled) {
        agent.admin = await startAdminServer({
          host: config.admin.listen.host,
          port: config.admin.listen.port,
          registry: telemetry.registry,
          readiness: () => agent.readiness(),
          status: () => agent.status(),
          telemetry,
          capture: config.admin.capture,
        });
      }
      for (const f of config.connectUdp.forwarders) {
        agent.forwarders.push(await UdpForwarder.start({
          listen: f.listen,
          target: f.target,
          maxClients: f.maxClients,
          open: (host, port, onPayload, onClose) => agent.openUdp(host, port, onPayload, onClose),
          flush: () => agent.conn?.flush(),
          log,
        }));
      }
      if (agent.forwarders.length > 0) registerForwarderCounters(telemetry.registry, agent.forwarders, config.connectUdp.forwarders.map((f) => `${f.listen.host}:${f.listen.port}`));
      log.info({ gateway: config.gateway.address, mode: config.mode, admin: agent.admin?.url, udpForwarders: agent.forwarders.length, udpOffload: { gso: io.udp.gso, gro: io.udp.gro } }, 'agent started');
      void agent.connect();
      return agent;
    } catch (e) {
      // Release everything already bound (admin port, forwarders, timers) so a failed start exits cleanly.
      if (started !== null) await started.stop().catch(() => undefined);
      else io.udp.close();
      throw e;
    }
  }

  /** What /readyz reports: ready only with the tunnel open; a fatal TUN error is named. */
  readiness(): { ready: true } | { ready: false; reason: string } {
    if (this.failure !== null) return { ready: false, reason: `failed: ${this.failure.message}` };
    return this.state === 'open' ? { ready: true } : { ready: false, reason: this.state };
  }

  /** The data path is dead (TUN poll or read error): readiness 503, log, tell the owner (who exits non-zero). */
  private fail(e: Error): void {
    if (this.failure !== null) return;
    this.failure = e;
    this.state = 'failed';
    this.log.fatal({ err: e.message }, 'TUN failed: the data path has stopped');
    this.io.onFatal?.(e);
  }

  /** The admin server's base URL, if enabled. */
  get adminUrl(): string | undefined {
    return this.admin?.url;
  }

  // ---------------------------------------------------------------- control path

  /** The hooks every carrier reports to. */
  private readonly carrierHooks: CarrierHooks = {
    onGoaway: (c) => this.onGoaway(c),
    onClosed: (c) => this.onDisconnected(c),
    onReadable: () => this.tunWriter?.flush(),
  };

  /** Opens HTTP/3 to the gateway (the QUIC handshake done). */
  private openH3(signal?: AbortSignal): Promise<Carrier> {
    const { host, port } = this.config.gateway.address;
    return openH3(this.endpoint, host, port, this.config.gateway.serverName ?? host, this.carrierHooks, signal);
  }

  /** Opens HTTP/2 over TCP + TLS 1.3 to the gateway's port number (Extended CONNECT allowed). */
  private openH2(): Promise<Carrier> {
    const { host, port } = this.config.gateway.address;
    return openH2({
      host,
      port,
      serverName: this.config.gateway.serverName ?? host,
      ...this.pems,
      tunnel: { maxCapsuleBytes: 65_536, sendQueueBytes: this.config.h2.sendQueueBytes, maxDatagramPayloadBytes: H2_DATAGRAM_PAYLOAD_BYTES },
      counters: this.h2Counters,
      keepAliveMs: this.config.keepaliveIntervalMs,
      connectTimeoutMs: 5_000,
    }, this.carrierHooks);
  }

  /** A connection and a session: HTTP/3 and HTTP/2 raced (HTTP/3 first), or only HTTP/3 when `h2.enabled` is false. */
  private async connect(): Promise<void> {
    if (this.state === 'stopped' || this.state === 'failed') return;
    this.state = 'connecting';
    const h2 = this.config.h2.enabled ? () => this.openH2() : null;
    let carrier: Carrier;
    try {
      carrier = await raceCarriers((sig) => this.openH3(sig), h2, this.config.h2.fallbackDelayMs, this.io.clock);
    } catch (e) {
      this.log.warn({ err: (e as Error).message }, 'tunnel setup failed');
      this.scheduleReconnect();
      return;
    }
    await this.openSession(carrier, null);
  }

  /**
   * Opens the CONNECT-IP session on `carrier` and makes it current. After a
   * transport switch (`from` set) the session asks for the addresses it had,
   * and routes already installed stay (the route sync sees no change).
   */
  private async openSession(carrier: Carrier, from: TunnelTransport | null): Promise<void> {
    if (this.state === 'stopped' || this.state === 'failed' || carrier.isClosed) {
      carrier.close('not needed');
      if (carrier.isClosed && this.state !== 'stopped' && this.state !== 'failed') this.scheduleReconnect();
      return;
    }
    const { host, port } = this.config.gateway.address;
    this.conn = carrier;
    try {
      const headers = this.authHeaders();
      // Over HTTP/2 the agent's HTTP/3 sessions from this address are dead: the gateway may close them at once (docs/http2-fallback.md).
      if (carrier.transport === 'h2') headers.push(['mtun-supersedes', 'h3']);
      const authority = formatHostPort(this.config.gateway.serverName ?? host, port);
      // Capsules may arrive with the 2xx, before the promise resolves: events
      // until then are covered by applyRoutes() below, which reads the session's state.
      let opened: ConnectIpClientSession | null = null;
      const session = await connectIp(carrier.client, authority, {
        onPacket: this.onGatewayPacket,
        onEvent: (e) => {
          if (opened !== null) this.onSessionEvent(opened, e);
        },
        headers,
      });
      if (this.superseded(carrier)) {
        session.close();
        return;
      }
      opened = session;
      this.session = session;
      this.sessionSince = new Date();
      this.sync?.close();
      this.sync = new TunnelCounterSync(this.telemetry.metrics, this.telemetry.metrics.identityId(this.gatewayIdentity), CONNECT_IP_DROP_NAMES, () => carrier.rttMs());
      await this.ensureTun(session);
      if (this.superseded(carrier)) return;
      if (this.config.mode === 'site-to-site') {
        if (this.config.advertise.length > 0) session.advertiseRoutes(this.config.advertise);
      } else {
        const again = from !== null ? this.lastAddresses : [];
        session.requestAddresses(again.length > 0 ? again : [{ version: 4 }, { version: 6 }]);
      }
      // RFC 9484 §7.2: check the path really carries 1280-byte IPv6 packets (probe answered by the gateway).
      if (session.ipv6Enabled) session.probeIpv6(this.io.clock.now());
      carrier.flush();
      await this.applyRoutes(session);
      if (this.superseded(carrier)) return;
      // Open TCP connections are announced to the gateway again: a restarted gateway tracks none of them (flow-resync.ts).
      const resynced = this.resync.run(this.flows.tracker, TUN_HEADROOM, (b, o, l) => session.sendPacket(b, o, l));
      if (resynced > 0) {
        carrier.flush();
        this.log.info({ connections: resynced }, 're-announced open TCP connections to the gateway');
      }
      this.state = 'open';
      this.reconnect.succeeded();
      this.connects++;
      if (from !== null && from !== carrier.transport) this.transportMetrics.switched(from, carrier.transport);
      this.watch.opened(carrier);
      this.attachThread();
      this.log.info({ gateway: this.config.gateway.address, transport: carrier.transport, from: from ?? undefined, maxPacketSize: session.maxPacketSize(), tunMtu: this.tunMtu, tunThread: this.tunThread?.attached != null }, from !== null ? `tunnel up: switched from ${from} to ${carrier.transport}` : 'tunnel up');
    } catch (e) {
      this.log.warn({ err: (e as Error).message, transport: carrier.transport }, 'tunnel setup failed');
      if (!carrier.isClosed) carrier.close('setup failed');
      this.onDisconnected(carrier);
    }
  }

  /**
   * After an await in openSession(): true when this attempt no longer matters
   * (the connection closed, a newer one replaced it, or the agent stopped).
   * A TUN opened after stop() began is closed here.
   */
  private superseded(carrier: Carrier): boolean {
    if (this.state === 'stopped') {
      this.closeThread();
      if (this.tun !== null && !this.tun.closed) this.tun.close();
      return true;
    }
    return carrier.isClosed || this.conn !== carrier;
  }

  /** Request headers carrying the bearer token, when one is configured. */
  private authHeaders(): [string, string][] {
    const token = this.config.auth.token ?? (this.config.auth.tokenFile !== undefined ? readFileSync(this.config.auth.tokenFile, 'utf8').trim() : undefined);
    return token !== undefined ? [['authorization', `Bearer ${token}`]] : [];
  }

  /** Opens a CONNECT-UDP stream (RFC 9298) for a local forwarder over the current connection. */
  private async openUdp(host: string, port: number, onPayload: (b: Uint8Array, o: number, l: number) => void, onClose: () => void) {
    const c = this.conn;
    if (c === null || this.state !== 'open') throw new Error('agent: no tunnel to the gateway right now');
    const { host: gwHost, port: gwPort } = this.config.gateway.address;
    return connectUdp(c.client, formatHostPort(this.config.gateway.serverName ?? gwHost, gwPort), host, port, {
      onPayload,
      onClose: () => onClose(),
      headers: this.authHeaders(),
    });
  }

  /**
   * GOAWAY (RFC 9114 §5.2, RFC 9113 §6.8): the gateway is going away. End the
   * session so its drain completes at once, and reconnect (to its successor) after backoff.
   */
  private onGoaway(conn: Carrier): void {
    this.log.info({ transport: conn.transport }, 'gateway sent GOAWAY: closing the session, will reconnect');
    if (this.conn !== conn) return;
    this.session?.close();
    conn.flush();
  }

  /** Ends the current session and connection, keeping the TUN, its routes and addresses (a reconnect or switch follows). */
  private dropSession(): void {
    this.detachThread();
    this.conn = null;
    this.watch.closed();
    for (const f of this.forwarders) f.reset();
    if (this.session) {
      this.lastAddresses = this.session.assignedAddresses().map((a) => ({ version: a.version, address: a.address, prefixLength: a.prefixLength }));
      this.syncCounters();
      this.sync?.close();
      this.sync = null;
      this.session = null;
    }
  }

  private onDisconnected(conn: Carrier): void {
    if (this.conn !== conn) return;
    if (this.waitReleased !== null) {
      this.waitReleased(); // probeH3 carries on
      return;
    }
    this.onDrained?.();
    this.dropSession();
    if (this.state === 'stopped' || this.state === 'failed') return;
    const details = conn.closeDetails();
    const reset = details.statelessReset === true;
    this.log.warn({ transport: conn.transport, ...details }, 'tunnel down');
    // A stateless reset (RFC 9000 §10.3): the gateway (another replica, or a restarted one) has no state for us: reconnect at once.
    this.scheduleReconnect(reset);
  }

  /**
   * QUIC stopped hearing from the gateway mid-session (UDP blocked or
   * failing): open HTTP/2 and, once it is up, close QUIC and carry the
   * tunnel over HTTP/2. When HTTP/2 fails too (the gateway itself is down),
   * the QUIC session stays as it is (a restarted gateway resets it at once)
   * and the watch judges again.
   */
  private async fallBack(): Promise<void> {
    const old = this.conn;
    if (old === null || old.transport !== 'h3' || this.state !== 'open') return;
    this.log.warn({ quicDeadAfterMs: this.config.h2.quicDeadAfterMs }, 'HTTP/3 stopped hearing from the gateway: trying HTTP/2');
    let c: Carrier;
    try {
      c = await this.openH2();
    } catch (e) {
      this.log.warn({ err: (e as Error).message }, 'HTTP/2 fallback failed: staying on HTTP/3');
      if (this.conn === old && !old.isClosed && this.state === 'open') this.watch.opened(old);
      return;
    }
    if (this.conn !== old || old.isClosed || this.state !== 'open') {
      c.close('not needed');
      return;
    }
    this.log.warn('falling back to HTTP/2');
    this.dropSession();
    this.state = 'connecting';
    old.close('falling back to HTTP/2');
    await this.openSession(c, 'h3');
  }

  /**
   * Over HTTP/2: tries a QUIC handshake. When it completes, the HTTP/2
   * session is closed (the gateway releases its routes before it answers
   * the FIN) and the tunnel moves back to HTTP/3.
   */
  private async probeH3(): Promise<void> {
    const old = this.conn;
    if (old === null || old.transport !== 'h2' || this.state !== 'open') return;
    let c: Carrier;
    try {
      c = await this.openH3();
    } catch (e) {
      this.log.debug({ err: (e as Error).message }, 'HTTP/3 probe failed: staying on HTTP/2');
      return;
    }
    if (this.conn !== old || this.state !== 'open') {
      c.close('not needed');
      return;
    }
    this.log.info('HTTP/3 works again: moving the tunnel back from HTTP/2');
    const released = new Promise<void>((resolve) => {
      const t = this.io.clock.after(2_000, resolve);
      this.waitReleased = () => {
        t.cancel();
        resolve();
      };
    });
    this.state = 'connecting';
    this.session?.close();
    old.shutdown();
    await released;
    this.waitReleased = null;
    this.dropSession();
    old.close('moved back to HTTP/3');
    await this.openSession(c, 'h2');
  }

  /** Resolves probeH3's wait once the HTTP/2 connection ended (the gateway released the session). */
  private waitReleased: (() => void) | null = null;

  /** Exponential backoff with jitter (config.reconnect; see backoffDelayMs); `immediate` after a stateless reset. */
  private scheduleReconnect(immediate = false): void {
    if (this.state === 'stopped' || this.state === 'failed' || this.reconnect.pending) return;
    this.state = 'backoff';
    const delay = this.reconnect.schedule(immediate);
    this.log.info({ delayMs: delay, attempt: this.reconnect.attempts }, 'reconnecting');
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
    this.tun = await this.io.openTun({ name: this.config.tun.name, mtu, offload: this.config.tun.offload, txQueueLen: this.config.tun.txQueueLen });
    this.tunMtu = mtu;
    const metrics = this.telemetry.metrics;
    const dropId = metrics.dropReasonId(TUN_WRITE_DROP_REASON);
    this.tunDropId = dropId;
    this.tunWriter = new TunWriter(this.tun, 65_535, (n) => metrics.drop(dropId, n));
    this.routeSync = new RouteSync(this.tun.name, this.io.kernel, this.io.clock, this.log, 'routes from the gateway');
    this.addressSync = new AddressSync(this.tun.name, this.io.kernel, this.log, this.config.snat);
    const reader = new TunReader(this.tun, this.onTunBatch, (e) => this.fail(e));
    if (this.config.tun.thread) {
      try {
        this.tunThread = TunThread.open(this.tun, this.io.udp, TUN_HEADROOM, this.onThreadReady);
      } catch (e) {
        this.log.warn({ err: (e as Error).message }, 'TUN thread not started: the event loop reads the TUN');
      }
      // The thread is the TUN's only reader from now on, attached to a session or not.
      if (this.tunThread !== null) reader.pause();
    }
    // The kernel's answers to what the gateway sent (TCP ACKs of a download, written into the TUN during
    // the endpoint's events) leave in the same send batch as the QUIC ACK (endpoint.setBeforeSend).
    this.endpoint.setBeforeSend(() => {
      const t = this.tunThread;
      if (t !== null) this.pollThread(t);
      else reader.pollOnce();
    });
    this.log.info({ tun: this.tun.name, mtu }, 'TUN up');
  }

  private onSessionEvent(session: ConnectIpClientSession, e: ConnectIpEvent): void {
    if (e.type === 'routes' || e.type === 'addresses-assigned') {
      if (this.session === session) {
        void this.applyRoutes(session);
        // The thread's receive check follows the session's: a new table.
        if (this.tunThread?.attached != null) this.attachThread();
      }
    } else if (e.type === 'ipv6-disabled') {
      this.log.warn({ maxPacketSize: e.maxPacketSize }, 'IPv6 disabled: path cannot carry 1280-byte packets (RFC 9484 §7.2)');
      if (this.session === session) this.attachThread();
    } else if (e.type === 'closed') {
      if (this.session === session) this.detachThread();
      this.log.info({ error: e.error, reason: e.reason }, 'CONNECT-IP session closed');
      // While moving back to HTTP/3 the HTTP/2 connection is shut down gracefully instead (probeH3).
      if (this.conn !== null && this.session === session && !this.conn.isClosed && this.waitReleased === null) this.conn.close('session closed');
    }
  }

  /**
   * Installs routes for what the gateway advertises (skipping default routes
   * and prefixes that would capture the gateway's own address), and in
   * remote-access mode puts the assigned addresses on the TUN (SNAT follows).
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
      await this.routeSync.set(this, want);
    }
    if (this.config.mode === 'remote-access') {
      await this.addressSync?.set(session.assignedAddresses().map((a) => ({
        prefix: formatPrefix({ version: a.version, address: a.address, prefixLength: a.prefixLength }),
        address: formatIp(a.address),
        version: a.version,
      })));
    }
  }

  /** The one tick: flow timeouts and live counters, the session's timers, forwarder expiry, tunnel counters. */
  private onTick(): void {
    const now = this.io.clock.now();
    this.flows.tick(now);
    this.session?.onTimeout(now);
    for (const f of this.forwarders) f.expire(now);
    this.syncCounters();
  }

  private syncCounters(): void {
    const s = this.session;
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
      uptimeSeconds: Math.round((this.io.clock.now() - this.startedAt) / 1000),
      ready: this.readiness().ready,
      addresses: this.tun && this.addressSync ? this.addressSync.addresses().map((a) => ({ interface: this.tun!.name, address: a })) : [],
      sessions: s && c ? [{
        id: `c${this.connects}`,
        kind: 'connect-ip',
        transport: c.transport,
        peerIdentity: this.gatewayIdentity,
        remote: formatHostPort(this.config.gateway.address.host, this.config.gateway.address.port),
        state: this.state,
        addresses: s.assignedAddresses().map((a) => formatPrefix({ version: a.version, address: a.address, prefixLength: a.prefixLength })),
        routes: this.routeSync?.routesOf(this) ?? [],
        since: (this.sessionSince ?? new Date(this.io.clock.now())).toISOString(),
        sentBytes: s.counters.bytesSent,
        receivedBytes: s.counters.bytesReceived,
      }] : [],
      topFlows: this.telemetry.topFlows(10),
    };
  }

  // ---------------------------------------------------------------- data path

  /** The parsed view of the outbound packet being handled (reused; the hot path allocates none). */
  private readonly outInfo = new PacketInfo();

  /** Packets from the local network: inspect, clamp MSS, send as HTTP Datagrams. */
  private readonly onTunBatch = (bufs: readonly Buffer[], sizes: Uint32Array, n: number): void => {
    const s = this.session;
    if (s === null) {
      this.telemetry.metrics.drop(this.noSessionId, n);
      return;
    }
    const now = this.io.clock.now();
    for (let i = 0; i < n; i++) this.sendFromTun(s, bufs[i]!, sizes[i]!, now);
    this.conn?.flush();
    this.tunWriter?.flush();
  };

  /** One packet from the local network at buf[TUN_HEADROOM, + len): parse, clamp MSS, send, observe. */
  private sendFromTun(s: ConnectIpClientSession, buf: Buffer, len: number, now: number): void {
    const pi = this.outInfo;
    // Parsed once: the MSS clamp and the flow tracker share this view.
    const parsed = parseIpPacket(buf, TUN_HEADROOM, len, pi) === 0;
    if (this.config.mssClamp && parsed) clampTcpMssParsed(buf, pi, this.tunMtu);
    // Only what entered the tunnel is telemetry (link-local, too-big… are counted as drops by the session).
    if (s.sendPacket(buf, TUN_HEADROOM, len) === 0) {
      // An unparsable packet goes through observe(), which counts its parse failure.
      if (parsed) this.flows.tracker.observeParsed(buf, pi, Direction.OUT, now);
      else this.flows.tracker.observe(buf, TUN_HEADROOM, len, Direction.OUT, now);
      if (this.telemetry.capture.active) this.telemetry.capture.offer(buf, TUN_HEADROOM, len, TapInterface.TUN_IN, now);
    }
    // A Packet Too Big about our own packet comes back to us: into the TUN (RFC 9484 §7.2.1).
    else if (s.icmpLength > 0) this.tunWriter?.push(s.icmpBuffer, MASQUE_HEADROOM, s.icmpLength);
  }

  // ------------------------------------------------------- the TUN thread

  /**
   * A packet the TUN thread read, in order. SENT: it is already on its way;
   * observed here as the event-loop path observes what it sent. Otherwise
   * the event-loop path runs on it (the session's checks, Packet Too Big, the MSS clamp as always).
   */
  private readonly onThreadPacket = (buf: Buffer, off: number, len: number, kind: number, at: number): void => {
    if (kind === TUN_THREAD_IN) {
      this.flows.tracker.observe(buf, off, len, Direction.IN, at);
      if (this.telemetry.capture.active) this.telemetry.capture.offer(buf, off, len, TapInterface.TUN_OUT, at);
      this.threadRxPackets++;
      this.threadRxBytes += len;
      return;
    }
    if (kind === TUN_THREAD_H3) {
      // Another stream (a CONNECT-UDP forwarder) or context, or a packet the session's check drops: HTTP/3 as always.
      this.inThreadDrain = true;
      try {
        this.conn?.receiveDatagram(buf.subarray(off, off + len));
      } finally {
        this.inThreadDrain = false;
      }
      return;
    }
    if (kind === TUN_THREAD_SENT) {
      this.flows.tracker.observe(buf, off, len, Direction.OUT, at);
      if (this.telemetry.capture.active) this.telemetry.capture.offer(buf, off, len, TapInterface.TUN_IN, at);
      this.threadPackets++;
      this.threadBytes += len;
      return;
    }
    const s = this.session;
    if (s === null) this.telemetry.metrics.drop(this.noSessionId, 1);
    else this.sendFromTun(s, buf, len, at);
  };

  /** The thread published packets (or its TUN read failed). */
  private readonly onThreadReady = (): void => {
    const t = this.tunThread;
    if (t === null) return;
    const err = t.readError();
    if (err !== 0) {
      this.fail(new Error(`tun ${this.tun?.name ?? ''}: read failed on the TUN thread (errno ${err})`));
      return;
    }
    if (t.receiving || t.hasEndpointPending()) {
      // The thread received: the connection's events (stream data, DATAGRAMs it left in the queue, its state)
      // and the datagrams it handed over run now, then sends and timers, as after a read of the socket here.
      this.threadInput(t, t.receiving ? this.conn?.quic() ?? null : null);
      return;
    }
    if (this.drainThread(t) > 0) {
      // Sends what the event-loop path queued, and re-arms the connection's timers after the thread's sends.
      this.conn?.flush();
      this.tunWriter?.flush();
    }
  };

  /** Runs the endpoint on what the thread received, then lets it receive again (its held DATAGRAMs are handled). */
  private threadInput(t: TunThread, received: QuicConnection | null): void {
    const held = t.stats()[TunThreadStat.RX_HELD]!; // before the queue is looked at: see resume()
    try {
      this.drainThread(t);
      this.countThreadSends(t); // the thread sends ACKs in rounds that publish nothing
      const endpointPending = t.hasEndpointPending();
      this.endpoint.threadInput(received === null ? [] : [received], endpointPending ? (feed) => t.drainEndpoint(feed) : null);
      this.tunWriter?.flush();
    } finally {
      t.resume(held); // a handler that threw must not leave the socket unread
    }
  }

  /** Hands the thread's published packets to onThreadPacket; counts what it sent. Returns how many. */
  private drainThread(t: TunThread): number {
    const n = t.drain(this.onThreadPacket, this.io.clock.now());
    if (n > 0) this.countThreadSends(t); // its TUN reads send only in rounds that publish; its receives are counted in threadInput
    return n;
  }

  /** Carries what the thread sent into the session's, the connection's and the endpoint's counters. */
  private countThreadSends(t: TunThread): void {
    if (this.threadPackets > 0) {
      this.session?.countSent(this.threadPackets, this.threadBytes);
      this.conn?.noteDatagramsSent(this.threadPackets);
      this.threadPackets = 0;
      this.threadBytes = 0;
    }
    if (this.threadRxPackets > 0) {
      this.session?.countReceived(this.threadRxPackets, this.threadRxBytes);
      this.conn?.noteDatagramsReceived(this.threadRxPackets);
      this.threadRxPackets = 0;
      this.threadRxBytes = 0;
    }
    const r = carryThreadCounters(t.stats(), this.threadStatsSeen, this.endpoint.counters);
    if (r.received > 0) this.conn?.quic()?.noteThreadReceived(r.received);
    if (r.gsoRefused > 0 && !this.threadGsoRefusedLogged) {
      this.threadGsoRefusedLogged = true;
      this.log.warn({ socket: 'tun-thread' }, GSO_REFUSED_LOG);
    }
    if (r.tunDropped > 0 && this.tunDropId >= 0) this.telemetry.metrics.drop(this.tunDropId, r.tunDropped);
  }

  /** Just before the endpoint sends: what the kernel answered inside a TUN write joins that send. */
  private pollThread(t: TunThread): void {
    try {
      t.poll();
    } catch (e) {
      this.fail(e as Error);
      return;
    }
    this.drainThread(t);
    this.tunWriter?.flush();
  }

  /** Lets the thread send on the session's connection while it runs over HTTP/3; otherwise detaches it. */
  private attachThread(): void {
    const t = this.tunThread;
    const s = this.session;
    const c = this.conn;
    // A session that closed (a stop, a GOAWAY) gets no thread, also when an attach deferred below comes back for it.
    const h = t !== null && s !== null && !s.isClosed && this.state !== 'stopped' && c !== null && c.transport === 'h3' && !c.isClosed ? c.engineHandle() : null;
    if (t === null || s === null || h === null || h === undefined) {
      this.detachThread();
      return;
    }
    // The endpoint may still hold datagrams it read (a GRO batch past its receive budget, handled on its next turn):
    // a thread receiving now would write newer ones into the TUN before them. The endpoint stops reading, and the
    // thread attaches on a turn after they are handled (review of the GRO change, 7 December).
    if (t.attached === null && this.endpoint.holdsInput) {
      this.endpoint.pauseInput();
      if (!this.attachDeferred) {
        this.attachDeferred = true;
        setImmediate(this.deferredAttach);
      }
      return;
    }
    // The receive leg: the thread reads the socket and checks what it writes into the TUN with the session's table.
    t.attach(h, s.datagramPrefix(), s.ipv6Enabled, loadNative().judgeTable(s.receiveTable()), this.config.mssClamp ? this.tunMtu : 0);
    this.endpoint.pauseInput();
  }

  /** An attach waits for the endpoint's left-over datagrams ({@link attachThread}). */
  private attachDeferred = false;
  private readonly deferredAttach = (): void => {
    this.attachDeferred = false;
    try {
      this.attachThread();
      if (this.tunThread?.attached != null) this.log.info({}, 'TUN thread attached (after the endpoint handled the datagrams it held)');
    } catch (e) {
      // As a failed attach during the session's set-up: the connection goes, the agent reconnects.
      this.log.warn({ err: (e as Error).message }, 'TUN thread attach failed; closing the connection');
      this.conn?.close('TUN thread attach failed');
    } finally {
      // Nothing to attach to any more (the session or the thread went meanwhile): the endpoint reads the socket again.
      if (this.tunThread?.attached == null && !this.attachDeferred) this.endpoint.resumeInput();
    }
  };

  /** The thread stops sending on the session's connection (it hands every packet to the event loop); what it read before is handled first. */
  private detachThread(): void {
    const t = this.tunThread;
    if (t === null || t.attached === null) return;
    const receiving = t.receiving;
    const conn = this.conn?.quic() ?? null; // the connection the thread received for, whatever this.conn is by the next turn
    t.detach();
    if (receiving) {
      // The endpoint reads the socket again. What the thread received and left (held DATAGRAMs, datagrams for the
      // endpoint) is handled on the next turn: detach may run inside the endpoint's events or its flush (a connection
      // that closed), which hold the engine lock, and the thread takes its producer lock before that one.
      this.endpoint.resumeInput();
      setImmediate(() => this.threadInput(t, conn));
      return;
    }
    this.drainThread(t);
    this.conn?.flush();
    this.tunWriter?.flush();
  }

  private closeThread(): void {
    const t = this.tunThread;
    if (t === null) return;
    this.detachThread();
    this.tunThread = null;
    t.close(this.onThreadPacket, this.io.clock.now());
    this.countThreadSends(t); // what it read and sent after the last drain (stop() syncs the counters next)
    // Datagrams the thread received for the endpoint and nobody took yet (the turn detach scheduled comes after
    // this): the endpoint, still open, handles them now, as it would have on that turn.
    if (t.hasEndpointPending()) this.endpoint.threadInput([], (feed) => t.drainEndpoint(feed));
  }

  /** Packets from the gateway: inspect, copy into the TUN batch (MSS clamped), written after the QUIC batch. */
  private readonly onGatewayPacket = (buf: Uint8Array, off: number, len: number): void => {
    // What the TUN thread sent and the flow tracker has not seen yet comes first: the answer follows its request.
    const t = this.tunThread;
    if (t !== null && !this.inThreadDrain && t.hasPending()) this.drainThread(t);
    const now = this.io.clock.now();
    // Clamped first, so the capture shows what is written into the TUN (as the TUN thread's does).
    if (this.config.mssClamp) clampTcpMss(buf, off, len, this.tunMtu);
    this.flows.tracker.observe(buf, off, len, Direction.IN, now);
    if (this.telemetry.capture.active) this.telemetry.capture.offer(buf, off, len, TapInterface.TUN_OUT, now);
    this.tunWriter?.push(buf, off, len);
  };

  // ---------------------------------------------------------------- shutdown

  /**
   * Graceful stop (SIGTERM): session closed and HTTP/3 GOAWAY sent, then waits
   * for the connection to close (at most {@link AGENT_DRAIN_DEADLINE_MS});
   * flow records written; SNAT removed; socket and TUN closed (the kernel
   * removes the TUN's routes and addresses).
   */
  async stop(): Promise<void> {
    if (this.state === 'stopped') return;
    this.state = 'stopped';
    this.reconnect.cancel();
    this.tick.cancel();
    this.routeSync?.close();
    for (const f of this.forwarders) f.close();
    const conn = this.conn;
    if (conn !== null && !conn.isClosed) {
      let deadline: ClockTimer | null = null;
      const drained = new Promise<void>((resolve) => {
        this.onDrained = resolve;
        deadline = this.io.clock.after(AGENT_DRAIN_DEADLINE_MS, resolve);
      });
      this.watch.closed();
      this.session?.close();
      conn.shutdown();
      await drained;
      (deadline as ClockTimer | null)?.cancel();
    }
    this.closeThread();
    this.syncCounters();
    this.flows.close(this.io.clock.now());
    this.watch.closed();
    if (this.conn !== null && this.conn.transport === 'h2') this.conn.close('agent shutting down');
    // Sends CONNECTION_CLOSE if the connection is still there, synchronously.
    this.endpoint.close(0, 'agent shutting down');
    this.io.udp.close();
    await this.addressSync?.close();
    this.tun?.close();
    await this.admin?.close();
    await this.telemetry.shutdown();
    this.log.info('agent stopped');
  }
}

function coversAddress(p: IpPrefix, addr: Uint8Array): boolean {
  return prefixCovers(p, { version: addr.length === 4 ? 4 : 6, address: addr, prefixLength: addr.length * 8 });
}

/** `mtun_agent_udp_forwarder_datagrams_total{forwarder, event}`: each local CONNECT-UDP forwarder's counters, read at scrape time. */
function registerForwarderCounters(registry: Registry, forwarders: readonly UdpForwarder[], names: readonly string[]): void {
  const events: Array<[keyof UdpForwarder['counters'], string]> = [
    ['datagramsToTarget', 'to_target'], ['datagramsFromTarget', 'from_target'], ['dropTooManyClients', 'drop_too_many_clients'],
    ['dropPendingFull', 'drop_pending_full'], ['dropOpenFailed', 'drop_open_failed'], ['dropSend', 'drop_send'], ['evictedIdle', 'evicted_idle'],
  ];
  const c: Counter<'forwarder' | 'event'> = new Counter({
    name: 'mtun_agent_udp_forwarder_datagrams_total',
    help: 'Local CONNECT-UDP forwarders: datagrams to and from the target, drops by reason, and idle clients closed early to make room (evicted_idle)',
    labelNames: ['forwarder', 'event'],
    registers: [registry],
    collect: () => {
      c.reset();
      forwarders.forEach((f, i) => {
        for (const [k, event] of events) c.inc({ forwarder: names[i] ?? String(i), event }, f.counters[k]);
      });
    },
  });
}

