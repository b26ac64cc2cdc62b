/* Wait/notify: the counter, time-outs, wake-ups of real sleepers (threads and
 * other processes, checked to be asleep in the futex before the notify),
 * signals, spinning, and a ping-pong stress between two processes. Other
 * processes are this program re-executed with a role argument. */
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "internal.h" /* the header's waiter count */
#include "testutil_proc.h"
#include "testutil_spin.h"

#define WAIT_NS (5000 * T_MS) /* time-out of every wait that a notify should end */
/* A lost wake-up does not fail the wait: it sleeps into its time-out, then
 * sees the new version. So a wake-up slower than this counts as lost. */
#define WAKE_MAX_MS 2000
#define CHILD_LIMIT_S 30 /* a child still alive by then dies of SIGALRM */

static const char *self; /* argv[0], to re-execute ourselves */
static atomic_int stop_zeroing;

/* ---------------------------------------------------------------- shared steps */

/* Notify `count` times; with other notifiers racing, each value we get must
 * still be above the previous one. */
static void notify_n(shl_segment *seg, long count) {
  uint64_t prev = 0;
  for (long i = 0; i < count; i++) {
    uint64_t v = 0;
    T_EXPECT_RC(shl_notify(seg, &v), 0);
    if (v <= prev) {
      fprintf(stderr, "notify %ld returned %llu after %llu\n", i, (unsigned long long)v,
              (unsigned long long)prev);
      t_failures++;
      return;
    }
    prev = v;
  }
}

/* One side of a ping-pong: wait for the peer's notify, answer with ours. The
 * two sides alternate strictly, so each wait sees exactly since + 1. */
static void rally(shl_segment *seg, uint64_t since, long rounds, uint32_t spin_ns) {
  shl_wait_opts opts = {.size = sizeof(shl_wait_opts), .spin_ns = spin_ns};
  for (long i = 0; i < rounds; i++) {
    uint64_t seen = 0;
    long long t0 = t_now_ns();
    int rc = shl_wait_ex(seg, since, WAIT_NS, &opts, &seen);
    long long took_ms = (t_now_ns() - t0) / T_MS;
    if (rc != 0 || seen != since + 1 || took_ms >= WAKE_MAX_MS) {
      fprintf(stderr, "round %ld: wait since %llu returned %s after %lld ms, saw %llu\n", i,
              (unsigned long long)since, shl_err_name(rc), took_ms, (unsigned long long)seen);
      t_failures++;
      return;
    }
    T_EXPECT_RC(shl_notify(seg, &since), 0);
  }
}

/* ---------------------------------------------------------------- roles */

static int role_waiter(const char *name, uint64_t since, const char *mode, int fd) {
  shl_segment *seg = t_open(name, strcmp(mode, "ro") == 0 ? SHL_OPEN_READONLY : 0);
  uint64_t seen = 0;
  t_send_byte(fd, 'R');
  T_EXPECT_RC(shl_wait(seg, since, WAIT_NS, &seen), 0);
  T_CHECK(seen == since + 1);
  shl_close(seg);
  return t_result();
}

/* argv: self role name args... report-fd */
static int run_role(int argc, char **argv) {
  const char *role = argv[1], *name = argv[2];
  int fd = atoi(argv[argc - 1]);
  if (strcmp(role, "waiter") == 0 && argc == 6)
    return role_waiter(name, strtoull(argv[3], NULL, 10), argv[4], fd);
  shl_segment *seg = t_open(name, 0);
  if (strcmp(role, "notifier") == 0 && argc == 5)
    notify_n(seg, atol(argv[3]));
  else if (strcmp(role, "pong") == 0 && argc == 7)
    rally(seg, strtoull(argv[3], NULL, 10), atol(argv[4]), (uint32_t)atol(argv[5]));
  else
    T_CHECK(!"a known role and argument count");
  shl_close(seg);
  return t_result();
}

/* ---------------------------------------------------------------- parent side */

