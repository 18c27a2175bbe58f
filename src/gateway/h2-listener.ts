/**
 * The gateway's HTTP/2 listener (issue #15): TCP + TLS 1.3, ALPN `h2`, on the
 * QUIC port's number, with the same certificates and client CA. Extended
 * CONNECT (RFC 8441, `SETTINGS_ENABLE_CONNECT_PROTOCOL`) requests are handed
 * to the gateway's one `onConnect`, so admission, policy, limits, sessions and
 * telemetry are those of the HTTP/3 path; only the carrier differs.
 */
import { createSecureServer, constants as h2c, type Http2SecureServer, type IncomingHttpHeaders, type ServerHttp2Session, type ServerHttp2Stream } from 'node:http2';
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { Registry } from 'prom-client';
import type { GatewayConfig } from '../config/index.js';
import { H2_DATAGRAM_PAYLOAD_BYTES, QUIC_IDLE_TIMEOUT_MS } from '../daemon/tunnel-constants.js';
import { registerH2Counters, registerSessionTransportGauge, type TunnelTransport } from '../h2/transport-metrics.js';
import type { ConnectRequest } from '../h3/api.js';
import type { DaemonIo } from '../daemon/ports.js';
import { H2PendingConnect } from '../h2/h2-connect-request.js';
import { H2TunnelCounters, type H2TunnelOptions } from '../h2/h2-tunnel.js';
import { refuse } from '../masque/proxy-status.js';
import { formatHostPort } from '../packet/ip-address.js';
import { peerIdentityFromChain } from '../quic/peer-identity.js';
import { parsePemBundle, peerRejection } from '../quic/peer-trust.js';
import { healthzHandler } from '../telemetry/healthz.js';
import type { GwConn } from './session-registry.js';

/** What the listener needs from the gateway. */
export interface H2ListenerHost {
  /** A TLS-authenticated HTTP/2 connection arrived: register it. */
  opened(gc: GwConn): void;
  /** An Extended CONNECT request (same call the HTTP/3 path makes). */
  onConnect(gc: GwConn, req: ConnectRequest): void;
  /** The connection closed (its sessions' streams are closed too). */
  closed(gc: GwConn): void;
}

/**
 * Request header an agent sends on a CONNECT-IP over HTTP/2 after QUIC
 * failed: its HTTP/3 sessions from the same address are dead (the gateway
 * would otherwise hold their routes and leases until the QUIC idle timeout).
 * The route takeover (gateway.ts supersede) covers advertised routes only; a
 * remote-access agent advertises none, and without this header its address
 * lease stays with the dead session, so it would get another address. The
 * gateway supersedes them only once the new request is admitted and valid
 * (gateway.ts staleH3Sessions).
 */
export const SUPERSEDES_HEADER = 'mtun-supersedes';

/** An IPv4-mapped IPv6 host as plain IPv4. */
export function plainHost(host: string): string {
  return host.replace(/^::ffff:(?=\d+\.)/, '');
}

/** TLS material, as the gateway reads it (PEM). */
export interface H2Tls {
  readonly certPem: string;
  readonly keyPem: string;
  /** Client certificates must chain to this CA; undefined: no client certificate asked for (token auth). */
  readonly clientCaPem: string | undefined;
}

/** Options for {@link H2Listener.start}. */
export interface H2ListenerOptions {
  readonly host: string;
  readonly port: number;
  readonly tls: H2Tls;
  readonly tunnel: H2TunnelOptions;
  /** Connections one peer IP may hold (as for QUIC). */
  readonly maxConnectionsPerPeerIp: number;
  /** Connection and stream receive windows (as for QUIC). */
  readonly connectionWindowBytes: number;
  readonly streamWindowBytes: number;
  /** A connection with no frames for this long is closed. */
  readonly idleTimeoutMs: number;
  readonly log: DaemonIo['log'];
}

/** Requests in flight per connection (the agent needs one CONNECT-IP plus its CONNECT-UDP flows). */
const MAX_CONCURRENT_STREAMS = 256;

function tlsOptions(t: H2Tls) {
  return { cert: t.certPem, key: t.keyPem, ca: t.clientCaPem, requestCert: t.clientCaPem !== undefined, rejectUnauthorized: t.clientCaPem !== undefined };
}

