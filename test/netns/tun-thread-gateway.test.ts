/**
 * The TUN thread in a gateway's place (src/native/dataplane.c with a
 * gateway's table, as `tun.thread` runs it for each agent connection, here one in slot 0):
 * a real TUN in a namespace, a real QUIC connection over loopback. The
 * connection the thread is attached to stands for the gateway's; its peer
 * stands for the agent, sending client packets as DATAGRAMs and reading
 * what the thread sends back.
 *
 *   agent (server connection) ══ QUIC 127.0.0.1 ══ thread ──fd── TUN 10.79.0.1/24 in netns <prefix>N
 *     client packets from 10.79.0.2 (the agent's site)          python3: listener on 10.79.0.1, sender to 10.79.0.2
 *
 * Checks what the inbound default deny and the gateway's check ask of it:
 * TTL decremented on the way in (a TTL of 1 goes to the event loop, which
 * answers Time Exceeded); from the network only answers on flows the
 * agent used are sent by the thread, and nothing else (unsolicited
 * datagrams, another port, an RST, and after it the rest of that flow) is:
 * those reach the event loop's path, which judges them in full.
 */
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { TUN_THREAD_H3, TUN_THREAD_IN, TUN_THREAD_JS, TUN_THREAD_SENT, TunThread, TunThreadStat } from '../../src/daemon/tun-thread.js';
import { Harness, nativeUdpAvailable, waitFor } from '../sim/quic-harness.js';
import { cleanupAll, execAsync, isRoot, runPrefix, spawnSide, warnIfNotRoot } from './netns.js';
import { gatewayTableFor, openGatewayThreadRig } from './gateway-thread-rig.js';

warnIfNotRoot('test/netns/tun-thread-gateway.test.ts');

const nativeOk = await nativeUdpAvailable('tun-thread-gateway');

const HEADROOM = 16;
/** Quarter stream ID 1 (request stream 4) and context ID 0. */
const PREFIX = Uint8Array.of(0x01, 0x00);

/** An IPv4/UDP packet 10.79.0.2:sport → 10.79.0.1:dport with `ttl`, after the HTTP Datagram prefix. */
function clientUdp(sport: number, dport: number, ttl: number, text: string): Uint8Array {
  const payload = new TextEncoder().encode(text);
  const len = 28 + payload.length;
  const b = new Uint8Array(PREFIX.length + len);
  b.set(PREFIX, 0);
  const p = b.subarray(PREFIX.length);
  p.set([0x45, 0, len >> 8, len & 0xff, 0, 0, 0x40, 0, ttl, 17, 0, 0, 10, 79, 0, 2, 10, 79, 0, 1]);
  let sum = 0;
  for (let i = 0; i < 20; i += 2) sum += (p[i]! << 8) | p[i + 1]!;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >> 16);
  p[10] = ~sum >> 8 & 0xff;
  p[11] = ~sum & 0xff;
  p.set([sport >> 8, sport & 0xff, dport >> 8, dport & 0xff, (8 + payload.length) >> 8, (8 + payload.length) & 0xff, 0, 0], 20);
  p.set(payload, 28);
  return b;
}

/** An IPv4/TCP segment 10.79.0.2:sport → 10.79.0.1:dport (flags, no payload), checksums right, after the prefix. */
function clientTcp(sport: number, dport: number, flags: number): Uint8Array {
  const b = new Uint8Array(PREFIX.length + 40);
  b.set(PREFIX, 0);
  const p = b.subarray(PREFIX.length);
  p.set([0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0, 10, 79, 0, 2, 10, 79, 0, 1]);
  p.set([sport >> 8, sport & 0xff, dport >> 8, dport & 0xff, 0, 0, 0x10, 0, 0, 0, 0x20, 0, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0], 20);
  const fold = (x: number) => { while (x > 0xffff) x = (x & 0xffff) + (x >> 16); return ~x & 0xffff; };
  let sum = 0;
  for (let i = 0; i < 20; i += 2) sum += (p[i]! << 8) | p[i + 1]!;
  const ipc = fold(sum);
  p[10] = ipc >> 8; p[11] = ipc & 0xff;
  sum = 0x0a4f + 0x0002 + 0x0a4f + 0x0001 + 6 + 20; // pseudo header: 10.79.0.2, 10.79.0.1, TCP, length
  for (let i = 20; i < 40; i += 2) sum += (p[i]! << 8) | p[i + 1]!;
  const tc = fold(sum);
  p[36] = tc >> 8; p[37] = tc & 0xff;
  return b;
}

