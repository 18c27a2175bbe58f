/**
 * Which live flows to show and in what order (`/flows?sort=&filter=&limit=`
 * on the daemon, the same in `mtun top`): filters by prefix, port or
 * identity, and sorts by rate, bytes, RTT or age. Pure.
 */
import { parseIp, parsePrefixOrReason, prefixHasAddress, type IpPrefix } from '../packet/ip-address.js';
import type { LiveFlow } from './live-flows.js';

/** Sort orders, each descending. */
export const SORT_KEYS = ['rate', 'bytes', 'rtt', 'age'] as const;
export type SortKey = (typeof SORT_KEYS)[number];

/** A flow filter: an address prefix (either end), a port (either end), or a peer identity substring. */
export type FlowFilter =
  | { readonly kind: 'prefix'; readonly text: string; readonly prefix: IpPrefix }
  | { readonly kind: 'port'; readonly text: string; readonly port: number }
  | { readonly kind: 'identity'; readonly text: string; readonly needle: string };

/**
 * Parses a filter: `10.0.0.0/8` or an address (prefix), `:443`, `443` or
 * `port:443` (port), `id:cluster-a` or any other text (identity
 * substring, case-insensitive). Empty text is no filter (null). Returns an
 * error sentence for a bad prefix or port.
 */
export function parseFlowFilter(input: string): FlowFilter | null | string {
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
export function matchesFlowFilter(flt: FlowFilter | null, f: LiveFlow): boolean {
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

/**
 * One number to sort by RTT: the flow's whole round trip (client + tunnel +
 * server segments as this end sees them: its own segment plus beyond the
 * tunnel), else the handshake RTT (TCP, or QUIC inside the tunnel), else -1.
 */
function rttKey(f: LiveFlow): number {
  const s = f.rtt;
  if (s !== null && (s.client !== null || s.server !== null)) {
    const beyond = f.direction === 'outbound' ? f.rttToServer : f.rttToClient;
    const local = f.direction === 'outbound' ? s.client : s.server;
    return (local ?? 0) + (beyond?.smoothedMs ?? 0);
  }
  return f.handshakeRttMs ?? f.quicHandshakeRttMs ?? -1;
}

/** Current rate of a flow, both directions, bytes per second. */
export const flowRate = (f: LiveFlow): number => f.sentBytesPerSec + f.receivedBytesPerSec;
/** Payload bytes of a flow so far, both directions. */
export const flowTotalBytes = (f: LiveFlow): number => f.sentBytes + f.receivedBytes;
const rate = flowRate;
const total = flowTotalBytes;

/** Flows sorted by `key`, descending; open flows before closed ones, ties by total bytes. New array. */
export function sortFlows(flows: readonly LiveFlow[], key: SortKey): LiveFlow[] {
  const by: (f: LiveFlow) => number = key === 'rate' ? rate : key === 'bytes' ? total : key === 'rtt' ? rttKey : (f) => f.ageMs;
  return [...flows].sort((a, b) => {
    if (a.state !== b.state) return a.state === 'open' ? -1 : 1;
    return by(b) - by(a) || total(b) - total(a);
  });
}

/** Most flows one `/flows` answer carries. */
export const MAX_FLOWS_LIMIT = 10_000;
/** Flows carried when the request names no limit. */
export const DEFAULT_FLOWS_LIMIT = 1_000;

/** A parsed `/flows` query. */
export interface FlowsQuery {
  readonly sort: SortKey;
  readonly filter: FlowFilter | null;
  readonly limit: number;
}

/** Parses `sort`, `filter` and `limit` of `/flows`; an error sentence for bad input. */
export function parseFlowsQuery(q: URLSearchParams): FlowsQuery | string {
  for (const k of q.keys()) if (k !== 'sort' && k !== 'filter' && k !== 'limit') return `unknown parameter "${k}" (expected sort, filter, limit)`;
  const sort = q.get('sort') ?? 'rate';
  if (!(SORT_KEYS as readonly string[]).includes(sort)) return `sort: expected one of ${SORT_KEYS.join(', ')}, got ${JSON.stringify(sort)}`;
  const filter = parseFlowFilter(q.get('filter') ?? '');
  if (typeof filter === 'string') return `filter: ${filter}`;
  const l = q.get('limit');
  const limit = l === null ? DEFAULT_FLOWS_LIMIT : Number(l);
  if (!/^\d+$/.test(l ?? '1') || limit < 1 || limit > MAX_FLOWS_LIMIT) return `limit: expected an integer 1-${MAX_FLOWS_LIMIT}, got ${JSON.stringify(l)}`;
  return { sort: sort as SortKey, filter, limit };
}
