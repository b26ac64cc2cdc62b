/* Every reader learns of its writer's death at once, however the death
 * comes (docs/format.md, Liveness): the kernel wakes the one sleeper on each
 * reader entry's liveness word, so no other process can take a reader's
 * wake-up with it.
 * - a plain SIGKILL of the writer, with 1, 10 and 50 readers;
 * - the writer's process group killed, a reader in it;
 * - a reader thread inside the writer's process, killed with it;
 * - a peer with write access that moves a reader off its liveness word, so
 *   that the kernel's wake-up misses it: it learns within a slice.
 * Readers are fresh processes (this program started again, argv[1] names the
 * part) that sleep in receive; each reports when it got SHL_E_WRITER_GONE.
 * The check is that all of them did within DETECT_MAX_MS, far below the 10 s
 * safety net that a lost wake-up would fall back to; the figures (p50, p99,
 * worst) are printed, and measured for the record by `make bench`. */
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include "stream.h" /* a reader's entry: its liveness word */
#include "testutil_stream.h"
#include "testutil_thief.h"

#define WORDS 8
#define WAIT_MS 10000
#define CHILD_LIMIT_S 60
#define DETECT_MAX_MS 2000
#define MAX_READERS 50

/* ---------------------------------------------------------------- children */

static void *reader_thread(void *arg) {
  shl_reader *r = t_reader_open(arg, SHL_RECV_LATEST, WAIT_MS);
  shl_sample s;
  for (;;) /* frame 1, then sleeps until the process dies */
    if (shl_reader_receive(r, &s, -1, 0) == 0) shl_reader_release(r, &s);
  return NULL;
}

/* argv: self writer NAME HOW FD. HOW "group": leads a process group of its
 * own; "thread": runs a reader thread too. Publishes frame 1, says 'W', then
 * sleeps until killed. */
static int run_writer(char **argv) {
  const char *name = argv[2], *how = argv[3];
  int fd = atoi(argv[4]);
  if (strcmp(how, "group") == 0) T_REQUIRE(setpgid(0, 0) == 0);
  if (strcmp(how, "group-mode") == 0) { /* mode 0660, no frame: takes over */
    shl_layout l = t_frame_layout(WORDS);
    shl_stream_opts o = {.size = sizeof o, .slots = 4, .mode = 0660};
    shl_writer *w = NULL;
    T_REQUIRE(shl_writer_open(&w, name, &l, &o) == 0);
    t_send_byte(fd, 'W');
    for (;;) pause();
  }
  shl_writer *w = t_writer_open(name, WORDS, 4, MAX_READERS + 2, 0);
  T_CHECK(t_publish(w, WORDS, 1, WAIT_MS) == 1);
  pthread_t t;
  if (strcmp(how, "thread") == 0) T_REQUIRE(pthread_create(&t, NULL, reader_thread, (void *)name) == 0);
  t_send_byte(fd, 'W');
  for (;;) pause();
}

/* argv: self reader NAME PGID FD. PGID non-zero: joins that process group.
 * Receives frame 1, says 'R', then waits: 'G' and the CLOCK_MONOTONIC time
 * at which receive returned SHL_E_WRITER_GONE; 'X' and the code otherwise. */
static int run_reader(char **argv) {
  const char *name = argv[2];
  pid_t group = (pid_t)atol(argv[3]);
  int fd = atoi(argv[4]);
  if (group) T_REQUIRE(setpgid(0, group) == 0);
  shl_reader *r = t_reader_open(name, SHL_RECV_LATEST, WAIT_MS);
  shl_sample s;
  T_EXPECT_RC(shl_reader_receive(r, &s, WAIT_MS * T_MS, 0), 0);
  T_EXPECT_RC(shl_reader_release(r, &s), 0);
  t_send_byte(fd, 'R');
  int rc = shl_reader_receive(r, &s, (int64_t)CHILD_LIMIT_S * 1000 * T_MS, 0);
  long long when = t_now_ns();
  char msg[9] = {rc == SHL_E_WRITER_GONE ? 'G' : 'X'};
  if (rc != SHL_E_WRITER_GONE) when = rc;
  memcpy(msg + 1, &when, sizeof when);
  T_CHECK(write(fd, msg, sizeof msg) == (ssize_t)sizeof msg);
  shl_reader_close(r);
  return t_result();
}

/* ---------------------------------------------------------------- the parent */

struct proc {
  pid_t pid;
  int report;
};

static struct proc start(const char *part, const char *name, const char *arg) {
  struct proc p;
  const char *args[] = {"test_stream_death", part, name, arg, NULL};
  p.pid = t_exec_reporting(args, &p.report, CHILD_LIMIT_S);
  return p;
}

static int cmp_ll(const void *a, const void *b) {
  long long x = *(const long long *)a, y = *(const long long *)b;
  return (x > y) - (x < y);
}

/* A writer (HOW as run_writer's), n readers, the first `grouped` of them in
 * the writer's process group; kill the writer (or its group); every reader
 * not killed with it must say 'G' within DETECT_MAX_MS. */
