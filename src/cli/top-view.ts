/**
 * What `mtun top` shows, as pure functions of the daemon's `/flows`
 * document and the viewer's state (sort key, filter, pause): sorting,
 * filtering, and the screen as lines of at most the terminal's width.
 */
import { parseIp, parsePrefixOrReason, prefixHasAddress, type IpPrefix } from '../packet/ip-address.js';
import type { LiveFlow, LiveFlowsDocument } from '../telemetry/live-flows.js';
import { bytes, duration } from './status-command.js';

/** Sort orders, each descending. */
export const SORT_KEYS = ['rate', 'bytes', 'rtt', 'age'] as const;
export type SortKey = (typeof SORT_KEYS)[number];

/** A flow filter: an address prefix (either end), a port (either end), or a peer identity substring. */
export type TopFilter =
  | { readonly kind: 'prefix'; readonly text: string; readonly prefix: IpPrefix }
  | { readonly kind: 'port'; readonly text: string; readonly port: number }
  | { readonly kind: 'identity'; readonly text: string; readonly needle: string };

/**
 * Parses a filter: `10.0.0.0/8` or an address (prefix), `:443`, `443` or
 * `port:443` (port), `id:cluster-a` or any other text (identity
 * substring, case-insensitive). Empty text is no filter (null). Returns an
 * error sentence for a bad prefix or port.
 */
export function parseTopFilter(input: string): TopFilter | null | string {
  const text = input.trim();
  if (text === '') return null;
  const port = /^(?:port:|:)?(\d+)$/.exec(text);
  if (port !== null) {
    const n = Number(port[1]);
    return n >= 1 && n <= 65_535 ? { kind: 'port', text, port: n } : `port ${port[1]} is not 1-65535`;
  }
  if (text.startsWith('port:')) return `expected a port number after "port:", got ${JSON.stringify(text.slice(5))}`;
  const id = /^(?:id|identity):(.*)$/.exec(text);
  if (id !== null) return { kind: 'identity', text, needle: id[1]!.toLowerCase() };
  const pfx = text.startsWith('prefix:') ? text.slice(7) : text;
  const ip = pfx.includes('/') ? null : parseIp(pfx);
  if (ip !== null) return { kind: 'prefix', text, prefix: { version: ip.version, address: ip.address, prefixLength: ip.version === 4 ? 32 : 128 } };
  if (pfx.includes('/') || text.startsWith('prefix:')) {
    const p = parsePrefixOrReason(pfx);
    return typeof p === 'string' ? p : { kind: 'prefix', text, prefix: p };
  }
  return { kind: 'identity', text, needle: text.toLowerCase() };
}

/** Whether `f` passes filter `flt`. */
export function matchesFilter(flt: TopFilter | null, f: LiveFlow): boolean {
  if (flt === null) return true;
  switch (flt.kind) {
    case 'port':
      return f.srcPort === flt.port || f.dstPort === flt.port;
    case 'identity':
      return f.peerIdentity.toLowerCase().includes(flt.needle);
    case 'prefix':
      return [f.srcAddr, f.dstAddr].some((a) => {
        const ip = parseIp(a);
        return ip !== null && prefixHasAddress(flt.prefix, ip.address);
      });
  }
}

/** Milliseconds of one RTT segment as the inspector reports it: a number, or an object with a smoothed (else min) value. */
export function segmentMs(v: unknown): number | null {
  if (typeof v === 'number' && Number.isFinite(v)) return v;
  if (typeof v !== 'object' || v === null) return null;
  const o = v as Record<string, unknown>;
  for (const k of ['srttMs', 'smoothedMs', 'srtt', 'smoothed', 'avgMs', 'ms', 'minMs', 'min']) {
    if (typeof o[k] === 'number' && Number.isFinite(o[k])) return o[k] as number;
  }
  return null;
}

/** The latency split of a flow (client / tunnel / server segments), when the daemon reports one. */
export function rttSplit(f: LiveFlow): { client: number | null; tunnel: number | null; server: number | null } | null {
  if (typeof f.rtt !== 'object' || f.rtt === null) return null;
  const r = f.rtt as Record<string, unknown>;
  const s = { client: segmentMs(r.client), tunnel: segmentMs(r.tunnel), server: segmentMs(r.server) };
  return s.client === null && s.tunnel === null && s.server === null ? null : s;
}

/** One number to sort by RTT: the handshake RTT, else the sum of the reported segments. */
function rttKey(f: LiveFlow): number {
  if (f.handshakeRttMs !== null) return f.handshakeRttMs;
  const s = rttSplit(f);
  return s === null ? -1 : (s.client ?? 0) + (s.tunnel ?? 0) + (s.server ?? 0);
}

const rate = (f: LiveFlow): number => f.sentBytesPerSec + f.receivedBytesPerSec;
const total = (f: LiveFlow): number => f.sentBytes + f.receivedBytes;

