/** judgeClientPacket / judgeOutgoing as pure decisions: no session, no stream. */
import { describe, expect, it } from 'vitest';
import { craftUdp } from '../../packet/craft.js';
import { PacketInfo, parseIpPacket } from '../../packet/ip-packet.js';
import { parsePrefix, parseIp } from '../../packet/ip-address.js';
import { ConnectIpDrop } from './counters.js';
import { judgeClientPacket, judgeOutgoing, type ClientPacketContext } from './packet-judge.js';

const P = (t: string) => parsePrefix(t)!;
const ctx: ClientPacketContext = {
  scope: { target: { kind: 'prefix', prefix: P('192.0.2.0/24') }, ipProtocol: 17 },
  resolvedTarget: [],
  grants: [{ requestId: 1, version: 4, address: parseIp('10.89.0.2')!.address, prefixLength: 32 }],
  owned: [{ prefix: P('10.20.0.0/16'), ipProtocol: 0 }],
  ourRanges: [{ version: 4, start: parseIp('0.0.0.0')!.address, end: parseIp('255.255.255.255')!.address, ipProtocol: 0 }],
  ownAddresses: [parseIp('192.0.2.1')!.address],
  allow: undefined,
  policy: (_b, info) => info.dstPort !== 25,
};
const info = new PacketInfo();
const judge = (src: string, dst: string, dstPort = 53) => {
  const p = craftUdp({ src, dst, srcPort: 1, dstPort });
  parseIpPacket(p, 0, p.length, info);
  return judgeClientPacket(ctx, p, info);
};

describe('packet verdicts', () => {
  it('judgeClientPacket: each rule gives its own drop code, in order', () => {
    expect(judge('10.89.0.2', '192.0.2.9')).toBe(0);
    expect(judge('10.20.7.7', '192.0.2.9')).toBe(0);
    expect(judge('169.254.1.1', '192.0.2.9')).toBe(ConnectIpDrop.LINK_LOCAL);
    expect(judge('10.21.0.1', '192.0.2.9')).toBe(ConnectIpDrop.SPOOFED_SOURCE);
    expect(judge('10.89.0.2', '198.51.100.1')).toBe(ConnectIpDrop.OUT_OF_SCOPE);
    expect(judge('10.89.0.2', '192.0.2.1')).toBe(ConnectIpDrop.OUT_OF_SCOPE); // the gateway's own address
    expect(judge('10.89.0.2', '192.0.2.9', 25)).toBe(ConnectIpDrop.POLICY);
  });

  it('judgeOutgoing: version, or the negated drop code', () => {
    const p = craftUdp({ src: 'fe80::1', dst: '2001:db8::1', srcPort: 1, dstPort: 2 });
    expect(judgeOutgoing(p, 0, p.length, true)).toBe(-ConnectIpDrop.LINK_LOCAL);
    expect(judgeOutgoing(p, 0, p.length, false)).toBe(-ConnectIpDrop.IPV6_DISABLED);
    expect(judgeOutgoing(p, 0, 10, true)).toBe(-ConnectIpDrop.MALFORMED_IP);
    const q = craftUdp({ src: '10.0.0.1', dst: '10.0.0.2', srcPort: 1, dstPort: 2 });
    expect(judgeOutgoing(q, 0, q.length, false)).toBe(4);
  });
});
