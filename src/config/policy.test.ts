import { describe, expect, it } from 'vitest';
import { craftTcp, craftUdp, craftIcmp } from '../packet/craft.js';
import { PacketInfo, parseIpPacket } from '../packet/ip-packet.js';
import { formatPrefix, parseIp, parsePrefix, type IpPrefix } from '../packet/ip-address.js';
import { parseGatewayConfig } from './load.js';
import { compilePolicy } from './policy.js';

const BASE = 'tls: {cert: a, key: b, ca: c}\npools: {ipv4: 10.200.0.0/24}\n';
const cfg = parseGatewayConfig(`${BASE}policy:
  - identity: spiffe://td/agent/a
    allow:
      - prefixes: [10.20.0.0/24, fd00:b::/64]
        protocols: [tcp, udp]
        ports: [80, "5200-5210"]
      - prefixes: [10.20.0.2/32]
        protocols: [icmp]
    advertise: [10.10.0.0/24]
  - identity: spiffe://td/agent/*
    allow:
      - prefixes: [10.20.0.3/32]
  - identity: spiffe://td/*
    allow: []
`, 'gw.yaml');
const policy = compilePolicy(cfg.policy);
const a = policy.forIdentity('spiffe://td/agent/a');
const addr = (t: string): Uint8Array => parseIp(t)!.address;

describe('config: per-identity policy (default deny)', () => {
  it('allows only listed prefixes, protocols and ports', () => {
    expect(a.allows(6, addr('10.20.0.9'), 0, 4, 80)).toBe(true);
    expect(a.allows(17, addr('10.20.0.9'), 0, 4, 5205)).toBe(true);
    expect(a.allows(6, addr('10.20.0.9'), 0, 4, 443)).toBe(false); // port not listed
    expect(a.allows(6, addr('10.21.0.9'), 0, 4, 80)).toBe(false); // prefix not listed
    expect(a.allows(6, addr('fd00:b::9'), 0, 16, 80)).toBe(true);
    expect(a.allows(1, addr('10.20.0.2'), 0, 4, 0)).toBe(true); // ICMP to the one host
    expect(a.allows(1, addr('10.20.0.9'), 0, 4, 0)).toBe(false);
    expect(a.allows(132, addr('10.20.0.2'), 0, 4, 0)).toBe(false); // SCTP: not listed
    expect(a.allows(6, addr('10.20.0.9'), 0, 4, -1)).toBe(false); // unknown port fails a port rule
  });

  it('matches identities exactly first, then by the longest wildcard; unknown identities are denied', () => {
    expect(policy.forIdentity('spiffe://td/agent/b').pattern).toBe('spiffe://td/agent/*');
    expect(policy.forIdentity('spiffe://td/agent/b').allows(6, addr('10.20.0.3'), 0, 4, 22)).toBe(true); // protocols default to any, all ports
    expect(policy.forIdentity('spiffe://td/other').pattern).toBe('spiffe://td/*');
    expect(policy.forIdentity('spiffe://td/other').allows(6, addr('10.20.0.3'), 0, 4, 22)).toBe(false);
    const none = policy.forIdentity('spiffe://elsewhere/x');
    expect(none.pattern).toBeNull();
    expect(none.allows(6, addr('10.20.0.9'), 0, 4, 80)).toBe(false);
  });

  it('checks parsed packets (RFC 9484 §4.8: protocol after the IPv6 extension chain, as parsed by src/packet)', () => {
    const pi = new PacketInfo();
    const check = (b: Buffer): boolean => {
      expect(parseIpPacket(b, 0, b.length, pi)).toBe(0);
      return a.allowsPacket(b, pi);
    };
    expect(check(craftTcp({ src: '10.10.0.2', dst: '10.20.0.2', srcPort: 40000, dstPort: 80, seq: 1, flags: 2 }))).toBe(true);
    expect(check(craftTcp({ src: '10.10.0.2', dst: '10.20.0.2', srcPort: 40000, dstPort: 22, seq: 1, flags: 2 }))).toBe(false);
    expect(check(craftUdp({ src: 'fd00:a::2', dst: 'fd00:b::2', srcPort: 5000, dstPort: 5201 }))).toBe(true);
    expect(check(craftIcmp({ src: '10.10.0.2', dst: '10.20.0.2', type: 8 }))).toBe(true);
  });

  it('advertisement: only prefixes inside the allowed ones', () => {
    const p = (t: string): IpPrefix => parsePrefix(t)!;
    expect(a.mayAdvertise(p('10.10.0.0/24'))).toBe(true);
    expect(a.mayAdvertise(p('10.10.0.128/25'))).toBe(true);
    expect(a.mayAdvertise(p('10.10.0.0/23'))).toBe(false);
    expect(a.mayAdvertise(p('fd00:a::/64'))).toBe(false);
    expect(a.reachablePrefixes().map(formatPrefix)).toEqual(['10.20.0.0/24', 'fd00:b::/64', '10.20.0.2/32']);
  });
});
