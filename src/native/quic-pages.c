/*
 * mtun QUIC engine: the memory allocator ngtcp2 connections use (ngtcp2_mem).
 *
 * ngtcp2 0.12 keeps its per-connection trees and object pools in blocks of
 * 4-12 KiB (a skip-list block holds room for dozens of nodes, an object pool
 * block for 64 frames or sent packets) and fills each from its start. An idle
 * connection uses the first few hundred bytes of most of them. From glibc's
 * heap those blocks are resident whole, and they were most of a session's
 * memory (issue #17).
 *
 * So malloc requests of QP_MIN_BYTES .. QP_MAX_PAGES pages are served here
 * in whole pages, from one address range reserved at first use
 * (MAP_NORESERVE: the kernel backs a page only when it is first written). A
 * block's untouched tail costs nothing. A freed block is given back whole
 * (MADV_DONTNEED) and goes on its size's free stack. calloc stays
 * glibc's: ngtcp2 callocs the structures it fills whole (the connection
 * itself), where whole pages would only add slack. So does everything else,
 * and everything once the range is used up or could not be reserved.
 *
 * Measured (1,000 in-memory connection pairs with H3-like streams and
 * DATAGRAMs, RSS per pair): glibc 187 kB, this pool 165 kB, with calloc left
 * to glibc 157 kB (the TLS changes of the same commit included in both).
 *
 * Thread-safe (one mutex): blocks are taken and freed when connections open
 * and close and when a tree grows, not per packet.
 */
#include "quic-engine.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define QP_PAGE 4096u
#define QP_MIN_BYTES 4096u                   /* smaller: glibc (a page each would waste more than it saves) */
#define QP_MAX_PAGES 16u                     /* larger: glibc */
#define QP_CHUNK (1u << 20)                  /* address range handed to one block size at a time */
#define QP_RESERVE ((size_t)8 << 30)         /* address space only: 8 GiB, about 90,000 connections */
#define QP_CHUNKS (QP_RESERVE / QP_CHUNK)

struct qp_class {
  /* Freed blocks, wholly given back to the kernel (MADV_DONTNEED): the stack
   * lives outside them (glibc), so a freed block holds no resident page. */
  void **free;
  size_t nfree, capfree;
  uint8_t *bump, *end;
};

static pthread_mutex_t qp_mu = PTHREAD_MUTEX_INITIALIZER;
static uint8_t *qp_base;      /* the reserved range; NULL: not yet reserved */
static bool qp_failed;        /* reservation or a chunk's mprotect refused: no new chunks, glibc serves the rest */
static size_t qp_chunks_used; /* chunks handed out from qp_base */
static uint8_t qp_chunk_pages[QP_CHUNKS]; /* block size (pages) of each chunk */
static struct qp_class qp_classes[QP_MAX_PAGES + 1];
static size_t qp_in_use; /* bytes of blocks handed out (whole pages) */

/*
 * The range is reserved inaccessible (PROT_NONE: no commit charge even under
 * vm.overcommit_memory=2 or a tight RLIMIT_AS) and each chunk made writable
 * when first handed out. Transparent huge pages are refused for it: a huge
 * page would back a whole 2 MiB of mostly untouched block tails.
 */
static bool qp_reserve(void) {
  if (qp_base != NULL) return true;
  if (qp_failed) return false;
  void *p = mmap(NULL, QP_RESERVE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) {
    qp_failed = true; /* glibc serves everything */
    return false;
  }
  (void)madvise(p, QP_RESERVE, MADV_NOHUGEPAGE); /* fails only where THP does not exist */
  __atomic_store_n(&qp_base, (uint8_t *)p, __ATOMIC_RELEASE);
  return true;
}

/* Anything inside the reservation is ours: glibc never hands out addresses in our mapping. */
static bool qp_owns(const void *p) {
  const uint8_t *b = __atomic_load_n(&qp_base, __ATOMIC_ACQUIRE);
  return b != NULL && (const uint8_t *)p >= b && (const uint8_t *)p < b + QP_RESERVE;
}

static uint32_t qp_pages_of(const void *p) { return qp_chunk_pages[((const uint8_t *)p - qp_base) / QP_CHUNK]; }

