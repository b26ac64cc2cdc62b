/* Streams, the API and its errors: loan, publish and discard; both receive
 * modes, with exact loss counts; pins; time-outs; writer takeover; the reader
 * table; SHL_STREAM_BLOCK back-pressure; a stream that appears late. Every
 * frame is stamped with the seq it must get, so each sample's bytes are
 * checked too. Other processes are this program re-executed with a role
 * argument: they share nothing with us but the stream. */
#include <signal.h>
#include <stdint.h>
#include <sys/time.h>

#include "internal.h" /* the header's waiter count */
#include "testutil_stream.h"
#include "testutil_spin.h"

#define WORDS 8          /* 64-byte frames */
#define SLOTS 4          /* small ring: laps are quick to provoke */
#define WAIT_MS 5000     /* bound on anything that should succeed */
#define LATE_MS 200      /* the "late" child creates its stream after this */
#define GONE_MAX_MS 500  /* WRITER_GONE is due within 100 ms: slack for sanitizers and load */
#define CHILD_LIMIT_S 30 /* a child still alive by then dies of SIGALRM */
#define ANY UINT64_MAX   /* any `lost` value */

static const char *self; /* argv[0], to re-execute ourselves */
/* Worst latencies measured, printed at the end: WRITER_GONE after the writer
 * left; a sleeping BLOCK writer's loan after a reader died, or read. */
static double gone_worst_ms, unblock_kill_ms, unblock_read_ms;

/* ---------------------------------------------------------------- helpers */

static shl_writer *open_writer(const char *name, uint32_t flags) {
  return t_writer_open(name, WORDS, SLOTS, 0, flags);
}

/* Publish frames from..to; each must get the seq it is stamped with. */
#define PUBLISH(w, from, to) publish_((w), (from), (to), __LINE__)
static void publish_(shl_writer *w, uint64_t from, uint64_t to, int line) {
  for (uint64_t seq = from; seq <= to; seq++) {
    uint64_t got = t_publish(w, WORDS, seq, 0);
    if (got == seq) continue;
    fprintf(stderr, "%s:%d: published seq %llu, want %llu\n", __FILE__, line,
            (unsigned long long)got, (unsigned long long)seq);
    t_failures++;
  }
}

/* Receive a sample and check its seq, lost (unless ANY) and bytes. 0 when
 * *s holds a pinned sample (the caller releases it). */
#define TAKE(r, s, seq, lost) take_((r), (s), (seq), (lost), __LINE__)
static int take_(shl_reader *r, shl_sample *s, uint64_t seq, uint64_t lost, int line) {
  int rc = shl_reader_receive(r, s, WAIT_MS * T_MS, 0);
  if (rc != 0) {
    fprintf(stderr, "%s:%d: receive returned %s, want seq %llu\n", __FILE__, line, shl_err_name(rc),
            (unsigned long long)seq);
    t_failures++;
    return rc;
  }
  uint64_t bad = t_frame_bad_words(s->data, WORDS, s->seq);
  if (s->seq != seq || (lost != ANY && s->lost != lost) || bad) {
    fprintf(stderr, "%s:%d: got seq %llu lost %llu (%llu bad words), want seq %llu lost %lld\n",
            __FILE__, line, (unsigned long long)s->seq, (unsigned long long)s->lost,
            (unsigned long long)bad, (unsigned long long)seq, lost == ANY ? -1 : (long long)lost);
    t_failures++;
  }
  return 0;
}

#define EXPECT_SAMPLE(r, seq, lost)                                                       \
  do {                                                                                    \
    shl_sample s_;                                                                        \
    if (TAKE((r), &s_, (seq), (lost)) == 0) T_EXPECT_RC(shl_reader_release((r), &s_), 0); \
  } while (0)

/* Nothing new: a non-blocking receive says so at once. */
#define EXPECT_NOTHING(r)                                        \
  do {                                                           \
    shl_sample s_;                                               \
    T_EXPECT_RC(shl_reader_receive((r), &s_, 0, 0), -ETIMEDOUT); \
  } while (0)

/* Every slot is taken: a non-blocking loan fails at once, a timed one on
 * time, with `why` (-ETIMEDOUT: `all` readers of a blocking stream hold the
 * writer back; SHL_E_SLOTS_PINNED: samples pin every slot). */
static void expect_no_slot(shl_writer *w, int why) {
  void *frame;
  long long t0 = t_now_ns();
  T_EXPECT_RC(shl_writer_loan(w, &frame, 0), why);
  T_EXPECT_TOOK(t0, 0, T_AT_ONCE_MS);
  t0 = t_now_ns();
  T_EXPECT_RC(shl_writer_loan(w, &frame, 100 * T_MS), why);
  T_EXPECT_TOOK(t0, 100, 1100);
}

/* The writer is gone and every frame was taken: the reader hears so in time,
 * and why (every writer here closes cleanly: SHL_E_WRITER_CLOSED). */
static void expect_gone(shl_reader *r) {
  shl_sample s;
  long long t0 = t_now_ns();
  T_EXPECT_RC(shl_reader_receive(r, &s, WAIT_MS * T_MS, 0), SHL_E_WRITER_CLOSED);
  double ms = (double)(t_now_ns() - t0) / 1e6;
  if (ms > gone_worst_ms) gone_worst_ms = ms;
  T_EXPECT_TOOK(t0, 0, GONE_MAX_MS);
}

static pid_t spawn(const char *role, const char *name, const char *arg, int *report) {
  const char *args[] = {self, role, name, arg, NULL};
  return t_exec_reporting(args, report, CHILD_LIMIT_S);
}

/* ---------------------------------------------------------------- roles */

/* A second writer while the first lives, from an unrelated process. */
static int role_busy(const char *name) {
  shl_layout l = t_frame_layout(WORDS);
  shl_writer *w = NULL;
  T_EXPECT_RC(shl_writer_open(&w, name, &l, NULL), -EBUSY);
  T_CHECK(w == NULL);
  return t_result();
}

/* Take the stream over and publish `count` frames after the last one. */
static int role_publish(const char *name, long count) {
  shl_writer *w = t_writer_open(name, WORDS, 0, 0, 0);
  uint64_t next = shl_writer_next_seq(w);
  PUBLISH(w, next, next + (uint64_t)count - 1);
  shl_writer_close(w);
  return t_result();
}