static pid_t spawn(const char *const args[]) {
  int fd;
  pid_t pid = t_exec_reporting(args, &fd, CHILD_LIMIT_S);
  close(fd);
  return pid;
}

/* A thread of this process blocked in shl_wait_ex. */
struct waiter {
  shl_segment *seg;
  uint64_t since;
  int64_t timeout_ns;
  shl_wait_opts opts;
  atomic_int tid;
  int rc;
  uint64_t seen;
  pthread_t thread;
};

static void *waiter_main(void *arg) {
  struct waiter *w = arg;
  atomic_store(&w->tid, (int)gettid());
  w->rc = shl_wait_ex(w->seg, w->since, w->timeout_ns, &w->opts, &w->seen);
  return NULL;
}

/* Returns once the thread sleeps in the futex, so that the notify which
 * follows tests a wake-up, not the fast path. */
static void waiter_start(struct waiter *w, shl_segment *seg, uint64_t since, int64_t timeout_ns,
                         uint32_t spin_ns) {
  w->seg = seg;
  w->since = since;
  w->timeout_ns = timeout_ns;
  w->opts = (shl_wait_opts){.size = sizeof(shl_wait_opts), .spin_ns = spin_ns};
  atomic_init(&w->tid, 0);
  T_REQUIRE(pthread_create(&w->thread, NULL, waiter_main, w) == 0);
  long long deadline = t_now_ns() + 2000 * T_MS;
  while (atomic_load(&w->tid) == 0 && t_now_ns() < deadline) sched_yield();
  T_CHECK(t_wait_in_futex(atomic_load(&w->tid), 2000));
}

/* Join a waiter that was notified at t0 (a t_now_ns() value). Bounded, as
 * some wait "forever". */
static void waiter_join(struct waiter *w, uint64_t want, long long t0) {
  struct timespec until;
  clock_gettime(CLOCK_REALTIME, &until);
  until.tv_sec += 10;
  T_REQUIRE(pthread_timedjoin_np(w->thread, NULL, &until) == 0);
  T_EXPECT_RC(w->rc, 0);
  T_CHECK(w->seen == want);
  T_EXPECT_TOOK(t0, 0, WAKE_MAX_MS);
}

/* A peer with write access (mode 0660) zeroes the waiter count over and
 * over, so that notifies skip the wake: a waiter asleep must still see the
 * notify within a slice (20 ms), not at its time-out (3 s). */
static void *zero_waiters(void *arg) {
  shl_segment *peer = arg;
  while (!atomic_load(&stop_zeroing)) {
    atomic_store(&peer->hdr->waiters, 0);
    usleep(100);
  }
  return NULL;
}

static void test_waiter_count_zeroed(void) {
  const char *name = t_name("notifyz");
  shl_layout layout = {.format = "<Q"};
  shl_create_opts opts = {.size = sizeof opts, .mode = 0660};
  shl_segment *seg = NULL, *peer = NULL;
  t_unlink_at_exit(name);
  T_REQUIRE(shl_create(&seg, name, &layout, &opts) == 0);
  T_REQUIRE(shl_open(&peer, name, 0, WAIT_NS) == 0);
  struct waiter w;
  waiter_start(&w, seg, shl_changes(seg), 3000 * T_MS, 0);
  pthread_t zeroer;
  T_REQUIRE(pthread_create(&zeroer, NULL, zero_waiters, peer) == 0);
  t_sleep_ms(5);
  long long t0 = t_now_ns();
  T_EXPECT_RC(shl_notify(seg, NULL), 0);
  struct timespec until;
  clock_gettime(CLOCK_REALTIME, &until);
  until.tv_sec += 10;
  T_REQUIRE(pthread_timedjoin_np(w.thread, NULL, &until) == 0);
  T_EXPECT_RC(w.rc, 0);
  T_EXPECT_TOOK(t0, 0, 1000);
  atomic_store(&stop_zeroing, 1);
  pthread_join(zeroer, NULL);
  shl_close(peer);
  shl_close(seg);
  T_EXPECT_RC(shl_unlink(name), 0);
}

