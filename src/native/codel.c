/* CoDel (RFC 8289 §5) state machine, one head per call; see codel.h. */
#include "codel.h"

#include <math.h>

bool mc_enabled(const struct mc_params *p) { return p->target_ns > 0 && p->interval_ns > p->target_ns; }

/* RFC 8289 §5.5: the next drop, interval / √count after t. */
static uint64_t control_law(uint64_t t, const struct mc_params *p, uint32_t count) {
  return t + (uint64_t)((double)p->interval_ns / sqrt((double)(count > 0 ? count : 1)));
}

/* §5.4 dodequeue: whether this head may be dropped (it and the queue stood above target for an interval). */
static bool ok_to_drop(struct mc_state *s, const struct mc_params *p, uint64_t sojourn_ns, uint64_t now_ns, uint32_t queued) {
  if (sojourn_ns < p->target_ns || queued <= 2) {
    s->first_above = 0;
    return false;
  }
  if (s->first_above == 0) {
    s->first_above = now_ns + p->interval_ns;
    return false;
  }
  return now_ns >= s->first_above;
}

bool mc_should_drop(struct mc_state *s, const struct mc_params *p, uint64_t sojourn_ns, uint64_t now_ns, uint32_t queued) {
  if (!mc_enabled(p)) return false;
  bool ok = ok_to_drop(s, p, sojourn_ns, now_ns, queued);
  bool after_drop = s->after_drop;
  s->after_drop = false;
  if (s->dropping) {
    /* §5.5 dequeue, dropping state (the loop's body when after_drop: drop, ++count, dodequeue). */
    if (!ok) {
      s->dropping = false;
      return false;
    }
    if (after_drop) s->drop_next = control_law(s->drop_next, p, s->count);
    if (now_ns < s->drop_next) return false;
    s->count++;
    s->after_drop = true;
    return true;
  }
  if (!ok) return false;
  /* §5.5/§5.6: entering the dropping state; resume near the last rate if it was recent. The head
   * after this one is sent whatever it is (the RFC returns it): drop_next lies ahead of now. */
  s->dropping = true;
  uint32_t delta = s->count - s->last_count;
  s->count = delta > 1 && (int64_t)(now_ns - s->drop_next) < (int64_t)(16 * p->interval_ns) ? delta : 1;
  s->drop_next = control_law(now_ns, p, s->count);
  s->last_count = s->count;
  return true;
}
