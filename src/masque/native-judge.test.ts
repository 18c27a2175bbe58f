// Differential test of the native CONNECT-IP checks (src/native/judge.c, issue #13 "Checks in the
// data plane"): the TypeScript verdicts (judgeClientIp, judgeGatewayIp) are the oracle, and both
// must give the same verdict on every packet, over at least 100,000 random packets against random
// session state and policies (RFC 9484 §4.6 scope, §4.7.3 routes, §7.2 link-local and TTL, §11
// source check; RFC 9298 §7's destination rule).
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { loadNative, nativeAvailable, type NativeBinding, type NativeJudgeTable } from '../native/addon.js';
import { PacketInfo } from '../packet/ip-packet.js';
import { judgeClientIp, VERDICT_LINK_ICMP6 } from './connect-ip/packet-judge.js';
import { judgeGatewayIp } from './connect-ip/receive-check.js';
import { compileAgentTable, compileGatewayTable } from './native-judge.js';
import { randomAgentCase, randomGatewayCase, randomPacket, Rng } from './testing/judge-fuzz.js';

const PACKETS_PER_CASE = 400;
const STRIDE = 2048;
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

/** Where each packet sits in its slot: after the headroom, as in the TUN read batch. */
const OFFSET = 16;

/** Packs packets into one arena, as the TUN read batch holds them. */
function pack(packets: readonly Uint8Array[]): { arena: Uint8Array; lens: Uint32Array } {
  const arena = new Uint8Array(STRIDE * packets.length);
  const lens = new Uint32Array(packets.length);
  packets.forEach((p, i) => {
    arena.set(p, i * STRIDE + OFFSET);
    lens[i] = p.length;
  });
  return { arena, lens };
}

/** The addon's verdicts on the whole arena in one call. */
function nativeVerdicts(n: NativeBinding, table: NativeJudgeTable, b: { arena: Uint8Array; lens: Uint32Array }, checkLink: boolean): Int32Array {
  const out = new Int32Array(b.lens.length);
  expect(n.judgeBatch(table, b.arena, STRIDE, OFFSET, b.lens, b.lens.length, out, checkLink)).toBe(b.lens.length);
  return out;
}

/** One random session: its native table, and its TypeScript verdict on the packet at arena[off, off+len). */
interface Judged {
  table: NativeJudgeTable;
  pools: Parameters<typeof randomPacket>[1];
  oracle(arena: Uint8Array, off: number, len: number, checkLink: boolean): number;
}

/**
 * `runs` random sessions from `session`, PACKETS_PER_CASE random packets
 * each, both ways of the link check: every native verdict must equal the
 * oracle's. Returns the packets judged and the verdicts seen.
 */
function differential(runs: number, session: (n: NativeBinding, r: Rng) => Judged): { judged: number; seen: number[] } {
  const n = loadNative();
  let judged = 0;
  const seen = new Set<number>();
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 0x7fffffff }), (seed) => {
      const r = new Rng(seed);
      const s = session(n, r);
      const packets = Array.from({ length: PACKETS_PER_CASE }, () => randomPacket(r, s.pools));
      const b = pack(packets);
      for (const checkLink of [true, false]) {
        const got = nativeVerdicts(n, s.table, b, checkLink);
        packets.forEach((p, i) => {
          // Both read the same bytes in the same arena; TypeScript one packet at a time, as a session does.
          const want = s.oracle(b.arena, i * STRIDE + OFFSET, p.length, checkLink);
          seen.add(want);
          if (got[i] !== want) throw new Error(`seed ${seed} packet ${i} (checkLink ${checkLink}): native ${got[i]}, TypeScript ${want}: ${hex(p)}`);
        });
      }
      judged += packets.length;
    }),
    { numRuns: runs },
  );
  return { judged, seen: [...seen].sort((a, b) => a - b) };
}

