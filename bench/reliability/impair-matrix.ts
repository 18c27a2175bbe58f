/**
 * Part 1, impairment matrix: a 10 MB download through the tunnel (curl in
 * the client namespace) while the underlay between agent and gateway runs
 * through the userspace impairer, one cell per impairment. Per cell: sha256
 * exact, both ends' flow_close bytes equal (and equal curl's), throughput
 * and wall time. The blackhole cell cuts the underlay for `blackholeS`
 * seconds mid-transfer and reports when ping replies and the transfer resume.
 */
import type { ImpairOptions } from '../../test/impair/impairer.js';
import { statSync } from 'node:fs';
import { BLOB_BYTES, counterDelta, counterSeries, download, DROP_COUNTERS, firstReplyAfter, flowAgreement, pingTimeline, Report, sleep, startCampaignLab, type CampaignLab } from './campaign-lab.js';

/**
 * `reconnect`: the agent starts again once the impairment is on, so its QUIC connection measures the
 * impaired path from its handshake (a tunnel across regions); without it the impairment hits a live
 * connection (for delay: its round trip grows a hundredfold mid-connection, see the rise cell).
 */
type Cell = { name: string; impair: Partial<ImpairOptions>; blackholeS?: number; reconnect?: boolean };

const NONE = { lossPercent: 0, delayMs: 0, jitterMs: 0, reorderPercent: 0, corruptPercent: 0 };

/** The cells of issue #12, plus an unimpaired reference. */
export function cells(blackholeS: number): Cell[] {
  return [
    { name: 'none', impair: {} },
    { name: 'loss-1%', impair: { lossPercent: 1 } },
    { name: 'loss-5%', impair: { lossPercent: 5 } },
    // The path's delay rises on the live connection: ngtcp2 0.12's congestion control keeps the round trip of
    // the unimpaired path as its minimum (BBR2 for about 10 s, its min-RTT window; cubic and reno for good).
    { name: 'delay-50ms-rise', impair: { delayMs: 50 } },
    { name: 'delay-50ms', impair: { delayMs: 50 }, reconnect: true },
    { name: 'reorder-10%', impair: { reorderPercent: 10, reorderDelayMs: 10 } },
    { name: 'corrupt-1%', impair: { corruptPercent: 1 } },
    { name: `blackhole-${blackholeS}s`, impair: {}, blackholeS },
  ];
}

/** Runs the matrix (cells filtered by name substring when `only` is set); returns the report. */
export async function impairMatrix(opts: { blackholeS: number; only?: string[]; maxTimeS: number; queueDelayTargetMs?: number; tunThread?: boolean }): Promise<Report> {
  const rep = new Report('impair');
  const c = await startCampaignLab({ prefix: `rli${process.pid % 1000}`, impairUnderlay: true, queueDelayTargetMs: opts.queueDelayTargetMs,
    agentTunThread: opts.tunThread, gatewayTunThread: opts.tunThread });
  try {
    for (const cell of cells(opts.blackholeS)) {
      if (opts.only && !opts.only.some((o) => cell.name.includes(o))) continue;
      await runCell(c, cell, opts.maxTimeS, rep);
    }
  } finally {
    await c.down();
  }
  return rep;
}

async function runCell(c: CampaignLab, cell: Cell, maxTimeS: number, rep: Report): Promise<void> {
  const imp = c.bridge!.impairer;
  imp.configure({ ...NONE, ...cell.impair });
  if (cell.reconnect) {
    await c.lab.stop('agent');
    await c.lab.startAgent(); // returns once its tunnel is up
  }
  const before = { ...imp.stats };
  const dropsBefore = await counterSeries(c, DROP_COUNTERS);
  const t0 = Date.now();
  let resume: Record<string, number> = {};
  let t;
  if (cell.blackholeS === undefined) {
    t = await download(c, maxTimeS, 'client', cell.name);
  } else {
    const ping = pingTimeline(c, `ping-${cell.name}`, cell.blackholeS + maxTimeS, 100);
    const dl = download(c, cell.blackholeS + maxTimeS, 'client', cell.name);
    // Cut once a fifth of the blob arrived, so the outage falls mid-transfer.
    const partial = c.lab.file(`${cell.name}.bin`);
    for (let i = 0; i < 200 && fileSize(partial) < BLOB_BYTES / 5; i++) await sleep(50);
    imp.blackhole = true;
    const cutAt = Date.now();
    await sleep(cell.blackholeS * 1000);
    imp.blackhole = false;
    const openAt = Date.now();
    t = await dl;
    ping.stop();
    const replies = ping.replies();
    resume = { blackholeS: (openAt - cutAt) / 1000, pingResumeMs: firstReplyAfter(replies, openAt), transferDoneAfterMs: t0 + t.seconds * 1000 - openAt };
  }
  const wallS = (Date.now() - t0) / 1000;
  const flows = t.localPort ? await flowAgreement(c, t) : { agree: false, note: 'no transfer' };
  const s = imp.stats;
  rep.row({
    cell: cell.name,
    sha256: t.shaOk ? 'ok' : 'BAD',
    curlExit: t.exit,
    bytes: t.bytes,
    mbitPerS: t.mbitPerS,
    curlS: t.seconds,
    wallS,
    flowsAgree: flows.agree,
    flowNote: flows.note,
    ...resume,
    underlayPkts: s.received - before.received,
    lost: s.lost - before.lost,
    corrupted: s.corrupted - before.corrupted,
    reordered: s.reordered - before.reordered,
    blackholed: s.blackholed - before.blackholed,
    queueFull: s.queueFull - before.queueFull,
    // What the daemons dropped inside the tunnel during the cell (CoDel, full queues, checks): why a cell is slow.
    drops: counterDelta(dropsBefore, await counterSeries(c, DROP_COUNTERS)),
  });
}

function fileSize(f: string): number {
  try { return statSync(f).size; } catch { return 0; }
}
