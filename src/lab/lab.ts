/**
 * The two-cluster lab: builds test/netns/topology.sh's namespaces, writes
 * development certificates and configs, starts the real gateway and agent
 * daemons inside them, and gives tests and `npm run demo` handles to run
 * programs, read metrics and read both ends' flow logs. Root only.
 */
import { DAEMON_NODE_FLAGS } from '../daemon/tunnel-constants.js';
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync, openSync, closeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Repository root (this file is src/lab/lab.ts or dist/lab/lab.js). */
export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const TOPOLOGY = join(REPO_ROOT, 'test', 'netns', 'topology.sh');
const MTUN = join(REPO_ROOT, 'bin', 'mtun.js');
const SERVER = join(REPO_ROOT, 'dist', 'lab', 'lab-server.js');

/** The nftables table {@link Lab.blockUdp} adds. */
const UDP_BLOCK_TABLE = 'mtun_udp_block';

/** Namespace roles of topology.sh. */
export type Role = 'client' | 'agent' | 'gw' | 'server' | 'client2' | 'agent2';

/** Addresses of the topology (see the diagram in test/netns/topology.sh). */
export const LAB = {
  client: { v4: '10.10.0.2', v6: 'fd00:a::2' },
  server: { v4: '10.20.0.2', v6: 'fd00:b::2' },
  client2: { v4: '10.30.0.2', v6: 'fd00:c::2' },
  gatewayWan: { v4: '192.0.2.2', v6: 'fd00:77::2' },
  gatewayPort: 4433,
  gatewayAdmin: 9090,
  agentAdmin: 9091,
} as const;

/** The result of a command run in a namespace. */
export interface RunResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** One JSON flow-log line (the fields tests read; see docs/telemetry.md). */
export interface FlowLogLine {
  readonly event: 'flow_open' | 'flow_close';
  readonly reporter: 'agent' | 'gateway';
  readonly protocol: string;
  readonly src_addr: string;
  readonly src_port: number;
  readonly dst_addr: string;
  readonly dst_port: number;
  readonly peer_identity: string;
  readonly sent_bytes?: number;
  readonly received_bytes?: number;
  readonly close_reason?: string;
  readonly sni?: string;
  readonly [k: string]: unknown;
}

/** Options for {@link Lab.up}. */
export interface LabOptions {
  /** Namespace prefix (≤ 8 characters); default `mtl<pid>`. */
  readonly prefix?: string;
  /** Also build the second agent cluster (client2, agent2). */
  readonly secondCluster?: boolean;
  /** Log level of the daemons (default info). */
  readonly logLevel?: string;
  /** The daemons' `tun.offload` (default true, as in the product). */
  readonly tunOffload?: boolean;
  /** The agents' `tun.thread` (default: the product's, on). */
  readonly agentTunThread?: boolean;
  /** The gateway's `tun.thread` (default: the product's, on). */
  readonly gatewayTunThread?: boolean;
  /** Both daemons' `inspection.maxFlows` (default: the config default). */
  readonly maxFlows?: number;
  /** The agents' `h2.enabled` (default: the product's, on). */
  readonly agentH2?: boolean;
  /** Both daemons' `tun.queueDelay.targetMs` (default: the product's; 0 turns CoDel off), to compare. */
  readonly queueDelayTargetMs?: number;
  /** Extra environment of the daemons (gateway and agents), e.g. LD_PRELOAD of a fault-injecting shim in a test. */
  readonly daemonEnv?: Readonly<Record<string, string>>;
}

/**
 * Extra node options for the daemons, from MTUN_LAB_NODE_ARGS (space
 * separated), e.g. `--cpu-prof --cpu-prof-dir=/tmp/prof` to profile a
 * campaign (node refuses --cpu-prof in NODE_OPTIONS), after the daemons'
 * own {@link DAEMON_NODE_FLAGS}.
 */
