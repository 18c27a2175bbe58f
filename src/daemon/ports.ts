/**
 * What a daemon is given instead of opening it itself (wireguard-go's
 * `NewDevice(tun, bind, logger)`): a TUN factory, the UDP socket, a
 * kernel-config port (routes, addresses, nftables) and a clock. The CLI
 * wires the real ones (`system-ports.ts`); the sim tier wires memory doubles.
 */
import type { Logger } from 'pino';
import type { UdpBatchSocket } from '../net/udp.js';
import type { TunDevice } from '../tun/tun.js';

/** What a daemon asks of a TUN factory. */
export interface TunRequest {
  /** Interface name (`%d` lets the kernel number it). */
  readonly name?: string;
  readonly mtu: number;
  /** Routes through the device from the start (the gateway's address pools). */
  readonly routes?: readonly string[];
  readonly offload?: boolean;
  readonly txQueueLen?: number;
}

/** A TUN the daemon owns once the factory returns it: it closes it on stop. */
export interface OwnedTun extends TunDevice {
  readonly closed: boolean;
}

/** Opens a configured TUN device; rejects with `tun: …` naming what failed. */
export type TunFactory = (req: TunRequest) => Promise<OwnedTun>;

/** One failed line of an `ip -batch` run. */
export interface IpBatchFailure {
  /** Index into the lines passed. */
  readonly index: number;
  readonly reason: string;
}

/**
 * Kernel configuration the daemons change (iproute2 and nftables today).
 * Every method resolves when done; none throws synchronously.
 */
export interface KernelConfig {
  /**
   * Runs every line (`route replace …`, `addr add …`) in one batch,
   * continuing past failures (`ip -force -batch -`). Resolves with the lines
   * that failed (empty: all applied).
   */
  ipBatch(lines: readonly string[]): Promise<IpBatchFailure[]>;
  /** Installs or replaces the remote-access SNAT table of `tun`; rejects with `agent: nft …`. */
  applySnat(tun: string, v4: string | null, v6: string | null): Promise<void>;
  /** Deletes the SNAT table of `tun` (no error when absent). */
  removeSnat(tun: string): Promise<void>;
  /** Installs or replaces the gateway's kernel limit on QUIC Initials to `port` (initial-limit.ts); rejects with `gateway: nft …`. */
  applyInitialLimit(port: number, packetsPerSecond: number): Promise<void>;
  /** Deletes it (no error when absent). */
  removeInitialLimit(port: number): Promise<void>;
  /** Initials it dropped so far. */
  initialLimitDrops(port: number): Promise<number>;
}

/** A cancellable timer handle from {@link Clock}. */
export interface ClockTimer {
  cancel(): void;
}

/** Time as the daemons see it; timers never keep the process alive. */
export interface Clock {
  /** Milliseconds since the epoch (may have a fraction: the system clock's resolution is 1 µs). */
  now(): number;
  /** Runs `fn` once after `ms`. */
  after(ms: number, fn: () => void): ClockTimer;
  /** Runs `fn` every `ms` until cancelled. */
  every(ms: number, fn: () => void): ClockTimer;
}

/** How far the monotonic clock may drift from the wall clock before {@link preciseNowMs} re-anchors to it, ms. */
const MAX_CLOCK_DRIFT_MS = 50;
/** How often {@link preciseNowMs} compares the two clocks, ms of monotonic time. */
const CLOCK_CHECK_INTERVAL_MS = 1_000;
let monoToWallMs = performance.timeOrigin;
let nextClockCheckMs = 0;

/**
 * Wall-clock time in ms with µs resolution: the monotonic clock
 * (performance.now) anchored to Date.now, compared once a second and
 * re-anchored when they drift more than 50 ms apart (NTP steps and slews).
 * Date.now alone has 1 ms resolution, too coarse for the flow tracker's RTT
 * samples of a few ms (issue #16: ±10 % of a 5 ms segment); the value is
 * rounded to whole µs, the resolution of pcapng timestamps, so a capture
 * and the tracker see the same times. Hot path: one performance.now().
 */
export function preciseNowMs(): number {
  const mono = performance.now();
  let t = monoToWallMs + mono;
  if (mono >= nextClockCheckMs) {
    nextClockCheckMs = mono + CLOCK_CHECK_INTERVAL_MS;
    const wall = Date.now();
    if (t - wall > MAX_CLOCK_DRIFT_MS || wall - t > MAX_CLOCK_DRIFT_MS) {
      monoToWallMs = wall - mono;
      t = wall;
    }
  }
  return Math.round(t * 1000) / 1000;
}

/** The real clock: {@link preciseNowMs} and unref'd Node timers. */
export const systemClock: Clock = {
  now: preciseNowMs,
  after(ms, fn) {
    const t = setTimeout(fn, ms);
    t.unref();
    return { cancel: () => clearTimeout(t) };
  },
  every(ms, fn) {
    const t = setInterval(fn, ms);
    t.unref();
    return { cancel: () => clearInterval(t) };
  },
};

/**
 * Everything a daemon's constructor receives. The daemon owns `udp` and every
 * TUN `openTun` returns (it closes them on stop); `kernel`, `clock` and `log`
 * stay the caller's.
 */
export interface DaemonIo {
  readonly openTun: TunFactory;
  readonly udp: UdpBatchSocket;
  readonly kernel: KernelConfig;
  readonly clock: Clock;
  readonly log: Logger;
  /**
   * Called once when the daemon can no longer move packets (a TUN poll or
   * read error): readiness is already 503 and the error logged. The CLI
   * stops the daemon and exits with code 3 so a supervisor restarts it.
   */
  readonly onFatal?: (e: Error) => void;
  /**
   * This host's own addresses, refused as tunnel destinations; read afresh
   * (`fresh`) once a second, and from a cache at session opens. Default:
   * the interfaces' addresses (`localAddresses`). A changed list must be a
   * new array, an unchanged one the same array.
   */
  readonly hostAddresses?: (fresh: boolean) => readonly Uint8Array[];
}
