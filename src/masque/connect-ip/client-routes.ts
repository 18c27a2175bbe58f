/**
 * What the gateway makes of a client's ROUTE_ADVERTISEMENT (RFC 9484 §4.7.3),
 * decided before anything is expanded or installed: each range is clipped to
 * the prefixes the client may advertise, prefixes covering forbidden space
 * are refused, and ranges per capsule and prefixes per session are capped.
 * Pure; control plane (allocates).
 */
import { clipRangeToPrefix, formatPrefix, parsePrefix, prefixCovers, prefixesOverlap, rangeToPrefixes, type IpPrefix } from '../../packet/ip-address.js';
import type { IpAddressRange } from './route-advertisement.js';

/** Default cap on ranges considered per ROUTE_ADVERTISEMENT (gateway config `masque.maxRangesPerAdvertisement`). */
export const DEFAULT_MAX_RANGES_PER_ADVERTISEMENT = 64;
/** Default cap on prefixes one session may have installed (gateway config `masque.maxClientPrefixes`). */
export const DEFAULT_MAX_CLIENT_PREFIXES = 256;

/**
 * Prefixes no client may advertise, whatever the policy says: link-local
 * (169.254/16 holds the cloud metadata address; fe80::/10), loopback, and
 * the cloud metadata endpoints outside link-local space (an agent routed
 * 100.64.0.0/10 would answer the gateway host's own metadata requests);
 * unspecified-space defaults are caught by the policy. The owner adds its
 * connected subnets and the agents' underlay addresses.
 */
export const ALWAYS_FORBIDDEN_PREFIXES: readonly IpPrefix[] = [
  '169.254.0.0/16', '127.0.0.0/8', 'fe80::/10', '::1/128', '100.100.100.200/32', 'fd00:ec2::254/128', 'fd00:ec2::23/128', 'fd20:ce::254/128',
].map((t) => parsePrefix(t)!);

/** A client prefix the gateway accepted, with the range's IP protocol (0 = any). */
export interface ClientRoute {
  readonly prefix: IpPrefix;
  readonly ipProtocol: number;
}

/** Why part of an advertisement was not accepted. */
export type RouteRefusalReason = 'not-allowed' | 'forbidden' | 'too-many-ranges' | 'too-many-prefixes' | 'ipv6-disabled';

/** Inputs of {@link judgeRouteAdvertisement}. */
export interface RouteJudgeOptions {
  /** Prefixes the client may advertise; ranges are clipped to them before expansion. Undefined = anything. */
  readonly allowed?: readonly IpPrefix[];
  /** Extra per-prefix check (e.g. the identity's policy); applied after clipping. */
  readonly accept?: (p: IpPrefix) => boolean;
  /** Prefixes that may not be covered or entered (added to {@link ALWAYS_FORBIDDEN_PREFIXES}). */
  readonly forbidden?: readonly IpPrefix[];
  readonly maxRanges: number;
  readonly maxPrefixes: number;
  readonly ipv6Enabled: boolean;
}

/** Result of {@link judgeRouteAdvertisement}. */
export interface RouteJudgement {
  readonly routes: ClientRoute[];
  /** One entry per refused prefix or range (text, for events and logs). */
  readonly refused: { readonly what: string; readonly reason: RouteRefusalReason }[];
}

/** Drops allowed prefixes covered by another one, so clipping yields no duplicates. */
function outermost(ps: readonly IpPrefix[]): IpPrefix[] {
  return ps.filter((p, i) => !ps.some((q, j) => j !== i && prefixCovers(q, p) && (q.prefixLength < p.prefixLength || j < i)));
}

const rangeText = (r: IpAddressRange) => `${formatPrefix({ version: r.version, address: r.start, prefixLength: r.start.length * 8 })}-${formatPrefix({ version: r.version, address: r.end, prefixLength: r.end.length * 8 })}`;

/**
 * Decides which prefixes of an advertisement to install. Cost is bounded by
 * `maxRanges` × allowed prefixes for clipping and by `maxPrefixes` for
 * expansion, whatever the capsule holds (one 64 KiB capsule of IPv6 ranges
 * used to expand to ~450k prefixes).
 */
export function judgeRouteAdvertisement(ranges: readonly IpAddressRange[], o: RouteJudgeOptions): RouteJudgement {
  const routes: ClientRoute[] = [];
  const refused: { what: string; reason: RouteRefusalReason }[] = [];
  const allowed = o.allowed ? outermost(o.allowed) : undefined;
  const forbidden = o.forbidden ? [...ALWAYS_FORBIDDEN_PREFIXES, ...o.forbidden] : ALWAYS_FORBIDDEN_PREFIXES;
  for (let i = 0; i < ranges.length; i++) {
    const r = ranges[i]!;
    if (i >= o.maxRanges) {
      refused.push({ what: `${ranges.length - i} ranges past the first ${o.maxRanges}`, reason: 'too-many-ranges' });
      break;
    }
    if (r.version === 6 && !o.ipv6Enabled) {
      refused.push({ what: rangeText(r), reason: 'ipv6-disabled' });
      continue;
    }
    const pieces: [Uint8Array, Uint8Array][] = [];
    if (allowed === undefined) pieces.push([r.start, r.end]);
    else for (const a of allowed) {
      const c = a.version === r.version ? clipRangeToPrefix(r.start, r.end, a) : null;
      if (c) pieces.push(c);
    }
    if (pieces.length === 0) refused.push({ what: rangeText(r), reason: 'not-allowed' });
    for (const [s, e] of pieces) {
      const budget = o.maxPrefixes - routes.length;
      // One more than the budget tells "over budget" apart from "exactly fits".
      const ps = rangeToPrefixes(r.version, s, e, budget + 1);
      for (let k = 0; k < ps.length; k++) {
        const p = ps[k]!;
        if (routes.length >= o.maxPrefixes) {
          refused.push({ what: formatPrefix(p), reason: 'too-many-prefixes' });
          break;
        }
        if (o.accept && !o.accept(p)) refused.push({ what: formatPrefix(p), reason: 'not-allowed' });
        else if (forbidden.some((f) => prefixesOverlap(f, p))) refused.push({ what: formatPrefix(p), reason: 'forbidden' });
        else routes.push({ prefix: p, ipProtocol: r.ipProtocol });
      }
    }
  }
  return { routes, refused };
}
