/**
 * The QUIC engine src/quic drives: ngtcp2 0.12 + GnuTLS in our C addon
 * (src/native/quic-*.c, adapted in ngtcp2.ts; issue #13,
 * docs/decisions/0002-ngtcp2-engine-in-the-addon.md), declared here as the
 * narrow sans-IO interface endpoint.ts and connection.ts use.
 */
import { ngtcp2Engine } from './ngtcp2.js';

export * from './engine-abi.js';

/** Host and port as the binding passes addresses. */
export interface EngineHostPort {
  host: string;
  port: number;
}

/** Addresses of one received datagram. */
export interface EngineRecvInfo {
  from: EngineHostPort;
  to: EngineHostPort;
}

/** Where the engine wants a packet sent; `at` (pacing instant) is opaque and unused. */
export interface EngineSendInfo {
  from: EngineHostPort;
  to: EngineHostPort;
  at: object;
}

/** A connection close error (RFC 9000 §19.19), ours or the peer's. */
export interface EngineConnectionError {
  isApp: boolean;
  errorCode: number;
  reason: Uint8Array;
}

/** Connection-wide counters, the fields we read. */
export interface EngineStats {
  recv: number;
  sent: number;
  lost: number;
  retrans: number;
  sentBytes: number;
  recvBytes: number;
  lostBytes: number;
  peerMaxDatagramFrameSize?: number;
  /** Bytes of ack-eliciting packets sent and not yet acknowledged or declared lost; 0 once released. */
  inFlightBytes: number;
  /** PTO anchor frames queued (setPtoAnchor). */
  ptoAnchors: number;
}

/** Per-path counters, the fields we read. */
export interface EnginePathStats {
  active: boolean;
  rtt: number;
  cwnd: number;
  pmtu: number;
  deliveryRate: number;
}

/** TLS credentials plus transport parameters; shared by many connections (each copies what it needs at accept/connect). */
export interface EngineConfig {
  verifyPeer(verify: boolean): void;
  logKeys(): void;
  setTicketKey(key: Uint8Array): void;
  setApplicationProtos(protos: string[]): void;
  setMaxIdleTimeout(ms: number): void;
  setMaxRecvUdpPayloadSize(size: number): void;
  setMaxSendUdpPayloadSize(size: number): void;
  setInitialMaxData(v: number): void;
  setInitialMaxStreamDataBidiLocal(v: number): void;
  setInitialMaxStreamDataBidiRemote(v: number): void;
  setInitialMaxStreamDataUni(v: number): void;
  setInitialMaxStreamsBidi(v: number): void;
  setInitialMaxStreamsUni(v: number): void;
  setDisableActiveMigration(v: boolean): void;
  setCcAlgorithmName(name: string): void;
  enableDgram(enabled: boolean, recvQueueLen: number, sendQueueLen: number): void;
  /**
   * CoDel (RFC 8289) on each connection's DATAGRAM send queue: a datagram
   * that waited longer than targetUs, after the queue's delay stayed above
   * target for intervalUs, is dropped unsent (counted: INFO_DGRAM_SEND_DELAY_DROPPED).
   * targetUs 0 turns it off (the default).
   */
  setDgramQueueDelay(targetUs: number, intervalUs: number): void;
  setMaxStreamWindow(v: number): void;
  setMaxConnectionWindow(v: number): void;
  /** Server: the stateless_reset_token transport parameter (u128, big-endian as sent). */
  setStatelessResetToken(v?: bigint | null): void;
}

/**
 * The endpoint's send batch registered with the engine (`QuicEngine.outBatch`),
 * so that a connection can be drained into it in one call.
 */
export interface EngineOutBatch {
  readonly __engineOutBatch: unique symbol;
}

