/* The producer's copy of a frame into shared memory, as videotestsrc makes
 * it into a sink's slot, after a gap: what makes the copy at 1080p30 paced
 * twice as long as flat out (docs/performance-log.md, issue 26), and
 * whether 2 MiB pages in the shared memory would shorten it.
 *
 *   cold_copy [FRAME_BYTES [FRAMES [ROUNDS [GAP_NS]]]]
 *
 * Defaults: an I420 1920x1080 frame, 60 frames a round, 5 rounds, 33 ms.
 * Each round runs every variant in turn (alternating, as the tables'
 * pairs), each copying FRAMES frames from a private source into one of two
 * slots of a POSIX shared memory object, as a sink's two warmest slots
 * take turns. Variants: no gap; 1 ms asleep; the gap asleep; the gap spinning
 * (no idle state); the gap spinning after a sweep of 32 MiB of private
 * memory (every cache evicted on purpose); the gap slept, into memory
 * collapsed to 2 MiB pages (MADV_COLLAPSE, which tmpfs honours whatever
 * shmem_enabled says). Prints per variant the median of the rounds' p50s
 * and their range, in µs a frame. Nothing is left in /dev/shm. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common.h"

#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25
#endif
#define HUGE_PAGE (2u << 20)
#define SWEEP_BYTES (32u << 20)
#define MAX_ROUNDS 64

enum { NO_GAP, SLEPT_1MS, SLEPT, SPUN, SPUN_SWEPT, HUGE_SLEPT, NVARIANTS };
static const char *const variants[NVARIANTS] = {
    "no gap (flat out)", "1 ms asleep", "the gap asleep", "the gap spinning",
    "the gap spinning, caches swept", "the gap asleep, 2 MiB pages"};

/* Two slots of `slot` bytes (a multiple of HUGE_PAGE) in a shared memory
 * object mapped at a 2 MiB boundary, touched once; collapsed if `huge`. */
static char *map_slots(size_t slot, int huge) {
  char name[64];
  snprintf(name, sizeof name, "/shl-bench-cold.%d.%d", (int)getpid(), huge);
  int fd = shm_open(name, O_CREAT | O_EXCL | O_RDWR, 0600);
  if (fd < 0) die_rc("shm_open", -errno);
  shm_unlink(name); /* the mapping keeps it: nothing left behind */
  if (ftruncate(fd, (off_t)(2 * slot)) != 0) die_rc("ftruncate", -errno);
  char *room = mmap(NULL, 2 * slot + HUGE_PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (room == MAP_FAILED) die_rc("mmap", -errno);
  char *at = (char *)(((uintptr_t)room + HUGE_PAGE - 1) & ~(uintptr_t)(HUGE_PAGE - 1));
  char *p = mmap(at, 2 * slot, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0);
  if (p == MAP_FAILED) die_rc("mmap", -errno);
  close(fd);
  memset(p, 1, 2 * slot);
  if (huge && madvise(p, 2 * slot, MADV_COLLAPSE) != 0) die_rc("MADV_COLLAPSE", -errno);
  return p;
}

static void spin_until(int64_t when) {
  while (now_ns() < when) cpu_relax();
}

static int cmp_i64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return (x > y) - (x < y);
}

static int64_t median(int64_t *v, size_t n) {
  qsort(v, n, sizeof *v, cmp_i64);
  return v[n / 2];
}

/* The p50 of `frames` copies of `variant`, in ns. */
static int64_t run(int variant, char *const dst[2], const char *src, size_t bytes, char *sweep,
                   int frames, int64_t gap, int64_t *t) {
  for (int i = 0; i < frames; i++) {
    if (variant == SLEPT || variant == HUGE_SLEPT) sleep_ns(gap);
    if (variant == SLEPT_1MS) sleep_ns(1000000);
    if (variant == SPUN) spin_until(now_ns() + gap);
    if (variant == SPUN_SWEPT) {
      int64_t end = now_ns() + gap;
      memset(sweep, i, SWEEP_BYTES);
      spin_until(end);
    }
    int64_t t0 = now_ns();
    memcpy(dst[i & 1], src, bytes);
    t[i] = now_ns() - t0;
  }
  return median(t, (size_t)frames);
}

int main(int argc, char **argv) {
  size_t bytes = argc > 1 ? strtoull(argv[1], NULL, 10) : 1920 * 1080 * 3 / 2;
  int frames = argc > 2 ? atoi(argv[2]) : 60;
  int rounds = argc > 3 ? atoi(argv[3]) : 5;
  int64_t gap = argc > 4 ? strtoll(argv[4], NULL, 10) : 33000000;
  if (!bytes || frames < 1 || rounds < 1 || rounds > MAX_ROUNDS || gap < 0) {
    fprintf(stderr, "usage: cold_copy [FRAME_BYTES [FRAMES [ROUNDS(1-%d) [GAP_NS]]]]\n",
            MAX_ROUNDS);
    return 2;
  }
  size_t slot = (bytes + HUGE_PAGE - 1) & ~(size_t)(HUGE_PAGE - 1);
  char *small = map_slots(slot, 0), *huge = map_slots(slot, 1);
  char *const dst_small[2] = {small, small + slot}, *const dst_huge[2] = {huge, huge + slot};
  char *src = malloc(bytes), *sweep = malloc(SWEEP_BYTES);
  int64_t *t = alloc_i64((size_t)frames);
  if (!src || !sweep) die_rc("malloc", -ENOMEM);
  memset(src, 2, bytes);
  memset(sweep, 3, SWEEP_BYTES);
  static int64_t p50[NVARIANTS][MAX_ROUNDS];
  for (int r = 0; r < rounds; r++)
    for (int v = 0; v < NVARIANTS; v++)
      p50[v][r] = run(v, v == HUGE_SLEPT ? dst_huge : dst_small, src, bytes, sweep, frames, gap, t);
  printf("| a copy of %zu bytes after (gap %.1f ms) | p50, µs (rounds' lowest–highest) |\n"
         "| --- | --- |\n",
         bytes, gap / 1e6);
  for (int v = 0; v < NVARIANTS; v++) {
    int64_t mid = median(p50[v], (size_t)rounds); /* sorted: lowest first, highest last */
    printf("| %s | %.0f (%.0f–%.0f) |\n", variants[v], mid / 1e3, p50[v][0] / 1e3,
           p50[v][rounds - 1] / 1e3);
  }
  return 0;
}
