/* SHL_STREAM_BLOCK back-pressure: the writer fills the ring but never laps
 * a live `all` reader (`latest` readers do not hold it back), and a dead
 * `all` reader, or a frame read, frees a writer asleep in its loan at once;
 * shl_writer_wake from another thread ends a loan that waits, held back so
 * or by pins on every slot. Other processes are this program re-executed
 * with a role argument. */
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>

#include "testutil_stream_api.h"
#include "testutil_thief.h"

/* The core's stream.c, built into this program with its liveness period a
 * variable: the wake-up tests make it an hour (with futex_waitv), so that a
 * loan's sleep ends only by a futex wake, never at the period's end. */
static int64_t liveness_period_ns = 50000000; /* stream.c's */
#define LIVENESS_PERIOD_NS liveness_period_ns
#include "stream.c"

static const char *self; /* argv[0], to re-execute ourselves */
/* Worst times, printed at the end: a sleeping BLOCK writer's loan after a
 * reader died, or read. */
static double unblock_kill_ms, unblock_read_ms;

static pid_t spawn(const char *role, const char *name, const char *arg, int *report) {
  return spawn_role(self, role, name, arg, report);
}

/* ---------------------------------------------------------------- roles */

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

/* argv: self role name [arg] report-fd */
static int run_role(int argc, char **argv) {
  const char *role = argv[1], *name = argv[2];
  int fd = atoi(argv[argc - 1]);
  if (strcmp(role, "lag") == 0) return role_lag(name, fd);
  if (strcmp(role, "block-loan") == 0) return role_block_loan(name, fd);
  fprintf(stderr, "unknown role %s\n", role);
  return 1;
}

/* ---------------------------------------------------------------- tests */

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

/* ---------------------------------------------------------------- wake */

#define LOANING INT_MIN /* struct loaner's rc while its loan has not returned */

/* A thread of this process in shl_writer_loan(w, -1). */
struct loaner {
  shl_writer *w;
  void *frame;
  atomic_int tid, rc;
  pthread_t thread;
};

static void *loaner_main(void *arg) {
  struct loaner *l = arg;
  atomic_store(&l->tid, (int)gettid());
  atomic_store(&l->rc, shl_writer_loan(l->w, &l->frame, -1));
  return NULL;
}

/* Starts the loan; with `asleep`, returns once it sleeps in the futex, so
 * that what follows tests a wake-up of a sleeper. */
static void loaner_start(struct loaner *l, shl_writer *w, bool asleep) {
  l->w = w;
  atomic_init(&l->tid, 0);
  atomic_init(&l->rc, LOANING);
  T_REQUIRE(pthread_create(&l->thread, NULL, loaner_main, l) == 0);
  while (atomic_load(&l->tid) == 0) sched_yield();
  if (asleep) T_CHECK(t_wait_in_futex(atomic_load(&l->tid), WAIT_MS));
}

/* The loan's result; LOANING for one that still waited after WAIT_MS (a
 * wake-up lost), which is then given a slot by free_one(arg), so that its
 * thread ends, and the slot discarded. */
static int loaner_join(struct loaner *l, void (*free_one)(void *), void *arg) {
  struct timespec until;
  clock_gettime(CLOCK_REALTIME, &until);
  until.tv_sec += WAIT_MS / 1000;
  if (pthread_timedjoin_np(l->thread, NULL, &until) == 0) return atomic_load(&l->rc);
  free_one(arg);
  T_REQUIRE(pthread_join(l->thread, NULL) == 0);
  if (atomic_load(&l->rc) >= 0) T_EXPECT_RC(shl_writer_discard(l->w), 0);
  return LOANING;
}

/* The wake-ups and what follows them, on a writer whose every slot is
 * taken (a loan that may not wait says `why`): free_one(arg) frees one (and
 * is called once more for each loan a lost wake-up left waiting); next_seq
 * is the next frame's. */
static void check_wake(shl_writer *w, int why, uint64_t next_seq, void (*free_one)(void *),
                       void *arg) {
  void *frame;
  struct loaner l;
  /* Asleep in its loan: woken, it holds no slot. */
  loaner_start(&l, w, true);
  shl_writer_wake(w);
  T_EXPECT_RC(loaner_join(&l, free_one, arg), -EINTR);
  T_EXPECT_RC(shl_writer_discard(w), -EINVAL);
  /* A wake while no loan waits: a loan that may not wait keeps it, the next
   * that would wait returns with it at once, and the one after waits. */
  shl_writer_wake(w);
  T_EXPECT_RC(shl_writer_loan(w, &frame, 0), why);
  loaner_start(&l, w, false);
  T_EXPECT_RC(loaner_join(&l, free_one, arg), -EINTR);
  loaner_start(&l, w, true);
  free_one(arg);
  int slot = loaner_join(&l, free_one, arg);
  T_CHECK(slot >= 0);
  if (slot >= 0) {
    t_frame_stamp(l.frame, WORDS, next_seq);
    uint64_t seq = 0;
    T_EXPECT_RC(shl_writer_publish(w, &seq), 0);
    T_CHECK(seq == next_seq);
  }
}

/* An `all` reader of a blocking stream that reads only when told. */
struct stalled {
  shl_reader *r;
  uint64_t next; /* its next frame */
};

static void stalled_take(void *arg) {
  struct stalled *a = arg;
  EXPECT_SAMPLE(a->r, a->next, 0);
  a->next++;
}

