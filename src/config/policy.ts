/**
 * Per-identity gateway policy compiled from `policy:` in gateway.yaml: pure,
 * allocation-free decisions "may this identity send this packet" and "may
 * this packet from the network open a flow toward it" (`inbound`), plus
 * which prefixes it may advertise. Default deny both ways.
 */
import { formatPrefix, prefixContains, prefixCovers, type IpPrefix } from '../packet/ip-address.js';
import type { PolicyEntry } from './schema.js';

const P_TCP = 1;
const P_UDP = 2;
const P_ICMP = 4;
const P_ANY = 8;

const IPPROTO_ICMP = 1;
const IPPROTO_TCP = 6;
const IPPROTO_UDP = 17;
const IPPROTO_ICMPV6 = 58;

/** One compiled allow rule: destination prefixes, protocols as a mask of P_* bits, port ranges. */
export interface CompiledRule {
  readonly prefixes: readonly IpPrefix[];
  readonly protoMask: number;
  /** [from0, to0, from1, to1, ...]; empty = all ports. */
  readonly ports: Uint16Array;
}

/** An inbound rule: {@link CompiledRule} over destinations (empty = any), plus the sources it admits. */
interface CompiledInboundRule extends CompiledRule {
  readonly sources: readonly IpPrefix[];
}

/** The fields of a parsed packet the policy reads (src/packet's PacketInfo satisfies this). */
export interface PolicyPacketView {
  readonly ipVersion: number;
  readonly srcOff: number;
  readonly dstOff: number;
  readonly proto: number;
  readonly dstPort: number;
  readonly isFragment: boolean;
  readonly fragOffset: number;
}

/** The compiled rules of one identity. Immutable; safe to share across sessions. */
export class IdentityPolicy {
  /** @internal */
  constructor(
    /** The policy entry's identity pattern that matched, or null for the deny-all policy. */
    readonly pattern: string | null,
    private readonly rules: readonly CompiledRule[],
    private readonly advertisable: readonly IpPrefix[],
    private readonly inbound: readonly CompiledInboundRule[] = [],
  ) {}

  /**
   * Hot path: may a packet to the `addrLen`-byte destination address at
   * `buf[dstOff]`, protocol `proto` (IANA number), destination port
   * `dstPort` pass? `dstPort` is ignored for protocols other than TCP and
   * UDP; pass -1 when the port is unknown (a non-first fragment), which
   * fails any rule that lists ports. Allocates nothing; reads `buf` only.
   */
  allows(proto: number, buf: Uint8Array, dstOff: number, addrLen: number, dstPort: number): boolean {
    const bit = protoBit(proto);
    for (let r = 0; r < this.rules.length; r++) {
      const rule = this.rules[r]!;
      if (serviceMatches(rule, bit, dstPort) && anyContains(rule.prefixes, buf, dstOff, addrLen)) return true;
    }
    return false;
  }

  /**
   * Hot path (issue #12 item 8): may the parsed packet `p` from the gateway's
   * network open a flow toward this identity? True when an `inbound` rule
   * admits its source, destination (the rule's prefixes, or any when it
   * lists none), protocol and destination port. Non-first fragments fail
   * rules that list ports. Allocates nothing; reads `buf` only.
   */
  allowsInbound(buf: Uint8Array, p: PolicyPacketView): boolean {
    const bit = protoBit(p.proto);
    const port = p.isFragment && p.fragOffset > 0 ? -1 : p.dstPort;
    const addrLen = p.ipVersion === 4 ? 4 : 16;
    for (let r = 0; r < this.inbound.length; r++) {
      const rule = this.inbound[r]!;
      if (!serviceMatches(rule, bit, port) || !anyContains(rule.sources, buf, p.srcOff, addrLen)) continue;
      if (rule.prefixes.length === 0 || anyContains(rule.prefixes, buf, p.dstOff, addrLen)) return true;
    }
    return false;
  }

  /** {@link allows} for a parsed packet (non-first fragments count as port unknown). */
  allowsPacket(buf: Uint8Array, p: PolicyPacketView): boolean {
    const port = p.isFragment && p.fragOffset > 0 ? -1 : p.dstPort;
    return this.allows(p.proto, buf, p.dstOff, p.ipVersion === 4 ? 4 : 16, port);
  }

  /** The allow rules as compiled (what {@link allows} walks), for the native checks' table (masque/native-judge.ts). */
  allowRules(): readonly CompiledRule[] {
    return this.rules;
  }

  /** The prefixes this identity may advertise (ROUTE_ADVERTISEMENT); advertised ranges are clipped to them. */
  advertisablePrefixes(): readonly IpPrefix[] {
    return this.advertisable;
  }

