/* Tiny helpers shared by the C test programs. Exit codes: 0 pass, 1 fail, 77 skip. */
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

/* ---- Child processes, object paths and clean-up (segment, corrupt, excl,
 * readonly and perm tests). ---- */
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>

/* Room for "/dev/shm/shl." plus the longest name. */
#define T_PATH_MAX 64

/* The file a segment's POSIX object appears as: /dev/shm/shl.<name>. */
static inline char *t_shm_path(const char *name, char buf[T_PATH_MAX]) {
  snprintf(buf, T_PATH_MAX, "/dev/shm%s%s", SHL_POSIX_PREFIX, name);
  return buf;
}

/* Names unlinked when the registering process exits, so a test that stops
 * early (T_REQUIRE) leaves nothing behind in /dev/shm. */
struct t_cleanup_list_ {
  pid_t owner;
  int count;
  char names[64][SHL_NAME_MAX + 1];
};

static inline struct t_cleanup_list_ *t_cleanup_list_(void) {
  static struct t_cleanup_list_ list;
  return &list;
}

static inline void t_cleanup_run_(void) {
  struct t_cleanup_list_ *l = t_cleanup_list_();
  if (l->owner != getpid()) return; /* a forked child that called exit() */
  for (int i = 0; i < l->count; i++) shl_unlink(l->names[i]);
}

static inline void t_unlink_at_exit(const char *name) {
  struct t_cleanup_list_ *l = t_cleanup_list_();
  if (l->owner != getpid()) {
    l->owner = getpid();
    l->count = 0;
    atexit(t_cleanup_run_);
  }
  for (int i = 0; i < l->count; i++)
    if (strcmp(l->names[i], name) == 0) return;
  if (l->count < 64) snprintf(l->names[l->count++], SHL_NAME_MAX + 1, "%s", name);
}

/* Reap a child, retrying on EINTR. Returns its wait status, or -1. */
static inline int t_child_reap(pid_t pid) {
  int status;
  while (waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) return -1;
  return status;
}

/* Run fn(arg) in a forked child that dies of SIGALRM after limit_s seconds,
 * so nothing can hang. The int fn returns comes back into *rc (INT_MIN if the
 * child died before answering). Returns the child's wait status, or -1. */
static inline int t_child_run(int (*fn)(void *), void *arg, unsigned limit_s, int *rc) {
  int fds[2];
  *rc = INT_MIN;
  if (pipe(fds) < 0) return -1;
  fflush(NULL); /* the child must not flush our buffers a second time */
  pid_t pid = fork();
  if (pid < 0) {
    close(fds[0]);
    close(fds[1]);
    return -1;
  }
  if (pid == 0) {
    close(fds[0]);
    alarm(limit_s);
    int v = fn(arg);
    _exit(write(fds[1], &v, sizeof v) == (ssize_t)sizeof v ? 0 : 1);
  }
  close(fds[1]);
  int v;
  ssize_t n;
  while ((n = read(fds[0], &v, sizeof v)) < 0 && errno == EINTR) {
  }
  if (n == (ssize_t)sizeof v) *rc = v;
  close(fds[0]);
  return t_child_reap(pid);
}

/* Start this program again as a fresh process image (/proc/self/exe) with
 * argv (argv[0] included, NULL-terminated): a process unrelated to us but
 * for its parent pid. It dies of SIGALRM after limit_s seconds (the alarm
 * survives execv). Returns its pid, or -1. */
static inline pid_t t_exec_self(char *const argv[], unsigned limit_s) {
  fflush(NULL);
  pid_t pid = fork();
  if (pid == 0) {
    alarm(limit_s);
    execv("/proc/self/exe", argv);
    _exit(127);
  }
  return pid;
}

/* Expect a wait status: exited with `code`, or (sig != 0) killed by `sig`. */
#define T_EXPECT_EXIT(status, code) t_expect_status_((status), (code), 0, __FILE__, __LINE__)
#define T_EXPECT_SIGNAL(status, sig) t_expect_status_((status), 0, (sig), __FILE__, __LINE__)

static inline void t_expect_status_(int status, int code, int sig, const char *file, int line) {
  char got[96];
  if (status == -1) {
    snprintf(got, sizeof got, "no child");
  } else if (WIFEXITED(status)) {
    if (!sig && WEXITSTATUS(status) == code) return;
    snprintf(got, sizeof got, "exit %d", WEXITSTATUS(status));
  } else if (WIFSIGNALED(status)) {
    if (sig && WTERMSIG(status) == sig) return;
    snprintf(got, sizeof got, "killed by signal %d (%s)", WTERMSIG(status),
             strsignal(WTERMSIG(status)));
  } else {
    snprintf(got, sizeof got, "status 0x%x", (unsigned)status);
  }
  fprintf(stderr, "%s:%d: child: %s, want %s %d\n", file, line, got,
          sig ? "signal" : "exit", sig ? sig : code);
  t_failures++;
}

/* Poll (bounded) until process pid sleeps in the futex system call, so a
 * wake-up test wakes a real sleeper instead of racing past it. 1 once seen,
 * 0 after timeout_ms. */
static inline int t_wait_in_futex(pid_t pid, long timeout_ms) {
  char path[64], buf[128];
  snprintf(path, sizeof path, "/proc/%ld/syscall", (long)pid);
  long long deadline = t_now_ns() + timeout_ms * 1000000LL;
  do {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
      ssize_t n = read(fd, buf, sizeof buf - 1);
      close(fd);
      char *end;
      /* "<nr> <args...>" while blocked in a syscall; "running" or "-1 ..." otherwise. */
      if (n > 0 && buf[0] >= '0' && buf[0] <= '9') {
        buf[n] = '\0';
        if (strtol(buf, &end, 10) == SYS_futex && *end == ' ') return 1;
      }
    }
    t_sleep_ms(1);
  } while (t_now_ns() < deadline);
  return 0;
}

#endif /* SHL_TESTUTIL_H */
