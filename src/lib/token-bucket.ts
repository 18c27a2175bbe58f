/**
 * A token bucket on a caller's millisecond clock: `perSecond` tokens a
 * second up to `burst`. Numbers only, no timers and no allocation, so it can
 * sit on a packet path. Every rate limit in the daemons is one of these:
 * QUIC Retry/Version Negotiation, QUIC stateless resets, QUIC peek decryptions, ICMP errors,
 * ROUTE_ADVERTISEMENTs, flow-log lines of failed connections.
 */
export class TokenBucket {
  private tokens: number;
  private at: number;

  /** Starts full at `nowMs`. */
  constructor(
    private readonly perSecond: number,
    private readonly burst: number,
    nowMs: number,
  ) {
    this.tokens = burst;
    this.at = nowMs;
  }

  /** Adds what accrued since the last call; a clock that steps back adds nothing. */
  private refill(nowMs: number): void {
    if (nowMs > this.at) {
      this.tokens = Math.min(this.burst, this.tokens + ((nowMs - this.at) * this.perSecond) / 1000);
      this.at = nowMs;
    }
  }

  /** True when a whole token is there at `nowMs` (none is taken). */
  has(nowMs: number): boolean {
    this.refill(nowMs);
    return this.tokens >= 1;
  }

  /** Takes one token at `nowMs`; false (and nothing taken) when there is none. */
  take(nowMs: number): boolean {
    if (!this.has(nowMs)) return false;
    this.tokens -= 1;
    return true;
  }

  /** When the next whole token is there, as of the last refill (ms on the caller's clock). */
  nextTokenAtMs(): number {
    return this.at + ((1 - this.tokens) * 1000) / this.perSecond;
  }
}
