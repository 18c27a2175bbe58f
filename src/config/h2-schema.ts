/**
 * Config keys of the HTTP/2 fallback (issue #15, docs/http2-fallback.md):
 * `h2` in the gateway and agent files.
 */
import { z } from 'zod';
import { intIn } from './values.js';

const ms = (min: number, max: number) => intIn(min, max, 'a duration in milliseconds');
const bytes = (min: number, max: number) => intIn(min, max, 'a byte count');

/**
 * Bytes of DATAGRAM capsules that may wait for the outer TCP connection;
 * past this a packet is dropped (counted) instead of queued, so inner TCP
 * sees loss, not a growing delay. 1 MiB drains in ≤ 210 ms down to
 * 40 Mbit/s, under the 200 ms minimum RTO of inner Linux TCP, and absorbs
 * the TUN's bursts (docs/http2-fallback.md has the measurement).
 */
const sendQueueBytes = bytes(4_096, 64 * 1024 * 1024).default(1024 * 1024);

/** Gateway `h2`: also listen on TCP (TLS 1.3, ALPN h2) on the QUIC port's number. */
export const gatewayH2Schema = z.strictObject({
  enabled: z.boolean().default(true),
  /** Largest capsule value accepted on a request stream; a larger one resets it with ENHANCE_YOUR_CALM. */
  maxCapsuleBytes: bytes(1_500, 1024 * 1024).default(65_536),
  sendQueueBytes,
}).prefault({});

/** Agent `h2`: race HTTP/3 against HTTP/2, fall back when QUIC fails, probe HTTP/3 and return. */
export const agentH2Schema = z.strictObject({
  enabled: z.boolean().default(true),
  /** How long HTTP/3 leads the race before HTTP/2 starts too (Happy Eyeballs, RFC 8305 §5 spirit). */
  fallbackDelayMs: ms(0, 60_000).default(1_000),
  /** With a tunnel over HTTP/3: nothing received from the gateway for this long (while keepalives go out) means QUIC failed. */
  quicDeadAfterMs: ms(300, 60_000).default(1_000),
  /** With a tunnel over HTTP/2: how often HTTP/3 is tried in the background. */
  probeIntervalMs: ms(1_000, 3_600_000).default(10_000),
  sendQueueBytes,
}).prefault({});
