/* The predictive wait (shl_reader_set_spin(r, SHL_SPIN_AUTO)):
 * - the pace (src/pace.c), fed made-up publish times, no clock: learnt from
 *   two intervals, or one with a declared period; a window never wider than
 *   1 ms nor an eighth of the period, whatever the times; a window that
 *   passes without a frame ends the prediction (a stopped writer costs one
 *   window); a change of rate unlocks it and two intervals lock it again;
 *   the prediction follows a scheduled writer's earliest frames, not its
 *   last one; frames skipped by a `latest` reader; times a peer scribbled;
 * - a reader's wait follows the plan (white-box: stream.c is compiled in and
 *   the reader's pace set by hand): before the window SHL_WAIT_RETURN_DUE
 *   does not answer -EAGAIN, in it it does at once, a timed receive sleeps
 *   until the window, and after the window nothing is predicted;
 * - across processes: a writer child publishes at one pace, then another,
 *   then stops (alive): a SHL_RECV_ALL reader with the predictive wait gets
 *   every frame in order, then ends up asleep in the futex and stays there
 *   (context switches from /proc); a reader of a stream whose writer
 *   publishes nothing more makes no wake-up, a declared period included.
 * No timing is asserted: a wait's outcome under load is retried or counted,
 * never bounded by a clock. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "testutil_stream.h"

#include "platform_linux.c"
#include "stream_setup.c"
#include "stream_readers.c"
#include "stream.c"

#define WORDS 8
#define WAIT_MS 5000
#define CHILD_LIMIT_S 30
#define MS 1000000LL
#define US 1000LL
#define WINDOW_MAX (1 * MS)

/* ---------------------------------------------------------------- the pace */

/* Frame seq published at ts, received 20 us later (or at ts, for times a
 * peer wrote near the end of the clock). */
static void frame(struct shl__pace *p, uint64_t seq, int64_t ts) {
  shl__pace_frame(p, seq, ts, ts < INT64_MAX - 20 * US ? ts + 20 * US : ts);
}

/* The window the plan would give now, without changing p: [*open, *close). */
static bool window(const struct shl__pace *p, int64_t *open, int64_t *close) {
  struct shl__pace q = *p;
  if (shl__pace_plan(&q, p->last_ts, open) != SHL__PACE_EARLY) return false;
  return shl__pace_plan(&q, *open, close) == SHL__PACE_SPIN;
}

/* Waits from `from` for a frame that does not come, as wait_for_frame
 * follows the plan (woken `late` after each timed sleep): the time spent
 * spinning before the plan says sleep until a frame. */
static int64_t spin_spent(struct shl__pace *p, int64_t from, int64_t late) {
  int64_t now = from, spun = 0, until;
  for (int steps = 0; steps < 100; steps++) {
    int plan = shl__pace_plan(p, now, &until);
    if (plan == SHL__PACE_SLEEP) return spun;
    if (plan == SHL__PACE_EARLY) {
      now = until + late;
    } else {
      spun += until - now;
      now = until;
    }
  }
  T_CHECK(!"the plan never ends in a plain sleep");
  return spun;
}

static int64_t most(int64_t period) { return period / 8 < WINDOW_MAX ? period / 8 : WINDOW_MAX; }

static void test_pace_learns(void) {
  struct shl__pace p;
  int64_t until, open, close, t = 1000 * MS;
  shl__pace_reset(&p, 0);
  frame(&p, 1, t);
  T_CHECK(shl__pace_plan(&p, t + MS, &until) == SHL__PACE_SLEEP); /* no interval yet */
  frame(&p, 2, t += 10 * MS);
  T_CHECK(shl__pace_plan(&p, t + MS, &until) == SHL__PACE_SLEEP); /* one: not trusted yet */
  frame(&p, 3, t += 10 * MS);
  T_REQUIRE(window(&p, &open, &close)); /* two that agree */
  T_CHECK(open < t + 10 * MS && close > t + 10 * MS && close - open <= most(10 * MS));
  /* A declared period is the first estimate: one frame is enough. */
  shl__pace_reset(&p, 33 * MS);
  frame(&p, 1, t);
  T_REQUIRE(window(&p, &open, &close));
  T_CHECK(open < t + 33 * MS && close > t + 33 * MS);
  /* Declared periods no prediction can use: none. */
  const uint64_t absurd[] = {1, 100 * US, 100000 * MS, UINT64_MAX};
  for (size_t i = 0; i < sizeof absurd / sizeof absurd[0]; i++) {
    shl__pace_reset(&p, absurd[i]);
    frame(&p, 1, t);
    T_CHECK(shl__pace_plan(&p, t + 1, &until) == SHL__PACE_SLEEP);
  }
}

