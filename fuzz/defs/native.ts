/**
 * The CONNECT-IP checks in C (src/native/judge.c, issue #13) against their
 * TypeScript oracle: every input is one IP packet, judged by a gateway table
 * and an agent table (both chosen from a fixed set of random sessions) by
 * the addon and by `judgeClientIp` / `judgeGatewayIp`, with and without the
 * link-probe check; a different verdict, or any crash of the addon, fails.
 * The packet sits at the TUN batch's offset 16 in a slot, as the data plane
 * will hand it over.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import {
  compileAgentTable, compileGatewayTable, judgeClientIp, judgeGatewayIp, JudgeRng, loadNative, PacketInfo,
  randomAgentCase, randomGatewayCase, randomPacket, type AgentCase, type GatewayCase, type NativeBinding, type NativeJudgeTable,
} from '../targets.js';
import { InvariantError, never, packetSeeds, tokens, type FuzzTarget } from './common.js';

const CASES = 64;
const OFFSET = 16;
const SLOT = OFFSET + 2048;

// Compiled by `npm run fuzz` into build/fuzz/, where the addon's own path lookup (two levels up) misses the repository's build/.
const fromBuild = fileURLToPath(new URL('../../../../build/Release/mtun_native.node', import.meta.url));
if (process.env['MTUN_NATIVE_ADDON'] === undefined && import.meta.url.includes('/build/fuzz/') && existsSync(fromBuild)) {
  process.env['MTUN_NATIVE_ADDON'] = fromBuild;
}

interface State {
  n: NativeBinding;
  gw: { c: GatewayCase; t: NativeJudgeTable }[];
  ag: { c: AgentCase; t: NativeJudgeTable }[];
  seeds: Uint8Array[];
}
let state: State | null = null;

/** The addon, the sessions and their tables (built on first use: loading the addon is the first thing a run does). */
function setup(): State {
  if (state !== null) return state;
  const n = loadNative();
  const r = new JudgeRng(2026);
  const gw = Array.from({ length: CASES }, () => {
    const c = randomGatewayCase(r);
    return { c, t: n.judgeTable(compileGatewayTable(c.ctx, c.switches, c.policy)) };
  });
  const ag = Array.from({ length: CASES }, () => {
    const c = randomAgentCase(r);
    return { c, t: n.judgeTable(compileAgentTable(c.rx, c.ipv6Enabled, c.linkLocal)) };
  });
  // Seeds aimed at the sessions (addresses from their own prefixes), plus the generic packet seeds.
  const seeds = [...packetSeeds(), ...Array.from({ length: 256 }, (_, i) => Uint8Array.from(randomPacket(r, (i % 2 === 0 ? gw[i % CASES]!.c : ag[i % CASES]!.c).pools)))];
  return (state = { n, gw, ag, seeds });
}

const slot = new Uint8Array(SLOT);
const lens = new Uint32Array(1);
const out = new Int32Array(1);
const info = new PacketInfo();
const quoted = new PacketInfo();

export const nativeJudge: FuzzTarget = {
  name: 'native-judge',
  covers: 'native/judge.c mj_parse + mj_judge (gateway and agent tables) against masque/connect-ip judgeClientIp / judgeGatewayIp',
  maxLen: 2048,
  seeds: () => setup().seeds,
  dict: tokens([[0x45], [0x46], [0x4f], [0x60], [6], [17], [1], [58], [0], [43], [44], [51], [60], [0xfe, 0x80], [0xff, 0x02], [169, 254], [127], [0, 0, 0xff, 0xff], [3, 0], [11, 0], [128], [129]]),
  typed: never,
  run(b, ctx) {
    const s = setup();
    slot.fill(0);
    slot.set(b, OFFSET);
    lens[0] = b.length;
    const g = s.gw[ctx.rng.below(CASES)]!;
    const a = s.ag[ctx.rng.below(CASES)]!;
    let label = '';
    for (const checkLink of [true, false]) {
      s.n.judgeBatch(g.t, slot, SLOT, OFFSET, lens, 1, out, checkLink);
      const want = judgeClientIp(g.c.ctx, g.c.switches, slot, OFFSET, b.length, info, checkLink);
      if (out[0] !== want) throw new InvariantError(`gateway verdict: native ${out[0]}, TypeScript ${want} (checkLink ${checkLink})`);
      s.n.judgeBatch(a.t, slot, SLOT, OFFSET, lens, 1, out, checkLink);
      const wantA = judgeGatewayIp(a.c.rx, a.c.ipv6Enabled, a.c.linkLocal, slot, OFFSET, b.length, info, quoted, checkLink);
      if (out[0] !== wantA) throw new InvariantError(`agent verdict: native ${out[0]}, TypeScript ${wantA} (checkLink ${checkLink})`);
      if (checkLink) label = `ok:g${want}/a${wantA}`;
    }
    ctx.note(label);
  },
};