/** The running listener; see the module header. */
export class H2Listener {
  /** Capsule counters of every HTTP/2 tunnel this listener accepted. */
  readonly counters = new H2TunnelCounters();
  private readonly sessions = new Set<ServerHttp2Session>();
  private readonly perIp = new Map<string, number>();
  /** What each connection authenticated with: its certificate chain (DER, leaf first; null: none) and the leaf's notAfter. */
  private readonly peers = new Map<ServerHttp2Session, { chain: Uint8Array[] | null; notAfterMs: number; gc: GwConn }>();

  private constructor(
    private readonly server: Http2SecureServer,
    private readonly opts: H2ListenerOptions,
    private readonly host: H2ListenerHost,
  ) {
    // No Nagle: a DATAGRAM capsule is a whole inner packet; holding it back for coalescing only adds delay (docs/http2-fallback.md).
    server.on('connection', (sock: Socket) => sock.setNoDelay(true));
    server.on('session', (s: ServerHttp2Session) => this.onSession(s));
    server.on('stream', (st: ServerHttp2Stream, h: IncomingHttpHeaders) => this.onStream(st, h));
    server.on('tlsClientError', (e: Error, sock: TLSSocket) => {
      opts.log.info({ remote: formatHostPort(sock.remoteAddress ?? '?', sock.remotePort ?? 0), err: e.message }, 'HTTP/2 TLS handshake failed');
      // With a listener, node leaves the socket open: close it so the client learns at once.
      sock.destroy();
    });
  }

