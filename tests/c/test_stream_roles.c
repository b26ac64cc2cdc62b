/* Stream roles: liveness comes from role locks, never from PIDs.
 * - Reader entries whose owner word is garbage (pid 1, a value no pid can
 *   be) but whose lock is free are reclaimed; an entry claimed before the
 *   table's high-water mark went up is not lost for good.
 * - A process whose main thread called pthread_exit() while another thread
 *   runs keeps its roles: its pins stay, its writer role stays.
 * - A forked child's inherited handles return SHL_E_FORKED and closing them
 *   changes nothing shared.
 * - A writer killed in its futex wait leaves writer_waiting set: the next
 *   writer clears it.
 * - A new `all` reader of a blocking stream never starts with a loss, even
 *   when the writer laps the ring while it registers.
 * - A reader that found a frame's slot, but was overtaken before it pinned
 *   it, never gets the slot's new contents under the old frame's number.
 * - A stream another user created first is never taken over, and read only
 *   when the reader names that owner.
 * - The invariants one process can check are asserted in test builds: a
 *   reader whose counts of held samples disagree (as a bug would leave them)
 *   aborts at its next release.
 * White-box: stream_setup.c and stream.c are compiled into this program,
 * with a hook that runs code of the test at the points where a race would
 * strike. */
#include <grp.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>

#include "testutil_stream.h"

static void (*test_hook)(const char *point);
#define SHL__TEST_POINT(name) (test_hook ? test_hook(#name) : (void)0)
#include "stream_setup.c"
#include "stream_readers.c"
#include "stream.c"

#define WORDS 64
#define SLOTS 4
#define WAIT_MS 5000
#define CHILD_LIMIT_S 60

static struct stream *writer_stream(shl_writer *w) { return &w->s; }

static void publish_tag(shl_writer *w, uint64_t tag) {
  T_CHECK(t_publish(w, WORDS, tag, 0) != 0);
}

/* ---------------------------------------------------------------- planted entries */

/* An entry that says it pins every slot, owned by pid 1 or by garbage, with
 * no lock held: the writer reclaims it as soon as it needs a slot. */
static void test_planted_owner(void) {
  static const uint64_t owners[] = {1, 0xdeadbeefdeadbeefull, (uint64_t)1 << 32};
  char name[SHL_NAME_MAX + 1];
  t_fresh_name(name, "rplant");
  shl_writer *w = t_writer_open(name, WORDS, SLOTS, 4, 0);
  struct stream *s = writer_stream(w);
  publish_tag(w, 1);
  for (size_t i = 0; i < sizeof owners / sizeof owners[0]; i++) {
    struct shl__reader *e = &s->reader[0];
    atomic_store(&e->pinned, (1u << SLOTS) - 1);
    atomic_store(&e->owner, owners[i]);
    atomic_store(&s->ctl->reader_hwm, 1);
    void *frame;
    int slot = shl_writer_loan(w, &frame, 0);
    T_CHECK(slot >= 0);
    if (slot >= 0) T_EXPECT_RC(shl_writer_discard(w), 0);
    T_CHECK(atomic_load(&e->owner) == 0 && atomic_load(&e->pinned) == 0);
    T_CHECK(t_stream_info(shl_writer_segment(w)).readers_alive == 0);
  }
  shl_writer_close(w);
}

/* A reader killed after it took entry 0 but before the high-water mark went
 * up: with max_readers 1, the next reader still finds room. */
static void test_entry_above_hwm(void) {
  char name[SHL_NAME_MAX + 1];
  t_fresh_name(name, "rhwm");
  shl_writer *w = t_writer_open(name, WORDS, SLOTS, 1, 0);
  struct stream *s = writer_stream(w);
  atomic_store(&s->reader[0].owner, 12345);
  atomic_store(&s->reader[0].pinned, 1);
  atomic_store(&s->ctl->reader_hwm, 0);
  shl_reader *r = NULL;
  T_EXPECT_RC(shl_reader_open(&r, name, SHL_RECV_LATEST, 0), 0);
  T_CHECK(t_stream_info(shl_writer_segment(w)).readers_alive == 1);
  T_CHECK(atomic_load(&s->ctl->reader_hwm) == 1 && atomic_load(&s->reader[0].pinned) == 0);
  shl_reader_close(r);
  shl_writer_close(w);
}

/* ---------------------------------------------------------------- main thread gone */

