/**
 * Public API of the MASQUE layer (CONNECT-IP RFC 9484, CONNECT-UDP RFC 9298)
 * for the agent and gateway daemons.
 */
export { CONNECT_IP_DEFAULT_TEMPLATE, CONNECT_UDP_DEFAULT_TEMPLATE, TemplateMatcher, expandTemplate, splitUrl } from './uri-template.js';
export { AddressPool, type AddressPoolOptions } from './address-pool.js';
export { RouteTable } from './route-table.js';
export { formatIp, formatPrefix, parseIp, parsePrefix, type IpPrefix, type IpVersion } from '../packet/ip-address.js';
export { proxyStatusValue, refuse, type Refusal, type ProxyErrorType } from './proxy-status.js';
export { LateTunnelStream } from './late-stream.js';
export { acceptConnectIp, acceptConnectUdp, connectIp, connectUdp, MasqueRequestError, type PendingConnectLike, type ConnectClientLike } from './h3-glue.js';
export { MASQUE_HEADROOM } from './connect-ip/datagram.js';
export {
  buildConnectIpRequest,
  checkConnectIpRequest,
  type ConnectIpScope,
  type ConnectIpTarget,
  type ExtendedConnectRequest,
} from './connect-ip/request.js';
export { resolveConnectIpTarget } from './connect-ip/resolve-target.js';
export { ConnectIpClientSession, type ConnectIpClientOptions, type AddressWish } from './connect-ip/client-session.js';
export { ConnectIpGatewaySession, type ConnectIpGatewayOptions, type PacketPolicy } from './connect-ip/gateway-session.js';
export { IPV6_MIN_MTU, type ConnectIpEvent, type PacketSink } from './connect-ip/session-base.js';
export { ConnectIpCounters, ConnectIpDrop, CONNECT_IP_DROP_NAMES } from './connect-ip/counters.js';
export type { AddressEntry } from './connect-ip/address-entry.js';
export type { IpAddressRange } from './connect-ip/route-advertisement.js';
export { buildConnectUdpRequest, checkConnectUdpRequest, prohibitedUdpDestination, type UdpTarget, type UdpTargetAllowance } from './connect-udp/request.js';
export { ConnectUdpGatewaySession, MIN_UDP_IDLE_TIMEOUT_MS, kernelSetsDf, type ConnectUdpGatewayOptions } from './connect-udp/gateway-session.js';
export { ConnectUdpClientSession, type ConnectUdpClientOptions } from './connect-udp/client-session.js';
export { ConnectUdpCounters, ConnectUdpDrop, CONNECT_UDP_DROP_NAMES, MAX_UDP_PAYLOAD } from './connect-udp/counters.js';
export { IdleSweeper, defaultIdleSweeper } from './connect-udp/idle-sweeper.js';
