/**
 * CONNECT-UDP gateway session (RFC 9298): resolves and vets the target,
 * proxies payloads through a connected `node:dgram` socket, enforces the
 * payload limit, bounded pre-accept buffering and the idle timeout.
 */
import { H3Error } from '../../h3/errors.js';
import dgram from 'node:dgram';
import dns from 'node:dns';
import { readFileSync } from 'node:fs';
import type { TunnelStream, TunnelStreamHandler } from '../../h3/tunnel-stream.js';
import { MASQUE_HEADROOM } from '../connect-ip/datagram.js';
import { parseIp, type IpVersion } from '../../packet/ip-address.js';
import { DEFAULT_PROXY_NAME, refuse, type Refusal } from '../proxy-status.js';
import { ConnectUdpCounters, ConnectUdpDrop, MAX_UDP_PAYLOAD, udpPayloadOffset } from './counters.js';
import { localAddresses } from '../destination-policy.js';
import { prohibitedUdpDestination, type UdpTarget, type UdpTargetAllowance } from './request.js';
import { IdleSweeper, defaultIdleSweeper, type IdleCheckable } from './idle-sweeper.js';

/** RFC 9298 §3.1: UDP proxies keep idle mappings at least 2 minutes. */
export const MIN_UDP_IDLE_TIMEOUT_MS = 120_000;

/** A resolver returning every address of a name (node:dns `lookup` with `all: true` by default). */
export type UdpResolver = (host: string) => Promise<{ address: string; family: number }[]>;

/** Session events. */
export type ConnectUdpEvent = { readonly type: 'closed'; readonly error: number; readonly reason: string };

/** Options for {@link ConnectUdpGatewaySession}. */
export interface ConnectUdpGatewayOptions {
  /** From checkConnectUdpRequest. */
  readonly target: UdpTarget;
  /** Destination classes the operator allows despite RFC 9298 §7 (default none). */
  readonly allow?: UdpTargetAllowance;
  /** The gateway's own addresses, refused as targets; default every address of this host's interfaces. */
  readonly ownAddresses?: readonly Uint8Array[];
  readonly resolve?: UdpResolver;
  /**
   * Operator policy for each candidate address (after resolution, before
   * connecting): return null to allow, or the reason it is refused
   * (→ 403 destination_ip_prohibited). Lets the gateway apply per-identity
   * policy to host-name targets, whose addresses are known only here.
   */
  readonly vetAddress?: (version: IpVersion, address: Uint8Array, port: number) => string | null;
  /** Idle timeout; raised to at least 2 minutes (RFC 9298 §3.1). */
  readonly idleTimeoutMs?: number;
  /** Datagrams / bytes buffered before the request is accepted (RFC 9298 §5); default 32 / 64 KiB. */
  readonly maxPreAcceptDatagrams?: number;
  readonly maxPreAcceptBytes?: number;
  readonly proxyName?: string;
  /** Shared sweeper for idle checks (one timer for all sessions); null = the caller calls checkIdle itself. */
  readonly sweeper?: IdleSweeper | null;
  readonly onEvent?: (e: ConnectUdpEvent) => void;
}

/** Result of {@link ConnectUdpGatewaySession.open}: answer 200 and start, or the refusal to send. */
export type UdpOpenResult = { readonly ok: true; readonly address: string; readonly port: number; readonly family: IpVersion } | Refusal;

const SLOTS = 64;
const SLOT_BYTES = 2048;

let pmtuDefault: boolean | undefined;
/** Whether the kernel sets DF on UDP by default (net.ipv4.ip_no_pmtu_disc = 0 → IP_PMTUDISC_WANT). Node's dgram cannot set IP_MTU_DISCOVER itself. */
export function kernelSetsDf(): boolean {
  if (pmtuDefault === undefined) {
    try {
      pmtuDefault = readFileSync('/proc/sys/net/ipv4/ip_no_pmtu_disc', 'utf8').trim() === '0';
    } catch {
      pmtuDefault = false;
    }
  }
  return pmtuDefault;
}

