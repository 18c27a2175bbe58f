/* CoDel (RFC 8289 §5) state machine; see codel.h. */
#include "codel.h"

#include <math.h>

/* RFC 8289 §5.5: the next drop, interval / √count after t. */
static uint64_t control_law(uint64_t t, const struct mc_params *p, uint32_t count) {
  return t + (uint64_t)((double)p->interval_ns / sqrt((double)count));
}

bool mc_should_drop(struct mc_state *s, const struct mc_params *p, uint64_t sojourn_ns, uint64_t now_ns, bool queue_small) {
  if (p->target_ns == 0) return false;
  bool ok_to_drop = false;
  /* §5.4 (dodequeue): above target for a whole interval. */
  if (sojourn_ns < p->target_ns || queue_small) {
    s->first_above = 0;
  } else if (s->first_above == 0) {
    s->first_above = now_ns + p->interval_ns;
  } else if (now_ns >= s->first_above) {
    ok_to_drop = true;
  }
  /* §5.5 (dequeue, dropping state). */
  if (s->dropping) {
    if (!ok_to_drop) {
      s->dropping = false;
      return false;
    }
    if (now_ns >= s->drop_next) {
      s->count++;
      s->drop_next = control_law(s->drop_next, p, s->count);
      return true;
    }
    return false;
  }
  if (!ok_to_drop) return false;
  /* §5.6: entering the dropping state; resume near the last rate if it was recent. */
  s->dropping = true;
  uint32_t delta = s->count - s->last_count;
  s->count = delta > 1 && (int64_t)(now_ns - s->drop_next) < (int64_t)(16 * p->interval_ns) ? delta : 1;
  s->last_count = s->count;
  s->drop_next = control_law(now_ns, p, s->count);
  return true;
}
