/* A condition variable that costs nothing when no thread waits on it.
 * GLib's g_cond_broadcast always makes a system call (a futex wake), and
 * the buffers over shared memory are freed once per frame: counting the
 * waiters, all under the mutex the condition is used with, saves that
 * call on every frame no one waits for. */
#ifndef SHMLANE_GST_COND_H
#define SHMLANE_GST_COND_H

#include <glib.h>

typedef struct shlgst_cond {
  GCond cond;
  guint waiters; /* under the mutex */
} shlgst_cond;

/* Under the mutex. */
static inline void shlgst_cond_broadcast(shlgst_cond *c) {
  if (c->waiters) g_cond_broadcast(&c->cond);
}

/* Under the mutex `m`: waits until a broadcast (or a spurious wake-up), or
 * end_time (g_get_monotonic_time's clock; G_MAXINT64: no end). FALSE if
 * end_time passed. */
static inline gboolean shlgst_cond_wait_until(shlgst_cond *c, GMutex *m, gint64 end_time) {
  gboolean woken = TRUE;
  c->waiters++;
  if (end_time == G_MAXINT64)
    g_cond_wait(&c->cond, m);
  else
    woken = g_cond_wait_until(&c->cond, m, end_time);
  c->waiters--;
  return woken;
}

#endif