/**
 * The gateway's end of one CONNECT-UDP stream. Attach it as the stream
 * handler when the request arrives, `await open()`, then answer 2xx (or the
 * refusal's status with its Proxy-Status). Payloads received before `open`
 * succeeds are buffered (bounded) and sent once the socket is connected.
 */
export class ConnectUdpGatewaySession implements TunnelStreamHandler, IdleCheckable {
  readonly counters = new ConnectUdpCounters();
  private socket: dgram.Socket | null = null;
  private state: 'pending' | 'open' | 'closed' = 'pending';
  private pre: Uint8Array[] = [];
  private preBytes = 0;
  private readonly out = new Uint8Array(MASQUE_HEADROOM + MAX_UDP_PAYLOAD);
  private readonly slotBufs: Buffer[] = [];
  private readonly slotFree: number[] = [];
  private readonly slotDone: ((err: Error | null) => void)[] = [];
  private readonly onBigSent: (err: Error | null) => void;
  private active = true;
  private lastActiveMs = -1;
  readonly idleTimeoutMs: number;
  private readonly sweeper: IdleSweeper | null;
  private readonly onEvent: (e: ConnectUdpEvent) => void;

  constructor(
    /** The request stream (owned by HTTP/3). */
    readonly stream: TunnelStream,
    private readonly opts: ConnectUdpGatewayOptions,
  ) {
    this.idleTimeoutMs = Math.max(MIN_UDP_IDLE_TIMEOUT_MS, opts.idleTimeoutMs ?? MIN_UDP_IDLE_TIMEOUT_MS);
    this.sweeper = opts.sweeper === undefined ? defaultIdleSweeper() : opts.sweeper;
    this.onEvent = opts.onEvent ?? (() => {});
    const backing = Buffer.allocUnsafeSlow(SLOTS * SLOT_BYTES);
    for (let i = 0; i < SLOTS; i++) {
      this.slotBufs.push(backing.subarray(i * SLOT_BYTES, (i + 1) * SLOT_BYTES));
      this.slotFree.push(i);
      // One callback per slot, created once: no per-datagram closures.
      this.slotDone.push((err) => {
        this.slotFree.push(i);
        if (err) this.onSendError(err);
      });
    }
    this.onBigSent = (err) => {
      if (err) this.onSendError(err);
    };
  }

  /**
   * Resolves the target, applies the RFC 9298 §7 destination policy and
   * connects the UDP socket — all before the gateway replies (§3.1).
   * Resolves to the address used, or to the refusal to answer with
   * (403 destination_ip_prohibited, 502 dns_error / destination_ip_unroutable).
   */
  async open(): Promise<UdpOpenResult> {
    const name = this.opts.proxyName ?? DEFAULT_PROXY_NAME;
    const t = this.opts.target;
    let candidates: { address: string; family: number }[];
    if (t.ip) {
      candidates = [{ address: t.host, family: t.ip.version }];
    } else {
      try {
        candidates = await (this.opts.resolve ?? defaultResolve)(t.host);
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code ?? 'ERROR';
        return this.refuseAndClose(refuse(502, 'dns_error', `resolving ${t.host} failed: ${code}`, name, { rcode: code === 'ENOTFOUND' ? 'NXDOMAIN' : code }));
      }
      if (candidates.length === 0) return this.refuseAndClose(refuse(502, 'dns_error', `no addresses for ${t.host}`, name));
    }
    if (this.closedNow()) return refuse(400, 'http_request_error', 'stream closed before the target was resolved', name);
    const own = this.opts.ownAddresses ?? localAddresses();
    let chosen: { address: string; family: IpVersion } | null = null;
    let why = '';
    for (const c of candidates) {
      const ip = parseIp(c.address);
      if (!ip) continue;
      const bad = prohibitedUdpDestination(ip.version, ip.address, this.opts.allow, own) ?? this.opts.vetAddress?.(ip.version, ip.address, t.port) ?? null;
      if (bad) {
        why = `${c.address}: ${bad}`;
        continue;
      }
      chosen = { address: c.address, family: ip.version };
      break;
    }
    if (!chosen) return this.refuseAndClose(refuse(403, 'destination_ip_prohibited', why || 'no usable address', name));
    try {
      this.socket = await connectSocket(chosen.address, t.port, chosen.family);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code ?? 'ERROR';
      return this.refuseAndClose(refuse(502, 'destination_ip_unroutable', `connect ${chosen.address}:${t.port} failed: ${code}`, name));
    }
    if (this.closedNow()) {
      this.socket.close();
      this.socket = null;
      return refuse(400, 'http_request_error', 'stream closed while connecting', name);
    }
    this.socket.on('message', (msg) => this.fromTarget(msg));
    this.socket.on('error', (err) => this.onSocketError(err));
    this.state = 'open';
    this.sweeper?.add(this);
    for (const p of this.pre) this.toTarget(p, 0, p.length);
    this.pre = [];
    this.preBytes = 0;
    return { ok: true, address: chosen.address, port: t.port, family: chosen.family };
  }

