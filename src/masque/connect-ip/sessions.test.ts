import { H3Error } from '../../h3/errors.js';
import { beforeEach, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { craftIcmp, craftTcp, craftUdp } from '../../packet/craft.js';
import { ipv4HeaderChecksumOk } from '../../packet/ip-packet.js';
import { AddressPool } from '../address-pool.js';
import { formatIp, formatPrefix, parseIp, parsePrefix } from '../../packet/ip-address.js';
import { RouteTable } from '../route-table.js';
import { TunnelStreamPair } from '../testing/tunnel-stream-pair.js';
import { CAPSULE_ADDRESS_REQUEST, CAPSULE_ROUTE_ADVERTISEMENT } from './capsule-types.js';
import { ConnectIpDrop } from './counters.js';
import { MASQUE_HEADROOM } from './datagram.js';
import { ConnectIpGatewaySession } from './gateway-session.js';
import { HR, assign, ip, rig, withHeadroom, type Rig } from '../testing/connect-ip-rig.js';

describe('CONNECT-IP sessions over an in-memory stream pair', () => {
  let r: Rig;
  beforeEach(() => {
    r = rig();
  });

  it('RFC 9484 §4.7.2/§4.7.1: ADDRESS_REQUEST → ADDRESS_ASSIGN, IPv4 + IPv6, single addresses and prefixes, matching Request IDs', () => {
    const ids = r.client.requestAddresses([
      { version: 4 },
      { version: 6, prefixLength: 64 },
      { version: 4, prefixLength: 28 },
      { version: 6, address: ip('fd00:89::42') },
    ]);
    expect(ids).toEqual([1, 2, 3, 4]);
    r.pair.flush();
    const got = r.client.assignedAddresses().map((a) => `${a.requestId} ${formatIp(a.address)}/${a.prefixLength}`);
    expect(got).toEqual(['1 10.89.0.2/32', '2 fd00:89:0:1::/64', '3 10.89.0.16/28', '4 fd00:89::42/128']);
    expect(r.gateway.grantedAddresses()).toHaveLength(4);
    // The session's lists are frozen: an edit in place would outlive the verdicts its pass cache keeps (ClientPassCache).
    expect(Object.isFrozen(r.gateway.grantedAddresses()) && Object.isFrozen(r.gateway.clientRoutes())).toBe(true);
    expect(() => (r.gateway.grantedAddresses() as unknown as unknown[]).push(0)).toThrow(TypeError);
    // Return path installed for each grant.
    expect(r.table.lookup4(ip('10.89.0.20'), 0)).toBe(r.gateway);
    expect(r.table.lookup6(ip('fd00:89:0:1::99'), 0)).toBe(r.gateway);
    // A later request: the answer lists all grants (full list, §4.7.1), new Request ID 5.
    expect(r.client.requestAddresses([{ version: 4 }])).toEqual([5]);
    r.pair.flush();
    expect(r.client.assignedAddresses()).toHaveLength(5);
  });

  it('RFC 9484 §4.7.2: a request the gateway cannot satisfy is answered with all-zero address and maximum prefix length', () => {
    const v4only = rig({ pools: 'v4' });
    v4only.client.requestAddresses([{ version: 6 }, { version: 4 }]);
    v4only.pair.flush();
    const ev = v4only.clientEvents.filter((e) => e.type === 'addresses-assigned').at(-1)!;
    expect(ev.type === 'addresses-assigned' && ev.rejected.map((x) => x.requestId)).toEqual([1]);
    expect(v4only.client.assignedAddresses().map((a) => a.version)).toEqual([4]);
    const raw = v4only.pair.gateway.sentCapsules.at(-1)!.value;
    // The v4 grant (ID 2), then the rejection: ID 1, v6, ::, /128.
    expect(Buffer.from(raw).toString('hex')).toBe('02040a590002' + '20' + '0106' + '00'.repeat(16) + '80');
  });

  it('a client cannot drain the pool: grants per session are bounded (rejections beyond maxGrants)', () => {
    const g = rig({ gw: { maxGrants: 2 } });
    g.client.requestAddresses([{ version: 4 }, { version: 4 }, { version: 4 }]);
    g.pair.flush();
    expect(g.client.assignedAddresses()).toHaveLength(2);
    const ev = g.clientEvents.filter((e) => e.type === 'addresses-assigned').at(-1)!;
    expect(ev.type === 'addresses-assigned' && ev.rejected.map((x) => x.requestId)).toEqual([3]);
    expect(g.pool4.leased).toBe(2);
  });

  it('RFC 9484 §4.7.3/§11: re-evaluating the last advertisement under a changed acceptClientRoute withdraws and restores site prefixes', () => {
    let allow4 = true;
    const x = rig({ gw: { acceptClientRoute: (p) => p.version === 6 || allow4 } });
    assign(x);
    x.client.advertiseRoutes([parsePrefix('fd20::/48')!, parsePrefix('10.20.0.0/16')!]);
    x.pair.flush();
    expect(x.table.lookup4(ip('10.20.3.4'), 0)).toBe(x.gateway);
    const send = () => {
      const [b, o, l] = withHeadroom(craftUdp({ src: '10.20.3.4', dst: '192.0.2.1', srcPort: 1, dstPort: 2 }));
      x.client.sendPacket(b, o, l);
      x.pair.flush();
    };
    allow4 = false;
    x.gateway.reevaluateClientRoutes();
    expect(x.table.lookup4(ip('10.20.3.4'), 0)).toBeUndefined();
    expect(x.table.lookup6(ip('fd20::1'), 0)).toBe(x.gateway);
    send();
    expect(x.toNetwork).toHaveLength(0);
    expect(x.gateway.counters.drops[ConnectIpDrop.SPOOFED_SOURCE]).toBe(1);
    allow4 = true;
    x.gateway.reevaluateClientRoutes();
    expect(x.table.lookup4(ip('10.20.3.4'), 0)).toBe(x.gateway);
    send();
    expect(x.toNetwork).toHaveLength(1);
  });

  it('RFC 9484 §4.7.3: routes both ways — gateway advertises 0/0 and ::/0; the agent advertises its site prefixes, installed for the return path', () => {
    expect(r.client.peerRoutes().map((x) => `${x.version} ${formatIp(x.start)}-${formatIp(x.end)}`)).toEqual([
      '4 0.0.0.0-255.255.255.255',
      '6 ::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff',
    ]);
    r.client.advertiseRoutes([parsePrefix('fd20::/48')!, parsePrefix('10.20.0.0/16')!]);
    r.pair.flush();
    expect(r.gateway.clientRoutes().map((x) => x.prefix.version)).toEqual([4, 6]);
    expect(r.table.lookup4(ip('10.20.3.4'), 0)).toBe(r.gateway);
    expect(r.table.lookup6(ip('fd20::1'), 0)).toBe(r.gateway);
    // Overlapping site prefixes are merged into one valid advertisement, not refused.
    r.client.advertiseRoutes([parsePrefix('fd20::/48')!, parsePrefix('10.20.0.0/16')!, parsePrefix('10.20.5.0/24')!]);
    r.pair.flush();
    expect(r.gateway.clientRoutes().map((x) => formatPrefix(x.prefix))).toEqual(['10.20.0.0/16', 'fd20::/48']);
    // A second agent advertising the same prefix cannot take it over.
    const other = rig();
    const shared = new ConnectIpGatewaySession(other.pair.gateway, {
      scope: { target: { kind: 'any' }, ipProtocol: null }, routeTable: r.table, onPacket: () => {},
      onEvent: (e) => other.gatewayEvents.push(e),
    });
    other.pair.gateway.attach(shared);
    other.client.advertiseRoutes([parsePrefix('10.20.0.0/16')!]);
    other.pair.flush();
    expect(other.gatewayEvents.some((e) => e.type === 'route-conflict')).toBe(true);
    expect(r.table.lookup4(ip('10.20.3.4'), 0)).toBe(r.gateway);
    // A site-to-site packet sourced from an advertised prefix passes the source check.
    const [b, o, l] = withHeadroom(craftUdp({ src: '10.20.3.4', dst: '192.0.2.1', srcPort: 1, dstPort: 2 }));
    expect(r.client.sendPacket(b, o, l)).toBe(0);
    r.pair.flush();
    expect(r.toNetwork).toHaveLength(1);
  });

  it('10,000 IP packets round trip through client → gateway → echo → routing table → client with none lost, TTL decremented once', () => {
    const { v4 } = assign(r);
    const N = 10_000;
    const seen = new Uint8Array(N);
    r.toAgentTun.length = 0;
    // The "network" behind the gateway echoes UDP by swapping addresses, and routes the reply back by LPM.
    const net = new Uint8Array(2048);
    for (let i = 0; i < N; i++) {
      const payload = new Uint8Array(4 + (i % 1000));
      new DataView(payload.buffer).setUint32(0, i);
      const [b, o, l] = withHeadroom(craftUdp({ src: v4, dst: '192.0.2.7', srcPort: 5000, dstPort: 7, payload, ttl: 64 }));
      expect(r.client.sendPacket(b, o, l)).toBe(0);
      if (i % 100 === 99 || i === N - 1) {
        r.pair.flush();
        for (const p of r.toNetwork) {
          expect(p[8]).toBe(63); // RFC 9484 §7.2: decremented once, checksum still valid
          expect(ipv4HeaderChecksumOk(p, 0)).toBe(true);
          net.set(p, 16);
          net.set(p.subarray(16, 20), 16 + 12); // src := old dst
          net.set(ip(v4), 16 + 16); // dst := client
          const s = r.table.lookupDestination(net, 16, p.length);
          expect(s).toBe(r.gateway);
          expect(s!.sendToClient(net, 16, p.length)).toBe(0);
        }
        r.toNetwork.length = 0;
        r.pair.flush();
        for (const p of r.toAgentTun) seen[new DataView(p.buffer, p.byteOffset + 28).getUint32(0)]++;
        r.toAgentTun.length = 0;
      }
    }
    expect(seen.every((x) => x === 1)).toBe(true);
    expect(r.client.counters.packetsSent).toBe(N);
    expect(r.client.counters.packetsReceived).toBe(N);
    expect(r.gateway.counters.dropsByName()).toEqual({});
  });

  it('RFC 9484 §7.2.1: TTL 1 → dropped and answered with Time Exceeded (IPv4 type 11, IPv6 type 3)', () => {
    const { v4, v6 } = assign(r);
    for (const [src, dst, type] of [[v4, '192.0.2.1', 11], [v6, '2001:db8::1', 3]] as const) {
      r.toAgentTun.length = 0;
      const [b, o, l] = withHeadroom(craftUdp({ src, dst, srcPort: 1, dstPort: 2, ttl: 1 }));
      r.client.sendPacket(b, o, l);
      r.pair.flush();
      expect(r.toNetwork).toHaveLength(0);
      expect(r.toAgentTun).toHaveLength(1);
      const icmp = r.toAgentTun[0]!;
      expect(icmp[type === 11 ? 20 : 40]).toBe(type);
    }
    expect(r.gateway.counters.drops[ConnectIpDrop.TTL_EXPIRED]).toBe(2);
  });

  it('RFC 9484 §11: a spoofed source is dropped and answered with ICMPv6 Destination Unreachable code 5 (IPv4: type 3 code 13)', () => {
    assign(r);
    const [b, o, l] = withHeadroom(craftUdp({ src: 'fd00:99::5', dst: '2001:db8::1', srcPort: 1, dstPort: 2 }));
    r.client.sendPacket(b, o, l);
    const [b4, o4, l4] = withHeadroom(craftUdp({ src: '10.66.0.5', dst: '192.0.2.1', srcPort: 1, dstPort: 2 }));
    r.client.sendPacket(b4, o4, l4);
    r.pair.flush();
    expect(r.toNetwork).toHaveLength(0);
    expect(r.gateway.counters.drops[ConnectIpDrop.SPOOFED_SOURCE]).toBe(2);
    const [e6, e4] = r.toAgentTun;
    expect([e6![40], e6![41]]).toEqual([1, 5]);
    expect(formatIp(e6!.subarray(24, 40))).toBe('fd00:99::5'); // back to the (spoofed) sender, through the tunnel
    expect([e4![20], e4![21]]).toEqual([3, 13]);
  });

  it('RFC 9484 §7.2.1: return traffic too big for the path → Packet Too Big / Frag Needed with the real limit', () => {
    const { v4, v6 } = assign(r);
    r.pair.setMaxDatagramPayload(1350); // → 1349-byte IP packets fit (1 byte context ID)
    expect(r.gateway.maxPacketSize()).toBe(1349);
    const big4 = craftUdp({ src: '192.0.2.1', dst: v4, srcPort: 1, dstPort: 2, payload: new Uint8Array(1400) });
    const [b, o, l] = withHeadroom(big4);
    expect(r.gateway.sendToClient(b, o, l)).toBe(ConnectIpDrop.TOO_BIG);
    const ptb4 = r.icmpToNetwork[0]!;
    expect([ptb4[20], ptb4[21]]).toEqual([3, 4]);
    expect((ptb4[26]! << 8) | ptb4[27]!).toBe(1349);
    const [b6, o6, l6] = withHeadroom(craftUdp({ src: '2001:db8::1', dst: v6, srcPort: 1, dstPort: 2, payload: new Uint8Array(1400) }));
    expect(r.gateway.sendToClient(b6, o6, l6)).toBe(ConnectIpDrop.TOO_BIG);
    const ptb6 = r.icmpToNetwork[1]!;
    expect(ptb6[40]).toBe(2);
    expect(new DataView(ptb6.buffer, ptb6.byteOffset).getUint32(44)).toBe(1349);
    // Without DF: no Frag Needed lie, counted separately.
    const [bn, on, ln] = withHeadroom(craftUdp({ src: '192.0.2.1', dst: v4, srcPort: 1, dstPort: 2, payload: new Uint8Array(1400), df: false }));
    expect(r.gateway.sendToClient(bn, on, ln)).toBe(ConnectIpDrop.TOO_BIG_NO_DF);
    expect(r.icmpToNetwork).toHaveLength(2);
    // Agent side: a TUN packet that no longer fits gets PTB written back to the TUN.
    const [bc, oc, lc] = withHeadroom(craftUdp({ src: v4, dst: '192.0.2.1', srcPort: 1, dstPort: 2, payload: new Uint8Array(1400) }));
    expect(r.client.sendPacket(bc, oc, lc)).toBe(ConnectIpDrop.TOO_BIG);
    expect((r.localIcmp[0]![26]! << 8) | r.localIcmp[0]![27]!).toBe(1349);
  });

  it('RFC 9484 §7.2: a path below 1280 bytes aborts the IPv6 part (addresses and routes retracted), IPv4 keeps working', () => {
    const { v4 } = assign(r);
    r.pair.setMaxDatagramPayload(1200);
    r.gateway.checkPath();
    r.pair.flush();
    expect(r.gatewayEvents.some((e) => e.type === 'ipv6-disabled')).toBe(true);
    expect(r.client.assignedAddresses().map((a) => a.version)).toEqual([4]);
    expect(r.client.peerRoutes().map((x) => x.version)).toEqual([4]);
    expect(r.table.lookup6(ip('fd00:89::2'), 0)).toBeUndefined();
    expect(r.pool6.leased).toBe(0);
    const [b, o, l] = withHeadroom(craftUdp({ src: v4, dst: '192.0.2.1', srcPort: 1, dstPort: 2 }));
    expect(r.client.sendPacket(b, o, l)).toBe(0);
    r.pair.flush();
    expect(r.toNetwork).toHaveLength(1);
    // The strict variant aborts the stream.
    const strict = rig({ maxDatagramPayload: 1200, gw: { ipv6MinMtuAction: 'abort' } });
    expect(strict.pair.gateway.abortedWith).not.toBeNull();
  });

  it('RFC 9484 §4.6/§4.8: scope enforced — destination outside the target or another protocol dropped (ICMP allowed)', () => {
    const s = rig({ scope: { target: { kind: 'prefix', prefix: parsePrefix('192.0.2.0/24')! }, ipProtocol: 17 } });
    expect(s.client.peerRoutes().map((x) => `${formatIp(x.start)}-${formatIp(x.end)} ${x.ipProtocol}`)).toEqual(['192.0.2.0-192.0.2.255 17']);
    s.client.requestAddresses([{ version: 4 }]);
    s.pair.flush();
    const src = formatIp(s.client.assignedAddresses()[0]!.address);
    const send = (p: Uint8Array) => {
      const [b, o, l] = withHeadroom(p);
      s.client.sendPacket(b, o, l);
    };
    send(craftUdp({ src, dst: '192.0.2.9', srcPort: 1, dstPort: 53 }));
    send(craftUdp({ src, dst: '198.51.100.1', srcPort: 1, dstPort: 53 }));
    send(craftTcp({ src, dst: '192.0.2.9', srcPort: 1, dstPort: 80, seq: 1, flags: 2 }));
    send(craftIcmp({ src, dst: '192.0.2.9', type: 8, rest: 1 }));
    s.pair.flush();
    expect(s.toNetwork.map((p) => p[9])).toEqual([17, 1]);
    expect(s.gateway.counters.drops[ConnectIpDrop.OUT_OF_SCOPE]).toBe(2);
    expect(s.toAgentTun.map((p) => `${p[20]}/${p[21]}`)).toEqual(['3/13', '3/13']);
  });

  it('RFC 9484 §7.2: link-local traffic is never forwarded; per-identity policy hook drops with a reason', () => {
    const p = rig({ gw: { policy: (buf, info) => info.dstPort !== 23 } });
    const { v6, v4 } = assign(p);
    const send = (x: Uint8Array) => {
      const [b, o, l] = withHeadroom(x);
      p.client.sendPacket(b, o, l);
    };
    send(craftUdp({ src: v6, dst: 'fe80::1', srcPort: 1, dstPort: 2 }));
    send(craftUdp({ src: v4, dst: '169.254.1.1', srcPort: 1, dstPort: 2 }));
    send(craftTcp({ src: v4, dst: '192.0.2.1', srcPort: 1, dstPort: 23, seq: 1, flags: 2 }));
    p.pair.flush();
    expect(p.toNetwork).toHaveLength(0);
    // The agent keeps link-local traffic (router solicitations, MLD) off the tunnel; the gateway drops what slips through.
    expect(p.client.counters.dropsByName()).toEqual({ link_local: 2 });
    expect(p.gateway.counters.dropsByName()).toEqual({ policy: 1 });
    const ll = craftUdp({ src: v4, dst: '169.254.1.1', srcPort: 1, dstPort: 2 });
    const d = new Uint8Array(17 + ll.length);
    d.set(ll, 17);
    p.pair.client.sendDatagram(d, 16, 1 + ll.length);
    p.pair.flush();
    expect(p.gateway.counters.dropsByName()).toEqual({ policy: 1, link_local: 1 });
    const [b, o, l] = withHeadroom(craftUdp({ src: 'fe80::99', dst: v6, srcPort: 1, dstPort: 2 }));
    expect(p.gateway.sendToClient(b, o, l)).toBe(ConnectIpDrop.LINK_LOCAL);
  });

  it('policy never sees stale ports: non-first fragments carry port 0; truncated transport headers are dropped as malformed', () => {
    const ports: number[] = [];
    const p = rig({ gw: { policy: (_b, info) => (ports.push(info.dstPort), true) } });
    const { v4 } = assign(p);
    const send = (x: Uint8Array) => {
      const [b, o, l] = withHeadroom(x);
      p.client.sendPacket(b, o, l);
    };
    send(craftUdp({ src: v4, dst: '192.0.2.1', srcPort: 1, dstPort: 443, payload: new Uint8Array(16) }));
    const frag = craftUdp({ src: v4, dst: '192.0.2.1', srcPort: 1, dstPort: 443, payload: new Uint8Array(16) });
    frag[6] = 0x00;
    frag[7] = 0x02; // fragment offset 16 bytes, not the first fragment
    frag[10] = 0;
    frag[11] = 0;
    const ck = (() => { let x = 0; for (let i = 0; i < 20; i += 2) x += (frag[i]! << 8) | frag[i + 1]!; while (x > 0xffff) x = (x & 0xffff) + (x >>> 16); return ~x & 0xffff; })();
    frag[10] = ck >> 8;
    frag[11] = ck & 0xff;
    send(frag);
    const tcp = craftTcp({ src: v4, dst: '192.0.2.1', srcPort: 1, dstPort: 22, seq: 1, flags: 2 });
    tcp[32] = 0xf0; // TCP data offset 60 bytes, past the segment
    send(tcp);
    p.pair.flush();
    expect(ports).toEqual([443, 0]);
    expect(p.toNetwork).toHaveLength(2);
    expect(p.gateway.counters.dropsByName()).toEqual({ malformed_ip: 1 });
  });

  it('ICMP errors are rate limited (RFC 4443 §2.4(f)) and suppressed ones counted', () => {
    let now = 0;
    const q = rig({ gw: { icmpPerSecond: 2, nowMs: () => now } });
    assign(q);
    for (let i = 0; i < 5; i++) {
      const [b, o, l] = withHeadroom(craftUdp({ src: '10.66.0.5', dst: '192.0.2.1', srcPort: 1, dstPort: 2 }));
      q.client.sendPacket(b, o, l);
    }
    q.pair.flush();
    expect(q.gateway.counters.icmpSent).toBe(2);
    expect(q.gateway.counters.icmpSuppressed).toBe(3);
    now = 1000;
    const [b, o, l] = withHeadroom(craftUdp({ src: '10.66.0.5', dst: '192.0.2.1', srcPort: 1, dstPort: 2 }));
    q.client.sendPacket(b, o, l);
    q.pair.flush();
    expect(q.gateway.counters.icmpSent).toBe(3);
    expect(q.gateway.counters.drops[ConnectIpDrop.SPOOFED_SOURCE]).toBe(6);
  });

  it('malformed catalogue: zero-entry ADDRESS_REQUEST aborts the stream (RFC 9484 §4.7.2)', () => {
    r.pair.client.sendCapsule(CAPSULE_ADDRESS_REQUEST, new Uint8Array(0));
    r.pair.flush();
    expect(r.pair.gateway.abortedWith).toBe(H3Error.H3_GENERAL_PROTOCOL_ERROR);
    expect(r.gateway.isClosed).toBe(true);
    expect(r.gatewayEvents.at(-1)).toMatchObject({ type: 'closed', error: H3Error.H3_GENERAL_PROTOCOL_ERROR, reason: expect.stringMatching(/zero/) });
    expect(r.client.isClosed).toBe(true);
  });

  it('malformed catalogue: prefix length 33 / host bits in ADDRESS_REQUEST abort; unordered routes abort the client (§4.7.3)', () => {
    r.pair.client.sendCapsule(CAPSULE_ADDRESS_REQUEST, Uint8Array.of(1, 4, 0, 0, 0, 0, 33));
    r.pair.flush();
    expect(r.pair.gateway.abortedWith).toBe(H3Error.H3_GENERAL_PROTOCOL_ERROR);
    const s = rig();
    s.pair.gateway.sendCapsule(CAPSULE_ROUTE_ADVERTISEMENT, Uint8Array.of(4, 10, 0, 1, 0, 10, 0, 1, 255, 0, 4, 10, 0, 0, 0, 10, 0, 0, 255, 0));
    s.pair.flush();
    expect(s.pair.client.abortedWith).toBe(H3Error.H3_GENERAL_PROTOCOL_ERROR);
    expect(s.clientEvents.at(-1)).toMatchObject({ type: 'closed', reason: expect.stringMatching(/overlaps or is not after/) });
  });

  it('malformed catalogue: unknown capsule types are skipped, unknown context IDs dropped and counted (RFC 9297 §3.2, RFC 9484 §6)', () => {
    const { v4 } = assign(r);
    r.pair.client.sendCapsule(0x2b3c, Uint8Array.of(1, 2, 3));
    const pkt = craftUdp({ src: v4, dst: '192.0.2.1', srcPort: 1, dstPort: 2 });
    const d = new Uint8Array(16 + 1 + pkt.length);
    d[16] = 2; // context ID 2: never registered
    d.set(pkt, 17);
    r.pair.client.sendDatagram(d, 16, d.length - 16);
    const nm = new Uint8Array(16 + 2 + pkt.length);
    nm[16] = 0x40; // context ID 0 in a 2-byte (non-minimal) varint is still context 0
    nm.set(pkt, 18);
    r.pair.client.sendDatagram(nm, 16, nm.length - 16);
    const empty = new Uint8Array(16);
    r.pair.client.sendDatagram(empty, 16, 0);
    r.pair.flush();
    expect(r.gateway.isClosed).toBe(false);
    expect(r.gateway.counters.capsulesSkipped).toBe(1);
    expect(r.gateway.counters.dropsByName()).toEqual({ unknown_context: 1, malformed_datagram: 1 });
    expect(r.toNetwork).toHaveLength(1);
  });

  it('headroom contract and garbage packets are counted drops, not exceptions', () => {
    const p = craftUdp({ src: '10.89.0.2', dst: '192.0.2.1', srcPort: 1, dstPort: 2 });
    expect(r.client.sendPacket(p, 0, p.length)).toBe(ConnectIpDrop.NO_HEADROOM);
    const [b, o] = withHeadroom(Uint8Array.of(0x45, 1, 2));
    expect(r.client.sendPacket(b, o, 3)).toBe(ConnectIpDrop.MALFORMED_IP);
    const g = new Uint8Array(40);
    g[16] = 0;
    g[17] = 0x99;
    r.pair.client.sendDatagram(g, 16, 10);
    r.pair.flush();
    expect(r.gateway.counters.drops[ConnectIpDrop.MALFORMED_IP]).toBe(1);
  });

  it('close releases leases and routes; later sends are counted as closed', () => {
    assign(r);
    r.client.advertiseRoutes([parsePrefix('10.20.0.0/16')!]);
    r.pair.flush();
    expect(r.table.size).toBe(3);
    r.client.close();
    r.pair.flush();
    expect(r.gateway.isClosed).toBe(true);
    expect(r.gatewayEvents.at(-1)).toEqual({ type: 'closed', error: 0 });
    expect(r.table.size).toBe(0);
    expect(r.pool4.leased + r.pool6.leased).toBe(0);
    const [b, o, l] = withHeadroom(craftUdp({ src: '10.89.0.2', dst: '192.0.2.1', srcPort: 1, dstPort: 2 }));
    expect(r.client.sendPacket(b, o, l)).toBe(ConnectIpDrop.CLOSED);
    expect(formatPrefix(r.pool4.allocate()!)).toBe('10.89.0.2/32');
  });

  it('maxPacketSize is the datagram payload limit minus the context ID; 0 (no datagrams yet) is a send failure, never a Packet Too Big of 0', () => {
    expect(r.client.maxPacketSize()).toBe(1399);
    const { v4 } = assign(r);
    r.pair.setMaxDatagramPayload(0);
    const [b, o, l] = withHeadroom(craftUdp({ src: v4, dst: '192.0.2.1', srcPort: 1, dstPort: 2 }));
    expect(r.client.sendPacket(b, o, l)).toBe(ConnectIpDrop.SEND_FAILED);
    expect(r.localIcmp).toHaveLength(0);
    r.pair.setMaxDatagramPayload(1400);
    expect(r.client.sendPacket(b, o, l)).toBe(0);
    expect(MASQUE_HEADROOM).toBe(9);
  });

  it('RFC 9484 §7.2: the 1280-byte ICMPv6 echo probe to ff02::1 is answered by the peer; no answer after 3 tries tears IPv6 down', () => {
    assign(r);
    r.client.probeIpv6(0);
    expect(r.client.nextTimeoutMs()).toBe(2000);
    r.pair.flush();
    expect(r.clientEvents.at(-1)).toEqual({ type: 'ipv6-verified' });
    expect(r.client.nextTimeoutMs()).toBe(-1);
    expect(r.gateway.counters.echoRepliesSent).toBe(1);
    expect(r.toNetwork).toHaveLength(0); // link-local: answered on the link, never forwarded
    expect(r.toAgentTun).toHaveLength(0);
    // The gateway's replies no longer get through (a PMTU black hole on the way back).
    r.pair.gateway.maxPayload = 1200;
    r.client.probeIpv6(10_000);
    r.pair.flush();
    r.client.onTimeout(11_000);
    expect(r.client.ipv6Enabled).toBe(true);
    for (const t of [12_000, 14_000, 16_000]) {
      r.client.onTimeout(t);
      r.pair.flush();
    }
    expect(r.client.ipv6Enabled).toBe(false);
    expect(r.clientEvents.find((e) => e.type === 'ipv6-disabled')).toMatchObject({ reason: 'no reply to 3 1280-byte IPv6 probes' });
    const [b, o, l] = withHeadroom(craftUdp({ src: 'fd00:89::2', dst: '2001:db8::1', srcPort: 1, dstPort: 2 }));
    expect(r.client.sendPacket(b, o, l)).toBe(ConnectIpDrop.IPV6_DISABLED);
  });

  it('random datagrams and capsules never throw; every datagram is either passed on or counted', () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 120 }), { maxLength: 30 }), fc.array(fc.tuple(fc.integer({ min: 0, max: 8 }), fc.uint8Array({ maxLength: 40 })), { maxLength: 5 }), (dgrams, caps) => {
        const x = rig();
        assign(x);
        for (const d of dgrams) {
          const b = new Uint8Array(16 + d.length);
          b.set(d, 16);
          x.gateway.onDatagram(b, 16, d.length);
          x.client.onDatagram(b, 16, d.length);
        }
        const sum = (c: typeof x.gateway.counters) => c.drops.reduce((a, n) => a + n, 0) + c.packetsReceived + c.echoRepliesSent + c.echoRepliesReceived;
        // ICMP errors the gateway generated are not packets it received; each datagram is counted exactly once.
        expect(sum(x.gateway.counters)).toBe(dgrams.length);
        expect(sum(x.client.counters)).toBe(dgrams.length);
        for (const [t, v] of caps) {
          x.gateway.onCapsule(t, v);
          x.client.onCapsule(t, v);
        }
      }),
      { numRuns: 300 },
    );
  });
});
