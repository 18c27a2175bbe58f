/**
 * Host-name targets of CONNECT-IP (RFC 9484 §4.6): the gateway resolves the
 * name and advertises routes to the resolved addresses it can reach.
 */
import dns from 'node:dns';
import { parseIp, type IpPrefix } from '../../packet/ip-address.js';
import { refuse, DEFAULT_PROXY_NAME, type Refusal } from '../proxy-status.js';
import type { ConnectIpScope } from './request.js';

/** Resolver returning every address of a name; default node:dns lookup (all, verbatim). */
export type NameResolver = (name: string) => Promise<{ address: string; family: number }[]>;

/**
 * For a host-name scope, resolves the name (before the gateway replies) and
 * returns one full-length prefix per address, to pass as the session's
 * `routes` (§4.6: "routes for all addresses that were resolved"). Other
 * scopes return null (use the configured routes). A failed lookup becomes a
 * 502 refusal with Proxy-Status `dns_error` (RFC 9209 §2.3.2).
 */
export async function resolveConnectIpTarget(
  scope: ConnectIpScope,
  resolver: NameResolver = (n) => dns.promises.lookup(n, { all: true, verbatim: true }),
  proxyName = DEFAULT_PROXY_NAME,
): Promise<IpPrefix[] | null | Refusal> {
  if (scope.target.kind !== 'hostname') return null;
  const name = scope.target.name;
  let addrs: { address: string; family: number }[];
  try {
    addrs = await resolver(name);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? 'ERROR';
    return refuse(502, 'dns_error', `resolving ${name} failed: ${code}`, proxyName, { rcode: code === 'ENOTFOUND' ? 'NXDOMAIN' : code });
  }
  const out: IpPrefix[] = [];
  for (const a of addrs) {
    const ip = parseIp(a.address.split('%')[0]!);
    if (ip) out.push({ version: ip.version, address: ip.address, prefixLength: ip.version === 4 ? 32 : 128 });
  }
  if (out.length === 0) return refuse(502, 'dns_error', `no addresses for ${name}`, proxyName);
  return out;
}
