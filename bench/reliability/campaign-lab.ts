/**
 * The reliability campaign's lab: src/lab's two clusters with the project's
 * userspace impairer spliced into the underlay, plus the probes every part
 * of the campaign shares (daemon RSS from procfs, /healthz latency, curl
 * transfers checked by sha256, ping timelines, flow-record agreement,
 * leak snapshots of links, routes and nftables rules). Root only.
 *
 *   ${P}client ── ${P}agent  wa0 192.0.2.1 ══ veth ══ m0 ┐
 *                                                      ${P}mid: ip rule iif m0|m1 → table 100 → TUN ⇄ Impairer (this process)
 *   ${P}server ── ${P}gw     wg0 192.0.2.2 ══ veth ══ m1 ┘     m0/m1 answer ARP for the far end (proxy_arp), /32 routes
 *
 * Only the underlay (QUIC/UDP between agent and gateway) crosses the
 * impairer; agent2's underlay (wg2) and the clusters' own links do not.
 */
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { Lab, LAB, type FlowLogLine, type LabOptions, type Role } from '../../src/lab/lab.js';
import { startImpairBridge, type ImpairBridge, type ImpairOptions } from '../../test/impair/impairer.js';

export { LAB, type Lab };

/** Size of the transfer blob, bytes (10 MB, as issue #12 asks). */
export const BLOB_BYTES = 10 * 1024 * 1024;

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** A lab with the servers, gateway and agent(s) running, and optionally an impairer on the underlay. */
export interface CampaignLab {
  readonly lab: Lab;
  readonly bridge: ImpairBridge | null;
  /** sha256 of `blob.bin`, served by the server as /files/blob.bin. */
  readonly blobSha: string;
  down(): Promise<void>;
}

/** Options of {@link startCampaignLab}. */
export interface CampaignOptions extends LabOptions {
  /** Splice the impairer into the underlay (starts with no impairment). */
  readonly impairUnderlay?: boolean;
  /** Also start agent2 (second cluster). */
  readonly startAgent2?: boolean;
}

const PASS: ImpairOptions = { lossPercent: 0, delayMs: 0, jitterMs: 0, seed: 20261205, maxQueue: 16384 };

/** Builds the lab, starts servers and daemons; on any failure tears everything down again. */
export async function startCampaignLab(opts: CampaignOptions): Promise<CampaignLab> {
  const lab = await Lab.up({ logLevel: 'warn', ...opts, secondCluster: opts.secondCluster || opts.startAgent2 });
  let bridge: ImpairBridge | null = null;
  const down = async () => {
    bridge?.close();
    bridge = null;
    await lab.down();
  };
  // Ctrl-C and kill: namespaces and daemons go with us.
  const onSig = () => void down().finally(() => process.exit(130));
  process.once('SIGINT', onSig);
  process.once('SIGTERM', onSig);
  try {
    if (opts.impairUnderlay) bridge = await spliceUnderlay(lab);
    const blob = randomBytes(BLOB_BYTES);
    writeFileSync(lab.file('blob.bin'), blob);
    await lab.startServers();
    await lab.startGateway();
    await lab.startAgent('agent');
    if (opts.startAgent2) await lab.startAgent('agent2');
    return { lab, get bridge() { return bridge; }, blobSha: createHash('sha256').update(blob).digest('hex'), down };
  } catch (e) {
    await down();
    throw e;
  }
}