/* No waiting needed: the counter starts at 0 and each notify adds exactly
 * one; a wait whose `since` is stale returns at once with the current value. */
static void test_counter(shl_segment *seg) {
  T_CHECK(shl_changes(seg) == 0);
  for (uint64_t i = 1; i <= 100; i++) {
    uint64_t v = 0;
    T_EXPECT_RC(shl_notify(seg, &v), 0);
    T_CHECK(v == i && shl_changes(seg) == i);
  }
  T_EXPECT_RC(shl_notify(seg, NULL), 0);
  shl_info info = SHL_INFO_INIT;
  T_EXPECT_RC(shl_get_info(seg, &info), 0);
  T_CHECK(info.changes == 101);

  uint64_t seen = 0;
  shl_wait_opts spin = {.size = sizeof(shl_wait_opts), .spin_ns = 1000000};
  long long t0 = t_now_ns();
  T_EXPECT_RC(shl_wait(seg, 100, WAIT_NS, &seen), 0);
  T_CHECK(seen == 101);
  T_EXPECT_RC(shl_wait(seg, 0, -1, NULL), 0); /* even "forever" returns */
  T_EXPECT_RC(shl_wait_ex(seg, 7, WAIT_NS, &spin, &seen), 0);
  T_CHECK(seen == 101);
  T_EXPECT_TOOK(t0, 0, 1000);
  T_EXPECT_RC(shl_wait(seg, 101, 0, NULL), -ETIMEDOUT); /* timeout 0: just a check */
}

/* Nobody notifies: each wait ends with -ETIMEDOUT, not before its time and
 * not much after, spinning or not. */
static void test_timeouts(shl_segment *seg) {
  static const struct {
    uint32_t spin_ns;
    long timeout_ms, min_ms, max_ms;
  } cases[] = {
      {0, 100, 100, 2000},
      {1000000, 100, 100, 2000},
      {UINT32_MAX, 20, 20, 1000}, /* the spin stops at the deadline */
      {UINT32_MAX, 0, 0, 1000},
  };
  uint64_t v = shl_changes(seg);
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    shl_wait_opts opts = {.size = sizeof(shl_wait_opts), .spin_ns = cases[i].spin_ns};
    long long t0 = t_now_ns();
    T_EXPECT_RC(shl_wait_ex(seg, v, cases[i].timeout_ms * T_MS, &opts, NULL), -ETIMEDOUT);
    T_EXPECT_TOOK(t0, cases[i].min_ms, cases[i].max_ms);
  }
}

/* Threads asleep in shl_wait, on two handles of the segment (two mappings: a
 * private futex would not reach across them), all wake on one notify. */
static void test_threads(const char *name, shl_segment *seg) {
  enum { THREADS = 4 };
  static const struct {
    int64_t timeout_ns;
    uint32_t spin_ns;
  } how[THREADS] = {
      {WAIT_NS, 0},
      {-1, 0},               /* forever */
      {INT64_MAX, 0},        /* as good as forever: no overflow */
      {WAIT_NS, UINT32_MAX}, /* the longest spin is capped (1 ms): it ends up asleep too */
  };
  shl_segment *other = t_open(name, 0);
  struct waiter w[THREADS];
  uint64_t v = shl_changes(seg), n = 0;
  for (int i = 0; i < THREADS; i++)
    waiter_start(&w[i], i % 2 ? other : seg, v, how[i].timeout_ns, how[i].spin_ns);
  long long t0 = t_now_ns();
  T_EXPECT_RC(shl_notify(other, &n), 0);
  T_CHECK(n == v + 1);
  for (int i = 0; i < THREADS; i++) waiter_join(&w[i], v + 1, t0);
  shl_close(other);
}

/* A wait that spins 1 ms, from the version seen before the trial. */
struct spin_trial {
  shl_segment *seg;
  _Atomic uint64_t since; /* both threads use it */
};

