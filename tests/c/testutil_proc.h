/* Test helpers: child processes, object paths and clean-up (segment, corrupt,
 * excl, readonly and perm tests); report pipes and timing (lock and notify
 * tests). */
#ifndef SHL_TESTUTIL_PROC_H
#define SHL_TESTUTIL_PROC_H

#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "testutil.h"

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

/* A forked child running a function; its int result comes back on `fd`. */
struct t_child {
  pid_t pid;
  int fd;
};

/* Start fn(arg) in a forked child that dies of SIGALRM after limit_s
 * seconds, so nothing can hang. Returns 0, or -1 if it could not start. */
static inline int t_child_start(struct t_child *c, int (*fn)(void *), void *arg, unsigned limit_s) {
  int fds[2];
  if (pipe(fds) < 0) return -1;
  fflush(NULL); /* the child must not flush our buffers a second time */
  c->pid = fork();
  if (c->pid < 0) {
    close(fds[0]);
    close(fds[1]);
    return -1;
  }
  if (c->pid == 0) {
    close(fds[0]);
    alarm(limit_s);
    int v = fn(arg);
    _exit(write(fds[1], &v, sizeof v) == (ssize_t)sizeof v ? 0 : 1);
  }
  close(fds[1]);
  c->fd = fds[0];
  return 0;
}

/* Collect the child's result into *rc (INT_MIN if it died before
 * answering) and reap it. Returns its wait status, or -1. */
static inline int t_child_finish(struct t_child *c, int *rc) {
  int v;
  ssize_t n;
  while ((n = read(c->fd, &v, sizeof v)) < 0 && errno == EINTR) {
  }
  *rc = n == (ssize_t)sizeof v ? v : INT_MIN;
  close(c->fd);
  return t_child_reap(c->pid);
}

/* t_child_start() then t_child_finish(): fn(arg) in a child, to completion. */
static inline int t_child_run(int (*fn)(void *), void *arg, unsigned limit_s, int *rc) {
  struct t_child c;
  *rc = INT_MIN;
  if (t_child_start(&c, fn, arg, limit_s) < 0) return -1;
  return t_child_finish(&c, rc);
}

/* Start this program again as a fresh process image (/proc/self/exe) with
 * argv (argv[0] included, NULL-terminated): a process unrelated to us but
 * for its parent pid. It dies of SIGALRM after limit_s seconds (the alarm
 * survives execv). Returns its pid, or -1. The path is read through
 * readlink, which valgrind answers with the test's own path: an exec of
 * /proc/self/exe itself would start valgrind's tool binary, which refuses.
 * Under valgrind the child then runs natively (no --trace-children). */
static inline pid_t t_exec_self(char *const argv[], unsigned limit_s) {
  char self[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n > 0) self[n] = '\0';
  else snprintf(self, sizeof self, "/proc/self/exe");
  fflush(NULL);
  pid_t pid = fork();
  if (pid == 0) {
    alarm(limit_s);
    execv(self, argv);
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
  fprintf(stderr, "%s:%d: child: %s, want %s %d\n", file, line, got, sig ? "signal" : "exit",
          sig ? sig : code);
  t_failures++;
}

/* Poll (bounded) until the thread whose /proc syscall file is `path` sleeps
 * in the futex system call, so a wake-up test wakes a real sleeper instead
 * of racing past it. 1 once seen, 0 after timeout_ms (0: look once). */
#define T_SYS_FUTEX_WAITV 449 /* a stream reader sleeps on two words at once */
static inline int t_wait_in_futex_at(const char *path, long timeout_ms) {
  char buf[128];
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
        long nr = strtol(buf, &end, 10);
        if ((nr == SYS_futex || nr == T_SYS_FUTEX_WAITV) && *end == ' ') return 1;
      }
    }
    if (timeout_ms) t_sleep_ms(1);
  } while (t_now_ns() < deadline);
  return 0;
}

/* The same for process pid (its main thread). */
static inline int t_wait_in_futex(pid_t pid, long timeout_ms) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%ld/syscall", (long)pid);
  return t_wait_in_futex_at(path, timeout_ms);
}

/* Thread tid of this process. */
static inline int t_thread_in_futex(pid_t tid, long timeout_ms) {
  char path[64];
  snprintf(path, sizeof path, "/proc/self/task/%ld/syscall", (long)tid);
  return t_wait_in_futex_at(path, timeout_ms);
}

