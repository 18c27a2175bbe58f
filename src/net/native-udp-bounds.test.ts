/**
 * Native udpRecv never writes past a slot the caller handed it (#12 item
 * 15a): after a dropped (truncated) slot the rest are compacted forward, and
 * a datagram that does not fit the smaller slot it would land in is dropped
 * and counted, not copied over the bytes that follow that slot.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { nativeAvailable } from '../native/addon.js';
import { openNativeUdp, type NativeUdpSocket } from './native-udp.js';
import { allocUdpBatch, writeAddrSlot } from './udp-batch.js';

const available = nativeAvailable();
if (!available) console.warn('SKIP src/net/native-udp-bounds.test.ts: native addon not built (npm rebuild)');

describe.skipIf(!available)('native udpRecv slot bounds', () => {
  const open: NativeUdpSocket[] = [];
  afterEach(() => {
    for (const s of open.splice(0)) s.close();
  });

  it('drops and counts a datagram too large for the slot it would be compacted into; the guard bytes after that slot stay intact', async () => {
    const server = openNativeUdp({ host: '127.0.0.1', batchSize: 4 });
    const client = openNativeUdp({ host: '127.0.0.1', batchSize: 4 });
    open.push(server, client);
    // One arena: slot 0 (16 bytes), 1 KiB of guard bytes no slot covers, slot 1 (2 KiB), slot 2 (2 KiB).
    const arena = Buffer.alloc(16 + 1024 + 2048 + 2048, 0);
    const guard = arena.subarray(16, 16 + 1024).fill(0xaa);
    // Slots of unequal sizes: a plain array (the per-slot path), not allocUdpBatch's frozen arena.
    const batch = { ...allocUdpBatch(3, 16), bufs: [arena.subarray(0, 16), arena.subarray(1040, 1040 + 2048), arena.subarray(1040 + 2048)] };

    // 100 bytes → slot 0 (truncated, dropped); 1000 bytes → slot 1, would compact into slot 0; 8 bytes → fits slot 0.
    const out = allocUdpBatch(3, 2048);
    const port = server.localAddress().port;
    for (const [i, len] of [100, 1000, 8].entries()) {
      out.bufs[i]!.fill(0x55, 0, len);
      out.sizes[i] = len;
      writeAddrSlot(out.addrs, i, '127.0.0.1', port);
    }
    expect(client.send(out, 3)).toBe(3);
    const got = await new Promise<number>((resolve) => server.onReadable(() => resolve(server.recv(batch))));
    expect(guard.every((b) => b === 0xaa)).toBe(true);
    expect(got).toBe(1);
    expect(batch.sizes[0]).toBe(8);
    expect(server.stats()).toMatchObject({ rxDatagrams: 1, rxTruncated: 2 });
  });

  it('allocUdpBatch slots are one frozen arena read with one lookup: each datagram lands in its own slot, a truncated one is counted, the next slot untouched', async () => {
    const server = openNativeUdp({ host: '127.0.0.1', batchSize: 4 });
    const client = openNativeUdp({ host: '127.0.0.1', batchSize: 4 });
    open.push(server, client);
    const batch = allocUdpBatch(4, 64);
    expect(() => { batch.bufs[0] = Buffer.alloc(64); }).toThrow(TypeError);
    batch.bufs[3]!.fill(0xaa);
    const out = allocUdpBatch(3, 2048);
    const port = server.localAddress().port;
    // 10, 64 and 100 bytes: the last does not fit a 64-byte slot.
    for (const [i, len] of [10, 64, 100].entries()) {
      out.bufs[i]!.fill(i + 1, 0, len);
      out.sizes[i] = len;
      writeAddrSlot(out.addrs, i, '127.0.0.1', port);
    }
    expect(client.send(out, 3)).toBe(3);
    const got = await new Promise<number>((resolve) => server.onReadable(() => resolve(server.recv(batch))));
    expect(got).toBe(2);
    expect([batch.sizes[0], batch.sizes[1]]).toEqual([10, 64]);
    expect(batch.bufs[0]!.subarray(0, 10).every((b) => b === 1)).toBe(true);
    expect(batch.bufs[1]!.every((b) => b === 2)).toBe(true);
    expect(batch.bufs[3]!.every((b) => b === 0xaa)).toBe(true);
    expect(server.stats()).toMatchObject({ rxDatagrams: 2, rxTruncated: 1 });
  });
});
