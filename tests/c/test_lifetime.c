/* Handle lifetime against threads and fork: shl_close() from another thread
 * never unmaps a lock word its holder will still unlock, nor memory
 * under a call blocked in shl_lock/shl_wait; a forked child's inherited
 * handle never changes shared state (no unlock, no unlink) on close, nor
 * waits on its close for the parent's sleepers, nor takes the handle's
 * private mutex, which another thread may have held at the fork; a name is
 * removed only
 * while it still refers to the object judged. */
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/stat.h>

#include "internal.h" /* shl__seg_sleepers */
#include "testutil_proc.h"

#define WAIT_NS 5000000000LL

static const shl_layout layout = {.format = "<Q", .ndim = 1, .shape = {16}};

/* A child run by t_child_run ends with _exit, removing nothing: the names of
 * the segments it makes are chosen, and removed at exit, by the parent. */
static const char *parents_name(const char *tag) {
  const char *name = t_name(tag);
  t_unlink_at_exit(name);
  return name;
}

static shl_segment *make(const char *name, uint32_t flags) {
  shl_segment *seg = NULL;
  shl_create_opts opts = {.size = sizeof(shl_create_opts), .flags = SHL_CREATE_REPLACE | flags};
  T_REQUIRE(shl_create(&seg, name, &layout, &opts) == 0);
  t_unlink_at_exit(name);
  return seg;
}

static shl_segment *reopen(const char *name) {
  shl_segment *seg = NULL;
  T_REQUIRE(shl_open(&seg, name, 0, WAIT_NS) == 0);
  return seg;
}

static bool path_exists(const char *name) {
  char path[T_PATH_MAX];
  struct stat st;
  return stat(t_shm_path(name, path), &st) == 0;
}

/* A thread that runs one step at a time, told by `step`. */
struct holder {
  shl_segment *a, *b;
  _Atomic int step, done;
  int rc_lock_a, rc_lock_b, rc_unlock_b, rc_unlock_a;
};

static void await_step(_Atomic int *v, int want) {
  while (atomic_load(v) < want) t_sleep_ms(1);
}

static void *holder_main(void *p) {
  struct holder *h = p;
  h->rc_lock_a = shl_lock(h->a, WAIT_NS);
  atomic_store(&h->done, 1);
  await_step(&h->step, 1);
  /* A was closed by another thread meanwhile: its lock word must still be
   * mapped, as this thread's unlock writes it. */
  h->rc_lock_b = shl_lock(h->b, WAIT_NS);
  h->rc_unlock_b = shl_unlock(h->b);
  h->rc_unlock_a = shl_unlock(h->a); /* completes the deferred close */
  atomic_store(&h->done, 2);
  return NULL;
}

/* Thread T1 locks A; the main thread closes A; T1 then locks B. Before the
 * fix, close unmapped A under T1 and locking B crashed with SIGSEGV. */
static int close_under_holder(void *names) {
  const char *na = ((const char **)names)[0], *nb = ((const char **)names)[1];
  struct holder h = {.a = make(na, 0), .b = make(nb, 0)};
  shl_segment *other = reopen(na);
  pthread_t t;
  T_REQUIRE(pthread_create(&t, NULL, holder_main, &h) == 0);
  await_step(&h.done, 1);
  T_EXPECT_RC(h.rc_lock_a, 0);
  T_EXPECT_RC(shl_unlock(h.a), -EPERM); /* not this thread's lock */
  shl_close(h.a);                        /* deferred: T1 holds A's lock */
  T_EXPECT_RC(shl_trylock(other), -EBUSY); /* the lock stays T1's */
  atomic_store(&h.step, 1);
  pthread_join(t, NULL);
  T_EXPECT_RC(h.rc_lock_b, 0);
  T_EXPECT_RC(h.rc_unlock_b, 0);
  T_EXPECT_RC(h.rc_unlock_a, 0);
  T_EXPECT_RC(shl_trylock(other), 0); /* released by its holder, not stuck */
  T_EXPECT_RC(shl_unlock(other), 0);
  shl_close(other);
  shl_close(h.b);
  return t_failures;
}

static void test_close_under_holder(void) {
  int rc;
  const char *names[2] = {parents_name("lta"), parents_name("ltb")};
  int status = t_child_run(close_under_holder, names, 20, &rc);
  T_EXPECT_EXIT(status, 0);
  T_EXPECT_RC(rc, 0);
}

