/**
 * Request stream IDs of one connection (RFC 9000 §2.1, RFC 9114 §5.2): the
 * client's next bidirectional ID, and on a server which peer IDs have been
 * seen (QUIC may deliver streams out of order, so gaps are remembered).
 * Pure bookkeeping, no I/O.
 */

/** Out-of-order peer stream IDs remembered at most; IDs dropped from the set count as closed. */
const MAX_GAPS = 1024;

/** Stream-ID bookkeeping; one per connection. */
export class StreamIds {
  /** Next client-initiated bidirectional stream ID we open (client). */
  private next = 0;
  /** Highest peer-initiated bidirectional stream ID seen (server), -4 if none. */
  private maxPeer = -4;
  /** Peer bidirectional IDs below maxPeer not seen yet. */
  private readonly gaps = new Set<number>();

  constructor(readonly isServer: boolean) {}

  /** Client: the next bidirectional ID, or -1 when it would be at or above `limit` (a GOAWAY ID). */
  allocBidi(limit: number): number {
    const id = this.next;
    if (id >= limit) return -1;
    this.next += 4;
    return id;
  }

  /** True when `id` is initiated by the peer (RFC 9000 §2.1: bit 0 is the initiator). */
  peerInitiated(id: number): boolean {
    return ((id & 1) === 1) === !this.isServer;
  }

  /** Server: a peer bidirectional stream showed up. False when it was seen (and closed) before. */
  admitPeerBidi(id: number): boolean {
    if (id <= this.maxPeer) return this.gaps.delete(id);
    for (let g = this.maxPeer + 4; g < id && this.gaps.size < MAX_GAPS; g += 4) this.gaps.add(g);
    this.maxPeer = id;
    return true;
  }

  /** Server: the first request ID not yet seen, the value a GOAWAY carries (RFC 9114 §5.2). */
  get firstUnseenPeerBidi(): number {
    return this.maxPeer + 4;
  }

  /** True when the request stream `id` was ever opened (so a datagram for it is late, not early). */
  opened(id: number): boolean {
    return this.isServer ? id <= this.maxPeer && !this.gaps.has(id) : id < this.next;
  }
}
