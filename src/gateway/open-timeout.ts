/**
 * The answer to a CONNECT-UDP open that ran past `connectUdp.openTimeoutMs`,
 * as a pure decision: which phase was still running names the error.
 */
import { refuse, type Refusal } from '../masque/proxy-status.js';

/** Where a CONNECT-UDP open was when its deadline passed. */
export type OpenPhase = 'resolving' | 'connecting';

/**
 * 504 with the RFC 9209 §2.3 error type of the phase that timed out:
 * `dns_timeout` while the target's name was being resolved,
 * `connection_timeout` once it had resolved (or was an address) and the
 * socket was being opened.
 */
export function openTimeoutRefusal(phase: OpenPhase, timeoutMs: number): Refusal {
  return phase === 'resolving'
    ? refuse(504, 'dns_timeout', `resolving the target took longer than ${timeoutMs} ms`)
    : refuse(504, 'connection_timeout', `opening the target took longer than ${timeoutMs} ms`);
}
