/**
 * Tables for the native CONNECT-IP checks (`src/native/judge.c`, issue #13):
 * what a session's TypeScript verdict reads (`judgeClientIp` at the
 * gateway, `judgeGatewayIp` at the agent), compiled into the bytes the
 * addon loads with `judgeTable`. A table is immutable; when a session's
 * grants, routes or policy change, a new one is compiled and replaces the
 * old one whole.
 *
 * Layout (little-endian): u32 magic "MJT1", u32 kind, u32 flags, u32 scope
 * protocol (0xffffffff = any), 16 bytes link-local address; six lists
 * (grants, owned, targets, our ranges, peer ranges, own addresses), each a
 * u32 count and 36-byte records {version, prefix length, protocol, 0, a[16],
 * b[16]}; a u32 rule count, each rule u32 protocol mask, a list of
 * prefixes, u32 port-pair count and u16 from/to pairs.
 */
import type { CompiledRule, IdentityPolicy } from '../config/policy.js';
import type { IpPrefix } from '../packet/ip-address.js';
import type { AddressEntry } from './connect-ip/address-entry.js';
import type { ClientRoute } from './connect-ip/client-routes.js';
import type { ClientIpSwitches, ClientPacketContext } from './connect-ip/packet-judge.js';
import type { ReceiveContext } from './connect-ip/receive-check.js';
import type { IpAddressRange } from './connect-ip/route-advertisement.js';

/** Table kinds (judge.h MJ_KIND_*). */
export const JUDGE_KIND_GATEWAY = 1;
export const JUDGE_KIND_AGENT = 2;

/** Flag bits (judge.h MJ_F_*). */
const F_IPV6 = 0x01;
const F_DECREMENT = 0x02;
const F_SCOPE_ANY = 0x04;
const F_POLICY = 0x08;
const F_ALLOW_LOOPBACK = 0x10;
const F_ALLOW_LINKLOCAL = 0x20;
const F_ALLOW_MULTICAST = 0x40;
const F_ALLOW_BROADCAST = 0x80;
const F_ALLOW_OWN = 0x100;
const F_ALLOW_METADATA = 0x200;

const MAGIC = 0x31544a4d;
const REC = 36;

/** One record of a list (judge.h struct mj_rec). */
interface Rec {
  version: number;
  plen: number;
  proto: number;
  a: Uint8Array;
  b?: Uint8Array;
}

const prefixRec = (p: IpPrefix): Rec => ({ version: p.version, plen: p.prefixLength, proto: 0, a: p.address });
const grantRec = (e: AddressEntry): Rec => ({ version: e.version, plen: e.prefixLength, proto: 0, a: e.address });
const ownedRec = (r: ClientRoute): Rec => ({ version: r.prefix.version, plen: r.prefix.prefixLength, proto: r.ipProtocol, a: r.prefix.address });
const rangeRec = (r: IpAddressRange): Rec => ({ version: r.version, plen: 0, proto: r.ipProtocol, a: r.start, b: r.end });
const addressRec = (a: Uint8Array): Rec => ({ version: a.length === 4 ? 4 : 6, plen: 0, proto: 0, a });

/** Writes the table; `rules` null means no policy applies. */
function encode(kind: number, flags: number, scopeProto: number | null, link: Uint8Array, lists: readonly (readonly Rec[])[], rules: readonly CompiledRule[] | null): Uint8Array {
  let size = 16 + 16 + 4;
  for (const l of lists) size += 4 + l.length * REC;
  for (const r of rules ?? []) size += 4 + 4 + r.prefixes.length * REC + 4 + r.ports.length * 2;
  const out = new Uint8Array(size);
  const dv = new DataView(out.buffer);
  let o = 0;
  const u32 = (v: number) => {
    dv.setUint32(o, v >>> 0, true);
    o += 4;
  };
  const list = (l: readonly Rec[]) => {
    u32(l.length);
    for (const r of l) {
      out[o] = r.version;
      out[o + 1] = r.plen;
      out[o + 2] = r.proto;
      out.set(r.a.subarray(0, 16), o + 4);
      if (r.b) out.set(r.b.subarray(0, 16), o + 20);
      o += REC;
    }
  };
  u32(MAGIC);
  u32(kind);
  u32(flags | (rules !== null ? F_POLICY : 0));
  u32(scopeProto === null ? 0xffffffff : scopeProto);
  out.set(link.subarray(0, 16), o);
  o += 16;
  for (const l of lists) list(l);
  u32(rules?.length ?? 0);
  for (const r of rules ?? []) {
    u32(r.protoMask);
    list(r.prefixes.map(prefixRec));
    u32(r.ports.length / 2);
    for (let i = 0; i < r.ports.length; i++) {
      dv.setUint16(o, r.ports[i]!, true);
      o += 2;
    }
  }
  return out;
}

/**
 * The gateway's table for one CONNECT-IP session: what `judgeClientIp`
 * reads from `ctx` and `s`, with `policy` the identity's compiled policy
 * (its allow rules; the connection-table answers that the session's policy
 * hook also admits stay in TypeScript) or null when none applies.
 */
export function compileGatewayTable(ctx: Omit<ClientPacketContext, 'policy'>, s: ClientIpSwitches, policy: IdentityPolicy | null): Uint8Array {
  const t = ctx.scope.target;
  const a = ctx.allow ?? {};
  let flags = (s.ipv6Enabled ? F_IPV6 : 0) | (s.decrementTtl ? F_DECREMENT : 0) | (t.kind === 'any' ? F_SCOPE_ANY : 0);
  flags |= (a.loopback ? F_ALLOW_LOOPBACK : 0) | (a.linkLocal ? F_ALLOW_LINKLOCAL : 0) | (a.multicast ? F_ALLOW_MULTICAST : 0);
  flags |= (a.broadcast ? F_ALLOW_BROADCAST : 0) | (a.ownAddresses ? F_ALLOW_OWN : 0) | (a.metadata ? F_ALLOW_METADATA : 0);
  const targets = t.kind === 'prefix' ? [prefixRec(t.prefix)] : t.kind === 'hostname' ? ctx.resolvedTarget.map(prefixRec) : [];
  const lists = [ctx.grants.map(grantRec), ctx.owned.map(ownedRec), targets, ctx.ourRanges.map(rangeRec), [], ctx.ownAddresses.map(addressRec)];
  return encode(JUDGE_KIND_GATEWAY, flags, ctx.scope.ipProtocol, s.linkLocal, lists, policy ? policy.allowRules() : null);
}

/** The agent's table for one CONNECT-IP session: what `judgeGatewayIp` reads. */
export function compileAgentTable(c: ReceiveContext, ipv6Enabled: boolean, linkLocal: Uint8Array): Uint8Array {
  const lists = [c.assigned.map(grantRec), [], [], c.ourRanges.map(rangeRec), c.peerRanges.map(rangeRec), []];
  return encode(JUDGE_KIND_AGENT, ipv6Enabled ? F_IPV6 : 0, null, linkLocal, lists, null);
}
