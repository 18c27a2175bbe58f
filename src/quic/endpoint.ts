/**
 * QUIC endpoint over the QUIC engine (engine.ts) and a {@link UdpBatchSocket}: connection-ID
 * demux, Initial checks, version negotiation, Retry, one timer heap, and
 * batched sending (with GSO when the socket has it).
 */
import { createHmac, createPrivateKey, randomBytes, randomFillSync, X509Certificate } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { ADDR_SLOT_BYTES, type UdpBatch, type UdpBatchSocket } from '../net/udp.js';
import { addrSlotEquals, allocUdpBatch, copyAddrSlot, readAddrSlotHost, writeAddrSlot } from '../net/udp-batch.js';
import { slotArena } from '../net/slot-arena.js';
import {
  engine,
  CRYPTO_ERROR_BAD_CERTIFICATE,
  CRYPTO_ERROR_CERTIFICATE_REQUIRED,
  CRYPTO_ERROR_CERTIFICATE_EXPIRED,
  CRYPTO_ERROR_CERTIFICATE_REVOKED,
  DEFAULT_CONGESTION_CONTROL,
  DRAIN_BUDGET,
  DRAIN_CLOSED,
  DRAIN_GSO,
  DRAIN_NEXT,
  DRAIN_PKTS,
  DRAIN_SEG,
  DRAIN_SEGS,
  DRAIN_STATE_LENGTH,
  DRAIN_TIMEOUT,
  DRAIN_WHY,
  DRAIN_WHY_DONE,
  DRAIN_WHY_FULL,
  INFO_CLOSED,
  INFO_DGRAM_MAX,
  INFO_DGRAM_RECV_FULL,
  INFO_DGRAM_RECV_QUEUED,
  INFO_DGRAM_SEND_DELAY_DROPPED,
  INFO_DRAINING,
  INFO_ESTABLISHED,
  INFO_STREAM_READABLE,
  type EngineConfig,
  type EngineConnection,
  type EngineHostPort,
  type EngineOutBatch,
} from './engine.js';
import { QuicConnection, cidKey, cidMatches, type ConnectionOwner, type QuicCloseInfo } from './connection.js';
import { TimerHeap } from './timer-heap.js';
import { TokenBucket } from '../lib/token-bucket.js';
import { RetryTokens, RETRY_TOKEN_MAX_BYTES } from './retry-token.js';
import {
  LongHeaderError,
  LongType,
  QUIC_V1,
  newLongHeaderView,
  parseLongHeader,
  retryScratchBytes,
  writeRetry,
  writeVersionNegotiation,
} from './long-header.js';
import { checkQuicLbConfig, encodeQuicLbCid, type QuicLbConfig } from './quic-lb.js';
import { InitialQueue, InitialQueueRefusal } from './initial-queue.js';
import { peerIdentityFromChain } from './peer-identity.js';
import { parsePemBundle, peerRejection } from './peer-trust.js';
import { DEFAULT_DGRAM_QUEUE_DELAY } from './queue-delay.js';

/**
 * Length of every connection ID we issue (RFC 9000 §17.2 allows up to 20).
 * 16, not 20: 128 random bits are ample for demux, and the demux key
 * (cidKey) and the QUIC-LB layout (quic-lb.ts) are laid out for this length.
 */
export const CID_BYTES = 16;
/** RFC 9000 §14.1: a server discards client Initials in UDP datagrams smaller than this. */
export const MIN_INITIAL_DATAGRAM_BYTES = 1200;
// GSO trains (at most 64 segments, Linux's UDP_MAX_SEGMENTS on older
// kernels, and 65,000 bytes, the IP length limit with headers; started only
// by a full-size packet) are built by the engine's drain: QN_GSO_* in
// src/native/quic-napi.c.
/** Offset of the local address inside an address slot (see ADDR_SLOT_BYTES). */
const LOCAL_ADDR_OFFSET = ADDR_SLOT_BYTES - 16;
/** TLS sessions cached for resumption (one per server name and address). */
const MAX_SESSIONS = 64;
/** Datagrams processed before connection events run mid-batch (below the default DATAGRAM queue of 1024). */
const DISPATCH_EVERY = 256;
/** Connections handled per hold of the engine lock when the endpoint batches engine calls (snapshots, timers). */
const LOCK_SPAN = 64;

/**
 * Inside a batch that holds the engine lock: after every LOCK_SPAN-th of
 * `done` connections it lets go and takes it again, so a native data plane
 * waiting for it waits for one span, not the whole batch.
 */
function spanEngineLock(done: number): void {
  if (done % LOCK_SPAN === 0) {
    engine.unlock();
    engine.lock();
  }
}

/** Default {@link QuicEndpointOptions.dgramQueueDelay}; shared with the config's `tun.queueDelay`. */
export { DEFAULT_DGRAM_QUEUE_DELAY };
/** Queued client Initials older than this are dropped (RFC 9002 §6.2.2: the client's first PTO is about 1 s). */
const HANDSHAKE_QUEUE_MAX_WAIT_MS = 1000;
/** RFC 9000 §20.1 transport error codes we send. */
const NO_ERROR = 0x0;
const INTERNAL_ERROR = 0x1;

/** Server-side options. */
export interface QuicServerOptions {
  /** Server certificate chain (PEM, leaf first). */
  certPem: string;
  /** Server private key (PEM). */
  keyPem: string;
  /** When set, clients must present a certificate issued by this CA (PEM); others are refused. */
  clientCaPem?: string;
  /**
   * Stateless Retry (RFC 9000 §8.1.2): 'on' for every new connection, 'off'
   * never, 'auto' (default) once {@link retryAutoHandshakes} handshakes are
   * in progress or {@link retryAutoNewPerSecond} were started in the last second.
   */
  retry?: 'on' | 'off' | 'auto';
  /** Handshakes in progress at which 'auto' starts sending Retry. Default 64. */
  retryAutoHandshakes?: number;
  /**
   * Handshakes started per second (without a Retry token) at which 'auto'
   * starts sending Retry; default 256. Handshakes in progress alone miss a
   * flood of undecryptable Initials: each opens a connection that fails at
   * once, so few are ever in progress while every one costs an accept.
   */
  retryAutoNewPerSecond?: number;
  /**
   * Handshakes in progress at most (default 256). Further client Initials
   * wait in the handshake queue until one finishes, so a burst of new
   * connections cannot take the CPU from established ones.
   */
  maxHandshakes?: number;
  /** New handshakes started per event-loop turn at most (default 32); the rest wait for the next turn. */
  acceptsPerTurn?: number;
  /** Client Initials waiting for admission at most (default 1024); further ones are dropped and counted. */
  handshakeQueueLen?: number;
  /** Retry token lifetime in ms. Default 10 s. */
  retryTokenLifetimeMs?: number;
  /** Called once per connection when it is established and authenticated. Install `onEvent` here. */
  onConnection: (c: QuicConnection) => void;
  /**
   * Key (≥ 32 bytes) deriving each connection's stateless reset token from
   * its connection ID (RFC 9000 §10.3.2). Keep it across restarts so clients
   * of a crashed instance get reset at once. Default: random per endpoint.
   */
  statelessResetKey?: Uint8Array;
  /**
   * Stateless resets sent per second at most (default 100), smoothed by a
   * token bucket whose burst is a tenth of that (at least one): any one
   * second sees at most 1.1× the rate from 10/s up. 0 sends none. The rest
   * are counted.
   */
  maxStatelessResetsPerSecond?: number;
  /**
   * Retry and Version Negotiation packets sent per second at most (default
   * 2000, a burst of as many allowed; about 10 µs of CPU each). Each answers an unvalidated address,
   * so under a flood of spoofed Initials this caps the work and the
   * reflected traffic; Initials over the rate are dropped and counted
   * (dropStatelessRateLimit), and a real client gets in on a retransmit.
   */
  maxRetriesPerSecond?: number;
  /**
   * TLS session ticket key (48 bytes) shared by all connections. Default:
   * random per endpoint; replace it with {@link QuicEndpoint.rotateTicketKey}.
   * Never derive it from long-lived material (#12 item 5).
   */
  ticketKey?: Uint8Array;
  /**
   * QUIC-LB (draft-ietf-quic-load-balancers, keyless): every connection ID
   * this server issues carries this server ID after the first octet, so a
   * CID-aware load balancer routes by it. Default: fully random CIDs.
   */
  quicLb?: QuicLbConfig;
}

/** A connection {@link QuicEndpoint} closed because of its peer's certificate, and why (for the log). */
export interface PeerClosed {
  readonly conn: QuicConnection;
  readonly reason: string;
}

/** Client-side options. */
export interface QuicClientOptions {
  /** CA (PEM) the server certificate must chain to. Required unless `insecureNoVerify`. */
  caPem?: string;
  /** Skip server certificate verification (tests only). */
  insecureNoVerify?: boolean;
  /** Client certificate and key (PEM) for mTLS. */
  certPem?: string;
  keyPem?: string;
}

