/**
 * The ngtcp2 0.12 + GnuTLS engine (src/native/quic-*.c) behind the narrow
 * engine interface endpoint.ts and connection.ts drive (`QuicEngine` in
 * engine.ts). Error messages are the ones connection.ts maps (`Done`,
 * `StreamReset(n)`, `StreamStopped(n)`, `StreamLimit`,
 * `InvalidStreamState(n)`; the names quiche, the engine before, gave them).
 * Buffers passed in are copied by the native side before each call returns.
 */
import { loadNative } from '../native/addon.js';
import { ADDR_SLOT_BYTES } from '../net/udp.js';
import { readAddrSlotHost, readAddrSlotPort } from '../net/udp-batch.js';
import {
  INFO_CLOSED, INFO_DGRAM_MAX, INFO_DGRAM_RECV_FULL, INFO_DGRAM_RECV_QUEUED, INFO_DGRAM_SEND_QUEUED, INFO_DRAINING, INFO_ESTABLISHED, INFO_LENGTH,
  INFO_PEER_GEN, INFO_RESUMED, INFO_STREAM_READABLE, INFO_TIMED_OUT,
} from './engine-abi.js';
import type {
  QuicEngine,
  EngineConfig,
  EngineConnection,
  EngineConnectionError,
  EngineHostPort,
  EngineOutBatch,
  EnginePathStats,
  EngineRecvInfo,
  EngineSendInfo,
  EngineStats,
} from './engine.js';

/** Opaque native handles. */
interface NativeConfig {
  readonly __quicConfig: unique symbol;
}
interface NativeConn {
  readonly __quicConn: unique symbol;
}

/** The quic* functions of the addon (src/native/quic-napi.c documents each). */
interface QuicNative {
  quicConfigNew(verifyPeer: boolean, ca: Uint8Array | null, key: Uint8Array | null, cert: Uint8Array | null): NativeConfig;
  quicConfigSet(cfg: NativeConfig, field: number, value: number): void;
  quicConfigSetAlpn(cfg: NativeConfig, protos: Uint8Array[]): void;
  quicConfigSetBytes(cfg: NativeConfig, which: 0 | 1, bytes: Uint8Array): void;
  quicConnect(cfg: NativeConfig, sni: string | null, scid: Uint8Array, lh: string, lp: number, rh: string, rp: number): NativeConn;
  quicAccept(cfg: NativeConfig, scid: Uint8Array, odcid: Uint8Array | null, lh: string, lp: number, rh: string, rp: number): NativeConn;
  quicSetRecvFrom(c: NativeConn, host: string, port: number): void;
  quicPeer(c: NativeConn, slot: Uint8Array): void;
  quicRecv(c: NativeConn, data: Uint8Array, offset?: number, length?: number): void;
  quicSend(c: NativeConn, out: Uint8Array): number;
  quicOutBatch(arena: Uint8Array, stride: number, sizes: Uint32Array, segs: Uint32Array, addrs: Uint8Array, state: Float64Array): EngineOutBatch;
  quicLock(): void;
  quicUnlock(): void;
  quicDrain(c: NativeConn, batch: EngineOutBatch, peerSlot: Uint8Array): void;
  quicTimeout(c: NativeConn): number;
  quicOnTimeout(c: NativeConn): void;
  quicPing(c: NativeConn): void;
  quicTrimIdle(c: NativeConn): void;
  quicSetAnchor(c: NativeConn, streamId: number, frame: Uint8Array): void;
  quicClose(c: NativeConn, app: boolean, code: number, reason: Uint8Array | null): boolean;
  quicStreamSend(c: NativeConn, id: number, data: Uint8Array, fin: boolean, res: Float64Array): number;
  quicStreamRecv(c: NativeConn, id: number, out: Uint8Array, res: Float64Array): number;
  quicStreamShutdown(c: NativeConn, id: number, read: boolean, code: number): number;
  quicStreams(c: NativeConn, writable: boolean): number[];
  quicDgramSend(c: NativeConn, data: Uint8Array, offset?: number, length?: number): number;
  quicDgramRecv(c: NativeConn, out: Uint8Array): number;
  quicDgramRecvBatch(c: NativeConn, out: Uint8Array, lens: Uint32Array): number;
  quicRecvSegments(c: NativeConn, data: Uint8Array, offset: number, size: number, step: number, res: Int32Array): number;
  quicInfo(c: NativeConn, res: Float64Array): void;
  quicStats(c: NativeConn, res: Float64Array): void;
  quicError(c: NativeConn, peer: boolean): EngineConnectionError | null;
  quicTlsInfo(c: NativeConn, what: 0): Uint8Array;
  quicTlsInfo(c: NativeConn, what: 1): string | null;
  quicTlsInfo(c: NativeConn, what: 2): Uint8Array[] | null;
  quicTlsInfo(c: NativeConn, what: 3): Uint8Array | null;
  quicSetSession(c: NativeConn, data: Uint8Array): void;
  quicSetKeylog(c: NativeConn, path: string): void;
  quicFree(c: NativeConn): void;
}