/* Jittery frames and late wake-ups widen the window, up to its bound. */
static void test_pace_window_bounded(void) {
  const int64_t periods[] = {MS, 4167 * US, 33333 * US, 1000 * MS};
  srand(7);
  for (size_t k = 0; k < sizeof periods / sizeof periods[0]; k++) {
    int64_t period = periods[k], t = 1000 * MS, widest = 0;
    struct shl__pace p;
    shl__pace_reset(&p, (uint64_t)period);
    for (uint64_t seq = 1; seq <= 200; seq++) {
      int64_t jitter = seq > 100 ? (rand() % (period / 10)) - period / 20 : 0;
      frame(&p, seq, t + jitter);
      int64_t open, close;
      if (window(&p, &open, &close)) { /* the estimate is within an eighth of the period */
        T_CHECK(close - open <= most(period + period / 8));
        if (close - open > widest) widest = close - open;
      }
      int64_t until; /* the reader oversleeps the window's start by up to 2 ms */
      if (shl__pace_plan(&p, p.last_ts, &until) == SHL__PACE_EARLY)
        (void)shl__pace_plan(&p, until + rand() % (2 * MS), &until);
      t += period;
    }
    T_CHECK(widest > 0);
  }
}

/* The writer stops: one window of spinning, then a plain sleep for good. */
static void test_pace_writer_stops(void) {
  struct shl__pace p;
  int64_t t = 1000 * MS, until;
  shl__pace_reset(&p, 0);
  for (uint64_t seq = 1; seq <= 10; seq++, t += 33 * MS) frame(&p, seq, t);
  int64_t last = p.last_ts;
  int64_t spun = spin_spent(&p, last + MS, 30 * US);
  T_CHECK(spun > 0 && spun <= most(33 * MS));
  for (int64_t now = last; now < last + 10000 * MS; now += 7 * MS)
    T_CHECK(shl__pace_plan(&p, now, &until) == SHL__PACE_SLEEP);
}

/* Changes of rate: each costs at most one window, then two intervals lock
 * the new period. */
static void test_pace_rate_change(void) {
  struct shl__pace p;
  int64_t t = 1000 * MS, open, close, until;
  uint64_t seq = 1;
  shl__pace_reset(&p, 0);
  for (; seq <= 5; seq++, t += 10 * MS) frame(&p, seq, t);
  t -= 10 * MS;
  /* Slower: the window 10 ms on passes empty; the frame comes at 20 ms. */
  T_CHECK(spin_spent(&p, t + MS, 30 * US) <= most(10 * MS));
  frame(&p, seq++, t += 20 * MS);
  T_CHECK(shl__pace_plan(&p, t + MS, &until) == SHL__PACE_SLEEP); /* unlocked: no spin */
  frame(&p, seq++, t += 20 * MS);
  T_REQUIRE(window(&p, &open, &close)); /* locked on the new pace */
  T_CHECK(open > t + 15 * MS && close < t + 25 * MS);
  /* Faster: the frame comes before the window opens (the reader is woken
   * by the futex, as without prediction): nothing spun; then relocked. */
  T_CHECK(shl__pace_plan(&p, t + MS, &until) == SHL__PACE_EARLY && until > t + 5 * MS);
  frame(&p, seq++, t += 5 * MS);
  T_CHECK(shl__pace_plan(&p, t + MS, &until) == SHL__PACE_SLEEP);
  frame(&p, seq++, t += 5 * MS);
  T_REQUIRE(window(&p, &open, &close));
  T_CHECK(open > t + 4 * MS && close < t + 6 * MS);
}

/* A writer on a schedule whose frames are now and then late (a longer
 * fill): the prediction stays near the schedule, a late frame moving it a
 * quarter of its lateness, and the window reaches further past it; a frame
 * earlier than predicted moves it at once. */
