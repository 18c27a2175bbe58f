import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import fc from 'fast-check';
import { stringify } from 'yaml';
import { describe, expect, it } from 'vitest';
import { formatPrefix, type IpPrefix } from '../packet/ip-address.js';
import { ConfigError, loadAgentConfig, loadGatewayConfig, parseAgentConfig, parseGatewayConfig } from './index.js';
import { GW_BASE, gwError } from './testing/config-errors.js';
import { tunQueueDelay } from '../daemon/tun-writer.js';
import { DEFAULT_DGRAM_QUEUE_DELAY } from '../quic/queue-delay.js';

/** Canonical text of an optional prefix. */
const txt = (p: IpPrefix | undefined): string | undefined => (p === undefined ? undefined : formatPrefix(p));

const AGENT_BASE = 'gateway:\n  address: 192.0.2.1:4433\ntls:\n  cert: a.pem\n  key: a-key.pem\n  ca: ca.pem\n';

function agentError(text: string): string {
  try {
    parseAgentConfig(text, 'agent.yaml', '/etc/mtun');
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return String(err);
  }
  throw new Error('expected a ConfigError');
}

describe('config: example files', () => {
  it('config/gateway.yaml parses with every section', () => {
    const c = loadGatewayConfig('config/gateway.yaml');
    expect(c.listen).toEqual({ host: '::', port: 4433 });
    expect(c.tls.cert).toBe(resolve('certs/gateway.pem'));
    expect(c.tls.requireClientCert).toBe(true);
    expect(txt(c.pools.ipv4)).toBe('10.200.0.0/24');
    expect(txt(c.pools.ipv6)).toBe('fd00:200::/64');
    expect(c.policy[0]!.allow[0]!.ports).toContainEqual({ from: 8000, to: 8100 });
    expect(c.policy[0]!.advertise.map(formatPrefix)).toEqual(['10.10.0.0/24', 'fd00:a::/64']);
    expect(txt(c.telemetry.workloads.find((w) => w.name === 'web')?.prefix)).toBe('10.20.0.2/32');
    expect(c.admin.listen).toEqual({ host: '127.0.0.1', port: 9090 });
    expect(c.connectUdp.targets[0]).toEqual({ host: '10.20.0.2', ports: [{ from: 7, to: 7 }, { from: 53, to: 53 }] });
    // Inbound default-deny (#12 item 8): one rule for cluster-a, the connection table's settings.
    expect(c.policy[0]!.inbound.map((r) => [r.sources.map(formatPrefix), r.prefixes?.map(formatPrefix), r.protocols, r.ports])).toEqual([[['10.20.0.5/32'], ['10.10.0.2/32'], ['tcp'], [{ from: 9100, to: 9100 }]]]);
    expect(c.policy[1]!.inbound).toEqual([]);
    expect(c.inboundTracking).toEqual({ maxFlows: 65_536, timeouts: { udpStreamMs: 120_000 } });
  });

  it('config/agent.yaml parses with every section', () => {
    const c = loadAgentConfig('config/agent.yaml');
    expect(c.mode).toBe('site-to-site');
    expect(c.gateway.address).toEqual({ host: '192.0.2.2', port: 4433 });
    expect(c.reconnect).toEqual({ minDelayMs: 250, maxDelayMs: 30000, jitter: 0.2 });
    expect(c.connectUdp.forwarders[0]).toEqual({ listen: { host: '127.0.0.1', port: 7007 }, target: { host: '10.20.0.2', port: 7 }, maxClients: 32 });
    expect(c.advertise.map(formatPrefix)).toEqual(['10.10.0.0/24', 'fd00:a::/64']);
    expect(c.admin.listen.port).toBe(9091);
  });

  it('fills defaults for a minimal gateway file and resolves paths against the file directory', () => {
    const c = parseGatewayConfig(GW_BASE, 'gw.yaml', '/etc/mtun');
    expect(c.tls.cert).toBe('/etc/mtun/gw.pem');
    expect(c.listen).toEqual({ host: '::', port: 4433 });
    expect(c.policy).toEqual([]); // default deny: no rules
    expect(c.tun).toEqual({ name: 'mtun0', offload: true, queueDelay: { targetMs: 1, intervalMs: 10 }, thread: true });
    expect(c.inspection).toEqual({ maxFlows: 262144, peekBudgetBytes: 16 * 1024 * 1024, timeouts: {} });
    expect(c.telemetry).toEqual({ workloads: [], flowLog: { enabled: true, path: '-', maxFailedPerSecond: 100 } });
    expect(c.connectUdp.idleTimeoutMs).toBe(120000);
    // The defaults of the constants these keys replace (#12 items 2 and 10).
    expect(c.masque).toEqual({ maxRangesPerAdvertisement: 64, maxClientPrefixes: 256, advertisementsPerSecond: 1, advertisementBurst: 8 });
    expect(c.pools.minPrefixLength).toEqual({ ipv4: 32, ipv6: 128 });
    expect(c.pools.maxLeasesPerIdentity).toBe(4);
    expect(c.logLevel).toBe('info');
    expect(c.keepaliveIntervalMs).toBe(15000);
  });

  it('fills defaults for a minimal agent file', () => {
    const c = parseAgentConfig(AGENT_BASE, 'agent.yaml', '/etc/mtun');
    expect(c.mode).toBe('site-to-site');
    expect(c.reconnect.maxDelayMs).toBe(30000);
    expect(c.mssClamp).toBe(true);
    expect(c.admin).toEqual({ enabled: true, listen: { host: '127.0.0.1', port: 9091 }, capture: { enabled: false, allowRemote: false, queueBytes: 4 << 20, queuePackets: 8192 } });
  });

  it('reads files from disk and reports unreadable ones', () => {
    const dir = mkdtempSync(join(tmpdir(), 'mtun-config-'));
    const f = join(dir, 'gateway.yaml');
    writeFileSync(f, GW_BASE);
    expect(loadGatewayConfig(f).tls.key).toBe(join(dir, 'gw-key.pem'));
    expect(() => loadGatewayConfig(join(dir, 'nope.yaml'))).toThrow(`${join(dir, 'nope.yaml')}:1:1: cannot read config: no such file`);
    expect(() => loadAgentConfig(dir)).toThrow(ConfigError);
  });
});

