/**
 * Loader and our own type declarations for the quiche napi binding
 * (`@matrixai/quic-linux-x64`). Only the parts src/quic uses are declared.
 */
import { createRequire } from 'node:module';

/** Host and port as the binding passes addresses. */
export interface QuicheHostPort {
  host: string;
  port: number;
}

/** Addresses of one received datagram (quiche `RecvInfo`). */
export interface QuicheRecvInfo {
  from: QuicheHostPort;
  to: QuicheHostPort;
}

/** Where quiche wants a packet sent; `at` (pacing instant) is opaque and unused. */
export interface QuicheSendInfo {
  from: QuicheHostPort;
  to: QuicheHostPort;
  at: object;
}

/** A connection close error as quiche reports it. */
export interface QuicheConnectionError {
  isApp: boolean;
  errorCode: number;
  reason: Uint8Array;
}

/** Connection-wide counters (quiche `Stats`), the fields we read. */
export interface QuicheStats {
  recv: number;
  sent: number;
  lost: number;
  retrans: number;
  sentBytes: number;
  recvBytes: number;
  lostBytes: number;
  peerMaxDatagramFrameSize?: number;
}

/** Per-path counters (quiche `PathStats`), the fields we read. */
export interface QuichePathStats {
  active: boolean;
  rtt: number;
  cwnd: number;
  pmtu: number;
  deliveryRate: number;
}

/** quiche `Config`: TLS context plus transport parameters; shared by many connections. */
export interface QuicheConfig {
  verifyPeer(verify: boolean): void;
  grease(grease: boolean): void;
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
  enablePacing(v: boolean): void;
  enableDgram(enabled: boolean, recvQueueLen: number, sendQueueLen: number): void;
  setMaxStreamWindow(v: number): void;
  setMaxConnectionWindow(v: number): void;
  /** Server: the stateless_reset_token transport parameter (u128, big-endian as sent). */
  setStatelessResetToken(v?: bigint | null): void;
}

/** quiche `Connection`: the sans-IO state machine of one QUIC connection. */
export interface QuicheConnection {
  setKeylog(path: string): void;
  setSession(session: Uint8Array): void;
  recv(data: Uint8Array, info: QuicheRecvInfo): number;
  send(out: Uint8Array): [number, QuicheSendInfo] | null;
  streamRecv(streamId: number, out: Uint8Array): [number, boolean] | null;
  streamSend(streamId: number, data: Uint8Array, fin: boolean): number | null;
  streamShutdown(streamId: number, direction: number, err: number): void | null;
  readable(): Iterable<number>;
  writable(): Iterable<number>;
  dgramRecv(out: Uint8Array): number | null;
  dgramRecvQueueLen(): number;
  dgramSendQueueLen(): number;
  isDgramRecvQueueFull(): boolean;
  dgramSend(data: Uint8Array): void | null;
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
  isReadable(): boolean;
  isDraining(): boolean;
  isClosed(): boolean;
  isTimedOut(): boolean;
  peerError(): QuicheConnectionError | null;
  localError(): QuicheConnectionError | null;
  stats(): QuicheStats;
  pathStats(): QuichePathStats[];
  /** Queue a PING so the next send() emits an ack-eliciting packet. */
  sendAckEliciting(): void;
}

/** Parsed long or short header (quiche `Header.fromSlice`). */
export interface QuicheHeader {
  ty: number;
  version: number;
  dcid: Uint8Array;
  scid: Uint8Array;
  token?: Uint8Array;
}

/** The binding's module object. */
export interface QuicheBinding {
  MAX_CONN_ID_LEN: number;
  MIN_CLIENT_INITIAL_LEN: number;
  PROTOCOL_VERSION: number;
  Type: { Initial: number; Retry: number; Handshake: number; ZeroRTT: number; VersionNegotiation: number; Short: number };
  Shutdown: { Read: number; Write: number };
  CRYPTO_ERROR_START: number;
  negotiateVersion(scid: Uint8Array, dcid: Uint8Array, out: Uint8Array): number;
  retry(scid: Uint8Array, dcid: Uint8Array, newScid: Uint8Array, token: Uint8Array, version: number, out: Uint8Array): number;
  versionIsSupported(version: number): boolean;
  Config: {
    new (): QuicheConfig;
    withBoringSslCtx(
      verifyPeer: boolean,
      verifyAllowFail: boolean,
      ca?: Uint8Array | null,
      key?: Uint8Array[] | null,
      cert?: Uint8Array[] | null,
      sigalgs?: string | null,
    ): QuicheConfig;
  };
  Connection: {
    connect(
      serverName: string | null,
      scid: Uint8Array,
      local: QuicheHostPort,
      remote: QuicheHostPort,
      config: QuicheConfig,
    ): QuicheConnection;
    accept(
      scid: Uint8Array,
      odcid: Uint8Array | null,
      local: QuicheHostPort,
      remote: QuicheHostPort,
      config: QuicheConfig,
    ): QuicheConnection;
  };
  Header: { fromSlice(data: Uint8Array, dcidLen: number): QuicheHeader };
}

/** The loaded binding (loaded once, on first import of src/quic). */
export const quiche: QuicheBinding = createRequire(import.meta.url)(
  '@matrixai/quic-linux-x64/node.napi.node',
) as QuicheBinding;

/** TLS 1.3 alert codes we send as QUIC crypto errors (RFC 9001 §4.8: 0x100 + alert). */
export const CRYPTO_ERROR_CERTIFICATE_REQUIRED = 0x100 + 116;
/** RFC 9001 §4.8: crypto error for TLS `bad_certificate` (42). */
export const CRYPTO_ERROR_BAD_CERTIFICATE = 0x100 + 42;
/** RFC 9001 §4.8 + RFC 8446 §6.2 alert certificate_revoked (44): a reloaded client CA no longer vouches for the peer. */
export const CRYPTO_ERROR_CERTIFICATE_REVOKED = 0x100 + 44;
/** RFC 9001 §4.8 + RFC 8446 §6.2 alert certificate_expired (45): the peer's certificate passed its notAfter. */
export const CRYPTO_ERROR_CERTIFICATE_EXPIRED = 0x100 + 45;

/** Error `message` the binding throws for quiche's `Error::Done`. */
export const QUICHE_DONE = 'Done';
