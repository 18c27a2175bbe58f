/** The gateway's /status document, built from its sessions (no I/O). */
import { formatPrefix } from '../packet/ip-address.js';
import type { DaemonStatus, StatusSession } from '../telemetry/index.js';
import { MTUN_VERSION } from '../version.js';
import type { GwSession } from './session-registry.js';

/** What {@link gatewayStatus} reads. */
export interface GatewayStatusInput {
  readonly sessions: Iterable<GwSession>;
  /** Kernel routes installed for a session. */
  readonly routesOf: (gs: GwSession) => string[];
  readonly state: string;
  readonly ready: boolean;
  readonly uptimeSeconds: number;
  readonly addresses: DaemonStatus['addresses'];
  readonly topFlows: DaemonStatus['topFlows'];
}

/** Builds the document; one entry per open session. */
export function gatewayStatus(i: GatewayStatusInput): DaemonStatus {
  const sessions: StatusSession[] = [];
  for (const gs of i.sessions) {
    const ipc = gs.ip?.counters;
    sessions.push({
      id: gs.id,
      kind: gs.kind,
      transport: gs.gc.transport,
      peerIdentity: gs.identity,
      remote: gs.gc.remote,
      state: i.state,
      addresses: gs.ip ? gs.ip.grantedAddresses().map((a) => formatPrefix({ version: a.version, address: a.address, prefixLength: a.prefixLength })) : [],
      routes: gs.ip ? i.routesOf(gs) : [],
      since: gs.since.toISOString(),
      sentBytes: ipc ? ipc.bytesSent : gs.udp!.counters.bytesSent,
      receivedBytes: ipc ? ipc.bytesReceived : gs.udp!.counters.bytesReceived,
    });
  }
  return {
    reporter: 'gateway',
    version: MTUN_VERSION,
    uptimeSeconds: i.uptimeSeconds,
    ready: i.ready,
    addresses: i.addresses,
    sessions,
    topFlows: i.topFlows,
  };
}
