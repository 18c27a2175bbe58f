/**
 * The gateway daemon: accepts agents over QUIC + HTTP/3, serves their
 * CONNECT-IP (RFC 9484) and CONNECT-UDP (RFC 9298) requests, and moves IP
 * packets between the sessions and its own TUN device. Wiring and pump loops
 * only: it is given its TUN factory, UDP socket, kernel-config port and clock
 * ({@link DaemonIo}); admission (`admit-connect.ts`), tokens (`auth.ts`),
 * reload decisions (`reload.ts`) and status (`status.ts`) live beside it.
 */
import { Counter } from 'prom-client';
import { promises as dns } from 'node:dns';
import { readFileSync } from 'node:fs';
import { compilePolicy, type CompiledPolicy, type GatewayConfig, type IdentityPolicy } from '../config/index.js';
import { attachH3 } from '../h3/quic-binding.js';
import { healthzHandler } from '../telemetry/healthz.js';
import type { ConnectRequest } from '../h3/connection.js';
import { Direction } from '../inspect/flow-tracker.js';
import type { FlowRecord } from '../inspect/flow-record.js';
import type { AddressPool } from '../masque/address-pool.js';
import { CONNECT_IP_DROP_NAMES } from '../masque/connect-ip/counters.js';
import { ConnectIpGatewaySession } from '../masque/connect-ip/gateway-session.js';
import { MASQUE_HEADROOM } from '../masque/connect-ip/datagram.js';
import { CONNECT_UDP_DROP_NAMES } from '../masque/connect-udp/counters.js';
import { ConnectUdpGatewaySession, type UdpResolver } from '../masque/connect-udp/gateway-session.js';
import { checkConnectUdpRequest } from '../masque/connect-udp/request.js';
import { defaultIdleSweeper } from '../masque/connect-udp/idle-sweeper.js';
import { acceptConnectIp, acceptConnectUdp } from '../masque/h3-glue.js';
import { formatHostPort, formatPrefix, isLinkLocal4, isLinkLocal6, parseIp, prefixCovers, prefixesOverlap, type IpPrefix } from '../packet/ip-address.js';
import { DropReason, IPPROTO, PacketInfo, parseIpPacket } from '../packet/ip-packet.js';
import { refuse } from '../masque/proxy-status.js';
import { INBOUND_DROP_NAMES, InboundDrop, InboundFilter } from '../masque/inbound/inbound-filter.js';
import { localAddresses, localSubnets } from '../masque/destination-policy.js';
import { RouteTable } from '../masque/route-table.js';
import { QuicEndpoint } from '../quic/endpoint.js';
import { GSO_REFUSED_LOG } from '../net/udp.js';
import type { QuicConnection } from '../quic/connection.js';
import type { PeerIdentity } from '../quic/peer-identity.js';
import { directionByLocalPrefixes, startAdminServer, TapInterface, Telemetry, TunnelCounterSync, type AdminServer, type DaemonStatus } from '../telemetry/index.js';
import { DaemonFlows } from '../daemon/flows.js';
import type { ClockTimer, DaemonIo, OwnedTun } from '../daemon/ports.js';
import { TUN_WRITE_DROP_REASON, TunWriter, tunQueueDelay, tunRecvBudget } from '../daemon/tun-writer.js';
import { RouteSync } from '../daemon/route-sync.js';
import { TUN_HEADROOM, TunReader } from '../daemon/tun-reader.js';
import { GATEWAY_ENDPOINT_SLOTS, TUN_THREAD_H3, TUN_THREAD_IN, TUN_THREAD_SENT, TUN_THREAD_SLOTS, TunThread, TunThreadStat } from '../daemon/tun-thread.js';
import { carryThreadCounters, registerTunThreadCounters } from '../daemon/tun-thread-metrics.js';
import { loadNative } from '../native/addon.js';
import type { H3Connection } from '../h3/connection.js';
import { DEFAULT_TUNNEL_MTU, MAX_UDP_PAYLOAD_BYTES, QUIC_IDLE_TIMEOUT_MS } from '../daemon/tunnel-constants.js';
import { admitConnect } from './admit-connect.js';
import { registerAuthCounters } from './auth-metrics.js';
import { registerQuicEndpointMetrics } from '../telemetry/quic-endpoint-metrics.js';
import { openTimeoutRefusal, type OpenPhase } from './open-timeout.js';
import { TokenTable } from './auth.js';
import { reviewSession, udpAllowance, udpTargetAllowed } from './reload.js';
import { routeConflictVerdict, SessionRegistry, type GwConn, type GwSession, type SupersedeCause } from './session-registry.js';
import { gatewayStatus } from './status.js';
import { registerInboundMetrics } from './inbound-metrics.js';
import { quicServerKeys } from './quic-keys.js';
import { replicaPools } from './replica-pools.js';
import { plainHost, startGatewayH2, SUPERSEDES_HEADER, type H2Listener } from './h2-listener.js';

