/**
 * IPv4 / IPv6 address pools for ADDRESS_ASSIGN (RFC 9484 §4.7.1): hands out
 * single addresses or aligned prefixes from a configured prefix.
 * Control-plane only (allocates). Leases are kept sorted by start, so a
 * lookup is a binary search and an allocation one pass over the leases
 * (a gateway with 10,000 sessions allocates in well under a millisecond).
 */
import { addrToBig, addressBits, bigToAddr, formatPrefix, parseIp, parsePrefix, type IpPrefix, type IpVersion } from '../packet/ip-address.js';

interface Lease {
  start: bigint;
  size: bigint;
  reserved: boolean;
  /** Who holds it (an identity, or a session object); null for reservations. */
  owner: unknown;
}

/** Default {@link AddressPoolOptions.maxLeasesPerOwner} (gateway config `pools.maxLeasesPerIdentity`). */
export const DEFAULT_MAX_LEASES_PER_OWNER = 4;

/** Options for {@link AddressPool}. */
export interface AddressPoolOptions {
  /** The pool, e.g. `10.89.0.0/16` or `fd00:89::/64`. */
  readonly prefix: string;
  /** Addresses never handed out (e.g. the gateway's own tunnel address). The pool's first address is always reserved. */
  readonly reserved?: readonly string[];
  /**
   * Shortest prefix a client may get; requests for shorter ones are raised
   * to it. Default one address (/32, /128): a client asking for ::/0 gets
   * one address, not a /64 of the pool (gateway config `pools.minPrefixLength`).
   */
  readonly minPrefixLength?: number;
  /** Leases one owner (identity) may hold at once across all its sessions; default {@link DEFAULT_MAX_LEASES_PER_OWNER}. */
  readonly maxLeasesPerOwner?: number;
  /** Lease only from this replica's share of the prefix (config `pools.slice`); default the whole prefix. */
  readonly slice?: PoolSlice;
}

/**
 * One replica's share of a pool (config `pools.slice`): the `index`-th of
 * `count` contiguous, equal-sized ranges (sizes differ by at most one
 * address when `count` does not divide the pool). Replicas with the same pool
 * and count and different indices never hand out the same address.
 */
export interface PoolSlice {
  readonly index: number;
  readonly count: number;
}

/**
 * The address range `[start, end)` of `slice` within `pool`. Throws
 * `masque: …` when the index is out of range or the slice would hold fewer
 * than 2 addresses (slice 0 loses the pool's first address to the reservation).
 */
export function sliceRange(pool: IpPrefix, slice: PoolSlice): { start: bigint; end: bigint } {
  const { index, count } = slice;
  if (!Number.isInteger(count) || count < 1 || !Number.isInteger(index) || index < 0 || index >= count) {
    throw new Error(`masque: pool slice ${index} of ${count} is out of range (expected 0 <= index < count)`);
  }
  const size = 1n << BigInt(addressBits(pool.version) - pool.prefixLength);
  const base = addrToBig(pool.address);
  const n = BigInt(count);
  const start = base + (size * BigInt(index)) / n;
  const end = base + (size * BigInt(index + 1)) / n;
  if (end - start < 2n) throw new Error(`masque: pool ${formatPrefix(pool)} is too small for ${count} slices (each needs at least 2 addresses)`);
  return { start, end };
}

/** The fewest aligned prefixes that exactly cover `[start, end)` (what is routed to the TUN for a slice). */
export function rangePrefixes(version: IpVersion, start: bigint, end: bigint): IpPrefix[] {
  const bits = addressBits(version);
  const out: IpPrefix[] = [];
  let c = start;
  while (c < end) {
    // Largest aligned block starting at c that fits in what is left.
    let hostBits = 0;
    while (hostBits < bits && (c & ((1n << BigInt(hostBits + 1)) - 1n)) === 0n && c + (1n << BigInt(hostBits + 1)) <= end) hostBits++;
    out.push({ version, address: bigToAddr(c, bits / 8), prefixLength: bits - hostBits });
    c += 1n << BigInt(hostBits);
  }
  return out;
}

/**
 * Leases addresses or prefixes out of one prefix. `allocate` honours a
 * preferred address when it is free and inside the pool, otherwise takes the
 * lowest free aligned block. Leases are returned with `release`.
 */
export class AddressPool {
  /** The configured pool (the whole prefix, also when this instance leases from a slice of it). */
  readonly pool: IpPrefix;
  /** What this instance leases from: the pool, or the prefixes covering its slice. Route these to the TUN. */
  readonly prefixes: readonly IpPrefix[];
  readonly version: IpVersion;
  private readonly start: bigint;
  private readonly end: bigint; // exclusive
  private readonly bits: number;
  private readonly minLen: number;
  /** Sorted by start; never overlapping. */
  private readonly leases: Lease[] = [];
  private readonly maxPerOwner: number;
  /** Live leases per owner (owners with none are absent). */
  private readonly perOwner = new Map<unknown, number>();

