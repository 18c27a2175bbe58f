/**
 * The JSON shape a daemon serves on its admin `/status` endpoint and that
 * `mtun status` prints. Daemons fill it; telemetry supplies `topFlows`.
 */

/** One tunnel session (a CONNECT-IP or CONNECT-UDP stream) as shown by `mtun status`. */
export interface StatusSession {
  /** Daemon-chosen id (e.g. connection id + stream id). */
  readonly id: string;
  /** `connect-ip` or `connect-udp`. */
  readonly kind: string;
  /** The HTTP version carrying it: `h3` (QUIC) or `h2` (TCP fallback, issue #15); `mtun status` shows it after the kind. */
  readonly transport?: string;
  readonly peerIdentity: string;
  /** Remote QUIC endpoint, `host:port`. */
  readonly remote: string;
  /** e.g. `connecting`, `open`, `draining`. */
  readonly state: string;
  /** Addresses assigned on this session (ADDRESS_ASSIGN), prefix text. */
  readonly addresses: readonly string[];
  /** Routes advertised by the peer on this session (ROUTE_ADVERTISEMENT), prefix text. */
  readonly routes: readonly string[];
  /** When the session opened, ISO 8601. */
  readonly since: string;
  readonly sentBytes: number;
  readonly receivedBytes: number;
}

/** One open flow in the "top flows" list. */
export interface StatusFlow {
  /** `tcp`, `udp`, or the protocol number. */
  readonly protocol: string;
  /** `addr:port` (IPv6 in brackets). */
  readonly src: string;
  readonly dst: string;
  readonly peerIdentity: string;
  readonly direction: string;
  readonly sentBytes: number;
  readonly receivedBytes: number;
  readonly durationMs: number;
  readonly idleMs: number;
}

/** The whole `/status` document. */
export interface DaemonStatus {
  readonly reporter: 'agent' | 'gateway';
  readonly version: string;
  readonly uptimeSeconds: number;
  readonly ready: boolean;
  /** Local interface addresses the daemon manages (TUN addresses), e.g. `{ interface: "mtun0", address: "10.200.0.2/32" }`. */
  readonly addresses: readonly { readonly interface: string; readonly address: string }[];
  readonly sessions: readonly StatusSession[];
  readonly topFlows: readonly StatusFlow[];
}
