/** Config keys for several gateway replicas: `pools.slice` and `quic.statelessResetKeyFile`. */
import { afterEach, describe, expect, it } from 'vitest';
import { parseGatewayConfig } from './index.js';
import { replicaIndexFromEnv } from './schema.js';
import { GW_BASE, gwError } from './testing/config-errors.js';

const ENV = 'MTUN_TEST_REPLICA_POD';

afterEach(() => {
  delete process.env[ENV];
});

describe('config: pools.slice', () => {
  it('takes a literal index', () => {
    expect(parseGatewayConfig(`${GW_BASE}  slice:\n    index: 1\n    count: 2\n`, 'gw.yaml', '/').pools.slice).toEqual({ index: 1, count: 2 });
  });

  it('reads the index from a StatefulSet pod name or a pod-index label in the environment', () => {
    process.env[ENV] = 'mtun-gateway-3';
    expect(parseGatewayConfig(`${GW_BASE}  slice:\n    indexEnv: ${ENV}\n    count: 4\n`, 'gw.yaml', '/').pools.slice).toEqual({ index: 3, count: 4 });
    expect(replicaIndexFromEnv('gw-1')).toBe(1);
    expect(replicaIndexFromEnv('0')).toBe(0);
    expect(replicaIndexFromEnv('gateway')).toBeNull();
  });

  it('errors carry file:line:col: unset variable, no number, index not below count, both or neither key', () => {
    expect(gwError(`${GW_BASE}  slice:\n    indexEnv: ${ENV}\n    count: 2\n`)).toBe(
      `gw.yaml:8:15: pools.slice.indexEnv: expected $${ENV} to hold the replica index (e.g. a StatefulSet pod name "gw-1"), but it is not set`);
    process.env[ENV] = 'gateway';
    expect(gwError(`${GW_BASE}  slice:\n    indexEnv: ${ENV}\n    count: 2\n`)).toBe(
      `gw.yaml:8:15: pools.slice.indexEnv: expected $${ENV} to hold the replica index (e.g. a StatefulSet pod name "gw-1"), but its value "gateway" does not end in a number`);
    process.env[ENV] = 'gw-2';
    expect(gwError(`${GW_BASE}  slice:\n    indexEnv: ${ENV}\n    count: 2\n`)).toBe(
      `gw.yaml:8:15: pools.slice.indexEnv: expected a replica index below count 2, got 2 (from $${ENV}="gw-2")`);
    expect(gwError(`${GW_BASE}  slice:\n    index: 5\n    count: 2\n`)).toBe('gw.yaml:8:12: pools.slice.index: expected a replica index below count 2, got 5');
    expect(gwError(`${GW_BASE}  slice:\n    count: 2\n`)).toBe('gw.yaml:8:5: pools.slice: expected exactly one of "index" or "indexEnv"');
    expect(gwError(`${GW_BASE}  slice:\n    index: 0\n    count: 0\n`)).toBe('gw.yaml:9:12: pools.slice.count: expected a replica count 1-65536, got 0');
  });

  it('refuses a count that leaves a slice fewer than 2 addresses', () => {
    expect(gwError('tls:\n  cert: a\n  key: b\n  ca: c\npools:\n  ipv4: 10.200.0.0/30\n  slice:\n    index: 0\n    count: 3\n')).toBe(
      'gw.yaml:9:12: pools.slice.count: expected a count that leaves each slice of the IPv4 pool at least 2 addresses, got 3');
  });
});

describe('config: quic.statelessResetKeyFile', () => {
  it('resolves against the file directory; absent by default', () => {
    expect(parseGatewayConfig(`${GW_BASE}quic:\n  statelessResetKeyFile: secrets/reset.key\n`, 'gw.yaml', '/etc/mtun').quic.statelessResetKeyFile).toBe('/etc/mtun/secrets/reset.key');
    expect(parseGatewayConfig(GW_BASE, 'gw.yaml', '/etc/mtun').quic.statelessResetKeyFile).toBeUndefined();
    expect(gwError(`${GW_BASE}quic:\n  resetKey: x\n`)).toMatch(/^gw\.yaml:8:3: quic\.resetKey: unknown key/);
  });
});

describe('config: quic.serverId (QUIC-LB)', () => {
  it('hex, with or without 0x; or the replica index from the environment, big-endian', () => {
    const id = (y: string) => [...parseGatewayConfig(`${GW_BASE}quic:\n  serverId: ${y}\n`, 'gw.yaml', '/').quic.serverId!];
    expect(id('"0a01"')).toEqual([0x0a, 0x01]);
    expect(id('"0xff"')).toEqual([0xff]);
    process.env[ENV] = 'mtun-gateway-258';
    expect(id(`{indexEnv: ${ENV}, bytes: 2}`)).toEqual([1, 2]);
    expect(parseGatewayConfig(GW_BASE, 'gw.yaml', '/').quic.serverId).toBeUndefined();
  });

  it('refuses odd or too long hex, and an index that does not fit', () => {
    expect(gwError(`${GW_BASE}quic:\n  serverId: "abc"\n`)).toBe('gw.yaml:8:13: quic.serverId: expected a server ID as hex, 1-11 octets (e.g. "0a"), got "abc"');
    expect(gwError(`${GW_BASE}quic:\n  serverId: "${'00'.repeat(12)}"\n`)).toMatch(/^gw\.yaml:8:13: quic\.serverId: expected a server ID as hex/);
    process.env[ENV] = 'gw-256';
    expect(gwError(`${GW_BASE}quic:\n  serverId:\n    indexEnv: ${ENV}\n    bytes: 1\n`)).toBe(
      `gw.yaml:9:15: quic.serverId.indexEnv: expected $${ENV} to hold the replica index for the server ID, but 256 does not fit 1 octet(s)`);
    expect(gwError(`${GW_BASE}quic:\n  serverId: 7\n`)).toBe('gw.yaml:8:13: quic.serverId: expected a server ID as hex (1-11 octets, e.g. "0a") or {indexEnv, bytes}, got 7');
  });
});
