/**
 * Proxy-Status header values (RFC 9209) for refused MASQUE requests, and the
 * shape of a refusal the gateway turns into an HTTP response.
 */

/** RFC 9209 §2.3 proxy error types used by mtun. */
export type ProxyErrorType =
  | 'http_request_error'
  | 'http_request_denied'
  | 'destination_ip_prohibited'
  | 'destination_ip_unroutable'
  | 'destination_not_found'
  | 'dns_error'
  | 'dns_timeout'
  | 'connection_refused'
  | 'connection_timeout'
  | 'proxy_internal_error'
  | 'proxy_configuration_error';

/** A refused request: the status to send and the Proxy-Status header value. */
export interface Refusal {
  readonly ok: false;
  readonly status: number;
  readonly proxyStatus: string;
  /** Human-readable reason for logs (also in the Proxy-Status `details`). */
  readonly reason: string;
}

/** Default proxy name in Proxy-Status (RFC 9209 §2: an sf-token or sf-string identifying the intermediary). */
export const DEFAULT_PROXY_NAME = 'mtun';

/**
 * Builds a Proxy-Status member (RFC 9209 §2): `name; error=type; details="…"`.
 * `details` is reduced to printable ASCII and escaped as an sf-string
 * (RFC 8941 §3.3.3). `extra` adds parameters such as `rcode` for dns_error.
 */
export function proxyStatusValue(
  proxyName: string,
  error: ProxyErrorType,
  details?: string,
  extra?: Readonly<Record<string, string | number>>,
): string {
  const name = /^[A-Za-z*][A-Za-z0-9:/!#$%&'*+\-.^_`|~]*$/.test(proxyName) ? proxyName : sfString(proxyName);
  let v = `${name}; error=${error}`;
  if (extra) for (const [k, x] of Object.entries(extra)) v += `; ${k}=${typeof x === 'number' ? x : sfString(x)}`;
  if (details !== undefined) v += `; details=${sfString(details)}`;
  return v;
}

function sfString(s: string): string {
  return '"' + s.replace(/[^\x20-\x7e]/g, '?').replace(/[\\"]/g, (c) => '\\' + c) + '"';
}

/** Convenience: a {@link Refusal} with a Proxy-Status value. */
export function refuse(status: number, error: ProxyErrorType, reason: string, proxyName = DEFAULT_PROXY_NAME, extra?: Readonly<Record<string, string | number>>): Refusal {
  return { ok: false, status, proxyStatus: proxyStatusValue(proxyName, error, reason, extra), reason };
}
