/**
 * FlowTable's lookups against a model (a Map from the canonical 5-tuple to
 * the slot), while flows are created and released in random order and the
 * same few tuples come back in both orientations: the memo of the last key
 * hashed and the last slot found (a bulk flow's packets skip the keyed hash
 * and the probe) must give exactly what the probe gives.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { FlowTable } from './flow-table.js';
import { PacketInfo, parseIpPacket } from '../packet/ip-packet.js';
import { craftUdp } from '../packet/craft.js';

const HASH_KEY = new Uint8Array(8).fill(3);

type Tuple = [src: string, dst: string, sport: number, dport: number];

/**
 * The first two tuples of `tupleAt` whose keyed hashes are equal under
 * HASH_KEY (a birthday search over `tries`): only the key comparison tells
 * them apart. `tupleAt` may rewrite the packet's addresses (10.0.0.1 →
 * 10.0.0.2 to start with) to match the tuple it returns.
 */
function collision(tries: number, tupleAt: (i: number, p: Uint8Array) => Tuple): [Tuple, Tuple] {
  const t = new FlowTable(8, 4, HASH_KEY);
  const p = craftUdp({ src: '10.0.0.1', dst: '10.0.0.2', srcPort: 1, dstPort: 1 });
  const pi = new PacketInfo();
  parseIpPacket(p, 0, p.length, pi);
  const seen = new Map<number, Tuple>();
  for (let i = 0; i < tries; i++) {
    const x = tupleAt(i, p);
    const h = t.loadKey(p, pi, x[2], x[3]);
    const other = seen.get(h);
    if (other !== undefined) return [other, x];
    seen.set(h, x);
  }
  throw new Error('no collision found');
}
// Port pairs of 10.0.0.1 → 10.0.0.2.
const [c1, c2] = collision(2000 * 200, (i) => ['10.0.0.1', '10.0.0.2', 1 + Math.floor(i / 199), 1 + (i % 199)]);
// Destinations of 10.0.0.1 (ports 1 → 2): only the address comparison tells them apart.
const [a1, a2] = collision(1 << 20, (i, p) => {
  p[17] = 1 + (i & 0x7f); p[18] = (i >> 7) & 0xff; p[19] = 1 + ((i >> 15) & 0x3f); // 10.0.0.1 → 10.a.b.c
  return ['10.0.0.1', `10.${p[17]}.${p[18]}.${p[19]}`, 1, 2];
});

/** Few tuples, so they come back often: two differ only in the last word of an address, two only in a port, and two pairs have the same hash. */
const tuples: Tuple[] = [
  ['10.0.0.1', '10.0.0.2', 1, 2],
  ['10.0.0.1', '10.0.0.2', 1, 3],
  ['fd00::1', 'fd00::2', 1, 2],
  ['fd00::1', 'fd00::3', 1, 2],
  ['2001:db8::9', 'fd00::2', 1, 2],
  c1,
  c2,
  a1,
  a2,
];

describe('FlowTable lookup memo', () => {
  it('finds what the probe finds, also after the remembered slot was released or reused', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.record({ tuple: fc.nat(tuples.length - 1), flip: fc.boolean(), initiatorIsDst: fc.constantFrom(0, 1), op: fc.constantFrom('look', 'look', 'create', 'release') }),
          { minLength: 1, maxLength: 120 },
        ),
        (ops) => {
          const t = new FlowTable(8, 4, HASH_KEY);
          /** Canonical key → [slot, the initiator's end as "address|port"]. */
          const model = new Map<string, [number, string]>();
          const pi = new PacketInfo();
          for (const o of ops) {
            let [src, dst, sp, dp] = tuples[o.tuple]!;
            if (o.flip) [src, dst, sp, dp] = [dst, src, dp, sp];
            const p = craftUdp({ src, dst, srcPort: sp, dstPort: dp });
            parseIpPacket(p, 0, p.length, pi);
            // Canonical model key: the two (address, port) ends sorted.
            const ends = [`${src}|${sp}`, `${dst}|${dp}`].sort();
            const key = `${ends[0]} ${ends[1]}`;
            const h = t.loadKey(p, pi, sp, dp);
            const s = t.lookup(h);
            const m = model.get(key);
            expect(s).toBe(m?.[0] ?? -1);
            // dir: 0 when this packet goes initiator → responder.
            if (m !== undefined) expect(t.dir).toBe(m[1] === `${src}|${sp}` ? 0 : 1);
            if (o.op === 'create' && s < 0) {
              if (t.needsEviction()) continue;
              model.set(key, [t.create(h, 1, o.initiatorIsDst, 0, 0), o.initiatorIsDst === 1 ? `${dst}|${dp}` : `${src}|${sp}`]);
            } else if (o.op === 'release' && s >= 0) {
              t.release(s);
              model.delete(key);
            }
          }
        },
      ),
      { numRuns: 1000 },
    );
  });
});
