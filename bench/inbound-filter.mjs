// Cost of the gateway's inbound default-deny (issue #12 item 8) per packet,
// side by side in one run, rounds interleaved (A B C A B C …):
//   A  parseIpPacket alone (the parse the gateway's flow tracker needs anyway),
//   B  InboundFilter.judge on return traffic of 1,000 tracked agent-opened flows (hit),
//   C  InboundFilter.judge on unsolicited packets (miss, then the identity's rules).
// Reports ns/packet, the ratios B/A and C/A, and the heap growth over each
// timed loop (about 0 bytes/packet = no allocation per packet).
// Run: npx tsc -p tsconfig.json && node --expose-gc bench/inbound-filter.mjs [packets-per-round]
import { InboundFilter } from '../dist/masque/inbound/inbound-filter.js';
import { craftTcp, craftUdp } from '../dist/packet/craft.js';
import { PacketInfo, parseIpPacket, TCP_FLAG } from '../dist/packet/ip-packet.js';
import { compilePolicy } from '../dist/config/policy.js';
import { parseGatewayConfig } from '../dist/config/load.js';

const FLOWS = 1000;
const N = Number(process.argv[2] ?? 2_000_000);
const ROUNDS = 5;
if (typeof globalThis.gc !== 'function') {
  console.error('run with node --expose-gc');
  process.exit(2);
}

const host = (net, i) => `10.${net}.${(i >> 8) & 255}.${i & 255 || 1}`;
const rules = compilePolicy(parseGatewayConfig(`tls: {cert: c, key: k, ca: a}
pools: {ipv4: 10.200.0.0/24}
policy:
  - identity: a
    advertise: [10.10.0.0/16]
    inbound:
      - {sources: [10.99.0.0/16], protocols: [tcp], ports: [22]}
      - {sources: [10.98.0.0/16], protocols: [udp], ports: [53]}
`, 'bench.yaml').policy).forIdentity('a');

const owner = {};
const filter = new InboundFilter({ maxFlows: 65_536 });
const info = new PacketInfo();
const replies = [];
const unsolicited = [];
for (let i = 0; i < FLOWS; i++) {
  const a = host(10, i + 1), b = host(20, i + 1), port = 10_000 + i;
  const out = i % 2 === 0
    ? craftTcp({ src: a, dst: b, srcPort: port, dstPort: 443, seq: 1, flags: TCP_FLAG.SYN })
    : craftUdp({ src: a, dst: b, srcPort: port, dstPort: 53, payload: new Uint8Array(40) });
  parseIpPacket(out, 0, out.length, info);
  filter.track.seed(out, info, owner, 0);
  replies.push(i % 2 === 0
    ? craftTcp({ src: b, dst: a, srcPort: 443, dstPort: port, seq: 9, ack: 2, flags: TCP_FLAG.ACK, payload: new Uint8Array(1200) })
    : craftUdp({ src: b, dst: a, srcPort: 53, dstPort: port, payload: new Uint8Array(200) }));
  unsolicited.push(craftUdp({ src: b, dst: a, srcPort: 40_000, dstPort: 9999 - (i % 100), payload: new Uint8Array(100) }));
}

let sink = 0;
const variants = {
  'A parse only': (p) => { sink += parseIpPacket(p, 0, p.length, info); },
  'B judge, return traffic': (p) => { sink += filter.judge(p, 0, p.length, owner, rules, 1); },
  'C judge, unsolicited': (p) => { sink += filter.judge(p, 0, p.length, owner, rules, 1); },
};
const input = { 'A parse only': replies, 'B judge, return traffic': replies, 'C judge, unsolicited': unsolicited };
const nsPer = Object.fromEntries(Object.keys(variants).map((k) => [k, []]));
const heapPer = Object.fromEntries(Object.keys(variants).map((k) => [k, 0]));

for (let r = -1; r < ROUNDS; r++) { // round -1 warms up
  for (const [name, fn] of Object.entries(variants)) {
    const pkts = input[name];
    globalThis.gc();
    const h0 = process.memoryUsage().heapUsed;
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < N; i++) fn(pkts[i % FLOWS]);
    const ns = Number(process.hrtime.bigint() - t0) / N;
    const grown = process.memoryUsage().heapUsed - h0;
    if (r >= 0) {
      nsPer[name].push(ns);
      heapPer[name] = Math.max(heapPer[name], grown / N);
    }
  }
}
const median = (xs) => [...xs].sort((x, y) => x - y)[xs.length >> 1];
const a = median(nsPer['A parse only']);
for (const [name, xs] of Object.entries(nsPer)) {
  const m = median(xs);
  console.log(`${name.padEnd(26)} ${m.toFixed(1).padStart(7)} ns/packet  ×${(m / a).toFixed(2)} of A  heap growth ≤ ${heapPer[name].toFixed(3)} bytes/packet`);
}
console.log(`flows tracked ${filter.track.size}, evictions ${filter.track.evictions}; checksum ${sink}`);
