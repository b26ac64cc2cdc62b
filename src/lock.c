/* The per-segment robust lock: a process-shared, robust, error-checking
 * pthread mutex in the header. A holder's death is reported once, as
 * SHL_E_OWNER_DEAD, and the mutex is made consistent so it never stays broken.
 * The handle remembers which of this process's threads holds the lock through
 * it, so that shl_close() from another thread never unmaps the mutex under
 * its holder (see shl_close). */
#include <errno.h>
#include <time.h>

#include "internal.h"

/* A lock blocked on a busy mutex looks at `closing` this often: a mutex wait
 * cannot be woken from outside. */
#define LOCK_SLICE_NS 20000000

/* The result of a pthread lock call made inside shl__seg_enter/put. */
static int finish(shl_segment *seg, int rc) {
  if (rc == EOWNERDEAD) pthread_mutex_consistent(&seg->hdr->lock.mutex);
  if (rc != 0 && rc != EOWNERDEAD) {
    shl__seg_put(seg);
    return -rc;
  }
  if (atomic_load(&seg->closing)) { /* closed while we waited: give it back */
    pthread_mutex_unlock(&seg->hdr->lock.mutex);
    shl__seg_put(seg);
    return SHL_E_CLOSED;
  }
  /* The call's reference becomes the holder's. One left by a thread of this
   * process that died holding the lock through this handle is dropped. */
  uint64_t prev = atomic_exchange(&seg->holder, shl__seg_self());
  if (prev >> 32 == shl__seg_self() >> 32 && prev != 0) shl__seg_put(seg);
  return rc == EOWNERDEAD ? SHL_E_OWNER_DEAD : 0;
}

static struct timespec ts_of(int64_t ns) {
  return (struct timespec){(time_t)(ns / 1000000000), (long)(ns % 1000000000)};
}

int shl_lock(shl_segment *seg, int64_t timeout_ns) {
  if (!(seg->flags & SHL__SEG_HDR_WRITABLE)) return SHL_E_READONLY;
  int rc = shl__seg_enter(seg);
  if (rc < 0) return rc;
  pthread_mutex_t *mutex = &seg->hdr->lock.mutex;
  if (timeout_ns == 0) {
    rc = pthread_mutex_trylock(mutex);
    return finish(seg, rc == EBUSY ? ETIMEDOUT : rc);
  }
  int64_t deadline = shl__deadline(shl__monotonic_ns(), timeout_ns);
  for (;;) {
    int64_t now = shl__monotonic_ns();
    int64_t until = deadline - now > LOCK_SLICE_NS ? now + LOCK_SLICE_NS : deadline;
    struct timespec abs = ts_of(until);
    rc = pthread_mutex_clocklock(mutex, CLOCK_MONOTONIC, &abs);
    if (rc != ETIMEDOUT || until >= deadline) break;
    if (atomic_load(&seg->closing)) {
      shl__seg_put(seg);
      return SHL_E_CLOSED;
    }
  }
  return finish(seg, rc);
}

int shl_trylock(shl_segment *seg) {
  if (!(seg->flags & SHL__SEG_HDR_WRITABLE)) return SHL_E_READONLY;
  int rc = shl__seg_enter(seg);
  if (rc < 0) return rc;
  return finish(seg, pthread_mutex_trylock(&seg->hdr->lock.mutex));
}

int shl_unlock(shl_segment *seg) {
  if (!(seg->flags & SHL__SEG_HDR_WRITABLE)) return SHL_E_READONLY;
  /* Only the thread that locked through this handle, in this process: never
   * a lock another thread, or the parent across fork(), holds. */
  uint64_t self = shl__seg_self();
  if (atomic_load(&seg->holder) != self) return -EPERM;
  /* Cleared before the mutex is free: another thread of ours may take it at
   * once, through this handle, and its claim must stay (finish). */
  atomic_store(&seg->holder, 0);
  int rc = pthread_mutex_unlock(&seg->hdr->lock.mutex);
  if (rc) {
    atomic_store(&seg->holder, self); /* still ours */
    return -rc;
  }
  SHL__TEST_POINT(unlocked);
  shl__seg_put(seg); /* the last one out completes a deferred close */
  return 0;
}