static void spin_trial_wait(void *arg) {
  struct spin_trial *t = arg;
  shl_wait_opts opts = {.size = sizeof(shl_wait_opts), .spin_ns = 1000000};
  T_EXPECT_RC(shl_wait_ex(t->seg, t->since, WAIT_NS, &opts, NULL), 0);
}

static int spin_trial_notify(void *arg) {
  struct spin_trial *t = arg;
  int registered = atomic_load(&t->seg->hdr->waiters) != 0;
  uint64_t now = 0;
  T_EXPECT_RC(shl_notify(t->seg, &now), 0);
  atomic_store(&t->since, now); /* the next trial waits from here */
  return registered;
}

/* A notify that lands while the waiter spins is taken without entering the
 * futex: the waiter never registers in `waiters` and never sleeps. */
static void test_spin_taken(shl_segment *seg) {
  struct spin_trial t = {seg, shl_changes(seg)};
  t_expect_spin_taken("notify", spin_trial_wait, spin_trial_notify, &t, 30, 10);
}

/* A thread here wakes on another process's notify; sleepers in several other
 * processes (one opened read-only) all wake on one notify from here. */
static void test_processes(const char *name, shl_segment *seg) {
  enum { CHILDREN = 3 };
  struct waiter w;
  uint64_t v = shl_changes(seg);
  waiter_start(&w, seg, v, WAIT_NS, 0);
  long long t0 = t_now_ns();
  T_EXPECT_EXIT(t_child_reap(spawn((const char *[]){self, "notifier", name, "1", NULL})), 0);
  waiter_join(&w, v + 1, t0);

  char since[24];
  v = shl_changes(seg);
  snprintf(since, sizeof since, "%llu", (unsigned long long)v);
  pid_t pid[CHILDREN];
  for (int i = 0; i < CHILDREN; i++) {
    int fd;
    const char *args[] = {self, "waiter", name, since, i == 0 ? "ro" : "rw", NULL};
    pid[i] = t_exec_reporting(args, &fd, CHILD_LIMIT_S);
    T_CHECK(t_read_byte(fd, 5000) == 'R');
    close(fd);
    T_CHECK(t_wait_in_futex(pid[i], 2000));
  }
  t0 = t_now_ns();
  T_EXPECT_RC(shl_notify(seg, NULL), 0);
  for (int i = 0; i < CHILDREN; i++) T_EXPECT_EXIT(t_child_reap(pid[i]), 0);
  T_EXPECT_TOOK(t0, 0, WAKE_MAX_MS);
  T_CHECK(shl_changes(seg) == v + 1);
}

/* Notifies racing from three processes: none lost, none counted twice. */
static void test_racing_notifiers(const char *name, shl_segment *seg) {
  enum { CHILDREN = 2, EACH = 5000 };
  char each[16];
  snprintf(each, sizeof each, "%d", EACH);
  const char *args[] = {self, "notifier", name, each, NULL};
  uint64_t v = shl_changes(seg);
  pid_t pid[CHILDREN];
  for (int i = 0; i < CHILDREN; i++) pid[i] = spawn(args);
  notify_n(seg, EACH);
  for (int i = 0; i < CHILDREN; i++) T_EXPECT_EXIT(t_child_reap(pid[i]), 0);
  T_CHECK(shl_changes(seg) == v + (CHILDREN + 1) * EACH);
}

static volatile sig_atomic_t signals_caught;
static void on_signal(int sig) {
  (void)sig;
  signals_caught++;
}

struct pump {
  pthread_t target;
  atomic_bool stop;
};

/* SIGUSR1 to the target thread every 50 ms until stopped, for 3 s at most:
 * a wait that restarted its whole time-out after each signal still ends. */
static void *pump_main(void *arg) {
  struct pump *p = arg;
  long long end = t_now_ns() + 3000 * T_MS;
  while (!atomic_load(&p->stop) && t_now_ns() < end) {
    t_sleep_ms(50);
    pthread_kill(p->target, SIGUSR1);
  }
  return NULL;
}