/* Create the stream only after a while, so that a reader waits for it. */
static int role_late(const char *name, int fd) {
  t_sleep_ms(LATE_MS);
  shl_writer *w = open_writer(name, 0);
  PUBLISH(w, 1, 1);
  t_send_byte(fd, 'P');
  shl_writer_close(w);
  return t_result();
}

/* An `all` reader that never reads, until SIGKILLed. */
static int role_lag(const char *name, int fd) {
  shl_reader *r = t_reader_open(name, SHL_RECV_ALL, WAIT_MS);
  t_send_byte(fd, 'R');
  t_sleep_ms(CHILD_LIMIT_S * 1000L);
  shl_reader_close(r);
  return 1;
}

/* Take a full BLOCK stream over and wait for a slot: 'L' once loaned, 'T' if not. */
static int role_block_loan(const char *name, int fd) {
  shl_writer *w = t_writer_open(name, WORDS, SLOTS, 0, SHL_STREAM_BLOCK);
  uint64_t next = shl_writer_next_seq(w);
  void *frame;
  t_send_byte(fd, 'W');
  int slot = shl_writer_loan(w, &frame, WAIT_MS * T_MS);
  t_send_byte(fd, slot >= 0 ? 'L' : 'T');
  if (slot >= 0) {
    t_frame_stamp(frame, WORDS, next);
    uint64_t seq = 0;
    T_EXPECT_RC(shl_writer_publish(w, &seq), 0);
    T_CHECK(seq == next);
  }
  shl_writer_close(w);
  return slot >= 0 ? t_result() : 1;
}

/* Take the stream over, say 'T', and publish one frame a while later. */
static int role_publish_later(const char *name, int fd) {
  shl_writer *w = t_writer_open(name, WORDS, 0, 0, 0);
  uint64_t next = shl_writer_next_seq(w);
  t_send_byte(fd, 'T');
  t_sleep_ms(LATE_MS);
  PUBLISH(w, next, next);
  shl_writer_close(w);
  return t_result();
}

/* A reader asleep in a wait without time limit or slices: only a wake-up
 * passed on to it ends the wait. 'S' before sleeping, 'W' with the frame. */
static int role_sleeper(const char *name, int fd) {
  shl_reader *r = t_reader_open(name, SHL_RECV_LATEST, WAIT_MS);
  shl_segment *seg = shl_reader_segment(r);
  uint64_t changes = shl_changes(seg);
  t_send_byte(fd, 'S');
  T_EXPECT_RC(shl_wait(seg, changes, -1, NULL), 0);
  shl_sample s;
  if (shl_reader_receive(r, &s, 0, 0) == 0) {
    T_CHECK(s.seq == 1);
    shl_reader_release(r, &s);
    t_send_byte(fd, 'W');
  }
  shl_reader_close(r);
  return t_result();
}

/* argv: self role name [arg] report-fd */
static int run_role(int argc, char **argv) {
  const char *role = argv[1], *name = argv[2];
  int fd = atoi(argv[argc - 1]);
  if (strcmp(role, "busy") == 0) return role_busy(name);
  if (strcmp(role, "publish") == 0 && argc == 5) return role_publish(name, atol(argv[3]));
  if (strcmp(role, "late") == 0) return role_late(name, fd);
  if (strcmp(role, "lag") == 0) return role_lag(name, fd);
  if (strcmp(role, "block-loan") == 0) return role_block_loan(name, fd);
  if (strcmp(role, "sleeper") == 0) return role_sleeper(name, fd);
  if (strcmp(role, "publish-later") == 0) return role_publish_later(name, fd);
  fprintf(stderr, "unknown role %s\n", role);
  return 1;
}

/* ---------------------------------------------------------------- tests */

static void test_bad_args(void) {
  char name[SHL_NAME_MAX + 1];
  t_fresh_name(name, "sargs");
  shl_layout l = t_frame_layout(WORDS), bad = {.format = "<Z"};
  shl_writer *w = NULL;
  shl_reader *r = NULL;
#define O sizeof(shl_stream_opts)
  shl_stream_opts o[] = {
      {.size = O, .slots = 1},
      {.size = O, .slots = SHL_STREAM_MAX_SLOTS + 1},
      {.size = O, .max_readers = SHL_STREAM_MAX_READERS + 1},
      {.size = O, .flags = SHL_STREAM_REPLACE << 1},
      {.slots = 4}, /* no size: not initialised with SHL_STREAM_OPTS_INIT */
  };
#undef O
  T_EXPECT_RC(shl_writer_open(NULL, name, &l, NULL), -EINVAL);
  for (size_t i = 0; i < sizeof o / sizeof o[0]; i++)
    T_EXPECT_RC(shl_writer_open(&w, name, &l, &o[i]), -EINVAL);
  T_EXPECT_RC(shl_writer_open(&w, "bad/name", &l, NULL), SHL_E_BAD_NAME);
  T_EXPECT_RC(shl_writer_open(&w, name, &bad, NULL), SHL_E_BAD_FORMAT);
  T_CHECK(w == NULL);
  shl_segment *seg = NULL;
  T_EXPECT_RC(shl_open(&seg, name, 0, 0), -ENOENT); /* no failure left a stream behind */
  T_EXPECT_RC(shl_reader_open(NULL, name, SHL_RECV_ALL, 0), -EINVAL);
  T_EXPECT_RC(shl_reader_open(&r, name, 2, 0), -EINVAL);
  T_EXPECT_RC(shl_reader_open(&r, "bad/name", SHL_RECV_ALL, 0), SHL_E_BAD_NAME);
  T_CHECK(r == NULL);
  shl_writer_close(NULL);
  shl_reader_close(NULL);
}

