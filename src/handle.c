/* A segment handle's lifetime, in this process only: its allocation, the
 * count of what holds it (the open handle, each blocking call inside, the
 * thread holding the lock through it), freeing by the last one out, and
 * the role descriptors opened on the object it holds. Shared state is never
 * touched here: unmapping and closing are private to this process. */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "internal.h"

/* The counted words carry the fork generation in their high 32 bits. */
static uint64_t gen_word(uint64_t gen, uint64_t low) { return gen << 32 | low; }

uint64_t shl__seg_self(void) {
  return gen_word(shl__fork_generation(), (uint32_t)shl__thread_id());
}

shl_segment *shl__seg_new(int fd) {
  shl_segment *seg = calloc(1, sizeof *seg);
  if (!seg) return NULL;
  seg->fd = fd;
  shl__role_fd_init(&seg->role);
  seg->fork_gen = shl__fork_generation();
  atomic_init(&seg->refs, gen_word(seg->fork_gen, 1));
  atomic_init(&seg->holder, 0);
  atomic_init(&seg->closing, 0);
  atomic_init(&seg->sleepers, gen_word(seg->fork_gen, 0));
  atomic_init(&seg->lock_keeper, NULL);
  atomic_init(&seg->lock_nokeeper, false);
  atomic_init(&seg->lock_tid, 0);
  pthread_mutex_init(&seg->lock_ops, NULL);
  return seg;
}

/* Adds delta to this process's count in `word` and returns the new count.
 * A count of another fork generation is a parent's: in this process it
 * stands for `inherited` (the parent's threads do not exist here). */
static uint32_t count_add(_Atomic uint64_t *word, uint32_t inherited, int delta) {
  uint64_t gen = shl__fork_generation();
  uint64_t cur = atomic_load(word), next;
  do {
    uint32_t count = cur >> 32 == gen ? (uint32_t)cur : inherited;
    assert(delta > 0 || count > 0); /* what went in comes out once: never below 0 */
    next = gen_word(gen, (uint32_t)(count + delta));
  } while (!atomic_compare_exchange_weak(word, &cur, next));
  return (uint32_t)next;
}

/* The open handle alone, in a child: the last one out frees. */
static uint32_t refs_add(shl_segment *seg, int delta) { return count_add(&seg->refs, 1, delta); }

void shl__seg_sleepers_add(shl_segment *seg, int delta) { count_add(&seg->sleepers, 0, delta); }

uint32_t shl__seg_sleepers(shl_segment *seg) {
  uint64_t cur = atomic_load(&seg->sleepers);
  return cur >> 32 == shl__fork_generation() ? (uint32_t)cur : 0;
}

void shl__seg_release(shl_segment *seg) {
  /* No holder is left: the lock keeper's list is empty (after a fork,
   * stopping only frees what the parent's keeper left). */
  shl__keeper_stop(atomic_load(&seg->lock_keeper));
  shl__seg_unplace(seg);
  shl__role_fd_close(&seg->role); /* drops the creator role, if held */
  if (seg->fd >= 0) close(seg->fd);
  pthread_mutex_destroy(&seg->lock_ops);
  free(seg);
}

int shl__seg_enter(shl_segment *seg) {
  if (atomic_load(&seg->closing)) return SHL_E_CLOSED;
  refs_add(seg, 1);
  return 0;
}

void shl__seg_put(shl_segment *seg) {
  if (refs_add(seg, -1) == 0) shl__seg_release(seg);
}

int shl__seg_role_open(const shl_segment *seg, struct shl__role_fd *r, uint64_t byte) {
  char pname[SHL__STAGE_NAME_MAX]; /* the POSIX name the object has now */
  if (seg->staged[0])
    snprintf(pname, sizeof pname, "%s", seg->staged);
  else
    snprintf(pname, sizeof pname, "%s%s", SHL_POSIX_PREFIX, seg->name);
  int rc = shl__role_fd_open(r, pname, seg->fd);
  if (rc == 0 && byte != SHL__ROLE_NONE) rc = shl__role_take(r->fd, byte);
  if (rc < 0) shl__role_fd_close(r);
  return rc;
}
