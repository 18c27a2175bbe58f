/*
 * N-API surface of the CoDel state machine (codel.h), for tests that hold it
 * to the RFC 8289 model in TypeScript (src/quic/testing/codel-model.ts):
 *
 *   codelTrace(targetUs, intervalUs, sojournUs, nowUs, small, out) -> drops
 *       one fresh state; dequeue i waited sojournUs[i] at nowUs[i] (Float64Array),
 *       small[i] (Uint8Array) says the head was all that was queued; out[i] = 1
 *       when CoDel drops it. The packet path calls mc_should_drop directly.
 */
#include "codel.h"
#include "common.h"

static napi_value codel_trace(napi_env env, napi_callback_info info) {
  MTUN_ARGS(6);
  uint32_t target, interval;
  void *so, *no, *sm, *ou;
  size_t nso, nno, nsm, nou;
  if (argc < 6 || !mtun_arg_u32(env, argv[0], "targetUs", &target) || !mtun_arg_u32(env, argv[1], "intervalUs", &interval) ||
      !mtun_arg_typed(env, argv[2], napi_float64_array, "sojournUs", &so, &nso) ||
      !mtun_arg_typed(env, argv[3], napi_float64_array, "nowUs", &no, &nno) ||
      !mtun_arg_typed(env, argv[4], napi_uint8_array, "small", &sm, &nsm) ||
      !mtun_arg_typed(env, argv[5], napi_uint8_array, "out", &ou, &nou)) {
    return NULL;
  }
  if (nno != nso || nsm != nso || nou != nso) return mtun_throw_type(env, "codel: arrays must have one length");
  const double *sojourn = so, *now = no;
  const uint8_t *small = sm;
  uint8_t *out = ou;
  struct mc_params p = {.target_ns = (uint64_t)target * 1000, .interval_ns = (uint64_t)interval * 1000};
  struct mc_state s = {0};
  uint32_t drops = 0;
  for (size_t i = 0; i < nso; i++) {
    if (!(sojourn[i] >= 0 && now[i] >= 0)) return mtun_throw_type(env, "codel: times must be non-negative");
    out[i] = mc_should_drop(&s, &p, (uint64_t)(sojourn[i] * 1000), (uint64_t)(now[i] * 1000), small[i] != 0);
    drops += out[i];
  }
  return mtun_u32(env, drops);
}

bool mtun_codel_init(napi_env env, napi_value exports) {
  return mtun_export_fn(env, exports, "codelTrace", codel_trace);
}
