/**
 * Part 3, floods. For each flood, side by side in one run: a legitimate 10 MB
 * download through the tunnel unloaded, then the flood, and during it the
 * same download again, both daemons' RSS every 200 ms and their /healthz
 * latency every 500 ms. Both daemons are restarted before each flood, so
 * peaks (VmHWM) and flow tables belong to that flood alone.
 *
 *   syn        raw-flood.c in the client namespace: 2×maxFlows TCP SYNs to the
 *              server through the tunnel, sources random in 10.10.0.0/24
 *   initial    raw-flood.c in the agent namespace (gateway side of the WAN):
 *              QUIC v1 Initials at --initial-rate from 198.18.0.0/16 (routed
 *              back into the agent namespace's blackhole by the gateway
 *              namespace; never outside the lab), Retry left on 'auto'
 *   slowloris  misbehaving-client.ts: 1,000 connections stalled mid-HEADERS
 *   routes     misbehaving-client.ts: oversized ROUTE_ADVERTISEMENTs, then churn
 *   addresses  misbehaving-client.ts: ADDRESS_REQUEST storm
 */
import { execFileSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT } from '../../src/lab/lab.js';
import { counterDelta, counterSeries, cpuSeconds, download, DROP_COUNTERS, flowsInTable, healthzMs, LAB, metricSum, pct, pidOf, Report, rssKb, sleep, startCampaignLab, tunTxDropped, TUN_THREAD_EVENTS, type CampaignLab } from './campaign-lab.js';

const HERE = join(REPO_ROOT, 'bench', 'reliability');
const RAW_FLOOD = join(HERE, '.build', 'raw-flood');
const MISBEHAVE = join(HERE, 'misbehaving-client.ts');
const REGISTER = join(HERE, 'register.mjs');
const SPOOF_NET = '198.18.0.0/16'; // RFC 2544 benchmarking range, routed only inside the lab

interface Flood {
  readonly name: string;
  /** Starts the flood; returns the process and a promise for "flood is at full strength". */
  start(c: CampaignLab): { proc: ChildProcess; ready: Promise<void> };
}

/** Runs the named floods (syn, initial, slowloris, routes, addresses). */
export async function floods(opts: { which: string[]; seconds: number; maxFlows: number; initialRate: number; alone?: boolean; agentTunThread?: boolean }): Promise<Report> {
  const rep = new Report('flood');
  if (opts.which.includes('syn') || opts.which.includes('initial')) {
    mkdirSync(join(HERE, '.build'), { recursive: true });
    execFileSync('cc', ['-O2', '-Wall', '-o', RAW_FLOOD, join(HERE, 'raw-flood.c')], { stdio: 'inherit' });
  }
  const c = await startCampaignLab({ prefix: `rlf${process.pid % 1000}`, secondCluster: true, maxFlows: opts.maxFlows, agentTunThread: opts.agentTunThread });
  try {
    // Retry replies to spoofed sources go back to the agent namespace and die there.
    await c.lab.exec('gw', 'ip', ['route', 'add', SPOOF_NET, 'via', '192.0.2.1']);
    await c.lab.exec('agent', 'ip', ['route', 'add', 'blackhole', SPOOF_NET]);
    const misbehave = (name: string, mode: string, extra: string[], holdS: number) => ({
      name,
      start(cl: CampaignLab) {
        const proc = cl.lab.spawn('agent', name, process.execPath, ['--import', REGISTER, MISBEHAVE, mode, '--gateway', `${LAB.gatewayWan.v4}:${LAB.gatewayPort}`, '--certs', cl.lab.file('certs'), '--identity', 'cluster-c', '--seconds', String(holdS), ...extra]);
        const ready = mode === 'slowloris' ? waitLog(cl, name, /holding/, holdS * 1000) : sleep(1000);
        return { proc, ready };
      },
    });
    const all: Record<string, Flood[]> = {
      syn: [{
        name: 'syn',
        start(cl) {
          const count = 2 * opts.maxFlows;
          const rate = Math.max(1000, Math.ceil(count / (opts.seconds * 0.8)));
          return { proc: cl.lab.spawn('client', 'flood-syn', RAW_FLOOD, ['syn', LAB.server.v4, '80', '10.10.0.0/24', String(rate), String(count), String(opts.seconds)]), ready: sleep(1000) };
        },
      }],
      initial: [{
        name: 'initial',
        start(cl) {
          const args = ['initial', LAB.gatewayWan.v4, String(LAB.gatewayPort), SPOOF_NET, String(opts.initialRate), String(opts.initialRate * opts.seconds), String(opts.seconds)];
          return { proc: cl.lab.spawn('agent', 'flood-initial', RAW_FLOOD, args), ready: sleep(1000) };
        },
      }],
      slowloris: [misbehave('slowloris', 'slowloris', ['--conns', '1000'], opts.seconds + 60)],
      routes: [misbehave('routes-big', 'routes-big', ['--rate', '2'], opts.seconds), misbehave('routes-churn', 'routes-churn', ['--rate', '200', '--site', '10.30.0.0/24'], opts.seconds)],
      addresses: [misbehave('addresses', 'addresses', ['--rate', '50'], opts.seconds)],
    };
    for (const w of opts.which) {
      if (!all[w]) throw new Error(`reliability: unknown flood ${w}`);
      for (const f of all[w]!) await (opts.alone === true ? floodAlone(c, f, rep) : runFlood(c, f, opts.seconds, rep));
    }
  } finally {
    await c.down();
  }
  return rep;
}

