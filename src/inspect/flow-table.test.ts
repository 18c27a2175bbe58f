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

/** Two port pairs of 10.0.0.1 → 10.0.0.2 whose keyed hashes are equal under HASH_KEY (a birthday search): only the key comparison tells them apart. */
function collidingPorts(): [[number, number], [number, number]] {
  const t = new FlowTable(8, 4, HASH_KEY);
  const p = craftUdp({ src: '10.0.0.1', dst: '10.0.0.2', srcPort: 1, dstPort: 1 });
  const pi = new PacketInfo();
  parseIpPacket(p, 0, p.length, pi);
  const seen = new Map<number, [number, number]>();
  for (let sp = 1; sp < 2000; sp++) {
    for (let dp = 1; dp < 200; dp++) {
      const h = t.loadKey(p, pi, sp, dp);
      const other = seen.get(h);
      if (other !== undefined) return [other, [sp, dp]];
      seen.set(h, [sp, dp]);
    }
  }
  throw new Error('no colliding ports found');
}
const [c1, c2] = collidingPorts();

/** Two destinations of 10.0.0.1 (ports 1 → 2) whose keyed hashes are equal under HASH_KEY: only the address comparison tells them apart. */
function collidingAddresses(): [[string, string], [string, string]] {
  const t = new FlowTable(8, 4, HASH_KEY);
  const p = craftUdp({ src: '10.0.0.1', dst: '10.1.0.1', srcPort: 1, dstPort: 2 });
  const pi = new PacketInfo();
  parseIpPacket(p, 0, p.length, pi);
  const seen = new Map<number, [string, string]>();
  for (let i = 0; i < 1 << 20; i++) {
    p[17] = 1 + (i & 0x7f); p[18] = (i >> 7) & 0xff; p[19] = 1 + ((i >> 15) & 0x3f); // 10.0.0.1 → 10.a.b.c
    const h = t.loadKey(p, pi, 1, 2);
    const pair: [string, string] = ['10.0.0.1', `10.${p[17]}.${p[18]}.${p[19]}`];
    const other = seen.get(h);
    if (other !== undefined) return [other, pair];
    seen.set(h, pair);
  }
  throw new Error('no colliding addresses found');
}
const [a1, a2] = collidingAddresses();

/** Few tuples, so they come back often: two differ only in the last word of an address, two only in a port, and two pairs have the same hash. */
const tuples: [string, string, number, number][] = [
  ['10.0.0.1', '10.0.0.2', 1, 2],
  ['10.0.0.1', '10.0.0.2', 1, 3],
  ['fd00::1', 'fd00::2', 1, 2],
  ['fd00::1', 'fd00::3', 1, 2],
  ['2001:db8::9', 'fd00::2', 1, 2],
  ['10.0.0.1', '10.0.0.2', c1[0], c1[1]],
  ['10.0.0.1', '10.0.0.2', c2[0], c2[1]],
  [a1[0], a1[1], 1, 2],
  [a2[0], a2[1], 1, 2],
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
