/**
 * Native batched UDP over loopback: 10,000-datagram echo with exact counts and
 * contents, GSO send, GRO receive, errors. Real kernel, no namespace needed.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { nativeAvailable } from '../native/addon.js';
import { openNativeUdp, type NativeUdpSocket } from './native-udp.js';
import {
  allocUdpBatch,
  copyAddrSlot,
  readAddrSlotHost,
  readAddrSlotLocal,
  readAddrSlotPort,
  writeAddrSlot,
  writeAddrSlotLocal,
} from './udp-batch.js';
import type { UdpBatch } from './udp.js';
import { ADDR_SLOT_BYTES } from './udp.js';

const available = nativeAvailable();
if (!available) console.warn('SKIP src/net/native-udp.test.ts: native addon not built (npm rebuild)');

function fill(buf: Buffer, seq: number, len: number): void {
  buf.writeUInt32BE(seq, 0);
  for (let k = 4; k < len; k++) buf[k] = (seq * 7 + k) & 0xff;
}
function check(buf: Buffer, len: number): number {
  const seq = buf.readUInt32BE(0);
  for (let k = 4; k < len; k++) if (buf[k] !== ((seq * 7 + k) & 0xff)) return -1;
  return seq;
}
const sizeOf = (seq: number): number => 8 + ((seq * 37) % 1200);

describe.skipIf(!available)('native UDP socket', () => {
  const open: NativeUdpSocket[] = [];
  afterEach(() => {
    for (const s of open.splice(0)) s.close();
  });
  const sock = (o: Parameters<typeof openNativeUdp>[0]): NativeUdpSocket => {
    const s = openNativeUdp(o);
    open.push(s);
    return s;
  };

  for (const [label, host, peer] of [['IPv4', '127.0.0.1', '127.0.0.1'], ['IPv6', '::1', '::1'], ['dual-stack to IPv4', '::', '127.0.0.1']] as const) {
    it(`echoes 10,000 datagrams with exact counts and contents (${label})`, async () => {
      const total = 10_000;
      const window = 256;
      const server = sock({ host, batchSize: 64 });
      const client = sock({ host: peer === '::1' ? '::1' : '127.0.0.1', batchSize: 64 });
      const sport = server.localAddress().port;
      const sb = allocUdpBatch(64, 2048);
      let echoed = 0;
      server.onReadable(() => {
        const n = server.recv(sb);
        // Reply to each source in place: the address slots already hold it.
        let off = 0;
        while (off < n) off += server.send({ ...sb, bufs: sb.bufs.slice(off), sizes: sb.sizes.subarray(off), addrs: sb.addrs.subarray(off * ADDR_SLOT_BYTES), segs: sb.segs.subarray(off) }, n - off);
        echoed += n;
      });
      const tx = allocUdpBatch(64, 2048);
      const rx = allocUdpBatch(64, 2048);
      const seen = new Uint8Array(total);
      let sent = 0;
      let received = 0;
      let bad = 0;
      const pump = (): void => {
        let count = 0;
        while (sent + count < total && sent + count - received < window && count < 64) {
          const seq = sent + count;
          fill(tx.bufs[count]!, seq, sizeOf(seq));
          tx.sizes[count] = sizeOf(seq);
          writeAddrSlot(tx.addrs, count, peer, sport);
          count++;
        }
        if (count > 0) sent += client.send(tx, count);
      };
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`timeout: sent ${sent} echoed ${echoed} received ${received}`)), 20_000);
        client.onWritable(pump);
        client.onReadable(() => {
          const n = client.recv(rx);
          for (let i = 0; i < n; i++) {
            const seq = check(rx.bufs[i]!, rx.sizes[i]!);
            if (seq < 0 || seq >= total || rx.sizes[i] !== sizeOf(seq) || seen[seq]) bad++;
            else seen[seq] = 1;
            if (readAddrSlotPort(rx.addrs, i) !== sport) bad++;
          }
          received += n;
          if (received >= total) {
            clearTimeout(timer);
            resolve();
          } else pump();
        });
        pump();
      });
      expect(bad).toBe(0);
      expect(received).toBe(total);
      expect(echoed).toBe(total);
      expect(seen.every((x) => x === 1)).toBe(true);
      expect(client.stats()).toMatchObject({ txDatagrams: total, rxDatagrams: total, txErrors: 0, rxTruncated: 0 });
      expect(server.stats()).toMatchObject({ txDatagrams: total, rxDatagrams: total, txErrors: 0 });
    });
  }

  it('coalesces equal-size datagrams to one peer into UDP GSO sends; the receiver sees them one by one', async () => {
    const rxs = sock({ host: '127.0.0.1' });
    const txs = sock({ host: '127.0.0.1' });
    if (!txs.gso) {
      console.warn('SKIP GSO: kernel lacks UDP_SEGMENT');
      return;
    }
    const port = rxs.localAddress().port;
    const b = allocUdpBatch(64, 1500);
    for (let i = 0; i < 64; i++) {
      const len = i === 63 ? 700 : 1000; // the last segment may be shorter (63,700 bytes: one GSO send)
      fill(b.bufs[i]!, i, len);
      b.sizes[i] = len;
      writeAddrSlot(b.addrs, i, '127.0.0.1', port);
    }
    expect(txs.send(b, 64)).toBe(64);
    expect(txs.stats().txGsoSends).toBe(1);
    expect(txs.stats().txDatagrams).toBe(64);
    const r = allocUdpBatch(64, 1500);
    let got = 0;
    const deadline = Date.now() + 5000;
    while (got < 64 && Date.now() < deadline) {
      const n = rxs.recv(r);
      for (let i = 0; i < n; i++) {
        expect(r.segs[i]).toBe(0);
        expect(check(r.bufs[i]!, r.sizes[i]!)).toBe(got + i);
        expect(r.sizes[i]).toBe(got + i === 63 ? 700 : 1000);
      }
      got += n;
      if (n === 0) await new Promise((res) => setTimeout(res, 5));
    }
    expect(got).toBe(64);
  });

  it('splits a coalesced run at the 65,507-byte GSO limit', () => {
    const rxs = sock({ host: '127.0.0.1' });
    const txs = sock({ host: '127.0.0.1' });
    if (!txs.gso) return;
    const b = allocUdpBatch(64, 1200);
    for (let i = 0; i < 64; i++) {
      b.sizes[i] = 1200;
      writeAddrSlot(b.addrs, i, '127.0.0.1', rxs.localAddress().port);
    }
    expect(txs.send(b, 64)).toBe(64);
    // 54 × 1200 = 64,800 fits; the remaining 10 go in a second GSO send.
    expect(txs.stats()).toMatchObject({ txGsoSends: 2, txDatagrams: 64, txBytes: 64 * 1200 });
  });

  it('sends an explicit GSO slot (segs) and receives it coalesced with GRO', async () => {
    const rxs = sock({ host: '::1', gro: true });
    const txs = sock({ host: '::1' });
    if (!txs.gso || !rxs.gro) {
      console.warn(`SKIP GRO/GSO: kernel lacks ${txs.gso ? 'UDP_GRO' : 'UDP_SEGMENT'}`);
      return;
    }
    const port = rxs.localAddress().port;
    const b = allocUdpBatch(1, 65535);
    const seg = 1000;
    for (let k = 0; k < 20; k++) fill(b.bufs[0]!.subarray(k * seg), k, seg);
    b.sizes[0] = 20 * seg;
    b.segs[0] = seg;
    writeAddrSlot(b.addrs, 0, '::1', port);
    expect(txs.send(b, 1)).toBe(1);
    expect(txs.stats().txDatagrams).toBe(20);
    const r = allocUdpBatch(4, 65535);
    let bytes = 0;
    let next = 0;
    const deadline = Date.now() + 5000;
    while (bytes < 20 * seg && Date.now() < deadline) {
      const n = rxs.recv(r);
      for (let i = 0; i < n; i++) {
        const s = r.segs[i] || r.sizes[i]!;
        for (let off = 0; off < r.sizes[i]!; off += s) {
          expect(check(r.bufs[i]!.subarray(off), Math.min(s, r.sizes[i]! - off))).toBe(next++);
        }
        bytes += r.sizes[i]!;
        expect(readAddrSlotHost(r.addrs, i)).toBe('::1');
      }
      if (n === 0) await new Promise((res) => setTimeout(res, 5));
    }
    expect(next).toBe(20);
    // Loopback hands the GSO super-datagram to a GRO socket whole.
    expect(rxs.stats().rxDatagrams).toBeLessThan(20);
  });

  /** Polls `s` until `want` datagrams arrived or 5 s passed; returns how many came. */
  async function recvSome(s: NativeUdpSocket, b: UdpBatch, want: number, each: (i: number) => void): Promise<number> {
    let got = 0;
    const deadline = Date.now() + 5000;
    while (got < want && Date.now() < deadline) {
      const n = s.recv(b);
      for (let i = 0; i < n; i++) each(i);
      got += n;
      if (n === 0) await new Promise((res) => setTimeout(res, 5));
    }
    return got;
  }

  // 127.0.0.0/8 is all local on lo, but the kernel's source for a reply to
  // 127.0.0.1 is 127.0.0.1: a wildcard server reached on 127.0.0.2 answers
  // from the wrong address unless it uses the pktinfo local address.
  for (const host of ['0.0.0.0', '::'] as const) {
    it(`reports the local address a datagram arrived on and answers from it (bound to ${host})`, async () => {
      const server = sock({ host });
      expect(server.pktinfo).toBe(true);
      const client = sock({ host: '127.0.0.1' });
      const sport = server.localAddress().port;
      const cport = client.localAddress().port;
      const tx = allocUdpBatch(3, 64);
      const dsts = ['127.0.0.2', '127.0.0.3', '127.0.0.1'];
      for (let i = 0; i < 3; i++) {
        tx.sizes[i] = 4;
        tx.bufs[i]!.writeUInt32BE(i, 0);
        writeAddrSlot(tx.addrs, i, dsts[i]!, sport);
      }
      expect(client.send(tx, 3)).toBe(3);
      const sb = allocUdpBatch(8, 64);
      const reply = allocUdpBatch(8, 64);
      let r = 0;
      const got = await recvSome(server, sb, 3, (i) => {
        const seq = sb.bufs[i]!.readUInt32BE(0);
        expect(readAddrSlotLocal(sb.addrs, i)).toBe(dsts[seq]);
        expect(readAddrSlotHost(sb.addrs, i)).toBe('127.0.0.1');
        expect(readAddrSlotPort(sb.addrs, i)).toBe(cport);
        // The reply-to-sender path: copy the received slot, local part included.
        copyAddrSlot(sb.addrs, i, reply.addrs, r);
        reply.bufs[r]!.writeUInt32BE(seq, 0);
        reply.sizes[r] = 4;
        r++;
      });
      expect(got).toBe(3);
      expect(server.send(reply, r)).toBe(r);
      const cb = allocUdpBatch(8, 64);
      const back = await recvSome(client, cb, 3, (i) => {
        const seq = cb.bufs[i]!.readUInt32BE(0);
        // The client sees each reply come from the address it sent to.
        expect(readAddrSlotHost(cb.addrs, i)).toBe(dsts[seq]);
        expect(readAddrSlotPort(cb.addrs, i)).toBe(sport);
        expect(readAddrSlotLocal(cb.addrs, i)).toBe('127.0.0.1');
      });
      expect(back).toBe(3);
      expect(server.stats().txErrors).toBe(0);
    });
  }

  it('reports IPv6 local addresses and sends from a chosen one (IPV6_PKTINFO)', async () => {
    const server = sock({ host: '::' });
    const client = sock({ host: '::1' });
    const b = allocUdpBatch(1, 64);
    b.sizes[0] = 3;
    writeAddrSlot(b.addrs, 0, '::1', server.localAddress().port);
    expect(client.send(b, 1)).toBe(1);
    const r = allocUdpBatch(1, 64);
    expect(await recvSome(server, r, 1, () => {})).toBe(1);
    expect(readAddrSlotLocal(r.addrs, 0)).toBe('::1');
    expect(readAddrSlotHost(r.addrs, 0)).toBe('::1');
    // Chosen source on an IPv4-mapped peer from a dual-stack socket (IP_PKTINFO).
    const c4 = sock({ host: '127.0.0.1' });
    writeAddrSlot(b.addrs, 0, '127.0.0.1', c4.localAddress().port);
    writeAddrSlotLocal(b.addrs, 0, '127.0.0.77');
    expect(server.send(b, 1)).toBe(1);
    expect(await recvSome(c4, r, 1, () => expect(readAddrSlotHost(r.addrs, 0)).toBe('127.0.0.77'))).toBe(1);
  });

  it('coalesces GSO runs only while peer and local address are both equal', async () => {
    const rxs = sock({ host: '127.0.0.1' });
    const txs = sock({ host: '0.0.0.0' });
    if (!txs.gso) {
      console.warn('SKIP GSO + pktinfo: kernel lacks UDP_SEGMENT');
      return;
    }
    const port = rxs.localAddress().port;
    const b = allocUdpBatch(12, 1500);
    const srcOf = (i: number): string => (i < 4 ? '127.0.0.2' : i < 8 ? '127.0.0.3' : '127.0.0.2');
    for (let i = 0; i < 12; i++) {
      fill(b.bufs[i]!, i, 1000);
      b.sizes[i] = 1000;
      writeAddrSlot(b.addrs, i, '127.0.0.1', port);
      writeAddrSlotLocal(b.addrs, i, srcOf(i));
    }
    expect(txs.send(b, 12)).toBe(12);
    // Three runs of four (UDP_SEGMENT and IP_PKTINFO in one control buffer).
    expect(txs.stats()).toMatchObject({ txGsoSends: 3, txDatagrams: 12, txErrors: 0 });
    const r = allocUdpBatch(16, 1500);
    const seen: number[] = [];
    expect(await recvSome(rxs, r, 12, (i) => {
      const seq = check(r.bufs[i]!, r.sizes[i]!);
      seen.push(seq);
      expect(readAddrSlotHost(r.addrs, i)).toBe(srcOf(seq));
      expect(readAddrSlotLocal(r.addrs, i)).toBe('127.0.0.1');
    })).toBe(12);
    expect(seen).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
  });

  it('drops and counts a slot whose local address the host does not have', () => {
    const s = sock({ host: '::' });
    const peer = sock({ host: '127.0.0.1' });
    const b = allocUdpBatch(2, 100);
    for (let i = 0; i < 2; i++) {
      b.sizes[i] = 10;
      writeAddrSlot(b.addrs, i, '127.0.0.1', peer.localAddress().port);
    }
    writeAddrSlotLocal(b.addrs, 0, '192.0.2.200'); // TEST-NET-1: not ours
    expect(s.send(b, 2)).toBe(2);
    expect(s.stats()).toMatchObject({ txErrors: 1, txDatagrams: 1 });
    expect([22, 99, 101]).toContain(s.stats().txLastErrno); // EINVAL / EADDRNOTAVAIL / ENETUNREACH (IPv4)
  });

  it('drops and counts what the kernel refuses, throws on bad arguments, ClosedError after close', () => {
    const s4 = sock({ host: '127.0.0.1' });
    const b = allocUdpBatch(3, 100);
    writeAddrSlot(b.addrs, 0, '::1', 9); // IPv6 peer on an IPv4 socket
    writeAddrSlot(b.addrs, 1, '127.0.0.1', 9);
    b.sizes[0] = 10;
    b.sizes[1] = 10;
    expect(s4.send(b, 2)).toBe(2);
    expect(s4.stats().txErrors).toBe(1);
    expect(s4.stats().txLastErrno).toBe(97); // EAFNOSUPPORT
    b.sizes[2] = 101;
    expect(() => s4.send(b, 3)).toThrow(/udp: sizes\[2\] = 101 exceeds its 100-byte buffer/);
    expect(() => s4.send(b, 4)).toThrow(/count exceeds the batch/);
    expect(() => s4.recv({ ...b, bufs: [1 as unknown as Buffer] })).toThrow(/element 0 is not/);
    expect(() => s4.recv({ ...b, sizes: new Int32Array(3) as unknown as Uint32Array })).toThrow(/Uint32Array/);
    expect(() => openNativeUdp({ host: 'nope' })).toThrow(/udp: "nope" is not an IP address/);
    expect(() => openNativeUdp({ host: '127.0.0.1', port: s4.localAddress().port })).toThrow(/udp: bind 127\.0\.0\.1:\d+: Address already in use/);
    expect(s4.localAddress()).toMatchObject({ address: '127.0.0.1', family: 4 });
    expect(s4.rcvbufBytes).toBeGreaterThan(0);
    s4.close();
    expect(() => s4.recv(b)).toThrow(/udp socket: used after close/);
    expect(() => s4.send(b, 1)).toThrow(/used after close/);
  });

  it('asks for multi-megabyte buffers (granted in full as root via SO_*BUFFORCE)', () => {
    const s = sock({ host: '127.0.0.1', rcvbufBytes: 8 << 20, sndbufBytes: 8 << 20 });
    if (process.getuid?.() === 0) {
      expect(s.rcvbufBytes).toBe(16 << 20); // the kernel doubles the request
      expect(s.sndbufBytes).toBe(16 << 20);
    } else {
      expect(s.rcvbufBytes).toBeGreaterThan(0);
    }
  });
});
