/**
 * The TUN device over the C addon: open and configure (`openTun`), batched
 * read/write at a headroom offset, uv_poll readiness, routes, counters.
 */
import { ADDR_SLOT_BYTES, ClosedError } from '../net/udp.js';
import { readAddrSlotHost, writeAddrSlot } from '../net/udp-batch.js';
import { slotArena } from '../net/slot-arena.js';
import { loadNative, POLL_READABLE, type NativeBinding, type NativeError, type NativePoll } from '../native/addon.js';
import type { TunDevice } from './tun.js';
import {
  buildTunBatch,
  listAddresses,
  parseCidr,
  routeLine,
  runIpBatch,
  validateIfName,
  validateMtu,
  type Cidr,
} from './ip-config.js';

/** Default packets per read/write call (as wireguard-go). */
export const DEFAULT_TUN_BATCH = 64;

/** What {@link openTun} needs. */
export interface TunOptions {
  /** Interface name (≤ 15 bytes; `%d` lets the kernel number it). Default `mtun%d`. */
  name?: string;
  /** Link MTU in bytes, 68..65535 (≥ 1280 when any address is IPv6). */
  mtu: number;
  /** Addresses with prefix (`10.0.0.1/24`, `fd00::1/64`). */
  addresses: string[];
  /** Routes through the device (`10.1.0.0/16`, `fd01::/48`). */
  routes?: string[];
  /** Packets per read/write call at most (1..1024). Default 64. */
  batchSize?: number;
  /**
   * Named network namespace (`ip netns`) to move the interface into before
   * configuring it. The fd stays with this process; the kernel removes the
   * interface from that namespace on close.
   */
  netns?: string;
  /**
   * Open with IFF_VNET_HDR and enable TSO4/TSO6 (+ USO when the kernel has it):
   * the kernel hands over GSO super-packets, which read() splits in C into
   * MTU-sized packets with correct checksums (fewer syscalls per packet);
   * write() coalesces runs of consecutive TCP segments of one flow into one
   * GSO super-packet (GRO). Default false.
   */
  offload?: boolean;
  /**
   * Kernel transmit queue length of the device in packets (default: the
   * kernel's, 500). Shorter trades some throughput for less queueing delay
   * when the tunnel is the bottleneck (see BENCHMARKS.md).
   */
  txQueueLen?: number;
}

/** Counters of one device; read with {@link NativeTun.stats}. */
export interface TunStats {
  rxPackets: number;
  rxBytes: number;
  txPackets: number;
  txBytes: number;
  /** Packets the kernel refused as malformed (not IPv4/IPv6, empty); skipped by write. */
  txInvalid: number;
  /** Write batches cut short because the kernel queue was full. */
  txEagain: number;
  /** Offload path: GSO super-packets read (each split into several packets). */
  rxSuper: number;
  /** Offload path: reads dropped for a malformed virtio header or an oversized segment. */
  rxInvalid: number;
  /** Offload path: runs of TCP segments written as one GSO super-packet (GRO on write). */
  txSuper: number;
}

// Indexes into the native counter array (mirror enum in src/native/tun.c).
const S_RX_PACKETS = 0;
const S_RX_BYTES = 1;
const S_TX_PACKETS = 2;
const S_TX_BYTES = 3;
const S_TX_INVALID = 4;
const S_TX_EAGAIN = 5;
const S_RX_SUPER = 6;
const S_RX_INVALID = 7;
const S_TX_SUPER = 8;
const S_COUNT = 9;
/** Largest IP packet plus the virtio_net_hdr: the offload read scratch size. */
const VNET_SCRATCH_BYTES = 65_535 + 10;

/**
 * Turns an errno from opening /dev/net/tun or TUNSETIFF into a `tun: …` message
 * that says what is missing and how to fix it (exported for tests).
 */
export function explainOpenError(e: NativeError, name: string): Error {
  switch (e.code) {
    case 'ENOENT':
    case 'ENODEV':
    case 'ENXIO':
      return new Error(
        'tun: /dev/net/tun is missing: load the driver (modprobe tun) or, in a container, pass the device (e.g. docker run --device /dev/net/tun)',
      );
    case 'EPERM':
    case 'EACCES':
      return new Error(
        `tun: not permitted to create TUN interface "${name}": run as root or grant CAP_NET_ADMIN (e.g. setcap cap_net_admin+ep "$(readlink -f "$(which node)")")`,
      );
    case 'EBUSY':
      return new Error(`tun: interface name "${name}" is taken (a TUN device of that name is already open)`);
    case 'EINVAL':
      return new Error(`tun: interface name "${name}" is taken by a non-TUN interface or is invalid`);
    default:
      return new Error(`tun: cannot open TUN "${name}": ${e.message}`);
  }
}