static void *sleep_forever(void *arg) {
  (void)arg;
  for (;;) pause();
  return NULL;
}

/* Keep running on another thread; the main thread exits: /proc shows the
 * process as a zombie ('Z') while it lives on. */
static void exit_main_thread(void) {
  pthread_t t;
  T_REQUIRE(pthread_create(&t, NULL, sleep_forever, NULL) == 0);
  pthread_exit(NULL);
}

static int wait_for_zombie_main(pid_t pid) {
  char path[64], buf[512];
  snprintf(path, sizeof path, "/proc/%ld/stat", (long)pid);
  for (long long end = t_now_ns() + WAIT_MS * T_MS; t_now_ns() < end; t_sleep_ms(5)) {
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    if (p && p[1] == ' ' && p[2] == 'Z') return 1;
  }
  return 0;
}

/* A reader pins every slot but the newest, then its main thread exits: its
 * pins hold until the process is killed. */
static void test_reader_main_thread_exits(void) {
  char name[SHL_NAME_MAX + 1];
  t_fresh_name(name, "rzread");
  shl_writer *w = t_writer_open(name, WORDS, SLOTS, 4, 0);
  int go[2], said[2];
  T_REQUIRE(pipe(go) == 0 && pipe(said) == 0);
  fflush(NULL);
  pid_t pid = fork();
  if (pid == 0) {
    alarm(CHILD_LIMIT_S);
    shl_reader *r = t_reader_open_pins(name, SHL_RECV_ALL, WAIT_MS, SLOTS - 1);
    t_send_byte(said[1], 'R');
    shl_sample s;
    for (int i = 0; i < SLOTS - 1; i++)
      T_EXPECT_RC(shl_reader_receive(r, &s, WAIT_MS * T_MS, 0), 0);
    t_send_byte(said[1], t_failures ? 'B' : 'H');
    exit_main_thread();
  }
  T_REQUIRE(t_read_byte(said[0], WAIT_MS) == 'R');
  for (uint64_t tag = 1; tag < SLOTS; tag++) publish_tag(w, tag);
  T_REQUIRE(t_read_byte(said[0], WAIT_MS) == 'H');
  T_CHECK(wait_for_zombie_main(pid));
  publish_tag(w, SLOTS); /* the newest: every other slot is pinned now */
  void *frame;
  T_EXPECT_RC(shl_writer_loan(w, &frame, 100 * T_MS), SHL_E_SLOTS_PINNED);
  int32_t pids[4];
  T_CHECK(shl_writer_pinned_by(w, pids, 4) == 1 && pids[0] == pid);
  T_CHECK(t_stream_info(shl_writer_segment(w)).readers_alive == 1);
  t_kill_child(pid);
  T_CHECK(shl_writer_loan(w, &frame, WAIT_MS * T_MS) >= 0); /* reclaimed once it is dead */
  shl_writer_close(w);
  close(go[0]), close(go[1]), close(said[0]), close(said[1]);
}

/* A writer publishes, then its main thread exits: it is still the writer. */
static void test_writer_main_thread_exits(void) {
  char name[SHL_NAME_MAX + 1];
  t_fresh_name(name, "rzwrite");
  shl_writer_close(t_writer_open(name, WORDS, SLOTS, 4, 0));
  shl_reader *r = t_reader_open(name, SHL_RECV_ALL, 0);
  int said[2];
  T_REQUIRE(pipe(said) == 0);
  fflush(NULL);
  pid_t pid = fork();
  if (pid == 0) {
    alarm(CHILD_LIMIT_S);
    shl_writer *w = t_writer_open(name, WORDS, 0, 0, 0);
    publish_tag(w, 1);
    t_send_byte(said[1], t_failures ? 'B' : 'W');
    exit_main_thread();
  }
  T_REQUIRE(t_read_byte(said[0], WAIT_MS) == 'W');
  T_CHECK(wait_for_zombie_main(pid));
  shl_sample s;
  T_EXPECT_RC(shl_reader_receive(r, &s, WAIT_MS * T_MS, 0), 0);
  T_EXPECT_RC(shl_reader_release(r, &s), 0);
  T_EXPECT_RC(shl_reader_receive(r, &s, 300 * T_MS, 0), -ETIMEDOUT); /* not WRITER_GONE */
  shl_writer *second = NULL;
  shl_layout l = t_frame_layout(WORDS);
  T_EXPECT_RC(shl_writer_open(&second, name, &l, NULL), -EBUSY);
  shl_stream_info info = t_stream_info(shl_reader_segment(r));
  T_CHECK(info.writer_alive == 1 && info.writer_pid == pid);
  t_kill_child(pid);
  T_EXPECT_RC(shl_reader_receive(r, &s, WAIT_MS * T_MS, 0), SHL_E_WRITER_GONE);
  shl_reader_close(r);
  close(said[0]), close(said[1]);
}

