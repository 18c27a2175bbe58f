/**
 * TUN interface configuration through iproute2 (`ip -batch -`): validation of
 * names, MTUs and CIDRs, the batch text, and errors that name the failing value.
 */
import { spawn } from 'node:child_process';
import { addressBits, parseAddressWithLength, parseIp } from '../packet/ip-address.js';

/** Linux IFNAMSIZ − 1: the longest interface name. */
export const MAX_IFNAME_LEN = 15;
/** RFC 791: every IPv4 host must accept 68-byte datagrams; the TUN driver's minimum MTU. */
export const MIN_MTU_V4 = 68;
/** RFC 8200 §5: IPv6 needs a link MTU of at least 1280. */
export const MIN_MTU_V6 = 1280;
/** The TUN driver's maximum MTU. */
export const MAX_MTU = 65535;

/** A validated `address/prefix` for iproute2 (an interface address may have host bits set). */
export interface Cidr {
  readonly address: string;
  readonly prefix: number;
  readonly family: 4 | 6;
  /** The original text, for messages. */
  readonly text: string;
}

/**
 * Checks an interface name the way the kernel does (dev_valid_name): 1..15
 * bytes, not `.`/`..`, no `/`, `:` or whitespace. `%d` is allowed (the kernel
 * substitutes a number). Throws `tun: …` naming the value.
 */
export function validateIfName(name: string): void {
  if (name.length === 0) throw new Error('tun: interface name is empty');
  if (Buffer.byteLength(name) > MAX_IFNAME_LEN) {
    throw new Error(`tun: interface name "${name}" is too long (${Buffer.byteLength(name)} bytes; Linux allows at most ${MAX_IFNAME_LEN})`);
  }
  if (name === '.' || name === '..' || /[/:\s]/.test(name)) {
    throw new Error(`tun: interface name "${name}" is invalid (no "/", ":", whitespace, "." or "..")`);
  }
}

/** Checks an MTU against the TUN driver's range, and against IPv6's minimum when `ipv6`. Throws `tun: …`. */
export function validateMtu(mtu: number, ipv6: boolean): void {
  if (!Number.isInteger(mtu) || mtu < MIN_MTU_V4 || mtu > MAX_MTU) {
    throw new Error(`tun: MTU ${mtu} out of range ${MIN_MTU_V4}..${MAX_MTU}`);
  }
  if (ipv6 && mtu < MIN_MTU_V6) {
    throw new Error(`tun: MTU ${mtu} is below ${MIN_MTU_V6}, the IPv6 minimum (RFC 8200 §5); raise it or drop the IPv6 addresses`);
  }
}

/** Parses `addr/prefix` (IPv4 or IPv6; a bare address means a host prefix). Throws `tun: …` naming the value. */
export function parseCidr(text: string): Cidr {
  const slash = text.indexOf('/');
  const address = slash < 0 ? text : text.slice(0, slash);
  const p = parseAddressWithLength(text);
  if (p === 'address') throw new Error(`tun: "${text}" is not an IP address or CIDR`);
  if (p === 'length') throw new Error(`tun: "${text}" has an invalid prefix length (0..${addressBits(parseIp(address)!.version)})`);
  return { address, prefix: p.prefixLength, family: p.version, text };
}

/**
 * The `ip -batch` lines that configure a fresh TUN: MTU, addresses (IPv6
 * without DAD: a point-to-point TUN has no neighbours), link up, routes.
 */
export function buildTunBatch(name: string, mtu: number, addresses: Cidr[], routes: Cidr[], txQueueLen?: number): string[] {
  const lines = [`link set dev ${name} mtu ${mtu}`];
  if (txQueueLen !== undefined) lines.push(`link set dev ${name} txqueuelen ${txQueueLen}`);
  for (const a of addresses) {
    lines.push(`addr add ${a.address}/${a.prefix} dev ${name}${a.family === 6 ? ' nodad' : ''}`);
  }
  lines.push(`link set dev ${name} up`);
  for (const r of routes) lines.push(routeLine('add', name, r));
  return lines;
}

/** One `ip -batch` route line. */
export function routeLine(op: 'add' | 'del', name: string, r: Cidr): string {
  // ip infers the family from the prefix ("-6" is not accepted inside -batch).
  return `route ${op} ${r.address}/${r.prefix} dev ${name}`;
}

/**
 * Turns `ip -batch` stderr ("RTNETLINK answers: File exists\nCommand failed -:3")
 * into a message naming the command that failed and what it means.
 */
