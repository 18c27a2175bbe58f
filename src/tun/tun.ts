/**
 * The TUN device interface (wireguard-go style batches with headroom).
 * Implemented by the native addon in `native-tun.ts` (open with `openTun`) and
 * in memory by `memory-tun.ts` for tests.
 */

/** A TUN device carrying raw IP packets (IFF_TUN | IFF_NO_PI). */
export interface TunDevice {
  /** Kernel interface name. */
  readonly name: string;
  /** Packets moved per call at most. */
  readonly batchSize: number;
  /** Link MTU in bytes: read() needs this much room after `offset` in every buffer. */
  readonly mtu: number;
  /**
   * Read up to bufs.length packets. Packet i is written at bufs[i][offset..]
   * and its length stored in sizes[i]; bytes before `offset` are left for
   * the caller (tunnel prefix headroom). Returns the count, 0 when none are ready.
   * The buffers stay the caller's.
   */
  read(bufs: Buffer[], sizes: Uint32Array, offset: number): number;
  /**
   * Write packets [0, count): packet i is bufs[i][offset .. offset+sizes[i]).
   * Returns how many were written; the rest stay the caller's (a full
   * kernel queue is reported, never dropped silently here).
   */
  write(bufs: Buffer[], sizes: Uint32Array, offset: number, count: number): number;
  /** Level-triggered readiness callback (uv_poll). One callback; replaces the last. */
  onReadable(cb: () => void): void;
  /** Stops readiness callbacks until onReadable is called again. */
  pauseReadable?(): void;
  /**
   * A kernel device's fd for a native reader (src/native/dataplane.c), and
   * whether each read starts with a virtio_net_hdr (offloads on); absent on
   * devices without one (the in-memory TUN of tests). The fd stays the device's.
   */
  nativeFd?(): { fd: number; vnet: boolean };
  /** Closes the fd; the kernel removes a non-persistent interface. Later calls throw ClosedError. */
  close(): void;
  /** True after close(). */
  readonly closed: boolean;
}
