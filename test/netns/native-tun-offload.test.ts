/**
 * TUN offload path (IFF_VNET_HDR, TSO4/TSO6 split in C): a TCP stream through
 * a TUN<->TUN forwarder in this process delivers exactly the bytes sent, with
 * and without offload, over IPv4 and IPv6.
 *
 *   netns <p>N (client)                this process                netns <p>M (server)
 *   tun <p>a 10.60.0.1/24, fd60::1/64  read a -> write b           tun <p>b 10.61.0.2/24, fd61::2/64
 *   route 10.61.0.0/24, fd61::/64 -> a read b -> write a           route 10.60.0.0/24, fd60::/64 -> b
 *   node client --TCP 8 MB-->                                      node server (sha256 of bytes)
 */
import { afterAll, describe, expect, it } from 'vitest';
import { nativeAddonPath } from '../../src/native/addon.js';
import { craftTcp } from '../../src/packet/craft.js';
import { openTun, type NativeTun } from '../../src/tun/native-tun.js';
import { cleanupAll, createNetns, execAsync, isRoot, runPrefix, warnIfNotRoot } from './netns.js';

warnIfNotRoot('test/netns/native-tun-offload.test.ts');

const HEAD = 32;
const BYTES = 8 * 1024 * 1024;

function forward(from: NativeTun, to: NativeTun): void {
  const bufs = Array.from({ length: from.batchSize }, () => Buffer.alloc(HEAD + from.mtu));
  const sizes = new Uint32Array(from.batchSize);
  from.onReadable(() => {
    const n = from.read(bufs, sizes, HEAD);
    if (n > 0) to.write(bufs, sizes, HEAD, n);
  });
}

// Deterministic bytes (xorshift) so both ends can hash without sharing a file.
const GEN = `function gen(n){const b=Buffer.alloc(n);let x=0x12345678;for(let i=0;i<n;i+=4){x^=x<<13;x^=x>>>17;x^=x<<5;b.writeInt32LE(x|0,i);}return b;}`;
const SERVER = `const net=require('net'),c=require('crypto');const h=c.createHash('sha256');let n=0;
const s=net.createServer(k=>{k.on('data',d=>{h.update(d);n+=d.length});k.on('end',()=>{console.log(n+' '+h.digest('hex'));process.exit(0)})});
s.listen(5201,process.argv[1],()=>console.log('ready'));setTimeout(()=>process.exit(3),30000);`;
const CLIENT = `${GEN}const net=require('net'),c=require('crypto');const b=gen(${BYTES});
const k=net.connect(5201,process.argv[1],()=>{k.end(b)});k.on('close',()=>{console.log(b.length+' '+c.createHash('sha256').update(b).digest('hex'));process.exit(0)});
k.on('error',e=>{console.error(e.message);process.exit(2)});setTimeout(()=>process.exit(3),30000);`;

// UDP over the raw addon in the namespaces: the client sends 100 GSO sends of
// 64 × 1000-byte datagrams; the server checks each datagram's size and marker.
const ADDON = JSON.stringify(nativeAddonPath());
const USO_SERVER = `const n=require(${ADDON});const s=n.udpOpen(0,'::',6000,1<<22,1<<22,false);
const bufs=Array.from({length:64},()=>Buffer.alloc(2048));const sz=new Uint32Array(64),ad=new Uint8Array(64*36),sg=new Uint32Array(64),st=new Float64Array(11);
let got=0,bad=0;n.pollStart(s.fd,1,()=>{const k=n.udpRecv(s.fd,bufs,sz,ad,sg,64,st);for(let i=0;i<k;i++){const v=bufs[i].readUInt32BE(0);if(sz[i]!==1000||bufs[i][999]!==(v&255))bad++;got++;}
if(got>=6400){console.log(got+' '+bad);process.exit(0)}});setTimeout(()=>{console.log(got+' '+bad);process.exit(1)},10000);console.log('ready');`;
const USO_CLIENT = `const n=require(${ADDON});const slot=JSON.parse(process.argv[1]);const s=n.udpOpen(0,'::',0,1<<22,1<<22,false);
const b=Buffer.alloc(64000);for(let k=0;k<64;k++){b.writeUInt32BE(k,k*1000);b[k*1000+999]=k&255}
const sz=Uint32Array.of(64000),ad=Uint8Array.from({length:36},(_,k)=>slot[k]??0),sg=Uint32Array.of(1000),st=new Float64Array(11);
let sent=0;const t=setInterval(()=>{sent+=n.udpSend(s.fd,0,[b],sz,ad,sg,1,true,st);if(sent>=100){clearInterval(t);process.exit(st[7]===100?0:4)}},2);`;

