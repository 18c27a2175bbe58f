/**
 * Transport sizing shared by agent and gateway (tuning constants, not spec).
 */

/**
 * Largest UDP payload QUIC sends and accepts: a 1500-byte underlay MTU minus
 * the IPv6 (40) and UDP (8) headers, so packets fit either address family
 * without fragmentation (DF is set, RFC 9000 §14).
 */
export const MAX_UDP_PAYLOAD_BYTES = 1452;

/**
 * TUN MTU used before the QUIC path is known (the gateway's, and the
 * agent's upper bound): what one DATAGRAM frame carries in a
 * MAX_UDP_PAYLOAD_BYTES packet — short header with 20-byte connection ID,
 * up to 4-byte packet number and 16-byte AEAD tag (41), DATAGRAM frame type
 * and length (3), quarter stream ID (≤ 2) and context ID (1).
 */
export const DEFAULT_TUNNEL_MTU = MAX_UDP_PAYLOAD_BYTES - 41 - 3 - 2 - 1;

/** QUIC max_idle_timeout (RFC 9000 §10.1); agents send keepalives well within it. */
export const QUIC_IDLE_TIMEOUT_MS = 30_000;

/**
 * The HTTP Datagram payload (context ID + IP packet) HTTP/2 tunnels report:
 * what HTTP/3 carries with the default QUIC packet size, so the tunnel MTU,
 * MSS clamp and ICMP limits stay the same when the agent switches transport.
 */
export const H2_DATAGRAM_PAYLOAD_BYTES = DEFAULT_TUNNEL_MTU + 1;

/**
 * Node options the daemons run with (bin/mtun.js's shebang; whoever starts
 * `node bin/mtun.js` passes them: the Dockerfile, the lab, the bench). V8's
 * young generation may grow to 16 MB per semi-space under the data path's
 * allocation rate; capped at 2 MB the daemons' peak RSS under TCP load fell
 * 10–20 MB at the same throughput and CPU (issue #13; 1 MB cost 20 % of the
 * throughput).
 */
export const DAEMON_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=2'];