/* A block of `pages` pages, or NULL (the caller falls back to glibc). */
static void *qp_take(uint32_t pages) {
  void *r = NULL;
  pthread_mutex_lock(&qp_mu);
  struct qp_class *k = &qp_classes[pages];
  if (k->nfree > 0) {
    r = k->free[--k->nfree];
  } else {
    size_t bytes = (size_t)pages * QP_PAGE;
    if (k->bump == NULL || (size_t)(k->end - k->bump) < bytes) {
      uint8_t *chunk = NULL;
      if (!qp_failed && qp_reserve() && qp_chunks_used < QP_CHUNKS) {
        chunk = qp_base + qp_chunks_used * QP_CHUNK;
        /* Writable now; refused (commit limit): the pool stops growing, glibc takes over. */
        if (mprotect(chunk, QP_CHUNK, PROT_READ | PROT_WRITE) != 0) {
          qp_failed = true;
          chunk = NULL;
        }
      }
      if (chunk != NULL) {
        k->bump = chunk;
        k->end = chunk + QP_CHUNK;
        qp_chunk_pages[qp_chunks_used++] = (uint8_t)pages;
      } else {
        k->bump = k->end = NULL;
      }
    }
    if (k->bump != NULL) {
      r = k->bump;
      k->bump += bytes;
    }
  }
  if (r != NULL) qp_in_use += (size_t)pages * QP_PAGE;
  pthread_mutex_unlock(&qp_mu);
  return r;
}

static void qp_give(void *p) {
  uint32_t pages = qp_pages_of(p);
  /* Every page back to the kernel: zero, and unbacked, until written again. */
  madvise(p, (size_t)pages * QP_PAGE, MADV_DONTNEED);
  pthread_mutex_lock(&qp_mu);
  struct qp_class *k = &qp_classes[pages];
  if (k->nfree == k->capfree) {
    size_t ncap = k->capfree == 0 ? 256 : k->capfree * 2;
    void **n = realloc(k->free, ncap * sizeof *n);
    if (n != NULL) {
      k->free = n;
      k->capfree = ncap;
    }
  }
  /* No room to remember it (out of memory): the block stays unbacked and unused, address space only. */
  if (k->nfree < k->capfree) k->free[k->nfree++] = p;
  qp_in_use -= (size_t)pages * QP_PAGE;
  pthread_mutex_unlock(&qp_mu);
}

static uint32_t qp_pages_for(size_t size) {
  if (size < QP_MIN_BYTES || size > (size_t)QP_MAX_PAGES * QP_PAGE) return 0;
  return (uint32_t)((size + QP_PAGE - 1) / QP_PAGE);
}

static void *qp_malloc(size_t size, void *user_data) {
  (void)user_data;
  uint32_t pages = qp_pages_for(size);
  void *p = pages != 0 ? qp_take(pages) : NULL;
  return p != NULL ? p : malloc(size);
}

static void *qp_calloc(size_t nmemb, size_t size, void *user_data) {
  (void)user_data;
  return calloc(nmemb, size);
}

static void qp_free(void *ptr, void *user_data) {
  (void)user_data;
  if (ptr == NULL) return;
  if (qp_owns(ptr))
    qp_give(ptr);
  else
    free(ptr);
}

static void *qp_realloc(void *ptr, size_t size, void *user_data) {
  if (ptr == NULL) return qp_malloc(size, user_data);
  /* A glibc block stays glibc's (moving it here would need its old size). */
  if (!qp_owns(ptr)) return realloc(ptr, size);
  size_t have = (size_t)qp_pages_of(ptr) * QP_PAGE;
  if (size <= have && size >= QP_MIN_BYTES) return ptr;
  void *n = qp_malloc(size, user_data);
  if (n == NULL) return NULL;
  memcpy(n, ptr, size < have ? size : have);
  qp_give(ptr);
  return n;
}

const ngtcp2_mem qe_pages_mem = {
    .user_data = NULL,
    .malloc = qp_malloc,
    .free = qp_free,
    .calloc = qp_calloc,
    .realloc = qp_realloc,
};

size_t qe_pages_in_use(void) {
  pthread_mutex_lock(&qp_mu);
  size_t n = qp_in_use;
  pthread_mutex_unlock(&qp_mu);
  return n;
}