/* A plain segment is no stream, and a failed open leaves it as it was. */
static void test_not_a_stream(void) {
  char name[SHL_NAME_MAX + 1], other[SHL_NAME_MAX + 1];
  t_fresh_name(name, "splain");
  t_fresh_name(other, "splain2");
  shl_layout plain = {.format = "<Q"}, frame = t_frame_layout(WORDS);
  shl_segment *seg = NULL, *again = NULL;
  T_EXPECT_RC(shl_create(&seg, name, &plain, NULL), 0);
  T_REQUIRE(seg != NULL);
  shl_writer *w = NULL;
  shl_reader *r = NULL;
  shl_stream_info info = SHL_STREAM_INFO_INIT;
  T_EXPECT_RC(shl_writer_open(&w, name, &frame, NULL), SHL_E_BAD_KIND);
  T_EXPECT_RC(shl_reader_open(&r, name, SHL_RECV_LATEST, 0), SHL_E_BAD_KIND);
  T_EXPECT_RC(shl_stream_get_info(seg, &info), SHL_E_BAD_KIND);
  T_CHECK(w == NULL && r == NULL);
  T_EXPECT_RC(shl_open(&again, name, 0, 0), 0);
  T_CHECK(again && shl_kind(again) == shl_kind(seg) && shl_kind(seg) != SHL_KIND_STREAM);
  shl_close(again);
  shl_close(seg);
  /* Streams come from shl_writer_open only. */
  shl_create_opts as_stream = {.size = sizeof(shl_create_opts), .kind = SHL_KIND_STREAM};
  T_EXPECT_RC(shl_create(&seg, other, &frame, &as_stream), SHL_E_BAD_KIND);
}

/* In a child: a store through a received sample faults, the view is read-only. */
static int write_to_sample(void *arg) {
  shl_reader *r = t_reader_open(arg, SHL_RECV_LATEST, 0);
  shl_sample s;
  if (shl_reader_receive(r, &s, WAIT_MS * T_MS, 0) != 0) return 2;
  signal(SIGSEGV, SIG_DFL); /* a sanitizer's handler would turn the fault into an exit */
  *(volatile unsigned char *)(uintptr_t)s.data = 1;
  return 0;
}

static void test_loan_publish(void) {
  char name[SHL_NAME_MAX + 1];
  t_fresh_name(name, "sloan");
  shl_writer *w = open_writer(name, 0);
  shl_segment *seg = shl_writer_segment(w);
  shl_stream_info info = t_stream_info(seg);
  T_CHECK(shl_kind(seg) == SHL_KIND_STREAM);
  T_CHECK(info.slots == SLOTS && info.max_readers == 64 && info.flags == 0); /* 64: the default */
  T_CHECK(info.readers_alive == 0 && info.writer_pid == getpid() && info.writer_alive == 1);
  T_CHECK(info.last_seq == 0 && info.last_timestamp_ns == 0);
  T_CHECK(info.slot_stride >= WORDS * 8 && info.slot_stride % 64 == 0);
  T_CHECK(shl_payload_size(seg) >= info.slot_stride * SLOTS);

  void *frame = NULL, *other = NULL;
  T_EXPECT_RC(shl_writer_publish(w, NULL), -EINVAL); /* no loan */
  T_EXPECT_RC(shl_writer_discard(w), -EINVAL);
  int slot = shl_writer_loan(w, &frame, 0);
  T_CHECK(slot >= 0 && slot < SLOTS);
  T_CHECK(frame == (unsigned char *)shl_payload(seg) + (uint64_t)slot * info.slot_stride);
  long long t0 = t_now_ns();
  T_EXPECT_RC(shl_writer_loan(w, &other, 1000 * T_MS), -EBUSY); /* at once, no waiting */
  T_EXPECT_TOOK(t0, 0, T_AT_ONCE_MS);
  t_frame_stamp(frame, WORDS, 0xbad); /* a discarded frame is never seen */
  T_EXPECT_RC(shl_writer_discard(w), 0);
  T_EXPECT_RC(shl_writer_publish(w, NULL), -EINVAL);
  T_CHECK(shl_writer_next_seq(w) == 1); /* a discard uses up no seq */

  shl_reader *r = t_reader_open(name, SHL_RECV_ALL, 0);
  EXPECT_NOTHING(r);
  T_CHECK(t_stream_info(seg).readers_alive == 1);
  uint64_t before = (uint64_t)t_now_ns();
  PUBLISH(w, 1, 1);
  uint64_t after = (uint64_t)t_now_ns();
  info = t_stream_info(seg);
  T_CHECK(info.last_seq == 1);
  T_CHECK(info.last_timestamp_ns >= before && info.last_timestamp_ns <= after);
  shl_sample s;
  if (TAKE(r, &s, 1, 0) == 0) {
    const unsigned char *base = shl_payload(shl_reader_segment(r));
    T_CHECK(s.timestamp_ns == info.last_timestamp_ns);
    T_CHECK(s.slot < SLOTS && s.data == base + s.slot * info.slot_stride);
    T_EXPECT_RC(shl_reader_release(r, &s), 0);
    T_EXPECT_RC(shl_reader_release(r, &s), -EINVAL); /* released already */
  }
  T_EXPECT_RC(shl_reader_release(r, NULL), -EINVAL);

  /* A discarded loan uses up no seq and is never shown. */
  T_CHECK(shl_writer_loan(w, &frame, 0) >= 0);
  t_frame_stamp(frame, WORDS, 0xbad);
  T_EXPECT_RC(shl_writer_discard(w), 0);
  EXPECT_NOTHING(r);
  PUBLISH(w, 2, 2);
  EXPECT_SAMPLE(r, 2, 0);
  EXPECT_NOTHING(r);
  T_CHECK(shl_writer_next_seq(w) == 3);

  int rc;
  T_EXPECT_SIGNAL(t_child_run(write_to_sample, name, CHILD_LIMIT_S, &rc), SIGSEGV);
  shl_reader_close(r);
  shl_writer_close(w);
}

static void test_receive_timeout(void) {
  char name[SHL_NAME_MAX + 1];
  t_fresh_name(name, "stime");
  shl_writer *w = open_writer(name, 0);
  PUBLISH(w, 1, 1);
  for (uint32_t mode = SHL_RECV_LATEST; mode <= SHL_RECV_ALL; mode++) {
    shl_reader *r = t_reader_open(name, mode, 0);
    EXPECT_SAMPLE(r, 1, 0); /* a new reader starts at the newest frame */
    shl_sample s;
    long long t0 = t_now_ns();
    T_EXPECT_RC(shl_reader_receive(r, &s, 0, 0), -ETIMEDOUT);
    T_EXPECT_TOOK(t0, 0, T_AT_ONCE_MS);
    t0 = t_now_ns();
    T_EXPECT_RC(shl_reader_receive(r, &s, 100 * T_MS, 0), -ETIMEDOUT);
    T_EXPECT_TOOK(t0, 100, 1100);
    shl_reader_close(r);
  }
  shl_writer_close(w);
}

