/**
 * The lab with the sendmmsg fault shim (fixtures/sendmmsg-faults.c)
 * preloaded, a download and an upload through it, and a reader of
 * one Prometheus sample: what the netns tests that preload the shim into both
 * daemons share (gso-refused, send-eagain).
 */
import { expect } from 'vitest';
import { buildSendmmsgShim } from './fixtures/sendmmsg-shim.js';
import { LAB, Lab } from '../../src/lab/lab.js';
import { iperf, type IperfResult } from './iperf.js';


/** The value of one sample of `name` with all of `labels` in a Prometheus text exposition, 0 when absent. */
export function sample(text: string, name: string, labels: Record<string, string>): number {
  for (const line of text.split('\n')) {
    if (!line.startsWith(name + '{')) continue;
    if (Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) return Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return 0;
}

/**
 * The lab (servers, gateway, agent) with the shim preloaded into both
 * daemons, `env` choosing its faults, `opts` the lab's own (the gateway's
 * TUN thread); `down` tears the lab down and removes
 * the shim.
 */
export async function labWithShim(prefix: string, env: Record<string, string>, opts: { gatewayTunThread?: boolean } = {}): Promise<{ lab: Lab; down: () => Promise<void> }> {
  const shim = buildSendmmsgShim();
  let lab: Lab | undefined;
  const down = async (): Promise<void> => {
    await lab?.down(process.env.MTUN_KEEP_LAB === '1');
    shim.dispose();
  };
  try {
    lab = await Lab.up({ prefix, daemonEnv: { LD_PRELOAD: shim.path, ...env }, ...opts });
    await lab.startServers();
    await lab.startGateway();
    await lab.startAgent('agent');
    return { lab, down };
  } catch (e) {
    await down();
    throw e;
  }
}

/** Once the tunnel answers a ping: a 3 s iperf3 download, then a 3 s upload, each checked for success; and both daemons' metrics. */
export async function downloadAndUpload(l: Lab): Promise<{ down: IperfResult; up: IperfResult; gw: string; agent: string }> {
  await l.waitFor(async () => (await l.exec('client', 'ping', ['-c', '1', '-W', '1', LAB.server.v4])).code === 0, 30_000, 'the tunnel');
  const down = await iperf(l, 'client', ['-c', LAB.server.v4, '-R', '-t', '3']);
  const up = await iperf(l, 'client', ['-c', LAB.server.v4, '-t', '3']);
  expect(down.code, `iperf3 -R: ${down.stderr}`).toBe(0);
  expect(up.code, `iperf3: ${up.stderr}`).toBe(0);
  return { down, up, gw: await l.metrics('gw'), agent: await l.metrics('agent') };
}
