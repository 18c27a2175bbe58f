/**
 * CONNECT-IP request validation for the gateway (RFC 9484 §4.4, §4.6): a pure
 * decision — 400 for malformed, 403 for disallowed, both with Proxy-Status
 * (RFC 9209) — and the client-side request builder.
 */
import { addressBits, formatIp, hostBitsZero, parseIp, prefixContains, type IpPrefix } from '../../packet/ip-address.js';
import { DEFAULT_PROXY_NAME, refuse, type Refusal } from '../proxy-status.js';
import { CONNECT_IP_DEFAULT_TEMPLATE, TemplateMatcher, expandTemplate, splitUrl } from '../uri-template.js';

/** What the request asks to reach (RFC 9484 §4.6 `target`). */
export type ConnectIpTarget =
  | { readonly kind: 'any' }
  | { readonly kind: 'prefix'; readonly prefix: IpPrefix }
  | { readonly kind: 'hostname'; readonly name: string };

/** The request scope: target and IP protocol (null = any, RFC 9484 §4.6 `ipproto` "*"). */
export interface ConnectIpScope {
  readonly target: ConnectIpTarget;
  readonly ipProtocol: number | null;
}

/** The request pseudo-headers as the HTTP/3 layer decoded them (RFC 9484 §4.4, RFC 9220). */
export interface ExtendedConnectRequest {
  readonly method: string;
  readonly protocol?: string;
  readonly scheme?: string;
  readonly authority?: string;
  readonly path?: string;
  /** Value of the `capsule-protocol` header parsed as a boolean (RFC 9297 §3.4); undefined when absent. */
  readonly capsuleProtocol?: boolean;
}

/** IPv6 extension-header protocol numbers (RFC 8200 §4, IANA "IPv6 Extension Header Types"). */
export const IPV6_EXTENSION_HEADERS: ReadonlySet<number> = new Set([0, 43, 44, 50, 51, 60, 135, 139, 140, 253, 254]);

/** Gateway options for {@link checkConnectIpRequest}. */
export interface ConnectIpRequestOptions {
  /** Configured URI template (default {@link CONNECT_IP_DEFAULT_TEMPLATE}); build the matcher once and pass it as `matcher` on the hot accept path. */
  readonly template?: string;
  readonly matcher?: TemplateMatcher;
  /** Proxy name in Proxy-Status (default `mtun`). */
  readonly proxyName?: string;
  /** RFC 9484 §4.8: IP proxies MAY reject scoping to extension-header numbers. Default true. */
  readonly rejectExtensionHeaderProtocols?: boolean;
  /** Policy for the requester (e.g. per identity): return false to refuse the scope with 403. Default allows. */
  readonly allowScope?: (scope: ConnectIpScope) => boolean;
}

const HOSTNAME_RE = /^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$/;

/**
 * Parses the decoded `target` variable (RFC 9484 §4.6 Figure 6):
 * `*`, an IPv4/IPv6 address with optional `/len`, or a DNS name. Zone IDs
 * (`%` after decoding), prefix lengths past the address size, leading
 * junk and set host bits are malformed. Returns the target or an error text.
 */
export function parseConnectIpTarget(decoded: string | undefined): ConnectIpTarget | string {
  if (decoded === undefined || decoded === '*') return { kind: 'any' };
  if (decoded.includes('%')) return 'target carries an IPv6 zone identifier (unsupported, RFC 9484 §4.6)';
  const slash = decoded.indexOf('/');
  const addrText = slash < 0 ? decoded : decoded.slice(0, slash);
  const ip = parseIp(addrText);
  if (!ip) {
    if (slash >= 0 || addrText.includes(':')) return `target ${JSON.stringify(decoded)} is not a valid IP prefix`;
    // A reg-name; dotted-quad-looking strings that failed IPv4 parsing are malformed, not names.
    if (/^[0-9.]+$/.test(addrText) || !HOSTNAME_RE.test(addrText)) return `target ${JSON.stringify(decoded)} is not a valid host name or address`;
    return { kind: 'hostname', name: addrText.toLowerCase() };
  }
  const bits = addressBits(ip.version);
  let len: number = bits;
  if (slash >= 0) {
    const l = decoded.slice(slash + 1);
    // Figure 6: IPv4prefix length 1*2DIGIT, IPv6prefix length 1*3DIGIT.
    if (!(ip.version === 4 ? /^[0-9]{1,2}$/ : /^[0-9]{1,3}$/).test(l)) return `target prefix length ${JSON.stringify(l)} malformed`;
    len = Number(l);
    if (len > bits) return `target prefix length ${len} exceeds ${bits}`;
  }
  if (!hostBitsZero(ip.address, len)) return `target ${decoded} has bits set past the prefix length`;
  return { kind: 'prefix', prefix: { version: ip.version, address: ip.address, prefixLength: len } };
}

