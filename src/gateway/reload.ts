/**
 * What a SIGHUP means for one open session, as a pure decision: keep it
 * (with its new policy) or close it, and why. The gateway carries it out.
 */
import type { CompiledPolicy, GatewayConfig, IdentityPolicy } from '../config/index.js';
import { prohibitedDestination, type DestinationAllowance } from '../masque/destination-policy.js';
import { IPPROTO } from '../packet/ip-packet.js';
import type { TokenTable } from './auth.js';

/** What {@link reviewSession} needs to know about a session. */
export interface ReviewedSession {
  readonly identity: string;
  readonly token: string | null;
  readonly kind: 'connect-ip' | 'connect-udp';
  /** CONNECT-UDP: target as requested and the address it was opened to. */
  readonly udpTarget: { host: string; port: number } | null;
  readonly udpAddress: Uint8Array | null;
}

/** Keep, with the policy now in force; or close, with the reason to log. */
export type ReviewVerdict = { readonly keep: true; readonly policy: IdentityPolicy } | { readonly keep: false; readonly reason: string };

/**
 * Re-checks a session against the reloaded configuration: the identity must
 * still have a policy, its token (token mode) must still map to it, and a
 * CONNECT-UDP session's target must still be in `connectUdp.targets` and its
 * address still allowed for UDP by the identity's policy and not (any
 * longer) one of the gateway's own addresses, `ownAddresses`.
 */
export function reviewSession(
  s: ReviewedSession,
  policy: CompiledPolicy,
  tokens: TokenTable,
  config: GatewayConfig,
  ownAddresses: readonly Uint8Array[],
): ReviewVerdict {
  const p = policy.forIdentity(s.identity);
  if (p.pattern === null) return { keep: false, reason: 'no policy' };
  if (s.token !== null && tokens.identityOf(s.token) !== s.identity) return { keep: false, reason: 'token revoked' };
  if (s.kind === 'connect-udp') {
    const t = s.udpTarget;
    if (!config.connectUdp.enabled) return { keep: false, reason: 'CONNECT-UDP disabled' };
    if (t === null || !udpTargetAllowed(config, t.host, t.port)) return { keep: false, reason: 'target no longer in connectUdp.targets' };
    const a = s.udpAddress;
    if (a === null || !p.allows(IPPROTO.UDP, a, 0, a.length, t.port)) return { keep: false, reason: 'policy no longer allows UDP to the target' };
    const bad = prohibitedDestination(a.length === 4 ? 4 : 6, a, 0, udpAllowance(config), ownAddresses);
    if (bad !== null) return { keep: false, reason: `target now prohibited: ${bad}` };
  }
  return { keep: true, policy: p };
}

/** Whether `connectUdp.targets` lists host:port (the host as the client wrote it). */
export function udpTargetAllowed(config: GatewayConfig, host: string, port: number): boolean {
  for (const t of config.connectUdp.targets) {
    if (t.host !== host) continue;
    for (const p of t.ports) if (port >= p.from && port <= p.to) return true;
  }
  return false;
}

/** The RFC 9298 §7 classes CONNECT-UDP targets may be in despite the shared rule (`connectUdp.allowLocalTargets`); never the gateway's own addresses. */
export function udpAllowance(config: GatewayConfig): DestinationAllowance | undefined {
  return config.connectUdp.allowLocalTargets ? { loopback: true, linkLocal: true, multicast: true, broadcast: true } : undefined;
}