/** An IPv4 packet 10.79.0.2 → 10.79.0.1 of protocol 58 (ICMPv6) with ICMP's echo request type (8) and `id`. */
function clientIcmp6In4(id: number): Uint8Array {
  const b = new Uint8Array(PREFIX.length + 29);
  b.set(PREFIX, 0);
  const p = b.subarray(PREFIX.length);
  p.set([0x45, 0, 0, 29, 0, 0, 0x40, 0, 64, 58, 0, 0, 10, 79, 0, 2, 10, 79, 0, 1, 8, 0, 0, 0, id >> 8, id & 0xff, 0, 1, 0x78]);
  let sum = 0;
  for (let i = 0; i < 20; i += 2) sum += (p[i]! << 8) | p[i + 1]!;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >> 16);
  p[10] = ~sum >> 8 & 0xff;
  p[11] = ~sum & 0xff;
  return b;
}

/** TCP ports and flags of an IPv4 packet at b[off, off + len), or null. */
function tcpOf(b: Uint8Array, off: number, len: number): { sport: number; dport: number; flags: number } | null {
  if (len < 40 || b[off]! >> 4 !== 4 || b[off + 9] !== 6) return null;
  const t = off + (b[off]! & 15) * 4;
  return { sport: (b[t]! << 8) | b[t + 1]!, dport: (b[t + 2]! << 8) | b[t + 3]!, flags: b[t + 13]! };
}

/** The UDP payload and ports of an IPv4 packet at b[off, off + len), or null. */
function udpOf(b: Uint8Array, off: number, len: number): { sport: number; dport: number; text: string } | null {
  if (len < 28 || b[off]! >> 4 !== 4 || b[off + 9] !== 17) return null;
  const ihl = (b[off]! & 15) * 4;
  return { sport: (b[off + ihl]! << 8) | b[off + ihl + 1]!, dport: (b[off + ihl + 2]! << 8) | b[off + ihl + 3]!, text: new TextDecoder().decode(b.subarray(off + ihl + 8, off + len)) };
}

let h = new Harness('native');
afterEach(() => {
  h.cleanup();
  h = new Harness('native');
});

