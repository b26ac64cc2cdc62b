/* Watch the segment demo_publisher writes and print every change.
 *
 *   demo_watcher [name] [max_changes]     (defaults: demo.counter, no limit)
 *
 * It may start first: it waits up to 5 s for the segment to appear. It stops
 * once the publisher has been silent for 2 s, or after max_changes changes. */
#define _POSIX_C_SOURCE 200809L /* nanosleep with -std=c11 */

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "shmlane.h"

#define SECOND 1000000000LL

/* The publisher's struct and format (see demo_publisher.c). */
struct sample {
  uint64_t tick;
  double value;
  float xyz[3];
};
#define FORMAT "T{<Q:tick:<d:value:(3)<f:xyz:4x}"

/* -ENOENT means the publisher has not created it yet: retry for up to 5 s. */
static int open_when_ready(shl_segment **seg, const char *name) {
  int rc = shl_open(seg, name, SHL_OPEN_READONLY, SHL_OPEN_DEFAULT_TIMEOUT_NS);
  for (int i = 0; i < 100 && rc == -ENOENT; i++) {
    nanosleep(&(struct timespec){.tv_nsec = 50000000}, NULL); /* 50 ms */
    rc = shl_open(seg, name, SHL_OPEN_READONLY, SHL_OPEN_DEFAULT_TIMEOUT_NS);
  }
  return rc;
}

int main(int argc, char **argv) {
  const char *name = argc > 1 ? argv[1] : "demo.counter";
  long max_changes = argc > 2 ? atol(argv[2]) : 0;

  /* Read-only: we never write the data. Locking still works. */
  shl_segment *seg;
  int rc = open_when_ready(&seg, name);
  if (rc < 0) {
    fprintf(stderr, "demo_watcher: cannot open %s: %s\n", name, shl_strerror(rc));
    return 1;
  }

  /* The segment describes itself: check it holds what we expect before casting. */
  shl_layout layout;
  shl_get_layout(seg, &layout);
  if (strcmp(layout.format, FORMAT) != 0 || layout.itemsize != sizeof(struct sample)) {
    fprintf(stderr, "demo_watcher: %s holds \"%s\", not a demo sample\n", name, layout.format);
    shl_close(seg);
    return 1;
  }

  uint64_t version = 0; /* so the first wait returns at once if something was published */
  long changes = 0;
  int status = 0;
  while (max_changes == 0 || changes < max_changes) {
    rc = shl_wait(seg, version, 2 * SECOND, &version);
    if (rc == -ETIMEDOUT) {
      printf("no change for 2 s: the publisher has stopped\n");
      break;
    }
    if (rc < 0) {
      fprintf(stderr, "demo_watcher: wait: %s\n", shl_strerror(rc));
      status = 1;
      break;
    }

    /* Copy under the lock, print from the copy: the publisher may already be
     * writing the next sample. */
    struct sample s;
    rc = shl_lock(seg, SECOND);
    if (rc == SHL_E_OWNER_DEAD) {
      printf("the publisher died while updating: this sample may be half-written\n");
    } else if (rc < 0) {
      fprintf(stderr, "demo_watcher: lock: %s\n", shl_strerror(rc));
      status = 1;
      break;
    }
    memcpy(&s, shl_payload(seg), sizeof s);
    shl_unlock(seg);

    changes++;
    printf("version=%llu tick=%llu value=%.1f xyz=(%g, %g, %g)\n", (unsigned long long)version,
           (unsigned long long)s.tick, s.value, s.xyz[0], s.xyz[1], s.xyz[2]);
    fflush(stdout);
  }

  printf("%ld change(s) seen\n", changes);
  shl_close(seg);
  return status;
}
