/*
 * mtun native addon: shared helpers for argument checking, errors and
 * per-environment scratch memory. Every entry point validates its arguments
 * and throws a JS error instead of crashing.
 */
#ifndef MTUN_COMMON_H
#define MTUN_COMMON_H

#ifndef NAPI_VERSION
#define NAPI_VERSION 8
#endif
#include <node_api.h>
#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include <sys/socket.h>
#include <netinet/in.h>

/* Largest batch accepted by any call (Linux UIO_MAXIOV bounds sendmmsg/recvmmsg). */
#define MTUN_MAX_BATCH 1024

/*
 * Bytes per address slot (must equal ADDR_SLOT_BYTES in src/net/udp.ts):
 * [0,16) peer address (IPv4 as ::ffff:a.b.c.d), [16,18) peer port (big-endian),
 * [18,20) reserved, [20,36) local address (IPv4-mapped; all-zero = unspecified).
 */
#define MTUN_ADDR_SLOT 36
/* Offset of the local address in a slot; bytes compared for "same peer". */
#define MTUN_SLOT_LOCAL 20
#define MTUN_SLOT_PEER_BYTES 18

/* Scratch arrays for one recvmmsg/sendmmsg call, one set per napi_env. */
struct mtun_scratch {
  struct mmsghdr msgs[MTUN_MAX_BATCH];
  struct iovec iov[MTUN_MAX_BATCH];
  struct sockaddr_in6 names[MTUN_MAX_BATCH];
  /*
   * recv: room for UDP_GRO (an int) plus IP_PKTINFO and IPV6_PKTINFO (a
   * dual-stack socket may get both for one IPv4 datagram). send: UDP_SEGMENT
   * (a u16) plus one IP_PKTINFO or IPV6_PKTINFO.
   */
  union {
    char buf[CMSG_SPACE(sizeof(int)) + CMSG_SPACE(sizeof(struct in_pktinfo)) + CMSG_SPACE(sizeof(struct in6_pktinfo))];
    struct cmsghdr align;
  } ctrl[MTUN_MAX_BATCH];
  /* send: first slot of each message, slots it covers, and whether it carries UDP_SEGMENT. */
  uint32_t msg_slot[MTUN_MAX_BATCH];
  uint32_t msg_nslots[MTUN_MAX_BATCH];
  bool msg_gso[MTUN_MAX_BATCH];
  /* Buffer data pointers and lengths of the batch's slots. */
  uint8_t *ptrs[MTUN_MAX_BATCH];
  size_t lens[MTUN_MAX_BATCH];
};

/* Indexes into the Float64Array of UDP counters (mirrored in src/net/native-udp.ts). */
enum {
  US_RX_DATAGRAMS, /* slots received (a GRO slot counts once) */
  US_RX_BYTES,
  US_TX_DATAGRAMS, /* datagrams handed to the kernel (GSO segments counted one by one) */
  US_TX_BYTES,
  US_RX_TRUNCATED, /* datagrams larger than their slot, dropped */
  US_TX_ERRORS,    /* datagrams dropped because the kernel refused them (last errno below) */
  US_TX_EAGAIN,    /* send batches cut short by a full socket buffer */
  US_TX_GSO_SENDS, /* messages sent with UDP_SEGMENT */
  US_TX_LAST_ERRNO,
  US_GSO_FAILED, /* set to 1 when the kernel rejected GSO (EIO): caller turns it off */
  US_GSO_REFUSED, /* GSO sends the kernel refused with EIO (the path cannot segment): their datagrams went one by one */
  US_COUNT
};

/* Writes the peer part of an address slot ([0, 20)) from a socket address (sin6_family AF_INET or AF_INET6). */
void mtun_name_to_slot(const struct sockaddr_in6 *name, uint8_t *slot);

/* udpRecv without N-API (udp.c): one recvmmsg; count, 0 when nothing waits, or -errno. */
int32_t mtun_udp_recv(int fd, uint8_t *const *ptrs, const size_t *lens, uint32_t n, uint32_t *sizes, uint8_t *addrs,
                      uint32_t *segs, double *stats, struct mtun_scratch *s);

/* udpSend without N-API (udp.c): see there. */
uint32_t mtun_udp_send(int fd, int family, uint8_t *const *ptrs, uint32_t *sizes, const uint32_t *segs,
                       const uint8_t *addrs, uint32_t count, bool auto_gso, double *stats, struct mtun_scratch *s);

/* The table behind a judgeTable handle (judge-napi.c), borrowed; NULL when v is not one. */
struct mj_table;
struct mj_table *mj_table_of(napi_env env, napi_value v);

/* Returns the scratch block of this env (allocated at module init). */
struct mtun_scratch *mtun_scratch_of(napi_env env);

