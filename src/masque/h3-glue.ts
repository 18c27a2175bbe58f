/**
 * Wiring of MASQUE sessions to the HTTP/3 layer's Extended CONNECT API
 * (structural types, so masque depends only on `h3/tunnel-stream`): the
 * gateway's accept/refuse path and the client's open path, for CONNECT-IP
 * and CONNECT-UDP.
 */
import type { TunnelStream, TunnelStreamHandler } from '../h3/tunnel-stream.js';
import { ConnectIpClientSession, type ConnectIpClientOptions } from './connect-ip/client-session.js';
import { ConnectIpGatewaySession, type ConnectIpGatewayOptions } from './connect-ip/gateway-session.js';
import { checkConnectIpRequest, buildConnectIpRequest, type ConnectIpRequestOptions, type ConnectIpScope } from './connect-ip/request.js';
import { ConnectUdpClientSession, type ConnectUdpClientOptions } from './connect-udp/client-session.js';
import { ConnectUdpGatewaySession, type ConnectUdpGatewayOptions } from './connect-udp/gateway-session.js';
import { buildConnectUdpRequest, checkConnectUdpRequest, type ConnectUdpRequestOptions } from './connect-udp/request.js';
import { LateTunnelStream } from './late-stream.js';
import { DEFAULT_PROXY_NAME, refuse, type Refusal } from './proxy-status.js';
import { resolveConnectIpTarget, type NameResolver } from './connect-ip/resolve-target.js';
import { localAddresses, prohibitedDestination, type DestinationAllowance } from './destination-policy.js';
import type { IpPrefix } from '../packet/ip-address.js';

type Fields = readonly (readonly [string, string])[];

/** The parts of h3's pending Extended CONNECT request the gateway glue uses. */
export interface PendingConnectLike {
  readonly protocol: string;
  readonly scheme: string;
  readonly authority: string;
  readonly path: string;
  readonly capsuleProtocol: boolean;
  accept(handler: TunnelStreamHandler, headers?: Fields, status?: number): TunnelStream | null;
  reject(status: number, headers?: Fields, body?: Uint8Array | string): void;
  /** True once answered, or after the stream went away (absent: never known). */
  readonly settled?: boolean;
}

/** The parts of h3's client connection the client glue uses. */
export interface ConnectClientLike {
  connect(
    req: { protocol: string; authority: string; path: string; scheme?: string; headers?: Fields },
    handler: TunnelStreamHandler & { onResponse(status: number, headers: Fields, tunnel: TunnelStream | null): void },
  ): number;
}

function asRequest(req: PendingConnectLike) {
  return { method: 'CONNECT', protocol: req.protocol, scheme: req.scheme, authority: req.authority, path: req.path, capsuleProtocol: req.capsuleProtocol };
}

function rejectWith(req: PendingConnectLike, r: Refusal): void {
  req.reject(r.status, [['proxy-status', r.proxyStatus]], r.reason + '\n');
}

/** How the gateway glue treats CONNECT-IP destinations, beside the request checks. */
export interface ConnectIpAcceptOptions extends ConnectIpRequestOptions {
  /** Resolver for host-name targets (RFC 9484 §4.6); default node:dns lookup. */
  readonly resolve?: NameResolver;
  /** The gateway's own addresses (never destinations); default every address of this host's interfaces. */
  readonly ownAddresses?: readonly Uint8Array[];
  /** Destination classes allowed despite the shared rule; default none. */
  readonly allowDestinations?: DestinationAllowance;
}

/**
 * Gateway: validates a CONNECT-IP request (RFC 9484 §4.4/§4.6) and either
 * refuses it (status + Proxy-Status) or accepts it with a started
 * {@link ConnectIpGatewaySession}. A host-name target is resolved before
 * the reply (§4.6); addresses the shared destination rule refuses (the
 * gateway's own, loopback…, as for CONNECT-UDP) are left out, and a name
 * with none left is refused with 403 `destination_ip_prohibited`.
 * `sessionOpts` gets the validated scope; the session gets the gateway's
 * own addresses and the resolved target. Returns the session, or the
 * refusal (sent, unless the stream went away meanwhile: then `sessionOpts`
 * is not called).
 */