/** Flows sorted by `key`, descending; open flows before closed ones, ties by total bytes. New array. */
export function sortFlows(flows: readonly LiveFlow[], key: SortKey): LiveFlow[] {
  const by: (f: LiveFlow) => number = key === 'rate' ? rate : key === 'bytes' ? total : key === 'rtt' ? rttKey : (f) => f.ageMs;
  return [...flows].sort((a, b) => {
    if (a.state !== b.state) return a.state === 'open' ? -1 : 1;
    return by(b) - by(a) || total(b) - total(a);
  });
}

/** The viewer's state. */
export interface TopState {
  sort: SortKey;
  filter: TopFilter | null;
  paused: boolean;
  /** Text of a filter being typed (after "/"), or null. */
  editing: string | null;
  /** A one-line message (bad filter, fetch error), or null. */
  message: string | null;
}

/** The flows to show, filtered and sorted. */
export function visibleFlows(doc: LiveFlowsDocument, state: Pick<TopState, 'sort' | 'filter'>): LiveFlow[] {
  return sortFlows(doc.flows.filter((f) => matchesFilter(state.filter, f)), state.sort);
}

function perSec(n: number): string {
  return `${bytes(Math.round(n))}/s`;
}

function fit(s: string, w: number, fromLeft = false): string {
  if (s.length <= w) return s.padEnd(w);
  return fromLeft ? `…${s.slice(s.length - w + 1)}` : `${s.slice(0, w - 1)}…`;
}

function rttText(f: LiveFlow): string {
  const s = rttSplit(f);
  if (s !== null) {
    const one = (v: number | null): string => (v === null ? '-' : v.toFixed(1));
    return `${one(s.client)}/${one(s.tunnel)}/${one(s.server)}`;
  }
  return f.handshakeRttMs === null ? '-' : f.handshakeRttMs.toFixed(1);
}

/** Column layout: header, width, right-aligned, cell. */
const COLUMNS: [string, number, boolean, (f: LiveFlow) => string][] = [
  ['PROTO', 5, false, (f) => f.protocol],
  ['SOURCE', 24, false, (f) => f.src],
  ['DESTINATION', 24, false, (f) => f.dst],
  ['IDENTITY', 22, false, (f) => f.peerIdentity || '-'],
  ['SNI', 22, false, (f) => f.sni ?? '-'],
  ['RATE', 12, true, (f) => perSec(rate(f))],
  ['TOTAL', 10, true, (f) => bytes(total(f))],
  ['RTT ms c/t/s', 14, true, rttText],
  ['AGE', 7, true, (f) => duration(f.ageMs)],
  ['STATE', 12, false, (f) => f.closeReason ?? f.state],
];

/** Keys line shown at the bottom. */
export const KEYS_HELP = 'r rate  b bytes  t rtt  a age  / filter  Esc clear  p pause  q quit';

/**
 * The screen for `doc` under `state`: at most `rows` lines of at most
 * `cols` characters (no escape codes). The last line lists the keys.
 */
export function renderTop(doc: LiveFlowsDocument, state: TopState, cols: number, rows: number): string[] {
  const flows = visibleFlows(doc, state);
  const t = doc.totals;
  const clock = new Date(doc.nowMs).toISOString().slice(11, 19);
  const lines: string[] = [];
  lines.push(`mtun top — ${doc.reporter}  ${clock}  flows: ${t.openFlows} open  rate ↑ ${perSec(t.sentBytesPerSec)} ↓ ${perSec(t.receivedBytesPerSec)}  tunnel ↑ ${bytes(t.tunnel.sentBytes)} ↓ ${bytes(t.tunnel.receivedBytes)}${state.paused ? '  [PAUSED]' : ''}`);
  const drops = Object.entries(doc.drops).sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k}=${v}`).join(' ');
  lines.push(`drops: ${drops || 'none'}${doc.capture.active ? `  capture: on (${doc.capture.queuedPackets} pkts, ${doc.capture.droppedPackets} dropped)` : ''}`);
  const filterText = state.editing !== null ? `filter: /${state.editing}▏ (Enter apply, Esc cancel)` : `filter: ${state.filter?.text ?? 'none'}`;
  lines.push(`sort: ${state.sort}  ${filterText}  showing ${flows.length} of ${doc.flows.length}${state.message ? `  ! ${state.message}` : ''}`);
  lines.push('');
  const row = (cells: string[]): string => cells.map((c, i) => (COLUMNS[i]![2] ? c.padStart(COLUMNS[i]![1]) : c)).join(' ').trimEnd();
  lines.push(row(COLUMNS.map(([h, w, right]) => (right ? h : fit(h, w)))));
  const room = Math.max(0, rows - lines.length - 1);
  for (const f of flows.slice(0, room)) {
    lines.push(row(COLUMNS.map(([, w, right, cell], i) => (right ? cell(f).slice(0, w) : fit(cell(f), w, i === 3)))));
  }
  while (lines.length < rows - 1) lines.push('');
  lines.push(KEYS_HELP);
  return lines.map((l) => (l.length > cols ? l.slice(0, cols) : l));
}
