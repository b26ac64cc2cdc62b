/* Spin trials (notify and stream tests): is something that lands while a
 * waiter spins taken without entering the futex? */
#ifndef SHL_TESTUTIL_SPIN_H
#define SHL_TESTUTIL_SPIN_H

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "testutil.h"

/* Spin trials of different test programs (meson runs them side by side)
 * take turns: two at once put four real-time threads on two CPUs, and each
 * disturbs every trial of the other. The lock is an abstract UNIX socket's
 * name: nothing on disk, and the kernel frees it however its holder ends.
 * Returns the socket to close. */
static inline int t_spin_trials_lock_(void) {
  static const char name[] = "shmlane-test-spin-trials";
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  memcpy(a.sun_path + 1, name, sizeof name - 1); /* sun_path[0] = 0: abstract */
  socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + sizeof name);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  T_REQUIRE(fd >= 0);
  long long until = t_now_ns() + 20000000000LL;
  while (bind(fd, (struct sockaddr *)&a, len) != 0) {
    T_REQUIRE(errno == EADDRINUSE && t_now_ns() < until);
    usleep(1000);
  }
  return fd;
}

/* Times the calling thread has gone to sleep (voluntary context switches). */
static inline long t_own_sleeps(void) {
  char line[128];
  long n = -1;
  FILE *f = fopen("/proc/thread-self/status", "r");
  if (!f) return -1;
  while (fgets(line, sizeof line, f))
    if (sscanf(line, "voluntary_ctxt_switches: %ld", &n) == 1) break;
  fclose(f);
  return n;
}

struct t_spinner_ {
  void (*wait)(void *ctx);
  void *ctx;
  atomic_int inside;
  long sleeps;
};

static inline void *t_spinner_main_(void *arg) {
  struct t_spinner_ *sp = arg;
  long before = t_own_sleeps();
  atomic_store(&sp->inside, 1);
  sp->wait(sp->ctx);
  sp->sleeps = t_own_sleeps() - before;
  return NULL;
}

/* Something that lands while a waiter spins is taken without entering the
 * futex. Over `trials`, a thread runs wait(ctx) (a call that spins 1 ms and
 * then sleeps); once it is inside, this thread stays busy for 200 us (well
 * inside the spin) and calls wake(ctx), which says whether the waiter had
 * already registered in the futex. A trial counts when it had not and the
 * waiter never slept. Real-time priority, where permitted, keeps other
 * processes from taking either CPU mid-trial; a trial that load disturbs
 * proves nothing either way, but without the spin the waiter sleeps within
 * microseconds, so no trial can count. Another program's trials wait for
 * these to end. Fails unless `needed` trials count. */
static inline void t_expect_spin_taken(const char *what, void (*wait)(void *ctx),
                                       int (*wake)(void *ctx), void *ctx, int trials,
                                       int needed) {
  int lock = t_spin_trials_lock_();
  struct sched_param rt = {.sched_priority = 1}, normal = {0};
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  bool realtime = pthread_setschedparam(pthread_self(), SCHED_FIFO, &rt) == 0;
  if (realtime) {
    pthread_attr_setinheritsched(&attr, PTHREAD_EXPLICIT_SCHED);
    pthread_attr_setschedpolicy(&attr, SCHED_FIFO);
    pthread_attr_setschedparam(&attr, &rt);
  } else {
    fprintf(stderr, "note: no real-time priority here; spin trials may be disturbed\n");
  }
  int spun = 0;
  for (int i = 0; i < trials; i++) {
    struct t_spinner_ sp = {.wait = wait, .ctx = ctx};
    pthread_t thread;
    T_REQUIRE(pthread_create(&thread, &attr, t_spinner_main_, &sp) == 0);
    while (!atomic_load(&sp.inside)) sched_yield();
    long long until = t_now_ns() + 200000;
    while (t_now_ns() < until) {
    }
    int registered = wake(ctx);
    T_REQUIRE(pthread_join(thread, NULL) == 0);
    spun += !registered && sp.sleeps == 0;
  }
  pthread_attr_destroy(&attr);
  if (realtime) pthread_setschedparam(pthread_self(), SCHED_OTHER, &normal);
  close(lock);
  if (spun < needed) {
    fprintf(stderr, "%s: only %d of %d taken while spinning (want %d)\n", what, spun, trials,
            needed);
    t_failures++;
  }
}

#endif /* SHL_TESTUTIL_SPIN_H */
