/* Permissions: the creator's mode decides who may open what. Root creates
 * segments; children drop to nobody (uid and gid 65534, no supplementary
 * groups) and try to open, wait and unlink. Needs root: skipped otherwise. */
#include <grp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <linux/futex.h>

#include "internal.h"
#include "testutil_stream.h"

#define NOBODY 65534
#define WAIT_NS 1000000000LL
#define MARK 0xC0FFEEu
/* Child results that are not library codes. */
#define BAD_DATA 1
#define DROP_FAILED 2

static const shl_layout layout = {.format = "<I", .ndim = 1, .shape = {64}};

enum action { OPEN, WAIT, UNLINK, REPLACE };

struct attempt {
  const char *name;
  uint32_t flags;
  enum action action;
};

/* In a child, as nobody: open (and read), open and wait for one notify,
 * unlink, or create replacing. Returns the library's code, BAD_DATA or DROP_FAILED. */
static int drop_to_nobody(void) {
  return setgroups(0, NULL) < 0 || setgid(NOBODY) < 0 || setuid(NOBODY) < 0 ? -1 : 0;
}

static int as_nobody(void *p) {
  const struct attempt *a = p;
  if (drop_to_nobody() < 0) return DROP_FAILED;
  if (a->action == UNLINK) return shl_unlink(a->name);
  shl_segment *seg = NULL;
  if (a->action == REPLACE) {
    shl_create_opts opts = {.size = sizeof opts, .flags = SHL_CREATE_REPLACE};
    int rc = shl_create(&seg, a->name, &layout, &opts);
    shl_close(seg);
    return rc;
  }
  int rc = shl_open(&seg, a->name, a->flags, WAIT_NS);
  if (rc < 0) return rc;
  if (((const volatile uint32_t *)shl_payload(seg))[0] != MARK) rc = BAD_DATA;
  if (rc == 0 && a->action == WAIT) {
    uint64_t since = shl_changes(seg), seen = 0;
    rc = shl_wait(seg, since, 5 * WAIT_NS, &seen);
    if (rc == 0 && seen != since + 1) rc = BAD_DATA;
  }
  shl_close(seg);
  return rc;
}

/* Run one attempt as nobody; the child must exit normally. */
static int attempt(const char *name, uint32_t flags, enum action action) {
  struct attempt a = {name, flags, action};
  int rc;
  T_EXPECT_EXIT(t_child_run(as_nobody, &a, 5, &rc), 0);
  return rc;
}

/* Times a process has gone to sleep (voluntary context switches), or -1. */
static long sleeps_of(pid_t pid) {
  char path[64], line[128];
  long n = -1;
  snprintf(path, sizeof path, "/proc/%ld/status", (long)pid);
  FILE *f = fopen(path, "r");
  if (!f) return -1;
  while (fgets(line, sizeof line, f))
    if (sscanf(line, "voluntary_ctxt_switches: %ld", &n) == 1) break;
  fclose(f);
  return n;
}

/* A waiter as nobody on a read-only handle, woken by root's notify once it
 * sleeps. It cannot register as a waiter, so notify must wake it anyway.
 * Returns the child's result; *woken_ns is how long after the notify it
 * ended. With `fresh_sleep`, the notify comes just after the waiter began a
 * sleep, so a notify that did not wake it would leave it asleep for the
 * rest of its slice (20 ms). */
static int wait_woken(const char *name, shl_segment *notifier, int fresh_sleep,
                      long long *woken_ns) {
  struct attempt a = {name, SHL_OPEN_READONLY, WAIT};
  struct t_child child;
  int rc;
  T_REQUIRE(t_child_start(&child, as_nobody, &a, 10) == 0);
  T_CHECK(t_wait_in_futex(child.pid, 3000));
  for (long n = sleeps_of(child.pid), i = 0; fresh_sleep && i < 1000 && sleeps_of(child.pid) == n;
       i++)
    usleep(100);
  long long notified = t_now_ns();
  T_EXPECT_RC(shl_notify(notifier, NULL), 0);
  T_EXPECT_EXIT(t_child_finish(&child, &rc), 0);
  /* The waiter's own timeout (5 * WAIT_NS) also ends its wait with the new
   * version in hand: only a wake well before it shows that notify woke it. */
  *woken_ns = t_now_ns() - notified;
  if (*woken_ns > 2 * WAIT_NS) {
    fprintf(stderr, "waiter returned %.2f s after the notify: not woken by it\n",
            (double)*woken_ns / 1e9);
    t_failures++;
  }
  return rc;
}