/* Throws Error("<prefix>: <what>: <strerror>") with .code = "EXXX" and .errno. Returns NULL. */
napi_value mtun_throw_errno(napi_env env, const char *prefix, const char *what, int err);
/*
 * Version of the JS <-> addon calling convention, exported as `abi` and
 * checked by src/native/addon.ts (NATIVE_ABI): bump both when an argument or
 * export changes, so a build left over from another checkout fails loudly
 * instead of misreading arguments. 2: read batches as arenas, QUIC byte
 * ranges, mallocStats. 3: quicOutBatch + quicDrain (a connection drained into the send batch in one call).
 * 4: judgeTable + judgeBatch (the native CONNECT-IP checks). 5: quicInfo of 12 (CoDel drops),
 * codelQueue. 6: dp* (the agent's TUN → UDP thread, dataplane.c). 8: UDP stats of 11 (US_GSO_REFUSED).
 * 9: quicSetPeer became quicSetRecvFrom (a datagram's source no longer moves the connection) and quicPeer (into an address slot); quicInfo of 13.
 * 10: judge tables flag 0x200 (cloud metadata endpoints allowed). 11: dpStats of 24 (DP_S_RX_GRO).
 * 12: quicTrimIdle (the gateway frees an idle connection's DATAGRAM rings without a keep-alive).
 * 13: quicDgramRecvBatch (a receive batch's DATAGRAMs in one call). 14: quicRecvSegments (a GRO train in one call).
 */
#define MTUN_ABI 16

/* Throws TypeError("<msg>") with .code = "ERR_INVALID_ARG". Returns NULL. */
napi_value mtun_throw_type(napi_env env, const char *msg);

/* Argument helpers: each returns false after throwing a TypeError naming the argument. */
bool mtun_arg_u32(napi_env env, napi_value v, const char *name, uint32_t *out);
bool mtun_arg_i32(napi_env env, napi_value v, const char *name, int32_t *out);
bool mtun_arg_bool(napi_env env, napi_value v, const char *name, bool *out);
/* Copies a string argument into buf (NUL-terminated); false when not a string or too long. */
bool mtun_arg_str(napi_env env, napi_value v, const char *name, char *buf, size_t cap, size_t *len);
/* Typed-array argument of the given type; data and element count out. */
bool mtun_arg_typed(napi_env env, napi_value v, napi_typedarray_type type, const char *name, void **data,
                    size_t *len);
/* Optional Float64Array (undefined/null allowed: *data = NULL). */
bool mtun_arg_stats(napi_env env, napi_value v, double **data, size_t *len);
/* Array of Buffers/Uint8Arrays: fills ptrs[i], lens[i] for i < n (array must hold at least n). */
bool mtun_arg_bufs(napi_env env, napi_value arr, uint32_t n, const char *name, uint8_t **ptrs, size_t *lens);
/* Length of a JS array argument. */
bool mtun_arg_array_len(napi_env env, napi_value v, const char *name, uint32_t *len);

/*
 * A read batch's slots, given either as an Array of Buffers (one napi lookup
 * per slot: about 0.12 us each, 7.5 us for 64 slots, on every call, even one
 * that finds nothing to read) or, with stride > 0, as one Buffer holding the
 * slots back to back, `stride` bytes each (one lookup for the batch). begin
 * reads the argument and the slot count; fill sets ptrs/lens of the first n.
 */
struct mtun_slots {
  napi_value v;
  uint32_t stride;
  uint8_t *base;
  uint32_t count;
};
bool mtun_arg_slots_begin(napi_env env, napi_value v, napi_value stride, const char *name, struct mtun_slots *out);
bool mtun_arg_slots_fill(napi_env env, const struct mtun_slots *s, uint32_t n, const char *name, uint8_t **ptrs,
                         size_t *lens);

napi_value mtun_u32(napi_env env, uint32_t v);
napi_value mtun_i32(napi_env env, int32_t v);

/* Module parts: each registers its functions on exports. */
bool mtun_tun_init(napi_env env, napi_value exports);
bool mtun_udp_init(napi_env env, napi_value exports);
bool mtun_poll_init(napi_env env, napi_value exports);
/* QUIC engine over ngtcp2 + GnuTLS (quic-napi.c). */
bool mtun_quic_init(napi_env env, napi_value exports);
/* Native CONNECT-IP checks (judge-napi.c). */
bool mtun_judge_init(napi_env env, napi_value exports);
/* CoDel state machine, for tests (codel-napi.c). */
bool mtun_codel_init(napi_env env, napi_value exports);
bool mtun_dataplane_init(napi_env env, napi_value exports);

/* Helper for registration. */
bool mtun_export_fn(napi_env env, napi_value exports, const char *name, napi_callback cb);
/*
 * Calls the function behind `ref` with the global object as receiver, as a
 * libuv callback: napi_make_callback in `actx`, so the microtasks and
 * nextTicks it queues run when it returns; a throw becomes an uncaught
 * exception. The caller holds an open handle scope.
 */
void mtun_make_callback(napi_env env, napi_ref ref, napi_async_context actx, size_t argc, const napi_value *argv);

#define MTUN_ARGS(n)                                                          \
  size_t argc = (n);                                                          \
  napi_value argv[(n) > 0 ? (n) : 1];                                         \
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) {     \
    return mtun_throw_type(env, "mtun: cannot read arguments");               \
  }

#endif