  /** True once the stream ended or the session was closed. */
  get isClosed(): boolean {
    return this.state === 'closed';
  }

  /** State re-read after an await (the stream may have ended meanwhile). */
  private closedNow(): boolean {
    return this.state === 'closed';
  }

  private refuseAndClose(r: Refusal): Refusal {
    this.pre = [];
    this.preBytes = 0;
    this.state = 'closed';
    return r;
  }

  /** @internal RFC 9297 §3.2: CONNECT-UDP defines no capsules; all are skipped. */
  onCapsule(_type: number, _value: Uint8Array): void {
    this.counters.capsulesSkipped++;
  }

  /** @internal An HTTP Datagram from the client. */
  onDatagram(buf: Uint8Array, offset: number, length: number): void {
    const c = this.counters;
    const p = udpPayloadOffset(c, this.state === 'closed', buf, offset, length);
    if (p < 0) return;
    const n = offset + length - p;
    // RFC 9298 §5: a UDP payload above 65,527 bytes → abort the request stream.
    if (n > MAX_UDP_PAYLOAD) {
      this.fail(`UDP payload of ${n} bytes exceeds ${MAX_UDP_PAYLOAD} (RFC 9298 §5)`, H3Error.H3_DATAGRAM_ERROR);
      return;
    }
    if (this.state === 'pending') {
      const maxN = this.opts.maxPreAcceptDatagrams ?? 32;
      const maxB = this.opts.maxPreAcceptBytes ?? 65_536;
      if (this.pre.length >= maxN || this.preBytes + n > maxB) {
        c.drops[ConnectUdpDrop.PREACCEPT_FULL]++;
        return;
      }
      this.pre.push(buf.slice(p, p + n));
      this.preBytes += n;
      return;
    }
    this.toTarget(buf, p, n);
  }

  private toTarget(buf: Uint8Array, off: number, n: number): void {
    const s = this.socket!;
    this.active = true;
    const c = this.counters;
    // node:dgram keeps the buffer until the send completes: copy into a free slot (or, for large payloads, a fresh buffer).
    if (n <= SLOT_BYTES && this.slotFree.length > 0) {
      const i = this.slotFree.pop()!;
      const b = this.slotBufs[i]!;
      b.set(buf.subarray(off, off + n), 0);
      s.send(b, 0, n, this.slotDone[i]);
    } else {
      s.send(Buffer.from(buf.subarray(off, off + n)), 0, n, this.onBigSent);
    }
    c.datagramsSent++;
    c.bytesSent += n;
  }