/* Root's segment of this mode and group, first element MARK. */
static shl_segment *make(const char *name, uint32_t mode, gid_t group) {
  shl_segment *seg = NULL;
  shl_create_opts opts = {.size = sizeof(shl_create_opts), .mode = mode};
  char path[T_PATH_MAX];
  t_unlink_at_exit(name);
  T_EXPECT_RC(shl_create(&seg, name, &layout, &opts), 0);
  T_REQUIRE(seg);
  ((uint32_t *)shl_payload(seg))[0] = MARK;
  T_REQUIRE(chown(t_shm_path(name, path), (uid_t)-1, group) == 0);
  return seg;
}

static uint32_t mode_of(const char *name) {
  char path[T_PATH_MAX];
  struct stat st;
  T_REQUIRE(stat(t_shm_path(name, path), &st) == 0);
  return (uint32_t)(st.st_mode & 07777);
}

static void test_default_mode(void) {
  const char *name = t_name("pdef");
  shl_segment *seg = NULL;
  shl_info info = SHL_INFO_INIT;
  t_unlink_at_exit(name);
  T_EXPECT_RC(shl_create(&seg, name, &layout, NULL), 0);
  T_REQUIRE(seg);
  T_CHECK(mode_of(name) == 0600);
  T_EXPECT_RC(shl_get_info(seg, &info), 0);
  T_CHECK(info.mode == 0600 && info.uid == 0);
  shl_close(seg);
  T_EXPECT_RC(shl_unlink(name), 0);
}

static void test_modes(void) {
  static const struct {
    const char *what;
    uint32_t mode;
    gid_t group;
    int readonly, readwrite; /* what nobody's opens return */
  } cases[] = {
      {"0600", 0600, 0, -EACCES, -EACCES},
      {"0644", 0644, 0, 0, -EACCES},
      {"0640, nobody's group", 0640, NOBODY, 0, -EACCES},
      {"0640, another group", 0640, 0, -EACCES, -EACCES},
      {"0660, nobody's group", 0660, NOBODY, 0, 0},
  };
  const char *name = t_name("pmode");
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    shl_segment *seg = make(name, cases[i].mode, cases[i].group);
    shl_info info = SHL_INFO_INIT;
    T_EXPECT_RC(shl_get_info(seg, &info), 0);
    T_CHECK(info.mode == cases[i].mode && mode_of(name) == cases[i].mode);
    int ro = attempt(name, SHL_OPEN_READONLY, OPEN), rw = attempt(name, 0, OPEN);
    if (ro != cases[i].readonly || rw != cases[i].readwrite) {
      fprintf(stderr, "%s: nobody's read-only open %s, read-write open %s; want %s, %s\n",
              cases[i].what, shl_err_name(ro), shl_err_name(rw), shl_err_name(cases[i].readonly),
              shl_err_name(cases[i].readwrite));
      t_failures++;
    }
    /* /dev/shm is sticky: nobody cannot remove root's segment, whatever its
     * mode (EPERM from unlink(2), reported as EACCES as shm_unlink does). */
    T_EXPECT_RC(attempt(name, 0, UNLINK), -EACCES);
    shl_close(seg);
    T_EXPECT_RC(shl_unlink(name), 0);
  }
}

static void test_wait_as_nobody(void) {
  const char *name = t_name("pwait");
  /* Created readable-but-not-writable by some class: notify always wakes. */
  shl_segment *seg = make(name, 0644, 0);
  /* Woken by the notify itself, not at the end of a slice: timed, so
   * judged by the majority of five rounds. */
  int slow = 0;
  long long woken_ns;
  for (int round = 0; round < 5; round++) {
    T_EXPECT_RC(wait_woken(name, seg, 1, &woken_ns), 0);
    if (woken_ns >= 10000000) {
      fprintf(stderr, "round %d: the waiter ended %lld ms after the notify\n", round,
              woken_ns / 1000000);
      slow++;
    }
  }
  T_CHECK(slow <= 2);
  shl_close(seg);
  T_EXPECT_RC(shl_unlink(name), 0);

  /* Opened up only after creation, so the segment never learnt that a
   * waiter might be unable to register: the wait must still end. */
  char path[T_PATH_MAX];
  seg = make(name, 0600, 0);
  T_REQUIRE(chmod(t_shm_path(name, path), 0644) == 0);
  T_EXPECT_RC(wait_woken(name, seg, 0, &woken_ns), 0);
  shl_close(seg);
  T_EXPECT_RC(shl_unlink(name), 0);
}

