/**
 * Test rig for CONNECT-IP sessions: a client and a gateway session joined by
 * an in-memory {@link TunnelStreamPair}, with pools, a route table and every
 * sink recorded (copies). For unit tests only; allocates freely.
 */
import { formatIp, parseIp } from '../../packet/ip-address.js';
import { AddressPool } from '../address-pool.js';
import { RouteTable } from '../route-table.js';
import { ConnectIpClientSession } from '../connect-ip/client-session.js';
import { ConnectIpGatewaySession, type ConnectIpGatewayOptions } from '../connect-ip/gateway-session.js';
import type { ConnectIpScope } from '../connect-ip/request.js';
import type { ConnectIpEvent } from '../connect-ip/session-base.js';
import { TunnelStreamPair } from './tunnel-stream-pair.js';
import { MASQUE_HEADROOM } from '../connect-ip/datagram.js';

export const HR = 16;
/** Copies a crafted packet into a buffer with headroom; returns [buf, off, len]. */
export const withHeadroom = (p: Uint8Array): [Uint8Array, number, number] => {
  const b = new Uint8Array(HR + p.length);
  b.set(p, HR);
  return [b, HR, p.length];
};
export const ip = (s: string) => parseIp(s)!.address;

export interface Rig {
  pair: TunnelStreamPair;
  client: ConnectIpClientSession;
  gateway: ConnectIpGatewaySession;
  table: RouteTable<ConnectIpGatewaySession>;
  pool4: AddressPool;
  pool6: AddressPool;
  toNetwork: Uint8Array[];
  toAgentTun: Uint8Array[];
  localIcmp: Uint8Array[];
  icmpToNetwork: Uint8Array[];
  clientEvents: ConnectIpEvent[];
  gatewayEvents: ConnectIpEvent[];
}

export function rig(opts: { scope?: ConnectIpScope; maxDatagramPayload?: number; gw?: Partial<ConnectIpGatewayOptions>; pools?: 'both' | 'v4' } = {}): Rig {
  const pair = new TunnelStreamPair({ maxDatagramPayload: opts.maxDatagramPayload ?? 1400 });
  const table = new RouteTable<ConnectIpGatewaySession>();
  // Prefix grants allowed (the defaults hand out single addresses, 4 per owner; see hardening tests).
  const pool4 = new AddressPool({ prefix: '10.89.0.0/24', reserved: ['10.89.0.1'], minPrefixLength: 24, maxLeasesPerOwner: 16 });
  const pool6 = new AddressPool({ prefix: 'fd00:89::/48', reserved: ['fd00:89::1'], minPrefixLength: 64, maxLeasesPerOwner: 16 });
  const r: Rig = {
    pair, table, pool4, pool6,
    toNetwork: [], toAgentTun: [], localIcmp: [], icmpToNetwork: [], clientEvents: [], gatewayEvents: [],
  } as unknown as Rig;
  r.client = new ConnectIpClientSession(pair.client, {
    onPacket: (b, o, l) => r.toAgentTun.push(b.slice(o, o + l)),
    onEvent: (e) => r.clientEvents.push(e),
  });
  r.gateway = new ConnectIpGatewaySession(pair.gateway, {
    scope: opts.scope ?? { target: { kind: 'any' }, ipProtocol: null },
    pools: opts.pools === 'v4' ? { v4: pool4 } : { v4: pool4, v6: pool6 },
    routeTable: table,
    reporterV4: ip('10.89.0.1'),
    reporterV6: ip('fd00:89::1'),
    onPacket: (b, o, l) => r.toNetwork.push(b.slice(o, o + l)),
    onEvent: (e) => r.gatewayEvents.push(e),
    ...opts.gw,
  });
  // What a daemon does with the ICMP errors a send returns: the agent writes them into its TUN, the gateway into its network.
  const keepIcmp = (x: ConnectIpClientSession | ConnectIpGatewaySession, into: Uint8Array[]) => {
    if (x.icmpLength > 0) into.push(x.icmpBuffer.slice(MASQUE_HEADROOM, MASQUE_HEADROOM + x.icmpLength));
  };
  const sendPacket = r.client.sendPacket.bind(r.client);
  r.client.sendPacket = (b, o, l) => {
    const x = sendPacket(b, o, l);
    keepIcmp(r.client, r.localIcmp);
    return x;
  };
  const sendToClient = r.gateway.sendToClient.bind(r.gateway);
  r.gateway.sendToClient = (b, o, l) => {
    const x = sendToClient(b, o, l);
    keepIcmp(r.gateway, r.icmpToNetwork);
    return x;
  };
  pair.client.attach(r.client);
  pair.gateway.attach(r.gateway);
  r.gateway.start();
  pair.flush();
  return r;
}

/** Requests one IPv4 and one IPv6 address; returns them as text. */
export function assign(r: Rig): { v4: string; v6: string } {
  r.client.requestAddresses([{ version: 4 }, { version: 6 }]);
  r.pair.flush();
  const a = r.client.assignedAddresses();
  return { v4: formatIp(a.find((x) => x.version === 4)!.address), v6: formatIp(a.find((x) => x.version === 6)!.address) };
}
