/* How a reader sleeps and notices its writer's end (wait_for_frame in
 * src/stream.c, the liveness word in docs/format.md):
 * - an idle reader makes no wake-up while it waits (context switches of its
 *   thread, counted from /proc, not timed);
 * - a SIGKILLed writer is noticed while the reader sleeps, and the kernel
 *   marked the liveness word;
 * - a clean close is told from a death;
 * - a writer whose opening thread ended while its process lives is alive.
 * meson runs this program twice: as it is, and with SHMLANE_NO_FUTEX_WAITV=1
 * (the slice loop of kernels without futex_waitv), which it tells apart with
 * shl__futex_waitv_usable(). Writers run in children started from this
 * program (argv[1] names their part); commands come on a pipe. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "testutil_stream.h"

#define WORDS 8
#define WAIT_MS 5000
#define CHILD_LIMIT_S 30
#define IDLE_MS 2000

static bool waitv;

/* ---------------------------------------------------------------- writer children */

/* Publish frame `tag`. */
static void publish(shl_writer *w, uint64_t tag) { T_CHECK(t_publish(w, WORDS, tag, WAIT_MS) != 0); }

struct opener {
  const char *name;
  shl_writer *w;
};

/* Opens the writer and publishes frame 1, then ends: its thread is gone. */
static void *open_on_thread(void *arg) {
  struct opener *o = arg;
  o->w = t_writer_open(o->name, WORDS, 4, 4, 0);
  publish(o->w, 1);
  return NULL;
}

/* argv: self writer name cmd-fd report-fd. Opens the stream from a thread
 * that then ends, says 'W', then obeys: 'p' publish the next frame, 'c'
 * close cleanly and say 'C'; EOF: exit without closing. */
static int run_writer(char **argv) {
  struct opener o = {argv[2], NULL};
  int cmd = atoi(argv[3]), fd = atoi(argv[4]);
  pthread_t t;
  T_REQUIRE(pthread_create(&t, NULL, open_on_thread, &o) == 0);
  pthread_join(t, NULL);
  t_send_byte(fd, 'W');
  uint64_t tag = 1;
  for (int c; (c = t_read_byte(cmd, CHILD_LIMIT_S * 1000L)) > 0;) {
    if (c == 'p') publish(o.w, ++tag);
    if (c == 'c') {
      shl_writer_close(o.w);
      o.w = NULL;
      t_send_byte(fd, 'C');
    }
  }
  return t_result();
}

static struct t_peer start_writer(const char *name) {
  const char *args[] = {"test_stream_alive", "writer", name, NULL};
  return t_start_peer(args, CHILD_LIMIT_S, WAIT_MS);
}

/* ---------------------------------------------------------------- the reader side */

static long switches(void) { return t_switches_of(shl__thread_id()); }

/* The liveness word of this process's (one) reader entry. */
static uint32_t alive_word(shl_reader *r) {
  unsigned char *ext = shl_reader_segment(r)->ext;
  struct shl__stream_ctl *ctl = (struct shl__stream_ctl *)(void *)ext;
  uint64_t slots = (ctl->slots * sizeof(struct shl__slot) + 63) / 64 * 64;
  struct shl__reader *e = (struct shl__reader *)(void *)(ext + sizeof *ctl + slots);
  for (uint32_t i = 0; i < ctl->max_readers; i++)
    if (atomic_load(&e[i].owner) == (uint64_t)getpid()) return atomic_load(&e[i].alive);
  return 0;
}

/* Receive frame `tag`, as the next one. */
static void expect_frame(shl_reader *r, uint64_t tag) {
  shl_sample s;
  int rc = shl_reader_receive(r, &s, (int64_t)WAIT_MS * T_MS, 0);
  T_EXPECT_RC(rc, 0);
  if (rc != 0) return;
  T_CHECK(t_frame_bad_words(s.data, WORDS, tag) == 0);
  T_EXPECT_RC(shl_reader_release(r, &s), 0);
}

/* A fresh stream, its writer in a child, and a reader that got frame 1. */
static shl_reader *open_pair(const char *tag, char name[SHL_NAME_MAX + 1], struct t_peer *c) {
  t_fresh_name(name, tag);
  *c = start_writer(name);
  shl_reader *r = t_reader_open(name, SHL_RECV_LATEST, WAIT_MS);
  expect_frame(r, 1);
  return r;
}

/* A reader waiting IDLE_MS on a live writer that publishes nothing: with
 * futex_waitv its thread sleeps once (a few switches at most, whatever the
 * machine's load); the slice loop wakes it every 50 ms. The writer's
 * opening thread has ended: the writer must not look gone. */
