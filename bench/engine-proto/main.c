/* engine-proto: runs the server and client threads, opens the measure window
 * after the handshake and a warm-up, and prints one JSON line of results.
 *
 *   engine-proto --certs DIR [--seconds 3] [--warmup 0.3] [--size 1200]
 *                [--port N] [--mtls] [--no-client-cert] [--no-gso] [--no-gro] [--no-pacing]
 *                [--cc cubic|reno|bbr|bbr2]
 *
 * Exit status 0 only when the handshake completed, no side reported an error
 * and every received DATAGRAM had the content its sequence number implies. */
#define _GNU_SOURCE
#include "proto.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void sleep_s(double s) {
  struct timespec t = {.tv_sec = (time_t)s, .tv_nsec = (long)((s - (double)(time_t)s) * 1e9)};
  while (nanosleep(&t, &t) != 0) {
  }
}

static int usage(void) {
  fprintf(stderr, "usage: engine-proto --certs DIR [--seconds S] [--warmup S] [--size BYTES] [--port N] [--mtls] "
                  "[--no-client-cert] [--no-gso] [--no-gro] [--no-pacing] [--cc cubic|reno|bbr|bbr2]\n");
  return 2;
}

/* Cost of the receiver's content check, so it can be taken out of the server's figure. */
static double check_ns(size_t size) {
  uint8_t *p = malloc(size);
  if (!p) return -1;
  payload_fill(p, size, 12345);
  uint64_t sink = 0;
  const int n = 200000;
  double t = thread_cpu_s(); /* CPU time, not wall: the box is shared */
  for (int i = 0; i < n; i++) {
    __asm__ volatile("" : : "r"(p) : "memory"); /* the compiler must re-read the buffer */
    sink += payload_check(p, size);
  }
  double ns = (thread_cpu_s() - t) * 1e9 / n;
  /* The check must catch a single flipped bit anywhere, or the run proves nothing. */
  int catches = payload_check(p, size) == 12345;
  for (size_t i = 0; i < size && catches; i += 97) {
    p[i] ^= 0x10;
    catches = payload_check(p, size) != 12345;
    p[i] ^= 0x10;
  }
  free(p);
  return sink == 0 || !catches ? -1 : ns;
}

static void json_side(const char *name, const struct side_stats *s, double win_s) {
  double per = s->dgrams_win ? 1e6 * s->cpu_win_s / (double)s->dgrams_win : 0;
  double k = s->dgrams_win ? 1e-3 / (double)s->dgrams_win : 0; /* ns total -> us per datagram */
  printf("\"%s\":{\"dgrams\":%llu,\"dgrams_win\":%llu,\"per_s\":%.0f,\"cpu_s\":%.4f,\"cpu_us_per_dgram\":%.3f,"
         "\"split_us\":{\"write\":%.3f,\"send\":%.3f,\"recv_sys\":%.3f,\"read_pkt\":%.3f,\"expiry\":%.3f},"
         "\"udp_sends\":%llu,\"udp_send_segs\":%llu,\"eagain\":%llu,\"udp_recvs\":%llu,\"udp_recv_pkts\":%llu,"
         "\"kernel_drops\":%llu,\"lost_dgrams\":%llu,\"bad_content\":%llu,\"dupes\":%llu,\"max_seq\":%llu,"
         "\"handshake_ok\":%d,\"peer_id\":\"%s\",\"error\":\"%s\"}",
         name, (unsigned long long)s->dgrams, (unsigned long long)s->dgrams_win,
         win_s > 0 ? (double)s->dgrams_win / win_s : 0, s->cpu_win_s, per, (double)s->ns_write * k,
         (double)s->ns_send * k, (double)s->ns_recv_sys * k, (double)s->ns_read_pkt * k,
         (double)s->ns_expiry * k, (unsigned long long)s->udp_sends, (unsigned long long)s->udp_send_segs,
         (unsigned long long)s->udp_eagain, (unsigned long long)s->udp_recvs,
         (unsigned long long)s->udp_recv_pkts, (unsigned long long)s->kernel_drops,
         (unsigned long long)s->lost_dgrams, (unsigned long long)s->bad_content, (unsigned long long)s->dupes,
         (unsigned long long)s->max_seq, s->handshake_ok, s->peer_id, s->error);
}

