/**
 * `mtun status`: reads /status from a running daemon's admin endpoint and
 * prints its sessions, addresses and top flows (or the raw JSON).
 */
import { Command } from 'commander';
import type { DaemonStatus, StatusFlow, StatusSession } from '../telemetry/status.js';
import { adminOption, adminUrl, fetchJson } from './admin-client.js';

/** Builds the `status` subcommand. Exit codes: 0 printed, 1 daemon unreachable or bad answer, 2 bad arguments. */
export function statusCommand(): Command {
  return new Command('status')
    .description("show a running daemon's tunnel sessions, addresses and top flows (read from its admin endpoint)")
    .addOption(adminOption())
    .option('--json', 'print the raw /status JSON', false)
    .addHelpText('after', `
Examples:
  mtun status                                  # the gateway on this host
  mtun status --admin http://127.0.0.1:9091    # the agent
  mtun status --json | jq .sessions`)
    .exitOverride()
    .showHelpAfterError()
    .action(async function (this: Command, opts: { admin: string; json: boolean }) {
      const url = adminUrl(opts.admin, '/status');
      if (typeof url === 'string') this.error(`error: ${url}`, { exitCode: 2, code: 'mtun.badArgs' });
      const r = await fetchStatus(url);
      if (typeof r === 'string') {
        process.stderr.write(`mtun status: ${r}\n`);
        process.exitCode = 1;
        return;
      }
      process.stdout.write(opts.json ? `${JSON.stringify(r.raw, null, 2)}\n` : renderStatus(r.status));
    });
}

/**
 * Fetches and shape-checks `/status`; returns an error sentence on failure.
 */
export async function fetchStatus(url: URL): Promise<{ raw: unknown; status: DaemonStatus } | string> {
  const r = await fetchJson<DaemonStatus>(url, checkStatus);
  return typeof r === 'string' ? r : { raw: r.raw, status: r.doc };
}

function checkStatus(v: unknown): string | null {
  if (typeof v !== 'object' || v === null) return 'not an object';
  const o = v as Record<string, unknown>;
  for (const k of ['sessions', 'addresses', 'topFlows']) if (!Array.isArray(o[k])) return `"${k}" is not a list`;
  if (typeof o.reporter !== 'string') return '"reporter" is missing';
  return null;
}

/** Renders a status document as text tables. */
export function renderStatus(s: DaemonStatus): string {
  const out: string[] = [];
  out.push(`mtun ${s.reporter} ${s.version}  up ${duration(s.uptimeSeconds * 1000)}  ${s.ready ? 'ready' : 'NOT READY'}`);
  out.push('');
  out.push(`Addresses (${s.addresses.length})`);
  out.push(table(['INTERFACE', 'ADDRESS'], s.addresses.map((a) => [a.interface, a.address])));
  out.push('');
  out.push(`Sessions (${s.sessions.length})`);
  out.push(table(['ID', 'KIND', 'PEER IDENTITY', 'REMOTE', 'STATE', 'ADDRESSES', 'ROUTES', 'SENT', 'RECEIVED', 'SINCE'],
    s.sessions.map((x: StatusSession) => [x.id, x.transport ? `${x.kind}/${x.transport}` : x.kind, x.peerIdentity, x.remote, x.state, x.addresses.join(',') || '-', x.routes.join(',') || '-', bytes(x.sentBytes), bytes(x.receivedBytes), x.since])));
  out.push('');
  out.push(`Top flows (${s.topFlows.length})`);
  out.push(table(['PROTO', 'SOURCE', 'DESTINATION', 'DIR', 'PEER IDENTITY', 'SENT', 'RECEIVED', 'AGE', 'IDLE'],
    s.topFlows.map((f: StatusFlow) => [f.protocol, f.src, f.dst, f.direction, f.peerIdentity, bytes(f.sentBytes), bytes(f.receivedBytes), duration(f.durationMs), duration(f.idleMs)])));
  return out.join('\n') + '\n';
}

function table(head: string[], rows: string[][]): string {
  if (rows.length === 0) return '  (none)';
  const cells = [head, ...rows.map((r) => r.map((c) => String(c ?? '')))];
  const widths = head.map((_, i) => Math.max(...cells.map((r) => r[i]!.length)));
  return cells.map((r) => '  ' + r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ')).join('\n');
}

/** Human-readable bytes, binary units (1.5 MiB). */
export function bytes(n: number): string {
  if (!Number.isFinite(n)) return '?';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) { v /= 1024; u++; }
  return u === 0 ? `${v} B` : `${v.toFixed(1)} ${units[u]}`;
}

/** Human-readable duration: 850ms, 12s, 3m04s, 2h05m, 3d04h. */
export function duration(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) return '?';
  if (ms < 1000) return `${Math.round(ms)}ms`;
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h${String(Math.floor(s / 60) % 60).padStart(2, '0')}m`;
  return `${Math.floor(s / 86400)}d${String(Math.floor(s / 3600) % 24).padStart(2, '0')}h`;
}
