/**
 * Latency split per TCP flow, checked against configured delays and against
 * tshark. Three userspace impairers (test/impair/) put known round-trip
 * delays on three segments: client↔agent 20 ms, tunnel 30 ms,
 * gateway↔server 5 ms (each direction gets half, plus 0–1 ms jitter). The
 * two observation points are the two sides of the "tunnel" impairer in ns
 * M2 (interface a2 = where the agent sees packets, b2 = where the gateway
 * does), captured by tcpdump and read back by `mtun inspect`
 * (inspectCapture). The tunnel is a delayed routed hop here, not the MASQUE
 * tunnel: this test checks the tracker's measurement and the split, the
 * daemons feed the same tracker.
 *
 *   ns C          ns M1 (impair 10 ms)   ns M2 (impair 15 ms)          ns M3 (impair 2.5 ms)  ns S
 *   pinger ── c0 ═ a1 ─ tun ─ b1 ═ a2 ─ tun ─ b2 ═ a3 ─ tun ─ b3 ═ s0 ── echo :7000
 *   10.41.0.1    10.41.0.254  10.42.0.1  10.42.0.2   10.43.0.1  10.43.0.2  10.44.0.1  10.44.0.2
 *                             capture "agent" on a2 ┘          └ capture "gateway" on b2
 *
 * Traffic: a ping-pong over one TCP connection with TCP_NODELAY (the client
 * sends the next message as soon as the echo arrives, so every ACK rides on
 * data at once and no delayed-ACK timer inflates a sample). The same traffic
 * runs first with 1 ms each way on every impairer (the measured base: stack,
 * capture and impairer latency, less the 2 ms configured; a nonzero delay so
 * the impairer's timer behaves as in the delayed run), then with the delays.
 *
 * Which statistic: the configured-delay check uses each segment's minimum
 * (the propagation estimate; on this shared 2-core machine scheduling adds
 * spikes of tens of ms that move a smoothed value but not the minimum). The
 * smoothed value is checked against tshark instead: tshark's ack_rtt series
 * of the same capture (it times data and FIN segments, as the tracker does),
 * put through the same RFC 6298 smoothing, must agree within ±1 %, with the
 * same number of samples and the same minimum.
 */
import { execFileSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inspectCapture } from '../../src/cli/inspect-command.js';
import type { FlowRecord } from '../../src/inspect/flow-record.js';
import { splitRtt } from '../../src/inspect/rtt-split.js';
import { startImpairBridge, type ImpairBridge } from '../impair/impairer.js';
import { BASE_ONE_WAY_MS, CLIENT_MS, echoScript, JITTER_MS, median, pingerScript, ROUNDS, SERVER_MS, smooth, tsharkAckRtt, TUNNEL_MS } from './rtt-split-common.js';
import { cleanupAll, createNetns, exec, execAsync, isRoot, runPrefix, spawnIn, veth, warnIfNotRoot } from './netns.js';

warnIfNotRoot('test/netns/rtt-split.test.ts');
const has = (cmd: string) => { try { execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'pipe' }); return true; } catch { return false; } };
const missing = ['tcpdump', 'tshark'].filter((t) => !has(t));
if (missing.length > 0) console.warn(`SKIP test/netns/rtt-split.test.ts: missing ${missing.join(', ')}`);

/** Rounds of the base run (cheap: a few ms each); many, so load spikes do not lift its minimum. */
const BASE_ROUNDS = 400;

