/* Kill storms.
 * (a) Writer processes SIGKILLed, either holding a loan with half a frame
 *     written, or at an arbitrary moment while publishing at full speed:
 *     readers never see a half-written frame, readers that wait hear
 *     SHL_E_WRITER_GONE soon after, and the next writer process takes over
 *     with seq going on while the readers keep their place.
 * (b) Reader processes SIGKILLed while holding samples: their pins and table
 *     entries are reclaimed, by the writer's next loan or the next reader.
 * (c) Every call the survivors make returns within its time-out.
 * Also a writer that dies between stamping a frame and announcing it.
 * Frames are stamped with a tag that grows from frame to frame and round to
 * round; a sample whose words differ is torn. Other processes are this
 * program re-executed with a role argument. */
#include <signal.h>
#include <stdint.h>

#include "internal.h" /* white-box: the slot table, to play a writer that dies mid-publish */
#include "testutil_stream.h"

#define WORDS 512 /* 4 KiB frames */
#define SLOTS 4
#define ROUNDS 40                    /* writer kills; every fourth writer runs at full speed */
#define PER_ROUND 2                  /* frames a "half" writer publishes before its last loan */
#define RUN_FRAMES 20                /* frames of a running writer taken before it is killed */
#define HOLD_ROUNDS 10               /* reader kills */
#define HOLDERS 3                    /* SLOTS - 1: together they pin every slot but the newest */
#define POISON 0xdeaddeaddeaddeadULL /* the half-written part; never a tag */
#define WAIT_MS 5000                 /* bound on anything that should succeed */
#define SLACK_MS 1000                /* a call with a time-out returns within it plus this */
#define GONE_MAX_MS 500  /* WRITER_GONE is due within 100 ms: slack for sanitizers and load */
#define CHILD_LIMIT_S 60 /* a child still alive by then dies of SIGALRM */

static const char *self; /* argv[0], to re-execute ourselves */

/* Tags grow with the round (the writer process) and the frame within it. */
static uint64_t tag_of(long round, uint64_t i) { return (uint64_t)(round + 1) << 32 | (i + 1); }

/* A waiter's report: 'R'eady, 'F'rame fine, 'B'ad frame, writer 'G'one, 'X' error. */
struct msg {
  uint64_t what;
  uint64_t seq; /* the frame's, or the last one before 'G' */
};

static void send_msg(int fd, char what, uint64_t seq) {
  struct msg m = {(uint64_t)what, seq};
  T_CHECK(write(fd, &m, sizeof m) == (ssize_t)sizeof m);
}

/* A time-out call must come back within it (c). */
static int receive_timed(shl_reader *r, shl_sample *s, long timeout_ms) {
  long long t0 = t_now_ns();
  int rc = shl_reader_receive(r, s, timeout_ms * T_MS, 0);
  T_EXPECT_TOOK(t0, 0, timeout_ms + SLACK_MS);
  return rc;
}

/* Check a sample into the tally: 1 if this one is fine (intact, not the
 * poison, in order, counted right). */
static int tally_ok(struct t_tally *t, const shl_sample *s) {
  uint64_t bad = t->torn + t->disorder + t->miscount;
  t_tally_add(t, s, WORDS);
  return t->torn + t->disorder + t->miscount == bad && *(const uint64_t *)s->data != POISON;
}

/* ---------------------------------------------------------------- roles */

/* Publish PER_ROUND frames, then loan a slot, write half of it, say 'H' and
 * wait to be killed. */
static int role_half(const char *name, long round, int fd) {
  shl_writer *w = t_writer_open(name, WORDS, SLOTS, 0, 0);
  for (uint64_t i = 0; i < PER_ROUND; i++) T_CHECK(t_publish(w, WORDS, tag_of(round, i), WAIT_MS));
  void *frame;
  T_CHECK(shl_writer_loan(w, &frame, WAIT_MS * T_MS) >= 0);
  t_frame_stamp(frame, WORDS / 2, POISON);
  t_send_byte(fd, t_failures ? 'B' : 'H');
  t_sleep_ms(CHILD_LIMIT_S * 1000L);
  return 1;
}

/* Publish as fast as possible until killed. */
static int role_run(const char *name, long round, int fd) {
  shl_writer *w = t_writer_open(name, WORDS, SLOTS, 0, 0);
  t_send_byte(fd, 'S');
  for (uint64_t i = 0; t_publish(w, WORDS, tag_of(round, i), WAIT_MS); i++) {
  }
  return 1;
}

/* A reader that reports every frame and every end of a writer, until the
 * parent closes the command pipe. */
