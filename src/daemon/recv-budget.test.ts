import { describe, expect, it } from 'vitest';
import { tunRecvBudget } from './tun-writer.js';

describe('tunRecvBudget', () => {
  it('reads at most half the TUN transmit queue of datagrams per callback (the kernel default 500 → 250), within 64..1024', () => {
    expect(tunRecvBudget(undefined)).toBe(250);
    expect(tunRecvBudget(4000)).toBe(1024);
    expect(tunRecvBudget(1000)).toBe(500);
    expect(tunRecvBudget(10)).toBe(64);
  });
});
