/**
 * A wildcard-bound UDP server on a multi-homed host must answer from the
 * address the datagram arrived on (IP_PKTINFO / IPV6_PKTINFO), or a peer
 * that sent to the non-primary address gets replies from another one and a
 * QUIC client drops them (RFC 9000 §9: a path is the 4-tuple; a client only
 * accepts packets from the server address it uses).
 *
 *   netns <p>0 (client)            netns <p>1 (gateway)                      netns <p>2 (stub)
 *   <p>c 10.91.0.1/24 ── veth ──── <p>g 10.91.0.2/24  fd91::2/64  (primary)
 *        fd91::1/64                 <p>h 10.92.0.2/24  fd92::2/64 ── veth ── <p>w (no addresses)
 *   route 10.92.0.0/24 via 10.91.0.2, fd92::/64 via fd91::2
 *
 * The client sends to 10.92.0.2 / fd92::2 (on <p>h); the datagram comes in
 * on <p>g, and the route back to the client leaves through <p>g, whose own
 * address (10.91.0.2 / fd91::2) is what the kernel picks as source when the
 * socket bound to `::` does not say otherwise. Covered: raw UDP echo (the
 * client's recvfrom source), a QUIC handshake + stream echo with
 * QuicEndpoint, the same after a NAT rebinding of the client's port (an
 * nftables stateless port rewrite in the client namespace), and controls
 * that reproduce the wrong-source bug. Servers and clients run in the
 * namespaces as child processes over the built `dist/` (run
 * `npx tsc -p tsconfig.json` first; a stale dist fails loudly).
 */
import { statSync, writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { execFileSync, type ChildProcess } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDevCa, issueServerCert } from '../../src/certs/pki.js';
import { cleanupAll, createNetns, execAsync, isRoot, runPrefix, spawnIn, veth, warnIfNotRoot } from './netns.js';

warnIfNotRoot('test/netns/udp-pktinfo.test.ts');

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const dist = (p: string): string => pathToFileURL(join(ROOT, 'dist', p)).href;

/** Fails loudly when dist/ is older than the sources these children run. */
function checkDistFresh(): void {
  for (const m of ['net/udp-batch', 'net/native-udp', 'net/dgram-udp', 'quic/endpoint', 'quic/connection']) {
    const src = statSync(join(ROOT, 'src', `${m}.ts`)).mtimeMs;
    let out = 0;
    try {
      out = statSync(join(ROOT, 'dist', `${m}.js`)).mtimeMs;
    } catch {
      /* missing */
    }
    if (out < src) throw new Error(`dist/${m}.js is missing or older than src/${m}.ts: run npx tsc -p tsconfig.json`);
  }
}

// UDP echo over the native socket bound to [::]:port. Prints one JSON line
// per datagram with the local address the socket reported. With `nosticky`
// the local part is cleared before the reply (the kernel picks the source:
// the bug this test guards against).
const ECHO_SERVER = `
import { openNativeUdp } from ${JSON.stringify(dist('net/native-udp.js'))};
import { allocUdpBatch, readAddrSlotHost, readAddrSlotLocal, writeAddrSlotLocal } from ${JSON.stringify(dist('net/udp-batch.js'))};
const [port, mode] = process.argv.slice(2);
const s = openNativeUdp({ host: '::', port: Number(port) });
const b = allocUdpBatch(16, 2048);
s.onReadable(() => {
  const n = s.recv(b);
  for (let i = 0; i < n; i++) {
    console.log(JSON.stringify({ from: readAddrSlotHost(b.addrs, i), local: readAddrSlotLocal(b.addrs, i) }));
    if (mode === 'nosticky') writeAddrSlotLocal(b.addrs, i, null);
  }
  if (n > 0 && s.send(b, n) !== n) console.log(JSON.stringify({ shortSend: true }));
});
console.log(JSON.stringify({ ready: s.pktinfo }));
setTimeout(() => process.exit(0), 30000);
`;

// Plain node:dgram client (recvfrom semantics): three datagrams to dst, then
// the source address of every reply within 2 s.
const ECHO_CLIENT = `
import dgram from 'node:dgram';
const [dst, port] = process.argv.slice(2);
const s = dgram.createSocket(dst.includes(':') ? 'udp6' : 'udp4');
const replies = [];
s.on('message', (m, r) => replies.push({ from: r.address, port: r.port, data: m.toString() }));
s.bind(0, () => {
  for (let i = 0; i < 3; i++) s.send('ping' + i, Number(port), dst);
  setTimeout(() => { console.log(JSON.stringify(replies)); process.exit(0); }, 2000);
});
`;

