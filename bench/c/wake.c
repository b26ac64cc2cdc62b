/* Wake-up latency, one way: a writer signals, a reader blocked (or spinning)
 * returns. Writer and reader are separate processes started by the driver.
 *
 *   wake reader METHOD NAME ITERS OUT   creates NAME, prints "ready", records
 *                                       latencies (ns) to OUT, one per line
 *   wake writer METHOD NAME ITERS GAP_NS OUT [FILL]   records the time the
 *                                       signal itself takes (ns) to OUT
 *
 * METHOD: shl   shl_notify -> shl_wait (the library)
 *         shlspin  the same, the reader spinning up to SPIN_NS before it sleeps
 *         futex a raw FUTEX_WAKE -> FUTEX_WAIT on a shared word (the floor for a sleeping reader)
 *         futexto  the same, the wait with a time-out (a timer armed per wait)
 *         waitv a raw FUTEX_WAKE -> futex_waitv on that word and two more that
 *               never change, with an absolute time-out: how a stream reader
 *               sleeps (its change counter, liveness word, and wake word in
 *               its own memory, a private futex)
 *         spin  a store -> a reader spinning on the same cache line (the hardware floor)
 *
 * The writer waits for the reader's acknowledgement, sleeps GAP_NS (0.5x to
 * 1.5x, so the reader is asleep again; GAP_NS negative: exactly -GAP_NS
 * apart on an absolute schedule, as a camera), copies FILL bytes (default 0)
 * between two private buffers as a stream writer fills a frame (evicting
 * the same caches), stamps CLOCK_MONOTONIC and signals; the reader's latency
 * is its clock on return minus that stamp. */
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common.h"

#define SPIN_NS 1000000 /* longer than any gap the driver uses: the reader never sleeps */
#define TIMEOUT_NS 10000000000LL /* the timed waits' time-out: never reached */
#ifndef SYS_futex_waitv
#define SYS_futex_waitv 449
#endif
#ifndef FUTEX2_PRIVATE
#define FUTEX2_PRIVATE FUTEX_PRIVATE_FLAG
#endif

enum { SHL, FUTEX, FUTEXTO, WAITV, SPIN, SHLSPIN, NMETHODS };
static const char *const methods[NMETHODS] = {"shl", "futex", "futexto", "waitv", "spin", "shlspin"};

static void futex_wait(_Atomic uint32_t *w, uint32_t v, int timed) {
  struct timespec ts = {TIMEOUT_NS / 1000000000, 0};
  syscall(SYS_futex, (void *)w, FUTEX_WAIT, v, timed ? &ts : NULL, NULL, 0);
}

static void futex_wake(_Atomic uint32_t *w) {
  syscall(SYS_futex, (void *)w, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

/* As a stream reader: two shared words and a private one, one absolute
 * time-out. */
static void futex_waitv3(_Atomic uint32_t *w, uint32_t v, _Atomic uint32_t *other,
                         _Atomic uint32_t *own) {
  struct futex_waitv ws[3] = {
      {.val = v, .uaddr = (uintptr_t)w, .flags = FUTEX_32},
      {.val = atomic_load(&other[0]), .uaddr = (uintptr_t)&other[0], .flags = FUTEX_32},
      {.val = atomic_load(own), .uaddr = (uintptr_t)own, .flags = FUTEX_32 | FUTEX2_PRIVATE}};
  int64_t until = now_ns() + TIMEOUT_NS;
  struct timespec ts = {(time_t)(until / 1000000000), (long)(until % 1000000000)};
  syscall(SYS_futex_waitv, ws, 3u, 0u, &ts, CLOCK_MONOTONIC);
}

int main(int argc, char **argv) {
  if (argc < 6 || argc > 8) {
    fputs("usage: wake reader METHOD NAME ITERS OUT | writer METHOD NAME ITERS GAP_NS OUT [FILL]\n",
          stderr);
    return 2;
  }
  const char *role = argv[1], *method = argv[2], *name = argv[3];
  long iters = atol(argv[4]);
  int m = -1;
  for (int i = 0; i < NMETHODS; i++)
    if (!strcmp(method, methods[i])) m = i;
  if (m < 0 || iters <= 0) return 2;
  shl_segment *seg;
  if (!strcmp(role, "reader")) {
    struct ctl *c = ctl_map(&seg, name, 1);
    /* Words that never change: one on a line of its own past the control
     * block, one in this process's memory (a stream reader's wake word). */
    _Atomic uint32_t *other = (_Atomic uint32_t *)((char *)c + 1024);
    static _Atomic uint32_t own;
    int64_t *lat = alloc_i64((size_t)iters);
    puts("ready");
    fflush(stdout);
    uint64_t v = shl_changes(seg);
    for (long i = 0; i < iters; i++) {
      uint32_t w = (uint32_t)i;
      if (m == SHL || m == SHLSPIN) {
        shl_wait_opts opts = {.size = sizeof opts, .spin_ns = m == SHLSPIN ? SPIN_NS : 0};
        int rc = shl_wait_ex(seg, v, -1, &opts, &v);
        if (rc < 0) die_rc("shl_wait_ex", rc);
      } else if (m == SPIN) {
        while (atomic_load_explicit(&c->word, memory_order_acquire) == w) cpu_relax();
      } else {
        while (atomic_load(&c->word) == w) {
          if (m == WAITV) futex_waitv3(&c->word, w, other, &own);
          else futex_wait(&c->word, w, m == FUTEXTO);
        }
      }
      int64_t t1 = now_ns();
      lat[i] = t1 - (int64_t)atomic_load(&c->stamp);
      atomic_store(&c->acks, (uint64_t)i + 1);
    }
    dump(argv[5], lat, (size_t)iters);
    shl_close(seg);
    shl_unlink(name);
    return 0;
  }
  if (argc < 7) return 2;
  int64_t gap = atoll(argv[5]);
  size_t fill = argc == 8 ? (size_t)atoll(argv[7]) : 0;
  unsigned char *from = fill ? malloc(fill) : NULL, *to = fill ? malloc(fill) : NULL;
  if (fill && (!from || !to)) return 1;
  if (fill) memset(from, 7, fill), memset(to, 0, fill);
  int64_t *cost = alloc_i64((size_t)iters);
  struct ctl *c = ctl_map(&seg, name, 0);
  srand(1);
  int64_t next = now_ns();
  for (long i = 0; i < iters; i++) {
    if (gap < 0) sleep_until_ns(next += -gap); /* on a schedule: sleep first, as stream.c */
    while (atomic_load(&c->acks) != (uint64_t)i) cpu_relax();
    if (gap > 0) sleep_ns(gap / 2 + rand() % gap);
    if (fill) memcpy(to, from, fill);
    int64_t t0 = now_ns();
    atomic_store(&c->stamp, (uint64_t)t0);
    if (m == SHL || m == SHLSPIN) {
      int rc = shl_notify(seg, NULL);
      if (rc < 0) die_rc("shl_notify", rc);
    } else {
      atomic_fetch_add(&c->word, 1);
      if (m != SPIN) futex_wake(&c->word);
    }
    cost[i] = now_ns() - t0;
  }
  while (atomic_load(&c->acks) != (uint64_t)iters) cpu_relax();
  dump(argv[6], cost, (size_t)iters);
  free(from);
  free(to);
  shl_close(seg);
  return 0;
}