/** Gateway-level drop reasons (packets read from the TUN). */
const GW_DROP_NO_ROUTE = 'no_route';
/** Same reason name the CONNECT-IP sessions use for link-local traffic (RFC 9484 §7.2: never forwarded). */
const GW_DROP_LINK_LOCAL = 'link_local';
/** How long stop() waits for agents to close their connections after GOAWAY before closing them itself. */
export const GATEWAY_DRAIN_DEADLINE_MS = 2_000;
/** How much shorter than the inbound table's shortest timeout the TUN thread answers on a flow (ms). */
const THREAD_FLOW_MARGIN_MS = 1_000;
/** TLS session ticket keys are replaced this often (and on every reload), so a stolen ticket key opens little (#12 item 5). */
export const TICKET_KEY_ROTATION_MS = 3_600_000;

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
  private tokens: TokenTable;
  private readonly routes = new RouteTable<ConnectIpGatewaySession>();
  /** Kernel routes through the TUN for each session's advertised site prefixes (latest state, batched). */
  private readonly kernelRoutes: RouteSync;
  private readonly reg = new SessionRegistry();
  private readonly pools: { v4?: AddressPool; v6?: AddressPool };
  private readonly poolPrefixes: IpPrefix[];
  private readonly flows: DaemonFlows;
  private readonly tunWriter: TunWriter;
  private readonly noRouteId: number;
  private readonly linkLocalId: number;
  /** Inbound default-deny (#12 item 8): flows agents opened, and the verdict on packets toward them. */
  private readonly inbound: InboundFilter;
  /** Drop-reason ids by {@link InboundDrop} code. */
  private readonly inboundDropIds: Int32Array;
  /** The daemon's one once-a-second tick (flow timeouts, live flow counters, tunnel counters). */
  private readonly tick: ClockTimer;
  private nextSessionId = 1;
  /** Bumped by every reload: an open that spanned one is reviewed against what it loaded ({@link reviewOpened}). */
  private reloads = 0;
  private ticketKeyRotatedAt: number;
  private readonly hostAddresses = (fresh: boolean): readonly Uint8Array[] =>
    this.io.hostAddresses ? this.io.hostAddresses(fresh) : localAddresses(performance.now(), fresh);
  /** Identity|address of HTTP/2 fallback requests whose superseded sessions are discounted from the limits while they open. */
  private readonly supersedesPending = new Set<string>();
  /** The own-address list sessions were last given ({@link followOwnAddresses}). */
  private ownSeen: readonly Uint8Array[];
  private admin: AdminServer | null = null;
  /** The HTTP/2 listener (TCP, same port number), or null when disabled or not bound. */
  private h2: H2Listener | null = null;
  private stopping = false;
  /** The port whose kernel Initial limit this gateway installed (removed on stop), or null. */
  initialLimitPort: number | null = null;
  private failure: Error | null = null;
  private onDrained: (() => void) | null = null;
  private readonly startedAt: number;

  private constructor(
    private config: GatewayConfig,
    private readonly io: DaemonIo,
    private readonly tun: OwnedTun,
    private readonly endpoint: QuicEndpoint,
    private readonly telemetry: Telemetry,
  ) {
    this.startedAt = io.clock.now();
    this.ticketKeyRotatedAt = this.startedAt;
    this.ownSeen = this.hostAddresses(true);
    this.policy = compilePolicy(config.policy);
    this.tokens = TokenTable.fromConfig(config);
    this.kernelRoutes = new RouteSync(tun.name, io.kernel, io.clock, io.log, 'routes to agent sites');
    // Only this replica's slice of each pool (pools.slice): leased from, routed to the TUN.
    const pools = replicaPools(config.pools);
    this.pools = { v4: pools.v4, v6: pools.v6 };
    this.poolPrefixes = pools.prefixes;
    this.flows = new DaemonFlows({
      telemetry,
      inspection: config.inspection,
      identityOf: (r) => this.identityOfFlow(r),
      directionOf: directionByLocalPrefixes(config.advertise),
    });
    const dropId = telemetry.metrics.dropReasonId(TUN_WRITE_DROP_REASON);
    this.tunDropId = dropId;
    this.tunWriter = new TunWriter(tun, 65_535, (n) => telemetry.metrics.drop(dropId, n));
    this.noRouteId = telemetry.metrics.dropReasonId(GW_DROP_NO_ROUTE);
    this.linkLocalId = telemetry.metrics.dropReasonId(GW_DROP_LINK_LOCAL);
    const it = config.inboundTracking;
    this.inbound = new InboundFilter({
      ...it,
      maxFlowsPerOwner: it.maxFlowsPerIdentity ?? Math.max(1, Math.floor(it.maxFlows / 2)),
      // Flows dropped before their timeout must not be answered on by the TUN thread either.
      onDropped: () => this.tunThread?.forgetFlows(),
    });
    this.inboundDropIds = Int32Array.from(INBOUND_DROP_NAMES, (n, i) => (i === 0 ? -1 : telemetry.metrics.dropReasonId(n)));
    registerInboundMetrics(telemetry.registry, this.inbound.track);
    this.tick = io.clock.every(1000, () => this.onTick());
    registerAuthCounters(telemetry.registry, { endpoint: endpoint.counters, superseded: () => this.reg.superseded });
    registerQuicEndpointMetrics(telemetry.registry, 'gateway', endpoint.counters);
    const reader = new TunReader(tun, this.onTunBatch, (e) => this.fail(e));
    if (config.tun.thread) {
      try {
        // Slots as large as what an agent may send: its TUN MTU, not ours, sets it.
        this.tunThread = TunThread.open(tun, io.udp, TUN_HEADROOM, this.onThreadReady, Math.max(tun.mtu, MAX_UDP_PAYLOAD_BYTES), GATEWAY_ENDPOINT_SLOTS);
      } catch (e) {
        io.log.warn({ err: (e as Error).message }, 'TUN thread not started: the event loop reads the TUN');
      }
      // The thread is the TUN's only reader from now on, attached to a session or not.
      if (this.tunThread !== null) reader.pause();
    }
    registerTunThreadCounters(telemetry.registry, 'gateway', () => this.tunThread?.stats() ?? null);
    // What agents sent reaches the TUN once the endpoint's input batch is done: every connection's
    // `readable` event of the batch shares one TUN write call (the writer still writes early when its
    // slots fill), before the endpoint sends; the kernel's answers to it, read back at once, leave in
    // the same send batch, carrying the QUIC ACK (endpoint.setBeforeSend). HTTP/2 tunnels write on
    // their own (the listener's afterData).
    endpoint.setBeforeSend(() => {
      this.tunWriter.flush();
      const t = this.tunThread;
      if (t !== null) this.pollThread(t);
      else reader.pollOnce();
    });
  }

  /**
   * Opens the TUN through `io.openTun` (routes for the address pools through
   * it), starts QUIC on `io.udp`, starts the admin server. Throws with a clear
   * message when any of them fails (no CAP_NET_ADMIN, bad certificate…);
   * what was opened is closed again, including `io.udp`.
   */
  static async start(config: GatewayConfig, io: DaemonIo): Promise<Gateway> {
    let tun: OwnedTun | null = null;
    let opening: Promise<OwnedTun> | null = null;
    let gw: Gateway | null = null;
    try {
      const certPem = readFileSync(config.tls.cert, 'utf8');
      const keyPem = readFileSync(config.tls.key, 'utf8');
      const caPem = config.tls.ca !== undefined ? readFileSync(config.tls.ca, 'utf8') : undefined;
      const poolRoutes = replicaPools(config.pools).prefixes.map(formatPrefix);
      // Shared by every replica when quic.statelessResetKeyFile is set (RFC 9000 §10.3: any replica resets what it does not hold).
      const keys = quicServerKeys(config.quic.statelessResetKeyFile, keyPem);
      opening = io.openTun({ name: config.tun.name, mtu: config.tun.mtuBytes ?? DEFAULT_TUNNEL_MTU, routes: poolRoutes, offload: config.tun.offload, txQueueLen: config.tun.txQueueLen });
      const telemetry = new Telemetry({
        reporter: 'gateway',
        workloads: config.telemetry.workloads,
        flowLog: config.telemetry.flowLog.enabled ? config.telemetry.flowLog.path : null,
        flowLogMaxFailedPerSecond: config.telemetry.flowLog.maxFailedPerSecond,
      });
      tun = await opening;
      const endpoint = new QuicEndpoint({
        socket: io.udp,
        server: {
          certPem,
          keyPem,
          clientCaPem: config.tls.requireClientCert ? caPem : undefined,
          statelessResetKey: keys.statelessResetKey,
          // No ticketKey: random per process, rotated on reload and every TICKET_KEY_ROTATION_MS (#12 item 5).
          // QUIC-LB (draft-ietf-quic-load-balancers): this replica's ID in every connection ID it issues.
          maxRetriesPerSecond: config.quic.maxRetriesPerSecond,
          quicLb: config.quic.serverId !== undefined ? { configRotation: 0, serverId: config.quic.serverId } : undefined,
          onConnection: (c) => gw!.onConnection(c),
        },
        // The connection's idle timeout is the smaller of both ends' (RFC 9000 §10.1): leave room for 3 agent keepalives.
        idleTimeoutMs: Math.max(QUIC_IDLE_TIMEOUT_MS, 3 * config.keepaliveIntervalMs),
        maxUdpPayloadBytes: MAX_UDP_PAYLOAD_BYTES,
        recvBudget: tunRecvBudget(config.tun.txQueueLen),
        dgramQueueDelay: tunQueueDelay(config.tun.queueDelay),
        // Before authentication (#12 item 13): few connections per IP, small windows (see config/schema.ts).
        maxConnectionsPerPeerIp: config.maxConnectionsPerPeerIp,
        maxDataBytes: config.connectionWindowBytes,
        maxStreamDataBytes: config.streamWindowBytes,
        keylogPath: config.tls.keylogPath ?? null,
        onGsoOff: () => io.log.warn({ socket: 'endpoint' }, GSO_REFUSED_LOG),
      });
      gw = new Gateway(config, io, tun, endpoint, telemetry);
      const g = gw;
      g.h2 = await startGatewayH2(config, {
        io,
        tls: { certPem, keyPem, clientCaPem: config.tls.requireClientCert ? caPem : undefined },
        port: endpoint.localAddress().port,
        registry: telemetry.registry,
        connections: function* () { for (const s of g.reg.sessions()) yield s.gc; },
        afterData: () => g.tunWriter.flush(),
        host: { opened: (gc) => g.reg.conns.add(gc), onConnect: (gc, req) => g.onConnect(gc, req), closed: (gc) => g.onConnectionClosed(gc) },
      });
      if (config.admin.enabled) {
        gw.admin = await startAdminServer({
          host: config.admin.listen.host,
          port: config.admin.listen.port,
          registry: telemetry.registry,
          readiness: () => gw!.readiness(),
          status: () => gw!.status(),
          telemetry,
          capture: config.admin.capture,
        });
      }
      await gw.startInitialLimit();
      io.log.info({ listen: endpoint.localAddress(), tun: tun.name, mtu: tun.mtu, admin: gw.admin?.url, pools: poolRoutes, quicKeys: keys.source, kernelInitialLimit: gw.initialLimitPort !== null ? config.quic.kernelInitialLimit : 0, udpOffload: { gso: io.udp.gso, gro: io.udp.gro } }, 'gateway started');
      return gw;
    } catch (e) {
      io.udp.close();
      (tun ?? (await opening?.catch(() => null)))?.close();
      await gw?.h2?.close();
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

  /** What /readyz reports: 503 while draining or after a fatal data-path error. */
  readiness(): { ready: true } | { ready: false; reason: string } {
    if (this.failure !== null) return { ready: false, reason: `failed: ${this.failure.message}` };
    return this.stopping ? { ready: false, reason: 'draining' } : { ready: true };
  }

  /** The data path is dead (TUN poll or read error): readiness 503, log, tell the owner (who exits non-zero). */
  private fail(e: Error): void {
    if (this.failure !== null) return;
    this.failure = e;
    this.io.log.fatal({ err: e.message }, 'TUN failed: the data path has stopped');
    this.io.onFatal?.(e);
  }

  // ---------------------------------------------------------------- the TUN thread (tun.thread)

  private tunThread: TunThread | null = null;
  private readonly tunDropId: number;
  /**
   * The thread carries every agent connection over HTTP/3 (issues #13, #17):
   * each connection's first open CONNECT-IP session is attached in a slot of
   * its own. `threadSlots[slot]` is the session a slot's ring entries are
   * credited to: its attached session, and after a detach still the old one
   * until what the thread published before the detach is drained; only then
   * is the slot free again.
   */
  private readonly threadSlots: (GwSession | null)[] = [];
  private readonly threadSlotOf = new Map<GwSession, number>();
  /** The attached session of each connection. */
  private readonly threadOfConn = new Map<GwConn, GwSession>();
  private readonly threadFreeSlots: number[] = [];
  /** Detached slots whose entries may still be in the ring: freed once drained ({@link finishDetach}). */
  private threadDetached: number[] = [];
  private threadDrainScheduled = false;
  private threadAttachDeferred = false;
  private threadFullLogged = false;
  /** Per slot: packets the thread sent (SENT) and wrote (IN) since they were last counted, and the slots with some. */
  private readonly threadCounts = new Float64Array(4 * TUN_THREAD_SLOTS);
  private readonly threadDirty: number[] = [];
  private readonly threadTouchedPairs = new Uint32Array(2 * 256);
  private readonly threadTouchedConns: QuicConnection[] = [];
  /** dpPoll's answer: how many attachments its round queued on, then their slots (at most a round's packets). */
  private readonly threadPolled = new Uint32Array(1 + 64);
  private threadGsoRefusedLogged = false;
  private readonly threadStatsSeen = new Float64Array(TunThreadStat.LENGTH);
  private readonly threadInfo = new PacketInfo();

  /** Counts a packet of `len` bytes for slot `slot`: `at` 0 sent to the agent, 2 written into the TUN. */
  private countThreadPacket(slot: number, at: number, len: number): void {
    const c = this.threadCounts;
    const i = 4 * slot + at;
    if (c[4 * slot]! === 0 && c[4 * slot + 2]! === 0) this.threadDirty.push(slot);
    c[i]!++;
    c[i + 1]! += len;
  }

  /**
   * A packet the TUN thread handled, in order, for the session attached in
   * `slot`. IN: an agent's packet it wrote into the TUN (the session's check
   * passed, TTL decremented), seen here as the event loop's path sees what
   * it writes: the inbound table, the flow tracker, the capture tap. SENT: a
   * packet of the network it sent to the agent (an answer on a flow it saw
   * the agent use). H3: a DATAGRAM for HTTP/3 (another stream or context, or
   * one the thread's check did not pass: the session's own check judges
   * it). Otherwise a packet of the network for the event loop's path (route,
   * inbound default deny, rules).
   */
  private readonly onThreadPacket = (buf: Buffer, off: number, len: number, kind: number, at: number, slot: number): void => {
    const gs = slot >= 0 ? this.threadSlots[slot] ?? null : null;
    if (kind === TUN_THREAD_IN) {
      // As the session's own path: the agent's packet opens or refreshes its flow in the connection table.
      if (this.observeThreadPacket(buf, off, len, at, Direction.OUT, TapInterface.TUN_OUT) && gs !== null) {
        this.inbound.track.seed(buf, this.threadInfo, gs.identity, at);
      }
      if (gs !== null) this.countThreadPacket(slot, 2, len);
      return;
    }
    if (kind === TUN_THREAD_H3) {
      if (gs !== null && gs.gc.transport === 'h3') (gs.gc.http as unknown as H3Connection).receiveDatagram(buf.subarray(off, off + len), len);
      return;
    }
    if (kind === TUN_THREAD_SENT) {
      // As the event loop's path: a return packet moves its flow on in the connection table (opening → established).
      if (this.observeThreadPacket(buf, off, len, at, Direction.IN, TapInterface.TUN_IN) && gs !== null) {
        this.inbound.track.matchReturn(buf, this.threadInfo, gs.identity, at);
      }
      if (gs !== null) this.countThreadPacket(slot, 0, len);
      return;
    }
    this.forwardFromNetwork(buf, len, at);
  };

  /**
   * Parses a packet the thread carried into {@link threadInfo}, hands it to
   * the flow tracker (`dir`, a {@link Direction}) and the capture tap (`tap`, a {@link TapInterface}). True
   * when the connection table keys it (parsed, or a protocol without ports,
   * tracked on addresses and protocol as the session's own path does).
   */
  private observeThreadPacket(buf: Buffer, off: number, len: number, at: number, dir: number, tap: number): boolean {
    const info = this.threadInfo;
    const r = parseIpPacket(buf, off, len, info);
    if (r === 0) this.flows.tracker.observeParsed(buf, info, dir, at);
    else this.flows.tracker.observe(buf, off, len, dir, at);
    if (this.telemetry.capture.active) this.telemetry.capture.offer(buf, off, len, tap, at);
    return r === 0 || r === DropReason.UNSUPPORTED_PROTO;
  }

  /** The thread published packets, received, or its TUN read failed. */
  private readonly onThreadReady = (): void => {
    const t = this.tunThread;
    if (t === null) return;
    if (t.readError() !== 0) {
      this.fail(new Error(`tun ${this.tun.name}: read failed on the TUN thread (errno ${t.readError()})`));
      return;
    }
    if (t.receiving || t.hasEndpointPending()) {
      this.threadInput(t);
      return;
    }
    if (this.drainThread(t) > 0) {
      this.endpoint.flush();
      this.tunWriter.flush();
    }
  };

  /** The QUIC connection of the session in `slot` (attached, or detached and not drained yet), or null. */
  private threadSlotConn(slot: number): QuicConnection | null {
    const gs = this.threadSlots[slot];
    return gs !== null && gs !== undefined && gs.gc.transport === 'h3' ? (gs.gc.conn as QuicConnection) : null;
  }

  /**
   * The connections the thread fed packets since the last call (their
   * receive counts carried over for the RTT gauge's tick), in
   * {@link threadTouchedConns}.
   */
  private takeTouched(t: TunThread): QuicConnection[] {
    const out = this.threadTouchedConns;
    out.length = 0;
    const pairs = this.threadTouchedPairs;
    for (;;) {
      const n = t.touched(pairs);
      for (let i = 0; i < n; i++) {
        const conn = this.threadSlotConn(pairs[2 * i]!);
        if (conn === null) continue;
        // The tick samples the RTT gauge only of connections that received something: the thread's receives count.
        conn.noteThreadReceived(pairs[2 * i + 1]!);
        out.push(conn);
      }
      if (2 * n < pairs.length) return out;
    }
  }

  /** Runs the endpoint on what the thread received, then lets it receive again (its held DATAGRAMs are handled). */
  private threadInput(t: TunThread): void {
    const held = t.stats()[TunThreadStat.RX_HELD]!; // before the queue is looked at: see TunThread.resume
    try {
      this.drainThread(t);
      this.countThreadSends(t);
      this.endpoint.threadInput(this.takeTouched(t), t.hasEndpointPending() ? (feed) => t.drainEndpoint(feed, false) : null);
      this.tunWriter.flush();
    } finally {
      // Released once what the endpoint took from the ring is in the TUN: a connection attached meanwhile waits for it.
      t.releaseEndpoint();
      t.resume(held);
    }
  }

  private drainThread(t: TunThread): number {
    const n = t.drain(this.onThreadPacket, this.io.clock.now());
    if (n > 0) this.countThreadSends(t);
    return n;
  }

  /**
   * Just before the endpoint sends: what the kernel answered inside a TUN
   * write joins that send, on whichever attached connection it answers
   * (each marked, so the endpoint sends it now).
   */
  private pollThread(t: TunThread): void {
    const polled = this.threadPolled;
    try {
      t.poll(polled);
    } catch (e) {
      this.fail(e as Error);
      return;
    }
    for (let i = 1; i <= polled[0]!; i++) this.threadSlotConn(polled[i]!)?.flush();
    this.drainThread(t);
    this.tunWriter.flush();
  }

  /** Carries what the thread did into the sessions', the connections' and the endpoint's counters. */
  private countThreadSends(t: TunThread): void {
    const c = this.threadCounts;
    for (const slot of this.threadDirty) {
      const gs = this.threadSlots[slot];
      const i = 4 * slot;
      if (gs !== null && gs !== undefined) {
        const conn = this.threadSlotConn(slot);
        if (c[i]! > 0) {
          gs.ip?.countSent(c[i]!, c[i + 1]!);
          conn?.noteDgramsSent(c[i]!);
        }
        if (c[i + 2]! > 0) {
          gs.ip?.countReceived(c[i + 2]!, c[i + 3]!);
          conn?.noteDgramsRecv(c[i + 2]!);
        }
      }
      c[i] = c[i + 1] = c[i + 2] = c[i + 3] = 0;
    }
    this.threadDirty.length = 0;
    const r = carryThreadCounters(t.stats(), this.threadStatsSeen, this.endpoint.counters);
    if (r.gsoRefused > 0 && !this.threadGsoRefusedLogged) {
      this.threadGsoRefusedLogged = true;
      this.io.log.warn({ socket: 'tun-thread' }, GSO_REFUSED_LOG);
    }
    if (r.tunDropped > 0) this.telemetry.metrics.drop(this.tunDropId, r.tunDropped);
  }

  /**
   * How long the thread lets the network answer on a flow after the
   * agent's last packet on it: never longer than the inbound table keeps a
   * flow in any state (an RST's closing time included, for RSTs the thread
   * does not see), so the thread passes a subset of what the filter passes.
   * A second less: the table runs on the wall clock (re-anchored when it
   * steps), the thread on the monotonic one.
   */
  private threadFlowTtlMs(): number {
    return Math.max(0, this.inbound.track.shortestTimeoutMs - THREAD_FLOW_MARGIN_MS);
  }

  /**
   * Attaches the thread to the session of each HTTP/3 connection it should
   * carry (the connection's first open CONNECT-IP session), with a check
   * compiled from the session as it is now, and detaches the rest. `recompile`:
   * every attached session's check again (the policy, the host's addresses
   * changed). For one connection's change, {@link refreshThreadConn}.
   */
  private refreshThread(recompile = false): void {
    if (this.tunThread === null) return;
    for (const gc of [...this.threadOfConn.keys()]) if (!this.reg.conns.has(gc)) this.refreshThreadConn(gc, false);
    for (const gc of this.reg.conns) this.refreshThreadConn(gc, recompile);
  }

  /**
   * {@link refreshThread} for one connection: called after every change the
   * session's check reads (addresses, routes, IPv6; `recompile`) and every
   * session of it that opens or closes, and when the connection opens or closes.
   */
  private refreshThreadConn(gc: GwConn, recompile = false): void {
    const t = this.tunThread;
    if (t === null) return;
    const want = this.stopping || !this.reg.conns.has(gc) ? null : this.threadCandidate(gc);
    const have = this.threadOfConn.get(gc) ?? null;
    if (have !== null && have !== want) this.detachSession(t, have);
    if (want === null || (want === have && !recompile)) return;
    // The endpoint may still hold datagrams it read (a GRO batch past its receive budget): a thread that starts
    // receiving now would write newer ones into the TUN before them. The endpoint stops reading; the attach waits a turn.
    if (!t.receiving && this.endpoint.holdsInput) {
      this.endpoint.pauseInput();
      if (!this.threadAttachDeferred) {
        this.threadAttachDeferred = true;
        setImmediate(() => {
          this.threadAttachDeferred = false;
          this.refreshThread();
          if (!t.receiving && !this.threadAttachDeferred) this.endpoint.resumeInput();
        });
      }
      return;
    }
    let slot = this.threadSlotOf.get(want);
    if (slot === undefined) {
      slot = this.threadFreeSlots.pop() ?? (this.threadSlots.length < TUN_THREAD_SLOTS ? this.threadSlots.length : undefined);
      if (slot === undefined) {
        // Every slot taken: this connection stays on the event loop's path (it works, at its cost).
        if (!this.threadFullLogged) this.io.log.warn({ slots: TUN_THREAD_SLOTS }, 'TUN thread full: further agent connections run on the event loop');
        this.threadFullLogged = true;
        return;
      }
    }
    const ip = want.ip!;
    const conn = want.gc.conn as QuicConnection;
    try {
      // Sent from the address the agent's datagrams arrive at, as the endpoint answers (a gateway with several addresses).
      t.attach(conn.q.nativeHandle(), ip.datagramPrefix(), ip.ipv6Enabled, loadNative().judgeTable(ip.receiveTable(want.policy)), 0, this.threadFlowTtlMs(), slot, conn.recvLocal());
    } catch (e) {
      if (have !== want) this.threadFreeSlots.push(slot); // not taken after all
      throw e;
    }
    this.endpoint.pauseInput();
    if (have !== want) {
      this.threadSlots[slot] = want;
      this.threadSlotOf.set(want, slot);
      this.threadOfConn.set(gc, want);
      this.io.log.info({ session: want.id, identity: want.identity, slot }, 'TUN thread attached');
    }
  }

  /** The connection's first open CONNECT-IP session, over HTTP/3, or null. */
  private threadCandidate(gc: GwConn): GwSession | null {
    if (gc.transport !== 'h3' || gc.conn.isClosed) return null;
    for (const gs of gc.sessions) if (gs.ip !== null && !gs.ip.isClosed) return gs;
    return null;
  }

  /** The thread stops carrying `gs`; what it read before is credited to it on the next turn, then its slot is free. */
  private detachSession(t: TunThread, gs: GwSession): void {
    const slot = this.threadSlotOf.get(gs);
    if (slot === undefined) return;
    t.detach(slot);
    this.slotDetached(t, gs, slot);
  }

  /** Every session at once (one call into the thread). */
  private detachAll(t: TunThread): void {
    if (this.threadSlotOf.size === 0) return;
    t.detach();
    for (const [gs, slot] of [...this.threadSlotOf]) this.slotDetached(t, gs, slot);
  }

  /** The bookkeeping of a detach: the slot waits for the drain of what the thread published before it. */
  private slotDetached(t: TunThread, gs: GwSession, slot: number): void {
    this.threadSlotOf.delete(gs);
    if (this.threadOfConn.get(gs.gc) === gs) this.threadOfConn.delete(gs.gc);
    this.threadDetached.push(slot);
    // The endpoint reads the socket again once the thread no longer does. What the thread received and left
    // (held DATAGRAMs, datagrams for the endpoint, packets it wrote or sent) is handled on the next turn: detach
    // may run inside the endpoint's events, which hold the engine lock, and the thread takes its producer lock
    // before that one (reload, outside them, handles it at once: finishDetach).
    if (!t.receiving) this.endpoint.resumeInput();
    if (!this.threadDrainScheduled) {
      this.threadDrainScheduled = true;
      setImmediate(() => this.finishDetach(t));
    }
  }

  /** The rest of the detaches: what the thread read before them is handled, then their slots are free. */
  private finishDetach(t: TunThread): void {
    this.threadDrainScheduled = false;
    const slots = this.threadDetached;
    if (slots.length === 0) return;
    // Freed only after a complete drain: an entry left in the ring would be credited to the slot's next session.
    if (this.tunThread === t) this.threadInput(t);
    this.threadDetached = [];
    for (const s of slots) {
      this.threadSlots[s] = null;
      this.threadFreeSlots.push(s);
    }
  }

  /** Detaches every session and handles at once what the thread read before (outside the engine's events only). */
  private detachAllNow(): void {
    const t = this.tunThread;
    if (t === null) return;
    this.detachAll(t);
    this.finishDetach(t);
  }

  private closeThread(): void {
    const t = this.tunThread;
    if (t === null) return;
    // Detached, what the thread read before is credited to the slots' sessions (kept until drained).
    this.detachAll(t);
    this.tunThread = null;
    try {
      t.close(this.onThreadPacket, this.io.clock.now());
      this.countThreadSends(t);
    } finally {
      this.threadDetached = [];
    }
    if (t.hasEndpointPending()) this.endpoint.threadInput([], (feed) => t.drainEndpoint(feed));
  }

  // ---------------------------------------------------------------- control path

  private onConnection(conn: QuicConnection): void {
    const gc: GwConn = {
      transport: 'h3',
      conn,
      http: null as unknown as GwConn['http'],
      certIdentity: certIdentity(conn.peerIdentity),
      remote: formatPeer(conn.peerHost, conn.peerPort),
      sessions: new Set(),
      rxAtTick: -1,
      trimmedAtRx: -1,
    };
    (gc as { http: GwConn['http'] }).http = attachH3(
      conn,
      {
        onConnect: (req) => this.onConnect(gc, req),
        onRequest: healthzHandler,
        onClosed: (code, reason) => this.io.log.info({ remote: gc.remote, identity: gc.certIdentity, code, reason }, 'agent connection closed'),
      },
      (ev) => {
        if (ev === 'closed') this.onConnectionClosed(gc);
      },
    );
    this.reg.conns.add(gc);
    this.io.log.info({ remote: gc.remote, identity: gc.certIdentity }, 'agent connected');
  }

  private onConnectionClosed(gc: GwConn): void {
    this.reg.conns.delete(gc);
    if (gc.conn.handlerError !== null) this.io.log.error({ remote: gc.remote, err: gc.conn.handlerError.stack }, 'connection closed after a handler error');
    for (const s of [...gc.sessions]) this.sessionClosed(s);
    this.refreshThreadConn(gc);
    if (this.reg.conns.size === 0) this.onDrained?.();
  }

  /**
   * The HTTP/3 CONNECT-IP sessions an HTTP/2 CONNECT-IP request with
   * `mtun-supersedes: h3` replaces ({@link SUPERSEDES_HEADER}): those of the
   * same certificate identity from the same address. Empty for any other
   * request.
   */
  private staleH3Sessions(gc: GwConn, req: ConnectRequest): GwSession[] {
    if (gc.transport !== 'h2' || gc.certIdentity === null || req.protocol !== 'connect-ip' || req.header(SUPERSEDES_HEADER) !== 'h3') return [];
    const old: GwSession[] = [];
    for (const gs of this.reg.sessions()) {
      if (gs.kind === 'connect-ip' && gs.gc.transport === 'h3' && gs.gc.certIdentity === gc.certIdentity && plainHost(gs.gc.conn.peerHost) === gc.conn.peerHost) old.push(gs);
    }
    return old;
  }

  /**
   * Carries out {@link admitConnect}'s verdict on one Extended CONNECT
   * request. The sessions an HTTP/2 fallback supersedes do not count
   * against the limits; they close only when the new session is about to
   * start (a refused or invalid request closes nothing).
   */
  private onConnect(gc: GwConn, req: ConnectRequest): void {
    // One fallback request at a time per identity and address gets the discount: more of them, each discounting
    // the same sessions, would hold slots past the limits while those sessions stay open.
    let stale = this.staleH3Sessions(gc, req);
    const staleKey = stale.length > 0 ? `${gc.certIdentity ?? ''}|${gc.conn.peerHost}` : null;
    if (staleKey !== null && this.supersedesPending.has(staleKey)) stale = [];
    const a = admitConnect({
      certIdentity: gc.certIdentity,
      authorization: req.header('authorization'),
      protocol: req.protocol,
      tokens: this.tokens,
      policy: this.policy,
      sessions: this.reg.count - stale.length,
      sessionsOf: (id) => this.reg.countOf(id) - (id === gc.certIdentity ? stale.length : 0),
      maxSessions: this.config.maxSessions,
      maxSessionsPerIdentity: this.config.maxSessionsPerIdentity,
    });
    if (!a.ok) {
      req.reject(a.status, a.headers);
      this.io.log.warn({ remote: gc.remote, identity: a.identity, protocol: req.protocol, status: a.status, reason: a.reason }, `request refused: ${a.rule}`);
      return;
    }
    // The slot is held from now until the open ends, so a burst of opens counts against the limits (#12 item 6;
    // CONNECT-IP too: a host-name scope resolves first, and even an IP literal's open spans an await).
    const release = this.reg.reserve(a.identity);
    if (a.protocol === 'connect-ip') {
      const pending = stale.length > 0 ? staleKey : null;
      if (pending !== null) this.supersedesPending.add(pending);
      this.acceptIp(gc, req, a.identity, a.token, a.policy, stale).catch((e: Error) => {
        this.io.log.error({ remote: gc.remote, identity: a.identity, err: e.stack }, 'CONNECT-IP setup failed');
        if (!req.settled) req.reject(500, [['proxy-status', refuse(500, 'proxy_internal_error', 'setup failed').proxyStatus]]);
      }).finally(() => {
        if (pending !== null) this.supersedesPending.delete(pending);
        release();
      });
      return;
    }
    this.acceptUdp(gc, req, a.identity, a.token).catch((e: Error) => {
      this.io.log.error({ remote: gc.remote, identity: a.identity, err: e.stack }, 'CONNECT-UDP setup failed');
      if (!req.settled) req.reject(500, [['proxy-status', refuse(500, 'proxy_internal_error', 'setup failed').proxyStatus]]);
    }).finally(release);
  }

  /**
   * Prefixes no agent may advertise (#12 item 9): this host's connected
   * subnets, every agent's underlay address, and the address pools (an agent
   * claiming pool space would take addresses the gateway leases to others;
   * the TUN carries no address, so the connected subnets do not cover them).
   */
  private forbiddenClientPrefixes(): IpPrefix[] {
    const out = [...localSubnets(), ...replicaPools(this.config.pools).prefixes];
    for (const c of this.reg.conns) {
      const ip = parseIp(c.conn.peerHost);
      if (ip) out.push({ version: ip.version, address: ip.address, prefixLength: ip.version === 4 ? 32 : 128 });
    }
    return out;
  }

  /**
   * Would the agent's site prefix `p` take part of the gateway's own
   * networks (its `advertise` list)? Installed, it would win the route
   * lookup for that space over the network behind the gateway: other
   * agents' packets to it, and the gateway network's own, would go to this
   * agent. Allowed only where the operator carved `p` out: an advertise
   * entry of the identity's policy that covers `p` lies inside that network
   * (a hub advertising 10.0.0.0/8 with its sites inside). An entry broader
   * than the network (an identity allowed all of 10/8) carves nothing out.
   */
  private takesGatewayNetwork(policy: IdentityPolicy, p: IpPrefix): boolean {
    for (const g of this.config.advertise) {
      if (!prefixesOverlap(g, p)) continue;
      if (!policy.advertisablePrefixes().some((a) => prefixCovers(a, p) && prefixCovers(g, a))) return true;
    }
    return false;
  }

  private async acceptIp(gc: GwConn, req: ConnectRequest, identity: string, token: string | null, policy: IdentityPolicy, stale: readonly GwSession[]): Promise<void> {
    const reloads = this.reloads;
    let gs: GwSession | null = null;
    const log = this.io.log;
    // A host-name scope is resolved with the same deadline as CONNECT-UDP's targets (connectUdp.resolveTimeoutMs).
    const result = await acceptConnectIp(req, { resolve: resolverWithTimeout(this.config.connectUdp.resolveTimeoutMs), ownAddresses: this.followOwnAddresses() }, () => {
      // The request is valid and its scope resolved: the sessions it supersedes close now, before the new one
      // claims their leases and routes (a remote-access agent asks for the address it had).
      const open = stale.filter((g) => this.reg.byIp.has(g.ip!));
      if (open.length > 0) this.supersedeSessions(open, 'h2-fallback');
      return {
        onPacket: (buf, off, len, info) => {
          const now = this.io.clock.now(); // one read per packet, shared by the connection table and the flow tracker
          // Return traffic of what the agent sends is admitted inbound. The owner is the identity, not
          // this session: a flow survives the session being replaced (restart, HTTP/2 fallback, takeover).
          if (gs !== null) this.inbound.track.seed(buf, info, identity, now);
          this.onClientPacket(buf, off, len, info, now);
        },
        onEvent: (e) => {
          if (gs === null) return;
          if (e.type === 'routes' || e.type === 'addresses-granted') void this.syncKernelRoutes(gs);
          else if (e.type === 'route-conflict') log.warn({ session: gs.id, identity, prefix: e.prefix }, 'advertised route already owned by another session');
          else if (e.type === 'ipv6-disabled') log.warn({ session: gs.id, maxPacketSize: e.maxPacketSize }, 'IPv6 disabled: path cannot carry 1280-byte packets (RFC 9484 §7.2)');
          else if (e.type === 'closed') this.sessionClosed(gs);
          // The thread's check is compiled from what the session's check reads: a new one after every change of it.
          if ((e.type === 'routes' || e.type === 'addresses-granted' || e.type === 'ipv6-disabled') && this.threadSlotOf.has(gs)) this.refreshThreadConn(gs.gc, true);
        },
        pools: this.pools,
        routes: this.advertisedRoutes(policy),
        routeTable: this.routes,
        acceptClientRoute: (p) => gs !== null && gs.policy.mayAdvertise(p) && !this.takesGatewayNetwork(gs.policy, p),
        resolveRouteConflict: (p, owners) => this.supersede(identity, p, owners),
        leaseOwner: identity,
        advertisablePrefixes: () => gs?.policy.advertisablePrefixes() ?? [],
        forbiddenPrefixes: () => this.forbiddenClientPrefixes(),
        // Answers on flows an inbound rule admitted (e.g. a SYN-ACK to an ephemeral port) pass too (#12 item 8).
        policy: (buf, info) => gs !== null && (gs.policy.allowsPacket(buf, info) || this.inbound.track.isAnswerFromAgent(buf, info, identity, this.io.clock.now())),
        ...this.config.masque,
        nowMs: () => this.io.clock.now(),
      };
    });
    if (!(result instanceof ConnectIpGatewaySession)) {
      log.warn({ remote: gc.remote, identity, status: result.status, reason: result.reason }, 'CONNECT-IP refused');
      return;
    }
    if (result.isClosed) return; // the stream went away before the 2xx
    gs = this.addSession(gc, 'connect-ip', identity, token, policy, result, null, null, null);
    // The open may have awaited a host-name resolution while the host's addresses changed: the tick that saw it
    // did not know this session yet.
    result.setOwnAddresses(this.followOwnAddresses());
    if (!this.reviewOpened(gs, reloads)) return;
    // Capsules that arrived with the request were handled before gs existed: sync routes now.
    void this.syncKernelRoutes(gs);
    this.refreshThreadConn(gc);
  }

  /**
   * An advertised prefix of `identity` overlaps `owners`' routes: closes them
   * and returns true when {@link routeConflictVerdict} says the new session
   * supersedes them (all of the same identity), else false.
   */
  private supersede(identity: string, prefix: IpPrefix, owners: readonly ConnectIpGatewaySession[]): boolean {
    const old: GwSession[] = [];
    for (const o of owners) {
      const g = this.reg.byIp.get(o);
      if (g === undefined) return false;
      old.push(g);
    }
    if (routeConflictVerdict(identity, old.map((g) => g.identity)) !== 'supersede') return false;
    this.supersedeSessions(old, 'route-takeover', { prefix: formatPrefix(prefix) });
    return true;
  }

  /**
   * The one way a CONNECT-IP session is superseded (closed because a new
   * session of the same identity replaces it): counted in
   * `mtun_gateway_sessions_superseded_total`, logged once per session with
   * its `cause`, then closed (its routes and leases are released at once).
   */
  private supersedeSessions(old: readonly GwSession[], cause: SupersedeCause, detail: Record<string, unknown> = {}): void {
    for (const g of old) {
      this.reg.superseded++;
      this.io.log.warn({ session: g.id, identity: g.identity, remote: g.gc.remote, transport: g.gc.transport, cause, ...detail }, 'session superseded');
      g.ip?.close();
    }
  }

  private async acceptUdp(gc: GwConn, req: ConnectRequest, identity: string, token: string | null): Promise<void> {
    const reloads = this.reloads;
    const cu = this.config.connectUdp;
    const log = this.io.log;
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
      log.warn({ remote: gc.remote, identity, target: `${pre.target.host}:${pre.target.port}` }, 'CONNECT-UDP refused: target not allowed');
      return;
    }
    let gs: GwSession | null = null;
    let chosen: Uint8Array | null = null;
    // The whole open (resolve + connect) has a deadline: past it the request gets 504 and the slot is released.
    let timedOut = false;
    let phase: OpenPhase = 'connecting';
    const deadline = this.io.clock.after(cu.openTimeoutMs, () => {
      timedOut = true;
      if (!req.settled) {
        const r = openTimeoutRefusal(phase, cu.openTimeoutMs);
        req.reject(r.status, [['proxy-status', r.proxyStatus]]);
      }
    });
    const resolver = resolverWithTimeout(cu.resolveTimeoutMs);
    let result: Awaited<ReturnType<typeof acceptConnectUdp>>;
    const ownAtOpen = this.followOwnAddresses();
    try {
      result = await acceptConnectUdp(req, {}, {
        allow: udpAllowance(this.config),
        ownAddresses: ownAtOpen,
        idleTimeoutMs: cu.idleTimeoutMs,
        sweeper: defaultIdleSweeper(),
        resolve: (host) => {
          phase = 'resolving';
          return resolver(host).finally(() => (phase = 'connecting'));
        },
        // Re-read the policy here: a SIGHUP during resolution applies. The first address allowed is the one opened.
        vetAddress: (_v, address, port) => {
          const p = this.policy.forIdentity(identity);
          if (p.pattern === null) return `no policy for ${identity}`;
          if (!p.allows(IPPROTO.UDP, address, 0, address.length, port)) return `the policy of ${identity} does not allow UDP there`;
          chosen ??= Uint8Array.from(address);
          return null;
        },
        onEvent: (e) => {
          if (e.type === 'closed' && gs !== null) this.sessionClosed(gs);
        },
      });
    } finally {
      deadline.cancel();
    }
    if (!(result instanceof ConnectUdpGatewaySession)) {
      log.warn({ remote: gc.remote, identity, status: result.status, reason: result.reason }, 'CONNECT-UDP refused');
      return;
    }
    if (timedOut || result.isClosed || gc.conn.isClosed) {
      if (!result.isClosed) result.close();
      log.info({ remote: gc.remote, identity, timedOut }, 'CONNECT-UDP stream ended while its target was being opened');
      return;
    }
    const target = pre.ok ? { host: pre.target.host, port: pre.target.port } : null;
    // The open sessions are brought up to the host's addresses first; this one is judged apart below, once.
    this.followOwnAddresses();
    gs = this.addSession(gc, 'connect-udp', identity, token, this.policy.forIdentity(identity), null, result, target, chosen);
    if (!this.reviewOpened(gs, reloads)) return;
    // The host's addresses changed while the target was resolved and connected (the tick that saw it did not know
    // this session yet): its target is judged against the current list.
    if (this.ownSeen !== ownAtOpen && !this.review(gs, "closing session: the host's addresses changed while it opened")) this.endpoint.flush();
  }

  /**
   * A session whose open spanned a reload (a host-name scope or target was
   * being resolved) was admitted under what the reload replaced: it is
   * reviewed as reload reviews the open ones ({@link reviewSession}), kept
   * with the new policy or closed. Returns false when it was closed.
   */
  private reviewOpened(gs: GwSession, reloadsAtAdmission: number): boolean {
    if (reloadsAtAdmission === this.reloads) return true;
    const kept = this.review(gs, 'closing session opened across a reload');
    if (!kept) this.endpoint.flush();
    return kept;
  }

  /**
   * Judges `gs` against the current policy, tokens and config
   * ({@link reviewSession}): closes it (logged with `closeMsg` and the
   * reason) and returns false, or gives it the new policy and returns true.
   */
  private review(gs: GwSession, closeMsg: string): boolean {
    const v = reviewSession(gs, this.policy, this.tokens, this.config, this.ownSeen);
    if (!v.keep) {
      this.closeSession(gs, closeMsg, v.reason);
      return false;
    }
    gs.policy = v.policy;
    gs.ip?.setRoutes(this.advertisedRoutes(gs.policy));
    // Site prefixes are re-checked against the new policy: newly allowed ones are
    // installed, ones no longer allowed removed (their packets then fail the source check).
    gs.ip?.reevaluateClientRoutes();
    return true;
  }

  /** Closes `gs`, logged with `msg` and `reason`. */
  private closeSession(gs: GwSession, msg: string, reason: string): void {
    this.io.log.warn({ session: gs.id, identity: gs.identity, kind: gs.kind, reason }, msg);
    gs.ip?.close();
    gs.udp?.close();
  }

  private addSession(
    gc: GwConn,
    kind: 'connect-ip' | 'connect-udp',
    identity: string,
    token: string | null,
    policy: IdentityPolicy,
    ip: ConnectIpGatewaySession | null,
    udp: ConnectUdpGatewaySession | null,
    udpTarget: { host: string; port: number } | null,
    udpAddress: Uint8Array | null,
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
      udpTarget,
      udpAddress,
      sync: new TunnelCounterSync(m, m.identityId(identity), kind === 'connect-ip' ? CONNECT_IP_DROP_NAMES : CONNECT_UDP_DROP_NAMES, rttProbe(gc.conn)),
      since: new Date(this.io.clock.now()),
    };
    this.reg.add(gs);
    if (ip) this.inbound.track.ownerBack(identity);
    this.io.log.info({ session: gs.id, kind, identity, remote: gc.remote, transport: gc.transport }, 'session opened');
    return gs;
  }

  private sessionClosed(gs: GwSession): void {
    if (!this.reg.remove(gs)) return;
    if (this.threadSlotOf.has(gs)) this.refreshThreadConn(gs.gc);
    this.syncSession(gs);
    gs.sync.close();
    if (gs.ip) {
      if (this.routes.prefixes(gs.ip).length > 0) this.retryRouteConflicts();
      this.routes.removeAll(gs.ip);
      // Its flows wait a grace period for a new session of the identity (ConnTrack.ownerLeft).
      if (!this.reg.hasIpSession(gs.identity)) this.inbound.track.ownerLeft(gs.identity, this.io.clock.now());
      // While stopping, closing the TUN removes every route through it at once.
      if (!this.stopping) void this.kernelRoutes.set(gs, []);
    }
    this.io.log.info({ session: gs.id, kind: gs.kind, identity: gs.identity }, 'session closed');
  }

  /**
   * Routes left the table: sessions whose last advertisement was refused in
   * part as `route-conflict` apply it again (after the current event, and
   * within their advertisement rate), so prefixes whose owner went away are
   * not left unrouted until the agent happens to advertise again.
   */
  private retryRouteConflicts(): void {
    queueMicrotask(() => {
      for (const s of this.reg.sessions()) if (s.ip !== null && s.ip.routeConflicts > 0) s.ip.reevaluateClientRoutes();
    });
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
    return this.kernelRoutes.set(gs, want);
  }

  /** Routes advertised to an identity: the gateway's prefixes, else what its policy lets it reach. */
  private advertisedRoutes(policy: IdentityPolicy): IpPrefix[] {
    const src = this.config.advertise.length > 0 ? this.config.advertise : policy.reachablePrefixes();
    return [...src];
  }

  private identityOfFlow(r: FlowRecord): string {
    for (const a of [r.src, r.dst]) {
      const bytes = parseIp(a)?.address;
      if (bytes === undefined) continue;
      const s = bytes.length === 4 ? this.routes.lookup4(bytes, 0) : this.routes.lookup6(bytes, 0);
      if (s !== undefined) return this.reg.byIp.get(s)?.identity ?? 'unknown';
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

  /** The one tick: flow timeouts and live flow counters, then tunnel counters. */
  private onTick(): void {
    const now = this.io.clock.now();
    this.flows.tick(now);
    this.inbound.track.onTimeout(now);
    // A connection lives no longer than its client certificate (#12 item 5).
    for (const x of this.endpoint.closeExpiredPeers(now)) this.io.log.warn({ remote: formatPeer(x.conn.peerHost, x.conn.peerPort), identity: certIdentity(x.conn.peerIdentity), reason: x.reason }, 'closing agent connection: certificate expired');
    this.h2?.closeExpired();
    if (now - this.ticketKeyRotatedAt >= TICKET_KEY_ROTATION_MS) this.rotateTicketKey(now);
    this.followOwnAddresses(true);
    // One pass over every session (10,000 idle ones cost a core's 10 % in sweeps alone, issue #17): its counters
    // into the metrics, then its sans-IO timers (deferred ROUTE_ADVERTISEMENTs, §7.2 probes) on the injected clock.
    for (const gs of this.reg.sessions()) {
      this.syncSession(gs);
      const ip = gs.ip;
      if (ip === null) continue;
      const due = ip.nextTimeoutMs();
      if (due >= 0 && due <= now) ip.onTimeout(now);
    }
    // The gateway sends no keep-alives, where an agent frees a connection's empty DATAGRAM queues: here instead.
    this.reg.trimIdleConnections();
  }

  /**
   * The host's addresses changed (an address added or removed since the
   * last tick): open CONNECT-IP sessions refuse the new list as
   * destinations, and CONNECT-UDP sessions whose target became one of them
   * close. Returns the list, for a session opening now. Sessions read it
   * when they opened; before this an address added later was reachable
   * through the tunnel.
   */
  private followOwnAddresses(fresh = false): readonly Uint8Array[] {
    const own = this.hostAddresses(fresh);
    if (own === this.ownSeen) return own;
    this.ownSeen = own;
    for (const gs of [...this.reg.sessions()]) {
      if (gs.ip) gs.ip.setOwnAddresses(own);
      else this.review(gs, 'closing session: the host\'s addresses changed');
    }
    this.refreshThread(true);
    return own;
  }

  /**
   * SIGHUP: re-reads the certificate, key and client CA (for new
   * connections; `requireClientCert` applies to them too), the policy, the
   * tokens and `connectUdp.targets`, and rotates the TLS ticket key. When the
   * client CA changed, connections it no longer admits are closed
   * ({@link QuicEndpoint.updateServerTls}, #12 items 4 and 5). Every open
   * session is reviewed ({@link reviewSession}): kept with its new policy and
   * advertised routes, or closed with the reason logged. Throws, changing
   * nothing, when the new TLS material or a token file does not load.
   */
  reload(config: GatewayConfig): void {
    // Everything that can fail is read and checked first; then all of it is switched at once.
    const tls = {
      certPem: readFileSync(config.tls.cert, 'utf8'),
      keyPem: readFileSync(config.tls.key, 'utf8'),
      clientCaPem: config.tls.requireClientCert && config.tls.ca !== undefined ? readFileSync(config.tls.ca, 'utf8') : undefined,
    };
    const policy = compilePolicy(config.policy);
    const tokens = TokenTable.fromConfig(config);
    const revoked = this.endpoint.updateServerTls(tls, this.io.clock.now());
    for (const x of revoked) this.io.log.warn({ remote: formatPeer(x.conn.peerHost, x.conn.peerPort), identity: certIdentity(x.conn.peerIdentity), reason: x.reason }, 'closing agent connection on reload: client CA changed');
    this.rotateTicketKey(this.io.clock.now());
    const h2Revoked = this.h2?.updateTls(tls) ?? 0;
    // Tracked flows of identities whose policy entry changed are dropped: each must be opened again under the
    // new rules (an agent-opened flow by the agent's next packet, if still allowed; a network-opened one by a
    // new connection an inbound rule admits). Unchanged identities keep theirs.
    const entryOf = (p: typeof this.policy, entries: GatewayConfig['policy'], id: string): string => {
      const pattern = p.forIdentity(id).pattern;
      return pattern === null ? '' : JSON.stringify(entries.find((e) => e.identity === pattern) ?? null);
    };
    // The thread stops carrying the session before the switch (it judges with the old policy and answers on flows
    // forgotten below), and what it wrote under the old policy seeds the connection table now, before the flows of
    // changed identities are forgotten; it attaches again with the new policy once the sessions are reviewed.
    this.detachAllNow();
    const oldPolicy = this.policy;
    const oldEntries = this.config.policy;
    const flowsDropped = this.inbound.track.forgetWhere((owner) =>
      typeof owner === 'string' && entryOf(oldPolicy, oldEntries, owner) !== entryOf(policy, config.policy, owner));
    this.policy = policy;
    this.tokens = tokens;
    this.reloads++;
    this.config = {
      ...this.config,
      tls: config.tls,
      policy: config.policy,
      auth: config.auth,
      advertise: config.advertise,
      maxSessionsPerIdentity: config.maxSessionsPerIdentity,
      connectUdp: config.connectUdp,
      masque: config.masque,
    };
    let closed = 0;
    for (const gs of [...this.reg.sessions()]) if (!this.review(gs, 'closing session on reload')) closed++;
    // A lowered maxSessionsPerIdentity: each identity keeps its oldest sessions, the newest past the limit close.
    const kept = new Map<string, number>();
    for (const gs of [...this.reg.sessions()]) {
      if (gs.ip?.isClosed === true || gs.udp?.isClosed === true) continue;
      const n = (kept.get(gs.identity) ?? 0) + 1;
      kept.set(gs.identity, n);
      if (n <= this.config.maxSessionsPerIdentity) continue;
      this.closeSession(gs, 'closing session on reload', `more than maxSessionsPerIdentity (${this.config.maxSessionsPerIdentity})`);
      closed++;
    }
    // A new policy: the thread's check is compiled again, and it forgets the flows it let answer.
    this.refreshThread(true);
    this.endpoint.flush();
    this.io.log.info({ identities: config.policy.length, closedSessions: closed, revokedConnections: revoked.length + h2Revoked, flowsDropped }, 'certificates, policy and tokens reloaded');
  }

  /** New TLS session ticket key: tickets issued before no longer resume (a full handshake re-checks the client). */
  private rotateTicketKey(now: number): void {
    this.endpoint.rotateTicketKey();
    this.ticketKeyRotatedAt = now;
  }

  /** The /status document. */
  status(): DaemonStatus {
    return gatewayStatus({
      sessions: this.reg.sessions(),
      routesOf: (gs) => this.kernelRoutes.routesOf(gs),
      state: this.stopping ? 'draining' : 'open',
      ready: this.readiness().ready,
      uptimeSeconds: Math.round((this.io.clock.now() - this.startedAt) / 1000),
      addresses: this.poolPrefixes.map((p) => ({ interface: this.tun.name, address: formatPrefix(p) })),
      topFlows: this.telemetry.topFlows(10),
    });
  }

  // ---------------------------------------------------------------- data path

  /** A client packet that passed every check: observe it and queue it for the TUN. */
  private readonly onClientPacket = (buf: Uint8Array, off: number, len: number, info: PacketInfo, now: number): void => {
    // The session's parse travels with the packet (the TTL decrement left its offsets valid): no second parse.
    this.flows.tracker.observeParsed(buf, info, Direction.OUT, now);
    if (this.telemetry.capture.active) this.telemetry.capture.offer(buf, off, len, TapInterface.TUN_OUT, now);
    this.tunWriter.push(buf, off, len);
  };

  private readonly onTunBatch = (bufs: readonly Buffer[], sizes: Uint32Array, n: number): void => {
    const now = this.io.clock.now();
    for (let i = 0; i < n; i++) this.forwardFromNetwork(bufs[i]!, sizes[i]!, now);
    // Every connection written to leaves in one send batch; ICMP errors for our network in one TUN write.
    this.endpoint.flush();
    this.tunWriter.flush();
  };

  /**
   * One packet from the gateway's network (TUN → session): the inbound
   * decision point. Longest-prefix match over assigned addresses and
   * advertised site routes, then the inbound default-deny (#12 item 8:
   * return traffic of flows the agent opened, or what the identity's
   * `inbound` rules allow), then the session's own checks (size, scope).
   * The packet is bufs[i][TUN_HEADROOM, TUN_HEADROOM + len), borrowed for the call.
   */
  private forwardFromNetwork(buf: Buffer, len: number, now: number): void {
    const s = this.routes.lookupDestination(buf, TUN_HEADROOM, len);
    if (s === undefined) {
      // The TUN's own link-scope chatter (IPv6 MLD, router solicitations) is not a routing failure.
      this.telemetry.metrics.drop(isLinkScopeDestination(buf, TUN_HEADROOM, len) ? this.linkLocalId : this.noRouteId);
      return;
    }
    const gs = this.reg.byIp.get(s);
    const verdict = gs === undefined ? InboundDrop.INBOUND_UNSOLICITED : this.inbound.judge(buf, TUN_HEADROOM, len, gs.identity, gs.policy, now);
    if (verdict !== 0) {
      this.telemetry.metrics.drop(this.inboundDropIds[verdict]!);
      return;
    }
    // Only what entered the tunnel is telemetry (too-big, link-local… are counted as drops by the session).
    // The filter's parse travels on (the TTL decrement leaves its offsets valid).
    if (s.sendToClient(buf, TUN_HEADROOM, len) === 0) {
      if (this.inbound.parsed) this.flows.tracker.observeParsed(buf, this.inbound.info, Direction.IN, now);
      else this.flows.tracker.observe(buf, TUN_HEADROOM, len, Direction.IN, now);
      if (this.telemetry.capture.active) this.telemetry.capture.offer(buf, TUN_HEADROOM, len, TapInterface.TUN_IN, now);
    }
    // Packet Too Big for return traffic goes to the gateway's own network (RFC 9484 §7.2.1).
    else if (s.icmpLength > 0) this.tunWriter.push(s.icmpBuffer, MASQUE_HEADROOM, s.icmpLength);
  }

  /**
   * Installs the kernel's limit on QUIC Initials to our port (initial-limit.ts)
   * and its drop counter. Without nft (or its permission) the gateway runs
   * on without it: logged, and the endpoint's own Retry rate still bounds the work.
   */
  async startInitialLimit(): Promise<void> {
    const rate = this.config.quic.kernelInitialLimit;
    const port = this.endpoint.localAddress().port;
    if (rate <= 0) return;
    try {
      await this.io.kernel.applyInitialLimit(port, rate);
    } catch (e) {
      this.io.log.warn({ err: (e as Error).message, port, rate }, 'kernel QUIC Initial limit not installed; running without it');
      return;
    }
    this.initialLimitPort = port;
    const kernel = this.io.kernel;
    const dropped: Counter = new Counter({
      name: 'mtun_quic_initials_dropped_kernel_total',
      help: 'QUIC Initials to the gateway port the kernel dropped over quic.kernelInitialLimit (nftables), before the socket',
      registers: [this.telemetry.registry],
      collect: async () => {
        const n = await kernel.initialLimitDrops(port).catch(() => -1);
        if (n >= 0) {
          dropped.reset();
          dropped.inc(n);
        }
      },
    });
  }

  // ---------------------------------------------------------------- shutdown

  /**
   * Graceful stop (SIGTERM): GOAWAY to every agent, then waits until they
   * have closed their connections (at most {@link GATEWAY_DRAIN_DEADLINE_MS}),
   * closes the rest, writes flow records of open flows, closes the socket and
   * the TUN (the kernel removes its routes).
   */
  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    const log = this.io.log;
    this.endpoint.stopAccepting();
    this.h2?.shutdown();
    log.info({ connections: this.reg.conns.size }, 'gateway draining');
    if (this.reg.conns.size > 0) {
      let deadline: ClockTimer | null = null;
      const drained = new Promise<void>((resolve) => {
        this.onDrained = resolve;
        deadline = this.io.clock.after(GATEWAY_DRAIN_DEADLINE_MS, resolve);
      });
      for (const gc of this.reg.conns) gc.http.shutdown();
      this.endpoint.flush();
      await drained;
      (deadline as ClockTimer | null)?.cancel();
    }
    this.tick.cancel();
    this.kernelRoutes.close();
    this.onTick();
    this.closeThread();
    this.flows.close(this.io.clock.now());
    // Sends CONNECTION_CLOSE to whoever is left, synchronously.
    this.endpoint.close(0, 'gateway shutting down');
    this.io.udp.close();
    await this.h2?.close();
    this.tun.close();
    if (this.initialLimitPort !== null) await this.io.kernel.removeInitialLimit(this.initialLimitPort).catch((e: Error) => log.warn({ err: e.message }, 'kernel QUIC Initial limit not removed'));
    await this.admin?.close();
    await this.telemetry.shutdown();
    log.info({ undrained: this.reg.conns.size }, 'gateway stopped');
  }
}