/* ---------------------------------------------------------------- fork */

struct forked {
  shl_writer *w;
  shl_reader *r;
  shl_sample s;
};

static int child_of_fork(void *arg) {
  struct forked *f = arg;
  void *frame;
  shl_sample s;
  int32_t pids[1];
  T_EXPECT_RC(shl_reader_release(f->r, &f->s), SHL_E_FORKED);
  T_EXPECT_RC(shl_reader_receive(f->r, &s, 0, 0), SHL_E_FORKED);
  T_EXPECT_RC(shl_writer_loan(f->w, &frame, 0), SHL_E_FORKED);
  T_EXPECT_RC(shl_writer_publish(f->w, NULL), SHL_E_FORKED);
  T_EXPECT_RC(shl_writer_discard(f->w), SHL_E_FORKED);
  T_EXPECT_RC(shl_writer_pinned_by(f->w, pids, 1), SHL_E_FORKED);
  shl_reader_close(f->r);
  shl_writer_close(f->w);
  return t_result();
}

/* The parent's pinned frame stays put and its writer role stays after a
 * child closes the handles it inherited. */
static void test_fork(void) {
  char name[SHL_NAME_MAX + 1];
  t_fresh_name(name, "rfork");
  struct forked f = {t_writer_open(name, WORDS, SLOTS, 4, 0), NULL, {0}};
  f.r = t_reader_open(name, SHL_RECV_LATEST, 0);
  shl_reader *other = t_reader_open(name, SHL_RECV_ALL, 0);
  publish_tag(f.w, 1);
  T_EXPECT_RC(shl_reader_receive(f.r, &f.s, 0, 0), 0);
  int rc;
  T_EXPECT_EXIT(t_child_run(child_of_fork, &f, CHILD_LIMIT_S, &rc), 0);
  T_CHECK(rc == 0);
  for (uint64_t tag = 2; tag <= 20; tag++) publish_tag(f.w, tag);
  T_CHECK(t_frame_bad_words(f.s.data, WORDS, 1) == 0);
  shl_stream_info info = t_stream_info(shl_writer_segment(f.w));
  T_CHECK(info.readers_alive == 2 && info.writer_alive == 1 && info.writer_pid == getpid());
  shl_sample s;
  while ((rc = shl_reader_receive(other, &s, 0, 0)) == 0)
    T_EXPECT_RC(shl_reader_release(other, &s), 0);
  T_EXPECT_RC(rc, -ETIMEDOUT);
  T_EXPECT_RC(shl_reader_receive(other, &s, 200 * T_MS, 0), -ETIMEDOUT); /* the writer lives */
  T_EXPECT_RC(shl_reader_release(f.r, &f.s), 0);
  shl_reader_close(other);
  shl_reader_close(f.r);
  shl_writer_close(f.w);
}

/* ---------------------------------------------------------------- writer_waiting */

static int loan_forever(void *name) {
  shl_writer *w = t_writer_open(name, WORDS, 0, 0, 0);
  void *frame;
  shl_writer_loan(w, &frame, -1); /* every slot is pinned: sleeps until killed */
  return 1;
}

/* A writer killed while it sleeps for a slot leaves writer_waiting set; the
 * next writer clears it, so unpins stop making needless wake-ups. */
