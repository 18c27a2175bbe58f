/**
 * Native udpSend on a path that refused UDP GSO (EIO), when the socket
 * buffer fills: an explicit GSO train then goes segment by segment
 * (send_segments in src/native/udp.c), and a full buffer must neither block
 * the caller nor drop segments. The train is kept for the caller's retry,
 * shrunk to the segments not sent yet, as a slot the kernel did not take is
 * on the normal path (review of 985dcba: it used to wait up to 2 × 5 ms per
 * train, then drop the rest and count it as refused by the kernel).
 *
 * The kernel does not return EAGAIN on demand, so the sends run in a child
 * node under the LD_PRELOAD shim of the netns tests
 * (test/netns/fixtures/sendmmsg-faults.c, compiled here): MTUN_SHIM_EAGAIN_AT
 * fails chosen sendmmsg calls, MTUN_SHIM_SEND_MAX makes a call send part of
 * a batch, as the kernel does when the buffer fills mid-batch.
 */
import { spawnSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nativeAddonPath, nativeAvailable } from '../native/addon.js';
import { buildSendmmsgShim } from '../../test/netns/fixtures/sendmmsg-shim.js';


const hasCc = spawnSync('cc', ['--version']).status === 0;
const available = nativeAvailable() && hasCc;
if (!available) console.warn('SKIP src/net/native-udp-faults.test.ts: needs the native addon and a C compiler (cc)');

// Indexes of the native UDP stats (src/native/common.h, US_*).
const TX_DATAGRAMS = 2;
const TX_ERRORS = 5;
const TX_EAGAIN = 6;
const GSO_FAILED = 9;
const GSO_REFUSED = 10;
const STATS = 11;

/**
 * The child: opens a native UDP socket and a receiver, marks the socket's
 * path as refusing GSO (stats[GSO_FAILED] = 1, as an EIO leaves it), and
 * sends the batch described by SLOTS (JSON: [{segs, seg, v6?}]) by calling
 * udpSend until every slot is consumed or `rounds` calls were made. Each
 * segment's payload is its train index and segment index. Prints JSON.
 */
const CHILD = `
import { createRequire } from 'node:module';
import dgram from 'node:dgram';
const require = createRequire(import.meta.url);
const n = require(process.env.ADDON);
const slots = JSON.parse(process.env.SLOTS);
const rx = dgram.createSocket('udp4');
const got = [];
rx.on('message', (m) => got.push([m[0], m[1], m.length]));
await new Promise((r) => rx.bind(0, '127.0.0.1', r));
const port = rx.address().port;
const s = n.udpOpen(4, '127.0.0.1', 0, 1 << 20, 1 << 20, false);
const SLOT = 36;
const bufs = slots.map(() => Buffer.alloc(65536));
const sizes = new Uint32Array(slots.length), segs = new Uint32Array(slots.length);
const addrs = new Uint8Array(slots.length * SLOT);
slots.forEach((t, i) => {
  const seg = t.seg;
  for (let k = 0; k < t.segs; k++) bufs[i].fill(0, k * seg, (k + 1) * seg), bufs[i][k * seg] = i, bufs[i][k * seg + 1] = k;
  sizes[i] = t.segs * seg;
  segs[i] = seg;
  const o = i * SLOT;
  if (t.v6) { addrs[o + 15] = 1; } // ::1 on an IPv4 socket: refused before any send
  else { addrs[o + 10] = 0xff; addrs[o + 11] = 0xff; addrs.set([127, 0, 0, 1], o + 12); }
  addrs[o + 16] = port >> 8; addrs[o + 17] = port & 0xff;
});
const stats = new Float64Array(${STATS});
stats[${GSO_FAILED}] = 1;
const calls = [];
let off = 0;
for (let r = 0; r < 8 && off < slots.length; r++) {
  const sent = n.udpSend(s.fd, 4, bufs.slice(off), sizes.subarray(off), addrs.subarray(off * SLOT), segs.subarray(off), slots.length - off, false, stats);
  calls.push({ sent, sizeLeft: off + sent < slots.length ? sizes[off + sent] : null, head: off + sent < slots.length ? [bufs[off + sent][0], bufs[off + sent][1]] : null });
  off += sent;
}
await new Promise((r) => setTimeout(r, 100));
n.closeFd(s.fd);
rx.close();
console.log(JSON.stringify({ calls, stats: Array.from(stats), got }));
`;

