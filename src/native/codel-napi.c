/*
 * N-API surface of the CoDel state machine (codel.h), for tests that hold it
 * to RFC 8289's queue-based pseudocode (src/quic/testing/codel-model.ts):
 *
 *   codelQueue(targetUs, intervalUs, enqUs, deqUs, fate, at) -> drops
 *       A FIFO of packets enqueued at enqUs[i] (Float64Array, non-decreasing)
 *       and a link that wants a packet at each deqUs[k] (non-decreasing). At
 *       each, heads are judged as the engine judges its DATAGRAM send queue
 *       (one mc_should_drop per head) until one is sent. fate[i] (Uint8Array): 0 still queued, 1 sent, 2 dropped;
 *       at[i] (Uint32Array): the k that took it.
 */
#include "codel.h"
#include "common.h"

static napi_value codel_queue(napi_env env, napi_callback_info info) {
  MTUN_ARGS(6);
  uint32_t target, interval;
  void *eq, *dq, *fa, *at_;
  size_t n, m, nfa, nat;
  if (argc < 6 || !mtun_arg_u32(env, argv[0], "targetUs", &target) || !mtun_arg_u32(env, argv[1], "intervalUs", &interval) ||
      !mtun_arg_typed(env, argv[2], napi_float64_array, "enqUs", &eq, &n) ||
      !mtun_arg_typed(env, argv[3], napi_float64_array, "deqUs", &dq, &m) ||
      !mtun_arg_typed(env, argv[4], napi_uint8_array, "fate", &fa, &nfa) ||
      !mtun_arg_typed(env, argv[5], napi_uint32_array, "at", &at_, &nat)) {
    return NULL;
  }
  if (nfa != n || nat != n) return mtun_throw_type(env, "codel: fate and at must have one slot per packet");
  if (target == 0 || interval <= target) return mtun_throw_type(env, "codel: need 0 < targetUs < intervalUs");
  const double *enq = eq, *deq = dq;
  for (size_t i = 0; i < n; i++)
    if (!(enq[i] >= 0) || (i > 0 && enq[i] < enq[i - 1])) return mtun_throw_type(env, "codel: enqUs must be non-negative and non-decreasing");
  for (size_t k = 0; k < m; k++)
    if (!(deq[k] >= 0) || (k > 0 && deq[k] < deq[k - 1])) return mtun_throw_type(env, "codel: deqUs must be non-negative and non-decreasing");
  uint8_t *fate = fa;
  uint32_t *at = at_;
  struct mc_params p = {.target_ns = (uint64_t)target * 1000, .interval_ns = (uint64_t)interval * 1000};
  struct mc_state s = {0};
  size_t head = 0, tail = 0;
  uint32_t drops = 0;
  for (size_t i = 0; i < n; i++) fate[i] = 0, at[i] = 0;
  for (size_t k = 0; k < m; k++) {
    uint64_t now = (uint64_t)(deq[k] * 1000);
    while (tail < n && (uint64_t)(enq[tail] * 1000) <= now) tail++;
    while (head < tail) {
      uint64_t sojourn = now - (uint64_t)(enq[head] * 1000);
      bool drop = mc_should_drop(&s, &p, sojourn, now, (uint32_t)(tail - head));
      fate[head] = drop ? 2 : 1;
      at[head] = (uint32_t)k;
      head++;
      if (!drop) break;
      drops++;
    }
  }
  return mtun_u32(env, drops);
}

bool mtun_codel_init(napi_env env, napi_value exports) {
  return mtun_export_fn(env, exports, "codelQueue", codel_queue);
}
