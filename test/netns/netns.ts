/**
 * Network-namespace helpers for the real-kernel test tier: uniquely named
 * namespaces, commands and processes inside them, veth links, and teardown
 * (also on failure and process exit). Root only; see isRoot().
 */
import type { FlowLogLine } from '../../src/lab/lab.js';
import { execFile, execFileSync, spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';

const namespaces = new Set<string>();
const children = new Set<ChildProcess>();
let hooked = false;
let counter = 0;

/** True when this process can create namespaces and TUN devices (uid 0). */
export function isRoot(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}

/**
 * A short per-run prefix, `mt<pid>x<tag>`: namespaces and interfaces named
 * from it never collide with another run (interface names must stay ≤ 15 bytes).
 */
export function runPrefix(tag = ''): string {
  return `mt${process.pid % 100000}x${tag}`;
}

function hookExit(): void {
  if (hooked) return;
  hooked = true;
  process.once('exit', cleanupAll);
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      cleanupAll();
      process.exit(130);
    });
  }
}

/**
 * Creates namespace `<prefix><n>` with loopback up and returns its name.
 * It is deleted by cleanupAll() (called on process exit too).
 */
export function createNetns(prefix: string = runPrefix()): string {
  hookExit();
  const name = `${prefix}${counter++}`;
  execFileSync('ip', ['netns', 'add', name], { stdio: 'pipe' });
  namespaces.add(name);
  execFileSync('ip', ['-n', name, 'link', 'set', 'lo', 'up'], { stdio: 'pipe' });
  return name;
}

/** Runs a command in `ns` synchronously and returns its stdout; throws with stderr on failure. */
export function exec(ns: string, cmd: string, ...args: string[]): string {
  try {
    return execFileSync('ip', ['netns', 'exec', ns, cmd, ...args], { stdio: 'pipe', encoding: 'utf8', timeout: 30_000 });
  } catch (e) {
    const err = e as { stderr?: string; stdout?: string; message: string };
    throw new Error(`netns ${ns}: ${cmd} ${args.join(' ')} failed: ${err.stderr || err.message}`);
  }
}

/**
 * Runs a command in `ns` without blocking the event loop (use this when the
 * test process itself must answer the traffic). Resolves with exit code and
 * output; never rejects for a non-zero exit.
 */
export function execAsync(ns: string, cmd: string, args: string[], timeoutMs = 30_000):
  Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile('ip', ['netns', 'exec', ns, cmd, ...args], { encoding: 'utf8', timeout: timeoutMs },
      (err, stdout, stderr) => {
        children.delete(child);
        const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0;
        resolve({ code, stdout, stderr });
      });
    children.add(child);
  });
}

/** Spawns a long-running process in `ns`; it is killed by cleanupAll(). */
export function spawnIn(ns: string, cmd: string, args: string[], opts: SpawnOptions = {}): ChildProcess {
  hookExit();
  const child = spawn('ip', ['netns', 'exec', ns, cmd, ...args], { stdio: 'pipe', ...opts });
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

/** A helper program in a namespace (spawnSide): the lines it printed so far, its stdin, its stderr. */
export interface NamespaceSide {
  heard: string[];
  write(line: string): void;
  kill(): void;
  stderr(): string;
}

/** Runs the Python program `py` in `ns` (spawnIn: killed by cleanupAll) and resolves once it printed "ready". */
export async function spawnSide(ns: string, py: string, timeoutMs = 5_000): Promise<NamespaceSide> {
  const side = spawnIn(ns, 'python3', ['-u', '-c', py]);
  const heard: string[] = [];
  let out = '';
  side.stdout!.on('data', (d: Buffer) => {
    out += d.toString();
    const lines = out.split('\n');
    out = lines.pop()!;
    heard.push(...lines);
  });
  let err = '';
  side.stderr!.on('data', (d: Buffer) => { err += d.toString(); });
  for (const t0 = Date.now(); !heard.includes('ready');) {
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out waiting for the namespace side: ${err}`);
    await new Promise((res) => setTimeout(res, 20));
  }
  return { heard, write: (line) => side.stdin!.write(line), kill: () => side.kill(), stderr: () => err };
}

/**
 * Creates a veth pair `ifA` in `nsA` ↔ `ifB` in `nsB`, assigns the optional
 * CIDR addresses (IPv6 without DAD) and brings both ends up.
 */
export function veth(nsA: string, ifA: string, nsB: string, ifB: string,
  addrs: { a?: string[]; b?: string[] } = {}): void {
  execFileSync('ip', ['-n', nsA, 'link', 'add', ifA, 'type', 'veth', 'peer', 'name', ifB, 'netns', nsB], { stdio: 'pipe' });
  for (const [ns, dev, list] of [[nsA, ifA, addrs.a ?? []], [nsB, ifB, addrs.b ?? []]] as const) {
    for (const cidr of list) {
      execFileSync('ip', ['-n', ns, 'addr', 'add', cidr, 'dev', dev, ...(cidr.includes(':') ? ['nodad'] : [])], { stdio: 'pipe' });
    }
    execFileSync('ip', ['-n', ns, 'link', 'set', dev, 'up'], { stdio: 'pipe' });
  }
}

/** Kills spawned processes and deletes every namespace created here. Idempotent; safe in afterAll. */
export function cleanupAll(): void {
  for (const c of children) {
    try {
      c.kill('SIGKILL');
    } catch {
      /* already gone */
    }
  }
  children.clear();
  for (const ns of namespaces) {
    try {
      execFileSync('ip', ['netns', 'del', ns], { stdio: 'pipe' });
    } catch {
      /* already gone */
    }
  }
  namespaces.clear();
}

/** Logs why namespace tests are skipped; call at module level before describe.skipIf(!isRoot()). */
export function warnIfNotRoot(what: string): void {
  if (!isRoot()) console.warn(`SKIP ${what}: needs root (network namespaces, TUN devices)`);
}

/** Sum of a Prometheus metric's samples (text exposition) whose label set contains every `labels` pair. */
export function metric(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name + '{') && !line.startsWith(name + ' ')) continue;
    if (!Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) continue;
    sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

/** The `flow_close` line of the flow with these ports, from a daemon's JSON flow log. */
export function closeRecord(lines: FlowLogLine[], srcPort: number, dstPort: number): FlowLogLine | undefined {
  return lines.find((l) => l.event === 'flow_close' && l.src_port === srcPort && l.dst_port === dstPort);
}
