/**
 * The gateway's TUN thread carrying two agent connections at once, each in a
 * slot of its own (src/native/dataplane.c `struct dp_att`, issues #13 and
 * #17): a real TUN in a namespace, two real QUIC connections over loopback
 * on one socket. Each connection the thread is attached to stands for the
 * gateway's side of one agent; its peer stands for the agent, sending
 * client packets as DATAGRAMs and reading what the thread sends back.
 *
 *   agent A (server conn) ══ QUIC ══╗                          ┌ TUN 10.79.0.1/24 in netns <prefix>N
 *   agent B (server conn) ══ QUIC ══╩ thread (slots 0 and 1) ──┤  python3 on 10.79.0.1:9999
 *     A's site 10.79.0.2/32, B's site 10.79.0.3/32              └  routes to .2 and .3 through the TUN
 *
 * Checks: each agent's packets are written by the thread and published with
 * its slot; the network's answers go back to the agent that opened the flow,
 * never to the other one (both use the same source port); a packet B sends
 * from A's address fails B's own check; after A's slot is detached, answers
 * to A take the event loop's path while B's still cross the thread; an
 * agent's attachment (no gateway table) cannot take a slot other than 0,
 * and one connection cannot take two slots.
 */
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { TUN_THREAD_H3, TUN_THREAD_IN, TUN_THREAD_JS, TUN_THREAD_SENT, TunThread, TunThreadStat } from '../../src/daemon/tun-thread.js';
import type { QuicConnection } from '../../src/quic/connection.js';
import { Harness, nativeUdpAvailable, waitFor } from '../sim/quic-harness.js';
import { cleanupAll, execAsync, isRoot, runPrefix, spawnSide, warnIfNotRoot } from './netns.js';
import { gatewayTableFor, openGatewayThreadRig } from './gateway-thread-rig.js';
import { ipUdp } from './ip-packets.js';

warnIfNotRoot('test/netns/tun-thread-gateway-slots.test.ts');

const nativeOk = await nativeUdpAvailable('tun-thread-gateway-slots');

const HEADROOM = 16;
/** Quarter stream ID 1 (request stream 4) and context ID 0. */
const PREFIX = Uint8Array.of(0x01, 0x00);

/** An IPv4/UDP packet 10.79.0.<host>:sport → 10.79.0.1:9999 after the HTTP Datagram prefix; `mf`: a first fragment. */
const clientUdp = (host: number, sport: number, text: string, mf = false): Uint8Array => ipUdp(PREFIX, host, text, mf, sport);

/** Destination host byte and UDP payload of an IPv4/UDP packet at b[off, off + len), or null. */
function udpOf(b: Uint8Array, off: number, len: number): { dst: number; text: string } | null {
  if (len < 28 || b[off]! >> 4 !== 4 || b[off + 9] !== 17) return null;
  const ihl = (b[off]! & 15) * 4;
  return { dst: b[off + 19]!, text: new TextDecoder().decode(b.subarray(off + ihl + 8, off + len)) };
}

let h = new Harness('native');
afterEach(() => {
  h.cleanup();
  h = new Harness('native');
});