/* Voluntary context switches of thread tid of this process: each sleep
 * counts one, so each wake-up that sends it back to sleep counts one more.
 * (Involuntary ones are preemptions by other work on a loaded machine, not
 * wake-ups.) */
static inline long t_switches_of(pid_t tid) {
  char path[64], line[128];
  snprintf(path, sizeof path, "/proc/self/task/%ld/status", (long)tid);
  FILE *f = fopen(path, "r");
  T_REQUIRE(f != NULL);
  long n = 0, v;
  while (fgets(line, sizeof line, f))
    if (sscanf(line, "voluntary_ctxt_switches: %ld", &v) == 1) n += v;
  fclose(f);
  return n;
}

/* Poll (bounded) until process pid sleeps (state S in /proc/PID/stat): 1
 * once seen, 0 after timeout_ms. */
static inline int t_wait_sleeping(pid_t pid, long timeout_ms) {
  char path[64], buf[512];
  snprintf(path, sizeof path, "/proc/%ld/stat", (long)pid);
  long long deadline = t_now_ns() + timeout_ms * 1000000LL;
  do {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;
    if (fd >= 0) close(fd);
    if (n > 0) {
      buf[n] = '\0';
      char *p = strrchr(buf, ')');
      if (p && p[1] == ' ' && p[2] == 'S') return 1;
    }
    t_sleep_ms(1);
  } while (t_now_ns() < deadline);
  return 0;
}

/* ---- Report pipes and timing (lock and notify tests). ---- */

#define T_MS 1000000LL /* nanoseconds per millisecond */

/* The bound on a call that must not wait (T_EXPECT_TOOK(t0, 0, T_AT_ONCE_MS)):
 * far above what load on 2 CPUs or sanitizers add, yet a call that waits out
 * any of the tests' time-outs (1 s and more) or its spin (4 s asked) fails. */
#define T_AT_ONCE_MS 500

/* Time since t0 (a t_now_ns() value) must lie in [min_ms, max_ms). */
#define T_EXPECT_TOOK(t0, min_ms, max_ms) \
  t_expect_took_((t0), (min_ms), (max_ms), __FILE__, __LINE__)

static inline void t_expect_took_(long long t0, long min_ms, long max_ms, const char *file,
                                  int line) {
  long long took = t_now_ns() - t0;
  if (took >= min_ms * T_MS && took < max_ms * T_MS) return;
  fprintf(stderr, "%s:%d: took %.1f ms, want [%ld, %ld) ms\n", file, line, (double)took / 1e6,
          min_ms, max_ms);
  t_failures++;
}

/* t_exec_self with a report pipe: the number of its write end is appended as
 * the child's last argument (the child writes one-byte messages to it); the
 * read end goes to *report. */
static inline pid_t t_exec_reporting(const char *const args[], int *report, unsigned limit_s) {
  int fds[2];
  char fd_arg[16], *argv[16];
  int n = 0;
  T_REQUIRE(pipe(fds) == 0);
  fcntl(fds[0], F_SETFD, FD_CLOEXEC);
  snprintf(fd_arg, sizeof fd_arg, "%d", fds[1]);
  for (; args[n] && n < 14; n++) argv[n] = (char *)args[n];
  argv[n++] = fd_arg;
  argv[n] = NULL;
  pid_t pid = t_exec_self(argv, limit_s);
  T_REQUIRE(pid > 0);
  close(fds[1]);
  *report = fds[0];
  return pid;
}

static inline void t_send_byte(int fd, char c) { T_CHECK(write(fd, &c, 1) == 1); }

/* One byte from fd within timeout_ms: the byte, or -1 on EOF, error or time-out. */
static inline int t_read_byte(int fd, long timeout_ms) {
  long long deadline = t_now_ns() + timeout_ms * T_MS;
  for (;;) {
    long long left = deadline - t_now_ns();
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int n = poll(&p, 1, left > 0 ? (int)(left / T_MS) : 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return -1;
    unsigned char c;
    ssize_t r = read(fd, &c, 1);
    if (r == 1) return c;
    if (r < 0 && errno == EINTR) continue;
    return -1;
  }
}

/* Open an existing segment (a role in a child process), or exit. */
static inline shl_segment *t_open(const char *name, uint32_t flags) {
  shl_segment *seg = NULL;
  T_EXPECT_RC(shl_open(&seg, name, flags, SHL_OPEN_DEFAULT_TIMEOUT_NS), 0);
  T_REQUIRE(seg != NULL);
  return seg;
}

#endif /* SHL_TESTUTIL_PROC_H */
