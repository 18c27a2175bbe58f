/**
 * Loader and type declarations for the C addon (`build/Release/mtun_native.node`,
 * built from `src/native/*.c` by node-gyp through the root `binding.gyp`).
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Poll event bits passed to and from {@link NativeBinding.pollStart}. */
export const POLL_READABLE = 1;
/** Writable bit; a callback with -1 means the fd reported an error. */
export const POLL_WRITABLE = 2;

/** Opaque uv_poll handle. */
export interface NativePoll {
  readonly __nativePoll: unique symbol;
}

/** The functions the addon exports. Every one throws (never crashes) on bad arguments. */
export interface NativeBinding {
  /** The calling convention's version (MTUN_ABI in common.h). */
  readonly abi?: number;
  tunOpen(name: string, multiQueue: boolean, vnetHdr?: boolean): { fd: number; name: string; offloads: number };
  /** bufs: the slots, or with stride > 0 one Buffer of back-to-back slots of `stride` bytes (net/slot-arena.ts). */
  tunReadVnet(fd: number, bufs: Buffer[] | Buffer, sizes: Uint32Array, offset: number, max: number, minSpace: number,
    scratch: Uint8Array, state: Uint32Array, stats?: Float64Array, stride?: number): number;
  tunWriteVnet(fd: number, bufs: Buffer[], sizes: Uint32Array, offset: number, count: number,
    stats?: Float64Array, wscratch?: Uint8Array): number;
  /** bufs: as tunReadVnet's. */
  tunRead(fd: number, bufs: Buffer[] | Buffer, sizes: Uint32Array, offset: number, max: number, minSpace: number,
    stats?: Float64Array, stride?: number): number;
  tunWrite(fd: number, bufs: Buffer[], sizes: Uint32Array, offset: number, count: number,
    stats?: Float64Array): number;
  closeFd(fd: number): void;
  udpOpen(family: 0 | 4 | 6, host: string, port: number, rcvbuf: number, sndbuf: number, gro: boolean): {
    /** pktinfo: recv reports each datagram's local address and send honours a slot's local address. */
    fd: number; gso: boolean; gro: boolean; pktinfo: boolean; rcvbuf: number; sndbuf: number;
  };
  udpLocal(fd: number): { family: 4 | 6; slot: Buffer };
  /** bufs: as tunReadVnet's. */
  udpRecv(fd: number, bufs: Buffer[] | Buffer, sizes: Uint32Array, addrs: Uint8Array, segs: Uint32Array, max: number,
    stats: Float64Array, stride?: number): number;
  udpSend(fd: number, family: 0 | 4 | 6, bufs: Buffer[], sizes: Uint32Array, addrs: Uint8Array, segs: Uint32Array,
    count: number, autoGso: boolean, stats: Float64Array): number;
  pollStart(fd: number, events: number, cb: (events: number) => void): NativePoll;
  /** glibc malloc accounting into out: [in use (incl. mmap'd), free inside arenas, mmap'd] bytes; a 4th slot gets the QUIC engine's page pool (quic-pages.c). */
  mallocStats(out: Float64Array): void;
  pollSet(poll: NativePoll, events: number): void;
  pollClose(poll: NativePoll): void;
  /** A table of CONNECT-IP checks compiled by src/masque/native-judge.ts; throws TypeError on malformed bytes. */
  judgeTable(bytes: Uint8Array): NativeJudgeTable;
  /** Verdicts of the table on packets arena[i*stride + offset, + lens[i]) into out[i] (see src/native/judge.h); returns count. */
  judgeBatch(table: NativeJudgeTable, arena: Uint8Array, stride: number, offset: number, lens: Uint32Array, count: number,
    out: Int32Array, checkLink: boolean): number;
  /**
   * The agent's TUN → UDP thread (src/native/dataplane.c): reads the TUN into the ring arena (nslots slots of
   * `stride` bytes, packet at `headroom`), queues the plain packets on the attached QUIC connection and sends
   * them; publishes every packet read (meta[2i] length, meta[2i+1] kind: 1 sent, 2 JavaScript's), stamps[i]
   * (dpNow's clock), ctl[0] producer / ctl[1] consumer index. onReady runs on the event loop after a publish.
   * The receive leg's ring of datagrams for the endpoint: uarena (slots of ustride bytes), umeta[i] length,
   * uaddrs (address slots), ctl[2] producer / ctl[3] consumer index.
   */
  dpOpen(tunFd: number, vnet: boolean, udpFd: number, gso: boolean, arena: Buffer, stride: number, headroom: number,
    mtu: number, meta: Uint32Array, stamps: Float64Array, ctl: Uint32Array, onReady: () => void,
    uarena: Buffer, ustride: number, umeta: Uint32Array, uaddrs: Uint8Array): NativeDataPlane;
  /**
   * conn: the engine's connection handle; prefix: quarter stream ID + context ID 0; ipv6: IPv6 still carried;
   * table: the session's receive check (an agent table from judgeTable): the thread also receives.
   */
  dpAttach(dp: NativeDataPlane, conn: unknown, prefix: Uint8Array, ipv6: boolean, table?: NativeJudgeTable | null, mssMtu?: number, flowTtlMs?: number, slot?: number, local?: Uint8Array): void;
  /** The gateway's return-flow cache forgets every flow (the inbound table dropped some it may hold). */
  dpForgetFlows(dp: NativeDataPlane): void;
  /** The event loop handled what held the receive leg: the thread receives again, unless it held again after `held` (its holds counter then). */
  dpResume(dp: NativeDataPlane, held: number): void;
  /** Detaches attachment `slot`, or every one when omitted. */
  dpDetach(dp: NativeDataPlane, slot?: number): void;
  /** Pairs [slot, QUIC packets] of the attachments the thread fed packets since the last call; returns the pairs written. */
  dpTouched(dp: NativeDataPlane, out: Uint32Array): number;
  /** One read round on this thread, no send (the endpoint's follows); returns packets read; throws `tun: read: …` once the device failed. */
  dpPoll(dp: NativeDataPlane, out?: Uint32Array): number;
  /** Tell the thread slots were released (ctl[1] stored first). */
  dpRelease(dp: NativeDataPlane): void;
  /** errno of a failed TUN read, 0 while healthy. */
  dpError(dp: NativeDataPlane): number;
  dpStats(dp: NativeDataPlane, out: Float64Array): void;
  dpNow(): number;
  dpClose(dp: NativeDataPlane): void;
  /** Tests only: whether the TUN thread would send this packet itself (src/native/dataplane.c dp_plain). */
  dpPlain(packet: Uint8Array, ipv6: boolean): boolean;
  /** Tests only: the thread's MSS clamp in place (dp_clamp_mss), held to clampTcpMss; the new MSS, 0 when unchanged. */
  dpClampMss(packet: Uint8Array, mtu: number): number;
  /**
   * Tests only: a FIFO of packets enqueued at enqUs[i] and a link wanting one at each deqUs[k], the heads
   * judged by the engine's CoDel (src/native/codel.h) as the engine judges its DATAGRAM send queue;
   * fate[i]: 0 still queued, 1 sent, 2 dropped; at[i]: the k that took it. Returns the drops.
   */
  codelQueue(targetUs: number, intervalUs: number, enqUs: Float64Array, deqUs: Float64Array, fate: Uint8Array,
    at: Uint32Array): number;
}