static void test_pace_follows_earliest(void) {
  struct shl__pace p;
  const int64_t period = 33 * MS, t0 = 1000 * MS;
  int64_t open, close;
  uint64_t seq = 1;
  shl__pace_reset(&p, (uint64_t)period);
  for (; seq <= 10; seq++) frame(&p, seq, t0 + (int64_t)seq * period); /* on time */
  T_REQUIRE(window(&p, &open, &close));
  T_CHECK(p.due == t0 + (int64_t)seq * period && close - p.due == 50 * US);
  frame(&p, seq, t0 + (int64_t)seq * period + 400 * US); /* late */
  seq++;
  int64_t on_time = t0 + (int64_t)seq * period;
  T_CHECK(p.due >= on_time + 100 * US && p.due <= on_time + 200 * US); /* not 400 us on */
  for (int i = 0; i < 20; i++, seq++) /* every other frame late */
    frame(&p, seq, t0 + (int64_t)seq * period + (seq & 1 ? 400 * US : 0));
  T_REQUIRE(window(&p, &open, &close));
  on_time = t0 + (int64_t)seq * period;
  T_CHECK(p.due >= on_time && p.due <= on_time + 200 * US);
  T_CHECK(close - p.due > 300 * US && close - open <= most(period));
  int64_t ts = p.due - 300 * US; /* early */
  frame(&p, seq, ts);
  T_CHECK(p.due == ts + p.period);
}

/* A `latest` reader that skips frames still knows the period. */
static void test_pace_skips(void) {
  struct shl__pace p;
  int64_t t = 1000 * MS, open, close;
  shl__pace_reset(&p, 0);
  frame(&p, 1, t);
  frame(&p, 2, t += 10 * MS);
  frame(&p, 3, t += 10 * MS);
  frame(&p, 6, t += 30 * MS); /* 4 and 5 skipped */
  T_REQUIRE(window(&p, &open, &close));
  T_CHECK(open > t + 8 * MS && close < t + 12 * MS);
}

/* Times and numbers a peer wrote: never a prediction from them, and no
 * window beyond its bound. */
static void test_pace_hostile(void) {
  struct shl__pace p;
  int64_t t = 1000 * MS, until, open, close;
  struct {
    uint64_t seq;
    int64_t ts;
  } bad[] = {{4, 0},         {4, -5},         {3, 1},      {2, INT64_MAX},
             {4, INT64_MAX}, {UINT64_MAX, 7}, {5000, INT64_MIN + 1}};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    shl__pace_reset(&p, 0);
    for (uint64_t seq = 1; seq <= 3; seq++) frame(&p, seq, t + (int64_t)seq * 10 * MS);
    frame(&p, bad[i].seq, bad[i].ts);
    if (window(&p, &open, &close)) T_CHECK(close - open <= most(p.period) && close > open);
    (void)spin_spent(&p, t, 0); /* ends, whatever the plan */
  }
  shl__pace_reset(&p, 0); /* intervals below and above what is predicted */
  for (uint64_t seq = 1; seq <= 4; seq++) frame(&p, seq, (int64_t)seq * 1000);
  T_CHECK(shl__pace_plan(&p, 4000, &until) == SHL__PACE_SLEEP);
  shl__pace_reset(&p, 0);
  for (uint64_t seq = 1; seq <= 4; seq++) frame(&p, seq, (int64_t)seq * 100000 * MS);
  T_CHECK(shl__pace_plan(&p, 400000 * MS, &until) == SHL__PACE_SLEEP);
}

/* A caller that warms up after a due poll (SHL_WAIT_RETURN_DUE): the time
 * it takes to come back, the first time in a window, opens the next windows
 * that much earlier, within the bound; a caller that comes back at once
 * adds next to nothing. The window's end stays where it was. */