/** Field numbers of quicConfigSet (enum CF_* in quic-napi.c). */
const F = {
  idleMs: 0, maxRecvUdp: 1, maxSendUdp: 2, maxData: 3, sdBidiLocal: 4, sdBidiRemote: 5, sdUni: 6, streamsBidi: 7,
  streamsUni: 8, disableMigration: 9, cc: 10, dgram: 11, dgramRq: 12, dgramSq: 13, streamWindow: 14, connWindow: 15,
  keylog: 16, verifyPeer: 17, codelTargetUs: 18, codelIntervalUs: 19,
} as const;
/** ngtcp2_cc_algo. */
const CC: Record<string, number> = { reno: 0, cubic: 1, bbr: 2, bbr2: 3 };
/** Stream call results (QE_S_* in quic-engine.h). */
const S_OK = 0, S_DONE = -1, S_RESET = -2, S_STOPPED = -3, S_LIMIT = -4;

let native: QuicNative | null = null;
function n(): QuicNative {
  native ??= loadNative() as unknown as QuicNative;
  return native;
}

class Ngtcp2Config implements EngineConfig {
  readonly h: NativeConfig;
  constructor(verifyPeer: boolean, ca: Uint8Array | null, key: Uint8Array | null, cert: Uint8Array | null) {
    this.h = n().quicConfigNew(verifyPeer, ca, key, cert);
  }
  private set(f: number, v: number): void {
    n().quicConfigSet(this.h, f, v);
  }
  verifyPeer(verify: boolean): void { this.set(F.verifyPeer, verify ? 1 : 0); }
  logKeys(): void { this.set(F.keylog, 1); }
  setTicketKey(key: Uint8Array): void { n().quicConfigSetBytes(this.h, 0, key); }
  setApplicationProtos(protos: string[]): void {
    n().quicConfigSetAlpn(this.h, protos.map((p) => new TextEncoder().encode(p)));
  }
  setMaxIdleTimeout(ms: number): void { this.set(F.idleMs, ms); }
  setMaxRecvUdpPayloadSize(size: number): void { this.set(F.maxRecvUdp, size); }
  setMaxSendUdpPayloadSize(size: number): void { this.set(F.maxSendUdp, size); }
  setInitialMaxData(v: number): void { this.set(F.maxData, v); }
  setInitialMaxStreamDataBidiLocal(v: number): void { this.set(F.sdBidiLocal, v); }
  setInitialMaxStreamDataBidiRemote(v: number): void { this.set(F.sdBidiRemote, v); }
  setInitialMaxStreamDataUni(v: number): void { this.set(F.sdUni, v); }
  setInitialMaxStreamsBidi(v: number): void { this.set(F.streamsBidi, v); }
  setInitialMaxStreamsUni(v: number): void { this.set(F.streamsUni, v); }
  setDisableActiveMigration(v: boolean): void { this.set(F.disableMigration, v ? 1 : 0); }
  setCcAlgorithmName(name: string): void {
    const cc = CC[name];
    if (cc === undefined) throw new Error(`quic: unknown congestion control '${name}' (reno, cubic, bbr, bbr2)`);
    this.set(F.cc, cc);
  }
  enableDgram(enabled: boolean, recvQueueLen: number, sendQueueLen: number): void {
    this.set(F.dgram, enabled ? 1 : 0);
    this.set(F.dgramRq, recvQueueLen);
    this.set(F.dgramSq, sendQueueLen);
  }
  setDgramQueueDelay(targetUs: number, intervalUs: number): void {
    if (targetUs !== 0 && !(Number.isInteger(targetUs) && Number.isInteger(intervalUs) && targetUs > 0 && intervalUs > targetUs)) {
      throw new RangeError(`quic: DATAGRAM queue delay needs integer µs with 0 < target (${targetUs}) < interval (${intervalUs})`);
    }
    this.set(F.codelTargetUs, targetUs);
    this.set(F.codelIntervalUs, intervalUs);
  }
  setMaxStreamWindow(v: number): void { this.set(F.streamWindow, v); }
  setMaxConnectionWindow(v: number): void { this.set(F.connWindow, v); }
  setStatelessResetToken(v?: bigint | null): void {
    if (v === undefined || v === null) return;
    const b = new Uint8Array(16);
    let x = v;
    for (let i = 15; i >= 0; i--) {
      b[i] = Number(x & 0xffn);
      x >>= 8n;
    }
    n().quicConfigSetBytes(this.h, 1, b);
  }
}

