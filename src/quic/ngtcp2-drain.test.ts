/**
 * EngineConnection.drain (quicDrain in src/native/quic-napi.c): a connection
 * drained into the endpoint's send batch in one call. Checked on a real
 * ngtcp2 pair in memory: the GSO trains obey the socket's rules (segments
 * of one size, only the last shorter, at most 64 and 65,000 bytes), every
 * slot carries the peer slot it was given, the batch-full and budget stops
 * say so and resume without losing a packet, and the receiver gets every
 * DATAGRAM queued (so no packet was cut or dropped between calls). Bad
 * arguments throw TypeErrors instead of reaching memory.
 */
import { writeAddrSlot } from '../net/udp-batch.js';
import { describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import {
  engine,
  DRAIN_BUDGET,
  DRAIN_CLOSED,
  DRAIN_GSO,
  DRAIN_NEXT,
  DRAIN_PKTS,
  DRAIN_SEG,
  DRAIN_SEGS,
  DRAIN_STATE_LENGTH,
  DRAIN_TIMEOUT,
  DRAIN_WHY,
  type EngineConnection,
} from './engine.js';
import { allocSlots, slotArena } from '../net/slot-arena.js';
import { PAIR_CLIENT, PAIR_SERVER, pumpEngines } from './testing/engine-pair.js';
import { createDevCa, issueServerCert } from '../certs/pki.js';

const enc = (s: string): Uint8Array => new TextEncoder().encode(s);
const CLIENT = PAIR_CLIENT;
const SERVER = PAIR_SERVER;

async function pair(): Promise<{ client: EngineConnection; server: EngineConnection }> {
  const ca = await createDevCa();
  const srv = await issueServerCert(ca);
  const setup = (c: ReturnType<typeof engine.Config.withTls>): void => {
    c.setApplicationProtos(['h3']);
    c.setMaxIdleTimeout(30_000);
    c.setMaxRecvUdpPayloadSize(1350);
    c.setMaxSendUdpPayloadSize(1350);
    c.setInitialMaxData(16 << 20);
    c.setInitialMaxStreamsBidi(10);
    c.enableDgram(true, 4096, 4096);
    c.setCcAlgorithmName('bbr2');
  };
  const sc = engine.Config.withTls(false, null, enc(srv.keyPem), enc(srv.certPem));
  setup(sc);
  sc.setStatelessResetToken(1n);
  const cc = engine.Config.withTls(true, enc(ca.certPem), null, null);
  setup(cc);
  const client = engine.Connection.connect('localhost', randomBytes(16), CLIENT, SERVER, cc);
  const server = pumpEngines(client, sc, null);
  expect(client.isEstablished() && server!.isEstablished()).toBe(true);
  return { client, server: server! };
}

function batch(slots: number, stride: number) {
  const bufs = allocSlots(slots, stride);
  const sizes = new Uint32Array(slots);
  const segs = new Uint32Array(slots);
  const addrs = new Uint8Array(slots * 36);
  const st = new Float64Array(DRAIN_STATE_LENGTH);
  const a = slotArena(bufs)!;
  return { bufs, sizes, segs, addrs, st, h: engine.outBatch(a.buf, a.stride, sizes, segs, addrs, st) };
}

/** Feeds slots [0, count) to the receiver, cutting each GSO slot into its segments as the kernel would. */
function deliver(b: ReturnType<typeof batch>, count: number, to: EngineConnection): number {
  let packets = 0;
  for (let k = 0; k < count; k++) {
    const size = b.sizes[k]!;
    const seg = b.segs[k]! === 0 ? size : b.segs[k]!;
    for (let off = 0; off < size; off += seg) {
      to.recv(b.bufs[k]!, { from: CLIENT, to: SERVER }, off, Math.min(seg, size - off));
      packets++;
    }
  }
  return packets;
}

function drainedDatagrams(q: EngineConnection): number {
  const out = new Uint8Array(2048);
  let n = 0;
  while (q.dgramRecv(out) !== null) n++;
  return n;
}

describe('EngineConnection.drain (quicDrain)', () => {
  it('builds GSO trains the socket accepts, addresses every slot, stops on a full batch and resumes losing nothing', async () => {
    const { client, server } = await pair();
    const peer = new Uint8Array(36).map((_, i) => i + 1);
    // The slot's local part is the caller's; its peer part is where the engine sends (its current path).
    const expected = peer.slice();
    writeAddrSlot(expected, 0, client.peerAddress().host, client.peerAddress().port);
    expected.set(peer.subarray(20), 20);
    const payload = new Uint8Array(1200).fill(7);
    const queued = 1500;
    let accepted = 0;
    for (let i = 0; i < queued; i++) if (client.dgramSend(payload) !== null) accepted++;
    expect(accepted).toBeGreaterThan(1000);
    const b = batch(4, 65_535);
    let sent = 0;
    let calls = 0;
    let fullStops = 0;
    let trains = 0;
    for (; calls < 200; calls++) {
      b.st[DRAIN_NEXT] = 0;
      b.st[DRAIN_SEG] = 0;
      b.st[DRAIN_SEGS] = 0;
      b.st[DRAIN_BUDGET] = 10_000;
      b.st[DRAIN_GSO] = 1;
      client.drain(b.h, peer);
      const used = b.st[DRAIN_NEXT]!;
      for (let k = 0; k < used; k++) {
        expect(b.addrs.subarray(k * 36, k * 36 + 36)).toEqual(expected);
        const seg = b.segs[k]!;
        if (seg !== 0) {
          if (b.sizes[k]! > seg) trains++;
          expect(seg).toBeGreaterThanOrEqual(1200);
          expect(b.sizes[k]!).toBeLessThanOrEqual(65_000);
          expect(Math.ceil(b.sizes[k]! / seg)).toBeLessThanOrEqual(64);
        }
      }
      sent += deliver(b, used, server);
      // The receiver acknowledges, so the sender's window opens again.
      const ack = new Uint8Array(1500);
      for (let r = server.send(ack); r !== null; r = server.send(ack)) client.recv(ack, { from: SERVER, to: CLIENT }, 0, r[0]);
      if (b.st[DRAIN_WHY] === 1) fullStops++;
      if (b.st[DRAIN_WHY] === 0 && client.dgramSendQueueLen() === 0) break;
    }
    expect(fullStops).toBeGreaterThan(0);
    expect(trains).toBeGreaterThan(0);
    expect(sent).toBeGreaterThan(0);
    expect(drainedDatagrams(server)).toBe(accepted);
    expect(b.st[DRAIN_CLOSED]).toBe(0);
    expect(b.st[DRAIN_TIMEOUT]).toBeGreaterThanOrEqual(0);
  });

  it('writes no more than its budget and reports that it stopped for it', async () => {
    const { client } = await pair();
    for (let i = 0; i < 50; i++) client.dgramSend(new Uint8Array(1200));
    const b = batch(64, 65_535);
    b.st[DRAIN_NEXT] = 0;
    b.st[DRAIN_SEG] = 0;
    b.st[DRAIN_BUDGET] = 5;
    b.st[DRAIN_GSO] = 0;
    client.drain(b.h, new Uint8Array(36));
    expect(b.st[DRAIN_PKTS]).toBe(5);
    expect(b.st[DRAIN_WHY]).toBe(2);
    expect(b.st[DRAIN_NEXT]).toBe(5); // without GSO one packet per slot
    expect([...b.segs.subarray(0, 5)]).toEqual([0, 0, 0, 0, 0]);
  });

  it('refuses what is not a batch, a short peer slot and state out of range', async () => {
    const { client } = await pair();
    const b = batch(2, 2048);
    const peer = new Uint8Array(36);
    const h = (client as unknown as { h: unknown }).h;
    expect(() => client.drain(h as typeof b.h, peer)).toThrow(TypeError);
    expect(() => client.drain(b.h, new Uint8Array(20))).toThrow(TypeError);
    b.st[DRAIN_NEXT] = 3; // beyond the 2 slots
    expect(() => client.drain(b.h, peer)).toThrow(TypeError);
    b.st[DRAIN_NEXT] = 0;
    b.st[DRAIN_SEG] = 1200; // a train with no slot before it
    expect(() => client.drain(b.h, peer)).toThrow(TypeError);
    b.st[DRAIN_SEG] = 0;
    b.st[DRAIN_BUDGET] = Number.NaN;
    expect(() => client.drain(b.h, peer)).toThrow(TypeError);
    const bad = allocSlots(2, 100);
    const a = slotArena(bad)!;
    expect(() => engine.outBatch(a.buf, 300, new Uint32Array(2), new Uint32Array(2), new Uint8Array(72), new Float64Array(DRAIN_STATE_LENGTH))).toThrow(TypeError);
    expect(() => engine.outBatch(a.buf, 100, new Uint32Array(1), new Uint32Array(2), new Uint8Array(72), new Float64Array(DRAIN_STATE_LENGTH))).toThrow(TypeError);
    expect(() => engine.outBatch(a.buf, 100, new Uint32Array(2), new Uint32Array(2), new Uint8Array(72), new Float64Array(3))).toThrow(TypeError);
  });
});

describe('EngineConnection.dgramRecvBatch (quicDgramRecvBatch)', () => {
  it('takes the queued DATAGRAMs in order, back to back, as many as fit and as lens allows, and none twice', async () => {
    const { client, server } = await pair();
    const sizes = [100, 1, 1200, 37, 900, 1200, 5, 64];
    sizes.forEach((n, i) => expect(client.dgramSend(new Uint8Array(n).fill(i + 1))).not.toBe(null));
    const b = batch(8, 65_535);
    b.st[DRAIN_NEXT] = 0;
    b.st[DRAIN_BUDGET] = 64;
    client.drain(b.h, new Uint8Array(36));
    deliver(b, b.st[DRAIN_NEXT]!, server);
    const got: number[][] = [];
    // A call stops at three (lens) or when the next does not fit the 1,400 bytes left.
    const out = new Uint8Array(1400);
    const lens = new Uint32Array(3);
    const calls: number[] = [];
    for (;;) {
      const k = server.dgramRecvBatch(out, lens);
      if (k === 0) break;
      calls.push(k);
      let off = 0;
      for (let i = 0; i < k; i++) {
        got.push([lens[i]!, out[off]!, out[off + lens[i]! - 1]!]);
        off += lens[i]!;
      }
    }
    expect(got).toEqual(sizes.map((n, i) => [n, i + 1, i + 1]));
    expect(calls).toEqual([3, 2, 3]); // 100 + 1 + 1200 (lens full); 37 + 900 (1200 more would not fit); 1200 + 5 + 64
    expect(server.dgramRecvQueueLen()).toBe(0);
    // A datagram larger than the whole buffer is refused, and stays queued.
    expect(client.dgramSend(new Uint8Array(1200).fill(9))).not.toBe(null);
    b.st[DRAIN_NEXT] = 0;
    client.drain(b.h, new Uint8Array(36));
    deliver(b, b.st[DRAIN_NEXT]!, server);
    expect(() => server.dgramRecvBatch(new Uint8Array(1000), lens)).toThrow(/BufferTooShort/);
    expect(server.dgramRecvBatch(out, lens)).toBe(1);
    expect(lens[0]).toBe(1200);
  });
});

describe('EngineConnection.recvSegments (quicRecvSegments)', () => {
  it('takes a GSO train in one call and stops at a packet for another connection', async () => {
    const { client, server } = await pair();
    for (let i = 0; i < 40; i++) expect(client.dgramSend(new Uint8Array(1200).fill(i))).not.toBe(null);
    const b = batch(4, 65_535);
    b.st[DRAIN_NEXT] = 0;
    b.st[DRAIN_BUDGET] = 64;
    b.st[DRAIN_GSO] = 1;
    client.drain(b.h, new Uint8Array(36));
    expect(b.segs[0]).toBeGreaterThan(0); // a train
    const size = b.sizes[0]!;
    const step = b.segs[0]!;
    const count = Math.ceil(size / step);
    expect(count).toBeGreaterThan(4);
    const res = new Int32Array(1);
    const from = { from: CLIENT, to: SERVER };
    // A copy whose third packet carries another connection ID and whose second is corrupted.
    const train = Buffer.from(b.bufs[0]!.subarray(0, size));
    const other = Buffer.from(train);
    other[2 * step + 1]! ^= 0xff;
    other[step + step - 1]! ^= 0xff; // the AEAD tag of the second packet
    expect(server.recvSegments(other, from, 0, size, step, res)).toBe(2);
    expect(res[0]).toBe(0); // a packet that does not decrypt is discarded by the engine, not an error
    // The real train from its third packet on (the first two were taken, the second discarded).
    expect(server.recvSegments(train, from, 2 * step, size - 2 * step, step, res)).toBe(count - 2);
    expect(res[0]).toBe(0);
    expect(() => server.recvSegments(train, from, 0, size + 1, step, res)).toThrow(TypeError);
    expect(() => server.recvSegments(train, from, 0, size, 0, res)).toThrow(TypeError);
    // Every DATAGRAM of the train arrived but the one in the corrupted packet (1,200-byte DATAGRAMs fill a packet each).
    let got = 0;
    const out = new Uint8Array(2048);
    while (server.dgramRecv(out) !== null) got++;
    expect(got).toBe(count - 1);
  });
});