  private fromTarget(msg: Buffer): void {
    if (this.state !== 'open') return;
    this.active = true;
    const c = this.counters;
    const n = msg.length;
    if (n + 1 > this.stream.maxDatagramPayload()) {
      c.drops[ConnectUdpDrop.TOO_BIG]++;
      return;
    }
    const out = this.out;
    out[MASQUE_HEADROOM - 1] = 0; // RFC 9298 §5: Context ID 0 = UDP payload
    out.set(msg, MASQUE_HEADROOM);
    if (!this.stream.sendDatagram(out, MASQUE_HEADROOM - 1, n + 1)) {
      c.drops[ConnectUdpDrop.SEND_FAILED]++;
      return;
    }
    c.datagramsReceived++;
    c.bytesReceived += n;
  }

  private onSendError(err: Error): void {
    const code = (err as NodeJS.ErrnoException).code;
    this.counters.drops[code === 'ECONNREFUSED' ? ConnectUdpDrop.TARGET_REFUSED : ConnectUdpDrop.SOCKET_ERROR]++;
  }

  private onSocketError(err: Error): void {
    const code = (err as NodeJS.ErrnoException).code;
    // ICMP port unreachable surfaces as ECONNREFUSED on a connected socket: transient for UDP, counted.
    if (code === 'ECONNREFUSED') {
      this.counters.drops[ConnectUdpDrop.TARGET_REFUSED]++;
      return;
    }
    // RFC 9298 §3.1: the socket died → close the stream.
    this.fail(`socket error ${code ?? err.message}`, H3Error.H3_CONNECT_ERROR);
  }

  /** @internal The stream ended: close the socket. */
  onClose(error: number): void {
    if (this.state === 'closed' && !this.socket) return;
    this.teardown();
    this.onEvent({ type: 'closed', error, reason: 'stream ended' });
  }

  /**
   * Idle check, called by the shared sweeper (or the daemon) with a
   * monotonic time: closes the session when no payload moved either way for
   * idleTimeoutMs. Returns true when it closed.
   */
  checkIdle(nowMs: number): boolean {
    if (this.state !== 'open') return false;
    if (this.active || this.lastActiveMs < 0) {
      this.active = false;
      this.lastActiveMs = nowMs;
      return false;
    }
    if (nowMs - this.lastActiveMs < this.idleTimeoutMs) return false;
    this.fail(`idle for ${nowMs - this.lastActiveMs} ms`, H3Error.H3_REQUEST_CANCELLED, true);
    return true;
  }

  /** Closes the stream cleanly and the socket. */
  close(): void {
    if (this.state === 'closed' && !this.socket) return;
    this.stream.close();
    this.teardown();
    this.onEvent({ type: 'closed', error: 0, reason: 'closed locally' });
  }

  private fail(reason: string, code: number, idle = false): void {
    if (this.state === 'closed' && !this.socket) return;
    if (idle) this.stream.close();
    else this.stream.abort(code);
    this.teardown();
    this.onEvent({ type: 'closed', error: idle ? 0 : code, reason });
  }

  private teardown(): void {
    this.state = 'closed';
    this.pre = [];
    this.preBytes = 0;
    this.sweeper?.remove(this);
    if (this.socket) {
      const s = this.socket;
      this.socket = null;
      try {
        s.close();
      } catch {
        // already closed by an error
      }
    }
  }

  /** The connected local socket address (for logs and tests); null before open. */
  localAddress(): { address: string; port: number } | null {
    return this.socket ? this.socket.address() : null;
  }
}

const defaultResolve: UdpResolver = (host) => dns.promises.lookup(host, { all: true, verbatim: true });

function connectSocket(address: string, port: number, family: IpVersion): Promise<dgram.Socket> {
  return new Promise((resolve, reject) => {
    const s = dgram.createSocket({ type: family === 4 ? 'udp4' : 'udp6' });
    const onErr = (e: Error) => {
      s.close();
      reject(e);
    };
    s.once('error', onErr);
    s.connect(port, address, () => {
      s.off('error', onErr);
      resolve(s);
    });
  });
}
