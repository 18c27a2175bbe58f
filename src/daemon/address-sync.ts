/**
 * Keeps the addresses on a TUN equal to what the peer assigned (remote
 * access, RFC 9484 §4.7.1 ADDRESS_ASSIGN), and the SNAT table following
 * them, through the kernel-config port. Changes run one at a time, each
 * working from the latest assignment, so a burst of assignments costs at
 * most two runs.
 */
import type { Logger } from 'pino';
import type { KernelConfig } from './ports.js';

/** One assigned address, as prefix text (`10.200.0.2/32`) and bare address. */
export interface AssignedAddress {
  readonly prefix: string;
  readonly address: string;
  readonly version: 4 | 6;
}

/** Address and SNAT state of one TUN. */
export class AddressSync {
  private readonly onTun = new Set<string>();
  /** The SNAT rules installed ("v4|v6"), or null. */
  private snatKey: string | null = null;
  private want: readonly AssignedAddress[] = [];
  private running: Promise<void> | null = null;
  private dirty = false;

  constructor(
    private readonly tun: string,
    private readonly kernel: KernelConfig,
    private readonly log: Logger,
    private readonly snat: boolean,
  ) {}

  /** Addresses now on the TUN (prefix text). */
  addresses(): string[] {
    return [...this.onTun];
  }

  /** Makes the TUN carry exactly `assigned`. Resolves when a run that saw it has finished; never rejects. */
  set(assigned: readonly AssignedAddress[]): Promise<void> {
    this.want = assigned;
    this.dirty = true;
    this.running ??= (async () => {
      while (this.dirty) {
        this.dirty = false;
        await this.apply(this.want);
      }
    })().finally(() => {
      this.running = null;
    });
    return this.running;
  }

  /** Removes the SNAT table if one was installed (stop). Addresses go with the TUN. */
  async close(): Promise<void> {
    await this.running;
    if (this.snatKey === null) return;
    this.snatKey = null;
    await this.kernel.removeSnat(this.tun).catch((e: Error) => this.log.warn({ err: e.message }, 'removing SNAT failed'));
  }

  private async apply(assigned: readonly AssignedAddress[]): Promise<void> {
    const want = assigned.map((a) => a.prefix);
    const add = want.filter((a) => !this.onTun.has(a));
    const del = [...this.onTun].filter((a) => !want.includes(a));
    const lines = [
      ...del.map((a) => `addr del ${a} dev ${this.tun}`),
      ...add.map((a) => `addr add ${a} dev ${this.tun}${a.includes(':') ? ' nodad' : ''}`),
    ];
    if (lines.length > 0) {
      let failed: Map<number, string>;
      try {
        failed = new Map((await this.kernel.ipBatch(lines)).map((f) => [f.index, f.reason]));
      } catch (e) {
        failed = new Map(lines.map((_, i) => [i, (e as Error).message]));
      }
      // A removal that failed is no longer ours either way; an addition that failed is not on the TUN.
      del.forEach((a, i) => {
        if (failed.has(i)) this.log.warn({ address: a, err: failed.get(i) }, 'removing an old assigned address failed');
        this.onTun.delete(a);
      });
      add.forEach((a, j) => {
        const why = failed.get(del.length + j);
        if (why === undefined) this.onTun.add(a);
        else this.log.error({ address: a, err: why }, 'configuring an assigned address failed');
      });
      this.log.info({ added: add, removed: del }, 'assigned addresses configured');
    }
    if (!this.snat) return;
    const a4 = assigned.find((a) => a.version === 4)?.address ?? null;
    const a6 = assigned.find((a) => a.version === 6)?.address ?? null;
    const key = `${a4}|${a6}`;
    if ((a4 === null && a6 === null) || key === this.snatKey) return;
    try {
      await this.kernel.applySnat(this.tun, a4, a6);
      this.snatKey = key;
      this.log.info({ v4: a4, v6: a6 }, 'SNAT to the assigned addresses installed');
    } catch (e) {
      this.log.error({ err: (e as Error).message }, 'installing SNAT failed');
    }
  }
}
