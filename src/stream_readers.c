/* Streams' setup and lifecycle, the readers' side: registering a reader on
 * a stream (the joining side of I5 and I6), moving it to a stream that
 * replaced its own (stream_setup.c, Replacement), closing. The protocol
 * these steps join is stream.c's. */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#include "stream.h"

/* An `all` reader starts at the newest frame. Its next_seq is stored, then
 * `latest` read again: unchanged, no frame has been published since, so the
 * claim of every later loan scans after the store (publish's notify, a
 * seq_cst add, comes between) and keeps what it wants (I6), and the claim
 * under way cannot take the head's slot, the newest (I3). Changed: the
 * writer may have scanned before the store and be deciding about the slot
 * of the frame it names, so start again from the new head; a reader that
 * took a frame under a mark for the next one would lose it (take_next). */
static void start_at_head(shl_reader *r) {
  struct ring *ring = r->cur;
  struct stream *s = &ring->s;
  uint64_t latest = atomic_load(&s->ctl->latest);
  for (int attempt = 0;; attempt++) {
    uint64_t head = latest_seq(latest);
    SHL__TEST_POINT(start_at_head);
    if (head > SHL__SEQ_MAX) head = 0; /* a peer's damage: no frame to start from */
    /* A reader waiting for a new writer starts after the frames it found. */
    r->next_seq = r->await_writer ? (head > s->base_seq ? head : s->base_seq) + 1
                                  : head ? head : s->base_seq + 1;
    /* Pairs with claim_slot's scans (I6). */
    atomic_store(&ring->entry->next_seq, r->next_seq);
    uint64_t now = atomic_load(&s->ctl->latest);
    if (now == latest || attempt == PIN_ATTEMPTS) return;
    latest = now;
  }
}

/* Claim a free entry: one whose lock nobody holds, whatever its words say
 * (a dead reader's pins are cleared). The high-water mark goes up before the
 * entry shows any pin, so the writer scans every entry that may hold one.
 * Its next_seq is the caller's to set. */
static int register_reader(struct ring *ring, uint32_t policy) {
  struct stream *s = &ring->s;
  for (uint32_t i = 0; i < s->max_readers; i++) {
    if (shl__role_take(s->role.fd, SHL__ROLE_READER(i)) != 0) continue; /* in use */
    /* The mark goes up before the entry shows a pin; pairs with reader_hwm() (I5). */
    uint32_t hwm = atomic_load(&s->ctl->reader_hwm);
    while (hwm < i + 1 && !atomic_compare_exchange_weak(&s->ctl->reader_hwm, &hwm, i + 1)) {
    }
    struct shl__reader *e = &s->reader[i];
    bool stale = atomic_load(&e->pinned) != 0;
    clear_entry(e);
    atomic_store(&e->policy, policy);
    /* The entry is ours (I4); scan_readers reads owner, then the pins. */
    atomic_store(&e->owner, self_word());
    ring->entry = e;
    if (stale) signal_space(s);
    return 0;
  }
  return -EUSERS;
}

/* A reader pins frames: 0 if it can write the stream's words, else why not
 * (a read-only mount is named as such, as a writer is told). */
static int can_pin(const shl_segment *seg) {
  struct statvfs fs;
  if (seg->flags & SHL__SEG_HDR_WRITABLE) return 0;
  return fstatvfs(seg->fd, &fs) == 0 && (fs.f_flag & ST_RDONLY) ? -EROFS : SHL_E_READONLY;
}

/* Register on the stream open as seg (taken over, closed on failure). */
static int open_ring(struct ring **out, shl_segment *seg, uint32_t policy) {
  struct ring *ring = calloc(1, sizeof *ring);
  if (!ring) {
    shl_close(seg);
    return -ENOMEM;
  }
  init_handle(&ring->s);
  ring->s.seg = seg;
  int rc = can_pin(seg);
  if (rc == 0) rc = shl__stream_bind(&ring->s, seg);
  if (rc == 0) rc = shl__stream_check_mode(seg);
  if (rc == 0) rc = shl__seg_role_open(seg, &ring->s.role, SHL__ROLE_NONE);
  if (rc == 0) rc = register_reader(ring, policy);
  if (rc < 0) {
    shl__stream_close(&ring->s);
    free(ring);
    return rc;
  }
  *out = ring;
  return 0;
}

/* Leave the entry: its words cleared before its lock goes. */
void shl__ring_close(struct ring *ring) {
  if (!ring) return;
  if (!inherited(&ring->s)) {
    clear_entry(ring->entry);
    signal_space(&ring->s);
  }
  shl__stream_close(&ring->s);
  free(ring);
}

/* Two at least where the ring allows it: a loop that receives the next
 * sample still holds the previous one. */
static uint32_t default_max_pinned(uint32_t slots) {
  uint32_t half = slots / 2, fair = half > 3 ? half - 1 : 2;
  return slots >= 4 ? fair : 1;
}

int shl_reader_open(shl_reader **out, const char *name, uint32_t policy, int64_t timeout_ns) {
  shl_reader_opts opts = SHL_READER_OPTS_INIT;
  opts.policy = policy;
  opts.timeout_ns = timeout_ns;
  return shl_reader_open_ex(out, name, &opts);
}

/* Join the stream `name` holds as r's ring: read-only, owners as r accepts.
 * 1 (nothing joined) if it is `old`'s very object. The name may hold
 * another object by the time the role is opened (a replacement swapped in,
 * a stream made again: -ESTALE): that one is opened then, a few times. */