/* A FIFO squatting on the name: opening it for reading would block until
 * some writer appears, so an open that falls back to read-only access must
 * not block there, and must still end within its timeout. */
static void test_fifo_squatter(void) {
  const char *name = t_name("pfifo");
  char path[T_PATH_MAX];
  t_unlink_at_exit(name);
  T_REQUIRE(mkfifo(t_shm_path(name, path), 0644) == 0 && chmod(path, 0644) == 0); /* umask */
  T_EXPECT_RC(attempt(name, SHL_OPEN_READONLY, OPEN), SHL_E_NOT_SHMLANE);
  T_EXPECT_RC(attempt(name, 0, OPEN), -EACCES);
  T_CHECK(unlink(path) == 0);
}

/* ---------------------------------------------------------------- squatting */

struct as_user {
  uid_t uid;
  gid_t gid, group; /* group: one supplementary group, 0 none */
  const char *name;
  uint32_t create_mode; /* create (and mark) with this mode; 0: open instead */
  uint32_t owner, owner_uid;
};

/* In a child as another user: create a segment, or open one under an owner
 * policy (and read it). The library's code, BAD_DATA or DROP_FAILED. */
static int as_user(void *p) {
  const struct as_user *a = p;
  if (setgroups(a->group ? 1 : 0, &a->group) < 0 || setgid(a->gid) < 0 || setuid(a->uid) < 0)
    return DROP_FAILED;
  shl_segment *seg = NULL;
  int rc;
  if (a->create_mode) {
    shl_create_opts copts = {.size = sizeof(shl_create_opts), .mode = a->create_mode};
    rc = shl_create(&seg, a->name, &layout, &copts);
    if (rc == 0) ((uint32_t *)shl_payload(seg))[0] = MARK;
  } else {
    shl_open_opts opts = SHL_OPEN_OPTS_INIT;
    opts.owner = a->owner;
    opts.owner_uid = a->owner_uid;
    rc = shl_open_ex(&seg, a->name, &opts);
    if (rc == 0 && ((const volatile uint32_t *)shl_payload(seg))[0] != MARK) rc = BAD_DATA;
  }
  shl_close(seg);
  return rc;
}

static int run_as(struct as_user a) {
  int rc;
  T_EXPECT_EXIT(t_child_run(as_user, &a, 5, &rc), 0);
  return rc;
}

static int open_owned(const char *name, uint32_t owner, uint32_t owner_uid) {
  shl_open_opts opts = SHL_OPEN_OPTS_INIT;
  opts.owner = owner;
  opts.owner_uid = owner_uid;
  shl_segment *seg = NULL;
  int rc = shl_open_ex(&seg, name, &opts);
  if (rc == 0 && ((const volatile uint32_t *)shl_payload(seg))[0] != MARK) rc = BAD_DATA;
  shl_close(seg);
  return rc;
}

/* nobody takes a name first, mode 0666. Root (us) opens it only when it
 * names the owner or accepts any; creating never adopts it, so nobody reads
 * nothing we write there. */
static void test_squatter(void) {
  const char *name = t_name("psquat");
  t_unlink_at_exit(name);
  T_EXPECT_RC(run_as((struct as_user){NOBODY, NOBODY, 0, name, 0666, 0, 0}), 0);
  T_EXPECT_RC(open_owned(name, SHL_OWNER_SELF, 0), SHL_E_FOREIGN_OWNER);
  T_EXPECT_RC(open_owned(name, SHL_OWNER_CREATOR, 0), SHL_E_FOREIGN_OWNER);
  T_EXPECT_RC(open_owned(name, SHL_OWNER_UID, 1234), SHL_E_FOREIGN_OWNER);
  T_EXPECT_RC(open_owned(name, SHL_OWNER_UID, NOBODY), 0);
  T_EXPECT_RC(open_owned(name, SHL_OWNER_ANY, 0), 0);
  shl_segment *seg = NULL;
  T_EXPECT_RC(shl_open(&seg, name, SHL_OPEN_READONLY, WAIT_NS), SHL_E_FOREIGN_OWNER);
  T_EXPECT_RC(shl_create(&seg, name, &layout, NULL), -EEXIST);
  T_EXPECT_RC(shl_unlink(name), 0);

  /* Root's objects are foreign to a creator that is not root; one that
   * asks to replace it hears why it cannot (not that the name exists). */
  seg = make(name, 0666, 0);
  T_EXPECT_RC(attempt(name, 0, REPLACE), -EACCES);
  T_EXPECT_RC(run_as((struct as_user){NOBODY, NOBODY, 0, name, 0, SHL_OWNER_SELF, 0}), 0);
  T_EXPECT_RC(run_as((struct as_user){NOBODY, NOBODY, 0, name, 0, SHL_OWNER_CREATOR, 0}),
              SHL_E_FOREIGN_OWNER);
  shl_close(seg);
  T_EXPECT_RC(shl_unlink(name), 0);
}