describe('config: errors name file:line:col, key path and what was expected', () => {
  it('a bad port inside a policy rule', () => {
    const text = `${GW_BASE}policy:\n  - identity: a\n    allow:\n      - prefixes: [10.0.0.0/8]\n      - prefixes: [10.1.0.0/16]\n        ports: [80, http]\n`;
    expect(gwError(text)).toBe('gw.yaml:12:21: policy[0].allow[1].ports[1]: expected a port number 1-65535 or a range "low-high", got "http"');
  });

  it('a port out of range and a reversed range', () => {
    expect(gwError(`${GW_BASE}connectUdp:\n  targets:\n    - host: 10.0.0.1\n      ports: [0, "90-80"]\n`)).toBe(
      'gw.yaml:10:15: connectUdp.targets[0].ports[0]: expected a port number 1-65535 or a range "low-high", got 0\n' +
      'gw.yaml:10:18: connectUdp.targets[0].ports[1]: expected a port number 1-65535 or a range "low-high", got "90-80"');
  });

  it('a prefix with host bits set suggests the fix', () => {
    expect(gwError('tls:\n  cert: a\n  key: b\n  ca: c\npools:\n  ipv4: 10.200.0.1/24\n')).toBe(
      'gw.yaml:6:9: pools.ipv4: expected the host bits of "10.200.0.1/24" to be zero (did you mean 10.200.0.0/24?)');
  });

  it('tun.queueDelay: CoDel off with targetMs 0; a target not below its interval, or negative, is refused', () => {
    expect(parseAgentConfig(`${AGENT_BASE}tun:\n  queueDelay:\n    targetMs: 0\n`, 'agent.yaml', '/etc/mtun').tun.queueDelay).toEqual({ targetMs: 0, intervalMs: 10 });
    expect(parseAgentConfig(`${AGENT_BASE}tun:\n  queueDelay: { targetMs: 0.5, intervalMs: 100 }\n`, 'agent.yaml', '/etc/mtun').tun.queueDelay).toEqual({ targetMs: 0.5, intervalMs: 100 });
    expect(agentError(`${AGENT_BASE}tun:\n  queueDelay:\n    targetMs: 20\n`)).toBe('agent.yaml:9:5: tun.queueDelay: expected targetMs (default 1) below intervalMs (default 10), got targetMs 20 and intervalMs 10; targetMs 0 turns it off');
    // Only the interval set, below the default target: the message says where the 1 comes from.
    expect(agentError(`${AGENT_BASE}tun:\n  queueDelay:\n    intervalMs: 0.5\n`)).toBe('agent.yaml:9:5: tun.queueDelay: expected targetMs (default 1) below intervalMs (default 10), got targetMs 1 and intervalMs 0.5; targetMs 0 turns it off');
    expect(agentError(`${AGENT_BASE}tun:\n  queueDelay:\n    targetMs: -1\n`)).toBe('agent.yaml:9:15: tun.queueDelay.targetMs: expected a delay in milliseconds between 0 and 1000, got -1');
  });

  it('tun.queueDelay: the default is the endpoint\'s own default (one constant, src/quic/queue-delay.ts)', () => {
    const q = parseAgentConfig(AGENT_BASE, 'agent.yaml', '/etc/mtun').tun.queueDelay;
    expect(tunQueueDelay(q)).toEqual(DEFAULT_DGRAM_QUEUE_DELAY);
    expect(tunQueueDelay(parseGatewayConfig(GW_BASE, 'gw.yaml', '/').tun.queueDelay)).toEqual(DEFAULT_DGRAM_QUEUE_DELAY);
  });

  it('an IPv6 prefix where IPv4 is required', () => {
    expect(gwError('tls:\n  cert: a\n  key: b\n  ca: c\npools:\n  ipv4: fd00::/64\n')).toBe(
      'gw.yaml:6:9: pools.ipv4: expected an IPv4 prefix, got "fd00::/64"');
  });

  it('a listen address may carry an IPv6 zone (RFC 4007 §11); an empty zone or an IPv4 zone is refused', () => {
    expect(parseGatewayConfig(`${GW_BASE}listen: "[fe80::1%eth0]:4433"\n`, 'gw.yaml', '/').listen).toEqual({ host: 'fe80::1%eth0', port: 4433 });
    expect(gwError(`${GW_BASE}listen: "[fe80::1%]:4433"\n`)).toMatch(/^gw\.yaml:7:9: listen: expected "host:port"/);
    expect(gwError(`${GW_BASE}listen: "10.0.0.1%eth0:4433"\n`)).toMatch(/^gw\.yaml:7:9: listen: expected "host:port"/);
  });

  it('a missing required section and a missing required key', () => {
    expect(gwError('pools:\n  ipv4: 10.0.0.0/8\n')).toBe('gw.yaml:1:1: tls: missing required key (expected a mapping)');
    expect(gwError('tls:\n  cert: a\n  ca: c\npools:\n  ipv4: 10.0.0.0/8\n')).toBe('gw.yaml:2:3: tls.key: missing required key (expected a file path)');
  });

  it('wrong types and enum values', () => {
    expect(gwError(`${GW_BASE}logLevel: loud\n`)).toBe('gw.yaml:7:11: logLevel: expected one of "trace", "debug", "info", "warn", "error", "fatal", "silent", got "loud"');
    expect(gwError(`${GW_BASE}policy: {identity: a}\n`)).toBe('gw.yaml:7:9: policy: expected a list, got a mapping');
    expect(gwError(`${GW_BASE}tun:\n  mtuBytes: 100\n`)).toBe('gw.yaml:8:13: tun.mtuBytes: expected an MTU in bytes 576-65535, got 100');
    expect(gwError(`${GW_BASE}tun:\n  name: this-name-is-too-long\n`)).toBe(
      'gw.yaml:8:9: tun.name: expected an interface name of 1-15 letters, digits, "_", "." or "-", got "this-name-is-too-long"');
    expect(gwError(`${GW_BASE}listen: "[::1]4433"\n`)).toBe('gw.yaml:7:9: listen: expected "host:port" (IPv6 as "[addr]:port"), got "[::1]4433"');
    expect(gwError(`${GW_BASE}listen: "0.0.0.0:99999"\n`)).toBe('gw.yaml:7:9: listen: expected a port number 1-65535 after ":", got "0.0.0.0:99999"');
  });

  it('route-advertisement limits, pool lease limits and the peek budget are read and range-checked', () => {
    const c = parseGatewayConfig(`${GW_BASE}  minPrefixLength: {ipv4: 30}\n  maxLeasesPerIdentity: 2\nmasque: {maxRangesPerAdvertisement: 8, advertisementsPerSecond: 0.5}\ninspection: {peekBudgetBytes: 0}\n`, 'gw.yaml', '/etc/mtun');
    expect(c.pools).toMatchObject({ minPrefixLength: { ipv4: 30, ipv6: 128 }, maxLeasesPerIdentity: 2 });
    expect(c.masque).toEqual({ maxRangesPerAdvertisement: 8, maxClientPrefixes: 256, advertisementsPerSecond: 0.5, advertisementBurst: 8 });
    expect(c.inspection.peekBudgetBytes).toBe(0);
    expect(gwError(`${GW_BASE}masque: {maxClientPrefixes: 0}\n`)).toMatch(/masque\.maxClientPrefixes: expected a prefix count/);
    expect(gwError(`${GW_BASE}  minPrefixLength: {ipv6: 129}\n`)).toMatch(/pools\.minPrefixLength\.ipv6: expected a prefix length/);
    expect(gwError(`${GW_BASE}masque: {burst: 8}\n`)).toMatch(/masque/);
  });

  it('RFC 9298 §3.1: a CONNECT-UDP idle timeout under 2 minutes is refused', () => {
    expect(gwError(`${GW_BASE}connectUdp:\n  idleTimeoutMs: 1000\n`)).toBe(
      'gw.yaml:8:18: connectUdp.idleTimeoutMs: expected a duration in milliseconds 120000-86400000, got 1000');
  });

  it('a bad workload-map key is reported at the key', () => {
    expect(gwError(`${GW_BASE}telemetry:\n  workloads:\n    10.0.0.0/33: web\n`)).toBe(
      'gw.yaml:9:5: telemetry.workloads["10.0.0.0/33"]: expected a prefix length 0-32 after "/", got "10.0.0.0/33"');
  });

  it('cross-field rules: mTLS needs a CA; no client cert needs tokens (RFC 9484 §11); a pool is required', () => {
    expect(gwError('tls:\n  cert: a\n  key: b\npools:\n  ipv6: fd00::/64\n')).toBe(
      'gw.yaml:2:3: tls: expected "ca" (the CA client certificates chain to) when requireClientCert is true');
    expect(gwError('tls:\n  cert: a\n  key: b\n  requireClientCert: false\npools:\n  ipv6: fd00::/64\n')).toBe(
      'gw.yaml:1:1: auth.tokens: expected at least one token when tls.requireClientCert is false (clients must be authenticated, RFC 9484 §11)');
    expect(gwError('tls:\n  cert: a\n  key: b\n  ca: c\n')).toBe('gw.yaml:1:1: pools: expected at least one of "ipv4" or "ipv6"');
    expect(gwError(`${GW_BASE}auth:\n  tokens:\n    - identity: x\n`)).toBe('gw.yaml:9:7: auth.tokens[0]: expected exactly one of "token" or "tokenFile"');
  });

  it('refuses a bearer token shorter than MIN_TOKEN_CHARS, at the token (#12 item 13)', () => {
    expect(gwError(`${GW_BASE}auth:\n  tokens:\n    - identity: x\n      token: short-secret\n`)).toBe(
      'gw.yaml:10:14: auth.tokens[0].token: expected a token of at least 32 characters (e.g. openssl rand -hex 32), got 12');
    expect(() => parseGatewayConfig(`${GW_BASE}auth:\n  tokens:\n    - identity: x\n      token: ${'k'.repeat(32)}\n`, 'gw.yaml')).not.toThrow();
  });

  it('agent cross-field rules', () => {
    expect(agentError(`${AGENT_BASE}reconnect:\n  minDelayMs: 5000\n  maxDelayMs: 1000\n`)).toBe(
      'agent.yaml:9:15: reconnect.maxDelayMs: expected maxDelayMs ≥ minDelayMs (5000), got 1000');
    expect(agentError(`${AGENT_BASE}snat: true\n`)).toBe('agent.yaml:7:7: snat: expected snat only with mode: remote-access (site-to-site preserves addresses)');
    expect(agentError('gateway:\n  address: gw:4433\ntls:\n  ca: ca.pem\n')).toBe(
      'agent.yaml:4:3: tls: expected a client certificate ("cert" and "key") or a bearer token (auth.token / auth.tokenFile)');
    expect(agentError(`${AGENT_BASE}reconnect:\n  jitter: 2\n`)).toBe('agent.yaml:8:11: reconnect.jitter: expected a fraction between 0 and 1, got 2');
  });

  it('YAML syntax errors and duplicate keys carry positions', () => {
    expect(gwError('tls: [1\n')).toMatch(/^gw\.yaml:2:1: invalid YAML: /);
    expect(gwError('tls: 1\ntls: 2\n')).toBe('gw.yaml:2:1: invalid YAML: Map keys must be unique');
  });

  it('a top level that is not a mapping', () => {
    expect(gwError('- a\n- b\n')).toBe('gw.yaml:1:1: expected a mapping of settings at the top level, got a list');
  });

  it('reports every problem, sorted by position', () => {
    const msg = gwError('logLevel: 3\ntls:\n  cert: a\n  key: b\n  ca: c\npools:\n  ipv4: 1.2.3.4/40\n');
    expect(msg.split('\n')).toEqual([
      'gw.yaml:1:11: logLevel: expected one of "trace", "debug", "info", "warn", "error", "fatal", "silent", got 3',
      'gw.yaml:7:9: pools.ipv4: expected a prefix length 0-32 after "/", got "1.2.3.4/40"',
    ]);
  });
});