/* A spinning reader: time-outs hold (the spin counts against them, and a
 * spin asked beyond the 1 ms cap is capped); a frame that comes after the
 * spin, while it sleeps, wakes it. */
static void test_spin(void) {
  char name[SHL_NAME_MAX + 1];
  t_fresh_name(name, "sspin");
  shl_writer *w = open_writer(name, 0);
  shl_reader *r = t_reader_open(name, SHL_RECV_ALL, 0);
  shl_reader_set_spin(r, UINT32_MAX);
  shl_sample s;
  long long t0 = t_now_ns();
  T_EXPECT_RC(shl_reader_receive(r, &s, 0, 0), -ETIMEDOUT);
  T_EXPECT_RC(shl_reader_receive(r, &s, T_MS / 2, 0), -ETIMEDOUT);
  T_EXPECT_TOOK(t0, 0, T_AT_ONCE_MS);
  PUBLISH(w, 1, 1);
  EXPECT_SAMPLE(r, 1, 0);
  shl_writer_close(w);
  int fd;
  pid_t pid = spawn("publish-later", name, NULL, &fd); /* frame 2, LATE_MS after taking over */
  if (t_await_byte(pid, fd, 'T', WAIT_MS)) {
    EXPECT_SAMPLE(r, 2, 0);
    T_EXPECT_EXIT(t_child_reap(pid), 0);
  }
  shl_reader_close(r);
}

/* A frame published inside a reader's spin window. */
struct spin_trial {
  shl_writer *w;
  shl_reader *r;
  _Atomic uint64_t seq; /* the next frame's; both threads use it */
};

static void spin_trial_receive(void *arg) {
  struct spin_trial *t = arg;
  EXPECT_SAMPLE(t->r, t->seq, 0);
  t->seq++; /* only after the publish that the sample proves */
}

static int spin_trial_publish(void *arg) {
  struct spin_trial *t = arg;
  int registered = atomic_load(&shl_writer_segment(t->w)->hdr->waiters) != 0;
  PUBLISH(t->w, t->seq, t->seq);
  return registered;
}

/* A frame published while the reader spins is taken without entering the
 * futex, in both modes. */
static void test_spin_taken(void) {
  char name[SHL_NAME_MAX + 1];
  t_fresh_name(name, "sspun");
  struct spin_trial t = {.w = open_writer(name, 0), .seq = 1};
  for (uint32_t mode = SHL_RECV_LATEST; mode <= SHL_RECV_ALL; mode++) {
    t.r = t_reader_open(name, mode, 0);
    if (t.seq > 1) EXPECT_SAMPLE(t.r, t.seq - 1, 0); /* a new reader starts at the newest */
    shl_reader_set_spin(t.r, 1000000);
    t_expect_spin_taken(mode == SHL_RECV_ALL ? "stream (all)" : "stream (latest)",
                        spin_trial_receive, spin_trial_publish, &t, 30, 10);
    shl_reader_close(t.r);
  }
  shl_writer_close(t.w);
}

/* An `all` reader that keeps up gets every frame, in order, none lost. */
static void test_all_in_order(void) {
  char name[SHL_NAME_MAX + 1];
  t_fresh_name(name, "sorder");
  shl_writer *w = open_writer(name, 0);
  shl_reader *a = t_reader_open(name, SHL_RECV_ALL, 0);
  for (uint64_t seq = 1; seq <= 20; seq++) {
    PUBLISH(w, seq, seq);
    EXPECT_SAMPLE(a, seq, 0);
  }
  /* A whole ring's worth published while it waits is still all there. */
  PUBLISH(w, 21, 20 + SLOTS);
  for (uint64_t seq = 21; seq <= 20 + SLOTS; seq++) EXPECT_SAMPLE(a, seq, 0);
  EXPECT_NOTHING(a);
  /* One that joins later starts at the newest frame. */
  shl_reader *late = t_reader_open(name, SHL_RECV_ALL, 0);
  EXPECT_SAMPLE(late, 20 + SLOTS, 0);
  PUBLISH(w, 21 + SLOTS, 21 + SLOTS);
  EXPECT_SAMPLE(late, 21 + SLOTS, 0);
  EXPECT_SAMPLE(a, 21 + SLOTS, 0);
  shl_reader_close(late);
  shl_reader_close(a);
  shl_writer_close(w);
}

/* Numbers relayed from another stream (the bridge): skipped ones are lost
 * frames to `all` and `latest` readers; numbers never go back. */
static void test_set_next_seq(void) {
  char name[SHL_NAME_MAX + 1];
  t_fresh_name(name, "snext");
  shl_writer *w = open_writer(name, 0);
  shl_reader *a = t_reader_open(name, SHL_RECV_ALL, 0);
  shl_reader *l = t_reader_open(name, SHL_RECV_LATEST, 0);
  PUBLISH(w, 1, 1);
  EXPECT_SAMPLE(a, 1, 0);
  EXPECT_SAMPLE(l, 1, 0);
  T_EXPECT_RC(shl_writer_set_next_seq(w, 5), 0);
  PUBLISH(w, 5, 5);
  EXPECT_SAMPLE(a, 5, 3);
  EXPECT_SAMPLE(l, 5, 3);
  T_EXPECT_RC(shl_writer_set_next_seq(w, 4), -EINVAL);
  T_EXPECT_RC(shl_writer_set_next_seq(w, 6), 0); /* the next one already: nothing skipped */
  T_EXPECT_RC(shl_writer_set_next_seq(w, 1ull << 55), -EINVAL);
  void *frame;
  T_CHECK(shl_writer_loan(w, &frame, 0) >= 0);
  T_EXPECT_RC(shl_writer_set_next_seq(w, 9), -EBUSY);
  T_EXPECT_RC(shl_writer_discard(w), 0);
  PUBLISH(w, 6, 6);
  EXPECT_SAMPLE(a, 6, 0);
  shl_reader_close(l);
  shl_reader_close(a);
  shl_writer_close(w);
}

/* Lapped: the writer reuses the oldest free slot first and never the newest,
 * so the ring keeps the newest `slots` frames (with p slots pinned: those
 * frames and the newest slots - p). Losses are counted exactly. */
