/**
 * Read buffers shared by every HTTP/3 connection of the process (issue #17:
 * small per-session memory). A read fills a buffer and hands views of it to
 * handlers synchronously, which copy what they keep, so one buffer serves
 * all connections in turn. A connection borrows a buffer for one read
 * (take … give back); a nested read (a handler that synchronously drives
 * another connection, as in-process transports can) finds the pool empty and
 * gets a fresh buffer, so no read ever sees another's bytes.
 */
export class ScratchPool {
  private readonly free: Uint8Array[] = [];

  /**
   * @param bytes size of every buffer
   * @param keep buffers kept for reuse at most (the rest of a nested burst is left to GC)
   */
  constructor(
    readonly bytes: number,
    private readonly keep = 4,
  ) {}

  /** A buffer of {@link bytes} bytes for the caller alone until it is given back. */
  take(): Uint8Array {
    return this.free.pop() ?? new Uint8Array(this.bytes);
  }

  /** Returns a buffer from {@link take}; the caller must not touch it afterwards. */
  give(buf: Uint8Array): void {
    if (this.free.length < this.keep) this.free.push(buf);
  }

  /** Buffers waiting for reuse (tests). */
  get idle(): number {
    return this.free.length;
  }
}