export function explainIpFailure(stderr: string, lines: string[]): string {
  const m = /Command failed -:(\d+)/.exec(stderr);
  const line = m ? lines[Number(m[1]) - 1] : undefined;
  const reason = stderr.split('\n').map((s) => s.trim()).filter((s) => s && !s.startsWith('Command failed'))[0] ?? 'unknown error';
  if (!line) return `tun: ip failed: ${reason}`;
  if (/File exists/.test(reason)) {
    if (line.includes('addr add')) return `tun: address ${line.split(' ')[2]} is already in use (${reason})`;
    if (line.includes('route add')) return `tun: route ${line.split(' ').find((w) => w.includes('/'))} already exists (${reason})`;
    if (line.includes(' netns ')) return `tun: an interface with this name already exists in the target namespace (${reason})`;
  }
  if (/same name exists in the target netns/.test(reason)) {
    const w = line.split(' ');
    return `tun: interface name "${w[3]}" is taken in netns ${w[5]}`;
  }
  if (/Operation not permitted/.test(reason)) {
    return `tun: "ip ${line}" was not permitted: run as root or grant CAP_NET_ADMIN`;
  }
  if (/mtu/.test(line) && /Invalid argument|out of range/i.test(reason)) {
    return `tun: MTU rejected by the kernel in "ip ${line}" (${reason})`;
  }
  return `tun: "ip ${line}" failed: ${reason}`;
}

/** Runs `ip [-n netns] <flags> -batch -` with `lines` on stdin; resolves with the exit code and (capped) stderr. */
function spawnIpBatch(lines: readonly string[], flags: string[], netns: string | undefined, stderrCap: number): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolvePromise, reject) => {
    const args = [...(netns ? ['-n', netns] : []), ...flags, '-batch', '-'];
    const child = spawn('ip', args, { stdio: ['pipe', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (d: string) => {
      if (stderr.length < stderrCap) stderr += d;
    });
    child.on('error', (e: NodeJS.ErrnoException) => {
      reject(new Error(e.code === 'ENOENT' ? 'tun: `ip` not found: install iproute2' : `tun: cannot run ip: ${e.message}`));
    });
    child.on('close', (code) => resolvePromise({ code, stderr }));
    child.stdin.on('error', () => {
      /* ip exited early; its exit status carries the error */
    });
    child.stdin.end(lines.join('\n') + '\n');
  });
}

/**
 * Runs `ip [-n netns] -batch -` with the lines on stdin. Resolves on success;
 * rejects with {@link explainIpFailure}'s message, or with a hint to install
 * iproute2 when `ip` is missing.
 */
export async function runIpBatch(lines: string[], netns?: string): Promise<void> {
  const { code, stderr } = await spawnIpBatch(lines, [], netns, 4096);
  if (code !== 0) throw new Error(explainIpFailure(stderr, lines));
}

/**
 * Splits `ip -force -batch` stderr into one failure per "Command failed -:N"
 * line, each with the reason printed just before it. `index` is 0-based.
 */
export function parseIpForceFailures(stderr: string): Array<{ index: number; reason: string }> {
  const out: Array<{ index: number; reason: string }> = [];
  let reason = 'unknown error';
  for (const raw of stderr.split('\n')) {
    const line = raw.trim();
    if (line === '') continue;
    const m = /^Command failed -:(\d+)/.exec(line);
    if (m) {
      out.push({ index: Number(m[1]) - 1, reason });
      reason = 'unknown error';
    } else reason = line;
  }
  return out;
}

/**
 * Runs `ip [-n netns] -force -batch -`: every line is tried even after one
 * fails. Resolves with the failed lines (empty: all applied); rejects only
 * when `ip` cannot run at all.
 */
export async function runIpBatchForce(lines: readonly string[], netns?: string): Promise<Array<{ index: number; reason: string }>> {
  const { code, stderr } = await spawnIpBatch(lines, ['-force'], netns, 65_536);
  const failed = parseIpForceFailures(stderr);
  if (code !== 0 && failed.length === 0) return lines.map((_, index) => ({ index, reason: stderr.trim() || `ip exited with ${code}` }));
  return failed;
}

/** Runs `ip [-n netns] -j addr show` and returns (interface, address) pairs. */
export function listAddresses(netns?: string): Promise<Array<{ ifname: string; address: string }>> {
  return new Promise((resolvePromise, reject) => {
    const args = netns ? ['-n', netns, '-j', 'addr', 'show'] : ['-j', 'addr', 'show'];
    const child = spawn('ip', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    child.on('error', (e: NodeJS.ErrnoException) => {
      reject(new Error(e.code === 'ENOENT' ? 'tun: `ip` not found: install iproute2' : `tun: cannot run ip: ${e.message}`));
    });
    child.on('close', (code) => {
      if (code !== 0) {
        reject(new Error(`tun: ip addr show failed: ${err.trim()}`));
        return;
      }
      try {
        const links = JSON.parse(out) as Array<{ ifname: string; addr_info?: Array<{ local?: string }> }>;
        const res: Array<{ ifname: string; address: string }> = [];
        for (const l of links) for (const a of l.addr_info ?? []) if (a.local) res.push({ ifname: l.ifname, address: a.local });
        resolvePromise(res);
      } catch (e) {
        reject(new Error(`tun: cannot parse ip -j output: ${(e as Error).message}`));
      }
    });
  });
}