/* With a handler installed without SA_RESTART, each signal fails the futex
 * wait with EINTR: shl_wait must keep waiting to its deadline (not beyond),
 * and SHL_WAIT_INTERRUPTIBLE must return -EINTR instead. */
static void test_signals(shl_segment *seg) {
  static const struct {
    uint32_t flags;
    long timeout_ms;
    int want;
    long min_ms, max_ms;
  } cases[] = {
      {0, 300, -ETIMEDOUT, 300, 2000},
      {SHL_WAIT_INTERRUPTIBLE, 5000, -EINTR, 0, 2000},
  };
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal; /* sa_flags 0: no SA_RESTART */
  sigemptyset(&sa.sa_mask);
  T_REQUIRE(sigaction(SIGUSR1, &sa, NULL) == 0); /* kept: a late signal stays harmless */

  uint64_t v = shl_changes(seg);
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    shl_wait_opts opts = {.size = sizeof(shl_wait_opts), .flags = cases[i].flags};
    struct pump p = {.target = pthread_self()};
    atomic_init(&p.stop, false);
    pthread_t thread;
    signals_caught = 0;
    T_REQUIRE(pthread_create(&thread, NULL, pump_main, &p) == 0);
    long long t0 = t_now_ns();
    int rc = shl_wait_ex(seg, v, cases[i].timeout_ms * T_MS, &opts, NULL);
    T_EXPECT_TOOK(t0, cases[i].min_ms, cases[i].max_ms);
    atomic_store(&p.stop, true);
    pthread_join(thread, NULL);
    T_EXPECT_RC(rc, cases[i].want);
    T_CHECK(signals_caught > 0);
  }
}

/* Ping-pong with another process: each side waits for the other's notify. */
static void ping_pong(const char *name, shl_segment *seg, long rounds, uint32_t my_spin_ns,
                      uint32_t peer_spin_ns) {
  char since[24], n[24], spin[24];
  uint64_t v = shl_changes(seg), mine = 0;
  snprintf(since, sizeof since, "%llu", (unsigned long long)v);
  snprintf(n, sizeof n, "%ld", rounds);
  snprintf(spin, sizeof spin, "%lu", (unsigned long)peer_spin_ns);
  long long t0 = t_now_ns();
  pid_t pid = spawn((const char *[]){self, "pong", name, since, n, spin, NULL});
  T_EXPECT_RC(shl_notify(seg, &mine), 0); /* the serve */
  rally(seg, mine, rounds, my_spin_ns);
  T_EXPECT_EXIT(t_child_reap(pid), 0);
  T_EXPECT_TOOK(t0, 0, 10000);
  T_CHECK(shl_changes(seg) == v + 1 + 2 * (uint64_t)rounds);
}

int main(int argc, char **argv) {
  self = argv[0];
  if (argc > 2) return run_role(argc, argv);

  char name[SHL_NAME_MAX + 1];
  snprintf(name, sizeof name, "%s", t_name("notify"));
  t_unlink_at_exit(name);
  shl_layout layout = {.format = "<Q"};
  shl_segment *seg = NULL;
  T_EXPECT_RC(shl_create(&seg, name, &layout, NULL), 0);
  T_REQUIRE(seg != NULL);

  test_counter(seg);
  test_timeouts(seg);
  test_threads(name, seg);
  test_spin_taken(seg);
  test_processes(name, seg);
  test_racing_notifiers(name, seg);
  test_signals(seg);
  test_waiter_count_zeroed();
  ping_pong(name, seg, 10000, 0, 0);
  ping_pong(name, seg, 2000, 100000, 100000); /* the answer usually comes while spinning */
  /* A spinning peer answers within microseconds, often while this side is
   * still on its way into the futex. */
  ping_pong(name, seg, 10000, 0, 1000000);
  /* Nobody is left registered as a waiter, so notify can skip the syscall again. */
  T_CHECK(atomic_load(&seg->hdr->waiters) == 0);
  shl_close(seg);
  return t_result();
}
