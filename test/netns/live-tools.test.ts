/**
 * The live tools against real daemons with real traffic, in the namespaces
 * of topology.sh: `mtun capture` at both ends (tshark decodes it, `mtun
 * inspect` reads back the same flow records the daemons logged) and `mtun
 * top` in a real pseudo-terminal (tmux), driven by keys and read from the
 * screen as a person would.
 *
 *   client 10.10.0.2 ── agent ══ QUIC/UDP 192.0.2.1 → 192.0.2.2 ══ gateway ── server 10.20.0.2
 *                        └ admin 127.0.0.1:9091 (in the agent's namespace)   └ admin 127.0.0.1:9090
 */
import { execFile, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LAB, Lab, REPO_ROOT, type FlowLogLine, type Role } from '../../src/lab/lab.js';

const root = process.getuid?.() === 0;
if (!root) console.warn('SKIPPED test/netns/live-tools.test.ts: needs root (network namespaces, TUN devices)');

const MTUN = join(REPO_ROOT, 'bin', 'mtun.js');
const TMUX_SOCKET = `mtunlt${process.pid}`;

function sh(cmd: string, args: string[], timeoutMs = 10_000): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((res) => {
    execFile(cmd, args, { timeout: timeoutMs, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      res({ code: err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as unknown as { code: number }).code : 1) : 0, stdout: String(stdout), stderr: String(stderr) });
    });
  });
}

const tmux = (...args: string[]) => sh('tmux', ['-L', TMUX_SOCKET, ...args]);
const screen = async (): Promise<string> => (await tmux('capture-pane', '-p', '-t', 'top')).stdout;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls the tmux screen until `check` holds; returns that screen. */
async function waitScreen(check: (s: string) => boolean, what: string, timeoutMs = 10_000): Promise<string> {
  const end = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < end) {
    last = await screen();
    if (check(last)) return last;
    await sleep(150);
  }
  throw new Error(`top: timed out waiting for ${what}; screen was:\n${last}`);
}

/** The screen row of the flow whose source port is `port`, or -1. */
function rowOf(s: string, port: number): number {
  return s.split('\n').findIndex((l) => l.includes(`${LAB.client.v4}:${port} `));
}