  /** Throws `masque: …` on a malformed prefix or reserved address, or a bad slice (configuration errors). */
  constructor(opts: AddressPoolOptions) {
    const p = parsePrefix(opts.prefix);
    if (!p) throw new Error(`masque: address pool ${JSON.stringify(opts.prefix)} is not a valid prefix (host bits must be zero)`);
    this.pool = p;
    this.version = p.version;
    this.bits = addressBits(p.version);
    const poolStart = addrToBig(p.address);
    const range = opts.slice !== undefined ? sliceRange(p, opts.slice) : { start: poolStart, end: poolStart + (1n << BigInt(this.bits - p.prefixLength)) };
    this.start = range.start;
    this.end = range.end;
    this.prefixes = opts.slice !== undefined ? rangePrefixes(p.version, this.start, this.end) : [p];
    this.minLen = Math.max(p.prefixLength, Math.min(this.bits, opts.minPrefixLength ?? this.bits));
    this.maxPerOwner = opts.maxLeasesPerOwner ?? DEFAULT_MAX_LEASES_PER_OWNER;
    // The pool's first (network) address is reserved so no client gets x.x.x.0 or the subnet-router anycast.
    if (poolStart === this.start) this.insert({ start: this.start, size: 1n, reserved: true, owner: null });
    for (const r of opts.reserved ?? []) {
      const ip = parseIp(r);
      if (!ip || ip.version !== p.version) throw new Error(`masque: reserved address ${JSON.stringify(r)} is not an IPv${p.version} address`);
      const a = addrToBig(ip.address);
      if (a >= this.start && a < this.end && !this.overlaps(a, 1n)) this.insert({ start: a, size: 1n, reserved: true, owner: null });
    }
  }

  /** Index of the first lease whose start is ≥ `s` (leases.length if none). */
  private lowerBound(s: bigint): number {
    const a = this.leases;
    let lo = 0;
    let hi = a.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (a[mid]!.start < s) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  private insert(l: Lease): void {
    this.leases.splice(this.lowerBound(l.start), 0, l);
  }

  /** The lease overlapping [s, s + size), if any (leases never overlap, so only the neighbours can). */
  private overlaps(s: bigint, size: bigint): Lease | undefined {
    const i = this.lowerBound(s);
    const next = this.leases[i];
    if (next !== undefined && next.start < s + size) return next;
    const prev = this.leases[i - 1];
    if (prev !== undefined && s < prev.start + prev.size) return prev;
    return undefined;
  }

  /**
   * Leases a prefix of `prefixLength` bits (32/128 = one address). A
   * `preferred` address (host bits zero) inside the pool is used if free.
   * Lengths shorter than the pool's minimum are raised to it. `owner`
   * (compared by identity: a string identity, or a session object) is held
   * to `maxLeasesPerOwner`. Returns null when the pool is exhausted or the
   * owner is at its cap.
   */
  allocate(prefixLength: number = this.bits, preferred?: Uint8Array, owner: unknown = null): IpPrefix | null {
    if (owner !== null && this.leasesOf(owner) >= this.maxPerOwner) return null;
    const len = Math.min(this.bits, Math.max(this.minLen, prefixLength));
    const size = 1n << BigInt(this.bits - len);
    if (preferred && preferred.length * 8 === this.bits) {
      const want = addrToBig(preferred);
      if (want !== 0n && want % size === 0n && want >= this.start && want + size <= this.end && !this.overlaps(want, size)) {
        return this.take(want, size, len, owner);
      }
    }
    // Lowest free aligned block: one pass over the sorted leases, trying the gap before each.
    let c = this.start;
    for (let i = 0; i <= this.leases.length && c + size <= this.end; i++) {
      const l = this.leases[i];
      if (l === undefined || c + size <= l.start) return this.take(c, size, len, owner);
      const next = l.start + l.size;
      if (next > c) c = ((next + size - 1n) / size) * size;
    }
    return null;
  }

  /** Live leases held by `owner`. */
  leasesOf(owner: unknown): number {
    return this.perOwner.get(owner) ?? 0;
  }

  private take(start: bigint, size: bigint, len: number, owner: unknown): IpPrefix {
    this.insert({ start, size, reserved: false, owner });
    this.perOwner.set(owner, this.leasesOf(owner) + 1);
    return { version: this.version, address: bigToAddr(start, this.bits / 8), prefixLength: len };
  }

  /** Returns a lease from {@link allocate}; false when it was not leased. */
  release(p: IpPrefix): boolean {
    if (p.version !== this.version) return false;
    const s = addrToBig(p.address);
    const size = 1n << BigInt(this.bits - p.prefixLength);
    const i = this.lowerBound(s);
    const l = this.leases[i];
    if (l === undefined || l.reserved || l.start !== s || l.size !== size) return false;
    this.leases.splice(i, 1);
    const n = this.leasesOf(l.owner) - 1;
    if (n > 0) this.perOwner.set(l.owner, n);
    else this.perOwner.delete(l.owner);
    return true;
  }

  /** Number of live leases (excluding reservations). */
  get leased(): number {
    let n = 0;
    for (const v of this.perOwner.values()) n += v;
    return n;
  }

  /** One-line description for status output. */
  describe(): string {
    const slice = this.prefixes.length === 1 && this.prefixes[0] === this.pool ? '' : ` (slice ${this.prefixes.map(formatPrefix).join(', ')})`;
    return `${formatPrefix(this.pool)}${slice} with ${this.leased} leases`;
  }
}
