/**
 * Several gateway replicas behind an nftables UDP load balancer, with real
 * daemons (`bin/mtun.js` over dist/) in namespaces (docs/deployment.md,
 * "Several gateway replicas"):
 *
 *   <p>a1 site-to-site agent "site-a"  198.18.1.2 ──┐           ┌── <p>g0 gateway, pools.slice 0 of 2   10.21.0.2
 *        site address 10.10.1.1 (lo)                │  <p>lb    │        (10.200.0.0/25, fd00:200::/65)
 *   <p>a2 remote-access agent "ra-b"   198.18.2.2 ──┼─ VIP ─────┤
 *   <p>a3 remote-access agent "ra-c"   198.18.3.2 ──┘ 198.19.0.1└── <p>g1 gateway, pools.slice 1 of 2   10.21.1.2
 *                                         :4433 DNAT, numgen inc     (10.200.0.128/25, fd00:200:0:0:8000::/65)
 *                                         mod 2 per new 5-tuple
 *                                         routes: pool slices (static), site 10.10.1.0/24 (follows the session)
 *                                                   │
 *                                       <p>srv 10.20.0.2 (cluster network, default via <p>lb)
 *
 * The gateways have different TLS keys and share only the reset secret
 * (quic.statelessResetKeyFile), read the replica index from $MTUN_POD
 * (`gw-0`, `gw-1`) and advertise 10.20.0.0/24. The load balancer's
 * conntrack keeps each 5-tuple on the replica its first packet went to;
 * numgen inc makes that choice predictable (new flow n goes to replica n mod 2,
 * the rule's counter says n), where jhash would hash the tuple instead.
 *
 * The test plays the route announcer of the cluster network (what BGP or a
 * controller does in production): every 200 ms it reads each replica's
 * /status and routes a site prefix via the replica whose session holding
 * it is the newest. Checked: sessions spread over both replicas; the
 * remote-access agents get addresses from different slices; pings through
 * every replica. Then site-a's NAT binding changes (stateless source-port
 * rewrite in its namespace, ahead of conntrack): its next packet is a new
 * 5-tuple, which the load balancer sends to the other replica; that replica
 * knows no such connection ID and answers with a stateless reset (RFC 9000
 * §10.3) whose token the agent accepts because the key is shared; the agent
 * reconnects at once (not after its 3 s backoff) and pings resume through the
 * new replica, which now holds the site route. The old replica drops its
 * session and route at the QUIC idle timeout (RFC 9000 §10.1).
 * Last, with nftables rules that route short-header packets by the QUIC-LB
 * server ID in the destination connection ID (quic.serverId = the replica
 * index), a rebound agent stays on its replica: its connection migrates,
 * no reset, same session.
 *
 * Root only; namespaces (and the nft tables inside them) are removed in
 * afterAll and on process exit, also on failure.
 */
import { DAEMON_NODE_FLAGS } from '../../src/daemon/tunnel-constants.js';
import { execFileSync, type ChildProcess } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cleanupAll, createNetns, execAsync, isRoot, runPrefix, spawnIn, veth, warnIfNotRoot } from './netns.js';

warnIfNotRoot('test/netns/replicas.test.ts');

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const MTUN = join(ROOT, 'bin', 'mtun.js');
const VIP = '198.19.0.1';
const GW = ['10.21.0.2', '10.21.1.2'] as const;
const SERVER = '10.20.0.2';
const SITE = '10.10.1.0/24';
const SITE_ADDR = '10.10.1.1';
/** The agents' reconnect.minDelayMs: an immediate reconnect is well under it. */
const AGENT_MIN_BACKOFF_MS = 3_000;

interface Daemon {
  readonly name: string;
  readonly ns: string;
  readonly child: ChildProcess;
  readonly lines: Record<string, unknown>[];
}

interface StatusSession {
  readonly peerIdentity: string;
  readonly addresses: string[];
  readonly routes: string[];
  readonly since: string;
}

