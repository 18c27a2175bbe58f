// RFC 9484 §4.7.1 ADDRESS_ASSIGN: the pool hands out non-overlapping
// addresses/prefixes; these tests pin the sorted-lease implementation to a
// brute-force model of "lowest free aligned block".
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { AddressPool } from './address-pool.js';
import { addrToBig } from '../packet/ip-address.js';

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
