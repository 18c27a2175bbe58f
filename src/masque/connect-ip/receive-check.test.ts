// The agent's check on receive (issue #12 item 8): on e2aee95 the client
// session delivered every well-formed packet the gateway sent, whatever its
// source and destination; the first two tests here failed there (packets
// were delivered, no drop counted).
import { describe, expect, it } from 'vitest';
import { craftIcmp, craftTcp, craftUdp } from '../../packet/craft.js';
import { buildIcmpError, IcmpError } from '../../packet/icmp-error.js';
import { parsePrefix } from '../../packet/ip-address.js';
import { assign, ip, rig, withHeadroom, type Rig } from '../testing/connect-ip-rig.js';
import { ConnectIpDrop, CONNECT_IP_DROP_NAMES } from './counters.js';

/** The gateway advertises only cluster B (10.20.0.0/24, fd00:b::/64); the client advertises its site 10.10.0.0/24. */
function siteRig(): Rig & { v4: string; v6: string } {
  const r = rig({ gw: { routes: [parsePrefix('10.20.0.0/24')!, parsePrefix('fd00:b::/64')!], acceptClientRoute: () => true } });
  const a = assign(r);
  r.client.advertiseRoutes([parsePrefix('10.10.0.0/24')!]);
  r.pair.flush();
  return Object.assign(r, a);
}

function deliver(r: Rig, p: Uint8Array): void {
  const [b, o, l] = withHeadroom(p);
  expect(r.gateway.sendToClient(b, o, l)).toBe(0);
  r.pair.flush();
}

describe('CONNECT-IP client: source and destination checked on receive (issue #12 item 8, RFC 9484 §4.7.3)', () => {
  it('delivers packets to our assigned address or site prefix from the routes the gateway advertised', () => {
    const r = siteRig();
    deliver(r, craftUdp({ src: '10.20.0.2', dst: '10.10.0.2', srcPort: 53, dstPort: 5000 }));
    deliver(r, craftUdp({ src: '10.20.0.2', dst: r.v4, srcPort: 53, dstPort: 5000 }));
    deliver(r, craftTcp({ src: 'fd00:b::2', dst: r.v6, srcPort: 80, dstPort: 40000, seq: 1, flags: 0x12 }));
    expect(r.toAgentTun).toHaveLength(3);
  });

  it('drops a destination that is neither assigned to us nor in our site prefixes, with a reason', () => {
    const r = siteRig();
    deliver(r, craftUdp({ src: '10.20.0.2', dst: '10.11.0.2', srcPort: 53, dstPort: 5000 }));
    deliver(r, craftUdp({ src: 'fd00:b::2', dst: 'fd00:a::9', srcPort: 53, dstPort: 5000 }));
    expect(r.toAgentTun).toHaveLength(0);
    expect(r.client.counters.drops[ConnectIpDrop.DESTINATION_NOT_OURS]).toBe(2);
    expect(CONNECT_IP_DROP_NAMES[ConnectIpDrop.DESTINATION_NOT_OURS]).toBe('destination_not_ours');
  });

  it('drops a source outside the routes the gateway advertised to this session, with a reason', () => {
    const r = siteRig();
    deliver(r, craftUdp({ src: '10.30.0.2', dst: '10.10.0.2', srcPort: 53, dstPort: 5000 }));
    deliver(r, craftIcmp({ src: '192.0.2.1', dst: r.v4, type: 8, rest: 1 }));
    expect(r.toAgentTun).toHaveLength(0);
    expect(r.client.counters.drops[ConnectIpDrop.SOURCE_NOT_ROUTED]).toBe(2);
    expect(r.client.counters.dropsByName()).toEqual({ source_not_routed: 2 });
  });

  it('ICMP errors pass when addressed to the source of the packet they quote (from any reporter); otherwise dropped', () => {
    const r = siteRig();
    const sent = craftTcp({ src: '10.10.0.2', dst: '10.20.0.2', srcPort: 40000, dstPort: 80, seq: 1, flags: 2 });
    const reporter = craftUdp({ src: '198.51.100.7', dst: '198.51.100.7', srcPort: 1, dstPort: 1 });
    const err = new Uint8Array(600);
    const n = buildIcmpError(IcmpError.HOST_UNREACHABLE, 0, sent, 0, sent.length, reporter, 12, err, 0, err.length);
    deliver(r, err.subarray(0, n));
    expect(r.toAgentTun).toHaveLength(1);
    // The same error sent to another host of our site (not the quoted source).
    const forged = Uint8Array.from(err.subarray(0, n));
    forged.set(ip('10.10.0.3'), 16);
    deliver(r, forged);
    expect(r.toAgentTun).toHaveLength(1);
    expect(r.client.counters.drops[ConnectIpDrop.MALFORMED_ICMP_ERROR]).toBe(1);
  });

  it('a non-first ICMP fragment is judged on its addresses, whatever ICMP message came before it', () => {
    // On 309c99e the parse of a fragment left icmpType as the previous packet's: after one ICMP error had been
    // delivered, every later non-first ICMP fragment was taken for an error, quoting nothing, and dropped.
    const r = siteRig();
    const sent = craftTcp({ src: '10.10.0.2', dst: '10.20.0.2', srcPort: 40000, dstPort: 80, seq: 1, flags: 2 });
    const reporter = craftUdp({ src: '10.20.0.1', dst: '10.20.0.1', srcPort: 1, dstPort: 1 });
    const err = new Uint8Array(600);
    const n = buildIcmpError(IcmpError.HOST_UNREACHABLE, 0, sent, 0, sent.length, reporter, 12, err, 0, err.length);
    deliver(r, err.subarray(0, n));
    const tail = craftIcmp({ src: '10.20.0.2', dst: '10.10.0.2', type: 0, rest: 0x01020003, payload: new Uint8Array(64) });
    tail[6] = 0x00; // no DF, fragment offset 185 × 8 = 1480 bytes: the second fragment of a large echo reply
    tail[7] = 185;
    deliver(r, tail);
    expect(r.client.counters.dropsByName()).toEqual({});
    expect(r.toAgentTun).toHaveLength(2);
    // The same fragment to a host that is not ours is still refused, on its destination.
    const stray = Uint8Array.from(tail);
    stray.set(ip('10.11.0.2'), 16);
    deliver(r, stray);
    expect(r.client.counters.dropsByName()).toEqual({ destination_not_ours: 1 });
  });
});
