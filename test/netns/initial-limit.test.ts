/**
 * The gateway's kernel limit on QUIC Initials (src/daemon/initial-limit.ts)
 * on a real kernel, in a namespace of its own: Initials to the port over the
 * rate are dropped before the socket and counted; short-header packets and
 * other ports pass untouched (RFC 9000 §17.2, §17.3 header forms).
 */
import { afterAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { counterPackets, initialLimitRuleset, initialLimitTableName } from '../../src/daemon/initial-limit.js';
import { cleanupAll, createNetns, exec, isRoot, runPrefix, warnIfNotRoot } from './netns.js';

warnIfNotRoot('test/netns/initial-limit.test.ts');

/** Inside the namespace: receivers on port and port+1, then 1000 Initials, 300 short-header packets and 300 Initials to port+1, paced so no socket buffer overflows. */
const SCRIPT = `
const dgram = require('node:dgram');
const port = Number(process.argv[1]);
const got = { initials: 0, short: 0, otherPort: 0 };
const a = dgram.createSocket('udp4'), b = dgram.createSocket('udp4'), tx = dgram.createSocket('udp4');
a.on('message', (m) => { if ((m[0] & 0xf0) === 0xc0) got.initials++; else got.short++; });
b.on('message', () => { got.otherPort++; });
const pkt = (first) => { const p = Buffer.alloc(1200, 0x5c); p[0] = first; p.writeUInt32BE(1, 1); return p; };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
(async () => {
  await new Promise((r) => a.bind(port, '127.0.0.1', r));
  await new Promise((r) => b.bind(port + 1, '127.0.0.1', r));
  const t0 = Date.now();
  for (let i = 0; i < 20; i++) {
    for (let k = 0; k < 50; k++) tx.send(pkt(0xc3), port, '127.0.0.1');
    for (let k = 0; k < 15; k++) { tx.send(pkt(0x41), port, '127.0.0.1'); tx.send(pkt(0xc3), port + 1, '127.0.0.1'); }
    await sleep(10);
  }
  const elapsedS = (Date.now() - t0) / 1000;
  await sleep(200);
  process.stdout.write(JSON.stringify({ ...got, elapsedS }));
  a.close(); b.close(); tx.close();
})();
`;

describe.skipIf(!isRoot())('kernel QUIC Initial limit (nftables raw prerouting, netns)', () => {
  afterAll(() => cleanupAll());

  it('drops Initials to the gateway port over the rate before the socket, counted; short headers and other ports pass', () => {
    const ns = createNetns(runPrefix('il'));
    const port = 4433;
    const rate = 50;
    execFileSync('ip', ['netns', 'exec', ns, 'nft', '-f', '-'], { input: initialLimitRuleset(port, rate), stdio: ['pipe', 'pipe', 'pipe'] });
    // Replacing it (a restarted gateway) works on an existing table too.
    execFileSync('ip', ['netns', 'exec', ns, 'nft', '-f', '-'], { input: initialLimitRuleset(port, rate), stdio: ['pipe', 'pipe', 'pipe'] });
    const r = JSON.parse(exec(ns, process.execPath, '-e', SCRIPT, String(port))) as { initials: number; short: number; otherPort: number; elapsedS: number };
    // The burst plus what the rate refilled while sending; everything else dropped.
    expect(r.initials, JSON.stringify(r)).toBeLessThanOrEqual(rate + Math.ceil(rate * r.elapsedS) + 5);
    expect(r.initials, JSON.stringify(r)).toBeGreaterThanOrEqual(rate - 5);
    expect(r.short).toBe(300);
    expect(r.otherPort).toBe(300);
    const drops = counterPackets(exec(ns, 'nft', '-j', 'list', 'table', 'inet', initialLimitTableName(port)));
    expect(drops).toBe(1000 - r.initials);
  });
});
