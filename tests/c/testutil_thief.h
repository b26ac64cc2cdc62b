/* A peer with write access that robs sleepers of their wake-ups (stream
 * wait and block tests): a forked child with a mapping of its own that, over
 * and over until killed, zeroes a word a waker reads to decide whether to
 * wake (a waiter count, a flag), or moves every sleeper on a futex word to
 * a word of its own (FUTEX_CMP_REQUEUE), where no wake reaches it. */
#ifndef SHL_TESTUTIL_THIEF_H
#define SHL_TESTUTIL_THIEF_H

#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#include "testutil_proc.h"

struct t_thief {
  const char *name; /* the segment's */
  size_t at;        /* the word's offset in the object */
  int requeue;      /* 0: zero the word; 1: move its sleepers */
  _Atomic uint32_t struck; /* words zeroed, or sleepers moved, so far */
  _Atomic uint32_t mine;   /* where moved sleepers sleep */
  pid_t pid;               /* stored by the test alone */
};

static inline int t_thief_run_(void *arg) {
  struct t_thief *t = arg;
  char path[T_PATH_MAX];
  int fd = open(t_shm_path(t->name, path), O_RDWR | O_CLOEXEC);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) < 0) return -errno;
  char *map = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (map == MAP_FAILED) return -errno;
  _Atomic uint32_t *word = (_Atomic uint32_t *)(void *)(map + t->at);
  for (;;) {
    long n = 0;
    if (!t->requeue && atomic_load(word) != 0) {
      atomic_store(word, 0);
      n = 1;
    } else if (t->requeue) {
      n = syscall(SYS_futex, (void *)word, FUTEX_CMP_REQUEUE, 0, (void *)(long)INT_MAX, &t->mine,
                  atomic_load(word));
    }
    if (n > 0) atomic_fetch_add(&t->struck, (uint32_t)n);
    usleep(100);
  }
}

/* A thief on the word at `at` of segment `name`, in a page shared with the
 * child (so the test sees `struck`). NULL if it could not start. */
static inline struct t_thief *t_thief_start(const char *name, size_t at, int requeue) {
  struct t_thief *t = mmap(NULL, sizeof *t, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (t == MAP_FAILED) return NULL;
  *t = (struct t_thief){.name = name, .at = at, .requeue = requeue};
  struct t_child c; /* private: the child stores its own pid (0) in it too */
  if (t_child_start(&c, t_thief_run_, t, 30) == 0) {
    close(c.fd); /* it answers only by dying */
    t->pid = c.pid;
    return t;
  }
  munmap(t, sizeof *t);
  return NULL;
}

/* Kills the thief; 0 unless it struck at least once and never ended of itself. */
static inline int t_thief_stop(struct t_thief *t) {
  kill(t->pid, SIGKILL);
  int status = t_child_reap(t->pid);
  int ok = WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL && atomic_load(&t->struck) > 0;
  munmap(t, sizeof *t);
  return ok;
}

/* A thread that sleeps in the call under test: it stores its id in `tid`
 * first, and the time the call returned in `done_ns`. */
struct t_sleeper {
  _Atomic int tid;
  long long done_ns;
};

/* A reader's receive (1 s) as such a thread; what it returned in `rc`. */
struct t_receiver {
  struct t_sleeper sl;
  shl_reader *r;
  int rc;
};

static inline void *t_receiver_main(void *arg) {
  struct t_receiver *v = arg;
  shl_sample s;
  atomic_store(&v->sl.tid, (int)gettid());
  v->rc = shl_reader_receive(v->r, &s, 1000 * T_MS, 0);
  v->sl.done_ns = t_now_ns();
  if (v->rc == 0) shl_reader_release(v->r, &s);
  return NULL;
}

/* Five rounds against the thief: each starts sleep(arg) in a thread (arg
 * begins with its struct t_sleeper), waits until it sleeps in the futex and
 * the thief struck it (`zeroed`, the word it zeroes, reads 0; or, for a
 * requeue, `struck` moved), calls wake(arg), which should end the sleep,
 * joins the thread and calls after(arg). Returns how many sleepers took
 * 200 ms or more to return after their wake: far above a slice (20 ms),
 * far below the sleeps' time-outs (1 s). */
static inline int t_thief_rounds(struct t_thief *t, const _Atomic uint32_t *zeroed,
                                 void *(*sleep)(void *), void (*wake)(void *),
                                 void (*after)(void *), void *arg) {
  struct t_sleeper *sl = arg;
  int slow = 0;
  for (int round = 1; round <= 5; round++) {
    atomic_store(&sl->tid, 0);
    uint32_t before = atomic_load(&t->struck);
    pthread_t th;
    T_REQUIRE(pthread_create(&th, NULL, sleep, arg) == 0);
    while (!atomic_load(&sl->tid)) t_sleep_ms(1);
    T_CHECK(t_thread_in_futex(atomic_load(&sl->tid), 5000));
    for (int ms = 0; ms < 5000 && (t->requeue ? atomic_load(&t->struck) == before
                                               : atomic_load(zeroed) != 0);
         ms++)
      t_sleep_ms(1);
    long long t0 = t_now_ns();
    wake(arg);
    pthread_join(th, NULL);
    after(arg);
    long long ms = (sl->done_ns - t0) / 1000000;
    if (ms >= 200) {
      fprintf(stderr, "%s, round %d: the sleeper returned %lld ms after its wake\n",
              t->requeue ? "requeued" : "zeroed", round, ms);
      slow++;
    }
  }
  return slow;
}

#endif /* SHL_TESTUTIL_THIEF_H */
