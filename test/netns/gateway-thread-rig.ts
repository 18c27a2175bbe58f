/**
 * What the gateway's TUN-thread tests share (tun-thread-gateway*.test.ts):
 * a TUN 10.79.0.1/24 in a fresh namespace, QUIC connections over loopback
 * from one client endpoint (each stands for the gateway's side of one
 * agent; its accepted server connection stands for the agent), and a
 * gateway's receive check for one agent address.
 */
import { openTun, type NativeTun } from '../../src/tun/native-tun.js';
import { compileGatewayTable } from '../../src/masque/native-judge.js';
import { loadNative, type NativeJudgeTable } from '../../src/native/addon.js';
import type { QuicEndpoint } from '../../src/quic/endpoint.js';
import type { QuicConnection } from '../../src/quic/connection.js';
import { type Harness, waitFor } from '../sim/quic-harness.js';
import { createNetns } from './netns.js';

export interface GatewayThreadRig {
  ns: string;
  tun: NativeTun;
  /** The client endpoint the thread shares the socket of (h.sockets[1]). */
  ep: QuicEndpoint;
  /** The gateway's side of each agent, in order. */
  gws: QuicConnection[];
  /** Each agent's side (the accepted server connections), in the same order. */
  agents: QuicConnection[];
}

/** A namespace with the TUN `${prefix}g` (10.79.0.1/24, offloads on) and `n` established connections. */
export async function openGatewayThreadRig(h: Harness, prefix: string, n: number): Promise<GatewayThreadRig> {
  const ns = createNetns(prefix);
  const tun = await openTun({ name: `${prefix}g`, mtu: 1400, addresses: ['10.79.0.1/24'], netns: ns, offload: true });
  const { port } = await h.server();
  const ep = await h.client({}, { dgramQueueDelay: null });
  const gws: QuicConnection[] = [];
  for (let i = 0; i < n; i++) {
    const gw = ep.connect('127.0.0.1', port, 'localhost');
    await gw.whenEstablished();
    await waitFor(() => h.accepted.length === i + 1, 2000, `agent ${i}'s connection`);
    gws.push(gw);
  }
  return { ns, tun, ep, gws, agents: h.accepted.slice(0, n) };
}

/** A gateway's receive check for a session owning 10.79.0.<host>/32 that may reach anything, TTL decremented (the gateway's default). */
export function gatewayTableFor(host: number): NativeJudgeTable {
  return loadNative().judgeTable(compileGatewayTable({
    scope: { target: { kind: 'any' }, ipProtocol: null },
    resolvedTarget: [],
    grants: [],
    owned: [{ prefix: { version: 4, address: Uint8Array.of(10, 79, 0, host), prefixLength: 32 }, ipProtocol: 0 }],
    ourRanges: [{ version: 4, start: Uint8Array.of(0, 0, 0, 0), end: Uint8Array.of(255, 255, 255, 255), ipProtocol: 0 }],
    ownAddresses: [],
    allow: undefined,
  }, { ipv6Enabled: false, decrementTtl: true, linkLocal: new Uint8Array(16) }, null));
}
