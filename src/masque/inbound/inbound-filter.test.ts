// Inbound default-deny (issue #12 item 8): the connection tracker and the
// verdict the gateway applies at forwardFromNetwork. On e2aee95 nothing
// judged these packets (the gateway forwarded whatever routed to an agent);
// these tests fail there because the module did not exist, and the netns
// test (test/netns/inbound-deny.test.ts) shows the end-to-end effect.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { parseGatewayConfig } from '../../config/load.js';
import { compilePolicy, type IdentityPolicy } from '../../config/policy.js';
import { craftIcmp, craftTcp, craftUdp } from '../../packet/craft.js';
import { buildIcmpError, IcmpError } from '../../packet/icmp-error.js';
import { PacketInfo, parseIpPacket, TCP_FLAG } from '../../packet/ip-packet.js';
import { DEFAULT_INBOUND_TIMEOUTS, type FlowOwner } from './conn-track.js';
import { InboundDrop, InboundFilter, INBOUND_DROP_NAMES, type InboundRules } from './inbound-filter.js';

const { SYN, ACK, FIN, RST } = TCP_FLAG;
/** Cluster A (behind the agent) and cluster B (the gateway's network), as in the lab. */
const A = '10.10.0.2';
const B = '10.20.0.2';
const A6 = 'fd00:a::2';
const B6 = 'fd00:b::2';

const DENY_ALL: InboundRules = { allowsInbound: () => false };
const info = new PacketInfo();

/** Seeds the tracker with an agent → network packet, as the gateway does once the session passed it. */
function out(f: InboundFilter, p: Uint8Array, owner: FlowOwner, now: number): void {
  expect(parseIpPacket(p, 0, p.length, info)).toBe(0);
  f.track.seed(p, info, owner, now);
}
const judge = (f: InboundFilter, p: Uint8Array, owner: FlowOwner, now: number, rules: InboundRules = DENY_ALL) => f.judge(p, 0, p.length, owner, rules, now);

/** An ICMP error about `orig` (a packet the agent sent), reported by `reporter`. */
function icmpErrorAbout(orig: Uint8Array, reporter: string, kind: number = IcmpError.HOST_UNREACHABLE): Uint8Array {
  const out = new Uint8Array(1500);
  const rep = craftUdp({ src: reporter, dst: reporter, srcPort: 1, dstPort: 1 });
  const v4 = (orig[0]! >> 4) === 4;
  const n = buildIcmpError(kind, 1280, orig, 0, orig.length, rep, v4 ? 12 : 8, out, 0, out.length);
  expect(n).toBeGreaterThan(0);
  return out.subarray(0, n);
}

function policyWith(inbound: string): IdentityPolicy {
  const yaml = `tls: {cert: c, key: k, ca: a}
pools: {ipv4: 10.200.0.0/24, ipv6: fd00:200::/64}
policy:
  - identity: a
    advertise: [10.10.0.0/24, fd00:a::/64]
    inbound:
${inbound}
`;
  return compilePolicy(parseGatewayConfig(yaml, 'gw.yaml').policy).forIdentity('a');
}

describe('inbound default-deny: unsolicited traffic (issue #12 item 8)', () => {
  it('drops UDP and a TCP SYN from cluster B to cluster A when nothing was opened from A, with a reason', () => {
    const f = new InboundFilter({ maxFlows: 64 });
    const s = {};
    expect(judge(f, craftUdp({ src: B, dst: A, srcPort: 40000, dstPort: 9999, payload: Buffer.from('x') }), s, 0)).toBe(InboundDrop.INBOUND_UNSOLICITED);
    expect(judge(f, craftTcp({ src: B, dst: A, srcPort: 40000, dstPort: 8081, seq: 1, flags: SYN }), s, 0)).toBe(InboundDrop.INBOUND_UNSOLICITED);
    expect(judge(f, craftTcp({ src: B6, dst: A6, srcPort: 40000, dstPort: 22, seq: 1, flags: SYN }), s, 0)).toBe(InboundDrop.INBOUND_UNSOLICITED);
    expect(judge(f, craftIcmp({ src: B, dst: A, type: 8, rest: 0x10001 }), s, 0)).toBe(InboundDrop.INBOUND_UNSOLICITED);
    expect(INBOUND_DROP_NAMES[InboundDrop.INBOUND_UNSOLICITED]).toBe('inbound_unsolicited');
  });

  it('an ICMP error quoting no tracked flow is refused (forged "unreachable" into cluster A)', () => {
    const f = new InboundFilter({ maxFlows: 64 });
    const err = icmpErrorAbout(craftTcp({ src: A, dst: B, srcPort: 5555, dstPort: 80, seq: 1, flags: SYN }), B);
    expect(judge(f, err, {}, 0)).toBe(InboundDrop.INBOUND_ICMP_UNTRACKED);
  });

  it('non-first fragments and malformed packets are counted drops, not passes', () => {
    const f = new InboundFilter({ maxFlows: 64 });
    const frag = Buffer.from(craftUdp({ src: B, dst: A, srcPort: 1, dstPort: 2, payload: new Uint8Array(16) }));
    frag.writeUInt16BE(0x0004, 6); // fragment offset 32 bytes, DF clear (checksum is not checked here)
    expect(judge(f, frag, {}, 0)).toBe(InboundDrop.INBOUND_FRAGMENT);
    expect(judge(f, Uint8Array.of(0x45, 0, 0, 10), {}, 0)).toBe(InboundDrop.INBOUND_MALFORMED);
  });
});