/** The sans-IO state machine of one QUIC connection. */
export interface EngineConnection {
  /**
   * The connection's state in one engine call (INFO_* indices). The array
   * is reused: valid until the next call on this connection. For a caller
   * that asks several questions at once (the endpoint after input), where
   * isEstablished(), isClosed()… would each ask the engine again.
   */
  snapshot(): Float64Array;
  /** The array the last {@link snapshot} filled, without asking the engine again (the caller knows nothing changed it since). */
  lastSnapshot(): Float64Array;
  /** The engine's own handle of this connection, for a native data plane to attach to (src/native/dataplane.c). */
  nativeHandle(): unknown;
  setKeylog(path: string): void;
  setSession(session: Uint8Array): void;
  /** Bytes [offset, offset + length) of data (default: all of it), without a view per packet. */
  recv(data: Uint8Array, info: EngineRecvInfo, offset?: number, length?: number): number;
  /**
   * The datagrams of one GRO receive from `info.from`: data[offset, offset +
   * size) cut every `step` bytes, handed to the engine one after the other
   * while each is a short-header packet carrying this connection's ID.
   * Returns how many it took (the caller handles the rest one by one);
   * refused[0] is how many of them the engine refused (recv would throw).
   */
  recvSegments(data: Uint8Array, info: EngineRecvInfo, offset: number, size: number, step: number, refused: Int32Array): number;
  send(out: Uint8Array): [number, EngineSendInfo] | null;
  /**
   * Writes packets into the registered batch in one call (DRAIN_* state),
   * each new slot addressed with `peerSlot` (36 bytes, src/net/udp.ts);
   * the same packets send() would give, without a call per packet.
   */
  drain(batch: EngineOutBatch, peerSlot: Uint8Array): void;
  /** Where the engine sends: the same object until the peer's address changes (a rebinding client). */
  peerAddress(): EngineHostPort;
  streamRecv(streamId: number, out: Uint8Array): [number, boolean] | null;
  streamSend(streamId: number, data: Uint8Array, fin: boolean): number | null;
  streamShutdown(streamId: number, direction: number, err: number): void | null;
  readable(): Iterable<number>;
  writable(): Iterable<number>;
  dgramRecv(out: Uint8Array): number | null;
  /**
   * Takes waiting DATAGRAMs, oldest first, back to back into out while the
   * next fits, their lengths into lens (at most lens.length): how many (0:
   * none waits). Throws BufferTooShort when the first does not fit.
   */
  dgramRecvBatch(out: Uint8Array, lens: Uint32Array): number;
  dgramRecvQueueLen(): number;
  dgramSendQueueLen(): number;
  isDgramRecvQueueFull(): boolean;
  /** As recv: a range of data, copied into the engine's queue. */
  dgramSend(data: Uint8Array, offset?: number, length?: number): void | null;
  dgramMaxWritableLen(): number | null;
  timeout(): number | null;
  onTimeout(): void;
  close(app: boolean, err: number, reason: Uint8Array): void | null;
  applicationProto(): Uint8Array;
  serverName(): string | null;
  peerCertChain(): Uint8Array[] | null;
  session(): Uint8Array | null;
  isEstablished(): boolean;
  isResumed(): boolean;
  /** Some stream has data, a FIN or a reset to read. */
  hasReadableStream(): boolean;
  isDraining(): boolean;
  isClosed(): boolean;
  isTimedOut(): boolean;
  peerError(): EngineConnectionError | null;
  localError(): EngineConnectionError | null;
  stats(): EngineStats;
  pathStats(): EnginePathStats[];
  /** Smoothed RTT of the active path in ms (pathStats' rtt) without building the snapshot; null without a path. */
  srttMs(): number | null;
  /** Queue a PING so the next send() emits an ack-eliciting packet (and {@link trimIdle}). */
  sendAckEliciting(): void;
  /** The connection is idle: frees its empty DATAGRAM queues until it carries a DATAGRAM again. */
  trimIdle(): void;
  /**
   * While DATAGRAMs go out, keep `frame` (whole bytes the peer ignores, at
   * most 8) in flight on our open stream `streamId`, so that losing every
   * packet of a window cannot stall the connection (quic-conn.c anchor_due).
   * An empty frame turns it off; until then every write on that stream must
   * be a whole frame.
   */
  setPtoAnchor(streamId: number, frame: Uint8Array): void;
  /**
   * Releases the engine's native state (connection, TLS session, buffers)
   * now instead of when the garbage collector reaches this object; the
   * connection then reads as closed, its errors and counters kept. The
   * endpoint calls it when a connection ends.
   */
  free(): void;
}

