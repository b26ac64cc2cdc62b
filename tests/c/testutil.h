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

/* ---- Report pipes and timing (lock and notify tests). ---- */
#include <poll.h>

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

/* ---- Streams: frames, readers' running checks, two-way children (stream,
 * stream_torn and stream_kill tests). ---- */
#include <stdint.h>

/* t_exec_reporting plus a command pipe the other way: the child gets its read
 * end as the next-to-last argument (the report fd stays last), *command the
 * write end. Closing *command is an EOF the child can notice. */
static inline pid_t t_exec_duplex(const char *const args[], int *report, int *command,
                                  unsigned limit_s) {
  int fds[2];
  char fd_arg[16];
  const char *argv[16];
  int n = 0;
  T_REQUIRE(pipe(fds) == 0);
  fcntl(fds[1], F_SETFD, FD_CLOEXEC); /* children started later must not keep it open */
  snprintf(fd_arg, sizeof fd_arg, "%d", fds[0]);
  for (; args[n] && n < 13; n++) argv[n] = args[n];
  argv[n++] = fd_arg;
  argv[n] = NULL;
  pid_t pid = t_exec_reporting(argv, report, limit_s);
  close(fds[0]);
  *command = fds[1];
  return pid;
}

/* SIGKILL a child and reap it. */
static inline void t_kill_child(pid_t pid) {
  T_CHECK(kill(pid, SIGKILL) == 0);
  T_EXPECT_SIGNAL(t_child_reap(pid), SIGKILL);
}

/* A child's one-byte go-ahead on fd, which is closed after: 1 if it is
 * `want`; otherwise a failure is counted and the child killed and reaped. */
static inline int t_await_byte(pid_t pid, int fd, int want, long timeout_ms) {
  int got = t_read_byte(fd, timeout_ms);
  close(fd);
  if (got == want) return 1;
  fprintf(stderr, "child %ld said %d, want '%c'\n", (long)pid, got, want);
  t_failures++;
  kill(pid, SIGKILL);
  t_child_reap(pid);
  return 0;
}

