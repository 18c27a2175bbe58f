import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { parseIp, prefixHasAddress, type IpPrefix } from '../packet/ip-address.js';
import { loadAgentConfig, loadGatewayConfig } from './load.js';

// docker-compose.yml at the repository root, checked two ways: by
// docker-compose itself, and for agreement with config/*.yaml (the compose
// services mount those files unchanged).

const haveCompose = spawnSync('docker-compose', ['version'], { stdio: 'ignore' }).status === 0;
if (!haveCompose) console.warn('compose test: docker-compose not found (Debian package "docker-compose") — SKIPPING `docker-compose config -q`');

interface ComposeService {
  command?: string[] | string;
  networks?: Record<string, { ipv4_address?: string; ipv6_address?: string }>;
  cap_add?: string[];
  devices?: string[];
}

const compose = parse(readFileSync('docker-compose.yml', 'utf8'), { merge: true }) as {
  services: Record<string, ComposeService>;
  networks: Record<string, unknown>;
};

describe('docker-compose.yml', () => {
  it.skipIf(!haveCompose)('is valid for docker-compose (`docker-compose config -q`)', () => {
    const r = spawnSync('docker-compose', ['-f', 'docker-compose.yml', 'config', '-q'], { encoding: 'utf8', timeout: 30_000 });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
  });

  it('has the cluster-a / wan / cluster-b networks and the four services', () => {
    expect(Object.keys(compose.networks).sort()).toEqual(['cluster-a', 'cluster-b', 'wan']);
    for (const s of ['client', 'agent', 'gateway', 'server', 'certs']) expect(compose.services[s]).toBeDefined();
    for (const s of ['agent', 'gateway']) {
      expect(compose.services[s]!.cap_add).toContain('NET_ADMIN');
      expect(compose.services[s]!.devices).toContain('/dev/net/tun:/dev/net/tun');
    }
    expect(Object.keys(compose.services.client!.networks!)).toEqual(['cluster-a']);
    expect(Object.keys(compose.services.agent!.networks!).sort()).toEqual(['cluster-a', 'wan']);
    expect(Object.keys(compose.services.gateway!.networks!).sort()).toEqual(['cluster-b', 'wan']);
    expect(Object.keys(compose.services.server!.networks!)).toEqual(['cluster-b']);
  });

  it('agrees with deploy/compose/config/agent.yaml and config/gateway.yaml', () => {
    const agent = loadAgentConfig('deploy/compose/config/agent.yaml'); // the compose WAN differs from the netns demo's
    const gw = loadGatewayConfig('config/gateway.yaml');
    const net = (svc: string, n: string) => compose.services[svc]!.networks![n]!;
    expect(agent.gateway.address.host).toBe(net('gateway', 'wan').ipv4_address);
    const inAny = (addr: string, prefixes: readonly IpPrefix[]) =>
      prefixes.some((p) => prefixHasAddress(p, parseIp(addr)!.address));
    // The agent advertises the client's cluster; the gateway advertises the server's.
    expect(inAny(net('client', 'cluster-a').ipv4_address!, agent.advertise)).toBe(true);
    expect(inAny(net('client', 'cluster-a').ipv6_address!, agent.advertise)).toBe(true);
    expect(inAny(net('server', 'cluster-b').ipv4_address!, gw.advertise)).toBe(true);
    expect(inAny(net('server', 'cluster-b').ipv6_address!, gw.advertise)).toBe(true);
    // The gateway lets that agent advertise it.
    expect(inAny(net('client', 'cluster-a').ipv4_address!, gw.policy[0]!.advertise)).toBe(true);
    // Service commands point at the mounted config files.
    expect(compose.services.agent!.command).toEqual(['agent', '--config', '/etc/mtun/config/agent.yaml']);
    expect(compose.services.gateway!.command).toEqual(['gateway', '--config', '/etc/mtun/config/gateway.yaml']);
  });
});
