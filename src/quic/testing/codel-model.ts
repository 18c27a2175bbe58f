/**
 * CoDel (RFC 8289 §5) written from the RFC's pseudocode, as the model the
 * engine's C state machine (src/native/codel.c, on each connection's
 * DATAGRAM send queue) is held to by src/quic/codel.test.ts. Times are
 * integer ns, as in the C; at most one drop per dequeue (the queue's next
 * head is the next dequeue).
 */

export class CoDelModel {
  private firstAboveTime = 0;
  private dropNext = 0;
  private count = 0;
  private lastCount = 0;
  private dropping = false;

  /** target 0: off (never drops). */
  constructor(private readonly targetNs: number, private readonly intervalNs: number) {}

  get isDropping(): boolean {
    return this.dropping;
  }

  /** Drops since the dropping state was last entered (the control law's count). */
  get dropCount(): number {
    return this.count;
  }

  /** One dequeue: the head waited sojournNs at nowNs; `small`: the head was all that was queued. True: drop it. */
  onDequeue(sojournNs: number, nowNs: number, small: boolean): boolean {
    if (this.targetNs === 0) return false;
    // §5.4 dodequeue: ok_to_drop once the delay stayed at or above target for a whole interval.
    let okToDrop = false;
    if (sojournNs < this.targetNs || small) {
      this.firstAboveTime = 0;
    } else if (this.firstAboveTime === 0) {
      this.firstAboveTime = nowNs + this.intervalNs;
    } else if (nowNs >= this.firstAboveTime) {
      okToDrop = true;
    }
    // §5.5 dequeue.
    if (this.dropping) {
      if (!okToDrop) {
        this.dropping = false;
        return false;
      }
      if (nowNs >= this.dropNext) {
        this.count++;
        this.dropNext = this.controlLaw(this.dropNext);
        return true;
      }
      return false;
    }
    if (!okToDrop) return false;
    // §5.6: entering the dropping state; near the last drop rate if that was recent.
    this.dropping = true;
    const delta = this.count - this.lastCount;
    this.count = delta > 1 && nowNs - this.dropNext < 16 * this.intervalNs ? delta : 1;
    this.lastCount = this.count;
    this.dropNext = this.controlLaw(nowNs);
    return true;
  }

  /** §5.5 control_law: t + interval / √count (truncated to whole ns, as the C does). */
  private controlLaw(t: number): number {
    return t + Math.trunc(this.intervalNs / Math.sqrt(this.count));
  }
}