static int64_t lead_after(int64_t back, int64_t again) {
  struct shl__pace p;
  int64_t t = 1000 * MS, open, close, until;
  uint64_t seq = 1;
  shl__pace_reset(&p, 0);
  for (; seq <= 4; seq++, t += 33 * MS) frame(&p, seq, t);
  for (int i = 0; i < 60; i++, t += 33 * MS) {
    T_REQUIRE(window(&p, &open, &close));
    T_CHECK(close - open <= most(33 * MS) && close - p.due == 50 * US);
    T_CHECK(shl__pace_plan(&p, open, &until) == SHL__PACE_SPIN);
    shl__pace_polled(&p, open);
    shl__pace_came_back(&p, open + back);
    shl__pace_polled(&p, open + back); /* polls again: the same window */
    shl__pace_came_back(&p, open + back + again);
    frame(&p, seq++, t); /* on time */
  }
  T_REQUIRE(window(&p, &open, &close));
  return p.due - open;
}

static void test_pace_warmup(void) {
  int64_t plain = lead_after(1 * US, 1 * US);
  T_CHECK(plain >= 50 * US && plain <= 52 * US);
  int64_t warm = lead_after(300 * US, 900 * US); /* a cold first round, then a long one */
  T_CHECK(warm >= plain + 290 * US && warm <= plain + 300 * US);
  int64_t most_lead = most(33 * MS) - 50 * US; /* a caller slower than the window */
  T_CHECK(lead_after(5000 * MS, 0) == most_lead);
}

/* ---------------------------------------------------------------- the wait follows the plan */

/* A reader with the predictive wait on an in-process stream with one frame
 * received; its pace says the next is due at `due`, with a 1 ms window. */
static void set_due(shl_reader *r, int64_t due) {
  shl__pace_reset(&r->pace, 1000 * MS);
  r->pace.due = due;
  r->pace.late = r->pace.early = WINDOW_MAX; /* as wide as it gets: 500 us each side */
}

static void test_wait_plan(void) {
  char name[SHL_NAME_MAX + 1];
  t_fresh_name(name, "pwait");
  shl_writer *w = t_writer_open(name, WORDS, 4, 4, 0);
  shl_reader *r = t_reader_open(name, SHL_RECV_LATEST, WAIT_MS);
  shl_reader_set_spin(r, SHL_SPIN_AUTO);
  T_CHECK(r->pace_on && r->spin_ns == 0);
  T_CHECK(t_publish(w, WORDS, 1, WAIT_MS) == 1);
  shl_sample s;
  T_EXPECT_RC(shl_reader_receive(r, &s, 0, SHL_WAIT_RETURN_DUE), 0);
  T_EXPECT_RC(shl_reader_release(r, &s), 0);
  T_EXPECT_RC(shl_reader_receive(r, &s, 0, 1u << 5), -EINVAL); /* unknown flag */

  /* Before the window: nothing to poll for. */
  set_due(r, t_now_ns() + 10000 * MS);
  T_EXPECT_RC(shl_reader_receive(r, &s, 0, SHL_WAIT_RETURN_DUE), -ETIMEDOUT);
  /* In it: -EAGAIN at once, whatever the time-out (a preempted try may find
   * the window gone: then nothing is predicted any more, and it is retried). */
  int due = 0;
  for (int i = 0; i < 100 && !due; i++) {
    set_due(r, t_now_ns());
    int rc = shl_reader_receive(r, &s, 0, SHL_WAIT_RETURN_DUE);
    due = rc == -EAGAIN;
    if (!due) T_CHECK(rc == -ETIMEDOUT && r->pace.due == 0);
  }
  T_CHECK(due);
  /* The caller comes back from its warm-up: learnt once a window. */
  T_CHECK(r->pace.polled > 0 && r->pace.warmup == 0);
  T_EXPECT_RC(shl_reader_receive(r, &s, 0, 0), -ETIMEDOUT);
  int64_t warmup = r->pace.warmup;
  T_CHECK(r->pace.polled == -1 && warmup > 0);
  (void)shl_reader_receive(r, &s, 0, SHL_WAIT_RETURN_DUE); /* -EAGAIN, or the window passed */
  T_EXPECT_RC(shl_reader_receive(r, &s, 0, 0), -ETIMEDOUT);
  T_CHECK(r->pace.polled == -1 && r->pace.warmup == warmup);
  /* Without the flag, a receive that may not wait does not wait. */
  set_due(r, t_now_ns());
  T_EXPECT_RC(shl_reader_receive(r, &s, 0, 0), -ETIMEDOUT);
  /* After it: the prediction ends, until the next frame. */
  set_due(r, t_now_ns() - 10 * MS);
  T_EXPECT_RC(shl_reader_receive(r, &s, 0, SHL_WAIT_RETURN_DUE), -ETIMEDOUT);
  T_CHECK(r->pace.due == 0);
  /* A timed receive sleeps until the window opens, then answers -EAGAIN
   * (or, having overslept the whole window, sleeps on until its time-out). */
  due = 0;
  for (int i = 0; i < 20 && !due; i++) {
    int64_t at = t_now_ns() + 20 * MS;
    set_due(r, at);
    int rc = shl_reader_receive(r, &s, 200 * MS, SHL_WAIT_RETURN_DUE);
    due = rc == -EAGAIN;
    T_CHECK(due ? t_now_ns() >= at - WINDOW_MAX : rc == -ETIMEDOUT);
  }
  T_CHECK(due);
  /* A frame that comes is received, and learnt from. */
  T_CHECK(t_publish(w, WORDS, 2, WAIT_MS) == 2);
  T_EXPECT_RC(shl_reader_receive(r, &s, WAIT_MS * T_MS, SHL_WAIT_RETURN_DUE), 0);
  T_CHECK(s.seq == 2 && r->pace.last_seq == 2);
  T_EXPECT_RC(shl_reader_release(r, &s), 0);
  /* Another spin forgets the pace; SHL_SPIN_AUTO again keeps it. */
  shl_reader_set_spin(r, SHL_SPIN_AUTO);
  T_CHECK(r->pace_on && r->pace.last_seq == 2);
  shl_reader_set_spin(r, 1000);
  T_CHECK(!r->pace_on && r->spin_ns == 1000);
  shl_reader_set_spin(r, SHL_SPIN_AUTO);
  T_CHECK(r->pace_on && r->pace.last_seq == 0);
  shl_reader_close(r);
  shl_writer_close(w);
}