// QUIC server: an endpoint on [::]:port over the native socket (or, as the
// control, over node:dgram, which cannot answer from the right address),
// echoing stream bytes.
const QUIC_SERVER = `
import { readFileSync } from 'node:fs';
import { openNativeUdp } from ${JSON.stringify(dist('net/native-udp.js'))};
import { openDgramUdpSocket } from ${JSON.stringify(dist('net/dgram-udp.js'))};
import { QuicEndpoint } from ${JSON.stringify(dist('quic/endpoint.js'))};
const [port, kind, dir] = process.argv.slice(2);
const socket = kind === 'native' ? openNativeUdp({ host: '::', port: Number(port) })
  : await openDgramUdpSocket({ host: '::', port: Number(port) });
const buf = new Uint8Array(65536);
new QuicEndpoint({ socket, keylogPath: null, server: {
  certPem: readFileSync(dir + '/cert.pem', 'utf8'), keyPem: readFileSync(dir + '/key.pem', 'utf8'), retry: 'off',
  onConnection: (c) => {
    console.log(JSON.stringify({ accepted: c.peerHost }));
    c.onEvent = (conn, ev) => {
      if (ev !== 'readable') return;
      for (const sid of conn.readableStreams()) {
        let r;
        while ((r = conn.streamRecv(sid, buf)) !== null) {
          conn.streamSend(sid, buf.slice(0, r[0]), r[1]);
          if (r[1]) console.log(JSON.stringify({ stream: sid, peerPort: conn.peerPort }));
        }
      }
    };
  },
} });
console.log(JSON.stringify({ ready: true }));
setTimeout(() => process.exit(0), 30000);
`;

// QUIC client like the agent's: an endpoint over the native socket bound to
// [::]:cport. The socket is wrapped to record the source of every datagram it
// receives. Echoes one stream; with \`rebind\` it then prints a
// {"phase":"rebind"} line, waits for a line on stdin (the test changes the
// client's apparent port meanwhile) and echoes a second stream.
const QUIC_CLIENT = `
import { readFileSync } from 'node:fs';
import { openNativeUdp } from ${JSON.stringify(dist('net/native-udp.js'))};
import { readAddrSlotHost } from ${JSON.stringify(dist('net/udp-batch.js'))};
import { QuicEndpoint } from ${JSON.stringify(dist('quic/endpoint.js'))};
const [dst, port, dir, cport, mode] = process.argv.slice(2);
const inner = openNativeUdp({ host: '::', port: Number(cport) });
const sources = new Set();
const socket = {
  batchSize: inner.batchSize, gso: inner.gso, gro: inner.gro,
  recv: (b) => { const n = inner.recv(b); for (let i = 0; i < n; i++) sources.add(readAddrSlotHost(b.addrs, i)); return n; },
  send: (b, n) => inner.send(b, n), onReadable: (cb) => inner.onReadable(cb), onWritable: (cb) => inner.onWritable(cb),
  localAddress: () => inner.localAddress(), close: () => inner.close(),
};
const ep = new QuicEndpoint({ socket, keylogPath: null, client: { caPem: readFileSync(dir + '/ca.pem', 'utf8') } });
const c = ep.connect(dst, Number(port), 'gw.test');
const out = { established: false, echoed: null, sources: [] };
const done = () => { out.sources = [...sources]; console.log(JSON.stringify(out)); process.exit(0); };
const established = await Promise.race([c.whenEstablished().then(() => true, () => false),
  new Promise((r) => setTimeout(() => r(false), 4000))]);
if (!established) done();
out.established = true;
const pending = new Map();
const buf = new Uint8Array(4096);
c.onEvent = (conn, ev) => {
  if (ev !== 'readable') return;
  for (const sid of conn.readableStreams()) {
    const p = pending.get(sid);
    let r;
    while ((r = conn.streamRecv(sid, buf)) !== null) {
      p.got.push(Buffer.from(buf.subarray(0, r[0])));
      if (r[1]) p.resolve(Buffer.concat(p.got).toString());
    }
  }
};
const roundTrip = (sid, text) => new Promise((resolve) => {
  pending.set(sid, { got: [], resolve });
  setTimeout(() => resolve(null), 4000);
  c.streamSend(sid, new TextEncoder().encode(text), true);
  c.flush();
});
out.echoed = await roundTrip(0, 'hello over ' + dst);
if (mode === 'rebind') {
  console.log(JSON.stringify({ phase: 'rebind' }));
  await new Promise((r) => process.stdin.once('data', r));
  sources.clear();
  out.echoedAfterRebind = await roundTrip(4, 'after rebinding');
}
done();
`;

