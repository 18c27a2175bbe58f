/** All fuzz targets by name, in campaign order. */
import type { FuzzTarget } from './defs/common.js';
import { ipPacket, pcap, flowTracker } from './defs/packet.js';
import { varint, h3Frame, settings, qpack, capsule, httpDatagram, masqueCapsules } from './defs/h3.js';
import { uriTemplate, masqueRequest, connectIpSession } from './defs/masque.js';
import { configYaml } from './defs/config.js';
import { nativeJudge } from './defs/native.js';

/** Every target; names are what `npm run fuzz -- --target NAME` takes. */
export const TARGETS: readonly FuzzTarget[] = [
  ipPacket, pcap, varint, h3Frame, settings, qpack, capsule, httpDatagram, masqueCapsules,
  uriTemplate, masqueRequest, configYaml, flowTracker, connectIpSession, nativeJudge,
];

/** The target called `name`, or undefined. */
export function targetByName(name: string): FuzzTarget | undefined {
  return TARGETS.find((t) => t.name === name);
}

export { cleanup } from './defs/packet.js';