describe('config: unknown keys are errors', () => {
  it('at the top level, listing the allowed keys', () => {
    expect(gwError(`${GW_BASE}colour: blue\n`)).toBe(
      'gw.yaml:7:1: colour: unknown key; expected one of: listen, tls, auth, pools, quic, advertise, policy, inboundTracking, connectUdp, masque, h2, tun, maxSessions, maxSessionsPerIdentity, maxConnectionsPerPeerIp, connectionWindowBytes, streamWindowBytes, keepaliveIntervalMs, inspection, telemetry, admin, logLevel');
  });

  it('nested, with a did-you-mean for near misses', () => {
    expect(gwError('tls:\n  cert: a\n  key: b\n  ca: c\n  reqireClientCert: true\npools:\n  ipv4: 10.0.0.0/8\n')).toBe(
      'gw.yaml:5:3: tls.reqireClientCert: unknown key; did you mean "requireClientCert"?');
    expect(gwError(`${GW_BASE}policy:\n  - identity: a\n    allow:\n      - prefixes: [10.0.0.0/8]\n        port: [80]\n`)).toBe(
      'gw.yaml:11:9: policy[0].allow[0].port: unknown key; did you mean "ports"?');
    expect(agentError(`${AGENT_BASE}connectUdp:\n  forwarders:\n    - listen: 127.0.0.1:53\n      target: {host: a, port: 53, proto: udp}\n`)).toBe(
      'agent.yaml:10:35: connectUdp.forwarders[0].target.proto: unknown key; expected one of: host, port');
  });
});