/** Endpoint options; `server` and/or `client` select the roles. */
export interface QuicEndpointOptions {
  /** The socket; the caller keeps ownership and closes it after {@link QuicEndpoint.close}. */
  socket: UdpBatchSocket;
  server?: QuicServerOptions;
  client?: QuicClientOptions;
  /** ALPN protocols (default ['h3']). */
  alpn?: string[];
  /** RFC 9000 §10.1 max_idle_timeout in ms (default 30 000). */
  idleTimeoutMs?: number;
  /** Connections at most (default 10 000); further Initials are dropped and counted. */
  maxConnections?: number;
  /** Connections per peer IP at most (server; default 1000). */
  maxConnectionsPerPeerIp?: number;
  /** Peer-initiated bidirectional / unidirectional streams at once (default 100 / 16). */
  maxStreamsBidi?: number;
  maxStreamsUni?: number;
  /** Connection-level receive window in bytes (default 16 MiB). Bounds buffered bytes per peer. */
  maxDataBytes?: number;
  /** Per-stream receive window in bytes (default 1 MiB). */
  maxStreamDataBytes?: number;
  /** DATAGRAM receive / send queue lengths in the engine (default 1024 each). */
  dgramQueueLen?: number;
  /** Max UDP payload we send and accept (default 1350). */
  maxUdpPayloadBytes?: number;
  /** Congestion control: 'bbr2' (default, {@link DEFAULT_CONGESTION_CONTROL}), 'bbr', 'cubic' or 'reno'. */
  congestionControl?: string;
  /** Key log file (NSS format). Default: $SSLKEYLOGFILE, else none. */
  keylogPath?: string | null;
  /** Slots per send/receive batch (default 64). */
  batchSize?: number;
  /** Datagrams read per readable callback before yielding (default 1024). */
  recvBudget?: number;
  /** Packets one connection may emit per flush before others get a turn (default 256). */
  sendBudget?: number;
  /**
   * CoDel (RFC 8289; src/native/codel.c) on each connection's DATAGRAM send
   * queue, where the tunnel's packets wait when the QUIC path is slower than
   * the TUN feeding it: once the queue's delay has stayed above `targetUs`
   * for `intervalUs`, its head is dropped unsent at the control law's rate,
   * so the TCP inside slows down instead of queueing in front of every other
   * flow. Counted in `dgramDropQueueDelay`. Default
   * {@link DEFAULT_DGRAM_QUEUE_DELAY}; null turns it off.
   */
  dgramQueueDelay?: { targetUs: number; intervalUs: number } | null;
  /**
   * Send a PING (ack-eliciting packet) on every established connection this
   * often, so quiet tunnels outlive the idle timeout (RFC 9000 §10.1.2).
   * 0 (default) disables; use less than half of idleTimeoutMs. The agent
   * sets it; the gateway does not (its agents' PINGs and its ACKs keep both
   * ends' idle timers going).
   */
  keepAliveMs?: number;
  /**
   * Called once when the socket stopped using UDP GSO because the path
   * refused it (EIO: an IPsec route, UDP-Lite, a kernel that cannot segment
   * in software): the endpoint sends datagram by datagram from then on.
   */
  onGsoOff?: () => void;
}

/** Endpoint counters: plain numbers, read by telemetry. Every drop has a reason. */
export interface QuicEndpointCounters {
  datagramsIn: number;
  datagramsOut: number;
  /** Kernel sends of GSO super-datagrams (each counted once in datagramsOut per segment). */
  gsoSends: number;
  /** Receives that the kernel coalesced (UDP GRO): one slot with several datagrams (each counted once in datagramsIn). */
  groReceives: number;
  /** RFC 9000 §14.1 client Initials (or §5.2.2 unknown-version packets) in datagrams < 1200 bytes. */
  dropSmallInitial: number;
  dropMalformed: number;
  /** Short-header or non-Initial packets for no known connection. */
  dropUnknownCid: number;
  /** RFC 9000 §10.3 stateless resets sent in answer to unknown short-header packets. */
  statelessResetsSent: number;
  /** Stateless resets not sent: rate limit, or the trigger was too small (§10.3.3). */
  statelessResetsSuppressed: number;
  /** Unattributable short-header datagrams offered to client connections as possible stateless resets. */
  resetCandidates: number;
  dropConnectionLimit: number;
  /** Initials after {@link QuicEndpoint.stopAccepting}. */
  dropNotAccepting: number;
  dropPeerIpLimit: number;
  /** Initial whose Retry token failed (bad MAC, expired, malformed). */
  dropBadToken: number;
  /** The engine refused to create the connection for this Initial. */
  dropAcceptError: number;
  /** Client Initials queued because the per-turn accept budget or maxHandshakes was reached. */
  handshakesDeferred: number;
  /** Client Initials dropped: the handshake queue was full (or the datagram larger than a slot). */
  dropHandshakeQueueFull: number;
  /** Queued client Initials dropped after waiting longer than a second (the client has retransmitted). */
  dropHandshakeQueueStale: number;
  /** The engine rejected the packet (decryption failure, protocol error). */
  dropRecvError: number;
  /** DATAGRAM frames CoDel dropped from connections' send queues (they waited too long; {@link QuicEndpointOptions.dgramQueueDelay}). */
  dgramDropQueueDelay: number;
  /** Datagrams the socket did not take (kept and retried) — counted per stall. */
  sendStalls: number;
  /** Datagrams the kernel refused on send (unreachable, too big …): lost; QUIC's recovery resends their frames. */
  sendRefused: number;
  /** GSO sends the path refused; their datagrams were resent one by one (and GSO turned off after an EIO). */
  gsoRefused: number;
  retriesSent: number;
  versionNegotiationsSent: number;
  /** Initials that would have been answered with Retry or Version Negotiation, over maxRetriesPerSecond. */
  dropStatelessRateLimit: number;
  connectionsAccepted: number;
  connectionsConnected: number;
  connectionsClosed: number;
  /** Server connections that closed before the handshake completed (TLS failure, timeout, refusal). */
  handshakesFailed: number;
  /** mTLS: client without a certificate, or with one we could not parse (checked after the handshake). */
  mtlsRejected: number;
  /** Established mTLS connections closed because a reloaded client CA no longer vouches for them (#12 item 5). */
  peersRevoked: number;
  /** Established mTLS connections closed at their certificate's notAfter. */
  peersExpired: number;
  /** Exceptions thrown by event handlers (the connection is closed with INTERNAL_ERROR). */
  handlerErrors: number;
  /** Keep-alive PINGs sent ({@link QuicEndpointOptions.keepAliveMs}). */
  keepAlivesSent: number;
}

function newCounters(): QuicEndpointCounters {
  return {
    datagramsIn: 0,
    datagramsOut: 0,
    gsoSends: 0,
    groReceives: 0,
    sendRefused: 0,
    gsoRefused: 0,
    dropSmallInitial: 0,
    dropMalformed: 0,
    dropUnknownCid: 0,
    statelessResetsSent: 0,
    statelessResetsSuppressed: 0,
    resetCandidates: 0,
    dropConnectionLimit: 0,
    dropNotAccepting: 0,
    dropPeerIpLimit: 0,
    dropBadToken: 0,
    dropAcceptError: 0,
    handshakesDeferred: 0,
    dropHandshakeQueueFull: 0,
    dropHandshakeQueueStale: 0,
    dropRecvError: 0,
    dgramDropQueueDelay: 0,
    sendStalls: 0,
    retriesSent: 0,
    versionNegotiationsSent: 0,
    dropStatelessRateLimit: 0,
    connectionsAccepted: 0,
    connectionsConnected: 0,
    connectionsClosed: 0,
    handshakesFailed: 0,
    mtlsRejected: 0,
    peersRevoked: 0,
    peersExpired: 0,
    handlerErrors: 0,
    keepAlivesSent: 0,
  };
}

const utf8 = new TextEncoder();

/** Closed by either end and draining (RFC 9000 §10.2): already on its way out, not to be closed or counted again. */
function closing(c: QuicConnection): boolean {
  return c.q.localError() !== null || c.q.isDraining() || c.q.isClosed();
}

/**
 * A QUIC endpoint (server, client or both) on one UDP socket. Single-threaded:
 * all work happens in the socket's readable callback, the one timer, and
 * {@link QuicConnection.flush} calls from the layer above.
 */
/** Hands the endpoint one UDP datagram: buf[off, off + len), from address slot i of addrs. */
export type DatagramFeed = (buf: Buffer, off: number, len: number, addrs: Uint8Array, i: number) => void;

export class QuicEndpoint implements ConnectionOwner {
  /** Counters (live object). */
  readonly counters: QuicEndpointCounters = newCounters();

  private readonly sock: UdpBatchSocket;
  private readonly opts: QuicEndpointOptions;
  /** Server TLS material for new connections (replaceable with {@link updateServerTls}). */
  private serverTls: { certPem: string; keyPem: string; clientCaPem?: string } | null = null;
  private readonly local: { host: string; port: number };
  private readonly isServerEndpoint: boolean;
  private readonly resetKey: Uint8Array;
  private ticketKey: Uint8Array;
  /** Stateless resets (see maxStatelessResetsPerSecond). */
  private readonly resetBucket: TokenBucket;
  /** Retry and Version Negotiation (see maxRetriesPerSecond). */
  private readonly retryBucket: TokenBucket;
  /** Random bytes cut into connection IDs (one randomFillSync per 256 CIDs: a call costs microseconds). */
  private readonly cidRandom = Buffer.allocUnsafe(CID_BYTES * 256);
  private cidRandomOff = CID_BYTES * 256;
  private readonly quicLb: QuicLbConfig | null;
  private readonly clientConfig: EngineConfig | null;
  /** Server config shared by new connections, and the TLS material it was built from. */
  private serverCfg: EngineConfig | null = null;
  private serverCfgTls: object | null = null;
  private readonly keylogPath: string | null;
  private readonly tokens: RetryTokens | null;
  private readonly conns = new Map<number, QuicConnection>();
  private readonly byOdcid = new Map<string, QuicConnection>();
  private readonly perPeerIp = new Map<string, number>();
  private readonly sessions = new Map<string, Uint8Array>();
  private readonly heap = new TimerHeap<QuicConnection>();
  private readonly inb: UdpBatch;
  private readonly out: UdpBatch;
  /** `out` as registered with the engine, and the state a drain shares with it (DRAIN_*). */
  private readonly outBatch: EngineOutBatch;
  private readonly drainState = new Float64Array(DRAIN_STATE_LENGTH);
  /** The connection whose drain last filled drainState's TIMEOUT/CLOSED (afterSend reads them instead of asking again). */
  private drainedConn: QuicConnection | null = null;
  /** GSO trains asked of the engine: the socket's at start, off for good once the path refused one (EIO). */
  private gso: boolean;
  private readonly onGsoOff: (() => void) | undefined;
  private readonly maxPayload: number;
  private readonly recvBudget: number;
  private readonly sendBudget: number;
  private readonly maxConnections: number;
  private readonly maxPerPeerIp: number;
  private readonly retryMode: 'on' | 'off' | 'auto';
  private readonly retryAuto: number;
  private readonly retryAutoRate: number;
  /** Unvalidated handshakes started in the current and the previous one-second window. */
  private newInWindow = 0;
  private newInPrevWindow = 0;
  private newWindowStart = 0;
  private readonly maxHandshakes: number;
  private readonly acceptsPerTurn: number;
  /** New handshakes this turn may still start. */
  private acceptsLeft = 0;
  private readonly initialQueue: InitialQueue | null;
  private admitScheduled = false;
  private readonly keepAliveMs: number;
  private readonly rawOut: Uint8Array;
  /** The long header of the datagram being judged (reused). */
  private readonly hdr = newLongHeaderView();
  /** Retry integrity pseudo-packet (reused). */
  private readonly retryScratch = new Uint8Array(retryScratchBytes(RETRY_TOKEN_MAX_BYTES));
  private touched: QuicConnection[] = [];
  private dirtyList: QuicConnection[] = [];
  private outCount = 0;
  /** Open GSO slot: connection and segment size, or null. */
  private gsoConn: QuicConnection | null = null;
  private gsoSeg = 0;
  private gsoSegs = 0;
  private inBatch = false;
  private blocked = false;
  private handshaking = 0;
  private timer: NodeJS.Timeout | null = null;
  private timerAt = Infinity;
  private continueScheduled = false;
  private closed = false;
  private accepting = true;

