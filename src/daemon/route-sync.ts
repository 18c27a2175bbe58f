/**
 * Keeps the kernel routes through one TUN in step with what the daemon
 * wants, per owner (a gateway session, the agent's tunnel). Changes run one
 * at a time in call order (no overlapping `ip` runs undoing each other), one
 * route per `ip` call so one failure does not hide the others; a failed add
 * is not recorded, so the next `set` retries it.
 */
import type { Logger } from 'pino';

/** What RouteSync needs from the TUN (NativeTun provides it). */
export interface RouteTarget {
  readonly name: string;
  readonly closed: boolean;
  addRoutes(routes: string[]): Promise<void>;
  removeRoutes(routes: string[]): Promise<void>;
}

/** Route bookkeeping of one TUN. */
export class RouteSync {
  /** Installed route (prefix text) → its owner. */
  private readonly installed = new Map<string, object>();
  private queue: Promise<void> = Promise.resolve();

  constructor(private readonly tun: RouteTarget, private readonly log: Logger) {}

  /** Routes currently installed for `owner`. */
  routesOf(owner: object): string[] {
    const out: string[] = [];
    for (const [r, o] of this.installed) if (o === owner) out.push(r);
    return out;
  }

  /**
   * Makes `owner`'s routes exactly `want`: removes the ones it no longer
   * wants, adds the missing ones. Resolves when this change is done (it
   * never rejects; failures are logged). Pass an empty list to release all.
   */
  set(owner: object, want: readonly string[], what = 'routes'): Promise<void> {
    const run = async (): Promise<void> => {
      if (this.tun.closed) return;
      const wanted = new Set(want);
      const added: string[] = [];
      const removed: string[] = [];
      for (const r of this.routesOf(owner)) {
        if (wanted.has(r)) continue;
        try {
          await this.tun.removeRoutes([r]);
          removed.push(r);
        } catch (e) {
          this.log.warn({ route: r, err: (e as Error).message }, `removing ${what} failed`);
        }
        // Either way it is no longer ours to manage (a route that vanished by itself is gone too).
        this.installed.delete(r);
      }
      for (const r of wanted) {
        if (this.installed.has(r)) continue;
        try {
          await this.tun.addRoutes([r]);
          this.installed.set(r, owner);
          added.push(r);
        } catch (e) {
          this.log.error({ route: r, err: (e as Error).message }, `installing ${what} failed; retried on the next change`);
        }
      }
      if (added.length + removed.length > 0) this.log.info({ tun: this.tun.name, added, removed }, `${what} updated`);
    };
    const p = this.queue.then(run, run);
    this.queue = p.catch(() => undefined);
    return p;
  }
}