/* A blocking stream that an `all` reader holds back. */
static void test_wake_block(void) {
  char name[SHL_NAME_MAX + 1];
  t_fresh_name(name, "swwblk");
  shl_writer *w = open_writer(name, SHL_STREAM_BLOCK);
  struct stalled a = {t_reader_open(name, SHL_RECV_ALL, 0), 1};
  uint64_t seq = fill_ring(w, 1);
  check_wake(w, -ETIMEDOUT, seq, stalled_take, &a);
  while (a.next <= seq) stalled_take(&a); /* every frame, in order */
  EXPECT_NOTHING(a.r);
  shl_reader_close(a.r);
  shl_writer_close(w);
}

/* Samples pin every slot but the newest; each release frees one. */
struct pins {
  shl_reader *r;
  shl_sample held[SLOTS];
  unsigned n, released;
};

static void pins_release(void *arg) {
  struct pins *p = arg;
  T_REQUIRE(p->released < p->n);
  T_EXPECT_RC(shl_reader_release(p->r, &p->held[p->released++]), 0);
}

/* A stream (not blocking) whose slots readers pin. */
static void test_wake_pinned(void) {
  char name[SHL_NAME_MAX + 1];
  t_fresh_name(name, "swwpin");
  shl_writer *w = open_writer(name, 0);
  struct pins p = {t_reader_open_pins(name, SHL_RECV_LATEST, 0, SLOTS), {{0}}, 0, 0};
  for (uint64_t seq = 1; seq < SLOTS; seq++) {
    PUBLISH(w, seq, seq);
    T_REQUIRE(TAKE(p.r, &p.held[p.n++], seq, ANY) == 0);
  }
  PUBLISH(w, SLOTS, SLOTS);
  void *frame;
  T_EXPECT_RC(shl_writer_loan(w, &frame, 0), SHL_E_SLOTS_PINNED);
  check_wake(w, SHL_E_SLOTS_PINNED, SLOTS + 1, pins_release, &p);
  EXPECT_SAMPLE(p.r, SLOTS + 1, ANY); /* the frame published after the wake-ups */
  while (p.released < p.n) pins_release(&p);
  shl_reader_close(p.r);
  shl_writer_close(w);
}

/* A loan of a blocking stream's writer, woken by its `all` reader's read. */
struct timed_loan {
  struct t_sleeper sl;
  shl_writer *w;
  shl_reader *r;
  void *frame;
  uint64_t next, read; /* the next frame's number, the reader's next frame */
  int rc;
};

static void *timed_loan_main(void *arg) {
  struct timed_loan *l = arg;
  atomic_store(&l->sl.tid, (int)gettid());
  l->rc = shl_writer_loan(l->w, &l->frame, 1000 * T_MS);
  l->sl.done_ns = t_now_ns();
  return NULL;
}

static void read_next(void *arg) {
  struct timed_loan *l = arg;
  EXPECT_SAMPLE(l->r, l->read, 0); /* frees the oldest slot */
  l->read++;
}

static void publish_loaned(void *arg) {
  struct timed_loan *l = arg;
  T_CHECK(l->rc >= 0);
  if (l->rc < 0) return;
  t_frame_stamp(l->frame, WORDS, l->next++);
  T_EXPECT_RC(shl_writer_publish(l->w, NULL), 0);
}

/* A peer with write access to a blocking stream of mode 0660 clears
 * writer_waiting (a reader that frees a slot then skips its wake), or moves
 * the writer asleep in its loan off `space` to a word of its own: the loan
 * must still end within a slice (20 ms) of the slot's release, not at its
 * time-out (1 s) nor at the liveness period (made an hour here). */
static void test_loan_robbed(void) {
  for (int requeue = 0; requeue < 2; requeue++) {
    char name[SHL_NAME_MAX + 1];
    t_fresh_name(name, "sbrob");
    struct timed_loan v = {.w = open_group_writer(name, SHL_STREAM_BLOCK), .read = 1};
    v.r = t_reader_open(name, SHL_RECV_ALL, 0);
    v.next = fill_ring(v.w, 1);
    struct shl__stream_ctl *ctl = v.w->s.ctl;
    _Atomic uint32_t *word = requeue ? &ctl->space : &ctl->writer_waiting;
    struct t_thief *t = t_thief_start(name, (size_t)((char *)word - (char *)v.w->s.seg->hdr), requeue);
    T_REQUIRE(t);
    T_CHECK(t_thief_rounds(t, word, timed_loan_main, read_next, publish_loaned, &v) <= 2);
    T_CHECK(t_thief_stop(t));
    shl_reader_close(v.r);
    shl_writer_close(v.w);
  }
}

static void test_wake(void) {
  int64_t period = liveness_period_ns;
  /* Without futex_waitv a wake-up is seen at the end of a period. */
  if (shl__futex_waitv_usable()) liveness_period_ns = 3600 * 1000 * T_MS;
  test_wake_block();
  test_wake_pinned();
  liveness_period_ns = 3600 * 1000 * T_MS; /* the loan needs no futex_waitv */
  test_loan_robbed();
  liveness_period_ns = period;
}

int main(int argc, char **argv) {
  self = argv[0];
  if (argc > 2) return run_role(argc, argv);
  t_frame_check_canary(WORDS); /* every sample's bytes are checked with it */
  test_block();
  test_block_reader_killed();
  test_wake();
  printf("stream_block: BLOCK writer freed %.1f ms after a reader died, %.1f ms after it read\n",
         unblock_kill_ms, unblock_read_ms);
  return t_result();
}
