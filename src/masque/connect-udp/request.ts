/**
 * CONNECT-UDP request validation and target address policy (RFC 9298 §2,
 * §3, §7): template variables `target_host`/`target_port`, 400 for
 * malformed, 403 with Proxy-Status for prohibited destinations.
 */
import { formatIp, parseIp, type IpVersion } from '../../packet/ip-address.js';
import { DEFAULT_PROXY_NAME, refuse, type Refusal } from '../proxy-status.js';
import { CONNECT_UDP_DEFAULT_TEMPLATE, TemplateMatcher, expandTemplate, splitUrl } from '../uri-template.js';
import type { ExtendedConnectRequest } from '../connect-ip/request.js';
import { prohibitedDestination, type DestinationAllowance } from '../destination-policy.js';

/** A validated CONNECT-UDP target. `ip` is set when the host is an IP literal. */
export interface UdpTarget {
  readonly host: string;
  readonly port: number;
  readonly ip?: { readonly version: IpVersion; readonly address: Uint8Array };
}

/** Which normally refused destination classes the operator allows (RFC 9298 §7); shared with CONNECT-IP. */
export type UdpTargetAllowance = DestinationAllowance;

/** Options for {@link checkConnectUdpRequest}. */
export interface ConnectUdpRequestOptions {
  readonly template?: string;
  readonly matcher?: TemplateMatcher;
  readonly proxyName?: string;
}

const HOSTNAME_RE = /^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$/;

/** Parses decoded `target_host` and `target_port` (RFC 9298 §2). Returns the target or an error text (→ 400). */
export function parseUdpTarget(host: string | undefined, port: string | undefined): UdpTarget | string {
  if (!host) return 'target_host missing';
  if (!port) return 'target_port missing';
  // RFC 9298 §2: IPv6 scoped addressing zone identifiers are not supported.
  if (host.includes('%')) return 'target_host carries an IPv6 zone identifier (unsupported, RFC 9298 §2)';
  let h = host;
  if (h.startsWith('[') && h.endsWith(']')) h = h.slice(1, -1);
  if (!/^[0-9]{1,5}$/.test(port)) return `target_port ${JSON.stringify(port)} is not a decimal port`;
  const p = Number(port);
  if (p < 1 || p > 65535) return `target_port ${p} out of range 1..65535`;
  const ip = parseIp(h);
  if (ip) return { host: formatIp(ip.address), port: p, ip };
  if (h.includes(':') || /^[0-9.]+$/.test(h) || !HOSTNAME_RE.test(h)) return `target_host ${JSON.stringify(host)} is not a valid host name or address`;
  return { host: h.toLowerCase(), port: p };
}

/**
 * Why `address` may not be a CONNECT-UDP destination (RFC 9298 §7), or null
 * when it may: {@link prohibitedDestination}, the rule CONNECT-IP applies too.
 */
export function prohibitedUdpDestination(
  version: IpVersion,
  address: Uint8Array,
  allow: UdpTargetAllowance = {},
  own: readonly Uint8Array[] = [],
): string | null {
  return prohibitedDestination(version, address, 0, allow, own);
}

/**
 * Decides whether a CONNECT-UDP request is well formed (RFC 9298 §3.4 /
 * RFC 9220 pseudo-headers, §2 variables). Pure. Malformed → 400
 * `http_request_error`; not our template → 404. Destination policy needs the
 * resolved address and is applied by the gateway session with
 * {@link prohibitedUdpDestination} (403 `destination_ip_prohibited`).
 */
export function checkConnectUdpRequest(req: ExtendedConnectRequest, opts: ConnectUdpRequestOptions = {}): { ok: true; target: UdpTarget } | Refusal {
  const name = opts.proxyName ?? DEFAULT_PROXY_NAME;
  const bad = (why: string) => refuse(400, 'http_request_error', why, name);
  if (req.method !== 'CONNECT') return bad(`method ${req.method} is not CONNECT`);
  if (req.protocol !== 'connect-udp') return bad(`:protocol ${JSON.stringify(req.protocol)} is not connect-udp`);
  if (!req.scheme || !req.path || !req.authority) return bad(':scheme, :path and :authority must be present');
  // The request targets the proxy's https URI (the URI template, RFC 9484 §3 / RFC 9298 §2); the tunnel always runs over TLS.
  if (req.scheme !== 'https') return bad(`:scheme ${JSON.stringify(req.scheme)} is not https`);
  if (req.capsuleProtocol === false) return bad('capsule-protocol is not ?1 (RFC 9297 §3.4)');
  const m = opts.matcher ?? new TemplateMatcher(opts.template ?? CONNECT_UDP_DEFAULT_TEMPLATE);
  const vars = m.match(req.path);
  if (!vars) return refuse(404, 'http_request_error', 'path does not match the CONNECT-UDP template', name);
  const t = parseUdpTarget(vars['target_host'], vars['target_port']);
  if (typeof t === 'string') return bad(t);
  return { ok: true, target: t };
}

/** Client side: pseudo-headers of a CONNECT-UDP request (RFC 9298 §3.4) for host:port through `template`. */
export function buildConnectUdpRequest(gateway: string, host: string, port: number, template: string = CONNECT_UDP_DEFAULT_TEMPLATE) {
  const u = splitUrl(expandTemplate(template, { gateway, target_host: host, target_port: String(port) }));
  return { method: 'CONNECT', protocol: 'connect-udp', scheme: u.scheme, authority: u.authority, path: u.path, capsuleProtocol: true } as const;
}