interface ChildResult {
  calls: Array<{ sent: number; sizeLeft: number | null; head: [number, number] | null }>;
  stats: number[];
  got: Array<[number, number, number]>;
}

describe.skipIf(!available)('native udpSend: a GSO train on a path that refused GSO meets a full socket buffer (send_segments)', () => {
  let shim: ReturnType<typeof buildSendmmsgShim> | undefined;
  beforeAll(() => {
    shim = buildSendmmsgShim();
  });
  afterAll(() => shim?.dispose());

  function run(slots: Array<{ segs: number; seg: number; v6?: boolean }>, env: Record<string, string>): ChildResult {
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', CHILD], {
      env: { ...process.env, ...env, LD_PRELOAD: shim!.path, ADDON: nativeAddonPath(), SLOTS: JSON.stringify(slots) },
      encoding: 'utf8',
      timeout: 20_000,
    });
    if (r.status !== 0) throw new Error(`child failed (${r.status}): ${r.stderr}`);
    return JSON.parse(r.stdout.trim().split('\n').pop()!) as ChildResult;
  }

  it('a buffer full before the first segment: nothing sent, the train kept whole for the retry, nothing counted as dropped', () => {
    const r = run([{ segs: 5, seg: 1000 }], { MTUN_SHIM_EAGAIN_AT: '1' });
    expect(r.calls[0]).toEqual({ sent: 0, sizeLeft: 5000, head: [0, 0] });
    expect(r.calls[1]!.sent).toBe(1);
    expect(r.stats[TX_EAGAIN]).toBe(1);
    expect(r.stats[TX_ERRORS]).toBe(0);
    expect(r.stats[TX_DATAGRAMS]).toBe(5);
    expect(r.got.map(([t, k]) => `${t}.${k}`)).toEqual(['0.0', '0.1', '0.2', '0.3', '0.4']);
  });

  it('a buffer that fills part way through a train: the segments not sent stay, moved to the front; the retry sends each exactly once, in order', () => {
    // Three segments per sendmmsg call; the second call finds the buffer full.
    const r = run([{ segs: 8, seg: 1200 }, { segs: 2, seg: 1200 }], { MTUN_SHIM_SEND_MAX: '3', MTUN_SHIM_EAGAIN_AT: '2' });
    expect(r.calls[0]).toEqual({ sent: 0, sizeLeft: 5 * 1200, head: [0, 3] });
    expect(r.calls.reduce((a, c) => a + c.sent, 0)).toBe(2);
    expect(r.stats[TX_EAGAIN]).toBe(1);
    expect(r.stats[TX_ERRORS]).toBe(0);
    expect(r.stats[TX_DATAGRAMS]).toBe(10);
    expect(r.got.map(([t, k]) => `${t}.${k}`)).toEqual(['0.0', '0.1', '0.2', '0.3', '0.4', '0.5', '0.6', '0.7', '1.0', '1.1']);
    expect(r.got.every(([, , len]) => len === 1200)).toBe(true);
  });

  it('a train right after a slot dropped for its address family still goes segment by segment: no second GSO attempt, no refusal counted', () => {
    const r = run([{ segs: 1, seg: 1000, v6: true }, { segs: 4, seg: 1000 }], { MTUN_SHIM_GSO_EIO: '1' });
    expect(r.calls[0]!.sent).toBe(2);
    expect(r.stats[GSO_REFUSED]).toBe(0);
    expect(r.stats[TX_ERRORS]).toBe(1);
    expect(r.got.map(([t, k]) => `${t}.${k}`)).toEqual(['1.0', '1.1', '1.2', '1.3']);
  });
});