static void one_case(const char *how, int n, int grouped) {
  char name[SHL_NAME_MAX + 1], pgid[24];
  t_fresh_name(name, "death");
  struct proc w = start("writer", name, how), r[MAX_READERS];
  T_REQUIRE(t_read_byte(w.report, WAIT_MS) == 'W');
  snprintf(pgid, sizeof pgid, "%ld", (long)w.pid);
  for (int i = 0; i < n; i++) r[i] = start("reader", name, i < grouped ? pgid : "0");
  for (int i = 0; i < n; i++) {
    T_CHECK(t_read_byte(r[i].report, WAIT_MS) == 'R');
    T_CHECK(t_wait_in_futex(r[i].pid, WAIT_MS)); /* asleep: the wake-up must reach it */
  }
  long long killed = t_now_ns();
  T_CHECK(kill(grouped ? -w.pid : w.pid, SIGKILL) == 0);
  long long took[MAX_READERS], deadline = killed + (DETECT_MAX_MS + 1000) * T_MS;
  int got = 0;
  bool told[MAX_READERS] = {false};
  for (int i = grouped; i < n; i++) {
    char msg[9];
    long left = (long)((deadline - t_now_ns()) / T_MS);
    if (t_read_full(r[i].report, msg, sizeof msg, left > 0 ? left : 0) < 0 || msg[0] != 'G') {
      fprintf(stderr, "%s, %d readers: reader %d did not learn of the death\n", how, n, i);
      t_failures++;
      continue;
    }
    long long when;
    memcpy(&when, msg + 1, sizeof when);
    took[got++] = when - killed;
    told[i] = true;
  }
  T_EXPECT_SIGNAL(t_child_reap(w.pid), SIGKILL);
  for (int i = 0; i < n; i++) {
    if (i >= grouped && !told[i]) kill(r[i].pid, SIGKILL); /* failed already */
    int status = t_child_reap(r[i].pid);
    if (i < grouped) T_EXPECT_SIGNAL(status, SIGKILL);
    else if (told[i]) T_EXPECT_EXIT(status, 0);
    close(r[i].report);
  }
  close(w.report);
  if (!got) return;
  qsort(took, (size_t)got, sizeof took[0], cmp_ll);
  double p50 = (double)took[got / 2] / 1e6, p99 = (double)took[(got * 99) / 100] / 1e6,
         worst = (double)took[got - 1] / 1e6;
  printf("writer killed (%s), %d readers: WRITER_GONE after p50 %.2f ms, p99 %.2f ms, worst %.2f ms\n",
         how, got, p50, p99, worst);
  if (worst >= DETECT_MAX_MS) {
    fprintf(stderr, "%s, %d readers: the last learnt of the death after %.0f ms\n", how, got, worst);
    t_failures++;
  }
}

/* A reader of a stream of mode 0660 in a thread of this process, whose
 * writer dies while a peer with write access moves it off its liveness word
 * (FUTEX_CMP_REQUEUE), where the kernel's death wake-up no longer reaches it:
 * each of five writers in turn (each takes the stream over). */
struct robbed {
  struct t_receiver rx; /* first: t_thief_rounds' sleeper */
  const char *name;
  struct proc w;
};

static void start_writer(struct robbed *v) {
  v->w = start("writer", v->name, "group-mode");
  T_REQUIRE(t_read_byte(v->w.report, WAIT_MS) == 'W');
}

static void kill_writer(void *arg) { T_CHECK(kill(((struct robbed *)arg)->w.pid, SIGKILL) == 0); }

static void writer_gone(void *arg) {
  struct robbed *v = arg;
  T_EXPECT_RC(v->rx.rc, SHL_E_WRITER_GONE);
  T_EXPECT_SIGNAL(t_child_reap(v->w.pid), SIGKILL);
  close(v->w.report);
  start_writer(v); /* the next round's */
}

/* The reader learns of each death within a slice (20 ms) of the peer's
 * theft, not at its time-out (1 s) nor at its 10 s safety check. */
static void robbed_case(void) {
  char name[SHL_NAME_MAX + 1];
  t_fresh_name(name, "deathrob");
  struct robbed v = {.name = name};
  start_writer(&v);
  shl_reader *r = v.rx.r = t_reader_open(name, SHL_RECV_LATEST, WAIT_MS);
  _Atomic uint32_t *alive = &r->cur->entry->alive;
  struct t_thief *t = t_thief_start(name, (size_t)((char *)alive - (char *)r->cur->s.seg->hdr), 1);
  T_REQUIRE(t);
  T_CHECK(t_thief_rounds(t, alive, t_receiver_main, kill_writer, writer_gone, &v) <= 2);
  T_CHECK(t_thief_stop(t));
  kill_writer(&v);
  T_EXPECT_SIGNAL(t_child_reap(v.w.pid), SIGKILL);
  close(v.w.report);
  shl_reader_close(r);
}

int main(int argc, char **argv) {
  if (argc == 5 && strcmp(argv[1], "writer") == 0) return run_writer(argv);
  if (argc == 5 && strcmp(argv[1], "reader") == 0) return run_reader(argv);
  one_case("plain", 1, 0);
  one_case("plain", 10, 0);
  one_case("plain", MAX_READERS, 0);
  one_case("group", 10, 1); /* a reader killed with the writer's group */
  one_case("thread", 10, 0); /* a reader thread of the writer's own process */
  robbed_case();
  return t_result();
}