describe.skipIf(!isRoot())('native TUN offload (TSO split)', () => {
  const prefix = runPrefix('o');
  afterAll(() => cleanupAll());

  for (const offload of [false, true]) {
    it(`carries a TCP stream byte-exact through a TUN<->TUN forwarder (offload ${offload ? 'on' : 'off'}, IPv4 + IPv6)`, async () => {
      const nsA = createNetns(prefix);
      const nsB = createNetns(prefix);
      const a = await openTun({ name: `${prefix}a`, mtu: 1500, offload, netns: nsA,
        addresses: ['10.60.0.1/24', 'fd60::1/64'], routes: ['10.61.0.0/24', 'fd61::/64'] });
      const b = await openTun({ name: `${prefix}b`, mtu: 1500, offload, netns: nsB,
        addresses: ['10.61.0.2/24', 'fd61::2/64'], routes: ['10.60.0.0/24', 'fd60::/64'] });
      try {
        expect(a.offloads !== 0).toBe(offload);
        forward(a, b);
        forward(b, a);
        for (const server of ['10.61.0.2', 'fd61::2']) {
          const { spawnIn } = await import('./netns.js');
          const srv = spawnIn(nsB, 'node', ['-e', SERVER, server]);
          let out = '';
          srv.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
          await new Promise<void>((resolve, reject) => {
            const t = setTimeout(() => reject(new Error('server did not start')), 10_000);
            srv.stdout!.on('data', () => {
              if (out.includes('ready')) {
                clearTimeout(t);
                resolve();
              }
            });
          });
          const t0 = Date.now();
          const cli = await execAsync(nsA, 'node', ['-e', CLIENT, server], 60_000);
          const ms = Date.now() - t0;
          await new Promise<void>((resolve) => (srv.exitCode !== null ? resolve() : srv.once('exit', () => resolve())));
          const got = out.split('\n').find((l) => /^\d+ [0-9a-f]{64}$/.test(l));
          expect(cli.code, cli.stderr).toBe(0);
          expect(got).toBe(cli.stdout.trim());
          expect(got!.startsWith(`${BYTES} `)).toBe(true);
          console.log(`offload ${offload ? 'on ' : 'off'} ${server}: ${BYTES} bytes in ${ms} ms; tun a ${JSON.stringify(a.stats())} tun b ${JSON.stringify(b.stats())}`);
        }
        if (offload) {
          expect(a.stats().rxSuper).toBeGreaterThan(0); // TSO split on read
          expect(b.stats().txSuper).toBeGreaterThan(0); // GRO coalescing on write
        } else {
          expect(a.stats().rxSuper).toBe(0);
          expect(b.stats().txSuper).toBe(0);
        }
        expect(a.stats().rxInvalid).toBe(0);
      } finally {
        a.close();
        b.close();
      }
    });
  }

  it('a segment whose checksum fails is not coalesced into a run: written alone, unchanged, the receiving stack drops it (TcpInCsumErrors)', async () => {
    // A run goes to the kernel with CHECKSUM_PARTIAL and the kernel computes every segment's TCP checksum anew:
    // a segment corrupted before it reached us would come out valid (independent review of tun-offload.c).
    const nsB = createNetns(prefix);
    const b = await openTun({ name: `${prefix}cb`, mtu: 1500, offload: true, netns: nsB,
      addresses: ['10.64.0.2/24'], routes: ['10.65.0.0/24'] });
    try {
      const nstat = async (): Promise<number> => {
        const r = await execAsync(nsB, 'nstat', ['-az', 'TcpInCsumErrors'], 10_000);
        return Number(/TcpInCsumErrors\s+(\d+)/.exec(r.stdout)?.[1] ?? NaN);
      };
      const errorsBefore = await nstat();
      // Four contiguous 1000-byte segments of one flow toward a closed port of the TUN's address; the third corrupted.
      const segs = [0, 1, 2, 3].map((k) => craftTcp({ src: '10.65.0.1', dst: '10.64.0.2', srcPort: 40000, dstPort: 9,
        seq: 1000 + k * 1000, ack: 1, flags: 0x10, window: 512, payload: new Uint8Array(1000).fill(k + 1) }));
      segs[2]![segs[2]!.length - 1] ^= 0xff; // one payload byte: the TCP checksum no longer verifies
      const bufs = segs.map((p) => { const buf = Buffer.alloc(HEAD + p.length); p.copy(buf, HEAD); return buf; });
      const sizes = Uint32Array.from(segs.map((p) => p.length));
      expect(b.write(bufs, sizes, HEAD, 4)).toBe(4);
      await new Promise((r) => setTimeout(r, 200));
      // Segments 1 and 2 may still form a run; the corrupted one goes alone and is the kernel's to drop.
      expect(b.stats().txSuper).toBeLessThanOrEqual(1);
      expect(await nstat() - errorsBefore, 'the receiving stack saw the corrupted segment as such').toBe(1);
    } finally {
      b.close();
    }
  });

  it('splits UDP GSO (USO) super-packets into datagrams with valid checksums, IPv4 + IPv6', async (ctx) => {
    const nsA = createNetns(prefix);
    const nsB = createNetns(prefix);
    const a = await openTun({ name: `${prefix}ua`, mtu: 1500, offload: true, netns: nsA,
      addresses: ['10.62.0.1/24', 'fd62::1/64'], routes: ['10.63.0.0/24', 'fd63::/64'] });
    const b = await openTun({ name: `${prefix}ub`, mtu: 1500, offload: true, netns: nsB,
      addresses: ['10.63.0.2/24', 'fd63::2/64'], routes: ['10.62.0.0/24', 'fd62::/64'] });
    try {
      if ((a.offloads & 0x20) === 0) {
        console.warn('SKIP USO: kernel refused TUN_F_USO4/USO6');
        ctx.skip();
      }
      forward(a, b);
      forward(b, a);
      const { spawnIn } = await import('./netns.js');
      const v4 = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 255, 255, 10, 63, 0, 2, 6000 >> 8, 6000 & 255, 0, 0];
      const v6 = [0xfd, 0x63, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 6000 >> 8, 6000 & 255, 0, 0];
      let supers = 0;
      for (const slot of [v4, v6]) {
        const srv = spawnIn(nsB, 'node', ['-e', USO_SERVER]);
        let out = '';
        srv.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
        await new Promise<void>((resolve, reject) => {
          const t = setTimeout(() => reject(new Error('server did not start')), 10_000);
          srv.stdout!.on('data', () => out.includes('ready') && (clearTimeout(t), resolve()));
        });
        const cli = await execAsync(nsA, 'node', ['-e', USO_CLIENT, JSON.stringify(slot)], 30_000);
        expect(cli.code, cli.stderr).toBe(0);
        await new Promise<void>((resolve) => (srv.exitCode !== null ? resolve() : srv.once('exit', () => resolve())));
        expect(out).toMatch(/^ready\n6400 0\n$/);
        expect(a.stats().rxSuper - supers).toBeGreaterThanOrEqual(100);
        supers = a.stats().rxSuper;
      }
      expect(a.stats().rxInvalid).toBe(0);
    } finally {
      a.close();
      b.close();
    }
  });
});