static void expect_lap(uint32_t slots, uint64_t published) {
  char name[SHL_NAME_MAX + 1], tag[16];
  snprintf(tag, sizeof tag, "slap%u", slots);
  t_fresh_name(name, tag);
  shl_writer *w = t_writer_open(name, WORDS, slots, 0, 0);
  shl_reader *a = t_reader_open(name, SHL_RECV_ALL, 0);
  PUBLISH(w, 1, published);
  uint64_t first = published - slots + 1;
  EXPECT_SAMPLE(a, first, first - 1);
  for (uint64_t seq = first + 1; seq <= published; seq++) EXPECT_SAMPLE(a, seq, 0);
  EXPECT_NOTHING(a);
  shl_reader_close(a);
  shl_writer_close(w);
}

static void test_all_lapped(void) {
  expect_lap(2, 5);
  expect_lap(SLOTS, 10); /* frames 1..6 lost */
  expect_lap(SHL_STREAM_MAX_SLOTS, 100);

  char name[SHL_NAME_MAX + 1];
  t_fresh_name(name, "slappin");
  shl_writer *w = open_writer(name, 0);
  shl_reader *a = t_reader_open_pins(name, SHL_RECV_ALL, 0, 2);
  PUBLISH(w, 1, 1);
  shl_sample held;
  T_REQUIRE(TAKE(a, &held, 1, 0) == 0); /* pins 1: three slots left to cycle */
  PUBLISH(w, 2, 11);
  EXPECT_SAMPLE(a, 9, 7); /* 2..8 overwritten */
  EXPECT_SAMPLE(a, 10, 0);
  EXPECT_SAMPLE(a, 11, 0);
  EXPECT_NOTHING(a);
  T_CHECK(t_frame_bad_words(held.data, WORDS, 1) == 0);
  T_EXPECT_RC(shl_reader_release(a, &held), 0);
  shl_reader_close(a);
  shl_writer_close(w);
}

/* A `latest` reader gets the newest frame and skips the others. */
static void test_latest(void) {
  char name[SHL_NAME_MAX + 1];
  t_fresh_name(name, "slatest");
  shl_writer *w = open_writer(name, 0);
  PUBLISH(w, 1, 3);
  shl_reader *l = t_reader_open(name, SHL_RECV_LATEST, 0);
  EXPECT_SAMPLE(l, 3, ANY);
  EXPECT_NOTHING(l);
  PUBLISH(w, 4, 4);
  EXPECT_SAMPLE(l, 4, ANY);
  PUBLISH(w, 5, 9);
  EXPECT_SAMPLE(l, 9, ANY);
  EXPECT_NOTHING(l);
  shl_reader_close(l);
  shl_writer_close(w);
}

/* A held sample's slot is never loaned out again: its bytes stay put. */
static void test_pinned(void) {
  char name[SHL_NAME_MAX + 1];
  t_fresh_name(name, "spin");
  shl_writer *w = open_writer(name, 0);
  shl_reader *l = t_reader_open_pins(name, SHL_RECV_LATEST, 0, 2);
  shl_reader *a = t_reader_open_pins(name, SHL_RECV_ALL, 0, 2);
  shl_sample hl, ha;
  PUBLISH(w, 1, 1);
  T_REQUIRE(TAKE(l, &hl, 1, ANY) == 0 && TAKE(a, &ha, 1, 0) == 0);
  T_CHECK(hl.slot == ha.slot);
  for (uint64_t seq = 2; seq <= 101; seq++) {
    void *frame;
    int slot = shl_writer_loan(w, &frame, 0);
    T_REQUIRE(slot >= 0);
    T_CHECK((uint32_t)slot != hl.slot);
    t_frame_stamp(frame, WORDS, seq);
    T_EXPECT_RC(shl_writer_publish(w, NULL), 0);
  }
  T_CHECK(t_frame_bad_words(hl.data, WORDS, 1) == 0);
  T_CHECK(t_frame_bad_words(ha.data, WORDS, 1) == 0);
  EXPECT_SAMPLE(a, 99, 97); /* the three free slots hold 99..101 */
  T_EXPECT_RC(shl_reader_release(l, &hl), 0);
  T_EXPECT_RC(shl_reader_release(a, &ha), 0);
  /* Released: it is the oldest free slot, so the next loan takes it. */
  void *frame;
  T_CHECK(shl_writer_loan(w, &frame, 0) == (int)hl.slot);
  T_EXPECT_RC(shl_writer_discard(w), 0);
  shl_reader_close(a);
  shl_reader_close(l);
  shl_writer_close(w);

  /* Three slots pinned, the fourth holding the newest frame: nothing to loan
   * until a sample is released. */
  t_fresh_name(name, "spinall");
  w = open_writer(name, 0);
  l = t_reader_open_pins(name, SHL_RECV_LATEST, 0, SLOTS - 1);
  shl_sample h[SLOTS - 1];
  for (uint64_t seq = 1; seq < SLOTS; seq++) {
    PUBLISH(w, seq, seq);
    T_REQUIRE(TAKE(l, &h[seq - 1], seq, ANY) == 0);
  }
  PUBLISH(w, SLOTS, SLOTS);
  expect_no_slot(w, SHL_E_SLOTS_PINNED);
  T_EXPECT_RC(shl_reader_release(l, &h[1]), 0);
  T_CHECK(shl_writer_loan(w, &frame, 0) == (int)h[1].slot);
  T_EXPECT_RC(shl_writer_discard(w), 0);
  T_CHECK(t_frame_bad_words(h[0].data, WORDS, 1) == 0);
  T_CHECK(t_frame_bad_words(h[2].data, WORDS, 3) == 0);
  T_EXPECT_RC(shl_reader_release(l, &h[0]), 0);
  T_EXPECT_RC(shl_reader_release(l, &h[2]), 0);
  shl_reader_close(l);
  shl_writer_close(w);
}

/* One writer at a time; a closed writer's stream is taken over with the same
 * layout, seq goes on and readers keep their place. */