/* Group sharing: nobody creates 0660 (group nobody); uid 65533 in group
 * nobody opens it when it names the owner, and only then. */
static void test_group_sharing(void) {
  const char *name = t_name("pgroup");
  t_unlink_at_exit(name);
  T_EXPECT_RC(run_as((struct as_user){NOBODY, NOBODY, 0, name, 0660, 0, 0}), 0);
  struct as_user member = {NOBODY - 1, NOBODY - 1, NOBODY, name, 0, SHL_OWNER_SELF, 0};
  T_EXPECT_RC(run_as(member), SHL_E_FOREIGN_OWNER);
  member.owner = SHL_OWNER_UID;
  member.owner_uid = NOBODY;
  T_EXPECT_RC(run_as(member), 0);
  member.group = 0; /* not in the group: the mode keeps it out */
  T_EXPECT_RC(run_as(member), -EACCES);
  T_EXPECT_RC(shl_unlink(name), 0);
}

/* ---------------------------------------------------------------- no write access */

/* As nobody, on root's segment of mode 0644: a handle that cannot write the
 * header may not lock, unlock or notify. The checks that failed, or
 * DROP_FAILED or the open's code. */
static int header_calls(void *name) {
  if (drop_to_nobody() < 0) return DROP_FAILED;
  int before = t_failures;
  shl_segment *seg = NULL;
  int rc = shl_open(&seg, name, SHL_OPEN_READONLY, WAIT_NS);
  if (rc < 0) return rc;
  uint64_t changes = shl_changes(seg), out = 77;
  T_EXPECT_RC(shl_lock(seg, 0), SHL_E_READONLY);
  T_EXPECT_RC(shl_lock(seg, -1), SHL_E_READONLY);
  T_EXPECT_RC(shl_trylock(seg), SHL_E_READONLY);
  T_EXPECT_RC(shl_unlock(seg), SHL_E_READONLY);
  T_EXPECT_RC(shl_notify(seg, &out), SHL_E_READONLY);
  T_CHECK(shl_changes(seg) == changes && out == 77);
  shl_close(seg);
  return t_failures - before;
}

static void test_readonly_header(void) {
  const char *name = t_name("phdr");
  shl_segment *seg = make(name, 0644, 0);
  int rc;
  T_EXPECT_EXIT(t_child_run(header_calls, (void *)name, 5, &rc), 0);
  T_EXPECT_RC(rc, 0);
  /* The lock was never taken: root gets it at once. */
  T_EXPECT_RC(shl_trylock(seg), 0);
  T_EXPECT_RC(shl_unlock(seg), 0);
  shl_close(seg);
  T_EXPECT_RC(shl_unlink(name), 0);
}

/* As nobody: register as a reader of the stream and take its newest frame. */
static int stream_reader(void *name) {
  if (drop_to_nobody() < 0) return DROP_FAILED;
  shl_reader *r = NULL;
  int rc = shl_reader_open(&r, name, SHL_RECV_LATEST, 0);
  if (rc < 0) return rc;
  shl_sample s;
  rc = shl_reader_receive(r, &s, WAIT_NS, 0);
  if (rc == 0) rc = t_frame_bad_words(s.data, 2, MARK) ? BAD_DATA : 0;
  shl_reader_close(r);
  return rc;
}

/* A stream's mode decides who may read it: a reader pins, so it needs write
 * access (0666); the default (0600) keeps nobody out. A mode that grants a
 * class read alone (0644, 0640) is refused: such a user could hold the
 * stream's role locks and sleep on its futex words (docs/format.md,
 * Permissions). A stream made so by chmod is refused by writers and readers. */
