import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { isIPv6 } from 'node:net';
import { ADDR_SLOT_BYTES } from './udp.js';
import {
  addrSlotEquals,
  allocUdpBatch,
  addrSlotPathEquals,
  copyAddrSlot,
  copyAddrSlotLocal,
  hasAddrSlotLocal,
  isAddrSlotV4,
  readAddrSlotHost,
  readAddrSlotLocal,
  readAddrSlotPort,
  writeAddrSlot,
  writeAddrSlotLocal,
} from './udp-batch.js';

describe('allocUdpBatch', () => {
  it('allocates contiguous zeroed slots of the requested size', () => {
    const b = allocUdpBatch(8, 1500);
    expect(b.bufs).toHaveLength(8);
    expect(b.sizes).toHaveLength(8);
    expect(b.segs).toHaveLength(8);
    expect(b.addrs.length).toBe(8 * ADDR_SLOT_BYTES);
    for (let i = 0; i < 8; i++) {
      expect(b.bufs[i]!.length).toBe(1500);
      expect(b.bufs[i]!.buffer).toBe(b.bufs[0]!.buffer);
      expect(b.bufs[i]!.byteOffset - b.bufs[0]!.byteOffset).toBe(i * 1500);
      expect(b.bufs[i]!.every((x) => x === 0)).toBe(true);
    }
  });
  it('rejects sizes out of range', () => {
    expect(() => allocUdpBatch(0, 10)).toThrow(/net: batch size 0/);
    expect(() => allocUdpBatch(1025, 10)).toThrow(/batch size/);
    expect(() => allocUdpBatch(1.5, 10)).toThrow(/batch size/);
    expect(() => allocUdpBatch(1, 0)).toThrow(/net: slot size 0/);
    expect(() => allocUdpBatch(1, 65536)).toThrow(/slot size/);
  });
});

