/**
 * The agent's local CONNECT-UDP forwarders (RFC 9298): a local UDP port
 * whose datagrams go to one target through the gateway. Each local client
 * (source address and port) gets its own CONNECT-UDP stream, opened on its
 * first datagram; replies go back to that client. Bounded: clients per
 * forwarder, datagrams waiting for a stream to open, idle mappings expire.
 * At the client bound (or when the gateway refuses a stream over its
 * per-identity session limit) the mapping idle longest makes room, if it
 * has been quiet for a few seconds: a client that uses a new source port
 * per exchange (DNS-like) would otherwise hold every stream for the two
 * idle minutes and lock the forwarder out.
 */
import { createSocket, type Socket } from 'node:dgram';
import { isIPv6 } from 'node:net';
import type { Logger } from 'pino';
import type { ConnectUdpClientSession } from '../masque/connect-udp/client-session.js';
import { MASQUE_HEADROOM } from '../masque/connect-ip/datagram.js';
import { MasqueRequestError } from '../masque/h3-glue.js';

/** Opens one CONNECT-UDP stream to the target over the current connection (rejects when there is none). */
export type ConnectUdpOpener = (host: string, port: number, onPayload: (buf: Uint8Array, off: number, len: number) => void, onClose: () => void) => Promise<ConnectUdpClientSession>;

/** Counters of one forwarder (drops by reason). */
export interface UdpForwarderCounters {
  datagramsToTarget: number;
  datagramsFromTarget: number;
  /** Dropped: the client limit was reached. */
  dropTooManyClients: number;
  /** Dropped: more datagrams waited for the stream to open than the bound allows. */
  dropPendingFull: number;
  /** Dropped: the stream could not be opened (no tunnel, refused by the gateway). */
  dropOpenFailed: number;
  /** Dropped by the session (too big, queue full…). */
  dropSend: number;
  /** Idle mappings closed early to make room for a new client. */
  evictedIdle: number;
}

/** What a forwarder needs. */
export interface UdpForwarderOptions {
  readonly listen: { readonly host: string; readonly port: number };
  readonly target: { readonly host: string; readonly port: number };
  readonly open: ConnectUdpOpener;
  /** Sends queued QUIC packets (call after payloads were queued outside a QUIC event). */
  readonly flush: () => void;
  readonly log: Logger;
  /** Clients (streams) at once (default 32: below the gateway's default of 64 sessions per identity, which the tunnel and other forwarders share). */
  readonly maxClients?: number;
  /** Idle time after which a client's stream is closed (default 120 s, RFC 9298 §3.1's floor). */
  readonly idleTimeoutMs?: number;
}

/** Datagrams held per client while its stream opens. */
const MAX_PENDING = 16;
/** A mapping quiet at least this long may be closed early to make room (a reply may still be on its way before that). */
const MIN_IDLE_FOR_EVICTION_MS = 2_000;

interface Mapping {
  readonly address: string;
  readonly port: number;
  session: ConnectUdpClientSession | null;
  pending: Buffer[] | null;
  lastActiveMs: number;
}

/** One local UDP port forwarded through the gateway. Call {@link close} once. */
export class UdpForwarder {
  readonly counters: UdpForwarderCounters = {
    datagramsToTarget: 0, datagramsFromTarget: 0, dropTooManyClients: 0, dropPendingFull: 0, dropOpenFailed: 0, dropSend: 0, evictedIdle: 0,
  };
  private readonly socket: Socket;
  private readonly clients = new Map<string, Mapping>();
  private readonly scratch = Buffer.allocUnsafe(MASQUE_HEADROOM + 7 + 65_536);
  private readonly maxClients: number;
  private lastOpenWarnMs = -Infinity;
  private readonly idleMs: number;

  private constructor(private readonly opts: UdpForwarderOptions, socket: Socket) {
    this.socket = socket;
    this.maxClients = opts.maxClients ?? 32;
    this.idleMs = Math.max(120_000, opts.idleTimeoutMs ?? 120_000);
    socket.on('message', (msg, rinfo) => this.onLocal(msg, rinfo.address, rinfo.port));
  }

  /** Binds the local port. Rejects with `agent: …` when it cannot (in use, bad address). */
  static start(opts: UdpForwarderOptions): Promise<UdpForwarder> {
    return new Promise((resolve, reject) => {
      const s = createSocket({ type: isIPv6(opts.listen.host) ? 'udp6' : 'udp4' });
      s.once('error', (e) => reject(new Error(`agent: UDP forwarder ${opts.listen.host}:${opts.listen.port}: ${e.message}`)));
      s.bind(opts.listen.port, opts.listen.host, () => {
        s.removeAllListeners('error');
        s.on('error', (e) => opts.log.warn({ err: e.message }, 'UDP forwarder socket error'));
        resolve(new UdpForwarder(opts, s));
      });
    });
  }