static int role_wait(const char *name, uint32_t mode, int cmd, int fd) {
  shl_reader *r = t_reader_open(name, mode, WAIT_MS);
  struct t_tally t = {.mode = mode};
  int fresh = 0; /* frames since the last 'G' */
  send_msg(fd, 'R', 0);
  for (;;) {
    shl_sample s;
    int rc = receive_timed(r, &s, WAIT_MS);
    if (rc == 0) {
      int ok = tally_ok(&t, &s);
      T_EXPECT_RC(shl_reader_release(r, &s), 0);
      send_msg(fd, ok ? 'F' : 'B', s.seq);
      fresh = 1;
    } else if (rc == SHL_E_WRITER_GONE || rc == SHL_E_WRITER_CLOSED) { /* no writer */
      if (fresh) send_msg(fd, 'G', t.last_seq);
      fresh = 0;
      struct pollfd p = {.fd = cmd, .events = POLLIN};
      if (poll(&p, 1, 0) != 0) break; /* EOF: the parent is done */
    } else {
      T_EXPECT_RC(rc, 0);
      send_msg(fd, 'X', (uint64_t)-rc);
      break;
    }
  }
  shl_reader_close(r);
  return t_result();
}

/* Pin the newest frame, say 'H' (or 'B' if it is torn), wait to be killed. */
static int role_hold(const char *name, uint32_t mode, int fd) {
  shl_reader *r = t_reader_open(name, mode, WAIT_MS);
  shl_sample s;
  int rc = receive_timed(r, &s, WAIT_MS);
  T_EXPECT_RC(rc, 0);
  int ok = rc == 0 && t_frame_bad_words(s.data, WORDS, *(const uint64_t *)s.data) == 0;
  t_send_byte(fd, ok ? 'H' : 'B');
  t_sleep_ms(CHILD_LIMIT_S * 1000L);
  return 1;
}

/* argv: self role name arg [cmd-fd] report-fd */
static int run_role(int argc, char **argv) {
  const char *role = argv[1], *name = argv[2];
  int fd = atoi(argv[argc - 1]);
  long arg = argc > 4 ? atol(argv[3]) : 0;
  if (strcmp(role, "half") == 0 && argc == 5) return role_half(name, arg, fd);
  if (strcmp(role, "run") == 0 && argc == 5) return role_run(name, arg, fd);
  if (strcmp(role, "hold") == 0 && argc == 5) return role_hold(name, (uint32_t)arg, fd);
  if (strcmp(role, "wait") == 0 && argc == 6)
    return role_wait(name, (uint32_t)arg, atoi(argv[4]), fd);
  fprintf(stderr, "unknown role %s\n", role);
  return 1;
}

/* ---------------------------------------------------------------- parent side */

static pid_t spawn(const char *role, const char *name, long arg, int *report) {
  char a[24];
  snprintf(a, sizeof a, "%ld", arg);
  const char *args[] = {self, role, name, a, NULL};
  return t_exec_reporting(args, report, CHILD_LIMIT_S);
}

/* A reader of this process, checking as it goes. */
struct local {
  const char *who;
  shl_reader *r;
  struct t_tally t;
};

static int local_take(struct local *lr, long timeout_ms) {
  shl_sample s;
  int rc = receive_timed(lr->r, &s, timeout_ms);
  if (rc != 0) return rc;
  if (!tally_ok(&lr->t, &s)) {
    fprintf(stderr, "%s: bad sample seq %llu lost %llu tag %#llx\n", lr->who,
            (unsigned long long)s.seq, (unsigned long long)s.lost,
            (unsigned long long)*(const uint64_t *)s.data);
    t_failures++;
  }
  T_EXPECT_RC(shl_reader_release(lr->r, &s), 0);
  return 0;
}

/* Take frames until seq `last` has been seen. */
static void local_catch_up(struct local *lr, uint64_t last) {
  for (int n = 0; lr->t.last_seq < last && n < 1000; n++)
    if (local_take(lr, WAIT_MS) != 0) break;
  T_CHECK(lr->t.last_seq == last);
}

/* Take what is left, then the writer must be reported gone (`why`: it died,
 * SHL_E_WRITER_GONE, or closed, SHL_E_WRITER_CLOSED), promptly. */
static void local_drain_to_gone(struct local *lr, int why) {
  int rc = 0;
  for (int n = 0; rc == 0 && n < 1000; n++) rc = local_take(lr, WAIT_MS);
  T_EXPECT_RC(rc, why);
  long long t0 = t_now_ns();
  shl_sample s;
  T_EXPECT_RC(shl_reader_receive(lr->r, &s, WAIT_MS * T_MS, 0), why);
  T_EXPECT_TOOK(t0, 0, GONE_MAX_MS);
}