describe('inbound default-deny: return traffic of flows opened from the agent side', () => {
  it('UDP: the reply passes; after the idle timeout it no longer does; once answered it lives udpStreamMs', () => {
    const f = new InboundFilter({ maxFlows: 64 });
    const s = {};
    out(f, craftUdp({ src: A, dst: B, srcPort: 5000, dstPort: 53 }), s, 1000);
    const reply = craftUdp({ src: B, dst: A, srcPort: 53, dstPort: 5000 });
    expect(judge(f, reply, s, 2000)).toBe(0);
    // Answered: the stream timeout (120 s) applies from the last packet.
    expect(judge(f, reply, s, 2000 + DEFAULT_INBOUND_TIMEOUTS.udpStreamMs - 1)).toBe(0);
    expect(judge(f, reply, s, 2000 + 2 * DEFAULT_INBOUND_TIMEOUTS.udpStreamMs)).toBe(InboundDrop.INBOUND_UNSOLICITED);
    // Unanswered flows expire after udpMs (30 s).
    out(f, craftUdp({ src: A, dst: B, srcPort: 5001, dstPort: 53 }), s, 10_000);
    expect(judge(f, craftUdp({ src: B, dst: A, srcPort: 53, dstPort: 5001 }), s, 10_000 + DEFAULT_INBOUND_TIMEOUTS.udpMs)).toBe(InboundDrop.INBOUND_UNSOLICITED);
    // The same ports from another host, or to another port, are not the flow.
    out(f, craftUdp({ src: A, dst: B, srcPort: 5002, dstPort: 53 }), s, 20_000);
    expect(judge(f, craftUdp({ src: '10.20.0.3', dst: A, srcPort: 53, dstPort: 5002 }), s, 20_001)).toBe(InboundDrop.INBOUND_UNSOLICITED);
    expect(judge(f, craftUdp({ src: B, dst: A, srcPort: 54, dstPort: 5002 }), s, 20_001)).toBe(InboundDrop.INBOUND_UNSOLICITED);
  });

  it('TCP: SYN-ACK and data pass after the agent\'s SYN; RST closes the flow quickly; a SYN toward the agent on another port does not pass', () => {
    const f = new InboundFilter({ maxFlows: 64 });
    const s = {};
    out(f, craftTcp({ src: A6, dst: B6, srcPort: 40001, dstPort: 80, seq: 1, flags: SYN }), s, 0);
    expect(judge(f, craftTcp({ src: B6, dst: A6, srcPort: 80, dstPort: 40001, seq: 9, ack: 2, flags: SYN | ACK }), s, 10)).toBe(0);
    expect(judge(f, craftTcp({ src: B6, dst: A6, srcPort: 80, dstPort: 40002, seq: 9, flags: SYN }), s, 10)).toBe(InboundDrop.INBOUND_UNSOLICITED);
    // Established: idle for a day is fine (5 days by default).
    expect(judge(f, craftTcp({ src: B6, dst: A6, srcPort: 80, dstPort: 40001, seq: 10, ack: 2, flags: ACK }), s, 86_400_000)).toBe(0);
    expect(judge(f, craftTcp({ src: B6, dst: A6, srcPort: 80, dstPort: 40001, seq: 10, ack: 2, flags: RST }), s, 86_400_001)).toBe(0);
    // After the RST, the flow lingers max(1 s, tcpClosingMs / 10) and is gone.
    expect(judge(f, craftTcp({ src: B6, dst: A6, srcPort: 80, dstPort: 40001, seq: 10, ack: 2, flags: ACK }), s, 86_400_001 + 12_001)).toBe(InboundDrop.INBOUND_UNSOLICITED);
  });

  it('TCP: a FIN moves the flow to the closing timeout (tcpClosingMs)', () => {
    const f = new InboundFilter({ maxFlows: 64, timeouts: { tcpClosingMs: 5_000 } });
    const s = {};
    out(f, craftTcp({ src: A, dst: B, srcPort: 40001, dstPort: 80, seq: 1, flags: SYN }), s, 0);
    expect(judge(f, craftTcp({ src: B, dst: A, srcPort: 80, dstPort: 40001, seq: 1, ack: 2, flags: SYN | ACK }), s, 1)).toBe(0);
    out(f, craftTcp({ src: A, dst: B, srcPort: 40001, dstPort: 80, seq: 2, ack: 2, flags: FIN | ACK }), s, 2);
    expect(judge(f, craftTcp({ src: B, dst: A, srcPort: 80, dstPort: 40001, seq: 2, ack: 3, flags: FIN | ACK }), s, 4_000)).toBe(0);
    expect(judge(f, craftTcp({ src: B, dst: A, srcPort: 80, dstPort: 40001, seq: 3, ack: 3, flags: ACK }), s, 9_001)).toBe(InboundDrop.INBOUND_UNSOLICITED);
  });

  it('ICMP echo: the reply with the request\'s identifier passes, another identifier or an unrequested reply does not', () => {
    const f = new InboundFilter({ maxFlows: 64 });
    const s = {};
    out(f, craftIcmp({ src: A, dst: B, type: 8, rest: (77 << 16) | 1 }), s, 0);
    expect(judge(f, craftIcmp({ src: B, dst: A, type: 0, rest: (77 << 16) | 1 }), s, 5)).toBe(0);
    expect(judge(f, craftIcmp({ src: B, dst: A, type: 0, rest: (78 << 16) | 1 }), s, 5)).toBe(InboundDrop.INBOUND_UNSOLICITED);
    out(f, craftIcmp({ src: A6, dst: B6, type: 128, rest: (9 << 16) | 1 }), s, 0);
    expect(judge(f, craftIcmp({ src: B6, dst: A6, type: 129, rest: (9 << 16) | 1 }), s, 5)).toBe(0);
    // An echo request toward the agent is not the reply to one.
    expect(judge(f, craftIcmp({ src: B6, dst: A6, type: 128, rest: (9 << 16) | 1 }), s, 5)).toBe(InboundDrop.INBOUND_UNSOLICITED);
  });

  it('ICMP errors quoting a tracked flow pass (TCP, UDP, echo; v4 and v6) when addressed to the quoted source', () => {
    const f = new InboundFilter({ maxFlows: 64 });
    const s = {};
    const syn = craftTcp({ src: A, dst: B, srcPort: 40001, dstPort: 80, seq: 1, flags: SYN });
    const udp6 = craftUdp({ src: A6, dst: B6, srcPort: 5000, dstPort: 53, payload: new Uint8Array(20) });
    const echo = craftIcmp({ src: A, dst: B, type: 8, rest: (5 << 16) | 1 });
    for (const p of [syn, udp6, echo]) out(f, p, s, 0);
    expect(judge(f, icmpErrorAbout(syn, '10.20.0.254'), s, 1)).toBe(0);
    expect(judge(f, icmpErrorAbout(udp6, 'fd00:b::fe', IcmpError.PACKET_TOO_BIG), s, 1)).toBe(0);
    expect(judge(f, icmpErrorAbout(echo, B, IcmpError.TIME_EXCEEDED), s, 1)).toBe(0);
    // About another owner's flow, or about a flow never opened: refused.
    expect(judge(f, icmpErrorAbout(syn, '10.20.0.254'), {}, 1)).toBe(InboundDrop.INBOUND_ICMP_UNTRACKED);
    const other = craftTcp({ src: A, dst: B, srcPort: 40009, dstPort: 80, seq: 1, flags: SYN });
    expect(judge(f, icmpErrorAbout(other, '10.20.0.254'), s, 1)).toBe(InboundDrop.INBOUND_ICMP_UNTRACKED);
    // An error whose destination is not the quoted packet's source (aimed at another host of cluster A).
    const err = Buffer.from(icmpErrorAbout(syn, '10.20.0.254'));
    err[19] = 3; // destination 10.10.0.3
    expect(judge(f, err, s, 1)).toBe(InboundDrop.INBOUND_ICMP_UNTRACKED);
  });

  it('return traffic counts only toward the session that opened the flow; forget() drops a closed session\'s flows', () => {
    const f = new InboundFilter({ maxFlows: 64 });
    const s1 = {};
    const s2 = {};
    out(f, craftUdp({ src: A, dst: B, srcPort: 5000, dstPort: 53 }), s1, 0);
    const reply = craftUdp({ src: B, dst: A, srcPort: 53, dstPort: 5000 });
    expect(judge(f, reply, s2, 1)).toBe(InboundDrop.INBOUND_UNSOLICITED);
    expect(judge(f, reply, s1, 1)).toBe(0);
    f.track.forget(s1);
    expect(f.track.size).toBe(0);
    expect(judge(f, reply, s1, 2)).toBe(InboundDrop.INBOUND_UNSOLICITED);
  });

  it('an owner that left keeps its flows for the grace period: back in time, return traffic passes; later, the flows are gone', () => {
    const f = new InboundFilter({ maxFlows: 64, ownerGraceMs: 10_000, timeouts: { udpMs: 3_600_000, udpStreamMs: 3_600_000 } });
    const id = 'spiffe://a';
    out(f, craftUdp({ src: A, dst: B, srcPort: 5000, dstPort: 53 }), id, 0);
    out(f, craftUdp({ src: A, dst: B, srcPort: 5001, dstPort: 53 }), 'spiffe://b', 0);
    const reply = craftUdp({ src: B, dst: A, srcPort: 53, dstPort: 5000 });
    f.track.ownerLeft(id, 1_000);
    f.track.onTimeout(10_999);
    expect(f.track.size).toBe(2);
    f.track.ownerBack(id);
    f.track.onTimeout(20_000);
    expect(judge(f, reply, id, 20_000)).toBe(0);
    f.track.ownerLeft(id, 21_000);
    f.track.ownerLeft(id, 29_000); // a second close does not restart the clock
    f.track.onTimeout(31_000);
    expect(f.track.size).toBe(1); // the other owner's flow stays
    expect(judge(f, reply, id, 31_000)).toBe(InboundDrop.INBOUND_UNSOLICITED);
  });

  it('the table is bounded: past maxFlows a flow is evicted and counted; onTimeout expires idle flows and counts them', () => {
    const f = new InboundFilter({ maxFlows: 4 });
    const s = {};
    for (let i = 0; i < 5; i++) out(f, craftUdp({ src: A, dst: B, srcPort: 6000 + i, dstPort: 53 }), s, i);
    expect(f.track.size).toBe(4);
    expect(f.track.evictions).toBe(1);
    // The oldest (port 6000) went; the newest still passes.
    expect(judge(f, craftUdp({ src: B, dst: A, srcPort: 53, dstPort: 6000 }), s, 10)).toBe(InboundDrop.INBOUND_UNSOLICITED);
    expect(judge(f, craftUdp({ src: B, dst: A, srcPort: 53, dstPort: 6004 }), s, 10)).toBe(0);
    f.track.onTimeout(10 + DEFAULT_INBOUND_TIMEOUTS.udpStreamMs);
    expect(f.track.size).toBe(0);
    expect(f.track.expired).toBe(4);
  });
});