static void test_stream_mode(void) {
  static const struct {
    uint32_t mode, want_mode;
    int reader;
  } cases[] = {{0, 0600, -EACCES}, {0666, 0666, 0}};
  char name[SHL_NAME_MAX + 1];
  shl_layout frame = t_frame_layout(2);
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    t_fresh_name(name, "pstream");
    shl_stream_opts o = {.size = sizeof(shl_stream_opts), .slots = 4, .mode = cases[i].mode};
    shl_writer *w = NULL;
    T_EXPECT_RC(shl_writer_open(&w, name, &frame, &o), 0);
    T_REQUIRE(w);
    T_CHECK(mode_of(name) == cases[i].want_mode);
    shl_info info = SHL_INFO_INIT;
    T_EXPECT_RC(shl_get_info(shl_writer_segment(w), &info), 0);
    T_CHECK(info.mode == cases[i].want_mode && info.kind == SHL_KIND_STREAM);
    T_CHECK(t_publish(w, 2, MARK, 1000) == 1);
    int rc;
    T_EXPECT_EXIT(t_child_run(stream_reader, name, 5, &rc), 0);
    if (rc != cases[i].reader) {
      fprintf(stderr, "stream of mode %04o: nobody's reader got %s, want %s\n", cases[i].mode,
              shl_err_name(rc), shl_err_name(cases[i].reader));
      t_failures++;
    }
    shl_writer_close(w);
  }
  static const uint32_t readonly_classes[] = {0644, 0640, 0604, 0664, 0646};
  for (size_t i = 0; i < sizeof readonly_classes / sizeof readonly_classes[0]; i++) {
    t_fresh_name(name, "pstream");
    shl_stream_opts o = {.size = sizeof(shl_stream_opts), .slots = 4, .mode = readonly_classes[i]};
    shl_writer *w = NULL;
    T_EXPECT_RC(shl_writer_open(&w, name, &frame, &o), SHL_E_BAD_MODE);
    T_CHECK(w == NULL && access(t_shm_path(name, (char[64]){0}), F_OK) != 0);
  }
  /* Made readable by chmod: nobody could now lock and wait on it; no one joins it. */
  t_fresh_name(name, "pstream");
  shl_writer *w = t_writer_open(name, 2, 4, 4, 0);
  T_CHECK(t_publish(w, 2, MARK, 1000) == 1);
  char path[64];
  T_REQUIRE(chmod(t_shm_path(name, path), 0644) == 0);
  shl_reader *r = NULL;
  T_EXPECT_RC(shl_reader_open(&r, name, SHL_RECV_LATEST, 0), SHL_E_BAD_MODE);
  shl_writer_close(w);
  w = NULL;
  T_EXPECT_RC(shl_writer_open(&w, name, &frame, NULL), SHL_E_BAD_MODE);
  T_CHECK(w == NULL);
}

/* Modes no object gets: its owner could not read and write it, a class could
 * write (truncate it) without reading, or execute and special bits. */
static void test_refused_modes(void) {
  static const uint32_t refused[] = {0066, 0200, 0400, 0002, 0020, 0602, 0620, 0662,
                                     0700, 0610, 0601, 04600, 01600, 010000};
  char name[SHL_NAME_MAX + 1], path[T_PATH_MAX];
  shl_layout frame = t_frame_layout(2);
  t_fresh_name(name, "pbad");
  for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
    shl_create_opts co = {.size = sizeof co, .mode = refused[i]};
    shl_stream_opts so = {.size = sizeof so, .slots = 4, .mode = refused[i]};
    shl_segment *seg = NULL;
    shl_writer *w = NULL;
    int rc = shl_create(&seg, name, &layout, &co), wrc = shl_writer_open(&w, name, &frame, &so);
    if (rc != SHL_E_BAD_MODE || wrc != SHL_E_BAD_MODE) {
      fprintf(stderr, "mode %04o: shl_create %s, shl_writer_open %s; want SHL_E_BAD_MODE\n",
              refused[i], shl_err_name(rc), shl_err_name(wrc));
      t_failures++;
    }
    shl_close(seg);
    shl_writer_close(w);
    if (access(t_shm_path(name, path), F_OK) == 0) {
      fprintf(stderr, "mode %04o: an object was left under the name\n", refused[i]);
      t_failures++;
      shl_unlink(name);
    }
  }
  /* A segment may grant read alone (its readers write nothing); a stream not. */
  shl_segment *seg = make(t_name("pread"), 0604, 0);
  T_CHECK(mode_of(t_name("pread")) == 0604);
  shl_close(seg);
  T_EXPECT_RC(shl_unlink(t_name("pread")), 0);
  /* A stream made write-only for others by chmod is refused as one asked so. */
  shl_writer *w = t_writer_open(name, 2, 4, 4, 0);
  T_REQUIRE(chmod(t_shm_path(name, path), 0602) == 0);
  shl_reader *r = NULL;
  T_EXPECT_RC(shl_reader_open(&r, name, SHL_RECV_LATEST, 0), SHL_E_BAD_MODE);
  shl_writer_close(w);
}

