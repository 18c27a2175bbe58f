/*
 * CoDel (RFC 8289) for the DATAGRAM send queue of a QUIC connection: the
 * tunnel's packets wait there when the QUIC path (congestion window, pacing)
 * is slower than the TUN that feeds it, and every flow's packets wait behind
 * a bulk transfer's. At each dequeue the head's sojourn time goes through
 * this state machine; a drop tells the TCP inside the tunnel to slow down
 * before the queue becomes standing delay. Pure: no clock, no allocation
 * (the caller passes times in ns), so a data-plane thread can run it and a
 * test can drive it.
 */
#ifndef MTUN_CODEL_H
#define MTUN_CODEL_H

#include <stdbool.h>
#include <stdint.h>

struct mc_params {
  uint64_t target_ns;   /* acceptable standing queue delay; 0: CoDel off */
  uint64_t interval_ns; /* how long the delay may stay above target before drops start (> target) */
};

struct mc_state {
  uint64_t first_above; /* time the delay, above target since, reaches interval; 0 while below */
  uint64_t drop_next;   /* next drop while dropping */
  uint32_t count;       /* drops since dropping started (the control law's count) */
  uint32_t last_count;
  bool dropping;
};

/*
 * One dequeue: the head waited sojourn_ns; now_ns is the current time;
 * queue_small is true when the head is (about) all that is queued, which
 * RFC 8289 §5.4 treats as below target. True means: drop the head. At most
 * one drop per call (the caller calls again for the next head).
 */
bool mc_should_drop(struct mc_state *s, const struct mc_params *p, uint64_t sojourn_ns, uint64_t now_ns, bool queue_small);

#endif
