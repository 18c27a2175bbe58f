import { describe, expect, it } from 'vitest';
import { gatewayRecvBudget } from './gateway.js';

describe('gatewayRecvBudget', () => {
  it('reads at most half the TUN transmit queue of datagrams per callback (the kernel default 500 → 250), within 64..1024', () => {
    expect(gatewayRecvBudget(undefined)).toBe(250);
    expect(gatewayRecvBudget(4000)).toBe(1024);
    expect(gatewayRecvBudget(1000)).toBe(500);
    expect(gatewayRecvBudget(10)).toBe(64);
  });
});