  constructor(opts: QuicEndpointOptions) {
    if (opts.server === undefined && opts.client === undefined) {
      throw new Error('quic: endpoint needs server and/or client options');
    }
    this.opts = opts;
    this.serverTls = opts.server ? { certPem: opts.server.certPem, keyPem: opts.server.keyPem, clientCaPem: opts.server.clientCaPem } : null;
    this.sock = opts.socket;
    const la = this.sock.localAddress();
    this.local = { host: la.address, port: la.port };
    this.keylogPath = opts.keylogPath === undefined ? (process.env.SSLKEYLOGFILE ?? null) : opts.keylogPath;
    this.maxPayload = opts.maxUdpPayloadBytes ?? 1350;
    this.recvBudget = opts.recvBudget ?? 1024;
    this.sendBudget = opts.sendBudget ?? 256;
    this.maxConnections = opts.maxConnections ?? 10_000;
    this.maxPerPeerIp = opts.maxConnectionsPerPeerIp ?? 1000;
    this.retryMode = opts.server?.retry ?? 'auto';
    this.retryAuto = opts.server?.retryAutoHandshakes ?? 64;
    this.retryAutoRate = opts.server?.retryAutoNewPerSecond ?? 256;
    this.maxHandshakes = opts.server?.maxHandshakes ?? 256;
    this.acceptsPerTurn = opts.server?.acceptsPerTurn ?? 32;
    if (!(this.maxHandshakes >= 1 && this.acceptsPerTurn >= 1)) throw new RangeError('quic: maxHandshakes and acceptsPerTurn must be ≥ 1');
    this.acceptsLeft = this.acceptsPerTurn;
    this.initialQueue = opts.server
      ? new InitialQueue(opts.server.handshakeQueueLen ?? 1024, Math.max(this.maxPayload, 1500), HANDSHAKE_QUEUE_MAX_WAIT_MS)
      : null;
    this.keepAliveMs = opts.keepAliveMs ?? 0;
    this.onGsoOff = opts.onGsoOff;
    if (!(this.keepAliveMs >= 0)) throw new RangeError(`quic: keepAliveMs ${this.keepAliveMs} must be ≥ 0`);
    this.gso = this.sock.gso;
    const batch = opts.batchSize ?? 64;
    // Receive slots take a GRO super-datagram when the socket coalesces.
    this.inb = allocUdpBatch(batch, this.sock.gro ? 65_535 : Math.max(this.maxPayload, 2048));
    this.out = allocUdpBatch(batch, this.gso ? 65_535 : this.maxPayload);
    const arena = slotArena(this.out.bufs)!;
    this.outBatch = engine.outBatch(arena.buf, arena.stride, this.out.sizes, this.out.segs, this.out.addrs, this.drainState);
    this.rawOut = new Uint8Array(this.maxPayload);
    this.isServerEndpoint = opts.server !== undefined;
    this.resetKey = opts.server?.statelessResetKey ?? randomBytes(32);
    if (this.resetKey.length < 32) throw new RangeError('quic: statelessResetKey must be at least 32 bytes');
    this.ticketKey = opts.server?.ticketKey ?? randomBytes(48);
    if (this.ticketKey.length !== 48) throw new RangeError('quic: ticketKey must be 48 bytes');
    const resetRate = opts.server?.maxStatelessResetsPerSecond ?? 100;
    if (!(resetRate >= 0)) throw new RangeError('quic: maxStatelessResetsPerSecond must be a number >= 0');
    // Rate 0: no reset at all (a bucket of no tokens).
    this.resetBucket = new TokenBucket(resetRate, resetRate > 0 ? Math.max(1, Math.ceil(resetRate / 10)) : 0, performance.now());
    const retryRate = opts.server?.maxRetriesPerSecond ?? 2000;
    if (!(retryRate > 0)) throw new RangeError(`quic: maxRetriesPerSecond must be positive, got ${retryRate}`);
    this.retryBucket = new TokenBucket(retryRate, retryRate, 0);
    this.quicLb = opts.server?.quicLb ?? null;
    if (this.quicLb !== null) checkQuicLbConfig(this.quicLb, CID_BYTES);
    // Fail fast on bad TLS material (see serverConfigFor).
    if (this.isServerEndpoint) this.serverConfigFor(new Uint8Array(CID_BYTES));
    this.clientConfig = opts.client ? this.buildConfig(false) : null;
    this.tokens = opts.server ? new RetryTokens({ lifetimeMs: opts.server.retryTokenLifetimeMs }) : null;
    this.sock.onReadable(this.onReadable);
    this.sock.onWritable(this.onWritable);
  }

  private buildConfig(server: boolean): EngineConfig {
    const o = this.opts;
    let cfg: EngineConfig;
    try {
      if (server) {
        const s = this.serverTls!;
        const ca = s.clientCaPem !== undefined ? utf8.encode(s.clientCaPem) : null;
        cfg = engine.Config.withTls(ca !== null, ca, utf8.encode(s.keyPem), utf8.encode(s.certPem));
      } else {
        const c = o.client!;
        if (c.caPem === undefined && c.insecureNoVerify !== true) {
          throw new Error('client needs caPem (or insecureNoVerify for tests)');
        }
        if ((c.certPem === undefined) !== (c.keyPem === undefined)) throw new Error('client certPem and keyPem go together');
        cfg = engine.Config.withTls(
          c.insecureNoVerify !== true,
          c.caPem !== undefined ? utf8.encode(c.caPem) : null,
          c.keyPem !== undefined ? utf8.encode(c.keyPem) : null,
          c.certPem !== undefined ? utf8.encode(c.certPem) : null,
        );
      }
    } catch (e) {
      throw new Error(`quic: TLS configuration rejected: ${(e as Error).message}`);
    }
    cfg.setApplicationProtos(o.alpn ?? ['h3']);
    cfg.setMaxIdleTimeout(o.idleTimeoutMs ?? 30_000);
    cfg.setMaxRecvUdpPayloadSize(Math.max(this.maxPayload, 1350));
    cfg.setMaxSendUdpPayloadSize(this.maxPayload);
    const maxData = o.maxDataBytes ?? 16 << 20;
    const maxStream = o.maxStreamDataBytes ?? 1 << 20;
    cfg.setInitialMaxData(maxData);
    cfg.setMaxConnectionWindow(maxData);
    cfg.setInitialMaxStreamDataBidiLocal(maxStream);
    cfg.setInitialMaxStreamDataBidiRemote(maxStream);
    cfg.setInitialMaxStreamDataUni(maxStream);
    cfg.setMaxStreamWindow(maxStream);
    cfg.setInitialMaxStreamsBidi(o.maxStreamsBidi ?? 100);
    cfg.setInitialMaxStreamsUni(o.maxStreamsUni ?? 16);
    // RFC 9221: DATAGRAM frames, bounded queues in the engine.
    const ql = o.dgramQueueLen ?? 1024;
    cfg.enableDgram(true, ql, ql);
    const qd = o.dgramQueueDelay === undefined ? DEFAULT_DGRAM_QUEUE_DELAY : o.dgramQueueDelay;
    if (qd !== null) cfg.setDgramQueueDelay(qd.targetUs, qd.intervalUs);
    cfg.setDisableActiveMigration(true);
    cfg.setCcAlgorithmName(o.congestionControl ?? DEFAULT_CONGESTION_CONTROL);
    // No 0-RTT: enableEarlyData is never called (RFC 9001 §9.2), so no CONNECT in early data.
    if (this.keylogPath !== null) cfg.logKeys();
    return cfg;
  }

  /**
   * Replaces the server certificate chain, key and client CA (e.g. on
   * SIGHUP). New connections use them (whether a certificate is required
   * follows the new client CA, #12 item 4). When the client CA changed,
   * established connections are re-judged by it (#12 item 5): one whose
   * certificate chain the new CA does not vouch for, one without a
   * certificate when one is now required, and one with a certificate when
   * none is accepted any more, is closed with a TLS alert as crypto error
   * (RFC 9001 §4.8) and counted in `peersRevoked`; they are returned, with
   * the reason, for the caller to log. Throws `quic: TLS configuration
   * rejected: …` and keeps the old material when the new one does not load.
   */
  updateServerTls(tls: { certPem: string; keyPem: string; clientCaPem?: string }, nowMs: number = Date.now()): PeerClosed[] {
    if (this.serverTls === null) throw new Error('quic: endpoint has no server role');
    // BoringSSL accepts unparsable PEM here and fails only in the handshake: check it ourselves.
    try {
      const cert = new X509Certificate(tls.certPem);
      if (!cert.checkPrivateKey(createPrivateKey(tls.keyPem))) throw new Error('the key does not match the certificate');
      if (tls.clientCaPem !== undefined && parsePemBundle(tls.clientCaPem).length === 0) throw new Error('the client CA holds no certificate');
    } catch (e) {
      throw new Error(`quic: TLS configuration rejected: ${(e as Error).message}`);
    }
    const old = this.serverTls;
    this.serverTls = { ...tls };
    try {
      this.serverConfigFor(new Uint8Array(CID_BYTES));
    } catch (e) {
      this.serverTls = old;
      throw e;
    }
    return old.clientCaPem === tls.clientCaPem ? [] : this.rejudgePeers(tls.clientCaPem ?? null, nowMs);
  }