function daemonNodeArgs(): string[] {
  return [...DAEMON_NODE_FLAGS, ...(process.env.MTUN_LAB_NODE_ARGS ?? '').split(' ').filter((a) => a.length > 0)];
}

/** A running lab. Always call {@link down} (tests: afterAll; demo: on exit and Ctrl-C). */
export class Lab {
  private readonly procs = new Map<string, ChildProcess>();
  private readonly all = new Set<ChildProcess>();
  private isDown = false;

  private constructor(
    readonly prefix: string,
    /** Scratch directory: certs, configs, logs, flow logs. Removed by down(). */
    readonly dir: string,
    readonly opts: LabOptions,
  ) {}

  /** Builds the namespaces, certificates and configs. Throws when not root. */
  static async up(opts: LabOptions = {}): Promise<Lab> {
    if (process.getuid?.() !== 0) throw new Error('lab: needs root (network namespaces, TUN devices)');
    const prefix = opts.prefix ?? `mtl${process.pid % 100000}`;
    if (prefix.length > 8) throw new Error(`lab: prefix ${prefix} longer than 8 characters`);
    const dir = mkdtempSync(join(tmpdir(), `${prefix}-`));
    const lab = new Lab(prefix, dir, opts);
    try {
      await run('bash', [TOPOLOGY, 'up', prefix], 30_000);
      if (opts.secondCluster) await run('bash', [TOPOLOGY, 'up2', prefix], 30_000);
      const agents = opts.secondCluster ? 'cluster-a,cluster-c' : 'cluster-a';
      await run(process.execPath, [MTUN, 'certs', '--out', join(dir, 'certs'), '--agents', agents], 30_000);
      lab.writeConfigs();
    } catch (e) {
      await lab.down();
      throw e;
    }
    return lab;
  }

  /** The namespace name of a role. */
  ns(role: Role): string {
    return `${this.prefix}${role}`;
  }

  private writeConfigs(): void {
    const lvl = this.opts.logLevel ?? 'info';
    const off = this.opts.tunOffload !== false;
    const extra = this.opts.maxFlows !== undefined ? `inspection:\n  maxFlows: ${this.opts.maxFlows}\n` : '';
    // The `tun:` section after `offload: ` (the config templates write that key).
    const qd = this.opts.queueDelayTargetMs !== undefined ? `\n  queueDelay: { targetMs: ${this.opts.queueDelayTargetMs} }` : '';
    const tun = (thread: boolean | undefined) => `${off}` + (thread !== undefined ? `\n  thread: ${thread}` : '') + qd;
    const agentTun = tun(this.opts.agentTunThread);
    const agentExtra = extra + (this.opts.agentH2 !== undefined ? `h2:\n  enabled: ${this.opts.agentH2}\n` : '');
    const gwTun = tun(this.opts.gatewayTunThread);
    writeFileSync(join(this.dir, 'gateway.yaml'), gatewayYaml(this.dir, lvl, gwTun) + extra);
    writeFileSync(join(this.dir, 'agent.yaml'), agentYaml(this.dir, 'agent', 'cluster-a', ['10.10.0.0/24', 'fd00:a::/64'], LAB.agentAdmin, lvl, agentTun) + agentExtra);
    if (this.opts.secondCluster) {
      writeFileSync(join(this.dir, 'agent2.yaml'), agentYaml(this.dir, 'agent2', 'cluster-c', ['10.30.0.0/24', 'fd00:c::/64'], LAB.agentAdmin, lvl, agentTun) + agentExtra);
    }
  }

  /** Path of a file in the lab directory. */
  file(name: string): string {
    return join(this.dir, name);
  }

