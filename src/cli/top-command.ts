/**
 * `mtun top`: a live terminal view of a running daemon's flows, read from
 * its admin `/flows` endpoint every interval, in the habit of top/iftop
 * (keys to sort, filter, pause, quit); `--once [--json]` for scripts.
 */
import { Command, Option } from 'commander';
import type { LiveFlowsDocument } from '../telemetry/live-flows.js';
import { adminOption, adminUrl, fetchJson } from './admin-client.js';
import { DEFAULT_FLOWS_LIMIT, MAX_FLOWS_LIMIT, parseFlowFilter as parseTopFilter, SORT_KEYS, type SortKey } from '../telemetry/flow-query.js';
import { KEYS_HELP, renderTop, visibleFlows, type TopState } from './top-view.js';

const MIN_INTERVAL_MS = 200;
const ESC = '\x1b';

/** `/flows` with the viewer's sort and filter, and at most `limit` flows (the daemon filters, sorts and cuts). */
function flowsUrl(base: URL, state: TopState, limit: number): URL {
  const u = new URL(base);
  u.searchParams.set('sort', state.sort);
  if (state.filter !== null) u.searchParams.set('filter', state.filter.text);
  u.searchParams.set('limit', String(Math.max(1, Math.min(MAX_FLOWS_LIMIT, limit))));
  return u;
}

/** Checks the shape of a `/flows` document; null when it is one. */
export function checkFlows(v: unknown): string | null {
  if (typeof v !== 'object' || v === null) return 'not an object';
  const o = v as Record<string, unknown>;
  if (!Array.isArray(o.flows)) return '"flows" is not a list';
  if (typeof o.totals !== 'object' || o.totals === null) return '"totals" is missing';
  if (typeof o.drops !== 'object' || o.drops === null) return '"drops" is missing';
  if (typeof o.reporter !== 'string') return '"reporter" is missing';
  if (typeof o.matchedFlows !== 'number' || typeof o.totalFlows !== 'number') return '"matchedFlows" / "totalFlows" are missing';
  return null;
}

interface TopOptions {
  admin: string;
  once: boolean;
  json: boolean;
  sort: SortKey;
  filter?: string;
  intervalMs: string;
  limit?: string;
}

/** Builds the `top` subcommand. Exit codes: 0 ok, 1 daemon unreachable or bad answer, 2 bad arguments. */
export function topCommand(): Command {
  return new Command('top')
    .description("live view of a running daemon's flows (rate, identity, SNI, RTT, close reason), totals and drops, from its admin endpoint")
    .addOption(adminOption())
    .option('--once', 'print one snapshot and exit', false)
    .option('--json', 'with --once: print the /flows document (filtered and sorted) as JSON', false)
    .addOption(new Option('--sort <key>', 'sort flows by').choices(SORT_KEYS).default('rate'))
    .option('--filter <expr>', 'show only flows matching: an address or prefix (10.0.0.0/8), a port (:443), or an identity substring (id:cluster-a)')
    .addOption(new Option('--interval-ms <ms>', `refresh interval (at least ${MIN_INTERVAL_MS})`).default('1000'))
    .option('--limit <n>', `with --once: at most n flows (default ${DEFAULT_FLOWS_LIMIT}, at most ${MAX_FLOWS_LIMIT})`)
    .addHelpText('after', `
Keys: ${KEYS_HELP}
Examples:
  mtun top --admin 127.0.0.1:9091                 # the agent on this host
  mtun top --once --sort bytes --filter :443
  mtun top --once --json | jq '.flows[] | select(.closeReason=="rst")'`)
    .exitOverride()
    .showHelpAfterError()
    .action(async function (this: Command, opts: TopOptions) {
      const bad = (msg: string): never => this.error(`error: ${msg}`, { exitCode: 2, code: 'mtun.badArgs' });
      const url = adminUrl(opts.admin, '/flows');
      if (typeof url === 'string') bad(url);
      const filter = parseTopFilter(opts.filter ?? '');
      if (typeof filter === 'string') bad(`--filter: ${filter}`);
      const intervalMs = Number(opts.intervalMs);
      if (!Number.isInteger(intervalMs) || intervalMs < MIN_INTERVAL_MS) bad(`--interval-ms must be an integer ≥ ${MIN_INTERVAL_MS}, got ${JSON.stringify(opts.intervalMs)}`);
      const limit = opts.limit === undefined ? Infinity : Number(opts.limit);
      if (opts.limit !== undefined && (!Number.isInteger(limit) || limit < 1 || limit > MAX_FLOWS_LIMIT)) bad(`--limit must be an integer 1-${MAX_FLOWS_LIMIT}, got ${JSON.stringify(opts.limit)}`);
      if (opts.json && !opts.once) bad('--json needs --once (the live view is for a terminal)');
      if (opts.limit !== undefined && !opts.once) bad('--limit needs --once (the live view shows what fits the terminal)');
      const state: TopState = { sort: opts.sort, filter: filter as TopState['filter'], paused: false, editing: null, message: null };
      if (opts.once) {
        const r = await fetchJson<LiveFlowsDocument>(flowsUrl(url as URL, state, limit === Infinity ? DEFAULT_FLOWS_LIMIT : limit), checkFlows);
        if (typeof r === 'string') {
          process.stderr.write(`mtun top: ${r}\n`);
          process.exitCode = 1;
          return;
        }
        const flows = visibleFlows(r.doc, state).slice(0, limit);
        if (opts.json) {
          process.stdout.write(`${JSON.stringify({ ...r.doc, flows }, null, 2)}\n`);
        } else {
          const lines = renderTop({ ...r.doc, flows }, state, 1000, flows.length + 7);
          process.stdout.write(`${lines.slice(0, -1).join('\n').trimEnd()}\n`);
        }
        return;
      }
      if (!process.stdout.isTTY || !process.stdin.isTTY) bad('the live view needs a terminal; use --once (and --json) in scripts');
      process.exitCode = await live(url as URL, state, intervalMs);
    });
}