static void test_killed_waiting_writer(void) {
  char name[SHL_NAME_MAX + 1];
  t_fresh_name(name, "rwait");
  shl_writer *w = t_writer_open(name, WORDS, SLOTS, 4, 0);
  shl_reader *r = t_reader_open_pins(name, SHL_RECV_ALL, 0, SLOTS - 1);
  shl_sample s[SLOTS - 1];
  for (uint64_t tag = 1; tag < SLOTS; tag++) {
    publish_tag(w, tag);
    T_EXPECT_RC(shl_reader_receive(r, &s[tag - 1], 0, 0), 0);
  }
  publish_tag(w, SLOTS);
  shl_writer_close(w);
  shl_segment *seg = NULL;
  T_REQUIRE(shl_open(&seg, name, 0, 0) == 0);
  struct shl__stream_ctl *ctl = (struct shl__stream_ctl *)(void *)seg->ext;
  struct t_child c;
  T_REQUIRE(t_child_start(&c, loan_forever, name, CHILD_LIMIT_S) == 0);
  T_CHECK(t_wait_in_futex(c.pid, WAIT_MS));
  for (long long end = t_now_ns() + WAIT_MS * T_MS;
       !atomic_load(&ctl->writer_waiting) && t_now_ns() < end;)
    t_sleep_ms(1);
  t_kill_child(c.pid);
  close(c.fd);
  T_CHECK(atomic_load(&ctl->writer_waiting) == 1); /* what the dead writer left */
  w = t_writer_open(name, WORDS, 0, 0, 0);
  T_CHECK(atomic_load(&ctl->writer_waiting) == 0);
  shl_close(seg);
  for (int i = 0; i < SLOTS - 1; i++) T_EXPECT_RC(shl_reader_release(r, &s[i]), 0);
  shl_reader_close(r);
  shl_writer_close(w);
}

/* ---------------------------------------------------------------- all reader start */

static shl_writer *lapping_writer;

/* While a new reader registers, between its look at the newest frame and
 * the store of where it starts, the writer laps the ring. */
static void lap_the_ring(const char *point) {
  if (strcmp(point, "start_at_head") != 0) return;
  test_hook = NULL;
  for (int i = 0; i < SLOTS; i++) publish_tag(lapping_writer, shl_writer_next_seq(lapping_writer));
}

static void test_all_reader_starts_without_loss(void) {
  char name[SHL_NAME_MAX + 1];
  t_fresh_name(name, "rstart");
  shl_writer *w = t_writer_open(name, WORDS, SLOTS, 4, SHL_STREAM_BLOCK);
  publish_tag(w, 1);
  publish_tag(w, 2);
  lapping_writer = w;
  test_hook = lap_the_ring;
  shl_reader *r = t_reader_open(name, SHL_RECV_ALL, 0);
  T_CHECK(test_hook == NULL); /* the hook ran */
  shl_sample s;
  T_EXPECT_RC(shl_reader_receive(r, &s, 0, 0), 0);
  T_CHECK(s.lost == 0 && s.seq == shl_writer_next_seq(w) - 1);
  T_EXPECT_RC(shl_reader_release(r, &s), 0);
  shl_reader_close(r);
  shl_writer_close(w);
}

/* ---------------------------------------------------------------- pin, then re-check */

/* Between a reader's look at a slot and its pin, the writer laps the ring. */
static void lap_before_pin(const char *point) {
  if (strcmp(point, "pin") != 0) return;
  test_hook = NULL;
  for (int i = 0; i < 2 * SLOTS; i++)
    publish_tag(lapping_writer, shl_writer_next_seq(lapping_writer));
}

static void test_overtaken_before_pin(void) {
  char name[SHL_NAME_MAX + 1];
  t_fresh_name(name, "rrecheck");
  shl_writer *w = t_writer_open(name, WORDS, SLOTS, 4, 0);
  for (uint32_t mode = SHL_RECV_LATEST; mode <= SHL_RECV_ALL; mode++) {
    shl_reader *r = t_reader_open(name, mode, 0);
    publish_tag(w, shl_writer_next_seq(w));
    lapping_writer = w;
    test_hook = lap_before_pin;
    shl_sample s;
    T_EXPECT_RC(shl_reader_receive(r, &s, 0, 0), 0);
    T_CHECK(test_hook == NULL); /* the hook ran */
    /* A later frame (the newest, or the oldest left), each word its seq. */
    T_CHECK(s.seq > 1 && t_frame_bad_words(s.data, WORDS, s.seq) == 0);
    T_EXPECT_RC(shl_reader_release(r, &s), 0);
    shl_reader_close(r);
  }
  shl_writer_close(w);
}

/* ---------------------------------------------------------------- another user's stream */

#define NOBODY 65534

static int squat_as_nobody(void *name) {
  if (setgroups(0, NULL) < 0 || setgid(NOBODY) < 0 || setuid(NOBODY) < 0) return 2;
  shl_layout l = t_frame_layout(WORDS);
  shl_stream_opts o = {.size = sizeof(shl_stream_opts), .slots = SLOTS, .mode = 0666};
  shl_writer *w = NULL;
  int rc = shl_writer_open(&w, name, &l, &o);
  if (rc == 0) publish_tag(w, 1);
  shl_writer_close(w);
  return rc == 0 ? t_result() : 3;
}

