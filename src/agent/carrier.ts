/**
 * The agent's connection to the gateway, whichever HTTP version carries it
 * (issue #15): a {@link Carrier} over QUIC + HTTP/3 or over TCP + TLS +
 * HTTP/2, the Happy-Eyeballs race between them ({@link raceCarriers}), and
 * the pure QUIC liveness verdict ({@link quicLooksDead}) that triggers the
 * fallback mid-session.
 */
import type { H3Connection } from '../h3/connection.js';
import { attachH3 } from '../h3/quic-binding.js';
import { H2Client, type H2ClientOptions } from '../h2/h2-client.js';
import type { TunnelTransport } from '../h2/transport-metrics.js';
import type { ConnectClientLike } from '../masque/h3-glue.js';
import type { QuicConnection } from '../quic/connection.js';
import type { QuicEndpoint } from '../quic/endpoint.js';
import type { Clock, ClockTimer } from '../daemon/ports.js';

/** What the agent does with its connection to the gateway, HTTP/3 or HTTP/2. */
export interface Carrier {
  readonly transport: TunnelTransport;
  /** Opens Extended CONNECT requests (the MASQUE glue's client). */
  readonly client: ConnectClientLike;
  readonly isClosed: boolean;
  /** Sends what was queued (QUIC: one send batch; HTTP/2 writes go out by themselves). */
  flush(): void;
  /** GOAWAY, then the connection ends once its streams have. */
  shutdown(): void;
  /** Closes now. */
  close(reason: string): void;
  /** Why it ended, for the 'tunnel down' log. */
  closeDetails(): Record<string, unknown>;
  /** QUIC packet counters (for {@link quicLooksDead}); null over HTTP/2. */
  packetCounts(): QuicPacketCounts | null;
  /** Smoothed RTT of the QUIC connection, ms (whole ms as the engine's path stats give it); null over HTTP/2. Control path: allocates. */
  rttMs(): number | null;
  /** The QUIC engine's handle of the connection, for the TUN thread to send on (daemon/tun-thread.ts); null over HTTP/2 or once closed. */
  engineHandle(): unknown;
  /** Counts DATAGRAM frames the TUN thread queued on this connection (its stats, as if sent through it). */
  noteDatagramsSent(n: number): void;
  /** Counts DATAGRAM frames the TUN thread took from this connection (its stats, as if received through it). */
  noteDatagramsReceived(n: number): void;
  /** The QUIC connection (for the endpoint's {@link QuicEndpoint.threadInput}); null over HTTP/2. */
  quic(): QuicConnection | null;
  /** An HTTP Datagram payload the TUN thread took from this connection, for HTTP/3 (counted as received). */
  receiveDatagram(payload: Uint8Array): void;
}

/** Events a carrier reports to the agent. */
export interface CarrierHooks {
  onGoaway(c: Carrier): void;
  /** The connection ended (also after close()). */
  onClosed(c: Carrier): void;
  /** Received data was handled (flush the TUN batch). */
  onReadable(): void;
}

/** A QUIC + HTTP/3 carrier; see {@link openH3}. */
class H3Carrier implements Carrier {
  readonly transport = 'h3' as const;
  client!: H3Connection;

  constructor(readonly conn: QuicConnection) {}

  get isClosed(): boolean {
    return this.conn.isClosed;
  }

  flush(): void {
    this.conn.flush();
  }

  shutdown(): void {
    this.client.shutdown();
    this.conn.flush();
  }

  close(reason: string): void {
    if (!this.conn.isClosed) this.conn.close(true, 0, reason);
  }

  closeDetails(): Record<string, unknown> {
    const i = this.conn.closeInfo;
    return { reason: i?.reason, code: i?.errorCode, byPeer: i?.byPeer, idle: i?.idleTimeout, statelessReset: i?.statelessReset === true, handlerError: this.conn.handlerError?.stack };
  }

  packetCounts(): QuicPacketCounts {
    const s = this.conn.stats();
    return { sent: s.sentPackets, recv: s.recvPackets, lost: s.lostPackets, inFlight: s.inFlightBytes };
  }

  rttMs(): number | null {
    return this.conn.stats().rttMs;
  }

  engineHandle(): unknown {
    return this.conn.isClosed ? null : this.conn.q.nativeHandle();
  }

  noteDatagramsSent(n: number): void {
    this.conn.noteDgramsSent(n);
  }

  noteDatagramsReceived(n: number): void {
    this.conn.noteDgramsRecv(n);
  }

  quic(): QuicConnection {
    return this.conn;
  }

  receiveDatagram(payload: Uint8Array): void {
    this.conn.noteDgramsRecv(1);
    this.client.receiveDatagram(payload, payload.length);
  }
}

/**
 * Starts a QUIC connection with HTTP/3 on `endpoint`; resolves once the
 * handshake completed, rejects when it fails or `signal` aborts it (the
 * connection is closed).
 */