/* A reader process reporting over a pipe. */
struct waiter {
  pid_t pid;
  int report, command;
};

static void start_waiter(struct waiter *wt, const char *name, uint32_t mode) {
  char m[4];
  snprintf(m, sizeof m, "%u", mode);
  const char *args[] = {self, "wait", name, m, NULL};
  wt->pid = t_exec_duplex(args, &wt->report, &wt->command, CHILD_LIMIT_S);
  struct msg msg;
  T_REQUIRE(t_read_full(wt->report, &msg, sizeof msg, WAIT_MS) == 0 && msg.what == 'R');
}

/* Read reports until one says `until` (with seq >= min_seq); bad frames fail. */
static int await_msg(struct waiter *wt, char until, uint64_t min_seq) {
  long long deadline = t_now_ns() + WAIT_MS * T_MS;
  struct msg m;
  while (t_read_full(wt->report, &m, sizeof m, (long)((deadline - t_now_ns()) / T_MS)) == 0) {
    if (m.what == 'B' || m.what == 'X') {
      fprintf(stderr, "waiter %ld reported '%c' %llu\n", (long)wt->pid, (char)m.what,
              (unsigned long long)m.seq);
      t_failures++;
    }
    if (m.what == (uint64_t)until && m.seq >= min_seq) return 1;
  }
  fprintf(stderr, "waiter %ld: no '%c' in time\n", (long)wt->pid, until);
  t_failures++;
  return 0;
}

static void finish_waiter(struct waiter *wt) {
  close(wt->command); /* EOF: it leaves at its next WRITER_GONE */
  struct msg m;
  while (t_read_full(wt->report, &m, sizeof m, WAIT_MS) == 0)
    T_CHECK(m.what == 'F' || m.what == 'G');
  close(wt->report);
  T_EXPECT_EXIT(t_child_reap(wt->pid), 0);
}

/* Who watches the writers: readers of this process and reader processes, of
 * both modes (`all` first); and how soon the waiting ones heard of a death. */
struct audience {
  struct local local[2];
  struct waiter waiter[2];
  int gone_n;
  double gone_worst_ms, gone_total_ms;
};

/* A writer dies holding a loan with half a frame written. The readers got its
 * full frames, none lost; the half one stays unseen; the waiting readers hear
 * WRITER_GONE soon after the kill. */
static void half_round(const char *name, long round, struct audience *au) {
  int fd;
  pid_t pid = spawn("half", name, round, &fd);
  if (!t_await_byte(pid, fd, 'H', WAIT_MS)) return;
  uint64_t last = t_stream_info(shl_reader_segment(au->local[0].r)).last_seq;
  for (int i = 0; i < 2; i++) {
    struct local *lr = &au->local[i];
    uint64_t samples = lr->t.samples, accounted = lr->t.accounted;
    local_catch_up(lr, last);
    if (lr->t.mode == SHL_RECV_ALL)
      T_CHECK(lr->t.samples - samples == PER_ROUND && lr->t.accounted - accounted == PER_ROUND);
    shl_sample s;
    T_EXPECT_RC(receive_timed(lr->r, &s, 0), -ETIMEDOUT); /* the half frame is not there */
  }
  for (int i = 0; i < 2; i++) {
    await_msg(&au->waiter[i], 'F', last);
    T_CHECK(t_wait_in_futex(au->waiter[i].pid, WAIT_MS)); /* waiting for the next frame */
  }
  long long t0 = t_now_ns();
  T_CHECK(kill(pid, SIGKILL) == 0);
  for (int i = 0; i < 2; i++) {
    if (!await_msg(&au->waiter[i], 'G', last)) continue;
    double ms = (double)(t_now_ns() - t0) / 1e6;
    au->gone_n++;
    au->gone_total_ms += ms;
    if (ms > au->gone_worst_ms) au->gone_worst_ms = ms;
    T_EXPECT_TOOK(t0, 0, GONE_MAX_MS);
  }
  T_EXPECT_SIGNAL(t_child_reap(pid), SIGKILL); /* only now: a zombie is dead too */
  for (int i = 0; i < 2; i++) local_drain_to_gone(&au->local[i], SHL_E_WRITER_GONE);
}