/** Opaque handle of the agent's data-plane thread (src/native/dataplane.c). */
export interface NativeDataPlane {
  readonly __nativeDataPlane: unique symbol;
}

/** Opaque handle of a native judge table (src/native/judge.h). */
export interface NativeJudgeTable {
  readonly __nativeJudgeTable: unique symbol;
}

/** An errno-carrying error thrown by the addon (`code` is the errno name, e.g. `EPERM`). */
export interface NativeError extends Error {
  code?: string;
  errno?: number;
}

let cached: NativeBinding | undefined;
let loadError: Error | undefined;

/** Path of the built addon: `<repo>/build/Release/mtun_native.node` (src/native and dist/native are both two levels down). */
export function nativeAddonPath(): string {
  const override = process.env['MTUN_NATIVE_ADDON'];
  if (override) return resolve(override);
  const here = dirname(fileURLToPath(import.meta.url));
  return resolve(here, '..', '..', 'build', 'Release', 'mtun_native.node');
}

/**
 * Loads the addon once and returns it. Throws `native: …` with the fix
 * (`npm rebuild` builds it with node-gyp) when it is missing or does not load.
 */
export function loadNative(): NativeBinding {
  if (cached) return cached;
  if (loadError) throw loadError;
  const path = nativeAddonPath();
  if (!existsSync(path)) {
    loadError = new Error(
      `native: addon not built (${path} is missing); run \`npm rebuild\` in the mtun directory (needs make, g++ and Node headers)`,
    );
    throw loadError;
  }
  let loaded: NativeBinding;
  try {
    loaded = createRequire(import.meta.url)(path) as NativeBinding;
  } catch (e) {
    loadError = new Error(`native: cannot load ${path}: ${(e as Error).message}; rebuild with \`npm rebuild\``);
    throw loadError;
  }
  if (loaded.abi !== NATIVE_ABI) {
    loadError = new Error(`native: ${path} is a build for another version of mtun (calling convention ${loaded.abi ?? 1}, this code needs ${NATIVE_ABI}); rebuild with \`npm rebuild\``);
    throw loadError;
  }
  cached = loaded;
  return cached;
}

/** The calling convention this code speaks (MTUN_ABI in src/native/common.h). */
export const NATIVE_ABI = 16;

/** True when the addon loads (for tests and for choosing the node:dgram fallback). */
export function nativeAvailable(): boolean {
  try {
    loadNative();
    return true;
  } catch {
    return false;
  }
}
