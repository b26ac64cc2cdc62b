/* The per-segment robust lock: a process-shared, robust, error-checking
 * pthread mutex in the header. A holder's death is reported once, as
 * SHL_E_OWNER_DEAD, and the mutex is made consistent so it never stays broken. */
#include <errno.h>
#include <time.h>

#include "internal.h"

static int finish(shl_segment *seg, int rc) {
  if (rc == EOWNERDEAD) {
    pthread_mutex_consistent(&seg->hdr->lock.mutex);
    seg->lock_held = 1;
    return SHL_E_OWNER_DEAD;
  }
  if (rc == 0) seg->lock_held = 1;
  return -rc;
}

int shl_lock(shl_segment *seg, int64_t timeout_ns) {
  if (!(seg->flags & SHL__SEG_HDR_WRITABLE)) return SHL_E_READONLY;
  pthread_mutex_t *mutex = &seg->hdr->lock.mutex;
  if (timeout_ns < 0) return finish(seg, pthread_mutex_lock(mutex));
  if (timeout_ns == 0) {
    int rc = pthread_mutex_trylock(mutex);
    return finish(seg, rc == EBUSY ? ETIMEDOUT : rc);
  }
  struct timespec abs;
  clock_gettime(CLOCK_MONOTONIC, &abs);
  abs.tv_sec += (time_t)(timeout_ns / 1000000000);
  abs.tv_nsec += (long)(timeout_ns % 1000000000);
  if (abs.tv_nsec >= 1000000000) abs.tv_sec++, abs.tv_nsec -= 1000000000;
  return finish(seg, pthread_mutex_clocklock(mutex, CLOCK_MONOTONIC, &abs));
}

int shl_trylock(shl_segment *seg) {
  if (!(seg->flags & SHL__SEG_HDR_WRITABLE)) return SHL_E_READONLY;
  return finish(seg, pthread_mutex_trylock(&seg->hdr->lock.mutex));
}

int shl_unlock(shl_segment *seg) {
  if (!(seg->flags & SHL__SEG_HDR_WRITABLE)) return SHL_E_READONLY;
  int rc = pthread_mutex_unlock(&seg->hdr->lock.mutex);
  if (rc == 0) seg->lock_held = 0;
  return -rc;
}
