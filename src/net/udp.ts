/**
 * The batched UDP socket interface: the only way the QUIC layer touches the
 * network. Implemented by the native addon (recvmmsg/sendmmsg, GSO/GRO) in
 * `native-udp.ts` and by `node:dgram` (batch size 1) in `dgram-udp.ts`.
 */

/**
 * Bytes per address slot in {@link UdpBatch.addrs}:
 *
 * - [0, 16) peer address, 16-byte IPv6 (IPv4 as ::ffff:a.b.c.d);
 * - [16, 18) peer port, big-endian;
 * - [18, 20) reserved, zero;
 * - [20, 36) local address (IPv4 as ::ffff:a.b.c.d; all-zero = unspecified).
 *
 * recv fills the local part with the address the datagram arrived on when the
 * socket can tell (native socket: IP_PKTINFO / IPV6_PKTINFO; `node:dgram`:
 * never, it stays zero). send uses a non-zero local part as the source
 * address, so a socket bound to a wildcard on a multi-homed host answers from
 * the address the peer sent to: copy the received slot into the reply slot.
 */
export const ADDR_SLOT_BYTES = 36;

/**
 * Preallocated arrays for one batch. Owned by the caller; the socket writes
 * into them during `recv` and reads them during `send`, and keeps no
 * reference after the call returns.
 */
export interface UdpBatch {
  /** One buffer per slot; its length is the slot's capacity. */
  readonly bufs: Buffer[];
  /**
   * Bytes used in each slot (filled by recv; set by the caller for send). A
   * native send writes to it in one case: a GSO train sent segment by segment
   * (the path refused GSO) that filled the socket buffer part way comes back
   * unsent, shrunk to the segments left (moved to the front of its buffer).
   */
  readonly sizes: Uint32Array;
  /**
   * Address slot of each slot, ADDR_SLOT_BYTES each: peer (source on recv,
   * destination on send) and local address (destination on recv, source on
   * send; zero lets the kernel choose).
   */
  readonly addrs: Uint8Array;
  /**
   * Segment size of each slot. recv: non-zero when the kernel coalesced
   * several datagrams of this size into the slot (GRO; the last may be
   * shorter). send: non-zero asks for UDP GSO with this segment size.
   */
  readonly segs: Uint32Array;
}

/** A bound, non-blocking UDP socket moving datagrams in batches. */
export interface UdpBatchSocket {
  /** Slots moved per call at most. */
  readonly batchSize: number;
  /** True when UDP_SEGMENT (GSO) is in use for send; a native socket turns it off for good when the path refuses it (EIO). */
  readonly gso: boolean;
  /** Datagrams the kernel refused on send, dropped (native sockets; absent elsewhere). */
  readonly txRefused?: number;
  /** GSO sends the kernel refused, their datagrams resent one by one (native sockets). */
  readonly txGsoRefused?: number;
  /** True when UDP_GRO is enabled for receive. */
  readonly gro: boolean;
  /** Fill up to `batch.bufs.length` slots; returns the count, 0 when nothing is ready. */
  recv(batch: UdpBatch): number;
  /**
   * Send slots [0, count). Returns how many were handed to the kernel; the
   * rest are still the caller's (retry after `onWritable`, or drop and count).
   */
  send(batch: UdpBatch, count: number): number;
  /** Called (repeatedly, level-triggered) while datagrams are waiting. One callback; replaces the last. */
  onReadable(cb: () => void): void;
  /** Called once when the socket becomes writable again after a short send. */
  onWritable(cb: () => void): void;
  localAddress(): { address: string; port: number; family: 4 | 6 };
  /** Stops readable callbacks until onReadable is called again; absent where the socket cannot (node:dgram keeps reading). */
  pauseReadable?(): void;
  /** The kernel socket's fd for a native sender (src/native/dataplane.c); absent on node:dgram and in-memory sockets. The fd stays the socket's. */
  nativeFd?(): number;
  /** Stops readiness callbacks and closes the fd. Later calls throw ClosedError. */
  close(): void;
}

/** The daemons' warning when a socket stops using UDP GSO because the path refused it (QuicEndpointOptions.onGsoOff). */
export const GSO_REFUSED_LOG = 'UDP GSO refused by the path (EIO: an IPsec route, UDP-Lite, or a kernel that cannot segment it): sending one datagram per packet from now on';

/** Thrown by any use of a socket or device after close(). */
export class ClosedError extends Error {
  constructor(what: string) {
    super(`${what}: used after close`);
    this.name = 'ClosedError';
  }
}