function canonical(address: string): string {
  const slot = new Uint8Array(ADDR_SLOT_BYTES);
  writeAddrSlot(slot, 0, address, 0);
  return readAddrSlotHost(slot, 0);
}

/**
 * Opens a TUN device (IFF_TUN | IFF_NO_PI, non-blocking, close-on-exec),
 * optionally moves it into `netns`, and configures MTU, addresses, link up and
 * routes with one `ip -batch`. Needs root or CAP_NET_ADMIN. On any failure the
 * fd is closed (so the interface disappears) and the promise rejects with a
 * `tun: …` message naming the value at fault.
 */
export async function openTun(opts: TunOptions): Promise<NativeTun> {
  const name = opts.name ?? 'mtun%d';
  validateIfName(name);
  const addresses = opts.addresses.map(parseCidr);
  const routes = (opts.routes ?? []).map(parseCidr);
  validateMtu(opts.mtu, addresses.some((a) => a.family === 6) || routes.some((r) => r.family === 6));
  if (opts.txQueueLen !== undefined && (!Number.isInteger(opts.txQueueLen) || opts.txQueueLen < 1 || opts.txQueueLen > 1_000_000)) {
    throw new Error(`tun: txQueueLen ${opts.txQueueLen} out of range 1..1000000`);
  }
  const batchSize = opts.batchSize ?? DEFAULT_TUN_BATCH;
  if (!Number.isInteger(batchSize) || batchSize < 1 || batchSize > 1024) {
    throw new Error(`tun: batch size ${batchSize} out of range 1..1024`);
  }
  // Linux lets one address sit on two interfaces; for a tunnel that is
  // always a mistake, so refuse it up front with the holder's name.
  if (addresses.length > 0) {
    const existing = await listAddresses(opts.netns);
    for (const a of addresses) {
      const c = canonical(a.address);
      const hit = existing.find((x) => x.address === c);
      if (hit) throw new Error(`tun: address ${a.text} is already in use on ${hit.ifname}${opts.netns ? ` in netns ${opts.netns}` : ''}`);
    }
  }
  const native = loadNative();
  let opened: { fd: number; name: string; offloads: number };
  try {
    opened = native.tunOpen(name, false, opts.offload ?? false);
  } catch (e) {
    throw explainOpenError(e as NativeError, name);
  }
  const dev = new NativeTun(native, opened.fd, opened.name, opts.mtu, batchSize, opts.netns, opened.offloads);
  try {
    if (opts.netns) await runIpBatch([`link set dev ${opened.name} netns ${opts.netns}`]);
    await runIpBatch(buildTunBatch(opened.name, opts.mtu, addresses, routes, opts.txQueueLen), opts.netns);
  } catch (e) {
    dev.close();
    throw e;
  }
  return dev;
}

/**
 * A TUN device from {@link openTun}. Buffers passed to read/write stay the
 * caller's; nothing is retained after a call returns. After close() every
 * method throws {@link ClosedError}.
 */
export class NativeTun implements TunDevice {
  readonly name: string;
  readonly batchSize: number;
  /** Link MTU; read() needs this many bytes after `offset` in every buffer. */
  readonly mtu: number;
  /** Namespace the interface lives in (undefined: this process's). */
  readonly netns: string | undefined;
  /** TUNSETOFFLOAD mask in effect (TUN_F_CSUM 1, TSO4 2, TSO6 4, TSO_ECN 8, USO4 0x20, USO6 0x40); 0 without offload. */
  readonly offloads: number;
  private readonly scratch: Buffer | undefined;
  private readonly wscratch: Buffer | undefined;
  private readonly splitState = new Uint32Array(2);
  private fd: number;
  private readonly native: NativeBinding;
  private readonly counters = new Float64Array(S_COUNT);
  private poll: NativePoll | undefined;
  private readableCb: (() => void) | undefined;
  /** Negative libuv status of a failed poll, 0 while healthy. */
  private pollError = 0;

  /** @internal Use {@link openTun}. */
  constructor(native: NativeBinding, fd: number, name: string, mtu: number, batchSize: number, netns?: string,
    offloads = 0) {
    this.native = native;
    this.offloads = offloads;
    this.scratch = offloads ? Buffer.alloc(VNET_SCRATCH_BYTES) : undefined;
    this.wscratch = offloads ? Buffer.alloc(VNET_SCRATCH_BYTES) : undefined;
    this.fd = fd;
    this.name = name;
    this.mtu = mtu;
    this.batchSize = batchSize;
    this.netns = netns;
  }

