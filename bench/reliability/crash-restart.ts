/**
 * Part 2, crash and restart: SIGKILL the gateway `kills` times in a row, then
 * the agent, restarting it at once each time. A ping runs from the client to
 * the server throughout (every 50 ms); per kill we report the time from the
 * restart's spawn to the daemon's /readyz and to the first ping reply, and
 * (waiting at most `resumeWaitS`), and diff the namespaces' links, routes
 * and nftables rules against the state with everything up (after the
 * restart: "+" entries are leaks, "-" ones are not back yet) and against the
 * first post-kill state (while the daemon is dead). Then one gateway restart while three
 * transfers (two from cluster A's agent, one from cluster C's) are running.
 */
import { statSync } from 'node:fs';
import type { Role } from '../../src/lab/lab.js';
import { BLOB_BYTES, diffState, download, firstReplyAfter, LAB, netState, pct, pingTimeline, Report, sleep, startCampaignLab, type CampaignLab } from './campaign-lab.js';

const RESUME_LIMIT_MS = 2000;

/** Runs the parts named in `what` (gateway, agent, midtransfer). */
export async function crashRestart(opts: { kills: number; what: string[]; resumeWaitS: number }): Promise<Report> {
  const rep = new Report('crash');
  const c = await startCampaignLab({ prefix: `rlc${process.pid % 1000}`, startAgent2: opts.what.includes('midtransfer') });
  try {
    if (opts.what.includes('gateway')) await killLoop(c, 'gateway', opts.kills, opts.resumeWaitS, rep);
    if (opts.what.includes('agent')) await killLoop(c, 'agent', opts.kills, opts.resumeWaitS, rep);
    if (opts.what.includes('midtransfer')) await midTransfer(c, rep);
  } finally {
    await c.down();
  }
  return rep;
}

/**
 * Waits (at most 30 s) until the gateway routes every running agent's site
 * again, so the reference state is not taken while agent2 is still
 * reconnecting after the previous loop (which showed up as false leaks).
 */
async function settled(c: CampaignLab): Promise<void> {
  const sites = ['10.10.0.0/24', ...(c.lab.process('agent2')?.exitCode === null ? ['10.30.0.0/24'] : [])];
  for (let i = 0; i < 300; i++) {
    const gw = netState(c.lab, 'gw');
    if (sites.every((p) => gw.some((l) => l.startsWith(`route-4 ${p} `)))) return;
    await sleep(100);
  }
}

async function killLoop(c: CampaignLab, daemon: 'gateway' | 'agent', kills: number, resumeWaitS: number, rep: Report): Promise<void> {
  const roles: Role[] = ['agent', 'gw'];
  await settled(c);
  const up = Object.fromEntries(roles.map((r) => [r, netState(c.lab, r)]));
  let dead: Record<string, string[]> | null = null;
  const ping = pingTimeline(c, `ping-kill-${daemon}`, kills * (resumeWaitS + 20) + 30, 50);
  const readys: number[] = [];
  const resumes: number[] = [];
  let leaks = 0;
  let missingTotal = 0;
  let failed = 0;
  try {
    await sleep(500);
    for (let i = 1; i <= kills; i++) {
      await c.lab.stop(daemon, 'SIGKILL');
      await sleep(200); // let the kernel finish tearing down the TUN
      const nowDead = Object.fromEntries(roles.map((r) => [r, netState(c.lab, r)]));
      dead ??= nowDead;
      const deadDiff = roles.map((r) => diffState(dead![r]!, nowDead[r]!));
      const tunLeft = nowDead[daemon === 'gateway' ? 'gw' : 'agent']!.filter((l) => /mtun-[ag]/.test(l));
      const t0 = Date.now();
      try {
        if (daemon === 'gateway') await c.lab.startGateway();
        else await c.lab.startAgent('agent');
      } catch (e) {
        failed++;
        rep.row({ daemon, kill: i, error: (e as Error).message });
        continue;
      }
      const readyMs = Date.now() - t0;
      let resumeMs = -1;
      for (let w = 0; w < resumeWaitS * 10 && resumeMs < 0; w++) {
        resumeMs = firstReplyAfter(ping.replies(), t0);
        if (resumeMs < 0) await sleep(100);
      }
      const nowUp = Object.fromEntries(roles.map((r) => [r, netState(c.lab, r)]));
      const upDiff = roles.map((r) => diffState(up[r]!, nowUp[r]!));
      // "+" = present now and not before (a leak); "-" = not (yet) back, e.g. a session still reconnecting.
      const leaked = [...upDiff, ...deadDiff].flatMap((d) => d.added.map((x) => `+${x}`)).concat(tunLeft.map((x) => `dead:${x}`));
      const missing = upDiff.flatMap((d) => d.removed.map((x) => `-${x}`));
      leaks += leaked.length;
      missingTotal += missing.length;
      readys.push(readyMs);
      if (resumeMs >= 0) resumes.push(resumeMs);
      rep.row({ daemon, kill: i, readyMs, resumeMs, resumeAfterReadyMs: resumeMs >= 0 ? resumeMs - readyMs : -1, within2s: resumeMs >= 0 && resumeMs <= RESUME_LIMIT_MS, leaked: leaked.length, missing: missing.length, ...(leaked.length + missing.length ? { diff: [...leaked, ...missing].slice(0, 6) } : {}) });
    }
  } finally {
    ping.stop();
  }
  rep.row({
    daemon,
    summary: `${kills} SIGKILLs`,
    restartFailures: failed,
    resumedWithin2s: resumes.filter((r) => r <= RESUME_LIMIT_MS).length,
    resumeMedianMs: pct(resumes, 50),
    resumeMaxMs: resumes.length ? Math.max(...resumes) : -1,
    noResume: kills - failed - resumes.length,
    readyMedianMs: pct(readys, 50),
    leakedEntries: leaks,
    missingEntriesAfterResume: missingTotal,
  });
}

async function midTransfer(c: CampaignLab, rep: Report): Promise<void> {
  const runs = [
    download(c, 120, 'client', 'mid-a4', LAB.server.v4),
    download(c, 120, 'client', 'mid-a6', LAB.server.v6),
    download(c, 120, 'client2', 'mid-c4', LAB.server.v4),
  ];
  const first = c.lab.file('mid-a4.bin');
  for (let i = 0; i < 200 && size(first) < BLOB_BYTES / 5; i++) await sleep(50);
  const sizes = ['mid-a4', 'mid-a6', 'mid-c4'].map((n) => size(c.lab.file(`${n}.bin`)));
  await c.lab.stop('gateway', 'SIGKILL');
  const t0 = Date.now();
  await c.lab.startGateway();
  const readyMs = Date.now() - t0;
  const res = await Promise.all(runs);
  res.forEach((t, k) => rep.row({
    midTransfer: ['cluster-a v4', 'cluster-a v6', 'cluster-c v4'][k],
    bytesAtKill: sizes[k],
    gatewayReadyMs: readyMs,
    sha256: t.shaOk ? 'ok' : 'BAD',
    curlExit: t.exit,
    bytes: t.bytes,
    curlS: t.seconds,
    ...(t.stderr ? { stderr: t.stderr.slice(0, 120) } : {}),
  }));
}

function size(f: string): number {
  try { return statSync(f).size; } catch { return 0; }
}