static void test_takeover(void) {
  char name[SHL_NAME_MAX + 1];
  t_fresh_name(name, "stake");
  shl_writer *w = open_writer(name, 0), *w2 = NULL;
  shl_reader *a = t_reader_open(name, SHL_RECV_ALL, 0);
  shl_reader *l = t_reader_open(name, SHL_RECV_LATEST, 0);
  shl_segment *rseg = shl_reader_segment(a);
  PUBLISH(w, 1, 3);
  for (uint64_t seq = 1; seq <= 3; seq++) EXPECT_SAMPLE(a, seq, 0);
  EXPECT_SAMPLE(l, 3, ANY);

  shl_layout same = t_frame_layout(WORDS), longer = t_frame_layout(WORDS + 1);
  shl_layout signed_words = same;
  signed_words.format = "<q";
  T_EXPECT_RC(shl_writer_open(&w2, name, &same, NULL), -EBUSY);
  int fd;
  pid_t pid = spawn("busy", name, NULL, &fd);
  T_EXPECT_EXIT(t_child_reap(pid), 0);
  close(fd);
  T_CHECK(t_stream_info(shl_writer_segment(w)).writer_pid == getpid());

  shl_writer_close(w);
  shl_stream_info info = t_stream_info(rseg);
  T_CHECK(info.writer_pid == 0 && info.writer_alive == 0 && info.last_seq == 3);
  shl_stream_opts more_slots = {.size = sizeof(shl_stream_opts), .slots = SLOTS + 1};
  T_EXPECT_RC(shl_writer_open(&w2, name, &longer, NULL), SHL_E_LAYOUT_MISMATCH);
  T_EXPECT_RC(shl_writer_open(&w2, name, &signed_words, NULL), SHL_E_LAYOUT_MISMATCH);
  T_EXPECT_RC(shl_writer_open(&w2, name, &same, &more_slots), SHL_E_LAYOUT_MISMATCH);
  T_CHECK(w2 == NULL && t_stream_info(rseg).writer_pid == 0); /* none of them took it */

  w = open_writer(name, 0);
  T_CHECK(t_stream_info(shl_writer_segment(w)).writer_pid == getpid());
  T_CHECK(shl_writer_next_seq(w) == 4);
  PUBLISH(w, 4, 5);
  EXPECT_SAMPLE(a, 4, 0);
  EXPECT_SAMPLE(a, 5, 0);
  EXPECT_SAMPLE(l, 5, ANY);
  shl_writer_close(w);

  /* Another process takes over, publishes three frames and leaves. */
  pid = spawn("publish", name, "3", &fd);
  T_EXPECT_EXIT(t_child_reap(pid), 0);
  close(fd);
  for (uint64_t seq = 6; seq <= 8; seq++) EXPECT_SAMPLE(a, seq, 0);
  EXPECT_SAMPLE(l, 8, ANY);
  expect_gone(a);
  expect_gone(l);

  w = t_writer_open(name, WORDS, 0, 0, 0); /* slots 0: whatever the stream has */
  T_CHECK(t_stream_info(shl_writer_segment(w)).slots == SLOTS);
  PUBLISH(w, 9, 9);
  EXPECT_SAMPLE(a, 9, 0);
  EXPECT_SAMPLE(l, 9, ANY);
  shl_reader_close(l);
  shl_reader_close(a);
  shl_writer_close(w);
}

/* Frames published before the writer left are delivered; then WRITER_CLOSED,
 * each time, within 100 ms of waiting. */
static void test_writer_gone(void) {
  char name[SHL_NAME_MAX + 1];
  t_fresh_name(name, "sgone");
  shl_writer *w = open_writer(name, 0);
  shl_reader *a = t_reader_open(name, SHL_RECV_ALL, 0);
  shl_reader *l = t_reader_open(name, SHL_RECV_LATEST, 0);
  PUBLISH(w, 1, 2);
  shl_writer_close(w);
  shl_stream_info info = t_stream_info(shl_reader_segment(a));
  T_CHECK(info.writer_pid == 0 && info.writer_alive == 0 && info.last_seq == 2);
  EXPECT_SAMPLE(a, 1, 0);
  EXPECT_SAMPLE(a, 2, 0);
  EXPECT_SAMPLE(l, 2, ANY);
  for (int i = 0; i < 2; i++) {
    expect_gone(a);
    expect_gone(l);
  }
  shl_reader_close(l);
  shl_reader_close(a);
}

/* One publish wakes every sleeping reader, including those in a wait with
 * no time limit that would never look again on their own. */
static void test_wake_every_sleeper(void) {
  enum { SLEEPERS = 4 };
  char name[SHL_NAME_MAX + 1];
  t_fresh_name(name, "swake");
  shl_writer *w = open_writer(name, 0);
  pid_t pid[SLEEPERS];
  int fd[SLEEPERS];
  for (int i = 0; i < SLEEPERS; i++) {
    pid[i] = spawn("sleeper", name, NULL, &fd[i]);
    T_REQUIRE(t_read_byte(fd[i], WAIT_MS) == 'S');
  }
  for (int i = 0; i < SLEEPERS; i++) T_REQUIRE(t_wait_in_futex(pid[i], WAIT_MS));
  PUBLISH(w, 1, 1);
  for (int i = 0; i < SLEEPERS; i++) {
    if (t_await_byte(pid[i], fd[i], 'W', WAIT_MS)) T_EXPECT_EXIT(t_child_reap(pid[i]), 0);
  }
  shl_writer_close(w);
}

/* A reader opened before the stream exists waits for it, or says -ENOENT. */
static void test_late_stream(void) {
  char name[SHL_NAME_MAX + 1];
  t_fresh_name(name, "slate");
  shl_reader *r = NULL;
  long long t0 = t_now_ns();
  T_EXPECT_RC(shl_reader_open(&r, name, SHL_RECV_ALL, 0), -ENOENT);
  T_EXPECT_TOOK(t0, 0, T_AT_ONCE_MS);
  t0 = t_now_ns();
  T_EXPECT_RC(shl_reader_open(&r, name, SHL_RECV_ALL, 200 * T_MS), -ENOENT);
  T_EXPECT_TOOK(t0, 200, 1200);

  int fd;
  pid_t pid = spawn("late", name, NULL, &fd);
  shl_segment *seg = NULL;
  T_EXPECT_RC(shl_open(&seg, name, 0, 0), -ENOENT); /* the child waits LATE_MS first */
  t0 = t_now_ns();
  r = t_reader_open(name, SHL_RECV_ALL, WAIT_MS);
  T_EXPECT_TOOK(t0, 0, WAIT_MS);
  EXPECT_SAMPLE(r, 1, 0);
  T_CHECK(t_read_byte(fd, WAIT_MS) == 'P');
  close(fd);
  T_EXPECT_EXIT(t_child_reap(pid), 0);
  expect_gone(r);
  shl_reader_close(r);
}