/* A writer publishing at full speed dies wherever it happens to be. */
static void run_round(const char *name, long round, struct audience *au) {
  int fd;
  pid_t pid = spawn("run", name, round, &fd);
  if (!t_await_byte(pid, fd, 'S', WAIT_MS)) return;
  struct local *a = &au->local[0];
  for (uint64_t start = a->t.samples; a->t.samples - start < RUN_FRAMES;)
    if (local_take(a, WAIT_MS) != 0) break;
  t_kill_child(pid);
  for (int i = 0; i < 2; i++) local_drain_to_gone(&au->local[i], SHL_E_WRITER_GONE);
  for (int i = 0; i < 2; i++) await_msg(&au->waiter[i], 'G', 0);
}

static void storm_writers(void) {
  char name[SHL_NAME_MAX + 1];
  t_fresh_name(name, "kwriter");
  /* Created and left: the readers start before the first frame. */
  shl_writer_close(t_writer_open(name, WORDS, SLOTS, 0, 0));
  struct audience au = {
      .local = {{"all", t_reader_open(name, SHL_RECV_ALL, 0), {.mode = SHL_RECV_ALL}},
                {"latest", t_reader_open(name, SHL_RECV_LATEST, 0), {.mode = SHL_RECV_LATEST}}}};
  start_waiter(&au.waiter[0], name, SHL_RECV_ALL);
  start_waiter(&au.waiter[1], name, SHL_RECV_LATEST);
  for (long round = 0; round < ROUNDS && !t_failures; round++) {
    if (round % 4 == 3)
      run_round(name, round, &au);
    else
      half_round(name, round, &au);
  }
  /* This process takes over last: seq goes on from the highest seen. */
  shl_writer *w = t_writer_open(name, WORDS, SLOTS, 0, 0);
  uint64_t seq = shl_writer_next_seq(w);
  T_CHECK(seq > au.local[0].t.last_seq);
  T_CHECK(t_publish(w, WORDS, tag_of(ROUNDS, 0), 0) == seq);
  for (int i = 0; i < 2; i++) local_catch_up(&au.local[i], seq);
  shl_writer_close(w);
  for (int i = 0; i < 2; i++) {
    if (!t_tally_clean(&au.local[i].t)) t_tally_print(au.local[i].who, &au.local[i].t);
    shl_reader_close(au.local[i].r);
    finish_waiter(&au.waiter[i]);
  }
  const struct t_tally *all = &au.local[0].t;
  printf(
      "writers: %d killed (%d mid-loan, %d running); the `all` reader got %llu frames, "
      "%llu lost\n",
      ROUNDS, ROUNDS - ROUNDS / 4, ROUNDS / 4, (unsigned long long)all->samples,
      (unsigned long long)(all->accounted - all->samples));
  printf(
      "WRITER_GONE reached waiting readers %.1f ms after the kill at worst, %.1f ms on "
      "average (%d waits)\n",
      au.gone_worst_ms, au.gone_n ? au.gone_total_ms / au.gone_n : 0.0, au.gone_n);
}

/* The writer loans at once, its first loan having reaped every dead holder
 * (their entries are free, so no slot counts as theirs), and goes on at once.
 * (Which slots it then takes is test_stream's slot choice.) */
static void expect_every_slot(shl_writer *w, uint64_t *tag) {
  for (int i = 0; i < SLOTS; i++) {
    void *frame;
    long long t0 = t_now_ns();
    int slot = shl_writer_loan(w, &frame, 0);
    T_EXPECT_TOOK(t0, 0, T_AT_ONCE_MS);
    T_REQUIRE(slot >= 0 && slot < SLOTS);
    t_frame_stamp(frame, WORDS, (*tag)++);
    T_EXPECT_RC(shl_writer_publish(w, NULL), 0);
    for (uint32_t e = 0; i == 0 && e < HOLDERS; e++) {
      shl_stream_reader entry = SHL_STREAM_READER_INIT;
      T_EXPECT_RC(shl_stream_get_reader(shl_writer_segment(w), e, &entry), 0);
    }
  }
}

/* The reader table has room for max_readers again. */
static void expect_full_table(const char *name, shl_segment *seg) {
  shl_reader *r[HOLDERS], *extra = NULL;
  for (int i = 0; i < HOLDERS; i++) {
    long long t0 = t_now_ns();
    r[i] = t_reader_open(name, (uint32_t)i % 2, 0);
    T_EXPECT_TOOK(t0, 0, T_AT_ONCE_MS);
  }
  T_CHECK(t_stream_info(seg).readers_alive == HOLDERS);
  T_EXPECT_RC(shl_reader_open(&extra, name, SHL_RECV_ALL, 0), -EUSERS);
  for (int i = 0; i < HOLDERS; i++) shl_reader_close(r[i]);
}