async function restartDaemons(c: CampaignLab): Promise<void> {
  await c.lab.stop('agent', 'SIGTERM');
  await c.lab.stop('gateway', 'SIGTERM');
  await c.lab.startGateway();
  await c.lab.startAgent('agent');
}

/**
 * `--alone`: what the flood costs each daemon with nothing else running —
 * CPU over an idle span of the same length first (timers, keepalives), then
 * over the flood; reported per 1,000 packets the generator sent. Side by
 * side with the loaded runs' percentages, it tells the flood's own cost from
 * the box's noise.
 */
async function floodAlone(c: CampaignLab, f: Flood, rep: Report): Promise<void> {
  await restartDaemons(c);
  const gwPid = pidOf(c.lab, 'gateway');
  const agPid = pidOf(c.lab, 'agent');
  const cpu = () => [cpuSeconds(gwPid), cpuSeconds(agPid)];
  const counts = async () => {
    const [g, a] = [await c.lab.metrics('gw').catch(() => ''), await c.lab.metrics('agent').catch(() => '')];
    return [metricSum(g, 'mtun_tunnel_received_datagrams_total'), metricSum(g, 'mtun_tunnel_sent_datagrams_total'),
      metricSum(a, 'mtun_tunnel_received_datagrams_total'), metricSum(a, 'mtun_tunnel_sent_datagrams_total'),
      metricSum(g, 'mtun_tunnel_dropped_packets_total'), metricSum(a, 'mtun_tunnel_dropped_packets_total'),
      metricSum(g, 'mtun_quic_datagrams_total', 'direction="in"'), metricSum(g, 'mtun_quic_datagrams_total', 'direction="out"')];
  };
  const t0 = Date.now();
  const idle0 = cpu();
  await sleep(5000);
  const idle1 = cpu();
  const idleS = (Date.now() - t0) / 1000;
  const n0 = await counts();
  const t1 = Date.now();
  const { proc } = f.start(c);
  await new Promise<void>((r) => proc.once('exit', () => r()));
  await sleep(1000); // the last packets through both daemons
  const flood1 = cpu();
  const floodS = (Date.now() - t1) / 1000;
  const n1 = await counts();
  const d = n1.map((x, i) => x - n0[i]!);
  const gen = generatorReport(c, f) as { sent?: number } | null;
  const sent = gen?.sent ?? 0;
  const perK = (i: number) => sent > 0 ? (1e6 * ((flood1[i]! - idle1[i]!) - ((idle1[i]! - idle0[i]!) * floodS) / idleS)) / sent : -1;
  rep.row({
    flood: f.name,
    alone: true,
    generator: gen,
    floodS,
    gwCores: (flood1[0]! - idle1[0]!) / floodS,
    agentCores: (flood1[1]! - idle1[1]!) / floodS,
    // Above the idle rate, CPU-ms per 1,000 flood packets.
    gwCpuMsPer1k: perK(0),
    agentCpuMsPer1k: perK(1),
    tunTxDropped: { gw: await tunTxDropped(c, 'gw'), agent: await tunTxDropped(c, 'agent') },
    // What the flood became inside the tunnel: datagrams each daemon received from / sent to its peer, and dropped.
    tunnelDatagrams: { gwReceived: d[0], gwSent: d[1], agentReceived: d[2], agentSent: d[3], gwDropped: d[4], agentDropped: d[5] },
    // The UDP datagrams (QUIC packets) the gateway received and sent: beyond the DATAGRAM frames above, ACK-only packets.
    gwUdp: { received: d[6], sent: d[7] },
  });
  await stopIfProfiling(c);
}