int main(int argc, char **argv) {
  struct options opt = {.seconds = 3, .warmup_s = 0.3, .dgram_size = 1200, .client_cert = 1, .gso = 1, .gro = 1, .pacing = 1,
                        .cc_algo = NGTCP2_CC_ALGO_CUBIC};
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--seconds") && v) opt.seconds = atof(v), i++;
    else if (!strcmp(a, "--warmup") && v) opt.warmup_s = atof(v), i++;
    else if (!strcmp(a, "--size") && v) opt.dgram_size = (size_t)atol(v), i++;
    else if (!strcmp(a, "--certs") && v) opt.cert_dir = v, i++;
    else if (!strcmp(a, "--port") && v) opt.port = atoi(v), i++;
    else if (!strcmp(a, "--mtls")) opt.mtls = 1;
    else if (!strcmp(a, "--no-client-cert")) opt.client_cert = 0;
    else if (!strcmp(a, "--no-gso")) opt.gso = 0;
    else if (!strcmp(a, "--no-gro")) opt.gro = 0;
    else if (!strcmp(a, "--no-pacing")) opt.pacing = 0;
    else if (!strcmp(a, "--cc") && v) {
      i++;
      if (!strcmp(v, "cubic")) opt.cc_algo = NGTCP2_CC_ALGO_CUBIC;
      else if (!strcmp(v, "reno")) opt.cc_algo = NGTCP2_CC_ALGO_RENO;
      else if (!strcmp(v, "bbr")) opt.cc_algo = NGTCP2_CC_ALGO_BBR;
      else if (!strcmp(v, "bbr2")) opt.cc_algo = NGTCP2_CC_ALGO_BBR2;
      else return usage();
    }
    else return usage();
  }
  /* Bounded: at most 30 s of sending, payload within one 1350-byte packet. */
  if (!opt.cert_dir || opt.seconds <= 0 || opt.seconds > 30 || opt.warmup_s < 0 || opt.warmup_s > 5 ||
      opt.dgram_size < 8 || opt.dgram_size > 1280 || opt.port < 0 || opt.port > 65535)
    return usage();

  static struct shared sh;
  sh.opt = &opt;
  atomic_store(&sh.phase, PH_WARMUP);
  pthread_t ts, tc;
  pthread_create(&ts, NULL, server_main, &sh);
  pthread_create(&tc, NULL, client_main, &sh);
  /* Wait (bounded) for the handshake, then warm up, then measure. */
  for (int i = 0; i < 700 && !__atomic_load_n(&sh.client.handshake_ok, __ATOMIC_ACQUIRE) &&
                  !sh.client.error[0] && !atomic_load(&sh.server_done);
       i++)
    sleep_s(0.01);
  sleep_s(opt.warmup_s);
  atomic_store(&sh.phase, PH_MEASURE);
  ngtcp2_tstamp t0 = now_ns();
  sleep_s(opt.seconds);
  atomic_store(&sh.phase, PH_STOP);
  double win_s = (double)(now_ns() - t0) / 1e9;
  pthread_join(tc, NULL);
  pthread_join(ts, NULL);

  const struct side_stats *c = &sh.client, *s = &sh.server;
  uint64_t unique = s->dgrams - s->bad_content - s->dupes;
  double loss = c->dgrams ? 100.0 * (1.0 - (double)unique / (double)c->dgrams) : 100.0;
  double gbps = (double)s->dgrams_win * (double)opt.dgram_size * 8 / win_s / 1e9;
  double check = check_ns(opt.dgram_size); /* < 0: the content check is broken */
  printf("{\"engine\":\"ngtcp2-%s+gnutls-%s\",\"size\":%zu,\"seconds\":%.3f,\"gso\":%d,\"gro\":%d,\"pacing\":%d,\"cc\":%d,\"mtls\":%d,"
         "\"delivered_per_s\":%.0f,\"gbps\":%.3f,\"loss_pct\":%.3f,\"unique_received\":%llu,"
         "\"check_ns_per_dgram\":%.1f,\"cwnd\":%llu,\"srtt_us\":%.1f,",
         ngtcp2_version(0)->version_str, gnutls_check_version(NULL), opt.dgram_size, win_s, opt.gso, opt.gro,
         opt.pacing, opt.cc_algo, opt.mtls, (double)s->dgrams_win / win_s, gbps, loss, (unsigned long long)unique,
         check, (unsigned long long)c->cwnd, (double)c->srtt_ns / 1e3);
  json_side("client", c, win_s);
  putchar(',');
  json_side("server", s, win_s);
  printf("}\n");
  int ok = c->handshake_ok && s->handshake_ok && !c->error[0] && !s->error[0] && s->bad_content == 0 &&
           s->dgrams_win > 0 && check >= 0;
  return ok ? 0 : 1;
}