  /** Closes established server connections the client CA `caPem` (null: no mTLS) no longer admits. */
  private rejudgePeers(caPem: string | null, nowMs: number): PeerClosed[] {
    const anchors = caPem !== null ? parsePemBundle(caPem) : null;
    const out: PeerClosed[] = [];
    for (const c of this.connections()) {
      if (!c.isServer || !c.established || c.gone || closing(c)) continue;
      const reason = peerRejection(c.peerIdentity !== null, c.q.peerCertChain(), anchors, nowMs);
      c.clientCaPem = caPem;
      if (reason === null) continue;
      this.counters.peersRevoked++;
      c.close(false, c.peerIdentity === null ? CRYPTO_ERROR_CERTIFICATE_REQUIRED : CRYPTO_ERROR_CERTIFICATE_REVOKED, `client CA changed: ${reason}`);
      out.push({ conn: c, reason });
    }
    return out;
  }

  /**
   * Closes every established mTLS connection whose peer certificate chain
   * has expired by `nowMs` (ms since the epoch) with certificate_expired
   * (RFC 9001 §4.8), counted in `peersExpired`; returns them. A connection
   * lives no longer than the certificate that authenticated it (#12 item 5).
   * Cheap (one comparison per connection): call it about once a second.
   */
  closeExpiredPeers(nowMs: number): PeerClosed[] {
    // Once a second over every connection: no copy of the table (closing only queues work; the table changes when a flush reaps).
    let due: QuicConnection[] | null = null;
    for (const c of this.conns.values()) {
      const id = c.peerIdentity;
      if (id === null || !c.established || c.gone || id.notAfterMs > nowMs || closing(c)) continue;
      (due ??= []).push(c);
    }
    const out: PeerClosed[] = [];
    if (due === null) return out;
    for (const c of due) {
      const id = c.peerIdentity!;
      this.counters.peersExpired++;
      const reason = `client certificate expired at ${new Date(id.notAfterMs).toISOString()}`;
      c.close(false, CRYPTO_ERROR_CERTIFICATE_EXPIRED, reason);
      out.push({ conn: c, reason });
    }
    return out;
  }

  /**
   * Replaces the TLS session ticket key (48 bytes; default fresh random).
   * New connections issue and accept only tickets under the new key, so
   * sessions from before the rotation no longer resume (a full handshake,
   * which checks the client certificate again).
   */
  rotateTicketKey(key: Uint8Array = randomBytes(48)): void {
    if (key.length !== 48) throw new RangeError('quic: ticketKey must be 48 bytes');
    this.ticketKey = Uint8Array.from(key);
    this.serverCfg = null; // the shared server config holds the old key: rebuild it for the next accept
  }

  /** Local address of the socket. */
  localAddress(): { host: string; port: number } {
    return { host: this.local.host, port: this.local.port };
  }

  /** Open connections (including handshaking and draining ones). */
  get connectionCount(): number {
    return this.conns.size;
  }

  /** Handshakes in progress. */
  get handshakesInProgress(): number {
    return this.handshaking;
  }

  /** All open connections (control path). */
  connections(): QuicConnection[] {
    return [...new Set(this.conns.values())];
  }

  /**
   * Starts a client connection to host:port (IP literal) with SNI
   * `serverName` (default: host) and ALPN from the options. A TLS session
   * from an earlier connection to the same server is resumed (1-RTT only).
   * Await {@link QuicConnection.whenEstablished} before use.
   */
  connect(host: string, port: number, serverName: string = host): QuicConnection {
    if (this.closed) throw new Error('quic: endpoint closed');
    if (this.clientConfig === null) throw new Error('quic: endpoint has no client options');
    if (this.conns.size >= this.maxConnections) throw new Error('quic: connection limit reached');
    const addr = new Uint8Array(ADDR_SLOT_BYTES);
    writeAddrSlot(addr, 0, host, port);
    const scid = this.freshCid();
    const q = engine.Connection.connect(serverName, scid, this.local, { host, port }, this.clientConfig);
    const c = new QuicConnection(this, q, false, scid, this.local, addr, 0);
    c.sessionKey = `${serverName}|${host}|${port}`;
    const s = this.sessions.get(c.sessionKey);
    if (s !== undefined) {
      try {
        q.setSession(s);
      } catch {
        this.sessions.delete(c.sessionKey);
      }
    }
    if (this.keylogPath !== null) q.setKeylog(this.keylogPath);
    this.conns.set(c.scidKey, c);
    this.handshaking++;
    this.counters.connectionsConnected++;
    this.flushConnection(c);
    return c;
  }

  /**
   * Sends what every connection has queued (datagrams, stream data) in as
   * few socket calls as the batch allows. For pump loops that wrote to many
   * connections (a gateway's TUN batch): one call here instead of a
   * {@link QuicConnection.flush} per connection. A no-op inside the
   * endpoint's own event dispatch, which flushes at the end of the batch.
   */
  flush(): void {
    if (!this.inBatch) this.flushDirty();
  }

  /**
   * Graceful shutdown, first step: new connections are refused (their
   * Initials dropped and counted in dropNotAccepting) while existing ones
   * carry on, e.g. while HTTP/3 GOAWAY drains them. Irreversible.
   */
  stopAccepting(): void {
    this.accepting = false;
  }

  /**
   * Closes every connection with NO_ERROR (or the given code), sends the
   * CONNECTION_CLOSE frames, stops the timer and the socket callbacks. The
   * socket stays open (the caller owns it). Connections report `closed`.
   */
  close(errorCode = NO_ERROR, reason = ''): void {
    if (this.closed) return;
    for (const c of this.connections()) {
      try {
        c.q.close(true, errorCode, utf8.encode(reason));
      } catch {
        // already closing
      }
      this.drainConn(c);
    }
    this.sendOut();
    for (const c of this.connections()) {
      this.finish(c, { byPeer: false, app: true, errorCode, reason, idleTimeout: false });
    }
    this.closed = true;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    // Stop readiness: a level-triggered socket would otherwise keep calling a no-op.
    if (this.sock.pauseReadable !== undefined) this.sock.pauseReadable();
    else this.sock.onReadable(noop);
    this.sock.onWritable(noop);
  }

  // ---------------------------------------------------------------- input

  /**
   * Another reader takes the socket (the agent's data-plane thread,
   * `src/daemon/tun-thread.ts`): the endpoint stops reading it until
   * {@link resumeInput}, and learns of that reader's input through
   * {@link threadInput}.
   */
  pauseInput(): void {
    this.inputPaused = true;
    if (!this.closed) this.sock.pauseReadable?.();
  }

  /**
   * Datagrams read from the socket and not handled yet: a wake's budget ran
   * out inside a receive batch, and the rest waits for the next turn.
   * Another reader that takes the socket now ({@link pauseInput}) would
   * handle newer datagrams before these: the agent waits for this to be
   * false before its TUN thread starts receiving.
   */
  get holdsInput(): boolean {
    return this.inNext < this.inCount;
  }

  /** The endpoint reads the socket again. */
  resumeInput(): void {
    this.inputPaused = false;
    if (!this.closed) this.sock.onReadable(this.onReadable);
  }

  /** Another reader has the socket ({@link pauseInput}): slots already read are still handled, the socket is not read. */
  private inputPaused = false;

  /**
   * Input the other reader took (see {@link pauseInput}): the `received`
   * connections got packets the engine has processed (their events run now), and `each` hands over the datagrams that reader left to
   * the endpoint, as they came (another connection ID, another source).
   * Then the owner's hook, sends and timers run as after a batch read here.
   */
  threadInput(received: readonly QuicConnection[], each: ((feed: DatagramFeed) => void) | null): void {
    if (this.closed) return;
    this.acceptsLeft = this.acceptsPerTurn;
    this.inBatch = true;
    try {
      for (const c of received) if (!c.gone) this.touch(c);
      this.fedSinceDispatch = 0;
      each?.(this.feedDatagram);
      this.dispatchTouched();
    } finally {
      this.inBatch = false;
    }
    this.afterBatch();
  }

  /** Datagrams fed by the thread since the last dispatch (dispatched every DISPATCH_EVERY, as a receive batch is). */
  private fedSinceDispatch = 0;
  private readonly feedDatagram: DatagramFeed = (buf, off, len, addrs, i) => {
    this.onDatagram(buf, off, len, addrs, i);
    if (++this.fedSinceDispatch >= DISPATCH_EVERY) {
      this.fedSinceDispatch = 0;
      this.dispatchTouched();
    }
  };

  /**
   * Slots [inNext, inCount) of the receive batch not handled yet: a wake's
   * budget ran out inside the batch (a GRO slot holds up to 64 datagrams, so
   * one recvmmsg can return far more than the budget). They are handled
   * first by the next wake, before the socket is read again.
   */
  private inNext = 0;
  private inCount = 0;
  private inResumeScheduled = false;
  private readonly resumeReading = (): void => {
    this.inResumeScheduled = false;
    this.readWake();
  };

  /**
   * The socket is readable. While left-over slots wait for their turn
   * (resumeReading, later in this loop iteration), that turn is this
   * iteration's wake: one budget of work per turn, not two.
   */
  private readonly onReadable = (): void => {
    if (!this.inResumeScheduled) this.readWake();
  };