static void test_max_readers(void) {
  enum { MAX = 3 };
  char name[SHL_NAME_MAX + 1];
  t_fresh_name(name, "smax");
  shl_writer *w = t_writer_open(name, WORDS, SLOTS, MAX, 0);
  shl_segment *seg = shl_writer_segment(w);
  shl_reader *r[MAX], *extra = NULL;
  for (uint32_t i = 0; i < MAX; i++) r[i] = t_reader_open(name, i % 2, 0);
  shl_stream_info info = t_stream_info(seg);
  T_CHECK(info.max_readers == MAX && info.readers_alive == MAX);
  T_EXPECT_RC(shl_reader_open(&extra, name, SHL_RECV_ALL, 0), -EUSERS);
  T_EXPECT_RC(shl_reader_open(&extra, name, SHL_RECV_LATEST, 0), -EUSERS);
  T_CHECK(extra == NULL);
  shl_reader_close(r[1]);
  T_CHECK(t_stream_info(seg).readers_alive == MAX - 1);
  r[1] = t_reader_open(name, SHL_RECV_ALL, 0); /* the freed entry is used again */
  T_CHECK(t_stream_info(seg).readers_alive == MAX);
  for (uint32_t i = 0; i < MAX; i++) shl_reader_close(r[i]);
  T_CHECK(t_stream_info(seg).readers_alive == 0);
  shl_writer_close(w);
}

/* SHL_STREAM_BLOCK: the writer may fill the ring but never laps a live `all`
 * reader; `latest` readers do not hold it back. */
static void test_block(void) {
  char name[SHL_NAME_MAX + 1];
  t_fresh_name(name, "sblock");
  shl_writer *w = open_writer(name, SHL_STREAM_BLOCK);
  shl_reader *a = t_reader_open(name, SHL_RECV_ALL, 0);
  shl_reader *l = t_reader_open(name, SHL_RECV_LATEST, 0);
  T_CHECK(t_stream_info(shl_writer_segment(w)).flags == SHL_STREAM_BLOCK);
  PUBLISH(w, 1, SLOTS);
  expect_no_slot(w, -ETIMEDOUT);
  EXPECT_SAMPLE(l, SLOTS, ANY);
  expect_no_slot(w, -ETIMEDOUT);
  /* Whenever the ring is full, the reader takes one frame; the writer is
   * then exactly a ring ahead again, and nothing is ever lost. */
  enum { LAST = 40 };
  uint64_t next = 1; /* the reader's next frame */
  for (uint64_t seq = SLOTS + 1; seq <= LAST; seq++) {
    void *frame;
    int slot;
    while ((slot = shl_writer_loan(w, &frame, 0)) == -ETIMEDOUT && next < seq)
      EXPECT_SAMPLE(a, next++, 0);
    T_REQUIRE(slot >= 0);
    T_CHECK(seq - next == SLOTS - 1);
    t_frame_stamp(frame, WORDS, seq);
    T_EXPECT_RC(shl_writer_publish(w, NULL), 0);
  }
  while (next <= LAST) EXPECT_SAMPLE(a, next++, 0);
  EXPECT_NOTHING(a);
  /* No `all` reader left: nothing holds the writer back. */
  shl_reader_close(a);
  PUBLISH(w, LAST + 1, LAST + 3 * SLOTS);
  shl_reader_close(l);
  shl_writer_close(w);
}

static pid_t start_lagger(const char *name) {
  int fd;
  pid_t pid = spawn("lag", name, NULL, &fd);
  T_REQUIRE(t_await_byte(pid, fd, 'R', WAIT_MS));
  return pid;
}

/* Publish until a lagging `all` reader that joined at frame first - 1 (0:
 * before any) holds the writer back; returns the next seq. */
static uint64_t fill_ring(shl_writer *w, uint64_t first) {
  uint64_t seq = first, room = first == 1 ? SLOTS : SLOTS - 1;
  void *frame;
  while (seq - first <= room && shl_writer_loan(w, &frame, 0) >= 0) {
    t_frame_stamp(frame, WORDS, seq++);
    T_EXPECT_RC(shl_writer_publish(w, NULL), 0);
  }
  T_CHECK(seq - first == room);
  T_EXPECT_RC(shl_writer_loan(w, &frame, 0), -ETIMEDOUT);
  return seq;
}

/* Another process takes the full stream over and waits for a slot; free one
 * (kill the lagger, or take the frame `take` from `a`) and time its loan. */
static void expect_loan_freed(const char *name, pid_t lagger, shl_reader *a, uint64_t take) {
  int fd;
  pid_t pid = spawn("block-loan", name, NULL, &fd);
  T_CHECK(t_read_byte(fd, WAIT_MS) == 'W');
  T_CHECK(t_wait_in_futex(pid, WAIT_MS)); /* asleep in shl_writer_loan */
  long long t0 = t_now_ns();
  if (lagger)
    T_CHECK(kill(lagger, SIGKILL) == 0);
  else
    EXPECT_SAMPLE(a, take, 0);
  T_CHECK(t_read_byte(fd, WAIT_MS) == 'L');
  double ms = (double)(t_now_ns() - t0) / 1e6;
  double *worst = lagger ? &unblock_kill_ms : &unblock_read_ms;
  if (ms > *worst) *worst = ms;
  T_EXPECT_TOOK(t0, 0, GONE_MAX_MS);
  close(fd);
  T_EXPECT_EXIT(t_child_reap(pid), 0);
  if (lagger) T_EXPECT_SIGNAL(t_child_reap(lagger), SIGKILL);
}

/* A dead `all` reader holds a BLOCK writer back no longer than ~100 ms. */
static void test_block_reader_killed(void) {
  char name[SHL_NAME_MAX + 1];
  t_fresh_name(name, "sblkill");
  shl_writer *w = open_writer(name, SHL_STREAM_BLOCK);
  /* Killed before the loan: the loan that finds no slot reaps it at once. */
  pid_t lagger = start_lagger(name);
  uint64_t seq = fill_ring(w, 1);
  t_kill_child(lagger);
  T_CHECK(t_stream_info(shl_writer_segment(w)).readers_alive == 0);
  long long t0 = t_now_ns();
  T_CHECK(t_publish(w, WORDS, seq, WAIT_MS) == seq);
  T_EXPECT_TOOK(t0, 0, T_AT_ONCE_MS);
  seq++;

  /* Killed while a writer sleeps in loan. */
  lagger = start_lagger(name);
  seq = fill_ring(w, seq);
  shl_writer_close(w);
  expect_loan_freed(name, lagger, NULL, 0);
  seq++; /* the child published one */

  /* A sleeping writer also goes on once the reader takes a frame. */
  w = open_writer(name, SHL_STREAM_BLOCK);
  shl_reader *a = t_reader_open(name, SHL_RECV_ALL, 0);
  uint64_t first = seq - 1; /* `a` starts at the newest frame */
  seq = fill_ring(w, seq);
  shl_writer_close(w);
  expect_loan_freed(name, 0, a, first);
  shl_reader_close(a);
}

