/**
 * Native batched UDP over loopback: 10,000-datagram echo with exact counts and
 * contents, GSO send, GRO receive, errors. Real kernel, no namespace needed.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { nativeAvailable } from '../native/addon.js';
import { openNativeUdp, type NativeUdpSocket } from './native-udp.js';
import { allocUdpBatch, readAddrSlotHost, readAddrSlotPort, writeAddrSlot } from './udp-batch.js';

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
        while (off < n) off += server.send({ ...sb, bufs: sb.bufs.slice(off), sizes: sb.sizes.subarray(off), addrs: sb.addrs.subarray(off * 20), segs: sb.segs.subarray(off) }, n - off);
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
