/**
 * The agent's TUN → UDP thread (src/native/dataplane.c, src/daemon/tun-thread.ts)
 * on a real TUN in a namespace and a real QUIC connection over loopback:
 *
 *   netns <prefix>N: python3 sends UDP to 10.79.0.2 ─▶ route via the TUN ══fd══▶ the thread
 *     ─▶ HTTP Datagram (quarter stream ID, context 0) on the client connection ─▶ UDP 127.0.0.1
 *     ─▶ the server connection's DATAGRAM queue (this test reads it)
 *
 * Checks that the thread sends plain packets itself, in order, each once;
 * hands SYNs (and the kernel's link-local chatter) to the event loop; puts
 * every packet it read into the ring exactly once, in order; stops reading
 * when the ring is full (the TUN queue holds or drops the rest, never the
 * ring) and goes on once it is drained; and, detached, sends nothing itself.
 *
 * The receive leg (attached with a receive table): the server connection
 * sends DATAGRAMs; the thread reads the client socket, writes the session's
 * plain packets into the TUN (a UDP listener in the namespace sees them),
 * and holds on the first DATAGRAM for the event loop's path, which gets
 * that one and every one after it, in order, through HTTP/3's queue.
 */
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { openTun, type NativeTun } from '../../src/tun/native-tun.js';
import { TUN_THREAD_H3, TUN_THREAD_IN, TUN_THREAD_JS, TUN_THREAD_SENT, TunThread, TunThreadStat } from '../../src/daemon/tun-thread.js';
import { compileAgentTable } from '../../src/masque/native-judge.js';
import { loadNative } from '../../src/native/addon.js';
import type { QuicEndpoint } from '../../src/quic/endpoint.js';
import { ngtcp2Engine } from '../../src/quic/ngtcp2.js';
import { createSocket } from 'node:dgram';
import type { QuicConnection } from '../../src/quic/connection.js';
import { Harness, nativeUdpAvailable, waitFor } from '../sim/quic-harness.js';
import { cleanupAll, createNetns, execAsync, isRoot, runPrefix, spawnSide, warnIfNotRoot } from './netns.js';
import { ipUdp } from './ip-packets.js';

warnIfNotRoot('test/netns/tun-thread.test.ts');

const nativeOk = await nativeUdpAvailable('tun-thread');

const HEADROOM = 16;
/** Quarter stream ID 1 (request stream 4) and context ID 0. */
const PREFIX = Uint8Array.of(0x01, 0x00);

/** python3 in `ns`: `count` UDP datagrams to 10.79.0.2:9999, payload "pkt-<n>" (n from `from`). */
function sendUdp(ns: string, from: number, count: number): Promise<unknown> {
  const py = `import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\nfor i in range(${from},${from + count}):\n  s.sendto(b'pkt-%06d' % i,('10.79.0.2',9999))\n`;
  return execAsync(ns, 'python3', ['-c', py]);
}

/** The UDP payload of an IPv4 packet at b[off, off + len) as text, or null. */
function udpText(b: Uint8Array, off: number, len: number): string | null {
  if (len < 28 || b[off]! >> 4 !== 4 || b[off + 9] !== 17) return null;
  const ihl = (b[off]! & 0x0f) * 4;
  return Buffer.from(b.subarray(off + ihl + 8, off + len)).toString('latin1');
}

/** The MSS option of the TCP header at b[t], or -1. */
function tcpMss(b: Uint8Array, t: number): number {
  const end = t + (b[t + 12]! >> 4) * 4;
  for (let i = t + 20; i < end;) {
    if (b[i] === 0) break;
    if (b[i] === 1) { i++; continue; }
    if (b[i] === 2 && b[i + 1] === 4) return (b[i + 2]! << 8) | b[i + 3]!;
    i += Math.max(2, b[i + 1]!);
  }
  return -1;
}

interface Rig {
  tun: NativeTun;
  ns: string;
  ep: QuicEndpoint;
  client: QuicConnection;
  /** UDP payloads of the datagrams the server connection received, in order; bad prefixes counted. */
  atServer: string[];
  /** The MSS option of each TCP SYN the server connection received. */
  synMss: number[];
  badPrefix: number;
  h: Harness;
}

let h = new Harness('native');
afterEach(() => {
  h.cleanup();
  h = new Harness('native');
});

