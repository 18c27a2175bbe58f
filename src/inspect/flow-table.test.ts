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

/** Few tuples, so they come back often: two differ only in the last word of an address, two only in a port. */
const tuples: [string, string, number, number][] = [
  ['10.0.0.1', '10.0.0.2', 1, 2],
  ['10.0.0.1', '10.0.0.2', 1, 3],
  ['fd00::1', 'fd00::2', 1, 2],
  ['fd00::1', 'fd00::3', 1, 2],
  ['2001:db8::9', 'fd00::2', 1, 2],
];

describe('FlowTable lookup memo', () => {
  it('finds what the probe finds, also after the remembered slot was released or reused', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.record({ tuple: fc.nat(tuples.length - 1), flip: fc.boolean(), op: fc.constantFrom('look', 'look', 'create', 'release') }),
          { minLength: 1, maxLength: 120 },
        ),
        (ops) => {
          const t = new FlowTable(8, 4, new Uint8Array(8).fill(3));
          const model = new Map<string, number>();
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
            expect(s).toBe(model.get(key) ?? -1);
            if (o.op === 'create' && s < 0) {
              if (t.needsEviction()) continue;
              model.set(key, t.create(h, 1, 0, 0, 0));
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
