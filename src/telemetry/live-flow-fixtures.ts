/**
 * Test fixture for the live flow view: a {@link LiveFlow} with defaults
 * (an open TCP flow 10.10.0.2 → 10.20.0.2:80). Allocates; tests only.
 */
import type { LiveFlow } from './live-flows.js';

/** A live flow with `p` over the defaults. */
export function liveFlowFixture(p: Partial<LiveFlow> & { srcPort: number }): LiveFlow {
  const src = p.srcAddr ?? '10.10.0.2';
  const dst = p.dstAddr ?? '10.20.0.2';
  return {
    key: `tcp ${src}:${p.srcPort}>${dst}:80`, state: 'open', protocol: 'tcp', src: `${src}:${p.srcPort}`, dst: `${dst}:${p.dstPort ?? 80}`,
    srcAddr: src, dstAddr: dst, dstPort: 80, direction: 'outbound', peerIdentity: 'spiffe://cluster.local/agent/cluster-a',
    sni: null, alpn: null, handshakeRttMs: null, sentBytes: 0, receivedBytes: 0, sentBytesPerSec: 0, receivedBytesPerSec: 0,
    ageMs: 1000, idleMs: 0, closeReason: null, rttToClient: null, rttToServer: null, rttTunnel: null, rtt: null,
    quicVersion: null, quicHandshakeRttMs: null, httpStatus: null, httpFirstByteMs: null, ...p,
  };
}