describe.skipIf(!root)('live tools: mtun capture and mtun top against running daemons (netns)', () => {
  let lab: Lab;

  beforeAll(async () => {
    lab = await Lab.up({ prefix: `mlt${process.pid % 10000}` });
    // Capture is off by default: enable it at both ends (loopback callers only, the default).
    // The gateway's admin port is also on its WAN address (as for a Prometheus scrape): capture must still refuse remote callers.
    for (const f of ['agent.yaml', 'gateway.yaml']) {
      const y = readFileSync(lab.file(f), 'utf8').replace('listen: 127.0.0.1:9090', 'listen: 0.0.0.0:9090');
      writeFileSync(lab.file(f), y.replace(/^admin:\n  listen: (.*)\n/m, 'admin:\n  listen: $1\n  capture:\n    enabled: true\n'));
    }
    writeFileSync(lab.file('blob.bin'), randomBytes(32 * 1024 * 1024));
    writeFileSync(lab.file('small.bin'), randomBytes(300 * 1024));
    await lab.startServers();
    await lab.startGateway();
    await lab.startAgent('agent');
  }, 90_000);

  afterAll(async () => {
    await tmux('kill-server');
    // The server is gone; its socket file stays behind unless removed.
    rmSync(join(process.env.TMUX_TMPDIR ?? '/tmp', `tmux-${process.getuid?.()}`, TMUX_SOCKET), { force: true });
    await lab?.down();
  }, 30_000);

  const captureAt = (role: Role, port: number, file: string, args: string[]): ChildProcess =>
    lab.spawn(role, `capture-${role}`, process.execPath, [MTUN, 'capture', '--admin', `127.0.0.1:${port}`, '-w', lab.file(file), ...args]);

  const captureActive = async (role: Role, port: number) => {
    const r = await lab.admin(role, port, '/flows');
    return r.code === 0 && (JSON.parse(r.stdout) as { capture: { active: boolean } }).capture.active;
  };

  it('mtun capture at both ends: tshark decodes the pcapng, and mtun inspect reads back the flow records each daemon logged', async () => {
    // Long enough for the download on a loaded box; the flow must be complete inside the capture (checked below).
    const agentCap = captureAt('agent', LAB.agentAdmin, 'agent.pcapng', ['--port', '80', '--seconds', '20']);
    const gwCap = captureAt('gw', LAB.gatewayAdmin, 'gateway.pcapng', ['--proto', 'tcp', '--prefix', '10.20.0.0/24', '--seconds', '20']);
    await lab.waitFor(async () => (await captureActive('agent', LAB.agentAdmin)) && (await captureActive('gw', LAB.gatewayAdmin)), 10_000, 'captures running');
    const dl = await lab.exec('client', 'curl', ['-sf', '--max-time', '20', '-o', '/dev/null', '-w', '%{local_port}', `http://${LAB.server.v4}/files/small.bin`]);
    expect(dl.code).toBe(0);
    const port = Number(dl.stdout.trim());
    // Both daemons have closed the flow while the captures still run.
    for (const log of ['agent', 'gateway'] as const) {
      await lab.waitFor(() => lab.flowLog(log).some((l) => l.event === 'flow_close' && l.src_port === port), 10_000, `${log} flow record`);
    }
    expect(agentCap.exitCode, 'the capture outlived the flow').toBeNull();
    // Not in the filters: must not appear in either capture.
    expect((await lab.exec('client', 'ping', ['-c', '2', '-i', '0.2', '-W', '2', LAB.server.v4])).code).toBe(0);
    const exited = (p: ChildProcess) => new Promise<number | null>((r) => (p.exitCode !== null ? r(p.exitCode) : p.once('exit', (c) => r(c))));
    expect(await exited(agentCap)).toBe(0);
    expect(await exited(gwCap)).toBe(0);
    for (const [end, file, log] of [['agent', 'agent.pcapng', 'agent'], ['gateway', 'gateway.pcapng', 'gateway']] as const) {
      const summary = readFileSync(lab.file(`capture-${end === 'gateway' ? 'gw' : 'agent'}.log`), 'utf8');
      expect(summary, `${end} capture summary`).toMatch(/; 0 dropped by the daemon/);
      // tshark decodes every packet, on both interfaces of this end.
      const t = await sh('tshark', ['-r', lab.file(file), '-T', 'fields', '-e', 'frame.interface_name', '-e', 'ip.proto', '-e', 'tcp.srcport', '-e', 'tcp.dstport'], 30_000);
      expect(t.code, t.stderr).toBe(0);
      const rows = t.stdout.trim().split('\n').map((l) => l.split('\t'));
      expect(rows.length).toBeGreaterThan(10);
      expect(new Set(rows.map((r) => r[0]))).toEqual(new Set([`${end}:tun-in`, `${end}:tun-out`]));
      expect(rows.every((r) => r[1] === '6'), 'only TCP (no ICMP from the ping)').toBe(true);
      // The client's packets entered the tunnel at the agent and left it at the gateway.
      const fromClient = rows.filter((r) => r[2] === String(port)).map((r) => r[0]);
      expect(new Set(fromClient)).toEqual(new Set([end === 'agent' ? 'agent:tun-in' : 'gateway:tun-out']));
      // mtun inspect over the capture gives the record the daemon logged for the same flow.
      const ins = await sh(process.execPath, [MTUN, 'inspect', '--json', lab.file(file)], 30_000);
      expect(ins.code, ins.stderr).toBe(0);
      const rec = ins.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>).find((r) => r.srcPort === port)!;
      let logged: FlowLogLine | undefined;
      await lab.waitFor(() => (logged = lab.flowLog(log).find((l) => l.event === 'flow_close' && l.src_port === port)) !== undefined, 10_000, `${end} flow record`);
      const l = logged!;
      expect({ sent: rec.bytesSent, received: rec.bytesReceived, sentPackets: rec.packetsSent, receivedPackets: rec.packetsReceived, retransmits: rec.retransmits, reason: rec.closeReason, rtt: rec.handshakeRttMs, src: rec.src, dst: rec.dst },
        `${end}: mtun inspect of the capture vs the daemon's flow log`)
        .toEqual({ sent: l.sent_bytes, received: l.received_bytes, sentPackets: l.sent_packets, receivedPackets: l.received_packets, retransmits: l.retransmits, reason: l.close_reason, rtt: l.handshake_rtt_ms, src: l.src_addr, dst: l.dst_addr });
      expect(rec.bytesReceived).toBeGreaterThan(300 * 1024);
    }
  }, 120_000);

  it('capture is served to loopback callers only, even with the admin port on a routable address', async () => {
    const remote = (path: string) => lab.exec('agent', 'curl', ['-s', '--max-time', '5', '-w', '\n%{http_code}', `http://${LAB.gatewayWan.v4}:${LAB.gatewayAdmin}${path}`]);
    const metrics = await remote('/metrics');
    expect(metrics.stdout.trim().split('\n').pop()).toBe('200');
    const cap = await remote('/capture?packets=1');
    expect(cap.stdout).toContain(`capture is served to loopback callers only, not ${LAB.gatewayWan.v4.replace(/2$/, '1')}`);
    expect(cap.stdout.trim().split('\n').pop()).toBe('403');
    expect(await captureActive('gw', LAB.gatewayAdmin)).toBe(false);
    // The same request from the gateway's own loopback is served.
    const local = await lab.exec('gw', 'curl', ['-s', '--max-time', '5', '-o', '/dev/null', '-w', '%{http_code}', `http://127.0.0.1:${LAB.gatewayAdmin}/capture?seconds=1`]);
    expect(local.stdout).toBe('200');
  }, 30_000);

  it('mtun top in a real terminal (tmux): flows by rate, identity, closed flows with their reason; keys sort, filter, pause, quit', async () => {
    // One finished flow (closed with FIN), then two slow uploads: A first and slower, B later and faster.
    const done = await lab.exec('client', 'curl', ['-sf', '--max-time', '20', '-o', '/dev/null', '-w', '%{local_port}', `http://${LAB.server.v4}/files/small.bin`]);
    const finPort = Number(done.stdout.trim());
    // Uploads: curl's --limit-rate paces what it writes, so the tunnel sees a steady rate (a paced download
    // would not: the receiver's socket buffer takes the whole body at once).
    const curlA = lab.spawn('client', 'curl-a', 'curl', ['-s', '--limit-rate', '40K', '-o', '/dev/null', '-T', lab.file('blob.bin'), `http://${LAB.server.v4}/upload`]);
    await sleep(1500);
    const curlB = lab.spawn('client', 'curl-b', 'curl', ['-s', '--limit-rate', '400K', '-o', '/dev/null', '-T', lab.file('blob.bin'), `http://${LAB.server.v4}/upload`]);
    try {
      const cmd = `ip netns exec ${lab.ns('agent')} ${process.execPath} ${MTUN} top --admin 127.0.0.1:${LAB.agentAdmin} --interval-ms 500`;
      expect((await tmux('new-session', '-d', '-s', 'top', '-x', '200', '-y', '30', cmd)).code).toBe(0);
      // Two open downloads with a rate, and the finished flow.
      const openRows = (x: string) => x.split('\n').filter((l) => l.includes(`${LAB.server.v4}:80 `) && / open$/.test(l)).length;
      let s = await waitScreen((x) => x.includes('mtun top — agent') && openRows(x) === 2 && rowOf(x, finPort) > 0 && /KiB\/s/.test(x), 'two open uploads and the finished flow');
      // Which is which: A is the older one (sort by age puts it first).
      await tmux('send-keys', '-t', 'top', 'a');
      s = await waitScreen((x) => x.includes('sort: age'), 'sort by age');
      const byAge = s.split('\n').filter((l) => / open$/.test(l) && l.includes(`${LAB.server.v4}:80 `)).map((l) => Number(/10\.10\.0\.2:(\d+)/.exec(l)![1]));
      const [a, b] = byAge as [number, number];
      // By rate the faster B comes first (rates settle after two ticks).
      await tmux('send-keys', '-t', 'top', 'r');
      s = await waitScreen((x) => x.includes('sort: rate') && rowOf(x, b) >= 0 && rowOf(x, b) < rowOf(x, a), 'B above A by rate');
      const rowB = s.split('\n')[rowOf(s, b)]!;
      expect(rowB).toContain('gateway'); // the agent's peer identity: the gateway's name
      expect(rowB).toMatch(/\d+\.\d [KM]iB\/s/);
      // The finished flow: listed after the open ones, with its close reason.
      const finRow = s.split('\n')[rowOf(s, finPort)]!;
      expect(finRow).toMatch(/\bfin\s*$/);
      expect(rowOf(s, finPort)).toBeGreaterThan(rowOf(s, a));
      // Its RTT column is the client / tunnel / server split the agent logged for it (smoothed ms; the tunnel is
      // QUIC's RTT of the session, the server segment what lies beyond the tunnel minus it).
      const finLog = lab.flowLog('agent').find((l) => l.event === 'flow_close' && l.src_port === finPort)!;
      const split = finLog.rtt_split as Record<'client' | 'tunnel' | 'server', { smoothed_ms: number }>;
      const wantRtt = [split.client, split.tunnel, split.server].map((x) => x.smoothed_ms.toFixed(1)).join('/');
      expect(finRow).toMatch(new RegExp(` ${wantRtt.replace(/\./g, '\\.')} `));
      // Open flows show the split too (three numbers), and the header the peer's tunnel RTT.
      expect(rowB).toMatch(/ \d+\.\d\/\d+\.\d\/\d+\.\d /);
      expect(s).toMatch(/^drops: .*tunnel rtt: gateway=\d+\.\dms/m);
      expect(s).toMatch(/^drops: /m);
      // Filter by port: only A is left; Esc clears it.
      await tmux('send-keys', '-t', 'top', '/');
      await waitScreen((x) => x.includes('filter: /'), 'filter prompt');
      await tmux('send-keys', '-t', 'top', '-l', `:${a}`);
      await tmux('send-keys', '-t', 'top', 'Enter');
      s = await waitScreen((x) => x.includes(`filter: :${a}`) && x.includes('showing 1 of'), 'filtered to A');
      expect(rowOf(s, a)).toBeGreaterThan(0);
      expect(rowOf(s, b)).toBe(-1);
      // A bad filter is reported on screen and the old one stays.
      await tmux('send-keys', '-t', 'top', '/');
      await tmux('send-keys', '-t', 'top', '-l', '10.0.0.0/99');
      await tmux('send-keys', '-t', 'top', 'Enter');
      s = await waitScreen((x) => x.includes('! filter: expected a prefix length'), 'bad filter message');
      expect(s).toContain(`filter: :${a}`);
      await tmux('send-keys', '-t', 'top', 'Escape');
      s = await waitScreen((x) => x.includes('filter: none') && rowOf(x, b) >= 0, 'filter cleared');
      // Filter by prefix of the server and by identity substring keep both downloads.
      await tmux('send-keys', '-t', 'top', '/');
      await tmux('send-keys', '-t', 'top', '-l', 'id:gate');
      await tmux('send-keys', '-t', 'top', 'Enter');
      s = await waitScreen((x) => x.includes('filter: id:gate'), 'identity filter');
      expect(rowOf(s, a) > 0 && rowOf(s, b) > 0).toBe(true);
      await tmux('send-keys', '-t', 'top', 'Escape');
      // Pause: the screen stops changing (the clock in the first line freezes).
      await tmux('send-keys', '-t', 'top', 'p');
      const paused = await waitScreen((x) => x.includes('[PAUSED]'), 'paused');
      await sleep(1500);
      expect((await screen()).split('\n')[0]).toBe(paused.split('\n')[0]);
      await tmux('send-keys', '-t', 'top', 'p');
      await waitScreen((x) => !x.includes('[PAUSED]') && x.split('\n')[0] !== paused.split('\n')[0], 'resumed');
      // q quits: the program exits and tmux closes its session.
      await tmux('send-keys', '-t', 'top', 'q');
      await lab.waitFor(async () => (await tmux('has-session', '-t', 'top')).code !== 0, 5_000, 'top exits on q');

      // The same for scripts: B moves at curl's --limit-rate 400K.
      type Doc = { reporter: string; flows: { srcPort: number; state: string; sentBytesPerSec: number; peerIdentity: string; sentBytes: number;
        rttToClient: { samples: number } | null; rttTunnel: { samples: number } | null; rtt: { client: number | null; tunnel: number | null; server: number | null } | null }[] };
      const once = async (): Promise<Doc> => {
        const r = await lab.exec('agent', process.execPath, [MTUN, 'top', '--once', '--json', '--admin', `127.0.0.1:${LAB.agentAdmin}`, '--filter', `:${b}`]);
        expect(r.code, r.stderr).toBe(0);
        return JSON.parse(r.stdout) as Doc;
      };
      const doc = await once();
      expect(doc.reporter).toBe('agent');
      expect(doc.flows.map((f) => f.srcPort)).toEqual([b]);
      expect(doc.flows[0]!).toMatchObject({ state: 'open', peerIdentity: 'gateway' });
      expect(doc.flows[0]!.rttToClient!.samples).toBeGreaterThan(0);
      expect(doc.flows[0]!.rttTunnel!.samples).toBeGreaterThan(0);
      expect(Object.values(doc.flows[0]!.rtt!).every((v) => typeof v === 'number')).toBe(true);
      // The rate shown is what moves: the mean of the rates sampled over 4 s agrees with the bytes moved in
      // those 4 s (the box is loaded: within a factor of 2), and with curl's limit.
      const first = doc.flows[0]!;
      const t0 = Date.now();
      const rates: number[] = [];
      while (Date.now() - t0 < 4000) {
        rates.push((await once()).flows[0]!.sentBytesPerSec);
        await sleep(400);
      }
      const last = (await once()).flows[0]!;
      const moved = ((last.sentBytes - first.sentBytes) * 1000) / (Date.now() - t0);
      const mean = rates.reduce((x, y) => x + y, 0) / rates.length;
      expect(moved, JSON.stringify(rates)).toBeGreaterThan(50 * 1024);
      expect(mean, JSON.stringify(rates)).toBeGreaterThan(moved / 2);
      expect(mean, JSON.stringify(rates)).toBeLessThan(moved * 2);
      expect(mean, JSON.stringify(rates)).toBeLessThan(2 * 400 * 1024);
    } finally {
      curlA.kill('SIGKILL');
      curlB.kill('SIGKILL');
    }
  }, 90_000);
});