describe('address slots', () => {
  it('stores IPv4 as IPv4-mapped IPv6 (RFC 4291 §2.5.5.2) with a big-endian port', () => {
    expect(ADDR_SLOT_BYTES).toBe(36);
    const a = new Uint8Array(2 * ADDR_SLOT_BYTES);
    writeAddrSlot(a, 1, '192.0.2.7', 4433);
    expect(Buffer.from(a.subarray(36, 72)).toString('hex')).toBe(
      '00000000000000000000ffff' + 'c0000207' + // peer address (IPv4-mapped)
        '1151' + // peer port 4433
        '0000' + // reserved
        '00000000000000000000000000000000', // local address: unspecified
    );
    expect(isAddrSlotV4(a, 1)).toBe(true);
    expect(readAddrSlotHost(a, 1)).toBe('192.0.2.7');
    expect(readAddrSlotPort(a, 1)).toBe(4433);
  });
  it('stores IPv6 and prints the RFC 5952 canonical form', () => {
    const a = new Uint8Array(ADDR_SLOT_BYTES);
    const cases: Array<[string, string]> = [
      ['::1', '::1'],
      ['::', '::'],
      ['2001:DB8:0:0:0:0:2:1', '2001:db8::2:1'],
      ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'], // §4.2.2: a single 0 group is not compressed
      ['2001:0:0:1:0:0:0:1', '2001:0:0:1::1'], // §4.2.3: longest run
      ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'], // §4.2.3: first of equal runs
      ['fe80::', 'fe80::'],
      ['64:ff9b::192.0.2.33', '64:ff9b::c000:221'],
      ['1:2:3:4:5:6:7:8', '1:2:3:4:5:6:7:8'],
    ];
    for (const [input, canon] of cases) {
      writeAddrSlot(a, 0, input, 1);
      expect(readAddrSlotHost(a, 0)).toBe(canon);
      expect(isAddrSlotV4(a, 0)).toBe(false);
    }
    writeAddrSlot(a, 0, '::ffff:10.1.2.3', 9);
    expect(readAddrSlotHost(a, 0)).toBe('10.1.2.3');
  });
  it('rejects malformed addresses, ports and slots with net: errors', () => {
    const a = new Uint8Array(ADDR_SLOT_BYTES);
    for (const bad of ['', '1.2.3', '1.2.3.4.5', '256.1.1.1', '01.2.3.4', 'a.b.c.d', ':', ':::', '1::2::3',
      '1:2:3:4:5:6:7:8:9', '1:2:3:4:5:6:7::8', '12345::', 'fe80::1%eth0', '1:', 'g::1', '::1.2.3', 'localhost']) {
      expect(() => writeAddrSlot(a, 0, bad, 1), bad).toThrow(/^net: invalid IP address/);
    }
    expect(() => writeAddrSlot(a, 0, '1.2.3.4', 65536)).toThrow(/net: port 65536/);
    expect(() => writeAddrSlot(a, 0, '1.2.3.4', -1)).toThrow(/net: port/);
    expect(() => writeAddrSlot(a, 1, '1.2.3.4', 1)).toThrow(/net: address slot 1/);
    expect(() => readAddrSlotHost(a, 1)).toThrow(/net: address slot/);
    expect(() => readAddrSlotPort(a, 1)).toThrow(/net: address slot/);
  });
  it('carries the local address at bytes 20..35; writeAddrSlot clears it', () => {
    const a = new Uint8Array(2 * ADDR_SLOT_BYTES);
    writeAddrSlot(a, 1, '2001:db8::5', 443);
    expect(readAddrSlotLocal(a, 1)).toBeNull();
    expect(hasAddrSlotLocal(a, 1)).toBe(false);
    writeAddrSlotLocal(a, 1, '198.51.100.0');
    expect(Buffer.from(a.subarray(36 + 20, 72)).toString('hex')).toBe('00000000000000000000ffff' + 'c6336400');
    expect(readAddrSlotLocal(a, 1)).toBe('198.51.100.0');
    expect(hasAddrSlotLocal(a, 1)).toBe(true);
    // The peer part is untouched.
    expect(readAddrSlotHost(a, 1)).toBe('2001:db8::5');
    expect(readAddrSlotPort(a, 1)).toBe(443);
    writeAddrSlotLocal(a, 1, 'FD00:77::2');
    expect(readAddrSlotLocal(a, 1)).toBe('fd00:77::2');
    // Unspecified addresses and null clear it.
    for (const unspec of ['0.0.0.0', '::', null]) {
      writeAddrSlotLocal(a, 1, 'fd00:77::2');
      writeAddrSlotLocal(a, 1, unspec);
      expect(readAddrSlotLocal(a, 1), String(unspec)).toBeNull();
    }
    writeAddrSlotLocal(a, 1, '192.0.2.2');
    writeAddrSlot(a, 1, '192.0.2.9', 1);
    expect(readAddrSlotLocal(a, 1)).toBeNull();
    expect(readAddrSlotLocal(a, 0)).toBeNull();
    expect(() => writeAddrSlotLocal(a, 1, 'nope')).toThrow(/^net: invalid IP address/);
    expect(() => writeAddrSlotLocal(a, 2, '1.2.3.4')).toThrow(/net: address slot 2/);
    expect(() => readAddrSlotLocal(a, 2)).toThrow(/net: address slot 2/);
  });
  it('compares the peer only in addrSlotEquals, peer and local in addrSlotPathEquals', () => {
    const a = new Uint8Array(2 * ADDR_SLOT_BYTES);
    writeAddrSlot(a, 0, '192.0.2.1', 5000);
    writeAddrSlotLocal(a, 0, '192.0.2.2');
    copyAddrSlot(a, 0, a, 1);
    expect(readAddrSlotLocal(a, 1)).toBe('192.0.2.2');
    expect(addrSlotPathEquals(a, 0, a, 1)).toBe(true);
    writeAddrSlotLocal(a, 1, '198.51.100.0');
    expect(addrSlotEquals(a, 0, a, 1)).toBe(true); // same peer…
    expect(addrSlotPathEquals(a, 0, a, 1)).toBe(false); // …on another path (RFC 9000 §9)
    writeAddrSlot(a, 1, '192.0.2.1', 5000); // a client's send slot: no local part
    expect(addrSlotEquals(a, 0, a, 1)).toBe(true);
    copyAddrSlotLocal(a, 0, a, 1);
    expect(addrSlotPathEquals(a, 0, a, 1)).toBe(true);
    writeAddrSlot(a, 1, '192.0.2.1', 5001);
    expect(addrSlotEquals(a, 0, a, 1)).toBe(false);
  });
  it('copies and compares slots', () => {
    const a = new Uint8Array(2 * ADDR_SLOT_BYTES);
    const b = new Uint8Array(3 * ADDR_SLOT_BYTES);
    writeAddrSlot(a, 1, '2001:db8::5', 443);
    copyAddrSlot(a, 1, b, 2);
    expect(addrSlotEquals(a, 1, b, 2)).toBe(true);
    writeAddrSlot(b, 2, '2001:db8::5', 444);
    expect(addrSlotEquals(a, 1, b, 2)).toBe(false);
  });
  it('round-trips any IPv4 and IPv6 address (property)', () => {
    const a = new Uint8Array(ADDR_SLOT_BYTES);
    fc.assert(
      fc.property(fc.ipV4(), fc.integer({ min: 0, max: 65535 }), (ip, port) => {
        writeAddrSlot(a, 0, ip, port);
        return readAddrSlotHost(a, 0) === ip && readAddrSlotPort(a, 0) === port;
      }),
    );
    fc.assert(
      fc.property(fc.ipV6(), (ip) => {
        writeAddrSlot(a, 0, ip, 7);
        writeAddrSlotLocal(a, 0, ip);
        const text = readAddrSlotHost(a, 0);
        // The local part holds the same address, except that unspecified means "none".
        if (readAddrSlotLocal(a, 0) !== (text === '::' || text === '0.0.0.0' ? null : text)) return false;
        const b = new Uint8Array(ADDR_SLOT_BYTES);
        writeAddrSlot(b, 0, text, 7);
        return (isIPv6(text) || isAddrSlotV4(a, 0)) && addrSlotEquals(a, 0, b, 0);
      }),
    );
  });
  it('never throws anything but a net: error on random strings (property)', () => {
    const a = new Uint8Array(ADDR_SLOT_BYTES);
    fc.assert(
      fc.property(fc.string(), (s) => {
        try {
          writeAddrSlot(a, 0, s, 1);
          return isIPv6(readAddrSlotHost(a, 0)) || /^\d+\.\d+\.\d+\.\d+$/.test(readAddrSlotHost(a, 0));
        } catch (e) {
          return (e as Error).message.startsWith('net: ');
        }
      }),
    );
  });
});
