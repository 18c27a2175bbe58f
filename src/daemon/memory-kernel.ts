/**
 * An in-memory {@link KernelConfig} for tests and the sim tier: it applies
 * `ip -batch` route and address lines to sets the test can read, the way the
 * kernel would (route replace adopts, route del of a missing route fails),
 * fails chosen lines on demand, and counts runs. Each run completes on a
 * later turn of the event loop, like a child process.
 */
import type { IpBatchFailure, KernelConfig } from './ports.js';

/** See the module comment. */
export class MemoryKernel implements KernelConfig {
  /** Installed routes as `prefix dev name`. */
  readonly routes = new Set<string>();
  /** Interface addresses as `prefix dev name`. */
  readonly addresses = new Set<string>();
  /** SNAT tables: tun name → "v4|v6". */
  readonly snat = new Map<string, string>();
  /** `ipBatch` runs so far, and lines in them. */
  batches = 0;
  lines = 0;
  /** Return a reason to make a line fail (as the kernel's error text). */
  failLine: ((line: string) => string | null) | null = null;

  async ipBatch(lines: readonly string[]): Promise<IpBatchFailure[]> {
    this.batches++;
    await new Promise((r) => setTimeout(r, 1));
    const failed: IpBatchFailure[] = [];
    lines.forEach((line, index) => {
      this.lines++;
      const reason = this.failLine?.(line) ?? this.apply(line);
      if (reason !== null) failed.push({ index, reason });
    });
    return failed;
  }

  private apply(line: string): string | null {
    const m = /^(route|addr) (replace|add|del) (\S+) dev (\S+)/.exec(line);
    if (!m) return `memory kernel: cannot parse "${line}"`;
    const [, kind, op, prefix, dev] = m;
    const set = kind === 'route' ? this.routes : this.addresses;
    const key = `${prefix} dev ${dev}`;
    if (op === 'del') return set.delete(key) ? null : 'RTNETLINK answers: No such process';
    if (op === 'add' && set.has(key)) return 'RTNETLINK answers: File exists';
    set.add(key);
    return null;
  }

  /** Routes through `dev`, sorted, as prefixes. */
  routesVia(dev: string): string[] {
    return [...this.routes].filter((r) => r.endsWith(` dev ${dev}`)).map((r) => r.split(' ')[0]!).sort();
  }

  async applySnat(tun: string, v4: string | null, v6: string | null): Promise<void> {
    this.snat.set(tun, `${v4}|${v6}`);
  }

  async removeSnat(tun: string): Promise<void> {
    this.snat.delete(tun);
  }

  /** Kernel Initial limits: port → packets per second. */
  readonly initialLimits = new Map<number, number>();

  async applyInitialLimit(port: number, packetsPerSecond: number): Promise<void> {
    this.initialLimits.set(port, packetsPerSecond);
  }

  async removeInitialLimit(port: number): Promise<void> {
    this.initialLimits.delete(port);
  }

  async initialLimitDrops(): Promise<number> {
    return 0;
  }
}