describe('inbound rules (policy[].inbound)', () => {
  const rules = policyWith(`      - sources: [10.20.0.0/24]
        prefixes: [10.10.0.2/32]
        protocols: [tcp]
        ports: [8081]
      - sources: [fd00:b::/64]
        protocols: [udp]`);

  it('admits what a rule names (source, destination, protocol, port) and nothing else', () => {
    const f = new InboundFilter({ maxFlows: 64 });
    const s = {};
    expect(judge(f, craftTcp({ src: B, dst: A, srcPort: 40000, dstPort: 8081, seq: 1, flags: SYN }), s, 0, rules)).toBe(0);
    expect(judge(f, craftTcp({ src: B, dst: A, srcPort: 40000, dstPort: 8082, seq: 1, flags: SYN }), s, 0, rules)).toBe(InboundDrop.INBOUND_UNSOLICITED);
    expect(judge(f, craftTcp({ src: B, dst: '10.10.0.3', srcPort: 40000, dstPort: 8081, seq: 1, flags: SYN }), s, 0, rules)).toBe(InboundDrop.INBOUND_UNSOLICITED);
    expect(judge(f, craftTcp({ src: '10.30.0.2', dst: A, srcPort: 40000, dstPort: 8081, seq: 1, flags: SYN }), s, 0, rules)).toBe(InboundDrop.INBOUND_UNSOLICITED);
    expect(judge(f, craftUdp({ src: B, dst: A, srcPort: 40000, dstPort: 8081 }), s, 0, rules)).toBe(InboundDrop.INBOUND_UNSOLICITED);
    // No destination prefixes listed: any of the identity's prefixes, any port.
    expect(judge(f, craftUdp({ src: B6, dst: A6, srcPort: 40000, dstPort: 9999 }), s, 0, rules)).toBe(0);
    expect(judge(f, craftUdp({ src: B6, dst: 'fd00:a::77', srcPort: 1, dstPort: 2 }), s, 0, rules)).toBe(0);
  });

  it('a rule-admitted flow is tracked: the agent\'s answers pass the outbound policy (isAnswerFromAgent), and the flow continues', () => {
    const f = new InboundFilter({ maxFlows: 64 });
    const s = {};
    const synAck = craftTcp({ src: A, dst: B, srcPort: 8081, dstPort: 40000, seq: 5, ack: 2, flags: SYN | ACK });
    const isAnswer = (p: Uint8Array, owner: FlowOwner) => {
      expect(parseIpPacket(p, 0, p.length, info)).toBe(0);
      return f.track.isAnswerFromAgent(p, info, owner, 1);
    };
    expect(isAnswer(synAck, s)).toBe(false);
    expect(judge(f, craftTcp({ src: B, dst: A, srcPort: 40000, dstPort: 8081, seq: 1, flags: SYN }), s, 0, rules)).toBe(0);
    expect(isAnswer(synAck, s)).toBe(true);
    expect(isAnswer(synAck, {})).toBe(false);
    // The agent's answer seeds nothing new and moves the admitted flow on; later packets pass as tracked traffic.
    out(f, synAck, s, 1);
    expect(f.track.size).toBe(1);
    expect(judge(f, craftTcp({ src: B, dst: A, srcPort: 40000, dstPort: 8081, seq: 2, ack: 6, flags: ACK }), s, 2)).toBe(0);
    // An echo request admitted by a rule: the agent's echo reply is an answer.
    const icmpRules = policyWith(`      - sources: [10.20.0.0/24]
        protocols: [icmp]`);
    expect(judge(f, craftIcmp({ src: B, dst: A, type: 8, rest: (3 << 16) | 1 }), s, 3, icmpRules)).toBe(0);
    expect(isAnswer(craftIcmp({ src: A, dst: B, type: 0, rest: (3 << 16) | 1 }), s)).toBe(true);
    expect(isAnswer(craftIcmp({ src: A, dst: B, type: 0, rest: (4 << 16) | 1 }), s)).toBe(false);
  });

  it('config: an inbound destination outside the identity\'s prefixes and pools is an error with file:line:col', () => {
    expect(() => policyWith(`      - sources: [10.20.0.0/24]
        prefixes: [10.99.0.0/24]`)).toThrow(/gw\.yaml:8:20: policy\[0\]\.inbound\[0\]\.prefixes\[0\]: expected a prefix inside this identity's advertise list or a pool, got 10\.99\.0\.0\/24/);
    expect(() => policyWith('      - prefixes: [10.10.0.0/24]')).toThrow(/gw\.yaml:.*sources/);
  });
});

/**
 * A random 5-tuple (v4 or v6; TCP, UDP or ICMP echo) between an agent-side
 * and a network-side host, from small domains so that flows of different
 * sessions and near misses (one field differs) are frequent.
 */
const port = fc.oneof(fc.constantFrom(53, 80, 5000, 40000), fc.integer({ min: 1, max: 65535 }));
const tupleArb = fc.record({
  v6: fc.boolean(),
  proto: fc.constantFrom('tcp', 'udp', 'icmp'),
  a: fc.integer({ min: 1, max: 3 }),
  b: fc.integer({ min: 1, max: 3 }),
  ap: port,
  bp: port,
  syn: fc.boolean(),
});
type Tuple = typeof tupleArb extends fc.Arbitrary<infer T> ? T : never;

function agentPacket(t: Tuple): Uint8Array {
  const src = t.v6 ? `fd00:a::${t.a.toString(16)}` : `10.10.0.${t.a}`;
  const dst = t.v6 ? `fd00:b::${t.b.toString(16)}` : `10.20.0.${t.b}`;
  if (t.proto === 'tcp') return craftTcp({ src, dst, srcPort: t.ap, dstPort: t.bp, seq: 1, flags: t.syn ? SYN : ACK });
  if (t.proto === 'udp') return craftUdp({ src, dst, srcPort: t.ap, dstPort: t.bp });
  return craftIcmp({ src, dst, type: t.v6 ? 128 : 8, rest: (t.ap << 16) | 1 });
}

function networkPacket(t: Tuple): Uint8Array {
  const src = t.v6 ? `fd00:b::${t.b.toString(16)}` : `10.20.0.${t.b}`;
  const dst = t.v6 ? `fd00:a::${t.a.toString(16)}` : `10.10.0.${t.a}`;
  if (t.proto === 'tcp') return craftTcp({ src, dst, srcPort: t.bp, dstPort: t.ap, seq: 1, flags: t.syn ? SYN | ACK : ACK });
  if (t.proto === 'udp') return craftUdp({ src, dst, srcPort: t.bp, dstPort: t.ap });
  return craftIcmp({ src, dst, type: t.v6 ? 129 : 0, rest: (t.ap << 16) | 1 });
}

const sameFlow = (x: Tuple, y: Tuple) => x.v6 === y.v6 && x.proto === y.proto && x.a === y.a && x.b === y.b && x.ap === y.ap && (x.proto === 'icmp' || x.bp === y.bp);

describe('inbound default-deny properties (fast-check)', () => {
  it('return traffic of an agent-opened flow always passes, whatever else the agents opened', () => {
    fc.assert(fc.property(fc.array(tupleArb, { maxLength: 40 }), tupleArb, (others, t) => {
      const f = new InboundFilter({ maxFlows: 64 });
      const s = {};
      let now = 0;
      for (const o of others) out(f, agentPacket(o), s, now++);
      out(f, agentPacket(t), s, now++);
      return judge(f, networkPacket(t), s, now) === 0;
    }), { numRuns: 300 });
  });

  it('under the default (no inbound rules), a network packet passes only as the reverse of a flow its own session opened', () => {
    fc.assert(fc.property(fc.array(tupleArb, { maxLength: 40 }), fc.array(tupleArb, { maxLength: 10 }), tupleArb, (mine, theirs, t) => {
      const f = new InboundFilter({ maxFlows: 64 });
      const s = {};
      const other = {};
      let now = 0;
      for (const o of mine) out(f, agentPacket(o), s, now++);
      for (const o of theirs) out(f, agentPacket(o), other, now++);
      const opened = mine.some((o) => sameFlow(o, t) && !theirs.some((x) => sameFlow(x, t)));
      const passed = judge(f, networkPacket(t), s, now) === 0;
      return passed === opened;
    }), { numRuns: 300 });
  });

  it('random bytes from the network never throw and never pass under the default', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
      const f = new InboundFilter({ maxFlows: 8 });
      return judge(f, bytes, {}, 0) !== 0;
    }), { numRuns: 2000 });
  });
});

