/**
 * Part 4, soak: mixed traffic for `minutes` (bounded) — 10 MB downloads
 * (IPv4), small GETs (IPv6), UDP echoes through the agent's CONNECT-UDP
 * forwarder and ICMP echo, round after round — while both daemons' RSS and
 * flow-table size (opened − closed, from their counters) are sampled every
 * 10 s. Reports least-squares slopes over the whole run and its second half.
 */
import { join } from 'node:path';
import { REPO_ROOT } from '../../src/lab/lab.js';
import { download, flowsFromMetrics, LAB, metricByLabel, metricSum, pidOf, Report, rssKb, slope, sleep, startCampaignLab, type CampaignLab } from './campaign-lab.js';

const UDP_PROBE = join(REPO_ROOT, 'dist', 'lab', 'udp-probe.js');
const SAMPLE_MS = 10_000;

interface Sample {
  tMin: number; gwRssKb: number; agentRssKb: number; gwFlows: number; agentFlows: number;
  /** The gateway's RSS split: anonymous and file-backed (node binary, libraries), kB. */
  gwRssAnonKb: number; gwRssFileKb: number;
  /** Where the gateway's RSS sits: V8 heap used/total and external (Buffers, ArrayBuffers), MB; the rest is native (addon, GnuTLS, libc). */
  gwHeapUsedMB: number; gwHeapTotalMB: number; gwExternalMB: number; agentHeapTotalMB: number; agentExternalMB: number;
  /** malloc in use / free in arenas (mtun_native_heap_bytes), MB. */
  gwNativeInUseMB: number; gwNativeFreeMB: number; agentNativeInUseMB: number;
}

/** One daemon's flow-table size and V8 memory split, from one metrics scrape. */
async function daemonSample(c: CampaignLab, which: 'gw' | 'agent'): Promise<{ flows: number; heapUsedMB: number; heapTotalMB: number; externalMB: number; nativeInUseMB: number; nativeFreeMB: number }> {
  const m = await c.lab.metrics(which).catch(() => '');
  if (m === '') return { flows: -1, heapUsedMB: -1, heapTotalMB: -1, externalMB: -1, nativeInUseMB: -1, nativeFreeMB: -1 };
  const mb = (name: string) => Math.round((metricSum(m, name) / 2 ** 20) * 100) / 100;
  return {
    flows: flowsFromMetrics(m),
    heapUsedMB: mb('mtun_nodejs_heap_size_used_bytes'),
    heapTotalMB: mb('mtun_nodejs_heap_size_total_bytes'),
    externalMB: mb('mtun_nodejs_external_memory_bytes'),
    nativeInUseMB: mb('mtun_native_heap_bytes{state="in_use"}'),
    nativeFreeMB: mb('mtun_native_heap_bytes{state="free"}'),
  };
}