  /** May this identity advertise `prefix` (ROUTE_ADVERTISEMENT)? True when an allowed advertise prefix covers it. */
  mayAdvertise(prefix: IpPrefix): boolean {
    for (const a of this.advertisable) if (prefixCovers(a, prefix)) return true;
    return false;
  }

  /** Destination prefixes this identity may reach (any protocol or port), e.g. to filter the routes advertised to it. */
  reachablePrefixes(): IpPrefix[] {
    const out: IpPrefix[] = [];
    const seen = new Set<string>();
    for (const r of this.rules) for (const p of r.prefixes) {
      const key = formatPrefix(p);
      if (!seen.has(key)) { seen.add(key); out.push(p); }
    }
    return out;
  }
}

/** All identities' policies. Lookup is per session (string work), never per packet. */
export class CompiledPolicy {
  private readonly exact = new Map<string, IdentityPolicy>();
  private readonly wildcards: { prefix: string; policy: IdentityPolicy }[] = [];
  private readonly denyAll = new IdentityPolicy(null, [], []);

  /** @internal */
  constructor(entries: readonly PolicyEntry[]) {
    for (const e of entries) {
      const inbound = e.inbound.map((r) => ({ ...compileRule({ ...r, prefixes: r.prefixes ?? [] }), sources: r.sources }));
      const policy = new IdentityPolicy(e.identity, e.allow.map(compileRule), e.advertise, inbound);
      if (e.identity.endsWith('*')) this.wildcards.push({ prefix: e.identity.slice(0, -1), policy });
      else if (!this.exact.has(e.identity)) this.exact.set(e.identity, policy);
    }
    // Longest wildcard prefix first (stable: file order among equals).
    this.wildcards.sort((a, b) => b.prefix.length - a.prefix.length);
  }

  /**
   * The policy of an authenticated identity: the entry naming it exactly
   * (the first one in the file), else the longest matching `prefix*` entry,
   * else a policy that denies everything.
   */
  forIdentity(identity: string): IdentityPolicy {
    const e = this.exact.get(identity);
    if (e !== undefined) return e;
    for (const w of this.wildcards) if (identity.startsWith(w.prefix)) return w.policy;
    return this.denyAll;
  }
}

/** Compiles `policy:` entries (from loadGatewayConfig). */
export function compilePolicy(entries: readonly PolicyEntry[]): CompiledPolicy {
  return new CompiledPolicy(entries);
}

function compileRule(r: Pick<PolicyEntry['allow'][number], 'prefixes' | 'protocols' | 'ports'>): CompiledRule {
  let mask = 0;
  for (const p of r.protocols) mask |= p === 'tcp' ? P_TCP : p === 'udp' ? P_UDP : p === 'icmp' ? P_ICMP : P_ANY;
  const ports = new Uint16Array((r.ports?.length ?? 0) * 2);
  r.ports?.forEach((p, i) => { ports[i * 2] = p.from; ports[i * 2 + 1] = p.to; });
  return { prefixes: r.prefixes, protoMask: mask, ports };
}

function protoBit(proto: number): number {
  return proto === IPPROTO_TCP ? P_TCP : proto === IPPROTO_UDP ? P_UDP : proto === IPPROTO_ICMP || proto === IPPROTO_ICMPV6 ? P_ICMP : 0;
}

/** Does the rule admit the protocol (its {@link protoBit}) and, for TCP and UDP, the destination port (-1 = unknown)? */
function serviceMatches(rule: CompiledRule, bit: number, dstPort: number): boolean {
  if ((rule.protoMask & P_ANY) === 0 && (rule.protoMask & bit) === 0) return false;
  return !((bit === P_TCP || bit === P_UDP) && rule.ports.length > 0 && !portIn(rule.ports, dstPort));
}

function anyContains(ps: readonly IpPrefix[], buf: Uint8Array, off: number, len: number): boolean {
  for (let i = 0; i < ps.length; i++) if (containsAt(ps[i]!, buf, off, len)) return true;
  return false;
}

function portIn(ports: Uint16Array, port: number): boolean {
  for (let i = 0; i < ports.length; i += 2) if (port >= ports[i]! && port <= ports[i + 1]!) return true;
  return false;
}

/** prefixContains over `buf[off, off+len)` without creating a view; false when `len` is not the prefix's address length. */
function containsAt(p: IpPrefix, buf: Uint8Array, off: number, len: number): boolean {
  return len === p.address.length && prefixContains(p.address, p.prefixLength, buf, off);
}