/* As nobody, through a read-only mapping of its own: sleep on the lock word
 * (offset 256, docs/format.md), again after every wake, until killed. */
static int sleep_on_lock_word(void *p) {
  char path[T_PATH_MAX];
  if (drop_to_nobody() < 0) return DROP_FAILED;
  int fd = open(t_shm_path(p, path), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -errno;
  const _Atomic uint32_t *word = mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, 0);
  if (word == MAP_FAILED) return -errno;
  word += 256 / sizeof *word;
  for (;;) syscall(SYS_futex, (void *)word, FUTEX_WAIT, atomic_load(word), NULL, NULL, 0);
}

struct waiter {
  shl_segment *seg;
  pid_t tid;
  long long locked_ns;
  int rc;
};

static void *lock_once(void *p) {
  struct waiter *w = p;
  __atomic_store_n(&w->tid, (pid_t)syscall(SYS_gettid), __ATOMIC_RELEASE);
  w->rc = shl_lock(w->seg, WAIT_NS);
  w->locked_ns = t_now_ns();
  if (w->rc == 0) w->rc = shl_unlock(w->seg);
  return NULL;
}

/* A user who may only read a segment sleeps on its lock word before a
 * locker does. Each unlock must wake the locker at once: a wake of one
 * sleeper went to nobody, and the locker slept out its 20 ms slice. Timed,
 * so judged by the majority of five rounds. */
static void test_lock_wake_as_nobody(void) {
  const char *name = t_name("plock");
  shl_segment *seg = make(name, 0644, 0);
  struct t_child thief;
  T_REQUIRE(t_child_start(&thief, sleep_on_lock_word, (void *)name, 30) == 0);
  int slow = 0;
  for (int round = 0; round < 5; round++) {
    T_EXPECT_RC(shl_lock(seg, WAIT_NS), 0);
    T_CHECK(t_wait_in_futex(thief.pid, 3000)); /* asleep before the locker */
    struct waiter w = {.seg = seg, .rc = 1};
    pthread_t t;
    T_REQUIRE(pthread_create(&t, NULL, lock_once, &w) == 0);
    while (!__atomic_load_n(&w.tid, __ATOMIC_ACQUIRE)) t_sleep_ms(1);
    T_CHECK(t_thread_in_futex(w.tid, 3000));
    long long unlocked = t_now_ns();
    T_EXPECT_RC(shl_unlock(seg), 0);
    pthread_join(t, NULL);
    T_EXPECT_RC(w.rc, 0);
    long long after_ms = (w.locked_ns - unlocked) / 1000000;
    if (after_ms >= 10) {
      fprintf(stderr, "round %d: the locker took the lock %lld ms after the unlock\n", round, after_ms);
      slow++;
    }
  }
  T_CHECK(slow <= 2);
  kill(thief.pid, SIGKILL);
  int rc;
  T_CHECK(t_child_finish(&thief, &rc) != 0 && rc == INT_MIN); /* it never ended of itself */
  shl_close(seg);
}

/* As nobody, through a read-only mapping of its own: move every sleeper on
 * the change counter's futex word to a word of its own, where no notify
 * reaches it (FUTEX_CMP_REQUEUE needs only a readable mapping), again and
 * again until killed. */
static int requeue_waiters(void *p) {
  char path[T_PATH_MAX];
  static uint32_t mine;
  if (drop_to_nobody() < 0) return DROP_FAILED;
  int fd = open(t_shm_path(p, path), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -errno;
  const char *map = mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, 0);
  if (map == MAP_FAILED) return -errno;
  const _Atomic uint32_t *word = (const void *)(map + offsetof(struct shl__header, changes));
  for (;;) {
    syscall(SYS_futex, (void *)word, FUTEX_CMP_REQUEUE, 0, (void *)(long)INT_MAX, &mine,
            atomic_load(word));
    usleep(100);
  }
}

