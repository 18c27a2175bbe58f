/**
 * The admin `/capture` endpoint: checks that capture is enabled and the
 * caller may use it, parses the filter from the query, runs the daemon's
 * {@link CaptureTap} and streams its packets as pcapng (one interface per
 * tunnel end and direction), ending with interface statistics (drops).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { parseIp, parsePrefixOrReason, type IpPrefix } from '../packet/ip-address.js';
import { enhancedPacketLength, interfaceDescriptionBlock, interfaceStatisticsBlock, sectionHeaderBlock, writeEnhancedPacket } from '../pcap/pcapng-writer.js';
import { LinkType } from '../pcap/capture-reader.js';
import { tapInterfaceNames, type CaptureFilter, type CaptureProtocol, type CaptureTap } from './capture-tap.js';
import { MTUN_VERSION } from '../version.js';

/** `admin.capture` from the config. */
export interface CaptureConfig {
  /** Off unless set: captures carry packet payloads. */
  readonly enabled: boolean;
  /** Serve captures to non-loopback callers too (default: loopback only). */
  readonly allowRemote: boolean;
  /** Ring size while the reader is slower than the traffic; beyond it packets are dropped and counted. */
  readonly queueBytes: number;
  readonly queuePackets: number;
}

/** Defaults of a capture request; each can be lowered (or raised within the maxima) per request. */
export const CAPTURE_DEFAULTS = { snapLenBytes: 65_535, maxPackets: 100_000, maxBytes: 256 * 1024 * 1024 } as const;
const MAX_PACKETS = 100_000_000;
const MAX_BYTES = 64 * 1024 * 1024 * 1024;
const MAX_SECONDS = 86_400;
/** How often the ring is drained into the response. */
const DRAIN_INTERVAL_MS = 10;
/** Largest response chunk written at once. */
const CHUNK_BYTES = 256 * 1024;

/** A parsed capture request. */
export interface CaptureRequest {
  readonly filter: CaptureFilter;
  /** Stop after this long, or null (caps or the caller end it). */
  readonly seconds: number | null;
}

/** Parses the query of `/capture`; returns an error sentence for bad input. Pure. */
export function parseCaptureQuery(q: URLSearchParams): CaptureRequest | string {
  const known = new Set(['prefix', 'port', 'proto', 'snaplen', 'packets', 'bytes', 'seconds']);
  for (const k of q.keys()) if (!known.has(k)) return `unknown parameter "${k}" (expected ${[...known].join(', ')})`;
  let prefix: IpPrefix | undefined;
  const p = q.get('prefix');
  if (p !== null) {
    const ip = p.includes('/') ? null : parseIp(p);
    const r = ip !== null ? { version: ip.version, address: ip.address, prefixLength: ip.version === 4 ? 32 : 128 } : parsePrefixOrReason(p);
    if (typeof r === 'string') return `prefix: ${r}`;
    prefix = r;
  }
  const int = (name: string, min: number, max: number): number | undefined | string => {
    const v = q.get(name);
    if (v === null) return undefined;
    const n = Number(v);
    return /^\d+$/.test(v) && n >= min && n <= max ? n : `${name}: expected an integer ${min}-${max}, got ${JSON.stringify(v)}`;
  };
  const port = int('port', 1, 65_535);
  const snap = int('snaplen', 1, 65_535);
  const packets = int('packets', 1, MAX_PACKETS);
  const bytes = int('bytes', 1, MAX_BYTES);
  const seconds = int('seconds', 1, MAX_SECONDS);
  for (const v of [port, snap, packets, bytes, seconds]) if (typeof v === 'string') return v;
  const proto = q.get('proto');
  if (proto !== null && proto !== 'tcp' && proto !== 'udp' && proto !== 'icmp') return `proto: expected tcp, udp or icmp, got ${JSON.stringify(proto)}`;
  return {
    filter: {
      prefix,
      port: port as number | undefined,
      protocol: (proto ?? undefined) as CaptureProtocol | undefined,
      snapLenBytes: (snap as number | undefined) ?? CAPTURE_DEFAULTS.snapLenBytes,
      maxPackets: (packets as number | undefined) ?? CAPTURE_DEFAULTS.maxPackets,
      maxBytes: (bytes as number | undefined) ?? CAPTURE_DEFAULTS.maxBytes,
    },
    seconds: (seconds as number | undefined) ?? null,
  };
}

/** Whether a peer address is loopback (IPv4 127/8, ::1, or IPv4-mapped 127/8). */
export function isLoopbackAddress(a: string | undefined): boolean {
  if (a === undefined) return false;
  const v4 = a.startsWith('::ffff:') ? a.slice(7) : a;
  return v4.startsWith('127.') || a === '::1';
}