// Independent review, 7 December: one table for every identity, so one agent opening flows fast evicted
// every other identity's idle flows (their return traffic then refused as unsolicited).
describe('inbound default-deny: one identity cannot evict the others\' flows (maxFlowsPerOwner)', () => {
  it('an identity at its cap opens a new flow in place of its own least recently active one; another identity\'s idle flow keeps matching', () => {
    const f = new InboundFilter({ maxFlows: 64, maxFlowsPerOwner: 32 });
    out(f, craftUdp({ src: A, dst: B, srcPort: 5000, dstPort: 53 }), 'site-a', 1000);
    // B's agent opens 100 flows from distinct ports, more than the whole table.
    for (let k = 0; k < 100; k++) out(f, craftUdp({ src: '10.11.0.2', dst: B, srcPort: 20000 + k, dstPort: 9 }), 'site-b', 2000 + k);
    expect(f.track.flowsOf('site-b')).toBe(32);
    expect(f.track.ownerCapped).toBe(68);
    expect(f.track.evictions).toBe(0);
    expect(judge(f, craftUdp({ src: B, dst: A, srcPort: 53, dstPort: 5000 }), 'site-a', 3000)).toBe(0);
    // B's newest 32 flows are tracked, its oldest were replaced.
    expect(judge(f, craftUdp({ src: B, dst: '10.11.0.2', srcPort: 9, dstPort: 20099 }), 'site-b', 3000)).toBe(0);
    expect(judge(f, craftUdp({ src: B, dst: '10.11.0.2', srcPort: 9, dstPort: 20000 }), 'site-b', 3000)).toBe(InboundDrop.INBOUND_UNSOLICITED);
    // Activity keeps a flow: the flow just answered (20099) is B's most recently active, so the next new one replaces 20068.
    out(f, craftUdp({ src: '10.11.0.2', dst: B, srcPort: 30000, dstPort: 9 }), 'site-b', 4000);
    expect(judge(f, craftUdp({ src: B, dst: '10.11.0.2', srcPort: 9, dstPort: 20099 }), 'site-b', 4001)).toBe(0);
    expect(judge(f, craftUdp({ src: B, dst: '10.11.0.2', srcPort: 9, dstPort: 20068 }), 'site-b', 4001)).toBe(InboundDrop.INBOUND_UNSOLICITED);
    f.track.forget('site-b');
    expect(f.track.flowsOf('site-b')).toBe(0);
  });

  it('an identity whose flows are not the table\'s oldest still opens new ones at its cap (review of cda1622)', () => {
    const f = new InboundFilter({ maxFlows: 64, maxFlowsPerOwner: 32 });
    out(f, craftTcp({ src: A, dst: B, srcPort: 5000, dstPort: 80, seq: 1, flags: TCP_FLAG.SYN }), 'site-a', 0);
    for (let k = 0; k < 32; k++) out(f, craftUdp({ src: '10.11.0.2', dst: B, srcPort: 20000 + k, dstPort: 9 }), 'site-b', 10 + k);
    out(f, craftUdp({ src: '10.11.0.2', dst: B, srcPort: 40000, dstPort: 9 }), 'site-b', 3_600_000);
    expect(judge(f, craftUdp({ src: B, dst: '10.11.0.2', srcPort: 9, dstPort: 40000 }), 'site-b', 3_600_001)).toBe(0);
  });

  it('without a per-owner cap the table is shared first come (the default is maxFlows; the gateway passes half)', () => {
    const f = new InboundFilter({ maxFlows: 64 });
    out(f, craftUdp({ src: A, dst: B, srcPort: 5000, dstPort: 53 }), 'site-a', 1000);
    for (let k = 0; k < 100; k++) out(f, craftUdp({ src: '10.11.0.2', dst: B, srcPort: 20000 + k, dstPort: 9 }), 'site-b', 2000 + k);
    expect(f.track.evictions).toBeGreaterThan(0);
    expect(judge(f, craftUdp({ src: B, dst: A, srcPort: 53, dstPort: 5000 }), 'site-a', 3000)).toBe(InboundDrop.INBOUND_UNSOLICITED);
  });
});

describe('ConnTrack.shortestTimeoutMs (what the gateway\'s TUN thread may answer for)', () => {
  it('is the shortest state timeout, the closing time after an RST (a tenth of tcpClosingMs, at least 1 s) included', () => {
    expect(new InboundFilter({ maxFlows: 16 }).track.shortestTimeoutMs).toBe(Math.max(1000, DEFAULT_INBOUND_TIMEOUTS.tcpClosingMs / 10));
    expect(new InboundFilter({ maxFlows: 16, timeouts: { tcpClosingMs: 600_000, udpMs: 20_000 } }).track.shortestTimeoutMs).toBe(20_000);
    expect(new InboundFilter({ maxFlows: 16, timeouts: { tcpEstablishedMs: 5_000 } }).track.shortestTimeoutMs).toBe(5_000);
    expect(new InboundFilter({ maxFlows: 16, timeouts: { tcpClosingMs: 4_000 } }).track.shortestTimeoutMs).toBe(1_000);
  });
});
