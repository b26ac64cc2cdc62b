/* Wake-up latency, one way: a writer signals, a reader blocked (or spinning)
 * returns. Writer and reader are separate processes started by the driver.
 *
 *   wake reader METHOD NAME ITERS OUT   creates NAME, prints "ready", records
 *                                       latencies (ns) to OUT, one per line
 *   wake writer METHOD NAME ITERS GAP_NS OUT   records the time the signal
 *                                       itself takes (ns) to OUT
 *
 * METHOD: shl   shl_notify -> shl_wait (the library)
 *         shlspin  the same, the reader spinning up to SPIN_NS before it sleeps
 *         futex a raw FUTEX_WAKE -> FUTEX_WAIT on a shared word (the floor for a sleeping reader)
 *         spin  a store -> a reader spinning on the same cache line (the hardware floor)
 *
 * The writer waits for the reader's acknowledgement, sleeps GAP_NS (0.5x to
 * 1.5x, so the reader is asleep again), stamps CLOCK_MONOTONIC and signals;
 * the reader's latency is its clock on return minus that stamp. */
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common.h"

#define SPIN_NS 1000000 /* longer than any gap the driver uses: the reader never sleeps */

static void futex_wait(_Atomic uint32_t *w, uint32_t v) {
  syscall(SYS_futex, (void *)w, FUTEX_WAIT, v, NULL, NULL, 0);
}

static void futex_wake(_Atomic uint32_t *w) {
  syscall(SYS_futex, (void *)w, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

int main(int argc, char **argv) {
  if (argc != 6 && argc != 7) {
    fputs("usage: wake reader METHOD NAME ITERS OUT | writer METHOD NAME ITERS GAP_NS OUT\n", stderr);
    return 2;
  }
  const char *role = argv[1], *method = argv[2], *name = argv[3];
  long iters = atol(argv[4]);
  static const char *const methods[] = {"shl", "futex", "spin", "shlspin"};
  int m = -1;
  for (int i = 0; i < 4; i++)
    if (!strcmp(method, methods[i])) m = i;
  if (m < 0 || iters <= 0) return 2;
  shl_segment *seg;
  if (!strcmp(role, "reader")) {
    struct ctl *c = ctl_map(&seg, name, 1);
    int64_t *lat = alloc_i64((size_t)iters);
    puts("ready");
    fflush(stdout);
    uint64_t v = shl_changes(seg);
    for (long i = 0; i < iters; i++) {
      uint32_t w = (uint32_t)i;
      if (m == 0 || m == 3) {
        shl_wait_opts opts = {.size = sizeof opts, .spin_ns = m == 3 ? SPIN_NS : 0};
        int rc = shl_wait_ex(seg, v, -1, &opts, &v);
        if (rc < 0) die_rc("shl_wait_ex", rc);
      } else if (m == 1) {
        while (atomic_load(&c->word) == w) futex_wait(&c->word, w);
      } else {
        while (atomic_load_explicit(&c->word, memory_order_acquire) == w) cpu_relax();
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
  if (argc != 7) return 2;
  int64_t gap = atoll(argv[5]);
  int64_t *cost = alloc_i64((size_t)iters);
  struct ctl *c = ctl_map(&seg, name, 0);
  srand(1);
  for (long i = 0; i < iters; i++) {
    while (atomic_load(&c->acks) != (uint64_t)i) cpu_relax();
    sleep_ns(gap / 2 + (gap ? rand() % gap : 0));
    int64_t t0 = now_ns();
    atomic_store(&c->stamp, (uint64_t)t0);
    if (m == 0 || m == 3) {
      int rc = shl_notify(seg, NULL);
      if (rc < 0) die_rc("shl_notify", rc);
    } else {
      atomic_fetch_add(&c->word, 1);
      if (m == 1) futex_wake(&c->word);
    }
    cost[i] = now_ns() - t0;
  }
  while (atomic_load(&c->acks) != (uint64_t)iters) cpu_relax();
  dump(argv[6], cost, (size_t)iters);
  shl_close(seg);
  return 0;
}