export async function openH3(endpoint: QuicEndpoint, host: string, port: number, serverName: string, hooks: CarrierHooks, signal?: AbortSignal): Promise<Carrier> {
  const conn = endpoint.connect(host, port, serverName);
  signal?.addEventListener('abort', () => {
    if (!conn.isEstablished && !conn.isClosed) conn.close(true, 0, 'lost the transport race');
  });
  const c = new H3Carrier(conn);
  c.client = attachH3(conn, { onGoaway: () => hooks.onGoaway(c) }, (ev) => {
    if (ev === 'readable') hooks.onReadable();
    else if (ev === 'closed') hooks.onClosed(c);
  });
  await conn.whenEstablished();
  return c;
}

/** An HTTP/2 carrier; see {@link openH2}. */
class H2Carrier implements Carrier {
  readonly transport = 'h2' as const;
  private reason: string | null = null;

  constructor(readonly client: H2Client) {}

  get isClosed(): boolean {
    return this.client.isClosed;
  }

  flush(): void {}

  shutdown(): void {
    this.client.shutdown();
  }

  close(reason: string): void {
    this.client.close(reason);
  }

  noteClosed(reason: string): void {
    this.reason ??= reason;
  }

  closeDetails(): Record<string, unknown> {
    return { reason: this.reason };
  }

  packetCounts(): null {
    return null;
  }

  engineHandle(): null {
    return null;
  }

  noteDatagramsSent(): void {}

  noteDatagramsReceived(): void {}

  quic(): null {
    return null;
  }

  receiveDatagram(): void {}

  rttMs(): null {
    return null;
  }
}

/** Opens TCP + TLS 1.3 + HTTP/2 to the gateway; resolves once Extended CONNECT is allowed. */
export async function openH2(opts: H2ClientOptions, hooks: CarrierHooks): Promise<Carrier> {
  const client = await H2Client.connect({ ...opts, tunnel: { ...opts.tunnel, afterData: hooks.onReadable } });
  const c = new H2Carrier(client);
  client.onClose((reason) => {
    c.noteClosed(reason);
    if (reason.startsWith('GOAWAY')) hooks.onGoaway(c);
    hooks.onClosed(c);
  });
  return c;
}

/**
 * Happy Eyeballs between the transports (RFC 8305 §5 in spirit): `h3()`
 * starts at once; `h2()` starts after `delayMs`, or as soon as `h3()`
 * fails. The first to connect wins and a later winner is closed. Rejects
 * with both errors when both fail. `h2` null: HTTP/3 only.
 */
export function raceCarriers(
  h3: (signal: AbortSignal) => Promise<Carrier>,
  h2: ((signal: AbortSignal) => Promise<Carrier>) | null,
  delayMs: number,
  clock: Clock,
): Promise<Carrier> {
  return new Promise((resolve, reject) => {
    let winner: Carrier | null = null;
    const errors: string[] = [];
    let running = 0;
    let timer: ClockTimer | null = null;
    let h2Started = h2 === null;
    const aborts: AbortController[] = [];
    const settle = (p: Promise<Carrier>, name: TunnelTransport) => {
      running++;
      p.then((c) => {
        running--;
        if (winner !== null) {
          c.close('lost the transport race');
          return;
        }
        winner = c;
        timer?.cancel();
        // The other attempt stops now (a QUIC handshake into blocked UDP would retry for seconds).
        for (const a of aborts) a.abort();
        resolve(c);
      }, (e: Error) => {
        running--;
        errors.push(`${name}: ${e.message}`);
        if (winner !== null) return;
        if (!h2Started) startH2();
        else if (running === 0) reject(new Error(`no transport reached the gateway (${errors.join('; ')})`));
      });
    };
    const startH2 = () => {
      if (h2Started || winner !== null) return;
      h2Started = true;
      timer?.cancel();
      const a = new AbortController();
      aborts.push(a);
      settle(h2!(a.signal), 'h2');
    };
    const a3 = new AbortController();
    aborts.push(a3);
    settle(h3(a3.signal), 'h3');
    if (h2 !== null) timer = delayMs > 0 ? clock.after(delayMs, startH2) : (startH2(), null);
  });
}

/** QUIC packet counters of one connection (the engine's stats). */
export interface QuicPacketCounts {
  readonly sent: number;
  readonly recv: number;
  readonly lost: number;
  /** Bytes of ack-eliciting packets not yet acknowledged or declared lost. */
  readonly inFlight: number;
}