  /** Binds TCP `host:port` and starts serving. Throws (EADDRINUSE…) when it cannot listen. */
  static async start(opts: H2ListenerOptions, host: H2ListenerHost): Promise<H2Listener> {
    const server = createSecureServer({
      ...tlsOptions(opts.tls),
      minVersion: 'TLSv1.3',
      ALPNProtocols: ['h2'],
      allowHTTP1: false,
      unknownProtocolTimeout: 1_000,
      // A TLS handshake may take this long (node's default is 120 s): connections stalled mid-handshake are
      // not counted against the per-IP cap until they complete.
      handshakeTimeout: 10_000,
      maxSessionMemory: 16,
      // RFC 8441 §3: lets clients send :protocol.
      settings: { enableConnectProtocol: true, initialWindowSize: opts.streamWindowBytes, maxConcurrentStreams: MAX_CONCURRENT_STREAMS },
    });
    const l = new H2Listener(server, opts, host);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host: opts.host, port: opts.port, ipv6Only: false }, () => {
        server.off('error', reject);
        resolve();
      });
    });
    server.on('error', (e) => opts.log.error({ err: e.message }, 'HTTP/2 listener error'));
    return l;
  }

  /** The TCP address listened on. */
  get address(): { host: string; port: number } {
    const a = this.server.address();
    return typeof a === 'object' && a !== null ? { host: a.address, port: a.port } : { host: this.opts.host, port: this.opts.port };
  }

  /** Open HTTP/2 connections. */
  get connections(): number {
    return this.sessions.size;
  }

  /**
   * New certificate, key and client CA (SIGHUP): for new connections, and
   * open connections are judged again as QUIC's are (peerRejection): one the
   * new client CA no longer vouches for, one without a certificate when one
   * is now required, and one authenticated by certificate when mTLS is off
   * are closed and logged. Returns how many.
   */
  updateTls(t: H2Tls, nowMs = Date.now()): number {
    this.server.setSecureContext(tlsOptions(t));
    const anchors = t.clientCaPem !== undefined ? parsePemBundle(t.clientCaPem) : null;
    return this.closePeers((p) => peerRejection(p.chain !== null, p.chain, anchors, nowMs), 'closing HTTP/2 agent connection on reload: client CA changed');
  }

  /** Closes the connections whose client certificate passed its notAfter (called each second, as QUIC's). Returns how many. */
  closeExpired(nowMs = Date.now()): number {
    return this.closePeers((p) => (p.chain !== null && p.notAfterMs <= nowMs ? 'client certificate expired' : null), 'closing HTTP/2 agent connection: certificate expired');
  }

  /** Closes (and logs with `msg`) each connection `reasonOf` gives a reason for. Returns how many. */
  private closePeers(reasonOf: (p: { chain: Uint8Array[] | null; notAfterMs: number }) => string | null, msg: string): number {
    let closed = 0;
    for (const [s, p] of this.peers) {
      const reason = reasonOf(p);
      if (reason === null) continue;
      this.opts.log.warn({ remote: p.gc.remote, identity: p.gc.certIdentity, reason }, msg);
      s.destroy();
      closed++;
    }
    return closed;
  }

  /** Stops accepting and sends GOAWAY (RFC 9113 §6.8) to every connection. */
  shutdown(): void {
    this.server.close();
    for (const s of this.sessions) if (!s.closed) s.goaway(h2c.NGHTTP2_NO_ERROR);
  }

  /** Closes every connection now and the listening socket. */
  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const s of this.sessions) s.destroy();
    await closed;
  }

  private onSession(s: ServerHttp2Session): void {
    const sock = s.socket as TLSSocket;
    const ip = plainHost(sock.remoteAddress ?? '?');
    const count = (this.perIp.get(ip) ?? 0) + 1;
    if (count > this.opts.maxConnectionsPerPeerIp) {
      this.opts.log.warn({ peer: ip, limit: this.opts.maxConnectionsPerPeerIp }, 'HTTP/2 connection refused: too many from this address');
      s.destroy();
      return;
    }
    this.perIp.set(ip, count);
    this.sessions.add(s);
    let certIdentity: string | null = null;
    let chain: Uint8Array[] | null = null;
    let notAfterMs = Infinity;
    try {
      // The whole chain the client presented (leaf first), for re-judging it when the client CA changes.
      const leaf = sock.getPeerCertificate?.(true);
      if (leaf?.raw) {
        const t = Date.parse(leaf.valid_to);
        if (Number.isFinite(t)) notAfterMs = t;
        chain = [];
        for (let c = leaf; c?.raw && chain.length < 8; c = c.issuerCertificate) {
          chain.push(new Uint8Array(c.raw));
          if (c.issuerCertificate === undefined || c.issuerCertificate === c || c.issuerCertificate.raw?.equals(c.raw)) break;
        }
      }
      const id = peerIdentityFromChain(chain !== null ? [chain[0]!] : null);
      certIdentity = id ? (id.spiffeId ?? id.uris[0] ?? id.subject) : null;
    } catch (e) {
      this.opts.log.warn({ peer: ip, err: (e as Error).message }, 'HTTP/2 peer certificate unreadable');
      // Counted above, and no close handler yet: uncount here.
      this.sessions.delete(s);
      if (count <= 1) this.perIp.delete(ip);
      else this.perIp.set(ip, count - 1);
      s.destroy();
      return;
    }
    const state = { isClosed: false, handlerError: null as Error | null, peerHost: ip };
    const gc: GwConn = {
      transport: 'h2',
      conn: state,
      http: { shutdown: () => void (s.closed || s.goaway(h2c.NGHTTP2_NO_ERROR)) },
      certIdentity,
      remote: formatHostPort(ip, sock.remotePort ?? 0),
      sessions: new Set(),
    };
    (s as ServerHttp2Session & { mtunConn?: GwConn }).mtunConn = gc;
    this.peers.set(s, { chain, notAfterMs, gc });
    s.setLocalWindowSize(this.opts.connectionWindowBytes);
    s.setTimeout(this.opts.idleTimeoutMs, () => s.close());
    s.on('error', (e) => this.opts.log.info({ remote: gc.remote, err: e.message }, 'HTTP/2 connection error'));
    s.on('close', () => {
      state.isClosed = true;
      this.sessions.delete(s);
      this.peers.delete(s);
      const n = (this.perIp.get(ip) ?? 1) - 1;
      if (n <= 0) this.perIp.delete(ip);
      else this.perIp.set(ip, n);
      this.opts.log.info({ remote: gc.remote, identity: gc.certIdentity, transport: 'h2' }, 'agent connection closed');
      this.host.closed(gc);
    });
    this.host.opened(gc);
    this.opts.log.info({ remote: gc.remote, identity: gc.certIdentity, transport: 'h2' }, 'agent connected');
  }

  /**
   * Closes the CONNECT-IP sessions over HTTP/3 of the same client-certificate
   * identity from the same address (the agent's own, left behind by its
   * fallback), so their routes and leases go to the new session. Only a
   * certificate-authenticated agent can do this, and only to itself.
   */
  private onStream(st: ServerHttp2Stream, h: IncomingHttpHeaders): void {
    st.on('error', () => undefined); // resets arrive as 'close' with rstCode
    const gc = (st.session as (ServerHttp2Session & { mtunConn?: GwConn }) | undefined)?.mtunConn;
    if (gc === undefined) {
      st.close(h2c.NGHTTP2_REFUSED_STREAM);
      return;
    }
    const method = String(h[':method'] ?? '');
    if (method !== 'CONNECT') {
      // Plain requests: /healthz, as over HTTP/3.
      const r = healthzHandler({ streamId: st.id ?? -1, method, path: h[':path'], scheme: h[':scheme'], authority: h[':authority'], headers: [] });
      const headers: Record<string, string | number> = { ':status': r.status };
      for (const [n, v] of r.headers ?? []) headers[n] = v;
      st.respond(headers, { endStream: r.body === undefined });
      if (r.body !== undefined) st.end(r.body);
      return;
    }
    if (h[':protocol'] === undefined) {
      // RFC 9113 §8.5 CONNECT (no :protocol) is a TCP tunnel request: not served here.
      const r = refuse(501, 'http_request_error', 'only Extended CONNECT (RFC 8441 :protocol) is served');
      st.respond({ ':status': r.status, 'proxy-status': r.proxyStatus }, { endStream: true });
      return;
    }
    const req = new H2PendingConnect(st, h, this.opts.tunnel, this.counters);
    try {
      this.host.onConnect(gc, req);
    } catch (e) {
      this.opts.log.error({ remote: gc.remote, err: (e as Error).stack }, 'HTTP/2 CONNECT handler failed');
      if (!req.settled) req.reject(500, [['proxy-status', refuse(500, 'proxy_internal_error', 'handler failed').proxyStatus]]);
    }
  }
}