struct waiting {
  shl_segment *seg;
  uint64_t since;
  pid_t tid;
  int rc;
};

static void *wait_once(void *p) {
  struct waiting *w = p;
  uint64_t seen;
  __atomic_store_n(&w->tid, (pid_t)syscall(SYS_gettid), __ATOMIC_RELEASE);
  w->rc = shl_wait(w->seg, w->since, 3 * WAIT_NS, &seen);
  return NULL;
}

/* A user who may only read a segment moves every sleeper on its change
 * counter away, over and over: a waiter must still see the notify within
 * a slice (20 ms), not at its timeout (3 s). Mode 0644 from creation, and
 * made so by chmod before the waiter's handle opened. */
static void test_wait_requeued_as_nobody(void) {
  const char *name = t_name("prequeue");
  char path[T_PATH_MAX];
  for (int chmodded = 0; chmodded < 2; chmodded++) {
    shl_segment *seg = make(name, chmodded ? 0600 : 0644, 0), *waiter = NULL;
    if (chmodded) T_REQUIRE(chmod(t_shm_path(name, path), 0644) == 0);
    T_REQUIRE(shl_open(&waiter, name, 0, WAIT_NS) == 0);
    struct t_child thief;
    T_REQUIRE(t_child_start(&thief, requeue_waiters, (void *)name, 30) == 0);
    struct waiting w = {.seg = waiter, .since = shl_changes(waiter), .rc = 1};
    pthread_t t;
    T_REQUIRE(pthread_create(&t, NULL, wait_once, &w) == 0);
    while (!__atomic_load_n(&w.tid, __ATOMIC_ACQUIRE)) t_sleep_ms(1);
    T_CHECK(t_thread_in_futex(w.tid, 3000));
    t_sleep_ms(5); /* the thief moves it meanwhile */
    long long notified = t_now_ns();
    T_EXPECT_RC(shl_notify(seg, NULL), 0);
    pthread_join(t, NULL);
    T_EXPECT_RC(w.rc, 0);
    long long after_ms = (t_now_ns() - notified) / 1000000;
    if (after_ms >= 1000) {
      fprintf(stderr, "mode 0644%s: the waiter saw the notify %lld ms after it\n",
              chmodded ? " by chmod" : "", after_ms);
      t_failures++;
    }
    kill(thief.pid, SIGKILL);
    int rc;
    T_CHECK(t_child_finish(&thief, &rc) != 0 && rc == INT_MIN);
    shl_close(waiter);
    shl_close(seg);
    T_EXPECT_RC(shl_unlink(name), 0);
  }
}

/* As nobody, with no thread to spare at its first lock (RLIMIT_NPROC: the
 * keeper cannot start), then with threads again: lock and unlock, then lock
 * again and hold until killed. */
static int lock_when_threads_come_back(void *name) {
  struct rlimit was, none;
  if (drop_to_nobody() < 0) return DROP_FAILED;
  shl_segment *seg = NULL;
  int rc = shl_open(&seg, name, 0, WAIT_NS);
  if (rc < 0 || getrlimit(RLIMIT_NPROC, &was) < 0) return rc < 0 ? rc : -errno;
  none = was;
  none.rlim_cur = 1; /* this process alone is that many already */
  if (setrlimit(RLIMIT_NPROC, &none) < 0) return -errno;
  if ((rc = shl_lock(seg, WAIT_NS)) < 0 || (rc = shl_unlock(seg)) < 0) return rc;
  if (setrlimit(RLIMIT_NPROC, &was) < 0) return -errno;
  if ((rc = shl_lock(seg, WAIT_NS)) < 0) return rc;
  for (;;) pause();
}

/* A lock taken while no thread could start goes without a keeper, but the
 * handle's later locks start one: a holder killed then is seen dead. */
static void test_keeper_after_thread_limit(void) {
  const char *name = t_name("pnproc");
  shl_segment *seg = make(name, 0666, 0);
  struct t_child holder;
  T_REQUIRE(t_child_start(&holder, lock_when_threads_come_back, (void *)name, 30) == 0);
  /* Held by another id than the child's own thread's: its keeper's. */
  for (int i = 0; i < 3000; i++) {
    uint32_t tid = atomic_load(&seg->hdr->lock) & SHL__LOCK_TID_MASK;
    if (tid && tid != (uint32_t)holder.pid) break;
    t_sleep_ms(1);
  }
  kill(holder.pid, SIGKILL);
  int rc;
  T_CHECK(t_child_finish(&holder, &rc) != 0 && rc == INT_MIN); /* killed, not failed */
  T_EXPECT_RC(shl_lock(seg, WAIT_NS), SHL_E_OWNER_DEAD);
  T_EXPECT_RC(shl_unlock(seg), 0);
  shl_close(seg);
  T_EXPECT_RC(shl_unlink(name), 0);
}