  private check(): number {
    if (this.fd < 0) throw new ClosedError(`tun ${this.name}`);
    return this.fd;
  }

  /**
   * Reads up to min(bufs.length, batchSize) packets; packet i at
   * bufs[i][offset..], length in sizes[i]. Every buffer must have `mtu`
   * bytes after `offset` (TypeError otherwise). Returns 0 when none are ready.
   * Throws once polling the device has failed: the data path is dead.
   */
  read(bufs: Buffer[], sizes: Uint32Array, offset: number): number {
    const fd = this.check();
    if (this.pollError !== 0) throw new Error(`tun ${this.name}: polling the device failed (libuv status ${this.pollError})`);
    const a = slotArena(bufs);
    const slots = a !== undefined ? a.buf : bufs;
    const stride = a !== undefined ? a.stride : 0;
    if (this.scratch) {
      return this.native.tunReadVnet(fd, slots, sizes, offset, this.batchSize, this.mtu, this.scratch, this.splitState,
        this.counters, stride);
    }
    return this.native.tunRead(fd, slots, sizes, offset, this.batchSize, this.mtu, this.counters, stride);
  }

  /**
   * Writes packets [0, count) from bufs[i][offset .. offset+sizes[i]).
   * Returns how many the kernel consumed: packets it refuses as malformed
   * count as consumed and are tallied in `txInvalid`; if the kernel queue is
   * full (EAGAIN, rare: the TUN driver normally drops inside the kernel
   * instead) the rest stay the caller's, who retries or drops and counts.
   */
  write(bufs: Buffer[], sizes: Uint32Array, offset: number, count: number): number {
    const fd = this.check();
    if (this.wscratch) return this.native.tunWriteVnet(fd, bufs, sizes, offset, count, this.counters, this.wscratch);
    return this.native.tunWrite(fd, bufs, sizes, offset, count, this.counters);
  }

  /**
   * Level-triggered readiness: cb runs on every loop turn while packets wait.
   * One callback; replaces the last. Stop with pauseReadable() or close().
   */
  onReadable(cb: () => void): void {
    const fd = this.check();
    this.readableCb = cb;
    if (!this.poll) {
      this.poll = this.native.pollStart(fd, POLL_READABLE, (ev) => {
        // A poll error means no more readiness: the next read() throws it so the reader fails loudly.
        if (ev < 0 && this.pollError === 0) this.pollError = ev;
        this.readableCb?.();
      });
    }
  }

  nativeFd(): { fd: number; vnet: boolean } {
    return { fd: this.check(), vnet: this.scratch !== undefined };
  }

  /** Stops readiness callbacks (the loop may exit) until onReadable is called again. */
  pauseReadable(): void {
    this.check();
    if (this.poll) {
      this.native.pollClose(this.poll);
      this.poll = undefined;
    }
  }

  /** Adds routes through this device (`10.1.0.0/16`, `fd01::/48`). Rejects with `tun: …` naming a route that exists. */
  async addRoutes(routes: string[]): Promise<void> {
    this.check();
    const parsed = routes.map(parseCidr);
    if (parsed.length) await runIpBatch(parsed.map((r: Cidr) => routeLine('add', this.name, r)), this.netns);
  }

  /** Removes routes through this device. */
  async removeRoutes(routes: string[]): Promise<void> {
    this.check();
    const parsed = routes.map(parseCidr);
    if (parsed.length) await runIpBatch(parsed.map((r: Cidr) => routeLine('del', this.name, r)), this.netns);
  }

  /** A snapshot of the counters. */
  stats(): TunStats {
    const c = this.counters;
    return {
      rxPackets: c[S_RX_PACKETS]!,
      rxBytes: c[S_RX_BYTES]!,
      txPackets: c[S_TX_PACKETS]!,
      txBytes: c[S_TX_BYTES]!,
      txInvalid: c[S_TX_INVALID]!,
      txEagain: c[S_TX_EAGAIN]!,
      rxSuper: c[S_RX_SUPER]!,
      rxInvalid: c[S_RX_INVALID]!,
      txSuper: c[S_TX_SUPER]!,
    };
  }

  /** True after close(). */
  get closed(): boolean {
    return this.fd < 0;
  }

  /** Stops polling and closes the fd; the kernel removes the interface and its routes. Idempotent. */
  close(): void {
    if (this.fd < 0) return;
    if (this.poll) {
      this.native.pollClose(this.poll);
      this.poll = undefined;
    }
    const fd = this.fd;
    this.fd = -1;
    this.readableCb = undefined;
    this.native.closeFd(fd);
  }
}