describe.skipIf(!isRoot() || !nativeOk)('the agent\'s TUN thread', () => {
  const prefix = runPrefix('tt');
  afterAll(() => cleanupAll());

  /** A TUN in a fresh namespace, a server and a connected client. */
  async function rig(offload: boolean): Promise<Rig> {
    const ns = createNetns(prefix);
    const tun = await openTun({ name: `${prefix}t${offload ? 'o' : 'p'}`, mtu: 1400, addresses: ['10.79.0.1/24'], netns: ns, offload });
    const { port } = await h.server();
    // CoDel off: these tests count every datagram at the server (a slow CI box must not turn queueing into drops).
    const ep = await h.client({}, { dgramQueueDelay: null });
    const client = ep.connect('127.0.0.1', port, 'localhost');
    await client.whenEstablished();
    await waitFor(() => h.accepted.length === 1, 2000, 'the server connection');
    const r: Rig = { tun, ns, ep, client, atServer: [], synMss: [], badPrefix: 0, h };
    const buf = new Uint8Array(2000);
    h.accepted[0]!.onEvent = (conn, ev) => {
      if (ev !== 'readable') return;
      let n: number | null;
      while ((n = conn.dgramRecv(buf)) !== null) {
        if (buf[0] !== PREFIX[0] || buf[1] !== PREFIX[1]) r.badPrefix++;
        else if (buf[2]! >> 4 === 4 && buf[2 + 9] === 6 && (buf[2 + 20 + 13]! & 0x02) !== 0) r.synMss.push(tcpMss(buf, 2 + 20));
        else r.atServer.push(udpText(buf, 2, n - 2) ?? '?');
      }
    };
    return r;
  }

  for (const offload of [false, true]) {
    it(`sends plain packets itself, in order and once each, SYNs with their MSS clamped; the ring sees every packet once (${offload ? 'offload' : 'plain'} TUN)`, async () => {
      const r = await rig(offload);
      const ring: { kind: number; text: string | null; syn: boolean }[] = [];
      let thread: TunThread | null = null;
      const handler = (b: Buffer, off: number, len: number, kind: number) => {
        const syn = len >= 40 && b[off]! >> 4 === 4 && b[off + 9] === 6 && (b[off + 20 + 13]! & 0x02) !== 0;
        ring.push({ kind, text: udpText(b, off, len), syn });
      };
      thread = TunThread.open(r.tun, h.sockets[1]!, HEADROOM, () => thread?.drain(handler, 0));
      expect(thread).not.toBeNull();
      try {
        thread!.attach(r.client.q.nativeHandle(), PREFIX, true, null, 1300);
        await sendUdp(r.ns, 0, 300);
        // A SYN, its MSS (1360 for the TUN's MTU of 1400) clamped to 1260 for an MTU of 1300 (nobody answers; the kernel retries it).
        await execAsync(r.ns, 'python3', ['-c', 'import socket\ns=socket.socket()\ns.settimeout(0.3)\ntry: s.connect(("10.79.0.2",80))\nexcept Exception: pass\n']).catch(() => undefined);
        await waitFor(() => r.atServer.length >= 300, 10_000, 'the 300 datagrams at the server');
        await waitFor(() => ring.filter((e) => e.text !== null).length >= 300 && ring.some((e) => e.syn), 5_000, 'the ring');
        await waitFor(() => r.synMss.length > 0, 5_000, 'the SYN at the server');
        const want = Array.from({ length: 300 }, (_, i) => `pkt-${String(i).padStart(6, '0')}`);
        expect(r.badPrefix).toBe(0);
        expect(r.atServer).toEqual(want);
        expect(ring.filter((e) => e.text !== null).map((e) => e.text)).toEqual(want);
        expect(ring.filter((e) => e.text !== null).every((e) => e.kind === TUN_THREAD_SENT)).toBe(true);
        expect(ring.filter((e) => e.syn).every((e) => e.kind === TUN_THREAD_SENT)).toBe(true);
        expect(new Set(r.synMss)).toEqual(new Set([1260]));
        const st = thread!.stats();
        expect(st[TunThreadStat.QUEUED]).toBe(300 + ring.filter((e) => e.syn).length);
        expect(st[TunThreadStat.READ]).toBe(ring.length);
        expect(st[TunThreadStat.TO_JS]).toBe(ring.length - 300 - ring.filter((e) => e.syn).length);
        expect(st[TunThreadStat.UDP_DATAGRAMS]).toBeGreaterThan(0);
        expect(st[TunThreadStat.UDP_DROPPED]).toBe(0);
      } finally {
        thread!.close();
        r.tun.close();
      }
    }, 30_000);
  }

  it('stops reading when the ring is full and reads on once it is drained; nothing in the ring is lost or repeated', async () => {
    const r = await rig(false);
    let signals = 0;
    const thread = TunThread.open(r.tun, h.sockets[1]!, HEADROOM, () => signals++)!;
    const texts: string[] = [];
    const handler = (b: Buffer, off: number, len: number) => {
      const t = udpText(b, off, len);
      if (t !== null) texts.push(t);
    };
    try {
      thread.attach(r.client.q.nativeHandle(), PREFIX, true);
      // The ring (2,048 slots) filled in bursts of 256, which the TUN queue (500) always holds, not drained meanwhile.
      let sent = 0;
      for (let round = 0; round < 8; round++) {
        await sendUdp(r.ns, sent, 256);
        sent += 256;
        await waitFor(() => thread.stats()[TunThreadStat.READ]! >= sent, 5_000, `the thread to read ${sent} packets`).catch((e) => {
          throw new Error(`${(e as Error).message}: stats ${[...thread.stats()].join(',')}`);
        });
      }
      await waitFor(() => thread.stats()[TunThreadStat.RING_FULL]! > 0, 2_000, 'the thread to stop on a full ring');
      expect(signals).toBeGreaterThan(0);
      // 256 more wait in the TUN queue, not in the ring.
      await sendUdp(r.ns, sent, 256);
      sent += 256;
      await new Promise((res) => setTimeout(res, 100));
      expect(thread.stats()[TunThreadStat.READ]).toBe(2048); // the ring, no more
      expect(thread.drain(handler, 0)).toBe(2048);
      // Released: the thread reads what the TUN queue kept.
      await waitFor(() => thread.stats()[TunThreadStat.READ]! >= sent, 5_000, "reading again after the drain");
      thread.drain(handler, 0);
      expect(texts.map((t) => Number(t.slice(4)))).toEqual(Array.from({ length: sent }, (_, i) => i));
    } finally {
      thread.close();
      r.tun.close();
    }
  }, 30_000);

  it('once detached, sends nothing itself and hands every packet to the event loop, in order', async () => {
    const r = await rig(false);
    const ring: { kind: number; text: string | null }[] = [];
    let thread: TunThread | null = null;
    thread = TunThread.open(r.tun, h.sockets[1]!, HEADROOM, () => thread?.drain((b, off, len, kind) => ring.push({ kind, text: udpText(b, off, len) }), 0));
    try {
      thread!.attach(r.client.q.nativeHandle(), PREFIX, true);
      await sendUdp(r.ns, 0, 10);
      await waitFor(() => r.atServer.length === 10, 5_000, 'the attached packets at the server');
      thread!.detach();
      await sendUdp(r.ns, 10, 20);
      await waitFor(() => ring.filter((e) => e.text !== null).length === 30, 5_000, 'all 30 in the ring');
      const udp = ring.filter((e) => e.text !== null);
      expect(udp.map((e) => e.text)).toEqual(Array.from({ length: 30 }, (_, i) => `pkt-${String(i).padStart(6, '0')}`));
      expect(udp.slice(0, 10).every((e) => e.kind === TUN_THREAD_SENT)).toBe(true);
      expect(udp.slice(10).every((e) => e.kind === TUN_THREAD_JS)).toBe(true);
      await new Promise((res) => setTimeout(res, 100));
      expect(r.atServer.length).toBe(10);
    } finally {
      thread!.close();
      r.tun.close();
    }
  }, 30_000);
  for (const offload of [false, true]) {
    it(`receives: writes the session's plain packets into the TUN itself; a DATAGRAM for the event loop holds it, and that one and all after it go through HTTP/3 in order (${offload ? 'offload' : 'plain'} TUN)`, async () => {
      const r = await rig(offload);
      // What reaches the namespace's kernel through the TUN, in order: a UDP listener on the TUN's address.
      const py = 'import socket,sys\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.bind(("10.79.0.1",9999))\ns.settimeout(3)\nprint("ready",flush=True)\ntry:\n  while True: print(s.recv(2000).decode(),flush=True)\nexcept Exception: pass\n';
      const listener = await spawnSide(r.ns, py);
      const heard = listener.heard;
      const table = loadNative().judgeTable(compileAgentTable({
        assigned: [],
        ourRanges: [{ version: 4, start: Uint8Array.of(10, 79, 0, 1), end: Uint8Array.of(10, 79, 0, 1), ipProtocol: 0 }],
        peerRanges: [{ version: 4, start: Uint8Array.of(10, 79, 0, 2), end: Uint8Array.of(10, 79, 0, 2), ipProtocol: 0 }],
      }, true, Uint8Array.of(0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2)));
      // The event loop's side, as the agent runs it: DATAGRAMs HTTP/3 reads from the client connection are written into the TUN.
      const viaJs: string[] = [];
      const jsBuf = Buffer.alloc(2000);
      r.client.onEvent = (conn, ev) => {
        if (ev !== 'readable') return;
        let n: number | null;
        while ((n = conn.dgramRecv(jsBuf)) !== null) {
          const ok = jsBuf[0] === PREFIX[0] && jsBuf[1] === PREFIX[1] && jsBuf[14] === 10 && jsBuf[15] === 79 && jsBuf[17] === 2;
          viaJs.push(ok ? udpText(jsBuf, 2, n - 2)! : `held:${udpText(jsBuf, 2, n - 2)}`);
          if (ok) r.tun.write([jsBuf], Uint32Array.of(n - 2), 2, 1);
        }
      };
      const ring: { kind: number; text: string | null }[] = [];
      let thread: TunThread | null = null;
      const onReady = () => {
        const t = thread!;
        const held = t.stats()[TunThreadStat.RX_HELD]!;
        // An H3 entry is the whole HTTP Datagram payload: the quarter stream ID and context ID (2 bytes here), then the packet.
        t.drain((b, off, len, kind) => ring.push({ kind, text: kind === TUN_THREAD_H3 ? udpText(b, off + 2, len - 2) : udpText(b, off, len) }), 0);
        r.ep.threadInput([r.client], t.hasEndpointPending() ? (feed) => t.drainEndpoint(feed) : null);
        t.resume(held);
      };
      thread = TunThread.open(r.tun, h.sockets[1]!, HEADROOM, onReady);
      try {
        thread!.attach(r.client.q.nativeHandle(), PREFIX, true, table);
        r.ep.pauseInput();
        const server = h.accepted[0]!;
        const send = (d: Uint8Array) => expect(server.dgramSend(d, 0, d.length)).toBe(true);
        const plain = (i: number) => ipUdp(PREFIX, 2, `pkt-${String(i).padStart(6, '0')}`);
        for (let i = 0; i < 100; i++) send(plain(i));
        server.flush();
        await waitFor(() => heard.length >= 101, 5_000, 'the first 100 in the namespace');
        // Another context ID (RFC 9484 §6) and a source the gateway does not route for us: HTTP/3 on the event loop drops
        // them, through the ring, and the thread goes on. Then a fragment, which the event loop would write: the thread holds.
        send(ipUdp(Uint8Array.of(PREFIX[0]!, 1), 2, 'other-context'));
        send(ipUdp(PREFIX, 3, 'spoofed'));
        send(ipUdp(PREFIX, 2, 'frag', true));
        for (let i = 100; i < 200; i++) send(plain(i));
        server.flush();
        const want = Array.from({ length: 200 }, (_, i) => `pkt-${String(i).padStart(6, '0')}`);
        await waitFor(() => heard.length >= 201, 5_000, 'all 200 in the namespace').catch((e) => {
          throw new Error(`${(e as Error).message}: heard ${heard.length - 1}, via the event loop ${JSON.stringify(viaJs.slice(0, 5))} (${viaJs.length}), ring IN ${ring.filter((x) => x.kind === TUN_THREAD_IN).length}, stats ${[...thread!.stats()].join(',')}`);
        });
        expect(heard.slice(1)).toEqual(want);
        const st = thread!.stats();
        const inRing = ring.filter((e) => e.kind === TUN_THREAD_IN).map((e) => e.text);
        // The first 100 by the thread alone; the fragment and what followed it (until the event loop resumed the thread) by the event loop.
        expect(inRing.slice(0, 100)).toEqual(want.slice(0, 100));
        expect(ring.filter((e) => e.kind === TUN_THREAD_H3).map((e) => e.text)).toEqual(['other-context', 'spoofed']);
        expect(st[TunThreadStat.RX_TO_H3]).toBe(2);
        expect(viaJs[0]).toBe('frag');
        expect([...inRing, ...viaJs.slice(1)].sort()).toEqual(want);
        expect(st[TunThreadStat.RX_HELD]).toBeGreaterThanOrEqual(1);
        expect(st[TunThreadStat.RX_TUN]).toBe(inRing.length);
        expect(st[TunThreadStat.RX_DATAGRAMS]).toBeGreaterThan(0); // QUIC packets: small DATAGRAMs share them
        expect(st[TunThreadStat.RX_TUN_DROPPED]).toBe(0);
        // After the hold the rest of that receive round went to the endpoint as it came (RX_TO_ENDPOINT): still in order above.
        // Resumed once the event loop emptied the queue: the thread writes the next ones itself again.
        const before = inRing.length;
        for (let i = 200; i < 250; i++) send(plain(i));
        server.flush();
        await waitFor(() => heard.length >= 251, 5_000, 'the next 50 in the namespace');
        await waitFor(() => ring.filter((e) => e.kind === TUN_THREAD_IN).length >= before + 50, 2_000, 'the next 50 written by the thread');
        expect(heard.slice(201)).toEqual(Array.from({ length: 50 }, (_, i) => `pkt-${String(200 + i).padStart(6, '0')}`));
        // Full-size DATAGRAMs leave the server in GSO trains and reach the thread's socket (UDP GRO) coalesced: one slot
        // per round, each segment written in order (review of the GRO change, 7 December: nothing checked that a
        // coalesced slot ever arrived here).
        const groBefore = thread!.stats()[TunThreadStat.RX_GRO]!;
        const big = (i: number) => `big-${String(i).padStart(6, '0')}-${'x'.repeat(1_150)}`;
        // In bursts of 30 (one flush each: GSO trains), each heard before the next, so that the listener's socket
        // buffer (about 90 such packets) does not overflow.
        for (let i = 0; i < 300; i += 30) {
          for (let k = i; k < i + 30; k++) send(ipUdp(PREFIX, 2, big(k)));
          server.flush();
          await waitFor(() => heard.length >= 251 + i + 30, 5_000, `full-size packets ${i}..${i + 29} in the namespace`).catch((e) => {
            throw new Error(`${(e as Error).message}: heard ${heard.length - 251}, stats ${[...thread!.stats()].join(',')}`);
          });
        }
        expect(heard.slice(251)).toEqual(Array.from({ length: 300 }, (_, i) => big(i)));
        expect(thread!.stats()[TunThreadStat.RX_GRO]).toBeGreaterThan(groBefore);
        // A datagram for no connection of ours goes to the endpoint as it came (here: counted as an unknown connection ID).
        const unknownBefore = r.ep.counters.dropUnknownCid;
        const toEndpointBefore = thread!.stats()[TunThreadStat.RX_TO_ENDPOINT]!;
        const stray = createSocket('udp4');
        await new Promise<void>((res) => stray.send(Buffer.alloc(40, 0x41), h.sockets[1]!.localAddress().port, '127.0.0.1', () => res()));
        stray.close();
        await waitFor(() => r.ep.counters.dropUnknownCid > unknownBefore, 2_000, 'the stray datagram at the endpoint');
        expect(thread!.stats()[TunThreadStat.RX_TO_ENDPOINT]).toBe(toEndpointBefore + 1);
      } finally {
        thread!.close();
        r.ep.resumeInput();
        listener.kill();
        r.tun.close();
      }
    }, 30_000);
  }
  it('refuses a poll under the engine lock (the lock order is the thread\'s producer lock first: the other order deadlocks against it)', async () => {
    const r = await rig(false);
    const thread = TunThread.open(r.tun, h.sockets[1]!, HEADROOM, () => undefined)!;
    try {
      thread.poll();
      ngtcp2Engine.lock();
      try {
        expect(() => thread.poll()).toThrow(/under the engine lock/);
      } finally {
        ngtcp2Engine.unlock();
      }
      thread.poll();
    } finally {
      thread.close();
      r.tun.close();
    }
  }, 30_000);
});