/** One connection of the engine (exported for bench/quic-datagram.mjs, which times its methods). */
export class Ngtcp2Connection implements EngineConnection {
  private readonly h: NativeConn;
  private readonly info = new Float64Array(INFO_LENGTH);
  private readonly res = new Float64Array(3);
  /** quicStats output for srttMs (the telemetry tick reads it for every session each second). */
  private readonly st = new Float64Array(9);
  /** Source of the datagrams recv is given (told to the engine when it changes). */
  private rxHost: string;
  private rxPort: number;
  /** The engine's peer generation (INFO_PEER_GEN) sendInfo.to was read at. */
  private peerGen = 0;
  private readonly sendInfo: EngineSendInfo;
  private readonly sendResult: [number, EngineSendInfo];

  nativeHandle(): unknown {
    return this.h;
  }

  constructor(h: NativeConn, local: EngineHostPort, remote: EngineHostPort) {
    this.h = h;
    this.rxHost = remote.host;
    this.rxPort = remote.port;
    this.sendInfo = { from: { ...local }, to: { host: remote.host, port: remote.port }, at: {} };
    this.sendResult = [0, this.sendInfo];
  }

  private poll(): Float64Array {
    const info = this.info;
    n().quicInfo(this.h, info);
    if (info[INFO_PEER_GEN] !== this.peerGen) {
      // The engine moved to another path: answer there (a new object, so the endpoint rewrites its address slot).
      this.peerGen = info[INFO_PEER_GEN]!;
      const slot = new Uint8Array(ADDR_SLOT_BYTES);
      n().quicPeer(this.h, slot);
      this.sendInfo.to = { host: readAddrSlotHost(slot, 0), port: readAddrSlotPort(slot, 0) };
    }
    return info;
  }
  snapshot(): Float64Array { return this.poll(); }
  lastSnapshot(): Float64Array { return this.info; }

  setKeylog(path: string): void { n().quicSetKeylog(this.h, path); }
  setSession(session: Uint8Array): void { n().quicSetSession(this.h, session); }

  recv(data: Uint8Array, info: EngineRecvInfo, offset = 0, length = data.length - offset): number {
    this.readOn(info);
    n().quicRecv(this.h, data, offset, length);
    return length;
  }

