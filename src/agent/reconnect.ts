/**
 * The agent's reconnect schedule: a pure backoff function and the one timer
 * that waits it out.
 */
import type { Clock, ClockTimer } from '../daemon/ports.js';

/** Backoff settings (config `reconnect`). */
export interface BackoffConfig {
  readonly minDelayMs: number;
  readonly maxDelayMs: number;
  /** Fraction of each delay randomised: 0.2 = ±20 %. */
  readonly jitter: number;
}

/**
 * Delay before reconnect attempt `attempt` (0 = first after a loss):
 * min·2^attempt capped at max, then spread by ±jitter using `random` ∈ [0, 1).
 * Never negative.
 */
export function backoffDelayMs(attempt: number, c: BackoffConfig, random: number): number {
  const base = Math.min(c.maxDelayMs, c.minDelayMs * 2 ** Math.min(attempt, 30));
  return Math.max(0, Math.round(base * (1 + c.jitter * (2 * random - 1))));
}

/**
 * Least time between two immediate reconnects ({@link Reconnector.schedule}
 * with `immediate`). Within it the normal backoff applies, so a gateway that
 * accepts and then resets again and again cannot make the agent spin.
 */
export const IMMEDIATE_RECONNECT_SPACING_MS = 5_000;

/** Schedules one reconnect at a time; a success resets the attempt count. */
export class Reconnector {
  private attempt = 0;
  private timer: ClockTimer | null = null;
  private lastImmediateAt = -Infinity;

  constructor(
    private readonly config: BackoffConfig,
    private readonly clock: Clock,
    private readonly run: () => void,
    private readonly random: () => number = Math.random,
  ) {}

  /** True while a reconnect is waiting. */
  get pending(): boolean {
    return this.timer !== null;
  }

  /**
   * Schedules the next attempt unless one is waiting; returns its delay (or
   * -1 when one already waits). `immediate` (the tunnel was up and the
   * gateway answered with a stateless reset, RFC 9000 §10.3: it has no state
   * for us, so waiting cannot help) gives delay 0 for the first attempt after
   * a success, at most once per {@link IMMEDIATE_RECONNECT_SPACING_MS}.
   */
  schedule(immediate = false): number {
    if (this.timer !== null) return -1;
    const now = this.clock.now();
    const now0 = immediate && this.attempt === 0 && now - this.lastImmediateAt >= IMMEDIATE_RECONNECT_SPACING_MS;
    if (now0) this.lastImmediateAt = now;
    const delay = now0 ? 0 : backoffDelayMs(this.attempt, this.config, this.random());
    this.attempt++;
    this.timer = this.clock.after(delay, () => {
      this.timer = null;
      this.run();
    });
    return delay;
  }

  /** The tunnel is up: the next loss starts from the minimum delay again. */
  succeeded(): void {
    this.attempt = 0;
  }

  /** Attempts made since the last success. */
  get attempts(): number {
    return this.attempt;
  }

  cancel(): void {
    this.timer?.cancel();
    this.timer = null;
  }
}
