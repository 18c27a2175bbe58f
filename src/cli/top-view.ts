/**
 * What `mtun top` shows, as pure functions of the daemon's `/flows`
 * document and the viewer's state (sort key, filter, pause): sorting,
 * filtering, and the screen as lines of at most the terminal's width.
 */
import type { LiveFlow, LiveFlowsDocument } from '../telemetry/live-flows.js';
import { flowRate as rate, flowTotalBytes as total, matchesFlowFilter, sortFlows, type FlowFilter, type SortKey } from '../telemetry/flow-query.js';
import { bytes, duration } from './status-command.js';

/** The viewer's state. */
export interface TopState {
  sort: SortKey;
  filter: FlowFilter | null;
  paused: boolean;
  /** Text of a filter being typed (after "/"), or null. */
  editing: string | null;
  /** A one-line message (bad filter, fetch error), or null. */
  message: string | null;
}

/** The flows to show, filtered and sorted. */
export function visibleFlows(doc: LiveFlowsDocument, state: Pick<TopState, 'sort' | 'filter'>): LiveFlow[] {
  return sortFlows(doc.flows.filter((f) => matchesFlowFilter(state.filter, f)), state.sort);
}

function perSec(n: number): string {
  return `${bytes(Math.round(n))}/s`;
}

function fit(s: string, w: number, fromLeft = false): string {
  if (s.length <= w) return s.padEnd(w);
  return fromLeft ? `…${s.slice(s.length - w + 1)}` : `${s.slice(0, w - 1)}…`;
}

/**
 * The RTT column: smoothed client / tunnel / server ms as this end sees the
 * flow (`-` where unknown: the tunnel over HTTP/2, the far segment without
 * the tunnel); the handshake RTT alone (`hs 1.2`) before any data was timed.
 */
function rttText(f: LiveFlow): string {
  const s = f.rtt;
  if (s !== null) {
    const one = (v: number | null): string => (v === null ? '-' : v.toFixed(1));
    return `${one(s.client)}/${one(s.tunnel)}/${one(s.server)}`;
  }
  const hs = f.handshakeRttMs ?? f.quicHandshakeRttMs;
  return hs === null ? '-' : `hs ${hs.toFixed(1)}`;
}

/** Peers' tunnel RTTs (QUIC smoothed RTT), slowest first, at most 3; empty when none is known. */
function tunnelRttText(doc: LiveFlowsDocument): string {
  const all = Object.entries(doc.totals.tunnelRttMs ?? {}).sort((a, b) => b[1] - a[1]);
  if (all.length === 0) return '';
  const shown = all.slice(0, 3).map(([id, ms]) => `${id}=${ms.toFixed(1)}ms`).join(' ');
  return `  tunnel rtt: ${shown}${all.length > 3 ? ` (+${all.length - 3})` : ''}`;
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
  lines.push(`drops: ${drops || 'none'}${tunnelRttText(doc)}${doc.capture.active ? `  capture: on (${doc.capture.queuedPackets} pkts, ${doc.capture.droppedPackets} dropped)` : ''}`);
  const filterText = state.editing !== null ? `filter: /${state.editing}▏ (Enter apply, Esc cancel)` : `filter: ${state.filter?.text ?? 'none'}`;
  lines.push(`sort: ${state.sort}  ${filterText}  showing ${doc.matchedFlows} of ${doc.totalFlows}${state.message ? `  ! ${state.message}` : ''}`);
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
