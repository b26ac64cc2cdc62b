/* How stream readers wait: time-outs, huge ones included; spinning (capped,
 * and a frame taken inside the spin without the futex); a publish wakes every
 * sleeper of every process; SHL_WAIT_INTERRUPTIBLE; shl_reader_wake from
 * another thread; a peer that robs sleepers of their wake-ups delays a
 * frame by a slice at most. Other processes are this program re-executed with a role
 * argument. */
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <sys/time.h>

#include "internal.h" /* the header's waiter count */
#include "testutil_spin.h"
#include "testutil_stream_api.h"
#include "testutil_thief.h"

static const char *self; /* argv[0], to re-execute ourselves */

static pid_t spawn(const char *role, const char *name, const char *arg, int *report) {
  return spawn_role(self, role, name, arg, report);
}

/* ---------------------------------------------------------------- roles */

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
  if (strcmp(role, "late") == 0) return role_late(name, fd);
  if (strcmp(role, "sleeper") == 0) return role_sleeper(name, fd);
  if (strcmp(role, "publish-later") == 0) return role_publish_later(name, fd);
  fprintf(stderr, "unknown role %s\n", role);
  return 1;
}

/* ---------------------------------------------------------------- tests */

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
  long long t0 = t_now_ns(); /* before the waker starts counting its 100 ms */
  T_REQUIRE(pthread_create(&waker, NULL, wake_later, r) == 0);
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

/* A reader's receive, woken by a publish. */
struct receiving {
  struct t_receiver rx; /* first: t_thief_rounds' sleeper */
  shl_writer *w;
  uint64_t seq;
};

static void publish_next(void *arg) {
  struct receiving *v = arg;
  PUBLISH(v->w, v->seq, v->seq);
  v->seq++;
}

static void received(void *arg) { T_EXPECT_RC(((struct receiving *)arg)->rx.rc, 0); }

/* A peer with write access to a stream of mode 0660 zeroes the header's
 * waiter count (publish then skips its wake), or moves the sleepers on the
 * change counter to a word of its own, while a reader sleeps: the reader
 * must still get the frame within a slice (20 ms), not at its time-out (1 s)
 * nor at its 10 s safety check. */
static void test_wake_robbed(void) {
  for (int requeue = 0; requeue < 2; requeue++) {
    char name[SHL_NAME_MAX + 1];
    t_fresh_name(name, "srob");
    struct receiving v = {.w = open_group_writer(name, 0), .seq = 1};
    v.rx.r = t_reader_open(name, SHL_RECV_LATEST, 0);
    struct shl__header *h = shl_writer_segment(v.w)->hdr;
    size_t at = requeue ? (size_t)((char *)shl__changes_word(h) - (char *)h)
                        : offsetof(struct shl__header, waiters);
    struct t_thief *t = t_thief_start(name, at, requeue);
    T_REQUIRE(t);
    T_CHECK(t_thief_rounds(t, &h->waiters, t_receiver_main, publish_next, received, &v) <= 2);
    T_CHECK(t_thief_stop(t));
    shl_reader_close(v.rx.r);
    shl_writer_close(v.w);
  }
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
  test_receive_timeout();
  test_spin();
  test_spin_taken();
  test_wake_every_sleeper();
  test_interruptible();
  test_wake();
  test_wake_robbed();
  test_huge_timeouts();
  return t_result();
}