  recvSegments(data: Uint8Array, info: EngineRecvInfo, offset: number, size: number, step: number, refused: Int32Array): number {
    this.readOn(info);
    return n().quicRecvSegments(this.h, data, offset, size, step, refused);
  }

  /**
   * The path what comes next is read on. Only that: where the connection sends changes only if the engine
   * moves there after an authenticated packet (RFC 9000 §9.3, a rebinding client; poll sees it): a datagram
   * that merely carries the connection ID, which anyone on the path can see, must not redirect it.
   */
  private readOn(info: EngineRecvInfo): void {
    const f = info.from;
    if (f.port !== this.rxPort || f.host !== this.rxHost) {
      n().quicSetRecvFrom(this.h, f.host, f.port);
      this.rxHost = f.host;
      this.rxPort = f.port;
    }
  }

  /** Returns a reused [length, info] pair: read it before the next call. */
  send(out: Uint8Array): [number, EngineSendInfo] | null {
    const len = n().quicSend(this.h, out);
    if (len === 0) return null;
    this.sendResult[0] = len;
    return this.sendResult;
  }

  drain(batch: EngineOutBatch, peerSlot: Uint8Array): void { n().quicDrain(this.h, batch, peerSlot); }
  peerAddress(): EngineHostPort { return this.sendInfo.to; }

  streamRecv(streamId: number, out: Uint8Array): [number, boolean] | null {
    const r = this.res;
    const rv = n().quicStreamRecv(this.h, streamId, out, r);
    if (rv === S_OK) return [r[0], r[1] === 1];
    if (rv === S_DONE) return null;
    if (rv === S_RESET) throw new Error(`StreamReset(${r[2]})`);
    throw new Error(`InvalidStreamState(${streamId})`);
  }

  streamSend(streamId: number, data: Uint8Array, fin: boolean): number | null {
    const r = this.res;
    const rv = n().quicStreamSend(this.h, streamId, data, fin, r);
    if (rv === S_OK) return r[0];
    if (rv === S_DONE) return null;
    if (rv === S_STOPPED) throw new Error(`StreamStopped(${r[1]})`);
    if (rv === S_LIMIT) throw new Error('StreamLimit');
    throw new Error(`InvalidStreamState(${streamId})`);
  }

  streamShutdown(streamId: number, direction: number, err: number): void | null {
    const rv = n().quicStreamShutdown(this.h, streamId, direction === SHUTDOWN_READ, err);
    if (rv === S_DONE) throw new Error('Done');
    if (rv !== S_OK) throw new Error(`InvalidStreamState(${streamId})`);
  }

  readable(): Iterable<number> { return n().quicStreams(this.h, false); }
  writable(): Iterable<number> { return n().quicStreams(this.h, true); }

  dgramRecv(out: Uint8Array): number | null {
    const len = n().quicDgramRecv(this.h, out);
    if (len === -1) return null;
    if (len === -2) throw new Error('BufferTooShort');
    return len;
  }
  dgramRecvBatch(out: Uint8Array, lens: Uint32Array): number {
    const k = n().quicDgramRecvBatch(this.h, out, lens);
    if (k === -2) throw new Error('BufferTooShort');
    return k;
  }
  dgramRecvQueueLen(): number { return this.poll()[INFO_DGRAM_RECV_QUEUED]; }
  dgramSendQueueLen(): number { return this.poll()[INFO_DGRAM_SEND_QUEUED]; }
  isDgramRecvQueueFull(): boolean { return this.poll()[INFO_DGRAM_RECV_FULL] === 1; }
  dgramSend(data: Uint8Array, offset = 0, length = data.length - offset): void | null {
    const rv = n().quicDgramSend(this.h, data, offset, length);
    if (rv === 0) return null;
    if (rv < 0) throw new Error('InvalidState');
  }
  dgramMaxWritableLen(): number | null {
    const m = this.poll()[INFO_DGRAM_MAX];
    return m < 0 ? null : m;
  }