/* Calls blocked in shl_lock and shl_wait when another thread closes the
 * handle return SHL_E_CLOSED; the last one out frees (ASan would see it). */
struct blocked {
  shl_segment *seg;
  _Atomic int32_t tid;
  int rc;
};

static void *lock_blocked(void *p) {
  struct blocked *b = p;
  atomic_store(&b->tid, (int32_t)syscall(SYS_gettid));
  b->rc = shl_lock(b->seg, -1);
  return NULL;
}

static void *wait_blocked(void *p) {
  struct blocked *b = p;
  atomic_store(&b->tid, (int32_t)syscall(SYS_gettid));
  b->rc = shl_wait(b->seg, shl_changes(b->seg), -1, NULL);
  return NULL;
}

static void await_sleep(struct blocked *b) {
  while (atomic_load(&b->tid) == 0) t_sleep_ms(1);
  T_CHECK(t_wait_in_futex(atomic_load(&b->tid), 5000));
}

/* Closes seg, or with `shut` only shuts it down (shl_shutdown): the
 * blocked calls return the same, but the mapping stays until shl_close. */
static int wakes_blocked(const char *name, bool shut) {
  shl_segment *seg = make(name, 0), *keeper = reopen(name);
  T_REQUIRE(shl_lock(keeper, 0) == 0); /* so that the locker blocks */
  struct blocked locker = {seg, 0, 1}, waiter = {seg, 0, 1};
  pthread_t tl, tw;
  T_REQUIRE(pthread_create(&tl, NULL, lock_blocked, &locker) == 0);
  T_REQUIRE(pthread_create(&tw, NULL, wait_blocked, &waiter) == 0);
  await_sleep(&locker);
  await_sleep(&waiter);
  long long t0 = t_now_ns();
  (shut ? shl_shutdown : shl_close)(seg);
  pthread_join(tw, NULL);
  T_CHECK(t_now_ns() - t0 < WAIT_NS / 5); /* woken, not found at a slice's end (none) */
  pthread_join(tl, NULL);
  T_EXPECT_RC(waiter.rc, SHL_E_CLOSED);
  T_EXPECT_RC(locker.rc, SHL_E_CLOSED);
  T_CHECK(t_now_ns() - t0 < WAIT_NS); /* generous: each returns within a slice */
  if (shut) { /* later blocking calls end at once; the others work */
    T_EXPECT_RC(shl_wait(seg, shl_changes(seg), -1, NULL), SHL_E_CLOSED);
    T_EXPECT_RC(shl_trylock(seg), SHL_E_CLOSED);
    ((volatile uint64_t *)shl_payload(seg))[1] = 7;
    T_EXPECT_RC(shl_notify(seg, NULL), 0);
    T_CHECK(shl_changes(keeper) == 1 && ((uint64_t *)shl_payload(keeper))[1] == 7);
    shl_shutdown(seg); /* again: nothing more */
    shl_close(seg);
  }
  shl_shutdown(NULL);
  T_EXPECT_RC(shl_unlock(keeper), 0);
  shl_close(keeper);
  return t_failures;
}

static int close_wakes_blocked(void *name) { return wakes_blocked(name, false); }
static int shutdown_wakes_blocked(void *name) { return wakes_blocked(name, true); }

/* In a child: before the fix, the blocked calls never returned. */
static void test_close_wakes_blocked(void) {
  int rc;
  T_EXPECT_EXIT(t_child_run(close_wakes_blocked, (void *)parents_name("ltw"), 10, &rc), 0);
  T_EXPECT_RC(rc, 0);
}

/* shl_shutdown, for bindings that cannot unmap yet (views outlive the call). */
static void test_shutdown_wakes_blocked(void) {
  int rc;
  T_EXPECT_EXIT(t_child_run(shutdown_wakes_blocked, (void *)parents_name("lts"), 10, &rc), 0);
  T_EXPECT_RC(rc, 0);
}

/* A process whose thread holds the lock of a segment another thread closed,
 * and that exits: the kernel marks the word OWNER_DIED (it is still mapped,
 * and on the handle's keeper's list), so the next locker anywhere recovers it. Before the fix the
 * mapping was gone at exit, and every later lock timed out. */
