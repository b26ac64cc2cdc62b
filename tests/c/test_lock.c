/* The segment lock across processes: mutual exclusion, time-outs, and recovery
 * after a holder is SIGKILLed (robust mutex: the next locker gets
 * SHL_E_OWNER_DEAD with the lock, later lockers plain 0). The other processes
 * are this program re-executed with a role argument: they share nothing with
 * us but the segment. */
#include <pthread.h>
#include <signal.h>
#include <stdint.h>

#include "testutil_proc.h"

/* White-box: lock.c is compiled into this program, with a hook that runs
 * code of the test at the points where a race would strike. */
static void (*test_hook)(const char *point);
#define SHL__TEST_POINT(name) (test_hook ? test_hook(#name) : (void)0)
#include "lock.c"

#define WAIT_NS (5000 * T_MS) /* bound on every lock that should succeed */
#define CHILD_LIMIT_S 30      /* a child still alive by then dies of SIGALRM */

#define FORMAT "T{<Q:counter:<q:holder:}"
struct shared {
  uint64_t counter; /* bumped under the lock by several processes */
  int64_t holder;   /* pid of the last "hold" child, written under the lock */
};

/* Exit codes of the "block" role: how its shl_lock ended. */
enum { BLOCK_GOT_0 = 0, BLOCK_FAILED = 1, BLOCK_GOT_OWNER_DEAD = 2 };

static const char *self; /* argv[0], to re-execute ourselves */

/* ---------------------------------------------------------------- shared steps */

/* The lock is held by another process: each way of taking it fails, on time. */
static void check_contended(shl_segment *seg) {
  T_EXPECT_RC(shl_trylock(seg), -EBUSY);
  long long t0 = t_now_ns();
  T_EXPECT_RC(shl_lock(seg, 0), -ETIMEDOUT);
  T_EXPECT_TOOK(t0, 0, 1000);
  t0 = t_now_ns();
  T_EXPECT_RC(shl_lock(seg, 100 * T_MS), -ETIMEDOUT);
  T_EXPECT_TOOK(t0, 100, 2000);
}

/* Bump the counter `rounds` times under the lock. Read and write are apart on
 * purpose: without exclusion, concurrent increments would get lost. */
static void count_locked(shl_segment *seg, long rounds) {
  volatile struct shared *sh = shl_payload(seg);
  for (long i = 0; i < rounds; i++) {
    int rc = shl_lock(seg, WAIT_NS);
    T_EXPECT_RC(rc, 0);
    if (rc != 0) return;
    uint64_t v = sh->counter;
    for (volatile int gap = 0; gap < 100; gap++) {
    }
    sh->counter = v + 1;
    T_EXPECT_RC(shl_unlock(seg), 0);
  }
}

/* ---------------------------------------------------------------- roles */

/* Take the lock, say so, then sleep until SIGKILLed. */
static int role_hold(shl_segment *seg, int fd) {
  T_EXPECT_RC(shl_lock(seg, WAIT_NS), 0);
  ((struct shared *)shl_payload(seg))->holder = getpid();
  t_send_byte(fd, 'L');
  t_sleep_ms(CHILD_LIMIT_S * 1000L);
  return 1;
}

static int role_block(shl_segment *seg, int fd) {
  t_send_byte(fd, 'R');
  int rc = shl_lock(seg, WAIT_NS);
  if (rc != 0 && rc != SHL_E_OWNER_DEAD) {
    fprintf(stderr, "block: shl_lock returned %s\n", shl_err_name(rc));
    return BLOCK_FAILED;
  }
  T_EXPECT_RC(shl_unlock(seg), 0);
  if (t_failures) return BLOCK_FAILED;
  return rc == 0 ? BLOCK_GOT_0 : BLOCK_GOT_OWNER_DEAD;
}

static int role_count(shl_segment *seg, int fd, long rounds) {
  t_send_byte(fd, 'R');
  count_locked(seg, rounds);
  return t_result();
}

/* argv: self role name [arg] report-fd */
static int run_role(int argc, char **argv) {
  const char *role = argv[1];
  shl_segment *seg = t_open(argv[2], 0);
  int fd = atoi(argv[argc - 1]);
  int rc = 1;
  if (strcmp(role, "hold") == 0) {
    rc = role_hold(seg, fd);
  } else if (strcmp(role, "contend") == 0) {
    check_contended(seg);
    rc = t_result();
  } else if (strcmp(role, "block") == 0) {
    rc = role_block(seg, fd);
  } else if (strcmp(role, "count") == 0 && argc == 5) {
    rc = role_count(seg, fd, atol(argv[3]));
  } else {
    fprintf(stderr, "unknown role %s\n", role);
  }
  shl_close(seg);
  return rc;
}