function waitOutput(child: ChildProcess, re: RegExp): Promise<void> {
  return new Promise((resolve, reject) => {
    let acc = '';
    const t = setTimeout(() => reject(new Error(`timed out waiting for ${re}: ${acc}`)), 10_000);
    const on = (d: Buffer) => { acc += d.toString(); if (re.test(acc)) { clearTimeout(t); resolve(); } };
    child.stdout!.on('data', on);
    child.stderr!.on('data', on);
  });
}
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe.skipIf(!isRoot() || missing.length > 0)('RTT split per TCP flow: client / tunnel / server segments (impaired namespaces)', () => {
  let dir = '';
  let C = '', M1 = '', M2 = '', M3 = '', S = '';
  const bridges: ImpairBridge[] = [];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'mtun-rtt-'));
    const p = runPrefix('r');
    C = createNetns(p); M1 = createNetns(p); M2 = createNetns(p); M3 = createNetns(p); S = createNetns(p);
    veth(C, 'c0', M1, 'a1', { a: ['10.41.0.1/24'], b: ['10.41.0.254/24'] });
    veth(M1, 'b1', M2, 'a2', { a: ['10.42.0.1/24'], b: ['10.42.0.2/24'] });
    veth(M2, 'b2', M3, 'a3', { a: ['10.43.0.1/24'], b: ['10.43.0.2/24'] });
    veth(M3, 'b3', S, 's0', { a: ['10.44.0.1/24'], b: ['10.44.0.2/24'] });
    exec(C, 'ip', 'route', 'add', 'default', 'via', '10.41.0.254');
    for (const net of ['10.43.0.0/24', '10.44.0.0/24']) exec(M1, 'ip', 'route', 'add', net, 'via', '10.42.0.2');
    exec(M2, 'ip', 'route', 'add', '10.41.0.0/24', 'via', '10.42.0.1');
    exec(M2, 'ip', 'route', 'add', '10.44.0.0/24', 'via', '10.43.0.2');
    for (const net of ['10.41.0.0/24', '10.42.0.0/24']) exec(M3, 'ip', 'route', 'add', net, 'via', '10.43.0.1');
    exec(S, 'ip', 'route', 'add', 'default', 'via', '10.44.0.1');
    if (has('ethtool')) {
      for (const [ns, d] of [[C, 'c0'], [M1, 'a1'], [M1, 'b1'], [M2, 'a2'], [M2, 'b2'], [M3, 'a3'], [M3, 'b3'], [S, 's0']] as const) {
        exec(ns, 'ethtool', '-K', d, 'tso', 'off', 'gso', 'off', 'gro', 'off');
      }
    }
    const base = { lossPercent: 0, delayMs: BASE_ONE_WAY_MS, jitterMs: JITTER_MS, preciseTimers: true };
    bridges.push(await startImpairBridge(M1, `${p}t1`, ['a1', 'b1'], { ...base, seed: 11 }));
    bridges.push(await startImpairBridge(M2, `${p}t2`, ['a2', 'b2'], { ...base, seed: 22 }));
    bridges.push(await startImpairBridge(M3, `${p}t3`, ['a3', 'b3'], { ...base, seed: 33 }));
    writeFileSync(join(dir, 'echo.cjs'), echoScript(7000));
    writeFileSync(join(dir, 'pinger.cjs'), pingerScript('10.44.0.2', 7000));
    const srv = spawnIn(S, process.execPath, [join(dir, 'echo.cjs')]);
    await waitOutput(srv, /ready/);
  });

  afterAll(() => {
    for (const b of bridges) b.close();
    cleanupAll();
    if (dir && !process.env.MTUN_KEEP_CAPTURES) rmSync(dir, { recursive: true, force: true });
  });

  /** Runs the ping-pong with both observation points captured; returns the two ends' records and the capture files. */
  async function run(tag: string, rounds: number): Promise<{ agent: FlowRecord; gateway: FlowRecord; files: [string, string] }> {
    const files: [string, string] = [join(dir, `${tag}-agent.pcap`), join(dir, `${tag}-gateway.pcap`)];
    const dumps = files.map((f, i) => {
      const td = spawnIn(M2, 'tcpdump', ['-i', i === 0 ? 'a2' : 'b2', '--immediate-mode', '-U', '-s', '0', '-Z', 'root', '-w', f, 'tcp port 7000']);
      return { td, ready: waitOutput(td, /listening on/) };
    });
    for (const d of dumps) await d.ready;
    const r = await execAsync(C, process.execPath, [join(dir, 'pinger.cjs'), String(rounds)], 60_000);
    expect(r.stdout, r.stderr).toContain(`done ${rounds}`);
    await sleep(300);
    for (const f of files) {
      let size = -1;
      for (let i = 0, still = 0; i < 50 && still < 2; i++) { await sleep(100); const now = statSync(f).size; still = now === size ? still + 1 : 0; size = now; }
    }
    for (const d of dumps) { const done = new Promise((res) => d.td.once('exit', res)); d.td.kill('SIGINT'); await done; }
    const [a, g] = files.map((f) => {
      const flows = inspectCapture(f).flows.filter((x) => x.record.proto === 'tcp');
      expect(flows).toHaveLength(1);
      return flows[0]!.record;
    }) as [FlowRecord, FlowRecord];
    return { agent: a, gateway: g, files };
  }

  it(`each segment's RTT is within ±10 % of its configured delay plus the measured base, and agrees with tshark's ack_rtt`, async () => {
    const base = await run('base', BASE_ROUNDS);
    const b = splitRtt(base.agent, base.gateway);
    for (const [br, ms] of [[bridges[0]!, CLIENT_MS], [bridges[1]!, TUNNEL_MS], [bridges[2]!, SERVER_MS]] as const) br.impairer.configure({ delayMs: ms / 2 });
    const d = await run('delayed', ROUNDS);
    const s = splitRtt(d.agent, d.gateway);
    const report = {
      base: b, delayed: s,
      agent: { flowId: d.agent.flowId, rttToClient: d.agent.rttToClient, rttToServer: d.agent.rttToServer },
      gateway: { flowId: d.gateway.flowId, rttToClient: d.gateway.rttToClient, rttToServer: d.gateway.rttToServer },
    };
    console.log(JSON.stringify(report, null, 1));

    // Both observation points compute the same flow ID.
    expect(d.agent.flowId).toBe(d.gateway.flowId);
    expect(d.agent.rttToClient!.samples).toBeGreaterThan(ROUNDS / 2);
    expect(d.gateway.rttToServer!.samples).toBeGreaterThan(ROUNDS / 2);
    for (const [name, seg, baseSeg, ms] of [
      ['client', s.client, b.client, CLIENT_MS], ['tunnel', s.tunnel, b.tunnel, TUNNEL_MS], ['server', s.server, b.server, SERVER_MS],
    ] as const) {
      const measuredBase = baseSeg!.minMs - 2 * BASE_ONE_WAY_MS;
      const want = ms + measuredBase;
      const msg = `${name}: min ${seg!.minMs} ms (smoothed ${seg!.smoothedMs}) vs ${ms} + base ${measuredBase.toFixed(3)}`;
      console.log(msg);
      expect(Math.abs(seg!.minMs - want), msg).toBeLessThanOrEqual(want * 0.1);
    }

    // tshark's independent per-ACK RTTs on the same captures, smoothed the same way.
    const clientPort = d.agent.srcPort;
    for (const [file, rec] of [[d.files[0], d.agent], [d.files[1], d.gateway]] as const) {
      const ts = tsharkAckRtt(file, clientPort);
      const lines: string[] = [];
      for (const [dir2, ours, theirs] of [['toClient', rec.rttToClient!, ts.toClient], ['toServer', rec.rttToServer!, ts.toServer]] as const) {
        lines.push(`${file.split('/').pop()} ${dir2}: ours min/smoothed/max ${ours.minMs}/${ours.smoothedMs}/${ours.maxMs} (${ours.samples}) ` +
          `tshark min/smoothed/median/max ${Math.min(...theirs).toFixed(3)}/${smooth(theirs).toFixed(3)}/${median(theirs).toFixed(3)}/${Math.max(...theirs).toFixed(3)} (${theirs.length})`);
        // Same segments timed (data and FIN, none retransmitted here): same count, same minimum, same smoothing.
        expect(ours.samples, lines.at(-1)).toBe(theirs.length);
        expect(Math.abs(ours.minMs - Math.min(...theirs)), lines.at(-1)).toBeLessThanOrEqual(0.002);
        expect(Math.abs(ours.smoothedMs - smooth(theirs)), lines.at(-1)).toBeLessThanOrEqual(smooth(theirs) * 0.01);
      }
      console.log(lines.join('\n'));
    }
  }, 120_000);
});
