/* Wait/notify on the header's 64-bit change counter. Waiters sleep on a
 * shared futex over its low 32 bits; a waiter count lets notify skip the
 * wake syscall when nobody sleeps. */
#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "internal.h"

/* A waiter that cannot announce itself (header mapped read-only, no
 * wake-always flag) re-checks at this period instead of sleeping unbounded. */
#define UNANNOUNCED_SLICE_NS 5000000

uint64_t shl_changes(const shl_segment *seg) {
  return atomic_load_explicit(&seg->hdr->changes, memory_order_acquire);
}

uint64_t shl_version(const shl_segment *seg) { return shl_changes(seg); }

int shl_notify(shl_segment *seg, uint64_t *out) {
  if (!(seg->flags & SHL__SEG_HDR_WRITABLE)) return SHL_E_READONLY;
  struct shl__header *h = seg->hdr;
  /* seq_cst pairs with the waiter's increment-then-check: one of the two sees the other. */
  uint64_t v = atomic_fetch_add(&h->changes, 1) + 1;
  if ((seg->hdr_flags & SHL__HDR_WAKE_ALWAYS) || atomic_load(&h->waiters) != 0)
    shl__futex_wake_all(shl__changes_word(h));
  if (out) *out = v;
  return 0;
}

/* Polls with an acquire load, as shl_changes() (a plain load on x86; no call
 * per round); the clock only now and then. */
static int spin(shl_segment *seg, uint64_t since, int64_t until, uint64_t *seen) {
  _Atomic uint64_t *changes = &seg->hdr->changes;
  for (unsigned i = 1;; i++) {
    uint64_t v = atomic_load_explicit(changes, memory_order_acquire);
    if (v != since) {
      *seen = v;
      return 1;
    }
    shl__cpu_relax();
    if ((i & 255) == 0 && shl__monotonic_ns() >= until) return 0;
  }
}

/* Whether every one of the n words still holds what is expected. */
static bool all_same(const struct shl__also *also, unsigned n) {
  for (unsigned i = 0; i < n; i++)
    if (atomic_load(also[i].word) != also[i].expected) return false;
  return true;
}

/* 0 once the counter moved (*seen), 1 once one of also's words moved, else <0. */
static int wait_changed(shl_segment *seg, uint64_t since, int64_t timeout_ns,
                        const shl_wait_opts *opts, const struct shl__also *also, unsigned nalso,
                        uint64_t *seen) {
  struct shl__header *h = seg->hdr;
  int64_t now = shl__monotonic_ns();
  int64_t deadline = shl__deadline(now, timeout_ns);
  if (opts && opts->spin_ns) {
    int64_t spin_ns = opts->spin_ns < SHL_SPIN_MAX_NS ? opts->spin_ns : SHL_SPIN_MAX_NS;
    int64_t until = deadline - now < spin_ns ? deadline : now + spin_ns;
    if (spin(seg, since, until, seen)) return 0;
  }
  bool announced = seg->flags & SHL__SEG_HDR_WRITABLE;
  bool woken_reliably = announced || (seg->hdr_flags & SHL__HDR_WAKE_ALWAYS);
  bool exposed = shl__seg_exposed(seg);
  int64_t slice = !woken_reliably ? UNANNOUNCED_SLICE_NS : exposed ? SHL__EXPOSED_SLICE_NS : -1;
  bool interruptible = opts && (opts->flags & SHL_WAIT_INTERRUPTIBLE);
  for (;;) {
    int64_t left = timeout_ns < 0 ? -1 : deadline - shl__monotonic_ns();
    if (timeout_ns >= 0 && left <= 0) return -ETIMEDOUT;
    if (slice > 0 && (left < 0 || left > slice)) left = slice;
    /* Counted before `closing` is read: shl_close() wakes until no sleeper
     * is left, so a wake that lands before the futex sleeps is repeated. */
    shl__seg_sleepers_add(seg, 1);
    if (atomic_load(&seg->closing)) {
      shl__seg_sleepers_add(seg, -1);
      return SHL_E_CLOSED;
    }
    if (announced) atomic_fetch_add(&h->waiters, 1);
    int rc = 0;
    uint64_t v = atomic_load(&h->changes);
    if (v == since && all_same(also, nalso)) {
      if (nalso) {
        struct shl__also words[SHL__WAITV_MAX] = {{shl__changes_word(h), (uint32_t)since}};
        memcpy(words + 1, also, nalso * sizeof *also);
        rc = shl__futex_waitv(words, nalso + 1, left);
      } else {
        rc = shl__futex_wait(shl__changes_word(h), (uint32_t)since, left);
      }
    }
    if (announced) atomic_fetch_sub(&h->waiters, 1);
    shl__seg_sleepers_add(seg, -1);
    v = shl_changes(seg);
    if (v != since) {
      *seen = v;
      return 0;
    }
    if (!all_same(also, nalso)) return 1;
    if ((rc == -EINTR && interruptible) || rc == -ENOSYS) return rc;
  }
}

int shl__wait_also(shl_segment *seg, uint64_t since, int64_t timeout_ns, const shl_wait_opts *opts,
                   const struct shl__also *also, unsigned nalso, uint64_t *out) {
  if (seg->flags & SHL__SEG_COPY) return -EINVAL; /* a copy never changes */
  uint64_t v = shl_changes(seg);
  if (v == since) {
    if (timeout_ns == 0) return -ETIMEDOUT;
    int rc = shl__seg_enter(seg);
    if (rc < 0) return rc;
    rc = wait_changed(seg, since, timeout_ns, opts, also, nalso, &v);
    shl__seg_put(seg); /* after a close meanwhile, the last one out frees */
    if (rc != 0) return rc;
  }
  if (out) *out = v;
  return 0;
}

int shl_wait_ex(shl_segment *seg, uint64_t since, int64_t timeout_ns,
                const shl_wait_opts *user_opts, uint64_t *out) {
  shl_wait_opts opts = SHL_WAIT_OPTS_INIT;
  int rc = user_opts ? shl__opts_copy(&opts, &shl__wait_opts_fields, user_opts) : 0;
  if (rc < 0) return rc;
  if (opts.flags & ~(uint32_t)(SHL_WAIT_INTERRUPTIBLE | SHL_WAIT_RETURN_DUE)) return -EINVAL;
  return shl__wait_also(seg, since, timeout_ns, &opts, NULL, 0, out);
}

int shl_wait(shl_segment *seg, uint64_t since, int64_t timeout_ns, uint64_t *out) {
  return shl_wait_ex(seg, since, timeout_ns, NULL, out);
}