/** The interactive loop; resolves with the exit code when the user quits. */
function live(url: URL, state: TopState, intervalMs: number): Promise<number> {
  const out = process.stdout;
  const input = process.stdin;
  let doc: LiveFlowsDocument | null = null;
  let timer: NodeJS.Timeout | null = null;
  let fetching = false;
  let stopped = false;

  const draw = (): void => {
    const cols = out.columns || 80;
    const rows = out.rows || 24;
    const lines = doc !== null ? renderTop(doc, state, cols, rows) : [`mtun top — connecting to ${url.origin}…${state.message ? `  ! ${state.message}` : ''}`];
    out.write(`${ESC}[H${lines.map((l) => `${l}${ESC}[K`).join('\r\n')}${ESC}[J`);
  };
  const refresh = async (): Promise<void> => {
    if (fetching || state.paused) return;
    fetching = true;
    const r = await fetchJson<LiveFlowsDocument>(flowsUrl(url, state, out.rows || 24), checkFlows);
    fetching = false;
    if (stopped) return;
    if (typeof r === 'string') state.message = r;
    else {
      doc = r.doc;
      if (state.message !== null && state.message.startsWith('http')) state.message = null;
    }
    draw();
  };

  return new Promise((resolve) => {
    const quit = (): void => {
      stopped = true;
      if (timer !== null) clearInterval(timer);
      input.off('data', onKey);
      out.off('resize', draw);
      input.setRawMode(false);
      input.pause();
      out.write(`${ESC}[?25h${ESC}[?1049l`);
      resolve(0);
    };
    const onKey = (buf: Buffer): void => {
      const k = buf.toString('utf8');
      if (state.editing !== null) {
        if (k === '\r' || k === '\n') {
          const f = parseTopFilter(state.editing);
          if (typeof f === 'string') state.message = `filter: ${f}`;
          else {
            state.filter = f;
            state.message = null;
            void refresh();
          }
          state.editing = null;
        } else if (k === ESC) state.editing = null;
        else if (k === '\x7f' || k === '\b') state.editing = state.editing.slice(0, -1);
        else if (k === '\x03') return quit();
        else if (/^[\x20-\x7e]+$/.test(k)) state.editing += k;
        draw();
        return;
      }
      switch (k) {
        case 'q': case 'Q': case '\x03': return quit();
        case 'r': state.sort = 'rate'; break;
        case 'b': state.sort = 'bytes'; break;
        case 't': state.sort = 'rtt'; break;
        case 'a': state.sort = 'age'; break;
        case 's': state.sort = SORT_KEYS[(SORT_KEYS.indexOf(state.sort) + 1) % SORT_KEYS.length]!; break;
        case '/': state.editing = ''; break;
        case ESC: state.filter = null; state.message = null; void refresh(); break;
        case 'p': case ' ':
          state.paused = !state.paused;
          if (!state.paused) void refresh();
          break;
        default: return;
      }
      if ('rbtas'.includes(k)) void refresh();
      draw();
    };
    out.write(`${ESC}[?1049h${ESC}[?25l`);
    input.setRawMode(true);
    input.resume();
    input.on('data', onKey);
    out.on('resize', draw);
    draw();
    void refresh();
    timer = setInterval(() => void refresh(), intervalMs);
  });
}