static void test_idle_reader(void) {
  char name[SHL_NAME_MAX + 1];
  struct t_peer c;
  shl_reader *r = open_pair("idle", name, &c);
  shl_sample s;
  long before = switches();
  T_EXPECT_RC(shl_reader_receive(r, &s, (int64_t)IDLE_MS * T_MS, 0), -ETIMEDOUT);
  long woke = switches() - before;
  printf("idle reader, %s: %ld context switches in %d ms\n", waitv ? "futex_waitv" : "slices", woke,
         IDLE_MS);
  if (waitv) T_CHECK(woke <= 4);
  else T_CHECK(woke >= IDLE_MS / 50 / 2);
  /* Alive all along: the next frame comes, from the child's main thread. */
  t_send_byte(c.command, 'p');
  expect_frame(r, 2);
  shl_reader_close(r);
  t_stop_peer(&c);
}

/* What another thread does to the writer after a while: SIGKILL it, or send
 * it a command. */
struct later {
  struct t_peer *c;
  char command; /* 0: SIGKILL */
  long delay_ms;
  int32_t reader_tid;
  _Atomic long reader_switches; /* the reader thread's, just before */
  _Atomic long long at_ns;
};

static void *act_later(void *arg) {
  struct later *l = arg;
  t_sleep_ms(l->delay_ms);
  atomic_store(&l->reader_switches, t_switches_of(l->reader_tid));
  atomic_store(&l->at_ns, t_now_ns());
  if (l->command) t_send_byte(l->c->command, l->command);
  else kill(l->c->pid, SIGKILL);
  return NULL;
}

/* Receive while `l` acts on the writer: the result, the time from its act to
 * the result, the reader's context switches before the act. */
static int receive_while(shl_reader *r, struct later *l, long long *took_ns, long *asleep) {
  pthread_t t;
  shl_sample s;
  l->reader_tid = shl__thread_id();
  long before = switches();
  T_REQUIRE(pthread_create(&t, NULL, act_later, l) == 0);
  int rc = shl_reader_receive(r, &s, (int64_t)WAIT_MS * T_MS, 0);
  *took_ns = t_now_ns() - atomic_load(&l->at_ns);
  pthread_join(t, NULL);
  *asleep = atomic_load(&l->reader_switches) - before;
  if (rc == 0) shl_reader_release(r, &s);
  return rc;
}

/* The writer is SIGKILLed while the reader sleeps: it learns at once
 * (SHL_E_WRITER_GONE), and the kernel marked the liveness word. With
 * futex_waitv the reader slept through until then. (After the kill it may
 * look a few times: the role lock drops only once the dying process has
 * torn down its memory, which takes long under sanitizers.) */
static void test_death_noticed(void) {
  char name[SHL_NAME_MAX + 1];
  struct t_peer c;
  shl_reader *r = open_pair("death", name, &c);
  struct later l = {.c = &c, .command = 0, .delay_ms = 300};
  long long took;
  long asleep;
  T_EXPECT_RC(receive_while(r, &l, &took, &asleep), SHL_E_WRITER_GONE);
  printf("writer killed, %s: noticed after %.3f ms; %ld context switches in %ld ms asleep\n",
         waitv ? "futex_waitv" : "slices", took / 1e6, asleep, l.delay_ms);
  /* Not a timing test: a lost wake-up would wait the whole WAIT_MS. */
  T_CHECK(took < 1000 * T_MS);
  if (waitv) T_CHECK(asleep <= 3);
  T_EXPECT_SIGNAL(t_child_reap(c.pid), SIGKILL);
  T_CHECK(alive_word(r) & SHL__ALIVE_DIED);
  shl_sample s;
  T_EXPECT_RC(shl_reader_receive(r, &s, (int64_t)WAIT_MS * T_MS, 0), SHL_E_WRITER_GONE);
  shl_reader_close(r);
  close(c.command);
  close(c.report);
}

/* The writer closes cleanly while the reader sleeps, and its process lives
 * on: SHL_E_WRITER_CLOSED, never "gone"; the liveness word is 0. */
static void test_clean_close(void) {
  char name[SHL_NAME_MAX + 1];
  struct t_peer c;
  shl_reader *r = open_pair("close", name, &c);
  struct later l = {.c = &c, .command = 'c', .delay_ms = 200};
  long long took;
  long asleep;
  T_EXPECT_RC(receive_while(r, &l, &took, &asleep), SHL_E_WRITER_CLOSED);
  T_CHECK(took < 1000 * T_MS);
  if (waitv) T_CHECK(asleep <= 3);
  T_CHECK(t_read_byte(c.report, WAIT_MS) == 'C');
  T_CHECK(alive_word(r) == 0);
  shl_reader_close(r);
  t_stop_peer(&c);
}

int main(int argc, char **argv) {
  if (argc == 5 && strcmp(argv[1], "writer") == 0) return run_writer(argv);
  waitv = shl__futex_waitv_usable();
  const char *no = getenv("SHMLANE_NO_FUTEX_WAITV");
  if (no && *no && strcmp(no, "0") != 0) T_CHECK(!waitv); /* forced: the fallback */
  printf("futex_waitv %s\n", waitv ? "in use" : "not in use: slices");
  test_idle_reader();
  test_death_noticed();
  test_clean_close();
  return t_result();
}
