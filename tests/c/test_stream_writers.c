/* Stream writers that come and go: a second writer while one lives
 * (-EBUSY, from an unrelated process), a takeover that goes on with the
 * numbers, a writer that closes (readers hear SHL_E_WRITER_CLOSED in time),
 * a stream that appears after its reader began to wait, writers and readers
 * of one stream opened and closed by several threads at once (make
 * check-tsan: their role descriptors share one list). Other processes are
 * this program re-executed with a role argument. */
#include <pthread.h>
#include <stdint.h>

#include "testutil_stream_api.h"

static const char *self; /* argv[0], to re-execute ourselves */
/* The worst time a reader took to hear that the writer left, printed at the end. */
static double gone_worst_ms;

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
  return spawn_role(self, role, name, arg, report);
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

/* argv: self role name [arg] report-fd */
static int run_role(int argc, char **argv) {
  const char *role = argv[1], *name = argv[2];
  int fd = atoi(argv[argc - 1]);
  if (strcmp(role, "busy") == 0) return role_busy(name);
  if (strcmp(role, "publish") == 0 && argc == 5) return role_publish(name, atol(argv[3]));
  if (strcmp(role, "late") == 0) return role_late(name, fd);
  fprintf(stderr, "unknown role %s\n", role);
  return 1;
}

/* ---------------------------------------------------------------- tests */

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

/* Threads that each open and close, in turn, a writer (or find it busy)
 * and a reader of one stream: different handles, independent (shmlane.h,
 * Threads). Every call answers as for one thread; at the end no role is
 * left held. */
#define CHURN_THREADS 4
#define CHURN_ROUNDS 40

struct churn {
  const char *name;
  int failures; /* calls that answered otherwise */
};

static void *churn(void *arg) {
  struct churn *c = arg;
  shl_layout l = t_frame_layout(WORDS);
  for (int i = 0; i < CHURN_ROUNDS; i++) {
    shl_writer *w = NULL;
    int rc = shl_writer_open(&w, c->name, &l, NULL);
    c->failures += rc != 0 && rc != -EBUSY;
    shl_writer_close(w);
    shl_reader *r = NULL;
    c->failures += shl_reader_open(&r, c->name, (uint32_t)i % 2, WAIT_MS * T_MS) != 0;
    shl_reader_close(r);
  }
  return NULL;
}

static void test_threads_open_and_close(void) {
  char name[SHL_NAME_MAX + 1];
  t_fresh_name(name, "sthr");
  shl_writer_close(open_writer(name, 0));
  pthread_t t[CHURN_THREADS];
  struct churn c[CHURN_THREADS];
  for (int i = 0; i < CHURN_THREADS; i++) {
    c[i] = (struct churn){name, 0};
    T_REQUIRE(pthread_create(&t[i], NULL, churn, &c[i]) == 0);
  }
  for (int i = 0; i < CHURN_THREADS; i++) {
    pthread_join(t[i], NULL);
    T_CHECK(c[i].failures == 0);
  }
  shl_writer *w = open_writer(name, 0);
  shl_stream_info info = t_stream_info(shl_writer_segment(w));
  T_CHECK(info.writer_pid == getpid() && info.readers_alive == 0);
  shl_writer_close(w);
}

int main(int argc, char **argv) {
  self = argv[0];
  if (argc > 2) return run_role(argc, argv);
  t_frame_check_canary(WORDS); /* every sample's bytes are checked with it */
  test_takeover();
  test_writer_gone();
  test_late_stream();
  test_threads_open_and_close();
  printf("stream_writers: worst WRITER_CLOSED %.1f ms after the writer left\n", gone_worst_ms);
  return t_result();
}
