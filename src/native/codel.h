/*
 * CoDel (RFC 8289) for the DATAGRAM send queue of a QUIC connection: the
 * tunnel's packets wait there when the QUIC path (congestion window, pacing)
 * is slower than the TUN that feeds it, and every flow's packets wait behind
 * a bulk transfer's. At each dequeue the head's sojourn time goes through
 * this state machine; a drop tells the TCP inside the tunnel to slow down
 * before the queue becomes standing delay. Pure: no clock, no allocation
 * (the caller passes times in ns), so a data-plane thread can run it and a
 * test can drive it.
 *
 * RFC 8289's dequeue() takes heads off the queue until it returns one to
 * send, judging each new head (dodequeue) inside one call. Here the caller
 * asks once per head, and `after_drop` carries what the RFC's loop does with
 * the head after a drop in the dropping state (the control law advances only
 * if that head is ok to drop too), so the decisions are the RFC's, head by
 * head: src/quic/codel.test.ts holds them to the RFC's pseudocode. An empty
 * queue needs no call (the RFC's dodequeue of one resets the standing time):
 * a drop needs two packets behind the head, so no drop empties the queue,
 * and the last heads before it empties reset the standing time themselves.
 */
#ifndef MTUN_CODEL_H
#define MTUN_CODEL_H

#include <stdbool.h>
#include <stdint.h>

struct mc_params {
  uint64_t target_ns;   /* acceptable standing queue delay; 0: CoDel off */
  uint64_t interval_ns; /* how long the delay may stay above target before drops start; off unless > target */
};

struct mc_state {
  uint64_t first_above; /* time the delay, above target since, reaches interval; 0 while below */
  uint64_t drop_next;   /* next drop while dropping */
  uint32_t count;       /* drops since dropping started (the control law's count) */
  uint32_t last_count;
  bool dropping;
  bool after_drop; /* the previous head was dropped in the dropping state */
};

/* True when p turns CoDel on: a target, and an interval longer than it. */
bool mc_enabled(const struct mc_params *p);

/*
 * One head: it waited sojourn_ns; now_ns is the current time; queued counts
 * the packets waiting, the head included (RFC 8289 §5.4 treats a queue that
 * after this dequeue holds at most one maximum-size packet as below target:
 * queued <= 2 here, where the engine counts datagrams). True means: drop this
 * head; the caller then asks again for the next head at the same time.
 */
bool mc_should_drop(struct mc_state *s, const struct mc_params *p, uint64_t sojourn_ns, uint64_t now_ns, uint32_t queued);

#endif
