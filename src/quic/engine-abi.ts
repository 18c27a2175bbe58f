/**
 * The index layout of the arrays the QUIC engine (src/native/quic-napi.c)
 * and TypeScript share: a drain's state and a connection's snapshot. A
 * module of its own, importing nothing, so that both engine.ts (the
 * interface, which re-exports it) and ngtcp2.ts (the adapter engine.ts
 * loads) read the same names.
 */

/**
 * Indices of the Float64Array a drain shares with the endpoint (given to
 * `outBatch`). In: NEXT (first free slot), SEG/SEGS (the open GSO train in
 * slot NEXT-1 if it is this connection's: segment size and count, else 0),
 * BUDGET (packets), GSO (1 = trains allowed). Out: NEXT, SEG, SEGS updated;
 * WHY (0 nothing more to send, 1 batch full, 2 budget spent), PKTS (packets
 * written), TIMEOUT (µs to the next deadline, -1 none), CLOSED (1 = reap).
 */
export const DRAIN_NEXT = 0;
export const DRAIN_SEG = 1;
export const DRAIN_SEGS = 2;
export const DRAIN_BUDGET = 3;
export const DRAIN_GSO = 4;
export const DRAIN_WHY = 5;
export const DRAIN_PKTS = 6;
export const DRAIN_TIMEOUT = 7;
export const DRAIN_CLOSED = 8;
export const DRAIN_STATE_LENGTH = 9;
export const DRAIN_WHY_DONE = 0;
export const DRAIN_WHY_FULL = 1;

/**
 * Indices of {@link EngineConnection.snapshot}: 1/0 flags unless noted
 * (quicInfo in src/native/quic-napi.c).
 */
export const INFO_ESTABLISHED = 0;
export const INFO_RESUMED = 1;
export const INFO_DRAINING = 2;
export const INFO_CLOSED = 3;
export const INFO_TIMED_OUT = 4;
export const INFO_STREAM_READABLE = 5;
/** Count of received DATAGRAMs waiting. */
export const INFO_DGRAM_RECV_QUEUED = 6;
/** Count of DATAGRAMs waiting to be sent. */
export const INFO_DGRAM_SEND_QUEUED = 7;
export const INFO_DGRAM_RECV_FULL = 8;
/** Largest DATAGRAM payload that fits now; -1 when none can be sent. */
export const INFO_DGRAM_MAX = 9;
/** Received DATAGRAMs dropped because the queue was full (count). */
export const INFO_DGRAM_RECV_DROPPED = 10;
/** DATAGRAMs CoDel dropped from the send queue because they waited too long (count; setDgramQueueDelay). */
export const INFO_DGRAM_SEND_DELAY_DROPPED = 11;
/**
 * Changes when the engine moved the connection to another path (an
 * authenticated packet from a new address, RFC 9000 §9.3, or back after a
 * failed validation): where it sends is then read again.
 */
export const INFO_PEER_GEN = 12;
/** Length of the snapshot array. */
export const INFO_LENGTH = 13;
