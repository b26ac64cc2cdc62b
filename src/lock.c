/* The per-segment robust lock: one 32-bit word in the header (SHL__LOCK_*)
 * under the kernel's robust futex protocol, and nothing else shared: no
 * pointer a peer with write access could aim. Such a peer can wedge the lock
 * or make it report a death; a holder never writes anywhere but the word.
 *
 * The word holds the thread id of this handle's lock keeper (liveness.c),
 * which lists the word on its robust list while, and only while, the lock is
 * held through this handle: when the process dies, so does the keeper, and
 * the kernel marks the word OWNER_DIED and wakes one sleeper; the next locker
 * gets SHL_E_OWNER_DEAD, once. Listed only while held, because a keeper in
 * another PID namespace can have the same id number: the kernel marks a word
 * only if it holds the dying keeper's id. A handle without a keeper (inherited
 * across fork(), or no robust list allowed) stores the locking thread's id
 * and its death goes unseen.
 *
 * The handle remembers which of this process's threads holds the lock
 * through it (`holder`): unlock is that thread's alone, and shl_close() from
 * another thread never unmaps the word under it (see shl_close). */
#include <errno.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "internal.h"

/* A lock blocked on a busy word looks at `closing` this often. */
#define LOCK_SLICE_NS 20000000

/* This handle's keeper, started at its first lock (`start`); NULL if it has
 * none. lock_ops orders its start and the list steps of this handle's threads. */
static struct shl__keeper *keeper_of(shl_segment *seg, bool start) {
  if (shl__seg_inherited(seg)) return NULL; /* the parent's keeper thread is not here */
  struct shl__keeper *k = atomic_load_explicit(&seg->lock_keeper, memory_order_acquire);
  if (k || !start || atomic_load(&seg->lock_nokeeper)) return k;
  pthread_mutex_lock(&seg->lock_ops);
  k = atomic_load(&seg->lock_keeper);
  if (!k && !atomic_load(&seg->lock_nokeeper)) {
    seg->lock_word = &seg->hdr->lock;
    bool refused;
    k = shl__keeper_start_idle(&seg->lock_word, &refused);
    if (k)
      atomic_store_explicit(&seg->lock_keeper, k, memory_order_release);
    else if (refused)
      atomic_store(&seg->lock_nokeeper, true); /* for good: set_robust_list is refused */
    /* Otherwise no thread now (a limit on threads, memory): this lock goes
     * without one, the next tries again. */
  }
  pthread_mutex_unlock(&seg->lock_ops);
  return k;
}

/* One attempt at a free word read as *v: 1 taken, SHL_E_OWNER_DEAD taken
 * from a dead holder, 0 not (*v is then the word as it is). `keep`: WAITERS
 * for a thread that slept, as others may sleep too. */
static int take(shl_segment *seg, struct shl__keeper *k, uint32_t tid, uint32_t *v,
                uint32_t keep) {
  uint32_t was = *v;
  if (k) {
    pthread_mutex_lock(&seg->lock_ops);
    shl__keeper_pending(k, true); /* a death from here on is seen */
  }
  bool ok = atomic_compare_exchange_strong(&seg->hdr->lock, v,
                                           tid | (was & SHL__LOCK_WAITERS) | keep);
  if (k) {
    if (ok) shl__keeper_list(k, true);
    shl__keeper_pending(k, false);
    pthread_mutex_unlock(&seg->lock_ops);
  }
  if (!ok) return 0;
  atomic_store(&seg->lock_tid, tid);
  return was & SHL__LOCK_DIED ? SHL_E_OWNER_DEAD : 1;
}

/* Gives up this handle's claim (tid), leaving the word `to` (0: free, or
 * OWNER_DIED), and wakes the sleepers if any. -ENOTRECOVERABLE if the word no
 * longer held tid (a peer rewrote it): then it is left as it is. All of them:
 * a process that may only read the segment can sleep on the word too; the
 * lockers that lose the race sleep again. */
static int give_up(shl_segment *seg, uint32_t tid, uint32_t to) {
  _Atomic uint32_t *word = &seg->hdr->lock;
  struct shl__keeper *k = keeper_of(seg, false);
  if (k) {
    pthread_mutex_lock(&seg->lock_ops);
    shl__keeper_pending(k, true); /* a death before the wake: the kernel wakes */
    shl__keeper_list(k, false);
  }
  uint32_t v = atomic_load(word);
  int rc = 0;
  do {
    if ((v & SHL__LOCK_TID_MASK) != tid) rc = -ENOTRECOVERABLE;
  } while (rc == 0 && !atomic_compare_exchange_weak(word, &v, to | (to ? v & SHL__LOCK_WAITERS : 0)));
  if (rc == 0 && (v & SHL__LOCK_WAITERS)) shl__futex_wake_all(word);
  if (k) {
    shl__keeper_pending(k, false);
    pthread_mutex_unlock(&seg->lock_ops);
  }
  return rc;
}