  /** Clients with a stream (or one opening). */
  get clientCount(): number {
    return this.clients.size;
  }

  private onLocal(msg: Buffer, address: string, port: number): void {
    const key = `${address}|${port}`;
    let m = this.clients.get(key);
    if (m === undefined) {
      if (this.clients.size >= this.maxClients && !this.evictIdlest(Date.now())) {
        this.counters.dropTooManyClients++;
        return;
      }
      m = { address, port, session: null, pending: [], lastActiveMs: Date.now() };
      this.clients.set(key, m);
      this.openFor(key, m);
    }
    m.lastActiveMs = Date.now();
    if (m.session === null) {
      if (m.pending === null || m.pending.length >= MAX_PENDING) this.counters.dropPendingFull++;
      else m.pending.push(Buffer.from(msg));
      return;
    }
    this.sendToTarget(m.session, msg);
    this.opts.flush();
  }

  private sendToTarget(s: ConnectUdpClientSession, payload: Uint8Array): void {
    const off = MASQUE_HEADROOM + 7;
    this.scratch.set(payload, off);
    if (s.sendPayload(this.scratch, off, payload.length) === 0) this.counters.datagramsToTarget++;
    else this.counters.dropSend++;
  }

  private openFor(key: string, m: Mapping): void {
    const { host, port } = this.opts.target;
    this.opts.open(host, port, (buf, off, len) => {
      m.lastActiveMs = Date.now();
      this.counters.datagramsFromTarget++;
      // The payload lives in HTTP/3's shared receive buffer, valid only during
      // this call, and dgram.send may send on a later tick: send a copy.
      this.socket.send(Buffer.from(buf.subarray(off, off + len)), m.port, m.address);
    }, () => {
      if (this.clients.get(key) === m) this.clients.delete(key);
    }).then((s) => {
      if (this.clients.get(key) !== m) {
        s.close();
        return;
      }
      m.session = s;
      const queued = m.pending ?? [];
      m.pending = null;
      for (const p of queued) this.sendToTarget(s, p);
      this.opts.flush();
    }, (e: Error) => {
      this.counters.dropOpenFailed += (m.pending?.length ?? 0);
      if (this.clients.get(key) === m) this.clients.delete(key);
      // The gateway's per-identity session limit (429): make room for this client's next datagram.
      if (e instanceof MasqueRequestError && e.status === 429) this.evictIdlest(Date.now());
      // A chatty client while the tunnel is down must not flood the log: at most one line per 10 s.
      const now = Date.now();
      if (now - this.lastOpenWarnMs >= 10_000) {
        this.lastOpenWarnMs = now;
        this.opts.log.warn({ target: `${host}:${port}`, err: e.message, failedSoFar: this.counters.dropOpenFailed }, 'CONNECT-UDP stream could not be opened');
      }
    });
  }

  /** Closes the mapping with a stream that has been idle longest, if idle at least MIN_IDLE_FOR_EVICTION_MS; false when none qualifies. */
  private evictIdlest(nowMs: number): boolean {
    let victim: string | null = null;
    let oldest = nowMs - MIN_IDLE_FOR_EVICTION_MS;
    for (const [key, m] of this.clients) {
      if (m.session !== null && m.lastActiveMs <= oldest) {
        oldest = m.lastActiveMs;
        victim = key;
      }
    }
    if (victim === null) return false;
    const m = this.clients.get(victim)!;
    this.clients.delete(victim);
    m.session?.close();
    // Send the stream's FIN now: the gateway frees the session when it reads it, before this client's next try.
    this.opts.flush();
    this.counters.evictedIdle++;
    return true;
  }

  /** Closes mappings idle for the idle timeout. Called from the agent's once-a-second tick. */
  expire(nowMs: number): void {
    for (const [key, m] of this.clients) {
      if (nowMs - m.lastActiveMs < this.idleMs) continue;
      m.session?.close();
      this.clients.delete(key);
    }
  }

  /** Drops every client mapping (their streams ended with the connection). */
  reset(): void {
    for (const m of this.clients.values()) if (m.session !== null && !m.session.isClosed) m.session.close();
    this.clients.clear();
  }

  /** Closes the local socket and every stream. */
  close(): void {
    this.reset();
    this.socket.close();
  }
}
