/** judgeClientPacket / judgeOutgoing as pure decisions: no session, no stream. */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { craftTcp, craftUdp } from '../../packet/craft.js';
import { PacketInfo, parseIpPacket } from '../../packet/ip-packet.js';
import { parsePrefix, parseIp } from '../../packet/ip-address.js';
import { ConnectIpDrop } from './counters.js';
import { ClientPassCache, judgeClientPacket, judgeOutgoing, type ClientPacketContext } from './packet-judge.js';
import type { AddressEntry } from './address-entry.js';
import type { ClientRoute } from './client-routes.js';
import type { IpAddressRange } from './route-advertisement.js';

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

describe('ClientPassCache', () => {
  // A context the way a session keeps one: lists replaced, or the grants appended to.
  class Ctx implements ClientPacketContext {
    scope: ClientPacketContext['scope'] = { target: { kind: 'any' }, ipProtocol: null };
    resolvedTarget = [];
    allow = undefined;
    grants: AddressEntry[] = [];
    owned: ClientRoute[] = [];
    ourRanges: IpAddressRange[] = [];
    ownAddresses: Uint8Array[] = [];
    blockPort = -1;
    policy = (_b: Uint8Array, i: PacketInfo): boolean => i.dstPort !== this.blockPort;
  }
  const hosts = ['10.0.0.1', '10.0.0.2', '10.0.1.1', '192.0.2.1', '192.0.2.2', '198.51.100.7', '169.254.0.9', '127.0.0.1'];
  const prefixes = ['10.0.0.0/24', '10.0.0.0/16', '10.0.0.1/32', '192.0.2.0/24', '192.0.2.0/25', '0.0.0.0/0', '198.51.100.0/24'];
  const range = (t: string, proto: number): IpAddressRange => {
    const p = P(t);
    const end = new Uint8Array(p.address);
    for (let bit = p.prefixLength; bit < 32; bit++) end[bit >> 3]! |= 0x80 >> (bit & 7);
    return { version: 4, start: p.address, end, ipProtocol: proto };
  };
  const grant = (t: string): AddressEntry => ({ requestId: 1, version: 4, address: P(t).address, prefixLength: P(t).prefixLength });
  const op = fc.oneof(
    // Mostly packets, from few enough sources and destinations that the same pair comes back.
    { weight: 6, arbitrary: fc.record({ kind: fc.constant('packet' as const), src: fc.nat(3), dst: fc.nat(hosts.length - 1), tcp: fc.boolean(), port: fc.constantFrom(25, 53, 80) }) },
    // The last packet's flow again (a bulk flow's next packet), after whatever changed in between.
    { weight: 6, arbitrary: fc.record({ kind: fc.constant('again' as const), port: fc.constantFrom(25, 53, 80) }) },
    fc.record({ kind: fc.constant('grants' as const), which: fc.subarray(prefixes), append: fc.boolean() }),
    fc.record({ kind: fc.constant('owned' as const), which: fc.subarray(prefixes), proto: fc.constantFrom(0, 6, 17) }),
    fc.record({ kind: fc.constant('ranges' as const), which: fc.subarray(prefixes), proto: fc.constantFrom(0, 6, 17) }),
    fc.record({ kind: fc.constant('own' as const), which: fc.subarray(hosts) }),
    fc.record({ kind: fc.constant('policy' as const), port: fc.constantFrom(-1, 25, 53, 80) }),
  );

  it('gives the verdicts the full checks give, while the lists are replaced or appended to', () => {
    let hits = 0;
    fc.assert(
      fc.property(fc.array(op, { minLength: 1, maxLength: 60 }), (ops) => {
        const c = new Ctx(); // starts open, so packets pass until the lists narrow
        c.grants = [grant('10.0.0.0/16')];
        c.ourRanges = [range('0.0.0.0/0', 0)];
        const pass = new ClientPassCache();
        const info = new PacketInfo();
        let last: { src: number; dst: number; tcp: boolean } = { src: 0, dst: 3, tcp: false };
        for (const o of ops) {
          if (o.kind === 'packet' || o.kind === 'again') {
            if (o.kind === 'packet') last = o;
            const p = last.tcp
              ? craftTcp({ src: hosts[last.src]!, dst: hosts[last.dst]!, srcPort: 1000, dstPort: o.port, seq: 1, flags: 0x10 })
              : craftUdp({ src: hosts[last.src]!, dst: hosts[last.dst]!, srcPort: 1000, dstPort: o.port });
            parseIpPacket(p, 0, p.length, info);
            const want = judgeClientPacket(c, p, info);
            expect(judgeClientPacket(c, p, info, pass)).toBe(want);
          } else if (o.kind === 'grants') {
            if (o.append) for (const t of o.which) c.grants.push(grant(t));
            else c.grants = o.which.map(grant);
          } else if (o.kind === 'owned') c.owned = o.which.map((t) => ({ prefix: P(t), ipProtocol: o.proto }));
          else if (o.kind === 'ranges') c.ourRanges = o.which.map((t) => range(t, o.proto));
          else if (o.kind === 'own') c.ownAddresses = o.which.map((h) => parseIp(h)!.address);
          else c.blockPort = o.port;
        }
        hits += pass.hits;
      }),
      { numRuns: 1000 },
    );
    expect(hits).toBeGreaterThan(0); // the property exercised the skip, not only the full checks
  });
});
