/*
 * N-API surface of the native CONNECT-IP checks (judge.h):
 *
 *   judgeTable(bytes)  -> handle   a table compiled by src/masque/native-judge.ts;
 *                                  throws TypeError("judge: <why>") on bytes that are not one
 *   judgeBatch(handle, arena, stride, offset, lens, count, out, checkLink) -> count
 *                                  verdict of packet i, arena[i*stride + offset, + lens[i]), into out[i]
 *
 * A handle holds one reference to its table; JavaScript dropping it lets go.
 */
#include "common.h"
#include "judge.h"

#include <stdio.h>
#include <stdlib.h>

#define JUDGE_MAGIC 0x6a756467u

struct judge_handle {
  uint32_t magic;
  struct mj_table *t;
};

static void handle_finalize(napi_env env, void *data, void *hint) {
  struct judge_handle *h = data;
  mj_table_unref(h->t);
  h->magic = 0;
  free(h);
}

/* The table of a handle from judgeTable (borrowed: mj_table_ref it to keep it), or NULL when v is not one. */
struct mj_table *mj_table_of(napi_env env, napi_value v) {
  napi_valuetype vt;
  void *hd = NULL;
  if (napi_typeof(env, v, &vt) != napi_ok || vt != napi_external || napi_get_value_external(env, v, &hd) != napi_ok ||
      hd == NULL || ((struct judge_handle *)hd)->magic != JUDGE_MAGIC)
    return NULL;
  return ((struct judge_handle *)hd)->t;
}

static napi_value judge_table(napi_env env, napi_callback_info info) {
  MTUN_ARGS(1);
  void *d = NULL;
  size_t n = 0;
  if (argc < 1 || !mtun_arg_typed(env, argv[0], napi_uint8_array, "bytes", &d, &n)) return NULL;
  const char *why = NULL;
  struct mj_table *t = mj_table_load(d, n, &why);
  if (t == NULL) {
    char msg[160];
    snprintf(msg, sizeof msg, "judge: %s", why ? why : "bad table");
    return mtun_throw_type(env, msg);
  }
  struct judge_handle *h = malloc(sizeof *h);
  napi_value r;
  if (h == NULL) {
    mj_table_unref(t);
    napi_throw_error(env, NULL, "judge: out of memory");
    return NULL;
  }
  h->magic = JUDGE_MAGIC;
  h->t = t;
  if (napi_create_external(env, h, handle_finalize, NULL, &r) != napi_ok) {
    handle_finalize(env, h, NULL);
    napi_throw_error(env, NULL, "judge: cannot wrap the table");
    return NULL;
  }
  return r;
}

static napi_value judge_batch(napi_env env, napi_callback_info info) {
  MTUN_ARGS(8);
  napi_valuetype vt;
  void *hd = NULL;
  if (argc < 8 || napi_typeof(env, argv[0], &vt) != napi_ok || vt != napi_external ||
      napi_get_value_external(env, argv[0], &hd) != napi_ok || hd == NULL ||
      ((struct judge_handle *)hd)->magic != JUDGE_MAGIC)
    return mtun_throw_type(env, "judge: argument table must be a handle from judgeTable");
  const struct mj_table *t = ((struct judge_handle *)hd)->t;
  void *arena = NULL, *lensv = NULL, *outv = NULL;
  size_t arena_len = 0, nlens = 0, nout = 0;
  uint32_t stride, offset, count;
  bool check_link;
  if (!mtun_arg_typed(env, argv[1], napi_uint8_array, "arena", &arena, &arena_len) ||
      !mtun_arg_u32(env, argv[2], "stride", &stride) || !mtun_arg_u32(env, argv[3], "offset", &offset) ||
      !mtun_arg_typed(env, argv[4], napi_uint32_array, "lens", &lensv, &nlens) ||
      !mtun_arg_u32(env, argv[5], "count", &count) || !mtun_arg_typed(env, argv[6], napi_int32_array, "out", &outv, &nout) ||
      !mtun_arg_bool(env, argv[7], "checkLink", &check_link))
    return NULL;
  if (count > nlens || count > nout) return mtun_throw_type(env, "judge: count exceeds lens or out");
  if (count == 0) return mtun_u32(env, 0);
  const uint32_t *lens = lensv;
  int32_t *out = outv;
  const uint8_t *base = arena;
  for (uint32_t i = 0; i < count; i++) {
    size_t at = (size_t)i * stride + offset;
    if (at > arena_len || lens[i] > arena_len - at || (count > 1 && stride != 0 && offset + lens[i] > stride))
      return mtun_throw_type(env, "judge: a packet runs past its slot or the arena");
    out[i] = mj_judge(t, base + at, lens[i], check_link);
  }
  return mtun_u32(env, count);
}

bool mtun_judge_init(napi_env env, napi_value exports) {
  return mtun_export_fn(env, exports, "judgeTable", judge_table) && mtun_export_fn(env, exports, "judgeBatch", judge_batch);
}