/* ---------------------------------------------------------------- parent side */

static pid_t spawn(const char *role, const char *name, const char *arg, int *report) {
  const char *args[] = {self, role, name, arg, NULL};
  return t_exec_reporting(args, report, CHILD_LIMIT_S);
}

/* Start a "hold" child and return once it has the lock. */
static pid_t start_holder(const char *name) {
  int fd;
  pid_t pid = spawn("hold", name, NULL, &fd);
  int msg = t_read_byte(fd, 5000);
  close(fd);
  if (msg != 'L') kill(pid, SIGKILL); /* leave nothing behind */
  T_REQUIRE(msg == 'L');
  return pid;
}

static void kill_holder(pid_t pid) {
  T_CHECK(kill(pid, SIGKILL) == 0);
  T_EXPECT_SIGNAL(t_child_reap(pid), SIGKILL);
}

static void test_basics(shl_segment *seg) {
  T_EXPECT_RC(shl_lock(seg, WAIT_NS), 0);
  T_EXPECT_RC(shl_lock(seg, 200 * T_MS), -EDEADLK); /* this thread holds it */
  T_EXPECT_RC(shl_unlock(seg), 0);
  T_CHECK(shl_unlock(seg) < 0); /* not held any more */
  T_EXPECT_RC(shl_trylock(seg), 0);
  T_EXPECT_RC(shl_unlock(seg), 0);
  T_EXPECT_RC(shl_lock(seg, -1), 0); /* "forever", but it is free */
  T_EXPECT_RC(shl_unlock(seg), 0);
  T_EXPECT_RC(shl_lock(seg, 0), 0); /* non-blocking, and free */
  T_EXPECT_RC(shl_unlock(seg), 0);
}

/* Held here: another process's trylock and timed lock fail, on time. */
static void test_held_here(const char *name, shl_segment *seg) {
  int fd;
  T_EXPECT_RC(shl_lock(seg, WAIT_NS), 0);
  pid_t pid = spawn("contend", name, NULL, &fd);
  T_EXPECT_EXIT(t_child_reap(pid), 0);
  close(fd);
  T_EXPECT_RC(shl_unlock(seg), 0);
}

/* A holder SIGKILLed with the lock: the next locker (lock or trylock) gets
 * SHL_E_OWNER_DEAD with the lock and sees what the holder wrote; once it
 * unlocks, the lock is plain again. Repeated: recovery must leave the lock
 * as good as new, round after round. */
static void test_holder_killed(const char *name, shl_segment *seg) {
  volatile struct shared *sh = shl_payload(seg);
  for (int round = 0; round < 5; round++) {
    pid_t pid = start_holder(name);
    check_contended(seg); /* held by a live process */
    kill_holder(pid);
    int rc = round % 2 ? shl_trylock(seg) : shl_lock(seg, WAIT_NS);
    T_EXPECT_RC(rc, SHL_E_OWNER_DEAD);
    /* Otherwise the lock is lost for good: all that follows would time out. */
    T_REQUIRE(rc == SHL_E_OWNER_DEAD || rc == 0);
    T_CHECK(sh->holder == pid);
    T_EXPECT_RC(shl_unlock(seg), 0);
    T_EXPECT_RC(shl_lock(seg, WAIT_NS), 0);
    T_EXPECT_RC(shl_unlock(seg), 0);
  }
}

/* The holder dies while two other processes sleep in shl_lock: exactly one of
 * them gets SHL_E_OWNER_DEAD, the other then gets 0. */
static void test_killed_while_others_wait(const char *name, shl_segment *seg) {
  enum { BLOCKERS = 2 };
  pid_t holder = start_holder(name);
  pid_t pid[BLOCKERS];
  for (int i = 0; i < BLOCKERS; i++) {
    int fd;
    pid[i] = spawn("block", name, NULL, &fd);
    T_CHECK(t_read_byte(fd, 5000) == 'R');
    close(fd);
    T_CHECK(t_wait_in_futex(pid[i], 5000)); /* asleep in shl_lock, not about to call it */
  }
  kill_holder(holder);
  int got[3] = {0, 0, 0};
  for (int i = 0; i < BLOCKERS; i++) {
    int status = t_child_reap(pid[i]);
    T_CHECK(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) <= 2);
    if (status != -1 && WIFEXITED(status) && WEXITSTATUS(status) <= 2) got[WEXITSTATUS(status)]++;
  }
  T_CHECK(got[BLOCK_GOT_OWNER_DEAD] == 1);
  T_CHECK(got[BLOCK_GOT_0] == BLOCKERS - 1);
  T_EXPECT_RC(shl_lock(seg, WAIT_NS), 0);
  T_EXPECT_RC(shl_unlock(seg), 0);
}

