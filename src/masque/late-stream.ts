/**
 * A TunnelStream that binds to the real HTTP/3 stream later: lets a MASQUE
 * session exist (and be handed to `accept(handler)` / `connect(…, handler)`)
 * before the HTTP/3 layer returns the stream.
 */
import type { TunnelStream } from '../h3/tunnel-stream.js';

/** Capsules queued before binding, at most (they are control messages: a handful is normal). */
const MAX_EARLY_CAPSULES = 64;

/**
 * Forwards to the stream given to {@link bind}. Before that: capsules are
 * queued (bounded) and replayed in order on bind, datagrams are refused
 * (the session counts them), maxDatagramPayload is 0, and close/abort are
 * remembered and applied on bind.
 */
export class LateTunnelStream implements TunnelStream {
  private target: TunnelStream | null = null;
  private early: { type: number; value: Uint8Array }[] = [];
  private ended: { abort: boolean; code: number } | null = null;

  get streamId(): number {
    return this.target ? this.target.streamId : -1;
  }

  /** True once bound. */
  get bound(): boolean {
    return this.target !== null;
  }

  /** Binds the real stream; replays queued capsules and a pending close/abort. Binding twice throws (caller bug). */
  bind(stream: TunnelStream): void {
    if (this.target) throw new Error('masque: LateTunnelStream bound twice');
    this.target = stream;
    for (const c of this.early) stream.sendCapsule(c.type, c.value);
    this.early = [];
    if (this.ended) {
      if (this.ended.abort) stream.abort(this.ended.code);
      else stream.close();
    }
  }

  sendCapsule(type: number, value: Uint8Array): boolean {
    if (this.target) return this.target.sendCapsule(type, value);
    if (this.ended || this.early.length >= MAX_EARLY_CAPSULES) return false;
    this.early.push({ type, value: Uint8Array.from(value) });
    return true;
  }

  sendDatagram(buf: Uint8Array, offset: number, length: number): boolean {
    return this.target ? this.target.sendDatagram(buf, offset, length) : false;
  }

  maxDatagramPayload(): number {
    return this.target ? this.target.maxDatagramPayload() : 0;
  }

  close(): void {
    if (this.target) this.target.close();
    else this.ended ??= { abort: false, code: 0 };
  }

  abort(errorCode: number): void {
    if (this.target) this.target.abort(errorCode);
    else this.ended = { abort: true, code: errorCode };
  }
}