  private readWake(): void {
    if (this.closed) return;
    this.acceptsLeft = this.acceptsPerTurn;
    this.inBatch = true;
    const b = this.inb;
    let budget = this.recvBudget;
    const capacity = Math.min(this.sock.batchSize, b.bufs.length);
    let drained = false;
    try {
      while (budget > 0) {
        if (this.inNext >= this.inCount) {
          // A short batch drained the socket: another recvmmsg would only say EAGAIN (one syscall
          // per wake-up saved; under a SYN flood each datagram was its own wake-up). Readiness is
          // level-triggered, so anything that arrived since wakes the loop again.
          if (drained || this.inputPaused) break;
          const n = this.sock.recv(b);
          if (n === 0) break;
          this.inNext = 0;
          this.inCount = n;
          drained = n < capacity;
        }
        // Datagrams, not slots: the budget bounds the work of one wake (at most one slot over it).
        budget -= this.handleSlots(b, budget);
      }
    } finally {
      this.inBatch = false;
      // Slots left over wait for the next turn, not for the socket to be readable again (it may be empty);
      // also when a handler threw.
      if (this.inNext < this.inCount && !this.inResumeScheduled && !this.closed) {
        this.inResumeScheduled = true;
        setImmediate(this.resumeReading);
      }
    }
    this.afterBatch();
  }

  /** Handles slots from inNext until `budget` datagrams are done or the batch is; returns the datagrams handled. */
  private handleSlots(b: UdpBatch, budget: number): number {
    let datagrams = 0;
    let dispatchAt = DISPATCH_EVERY;
    while (this.inNext < this.inCount && datagrams < budget) {
      const i = this.inNext++;
      const size = b.sizes[i];
      const seg = b.segs[i];
      const buf = b.bufs[i];
      // GRO: several datagrams of `seg` bytes (the last may be shorter); otherwise one (an empty one too).
      const step = seg > 0 && seg < size ? seg : size;
      let off = 0;
      if (step < size) {
        this.counters.groReceives++;
        const taken = this.deliverSegments(buf, size, step, b.addrs, i);
        datagrams += taken;
        off = taken * step;
      }
      // What the engine did not take as a train, datagram by datagram (an empty datagram too: off 0, size 0).
      if (off < size || size === 0) {
        do {
          this.onDatagram(buf, off, Math.min(step, size - off), b.addrs, i);
          datagrams++;
          off += step;
        } while (off < size);
      }
      // Let the layer above drain the engine's bounded DATAGRAM queue before
      // a large (GRO) batch overflows it; sending still waits for the batch end.
      if (datagrams >= dispatchAt) {
        this.dispatchTouched();
        dispatchAt = datagrams + DISPATCH_EVERY;
      }
    }
    this.dispatchTouched();
    return datagrams;
  }

  /**
   * A GRO train (one source, `step` bytes each): when it starts with a
   * short-header packet of a connection of ours, the engine takes the
   * train's packets for that connection in one call, as far as they carry
   * its connection ID. Returns how many it took (0: the train goes datagram
   * by datagram through {@link onDatagram}).
   */
  private deliverSegments(buf: Buffer, size: number, step: number, addrs: Uint8Array, i: number): number {
    if (step < 1 + CID_BYTES || (buf[0]! & 0x80) !== 0) return 0;
    const c = this.conns.get(cidKey(buf, 1));
    if (c === undefined || !cidMatches(c.scid, buf, 1)) return 0;
    const refused = this.segRefused;
    let n: number;
    try {
      n = c.q.recvSegments(buf, c.recvInfoFor(addrs, i), 0, size, step, refused);
    } catch {
      return 0; // as deliver: the datagrams go one by one, and what the engine throws on is counted there
    }
    if (n === 0) return 0;
    this.counters.datagramsIn += n;
    this.counters.dropRecvError += refused[0]!;
    c.rxPackets += n;
    this.touch(c);
    return n;
  }
  private readonly segRefused = new Int32Array(1);

  /** `c` has input or timer work to dispatch at the end of this batch (once in the list). */
  private touch(c: QuicConnection): void {
    if (!c.touched) {
      c.touched = true;
      this.touched.push(c);
    }
  }

  private onDatagram(buf: Buffer, off: number, len: number, addrs: Uint8Array, i: number): void {
    this.counters.datagramsIn++;
    if (len < 1) {
      this.counters.dropMalformed++;
      return;
    }
    const b0 = buf[off];
    if ((b0 & 0x80) === 0) {
      // RFC 9000 §17.3: short header, DCID (our fixed length) follows byte 0.
      if (len < 1 + CID_BYTES) {
        this.counters.dropMalformed++;
        return;
      }
      const c = this.conns.get(cidKey(buf, off + 1));
      if (c !== undefined && cidMatches(c.scid, buf, off + 1)) this.deliver(c, buf, off, len, addrs, i);
      else {
        if (this.clientConfig !== null && len >= 21 && this.offerAsStatelessReset(buf, off, len, addrs, i)) return;
        this.counters.dropUnknownCid++;
        if (this.isServerEndpoint) this.sendStatelessReset(buf, off, len, addrs, i);
      }
      return;
    }
    // RFC 9000 §17.2: long header — version (4), DCID length (1), DCID.
    if (len < 7) {
      this.counters.dropMalformed++;
      return;
    }
    const dcidLen = buf[off + 5];
    if (dcidLen > CID_BYTES || 6 + dcidLen > len) {
      this.counters.dropMalformed++;
      return;
    }
    if (dcidLen === CID_BYTES) {
      const c = this.conns.get(cidKey(buf, off + 6));
      if (c !== undefined && cidMatches(c.scid, buf, off + 6)) {
        this.deliver(c, buf, off, len, addrs, i);
        return;
      }
    }
    if (this.byOdcid.size > 0) {
      // Client retransmits its first Initial to the original DCID until it hears from us.
      const c = this.byOdcid.get(buf.toString('latin1', off + 6, off + 6 + dcidLen));
      if (c !== undefined) {
        this.deliver(c, buf, off, len, addrs, i);
        return;
      }
    }
    if (!this.isServerEndpoint) {
      this.counters.dropUnknownCid++;
      return;
    }
    this.onNewLongHeader(buf, off, len, addrs, i);
  }

  private deliver(c: QuicConnection, buf: Buffer, off: number, len: number, addrs: Uint8Array, i: number): void {
    const info = c.recvInfoFor(addrs, i);
    c.rxPackets++;
    try {
      c.q.recv(buf, info, off, len);
    } catch {
      // The engine drops undecryptable packets itself; an error here is a
      // protocol failure it already turned into a CONNECTION_CLOSE.
      this.counters.dropRecvError++;
    }
    this.touch(c);
  }

  /** A long-header packet for no known connection: maybe a new client. */
  private onNewLongHeader(buf: Buffer, off: number, len: number, addrs: Uint8Array, i: number): void {
    const version = ((buf[off + 1] << 24) | (buf[off + 2] << 16) | (buf[off + 3] << 8) | buf[off + 4]) >>> 0;
    // RFC 9000 §17.2: in v1, type bits 0b00 are Initial; only an Initial can open a connection.
    if (version === QUIC_V1 && (buf[off] & 0x30) !== 0) {
      this.counters.dropUnknownCid++;
      return;
    }
    // RFC 9000 §14.1: the datagram carrying a client Initial is at least 1200 bytes;
    // §5.2.2: smaller datagrams with an unsupported version are dropped too.
    if (len < MIN_INITIAL_DATAGRAM_BYTES) {
      this.counters.dropSmallInitial++;
      return;
    }
    const hdr = this.hdr;
    if (parseLongHeader(buf, off, len, hdr) !== LongHeaderError.OK) {
      this.counters.dropMalformed++;
      return;
    }
    if (hdr.version !== QUIC_V1) {
      // RFC 9000 §6.1: answer an unknown version with Version Negotiation.
      if (!this.takeStatelessToken()) return;
      const n = writeVersionNegotiation(buf, hdr, this.rawOut, buf[hdr.dcidOff + hdr.dcidLen - 1] ?? 0);
      if (n > 0) {
        this.sendRaw(this.rawOut, n, addrs, i);
        this.counters.versionNegotiationsSent++;
      } else this.counters.dropMalformed++;
      return;
    }
    if (hdr.type !== LongType.INITIAL) {
      this.counters.dropUnknownCid++;
      return;
    }
    // RFC 9000 §7.2: the client's first DCID is at least 8 bytes.
    if (hdr.dcidLen < 8) {
      this.counters.dropMalformed++;
      return;
    }
    if (!this.accepting) {
      this.counters.dropNotAccepting++;
      return;
    }
    if (this.conns.size >= this.maxConnections) {
      this.counters.dropConnectionLimit++;
      return;
    }
    const tokens = this.tokens!;
    const dcid = buf.subarray(hdr.dcidOff, hdr.dcidOff + hdr.dcidLen);
    let odcid: Uint8Array | null = null;
    let scid: Uint8Array;
    if (hdr.tokenLen > 0) {
      // We never send NEW_TOKEN, so any token is ours from a Retry (RFC 9000 §8.1.3).
      odcid = tokens.validate(buf.subarray(hdr.tokenOff, hdr.tokenOff + hdr.tokenLen), dcid, addrs, i);
      if (odcid === null || hdr.dcidLen !== CID_BYTES) {
        this.counters.dropBadToken++;
        return;
      }
      scid = Uint8Array.from(dcid);
      if (this.conns.has(cidKey(scid, 0))) {
        this.counters.dropBadToken++; // replay of a token for a live connection
        return;
      }
      odcid = Uint8Array.from(odcid); // the token is a view into the receive batch
    } else if (this.retryMode === 'on' || (this.retryMode === 'auto' && (this.handshaking >= this.retryAuto || this.recentNewHandshakes() >= this.retryAutoRate))) {
      // RFC 9000 §8.1.2: stateless Retry with an address-bound token.
      if (!this.takeStatelessToken()) return;
      const retryScid = this.freshCid(true);
      const tok = tokens.mint(dcid, retryScid, addrs, i);
      const n = writeRetry(buf, hdr, retryScid, tok, this.rawOut, this.retryScratch);
      if (n < 0) {
        this.counters.dropMalformed++;
        return;
      }
      this.sendRaw(this.rawOut, n, addrs, i);
      this.counters.retriesSent++;
      return;
    } else {
      scid = this.freshCid(true);
    }
    // After the stateless answers: a Retry creates no state, so it needs no per-IP count (nor its string key).
    const ip = readAddrSlotHost(addrs, i);
    const perIp = this.perPeerIp.get(ip) ?? 0;
    if (perIp >= this.maxPerPeerIp) {
      this.counters.dropPeerIpLimit++;
      return;
    }
    if (this.acceptsLeft <= 0 || this.handshaking >= this.maxHandshakes) {
      this.deferInitial(buf, off, len, addrs, i);
      return;
    }
    this.acceptsLeft--;
    let q: EngineConnection;
    const remote = { host: ip, port: (addrs[i * ADDR_SLOT_BYTES + 16] << 8) | addrs[i * ADDR_SLOT_BYTES + 17] };
    try {
      q = engine.Connection.accept(scid, odcid, this.local, remote, this.serverConfigFor(scid));
    } catch {
      this.counters.dropAcceptError++;
      return;
    }
    if (this.keylogPath !== null) q.setKeylog(this.keylogPath);
    const c = new QuicConnection(this, q, true, scid, this.local, addrs, i);
    // The CA this connection's TLS config asked certificates for (#12 item 4: not the start-up one).
    c.clientCaPem = this.serverTls!.clientCaPem ?? null;
    c.peerIpKey = ip;
    this.perPeerIp.set(ip, perIp + 1);
    this.conns.set(c.scidKey, c);
    if (odcid === null) {
      c.odcidKey = buf.toString('latin1', hdr.dcidOff, hdr.dcidOff + hdr.dcidLen);
      this.byOdcid.set(c.odcidKey, c);
      this.newInWindow++;
    }
    this.handshaking++;
    this.counters.connectionsAccepted++;
    this.deliver(c, buf, off, len, addrs, i);
  }