  /** Runs a command in a namespace; never throws for a non-zero exit (see `code`). */
  exec(role: Role, cmd: string, args: string[], timeoutMs = 30_000): Promise<RunResult> {
    return new Promise((res) => {
      execFile('ip', ['netns', 'exec', this.ns(role), cmd, ...args], { timeout: timeoutMs, maxBuffer: 64 << 20, killSignal: 'SIGKILL' }, (err, stdout, stderr) => {
        const code = err ? (typeof (err as NodeJS.ErrnoException).code === 'number' ? ((err as unknown as { code: number }).code) : 1) : 0;
        res({ code, stdout: String(stdout), stderr: String(stderr) });
      });
    });
  }

  /** Starts a long-running program in a namespace (killed by down()); output goes to `<name>.log`. */
  spawn(role: Role, name: string, cmd: string, args: string[], env?: Readonly<Record<string, string>>): ChildProcess {
    const fd = openSync(this.file(`${name}.log`), 'a');
    const p = spawn('ip', ['netns', 'exec', this.ns(role), cmd, ...args],
      { stdio: ['ignore', fd, fd], detached: false, env: env !== undefined ? { ...process.env, ...env } : process.env });
    closeSync(fd);
    this.procs.set(name, p);
    this.all.add(p);
    p.once('exit', () => this.all.delete(p));
    return p;
  }

  /** Starts the lab's HTTP, iperf3 and UDP echo servers in the server namespace. */
  async startServers(): Promise<void> {
    this.spawn('server', 'http-server', process.execPath, [SERVER, '--http', '80', '--udp-echo', '7', '--dir', this.dir]);
    this.spawn('server', 'iperf3', 'iperf3', ['-s', '-p', '5201']);
    await this.waitFor(async () => (await this.exec('server', 'ss', ['-Hltn', 'sport = :80'])).stdout.includes(':80'), 10_000, 'HTTP server listening');
    await this.waitFor(async () => (await this.exec('server', 'ss', ['-Hltn', 'sport = :5201'])).stdout.includes('5201'), 10_000, 'iperf3 listening');
  }

  /** Starts the gateway (again, after a kill) and waits until its admin endpoint answers. */
  async startGateway(): Promise<ChildProcess> {
    const p = this.spawn('gw', 'gateway', process.execPath, [...daemonNodeArgs(), MTUN, 'gateway', '-c', this.file('gateway.yaml')], this.opts.daemonEnv);
    await this.waitFor(async () => (await this.admin('gw', LAB.gatewayAdmin, '/readyz')).code === 0, 15_000, 'gateway ready', p);
    return p;
  }

  /** Starts an agent and waits until its tunnel is up (/readyz 200). */
  async startAgent(which: 'agent' | 'agent2' = 'agent'): Promise<ChildProcess> {
    const p = this.spawn(which, which, process.execPath, [...daemonNodeArgs(), MTUN, 'agent', '-c', this.file(`${which}.yaml`)], this.opts.daemonEnv);
    await this.waitAgentReady(which, 15_000, p);
    return p;
  }

  /** Waits until the agent's /readyz answers 200. */
  async waitAgentReady(which: 'agent' | 'agent2' = 'agent', timeoutMs = 15_000, p?: ChildProcess): Promise<void> {
    await this.waitFor(async () => (await this.admin(which, LAB.agentAdmin, '/readyz')).code === 0, timeoutMs, `${which} tunnel up`, p);
  }

  /** The process started under `name`, if any. */
  process(name: string): ChildProcess | undefined {
    return this.procs.get(name);
  }

  /** Sends `signal` to a daemon and waits for it to exit; resolves with its exit code. */
  async stop(name: string, signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 10_000): Promise<number | null> {
    const p = this.procs.get(name);
    if (!p || p.exitCode !== null || p.signalCode !== null) return p?.exitCode ?? null;
    const done = new Promise<number | null>((r) => p.once('exit', (code) => r(code)));
    // `ip netns exec` execs the program, so the child pid is the daemon itself.
    p.kill(signal);
    const t = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
    const code = await done;
    clearTimeout(t);
    return code;
  }

