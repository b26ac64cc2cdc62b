/* The segment lock across processes: mutual exclusion, time-outs, and recovery
 * after a holder is SIGKILLed (a robust futex word: the next locker gets
 * SHL_E_OWNER_DEAD with the lock, later lockers plain 0), in any state and
 * across PID namespaces; a peer scribbling on the lock's bytes; threads and
 * handles of one process. The other processes are this program re-executed
 * with a role argument: they share nothing with us but the segment. */
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/mman.h>
#include <sys/prctl.h>

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

/* Lock and unlock once, say so, then wait until a "hold" in a PID namespace
 * of its own (its pid 1) holds the lock, and lock again (it blocks). */
static int role_relock(shl_segment *seg, int fd) {
  volatile struct shared *sh = shl_payload(seg);
  T_EXPECT_RC(shl_lock(seg, WAIT_NS), 0);
  T_EXPECT_RC(shl_unlock(seg), 0);
  t_send_byte(fd, 'U');
  while (sh->holder != 1) t_sleep_ms(1); /* bounded by CHILD_LIMIT_S */
  return role_block(seg, fd);
}

/* Lock and unlock until killed (a dead holder before us is fine). */
static int role_churn(shl_segment *seg, int fd) {
  for (bool told = false;;) {
    int rc = shl_lock(seg, WAIT_NS);
    if (rc != 0 && rc != SHL_E_OWNER_DEAD) {
      fprintf(stderr, "churn: shl_lock returned %s\n", shl_err_name(rc));
      return 1;
    }
    if (!told) t_send_byte(fd, 'R');
    told = true;
    T_EXPECT_RC(shl_unlock(seg), 0);
  }
}

/* set_robust_list fails with EPERM from now on, in this thread and those it
 * starts: a process under a seccomp filter that refuses it. */
static bool refuse_robust_lists(void) {
  struct sock_filter code[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_set_robust_list, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  struct sock_fprog prog = {sizeof code / sizeof code[0], code};
  return prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0 &&
         prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) == 0;
}

/* "hold" where no lock keeper can run. */
static int role_hold_without_keeper(shl_segment *seg, int fd) {
  T_REQUIRE(refuse_robust_lists());
  return role_hold(seg, fd);
}

static int role_count(shl_segment *seg, int fd, long rounds) {
  t_send_byte(fd, 'R');
  count_locked(seg, rounds);
  return t_result();
}

static int role_scribble(const char *name);