static void on_alarm(int sig) { (void)sig; }

/* A signal ends a receive only when asked to: SHL_WAIT_INTERRUPTIBLE. The
 * timer repeats: a signal that lands while the reader is not asleep (between
 * its wait slices) cannot be reported, the next one is. */
static void test_interruptible(void) {
  char name[SHL_NAME_MAX + 1];
  t_fresh_name(name, "sintr");
  shl_writer *w = open_writer(name, 0);
  shl_reader *r = t_reader_open(name, SHL_RECV_LATEST, 0);
  struct sigaction sa, old;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_alarm; /* no SA_RESTART */
  sigaction(SIGALRM, &sa, &old);
  struct itimerval every_20ms = {.it_interval = {0, 20000}, .it_value = {0, 100000}}, off = {0};
  shl_sample s;
  setitimer(ITIMER_REAL, &every_20ms, NULL);
  long long t0 = t_now_ns();
  T_EXPECT_RC(shl_reader_receive(r, &s, WAIT_MS * T_MS, SHL_WAIT_INTERRUPTIBLE), -EINTR);
  T_EXPECT_TOOK(t0, 50, 1100);
  t0 = t_now_ns();
  T_EXPECT_RC(shl_reader_receive(r, &s, 300 * T_MS, 0), -ETIMEDOUT);
  T_EXPECT_TOOK(t0, 300, 1300);
  setitimer(ITIMER_REAL, &off, NULL);
  sigaction(SIGALRM, &old, NULL);
  shl_reader_close(r);
  shl_writer_close(w);
}

/* shl_reader_wake from another thread ends a receive that waits (-EINTR);
 * one made while no receive waits is kept for the next one that would wait,
 * and never turns a frame, or a receive that may not wait, into -EINTR. */
static void *wake_later(void *arg) {
  t_sleep_ms(100);
  shl_reader_wake(arg);
  return NULL;
}

static void test_wake(void) {
  char name[SHL_NAME_MAX + 1];
  t_fresh_name(name, "swake");
  shl_writer *w = open_writer(name, 0);
  shl_reader *r = t_reader_open(name, SHL_RECV_LATEST, 0);
  shl_sample s;
  pthread_t waker;
  T_REQUIRE(pthread_create(&waker, NULL, wake_later, r) == 0);
  long long t0 = t_now_ns();
  T_EXPECT_RC(shl_reader_receive(r, &s, 10000 * T_MS, 0), -EINTR);
  T_EXPECT_TOOK(t0, 100, 5000);
  pthread_join(waker, NULL);
  shl_reader_wake(r); /* while nobody waits */
  T_EXPECT_RC(shl_reader_receive(r, &s, 0, 0), -ETIMEDOUT);
  t_publish(w, WORDS, 1, 100);
  T_EXPECT_RC(shl_reader_receive(r, &s, 1000 * T_MS, 0), 0);
  T_EXPECT_RC(shl_reader_release(r, &s), 0);
  T_EXPECT_RC(shl_reader_receive(r, &s, 1000 * T_MS, 0), -EINTR); /* kept till now */
  T_EXPECT_RC(shl_reader_receive(r, &s, 50 * T_MS, 0), -ETIMEDOUT); /* once */
  shl_reader_close(r);
  shl_writer_close(w);
}

/* Timeouts near INT64_MAX mean "practically forever", not an overflow: each
 * call below waits (the stream appears late; the writer is gone) before it
 * returns. */
static void test_huge_timeouts(void) {
  char name[SHL_NAME_MAX + 1];
  t_fresh_name(name, "shuge");
  int fd;
  pid_t pid = spawn("late", name, NULL, &fd);
  shl_reader *r = NULL;
  long long t0 = t_now_ns();
  T_EXPECT_RC(shl_reader_open(&r, name, SHL_RECV_ALL, INT64_MAX), 0);
  T_REQUIRE(r != NULL);
  shl_sample s;
  T_EXPECT_RC(shl_reader_receive(r, &s, INT64_MAX, 0), 0);
  T_CHECK(s.seq == 1);
  T_EXPECT_RC(shl_reader_release(r, &s), 0);
  T_CHECK(t_read_byte(fd, WAIT_MS) == 'P');
  close(fd);
  T_EXPECT_EXIT(t_child_reap(pid), 0);
  for (int i = 0; i < 2; i++)
    T_EXPECT_RC(shl_reader_receive(r, &s, INT64_MAX, 0), SHL_E_WRITER_CLOSED);
  T_EXPECT_TOOK(t0, 0, WAIT_MS);

  shl_writer *w = open_writer(name, 0);
  void *frame;
  T_CHECK(shl_writer_loan(w, &frame, INT64_MAX) >= 0);
  t_frame_stamp(frame, WORDS, 2);
  T_EXPECT_RC(shl_writer_publish(w, NULL), 0);
  EXPECT_SAMPLE(r, 2, 0);
  shl_reader_close(r);
  shl_writer_close(w);
}

int main(int argc, char **argv) {
  self = argv[0];
  if (argc > 2) return run_role(argc, argv);
  t_frame_check_canary(WORDS); /* every sample's bytes are checked with it */
  test_bad_args();
  test_not_a_stream();
  test_loan_publish();
  test_receive_timeout();
  test_spin();
  test_spin_taken();
  test_all_in_order();
  test_all_lapped();
  test_set_next_seq();
  test_latest();
  test_pinned();
  test_takeover();
  test_writer_gone();
  test_wake_every_sleeper();
  test_late_stream();
  test_max_readers();
  test_block();
  test_block_reader_killed();
  test_interruptible();
  test_wake();
  test_huge_timeouts();
  printf(
      "stream: worst WRITER_GONE %.1f ms; BLOCK writer freed %.1f ms after a reader died, "
      "%.1f ms after it read\n",
      gone_worst_ms, unblock_kill_ms, unblock_read_ms);
  return t_result();
}