describe.skipIf(!isRoot())('two gateway replicas behind an nftables UDP load balancer', () => {
  const pfx = runPrefix('r');
  const dir = mkdtempSync(join(tmpdir(), 'mtun-replicas-'));
  const ns: Record<string, string> = {};
  const daemons: Daemon[] = [];
  let follower: NodeJS.Timeout | null = null;
  let followerBusy = false;
  const siteVia: string[] = []; // every next hop the announcer set for SITE, in order
  const siteViaAt: number[] = []; // when it set each one (Date.now())

  function sh(n: string, ...args: string[]): string {
    return execFileSync('ip', ['netns', 'exec', ns[n]!, ...args], { encoding: 'utf8', stdio: 'pipe', timeout: 20_000 });
  }

  function start(name: string, where: string, role: 'gateway' | 'agent', env: Record<string, string> = {}): Daemon {
    const child = spawnIn(ns[where]!, process.execPath, [...DAEMON_NODE_FLAGS, MTUN, role, '-c', join(dir, `${name}.yaml`)], { env: { ...process.env, ...env } });
    const d: Daemon = { name, ns: where, child, lines: [] };
    let buf = '';
    const take = (chunk: string): void => {
      buf += chunk;
      for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        try {
          d.lines.push(JSON.parse(line) as Record<string, unknown>);
        } catch {
          d.lines.push({ msg: line });
        }
      }
    };
    child.stdout!.setEncoding('utf8').on('data', take);
    child.stderr!.setEncoding('utf8').on('data', take);
    daemons.push(d);
    return d;
  }

  async function admin(where: string, port: number, path: string): Promise<{ code: number; stdout: string }> {
    return execAsync(ns[where]!, 'curl', ['-sf', '--max-time', '2', `http://127.0.0.1:${port}${path}`], 5_000);
  }

  async function status(k: number): Promise<StatusSession[]> {
    const r = await admin(`g${k}`, 9090, '/status');
    if (r.code !== 0) return [];
    return (JSON.parse(r.stdout) as { sessions: StatusSession[] }).sessions;
  }

  async function until(what: string, ms: number, cond: () => Promise<boolean> | boolean, d?: Daemon): Promise<number> {
    const t0 = Date.now();
    for (;;) {
      if (await cond()) return Date.now() - t0;
      if (d !== undefined && d.child.exitCode !== null) throw new Error(`${d.name} exited (${d.child.exitCode}): ${tail(d)}`);
      if (Date.now() - t0 > ms) throw new Error(`timed out after ${ms} ms waiting for ${what}\n${daemons.map((x) => `${x.name}: ${tail(x)}`).join('\n')}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  function tail(d: Daemon): string {
    return d.lines.slice(-8).map((l) => JSON.stringify(l)).join('\n  ');
  }

  async function ping(from: string, src?: string, waitS = '1'): Promise<boolean> {
    const r = await execAsync(ns[from]!, 'ping', ['-c', '1', '-W', waitS, '-n', ...(src ? ['-I', src] : []), SERVER], 5_000);
    return r.code === 0;
  }

  /** The announcer: a site prefix goes via the replica whose session holding it is the newest. */
  async function announce(): Promise<void> {
    if (followerBusy) return;
    followerBusy = true;
    try {
      const best = new Map<string, { k: number; since: string }>();
      for (const k of [0, 1]) {
        for (const s of await status(k)) {
          for (const r of s.routes) {
            const b = best.get(r);
            if (b === undefined || s.since > b.since) best.set(r, { k, since: s.since });
          }
        }
      }
      const b = best.get(SITE);
      const via = b === undefined ? null : GW[b.k];
      if (via !== null && siteVia.at(-1) !== via) {
        await execAsync(ns.lb!, 'ip', ['route', 'replace', SITE, 'via', via]);
        siteVia.push(via);
        siteViaAt.push(Date.now());
      }
    } finally {
      followerBusy = false;
    }
  }

  /** Packets the DNAT rule has seen: one per new 5-tuple (the nat hook sees only a flow's first packet). */
  function newFlows(): number {
    const m = /counter packets (\d+) bytes \d+ dnat to numgen/.exec(sh('lb', 'nft', 'list', 'chain', 'ip', `${pfx}lb`, 'pre'));
    if (m === null) throw new Error('no counter on the DNAT rule');
    return Number(m[1]);
  }

  function agentPort(a: string): number {
    // The agent's QUIC socket is the only UDP socket in its namespace.
    const out = sh(a, 'ss', '-Huan');
    const m = /\s(?:0\.0\.0\.0|\*):(\d+)\s/.exec(out);
    if (m === null) throw new Error(`no UDP socket in ${a}: ${out}`);
    return Number(m[1]);
  }

  /**
   * Changes the agent's NAT binding: a stateless source-port rewrite ahead of
   * conntrack (priority -300) in its namespace. Its socket is unchanged; the
   * network sees it at `newPort` (or the next port) from now on, and answers
   * to the old port are lost.
   */
  function rebind(a: string, newPort: number): void {
    const cport = agentPort(a);
    const nport = cport === newPort ? newPort + 1 : newPort;
    const rules = join(dir, `rebind-${a}.nft`);
    writeFileSync(rules, `table ip ${pfx}rb {
  chain out { type filter hook output priority -300; policy accept;
    ip daddr ${VIP} udp sport ${cport} udp dport 4433 udp sport set ${nport}
  }
  chain in { type filter hook prerouting priority -300; policy accept;
    ip saddr ${VIP} udp sport 4433 udp dport ${cport} drop
    ip saddr ${VIP} udp sport 4433 udp dport ${nport} udp dport set ${cport}
  }
}
`);
    sh(a, 'nft', '-f', rules);
  }

  beforeAll(async () => {
    for (const n of ['lb', 'g0', 'g1', 'srv', 'a1', 'a2', 'a3']) {
      ns[n] = createNetns(`${pfx}${n}`);
      sh(n, 'sysctl', '-qw', 'net.ipv6.conf.all.disable_ipv6=0');
    }
    for (const n of ['lb', 'g0', 'g1']) sh(n, 'sysctl', '-qw', 'net.ipv4.ip_forward=1');
    for (const k of [0, 1]) {
      veth(ns.lb!, `${pfx}lg${k}`, ns[`g${k}`]!, `${pfx}g${k}`, { a: [`10.21.${k}.1/24`], b: [`${GW[k]}/24`] });
      sh(`g${k}`, 'ip', 'route', 'add', 'default', 'via', `10.21.${k}.1`);
    }
    veth(ns.lb!, `${pfx}ls`, ns.srv!, `${pfx}s`, { a: ['10.20.0.1/24'], b: [`${SERVER}/24`] });
    sh('srv', 'ip', 'route', 'add', 'default', 'via', '10.20.0.1');
    for (const i of [1, 2, 3]) {
      veth(ns.lb!, `${pfx}la${i}`, ns[`a${i}`]!, `${pfx}a${i}`, { a: [`198.18.${i}.1/24`], b: [`198.18.${i}.2/24`] });
      sh(`a${i}`, 'ip', 'route', 'add', 'default', 'via', `198.18.${i}.1`);
    }
    sh('a1', 'ip', 'addr', 'add', `${SITE_ADDR}/32`, 'dev', 'lo');
    sh('lb', 'ip', 'addr', 'add', `${VIP}/32`, 'dev', 'lo');
    // Return routes for the pool slices are static: each replica owns its slice.
    sh('lb', 'ip', 'route', 'add', '10.200.0.0/25', 'via', GW[0]);
    sh('lb', 'ip', 'route', 'add', '10.200.0.128/25', 'via', GW[1]);
    const lbRules = join(dir, 'lb.nft');
    writeFileSync(lbRules, `table ip ${pfx}lb {
  chain pre { type nat hook prerouting priority dstnat; policy accept;
    ip daddr ${VIP} udp dport 4433 counter dnat to numgen inc mod 2 map { 0 : ${GW[0]}, 1 : ${GW[1]} }
  }
}
`);
    sh('lb', 'nft', '-f', lbRules);

    // Same CA, a different gateway key per replica: only the shared secret makes their reset tokens agree.
    execFileSync(process.execPath, [MTUN, 'certs', '--out', join(dir, 'certs0'), '--agents', 'site-a,ra-b,ra-c'], { stdio: 'pipe' });
    mkdirSync(join(dir, 'certs1'));
    for (const f of ['ca.pem', 'ca-key.pem']) copyFileSync(join(dir, 'certs0', f), join(dir, 'certs1', f));
    execFileSync(process.execPath, [MTUN, 'certs', '--out', join(dir, 'certs1'), '--agents', 'unused'], { stdio: 'pipe' });
    writeFileSync(join(dir, 'reset.key'), randomBytes(32));
    chmodSync(join(dir, 'reset.key'), 0o600);
    for (const k of [0, 1]) writeFileSync(join(dir, `gw${k}.yaml`), gatewayYaml(dir, k));
    writeFileSync(join(dir, 'site-a.yaml'), agentYaml(dir, 'site-a', `mode: site-to-site\nadvertise: [${SITE}]\n`));
    for (const n of ['ra-b', 'ra-c']) writeFileSync(join(dir, `${n}.yaml`), agentYaml(dir, n, 'mode: remote-access\n'));

    for (const k of [0, 1]) {
      const d = start(`gw${k}`, `g${k}`, 'gateway', { MTUN_POD: `gw-${k}` });
      await until(`gateway ${k} ready`, 20_000, async () => (await admin(`g${k}`, 9090, '/readyz')).code === 0, d);
    }
    // One agent at a time, so numgen hands them out in order: site-a → g0, ra-b → g1, ra-c → g0.
    for (const [a, name] of [['a1', 'site-a'], ['a2', 'ra-b'], ['a3', 'ra-c']] as const) {
      const d = start(name, a, 'agent');
      await until(`${name} tunnel up`, 20_000, async () => (await admin(a, 9091, '/readyz')).code === 0, d);
    }
    follower = setInterval(() => void announce(), 200);
  }, 120_000);

  afterAll(async () => {
    if (follower !== null) clearInterval(follower);
    while (followerBusy) await new Promise((r) => setTimeout(r, 20));
    // Deleting a namespace kills nothing by itself: cleanupAll kills the daemons, then removes
    // the namespaces and with them their nft tables, veths and routes.
    cleanupAll();
    rmSync(dir, { recursive: true, force: true });
  });

  it('spreads sessions over both replicas; pool slices do not collide; traffic flows through each', async () => {
    const s0 = await status(0);
    const s1 = await status(1);
    expect(s0.map((s) => s.peerIdentity).sort()).toEqual(['spiffe://cluster.local/agent/ra-c', 'spiffe://cluster.local/agent/site-a']);
    expect(s1.map((s) => s.peerIdentity)).toEqual(['spiffe://cluster.local/agent/ra-b']);
    expect(newFlows()).toBe(3);
    // Each replica routes only its slice to its TUN.
    expect(sh('g0', 'ip', 'route', 'show', 'dev', 'mtun-g')).toContain('10.200.0.0/25');
    expect(sh('g1', 'ip', 'route', 'show', 'dev', 'mtun-g')).toContain('10.200.0.128/25');
    const addrB = s1[0]!.addresses.find((a) => a.includes('.'))!;
    const addrC = s0.find((s) => s.peerIdentity.endsWith('ra-c'))!.addresses.find((a) => a.includes('.'))!;
    // Without slices both replicas would hand out their pool's first free address, 10.200.0.1.
    expect(addrB).toBe('10.200.0.128/32');
    expect(addrC).toBe('10.200.0.1/32');
    expect(s1[0]!.addresses.find((a) => a.includes(':'))).toMatch(/^fd00:200:(0:0:)?8000:/); // the first address of the upper /65
    expect(sh('a2', 'ip', '-4', '-o', 'addr', 'show', 'dev', 'mtun-a')).toContain('10.200.0.128/32');
    // Traffic through both replicas: the remote-access agents from their pool addresses, site-a from its site.
    await until('the announcer routes the site via g0', 5_000, () => siteVia.at(-1) === GW[0]);
    expect(await ping('a2')).toBe(true);
    expect(await ping('a3')).toBe(true);
    expect(await ping('a1', SITE_ADDR)).toBe(true);
  }, 60_000);

  it('a NAT rebinding lands site-a on the other replica: stateless reset, immediate reconnect, traffic and site route move', async () => {
    const agent = daemons.find((d) => d.name === 'site-a')!;
    const gw1 = daemons.find((d) => d.name === 'gw1')!;
    // The next new 5-tuple goes to replica (flows so far) mod 2; site-a is on g0, so that must be g1.
    expect(newFlows() % 2).toBe(1);
    const downBefore = agent.lines.filter((l) => l.msg === 'tunnel down').length;
    rebind('a1', 47_000);
    const flipAt = Date.now();
    // The first packet after the flip (this ping, or a keepalive) triggers the reset.
    // Short ping timeouts: how soon traffic resumes is measured to about 0.2 s.
    const resumeMs = await until('pings from the site through the new replica', 30_000, () => ping('a1', SITE_ADDR, '0.2'), agent);
    expect(newFlows()).toBe(4);

    const down = agent.lines.filter((l) => l.msg === 'tunnel down')[downBefore];
    expect(down, tail(agent)).toBeDefined();
    expect(down!.statelessReset).toBe(true); // only a token derived from the shared key closes the connection
    const downAt = down!.time as number;
    const up = agent.lines.find((l) => l.msg === 'tunnel up' && (l.time as number) >= downAt);
    expect(up, tail(agent)).toBeDefined();
    const reconnecting = agent.lines.find((l) => l.msg === 'reconnecting' && (l.time as number) >= downAt)!;
    expect(reconnecting.delayMs).toBe(0);
    const reconnectMs = (up!.time as number) - downAt;
    expect(reconnectMs).toBeLessThan(AGENT_MIN_BACKOFF_MS);

    // The new replica holds the session and the site route; the cluster network follows it.
    const s1 = await status(1);
    const site1 = s1.find((s) => s.peerIdentity.endsWith('site-a'));
    expect(site1?.routes).toEqual([SITE]);
    expect(sh('g1', 'ip', 'route', 'show', SITE)).toContain('dev mtun-g');
    expect(gw1.lines.some((l) => l.msg === 'session opened' && String(l.identity).endsWith('site-a'))).toBe(true);
    expect(siteVia.at(-1)).toBe(GW[1]);
    expect(sh('lb', 'ip', 'route', 'show', SITE)).toContain(`via ${GW[1]}`);

    // The old replica keeps the dead connection until the QUIC idle timeout, then withdraws the route.
    const staleMs = await until('g0 to drop the stale session and its site route', 60_000, async () =>
      !(await status(0)).some((s) => s.peerIdentity.endsWith('site-a')) && sh('g0', 'ip', 'route', 'show', SITE).trim() === '');
    expect(await ping('a1', SITE_ADDR)).toBe(true);
    expect(await ping('a3')).toBe(true); // ra-c on g0 is untouched
    const routeMovedMs = siteViaAt.at(-1)! - flipAt;
    console.log(`replicas: after the NAT rebinding, pings resumed in ${resumeMs} ms (reset → tunnel up ${reconnectMs} ms, ` +
      `site route announced via the new replica after ${routeMovedMs} ms); ` +
      `the old replica withdrew the site route ${staleMs + resumeMs} ms after the flip`);
  }, 120_000);

  it('with a CID-aware rule (QUIC-LB server ID) the load balancer keeps a rebound agent on its replica: the connection migrates, no reset', async () => {
    const agent = daemons.find((d) => d.name === 'ra-b')!;
    const before = (await status(1)).find((x) => x.peerIdentity.endsWith('ra-b'))!;
    // ra-b is on g1; by 5-tuple its next new flow would go to g0 (flows so far mod 2).
    expect(newFlows() % 2).toBe(0);
    // Short header (first bit 0): the server ID is the DCID's second octet, UDP payload octet 2 (bits 80-87).
    // Long headers (new connections) still fall through to the 5-tuple rule.
    for (const k of [0, 1]) {
      sh('lb', 'nft', 'insert', 'rule', 'ip', `${pfx}lb`, 'pre', 'ip', 'daddr', VIP, 'udp', 'dport', '4433',
        '@th,64,1', '0', '@th,80,8', `${k}`, 'counter', 'dnat', 'to', GW[k]);
    }
    const downBefore = agent.lines.filter((l) => l.msg === 'tunnel down').length;
    const flows = newFlows();
    rebind('a2', 47_100);
    const resumeMs = await until('pings from ra-b after its rebinding', 15_000, () => ping('a2', undefined, '0.2'), agent);
    const chain = sh('lb', 'nft', 'list', 'chain', 'ip', `${pfx}lb`, 'pre');
    // nft prints the match as `@th,80,8 0x1`; the nat hook sees only the new flow's first packet.
    expect(chain).toMatch(new RegExp(`@th,80,8 0x1 counter packets 1 bytes \\d+ dnat to ${GW[1].replace(/\./g, '\\.')}`));
    expect(newFlows()).toBe(flows); // the 5-tuple rule never saw it
    // Same session on the same replica: the QUIC connection followed the new address (RFC 9000 §9.3).
    const after = (await status(1)).find((x) => x.peerIdentity.endsWith('ra-b'));
    expect(after?.since).toBe(before.since);
    expect(agent.lines.filter((l) => l.msg === 'tunnel down').length).toBe(downBefore);
    console.log(`replicas: CID-routed rebinding of ra-b: pings answered ${resumeMs} ms after the flip, same session on the same replica`);
  }, 60_000);
});

function gatewayYaml(dir: string, k: number): string {
  return `# written by test/netns/replicas.test.ts
listen: "0.0.0.0:4433"
tls:
  cert: ${dir}/certs${k}/gateway.pem
  key: ${dir}/certs${k}/gateway-key.pem
  ca: ${dir}/certs0/ca.pem
quic:
  statelessResetKeyFile: ${dir}/reset.key
  serverId:
    indexEnv: MTUN_POD
    bytes: 1
pools:
  ipv4: 10.200.0.0/24
  ipv6: fd00:200::/64
  slice:
    indexEnv: MTUN_POD
    count: 2
advertise: [10.20.0.0/24]
policy:
  - identity: spiffe://cluster.local/agent/site-a
    allow:
      - prefixes: [10.20.0.0/24]
        protocols: [icmp]
    advertise: [${SITE}]
  - identity: spiffe://cluster.local/agent/ra-*
    allow:
      - prefixes: [10.20.0.0/24]
        protocols: [icmp]
tun:
  name: mtun-g
keepaliveIntervalMs: 2000
telemetry:
  flowLog:
    enabled: false
admin:
  listen: 127.0.0.1:9090
logLevel: info
`;
}

function agentYaml(dir: string, name: string, mode: string): string {
  return `# written by test/netns/replicas.test.ts
gateway:
  address: ${VIP}:4433
  serverName: gateway
${mode}tls:
  cert: ${dir}/certs0/agent-${name}.pem
  key: ${dir}/certs0/agent-${name}-key.pem
  ca: ${dir}/certs0/ca.pem
tun:
  name: mtun-a
reconnect:
  minDelayMs: ${AGENT_MIN_BACKOFF_MS}
  maxDelayMs: 10000
  jitter: 0
keepaliveIntervalMs: 2000
telemetry:
  flowLog:
    enabled: false
admin:
  listen: 127.0.0.1:9091
logLevel: info
`;
}
