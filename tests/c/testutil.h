/* Tiny helpers shared by the C test programs. Exit codes: 0 pass, 1 fail, 77 skip.
 * This header: checks, names and time. testutil_proc.h adds child processes,
 * object paths, clean-up and report pipes; testutil_stream.h stream helpers. */
#ifndef SHL_TESTUTIL_H
#define SHL_TESTUTIL_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "shmlane.h"

#define T_SKIP 77

static int t_failures;

#define T_CHECK(cond)                                                          \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      t_failures++;                                                            \
    }                                                                          \
  } while (0)

/* Expect an exact return code; prints both names on mismatch. */
#define T_EXPECT_RC(expr, want)                                                 \
  do {                                                                          \
    int t_rc_ = (int)(expr);                                                    \
    int t_want_ = (int)(want);                                                  \
    if (t_rc_ != t_want_) {                                                     \
      fprintf(stderr, "%s:%d: %s returned %d (%s), want %d (%s)\n", __FILE__,  \
              __LINE__, #expr, t_rc_, shl_err_name(t_rc_), t_want_,             \
              shl_err_name(t_want_));                                           \
      t_failures++;                                                             \
    }                                                                           \
  } while (0)

/* Abort the test at once: the rest would only cascade. */
#define T_REQUIRE(cond)                                                        \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "%s:%d: required: %s\n", __FILE__, __LINE__, #cond);     \
      exit(1);                                                                 \
    }                                                                          \
  } while (0)

static inline int t_result(void) {
  if (t_failures) fprintf(stderr, "%d check(s) failed\n", t_failures);
  return t_failures ? 1 : 0;
}

/* A segment name unique to this process and tag, so parallel runs never collide. */
static inline const char *t_name(const char *tag) {
  static char buf[4][SHL_NAME_MAX + 1];
  static int next;
  char *b = buf[next++ & 3];
  snprintf(b, sizeof buf[0], "t%s-%ld", tag, (long)getpid());
  return b;
}

static inline long long t_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static inline void t_sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
  }
}

#endif /* SHL_TESTUTIL_H */
