/**
 * The agent's HTTP/2 connection to the gateway (issue #15): TCP + TLS 1.3,
 * ALPN `h2`, Extended CONNECT (RFC 8441) requests whose 2xx responses become
 * {@link H2Tunnel}s. It has the shape of the HTTP/3 client the MASQUE glue
 * uses (`connect(req, handler)`), so `connectIp` / `connectUdp` work over it.
 */
import { connect as h2connect, constants as h2c, type ClientHttp2Session, type ClientHttp2Stream, type IncomingHttpHeaders } from 'node:http2';
import { H3Error } from '../h3/errors.js';
import { isIP } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import type { FieldList } from '../h3/qpack.js';
import type { TunnelStream, TunnelStreamHandler } from '../h3/tunnel-stream.js';
import { formatHostPort } from '../packet/ip-address.js';
import { regularFields } from './h2-connect-request.js';
import { H2Tunnel, H2TunnelCounters, type H2TunnelOptions } from './h2-tunnel.js';

/** Options for {@link H2Client.connect}. */
export interface H2ClientOptions {
  readonly host: string;
  readonly port: number;
  /** TLS server name (SNI and certificate check). */
  readonly serverName: string;
  readonly caPem: string;
  readonly certPem?: string;
  readonly keyPem?: string;
  readonly tunnel: H2TunnelOptions;
  /** Counters shared across this agent's HTTP/2 connections; a fresh set by default. */
  readonly counters?: H2TunnelCounters;
  /** PING interval keeping NAT state and the gateway's idle timer alive; 0 = none. */
  readonly keepAliveMs: number;
  /** Connect + TLS + SETTINGS must complete within this. */
  readonly connectTimeoutMs: number;
}

/** The response handler the MASQUE glue passes to `connect`. */
type ClientHandler = TunnelStreamHandler & { onResponse(status: number, headers: FieldList, tunnel: TunnelStream | null): void };

/**
 * One HTTP/2 connection to the gateway. Create with {@link H2Client.connect},
 * which resolves once the gateway's SETTINGS allowed Extended CONNECT
 * (RFC 8441 §3); `onClose` hooks run once when the connection ends.
 */
export class H2Client {
  private closeHooks: ((reason: string) => void)[] = [];
  private closeReason: string | null = null;
  private pinger: NodeJS.Timeout | null = null;

  private constructor(
    private readonly session: ClientHttp2Session,
    private readonly opts: H2ClientOptions,
    readonly counters: H2TunnelCounters,
  ) {
    session.on('close', () => this.ended(this.closeReason ?? 'connection closed'));
    session.on('goaway', (code: number) => {
      this.closeReason = `GOAWAY (code ${code})`;
      this.ended(this.closeReason);
    });
    session.on('error', (e: Error) => {
      this.closeReason = e.message;
    });
    if (opts.keepAliveMs > 0) {
      this.pinger = setInterval(() => {
        if (!session.closed && !session.destroyed) session.ping(() => undefined);
      }, opts.keepAliveMs);
      this.pinger.unref();
    }
  }