  /**
   * Drops the agent's UDP flow to the gateway port both ways with nftables
   * (an input-hook table, `mtun_udp_block`, in the gateway's and the agent's
   * namespaces, so no sender sees EPERM): what a firewall blocking UDP does.
   * The agent then runs over HTTP/2 (docs/http2-fallback.md). Undo with
   * {@link unblockUdp}; the namespaces' removal removes the tables too.
   */
  async blockUdp(): Promise<void> {
    for (const [role, match] of [['gw', 'dport'], ['agent', 'sport']] as const) {
      for (const args of [
        ['add', 'table', 'inet', UDP_BLOCK_TABLE],
        ['add', 'chain', 'inet', UDP_BLOCK_TABLE, 'in', '{', 'type', 'filter', 'hook', 'input', 'priority', '0', ';', '}'],
        ['add', 'rule', 'inet', UDP_BLOCK_TABLE, 'in', 'udp', match, String(LAB.gatewayPort), 'counter', 'drop'],
      ]) {
        const r = await this.exec(role, 'nft', args);
        if (r.code !== 0) throw new Error(`lab: nft ${args.join(' ')} in ${role}: ${r.stderr.trim()}`);
      }
    }
  }

  /** Removes what {@link blockUdp} added (no error when nothing is there). */
  async unblockUdp(): Promise<void> {
    for (const role of ['gw', 'agent'] as const) await this.exec(role, 'nft', ['delete', 'table', 'inet', UDP_BLOCK_TABLE]);
  }

  /** UDP packets to the gateway port the block dropped so far (0 when not blocked). */
  async udpBlockDrops(): Promise<number> {
    const r = await this.exec('gw', 'nft', ['list', 'table', 'inet', UDP_BLOCK_TABLE]);
    return Number(/packets (\d+)/.exec(r.stdout)?.[1] ?? 0);
  }

  /** GET on a daemon's admin endpoint from inside its namespace (curl exit code 0 = HTTP 2xx). */
  admin(role: Role, port: number, path: string): Promise<RunResult> {
    return this.exec(role, 'curl', ['-sf', '--max-time', '3', `http://127.0.0.1:${port}${path}`], 5_000);
  }

  /** The Prometheus text of the gateway or agent. */
  async metrics(which: 'gw' | 'agent' | 'agent2'): Promise<string> {
    const r = await this.admin(which, which === 'gw' ? LAB.gatewayAdmin : LAB.agentAdmin, '/metrics');
    if (r.code !== 0) throw new Error(`lab: /metrics of ${which} failed: ${r.stderr}`);
    return r.stdout;
  }

  /** Flow-log lines written so far by `gateway`, `agent` or `agent2`. */
  flowLog(which: 'gateway' | 'agent' | 'agent2'): FlowLogLine[] {
    const f = this.file(`${which}-flows.jsonl`);
    if (!existsSync(f)) return [];
    const out: FlowLogLine[] = [];
    for (const line of readFileSync(f, 'utf8').split('\n')) {
      if (line.trim() === '') continue;
      try {
        out.push(JSON.parse(line) as FlowLogLine);
      } catch {
        // a line being written right now
      }
    }
    return out;
  }