describe.skipIf(!isRoot() || !nativeOk)('the TUN thread in a gateway (tun.thread)', () => {
  const prefix = runPrefix('tg');
  afterAll(() => cleanupAll());

  it('decrements the TTL of what it writes into the TUN; sends back only answers on flows the agent used, every other packet from the network goes to the event loop', async () => {
    const { ns, tun, ep, gws: [gw], agents: [agent] } = await openGatewayThreadRig(h, prefix, 1);
    // What the agent receives: UDP packets the thread (or the test's event loop) sent it.
    const atAgent: { sport: number; dport: number; text: string }[] = [];
    const abuf = new Uint8Array(2000);
    agent.onEvent = (conn, ev) => {
      if (ev !== 'readable') return;
      let n: number | null;
      while ((n = conn.dgramRecv(abuf)) !== null) {
        const u = abuf[0] === PREFIX[0] && abuf[1] === PREFIX[1] ? udpOf(abuf, 2, n - 2) : null;
        if (u !== null) atAgent.push(u);
      }
    };
    // The namespace's side: prints each datagram to 10.79.0.1:9999 with its TTL; on "answer <sport> <text>" lines on
    // stdin sends from 10.79.0.1:<sport> to 10.79.0.2:<dport>.
    const py = [
      'import socket,sys,threading',
      's=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)',
      's.setsockopt(socket.IPPROTO_IP,12,1)',
      's.bind(("10.79.0.1",9999))',
      'def rx():',
      '  while True:',
      '    d,anc,_,a=s.recvmsg(2000,64)',
      '    ttl=[x for x in anc if x[1]==2][0][2][0]',
      '    print("heard %s ttl=%d from %d" % (d.decode(),ttl,a[1]),flush=True)',
      'threading.Thread(target=rx,daemon=True).start()',
      'l=socket.socket(socket.AF_INET,socket.SOCK_STREAM)',
      'l.bind(("10.79.0.1",8083))',
      'l.listen(8)',
      'print("ready",flush=True)',
      'import struct',
      'def cks(b):',
      '  if len(b)%2: b+=b"\\0"',
      '  x=sum(struct.unpack("!%dH"%(len(b)//2),b))',
      '  while x>>16: x=(x&0xffff)+(x>>16)',
      '  return ~x&0xffff',
      'raw=socket.socket(socket.AF_INET,socket.SOCK_RAW,socket.IPPROTO_TCP)',
      'for line in sys.stdin:',
      '  if line.startswith("p58 "):',
      '    _,ty,ident=line.split()',
      '    r58=socket.socket(socket.AF_INET,socket.SOCK_RAW,58)',
      '    r58.sendto(struct.pack("!BBHHH",int(ty),0,0,int(ident),1)+b"x",("10.79.0.2",0)); r58.close(); continue',
      '  if line.startswith("tcp "):',
      '    _,sp,dp,fl=line.split()',
      '    h=struct.pack("!HHIIBBHHH",int(sp),int(dp),1000,2000,0x50,int(fl),65535,0,0)',
      '    ph=socket.inet_aton("10.79.0.1")+socket.inet_aton("10.79.0.2")+struct.pack("!BBH",0,6,len(h))',
      '    h=h[:16]+struct.pack("!H",cks(ph+h))+h[18:]',
      '    raw.sendto(h,("10.79.0.2",0)); continue',
      '  sp,dp,t=line.split()',
      '  if int(sp)==9999: s.sendto(t.encode(),("10.79.0.2",int(dp))); continue',
      '  o=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)',
      '  o.bind(("10.79.0.1",int(sp)))',
      '  o.sendto(t.encode(),("10.79.0.2",int(dp)))',
      '  o.close()',
    ].join('\n');
    const side = await spawnSide(ns, py);
    const heard = side.heard;
    // The network answers (route to 10.79.0.2 through the TUN: the gateway's route to the agent's site).
    await execAsync(ns, 'ip', ['route', 'add', '10.79.0.2/32', 'dev', `${prefix}g`]);
    const answer = (sport: number, dport: number, text: string) => side.write(`${sport} ${dport} ${text}\n`);

    // The session: the agent owns 10.79.0.2/32 (its site), may reach anything, TTL decremented (the gateway's default).
    const table = gatewayTableFor(2);
    const ring: { kind: number; u: ReturnType<typeof udpOf>; tcp: ReturnType<typeof tcpOf>; ttl: number; proto: number }[] = [];
    let thread: TunThread | null = null;
    const onReady = () => {
      const t = thread!;
      const held = t.stats()[TunThreadStat.RX_HELD]!;
      t.drain((b, off, len, kind) => {
        const o = kind === TUN_THREAD_H3 ? off + 2 : off;
        ring.push({ kind, u: udpOf(b, o, len - (o - off)), tcp: tcpOf(b, o, len - (o - off)), ttl: b[o + 8]!, proto: b[o + 9]! });
      }, 0);
      ep.threadInput([gw], t.hasEndpointPending() ? (feed) => t.drainEndpoint(feed) : null);
      t.resume(held);
    };
    thread = TunThread.open(tun, h.sockets[1]!, HEADROOM, onReady, 1452);
    try {
      thread!.attach(gw.q.nativeHandle(), PREFIX, false, table, 0, 60_000);
      ep.pauseInput();
      const send = (d: Uint8Array) => expect(agent.dgramSend(d, 0, d.length)).toBe(true);

      // In: the agent's packets reach the network with their TTL decremented once, written by the thread.
      for (let i = 0; i < 5; i++) send(clientUdp(40000 + i, 9999, 64, `in-${i}`));
      agent.flush();
      await waitFor(() => heard.filter((l) => l.startsWith('heard in-')).length === 5, 5_000, 'the agent\'s 5 packets in the namespace').catch((e) => {
        throw new Error(`${(e as Error).message}: heard ${JSON.stringify(heard)}, ring ${JSON.stringify(ring)}, stats ${[...thread!.stats()].join(',')}, ${side.stderr()}`);
      });
      for (let i = 0; i < 5; i++) expect(heard).toContain(`heard in-${i} ttl=63 from ${40000 + i}`);
      expect(ring.filter((e) => e.kind === TUN_THREAD_IN).map((e) => [e.u?.text, e.ttl])).toEqual([0, 1, 2, 3, 4].map((i) => [`in-${i}`, 63]));
      // A TTL of 1 expires here: the thread leaves it to the event loop (HTTP/3 and the session's check: Time Exceeded).
      send(clientUdp(40009, 9999, 1, 'expiring'));
      agent.flush();
      await waitFor(() => ring.some((e) => e.kind === TUN_THREAD_H3), 5_000, 'the expiring packet for HTTP/3');
      expect(ring.find((e) => e.kind === TUN_THREAD_H3)!.u!.text).toBe('expiring');
      expect(heard.some((l) => l.startsWith('heard expiring'))).toBe(false);

      // Back: answers on those flows are sent by the thread and reach the agent.
      for (let i = 0; i < 5; i++) answer(9999, 40000 + i, `back-${i}`);
      await waitFor(() => atAgent.length === 5, 5_000, 'the 5 answers at the agent').catch((e) => {
        throw new Error(`${(e as Error).message}: at agent ${JSON.stringify(atAgent)}, ring ${JSON.stringify(ring.slice(-8))}, stats ${[...thread!.stats()].join(',')}, ${side.stderr()}`);
      });
      expect(atAgent.map((u) => u.text).sort()).toEqual([0, 1, 2, 3, 4].map((i) => `back-${i}`));
      expect(ring.filter((e) => e.kind === TUN_THREAD_SENT).map((e) => e.u?.text).sort()).toEqual([0, 1, 2, 3, 4].map((i) => `back-${i}`));
      // Unsolicited (a port the agent never used, from another source port): the event loop's path, not the agent.
      answer(9999, 41000, 'unsolicited-port');
      answer(9998, 40000, 'unsolicited-source-port');
      await waitFor(() => ring.filter((e) => e.kind === TUN_THREAD_JS && e.u !== null).length === 2, 5_000, 'two packets for the event loop');
      expect(ring.filter((e) => e.kind === TUN_THREAD_JS && e.u !== null).map((e) => e.u!.text).sort()).toEqual(['unsolicited-port', 'unsolicited-source-port']);
      expect(atAgent.length).toBe(5);
      expect(thread!.stats()[TunThreadStat.QUEUED]).toBe(5);

      // TCP: the agent's segment to a closed port draws the kernel's RST. The RST is the event loop's (the inbound
      // table's state moves on it), and so is the rest of that flow: a later segment from the network is not sent.
      const fromNet = () => ring.filter((e) => e.tcp !== null && e.tcp.sport === 8080 && e.tcp.dport === 45000);
      send(clientTcp(45000, 8080, 0x10));
      agent.flush();
      await waitFor(() => fromNet().length === 1, 5_000, 'the kernel\'s RST');
      expect(fromNet()[0]).toMatchObject({ kind: TUN_THREAD_JS, tcp: { flags: 0x04 } }); // RST (seq = the segment's ACK)
      side.write('tcp 8080 45000 16\n'); // ACK, on the flow the RST ended
      await waitFor(() => fromNet().length === 2, 5_000, 'the segment after the RST');
      expect(fromNet()[1]).toMatchObject({ kind: TUN_THREAD_JS, tcp: { flags: 0x10 } });
      // A flow the agent opens to a listener: the SYN-ACK goes back by the thread; a FIN is the event loop's.
      const flow = () => ring.filter((e) => e.tcp !== null && e.tcp.sport === 8083 && e.tcp.dport === 45003);
      send(clientTcp(45003, 8083, 0x02));
      agent.flush();
      await waitFor(() => flow().length === 1, 5_000, 'the listener\'s SYN-ACK');
      expect(flow()[0]).toMatchObject({ kind: TUN_THREAD_SENT, tcp: { flags: 0x12 } });
      side.write('tcp 8083 45003 17\n'); // FIN+ACK
      await waitFor(() => flow().length === 2, 5_000, 'the FIN');
      expect(flow()[1]).toMatchObject({ kind: TUN_THREAD_JS, tcp: { flags: 0x11 } });

      // ICMPv6 in IPv4 (protocol 58): the inbound table keys echo by protocol and opens nothing for it, so the thread
      // must not answer on it either (review, 7 December: keyed by IP version it did).
      send(clientIcmp6In4(0x4242));
      agent.flush();
      await waitFor(() => heard.length >= 0 && ring.some((e) => e.kind === TUN_THREAD_IN && e.proto === 58), 5_000, 'the ICMPv6-in-IPv4 request written');
      side.write(`p58 0 ${0x4242}\n`); // type 0, ICMP's echo reply, under protocol 58
      await waitFor(() => ring.some((e) => e.kind !== TUN_THREAD_IN && e.proto === 58), 5_000, 'the ICMPv6-in-IPv4 reply');
      expect(ring.filter((e) => e.kind !== TUN_THREAD_IN && e.proto === 58).map((e) => e.kind)).toEqual([TUN_THREAD_JS]);

      // Attached again (a new check): the flows it saw are forgotten; and an entry answers only for flowTtlMs.
      thread!.attach(gw.q.nativeHandle(), PREFIX, false, table, 0, 400);
      const sentBefore = thread!.stats()[TunThreadStat.QUEUED]!;
      answer(9999, 40000, 'after-reattach');
      await waitFor(() => ring.some((e) => e.u?.text === 'after-reattach'), 5_000, 'the answer after the re-attach');
      expect(ring.find((e) => e.u?.text === 'after-reattach')!.kind).toBe(TUN_THREAD_JS);
      send(clientUdp(40001, 9999, 64, 'fresh'));
      agent.flush();
      await waitFor(() => heard.some((l) => l.startsWith('heard fresh')), 5_000, 'the fresh packet in the namespace');
      answer(9999, 40001, 'in-time');
      await waitFor(() => ring.some((e) => e.u?.text === 'in-time'), 5_000, 'the answer in time');
      expect(ring.find((e) => e.u?.text === 'in-time')!.kind).toBe(TUN_THREAD_SENT);
      await new Promise((res) => setTimeout(res, 600));
      answer(9999, 40001, 'too-late');
      await waitFor(() => ring.some((e) => e.u?.text === 'too-late'), 5_000, 'the late answer');
      expect(ring.find((e) => e.u?.text === 'too-late')!.kind).toBe(TUN_THREAD_JS);
      expect(thread!.stats()[TunThreadStat.QUEUED]).toBe(sentBefore + 1);
    } finally {
      thread!.close();
      ep.resumeInput();
      side.kill();
      tun.close();
    }
  }, 30_000);
});
