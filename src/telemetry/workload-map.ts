/**
 * Workload names for metric labels: a configured prefix → name map resolved
 * by longest-prefix match, so addresses never become label values.
 */
import { parseIp, prefixHasAddress, type IpPrefix } from '../packet/ip-address.js';

/** Name used when no configured prefix contains an address. */
export const UNKNOWN_WORKLOAD = 'unknown';

/** One configured entry (the shape of `telemetry.workloads` in the config). */
export interface WorkloadMapEntry {
  readonly prefix: IpPrefix;
  readonly name: string;
}

/**
 * Longest-prefix-match table from addresses to small integer workload ids.
 * Id 0 is always {@link UNKNOWN_WORKLOAD}; ids are stable for the table's
 * life, so callers may cache them. Lookups allocate nothing; the table is
 * meant to be consulted once per flow, not per packet.
 */
export class WorkloadMap {
  /** Workload names by id; `names[0]` is "unknown". */
  readonly names: readonly string[];
  private readonly v4: { prefix: IpPrefix; id: number }[] = [];
  private readonly v6: { prefix: IpPrefix; id: number }[] = [];

  constructor(entries: readonly WorkloadMapEntry[]) {
    const names = [UNKNOWN_WORKLOAD];
    const idOf = new Map<string, number>([[UNKNOWN_WORKLOAD, 0]]);
    for (const e of entries) {
      let id = idOf.get(e.name);
      if (id === undefined) {
        id = names.length;
        names.push(e.name);
        idOf.set(e.name, id);
      }
      (e.prefix.version === 4 ? this.v4 : this.v6).push({ prefix: e.prefix, id });
    }
    // Longest prefix first: the first match is the answer.
    this.v4.sort((a, b) => b.prefix.prefixLength - a.prefix.prefixLength);
    this.v6.sort((a, b) => b.prefix.prefixLength - a.prefix.prefixLength);
    this.names = names;
  }

  /** Workload id for a 4- or 16-byte address (IPv4-mapped IPv6 is matched as IPv4); 0 when unmatched. */
  lookup(addr: Uint8Array): number {
    if (addr.length === 16 && this.v4.length > 0 && isV4Mapped(addr)) addr = addr.subarray(12);
    const table = addr.length === 4 ? this.v4 : this.v6;
    for (let i = 0; i < table.length; i++) {
      if (prefixHasAddress(table[i]!.prefix, addr)) return table[i]!.id;
    }
    return 0;
  }

  /** Workload id for an address in text form; 0 when unmatched or not an address. */
  lookupText(addr: string): number {
    if (this.v4.length === 0 && this.v6.length === 0) return 0;
    const ip = parseIp(addr);
    return ip === null ? 0 : this.lookup(ip.address);
  }

  /** Workload name for an address in text form ("unknown" when unmatched). */
  nameOf(addr: string): string {
    return this.names[this.lookupText(addr)]!;
  }
}

function isV4Mapped(a: Uint8Array): boolean {
  for (let i = 0; i < 10; i++) if (a[i] !== 0) return false;
  return a[10] === 0xff && a[11] === 0xff;
}