/* ---------------------------------------------------------------- across processes */

/* A watcher of the thread that receives: once it is found asleep in the
 * futex, how often it wakes over the next SETTLED_MS, and whether it is
 * asleep at the end. A reader that kept spinning is never found asleep; one
 * that kept predicting frames wakes each period. */
#define SETTLED_MS 200
#define FIND_MS 150
struct watch {
  int32_t tid;
  bool found, asleep_after;
  long woke;
};

static void *watch_main(void *arg) {
  struct watch *wt = arg;
  wt->found = t_thread_in_futex(wt->tid, FIND_MS);
  if (!wt->found) return NULL;
  long before = t_switches_of(wt->tid);
  t_sleep_ms(SETTLED_MS);
  wt->woke = t_switches_of(wt->tid) - before;
  wt->asleep_after = t_thread_in_futex(wt->tid, 0);
  return NULL;
}

/* Receive (nothing comes) while watching this thread: it must settle into a
 * plain sleep and stay there. */
static void expect_settles(shl_reader *r, const char *what) {
  struct watch wt = {.tid = shl__thread_id()};
  pthread_t t;
  T_REQUIRE(pthread_create(&t, NULL, watch_main, &wt) == 0);
  shl_sample s;
  T_EXPECT_RC(shl_reader_receive(r, &s, (FIND_MS + SETTLED_MS + 150) * T_MS, 0), -ETIMEDOUT);
  pthread_join(t, NULL);
  printf("%s: asleep %s, then %ld context switches in %d ms\n", what, wt.found ? "yes" : "never",
         wt.woke, SETTLED_MS);
  T_CHECK(wt.found && wt.asleep_after);
  T_CHECK(wt.woke <= 3); /* the one timed wake before the window, at most */
}

/* argv: self writer NAME PERIOD_NS CMD_FD REPORT_FD. Opens the stream
 * (declaring PERIOD_NS), says 'W', then obeys: 'a' 20 frames 4 ms apart,
 * then 20 frames 8 ms apart, each on an absolute schedule, then 'D'; 'p'
 * one frame, then 'D'; EOF: close and exit. Frames are numbered 1, 2, ... */
