/**
 * Latency under load through the userspace impairer (issue #13: "a bulk TCP
 * flow cannot add milliseconds to every other flow's round trip"): per cell
 * of underlay delay, ping (every 50 ms) from the client to the server alone,
 * then while the client downloads the 10 MB blob through the same session
 * (`--downloads` times back to back).
 * Reports the ping RTT (median, p90, max) alone and during the download, the
 * download's rate and sha256.
 *
 * What it can show is bounded by the impairer itself: a userspace bridge that
 * carries ~70 Mbit/s here and queues up to 8,192 packets (over a second at
 * that rate), so a download that outruns it fills the impairer's queue, not
 * mtun's. With no delay configured the bridge alone adds ~4 ms.
 */
import { download, parsePingReplies, pingTimeline, Report, sleep, startCampaignLab } from './campaign-lab.js';
import { LAB } from '../../src/lab/lab.js';

const NONE = { lossPercent: 0, delayMs: 0, jitterMs: 0, reorderPercent: 0, corruptPercent: 0 };

function quantile(xs: number[], q: number): number {
  if (xs.length === 0) return -1;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))]!;
}

export async function latencyUnderLoad(opts: { delaysMs: number[]; maxTimeS: number; downloads: number }): Promise<Report> {
  const rep = new Report('latency');
  const c = await startCampaignLab({ prefix: `rll${process.pid % 1000}`, impairUnderlay: true });
  try {
    for (const delayMs of opts.delaysMs) {
      const imp = c.bridge!.impairer;
      imp.configure({ ...NONE, delayMs });
      await sleep(500);
      // Alone: 40 pings.
      const aloneRes = await c.lab.exec('client', 'ping', ['-n', '-i', '0.05', '-W', '2', '-c', '40', LAB.server.v4], 30_000);
      const alone = parsePingReplies(aloneRes.stdout);
      // Under load: pings throughout the download (ping -D gives each reply's time to cut out the download window).
      const ping = pingTimeline(c, `ping-load-${delayMs}ms`, opts.maxTimeS * opts.downloads, 50, 2);
      await sleep(300);
      // The blob back to back `downloads` times: one 10 MB transfer is over before the queues settle.
      const t0 = Date.now();
      let bytes = 0;
      let seconds = 0;
      let shaOk = true;
      for (let k = 0; k < opts.downloads; k++) {
        const dl = await download(c, opts.maxTimeS, 'client', `lat-${delayMs}ms`);
        bytes += dl.bytes;
        seconds += dl.seconds;
        shaOk &&= dl.shaOk;
      }
      const t1 = Date.now();
      ping.stop();
      await sleep(300);
      // Replies sent at least 0.5 s into the download and before its end: the loaded part.
      const loaded = ping.samples().filter((p) => p.at - p.rtt >= t0 + 500 && p.at <= t1);
      const a = alone.map((p) => p.rtt);
      const l = loaded.map((p) => p.rtt);
      rep.row({
        delayMs,
        pingAloneMedianMs: quantile(a, 0.5), pingAloneP90Ms: quantile(a, 0.9),
        pingLoadedMedianMs: quantile(l, 0.5), pingLoadedP90Ms: quantile(l, 0.9), pingLoadedMaxMs: l.length ? Math.max(...l) : -1, pingsLoaded: l.length,
        downloadMbitPerS: seconds > 0 ? (bytes * 8) / seconds / 1e6 : 0, downloadSeconds: seconds, sha256Ok: shaOk,
      });
    }
  } finally {
    await c.down();
  }
  return rep;
}
