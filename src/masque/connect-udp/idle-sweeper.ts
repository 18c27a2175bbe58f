/**
 * One coarse timer for the idle timeouts of all CONNECT-UDP sessions, instead
 * of a timer per session (house style; RFC 9298 §3.1 idle ≥ 2 minutes).
 */

/** Something with a coarse idle check. */
export interface IdleCheckable {
  /** Called with a monotonic time; returns true when it closed itself. */
  checkIdle(nowMs: number): boolean;
}

/** Calls checkIdle on every registered session every `intervalMs` with one unref'd interval timer. */
export class IdleSweeper {
  private readonly items = new Set<IdleCheckable>();
  private timer: NodeJS.Timeout | null = null;

  constructor(private readonly intervalMs = 10_000) {}

  /** Registers a session; starts the timer with the first one. */
  add(x: IdleCheckable): void {
    this.items.add(x);
    if (!this.timer) {
      this.timer = setInterval(() => this.sweep(performance.now()), this.intervalMs);
      this.timer.unref();
    }
  }

  /** Unregisters a session (on close); stops the timer with the last one. */
  remove(x: IdleCheckable): void {
    this.items.delete(x);
    if (this.items.size === 0 && this.timer) {
      clearInterval(this.timer);
      this.timer = null;
    }
  }

  /** Runs one check round at `nowMs` (tests call this with a fake clock). */
  sweep(nowMs: number): void {
    for (const x of [...this.items]) x.checkIdle(nowMs);
  }

  /** Sessions registered. */
  get size(): number {
    return this.items.size;
  }
}

let shared: IdleSweeper | null = null;
/** The process-wide sweeper used by sessions that do not bring their own. */
export function defaultIdleSweeper(): IdleSweeper {
  return (shared ??= new IdleSweeper());
}
