/**
 * The fuzz harness and the reliability campaign are built by their own
 * tsconfig (outside `npm run build`), so nothing else notices when a change
 * to src/ breaks them: `npm run fuzz` stopped compiling once already (an
 * option removed from the CONNECT-IP sessions). Typecheck both here.
 */
import { execFile } from 'node:child_process';
import { describe, expect, it } from 'vitest';

function tsc(project: string): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, ['node_modules/typescript/bin/tsc', '-p', project, '--noEmit'], { timeout: 110_000, maxBuffer: 8 << 20 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, out: `${stdout}${stderr}` });
    });
  });
}

describe('side builds typecheck', () => {
  it.each(['fuzz/tsconfig.json', 'bench/reliability/tsconfig.json'])('%s', async (project) => {
    const r = await tsc(project);
    expect(r.out.trim()).toBe('');
    expect(r.code).toBe(0);
  }, 120_000);
});