/** Replaces the agent–gateway veth with agent ── mid ── gateway and starts the impairer in mid. */
async function spliceUnderlay(lab: Lab): Promise<ImpairBridge> {
  const mid = `${lab.prefix}mid`;
  const ip = (...a: string[]) => execFileSync('ip', a, { stdio: 'pipe' });
  const nsx = (ns: string, ...a: string[]) => execFileSync('ip', ['netns', 'exec', ns, ...a], { stdio: 'pipe' });
  const A = lab.ns('agent');
  const G = lab.ns('gw');
  ip('netns', 'add', mid);
  nsx(mid, 'ip', 'link', 'set', 'lo', 'up');
  ip('-n', A, 'link', 'del', 'wa0'); // removes its peer wg0 too
  ip('link', 'add', 'wa0', 'netns', A, 'type', 'veth', 'peer', 'name', 'm0', 'netns', mid);
  ip('link', 'add', 'wg0', 'netns', G, 'type', 'veth', 'peer', 'name', 'm1', 'netns', mid);
  for (const [ns, dev, addr] of [[A, 'wa0', `${LAB.gatewayWan.v4.replace(/\.2$/, '.1')}/24`], [G, 'wg0', `${LAB.gatewayWan.v4}/24`]] as const) {
    nsx(ns, 'ip', 'addr', 'add', addr, 'dev', dev);
    nsx(ns, 'ip', 'link', 'set', dev, 'up');
  }
  nsx(mid, 'sysctl', '-qw', 'net.ipv4.conf.all.proxy_arp=1', 'net.ipv4.conf.default.proxy_arp=1');
  for (const [dev, far] of [['m0', '192.0.2.1'], ['m1', LAB.gatewayWan.v4]] as const) {
    nsx(mid, 'ip', 'link', 'set', dev, 'up');
    nsx(mid, 'sysctl', '-qw', `net.ipv4.conf.${dev}.proxy_arp=1`);
    nsx(mid, 'ip', 'addr', 'add', dev === 'm0' ? '192.0.2.254/32' : '192.0.2.253/32', 'dev', dev);
    nsx(mid, 'ip', 'route', 'add', `${far}/32`, 'dev', dev);
  }
  // One packet per impairer decision: no GSO/GRO super-packets through the TUN.
  for (const [ns, dev] of [[A, 'wa0'], [G, 'wg0'], [mid, 'm0'], [mid, 'm1']] as const) {
    try { nsx(ns, 'ethtool', '-K', dev, 'tso', 'off', 'gso', 'off', 'gro', 'off'); } catch { /* ethtool missing: the TUN still sees ≤ 64 KiB packets */ }
  }
  return startImpairBridge(mid, `${lab.prefix}t`, ['m0', 'm1'], PASS);
}

/** PID of a daemon the lab started (`ip netns exec` execs, so the child is the daemon). */
export function pidOf(lab: Lab, name: string): number {
  const pid = lab.process(name)?.pid;
  if (!pid) throw new Error(`reliability: ${name} is not running`);
  return pid;
}

/** VmRSS, VmHWM, RssAnon and RssFile of a process, kB (0 when it is gone). */
export function rssKb(pid: number): { rss: number; hwm: number; anon: number; file: number } {
  try {
    const s = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (k: string) => Number(new RegExp(`${k}:\\s+(\\d+)`).exec(s)?.[1] ?? 0);
    // RssFile: pages of the node binary and libraries (shared, reclaimable); RssAnon: the process's own.
    return { rss: kb('VmRSS'), hwm: kb('VmHWM'), anon: kb('RssAnon'), file: kb('RssFile') };
  } catch {
    return { rss: 0, hwm: 0, anon: 0, file: 0 };
  }
}

/** CPU seconds (user + system) a process has used so far (0 when it is gone). */
export function cpuSeconds(pid: number): number {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
    // Fields 14 and 15 of proc(5) stat (utime, stime) are rest[11], rest[12]; clock ticks are 100 Hz on Linux.
    return (Number(rest[11]) + Number(rest[12])) / 100;
  } catch {
    return 0;
  }
}

/** Result of one curl download of the blob through the tunnel. */
export interface Transfer {
  ok: boolean;
  shaOk: boolean;
  bytes: number;
  seconds: number;
  mbitPerS: number;
  localPort: number;
  requestBytes: number;
  headerBytes: number;
  exit: number;
  stderr: string;
}

