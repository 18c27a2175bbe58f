/**
 * JSON flow logs (pino): one record when a flow opens and one when it
 * closes, per end, carrying a join key so the agent's and the gateway's
 * records of the same flow can be matched.
 */
import pino, { type DestinationStream, type Logger } from 'pino';
import { IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP, type FlowCloseInfo, type FlowOpenInfo, type RttSummary } from './flow-types.js';
import type { Reporter } from './metrics.js';
import { formatHostPort } from '../packet/ip-address.js';
import { splitRttAtOneEnd, type SegmentRtt } from '../inspect/rtt-split.js';
import { TokenBucket } from '../lib/token-bucket.js';

/** Protocol name for logs: tcp, udp, icmp, ipv6-icmp, or the number as text. */
export function protocolName(p: number): string {
  switch (p) {
    case IPPROTO_TCP: return 'tcp';
    case IPPROTO_UDP: return 'udp';
    case IPPROTO_ICMP: return 'icmp';
    case IPPROTO_ICMPV6: return 'ipv6-icmp';
    default: return String(p);
  }
}

/**
 * The flow join key: `proto src:port>dst:port`, plus `#isn` (the
 * initiator's TCP initial sequence number) when known. Addresses are
 * preserved end to end in site-to-site mode, and the ISN is the same at both
 * ends, so for TCP the key is equal in the agent's and the gateway's records
 * and unique per connection. Without an ISN (UDP, ICMP), join on the key and
 * the nearest `first_seen` (see docs/telemetry.md).
 */
export function flowJoinKey(f: FlowOpenInfo): string {
  const base = `${protocolName(f.protocol)} ${formatHostPort(f.srcAddr, f.srcPort)}>${formatHostPort(f.dstAddr, f.dstPort)}`;
  return f.initiatorIsn === undefined ? base : `${base}#${f.initiatorIsn >>> 0}`;
}

/** Options for {@link FlowLog}. */
export interface FlowLogOptions {
  readonly reporter: Reporter;
  /** `-` for stdout, a file path (appended to, created 0640), or any pino destination stream. */
  readonly destination: string | DestinationStream;
  /** When false every method is a no-op. Default true. */
  readonly enabled?: boolean;
  /** Failed connections ({@link FlowOpenInfo.failed}) logged per second at most (token bucket, burst as large). Default 100. */
  readonly maxFailedPerSecond?: number;
}

/** Workload names of a flow's two ends (resolved by the caller). */
export interface FlowWorkloads {
  readonly source: string;
  readonly destination: string;
}

/**
 * Writes flow records as JSON lines. Called once at open and once at close
 * per flow (never per packet). After `close()` records are dropped.
 */
export class FlowLog {
  private readonly logger: Logger | null;
  private readonly dest: DestinationStream | null;
  private closed = false;
  /** The destination is a file this log opened (ended on shutdown), not stdout or a caller's stream. */
  private fileDest = false;
  /** Resolves once a file/stdout destination has opened (SonicBoom opens asynchronously). */
  private readonly ready: Promise<void>;

  /** Failed connections not logged because they came faster than maxFailedPerSecond. */
  suppressedFailed = 0;
  private readonly failedBucket: TokenBucket;

  constructor(opts: FlowLogOptions) {
    const failedRate = opts.maxFailedPerSecond ?? 100;
    this.failedBucket = new TokenBucket(failedRate, failedRate, 0);
    if (opts.enabled === false) {
      this.logger = null;
      this.dest = null;
      this.ready = Promise.resolve();
      return;
    }
    let dest: DestinationStream;
    if (typeof opts.destination === 'string') {
      const boom = pino.destination({ dest: opts.destination === '-' ? 1 : opts.destination, sync: false, mkdir: true, append: true });
      this.ready = new Promise((resolve) => {
        boom.once('ready', () => resolve());
        // An unwritable log file must not take the daemon down; records are lost and the error is reported once.
        let reported = false;
        boom.on('error', (err: Error) => {
          if (!reported) process.emitWarning(`telemetry: flow log ${String(opts.destination)}: ${err.message}`);
          reported = true;
          resolve();
        });
      });
      dest = boom;
      this.fileDest = opts.destination !== '-';
    } else {
      this.ready = Promise.resolve();
      dest = opts.destination;
    }
    this.dest = dest;
    this.logger = pino({
      base: { reporter: opts.reporter },
      timestamp: pino.stdTimeFunctions.isoTime,
      messageKey: 'msg',
      formatters: { level: (label) => ({ level: label }) },
    }, dest);
  }

  /**
   * Logs the open record of a flow. False when nothing was written (log
   * off, or a failed connection over the budget, counted in
   * {@link suppressedFailed}): then skip its close record too.
   */
  open(f: FlowOpenInfo, w: FlowWorkloads): boolean {
    if (this.logger === null || this.closed) return false;
    if (f.failed === true && !this.failedBucket.take(Date.now())) {
      this.suppressedFailed++;
      return false;
    }
    this.logger.info({ event: 'flow_open', ...common(f, w) }, 'flow open');
    return true;
  }


