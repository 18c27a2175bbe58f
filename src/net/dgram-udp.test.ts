import { describe, expect, it } from 'vitest';
import { openDgramUdpSocket } from './dgram-udp.js';
import { allocUdpBatch, readAddrSlotHost, readAddrSlotLocal, readAddrSlotPort, writeAddrSlot, writeAddrSlotLocal } from './udp-batch.js';
import { ClosedError } from './udp.js';

describe('DgramUdpSocket', () => {
  it('moves datagrams both ways with address slots and reports readiness', async () => {
    const a = await openDgramUdpSocket();
    const b = await openDgramUdpSocket();
    try {
      const out = allocUdpBatch(2, 2048);
      out.bufs[0].write('hello');
      out.sizes[0] = 5;
      // A GSO-style slot: three segments of 4, 4 and 2 bytes.
      out.bufs[1].write('aaaabbbbcc');
      out.sizes[1] = 10;
      out.segs[1] = 4;
      writeAddrSlot(out.addrs, 0, '127.0.0.1', b.localAddress().port);
      writeAddrSlot(out.addrs, 1, '127.0.0.1', b.localAddress().port);
      // node:dgram cannot set the source: a local address is ignored, not an error.
      writeAddrSlotLocal(out.addrs, 1, '127.0.0.9');
      expect(a.send(out, 2)).toBe(2);
      const got: string[] = [];
      const inb = allocUdpBatch(4, 2048);
      inb.addrs.fill(0xee); // stale bytes must not survive as a local address
      await new Promise<void>((resolve) => {
        b.onReadable(() => {
          let n: number;
          while ((n = b.recv(inb)) > 0) {
            expect(n).toBe(1);
            got.push(inb.bufs[0].subarray(0, inb.sizes[0]).toString());
            expect(readAddrSlotHost(inb.addrs, 0)).toBe('127.0.0.1');
            expect(readAddrSlotPort(inb.addrs, 0)).toBe(a.localAddress().port);
            // node:dgram cannot read pktinfo: the local part stays unspecified.
            expect(readAddrSlotLocal(inb.addrs, 0)).toBeNull();
          }
          if (got.length === 4) resolve();
        });
      });
      expect(got).toEqual(['hello', 'aaaa', 'bbbb', 'cc']);
    } finally {
      a.close();
      b.close();
    }
    expect(() => a.recv(allocUdpBatch(1, 10))).toThrow(ClosedError);
  });

  it('sends to IPv4 peers from a dual-stack [::] socket (IPv4-mapped destination)', async () => {
    const a = await openDgramUdpSocket({ host: '::' });
    const b = await openDgramUdpSocket({ host: '127.0.0.1' });
    try {
      const out = allocUdpBatch(1, 100);
      out.bufs[0].write('v4');
      out.sizes[0] = 2;
      writeAddrSlot(out.addrs, 0, '127.0.0.1', b.localAddress().port);
      expect(a.send(out, 1)).toBe(1);
      const inb = allocUdpBatch(1, 100);
      await new Promise<void>((resolve) => {
        b.onReadable(() => {
          if (b.recv(inb) === 1) resolve();
        });
      });
      expect(inb.bufs[0].subarray(0, inb.sizes[0]).toString()).toBe('v4');
      expect(readAddrSlotPort(inb.addrs, 0)).toBe(a.localAddress().port);
      expect(a.sendErrors).toBe(0);
    } finally {
      a.close();
      b.close();
    }
  });

  it('counts datagrams larger than the slot instead of truncating them', async () => {
    const a = await openDgramUdpSocket();
    const b = await openDgramUdpSocket();
    try {
      const out = allocUdpBatch(1, 100);
      out.sizes[0] = 100;
      writeAddrSlot(out.addrs, 0, '127.0.0.1', b.localAddress().port);
      a.send(out, 1);
      const small = allocUdpBatch(1, 50);
      await new Promise<void>((resolve) => {
        b.onReadable(() => {
          expect(b.recv(small)).toBe(0);
          resolve();
        });
      });
      expect(b.recvTooBigDrops).toBe(1);
    } finally {
      a.close();
      b.close();
    }
  });
});