static int join_named(struct ring **out, const shl_reader *r, const char *name, uint32_t flags,
                      int64_t timeout_ns, const shl_segment *old) {
  shl_open_opts oopts = SHL_OPEN_OPTS_INIT;
  oopts.flags = SHL_OPEN_READONLY | flags;
  oopts.timeout_ns = timeout_ns;
  oopts.owner = r->owner;
  oopts.owner_uid = r->owner_uid;
  int rc = -ESTALE;
  for (int tries = 0; rc == -ESTALE && tries < 8; tries++) {
    shl_segment *seg;
    struct stat a, b;
    if ((rc = shl_open_ex(&seg, name, &oopts)) < 0) break;
    if (old && fstat(seg->fd, &a) == 0 && fstat(old->fd, &b) == 0 && a.st_ino == b.st_ino &&
        a.st_dev == b.st_dev) {
      shl_close(seg);
      return 1;
    }
    rc = open_ring(out, seg, r->policy);
  }
  return rc;
}

int shl_reader_open_ex(shl_reader **out, const char *name, const shl_reader_opts *user_opts) {
  shl_reader_opts opts = SHL_READER_OPTS_INIT;
  if (!out) return -EINVAL;
  *out = NULL;
  int rc = user_opts ? shl__opts_copy(&opts, &shl__reader_opts_fields, user_opts) : 0;
  if (rc < 0) return rc;
  if ((opts.policy != SHL_RECV_LATEST && opts.policy != SHL_RECV_ALL) ||
      (opts.flags & ~(uint32_t)(SHL_READER_NO_FOLLOW | SHL_READER_KEEP_LAST)))
    return -EINVAL;
  /* The stream may not exist yet, or its writer may still be creating it:
   * wait for it, within the caller's time. */
  int64_t asked_ns = shl__realtime_ns();
  shl_reader *r = calloc(1, sizeof *r);
  if (!r) return -ENOMEM;
  r->policy = opts.policy;
  r->flags = opts.flags;
  r->owner = opts.owner;
  r->owner_uid = opts.owner_uid;
  rc = join_named(&r->cur, r, name, SHL_OPEN_WAIT_NAME, opts.timeout_ns, NULL);
  if (rc < 0) {
    free(r);
    return rc;
  }
  shl_segment *seg = r->cur->s.seg;
  r->max_pinned_asked = opts.max_pinned;
  r->max_pinned = opts.max_pinned ? opts.max_pinned : default_max_pinned(r->cur->s.slots);
  /* A stream left by its writer before this reader came (an earlier run's):
   * its frames are not new, and the reader waits for a writer as for a name
   * not there yet. One made while the reader waited for it is this run's,
   * however fast its writer was. */
  bool earlier = (int64_t)seg->hdr->created_ns < asked_ns;
  if (!(opts.flags & SHL_READER_KEEP_LAST) && earlier && writer_state(&r->cur->s) < 0) {
    r->await_writer = true;
    uint64_t head = latest_seq(atomic_load(&r->cur->s.ctl->latest));
    r->last_seq = head <= SHL__SEQ_MAX ? head : 0;
  }
  start_at_head(r);
  *out = r;
  return 0;
}

void shl_reader_close(shl_reader *r) {
  if (!r) return;
  for (struct ring *ring; (ring = detach(&r->left));) {
    r->left = ring->next;
    shl__ring_close(ring);
  }
  shl__ring_close(detach(&r->cur));
  SHL__TEST_POINT(reader_rings_closed);
  free(r);
}

/* Move to the stream the name holds now: 1 moved, 0 nothing to move to
 * (no stream under the name yet, or this very one), or an error. Frame
 * numbers that go on across the move keep counting what this reader missed
 * in `lost`; numbers that start again cannot (the gap is unknown). The ring
 * left stays while its samples are held. */
int shl__reader_follow(shl_reader *r) {
  struct ring *old = r->cur, *ring;
  /* 1: the name came back to this very stream. */
  int rc = join_named(&ring, r, old->s.seg->name, 0, 0, old->s.seg);
  if (rc == -ENOENT || rc == SHL_E_NOT_READY || rc == 1) return 0;
  if (rc < 0) return rc;
  uint64_t base = ring->s.base_seq;
  if (base < r->last_seq || r->next_seq > base + 1) {
    r->last_seq = base;
    r->next_seq = base + 1;
  }
  if (!r->next_seq) r->next_seq = base + 1;
  atomic_store(&ring->entry->next_seq, r->next_seq); /* as start_at_head's (I6) */
  atomic_store_explicit(&ring->entry->lost, r->lost, memory_order_relaxed); /* its count goes on */
  /* Registered here: a blocking writer of this stream no longer keeps
   * frames for the old entry (followers_floor). */
  atomic_store(&old->entry->next_seq, NEXT_SEQ_FOLLOWED);
  signal_space(&ring->s);
  r->cur = ring;
  r->moved = true;
  r->await_writer = false;
  if (old->pinned) {
    old->next = r->left;
    r->left = old;
  } else {
    shl__ring_close(old);
  }
  if (!r->max_pinned_asked) r->max_pinned = default_max_pinned(ring->s.slots);
  if (r->pace_on) shl__pace_reset(&r->pace, atomic_load(&ring->s.ctl->period_ns));
  return 1;
}
