/**
 * Real-kernel TUN tests: ping from a namespace through a TUN answered by a JS
 * responder in this process, IPv4 and IPv6, plus the open/configure errors.
 *
 *   netns <prefix>N                          |  this process
 *   ping 10.77.0.2 / fd77::2                 |
 *     -> route 10.77.0.0/24, fd77::/64 -> tun <prefix>t  ==fd==>  responder
 *        (addresses 10.77.0.1/24, fd77::1/64)             <==fd==  (echo reply)
 */
import { afterAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { nativeAddonPath } from '../../src/native/addon.js';
import { explainOpenError, openTun, type NativeTun } from '../../src/tun/native-tun.js';
import { cleanupAll, createNetns, exec, execAsync, isRoot, runPrefix, warnIfNotRoot } from './netns.js';

warnIfNotRoot('test/netns/native-tun.test.ts');

const HEADROOM = 16;

/** RFC 1071 Internet checksum over buf[start, end) plus an initial sum. */
function csum(buf: Buffer, start: number, end: number, initial = 0): number {
  let sum = initial;
  for (let i = start; i + 1 < end; i += 2) sum += buf.readUInt16BE(i);
  if ((end - start) & 1) sum += buf[end - 1]! << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

/**
 * Turns an echo request at buf[off..off+len) into the echo reply in place.
 * Returns false for anything else. All checksums are computed from scratch,
 * so the kernel accepting the reply proves them right.
 */
function makeEchoReply(buf: Buffer, off: number, len: number): boolean {
  const version = buf[off]! >> 4;
  if (version === 4) {
    const ihl = (buf[off]! & 0x0f) * 4;
    if (buf[off + 9] !== 1 || buf[off + ihl] !== 8) return false; // ICMP echo request (RFC 792)
    const src = buf.readUInt32BE(off + 12);
    buf.writeUInt32BE(buf.readUInt32BE(off + 16), off + 12);
    buf.writeUInt32BE(src, off + 16);
    buf[off + 8] = 64;
    buf.writeUInt16BE(0, off + 10);
    buf.writeUInt16BE(csum(buf, off, off + ihl), off + 10); // RFC 791 header checksum
    buf[off + ihl] = 0; // echo reply
    buf.writeUInt16BE(0, off + ihl + 2);
    buf.writeUInt16BE(csum(buf, off + ihl, off + len), off + ihl + 2);
    return true;
  }
  if (version === 6) {
    if (buf[off + 6] !== 58 || buf[off + 40] !== 128) return false; // ICMPv6 echo request (RFC 4443 §4.1)
    const src = Buffer.from(buf.subarray(off + 8, off + 24));
    buf.copy(buf, off + 8, off + 24, off + 40);
    src.copy(buf, off + 24);
    buf[off + 7] = 64;
    buf[off + 40] = 129; // echo reply (RFC 4443 §4.2)
    buf.writeUInt16BE(0, off + 42);
    const plen = len - 40;
    // RFC 8200 §8.1 pseudo-header: addresses, upper-layer length, next header.
    let pseudo = 0;
    for (let i = off + 8; i < off + 40; i += 2) pseudo += buf.readUInt16BE(i);
    pseudo += plen + 58;
    buf.writeUInt16BE(csum(buf, off + 40, off + len, pseudo), off + 42);
    return true;
  }
  return false;
}

function startResponder(tun: NativeTun): { replies: () => number } {
  const bufs = Array.from({ length: tun.batchSize }, () => Buffer.alloc(HEADROOM + tun.mtu));
  const sizes = new Uint32Array(tun.batchSize);
  const out: Buffer[] = [];
  const outSizes = new Uint32Array(tun.batchSize);
  let replies = 0;
  tun.onReadable(() => {
    const n = tun.read(bufs, sizes, HEADROOM);
    out.length = 0;
    for (let i = 0; i < n; i++) {
      if (makeEchoReply(bufs[i]!, HEADROOM, sizes[i]!)) {
        outSizes[out.length] = sizes[i]!;
        out.push(bufs[i]!);
      }
    }
    if (out.length) replies += tun.write(out, outSizes, HEADROOM, out.length);
  });
  return { replies: () => replies };
}

describe.skipIf(!isRoot())('native TUN in a namespace', () => {
  const prefix = runPrefix('t');
  afterAll(() => cleanupAll());

  it('answers IPv4 and IPv6 ping through the TUN (RFC 792, RFC 4443 §4)', async () => {
    const ns = createNetns(prefix);
    const tun = await openTun({
      name: `${prefix}tun`,
      mtu: 1400,
      addresses: ['10.77.0.1/24', 'fd77::1/64'],
      netns: ns,
    });
    try {
      expect(tun.name).toBe(`${prefix}tun`);
      expect(exec(ns, 'ip', 'link', 'show', tun.name)).toMatch(/mtu 1400/);
      const r = startResponder(tun);
      const v4 = await execAsync(ns, 'ping', ['-c', '3', '-i', '0.2', '-W', '2', '10.77.0.2']);
      expect(v4.stdout, v4.stderr).toMatch(/3 packets transmitted, 3 received/);
      const v6 = await execAsync(ns, 'ping', ['-6', '-c', '3', '-i', '0.2', '-W', '2', '-s', '1200', 'fd77::2']);
      expect(v6.stdout, v6.stderr).toMatch(/3 packets transmitted, 3 received/);
      expect(r.replies()).toBeGreaterThanOrEqual(6);
      const st = tun.stats();
      expect(st.txPackets).toBe(r.replies());
      expect(st.rxPackets).toBeGreaterThanOrEqual(6);
    } finally {
      tun.close();
    }
    // The kernel removes the interface with the fd.
    expect(() => exec(ns, 'ip', 'link', 'show', `${prefix}tun`)).toThrow();
    expect(() => tun.read([], new Uint32Array(0), 0)).toThrow(/used after close/);
  });

  it('adds and removes routes; rejects an existing route by name', async () => {
    const ns = createNetns(prefix);
    const tun = await openTun({ name: `${prefix}r`, mtu: 1500, addresses: ['10.78.0.1/24'], routes: ['10.79.0.0/16'], netns: ns });
    try {
      expect(exec(ns, 'ip', 'route', 'show')).toMatch(/10\.79\.0\.0\/16 dev/);
      await tun.addRoutes(['10.80.0.0/16', 'fd80::/48']);
      expect(exec(ns, 'ip', '-6', 'route', 'show')).toMatch(/fd80::\/48 dev/);
      await expect(tun.addRoutes(['10.80.0.0/16'])).rejects.toThrow(/tun: route 10\.80\.0\.0\/16 already exists/);
      await tun.removeRoutes(['10.80.0.0/16']);
      expect(exec(ns, 'ip', 'route', 'show')).not.toMatch(/10\.80\.0\.0/);
    } finally {
      tun.close();
    }
  });

  it('names the value at fault: name too long, name taken, MTU, address in use', async () => {
    const ns = createNetns(prefix);
    await expect(openTun({ name: 'x'.repeat(16), mtu: 1500, addresses: [], netns: ns })).rejects.toThrow(
      /tun: interface name "x{16}" is too long \(16 bytes; Linux allows at most 15\)/,
    );
    await expect(openTun({ name: `${prefix}m`, mtu: 67, addresses: [], netns: ns })).rejects.toThrow(/tun: MTU 67 out of range 68\.\.65535/);
    await expect(openTun({ name: `${prefix}m`, mtu: 70000, addresses: [], netns: ns })).rejects.toThrow(/tun: MTU 70000/);
    await expect(openTun({ name: `${prefix}m`, mtu: 1000, addresses: ['fd00::1/64'], netns: ns })).rejects.toThrow(
      /tun: MTU 1000 is below 1280, the IPv6 minimum/,
    );
    const a = await openTun({ name: `${prefix}a`, mtu: 1500, addresses: ['10.81.0.1/24'] , netns: ns });
    try {
      await expect(openTun({ name: `${prefix}b`, mtu: 1500, addresses: ['10.81.0.1/24'], netns: ns })).rejects.toThrow(
        new RegExp(`tun: address 10\\.81\\.0\\.1/24 is already in use on ${prefix}a in netns ${ns}`),
      );
      // The failed open left no interface behind.
      expect(exec(ns, 'ip', 'link', 'show')).not.toMatch(new RegExp(`${prefix}b`));
      // Same name in the same namespace: the move into the namespace is refused.
      await expect(openTun({ name: `${prefix}a`, mtu: 1500, addresses: [], netns: ns })).rejects.toThrow(
        new RegExp(`tun: interface name "${prefix}a" is taken in netns ${ns}`),
      );
    } finally {
      a.close();
    }
    // A name taken in this process's namespace by an open TUN.
    const held = await openTun({ name: `${prefix}h`, mtu: 1500, addresses: [] });
    try {
      await expect(openTun({ name: `${prefix}h`, mtu: 1500, addresses: [] })).rejects.toThrow(
        new RegExp(`tun: interface name "${prefix}h" is taken`),
      );
    } finally {
      held.close();
    }
    // A name taken by a non-TUN interface (loopback).
    await expect(openTun({ name: 'lo', mtu: 1500, addresses: [] })).rejects.toThrow(/tun: interface name "lo" is taken by a non-TUN/);
  });

  it('throws TypeErrors, not crashes, on bad read/write arguments', async () => {
    const ns = createNetns(prefix);
    const tun = await openTun({ name: `${prefix}e`, mtu: 1500, addresses: ['10.81.0.1/24'], netns: ns });
    try {
      const sizes = new Uint32Array(4);
      expect(() => tun.read([Buffer.alloc(100)], sizes, 0)).toThrow(/needs offset 0 \+ MTU 1500/);
      expect(() => tun.read(['x' as unknown as Buffer], sizes, 0)).toThrow(/element 0 is not/);
      expect(() => tun.read([Buffer.alloc(2000)], sizes, -1)).toThrow(/offset/);
      expect(() => tun.read(null as unknown as Buffer[], sizes, 0)).toThrow(/bufs/);
      expect(() => tun.write([Buffer.alloc(10)], Uint32Array.of(20), 0, 1)).toThrow(/runs past its 10-byte buffer/);
      expect(() => tun.write([Buffer.alloc(10)], Uint32Array.of(5), 0, 2)).toThrow(/count exceeds/);
      expect(() => tun.write([Buffer.alloc(10)], new Uint8Array(1) as unknown as Uint32Array, 0, 1)).toThrow(/Uint32Array/);
      // Garbage (not IPv4/IPv6) is refused by the kernel: skipped and counted, not thrown.
      expect(tun.write([Buffer.from([0x00, 1, 2, 3])], Uint32Array.of(4), 0, 1)).toBe(1);
      expect(tun.stats().txInvalid).toBe(1);
      // The device still reads and writes after all that: a ping through it is answered.
      const r = startResponder(tun);
      const ping = await execAsync(ns, 'ping', ['-c', '1', '-W', '2', '10.81.0.2']);
      expect(ping.stdout, ping.stderr).toMatch(/1 packets transmitted, 1 received/);
      expect(r.replies()).toBe(1);
      expect(tun.stats().txInvalid).toBe(1);
    } finally {
      tun.close();
    }
  });
});

// The addon's raw errno for the two environment problems, seen from a child
// process: without CAP_NET_ADMIN (uid nobody) and without /dev/net/tun
// (a private mount namespace hides it). explainOpenError turns these codes
// into the user-facing messages (src/tun/native-tun.test.ts).
describe.skipIf(!isRoot())('TUN open without privileges or device', () => {
  const probe = `try{require(${JSON.stringify(nativeAddonPath())}).tunOpen('mtprobe%d',false);console.log('opened')}catch(e){console.log(e.code+' '+e.message)}`;
  // Without CAP_NET_ADMIN the kernel refuses at one of two points, depending
  // on the device node's mode: 0600 (root only, common on hardened hosts)
  // fails the open() with EACCES; 0666 (the udev default on most distros)
  // opens and then fails TUNSETIFF with EPERM. Each case runs against a
  // device node of exactly that mode, made in a private mount namespace, so
  // both are covered whatever the host's own /dev/net/tun looks like.
  const unprivileged = (mode: string) =>
    execFileP('unshare', [
      '-m',
      'sh',
      '-c',
      `mount -t tmpfs none /dev/net && mknod -m ${mode} /dev/net/tun c 10 200 && exec setpriv --reuid=65534 --regid=65534 --clear-groups "${process.execPath}" -e "$0"`,
      probe,
    ]);
  it.each([
    ['0666', 'EPERM tun: ioctl TUNSETIFF: Operation not permitted'],
    ['0600', 'EACCES tun: open /dev/net/tun: Permission denied'],
  ])('reports the missing CAP_NET_ADMIN with /dev/net/tun mode %s', async (mode, raw) => {
    const r = (await unprivileged(mode)).trim();
    expect(r).toBe(raw);
    const [code] = r.split(' ');
    const explained = explainOpenError({ code, name: 'Error', message: r }, 'mtprobe%d').message;
    expect(explained).toBe(
      'tun: not permitted to create TUN interface "mtprobe%d": run as root or grant CAP_NET_ADMIN (e.g. setcap cap_net_admin+ep "$(readlink -f "$(which node)")")',
    );
  });
  it('reports ENOENT when /dev/net/tun is absent', async () => {
    const r = await execFileP('unshare', ['-m', 'sh', '-c', `mount -t tmpfs none /dev/net && exec "${process.execPath}" -e "$0"`, probe]);
    expect(r.trim()).toBe('ENOENT tun: open /dev/net/tun: No such file or directory');
  });
});

function execFileP(cmd: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { encoding: 'utf8', timeout: 20_000 }, (e, stdout, stderr) => (e ? reject(new Error(`${e.message} ${stderr}`)) : resolve(stdout)));
  });
}