/* argv: self role name [arg] report-fd */
static int run_role(int argc, char **argv) {
  const char *role = argv[1];
  if (strcmp(role, "scribble") == 0) return role_scribble(argv[2]);
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
  } else if (strcmp(role, "hold_nokeeper") == 0) {
    rc = role_hold_without_keeper(seg, fd);
  } else if (strcmp(role, "relock") == 0) {
    rc = role_relock(seg, fd);
  } else if (strcmp(role, "churn") == 0) {
    rc = role_churn(seg, fd);
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

/* A role in a new PID namespace, where it is pid 1 and its threads have ids
 * that processes of other namespaces have too (raw clone: the parent's pid of
 * the child, which only execs). -1 if namespaces are refused (not root). */
static pid_t spawn_in_pid_ns(const char *role, const char *name, const char *arg, int *report) {
  char exe[PATH_MAX], fd_arg[16];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  T_REQUIRE(n > 0);
  exe[n] = '\0';
  int fds[2];
  T_REQUIRE(pipe(fds) == 0);
  fcntl(fds[0], F_SETFD, FD_CLOEXEC);
  snprintf(fd_arg, sizeof fd_arg, "%d", fds[1]);
  char *argv[] = {(char *)self, (char *)role, (char *)name, (char *)(arg ? arg : fd_arg),
                  arg ? fd_arg : NULL, NULL};
  fflush(NULL);
  long pid = syscall(SYS_clone, CLONE_NEWPID | SIGCHLD, NULL, NULL, NULL, 0);
  if (pid == 0) {
    alarm(CHILD_LIMIT_S);
    execv(exe, argv);
    _exit(127);
  }
  close(fds[1]);
  if (pid < 0) {
    close(fds[0]);
    return -1;
  }
  *report = fds[0];
  return (pid_t)pid;
}

/* Wait for a role's first message ('L' for "hold") and return its pid. */
static pid_t started(pid_t pid, int fd, int want) {
  int msg = t_read_byte(fd, 5000);
  close(fd);
  if (msg != want) kill(pid, SIGKILL); /* leave nothing behind */
  T_REQUIRE(msg == want);
  return pid;
}

/* Start a role and return once it sent `want`. */
static pid_t start_role(const char *role, const char *name, int want) {
  int fd;
  pid_t pid = spawn(role, name, NULL, &fd);
  return started(pid, fd, want);
}

/* Start a "hold" child and return once it has the lock. */
static pid_t start_holder(const char *name) { return start_role("hold", name, 'L'); }

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

/* Holders SIGKILLed at any moment of lock or unlock, with another process
 * locking too (waiters set or not, the word listed or pending): the lock is
 * never lost; each kill leaves it free or marked for the next locker. */
static void test_killed_at_any_moment(const char *name, shl_segment *seg) {
  enum { ROUNDS = 12 };
  pid_t other = start_role("churn", name, 'R');
  for (int round = 0; round < ROUNDS; round++) {
    pid_t victim = start_role("churn", name, 'R');
    t_sleep_ms(1 + round % 4);
    kill_holder(victim);
    int rc = shl_lock(seg, WAIT_NS);
    T_REQUIRE(rc == 0 || rc == SHL_E_OWNER_DEAD);
    T_EXPECT_RC(shl_unlock(seg), 0);
  }
  kill_holder(other);
  int rc = shl_lock(seg, WAIT_NS);
  T_REQUIRE(rc == 0 || rc == SHL_E_OWNER_DEAD);
  T_EXPECT_RC(shl_unlock(seg), 0);
}

/* Holders in PID namespaces of their own, whose lock keepers have the same
 * thread id there (2: the thread after pid 1): they exclude each other and
 * this process; one that dies while waiting, after it held the lock once,
 * never frees another's lock (the kernel compares only numbers: the word must
 * be on no list but its holder's), and the holder's death is seen here. */
static void test_pid_namespaces(const char *name, shl_segment *seg) {
  enum { ROUNDS = 3000 };
  volatile struct shared *sh = shl_payload(seg);
  char rounds[16];
  snprintf(rounds, sizeof rounds, "%d", ROUNDS);
  int fd[2];
  pid_t pid[2];
  T_EXPECT_RC(shl_lock(seg, WAIT_NS), 0);
  sh->counter = 0;
  for (int i = 0; i < 2; i++) {
    pid[i] = spawn_in_pid_ns("count", name, rounds, &fd[i]);
    if (pid[i] < 0) {
      fprintf(stderr, "pid namespaces: %s, skipped\n", strerror(errno));
      T_EXPECT_RC(shl_unlock(seg), 0);
      return;
    }
    started(pid[i], fd[i], 'R');
  }
  T_EXPECT_RC(shl_unlock(seg), 0);
  count_locked(seg, ROUNDS);
  for (int i = 0; i < 2; i++) T_EXPECT_EXIT(t_child_reap(pid[i]), 0);
  T_CHECK(sh->counter == 3 * ROUNDS);

  /* The waiter has held the lock once (its keeper has listed the word and
   * must have unlisted it) before the other namespace's holder takes it. */
  int f, wf;
  sh->holder = 0;
  pid_t waiter = spawn_in_pid_ns("relock", name, NULL, &wf);
  T_REQUIRE(waiter > 0);
  T_CHECK(t_read_byte(wf, 5000) == 'U');
  pid_t holder = spawn_in_pid_ns("hold", name, NULL, &f);
  T_REQUIRE(holder > 0);
  started(holder, f, 'L');
  started(waiter, wf, 'R');
  T_CHECK(t_wait_in_futex(waiter, 5000));
  kill_holder(waiter);
  check_contended(seg); /* still the holder's, not marked */
  kill_holder(holder);
  T_EXPECT_RC(shl_lock(seg, WAIT_NS), SHL_E_OWNER_DEAD);
  T_EXPECT_RC(shl_unlock(seg), 0);
}

/* A peer with write access scribbles on the lock's 64-byte slot while a
 * holder holds it: each 8 bytes but the word alone (a glibc robust mutex's
 * list links among them: its unlock then wrote where they pointed, SIGSEGV),
 * then all of them, then the word itself. The holder only ever reads and
 * writes the word. The "scribble" role, so that a crash is a failure
 * reported; the peer's writes come through a mapping of its own (which
 * process makes them changes nothing for the holder). Returns the step that
 * failed. */
static int role_scribble(const char *name) {
  static const struct { unsigned off, len; } spans[] = {
      {24, 8}, {32, 8}, {4, 4}, {8, 8}, {16, 8}, {40, 8}, {48, 8}, {56, 8}, {4, 60}};
  enum { SLOT = 256 };
  char path[T_PATH_MAX];
  int fd = open(t_shm_path(name, path), O_RDWR | O_CLOEXEC);
  if (fd < 0) return 100;
  unsigned char *peer = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  close(fd);
  if (peer == MAP_FAILED) return 101;
  shl_segment *seg = t_open(name, 0);
  for (unsigned i = 0; i < sizeof spans / sizeof spans[0]; i++) {
    if (shl_lock(seg, WAIT_NS) != 0) return 10 + (int)i;
    memset(peer + SLOT + spans[i].off, 0x41, spans[i].len);
    if (shl_unlock(seg) != 0) return 30 + (int)i;
    if (shl_trylock(seg) != 0 || shl_unlock(seg) != 0) return 50 + (int)i; /* as good as new */
  }
  _Atomic uint32_t *word = (_Atomic uint32_t *)(peer + SLOT);
  /* Another holder's id: this unlock says so and leaves the word alone. */
  if (shl_lock(seg, WAIT_NS) != 0) return 70;
  atomic_store(word, 12345);
  if (shl_unlock(seg) != -ENOTRECOVERABLE) return 71;
  if (shl_trylock(seg) != -EBUSY) return 72; /* wedged, as the peer asked */
  atomic_store(word, 0);
  /* A death the peer made up: reported once to the next locker. */
  if (shl_lock(seg, WAIT_NS) != 0) return 73;
  atomic_store(word, SHL__LOCK_DIED);
  if (shl_unlock(seg) != -ENOTRECOVERABLE) return 74;
  if (shl_lock(seg, WAIT_NS) != SHL_E_OWNER_DEAD || shl_unlock(seg) != 0) return 75;
  if (shl_trylock(seg) != 0 || shl_unlock(seg) != 0) return 76;
  shl_close(seg);
  munmap(peer, 4096);
  return 0;
}

/* A new segment of the tests' layout, removed at exit whatever happens. */
static shl_segment *make(char name[SHL_NAME_MAX + 1], const char *tag) {
  snprintf(name, SHL_NAME_MAX + 1, "%s", t_name(tag));
  t_unlink_at_exit(name);
  shl_layout layout = {.format = FORMAT};
  shl_segment *seg = NULL;
  T_EXPECT_RC(shl_create(&seg, name, &layout, NULL), 0);
  T_REQUIRE(seg != NULL && shl_payload_size(seg) >= sizeof(struct shared));
  return seg;
}

static void test_scribbled_slot(void) {
  char name[SHL_NAME_MAX + 1];
  shl_segment *seg = make(name, "lks");
  int fd;
  pid_t pid = spawn("scribble", name, NULL, &fd);
  close(fd);
  T_EXPECT_EXIT(t_child_reap(pid), 0);
  shl_close(seg);
  shl_unlink(name);
}

/* A thread that ends holding the lock, its process alive: the lock stays
 * held (its handle's keeper lives) until the handle is closed, which marks
 * it dead: a thread asleep in shl_lock meanwhile gets SHL_E_OWNER_DEAD. */
static void *lock_and_end(void *seg) { return (void *)(intptr_t)shl_lock(seg, WAIT_NS); }
static void *lock_and_unlock(void *seg) {
  intptr_t rc = shl_lock(seg, WAIT_NS);
  if (rc == 0 || rc == SHL_E_OWNER_DEAD) T_EXPECT_RC(shl_unlock(seg), 0);
  return (void *)rc;
}

static void test_thread_ends_holding(const char *name, shl_segment *seg) {
  shl_segment *h = t_open(name, 0);
  pthread_t t;
  void *rc;
  T_REQUIRE(pthread_create(&t, NULL, lock_and_end, h) == 0);
  pthread_join(t, &rc);
  T_EXPECT_RC((int)(intptr_t)rc, 0);
  T_EXPECT_RC(shl_trylock(seg), -EBUSY);
  T_REQUIRE(pthread_create(&t, NULL, lock_and_unlock, seg) == 0);
  t_sleep_ms(30); /* asleep by now, most likely; the result is the same if not */
  shl_close(h);
  pthread_join(t, &rc);
  T_EXPECT_RC((int)(intptr_t)rc, SHL_E_OWNER_DEAD);
  T_EXPECT_RC(shl_lock(seg, 0), 0);
  T_EXPECT_RC(shl_unlock(seg), 0);
}

/* A holder whose process cannot register a robust list (seccomp): the lock
 * still excludes, holding the thread's own id; its death goes unseen, as
 * documented (docs/format.md, Lock): the lock stays held. */
static void test_without_keeper(void) {
  char name[SHL_NAME_MAX + 1];
  shl_segment *seg = make(name, "lkn");
  pid_t pid = start_role("hold_nokeeper", name, 'L');
  check_contended(seg);
  T_CHECK((atomic_load(&seg->hdr->lock) & SHL__LOCK_TID_MASK) == (uint32_t)pid);
  kill_holder(pid);
  T_EXPECT_RC(shl_lock(seg, 100 * T_MS), -ETIMEDOUT);
  shl_close(seg);
  shl_unlink(name);
}

/* Two handles of one segment in one process: each has its own keeper; the
 * lock excludes between them as between processes (the same thread through
 * the other handle waits: -EDEADLK is for the same handle), and a thread
 * waiting through one gets it when the other's holder unlocks. */
static void test_two_handles(const char *name, shl_segment *seg) {
  shl_segment *b = t_open(name, 0);
  T_EXPECT_RC(shl_lock(seg, WAIT_NS), 0);
  T_EXPECT_RC(shl_trylock(b), -EBUSY);
  T_EXPECT_RC(shl_lock(b, 50 * T_MS), -ETIMEDOUT);
  pthread_t t;
  void *rc;
  T_REQUIRE(pthread_create(&t, NULL, lock_and_unlock, b) == 0);
  t_sleep_ms(10);
  T_EXPECT_RC(shl_unlock(seg), 0);
  pthread_join(t, &rc);
  T_EXPECT_RC((int)(intptr_t)rc, 0);
  T_EXPECT_RC(shl_lock(b, 0), 0);
  T_EXPECT_RC(shl_lock(b, 0), -EDEADLK);
  T_EXPECT_RC(shl_trylock(seg), -EBUSY);
  shl_close(b); /* releases this thread's lock through b */
  T_EXPECT_RC(shl_trylock(seg), 0);
  T_EXPECT_RC(shl_unlock(seg), 0);
}

int main(int argc, char **argv) {
  self = argv[0];
  if (argc > 2) return run_role(argc, argv);

  char name[SHL_NAME_MAX + 1];
  shl_segment *seg = make(name, "lock");

  test_basics(seg);
  test_unlock_races_a_lock_of_another_thread(seg);
  test_held_here(name, seg);
  test_holder_killed(name, seg);
  test_killed_while_others_wait(name, seg);
  test_exclusion(name, seg);
  test_killed_at_any_moment(name, seg);
  test_pid_namespaces(name, seg);
  test_thread_ends_holding(name, seg);
  test_two_handles(name, seg);
  test_scribbled_slot();
  test_without_keeper();
  shl_close(seg);
  return t_result();
}
