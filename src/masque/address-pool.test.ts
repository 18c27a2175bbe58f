import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { addrToBig, addressBits, formatPrefix, parsePrefix, type IpPrefix } from '../packet/ip-address.js';
import { AddressPool, rangePrefixes, sliceRange } from './address-pool.js';

/** [start, end) of a prefix. */
function span(p: IpPrefix): [bigint, bigint] {
  const s = addrToBig(p.address);
  return [s, s + (1n << BigInt(addressBits(p.version) - p.prefixLength))];
}

/** A random pool: IPv4 /8–/30 or IPv6 /32–/126, host bits zero. */
const arbPool = fc.oneof(
  fc.tuple(fc.integer({ min: 8, max: 30 }), fc.integer({ min: 0, max: 0xffffffff })).map(([len, a]) => {
    const addr = (a >>> (32 - len)) << (32 - len) >>> 0;
    return parsePrefix(`${addr >>> 24}.${(addr >>> 16) & 255}.${(addr >>> 8) & 255}.${addr & 255}/${len}`)!;
  }),
  fc.tuple(fc.integer({ min: 32, max: 126 }), fc.integer({ min: 0, max: 0xffff })).map(([len, w]) => parsePrefix(`fd00:${w.toString(16)}::/${len}`)!),
);

describe('address pool slices (config pools.slice)', () => {
  it('the slices of all indices are disjoint, in order, and cover the pool exactly', () => {
    fc.assert(fc.property(arbPool, fc.integer({ min: 1, max: 64 }), (pool, count) => {
      const [ps, pe] = span(pool);
      fc.pre((pe - ps) / BigInt(count) >= 2n);
      let at = ps;
      for (let i = 0; i < count; i++) {
        const r = sliceRange(pool, { index: i, count });
        expect(r.start).toBe(at); // contiguous: no gap, no overlap with the previous slice
        expect(r.end - r.start).toBeGreaterThanOrEqual(2n);
        at = r.end;
      }
      expect(at).toBe(pe);
    }), { numRuns: 300 });
  });

  it('the prefixes routed for a slice cover exactly its range, aligned', () => {
    fc.assert(fc.property(arbPool, fc.integer({ min: 1, max: 64 }), fc.nat(), (pool, count, k) => {
      const [ps, pe] = span(pool);
      fc.pre((pe - ps) / BigInt(count) >= 2n);
      const r = sliceRange(pool, { index: k % count, count });
      let at = r.start;
      for (const p of rangePrefixes(pool.version, r.start, r.end)) {
        const [s, e] = span(p);
        expect(s).toBe(at);
        expect(s % (e - s)).toBe(0n);
        at = e;
      }
      expect(at).toBe(r.end);
    }), { numRuns: 300 });
  });

  it('pools of different replicas never lease the same address, and each leases only from its slice', () => {
    fc.assert(fc.property(fc.integer({ min: 1, max: 6 }), fc.integer({ min: 24, max: 28 }), (count, len) => {
      const prefix = `10.200.0.0/${len}`;
      const seen = new Set<string>();
      for (let i = 0; i < count; i++) {
        const pool = new AddressPool({ prefix, slice: { index: i, count }, maxLeasesPerOwner: 1 << 20 });
        const [s, e] = [pool.prefixes.map(span)[0]![0], pool.prefixes.map(span).at(-1)![1]];
        for (;;) {
          const p = pool.allocate(32, undefined, 'x');
          if (p === null) break;
          const a = addrToBig(p.address);
          expect(a >= s && a < e).toBe(true);
          expect(seen.has(formatPrefix(p))).toBe(false);
          seen.add(formatPrefix(p));
        }
      }
      // Every address of the pool was handed out by exactly one replica, except the reserved network address.
      expect(seen.size).toBe((1 << (32 - len)) - 1);
    }), { numRuns: 40 });
  });

  it('a preferred address in another replica\'s slice is not honoured', () => {
    const a = new AddressPool({ prefix: '10.200.0.0/24', slice: { index: 1, count: 2 } });
    expect(a.prefixes.map(formatPrefix)).toEqual(['10.200.0.128/25']);
    const got = a.allocate(32, Uint8Array.of(10, 200, 0, 7), 'x');
    expect(got && formatPrefix(got)).toBe('10.200.0.128/32'); // slice 1 does not hold the pool's network address
  });

  it('three slices of a /24 are routed as several prefixes each', () => {
    const p = parsePrefix('10.200.0.0/24')!;
    const names = [0, 1, 2].map((i) => {
      const r = sliceRange(p, { index: i, count: 3 });
      return rangePrefixes(4, r.start, r.end).map(formatPrefix);
    });
    // 256 / 3: [0, 85), [85, 170), [170, 256), each as the fewest aligned prefixes.
    expect(names).toEqual([
      ['10.200.0.0/26', '10.200.0.64/28', '10.200.0.80/30', '10.200.0.84/32'],
      ['10.200.0.85/32', '10.200.0.86/31', '10.200.0.88/29', '10.200.0.96/27', '10.200.0.128/27', '10.200.0.160/29', '10.200.0.168/31'],
      ['10.200.0.170/31', '10.200.0.172/30', '10.200.0.176/28', '10.200.0.192/26'],
    ]);
  });

  it('refuses an index out of range and a pool too small for the count', () => {
    const p = parsePrefix('10.200.0.0/30')!;
    expect(() => sliceRange(p, { index: 2, count: 2 })).toThrow(/out of range/);
    expect(() => sliceRange(p, { index: 0, count: 3 })).toThrow(/too small for 3 slices/);
    expect(() => new AddressPool({ prefix: '10.200.0.0/30', slice: { index: 0, count: 4 } })).toThrow(/^masque: /);
  });
});

