/* `shmlane top`: every segment, looked at once a second, with the rates
 * between two looks; a table (or a line of JSON) per look. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

enum { FIRST_LOOK_NS = 200000000, REFRESH_NS = 1000000000 };

static void sleep_until(uint64_t when_ns) {
  uint64_t now = clock_ns(CLOCK_MONOTONIC);
  if (when_ns <= now) return;
  uint64_t left = when_ns - now;
  struct timespec ts = {(time_t)(left / 1000000000u), (long)(left % 1000000000u)};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) continue;
}

static void print_json(const struct snapshot *s, uint64_t now) {
  printf("{\"time_ns\": %" PRIu64 ", \"entries\": [", now);
  for (size_t i = 0; i < s->n; i++) {
    if (i) fputs(", ", stdout);
    print_info_json(&s->entries[i], now);
  }
  fputs("]}\n", stdout);
}

int top_run(const struct top_opts *o) {
  bool terminal = !o->json && isatty(STDOUT_FILENO);
  struct snapshot before, now;
  int rc = snapshot_take(&before);
  bool unwritten = false;
  uint64_t next = before.taken_ns + FIRST_LOOK_NS;
  for (unsigned shown = 0; rc == 0 && !unwritten && (o->count == 0 || shown < o->count); shown++) {
    sleep_until(next);
    rc = snapshot_take(&now);
    if (rc < 0) break;
    snapshot_rates(&now, &before);
    snapshot_free(&before);
    before = now;
    next = now.taken_ns + REFRESH_NS;
    uint64_t wall = clock_ns(CLOCK_REALTIME);
    if (o->json) {
      print_json(&now, wall);
    } else {
      if (terminal) fputs("\033[H\033[J", stdout); /* home, clear: each table replaces the last */
      else if (shown) putchar('\n');
      print_top(&now, wall);
    }
    if (fflush(stdout) != 0) {
      unwritten = true;
      errorf(-errno, "cannot write output");
      clearerr(stdout); /* said once, with its reason: main's finish has nothing to add */
    }
  }
  snapshot_free(&before);
  if (rc < 0) errorf(rc, "top");
  return rc < 0 || unwritten ? EXIT_RUNTIME : 0;
}
