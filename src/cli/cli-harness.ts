/**
 * Test harness for CLI commands: runs `mtun <args>` in-process through
 * {@link main} with stdout and stderr captured. For tests; one run at a time.
 */
import { main } from './main.js';

/** What one run printed and its exit code. */
export interface CliRun {
  readonly out: string;
  readonly err: string;
  readonly code: number;
}

/** Runs `mtun ...args`; stdout and stderr are captured (not printed) until it returns. */
export async function runCli(args: readonly string[]): Promise<CliRun> {
  let out = '';
  let err = '';
  const stdoutWrite = process.stdout.write;
  const stderrWrite = process.stderr.write;
  process.stdout.write = ((s: string | Uint8Array) => { out += String(s); return true; }) as typeof process.stdout.write;
  process.stderr.write = ((s: string | Uint8Array) => { err += String(s); return true; }) as typeof process.stderr.write;
  process.exitCode = undefined;
  try {
    await main(['node', 'mtun', ...args]);
  } finally {
    process.stdout.write = stdoutWrite;
    process.stderr.write = stderrWrite;
  }
  const code = Number(process.exitCode ?? 0);
  return { out, err, code };
}