/** Runs the soak; prints a sample line every 10 s and the slopes at the end. */
export async function soak(opts: { minutes: number }): Promise<Report> {
  const rep = new Report('soak');
  const c = await startCampaignLab({ prefix: `rls${process.pid % 1000}` });
  const samples: Sample[] = [];
  const t0 = Date.now();
  const end = t0 + opts.minutes * 60_000;
  const tally = { rounds: 0, downloads: 0, badDownloads: 0, gets: 0, badGets: 0, udpSent: 0, udpLost: 0, pings: 0, pingLost: 0 };
  try {
    const gwPid = pidOf(c.lab, 'gateway');
    const agPid = pidOf(c.lab, 'agent');
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const [g, a] = [await daemonSample(c, 'gw'), await daemonSample(c, 'agent')];
        const gwRss = rssKb(gwPid);
        const s: Sample = {
          tMin: (Date.now() - t0) / 60_000,
          gwRssKb: gwRss.rss,
          agentRssKb: rssKb(agPid).rss,
          gwRssAnonKb: gwRss.anon,
          gwRssFileKb: gwRss.file,
          gwFlows: g.flows,
          agentFlows: a.flows,
          gwHeapUsedMB: g.heapUsedMB,
          gwHeapTotalMB: g.heapTotalMB,
          gwExternalMB: g.externalMB,
          agentHeapTotalMB: a.heapTotalMB,
          agentExternalMB: a.externalMB,
          gwNativeInUseMB: g.nativeInUseMB,
          gwNativeFreeMB: g.nativeFreeMB,
          agentNativeInUseMB: a.nativeInUseMB,
        };
        samples.push(s);
        rep.row({ sample: samples.length, ...s, ...tally });
        const wait = t0 + samples.length * SAMPLE_MS - Date.now();
        await sleep(Math.max(0, Math.min(wait, end - Date.now() + 1)));
        if (Date.now() >= end) break;
      }
    })();
    while (Date.now() < end) {
      await round(c, tally);
      tally.rounds++;
    }
    sampling = false;
    await sampler;
    const half = samples.filter((s) => s.tMin >= opts.minutes / 2);
    const sl = (xs: Sample[], k: keyof Sample) => slope(xs.map((s) => s.tMin), xs.map((s) => s[k]));
    // Where lost packets went: each daemon's counted drops by reason, and QUIC-level drops.
    const [gm, am] = await Promise.all([c.lab.metrics('gw').catch(() => ''), c.lab.metrics('agent').catch(() => '')]);
    rep.row({
      summary: `${opts.minutes} min, ${samples.length} samples`,
      ...tally,
      gwDrops: metricByLabel(gm, 'mtun_tunnel_dropped_packets_total', 'reason'),
      agentDrops: metricByLabel(am, 'mtun_tunnel_dropped_packets_total', 'reason'),
      gwQuicDrops: metricByLabel(gm, 'mtun_quic_datagrams_dropped_total', 'reason'),
      agentQuicDrops: metricByLabel(am, 'mtun_quic_datagrams_dropped_total', 'reason'),
      agentDatagramDrops: metricByLabel(am, 'mtun_datagrams_dropped_total', 'reason'),
      gwDatagramDrops: metricByLabel(gm, 'mtun_datagrams_dropped_total', 'reason'),
      gwRssKbPerMin: sl(samples, 'gwRssKb'),
      gwRssKbPerMinSecondHalf: sl(half, 'gwRssKb'),
      gwRssAnonKbPerMinSecondHalf: sl(half, 'gwRssAnonKb'),
      gwRssFileKbPerMinSecondHalf: sl(half, 'gwRssFileKb'),
      agentRssKbPerMin: sl(samples, 'agentRssKb'),
      agentRssKbPerMinSecondHalf: sl(half, 'agentRssKb'),
      gwFlowsPerMin: sl(samples, 'gwFlows'),
      gwFlowsPerMinSecondHalf: sl(half, 'gwFlows'),
      agentFlowsPerMinSecondHalf: sl(half, 'agentFlows'),
      gwHeapTotalMBPerMinSecondHalf: sl(half, 'gwHeapTotalMB'),
      gwExternalMBPerMinSecondHalf: sl(half, 'gwExternalMB'),
      gwNativeInUseMBPerMinSecondHalf: sl(half, 'gwNativeInUseMB'),
      gwNativeFreeMBPerMinSecondHalf: sl(half, 'gwNativeFreeMB'),
      gwRssFirstLastMB: [samples[0]!.gwRssKb / 1024, samples[samples.length - 1]!.gwRssKb / 1024],
      agentRssFirstLastMB: [samples[0]!.agentRssKb / 1024, samples[samples.length - 1]!.agentRssKb / 1024],
    });
  } finally {
    await c.down();
  }
  return rep;
}

async function round(c: CampaignLab, t: Record<string, number>): Promise<void> {
  const dl = download(c, 60, 'client', 'soak');
  const gets = (async () => {
    for (let i = 0; i < 10; i++) {
      const r = await c.lab.exec('client', 'curl', ['-sf', '--max-time', '10', `http://[${LAB.server.v6}]/`]);
      t.gets!++;
      if (r.code !== 0) t.badGets!++;
    }
  })();
  const udp = c.lab.exec('agent', process.execPath, [UDP_PROBE, '127.0.0.1', '7007', '50', '512'], 60_000).then((r) => {
    try {
      const j = JSON.parse(r.stdout) as { sent: number; lost: number };
      t.udpSent! += j.sent;
      t.udpLost! += j.lost;
    } catch { t.udpLost! += 50; }
  });
  const ping = c.lab.exec('client', 'ping', ['-q', '-c', '20', '-i', '0.05', '-W', '1', LAB.server.v4]).then((r) => {
    const m = /(\d+) packets transmitted, (\d+) received/.exec(r.stdout);
    t.pings! += 20;
    t.pingLost! += m ? Number(m[1]) - Number(m[2]) : 20;
  });
  const [d] = await Promise.all([dl, gets, udp, ping]);
  t.downloads!++;
  if (!d.ok) t.badDownloads!++;
}