  timeout(): number | null {
    const us = n().quicTimeout(this.h);
    return us < 0 ? null : us / 1000;
  }
  onTimeout(): void { n().quicOnTimeout(this.h); }

  close(app: boolean, err: number, reason: Uint8Array): void | null {
    if (!n().quicClose(this.h, app, err, reason)) throw new Error('Done');
  }

  applicationProto(): Uint8Array { return n().quicTlsInfo(this.h, 0) ?? new Uint8Array(0); }
  serverName(): string | null { return n().quicTlsInfo(this.h, 1); }
  peerCertChain(): Uint8Array[] | null { return n().quicTlsInfo(this.h, 2); }
  session(): Uint8Array | null { return n().quicTlsInfo(this.h, 3); }

  isEstablished(): boolean { return this.poll()[INFO_ESTABLISHED] === 1; }
  isResumed(): boolean { return this.poll()[INFO_RESUMED] === 1; }
  hasReadableStream(): boolean { return this.poll()[INFO_STREAM_READABLE] === 1; }
  isDraining(): boolean { return this.poll()[INFO_DRAINING] === 1; }
  isClosed(): boolean { return this.poll()[INFO_CLOSED] === 1; }
  isTimedOut(): boolean { return this.poll()[INFO_TIMED_OUT] === 1; }
  peerError(): EngineConnectionError | null { return n().quicError(this.h, true); }
  localError(): EngineConnectionError | null { return n().quicError(this.h, false); }

  stats(): EngineStats {
    const s = new Float64Array(11);
    n().quicStats(this.h, s);
    // ngtcp2 0.12 counts losses only per stream and per DATAGRAM (quic-conn.c
    // qe_conn_lost_pkts); it has no retransmission or lost-byte counts.
    return { recv: s[0], sent: s[1], sentBytes: s[2], recvBytes: s[3], lost: s[8] < 0 ? 0 : s[8], retrans: 0, lostBytes: 0, inFlightBytes: s[9], ptoAnchors: s[10] };
  }
  pathStats(): EnginePathStats[] {
    const s = new Float64Array(9);
    n().quicStats(this.h, s);
    if (s[5] < 0) return [];
    return [{ active: true, rtt: s[4], cwnd: s[5], pmtu: s[6], deliveryRate: s[7] }];
  }
  srttMs(): number | null {
    const s = this.st;
    n().quicStats(this.h, s);
    return s[5] < 0 ? null : s[4];
  }
  sendAckEliciting(): void { n().quicPing(this.h); }
  trimIdle(): void { n().quicTrimIdle(this.h); }
  setPtoAnchor(streamId: number, frame: Uint8Array): void { n().quicSetAnchor(this.h, streamId, frame); }
  free(): void { n().quicFree(this.h); }
}

const SHUTDOWN_READ = 0;

/** The engine object. Loads the addon on first use. */
export const ngtcp2Engine: QuicEngine = {
  MAX_CONN_ID_LEN: 20,
  MIN_CLIENT_INITIAL_LEN: 1200,
  Shutdown: { Read: SHUTDOWN_READ, Write: 1 },
  CRYPTO_ERROR_START: 0x100,
  Config: {
    withTls: (verifyPeer, ca, key, cert) => new Ngtcp2Config(verifyPeer, ca, key, cert),
  },
  lock: () => n().quicLock(),
  unlock: () => n().quicUnlock(),
  outBatch: (arena, stride, sizes, segs, addrs, state) => n().quicOutBatch(arena, stride, sizes, segs, addrs, state),
  Connection: {
    connect(serverName, scid, local, remote, config) {
      const h = n().quicConnect((config as Ngtcp2Config).h, serverName, scid, local.host, local.port, remote.host, remote.port);
      return new Ngtcp2Connection(h, local, remote);
    },
    accept(scid, odcid, local, remote, config) {
      const h = n().quicAccept((config as Ngtcp2Config).h, scid, odcid, local.host, local.port, remote.host, remote.port);
      return new Ngtcp2Connection(h, local, remote);
    },
  },
};