/** The system resolver with a deadline: past it the lookup fails with ETIMEOUT (→ 502 dns_error). */
function resolverWithTimeout(timeoutMs: number): UdpResolver {
  return (host) => new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(Object.assign(new Error(`resolving ${host} timed out`), { code: 'ETIMEOUT' })), timeoutMs);
    dns.lookup(host, { all: true, verbatim: true }).then(resolve, reject).finally(() => clearTimeout(t));
  });
}

/**
 * The tick samples every session's RTT each second: the allocation-free
 * reading where the connection has one. A QUIC connection's smoothed RTT
 * moves only when an ACK arrives, so a connection that received nothing
 * since the last sample is not asked again (null: the gauge keeps its
 * value). Of 10,000 idle sessions' sweep, this native call was a fifth of
 * the gateway's CPU (issue #17).
 */
function rttProbe(conn: GwConn['conn']): () => number | null {
  if (conn.rttMs !== undefined) {
    if (conn.packetsReceived === undefined) return () => conn.rttMs!();
    let seen = -1;
    return () => {
      const rx = conn.packetsReceived!;
      if (rx === seen) return null;
      seen = rx;
      return conn.rttMs!();
    };
  }
  return () => conn.stats?.().rttMs ?? null;
}

/** The identity policy matches for a certificate-authenticated peer: its SPIFFE ID, else its first URI SAN, else its subject. */
function certIdentity(id: PeerIdentity | null): string | null {
  return id ? (id.spiffeId ?? id.uris[0] ?? id.subject) : null;
}

/** A peer's address for logs and status: an IPv4-mapped IPv6 host is shown as plain IPv4. */
function formatPeer(host: string, port: number): string {
  return formatHostPort(host.startsWith('::ffff:') && host.includes('.') ? host.slice(7) : host, port);
}