  /**
   * Unvalidated handshakes started in the last second, estimated from two
   * fixed windows (the previous one weighted by how much of it still lies
   * within the last second).
   */
  private recentNewHandshakes(): number {
    const now = performance.now();
    const age = now - this.newWindowStart;
    if (age >= 1000) {
      this.newInPrevWindow = age >= 2000 ? 0 : this.newInWindow;
      this.newInWindow = 0;
      this.newWindowStart = age >= 2000 ? now : this.newWindowStart + 1000;
    }
    const into = (now - this.newWindowStart) / 1000;
    return this.newInWindow + this.newInPrevWindow * (1 - into);
  }

  /** One token of the Retry/Version Negotiation bucket; false (and counted) when it is empty. */
  private takeStatelessToken(): boolean {
    if (this.retryBucket.take(performance.now())) return true;
    this.counters.dropStatelessRateLimit++;
    return false;
  }

  /** Queues a client Initial the endpoint cannot start a handshake for this turn (counted either way). */
  private deferInitial(buf: Buffer, off: number, len: number, addrs: Uint8Array, i: number): void {
    const r = this.initialQueue!.push(buf, off, len, addrs, i, performance.now());
    if (r !== InitialQueueRefusal.NONE) {
      this.counters.dropHandshakeQueueFull++;
      return;
    }
    this.counters.handshakesDeferred++;
    this.scheduleAdmission();
  }

  /** Admits queued Initials on a later turn (after pending I/O, so established connections go first). */
  private scheduleAdmission(): void {
    const q = this.initialQueue;
    if (q === null || q.length === 0 || this.admitScheduled || this.closed || this.handshaking >= this.maxHandshakes) return;
    this.admitScheduled = true;
    setImmediate(this.admitQueued);
  }

  /** One turn's worth of queued Initials, oldest first, through the normal demux (a retransmit may now match its connection). */
  private readonly admitQueued = (): void => {
    this.admitScheduled = false;
    const q = this.initialQueue!;
    if (this.closed) return;
    this.acceptsLeft = this.acceptsPerTurn;
    const now = performance.now();
    this.inBatch = true;
    try {
      let k: number;
      while (this.acceptsLeft > 0 && this.handshaking < this.maxHandshakes && (k = q.peek(now)) >= 0) {
        q.shift();
        const d = q.datagram(k);
        this.counters.datagramsIn--; // counted when it arrived
        this.onDatagram(d, 0, d.length, q.addrs, k);
      }
      this.counters.dropHandshakeQueueStale = q.staleDrops;
      this.dispatchTouched();
    } finally {
      this.inBatch = false;
    }
    this.afterBatch();
    // Budget used up: more next turn. Concurrency reached: a finished handshake schedules us.
    if (this.acceptsLeft <= 0) this.scheduleAdmission();
  };

  /**
   * The server config for one new connection: one config (one TLS context)
   * shared by every connection while the TLS material is unchanged, with the
   * stateless reset token of `scid` set just before accept — the engine
   * copies the transport parameters, reset token included, into the
   * connection at accept (quic-conn.c), so sharing is safe. A config per
   * connection cost a TLS context per connection (about 10 kB of RSS each,
   * and its build time in every handshake). Rebuilt after
   * {@link updateServerTls} replaces the material (which checks it here).
   */
  private serverConfigFor(scid: Uint8Array): EngineConfig {
    let cfg = this.serverCfg;
    if (cfg === null || this.serverCfgTls !== this.serverTls) {
      cfg = this.buildConfig(true);
      // Shared ticket key, so sessions resume across connections.
      cfg.setTicketKey(this.ticketKey);
      this.serverCfg = cfg;
      this.serverCfgTls = this.serverTls;
    }
    // RFC 9000 §18.2 stateless_reset_token, derived so a restarted endpoint can recompute it.
    cfg.setStatelessResetToken(BigInt('0x' + this.resetToken(scid, 0).toString('hex')));
    return cfg;
  }

  /** RFC 9000 §10.3.2: token = HMAC(static key, connection ID), 16 bytes. */
  private resetToken(buf: Uint8Array, off: number): Buffer {
    return createHmac('sha256', this.resetKey)
      .update(buf.subarray(off, off + CID_BYTES))
      .digest()
      .subarray(0, 16);
  }

  /** RFC 9000 §10.3: answer a short-header packet for an unknown CID (rate-limited, never larger than the trigger). */
  private sendStatelessReset(buf: Uint8Array, off: number, len: number, addrs: Uint8Array, i: number): void {
    // §10.3.3: smaller than the trigger (no reset loops) and at least 21 bytes (§10.3).
    const size = Math.min(len - 1, 42);
    if (size < 21 || !this.resetBucket.take(performance.now())) {
      this.counters.statelessResetsSuppressed++;
      return;
    }
    const pkt = this.rawOut;
    randomFillSync(pkt, 0, size - 16);
    pkt[0] = (pkt[0] & 0x3f) | 0x40; // §17.3.1 short-header form: 0b01xxxxxx
    pkt.set(this.resetToken(buf, off + 1), size - 16);
    this.sendRaw(pkt, size, addrs, i);
    this.counters.statelessResetsSent++;
  }

  /**
   * RFC 9000 §10.3.1: a short-header datagram we cannot attribute may be a
   * stateless reset from a server that lost our connection. Hand it to our
   * client connections with that peer address; ngtcp2 compares the last 16
   * bytes with the server's token and closes the connection on a match.
   * Bounded to a few connections per datagram.
   */
  private offerAsStatelessReset(buf: Buffer, off: number, len: number, addrs: Uint8Array, i: number): boolean {
    let offered = 0;
    for (const c of this.conns.values()) {
      if (c.isServer || c.gone || !addrSlotEquals(c.sendAddr, 0, addrs, i)) continue;
      const wasClosed = c.q.isClosed();
      this.deliver(c, buf, off, len, addrs, i);
      // The engine closes on a token match without recording an error: that is how a reset shows.
      if (!wasClosed && c.q.isClosed() && c.q.peerError() === null && c.q.localError() === null) c.resetByPeer = true;
      if (++offered === 4) break;
    }
    if (offered > 0) this.counters.resetCandidates++;
    return offered > 0;
  }

  /** Keeps the newest TLS session per server, at most MAX_SESSIONS servers (oldest dropped). */
  private saveSession(key: string, s: Uint8Array): void {
    this.sessions.delete(key);
    if (this.sessions.size >= MAX_SESSIONS) this.sessions.delete(this.sessions.keys().next().value!);
    this.sessions.set(key, s);
  }

  /** Fresh random CID whose demux key is unused; a server's carries its QUIC-LB server ID when configured. */
  private freshCid(server = false): Uint8Array {
    const cid = new Uint8Array(CID_BYTES);
    const lb = server ? this.quicLb : null;
    do {
      if (lb !== null) encodeQuicLbCid(cid, lb);
      else {
        if (this.cidRandomOff === this.cidRandom.length) {
          randomFillSync(this.cidRandom);
          this.cidRandomOff = 0;
        }
        cid.set(this.cidRandom.subarray(this.cidRandomOff, this.cidRandomOff + CID_BYTES));
        this.cidRandomOff += CID_BYTES;
      }
    } while (this.conns.has(cidKey(cid, 0)));
    return cid;
  }

  // --------------------------------------------------------- after input

  /** After an input batch or timer run: events, the owner's {@link setBeforeSend} hook, sends, timers, cleanup. */
  private afterBatch(): void {
    this.inBatch = true;
    try {
      this.dispatchTouched();
    } finally {
      this.inBatch = false;
    }
    try {
      this.beforeSend?.();
    } finally {
      this.flushDirty(); // sends, and re-arms the timer, even if the hook threw
    }
  }

  private beforeSend: (() => void) | null = null;

  /**
   * Runs `hook` after each input batch's events and before its sends. The
   * daemons read their TUN there, once, for what the kernel answered to the
   * packets the batch delivered: a ping's reply, a SYN-ACK, TCP ACKs (the
   * kernel's own stack answers inside the TUN write; the gateway writes its
   * TUN in the hook first, as it batches those writes across connections).
   * The answer then leaves in the same send batch and the QUIC ACK rides on
   * it instead of going first in a packet of its own. ngtcp2 0.12 acknowledges
   * at once any ack-eliciting packet that follows a non-ack-eliciting one
   * (pktns_commit_recv_pkt_num), so request/response traffic drew one
   * ACK-only packet, and one extra wake of the peer, per exchange.
   */
  setBeforeSend(hook: (() => void) | null): void {
    this.beforeSend = hook;
  }

