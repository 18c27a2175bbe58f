/**
 * The cross-end flow ID: a value the agent and the gateway compute
 * identically for the same flow from what both see on the wire, so their
 * records can be joined without talking to each other.
 *
 * flowId = hex(first 8 bytes of HMAC-SHA-256(key, input)), where input is
 *   "mtun-flow-id/1" ‖ proto (1 byte) ‖ IP version (1) ‖ A address (16) ‖
 *   B address (16) ‖ A port (2) ‖ B port (2) ‖ ISN flag (1) ‖ ISN (4),
 * addresses IPv4 in the first 4 bytes then zeros, integers big-endian.
 * With the initiator's ISN (TCP whose SYN or SYN-ACK was seen), A is the
 * initiator and B the responder, ISN flag 1: the ID is unique per connection
 * (ISNs are random per RFC 9293 §3.4.1). Without it (UDP, ICMP, TCP picked up
 * mid-stream) the two endpoints are put in canonical order (lower address,
 * then lower port, first), ISN flag 0 and ISN 0: the ID names the 5-tuple, and
 * a reused tuple repeats it (join on the ID and the nearest first-seen time).
 * The key is public by default ({@link DEFAULT_FLOW_ID_KEY}); operators who do
 * not want IDs computable from a tuple configure the same secret key at both
 * ends. Computed once per record (allocates), never per packet.
 */
import { createHmac } from 'node:crypto';

/** The default HMAC key: public, so any two ends (and offline tools) agree without configuration. */
export const DEFAULT_FLOW_ID_KEY: Uint8Array = Buffer.from('mtun flow id key, public default');

const DOMAIN = Buffer.from('mtun-flow-id/1');

/**
 * The flow ID of a tuple. `a` / `b` are 4 big-endian words each (IPv4 in the
 * first word). `isn` is the initiator's ISN or -1 when unknown. Allocates.
 */
export function computeFlowId(key: Uint8Array, proto: number, ipVersion: number,
  a: ArrayLike<number>, aPort: number, b: ArrayLike<number>, bPort: number, isn: number): string {
  let swap = false;
  if (isn < 0) {
    for (let w = 0; w < 4 && !swap; w++) {
      if (a[w] !== b[w]) { swap = a[w]! > b[w]!; break; }
      if (w === 3) swap = aPort > bPort;
    }
  }
  const m = Buffer.alloc(43);
  m[0] = proto;
  m[1] = ipVersion;
  const x = swap ? b : a;
  const y = swap ? a : b;
  for (let w = 0; w < 4; w++) {
    m.writeUInt32BE(x[w]! >>> 0, 2 + 4 * w);
    m.writeUInt32BE(y[w]! >>> 0, 18 + 4 * w);
  }
  m.writeUInt16BE(swap ? bPort : aPort, 34);
  m.writeUInt16BE(swap ? aPort : bPort, 36);
  m[38] = isn < 0 ? 0 : 1;
  m.writeUInt32BE(isn < 0 ? 0 : isn >>> 0, 39);
  return createHmac('sha256', key).update(DOMAIN).update(m).digest().subarray(0, 8).toString('hex');
}