/* Takes the word, waiting up to timeout_ns (< 0: forever; 0: not at all,
 * `busy` then) in slices, to see `closing`. */
static int acquire(shl_segment *seg, int64_t timeout_ns, int busy) {
  struct shl__keeper *k = NULL;
  uint32_t tid = 0; /* not yet known: the keeper starts when the word is first free */
  _Atomic uint32_t *word = &seg->hdr->lock;
  int64_t deadline = 0; /* read once the word is found busy: a free one costs no clock */
  uint32_t keep = 0;
  uint32_t v = atomic_load(word);
  for (;;) {
    if (!(v & SHL__LOCK_TID_MASK)) {
      if (!tid) {
        k = keeper_of(seg, true);
        tid = k ? shl__keeper_tid(k) : (uint32_t)shl__thread_id();
      }
      int rc = take(seg, k, tid, &v, keep);
      if (rc) return rc == 1 ? 0 : rc;
      continue; /* it changed under the attempt */
    }
    if (timeout_ns == 0) return busy;
    if (!(v & SHL__LOCK_WAITERS)) {
      if (!atomic_compare_exchange_strong(word, &v, v | SHL__LOCK_WAITERS)) continue;
      v |= SHL__LOCK_WAITERS;
    }
    int64_t now = shl__monotonic_ns();
    if (!deadline) deadline = shl__deadline(now, timeout_ns);
    if (now >= deadline) return -ETIMEDOUT;
    shl__futex_wait(word, v, deadline - now > LOCK_SLICE_NS ? LOCK_SLICE_NS : deadline - now);
    keep = SHL__LOCK_WAITERS;
    if (atomic_load(&seg->closing)) return SHL_E_CLOSED;
    v = atomic_load(word);
  }
}

/* The end of shl_lock/shl_trylock, inside shl__seg_enter/put. */
static int finish(shl_segment *seg, int rc) {
  if (rc != 0 && rc != SHL_E_OWNER_DEAD) {
    shl__seg_put(seg);
    return rc;
  }
  if (atomic_load(&seg->closing)) { /* closed while we waited: give it back */
    (void)give_up(seg, atomic_load(&seg->lock_tid), 0);
    shl__seg_put(seg);
    return SHL_E_CLOSED;
  }
  atomic_store(&seg->holder, shl__seg_self()); /* the call's reference becomes the holder's */
  return rc;
}

/* Same thread, same handle: an error-checking lock. */
static int lock_checked(shl_segment *seg, int64_t timeout_ns, int busy) {
  if (!(seg->flags & SHL__SEG_HDR_WRITABLE)) return SHL_E_READONLY;
  if (atomic_load(&seg->holder) == shl__seg_self()) return -EDEADLK;
  int rc = shl__seg_enter(seg);
  if (rc < 0) return rc;
  return finish(seg, acquire(seg, timeout_ns, busy));
}

int shl_lock(shl_segment *seg, int64_t timeout_ns) {
  return lock_checked(seg, timeout_ns, -ETIMEDOUT);
}

int shl_trylock(shl_segment *seg) { return lock_checked(seg, 0, -EBUSY); }

int shl_unlock(shl_segment *seg) {
  if (!(seg->flags & SHL__SEG_HDR_WRITABLE)) return SHL_E_READONLY;
  /* Only the thread that locked through this handle, in this process: never
   * a lock another thread, or the parent across fork(), holds. */
  uint64_t self = shl__seg_self();
  if (atomic_load(&seg->holder) != self) return -EPERM;
  uint32_t tid = atomic_load(&seg->lock_tid);
  /* Cleared before the word is free: another thread of ours may take it at
   * once, through this handle, and its claim must stay (finish). */
  atomic_store(&seg->holder, 0);
  int rc = give_up(seg, tid, 0);
  SHL__TEST_POINT(unlocked);
  shl__seg_put(seg); /* the last one out completes a deferred close */
  return rc;
}

void shl__lock_close(shl_segment *seg) {
  uint64_t self = shl__seg_self(), holder = atomic_load(&seg->holder);
  if (holder == self) {
    shl_unlock(seg);
    return;
  }
  /* A thread of this process that is gone (no signal reaches it) cannot
   * unlock: its claim becomes its death, as the kernel marks it when the
   * process dies, never a lock held for good. */
  if (!holder || holder >> 32 != self >> 32) return;
  if (syscall(SYS_tgkill, getpid(), (pid_t)(uint32_t)holder, 0) == 0 || errno != ESRCH) return;
  if (!atomic_compare_exchange_strong(&seg->holder, &holder, 0)) return;
  (void)give_up(seg, atomic_load(&seg->lock_tid), SHL__LOCK_DIED);
  shl__seg_put(seg); /* the gone holder's reference */
}