/** Downloads /files/blob.bin from the server in the client namespace (`role`), checks its sha256. */
export async function download(c: CampaignLab, maxTimeS: number, role: Role = 'client', name = 'dl', host: string = LAB.server.v4): Promise<Transfer> {
  const out = c.lab.file(`${name}.bin`);
  const fmt = '%{local_port} %{size_request} %{size_header} %{size_download} %{time_total}';
  const url = host.includes(':') ? `http://[${host}]/files/blob.bin` : `http://${host}/files/blob.bin`;
  const r = await c.lab.exec(role, 'curl', ['-s', '--max-time', String(maxTimeS), '-o', out, '-w', fmt, url], (maxTimeS + 10) * 1000);
  const [port, req, hdr, body, total] = r.stdout.trim().split(' ').map(Number) as [number, number, number, number, number];
  let shaOk = false;
  try { shaOk = createHash('sha256').update(readFileSync(out)).digest('hex') === c.blobSha; } catch { /* no file */ }
  return { ok: r.code === 0 && shaOk, shaOk, bytes: body || 0, seconds: total || 0, mbitPerS: total > 0 ? (body * 8) / total / 1e6 : 0, localPort: port || 0, requestBytes: req || 0, headerBytes: hdr || 0, exit: r.code, stderr: r.stderr.trim() };
}

function closeRecord(lines: FlowLogLine[], srcPort: number, dstPort: number): FlowLogLine | undefined {
  return lines.find((l) => l.event === 'flow_close' && l.src_port === srcPort && l.dst_port === dstPort);
}

/** Both ends' flow_close records of a transfer, and whether they agree with each other and with curl. */
export async function flowAgreement(c: CampaignLab, t: Transfer, agent: 'agent' | 'agent2' = 'agent', waitMs = 20_000): Promise<{ agree: boolean; agent?: [number, number]; gateway?: [number, number]; note: string }> {
  const end = Date.now() + waitMs;
  let a: FlowLogLine | undefined;
  let g: FlowLogLine | undefined;
  while (Date.now() < end) {
    a = closeRecord(c.lab.flowLog(agent), t.localPort, 80);
    g = closeRecord(c.lab.flowLog('gateway'), t.localPort, 80);
    if (a && g) break;
    await sleep(250);
  }
  if (!a || !g) return { agree: false, note: `flow_close missing (agent ${!!a}, gateway ${!!g})` };
  const pa: [number, number] = [a.sent_bytes ?? -1, a.received_bytes ?? -1];
  const pg: [number, number] = [g.sent_bytes ?? -1, g.received_bytes ?? -1];
  const curl: [number, number] = [t.requestBytes, t.headerBytes + t.bytes];
  const agree = pa[0] === pg[0] && pa[1] === pg[1] && pa[0] === curl[0] && pa[1] === curl[1];
  return { agree, agent: pa, gateway: pg, note: agree ? 'equal to curl' : `curl ${curl.join('/')}` };
}

/** GET /healthz from inside the daemon's namespace: curl's own total time in ms, or -1 when it did not answer 2xx within 3 s. */
export async function healthzMs(c: CampaignLab, role: 'gw' | 'agent'): Promise<number> {
  const port = role === 'gw' ? LAB.gatewayAdmin : LAB.agentAdmin;
  const r = await c.lab.exec(role, 'curl', ['-sf', '-o', '/dev/null', '-w', '%{time_total}', '--max-time', '3', `http://127.0.0.1:${port}/healthz`], 5_000);
  return r.code === 0 ? Number(r.stdout) * 1000 : -1;
}

/** One ping reply: its wall-clock time (ms since epoch; 0 when ping ran without -D) and its round trip (ms). */
export interface PingReply {
  at: number;
  rtt: number;
}

/** The replies in iputils ping output, with `-D` time stamps when present. */
export function parsePingReplies(text: string): PingReply[] {
  const out: PingReply[] = [];
  for (const m of text.matchAll(/^(?:\[(\d+\.\d+)\] )?\d+ bytes from .* time=([\d.]+) ms/gm)) out.push({ at: m[1] ? Number(m[1]) * 1000 : 0, rtt: Number(m[2]) });
  return out;
}

/**
 * A background `ping -D` from the client to the server (bounded by `seconds`);
 * {@link PingTimeline.replies} gives the wall-clock ms of every reply so far,
 * {@link PingTimeline.samples} each reply's time and round trip.
 */
export interface PingTimeline {
  replies(): number[];
  samples(): PingReply[];
  stop(): void;
}