/* Other processes and this one bump a plain counter under the lock: no
 * increment is lost. Runs after the kills on purpose: the recovered lock must
 * give the others plain 0. */
static void test_exclusion(const char *name, shl_segment *seg) {
  enum { CHILDREN = 3, ROUNDS = 20000 };
  volatile struct shared *sh = shl_payload(seg);
  char rounds[16];
  snprintf(rounds, sizeof rounds, "%d", ROUNDS);
  pid_t pid[CHILDREN];
  int fd[CHILDREN];
  /* Hold the lock while they start, so that all begin together. */
  T_EXPECT_RC(shl_lock(seg, WAIT_NS), 0);
  sh->counter = 0;
  for (int i = 0; i < CHILDREN; i++) pid[i] = spawn("count", name, rounds, &fd[i]);
  for (int i = 0; i < CHILDREN; i++) {
    T_CHECK(t_read_byte(fd[i], 5000) == 'R');
    close(fd[i]);
  }
  T_EXPECT_RC(shl_unlock(seg), 0);
  count_locked(seg, ROUNDS);
  for (int i = 0; i < CHILDREN; i++) T_EXPECT_EXIT(t_child_reap(pid[i]), 0);
  uint64_t want = (uint64_t)(CHILDREN + 1) * ROUNDS;
  if (sh->counter != want)
    fprintf(stderr, "counter %llu, want %llu\n", (unsigned long long)sh->counter,
            (unsigned long long)want);
  T_CHECK(sh->counter == want);
}

/* Another thread of this process takes the lock through the same handle the
 * moment the holder's unlock frees the mutex: the unlock must not then wipe
 * the new holder's claim (its unlock would fail with -EPERM, leaving the
 * lock held for good), nor count its reference as a dead holder's. */
static shl_segment *race_seg;
static pthread_mutex_t race_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t race_cv = PTHREAD_COND_INITIALIZER;
static int race_stage; /* 1: the other thread holds the lock; 2: it may unlock */
static int race_lock_rc = 1, race_unlock_rc = 1;

static void race_set(int stage) {
  pthread_mutex_lock(&race_mu);
  race_stage = stage;
  pthread_cond_broadcast(&race_cv);
  pthread_mutex_unlock(&race_mu);
}

static void race_await(int stage) {
  pthread_mutex_lock(&race_mu);
  while (race_stage < stage) pthread_cond_wait(&race_cv, &race_mu);
  pthread_mutex_unlock(&race_mu);
}

static void *race_taker(void *unused) {
  (void)unused;
  race_lock_rc = shl_lock(race_seg, WAIT_NS);
  race_set(1);
  race_await(2);
  race_unlock_rc = shl_unlock(race_seg);
  return NULL;
}

static pthread_t race_thread;

static void race_hook(const char *point) {
  if (strcmp(point, "unlocked") != 0) return;
  test_hook = NULL; /* once */
  T_REQUIRE(pthread_create(&race_thread, NULL, race_taker, NULL) == 0);
  race_await(1);
}

static void test_unlock_races_a_lock_of_another_thread(shl_segment *seg) {
  race_seg = seg;
  T_EXPECT_RC(shl_lock(seg, WAIT_NS), 0);
  test_hook = race_hook;
  T_EXPECT_RC(shl_unlock(seg), 0);
  T_EXPECT_RC(race_lock_rc, 0);
  race_set(2);
  pthread_join(race_thread, NULL);
  T_EXPECT_RC(race_unlock_rc, 0);
  T_EXPECT_RC(shl_lock(seg, 0), 0); /* free again */
  T_EXPECT_RC(shl_unlock(seg), 0);
}

int main(int argc, char **argv) {
  self = argv[0];
  if (argc > 2) return run_role(argc, argv);

  char name[SHL_NAME_MAX + 1];
  snprintf(name, sizeof name, "%s", t_name("lock"));
  t_unlink_at_exit(name);
  shl_layout layout = {.format = FORMAT};
  shl_segment *seg = NULL;
  T_EXPECT_RC(shl_create(&seg, name, &layout, NULL), 0);
  T_REQUIRE(seg != NULL && shl_payload_size(seg) >= sizeof(struct shared));

  test_basics(seg);
  test_unlock_races_a_lock_of_another_thread(seg);
  test_held_here(name, seg);
  test_holder_killed(name, seg);
  test_killed_while_others_wait(name, seg);
  test_exclusion(name, seg);
  shl_close(seg);
  return t_result();
}