static int run_writer(char **argv) {
  shl_layout l = t_frame_layout(WORDS);
  shl_stream_opts o = SHL_STREAM_OPTS_INIT;
  o.slots = 8;
  o.period_ns = (uint64_t)atoll(argv[3]);
  shl_writer *w = NULL;
  T_EXPECT_RC(shl_writer_open(&w, argv[2], &l, &o), 0);
  T_REQUIRE(w != NULL);
  int cmd = atoi(argv[4]), fd = atoi(argv[5]);
  t_send_byte(fd, 'W');
  uint64_t tag = 0;
  for (int c; (c = t_read_byte(cmd, CHILD_LIMIT_S * 1000L)) > 0;) {
    if (c == 'a') {
      int64_t next = t_now_ns();
      for (int i = 0; i < 40; i++) {
        next += (i < 20 ? 4 : 8) * MS;
        struct timespec ts = {(time_t)(next / 1000000000), (long)(next % 1000000000)};
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
        }
        tag++;
        T_CHECK(t_publish(w, WORDS, tag, WAIT_MS) == tag);
      }
    } else if (c == 'p') {
      tag++;
      T_CHECK(t_publish(w, WORDS, tag, WAIT_MS) == tag);
    }
    t_send_byte(fd, 'D');
  }
  shl_writer_close(w);
  return t_result();
}


/* A fresh stream, its writer in a child declaring `period`, and a reader
 * with the predictive wait. */
static shl_reader *open_pair(const char *tag, const char *period, uint32_t policy,
                             struct t_peer *c) {
  char name[SHL_NAME_MAX + 1];
  t_fresh_name(name, tag);
  const char *args[] = {"test_stream_pace", "writer", name, period, NULL};
  *c = t_start_peer(args, CHILD_LIMIT_S, WAIT_MS);
  shl_reader *r = t_reader_open(name, policy, WAIT_MS);
  shl_reader_set_spin(r, SHL_SPIN_AUTO);
  return r;
}

/* Two paces, then none: every frame, in order; then a plain sleep. */
static void test_paces_then_stop(void) {
  struct t_peer c;
  shl_reader *r = open_pair("pace", "0", SHL_RECV_ALL, &c);
  t_send_byte(c.command, 'a');
  for (uint64_t tag = 1; tag <= 40; tag++) {
    shl_sample s;
    int rc = shl_reader_receive(r, &s, WAIT_MS * T_MS, 0);
    T_EXPECT_RC(rc, 0);
    if (rc != 0) break;
    T_CHECK(s.seq == tag && s.lost == 0 && t_frame_bad_words(s.data, WORDS, tag) == 0);
    T_EXPECT_RC(shl_reader_release(r, &s), 0);
  }
  T_CHECK(t_read_byte(c.report, WAIT_MS) == 'D');
  expect_settles(r, "writer stopped after two paces");
  shl_reader_close(r);
  t_stop_peer(&c);
}

/* A writer that declared 5 ms and publishes one frame, then nothing: one
 * window, then a plain sleep; and a reader that never got a frame sleeps
 * plainly from the start. */
static void test_idle(void) {
  struct t_peer c;
  shl_reader *fresh = open_pair("pidle", "5000000", SHL_RECV_LATEST, &c);
  expect_settles(fresh, "idle, no frame yet");
  t_send_byte(c.command, 'p');
  T_CHECK(t_read_byte(c.report, WAIT_MS) == 'D');
  shl_sample s;
  T_EXPECT_RC(shl_reader_receive(fresh, &s, WAIT_MS * T_MS, 0), 0);
  T_EXPECT_RC(shl_reader_release(fresh, &s), 0);
  expect_settles(fresh, "idle after one frame, period declared");
  shl_reader_close(fresh);
  t_stop_peer(&c);
}

int main(int argc, char **argv) {
  if (argc == 6 && strcmp(argv[1], "writer") == 0) return run_writer(argv);
  test_pace_learns();
  test_pace_window_bounded();
  test_pace_writer_stops();
  test_pace_rate_change();
  test_pace_follows_earliest();
  test_pace_skips();
  test_pace_hostile();
  test_pace_warmup();
  test_wait_plan();
  if (!shl__futex_waitv_usable()) {
    puts("no futex_waitv: the cross-process part needs a reader that sleeps in one piece");
    return t_result();
  }
  test_paces_then_stop();
  test_idle();
  return t_result();
}