/* As nobody: a read lock on the creator role's byte of a segment it may only
 * read (F_RDLCK needs only a descriptor opened for reading), held until killed. */
static int read_lock_creator_byte(void *p) {
  char path[T_PATH_MAX];
  if (drop_to_nobody() < 0) return DROP_FAILED;
  int fd = open(t_shm_path(p, path), O_RDONLY | O_CLOEXEC);
  struct flock fl = {.l_type = F_RDLCK, .l_whence = SEEK_SET,
                     .l_start = (off_t)SHL__ROLE_CREATOR, .l_len = 1};
  if (fd < 0 || fcntl(fd, F_OFD_SETLKW, &fl) < 0) return -errno;
  for (;;) pause();
}

/* A creator that died before its segment of mode 0644 was ready, and a user
 * who may only read it holding a read lock on the creator's byte: the
 * creator is dead all the same (only its write lock is the role), so an
 * opener says so at once instead of waiting out its timeout. */
static void test_creator_byte_read_locked(void) {
  const char *name = t_name("pcrdl");
  char pname[SHL_NAME_MAX + 8], path[T_PATH_MAX];
  snprintf(pname, sizeof pname, "%s%s", SHL_POSIX_PREFIX, name);
  t_unlink_at_exit(name);
  int fd = shm_open(pname, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  int32_t pid = 1; /* sized, its pid written, never ready: as a creator killed there */
  T_REQUIRE(fd >= 0 && fchmod(fd, 0644) == 0 && ftruncate(fd, 8192) == 0);
  T_REQUIRE(pwrite(fd, &pid, sizeof pid, offsetof(struct shl__header, creator_pid)) == sizeof pid);
  struct t_child squatter;
  T_REQUIRE(t_child_start(&squatter, read_lock_creator_byte, (void *)name, 30) == 0);
  struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET,
                     .l_start = (off_t)SHL__ROLE_CREATOR, .l_len = 1};
  for (int i = 0; i < 3000 && fl.l_type != F_RDLCK; i++) { /* until the squatter holds it */
    t_sleep_ms(1);
    fl.l_type = F_WRLCK;
    T_REQUIRE(fcntl(fd, F_OFD_GETLK, &fl) == 0);
  }
  T_REQUIRE(fl.l_type == F_RDLCK);
  close(fd);
  shl_segment *seg = NULL;
  long long t0 = t_now_ns();
  T_EXPECT_RC(shl_open(&seg, name, 0, 2 * WAIT_NS), SHL_E_CREATOR_DEAD);
  long long took_ms = (t_now_ns() - t0) / 1000000;
  if (took_ms >= 1000) {
    fprintf(stderr, "the opener took %lld ms to find the creator dead\n", took_ms);
    t_failures++;
  }
  kill(squatter.pid, SIGKILL);
  int rc;
  T_CHECK(t_child_finish(&squatter, &rc) != 0 && rc == INT_MIN);
  T_CHECK(unlink(t_shm_path(name, path)) == 0);
}

int main(void) {
  if (geteuid() != 0) {
    fprintf(stderr, "skip: needs root to create as one user and open as another\n");
    return T_SKIP;
  }
  struct attempt probe = {NULL, 0, UNLINK};
  int rc;
  int status = t_child_run(as_nobody, &probe, 5, &rc);
  if (status == -1 || rc == DROP_FAILED) {
    fprintf(stderr, "skip: cannot switch to uid/gid %d here\n", NOBODY);
    return T_SKIP;
  }
  /* Modes are exact, whatever the creator's umask. */
  umask(077);
  test_default_mode();
  test_modes();
  test_wait_as_nobody();
  test_wait_requeued_as_nobody();
  test_fifo_squatter();
  test_squatter();
  test_group_sharing();
  test_readonly_header();
  test_lock_wake_as_nobody();
  test_creator_byte_read_locked();
  test_keeper_after_thread_limit();
  test_stream_mode();
  test_refused_modes();
  return t_result();
}
