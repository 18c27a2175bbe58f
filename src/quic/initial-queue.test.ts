// The handshake queue in front of RFC 9000 §7 handshakes: bounded, FIFO,
// copies its input, and drops entries older than the client's first PTO
// (RFC 9002 §6.2.2) instead of handing them out.
import { describe, expect, it } from 'vitest';
import { InitialQueue, InitialQueueRefusal } from './initial-queue.js';
import { allocUdpBatch, readAddrSlotPort, writeAddrSlot } from '../net/udp-batch.js';

function dgram(tag: number, len = 1200): Buffer {
  return Buffer.alloc(len, tag);
}

describe('InitialQueue', () => {
  it('returns datagrams and their address slots first in, first out, as copies', () => {
    const q = new InitialQueue(4, 1500, 1000);
    const b = allocUdpBatch(2, 1500);
    writeAddrSlot(b.addrs, 0, '127.0.0.1', 1111);
    writeAddrSlot(b.addrs, 1, '127.0.0.1', 2222);
    const d1 = dgram(1);
    expect(q.push(d1, 0, d1.length, b.addrs, 0, 0)).toBe(InitialQueueRefusal.NONE);
    expect(q.push(dgram(2, 1300), 0, 1300, b.addrs, 1, 0)).toBe(InitialQueueRefusal.NONE);
    d1.fill(9); // the caller reuses its buffer at once
    writeAddrSlot(b.addrs, 0, '127.0.0.1', 9999);
    let k = q.peek(10);
    expect(q.datagram(k).length).toBe(1200);
    expect(q.datagram(k)[0]).toBe(1);
    expect(readAddrSlotPort(q.addrs, k)).toBe(1111);
    q.shift();
    k = q.peek(10);
    expect(q.datagram(k).length).toBe(1300);
    expect(readAddrSlotPort(q.addrs, k)).toBe(2222);
    q.shift();
    expect(q.peek(10)).toBe(-1);
  });

  it('refuses when full and when a datagram exceeds a slot; wraps around after shifts', () => {
    const q = new InitialQueue(2, 1500, 1000);
    const a = allocUdpBatch(1, 1500).addrs;
    expect(q.push(dgram(1), 0, 1200, a, 0, 0)).toBe(InitialQueueRefusal.NONE);
    expect(q.push(dgram(2), 0, 1200, a, 0, 0)).toBe(InitialQueueRefusal.NONE);
    expect(q.push(dgram(3), 0, 1200, a, 0, 0)).toBe(InitialQueueRefusal.FULL);
    expect(q.push(dgram(4, 1600), 0, 1600, a, 0, 0)).toBe(InitialQueueRefusal.TOO_LARGE);
    q.shift();
    expect(q.push(dgram(5), 0, 1200, a, 0, 0)).toBe(InitialQueueRefusal.NONE);
    expect(q.datagram(q.peek(0))[0]).toBe(2);
    q.shift();
    expect(q.datagram(q.peek(0))[0]).toBe(5);
    expect(q.length).toBe(1);
  });

  it('drops entries older than maxWaitMs and counts them', () => {
    const q = new InitialQueue(4, 1500, 1000);
    const a = allocUdpBatch(1, 1500).addrs;
    q.push(dgram(1), 0, 1200, a, 0, 0);
    q.push(dgram(2), 0, 1200, a, 0, 500);
    expect(q.datagram(q.peek(1200))[0]).toBe(2);
    expect(q.staleDrops).toBe(1);
    expect(q.peek(1600)).toBe(-1);
    expect(q.staleDrops).toBe(2);
  });
});
