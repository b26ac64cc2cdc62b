/* Publish a small struct in a named segment ten times a second.
 *
 *   demo_publisher [name] [ticks]      (defaults: demo.counter, 30)
 *
 * Run demo_watcher in another terminal to see each update arrive. */
#define _POSIX_C_SOURCE 200809L /* nanosleep with -std=c11 */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "shmlane.h"

/* What we publish. FORMAT describes it field by field, with standard sizes
 * and explicit padding, so any reader (C, Python, NumPy) can decode it. */
struct sample {
  uint64_t tick;
  double value;
  float xyz[3]; /* followed by 4 bytes of padding */
};
#define FORMAT "T{<Q:tick:<d:value:(3)<f:xyz:4x}"

int main(int argc, char **argv) {
  const char *name = argc > 1 ? argv[1] : "demo.counter";
  int ticks = argc > 2 ? atoi(argv[2]) : 30;

  /* itemsize is checked against FORMAT: a mismatch fails with SHL_E_ITEMSIZE. */
  shl_layout layout = {.format = FORMAT, .itemsize = sizeof(struct sample)};
  /* REPLACE: start afresh even if an old run left the name behind.
   * UNLINK_ON_CLOSE: the name goes away when we are done. */
  shl_create_opts opts = {.size = sizeof(shl_create_opts), .flags = SHL_CREATE_REPLACE | SHL_CREATE_UNLINK_ON_CLOSE};
  shl_segment *seg;
  int rc = shl_create(&seg, name, &layout, &opts);
  if (rc < 0) {
    fprintf(stderr, "demo_publisher: cannot create %s: %s\n", name, shl_strerror(rc));
    return 1;
  }
  struct sample *s = shl_payload(seg);

  int status = 0;
  for (int i = 1; i <= ticks; i++) {
    /* Readers copy the struct under the same lock, so they never see half an update. */
    rc = shl_lock(seg, 1000000000); /* 1 s */
    if (rc == SHL_E_OWNER_DEAD) {
      fprintf(stderr, "demo_publisher: a previous holder died mid-update; overwriting\n");
    } else if (rc < 0) {
      fprintf(stderr, "demo_publisher: lock: %s\n", shl_strerror(rc));
      status = 1;
      break;
    }
    s->tick = (uint64_t)i;
    s->value = i * 0.5;
    s->xyz[0] = (float)i;
    s->xyz[1] = (float)(2 * i);
    s->xyz[2] = (float)(3 * i);
    shl_unlock(seg);

    uint64_t version;
    shl_notify(seg, &version); /* wakes every waiting reader */
    printf("published version=%llu tick=%d value=%.1f\n", (unsigned long long)version, i, i * 0.5);
    fflush(stdout);
    nanosleep(&(struct timespec){.tv_nsec = 100000000}, NULL); /* 100 ms */
  }

  shl_close(seg); /* also unlinks the name (UNLINK_ON_CLOSE) */
  return status;
}
