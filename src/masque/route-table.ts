/**
 * Longest-prefix-match routing table over IPv4 and IPv6 (binary tries in
 * typed arrays): maps a packet's destination to a value, e.g. the gateway
 * session that owns an assigned address or an advertised prefix.
 */
import { formatPrefix, type IpPrefix } from '../packet/ip-address.js';

class Trie {
  c0: Int32Array;
  c1: Int32Array;
  val: Int32Array;
  used = 1;

  constructor(cap: number) {
    this.c0 = new Int32Array(cap);
    this.c1 = new Int32Array(cap);
    this.val = new Int32Array(cap).fill(-1);
  }

  private grow(): void {
    const cap = this.c0.length * 2;
    const c0 = new Int32Array(cap);
    const c1 = new Int32Array(cap);
    const val = new Int32Array(cap).fill(-1);
    c0.set(this.c0);
    c1.set(this.c1);
    val.set(this.val);
    this.c0 = c0;
    this.c1 = c1;
    this.val = val;
  }

  /** Node for the prefix, created when `create`; -1 if absent. */
  node(addr: Uint8Array, len: number, create: boolean): number {
    let n = 0;
    for (let i = 0; i < len; i++) {
      const bit = (addr[i >> 3]! >> (7 - (i & 7))) & 1;
      const arr = bit ? this.c1 : this.c0;
      let next = arr[n]!;
      if (next === 0) {
        if (!create) return -1;
        if (this.used === this.c0.length) this.grow();
        next = this.used++;
        (bit ? this.c1 : this.c0)[n] = next;
      }
      n = next;
    }
    return n;
  }

  /**
   * True when a value other than `s` sits on the path to the prefix's node
   * (a covering prefix) or anywhere below it (a more specific prefix).
   * Control-plane: walks the subtree.
   */
  overlapsOther(addr: Uint8Array, len: number, s: number): boolean {
    return this.othersOverlapping(addr, len, s, true).size > 0;
  }

  /**
   * Values other than `s` on the path to the prefix's node or below it
   * (stops at the first when `first`). Control-plane: walks the subtree.
   */
  othersOverlapping(addr: Uint8Array, len: number, s: number, first: boolean): Set<number> {
    const out = new Set<number>();
    let n = 0;
    for (let i = 0; ; i++) {
      const v = this.val[n]!;
      if (v >= 0 && v !== s) {
        out.add(v);
        if (first) return out;
      }
      if (i === len) break;
      const bit = (addr[i >> 3]! >> (7 - (i & 7))) & 1;
      n = bit ? this.c1[n]! : this.c0[n]!;
      if (n === 0) return out;
    }
    const stack = [this.c0[n]!, this.c1[n]!];
    while (stack.length > 0) {
      const m = stack.pop()!;
      if (m === 0) continue;
      const v = this.val[m]!;
      if (v >= 0 && v !== s) {
        out.add(v);
        if (first) return out;
      }
      stack.push(this.c0[m]!, this.c1[m]!);
    }
    return out;
  }

  /** Longest match for the address at buf[off] of `bits` bits; value index or -1. Allocation-free. */
  lookup(buf: Uint8Array, off: number, bits: number): number {
    let n = 0;
    let best = this.val[0]!;
    const c0 = this.c0;
    const c1 = this.c1;
    const val = this.val;
    for (let i = 0; i < bits; i++) {
      const bit = (buf[off + (i >> 3)]! >> (7 - (i & 7))) & 1;
      n = bit ? c1[n]! : c0[n]!;
      if (n === 0) break;
      const v = val[n]!;
      if (v >= 0) best = v;
    }
    return best;
  }
}

/**
 * LPM table from IP prefixes to values of type T. `add`/`remove` are
 * control-plane (they may allocate); `lookup4`/`lookup6`/`lookupDestination`
 * are allocation-free and read the address straight from the packet buffer.
 * Values are compared by identity. Not thread-safe (single event loop).
 */
export class RouteTable<T> {
  private v4 = new Trie(1024);
  private v6 = new Trie(1024);
  private readonly values: (T | undefined)[] = [];
  private readonly freeSlots: number[] = [];
  private readonly slotOf = new Map<T, number>();
  private readonly prefixesOf = new Map<T, Map<string, IpPrefix>>();
  private garbage = 0;
  private readonly rejectOverlap: boolean;

  /**
   * `overlap: 'reject'` (default) refuses a prefix that overlaps another
   * value's (what the gateway needs: a session's site is its own);
   * `'allow'` is a plain longest-prefix-match table.
   */
  constructor(opts: { readonly overlap?: 'reject' | 'allow' } = {}) {
    this.rejectOverlap = (opts.overlap ?? 'reject') === 'reject';
  }

  /** Number of prefixes installed. */
  get size(): number {
    let n = 0;
    for (const m of this.prefixesOf.values()) n += m.size;
    return n;
  }