export async function acceptConnectIp(
  req: PendingConnectLike,
  check: ConnectIpAcceptOptions,
  sessionOpts: (scope: ConnectIpScope) => Omit<ConnectIpGatewayOptions, 'scope'>,
): Promise<ConnectIpGatewaySession | Refusal> {
  const r = checkConnectIpRequest(asRequest(req), check);
  if (!r.ok) {
    rejectWith(req, r);
    return r;
  }
  const own = check.ownAddresses ?? localAddresses();
  let resolvedTarget: IpPrefix[] | undefined;
  const resolved = await resolveConnectIpTarget(r.scope, check.resolve, check.proxyName);
  if (resolved !== null && 'status' in resolved) {
    rejectWith(req, resolved);
    return resolved;
  }
  if (req.settled === true) {
    // The stream went away while the name resolved: no session, and no sessionOpts (which may act, e.g. supersede).
    return refuse(400, 'http_request_error', 'stream closed before the target was resolved', check.proxyName ?? DEFAULT_PROXY_NAME);
  }
  if (resolved !== null) {
    resolvedTarget = resolved.filter((p) => prohibitedDestination(p.version, p.address, 0, check.allowDestinations, own) === null);
    if (resolvedTarget.length === 0) {
      const why = refuse(403, 'destination_ip_prohibited', 'every address of the target is prohibited', check.proxyName ?? DEFAULT_PROXY_NAME);
      rejectWith(req, why);
      return why;
    }
  }
  const late = new LateTunnelStream();
  const s = new ConnectIpGatewaySession(late, {
    ownAddresses: own,
    allowDestinations: check.allowDestinations,
    ...sessionOpts(r.scope),
    resolvedTarget,
    scope: r.scope,
  });
  const t = req.accept(s);
  if (!t) {
    s.onClose(0);
    return s;
  }
  late.bind(t);
  s.start();
  return s;
}

/**
 * Gateway: validates a CONNECT-UDP request (RFC 9298), resolves and vets the
 * target and connects the socket before answering (§3.1); then accepts with
 * the session or refuses with status + Proxy-Status.
 */
export async function acceptConnectUdp(
  req: PendingConnectLike,
  check: ConnectUdpRequestOptions,
  sessionOpts: Omit<ConnectUdpGatewayOptions, 'target'>,
): Promise<ConnectUdpGatewaySession | Refusal> {
  const r = checkConnectUdpRequest(asRequest(req), check);
  if (!r.ok) {
    rejectWith(req, r);
    return r;
  }
  const late = new LateTunnelStream();
  const s = new ConnectUdpGatewaySession(late, { ...sessionOpts, target: r.target });
  const o = await s.open();
  if (!o.ok) {
    rejectWith(req, o);
    return o;
  }
  const t = req.accept(s);
  if (!t) {
    s.onClose(0);
    return s;
  }
  late.bind(t);
  return s;
}

/** A refused or failed MASQUE request on the client side. */
export class MasqueRequestError extends Error {
  constructor(
    readonly status: number,
    readonly proxyStatus: string | undefined,
  ) {
    super(`masque: request refused with status ${status}${proxyStatus ? ` (Proxy-Status: ${proxyStatus})` : ''}`);
    this.name = 'MasqueRequestError';
  }
}

function openWith<S extends TunnelStreamHandler>(
  client: ConnectClientLike,
  req: { protocol: string; authority: string; path: string; scheme: string },
  headers: Fields,
  make: (stream: TunnelStream) => S,
): Promise<S> {
  return new Promise((resolve, reject) => {
    const late = new LateTunnelStream();
    const session = make(late);
    let settled = false;
    client.connect(
      { ...req, headers },
      {
        onResponse(status, hdrs, tunnel) {
          settled = true;
          // RFC 9484 §4.5 / RFC 9298 §3.5: only 2xx with a tunnel is success.
          if (tunnel && status >= 200 && status <= 299) {
            late.bind(tunnel);
            resolve(session);
          } else {
            reject(new MasqueRequestError(status, hdrs.find(([n]) => n === 'proxy-status')?.[1]));
          }
        },
        onCapsule: (t, v) => session.onCapsule(t, v),
        onDatagram: (b, o, l) => session.onDatagram(b, o, l),
        onClose: (e) => {
          if (!settled) {
            settled = true;
            reject(new MasqueRequestError(0, `stream closed with H3 error 0x${e.toString(16)}`));
          }
          session.onClose(e);
        },
      },
    );
  });
}

/** Client: opens a CONNECT-IP tunnel (RFC 9484) and resolves with the session once the gateway answered 2xx. */
export function connectIp(
  client: ConnectClientLike,
  gateway: string,
  opts: ConnectIpClientOptions & { scope?: ConnectIpScope; template?: string; headers?: Fields },
): Promise<ConnectIpClientSession> {
  const r = buildConnectIpRequest(gateway, opts.scope, opts.template);
  return openWith(client, r, opts.headers ?? [], (st) => new ConnectIpClientSession(st, opts));
}

/** Client: opens a CONNECT-UDP flow to host:port (RFC 9298) and resolves with the session once the gateway answered 2xx. */
export function connectUdp(
  client: ConnectClientLike,
  gateway: string,
  host: string,
  port: number,
  opts: ConnectUdpClientOptions & { template?: string; headers?: Fields },
): Promise<ConnectUdpClientSession> {
  const r = buildConnectUdpRequest(gateway, host, port, opts.template);
  return openWith(client, r, opts.headers ?? [], (st) => new ConnectUdpClientSession(st, opts));
}
