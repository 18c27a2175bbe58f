/**
 * A binary min-heap of deadlines, one entry per connection, so the endpoint
 * arms a single `setTimeout` for the earliest one.
 */

/** An item the heap can hold: it stores its own slot, so updates are O(log n) without lookups. */
export interface TimerEntry {
  /** Absolute deadline in ms (same clock as the caller's `now`). */
  deadlineMs: number;
  /** Position in the heap; -1 when not queued. Managed by {@link TimerHeap}. */
  heapIndex: number;
}

/** Min-heap keyed by `deadlineMs`. Holds references only; removes nothing by itself. */
export class TimerHeap<T extends TimerEntry> {
  private readonly items: T[] = [];

  /** Entries queued. */
  get size(): number {
    return this.items.length;
  }

  /** The entry with the earliest deadline, or undefined. */
  peek(): T | undefined {
    return this.items[0];
  }

  /** Inserts `e` with `deadlineMs`, or moves it if already queued. */
  set(e: T, deadlineMs: number): void {
    if (e.heapIndex < 0) {
      e.deadlineMs = deadlineMs;
      e.heapIndex = this.items.length;
      this.items.push(e);
      this.up(e.heapIndex);
      return;
    }
    const old = e.deadlineMs;
    e.deadlineMs = deadlineMs;
    if (deadlineMs < old) this.up(e.heapIndex);
    else if (deadlineMs > old) this.down(e.heapIndex);
  }

  /** Removes `e` if queued. */
  delete(e: T): void {
    const i = e.heapIndex;
    if (i < 0) return;
    const last = this.items.pop()!;
    e.heapIndex = -1;
    if (i === this.items.length) return;
    this.items[i] = last;
    last.heapIndex = i;
    this.down(i);
    this.up(last.heapIndex);
  }

  /** Removes and returns the earliest entry if its deadline is ≤ `nowMs`. */
  popDue(nowMs: number): T | undefined {
    const top = this.items[0];
    if (top === undefined || top.deadlineMs > nowMs) return undefined;
    this.delete(top);
    return top;
  }

  private up(i: number): void {
    const a = this.items;
    const e = a[i];
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (a[p].deadlineMs <= e.deadlineMs) break;
      a[i] = a[p];
      a[i].heapIndex = i;
      i = p;
    }
    a[i] = e;
    e.heapIndex = i;
  }

  private down(i: number): void {
    const a = this.items;
    const n = a.length;
    const e = a[i];
    for (;;) {
      let c = 2 * i + 1;
      if (c >= n) break;
      if (c + 1 < n && a[c + 1].deadlineMs < a[c].deadlineMs) c++;
      if (a[c].deadlineMs >= e.deadlineMs) break;
      a[i] = a[c];
      a[i].heapIndex = i;
      i = c;
    }
    a[i] = e;
    e.heapIndex = i;
  }
}