  private slot(value: T): number {
    let s = this.slotOf.get(value);
    if (s === undefined) {
      s = this.freeSlots.pop() ?? this.values.length;
      this.values[s] = value;
      this.slotOf.set(value, s);
      this.prefixesOf.set(value, new Map());
    }
    return s;
  }

  /**
   * Installs `prefix → value`. Returns false (and changes nothing) when the
   * exact prefix belongs to a different value or, unless the table allows
   * overlap, when it overlaps one of a different value: a covering prefix,
   * or a more specific one inside it. Otherwise a more
   * specific prefix inside another session's site would win the
   * longest-prefix match and capture its traffic. The caller decides what
   * to do (e.g. refuse a second agent advertising the same site prefix).
   */
  add(prefix: IpPrefix, value: T): boolean {
    const trie = prefix.version === 4 ? this.v4 : this.v6;
    const s = this.slot(value);
    const exact = trie.node(prefix.address, prefix.prefixLength, false);
    const taken = exact >= 0 && trie.val[exact]! >= 0 && trie.val[exact] !== s;
    if (taken || (this.rejectOverlap && trie.overlapsOther(prefix.address, prefix.prefixLength, s))) {
      if (this.prefixesOf.get(value)!.size === 0) this.releaseSlot(value);
      return false;
    }
    const n = trie.node(prefix.address, prefix.prefixLength, true);
    trie.val[n] = s;
    this.prefixesOf.get(value)!.set(formatPrefix(prefix), prefix);
    return true;
  }

  /**
   * The values other than `value` whose prefixes overlap `prefix` (equal,
   * covering or inside it): who stands in the way of {@link add}. Control-plane.
   */
  ownersOverlapping(prefix: IpPrefix, value?: T): T[] {
    const trie = prefix.version === 4 ? this.v4 : this.v6;
    const self = value !== undefined ? (this.slotOf.get(value) ?? -2) : -2;
    return [...trie.othersOverlapping(prefix.address, prefix.prefixLength, self, false)].map((v) => this.values[v]!);
  }

  /** Removes `prefix` if it maps to `value`; returns whether it did. */
  remove(prefix: IpPrefix, value: T): boolean {
    const s = this.slotOf.get(value);
    if (s === undefined) return false;
    const trie = prefix.version === 4 ? this.v4 : this.v6;
    const n = trie.node(prefix.address, prefix.prefixLength, false);
    if (n < 0 || trie.val[n] !== s) return false;
    trie.val[n] = -1;
    const m = this.prefixesOf.get(value)!;
    m.delete(formatPrefix(prefix));
    if (m.size === 0) this.releaseSlot(value);
    if (++this.garbage > 4096) this.rebuild();
    return true;
  }

  /** Removes every prefix of `value` (e.g. when its session closes). */
  removeAll(value: T): void {
    const m = this.prefixesOf.get(value);
    if (!m) return;
    for (const p of [...m.values()]) this.remove(p, value);
  }

  /** Prefixes currently mapped to `value`. */
  prefixes(value: T): IpPrefix[] {
    return [...(this.prefixesOf.get(value)?.values() ?? [])];
  }

  private releaseSlot(value: T): void {
    const s = this.slotOf.get(value)!;
    this.slotOf.delete(value);
    this.prefixesOf.delete(value);
    this.values[s] = undefined;
    this.freeSlots.push(s);
  }

  private rebuild(): void {
    this.garbage = 0;
    this.v4 = new Trie(1024);
    this.v6 = new Trie(1024);
    for (const [value, m] of this.prefixesOf) {
      const s = this.slotOf.get(value)!;
      for (const p of m.values()) {
        const trie = p.version === 4 ? this.v4 : this.v6;
        trie.val[trie.node(p.address, p.prefixLength, true)] = s;
      }
    }
  }

  /** Longest-prefix match for the IPv4 address at buf[off..off+4). Allocation-free. */
  lookup4(buf: Uint8Array, off: number): T | undefined {
    const s = this.v4.lookup(buf, off, 32);
    return s < 0 ? undefined : this.values[s];
  }

  /** Longest-prefix match for the IPv6 address at buf[off..off+16). Allocation-free. */
  lookup6(buf: Uint8Array, off: number): T | undefined {
    const s = this.v6.lookup(buf, off, 128);
    return s < 0 ? undefined : this.values[s];
  }

  /** Route for the destination of the IP packet at buf[off..off+len); undefined for no route or a runt. Allocation-free. */
  lookupDestination(buf: Uint8Array, off: number, len: number): T | undefined {
    if (len < 1) return undefined;
    const v = buf[off]! >> 4;
    if (v === 4) return len >= 20 ? this.lookup4(buf, off + 16) : undefined;
    if (v === 6) return len >= 40 ? this.lookup6(buf, off + 24) : undefined;
    return undefined;
  }
}