/** What {@link startGatewayH2} needs beside the config. */
export interface GatewayH2Wiring {
  readonly io: DaemonIo;
  readonly tls: H2Tls;
  /** The QUIC listener's port: HTTP/2 listens on the same number over TCP. */
  readonly port: number;
  readonly registry: Registry;
  /** Every open session's connection (for `mtun_tunnel_sessions_by_transport{transport}`). */
  readonly connections: () => Iterable<{ readonly transport: TunnelTransport }>;
  /** After each DATA chunk: flush the TUN write batch. */
  readonly afterData: () => void;
  readonly host: H2ListenerHost;
}

/**
 * Starts the HTTP/2 listener when `config.h2.enabled` and registers the
 * transport metrics either way. A port that cannot be bound is logged as an
 * error and the gateway serves HTTP/3 alone (returns null).
 */
export async function startGatewayH2(config: GatewayConfig, w: GatewayH2Wiring): Promise<H2Listener | null> {
  registerSessionTransportGauge(w.registry, 'gateway', w.connections);
  if (!config.h2.enabled) return null;
  try {
    const l = await H2Listener.start({
      host: config.listen.host,
      port: w.port,
      tls: w.tls,
      tunnel: {
        maxCapsuleBytes: config.h2.maxCapsuleBytes,
        sendQueueBytes: config.h2.sendQueueBytes,
        maxDatagramPayloadBytes: H2_DATAGRAM_PAYLOAD_BYTES,
        afterData: w.afterData,
      },
      maxConnectionsPerPeerIp: config.maxConnectionsPerPeerIp,
      connectionWindowBytes: config.connectionWindowBytes,
      streamWindowBytes: config.streamWindowBytes,
      idleTimeoutMs: Math.max(QUIC_IDLE_TIMEOUT_MS, 3 * config.keepaliveIntervalMs),
      log: w.io.log,
    }, w.host);
    registerH2Counters(w.registry, 'gateway', l.counters);
    w.io.log.info({ listen: l.address }, 'HTTP/2 listener started (TCP, TLS 1.3, ALPN h2)');
    return l;
  } catch (e) {
    w.io.log.error({ port: w.port, err: (e as Error).message }, 'HTTP/2 listener not started: serving HTTP/3 only');
    return null;
  }
}
