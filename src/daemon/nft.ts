/**
 * Runs `nft` (nftables) in this process's namespace: the one place the
 * daemons spawn it (remote-access SNAT, the gateway's Initial limit).
 */
import { execFile } from 'node:child_process';

/**
 * `nft ARGS…`, with `script` on standard input when given (for `-f -`).
 * Resolves with its standard output; rejects with `<who>: nft failed: …`
 * (nft's own message when it gave one). Bounded to 10 s.
 */
export function runNft(args: readonly string[], script: string | null, who: 'agent' | 'gateway'): Promise<string> {
  return new Promise((resolve, reject) => {
    const p = execFile('nft', [...args], { timeout: 10_000 }, (err, out, stderr) => {
      if (err) reject(new Error(`${who}: nft failed: ${String(stderr).trim() || err.message}`));
      else resolve(String(out));
    });
    if (script !== null) p.stdin?.end(script);
  });
}
