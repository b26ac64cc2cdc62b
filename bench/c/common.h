/* Helpers shared by the C benchmark programs: clock, a control block in
 * shared memory (a plain shmlane byte segment) for coordinating the writer
 * and reader processes, and percentiles. Nothing here is timed. */
#ifndef BENCH_COMMON_H
#define BENCH_COMMON_H

#include <errno.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "shmlane.h"

static inline int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* CPU time of the calling thread: unlike the clock, it stops while the
 * thread is preempted, e.g. by the readers it wakes on a busy machine. */
static inline int64_t cpu_clock_ns(clockid_t clock) {
  struct timespec ts;
  clock_gettime(clock, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static inline int64_t thread_cpu_ns(void) { return cpu_clock_ns(CLOCK_THREAD_CPUTIME_ID); }

/* CPU time of the whole process (every thread, user + system). */
static inline int64_t process_cpu_ns(void) { return cpu_clock_ns(CLOCK_PROCESS_CPUTIME_ID); }

/* What one thread_cpu_ns() pair itself adds to an interval (it is a system
 * call, not a vDSO read): the least of many back-to-back pairs. */
static inline int64_t thread_cpu_overhead_ns(void) {
  int64_t least = INT64_MAX;
  for (int i = 0; i < 1000; i++) {
    int64_t a = thread_cpu_ns(), d = thread_cpu_ns() - a;
    if (d < least) least = d;
  }
  return least;
}

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

static inline void sleep_ns(int64_t ns) {
  struct timespec ts = {(time_t)(ns / 1000000000), (long)(ns % 1000000000)};
  nanosleep(&ts, NULL);
}

/* Until CLOCK_MONOTONIC reads `when`: a schedule that does not drift. */
static inline void sleep_until_ns(int64_t when) {
  struct timespec ts = {(time_t)(when / 1000000000), (long)(when % 1000000000)};
  while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
  }
}

/* Each field on its own cache line: the benchmark's own traffic must not
 * share a line with what is measured. */
struct ctl {
  _Alignas(64) _Atomic uint64_t stamp;   /* writer's clock just before the signal */
  _Alignas(64) _Atomic uint32_t word;    /* futex / spin word */
  _Alignas(64) _Atomic uint64_t acks;    /* readers' acknowledgements */
  _Alignas(64) _Atomic uint64_t ready;   /* readers attached */
  _Alignas(64) _Atomic uint64_t phase;   /* writer's current phase */
  _Alignas(64) _Atomic uint64_t done;    /* writer finished the phase */
};

static inline struct ctl *ctl_map(shl_segment **seg, const char *name, int create) {
  shl_layout layout = {.format = "B", .ndim = 1, .shape = {4096}};
  shl_create_opts opts = {.size = sizeof opts, .flags = SHL_CREATE_REPLACE};
  int rc = create ? shl_create(seg, name, &layout, &opts) : shl_open(seg, name, 0, 1000000000);
  if (rc < 0) {
    fprintf(stderr, "control segment %s: %s\n", name, shl_strerror(rc));
    exit(1);
  }
  return (struct ctl *)shl_payload(*seg);
}

/* Writes n values, one per line, to path (the driver computes statistics). */
static inline void dump(const char *path, const int64_t *v, size_t n) {
  if (!path) return;
  FILE *f = fopen(path, "w");
  if (!f) {
    perror(path);
    exit(1);
  }
  for (size_t i = 0; i < n; i++) fprintf(f, "%lld\n", (long long)v[i]);
  fclose(f);
}

static inline int64_t *alloc_i64(size_t n) {
  int64_t *p = calloc(n ? n : 1, sizeof *p);
  if (!p) {
    perror("calloc");
    exit(1);
  }
  return p;
}

static inline void die_rc(const char *what, int rc) {
  fprintf(stderr, "%s: %s\n", what, shl_strerror(rc));
  exit(1);
}

#endif