describe.skipIf(!isRoot())('UDP replies leave from the address the datagram arrived on (netns, multi-homed)', () => {
  const prefix = runPrefix('p');
  let C = '';
  let G = '';
  let dir = '';
  let port = 45_000 + (process.pid % 1000) * 4;

  beforeAll(async () => {
    checkDistFresh();
    C = createNetns(prefix);
    G = createNetns(prefix);
    const W = createNetns(prefix);
    veth(C, `${prefix}c`, G, `${prefix}g`, { a: ['10.91.0.1/24', 'fd91::1/64'], b: ['10.91.0.2/24', 'fd91::2/64'] });
    veth(G, `${prefix}h`, W, `${prefix}w`, { a: ['10.92.0.2/24', 'fd92::2/64'] });
    execFileSync('ip', ['-n', C, 'route', 'add', '10.92.0.0/24', 'via', '10.91.0.2'], { stdio: 'pipe' });
    execFileSync('ip', ['-n', C, '-6', 'route', 'add', 'fd92::/64', 'via', 'fd91::2'], { stdio: 'pipe' });
    dir = mkdtempSync(join(tmpdir(), 'mtun-pktinfo-'));
    writeFileSync(join(dir, 'echo-server.mjs'), ECHO_SERVER);
    writeFileSync(join(dir, 'echo-client.mjs'), ECHO_CLIENT);
    writeFileSync(join(dir, 'quic-server.mjs'), QUIC_SERVER);
    writeFileSync(join(dir, 'quic-client.mjs'), QUIC_CLIENT);
    const ca = await createDevCa('mtun pktinfo test CA');
    const srv = await issueServerCert(ca, ['gw.test', '10.92.0.2', 'fd92::2', '10.91.0.2', 'fd91::2']);
    writeFileSync(join(dir, 'ca.pem'), ca.certPem);
    writeFileSync(join(dir, 'cert.pem'), srv.certPem);
    writeFileSync(join(dir, 'key.pem'), srv.keyPem);
  });

  afterAll(() => {
    cleanupAll();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** Starts `script` in the gateway namespace; resolves once it printed its ready line. */
  async function startServer(script: string, args: string[]): Promise<{ child: ChildProcess; lines: () => unknown[] }> {
    const child = spawnIn(G, process.execPath, [join(dir, script), ...args]);
    let out = '';
    let err = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`server did not start: ${err}`)), 10_000);
      const check = (): void => {
        if (out.includes('"ready"')) {
          clearTimeout(t);
          resolve();
        }
      };
      child.stdout!.on('data', check);
      child.once('exit', (code) => reject(new Error(`server exited ${code}: ${err}`)));
    });
    const lines = (): unknown[] => out.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as unknown);
    return { child, lines };
  }

  async function stop(child: ChildProcess): Promise<void> {
    if (child.exitCode !== null) return;
    const gone = new Promise<void>((r) => child.once('exit', () => r()));
    child.kill('SIGKILL');
    await gone;
  }

  for (const [dst, primary] of [['10.92.0.2', '10.91.0.2'], ['fd92::2', 'fd91::2']] as const) {
    it(`echo to the non-primary ${dst}: the client's recvfrom sees the reply from ${dst}, not ${primary}`, async () => {
      const p = port++;
      const srv = await startServer('echo-server.mjs', [String(p), 'sticky']);
      try {
        expect(srv.lines()[0]).toEqual({ ready: true }); // pktinfo enabled
        const r = await execAsync(C, process.execPath, [join(dir, 'echo-client.mjs'), dst, String(p)], 20_000);
        expect(r.code, r.stderr).toBe(0);
        const replies = JSON.parse(r.stdout) as { from: string; port: number; data: string }[];
        expect(replies.map((x) => x.data).sort()).toEqual(['ping0', 'ping1', 'ping2']);
        for (const x of replies) expect(x).toMatchObject({ from: dst, port: p });
        // The server saw the arrival address in the slot's local part.
        const seen = srv.lines().slice(1) as { from: string; local: string | null }[];
        expect(seen).toHaveLength(3);
        for (const s of seen) expect(s.local).toBe(dst);
      } finally {
        await stop(srv.child);
      }
    });

    it(`control: with the local part cleared, the kernel answers ${dst} from ${primary} (the bug)`, async () => {
      const p = port++;
      const srv = await startServer('echo-server.mjs', [String(p), 'nosticky']);
      try {
        const r = await execAsync(C, process.execPath, [join(dir, 'echo-client.mjs'), dst, String(p)], 20_000);
        expect(r.code, r.stderr).toBe(0);
        const replies = JSON.parse(r.stdout) as { from: string }[];
        expect(replies).toHaveLength(3);
        for (const x of replies) expect(x.from).toBe(primary);
      } finally {
        await stop(srv.child);
      }
    });

    it(`QUIC handshake and stream echo to the non-primary ${dst} with QuicEndpoint on [::] (RFC 9000 §9)`, async () => {
      const p = port++;
      const srv = await startServer('quic-server.mjs', [String(p), 'native', dir]);
      try {
        const r = await execAsync(C, process.execPath, [join(dir, 'quic-client.mjs'), dst, String(p), dir, '0'], 20_000);
        expect(r.code, r.stderr).toBe(0);
        const out = JSON.parse(r.stdout) as { established: boolean; echoed: string | null; sources: string[] };
        expect(out).toEqual({ established: true, echoed: `hello over ${dst}`, sources: [dst] });
        expect(srv.lines()).toContainEqual({ accepted: dst.includes(':') ? 'fd91::1' : '10.91.0.1' });
      } finally {
        await stop(srv.child);
      }
    });

    it(`QUIC keeps answering from ${dst} after the client's port changes (NAT rebinding, RFC 9000 §9.3)`, async () => {
      const p = port++;
      const cport = p + 500;
      const nport = p + 700;
      const srv = await startServer('quic-server.mjs', [String(p), 'native', dir]);
      const cli = spawnIn(C, process.execPath, [join(dir, 'quic-client.mjs'), dst, String(p), dir, String(cport), 'rebind']);
      let out = '';
      let err = '';
      cli.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
      cli.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
      const exited = new Promise<void>((r) => cli.once('exit', () => r()));
      const table = `${prefix}rb`;
      try {
        await new Promise<void>((resolve, reject) => {
          const t = setTimeout(() => reject(new Error(`client never reached the rebind phase: ${out} ${err}`)), 15_000);
          cli.stdout!.on('data', () => out.includes('"rebind"') && (clearTimeout(t), resolve()));
          void exited.then(() => reject(new Error(`client exited early: ${out} ${err}`)));
        });
        // Stateless port rewrite in the client namespace, ahead of conntrack
        // (priority -300): the server now sees the client at port nport.
        const rules = `table inet ${table} {
          chain out { type filter hook output priority -300; policy accept;
            meta nfproto ${dst.includes(':') ? 'ipv6' : 'ipv4'} udp sport ${cport} udp dport ${p} udp sport set ${nport}; }
          chain in { type filter hook prerouting priority -300; policy accept;
            udp sport ${p} udp dport ${cport} drop;
            udp sport ${p} udp dport ${nport} udp dport set ${cport}; }
        }`;
        const rulesFile = join(dir, `${table}.nft`);
        writeFileSync(rulesFile, rules);
        const nft = await execAsync(C, 'nft', ['-f', rulesFile]);
        expect(nft.code, nft.stderr).toBe(0);
        cli.stdin!.write('go\n');
        await exited;
        const res = JSON.parse(out.split('\n').filter((l) => l.startsWith('{')).pop()!) as Record<string, unknown>;
        expect(res).toEqual({
          established: true, echoed: `hello over ${dst}`, echoedAfterRebind: 'after rebinding', sources: [dst],
        });
        // One connection; the server saw the second stream from the new port.
        const acc = srv.lines().filter((l) => (l as { accepted?: string }).accepted !== undefined);
        expect(acc).toHaveLength(1);
        expect(srv.lines()).toContainEqual({ stream: 0, peerPort: cport });
        expect(srv.lines()).toContainEqual({ stream: 4, peerPort: nport });
      } finally {
        cli.kill('SIGKILL');
        await stop(srv.child);
      }
    });

    it(`control: a node:dgram QUIC server on [::] answers ${dst} from ${primary} and the handshake fails`, async () => {
      const p = port++;
      const srv = await startServer('quic-server.mjs', [String(p), 'dgram', dir]);
      try {
        const r = await execAsync(C, process.execPath, [join(dir, 'quic-client.mjs'), dst, String(p), dir, '0'], 20_000);
        expect(r.code, r.stderr).toBe(0);
        const out = JSON.parse(r.stdout) as { established: boolean; echoed: string | null; sources: string[] };
        expect(out).toEqual({ established: false, echoed: null, sources: [primary] });
      } finally {
        await stop(srv.child);
      }
    });
  }
});
