/**
 * The gateway installs its kernel limit on QUIC Initials (quic.kernelInitialLimit,
 * src/daemon/initial-limit.ts) through its KernelConfig port at start, for
 * its own port, and removes it on stop; 0 turns it off; a kernel that
 * refuses it (no nft, no permission) leaves a running gateway without it.
 * Memory ports here; test/netns/initial-limit.test.ts checks the rule itself.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { parseGatewayConfig } from '../../src/config/index.js';
import { MemoryKernel } from '../../src/daemon/memory-kernel.js';
import { systemClock, type TunFactory } from '../../src/daemon/ports.js';
import { Gateway } from '../../src/gateway/gateway.js';
import { MemoryTun } from '../../src/tun/memory-tun.js';
import { writePkiFiles } from './quic-harness.js';
import { MemoryNet } from './quic-memory-udp.js';

const silent = pino({ level: process.env.MTUN_SIM_LOG ?? 'silent' });

describe('gateway kernel Initial limit', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mtun-gwinit-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const yaml = (quic: string) => `
listen: 127.0.0.1:1
tls: {cert: gw.pem, key: gw-key.pem, ca: ca.pem}
pools: {ipv4: 10.202.0.0/24}
tun: {name: gi}
admin: {enabled: false}
telemetry: {flowLog: {enabled: false}}
${quic}
`;
  const tuns: TunFactory = async (req) => new MemoryTun({ name: req.name ?? 'mem', mtu: req.mtu });

  it('is installed for the gateway port at the configured rate and removed on stop; 0 turns it off', async () => {
    await writePkiFiles(dir);
    const net = new MemoryNet();
    const kernel = new MemoryKernel();
    const udp = net.open();
    const gw = await Gateway.start(parseGatewayConfig(yaml('quic: {kernelInitialLimit: 1234}'), join(dir, 'gateway.yaml'), dir), { openTun: tuns, udp, kernel, clock: systemClock, log: silent });
    expect([...kernel.initialLimits]).toEqual([[udp.port, 1234]]);
    await gw.stop();
    expect(kernel.initialLimits.size).toBe(0);

    const off = new MemoryKernel();
    const gw2 = await Gateway.start(parseGatewayConfig(yaml('quic: {kernelInitialLimit: 0}'), join(dir, 'gateway.yaml'), dir), { openTun: tuns, udp: net.open(), kernel: off, clock: systemClock, log: silent });
    expect(off.initialLimits.size).toBe(0);
    await gw2.stop();
  });

  it('starts without it when the kernel refuses it (logged), with the default rate asked for', async () => {
    await writePkiFiles(dir);
    const net = new MemoryNet();
    const asked: number[] = [];
    const kernel = new MemoryKernel();
    kernel.applyInitialLimit = async (_port: number, rate: number) => {
      asked.push(rate);
      throw new Error('gateway: nft failed: Operation not permitted');
    };
    const gw = await Gateway.start(parseGatewayConfig(yaml(''), join(dir, 'gateway.yaml'), dir), { openTun: tuns, udp: net.open(), kernel, clock: systemClock, log: silent });
    expect(asked).toEqual([2000]);
    expect(gw.initialLimitPort).toBeNull();
    expect(gw.readiness().ready).toBe(true);
    await gw.stop();
  });
});
