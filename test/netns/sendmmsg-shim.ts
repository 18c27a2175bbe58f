/**
 * The sendmmsg fault shim (fixtures/sendmmsg-faults.c) built for a test, and
 * a reader of one Prometheus sample: what the netns tests that preload the
 * shim into both daemons share (gso-refused, send-eagain).
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const SHIM_SRC = join(dirname(fileURLToPath(import.meta.url)), 'fixtures', 'sendmmsg-faults.c');

/** Compiles the shim into a fresh temporary directory; `dispose` removes it. */
export function buildSendmmsgShim(): { path: string; dispose: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'mtun-shim-'));
  const path = join(dir, 'sendmmsg-faults.so');
  execFileSync('cc', ['-shared', '-fPIC', '-O2', '-o', path, SHIM_SRC, '-ldl']);
  return { path, dispose: () => rmSync(dir, { recursive: true, force: true }) };
}

/** The value of one sample of `name` with all of `labels` in a Prometheus text exposition, 0 when absent. */
export function sample(text: string, name: string, labels: Record<string, string>): number {
  for (const line of text.split('\n')) {
    if (!line.startsWith(name + '{')) continue;
    if (Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) return Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return 0;
}