/** Starts a bounded ping timeline (interval ms ≥ 10 as root); a reply later than `waitS` counts as lost. */
export function pingTimeline(c: CampaignLab, name: string, seconds: number, intervalMs = 50, waitS = 1): PingTimeline {
  const log = c.lab.file(`${name}.log`);
  // A count, not a deadline: iputils ping with -w exits at the first ICMP error (the agent's
  // namespace answers Net Unreachable while the agent is dead), which ended the timeline early.
  const count = Math.ceil((seconds * 1000) / intervalMs);
  const p = c.lab.spawn('client', name, 'ping', ['-D', '-n', '-i', String(intervalMs / 1000), '-W', String(waitS), '-c', String(count), LAB.server.v4]);
  const samples = (): PingReply[] => {
    try { return parsePingReplies(readFileSync(log, 'utf8')).filter((r) => r.at > 0); } catch { return []; }
  };
  return {
    replies: () => samples().map((r) => r.at),
    samples,
    stop() { if (p.exitCode === null && p.signalCode === null) p.kill('SIGINT'); },
  };
}

/** First reply after `t` (ms since epoch), as a delay in ms, or -1. */
export function firstReplyAfter(replies: number[], t: number): number {
  for (const r of replies) if (r >= t) return r - t;
  return -1;
}

/** Links, routes and nftables rules of a namespace, as comparable strings (interface indexes dropped). */
export function netState(lab: Lab, role: Role): string[] {
  const ns = lab.ns(role);
  const j = (...a: string[]) => JSON.parse(execFileSync('ip', ['netns', 'exec', ns, ...a], { stdio: 'pipe' }).toString() || '[]') as Record<string, unknown>[];
  const out: string[] = [];
  for (const l of j('ip', '-j', 'link')) out.push(`link ${String(l.ifname)} ${String(l.link_type)}`);
  for (const v of ['-4', '-6']) for (const r of j('ip', '-j', v, 'route', 'show', 'table', 'all')) {
    if (r.table === 'local') continue; // kernel-owned local/broadcast entries
    out.push(`route${v} ${String(r.dst)} dev ${String(r.dev)} table ${String(r.table ?? 'main')}`);
  }
  const nft = JSON.parse(execFileSync('ip', ['netns', 'exec', ns, 'nft', '-j', 'list', 'ruleset'], { stdio: 'pipe' }).toString()) as { nftables: Record<string, Record<string, unknown>>[] };
  for (const o of nft.nftables) {
    const [k, v] = Object.entries(o)[0]!;
    if (k === 'metainfo') continue;
    out.push(`nft ${k} ${String(v.family ?? '')} ${String(v.table ?? '')} ${String(v.name ?? '')} ${k === 'rule' ? JSON.stringify(v.expr) : ''}`);
  }
  return out.sort();
}

/** Lines in `a` and not in `b` and vice versa. */
export function diffState(a: string[], b: string[]): { added: string[]; removed: string[] } {
  const sa = new Set(a);
  const sb = new Set(b);
  return { added: b.filter((x) => !sa.has(x)), removed: a.filter((x) => !sb.has(x)) };
}

/** Least-squares slope of ys over xs (per unit of x). */
export function slope(xs: number[], ys: number[]): number {
  const n = xs.length;
  if (n < 2) return 0;
  const mx = xs.reduce((a, b) => a + b, 0) / n;
  const my = ys.reduce((a, b) => a + b, 0) / n;
  let num = 0;
  let den = 0;
  for (let i = 0; i < n; i++) { num += (xs[i]! - mx) * (ys[i]! - my); den += (xs[i]! - mx) ** 2; }
  return den === 0 ? 0 : num / den;
}

/** Percentile p (0..100) of xs, or NaN. */
export function pct(xs: number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
}

/** Sum of a Prometheus counter or gauge over all its label sets whose line includes every `match`. */
export function metricSum(text: string, name: string, ...match: string[]): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name) || (line[name.length] !== '{' && line[name.length] !== ' ')) continue;
    if (!match.every((m) => line.includes(m))) continue;
    sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

