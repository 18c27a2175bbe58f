/**
 * The one place the fuzzer imports mtun code: every parser and decision
 * function a target drives, by module path. When a module is renamed or
 * split, fix its line here; the target definitions (fuzz/defs/*.ts) import
 * only from this file.
 */
export { parseIpPacket, PacketInfo, DROP_REASON_NAMES, TCP_FLAG, formatAddress, ipv4HeaderChecksumOk } from '../src/packet/ip-packet.js';
export { craftTcp, craftUdp, craftIcmp, mssOption } from '../src/packet/craft.js';
export { decrementTtl, clampTcpMss } from '../src/packet/rewrite.js';
export { buildIcmpError } from '../src/packet/icmp-error.js';
export { CaptureReader, CaptureFormatError, IpSpan, locateIp } from '../src/pcap/capture-reader.js';
export { parseVarint, parseVarintBig, varintLengthAt, encodeVarint, VARINT_NEED_MORE } from '../src/quic/varint.js';
export { parseFrameHeader, encodeFrame, FrameType, isGrease, isReservedH2FrameType, type FrameHeader } from '../src/h3/frame.js';
export { parseSettings, encodeSettings, SettingId } from '../src/h3/settings.js';
export { decodeFieldSection, encodeFieldSection } from '../src/h3/qpack.js';
export { huffmanDecode } from '../src/h3/huffman.js';
export { validateRequest, validateResponse, validateTrailers, isCapsuleProtocol } from '../src/h3/message.js';
export { parseCapsule, encodeCapsule, capsuleHeaderLength, newCapsuleInfo, CapsuleReassembler } from '../src/h3/capsule.js';
export { parseQuarterStreamId } from '../src/h3/datagram.js';
export { h3ErrorName } from '../src/h3/errors.js';
export { parseAddressAssign, encodeAddressAssign, addressAssignLength } from '../src/masque/connect-ip/address-assign.js';
export { parseAddressRequest, encodeAddressRequest, addressRequestLength } from '../src/masque/connect-ip/address-request.js';
export { parseRouteAdvertisement, encodeRouteAdvertisement, routeAdvertisementLength } from '../src/masque/connect-ip/route-advertisement.js';
export { CAPSULE_ADDRESS_ASSIGN, CAPSULE_ADDRESS_REQUEST, CAPSULE_ROUTE_ADVERTISEMENT } from '../src/masque/connect-ip/capsule-types.js';
export { contextPayloadOffset } from '../src/masque/connect-ip/datagram.js';
export { checkConnectIpRequest, buildConnectIpRequest, parseConnectIpTarget, parseIpProto, type ExtendedConnectRequest } from '../src/masque/connect-ip/request.js';
export { checkConnectUdpRequest, buildConnectUdpRequest, parseUdpTarget } from '../src/masque/connect-udp/request.js';
export { TemplateMatcher, expandTemplate, pctDecode, splitUrl, CONNECT_IP_DEFAULT_TEMPLATE, CONNECT_UDP_DEFAULT_TEMPLATE } from '../src/masque/uri-template.js';
export { ConnectIpGatewaySession } from '../src/masque/connect-ip/gateway-session.js';
export { ConnectIpClientSession } from '../src/masque/connect-ip/client-session.js';
export { AddressPool } from '../src/masque/address-pool.js';
export { RouteTable } from '../src/masque/route-table.js';
export { TunnelStreamPair } from '../src/masque/testing/tunnel-stream-pair.js';
export { parseIp, parsePrefix } from '../src/packet/ip-address.js';
export { FlowTracker } from '../src/inspect/flow-tracker.js';
export { parseGatewayConfig, parseAgentConfig } from '../src/config/load.js';
export { ConfigError } from '../src/config/config-error.js';export { loadNative, nativeAvailable, type NativeBinding, type NativeJudgeTable } from '../src/native/addon.js';
export { judgeClientIp } from '../src/masque/connect-ip/packet-judge.js';
export { judgeGatewayIp } from '../src/masque/connect-ip/receive-check.js';
export { compileGatewayTable, compileAgentTable } from '../src/masque/native-judge.js';
export { randomGatewayCase, randomAgentCase, randomPacket, Rng as JudgeRng, type GatewayCase, type AgentCase } from '../src/masque/testing/judge-fuzz.js';