  /**
   * Opens the connection. Rejects when TCP, TLS or ALPN fail, when the
   * gateway did not send SETTINGS_ENABLE_CONNECT_PROTOCOL = 1 (RFC 8441 §3),
   * or after `connectTimeoutMs`.
   */
  static connect(opts: H2ClientOptions): Promise<H2Client> {
    return new Promise((resolve, reject) => {
      const session = h2connect(`https://${formatHostPort(opts.host, opts.port)}`, {
        settings: { enablePush: false },
        createConnection: () => {
          const sock = tlsConnect({
            host: opts.host,
            port: opts.port,
            ca: opts.caPem,
            cert: opts.certPem,
            key: opts.keyPem,
            // SNI carries names only (RFC 6066 §3); for an address the certificate is checked against it.
            servername: isIP(opts.serverName) === 0 ? opts.serverName : undefined,
            minVersion: 'TLSv1.3',
            ALPNProtocols: ['h2'],
          });
          // No Nagle: each DATAGRAM capsule is a whole inner packet (docs/http2-fallback.md).
          sock.setNoDelay(true);
          return sock;
        },
      });
      let done = false;
      const finish = (err: Error | null) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        if (err === null) resolve(new H2Client(session, opts, opts.counters ?? new H2TunnelCounters()));
        else {
          session.destroy();
          reject(err);
        }
      };
      const timer = setTimeout(() => finish(new Error(`h2: no connection to ${opts.host}:${opts.port} within ${opts.connectTimeoutMs} ms`)), opts.connectTimeoutMs);
      session.once('error', (e: Error) => finish(new Error(`h2: ${e.message}`)));
      session.once('close', () => finish(new Error('h2: connection closed during setup')));
      session.once('remoteSettings', (s) => {
        if (s.enableConnectProtocol === true) finish(null);
        else finish(new Error('h2: the gateway does not allow Extended CONNECT (SETTINGS_ENABLE_CONNECT_PROTOCOL not 1, RFC 8441 §3)'));
      });
    });
  }

  /** True once the connection closed or the gateway sent GOAWAY. */
  get isClosed(): boolean {
    return this.closeReason !== null || this.session.closed || this.session.destroyed;
  }

  /** Runs `hook` once when the connection ends (at once if it already has). */
  onClose(hook: (reason: string) => void): void {
    if (this.isClosed) hook(this.closeReason ?? 'connection closed');
    else this.closeHooks.push(hook);
  }

  /**
   * Sends one Extended CONNECT request (RFC 8441 §4: `:protocol`, `:scheme`,
   * `:path`, `:authority`) with `capsule-protocol: ?1`. The response goes to
   * `handler.onResponse`; a 2xx binds the stream as an {@link H2Tunnel}.
   * Returns the stream ID, or -1 before it is assigned.
   */
  connect(
    req: { protocol: string; authority: string; path: string; scheme?: string; headers?: FieldList },
    handler: ClientHandler,
  ): number {
    const headers: Record<string, string> = {
      ':method': 'CONNECT',
      ':protocol': req.protocol,
      ':scheme': req.scheme ?? 'https',
      ':authority': req.authority,
      ':path': req.path,
      'capsule-protocol': '?1',
    };
    for (const [n, v] of req.headers ?? []) headers[n] = v;
    let st: ClientHttp2Stream;
    try {
      st = this.session.request(headers, { endStream: false });
    } catch (e) {
      queueMicrotask(() => handler.onClose(H3Error.H3_INTERNAL_ERROR));
      return -1;
    }
    let answered = false;
    st.on('error', () => undefined); // 'close' follows with the code
    st.once('response', (h: IncomingHttpHeaders) => {
      answered = true;
      const status = Number(h[':status']);
      if (status >= 200 && status <= 299) {
        handler.onResponse(status, regularFields(h), new H2Tunnel(st, handler, this.opts.tunnel, this.counters));
      } else {
        handler.onResponse(status, regularFields(h), null);
        st.close(h2c.NGHTTP2_NO_ERROR);
      }
    });
    st.once('close', () => {
      if (!answered) handler.onClose(H3Error.H3_REQUEST_CANCELLED); // no response
    });
    return st.id ?? -1;
  }

  /** GOAWAY (RFC 9113 §6.8) then close once streams end. */
  shutdown(): void {
    if (!this.session.closed) this.session.close();
  }

  /** Closes the connection now (every tunnel stream ends). */
  close(reason = 'closed by the agent'): void {
    this.closeReason ??= reason;
    this.session.destroy();
    this.ended(reason);
  }

  private ended(reason: string): void {
    if (this.pinger !== null) {
      clearInterval(this.pinger);
      this.pinger = null;
    }
    const hooks = this.closeHooks;
    this.closeHooks = [];
    for (const h of hooks) h(reason);
  }
}