/** Non-zero series of a counter by one label's value (e.g. drops by reason), summed over the other labels. */
export function metricByLabel(text: string, name: string, label: string): Record<string, number> {
  const out: Record<string, number> = {};
  const re = new RegExp(`${label}="([^"]*)"`);
  for (const line of text.split('\n')) {
    if (!line.startsWith(name + '{')) continue;
    const v = Number(line.slice(line.lastIndexOf(' ') + 1));
    const k = re.exec(line)?.[1];
    if (k !== undefined && v > 0) out[k] = (out[k] ?? 0) + v;
  }
  return out;
}

/** Flows in a daemon's inspection table (its gauge; before it existed: opened − closed, TCP plus UDP). */
export async function flowsInTable(c: CampaignLab, which: 'gw' | 'agent'): Promise<number> {
  return flowsFromMetrics(await c.lab.metrics(which));
}

/** Flow-table size from one metrics scrape: the tracked-flows gauge, or opened − closed where it is absent. */
export function flowsFromMetrics(m: string): number {
  if (m.includes('mtun_inspect_tracked_flows{')) return metricSum(m, 'mtun_inspect_tracked_flows');
  return metricSum(m, 'mtun_tcp_connections_opened_total') - metricSum(m, 'mtun_tcp_connections_closed_total')
    + metricSum(m, 'mtun_udp_flows_opened_total') - metricSum(m, 'mtun_udp_flows_closed_total');
}

/** Prints one figure line and keeps it for the JSON report. */
export class Report {
  readonly rows: Record<string, unknown>[] = [];
  constructor(readonly part: string) {}
  row(r: Record<string, unknown>): void {
    this.rows.push(r);
    console.log(`[${this.part}] ${Object.entries(r).map(([k, v]) => `${k}=${typeof v === 'number' ? +v.toFixed(2) : typeof v === 'object' ? JSON.stringify(v) : String(v)}`).join(' ')}`);
  }
}

/**
 * Packets the kernel dropped at a daemon's TUN transmit queue (`ip -s link`
 * TX dropped: answers that arrived while the daemon was not reading its
 * TUN), or -1 when unreadable.
 */
export async function tunTxDropped(c: CampaignLab, which: 'gw' | 'agent'): Promise<number> {
  const r = await c.lab.exec(which, 'ip', ['-j', '-s', 'link', 'show', which === 'gw' ? 'mtun-g' : 'mtun-a']).catch(() => null);
  try {
    const j = JSON.parse(r?.stdout ?? '') as { stats64?: { tx?: { dropped?: number } } }[];
    return j[0]?.stats64?.tx?.dropped ?? -1;
  } catch {
    return -1;
  }
}

/** Every drop counter of a daemon's /metrics (`mtun_*drop*_total`, each label set). */
export const DROP_COUNTERS = /^mtun_[a-z0-9_]*drop[a-z0-9_]*_total$/;
/** The TUN thread's event counters (ring full, holds, stalls, wakes …; src/daemon/tun-thread-metrics.ts). */
export const TUN_THREAD_EVENTS = /^mtun_(gateway|agent)_tun_thread_events_total$/;

/** The series of both daemons' /metrics whose metric name matches `name`, by "gw|agent series". */
export async function counterSeries(c: CampaignLab, name: RegExp): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const which of ['gw', 'agent'] as const) {
    const text = await c.lab.metrics(which).catch(() => '');
    for (const line of text.split('\n')) {
      const m = /^([a-z_:][a-z0-9_:]*)(\{[^}]*\})? ([0-9.e+-]+)$/.exec(line);
      if (m && name.test(m[1]!)) out.set(`${which} ${m[1]}${m[2] ?? ''}`, Number(m[3]));
    }
  }
  return out;
}

/** The series that moved between two {@link counterSeries} readings, with how much. */
export function counterDelta(a: Map<string, number>, b: Map<string, number>): Record<string, number> {
  const d: Record<string, number> = {};
  for (const [k, v] of b) if (v - (a.get(k) ?? 0) > 0) d[k] = v - (a.get(k) ?? 0);
  return d;
}
