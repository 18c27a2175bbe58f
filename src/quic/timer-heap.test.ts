import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { TimerHeap, type TimerEntry } from './timer-heap.js';

describe('TimerHeap', () => {
  it('pops due entries in deadline order under random sets, moves and deletes', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.nat(19), fc.integer({ min: 0, max: 1000 }), fc.boolean()), { maxLength: 200 }),
        (ops) => {
          const h = new TimerHeap<TimerEntry & { id: number }>();
          const es = Array.from({ length: 20 }, (_, id) => ({ id, deadlineMs: 0, heapIndex: -1 }));
          const model = new Map<number, number>();
          for (const [id, d, del] of ops) {
            if (del) {
              h.delete(es[id]);
              model.delete(id);
            } else {
              h.set(es[id], d);
              model.set(id, d);
            }
          }
          expect(h.size).toBe(model.size);
          const out: number[] = [];
          let e;
          while ((e = h.popDue(1000)) !== undefined) out.push(e.deadlineMs);
          expect(out).toEqual([...model.values()].sort((a, b) => a - b));
        },
      ),
    );
  });

  it('does not pop entries that are not due', () => {
    const h = new TimerHeap<TimerEntry>();
    const e = { deadlineMs: 0, heapIndex: -1 };
    h.set(e, 50);
    expect(h.popDue(49)).toBeUndefined();
    expect(h.popDue(50)).toBe(e);
    expect(e.heapIndex).toBe(-1);
  });
});