describe('config: property tests', () => {
  const yamlish = fc.array(
    fc.oneof(
      fc.constantFrom('tls:', 'pools:', 'policy:', '  - ', 'identity: ', 'ports: ', 'cert: ', '  ', '\n', ': ', '[', ']', '{', '}', ',', '&a ', '*a', '!!str ', '"', "'", '#', '---\n', '10.0.0.0/8', '65536', 'http', '? ', '|', '>', '\t', '%YAML 1.2\n'),
      fc.string({ maxLength: 8 }),
    ),
    { maxLength: 60 },
  ).map((parts) => parts.join(''));

  it('random YAML-ish text never throws anything but ConfigError', () => {
    fc.assert(fc.property(yamlish, (text) => {
      for (const parse of [parseGatewayConfig, parseAgentConfig]) {
        try {
          parse(text, 'x.yaml', '/tmp');
        } catch (err) {
          if (!(err instanceof ConfigError)) throw err;
          for (const i of err.issues) {
            if (!(i.line >= 1 && i.col >= 1)) throw new Error(`bad position in ${String(err)}`);
          }
        }
      }
    }), { numRuns: 500 });
  });

  it('random structured documents (any JSON value under real keys) never throw anything but ConfigError', () => {
    const keys = ['listen', 'tls', 'auth', 'pools', 'advertise', 'policy', 'connectUdp', 'tun', 'inspection', 'telemetry', 'admin', 'gateway', 'reconnect', 'mode', 'logLevel'];
    fc.assert(fc.property(fc.dictionary(fc.constantFrom(...keys), fc.jsonValue({ maxDepth: 4 })), (doc) => {
      const text = stringify(doc);
      for (const parse of [parseGatewayConfig, parseAgentConfig]) {
        try {
          parse(text, 'x.yaml', '/tmp');
        } catch (err) {
          if (!(err instanceof ConfigError)) throw err;
        }
      }
    }), { numRuns: 300 });
  });

  it('valid gateway files with random ports and prefixes round-trip', () => {
    fc.assert(fc.property(fc.integer({ min: 1, max: 65535 }), fc.integer({ min: 0, max: 32 }), fc.ipV4(), (port, len, ip) => {
      const parts = ip.split('.').map(Number);
      const n = ((parts[0]! << 24) | (parts[1]! << 16) | (parts[2]! << 8) | parts[3]!) >>> 0;
      const masked = len === 0 ? 0 : (n & (0xffffffff << (32 - len))) >>> 0;
      const text = [masked >>> 24, (masked >>> 16) & 255, (masked >>> 8) & 255, masked & 255].join('.') + `/${len}`;
      const c = parseGatewayConfig(`${GW_BASE}listen: "[::1]:${port}"\nadvertise: [${text}]\n`, 'g.yaml');
      return c.listen.port === port && formatPrefix(c.advertise[0]!) === text;
    }), { numRuns: 200 });
  });
});