describe.skipIf(!nativeAvailable())('native CONNECT-IP checks agree with the TypeScript oracle (issue #13)', () => {
  it('gateway: 400,000 random client packets against 1,000 random sessions and policies', () => {
    const { judged, seen } = differential(1000, (n, r) => {
      const c = randomGatewayCase(r);
      // One PacketInfo per session, as a session has: a verdict must not depend on the packet before.
      const info = new PacketInfo();
      return {
        table: n.judgeTable(compileGatewayTable(c.ctx, c.switches, c.policy)),
        pools: c.pools,
        oracle: (arena, off, len, checkLink) => judgeClientIp(c.ctx, c.switches, arena, off, len, info, checkLink),
      };
    });
    expect(judged).toBeGreaterThanOrEqual(400_000);
    // Every verdict the gateway gives was reached (pass, link probe, and each drop), so no check went untested.
    expect(seen).toEqual([VERDICT_LINK_ICMP6, 0, 7, 8, 9, 10, 11, 12, 13]);
  });

  it('agent: 200,000 random packets from the gateway against 500 random sessions', () => {
    const { judged, seen } = differential(500, (n, r) => {
      const c = randomAgentCase(r);
      const info = new PacketInfo();
      const quoted = new PacketInfo();
      return {
        table: n.judgeTable(compileAgentTable(c.rx, c.ipv6Enabled, c.linkLocal)),
        pools: c.pools,
        oracle: (arena, off, len, checkLink) => judgeGatewayIp(c.rx, c.ipv6Enabled, c.linkLocal, arena, off, len, info, quoted, checkLink),
      };
    });
    expect(judged).toBeGreaterThanOrEqual(200_000);
    expect(seen).toEqual([VERDICT_LINK_ICMP6, 0, 7, 8, 15, 16, 17]);
  });

  it('refuses tables that are not well formed, with the reason, and never reads past a slot', () => {
    const n = loadNative();
    const c = randomGatewayCase(new Rng(7));
    const good = compileGatewayTable(c.ctx, c.switches, c.policy);
    expect(() => n.judgeTable(good.subarray(0, good.length - 1))).toThrow(/judge: /);
    expect(() => n.judgeTable(new Uint8Array(8))).toThrow(/judge: truncated header/);
    const bad = Uint8Array.from(good);
    bad[0] ^= 1;
    expect(() => n.judgeTable(bad)).toThrow(/not a judge table/);
    const longer = new Uint8Array(good.length + 4);
    longer.set(good);
    expect(() => n.judgeTable(longer)).toThrow(/bytes after the table/);
    // Every truncation of a valid table is refused, none crashes.
    for (let i = 0; i < good.length; i++) expect(() => n.judgeTable(good.subarray(0, i))).toThrow(TypeError);
    // Entries: neither IPv4 nor IPv6, or a prefix longer than its address.
    const one = compileGatewayTable({ ...c.ctx, grants: [{ requestId: 1, version: 4, address: Uint8Array.of(10, 0, 0, 1), prefixLength: 32 }] }, c.switches, null);
    const grantAt = 16 + 16 + 4;
    expect(() => n.judgeTable(one)).not.toThrow();
    const v5 = Uint8Array.from(one);
    v5[grantAt] = 5;
    expect(() => n.judgeTable(v5)).toThrow(/neither IPv4 nor IPv6/);
    const long = Uint8Array.from(one);
    long[grantAt + 1] = 33;
    expect(() => n.judgeTable(long)).toThrow(/prefix length past the address/);
    const table = n.judgeTable(good);
    const out = new Int32Array(2);
    expect(() => n.judgeBatch(table, new Uint8Array(100), 50, 0, Uint32Array.of(40, 60), 2, out, true)).toThrow(/past its slot/);
    expect(() => n.judgeBatch(table, new Uint8Array(100), 50, 10, Uint32Array.of(40, 41), 2, out, true)).toThrow(/past its slot/);
    expect(() => n.judgeBatch({} as NativeJudgeTable, new Uint8Array(100), 50, 0, Uint32Array.of(40, 40), 2, out, true)).toThrow(/handle from judgeTable/);
  });
});