/* Exactly len bytes from fd within timeout_ms: 0, or -1 on EOF, error or time-out. */
static inline int t_read_full(int fd, void *buf, size_t len, long timeout_ms) {
  unsigned char *p = buf;
  long long deadline = t_now_ns() + timeout_ms * T_MS;
  while (len > 0) {
    long long left = deadline - t_now_ns();
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    int n = poll(&pfd, 1, left > 0 ? (int)(left / T_MS) : 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return -1;
    ssize_t r = read(fd, p, len);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return -1;
    p += r;
    len -= (size_t)r;
  }
  return 0;
}

/* A fresh segment name for this process and tag, unlinked now and at exit. */
static inline void t_fresh_name(char buf[SHL_NAME_MAX + 1], const char *tag) {
  snprintf(buf, SHL_NAME_MAX + 1, "%s", t_name(tag));
  shl_unlink(buf);
  t_unlink_at_exit(buf);
}

/* Test frames are `words` uint64 words ("<Q"), every one stamped with the
 * same tag: a reader that finds two different words saw a torn frame. */
static inline shl_layout t_frame_layout(uint64_t words) {
  shl_layout l = {.format = "<Q", .ndim = 1};
  l.shape[0] = words;
  return l;
}

static inline void t_frame_stamp(void *frame, uint64_t words, uint64_t tag) {
  uint64_t *w = frame;
  for (uint64_t i = 0; i < words; i++) w[i] = tag;
}

/* Words of the frame that differ from tag: 0 for an intact frame. */
static inline uint64_t t_frame_bad_words(const void *frame, uint64_t words, uint64_t tag) {
  const uint64_t *w = frame;
  uint64_t bad = 0;
  for (uint64_t i = 0; i < words; i++) bad += w[i] != tag;
  return bad;
}

/* The canary of t_frame_bad_words: a frame torn in one word in its middle
 * only must be reported, or the check itself is broken. */
static inline void t_frame_check_canary(uint64_t words) {
  uint64_t *frame = calloc(words, sizeof *frame);
  T_REQUIRE(frame != NULL);
  t_frame_stamp(frame, words, 7);
  frame[words / 2] = 8;
  if (t_frame_bad_words(frame, words, 7) != 1) {
    fprintf(stderr, "the torn check misses a frame torn in its middle\n");
    t_failures++;
  }
  free(frame);
}

/* Open (create or take over) a stream of `words`-word frames, or stop the test. */
static inline shl_writer *t_writer_open(const char *name, uint64_t words, uint32_t slots,
                                        uint32_t max_readers, uint32_t flags) {
  shl_layout l = t_frame_layout(words);
  shl_stream_opts o = {.slots = slots, .max_readers = max_readers, .flags = flags};
  shl_writer *w = NULL;
  T_EXPECT_RC(shl_writer_open(&w, name, &l, &o), 0);
  T_REQUIRE(w != NULL);
  return w;
}

static inline shl_reader *t_reader_open(const char *name, uint32_t mode, long timeout_ms) {
  shl_reader *r = NULL;
  T_EXPECT_RC(shl_reader_open(&r, name, mode, timeout_ms * T_MS), 0);
  T_REQUIRE(r != NULL);
  return r;
}

/* A reader that may hold up to max_pinned samples at once. */
static inline shl_reader *t_reader_open_pins(const char *name, uint32_t mode, long timeout_ms,
                                             uint32_t max_pinned) {
  shl_reader_opts o = SHL_READER_OPTS_INIT;
  o.mode = mode;
  o.timeout_ns = timeout_ms * T_MS;
  o.max_pinned = max_pinned;
  shl_reader *r = NULL;
  T_EXPECT_RC(shl_reader_open_ex(&r, name, &o), 0);
  T_REQUIRE(r != NULL);
  return r;
}

/* Loan a slot (waiting up to timeout_ms), stamp it with tag and publish it:
 * the frame's seq, or 0 after counting a failure. */
static inline uint64_t t_publish(shl_writer *w, uint64_t words, uint64_t tag, long timeout_ms) {
  void *frame = NULL;
  int rc = shl_writer_loan(w, &frame, timeout_ms * T_MS);
  T_EXPECT_RC(rc < 0 ? rc : 0, 0);
  if (rc < 0) return 0;
  t_frame_stamp(frame, words, tag);
  uint64_t seq = 0;
  T_EXPECT_RC(shl_writer_publish(w, &seq), 0);
  return seq;
}

static inline shl_stream_info t_stream_info(const shl_segment *seg) {
  shl_stream_info info;
  memset(&info, 0, sizeof info);
  T_EXPECT_RC(shl_stream_get_info(seg, &info), 0);
  return info;
}

/* What one reader received, checked sample by sample. It must start before
 * the stream's first frame for the `all` accounting to hold from seq 1. */
struct t_tally {
  uint32_t mode;      /* enum shl_recv_mode */
  uint64_t samples;   /* received */
  uint64_t accounted; /* `all`: sum of 1 + lost, the frames received or reported lost */
  uint64_t last_seq, last_tag, last_ts;
  uint64_t torn;     /* samples whose words differ */
  uint64_t disorder; /* seq, tag (first word) or timestamp not increasing */
  uint64_t miscount; /* `all`: seq != previous seq + 1 + lost */
};

static inline void t_tally_add(struct t_tally *t, const shl_sample *s, uint64_t words) {
  uint64_t tag = *(const uint64_t *)s->data;
  t->torn += t_frame_bad_words(s->data, words, tag) != 0;
  t->disorder += s->seq <= t->last_seq || tag <= t->last_tag || s->timestamp_ns < t->last_ts;
  if (t->mode == SHL_RECV_ALL) {
    t->miscount += s->seq != t->last_seq + 1 + s->lost;
    t->accounted += 1 + s->lost;
  }
  t->samples++;
  t->last_seq = s->seq;
  t->last_tag = tag;
  t->last_ts = s->timestamp_ns;
}

static inline int t_tally_clean(const struct t_tally *t) {
  return !t->torn && !t->disorder && !t->miscount;
}

static inline void t_tally_print(const char *who, const struct t_tally *t) {
  fprintf(stderr,
          "%s (%s): %llu samples, last seq %llu, accounted %llu, torn %llu, "
          "disorder %llu, miscount %llu\n",
          who, t->mode == SHL_RECV_ALL ? "all" : "latest", (unsigned long long)t->samples,
          (unsigned long long)t->last_seq, (unsigned long long)t->accounted,
          (unsigned long long)t->torn, (unsigned long long)t->disorder,
          (unsigned long long)t->miscount);
}

#endif /* SHL_TESTUTIL_H */