static void *hold_forever(void *p) {
  struct holder *h = p;
  h->rc_lock_a = shl_lock(h->a, WAIT_NS);
  atomic_store(&h->done, 1);
  for (;;) pause();
  return NULL;
}

static int exit_holding(void *name) {
  struct holder h = {.a = reopen(name)};
  pthread_t t;
  if (pthread_create(&t, NULL, hold_forever, &h) != 0) return 1;
  await_step(&h.done, 1);
  if (h.rc_lock_a != 0) return 2;
  shl_close(h.a);
  return 0; /* the process exits; the thread still holds A's lock */
}

static void test_exit_holding_closed(void) {
  const char *name = t_name("lte");
  shl_segment *seg = make(name, 0);
  int rc;
  T_EXPECT_EXIT(t_child_run(exit_holding, (void *)name, 20, &rc), 0);
  T_EXPECT_RC(rc, 0);
  T_EXPECT_RC(shl_lock(seg, WAIT_NS), SHL_E_OWNER_DEAD);
  T_EXPECT_RC(shl_unlock(seg), 0);
  T_EXPECT_RC(shl_lock(seg, 0), 0); /* recovered once, then normal */
  T_EXPECT_RC(shl_unlock(seg), 0);
  shl_close(seg);
}

/* ---------------------------------------------------------------- fork */

struct forked {
  shl_segment *seg;
  const char *name;
};

/* In the child: the inherited payload works; the parent's lock is not ours
 * to unlock; close unlinks nothing and unlocks nothing. */
static int child_of_holder(void *p) {
  struct forked *f = p;
  uint64_t *v = shl_payload(f->seg);
  if (v[0] != 41) return 1;
  v[0] = 42;
  int rc = shl_unlock(f->seg);
  if (rc != -EPERM) return rc ? rc : 2;
  if ((rc = shl_trylock(f->seg)) != -EBUSY) return rc ? rc : 3;
  shl_close(f->seg);
  return 0;
}

/* A child that locks through its inherited handle: legitimate (it is a
 * process of its own); its own lock is released by its close. */
static int child_locks(void *p) {
  struct forked *f = p;
  int rc = shl_lock(f->seg, WAIT_NS);
  if (rc < 0) return rc;
  ((uint64_t *)shl_payload(f->seg))[1] = 7;
  shl_close(f->seg);
  return 0;
}

static int busy_elsewhere(void *name) {
  shl_segment *seg = reopen(name);
  int rc = shl_trylock(seg);
  shl_close(seg);
  return rc;
}

static void test_fork(void) {
  const char *name = t_name("ltf");
  struct forked f = {make(name, SHL_CREATE_UNLINK_ON_CLOSE), name};
  uint64_t *v = shl_payload(f.seg);
  v[0] = 41;
  T_EXPECT_RC(shl_lock(f.seg, 0), 0);
  int rc;
  T_EXPECT_EXIT(t_child_run(child_of_holder, &f, 10, &rc), 0);
  T_EXPECT_RC(rc, 0);
  T_CHECK(v[0] == 42);          /* the child wrote through the inherited mapping */
  T_CHECK(path_exists(name));   /* its close unlinked nothing */
  T_EXPECT_EXIT(t_child_run(busy_elsewhere, (void *)name, 10, &rc), 0);
  T_EXPECT_RC(rc, -EBUSY);      /* and released nothing */
  T_EXPECT_RC(shl_unlock(f.seg), 0);

  T_EXPECT_EXIT(t_child_run(child_locks, &f, 10, &rc), 0);
  T_EXPECT_RC(rc, 0);
  T_CHECK(v[1] == 7);
  T_EXPECT_RC(shl_lock(f.seg, 0), 0); /* the child's close released its own lock */
  T_EXPECT_RC(shl_unlock(f.seg), 0);
  T_CHECK(path_exists(name));

  /* A child that exits without closing changes nothing either. */
  fflush(NULL);
  pid_t pid = fork();
  if (pid == 0) _exit(0);
  T_EXPECT_EXIT(t_child_reap(pid), 0);
  T_CHECK(path_exists(name));
  shl_close(f.seg); /* the creator's own close does unlink */
  T_CHECK(!path_exists(name));
}

/* A child forked while a thread of its parent sleeps in shl_wait: that
 * thread is not the child's, so the child's close does not wait for it to
 * leave (it kept waking the shared word for 1 s: the parent's count). The
 * child's own sleepers are woken by its close as anyone's are
 * (close_wakes_blocked runs in a child; no thread is started here, after
 * a fork of a process with threads). */
