/* Test helpers for streams: frames, readers' running checks, two-way
 * children (stream, stream_torn and stream_kill tests). */
#ifndef SHL_TESTUTIL_STREAM_H
#define SHL_TESTUTIL_STREAM_H

#include <stdint.h>

#include "testutil_proc.h"

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

/* A child started with t_exec_duplex that says 'W' when it is ready. */
struct t_peer {
  pid_t pid;
  int report, command;
};

static inline struct t_peer t_start_peer(const char *const args[], unsigned limit_s,
                                          long ready_ms) {
  struct t_peer c;
  c.pid = t_exec_duplex(args, &c.report, &c.command, limit_s);
  T_REQUIRE(c.pid > 0);
  T_REQUIRE(t_read_byte(c.report, ready_ms) == 'W');
  return c;
}

/* EOF on its command pipe: it must exit 0. */
static inline void t_stop_peer(struct t_peer *c) {
  close(c->command);
  T_EXPECT_EXIT(t_child_reap(c->pid), 0);
  close(c->report);
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
  shl_stream_opts o = {.size = sizeof(shl_stream_opts), .slots = slots, .max_readers = max_readers, .flags = flags};
  shl_writer *w = NULL;
  T_EXPECT_RC(shl_writer_open(&w, name, &l, &o), 0);
  T_REQUIRE(w != NULL);
  return w;
}

static inline shl_reader *t_reader_open(const char *name, uint32_t policy, long timeout_ms) {
  shl_reader *r = NULL;
  T_EXPECT_RC(shl_reader_open(&r, name, policy, timeout_ms * T_MS), 0);
  T_REQUIRE(r != NULL);
  return r;
}

/* A reader with options: max_pinned (0: the default) and flags (enum shl_reader_flags). */
static inline shl_reader *t_reader_open_ex(const char *name, uint32_t policy, long timeout_ms,
                                           uint32_t max_pinned, uint32_t flags) {
  shl_reader_opts o = SHL_READER_OPTS_INIT;
  o.policy = policy;
  o.timeout_ns = timeout_ms * T_MS;
  o.max_pinned = max_pinned;
  o.flags = flags;
  shl_reader *r = NULL;
  T_EXPECT_RC(shl_reader_open_ex(&r, name, &o), 0);
  T_REQUIRE(r != NULL);
  return r;
}

/* A reader that may hold up to max_pinned samples at once. */
static inline shl_reader *t_reader_open_pins(const char *name, uint32_t policy, long timeout_ms,
                                             uint32_t max_pinned) {
  return t_reader_open_ex(name, policy, timeout_ms, max_pinned, 0);
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
  shl_stream_info info = SHL_STREAM_INFO_INIT;
  T_EXPECT_RC(shl_stream_get_info(seg, &info), 0);
  return info;
}

/* What one reader received, checked sample by sample. It must start before
 * the stream's first frame for the `all` accounting to hold from seq 1. */
struct t_tally {
  uint32_t mode;      /* the receive policy: enum shl_recv_policy */
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

#endif /* SHL_TESTUTIL_STREAM_H */