/** Parses the decoded `ipproto` variable: `*` or absent → null, `0`..`255` → number, else an error text. */
export function parseIpProto(decoded: string | undefined): number | null | string {
  if (decoded === undefined || decoded === '*') return null;
  if (!/^[0-9]{1,3}$/.test(decoded)) return `ipproto ${JSON.stringify(decoded)} is not 1*3DIGIT or "*"`;
  const n = Number(decoded);
  if (n > 255) return `ipproto ${n} exceeds 255`;
  return n;
}

/**
 * Decides whether the gateway accepts a CONNECT-IP request. Pure: no I/O.
 * Malformed (§4.4 pseudo-headers, §4.6 grammar) → 400 `http_request_error`;
 * a path that is not our template → 404; a scope policy refuses → 403
 * `destination_ip_prohibited`; extension-header ipproto (if rejected) → 403.
 */
export function checkConnectIpRequest(req: ExtendedConnectRequest, opts: ConnectIpRequestOptions = {}): { ok: true; scope: ConnectIpScope } | Refusal {
  const name = opts.proxyName ?? DEFAULT_PROXY_NAME;
  const bad = (why: string) => refuse(400, 'http_request_error', why, name);
  // RFC 9484 §4.4: CONNECT with :protocol connect-ip, non-empty :scheme and :path, an :authority.
  if (req.method !== 'CONNECT') return bad(`method ${req.method} is not CONNECT`);
  if (req.protocol !== 'connect-ip') return bad(`:protocol ${JSON.stringify(req.protocol)} is not connect-ip`);
  if (!req.scheme || !req.path) return bad(':scheme and :path must be present and non-empty');
  if (!req.authority) return bad(':authority missing');
  // The request targets the proxy's https URI (the URI template, RFC 9484 §3 / RFC 9298 §2); the tunnel always runs over TLS.
  if (req.scheme !== 'https') return bad(`:scheme ${JSON.stringify(req.scheme)} is not https`);
  if (req.capsuleProtocol === false) return bad('capsule-protocol is not ?1 (RFC 9297 §3.4)');
  const matcher = opts.matcher ?? new TemplateMatcher(opts.template ?? CONNECT_IP_DEFAULT_TEMPLATE);
  const vars = matcher.match(req.path);
  if (!vars) return refuse(404, 'http_request_error', `path does not match the CONNECT-IP template`, name);
  const target = parseConnectIpTarget(vars['target']);
  if (typeof target === 'string') return bad(target);
  const proto = parseIpProto(vars['ipproto']);
  if (typeof proto === 'string') return bad(proto);
  if (proto !== null && (opts.rejectExtensionHeaderProtocols ?? true) && IPV6_EXTENSION_HEADERS.has(proto)) {
    return refuse(403, 'http_request_denied', `ipproto ${proto} is an IPv6 extension header (RFC 9484 §4.8)`, name);
  }
  const scope: ConnectIpScope = { target, ipProtocol: proto };
  if (opts.allowScope && !opts.allowScope(scope)) return refuse(403, 'destination_ip_prohibited', 'scope not allowed for this client', name);
  return { ok: true, scope };
}

/**
 * Client side: the pseudo-headers of a CONNECT-IP request for `scope`
 * expanded through `template` (RFC 9484 §3, §4.4). `gateway` fills the
 * `{gateway}` variable (host[:port]).
 */
export function buildConnectIpRequest(
  gateway: string,
  scope: ConnectIpScope = { target: { kind: 'any' }, ipProtocol: null },
  template: string = CONNECT_IP_DEFAULT_TEMPLATE,
): Required<Omit<ExtendedConnectRequest, 'capsuleProtocol'>> & { capsuleProtocol: true } {
  const t = scope.target;
  let target: string;
  if (t.kind === 'any') target = '*';
  else if (t.kind === 'hostname') target = t.name;
  else {
    const ip = formatIp(t.prefix.address);
    target = t.prefix.prefixLength === addressBits(t.prefix.version) ? ip : `${ip}/${t.prefix.prefixLength}`;
  }
  const url = expandTemplate(template, {
    gateway,
    target,
    ipproto: scope.ipProtocol === null ? '*' : String(scope.ipProtocol),
  });
  const u = splitUrl(url);
  return { method: 'CONNECT', protocol: 'connect-ip', scheme: u.scheme, authority: u.authority, path: u.path, capsuleProtocol: true };
}

/**
 * Allocation-free: does a packet's destination (at buf[off], `version`) fall
 * within the target scope? Hostname targets are checked against the routes
 * the gateway resolved and advertised, not here (returns true).
 */
export function targetContains(t: ConnectIpTarget, version: 4 | 6, buf: Uint8Array, off: number): boolean {
  if (t.kind !== 'prefix') return true;
  if (t.prefix.version !== version) return false;
  return prefixContains(t.prefix.address, t.prefix.prefixLength, buf, off);
}