  /** Runs events for every connection that got input since the last call (sending waits). */
  private dispatchTouched(): void {
    if (this.touched.length === 0) return;
    const list = this.touched;
    this.touched = [];
    // Every connection's state is read under one hold of the engine lock (#17): a native data
    // plane holds that lock through its receive rounds, and one acquisition per connection waited
    // for a round each time (at 1,000 sessions most of the event loop's time). No handler runs in
    // this loop (snapshot is an engine call only); each connection's events below use its snapshot.
    let prefetched = list.length > 1;
    if (prefetched) {
      engine.lock();
      try {
        for (let k = 0; k < list.length; k++) {
          if (!list[k]!.gone) list[k]!.q.snapshot();
          spanEngineLock(k + 1); // thousands of attachments may be listed
        }
      } catch {
        prefetched = false; // each connection asks the engine itself below (and meets the error there)
      } finally {
        engine.unlock();
      }
    }
    // A snapshot stays good until application code runs: a handler may call into any connection's
    // engine state (close another one, read its streams). After the first event, each connection
    // asks the engine again, as before.
    const gen = this.eventsEmitted;
    for (let k = 0; k < list.length; k++) {
      const c = list[k];
      c.touched = false;
      if (!c.gone) this.afterInput(c, prefetched && this.eventsEmitted === gen);
    }
  }

  /** Events afterInput emitted (application code that ran): a prefetched snapshot is good only while this stays put. */
  private eventsEmitted = 0;

  /** A touched connection's events; `fresh`: the snapshot dispatchTouched took is still good. */
  private afterInput(c: QuicConnection, fresh = false): void {
    const q = c.q;
    // One engine call answers every question below (it was one per question, per packet).
    let info = fresh ? q.lastSnapshot() : q.snapshot();
    if (!c.established && !c.refused && info[INFO_ESTABLISHED] === 1 && info[INFO_CLOSED] === 0 && info[INFO_DRAINING] === 0) {
      this.eventsEmitted++;
      if (!this.onEstablished(c)) {
        this.markDirty(c);
        return;
      }
      info = q.snapshot(); // onEstablished called into the engine
    }
    c.setDgramMax(info[INFO_DGRAM_MAX]!);
    this.noteQueueDelayDrops(c, info[INFO_DGRAM_SEND_DELAY_DROPPED]!);
    // The engine moved to another path (an authenticated packet from a rebinding peer): the handlers see it.
    const to = q.peerAddress();
    if (to !== c.sendTo) this.followPeer(c, to);
    if (c.established && !c.gone) {
      if (info[INFO_DGRAM_RECV_FULL] === 1) c.dgramRecvQueueFullEvents++;
      if (info[INFO_STREAM_READABLE] === 1 || info[INFO_DGRAM_RECV_QUEUED]! > 0) {
        c.readableHint = info[INFO_STREAM_READABLE]!;
        c.dgramHint = info[INFO_DGRAM_RECV_QUEUED]!;
        this.eventsEmitted++;
        const ok = c.emit('readable');
        c.readableHint = c.dgramHint = -1;
        if (!ok) this.handlerFailed(c);
      }
      if (c.watchWritable && !c.gone) {
        this.eventsEmitted++;
        if (!c.emit('writable')) this.handlerFailed(c);
      }
      if (!c.isServer && c.sessionKey !== null && c.sessionTries < 32) {
        c.sessionTries++;
        const s = q.session();
        if (s !== null) {
          this.saveSession(c.sessionKey, s);
          c.sessionTries = 32;
        }
      }
    }
    this.markDirty(c);
  }

  /** Carries the engine's cumulative CoDel drop count of `c` into its stats and the endpoint's counter. */
  private noteQueueDelayDrops(c: QuicConnection, engineCount: number): void {
    const d = engineCount - c.dgramDropQueueDelay;
    if (d > 0) {
      c.dgramDropQueueDelay = engineCount;
      this.counters.dgramDropQueueDelay += d;
    }
  }

  /** Handshake finished: authenticate (server mTLS), then announce. False when refused. */
  private onEstablished(c: QuicConnection): boolean {
    this.handshaking--;
    this.scheduleAdmission();
    if (c.odcidKey !== null) {
      this.byOdcid.delete(c.odcidKey);
      c.odcidKey = null;
    }
    if (c.isServer && c.clientCaPem !== null) {
      // BoringSSL verified any certificate against the CA; a missing one is our check.
      const chain = c.q.peerCertChain();
      if (chain === null || chain.length === 0) {
        this.counters.mtlsRejected++;
        c.q.close(false, CRYPTO_ERROR_CERTIFICATE_REQUIRED, utf8.encode('client certificate required'));
        c.refused = true;
        this.handshaking++; // balanced in finish()
        return false;
      }
      try {
        c.peerIdentity = peerIdentityFromChain(chain);
      } catch {
        this.counters.mtlsRejected++;
        c.q.close(false, CRYPTO_ERROR_BAD_CERTIFICATE, utf8.encode('unparsable client certificate'));
        c.refused = true;
        this.handshaking++;
        return false;
      }
    }
    const caNow = c.isServer ? (this.serverTls!.clientCaPem ?? null) : null;
    if (c.isServer && c.clientCaPem !== caNow) {
      // The client CA was reloaded during this handshake: the one in force now decides (#12 items 4, 5).
      const reason = peerRejection(c.peerIdentity !== null, c.q.peerCertChain(), caNow !== null ? parsePemBundle(caNow) : null, Date.now());
      if (reason !== null) {
        this.counters.mtlsRejected++;
        c.q.close(false, c.peerIdentity === null ? CRYPTO_ERROR_CERTIFICATE_REQUIRED : CRYPTO_ERROR_CERTIFICATE_REVOKED, utf8.encode(`client CA changed: ${reason}`));
        c.refused = true;
        this.handshaking++;
        return false;
      }
    }
    c.markEstablished();
    if (this.keepAliveMs > 0) c.keepAliveDueMs = performance.now() + this.keepAliveMs;
    if (c.isServer) {
      try {
        this.opts.server!.onConnection(c);
      } catch {
        this.handlerFailed(c);
        return false;
      }
    } else if (!c.emit('established')) {
      this.handlerFailed(c);
      return false;
    }
    return true;
  }

  private handlerFailed(c: QuicConnection): void {
    this.counters.handlerErrors++;
    try {
      c.q.close(false, INTERNAL_ERROR, utf8.encode('internal error'));
    } catch {
      // already closing
    }
    this.markDirty(c);
  }

  /** @internal ConnectionOwner */
  markDirty(c: QuicConnection): void {
    if (!c.dirty && !c.gone) {
      c.dirty = true;
      this.dirtyList.push(c);
    }
    // Writes made outside our own event dispatch (a UDP socket callback, a
    // timer, a TUN batch that forgot to flush) still leave promptly: one
    // microtask flush per burst, so a burst is coalesced into one batch.
    // Not while flushing (leftovers go through continueFlush) or while the
    // socket is blocked (onWritable resumes): that would spin in microtasks.
    if (!this.inBatch && !this.flushing && !this.blocked && !this.microFlushScheduled) {
      this.microFlushScheduled = true;
      queueMicrotask(this.microFlush);
    }
  }

  private microFlushScheduled = false;
  private flushing = false;
  /** Inside flushDirtyNow's engine lock; connections that end meanwhile wait in closedUnderLock for their `closed` event. */
  private locked = false;
  private closedUnderLock: QuicConnection[] = [];
  private readonly microFlush = (): void => {
    this.microFlushScheduled = false;
    if (!this.inBatch && !this.blocked && this.dirtyList.length > 0) this.flushDirty();
  };

  /**
   * @internal ConnectionOwner. Coalesced: every connection flushed in this
   * event-loop turn leaves in one send batch (one sendmmsg) from the
   * microtask {@link markDirty} schedules, not one socket call per connection.
   */
  flushConnection(c: QuicConnection): void {
    this.markDirty(c);
  }

  // ---------------------------------------------------------------- output

  /** Drain every dirty connection into the batch, then update timers and reap closed ones. */
  private flushDirty(): void {
    if (this.closed || this.flushing) return;
    this.flushing = true;
    try {
      this.flushDirtyNow();
    } finally {
      this.flushing = false;
    }
    // Connections marked while we were flushing (an event handler wrote) go out next.
    if (this.dirtyList.length > 0 && !this.continueScheduled) this.markDirty(this.dirtyList[0]!);
  }

  private flushDirtyNow(): void {
    const list = this.dirtyList;
    this.dirtyList = [];
    let leftover = false;
    // Drained and sent as one step for another sender of these connections (engine.lock). Connections that
    // end here report `closed` after the unlock: its handlers are application code (the agent's detaches the
    // TUN thread, which takes its own lock), and none of it may run under the engine lock.
    engine.lock();
    this.locked = true;
    try {
      for (let k = 0; k < list.length; k++) {
        const c = list[k];
        c.dirty = false;
        if (c.gone) continue;
        if (!this.blocked && !this.drainConn(c)) {
          leftover = true;
          this.markDirty(c);
        } else if (this.blocked) {
          this.markDirty(c);
        }
        this.afterSend(c);
      }
      this.sendOut();
    } finally {
      this.locked = false;
      engine.unlock();
      // Also when the send threw: the events are not left for a flush that may never come.
      if (this.closedUnderLock.length > 0) {
        const ended = this.closedUnderLock;
        this.closedUnderLock = [];
        for (const c of ended) c.emit('closed');
      }
    }
    this.armTimer();
    if (leftover && !this.continueScheduled) {
      this.continueScheduled = true;
      setImmediate(this.continueFlush);
    }
  }

  private readonly continueFlush = (): void => {
    this.continueScheduled = false;
    this.flushDirty();
  };