// RFC 9484 §4.7.1 ADDRESS_ASSIGN: the pool hands out non-overlapping
// addresses/prefixes; these tests pin the sorted-lease implementation to a
// brute-force model of "lowest free aligned block".

/** Brute force: the lowest aligned block of `size` in [start, end) not intersecting `taken`. */
function lowestFree(taken: Array<[bigint, bigint]>, start: bigint, end: bigint, size: bigint): bigint | null {
  for (let c = ((start + size - 1n) / size) * size; c + size <= end; c += size) {
    if (!taken.some(([s, n]) => s < c + size && c < s + n)) return c;
  }
  return null;
}

describe('AddressPool', () => {
  it('allocates the lowest free aligned block, like a brute-force scan, across allocate/release', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.boolean(), fc.integer({ min: 28, max: 32 }), fc.nat(40)), { maxLength: 60 }), (ops) => {
        const pool = new AddressPool({ prefix: '10.9.0.0/26', reserved: ['10.9.0.17'], maxLeasesPerOwner: 1000, minPrefixLength: 26 });
        const base = addrToBig(Uint8Array.of(10, 9, 0, 0));
        const taken: Array<[bigint, bigint]> = [[base, 1n], [base + 17n, 1n]];
        const held: Array<{ p: NonNullable<ReturnType<AddressPool['allocate']>>; s: bigint; n: bigint }> = [];
        for (const [alloc, len, pick] of ops) {
          if (alloc || held.length === 0) {
            const size = 1n << BigInt(32 - len);
            const want = lowestFree(taken, base, base + 64n, size);
            const p = pool.allocate(len, undefined, 'o');
            if (want === null) expect(p).toBeNull();
            else {
              expect(p).not.toBeNull();
              expect(addrToBig(p!.address)).toBe(want);
              taken.push([want, size]);
              held.push({ p: p!, s: want, n: size });
            }
          } else {
            const [h] = held.splice(pick % held.length, 1);
            expect(pool.release(h!.p)).toBe(true);
            taken.splice(taken.findIndex(([s, n]) => s === h!.s && n === h!.n), 1);
          }
          expect(pool.leased).toBe(held.length);
          expect(pool.leasesOf('o')).toBe(held.length);
        }
      }),
    );
  });

  it('honours a free preferred address and refuses a taken one (falls back to the lowest)', () => {
    const pool = new AddressPool({ prefix: '10.9.0.0/24' });
    const a = pool.allocate(32, Uint8Array.of(10, 9, 0, 50), 'x')!;
    expect(Array.from(a.address)).toEqual([10, 9, 0, 50]);
    const b = pool.allocate(32, Uint8Array.of(10, 9, 0, 50), 'x')!;
    expect(Array.from(b.address)).toEqual([10, 9, 0, 1]);
    expect(pool.release(a)).toBe(true);
    expect(pool.release(a)).toBe(false);
  });

  it('caps leases per owner and frees the cap on release', () => {
    const pool = new AddressPool({ prefix: '10.9.0.0/24', maxLeasesPerOwner: 2 });
    const a = pool.allocate(32, undefined, 'id')!;
    pool.allocate(32, undefined, 'id');
    expect(pool.allocate(32, undefined, 'id')).toBeNull();
    expect(pool.allocate(32, undefined, 'other')).not.toBeNull();
    pool.release(a);
    expect(pool.allocate(32, undefined, 'id')).not.toBeNull();
  });

  it('hands out 10,000 addresses of a /18 quickly (sorted leases, no quadratic scan)', () => {
    const pool = new AddressPool({ prefix: '10.202.0.0/18', maxLeasesPerOwner: 1 });
    const seen = new Set<string>();
    for (let i = 0; i < 10_000; i++) seen.add(Array.from(pool.allocate(32, undefined, i)!.address).join('.'));
    expect(seen.size).toBe(10_000);
    expect(pool.leased).toBe(10_000);
  });
});