/* As nobody: take over a stream root created for everyone (mode 0666). */
static int take_over_as_nobody(void *name) {
  if (setgroups(0, NULL) < 0 || setgid(NOBODY) < 0 || setuid(NOBODY) < 0) return 2;
  shl_layout l = t_frame_layout(WORDS);
  shl_writer *w = NULL;
  int rc = shl_writer_open(&w, name, &l, NULL);
  shl_writer_close(w);
  return rc;
}

static void test_squatter(void) {
  if (geteuid() != 0) return; /* needs root to be another user */
  char name[SHL_NAME_MAX + 1];
  t_fresh_name(name, "rsquat");
  int rc;
  T_EXPECT_EXIT(t_child_run(squat_as_nobody, name, CHILD_LIMIT_S, &rc), 0);
  T_REQUIRE(rc == 0);
  shl_layout l = t_frame_layout(WORDS);
  shl_writer *w = NULL;
  T_EXPECT_RC(shl_writer_open(&w, name, &l, NULL), SHL_E_FOREIGN_OWNER);
  T_CHECK(w == NULL);
  shl_reader *r = NULL;
  T_EXPECT_RC(shl_reader_open(&r, name, SHL_RECV_ALL, 0), SHL_E_FOREIGN_OWNER);
  shl_reader_opts o = SHL_READER_OPTS_INIT;
  o.policy = SHL_RECV_LATEST;
  o.timeout_ns = 0;
  o.owner = SHL_OWNER_UID;
  o.owner_uid = NOBODY;
  o.flags = SHL_READER_KEEP_LAST; /* the squatter's writer is gone: its last frame */
  T_EXPECT_RC(shl_reader_open_ex(&r, name, &o), 0); /* an explicit choice */
  shl_sample s;
  if (r) {
    T_EXPECT_RC(shl_reader_receive(r, &s, 0, 0), 0);
    T_CHECK(t_frame_bad_words(s.data, WORDS, 1) == 0);
    T_EXPECT_RC(shl_reader_release(r, &s), 0);
    shl_reader_close(r);
  }

  /* Not even root's stream is adopted by another user's writer. */
  t_fresh_name(name, "rroot");
  shl_stream_opts everyone = {.size = sizeof(shl_stream_opts), .slots = SLOTS, .mode = 0666};
  T_EXPECT_RC(shl_writer_open(&w, name, &l, &everyone), 0);
  shl_writer_close(w);
  T_EXPECT_EXIT(t_child_run(take_over_as_nobody, name, CHILD_LIMIT_S, &rc), 0);
  T_EXPECT_RC(rc, SHL_E_FOREIGN_OWNER);
}

/* ---------------------------------------------------------------- asserts */

#ifndef NDEBUG
static int child_broken_counts(void *arg) {
  const char *name = arg;
  shl_writer *w = t_writer_open(name, WORDS, SLOTS, 4, 0);
  shl_reader *r = t_reader_open(name, SHL_RECV_LATEST, WAIT_MS);
  publish_tag(w, 1);
  shl_sample s;
  if (shl_reader_receive(r, &s, WAIT_MS * T_MS, 0) != 0) return 1;
  r->pinned++; /* one sample more than its rings hold */
  int null = open("/dev/null", O_WRONLY);
  if (null >= 0) dup2(null, STDERR_FILENO); /* the assertion's message is expected */
  shl_reader_release(r, &s);
  return 2; /* not aborted */
}
#endif

static void test_asserts_on(void) {
#ifdef NDEBUG
  puts("asserts: off in this build (NDEBUG), not checked");
#else
  char name[SHL_NAME_MAX + 1];
  t_fresh_name(name, "rassert");
  int rc;
  T_EXPECT_SIGNAL(t_child_run(child_broken_counts, name, CHILD_LIMIT_S, &rc), SIGABRT);
#endif
}

int main(void) {
  test_planted_owner();
  test_entry_above_hwm();
  test_reader_main_thread_exits();
  test_writer_main_thread_exits();
  test_fork();
  test_killed_waiting_writer();
  test_all_reader_starts_without_loss();
  test_overtaken_before_pin();
  test_squatter();
  test_asserts_on();
  return t_result();
}