  /**
   * Moves up to sendBudget packets of `c` into the out batch, in one engine
   * call per batch-full (EngineConnection.drain: the engine writes the
   * packets, the GSO trains and the address slots itself). True when the
   * engine has nothing more.
   */
  private drainConn(c: QuicConnection): boolean {
    const q = c.q;
    const to = q.peerAddress();
    if (to !== c.sendTo) this.followPeer(c, to);
    const st = this.drainState;
    let budget = this.sendBudget;
    for (;;) {
      if (this.outCount === this.out.bufs.length && !this.sendOut()) return false;
      const mine = this.gsoConn === c;
      st[DRAIN_NEXT] = this.outCount;
      st[DRAIN_SEG] = mine ? this.gsoSeg : 0;
      st[DRAIN_SEGS] = mine ? this.gsoSegs : 0;
      st[DRAIN_BUDGET] = budget;
      st[DRAIN_GSO] = this.gso && this.sock.gso ? 1 : 0; // the socket turns GSO off when the path refuses it
      try {
        q.drain(this.outBatch, c.sendAddr);
      } catch {
        // The engine failed internally; it has closed the connection.
        this.drainedConn = null;
        return true;
      }
      this.drainedConn = c;
      const pkts = st[DRAIN_PKTS];
      this.outCount = st[DRAIN_NEXT];
      if (st[DRAIN_SEG] !== 0) {
        this.gsoConn = c;
        this.gsoSeg = st[DRAIN_SEG];
        this.gsoSegs = st[DRAIN_SEGS];
      } else if (mine || pkts > 0) {
        this.gsoConn = null;
      }
      const why = st[DRAIN_WHY];
      if (why === DRAIN_WHY_DONE) return true;
      if (why !== DRAIN_WHY_FULL) return false;
      budget -= pkts;
      if (budget <= 0) return false;
    }
  }

  /** The engine now sends to `to` (a rebinding client): readdress the connection's slot, end its GSO train. */
  private followPeer(c: QuicConnection, to: EngineHostPort): void {
    c.sendTo = to;
    // The engine's path (it moved after an authenticated packet from there): the peer's address from now on.
    c.peerHost = to.host;
    c.peerPort = to.port;
    if (to.port !== c.sendPort || to.host !== c.sendHost) {
      writeAddrSlot(c.sendAddr, 0, to.host, to.port);
      // Keep answering from the local address the peer last reached us on.
      c.sendAddr.set(c.recvLocal(), LOCAL_ADDR_OFFSET);
      c.sendHost = to.host;
      c.sendPort = to.port;
    }
    if (this.gsoConn === c) this.gsoConn = null;
  }

  /** Hands the out batch to the socket. False when the socket is blocked (slots kept for retry). */
  private sendOut(): boolean {
    const count = this.outCount;
    this.gsoConn = null;
    if (count === 0) return true;
    if (this.blocked) return false;
    const out = this.out;
    // A GSO slot with one segment is a plain datagram.
    for (let k = 0; k < count; k++) {
      if (out.segs[k] !== 0) this.counters.datagramsOut += Math.ceil(out.sizes[k] / out.segs[k]);
      else this.counters.datagramsOut++;
    }
    const sent = this.sock.send(out, count);
    const sock = this.sock;
    // Trains sent as such; on a path that refused GSO they went segment by segment (gsoRefused counts that).
    if (sock.gso) for (let k = 0; k < sent && k < count; k++) if (out.segs[k] !== 0) this.counters.gsoSends++;
    if (sock.txRefused !== undefined) {
      this.counters.sendRefused = sock.txRefused;
      this.counters.gsoRefused = sock.txGsoRefused ?? 0;
      if (this.gso && !sock.gso) {
        this.gso = false;
        this.gsoConn = null;
        this.onGsoOff?.();
      }
    }
    if (sent >= count) {
      this.outCount = 0;
      return true;
    }
    // Keep the unsent tail: move it to the front and wait for onWritable. (A train the socket sent
    // part of, segment by segment, comes back shrunk to the segments left: out.sizes[k] says so.)
    for (let k = sent; k < count; k++) {
      const d = k - sent;
      out.bufs[d].set(out.bufs[k].subarray(0, out.sizes[k]), 0);
      out.sizes[d] = out.sizes[k];
      out.segs[d] = out.segs[k];
      copyAddrSlot(out.addrs, k, out.addrs, d);
      if (out.segs[k] !== 0) this.counters.datagramsOut -= Math.ceil(out.sizes[k] / out.segs[k]);
      else this.counters.datagramsOut--;
    }
    this.outCount = count - sent;
    this.blocked = true;
    this.counters.sendStalls++;
    return false;
  }

  private readonly onWritable = (): void => {
    if (this.closed) return;
    this.blocked = false;
    let sent: boolean;
    engine.lock(); // the kept tail goes out as one step, as in flushDirtyNow
    try {
      sent = this.sendOut();
    } finally {
      engine.unlock();
    }
    if (sent) this.flushDirty();
  };

  /** Sends a stateless packet (Retry, Version Negotiation) to the sender of slot i. */
  private sendRaw(data: Uint8Array, n: number, addrs: Uint8Array, i: number): void {
    if (this.outCount === this.out.bufs.length && !this.sendOut()) {
      this.counters.sendStalls++;
      return;
    }
    const k = this.outCount;
    this.gsoConn = null;
    this.out.bufs[k].set(data.subarray(0, n), 0);
    this.out.sizes[k] = n;
    this.out.segs[k] = 0;
    copyAddrSlot(addrs, i, this.out.addrs, k);
    this.outCount = k + 1;
    if (!this.inBatch) this.sendOut();
    else if (this.dirtyList.length === 0) this.sendOutLater();
  }

  private sendOutLater(): void {
    if (!this.continueScheduled) {
      this.continueScheduled = true;
      setImmediate(this.continueFlush);
    }
  }

  // ---------------------------------------------------------------- timers

  /** After sending: re-key the connection's timer, or reap it when closed. */
  private afterSend(c: QuicConnection): void {
    const q = c.q;
    let closed: boolean;
    let t: number | null;
    if (this.drainedConn === c) {
      // The drain that just ran reported both.
      this.drainedConn = null;
      closed = this.drainState[DRAIN_CLOSED] === 1;
      const us = this.drainState[DRAIN_TIMEOUT];
      t = us < 0 ? null : us / 1000;
    } else {
      closed = q.isClosed();
      t = closed ? null : q.timeout();
    }
    if (closed) {
      this.reap(c);
      return;
    }
    let at = t === null ? Infinity : performance.now() + t;
    if (c.keepAliveDueMs < at) at = c.keepAliveDueMs;
    if (at === Infinity) this.heap.delete(c);
    else this.heap.set(c, at);
  }

  private armTimer(): void {
    if (this.closed) return;
    const top = this.heap.peek();
    if (top === undefined) {
      if (this.timer !== null) {
        clearTimeout(this.timer);
        this.timer = null;
        this.timerAt = Infinity;
      }
      return;
    }
    // Keep an armed timer that fires no later than needed; it re-arms on firing.
    if (this.timer !== null && this.timerAt <= top.deadlineMs) return;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timerAt = top.deadlineMs;
    this.timer = setTimeout(this.onTimer, Math.max(0, top.deadlineMs - performance.now()));
  }

  private readonly onTimer = (): void => {
    this.timer = null;
    this.timerAt = Infinity;
    if (this.closed) return;
    const now = performance.now();
    // The due connections' timers run under one hold of the engine lock (see dispatchTouched),
    // let go every LOCK_SPAN connections: onTimeout and sendAckEliciting are engine calls only,
    // and touch() only lists the connection.
    engine.lock();
    this.inBatch = true;
    try {
      let c: QuicConnection | undefined;
      let done = 0;
      while ((c = this.heap.popDue(now)) !== undefined) {
        // An early onTimeout is harmless (ngtcp2_conn_handle_expiry acts only on due timers), so a keep-alive deadline can share the heap entry.
        c.q.onTimeout();
        if (c.keepAliveDueMs <= now && c.established && !c.gone) {
          c.q.sendAckEliciting();
          this.counters.keepAlivesSent++;
          c.keepAliveDueMs = now + this.keepAliveMs;
        }
        this.touch(c);
        spanEngineLock(++done);
      }
    } finally {
      this.inBatch = false;
      engine.unlock();
    }
    this.afterBatch();
  };

  private reap(c: QuicConnection): void {
    if (c.gone) return;
    const q = c.q;
    const peer = q.peerError();
    const local = q.localError();
    const e = peer ?? local;
    const info: QuicCloseInfo = {
      byPeer: peer !== null,
      app: e?.isApp ?? false,
      errorCode: e?.errorCode ?? 0,
      reason: e !== null ? new TextDecoder().decode(e.reason) : '',
      idleTimeout: q.isTimedOut(),
      statelessReset: c.resetByPeer,
    };
    this.finish(c, info);
  }

  /** Removes `c` everywhere, reports `closed` once. */
  private finish(c: QuicConnection, info: QuicCloseInfo): void {
    if (c.gone) return;
    if (!c.established) {
      this.handshaking--;
      this.scheduleAdmission();
    }
    if (this.conns.get(c.scidKey) === c) this.conns.delete(c.scidKey);
    if (c.odcidKey !== null) this.byOdcid.delete(c.odcidKey);
    if (c.peerIpKey !== null) {
      const n = (this.perPeerIp.get(c.peerIpKey) ?? 1) - 1;
      if (n <= 0) this.perPeerIp.delete(c.peerIpKey);
      else this.perPeerIp.set(c.peerIpKey, n);
    }
    if (c.sessionKey !== null && !c.isServer) {
      const s = c.q.session();
      if (s !== null) this.saveSession(c.sessionKey, s);
    }
    this.heap.delete(c);
    // The last CoDel drops since the last input. Only an established connection sends DATAGRAMs: a spoofed
    // Initial's connection (a flood ends thousands a second) is not asked, which would cost an engine call each.
    if (c.established) this.noteQueueDelayDrops(c, c.q.snapshot()[INFO_DGRAM_SEND_DELAY_DROPPED]!);
    // Native state goes now, not when GC reaches the handle: under a flood of
    // spoofed Initials, accepted connections end at their first packet, and
    // waiting for GC grew RSS by ~1 KB per Initial (the gone flag keeps
    // QuicConnection off the engine from here).
    c.q.free();
    const wasEstablished = c.established;
    c.markClosed(info);
    this.counters.connectionsClosed++;
    if (!wasEstablished && c.isServer) this.counters.handshakesFailed++;
    if (wasEstablished || !c.isServer) {
      if (this.locked) this.closedUnderLock.push(c);
      else c.emit('closed');
    }
  }
}

function noop(): void {}