async function runFlood(c: CampaignLab, f: Flood, seconds: number, rep: Report): Promise<void> {
  await restartDaemons(c);
  // Repeated 10 MB downloads for a few seconds, not one: a single one lasts a quarter second
  // (mostly slow start), and its rate swung ±30 % between identical runs.
  const base = await downloadsFor(c, LEGIT_MS, `base-${f.name}`, () => false);
  const hzBase = [await healthzMs(c, 'gw'), await healthzMs(c, 'agent')];
  const gwPid = pidOf(c.lab, 'gateway');
  const agPid = pidOf(c.lab, 'agent');
  const rss0 = [rssKb(gwPid).rss, rssKb(agPid).rss];
  const drops0 = metricSum(await c.lab.metrics('gw'), 'mtun_tunnel_dropped_packets_total');

  const peak = [0, 0];
  const hz: { gw: number[]; agent: number[] } = { gw: [], agent: [] };
  let sampling = true;
  const rssLoop = (async () => {
    while (sampling) {
      peak[0] = Math.max(peak[0]!, rssKb(gwPid).rss);
      peak[1] = Math.max(peak[1]!, rssKb(agPid).rss);
      await sleep(200);
    }
  })();
  const hzLoop = (async () => {
    while (sampling) {
      hz.gw.push(await healthzMs(c, 'gw'));
      hz.agent.push(await healthzMs(c, 'agent'));
      await sleep(500);
    }
  })();

  const udpErrors = async (): Promise<number> => {
    const r = await c.lab.exec('gw', 'cat', ['/proc/net/snmp']).catch(() => null);
    const lines = (r?.stdout ?? '').split('\n').filter((l) => l.startsWith('Udp:'));
    if (lines.length < 2) return -1;
    const names = lines[0]!.split(/\s+/);
    const vals = lines[1]!.split(/\s+/);
    return Number(vals[names.indexOf('RcvbufErrors')] ?? -1);
  };
  const rcvbuf0 = await udpErrors();
  const tunDrops0 = [await tunTxDropped(c, 'gw'), await tunTxDropped(c, 'agent')];
  const thread0 = await counterSeries(c, TUN_THREAD_EVENTS);
  const dropSeries0 = await counterSeries(c, DROP_COUNTERS);
  const stat0 = cpuStat();
  const cpu0 = [cpuSeconds(gwPid), cpuSeconds(agPid)];
  const t0 = Date.now();
  const { proc, ready } = f.start(c);
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  let floodDone = false;
  void exited.then(() => { floodDone = true; });
  await Promise.race([ready, exited]);
  // While the flood lasts (leaving its last second), at most LEGIT_MS.
  const loaded = await downloadsFor(c, Math.min(LEGIT_MS, Math.max(1000, seconds * 1000 - 2000)), `load-${f.name}`, () => floodDone);
  // Bounded: the flood stops itself; kill it 30 s after its own limit at the latest.
  const kill = setTimeout(() => proc.kill('SIGKILL'), (seconds + 90) * 1000);
  const loadedS = (Date.now() - t0) / 1000;
  const floodCpu = proc.pid !== undefined ? cpuSeconds(proc.pid) : 0;
  const stat1 = cpuStat();
  const cpuLoaded = [cpuSeconds(gwPid) - cpu0[0]!, cpuSeconds(agPid) - cpu0[1]!];
  await exited;
  clearTimeout(kill);
  sampling = false;
  await Promise.all([rssLoop, hzLoop]);
  const gwAlive = c.lab.process('gateway')?.exitCode === null;
  // Unloaded again after the flood: the box's own drift (other work, thermal, caches) shows as
  // a difference between before and after, and the flood is judged against their mean.
  await sleep(2000);
  const after = gwAlive ? await downloadsFor(c, LEGIT_MS, `after-${f.name}`, () => false) : null;
  const unloaded = after !== null ? (base.mbitPerS + after.mbitPerS) / 2 : base.mbitPerS;
  const m = gwAlive ? await c.lab.metrics('gw').catch(() => '') : '';
  // What the TUN threads did and what both daemons dropped over the flood and the downloads after it.
  const threadEvents = counterDelta(thread0, await counterSeries(c, TUN_THREAD_EVENTS));
  const dropSeries = counterDelta(dropSeries0, await counterSeries(c, DROP_COUNTERS));
  const floodOut = generatorReport(c, f);
  const failures = (xs: number[]) => xs.filter((x) => x < 0).length;
  const ok = (xs: number[]) => xs.filter((x) => x >= 0);
  rep.row({
    flood: f.name,
    floodS: (Date.now() - t0) / 1000,
    generator: floodOut,
    legitUnloadedMbit: base.mbitPerS,
    legitLoadedMbit: loaded.mbitPerS,
    legitTransfers: [base.n, loaded.n],
    legitLoadedAfterFlood: loaded.afterFlood,
    legitUnloadedAfterMbit: after?.mbitPerS ?? -1,
    legitPct: unloaded > 0 ? (100 * loaded.mbitPerS) / unloaded : 0,
    legitSha: loaded.shaOk ? 'ok' : `BAD(exit ${loaded.exit})`,
    gwRssStartMB: rss0[0]! / 1024,
    gwRssPeakMB: peak[0]! / 1024,
    agentRssStartMB: rss0[1]! / 1024,
    agentRssPeakMB: peak[1]! / 1024,
    healthzUnloadedMs: hzBase,
    gwHealthzP50Ms: pct(ok(hz.gw), 50),
    gwHealthzMaxMs: Math.max(-1, ...ok(hz.gw)),
    gwHealthzFailed: `${failures(hz.gw)}/${hz.gw.length}`,
    agentHealthzP50Ms: pct(ok(hz.agent), 50),
    agentHealthzFailed: `${failures(hz.agent)}/${hz.agent.length}`,
    gwAlive,
    gwFlowsAfter: gwAlive ? await flowsInTable(c, 'gw').catch(() => -1) : -1,
    gwDroppedPkts: m ? metricSum(m, 'mtun_tunnel_dropped_packets_total') - drops0 : -1,
    threadEvents,
    drops: dropSeries,
    // Cores each daemon used from the flood's start to the end of the loaded download, and the
    // gateway namespace's UDP receive-buffer overflows over the whole flood (legitimate datagrams lost with flood ones).
    gwCores: cpuLoaded[0]! / loadedS,
    agentCores: cpuLoaded[1]! / loadedS,
    generatorCores: floodCpu / loadedS,
    // The whole box over the same span (cores): all user, all system, softirq (kernel packet work), idle.
    boxCores: { user: (stat1.user - stat0.user) / 100 / loadedS, system: (stat1.system - stat0.system) / 100 / loadedS,
      softirq: (stat1.softirq - stat0.softirq) / 100 / loadedS, idle: (stat1.idle - stat0.idle) / 100 / loadedS },
    gwUdpRcvbufErrors: rcvbuf0 >= 0 ? (await udpErrors()) - rcvbuf0 : -1,
    // Answers lost at each daemon's TUN transmit queue over the flood and the downloads around it.
    tunTxDropped: { gw: (await tunTxDropped(c, 'gw')) - tunDrops0[0]!, agent: (await tunTxDropped(c, 'agent')) - tunDrops0[1]! },
    // What the gateway's QUIC endpoint did with the datagrams (cumulative since start).
    gwQuic: m ? {
      datagramsIn: metricSum(m, 'mtun_quic_datagrams_total', 'direction="in"'),
      retriesSent: metricSum(m, 'mtun_quic_stateless_packets_sent_total', 'packet="retry"'),
      retryRateLimited: metricSum(m, 'mtun_quic_datagrams_dropped_total', 'reason="retry-rate-limit"'),
      handshakesAccepted: metricSum(m, 'mtun_quic_handshakes_total', 'result="accepted"'),
      handshakesFailed: metricSum(m, 'mtun_quic_handshakes_total', 'result="failed"'),
      heapUsedMB: metricSum(m, 'mtun_nodejs_heap_size_used_bytes') / 2 ** 20,
      externalMB: metricSum(m, 'mtun_nodejs_external_memory_bytes') / 2 ** 20,
    } : null,
    // RSS 5 s after the flood ended: does the memory come back?
    gwRssAfterMB: gwAlive ? await sleep(5000).then(() => rssKb(gwPid).rss / 1024) : -1,
  });
  await stopIfProfiling(c);
}