/** What {@link quicLooksDead} remembers between checks; start from {@link newQuicLiveness}. */
export interface QuicLiveness {
  /** Received-packet count at the last change, and when it changed. */
  recv: number;
  recvChangedAt: number;
  /** Sent-packet count when recv last changed. */
  sentAtChange: number;
  /** Recent (time, sent, lost) samples, oldest first, covering at most the window. */
  readonly samples: { at: number; sent: number; lost: number }[];
  /** When the last check ran (-1 before the first). */
  lastAt: number;
  /** Since when something ack-eliciting has been in flight with nothing received (-1: not so). */
  unansweredSince: number;
  /** When {@link quicPingDue} last asked for a PING, and the received count then. */
  pingAt: number;
  recvAtPing: number;
}

/** A fresh liveness state (for a new connection). */
export function newQuicLiveness(): QuicLiveness {
  return { recv: -1, recvChangedAt: 0, sentAtChange: 0, samples: [], lastAt: -1, unansweredSince: -1, pingAt: -Infinity, recvAtPing: -1 };
}

/**
 * Packets sent since the last one received before silence counts: one may be
 * a lone ACK (never answered, RFC 9000 §13.2.1); three means something
 * ACK-eliciting (data, PING, a probe) went unanswered.
 */
const MIN_UNANSWERED_PACKETS = 3;
/** Packets that must have been sent in the window before a loss ratio means anything. */
const MIN_WINDOW_PACKETS = 8;
/** Share of the window's sent packets declared lost that means the path drops everything we send. */
const DEAD_LOSS_RATIO = 0.8;

/**
 * Pure: QUIC looks dead when, over the last `deadAfterMs`, one of these held:
 * - nothing was received although at least 3 packets went out since the last
 *   one that was (data, PINGs, retransmissions: the path drops UDP both ways);
 * - nearly everything sent was declared lost (≥ 80 % of at least 8 packets:
 *   UDP is dropped towards the gateway while its packets still arrive);
 * - nothing was received while an ack-eliciting packet stayed in flight,
 *   unacknowledged: the gateway went silent after the agent's packets
 *   stopped reaching it (UDP dropped towards the gateway while the agent
 *   sends only ACKs and the PINGs of {@link quicPingDue}; the gateway's
 *   congestion window fills with packets it never hears acknowledged).
 *   ngtcp2 0.12 arms no probe timeout for DATAGRAM and PING packets, so no
 *   probe would come to break the silence.
 * Ordinary loss (a few percent, even 30 %) is not judged. An idle tunnel is
 * never judged (its keepalive's ACK ends the silence), nor a window in which
 * the checks themselves were late (the event loop stalled). Updates `l`.
 */
export function quicLooksDead(l: QuicLiveness, counts: QuicPacketCounts, now: number, deadAfterMs: number): boolean {
  // A stalled event loop (a check late by half the window) read no packets either: start over rather than judge the path.
  const stalled = l.lastAt >= 0 && now - l.lastAt > deadAfterMs / 2;
  l.lastAt = now;
  const w = l.samples;
  if (stalled) {
    w.length = 0;
    l.recv = counts.recv;
    l.recvChangedAt = now;
    l.sentAtChange = counts.sent;
    l.unansweredSince = -1;
  }
  w.push({ at: now, sent: counts.sent, lost: counts.lost });
  while (w.length > 1 && now - w[1]!.at >= deadAfterMs) w.shift();
  const first = w[0]!;
  if (now - first.at >= deadAfterMs) {
    const sent = counts.sent - first.sent;
    const lost = counts.lost - first.lost;
    if (sent >= MIN_WINDOW_PACKETS && lost >= DEAD_LOSS_RATIO * sent) return true;
  }
  if (counts.recv !== l.recv) {
    l.recv = counts.recv;
    l.recvChangedAt = now;
    l.sentAtChange = counts.sent;
    l.unansweredSince = counts.inFlight > 0 ? now : -1;
    return false;
  }
  if (counts.inFlight === 0) l.unansweredSince = -1;
  else if (l.unansweredSince < 0) l.unansweredSince = now;
  if (l.unansweredSince >= 0 && now - l.unansweredSince >= deadAfterMs) return true;
  return counts.sent - l.sentAtChange >= MIN_UNANSWERED_PACKETS && now - l.recvChangedAt >= deadAfterMs;
}

/**
 * Pure: whether the agent should send a PING now. A tunnel that only
 * receives sends only ACKs, which are never acknowledged (RFC 9000 §13.2.1),
 * so it would not learn that they stopped arriving. While packets arrive and
 * nothing ack-eliciting is in flight, one PING every `deadAfterMs / 2` gives
 * the gateway something to acknowledge (RFC 9000 §13.2.4), and
 * {@link quicLooksDead} a packet in flight whose answer it can miss. An
 * idle tunnel has its keepalives. Updates `l`.
 */
export function quicPingDue(l: QuicLiveness, counts: QuicPacketCounts, now: number, deadAfterMs: number): boolean {
  if (counts.recv === l.recvAtPing || counts.inFlight > 0 || now - l.pingAt < deadAfterMs / 2) return false;
  l.pingAt = now;
  l.recvAtPing = counts.recv;
  return true;
}
