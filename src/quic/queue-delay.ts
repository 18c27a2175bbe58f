/**
 * The default of CoDel on each QUIC connection's DATAGRAM send queue
 * (RFC 8289; `src/native/codel.c`): 1 ms target, 10 ms interval (the engine
 * stretches the interval to twice the smoothed RTT on a longer path). The
 * endpoint's `dgramQueueDelay` and the config's `tun.queueDelay` both take
 * their defaults from here. In the lab, with the inner TCP on cubic, it took
 * ping under a bulk transfer from 3.9–6.9 to 2.3–3.3 ms and the transfer's
 * retransmits from 118–886 to 6–15 per 10 s; with BBR inside it gains
 * nothing and its drops cost a few per cent of throughput (BENCHMARKS.md,
 * "Queue delay").
 */
export const DEFAULT_DGRAM_QUEUE_DELAY: Readonly<{ targetUs: number; intervalUs: number }> = Object.freeze({ targetUs: 1_000, intervalUs: 10_000 });