/** How long the legitimate transfers run, unloaded and during a flood (ms). */
const LEGIT_MS = 6000;

/**
 * Back-to-back downloads for about `ms` (at least one): total bytes over
 * total transfer time; shaOk only if every one matched. `stop` ends the
 * series early (the flood is over); `afterFlood` says the last one finished
 * after it, i.e. the figure is partly unloaded.
 */
async function downloadsFor(c: CampaignLab, ms: number, name: string, stop: () => boolean): Promise<{ mbitPerS: number; shaOk: boolean; exit: number | null; n: number; afterFlood: boolean }> {
  const end = Date.now() + ms;
  let bytes = 0;
  let secs = 0;
  let shaOk = true;
  let exit: number | null = 0;
  let n = 0;
  let afterFlood = false;
  do {
    const t = await download(c, 60, 'client', name);
    n++;
    bytes += t.bytes;
    secs += t.seconds;
    if (!t.shaOk) { shaOk = false; exit = t.exit; }
    if (stop()) { afterFlood = true; break; }
  } while (Date.now() < end);
  return { mbitPerS: secs > 0 ? (bytes * 8) / secs / 1e6 : 0, shaOk, exit, n, afterFlood };
}

/** Jiffies since boot from /proc/stat's cpu line (user+nice, system, softirq, idle+iowait). */
function cpuStat(): { user: number; system: number; softirq: number; idle: number } {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).map(Number);
  return { user: f[1]! + f[2]!, system: f[3]!, softirq: f[7]!, idle: f[4]! + f[5]! };
}

/** Profiling (MTUN_LAB_NODE_ARGS=--cpu-prof ...): a graceful stop, so the daemons write their profiles. */
async function stopIfProfiling(c: CampaignLab): Promise<void> {
  if (process.env.MTUN_LAB_NODE_ARGS) await Promise.all([c.lab.stop('gateway'), c.lab.stop('agent')]);
}

/** The flood generator's closing JSON line (raw-flood.c's, or the misbehaving client's), or null. */
function generatorReport(c: CampaignLab, f: Flood): unknown {
  return lastJson(c, f.name === 'syn' || f.name === 'initial' ? `flood-${f.name}` : f.name);
}

function lastJson(c: CampaignLab, name: string): unknown {
  try {
    const lines = readFileSync(c.lab.file(`${name}.log`), 'utf8').trim().split('\n').filter((l) => l.startsWith('{'));
    return lines.length ? JSON.parse(lines[lines.length - 1]!) : null;
  } catch {
    return null;
  }
}

async function waitLog(c: CampaignLab, name: string, re: RegExp, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    try { if (re.test(readFileSync(c.lab.file(`${name}.log`), 'utf8'))) return; } catch { /* not yet */ }
    await sleep(250);
  }
}