/* Readers die holding every slot but the newest and filling the table. */
static void storm_readers(void) {
  char name[SHL_NAME_MAX + 1];
  t_fresh_name(name, "kreader");
  shl_writer *w = t_writer_open(name, WORDS, SLOTS, HOLDERS, 0);
  shl_segment *seg = shl_writer_segment(w);
  uint64_t tag = 1;
  for (int round = 0; round < HOLD_ROUNDS && !t_failures; round++) {
    pid_t holder[HOLDERS];
    for (int i = 0; i < HOLDERS; i++) {
      T_CHECK(t_publish(w, WORDS, tag++, 0));
      int fd;
      holder[i] = spawn("hold", name, (round + i) % 2, &fd); /* it pins that frame */
      T_REQUIRE(t_await_byte(holder[i], fd, 'H', WAIT_MS));
    }
    T_CHECK(t_publish(w, WORDS, tag++, 0)); /* the newest, not pinned */
    void *frame;
    long long t0 = t_now_ns();
    T_EXPECT_RC(shl_writer_loan(w, &frame, 0), SHL_E_SLOTS_PINNED);
    T_EXPECT_TOOK(t0, 0, T_AT_ONCE_MS);
    shl_reader *extra = NULL;
    T_EXPECT_RC(shl_reader_open(&extra, name, SHL_RECV_LATEST, 0), -EUSERS);
    T_CHECK(t_stream_info(seg).readers_alive == HOLDERS);
    for (int i = 0; i < HOLDERS; i++) t_kill_child(holder[i]);
    T_CHECK(t_stream_info(seg).readers_alive == 0);
    /* Whoever comes first reclaims: the writer's loan, or a new reader. */
    if (round % 2 == 0) {
      expect_every_slot(w, &tag);
      expect_full_table(name, seg);
    } else {
      expect_full_table(name, seg);
      expect_every_slot(w, &tag);
    }
  }
  shl_writer_close(w);
  printf("readers: %d killed while holding samples, all reclaimed\n", HOLD_ROUNDS * HOLDERS);
}

/* A writer that dies between stamping a slot's seq and announcing the frame
 * as the newest leaves a complete frame nobody was told about. Played here
 * by hand: the next writer must not hand out that seq again, and readers
 * account for the frame exactly, whether they get it or count it lost. */
static void died_mid_publish(void) {
  char name[SHL_NAME_MAX + 1];
  t_fresh_name(name, "kpublish");
  shl_writer *w = t_writer_open(name, WORDS, SLOTS, 0, 0);
  struct local lr[2] = {
      {"all", t_reader_open(name, SHL_RECV_ALL, 0), {.mode = SHL_RECV_ALL}},
      {"latest", t_reader_open(name, SHL_RECV_LATEST, 0), {.mode = SHL_RECV_LATEST}}};
  for (uint64_t seq = 1; seq <= 2; seq++) T_CHECK(t_publish(w, WORDS, seq, 0) == seq);
  for (int i = 0; i < 2; i++) local_catch_up(&lr[i], 2);
  void *frame;
  int slot = shl_writer_loan(w, &frame, 0);
  T_REQUIRE(slot >= 0);
  t_frame_stamp(frame, WORDS, 3);
  struct shl__slot *slots =
      (struct shl__slot *)(void *)(shl_writer_segment(w)->ext + sizeof(struct shl__stream_ctl));
  /* What publish does, up to where it dies: time, then seq; `latest` still says 2. */
  atomic_store(&slots[slot].timestamp_ns, (uint64_t)t_now_ns());
  atomic_store(&slots[slot].seq, 3);
  shl_writer_close(w); /* the loan is dropped, the stamp stays */
  for (int i = 0; i < 2; i++) local_drain_to_gone(&lr[i], SHL_E_WRITER_CLOSED);

  w = t_writer_open(name, WORDS, SLOTS, 0, 0);
  T_CHECK(shl_writer_next_seq(w) == 4);
  T_CHECK(t_publish(w, WORDS, 4, 0) == 4);
  for (int i = 0; i < 2; i++) {
    local_catch_up(&lr[i], 4);
    if (!t_tally_clean(&lr[i].t)) t_tally_print(lr[i].who, &lr[i].t);
    T_CHECK(lr[i].t.mode != SHL_RECV_ALL || lr[i].t.accounted == 4);
    shl_reader_close(lr[i].r);
  }
  shl_writer_close(w);
}

int main(int argc, char **argv) {
  self = argv[0];
  if (argc > 2) return run_role(argc, argv);
  died_mid_publish();
  storm_writers();
  storm_readers();
  return t_result();
}