  /** Logs the close record of a flow with its final totals. */
  close(f: FlowOpenInfo, w: FlowWorkloads, c: FlowCloseInfo, handshakeRttMs: number | undefined): void {
    if (this.logger === null || this.closed) return;
    this.logger.info({
      event: 'flow_close',
      ...common(f, w),
      sni: c.sni,
      alpn: c.alpn,
      rtt_to_client: rttFields(c.rttToClient),
      rtt_to_server: rttFields(c.rttToServer),
      rtt_tunnel: rttFields(c.tunnelRtt),
      rtt_split: splitFields(f, c),
      quic_version: c.quicVersion,
      quic_handshake_rtt_ms: c.quicHandshakeRttMs,
      http_status: c.httpStatusClasses === undefined ? undefined : {
        '1xx': c.httpStatusClasses[0], '2xx': c.httpStatusClasses[1], '3xx': c.httpStatusClasses[2],
        '4xx': c.httpStatusClasses[3], '5xx': c.httpStatusClasses[4],
      },
      http_first_byte_ms: c.httpFirstByteMs,
      last_seen: new Date(c.lastSeenMs).toISOString(),
      duration_ms: Math.max(0, c.lastSeenMs - f.firstSeenMs),
      sent_bytes: c.sentBytes,
      received_bytes: c.receivedBytes,
      sent_packets: c.sentPackets,
      received_packets: c.receivedPackets,
      retransmits: c.retransmits,
      handshake_rtt_ms: handshakeRttMs,
      close_reason: c.reason,
      failed: c.failed === true,
    }, 'flow close');
  }

  /** Flushes buffered records (asynchronous destinations) and stops logging. Idempotent. */
  async shutdown(): Promise<void> {
    if (this.closed) return;
    await this.flush();
    this.closed = true;
    // A file destination is ended and its fd closed, so every record is on disk
    // when this resolves (flush alone can race an in-flight async write).
    const d = this.dest as { end?: () => void; once?: (ev: string, cb: () => void) => void; fd?: number; destroyed?: boolean } | null;
    if (d !== null && this.fileDest && typeof d.end === 'function' && typeof d.once === 'function' && !d.destroyed) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, 2000);
        d.once!('close', () => {
          clearTimeout(t);
          resolve();
        });
        d.once!('error', () => {
          clearTimeout(t);
          resolve();
        });
        d.end!();
      });
    }
  }

  /** Flushes buffered records to the destination. */
  async flush(): Promise<void> {
    const d = this.dest as { flush?: (cb?: (err?: Error) => void) => void } | null;
    if (d === null || typeof d.flush !== 'function' || this.closed) return;
    await this.ready;
    await new Promise<void>((resolve) => {
      try {
        d.flush!(() => resolve());
      } catch {
        resolve();
      }
    });
  }
}

function rttFields(r: RttSummary | undefined): Record<string, number> | undefined {
  return r === undefined ? undefined : { min_ms: r.minMs, smoothed_ms: r.smoothedMs, max_ms: r.maxMs, samples: r.samples };
}

function segFields(s: SegmentRtt | null): Record<string, number> | null {
  return s === null ? null : { min_ms: round3(s.minMs), smoothed_ms: round3(s.smoothedMs), max_ms: round3(s.maxMs) };
}

/** This end's client / tunnel / server split (src/inspect/rtt-split.ts), when it has its own segment and the tunnel's RTT. */
function splitFields(f: FlowOpenInfo, c: FlowCloseInfo): Record<string, unknown> | undefined {
  if (c.tunnelRtt === undefined || (c.rttToClient === undefined && c.rttToServer === undefined)) return undefined;
  const s = splitRttAtOneEnd(c.rttToClient ?? null, c.rttToServer ?? null, c.tunnelRtt, f.direction === 'outbound');
  return { client: segFields(s.client), tunnel: segFields(s.tunnel), server: segFields(s.server) };
}

function round3(x: number): number {
  return Math.round(x * 1000) / 1000;
}

function common(f: FlowOpenInfo, w: FlowWorkloads): Record<string, unknown> {
  return {
    flow_key: flowJoinKey(f),
    flow_id: `${flowJoinKey(f)}@${f.firstSeenMs}`,
    protocol: protocolName(f.protocol),
    src_addr: f.srcAddr,
    src_port: f.srcPort,
    dst_addr: f.dstAddr,
    dst_port: f.dstPort,
    direction: f.direction,
    peer_identity: f.peerIdentity,
    source_workload: w.source,
    destination_workload: w.destination,
    first_seen: new Date(f.firstSeenMs).toISOString(),
    initiator_isn: f.initiatorIsn,
    flow_join_id: f.joinId,
  };
}