static int child_of_sleeper(void *p) {
  shl_segment *seg = p;
  if (shl__seg_sleepers(seg) != 0) return 1;
  shl_close(seg);
  return 0;
}

static void test_fork_while_waiting(void) {
  const char *name = t_name("ltz");
  shl_segment *seg = make(name, 0);
  struct blocked waiter = {seg, 0, 1};
  pthread_t t;
  T_REQUIRE(pthread_create(&t, NULL, wait_blocked, &waiter) == 0);
  await_sleep(&waiter);
  T_CHECK(shl__seg_sleepers(seg) == 1);
  int rc;
  T_EXPECT_EXIT(t_child_run(child_of_sleeper, seg, 10, &rc), 0);
  T_EXPECT_RC(rc, 0);
  T_EXPECT_RC(shl_notify(seg, NULL), 0);
  pthread_join(t, NULL);
  T_EXPECT_RC(waiter.rc, 0);
  shl_close(seg);
}

/* A child forked while another thread of its parent held the handle's
 * private mutex (lock.c's lock_ops, held around the lock keeper's list
 * steps) has it locked for good: no call of the child on the inherited
 * handle may take it. Held here by this thread at the fork, as that thread
 * would have. */
static int child_of_lock_ops(void *p) {
  shl_segment *seg = p;
  alarm(2); /* a deadlock is a failure */
  int rc = shl_lock(seg, WAIT_NS);
  if (rc < 0) return rc;
  if ((rc = shl_unlock(seg)) < 0) return rc;
  if ((rc = shl_notify(seg, NULL)) < 0) return rc;
  if ((rc = shl_wait(seg, shl_changes(seg), 0, NULL)) != -ETIMEDOUT) return rc ? rc : 1;
  if ((rc = shl_lock(seg, WAIT_NS)) < 0) return rc;
  shl_close(seg); /* held: its close unlocks */
  return 0;
}

static void test_fork_while_lock_ops_held(void) {
  const char *name = t_name("ltm");
  shl_segment *seg = make(name, 0);
  T_EXPECT_RC(shl_lock(seg, 0), 0); /* the keeper starts */
  T_EXPECT_RC(shl_unlock(seg), 0);
  pthread_mutex_lock(&seg->lock_ops);
  int rc;
  T_EXPECT_EXIT(t_child_run(child_of_lock_ops, seg, 10, &rc), 0);
  pthread_mutex_unlock(&seg->lock_ops);
  T_EXPECT_RC(rc, 0);
  T_EXPECT_RC(shl_lock(seg, 0), 0); /* the child's lock is gone with it */
  T_EXPECT_RC(shl_unlock(seg), 0);
  shl_close(seg);
}

/* shl_unlink_if_same removes a name only while it refers to the object open
 * as fd: never a replacement made under the name since. */
static void test_unlink_if_same(void) {
  const char *name = t_name("lus");
  char path[T_PATH_MAX];
  shl_segment *first = make(name, 0);
  int fd = open(t_shm_path(name, path), O_PATH | O_NOFOLLOW | O_CLOEXEC);
  T_REQUIRE(fd >= 0);
  shl_close(first);
  shl_close(make(name, 0)); /* SHL_CREATE_REPLACE: another object, same name */
  T_EXPECT_RC(shl_unlink_if_same(name, fd), -ESTALE);
  T_CHECK(path_exists(name));
  close(fd);
  fd = open(t_shm_path(name, path), O_PATH | O_NOFOLLOW | O_CLOEXEC);
  T_REQUIRE(fd >= 0);
  T_EXPECT_RC(shl_unlink_if_same(name, fd), 0);
  T_CHECK(!path_exists(name));
  T_EXPECT_RC(shl_unlink_if_same(name, fd), -ENOENT);
  T_EXPECT_RC(shl_unlink_if_same("bad/name", fd), SHL_E_BAD_NAME);
  close(fd);
}

int main(void) {
  test_close_under_holder();
  test_close_wakes_blocked();
  test_shutdown_wakes_blocked();
  test_exit_holding_closed();
  test_fork();
  test_fork_while_waiting();
  test_fork_while_lock_ops_held();
  test_unlink_if_same();
  return t_result();
}