describe.skipIf(!isRoot() || !nativeOk)('the gateway\'s TUN thread with several agent connections (slots)', () => {
  const prefix = runPrefix('ts');
  afterAll(() => cleanupAll());

  it('carries two connections at once: each agent\'s packets and answers on its own slot, never the other\'s; a detached slot\'s answers take the event loop\'s path', async () => {
    const { ns, tun, ep, gws: [gwA, gwB], agents } = await openGatewayThreadRig(h, prefix, 2);
    const atAgent: { dst: number; text: string }[][] = [[], []];
    agents.forEach((a, i) => {
      const buf = new Uint8Array(2000);
      a.onEvent = (conn, ev) => {
        if (ev !== 'readable') return;
        let n: number | null;
        while ((n = conn.dgramRecv(buf)) !== null) {
          const u = buf[0] === PREFIX[0] && buf[1] === PREFIX[1] ? udpOf(buf, 2, n - 2) : null;
          if (u !== null) atAgent[i]!.push(u);
        }
      };
    });
    // The namespace's side: prints each datagram to 10.79.0.1:9999; "<host> <dport> <text>" on stdin answers from
    // 10.79.0.1:9999 to 10.79.0.<host>:<dport>.
    const py = [
      'import socket,sys',
      's=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)',
      's.setsockopt(socket.IPPROTO_IP,12,1)',
      's.bind(("10.79.0.1",9999))',
      'import threading',
      'def rx():',
      '  while True:',
      '    d,anc,_,a=s.recvmsg(2000,64)',
      '    ttl=[x for x in anc if x[1]==2][0][2][0]',
      '    print("heard %s ttl=%d from %s:%d" % (d.decode(),ttl,a[0],a[1]),flush=True)',
      'threading.Thread(target=rx,daemon=True).start()',
      'print("ready",flush=True)',
      'for line in sys.stdin:',
      '  host,dp,t=line.split()',
      '  s.sendto(t.encode(),("10.79.0.%s" % host,int(dp)))',
    ].join('\n');
    const side = await spawnSide(ns, py);
    const heard = side.heard;
    for (const host of ['10.79.0.2/32', '10.79.0.3/32']) await execAsync(ns, 'ip', ['route', 'add', host, 'dev', `${prefix}g`]);
    const answer = (host: number, dport: number, text: string) => side.write(`${host} ${dport} ${text}\n`);

    const ring: { kind: number; slot: number; u: ReturnType<typeof udpOf> }[] = [];
    let thread: TunThread | null = null;
    const pairs = new Uint32Array(8);
    let resumes = true; // false: the event loop "has not run" what holds a connection yet
    const onReady = () => {
      const t = thread!;
      const held = t.stats()[TunThreadStat.RX_HELD]!;
      if (!resumes) {
        t.drain((b, off, len, kind, _at, slot) => ring.push({ kind, slot, u: udpOf(b, kind === TUN_THREAD_H3 ? off + 2 : off, len) }), 0);
        return;
      }
      t.drain((b, off, len, kind, _at, slot) => {
        const o = kind === TUN_THREAD_H3 ? off + 2 : off;
        ring.push({ kind, slot, u: udpOf(b, o, len - (o - off)) });
      }, 0);
      const fed: QuicConnection[] = [];
      for (let n = t.touched(pairs), i = 0; i < n; i++) fed.push(pairs[2 * i] === 0 ? gwA : gwB);
      ep.threadInput(fed, t.hasEndpointPending() ? (feed) => t.drainEndpoint(feed) : null);
      t.resume(held);
    };
    thread = TunThread.open(tun, h.sockets[1]!, HEADROOM, onReady, 1452);
    try {
      const t = thread!;
      t.attach(gwA.q.nativeHandle(), PREFIX, false, gatewayTableFor(2), 0, 60_000, 0);
      t.attach(gwB.q.nativeHandle(), PREFIX, false, gatewayTableFor(3), 0, 60_000, 1);
      expect(t.attachedCount).toBe(2);
      ep.pauseInput();
      // One connection, one slot; an agent's attachment (no gateway table) only in slot 0.
      expect(() => t.attach(gwA.q.nativeHandle(), PREFIX, false, gatewayTableFor(2), 0, 60_000, 2)).toThrow(/another slot/);
      expect(() => t.attach(gwB.q.nativeHandle(), PREFIX, false, null, 0, 0, 3)).toThrow(/slots other than 0/);
      const send = (i: number, d: Uint8Array) => {
        expect(agents[i]!.dgramSend(d, 0, d.length)).toBe(true);
        agents[i]!.flush();
      };

      // In: both agents' packets, the same source port, each written by the thread and published with its slot.
      send(0, clientUdp(2, 40000, 'from-a'));
      send(1, clientUdp(3, 40000, 'from-b'));
      await waitFor(() => heard.filter((l) => l.startsWith('heard from-')).length === 2, 5_000, 'both agents\' packets in the namespace').catch((e) => {
        throw new Error(`${(e as Error).message}: heard ${JSON.stringify(heard)}, ring ${JSON.stringify(ring)}, stats ${[...t.stats()].join(',')}, ${side.stderr()}`);
      });
      expect(heard).toContain('heard from-a ttl=63 from 10.79.0.2:40000');
      expect(heard).toContain('heard from-b ttl=63 from 10.79.0.3:40000');
      await waitFor(() => ring.filter((e) => e.kind === TUN_THREAD_IN).length === 2, 5_000, 'both written packets observed');
      expect(ring.filter((e) => e.kind === TUN_THREAD_IN).map((e) => [e.slot, e.u?.text]).sort()).toEqual([[0, 'from-a'], [1, 'from-b']]);

      // Back: each answer reaches the agent whose flow it answers, by the thread, on that agent's slot.
      answer(2, 40000, 'back-a');
      answer(3, 40000, 'back-b');
      await waitFor(() => atAgent[0]!.length === 1 && atAgent[1]!.length === 1, 5_000, 'an answer at each agent').catch((e) => {
        throw new Error(`${(e as Error).message}: at agents ${JSON.stringify(atAgent)}, ring ${JSON.stringify(ring.slice(-6))}, stats ${[...t.stats()].join(',')}`);
      });
      expect(atAgent[0]).toEqual([{ dst: 2, text: 'back-a' }]);
      expect(atAgent[1]).toEqual([{ dst: 3, text: 'back-b' }]);
      await waitFor(() => ring.filter((e) => e.kind === TUN_THREAD_SENT).length === 2, 5_000, 'both answers observed');
      expect(ring.filter((e) => e.kind === TUN_THREAD_SENT).map((e) => [e.slot, e.u?.text]).sort()).toEqual([[0, 'back-a'], [1, 'back-b']]);

      // B sends from A's address: B's own check refuses it (HTTP/3 judges it on the event loop), nothing is written.
      send(1, clientUdp(2, 40001, 'spoofed'));
      await waitFor(() => ring.some((e) => e.kind === TUN_THREAD_H3), 5_000, 'the spoofed packet for HTTP/3');
      expect(ring.find((e) => e.kind === TUN_THREAD_H3)).toMatchObject({ slot: 1, u: { text: 'spoofed' } });
      expect(heard.some((l) => l.startsWith('heard spoofed'))).toBe(false);

      // A hold is the connection's own: A's first fragment (only the event loop may write it) holds A's receive leg,
      // and while the event loop has not run it, B's packets still cross the thread (a global hold stopped them).
      resumes = false;
      const heldBefore = t.stats()[TunThreadStat.RX_HELD]!;
      send(0, clientUdp(2, 40005, 'fragment', true));
      await waitFor(() => t.stats()[TunThreadStat.RX_HELD]! > heldBefore, 5_000, 'A held');
      send(1, clientUdp(3, 40006, 'b-while-a-held'));
      await waitFor(() => heard.some((l) => l.startsWith('heard b-while-a-held')), 5_000, 'B\'s packet while A is held').catch((e) => {
        throw new Error(`${(e as Error).message}: heard ${JSON.stringify(heard.slice(-4))}, stats ${[...t.stats()].join(',')}`);
      });
      expect(heard.some((l) => l.startsWith('heard fragment'))).toBe(false);
      // The event loop takes A's queue (as HTTP/3 would) and lets the thread go on.
      const qbuf = new Uint8Array(2000);
      while (gwA.dgramRecv(qbuf) !== null);
      resumes = true;
      t.resume(t.stats()[TunThreadStat.RX_HELD]!);

      // A's slot detached: answers to A take the event loop's path; B's still cross the thread.
      t.detach(0);
      expect(t.attachedCount).toBe(1);
      answer(2, 40000, 'after-detach-a');
      answer(3, 40000, 'after-detach-b');
      await waitFor(() => ring.some((e) => e.u?.text === 'after-detach-a') && atAgent[1]!.length === 2, 5_000, 'both answers after the detach');
      expect(ring.find((e) => e.u?.text === 'after-detach-a')).toMatchObject({ kind: TUN_THREAD_JS, slot: -1 });
      expect(atAgent[1]![1]).toEqual({ dst: 3, text: 'after-detach-b' });
      expect(atAgent[0]!.length).toBe(1);
    } finally {
      thread!.close();
      ep.resumeInput();
      side.kill();
      tun.close();
    }
  }, 30_000);
});