/** The engine's module object. */
export interface QuicEngine {
  MAX_CONN_ID_LEN: number;
  MIN_CLIENT_INITIAL_LEN: number;
  Shutdown: { Read: number; Write: number };
  CRYPTO_ERROR_START: number;
  Config: {
    /**
     * A config with its TLS credentials (PEM): `ca` verifies the peer when
     * `verifyPeer` (a server then requires a client certificate, mTLS); `key`
     * and `cert` (chain, leaf first) are ours. Throws on unloadable material.
     */
    withTls(verifyPeer: boolean, ca: Uint8Array | null, key: Uint8Array | null, cert: Uint8Array | null): EngineConfig;
  };
  /**
   * The engine lock, held by the endpoint from its first drain to the send
   * of that batch, so that another sender of the same connections (the
   * agent's TUN thread, src/native/dataplane.c) cannot put packets on the
   * wire in between: they leave in packet-number order. Recursive; always
   * paired (try/finally).
   */
  lock(): void;
  unlock(): void;
  /** Registers a send batch: its slots (one allocation, `stride` bytes each), sizes, GSO segment sizes, address slots and drain state. */
  outBatch(arena: Uint8Array, stride: number, sizes: Uint32Array, segs: Uint32Array, addrs: Uint8Array, state: Float64Array): EngineOutBatch;
  Connection: {
    connect(
      serverName: string | null,
      scid: Uint8Array,
      local: EngineHostPort,
      remote: EngineHostPort,
      config: EngineConfig,
    ): EngineConnection;
    accept(
      scid: Uint8Array,
      odcid: Uint8Array | null,
      local: EngineHostPort,
      remote: EngineHostPort,
      config: EngineConfig,
    ): EngineConnection;
  };
}

/** The engine (the addon is loaded on first use). */
export const engine: QuicEngine = ngtcp2Engine;

/**
 * Congestion control when the endpoint options name none. ngtcp2 0.12 caps
 * Reno's and CUBIC's window at 2.89 × (highest delivery rate × min RTT)
 * (`target_cwnd` in its ngtcp2_cc.c; upstream removed the cap in 1.8.0).
 * Through an event loop, a burst's RTT is about 3× the idle min RTT, so that
 * cap stalls slow start: in a 5000-datagram burst cwnd sat at the cap round
 * after round and 10–25 % of the datagrams were refused by the full send
 * queue. Its BBRv2 sizes the window from the measured bandwidth with an
 * ACK-aggregation allowance and reached ~1.1 MB in the same burst with the
 * queue never backing up; upstream later kept BBRv2 as its one BBR.
 */
export const DEFAULT_CONGESTION_CONTROL = 'bbr2';

/** TLS 1.3 alert codes we send as QUIC crypto errors (RFC 9001 §4.8: 0x100 + alert). */
export const CRYPTO_ERROR_CERTIFICATE_REQUIRED = 0x100 + 116;
/** RFC 9001 §4.8: crypto error for TLS `bad_certificate` (42). */
export const CRYPTO_ERROR_BAD_CERTIFICATE = 0x100 + 42;
/** RFC 9001 §4.8 + RFC 8446 §6.2 alert certificate_revoked (44): a reloaded client CA no longer vouches for the peer. */
export const CRYPTO_ERROR_CERTIFICATE_REVOKED = 0x100 + 44;
/** RFC 9001 §4.8 + RFC 8446 §6.2 alert certificate_expired (45): the peer's certificate passed its notAfter. */
export const CRYPTO_ERROR_CERTIFICATE_EXPIRED = 0x100 + 45;

/** Error `message` the engine throws when there is nothing to do (quiche's `Error::Done`, whose error strings the engine keeps). */
export const ENGINE_DONE = 'Done';
