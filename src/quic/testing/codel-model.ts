/**
 * CoDel as RFC 8289 §5 writes it — a queue whose dequeue() takes heads off
 * until it returns one to send, judging each new head with dodequeue() —
 * for src/quic/codel.test.ts to hold the engine's one-head-per-call state
 * machine (src/native/codel.c) to. Packets are all of one size, so the
 * RFC's `bytes() <= maxpacket_` is "at most one packet left". Times in ns.
 */

/** What one dequeue() did: the packet it returned (null: none) and the ones it dropped, by id. */
export interface RfcDequeue {
  sent: number | null;
  dropped: number[];
}

export class RfcCoDelQueue {
  private readonly q: { id: number; enq: number }[] = [];
  private firstAboveTime = 0;
  private dropNext = 0;
  private count = 0;
  private lastcount = 0;
  private dropping = false;

  constructor(private readonly target: number, private readonly interval: number) {}

  enqueue(id: number, now: number): void {
    this.q.push({ id, enq: now });
  }

  get length(): number {
    return this.q.length;
  }

  /** §5.5 dequeue(). */
  dequeue(now: number): RfcDequeue {
    const dropped: number[] = [];
    let r = this.dodequeue(now);
    if (this.dropping) {
      if (!r.okToDrop) this.dropping = false;
      while (now >= this.dropNext && this.dropping) {
        dropped.push(r.p!.id);
        ++this.count;
        r = this.dodequeue(now);
        if (!r.okToDrop) this.dropping = false;
        else this.dropNext = this.controlLaw(this.dropNext);
      }
    } else if (r.okToDrop) {
      dropped.push(r.p!.id);
      r = this.dodequeue(now);
      this.dropping = true;
      const delta = this.count - this.lastcount;
      this.count = 1;
      if (delta > 1 && now - this.dropNext < 16 * this.interval) this.count = delta;
      this.dropNext = this.controlLaw(now);
      this.lastcount = this.count;
    }
    return { sent: r.p?.id ?? null, dropped };
  }

  /** §5.4 dodequeue(). */
  private dodequeue(now: number): { p: { id: number; enq: number } | null; okToDrop: boolean } {
    const p = this.q.shift() ?? null;
    if (p === null) {
      this.firstAboveTime = 0;
      return { p, okToDrop: false };
    }
    const sojourn = now - p.enq;
    let okToDrop = false;
    if (sojourn < this.target || this.q.length <= 1) {
      this.firstAboveTime = 0;
    } else if (this.firstAboveTime === 0) {
      this.firstAboveTime = now + this.interval;
    } else if (now >= this.firstAboveTime) {
      okToDrop = true;
    }
    return { p, okToDrop };
  }

  /** §5.5 control_law, truncated to whole ns as the C does. */
  private controlLaw(t: number): number {
    return t + Math.trunc(this.interval / Math.sqrt(this.count));
  }
}
