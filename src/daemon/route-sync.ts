/**
 * Keeps the kernel routes through one TUN in step with what the daemon
 * wants, per owner (a gateway session, the agent's tunnel). Only the latest
 * desired state of each owner is kept; one pass at a time diffs the whole
 * desired set against what is installed and applies the difference with one
 * `ip -force -batch` run, so however often owners change their minds, the
 * work waiting is bounded by the number of routes, not the number of changes.
 * Failed lines are retried on a timer (and by the next change).
 */
import type { Logger } from 'pino';
import type { Clock, ClockTimer, KernelConfig } from './ports.js';

/** Delay before a pass that had failures is retried (ms). */
export const ROUTE_RETRY_MS = 5_000;

/** Route bookkeeping of one TUN. */
export class RouteSync {
  /** Latest wanted routes per owner (owners with none are absent). */
  private readonly desired = new Map<object, ReadonlySet<string>>();
  /** Installed route (prefix text) → its owner. */
  private readonly installed = new Map<string, object>();
  private running: Promise<void> | null = null;
  private dirty = false;
  private retry: ClockTimer | null = null;
  private closed = false;
  /** `ip -batch` runs so far (for tests and status). */
  batches = 0;

  constructor(
    private readonly tun: string,
    private readonly kernel: KernelConfig,
    private readonly clock: Clock,
    private readonly log: Logger,
    private readonly what = 'routes',
  ) {}

  /** Routes currently installed for `owner`. */
  routesOf(owner: object): string[] {
    const out: string[] = [];
    for (const [r, o] of this.installed) if (o === owner) out.push(r);
    return out;
  }

  /** Every installed route (prefix text). */
  installedRoutes(): string[] {
    return [...this.installed.keys()];
  }

  /**
   * Makes `owner`'s wanted routes exactly `want` (empty: release all).
   * Resolves when a pass that saw this state has finished; never rejects
   * (failures are logged and retried after {@link ROUTE_RETRY_MS}).
   */
  set(owner: object, want: readonly string[]): Promise<void> {
    if (want.length === 0) this.desired.delete(owner);
    else this.desired.set(owner, new Set(want));
    return this.kick();
  }

  /** Stops retries and further passes (the TUN is closing; the kernel removes its routes). */
  close(): void {
    this.closed = true;
    this.retry?.cancel();
    this.retry = null;
  }

  private kick(): Promise<void> {
    this.dirty = true;
    this.running ??= this.loop().finally(() => {
      this.running = null;
    });
    return this.running;
  }

  private async loop(): Promise<void> {
    while (this.dirty && !this.closed) {
      this.dirty = false;
      await this.pass();
    }
  }

  /** One diff of desired against installed, applied in one batch. */
  private async pass(): Promise<void> {
    const target = new Map<string, object>();
    for (const [owner, routes] of this.desired) for (const r of routes) if (!target.has(r)) target.set(r, owner);
    const lines: string[] = [];
    const ops: Array<{ route: string; owner: object | null }> = [];
    for (const r of this.installed.keys()) {
      if (target.has(r)) continue;
      lines.push(`route del ${r} dev ${this.tun}`);
      ops.push({ route: r, owner: null });
    }
    for (const [r, owner] of target) {
      const had = this.installed.get(r);
      if (had !== undefined) {
        if (had !== owner) this.installed.set(r, owner); // same kernel route, new owner
        continue;
      }
      // `replace` is idempotent: a route left by an earlier run is adopted, not an error.
      lines.push(`route replace ${r} dev ${this.tun}`);
      ops.push({ route: r, owner });
    }
    if (lines.length === 0) return;
    this.batches++;
    let failed: Map<number, string>;
    try {
      failed = new Map((await this.kernel.ipBatch(lines)).map((f) => [f.index, f.reason]));
    } catch (e) {
      failed = new Map(lines.map((_, i) => [i, (e as Error).message]));
    }
    const added: string[] = [];
    const removed: string[] = [];
    for (let i = 0; i < ops.length; i++) {
      const { route, owner } = ops[i]!;
      const reason = failed.get(i);
      if (owner === null) {
        // A route that vanished by itself is gone too ("No such process").
        if (reason === undefined || /No such process/.test(reason)) {
          this.installed.delete(route);
          removed.push(route);
        }
      } else if (reason === undefined) {
        this.installed.set(route, owner);
        added.push(route);
      }
    }
    if (added.length + removed.length > 0) this.log.info({ tun: this.tun, added, removed }, `${this.what} updated`);
    if (failed.size > 0 && !this.closed) {
      const sample = [...failed].slice(0, 5).map(([i, reason]) => ({ line: lines[i], reason }));
      this.log.error({ tun: this.tun, failed: failed.size, sample, retryMs: ROUTE_RETRY_MS }, `changing ${this.what} failed; retrying`);
      this.retry ??= this.clock.after(ROUTE_RETRY_MS, () => {
        this.retry = null;
        void this.kick();
      });
    }
  }
}