  /** Polls `check` every 100 ms until it is true; throws after `timeoutMs` (or at once if `p` exited). */
  async waitFor(check: () => Promise<boolean> | boolean, timeoutMs: number, what: string, p?: ChildProcess): Promise<void> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      if (await check()) return;
      if (p && (p.exitCode !== null || p.signalCode !== null)) throw new Error(`lab: ${what}: process exited (${p.exitCode ?? p.signalCode}); see ${this.dir}`);
      if (Date.now() > end) throw new Error(`lab: timed out waiting for ${what}; logs in ${this.dir}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** Stops every process, removes the namespaces and (unless `keep`) the lab directory. Idempotent. */
  async down(keep = false): Promise<void> {
    if (this.isDown) return;
    this.isDown = true;
    for (const p of this.all) {
      if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
    }
    await run('bash', [TOPOLOGY, 'down', this.prefix], 30_000).catch(() => undefined);
    if (!keep) rmSync(this.dir, { recursive: true, force: true });
  }
}

function run(cmd: string, args: string[], timeoutMs: number): Promise<string> {
  return new Promise((res, rej) => {
    execFile(cmd, args, { timeout: timeoutMs, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      if (err) rej(new Error(`lab: ${cmd} ${args.join(' ')} failed: ${String(stderr).trim() || err.message}`));
      else res(String(stdout));
    });
  });
}

/** The workload names both ends use for metric labels (telemetry.workloads). */
const WORKLOADS_YAML = `telemetry:
  workloads:
    10.10.0.0/24: cluster-a
    fd00:a::/64: cluster-a
    10.30.0.0/24: cluster-c
    fd00:c::/64: cluster-c
    10.20.0.2/32: server
    fd00:b::2/128: server
    10.20.0.0/24: cluster-b
    fd00:b::/64: cluster-b
`;

/** `offload`: the `tun.offload` value, optionally followed by more `tun` lines (indented two spaces). */
function gatewayYaml(dir: string, logLevel: string, offload: string): string {
  return `# written by the lab (src/lab/lab.ts)
listen: "[::]:${LAB.gatewayPort}"
tls:
  cert: ${dir}/certs/gateway.pem
  key: ${dir}/certs/gateway-key.pem
  ca: ${dir}/certs/ca.pem
  requireClientCert: true
pools:
  ipv4: 10.200.0.0/24
  ipv6: fd00:200::/64
advertise: [10.20.0.0/24, fd00:b::/64]
policy:
  - identity: spiffe://cluster.local/agent/cluster-a
    allow:
      - prefixes: [10.20.0.0/24, fd00:b::/64]
        protocols: [tcp, udp]
        ports: [80, 443, 5201, 7]
      - prefixes: [10.20.0.0/24, fd00:b::/64]
        protocols: [icmp]
    advertise: [10.10.0.0/24, fd00:a::/64]
  - identity: spiffe://cluster.local/agent/cluster-c
    allow:
      - prefixes: [10.20.0.2/32, fd00:b::2/128]
        protocols: [tcp]
        ports: [80]
      - prefixes: [10.20.0.2/32, fd00:b::2/128]
        protocols: [icmp]
    advertise: [10.30.0.0/24, fd00:c::/64]
connectUdp:
  enabled: true
  targets:
    - host: ${LAB.server.v4}
      ports: [7]
tun:
  name: mtun-g
  offload: ${offload}
${WORKLOADS_YAML}  flowLog:
    path: ${dir}/gateway-flows.jsonl
admin:
  listen: 127.0.0.1:${LAB.gatewayAdmin}
logLevel: ${logLevel}
`;
}

/** `offload`: the `tun.offload` value, optionally followed by more `tun` lines (indented two spaces). */
function agentYaml(dir: string, name: string, cluster: string, advertise: string[], adminPort: number, logLevel: string, offload: string): string {
  return `# written by the lab (src/lab/lab.ts)
gateway:
  address: ${LAB.gatewayWan.v4}:${LAB.gatewayPort}
  serverName: gateway
mode: site-to-site
tls:
  cert: ${dir}/certs/agent-${cluster}.pem
  key: ${dir}/certs/agent-${cluster}-key.pem
  ca: ${dir}/certs/ca.pem
advertise: [${advertise.join(', ')}]
tun:
  name: mtun-a
  offload: ${offload}
reconnect:
  minDelayMs: 100
  maxDelayMs: 2000
keepaliveIntervalMs: 5000
connectUdp:
  forwarders:
    - listen: 127.0.0.1:7007
      target: { host: ${LAB.server.v4}, port: 7 }
${WORKLOADS_YAML}  flowLog:
    path: ${dir}/${name}-flows.jsonl
admin:
  listen: 127.0.0.1:${adminPort}
logLevel: ${logLevel}
`;
}
