/**
 * The gateway's admission decision for one Extended CONNECT request, as a
 * pure function (decide apart from do): who is asking, may they open one
 * more session, does any policy name them. The gateway carries the verdict out.
 */
import type { CompiledPolicy, IdentityPolicy } from '../config/index.js';
import { refuse } from '../masque/proxy-status.js';
import type { TokenTable } from './auth.js';
import { bearerToken } from './auth.js';

/** Everything {@link admitConnect} looks at. */
export interface AdmitInput {
  /** Identity from the client certificate (mTLS), or null (token mode). */
  readonly certIdentity: string | null;
  /** The request's `authorization` header, if any. */
  readonly authorization: string | undefined;
  /** The request's `:protocol`. */
  readonly protocol: string;
  readonly tokens: TokenTable;
  readonly policy: CompiledPolicy;
  /** Sessions open or being opened, gateway-wide. */
  readonly sessions: number;
  /** Sessions open or being opened (CONNECT-UDP resolving/connecting) by an identity. */
  readonly sessionsOf: (identity: string) => number;
  readonly maxSessions: number;
  readonly maxSessionsPerIdentity: number;
}

/** Admitted: who, with which policy (and the token that authenticated it, null for a certificate). */
export interface Admission {
  readonly ok: true;
  readonly identity: string;
  readonly token: string | null;
  readonly policy: IdentityPolicy;
  readonly protocol: 'connect-ip' | 'connect-udp';
}

/** Refused: the status, headers to answer with, and a reason for the log. */
export interface ConnectRefusal {
  readonly ok: false;
  readonly status: number;
  readonly headers: Array<[string, string]>;
  readonly reason: string;
  /** Short name of the rule that refused, for the log message ("per-identity session limit"). */
  readonly rule: string;
  /** Known only once authenticated. */
  readonly identity: string | null;
}

function refusal(status: number, rule: string, error: Parameters<typeof refuse>[1], reason: string, identity: string | null, extra: Array<[string, string]> = []): ConnectRefusal {
  const r = refuse(status, error, reason);
  return { ok: false, status, headers: [['proxy-status', r.proxyStatus], ...extra], reason, rule, identity };
}

/**
 * Decides one request: authentication (certificate identity, else a bearer
 * token; RFC 9484 §11), the gateway-wide and per-identity session limits
 * (pending CONNECT-UDP opens count), default deny (no policy → 403), and the
 * protocol (501 for anything but connect-ip / connect-udp).
 */
export function admitConnect(a: AdmitInput): Admission | ConnectRefusal {
  const token = a.certIdentity === null ? bearerToken(a.authorization) : null;
  const identity = a.certIdentity ?? (token !== null ? a.tokens.identityOf(token) : null);
  if (identity === null) {
    return refusal(401, 'not authenticated', 'http_request_denied', 'no client certificate and no valid bearer token', null, [['www-authenticate', 'Bearer']]);
  }
  if (a.sessions >= a.maxSessions) return refusal(503, 'gateway session limit', 'proxy_internal_error', 'session limit reached', identity);
  if (a.sessionsOf(identity) >= a.maxSessionsPerIdentity) {
    return refusal(429, 'per-identity session limit', 'proxy_internal_error', `session limit of ${a.maxSessionsPerIdentity} per identity reached`, identity);
  }
  const policy = a.policy.forIdentity(identity);
  if (policy.pattern === null) return refusal(403, 'no policy for identity', 'http_request_denied', 'no policy for this identity (default deny)', identity);
  if (a.protocol !== 'connect-ip' && a.protocol !== 'connect-udp') {
    return refusal(501, 'unsupported protocol', 'http_request_error', `unsupported :protocol ${JSON.stringify(a.protocol)}`, identity);
  }
  return { ok: true, identity, token, policy, protocol: a.protocol };
}