/** A running capture response; {@link finish} ends it (statistics written) at most once. */
export interface CaptureSession {
  finish(): void;
}

/**
 * Answers one `/capture` request: 403 when capture is disabled or the
 * caller is not loopback (unless allowed), 400 for a bad filter, 409 when
 * a capture is already running; otherwise streams pcapng until a cap, the
 * time limit, the caller leaving, or {@link CaptureSession.finish}.
 * `onDone` is called once when the stream has ended.
 */
export function serveCapture(
  cfg: CaptureConfig, tap: CaptureTap, reporter: string, req: IncomingMessage, res: ServerResponse,
  reject: (code: number, message: string) => void, onDone: (s: CaptureSession) => void,
): CaptureSession | null {
  if (!cfg.enabled) {
    reject(403, 'capture is disabled on this daemon (set admin.capture.enabled: true in its config)');
    return null;
  }
  if (!cfg.allowRemote && !isLoopbackAddress(req.socket.remoteAddress)) {
    reject(403, `capture is served to loopback callers only, not ${req.socket.remoteAddress ?? 'unknown'} (admin.capture.allowRemote: false)`);
    return null;
  }
  const parsed = parseCaptureQuery(new URL(req.url ?? '/', 'http://admin').searchParams);
  if (typeof parsed === 'string') {
    reject(400, `capture: ${parsed}`);
    return null;
  }
  if (tap.busy) {
    reject(409, 'capture: another capture is running on this daemon (one at a time)');
    return null;
  }
  const { filter } = parsed;
  tap.start(filter, cfg);
  const startMs = Date.now();
  const names = tapInterfaceNames(reporter);
  res.statusCode = 200;
  res.setHeader('Content-Type', 'application/x-pcapng');
  res.setHeader('Cache-Control', 'no-store');
  res.write(Buffer.concat([
    sectionHeaderBlock(`mtun ${MTUN_VERSION}`, `mtun ${reporter} tunnel capture`),
    // RFC 9484 §6: the tunnel carries full IP packets, so the link type is raw IP.
    interfaceDescriptionBlock(LinkType.RAW, filter.snapLenBytes, names[0], `IP packets read from the ${reporter}'s TUN and sent into the tunnel`),
    interfaceDescriptionBlock(LinkType.RAW, filter.snapLenBytes, names[1], `IP packets received from the tunnel and written to the ${reporter}'s TUN`),
  ]));
  let paused = false;
  let done = false;
  const deadline = parsed.seconds === null ? Infinity : startMs + parsed.seconds * 1000;
  const session: CaptureSession = {
    finish: () => {
      if (done) return;
      done = true;
      clearInterval(timer);
      // What is still queued goes out even past the response's high-water mark (the ring bounds it).
      pump(true);
      const endMs = Date.now();
      const stats = [0, 1].map((i) => interfaceStatisticsBlock(i, { startMs, endMs, received: tap.matched[i]!, dropped: tap.dropped[i]! }));
      tap.stop();
      if (!res.destroyed) res.end(Buffer.concat(stats));
      onDone(session);
    },
  };
  const emitInto = { chunk: Buffer.alloc(0), used: 0 };
  const emit = (ifaceId: number, tsMs: number, arena: Buffer, off: number, capLen: number, origLen: number): void => {
    emitInto.used = writeEnhancedPacket(emitInto.chunk, emitInto.used, ifaceId, tsMs, arena, off, capLen, origLen);
  };
  /** Moves queued packets into the response while it accepts them. */
  const pump = (force = false): void => {
    while ((force || !paused) && !res.destroyed && tap.pending > 0) {
      emitInto.chunk = Buffer.allocUnsafe(CHUNK_BYTES);
      emitInto.used = 0;
      while (tap.pending > 0 && emitInto.used + enhancedPacketLength(tap.nextCapLen) <= CHUNK_BYTES) tap.drain(1, emit);
      if (!res.write(emitInto.chunk.subarray(0, emitInto.used))) {
        // The reader is slower than the traffic: the ring fills and the tap counts its drops.
        paused = true;
        res.once('drain', () => {
          paused = false;
        });
      }
    }
  };
  const timer = setInterval(() => {
    pump(false);
    if (res.destroyed || (tap.ended !== null && tap.pending === 0) || Date.now() >= deadline) session.finish();
  }, DRAIN_INTERVAL_MS);
  res.once('close', () => session.finish());
  return session;
}
