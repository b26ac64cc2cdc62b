/* Streams: one writer, many readers, a ring of typed slots in one segment.
 * docs/format.md (Streams) specifies the shared words and the protocol; this
 * file implements it. At each atomic operation on a shared word, a comment
 * names the step on the other side that it pairs with.
 *
 * Hand-off without locks. A reader pins a slot by setting its bit in its own
 * table entry, then checks that the slot still holds the frame it wants. The
 * writer, before reusing a slot, clears the slot's sequence number, then
 * checks that no reader pinned it. Both steps are sequentially consistent, so
 * either the writer sees the pin (and leaves the slot alone) or the reader
 * sees the cleared number (and looks again). The hand-off rests on these
 * invariants:
 *
 *   I1  seq == 0 means unreadable. A slot's seq is 0 while it is empty or
 *       being written; a frame's number (from 1, never repeated) is stored
 *       only after its bytes and time (publish, release).
 *   I2  A pinned slot is never rewritten: the writer clears seq, then reads
 *       every pin; a reader sets its pin, then reads seq (see above).
 *   I3  The newest slot (the one `latest` names) is never reused, so a
 *       `latest` reader always finds a frame.
 *   I4  A reader entry is owned by whoever holds its role lock, the writer
 *       role by whoever holds SHL__ROLE_WRITER: only the holder writes the
 *       entry's words (a reaper takes the lock before clearing a dead
 *       owner's), and only the lock tells life from death.
 *   I5  The writer scans entries [0, reader_hwm): a reader raises the mark
 *       before its entry shows any pin.
 *   I6  With SHL_STREAM_BLOCK, a slot whose frame a live `all` reader still
 *       wants (seq >= its next_seq) is not reused: the writer looks at
 *       next_seq again after clearing seq, a joining reader at seq again
 *       after storing next_seq.
 *   I7  No lost wake-up: a waiter reads the counter it sleeps on (`space`,
 *       the header's change counter) before it looks for work, and sleeps only
 *       while the counter is unchanged; whoever makes work bumps it after.
 *
 * Liveness comes from role locks (internal.h), never from PIDs: the writer
 * holds SHL__ROLE_WRITER and reader entry i's owner SHL__ROLE_READER(i) for
 * as long as they hold the role, and the kernel drops them at death in any
 * PID namespace. A dead writer is noticed by waiting readers; a dead
 * reader's pins are reclaimed by taking its entry's lock, by whoever needs
 * the slot or the entry. The pids in the shared words are for people only.
 *
 * A handle is used by one thread at a time (shmlane.h, Threads). Handles
 * belong to the process that opened them: in a forked child every call
 * returns SHL_E_FORKED, and closing touches nothing shared. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

/* Test programs that include this file may stop a process at these points. */
#ifndef SHL__TEST_POINT
#define SHL__TEST_POINT(name) ((void)0)
#endif

#define DEFAULT_SLOTS 8
#define DEFAULT_READERS 64
/* Without futex_waitv, readers test the writer role each period: they
 * notice a dead writer within two. With it they sleep on the liveness word
 * too and test the role when it moves; the long period only covers a death
 * wake-up lost to a sleeper that died at the same moment (see
 * wait_for_frame). While the word says "gone" but the role is still held (a
 * dying writer's files not yet closed, a new writer taking over) they look
 * again after DEATH_POLL_NS, doubling each time up to LIVENESS_PERIOD_NS. */
#define LIVENESS_PERIOD_NS 50000000
#define LIVENESS_SAFETY_NS 10000000000
#define DEATH_POLL_NS 50000
#define SLOT_BITS 8
/* Attempts to pin before treating the stream as quiet: only a writer that
 * breaks the protocol can make a reader miss this many times in a row. */
#define PIN_ATTEMPTS 4096

/* The validated control area, shared by writer and reader handles. */
struct stream {
  shl_segment *seg;
  struct shl__stream_ctl *ctl;
  struct shl__slot *slot;     /* [slots] */
  struct shl__reader *reader; /* [max_readers] */
  unsigned char *frames;
  uint64_t stride;
  uint32_t slots, max_readers, flags;
  struct shl__role_fd role; /* this handle's role locks */
};

struct shl_writer {
  struct stream s;
  struct shl__keeper *keeper; /* holds the liveness word; NULL: none could start */
  uint64_t next_seq;
  int loaned; /* slot index, -1 for none */
};

struct shl_reader {
  struct stream s;
  struct shl__reader *entry;
  uint64_t last_seq; /* newest sequence delivered */
  uint64_t next_seq; /* policy `all`: next sequence wanted */
  int64_t liveness_checked_ns;
  int64_t death_poll_ns; /* wait_for_frame's next look while the word and the role disagree */
  uint32_t policy; /* enum shl_recv_policy */
  uint32_t spin_ns;
  uint32_t max_pinned, pinned;         /* samples this reader may hold, and holds */
  uint32_t held[SHL_STREAM_MAX_SLOTS]; /* samples held per slot */
};

/* This process in the shared words: its pid, as it sees it. Information for
 * people (messages, the CLI); never used to decide liveness. */
static uint64_t self_word(void) { return (uint32_t)getpid(); }

/* A handle's own state before it is bound: no role descriptor yet. */
static void init_handle(struct stream *s) {
  s->role.fd = -1;
  s->role.prev = s->role.next = &s->role;
}

static bool inherited(const struct stream *s) {
  return shl__seg_inherited(s->seg);
}

static uint64_t slots_bytes(uint32_t slots) {
  return shl__round_up((uint64_t)slots * sizeof(struct shl__slot), 64);
}

static uint64_t ext_bytes(uint32_t slots, uint32_t readers) {
  return sizeof(struct shl__stream_ctl) + slots_bytes(slots) +
         (uint64_t)readers * sizeof(struct shl__reader);
}

/* Checks the control area against the segment and takes a private snapshot
 * of its immutable fields; a hostile peer cannot move us out of bounds. */
static int bind(struct stream *s, shl_segment *seg) {
  if (seg->kind != SHL_KIND_STREAM) return SHL_E_BAD_KIND;
  if (!seg->ext || seg->ext_size < sizeof(struct shl__stream_ctl)) return SHL_E_BAD_HEADER;
  struct shl__stream_ctl *ctl = (struct shl__stream_ctl *)(void *)seg->ext;
  uint32_t slots = ctl->slots, readers = ctl->max_readers;
  uint64_t stride = ctl->slot_stride, frame_size = ctl->frame_size, extent, total;
  if (slots < 2 || slots > SHL_STREAM_MAX_SLOTS || readers < 1 ||
      readers > SHL_STREAM_MAX_READERS || seg->ext_size < ext_bytes(slots, readers))
    return SHL_E_BAD_HEADER;
  int rc = shl__layout_extent(&seg->layout, seg->layout.itemsize, &extent);
  if (rc < 0) return rc;
  if (stride % 64 || frame_size < extent || frame_size > stride ||
      __builtin_mul_overflow(stride, (uint64_t)slots, &total) || total > seg->payload_size)
    return SHL_E_BAD_HEADER;
  s->seg = seg;
  s->ctl = ctl;
  s->slot = (struct shl__slot *)(void *)(seg->ext + sizeof *ctl);
  s->reader = (struct shl__reader *)(void *)(seg->ext + sizeof *ctl + slots_bytes(slots));
  s->frames = seg->payload;
  s->stride = stride;
  s->slots = slots;
  s->max_readers = readers;
  s->flags = ctl->flags;
  return 0;
}

/* A descriptor of this handle's own for its role locks. */
static int open_role(struct stream *s) {
  char pname[sizeof SHL_POSIX_PREFIX + SHL_NAME_MAX];
  snprintf(pname, sizeof pname, "%s%s", SHL_POSIX_PREFIX, s->seg->name);
  return shl__role_fd_open(&s->role, pname, s->seg->fd);
}

static void close_stream(struct stream *s) {
  shl__role_fd_close(&s->role); /* drops the role: after the shared words are final */
  shl_close(s->seg);
}

static uint32_t reader_hwm(const struct stream *s) {
  /* Pairs with register_reader's raise of the mark (I5). */
  uint32_t hwm = atomic_load(&s->ctl->reader_hwm);
  return hwm < s->max_readers ? hwm : s->max_readers;
}

/* Tell a writer sleeping for space that a slot may have been freed. */
static void signal_space(struct stream *s) {
  /* Pairs with shl_writer_loan's read of `space` before it claims, and of
   * writer_waiting around its sleep (I7). */
  atomic_fetch_add(&s->ctl->space, 1);
  if (atomic_load(&s->ctl->writer_waiting)) shl__futex_wake_all(&s->ctl->space);
}

/* By the entry's owner (close) or a reaper holding its lock (I4). Pins and
 * next_seq go first, owner last (release): a writer that skips an entry for
 * its owner 0 (scan_readers) loses no pin it should have seen. */
static void clear_entry(struct shl__reader *e) {
  atomic_store(&e->pinned, 0);
  atomic_store(&e->next_seq, 0);
  atomic_store_explicit(&e->owner, 0, memory_order_release);
}

/* Free the pins of entry i if its owner is gone: its lock is free (taking it
 * fails while a live reader, or another reaper, holds it). Whatever the owner
 * word says, pid 0 or garbage included, the lock alone decides. */
static bool reap_if_dead(struct stream *s, uint32_t i) {
  struct shl__reader *e = &s->reader[i];
  if (atomic_load(&e->owner) == 0) return false;
  /* Held: alive. An error: cannot tell, so alive too. */
  if (shl__role_take(s->role.fd, SHL__ROLE_READER(i)) != 0) return false;
  /* The lock is ours (I4); an owner that closed cleanly cleared the entry
   * before it dropped the lock (shl_reader_close). */
  bool reaped = atomic_load(&e->owner) != 0; /* not closed meanwhile */
  if (reaped) clear_entry(e);
  shl__role_drop(s->role.fd, SHL__ROLE_READER(i));
  if (reaped) signal_space(s);
  return reaped;
}

static bool reap_dead_readers(struct stream *s) {
  bool any = false;
  for (uint32_t i = 0, n = reader_hwm(s); i < n; i++) any |= reap_if_dead(s, i);
  return any;
}

static int64_t deadline_after(int64_t timeout_ns) {
  return shl__deadline(shl__monotonic_ns(), timeout_ns);
}

/* ---------------------------------------------------------------- writer */

static void init_ctl(void *ext, void *arg) {
  memcpy(ext, arg, sizeof(struct shl__stream_ctl));
}

static bool same_frame(const shl_layout *a, const shl_layout *b) {
  if (strcmp(a->format, b->format) != 0 || a->ndim != b->ndim) return false;
  for (uint32_t i = 0; i < a->ndim; i++)
    if (a->shape[i] != b->shape[i] || a->strides[i] != b->strides[i]) return false;
  return true;
}

/* Become the writer of an existing stream whose writer is gone: take its
 * role lock (-EBUSY while a live writer holds it). */
static int take_over(shl_writer *w, const shl_layout *frame, uint32_t slots) {
  shl_layout have;
  shl_get_layout(w->s.seg, &have);
  if (!same_frame(&have, frame) || (slots && slots != w->s.slots)) return -EINVAL;
  int rc = open_role(&w->s);
  if (rc == 0) rc = shl__role_take(w->s.role.fd, SHL__ROLE_WRITER);
  if (rc < 0) return rc;
  /* A writer killed in its futex wait left the flag set: nobody sleeps now. */
  atomic_store(&w->s.ctl->writer_waiting, 0);
  /* After the role is ours (I4); read by writer_state, for people only. */
  atomic_store(&w->s.ctl->writer, self_word());
  return 0;
}

/* Sequence numbers go on from the highest any slot or `latest` shows: a
 * writer may have died between stamping a slot and updating `latest`. */
static uint64_t highest_seq(const struct stream *s) {
  /* With the role held no one else stores seq or latest (I1: never repeated). */
  uint64_t high = atomic_load(&s->ctl->latest) >> SLOT_BITS;
  for (uint32_t i = 0; i < s->slots; i++) {
    uint64_t seq = atomic_load(&s->slot[i].seq);
    if (seq > high) high = seq;
  }
  return high;
}

/* With the role held: the liveness word names this writer's keeper from now
 * on (or says it has none); readers asleep on its previous value look again. */
static void start_keeper(shl_writer *w) {
  _Atomic uint32_t *word = &w->s.ctl->writer_alive;
  w->keeper = shl__keeper_start(word);
  if (!w->keeper) atomic_store(word, SHL__ALIVE_NO_KEEPER);
  shl__futex_wake_all(word);
}

int shl_writer_open(shl_writer **out, const char *name, const shl_layout *frame,
                    const shl_stream_opts *opts) {
  shl_stream_opts o = SHL_STREAM_OPTS_INIT;
  if (!out) return -EINVAL;
  *out = NULL;
  int rc = opts ? shl__opts_copy(&o, sizeof o, opts, opts->size) : 0;
  if (rc < 0) return rc;
  opts = &o;
  uint32_t slots = opts->slots ? opts->slots : DEFAULT_SLOTS;
  uint32_t readers = opts->max_readers ? opts->max_readers : DEFAULT_READERS;
  if (slots < 2 || slots > SHL_STREAM_MAX_SLOTS || readers > SHL_STREAM_MAX_READERS ||
      (opts->flags & ~(uint32_t)SHL_STREAM_BLOCK))
    return -EINVAL;
  shl_layout plan;
  uint64_t frame_size, payload;
  rc = shl__layout_plan(frame, &plan, &frame_size);
  if (rc < 0) return rc;
  /* Big frames start on a page, small ones on a cache line. */
  uint64_t stride = shl__round_up(frame_size ? frame_size : 1, frame_size >= 4096 ? 4096 : 64);
  if (__builtin_mul_overflow(stride, (uint64_t)slots, &payload)) return SHL_E_BAD_SHAPE;

  shl_writer *w = calloc(1, sizeof *w);
  if (!w) return -ENOMEM;
  w->loaned = -1;
  init_handle(&w->s);
  struct shl__stream_ctl init = {.slots = slots, .max_readers = readers, .flags = opts->flags,
                                 .slot_stride = stride, .frame_size = frame_size};
  atomic_init(&init.writer, self_word());
  struct shl__extra extra = {ext_bytes(slots, readers), payload, init_ctl, &init,
                             &w->s.role, SHL__ROLE_WRITER};
  shl_create_opts copts = {sizeof copts, SHL_KIND_STREAM, opts->mode, 0};
  shl_segment *seg;
  rc = shl__segment_create(&seg, name, &plan, &copts, &extra);
  bool created = rc == 0;
  if (rc == -EEXIST) {
    /* Never adopt another user's object: it could read every frame. */
    shl_open_opts oopts = SHL_OPEN_OPTS_INIT;
    oopts.owner = SHL_OWNER_UID;
    oopts.owner_uid = (uint32_t)geteuid();
    rc = shl_open_ex(&seg, name, &oopts);
  }
  if (rc == 0) {
    rc = bind(&w->s, seg);
    if (rc == 0 && !created) rc = take_over(w, &plan, opts->slots);
    if (rc < 0) {
      w->s.seg = seg;
      close_stream(&w->s);
    }
  }
  if (rc < 0) {
    free(w);
    return rc;
  }
  w->next_seq = highest_seq(&w->s) + 1;
  start_keeper(w);
  *out = w;
  return 0;
}

/* A clean close clears the writer word before the role lock goes, so that
 * readers tell it from a death (SHL_E_WRITER_CLOSED); then the liveness word,
 * unless a new writer already made it its own, which wakes sleeping readers. */
void shl_writer_close(shl_writer *w) {
  if (!w) return;
  bool mine = !inherited(&w->s);
  _Atomic uint32_t *word = &w->s.ctl->writer_alive;
  /* Pairs with writer_state: the word is 0 before the role lock drops. */
  if (mine) atomic_store(&w->s.ctl->writer, 0);
  shl__role_fd_close(&w->s.role);
  if (mine) {
    uint32_t ours = w->keeper ? shl__keeper_tid(w->keeper) : SHL__ALIVE_NO_KEEPER;
    uint32_t v = atomic_load(word);
    while ((v & (SHL__ALIVE_TID_MASK | SHL__ALIVE_DIED)) == ours &&
           !atomic_compare_exchange_weak(word, &v, 0)) {
    }
    shl__futex_wake_all(word);
  }
  shl__keeper_stop(w->keeper);
  close_stream(&w->s);
  free(w);
}

shl_segment *shl_writer_segment(const shl_writer *w) { return w->s.seg; }

uint64_t shl_writer_next_seq(const shl_writer *w) { return w->next_seq; }

/* Bits of the slots that live readers pin; and, for a blocking stream, the
 * lowest sequence a live `all` reader still wants (*floor). */
static uint64_t scan_readers(const struct stream *s, uint64_t *floor) {
  uint64_t pinned = 0;
  *floor = UINT64_MAX;
  for (uint32_t i = 0, n = reader_hwm(s); i < n; i++) {
    const struct shl__reader *e = &s->reader[i];
    /* owner pairs with register_reader's store and clear_entry's release. */
    if (atomic_load(&e->owner) == 0) continue;
    /* Pairs with pin()'s set and unpin()'s release clear (I2). */
    pinned |= atomic_load(&e->pinned);
    if (atomic_load(&e->policy) == SHL_RECV_ALL) {
      /* Pairs with start_at_head's and take_next's stores (I6). */
      uint64_t next = atomic_load(&e->next_seq);
      if (next && next < *floor) *floor = next;
    }
  }
  return pinned;
}

/* A free slot, already cleared so no reader can pin it, or -1. Prefers the
 * oldest frame, so `all` readers lose as little as possible. */
static int claim_slot(shl_writer *w) {
  struct stream *s = &w->s;
  uint64_t floor, tried = 0;
  uint64_t pinned = scan_readers(s, &floor);
  if (!(s->flags & SHL_STREAM_BLOCK)) floor = UINT64_MAX;
  /* Only this writer stores latest: the newest slot stays out (I3). */
  uint64_t latest = atomic_load(&s->ctl->latest);
  uint32_t newest = latest ? (uint32_t)(latest & ((1u << SLOT_BITS) - 1)) : UINT32_MAX;
  for (;;) {
    int best = -1;
    uint64_t best_seq = UINT64_MAX;
    for (uint32_t i = 0; i < s->slots; i++) {
      if (i == newest || ((pinned | tried) >> i) & 1) continue;
      uint64_t seq = atomic_load(&s->slot[i].seq);
      if (seq >= floor) continue; /* a blocking stream keeps what `all` readers still want */
      if (seq < best_seq || best < 0) best = (int)i, best_seq = seq;
    }
    if (best < 0) return -1;
    /* Pairs with pin()'s read of seq after its set (I2), and with
     * start_at_head's read after it stores next_seq (I6). */
    atomic_store(&s->slot[best].seq, 0);
    /* Look again: a reader may have pinned it, or a new `all` reader may
     * want it (its next_seq is stored before it checks the frame is there). */
    uint64_t now_floor;
    bool pinned_now = (scan_readers(s, &now_floor) >> best) & 1;
    bool wanted = (s->flags & SHL_STREAM_BLOCK) && best_seq >= now_floor;
    if (!pinned_now && !wanted) return best;
    /* A reader got there first: its frame stays (unlisted if pinned). */
    if (!pinned_now) atomic_store(&s->slot[best].seq, best_seq);
    tried |= 1ull << best;
  }
}

/* No slot but the newest is free of pins: waiting is up to the readers. */
static bool all_pinned(const struct stream *s) {
  uint64_t floor, pinned = scan_readers(s, &floor);
  uint64_t latest = atomic_load(&s->ctl->latest);
  uint64_t all = s->slots == 64 ? ~0ull : (1ull << s->slots) - 1;
  uint32_t newest = (uint32_t)(latest & ((1u << SLOT_BITS) - 1));
  if (latest && newest < s->slots) pinned |= 1ull << newest; /* a peer may write any slot */
  return (pinned & all) == all;
}

int shl_writer_loan(shl_writer *w, void **frame, int64_t timeout_ns) {
  struct stream *s = &w->s;
  if (inherited(s)) return SHL_E_FORKED;
  if (w->loaned >= 0) return -EBUSY;
  int64_t deadline = deadline_after(timeout_ns);
  for (;;) {
    /* Read before looking for a slot; pairs with signal_space (I7). */
    uint32_t space = atomic_load(&s->ctl->space);
    int slot = claim_slot(w);
    if (slot < 0 && reap_dead_readers(s)) slot = claim_slot(w);
    if (slot >= 0) {
      w->loaned = slot;
      *frame = s->frames + (uint64_t)slot * s->stride;
      return slot;
    }
    int64_t left = deadline - shl__monotonic_ns();
    if (left <= 0) return all_pinned(s) ? SHL_E_SLOTS_PINNED : -ETIMEDOUT;
    /* Wake on a freed slot, or re-check reader liveness each period. The
     * flag pairs with signal_space's read: a freer that sees 0 skips the
     * wake, and this sleep then returns at once, `space` having changed. */
    atomic_store(&s->ctl->writer_waiting, 1);
    shl__futex_wait(&s->ctl->space, space, left < LIVENESS_PERIOD_NS ? left : LIVENESS_PERIOD_NS);
    atomic_store(&s->ctl->writer_waiting, 0);
  }
}

int shl_writer_publish(shl_writer *w, uint64_t *seq_out) {
  struct stream *s = &w->s;
  if (inherited(s)) return SHL_E_FORKED;
  if (w->loaned < 0) return -EINVAL;
  uint32_t slot = (uint32_t)w->loaned;
  uint64_t seq = w->next_seq++;
  atomic_store_explicit(&s->slot[slot].timestamp_ns, (uint64_t)shl__monotonic_ns(),
                        memory_order_relaxed);
  /* Release: the frame's bytes and time are visible before its number (I1).
   * seq pairs with pin()'s and take_next's reads, latest with take_latest's
   * and take_next's acquire; the notify below with shl_reader_receive's
   * read of the change counter before it looks (I7). */
  atomic_store_explicit(&s->slot[slot].seq, seq, memory_order_release);
  atomic_store_explicit(&s->ctl->latest, seq << SLOT_BITS | slot, memory_order_release);
  w->loaned = -1;
  if (seq_out) *seq_out = seq;
  return shl_notify(s->seg, NULL);
}

int shl_writer_discard(shl_writer *w) {
  if (inherited(&w->s)) return SHL_E_FORKED;
  if (w->loaned < 0) return -EINVAL;
  w->loaned = -1; /* the slot's number is already 0: free for the next loan */
  return 0;
}

int shl_writer_pinned_by(const shl_writer *w, int32_t *pids, uint32_t max) {
  const struct stream *s = &w->s;
  if (inherited(s)) return SHL_E_FORKED;
  int n = 0;
  for (uint32_t i = 0, hwm = reader_hwm(s); i < hwm; i++) {
    uint64_t owner = atomic_load(&s->reader[i].owner);
    if (!owner || !atomic_load(&s->reader[i].pinned)) continue;
    if ((uint32_t)n < max) pids[n] = (int32_t)(uint32_t)owner;
    n++;
  }
  return n;
}

/* ---------------------------------------------------------------- reader */

/* An `all` reader starts at the newest frame. Its next_seq is stored before
 * it checks that the frame is still in its slot, and a blocking writer
 * clears a slot before it checks next_seq (claim_slot): either the writer
 * keeps the frame, or the reader sees it gone and starts from the new head. */
static void start_at_head(shl_reader *r) {
  struct stream *s = &r->s;
  for (int attempt = 0;; attempt++) {
    uint64_t latest = atomic_load(&s->ctl->latest);
    uint64_t head = latest >> SLOT_BITS;
    uint32_t slot = (uint32_t)(latest & ((1u << SLOT_BITS) - 1));
    SHL__TEST_POINT(start_at_head);
    r->next_seq = head ? head : 1;
    /* Pairs with claim_slot's second look at next_seq (I6); then seq is
     * read again, pairing with claim_slot's clear. */
    atomic_store(&r->entry->next_seq, r->next_seq);
    if (!head || slot >= s->slots || atomic_load(&s->slot[slot].seq) == head ||
        attempt == PIN_ATTEMPTS)
      return;
  }
}

/* Claim a free entry: one whose lock nobody holds, whatever its words say
 * (a dead reader's pins are cleared). The high-water mark goes up before the
 * entry shows any pin, so the writer scans every entry that may hold one. */
static int register_reader(shl_reader *r) {
  struct stream *s = &r->s;
  for (uint32_t i = 0; i < s->max_readers; i++) {
    if (shl__role_take(s->role.fd, SHL__ROLE_READER(i)) != 0) continue; /* in use */
    /* The mark goes up before the entry shows a pin; pairs with reader_hwm() (I5). */
    uint32_t hwm = atomic_load(&s->ctl->reader_hwm);
    while (hwm < i + 1 && !atomic_compare_exchange_weak(&s->ctl->reader_hwm, &hwm, i + 1)) {
    }
    struct shl__reader *e = &s->reader[i];
    bool stale = atomic_load(&e->pinned) != 0;
    clear_entry(e);
    atomic_store(&e->policy, r->policy);
    /* The entry is ours (I4); scan_readers reads owner, then the pins. */
    atomic_store(&e->owner, self_word());
    r->entry = e;
    start_at_head(r);
    if (stale) signal_space(s);
    return 0;
  }
  return -EUSERS;
}

int shl_reader_open(shl_reader **out, const char *name, uint32_t policy, int64_t timeout_ns) {
  shl_reader_opts opts = SHL_READER_OPTS_INIT;
  opts.policy = policy;
  opts.timeout_ns = timeout_ns;
  return shl_reader_open_ex(out, name, &opts);
}

int shl_reader_open_ex(shl_reader **out, const char *name, const shl_reader_opts *user_opts) {
  shl_reader_opts opts = SHL_READER_OPTS_INIT;
  if (!out) return -EINVAL;
  *out = NULL;
  int rc = user_opts ? shl__opts_copy(&opts, sizeof opts, user_opts, user_opts->size) : 0;
  if (rc < 0) return rc;
  if ((opts.policy != SHL_RECV_LATEST && opts.policy != SHL_RECV_ALL) || opts.reserved)
    return -EINVAL;
  shl_open_opts oopts = SHL_OPEN_OPTS_INIT;
  /* The stream may not exist yet, or its writer may still be creating it:
   * wait for it, within the caller's time. */
  oopts.flags = SHL_OPEN_READONLY | SHL_OPEN_WAIT_NAME;
  oopts.timeout_ns = opts.timeout_ns;
  oopts.owner = opts.owner;
  oopts.owner_uid = opts.owner_uid;
  shl_segment *seg;
  rc = shl_open_ex(&seg, name, &oopts);
  if (rc < 0) return rc;
  shl_reader *r = calloc(1, sizeof *r);
  if (!r) {
    shl_close(seg);
    return -ENOMEM;
  }
  init_handle(&r->s);
  r->s.seg = seg;
  r->policy = opts.policy;
  if (!(seg->flags & SHL__SEG_HDR_WRITABLE)) rc = SHL_E_READONLY; /* cannot pin */
  else if ((rc = bind(&r->s, seg)) == 0) {
    /* Two at least where the ring allows it: a loop that receives the next
     * sample still holds the previous one. */
    uint32_t half = r->s.slots / 2, fair = half > 3 ? half - 1 : 2;
    r->max_pinned = opts.max_pinned ? opts.max_pinned : r->s.slots >= 4 ? fair : 1;
    rc = open_role(&r->s);
    if (rc == 0) rc = register_reader(r);
  }
  if (rc < 0) {
    close_stream(&r->s);
    free(r);
    return rc;
  }
  *out = r;
  return 0;
}

/* Leave the entry: its words cleared before its lock goes. */
void shl_reader_close(shl_reader *r) {
  if (!r) return;
  if (!inherited(&r->s)) {
    clear_entry(r->entry);
    signal_space(&r->s);
  }
  close_stream(&r->s);
  free(r);
}

shl_segment *shl_reader_segment(const shl_reader *r) { return r->s.seg; }

static void unpin(shl_reader *r, uint32_t slot) {
  r->pinned--;
  if (--r->held[slot] > 0) return;
  /* Release: this reader's reads of the frame come before the writer, in
   * scan_readers, can see the slot free and rewrite it (I2). */
  atomic_fetch_and_explicit(&r->entry->pinned, ~(1ull << slot), memory_order_release);
  signal_space(&r->s);
}

/* Pin `slot` if it still holds frame `seq`. */
static bool pin(shl_reader *r, uint32_t slot, uint64_t seq) {
  SHL__TEST_POINT(pin);
  r->pinned++;
  /* Set, then read seq: pairs with claim_slot's clear, then scan (I2). */
  if (r->held[slot]++ == 0) atomic_fetch_or(&r->entry->pinned, 1ull << slot);
  if (atomic_load(&r->s.slot[slot].seq) == seq) return true;
  unpin(r, slot);
  return false;
}

static void deliver(shl_reader *r, uint32_t slot, uint64_t seq, uint64_t lost, shl_sample *out) {
  out->data = r->s.frames + (uint64_t)slot * r->s.stride;
  out->seq = seq;
  /* Relaxed: ordered by the acquire of latest or seq that found the frame (I1). */
  out->timestamp_ns = atomic_load_explicit(&r->s.slot[slot].timestamp_ns, memory_order_relaxed);
  out->lost = lost;
  out->slot = slot;
  r->last_seq = seq;
}

/* 0 with a pinned sample, -EAGAIN when nothing newer is published. */
static int take_latest(shl_reader *r, shl_sample *out) {
  for (int attempt = 0; attempt < PIN_ATTEMPTS; attempt++) {
    /* Acquire: pairs with shl_writer_publish's release of latest. */
    uint64_t latest = atomic_load_explicit(&r->s.ctl->latest, memory_order_acquire);
    uint64_t seq = latest >> SLOT_BITS;
    uint32_t slot = (uint32_t)(latest & ((1u << SLOT_BITS) - 1));
    if (seq <= r->last_seq) return -EAGAIN;
    if (slot >= r->s.slots) return SHL_E_BAD_HEADER;
    if (pin(r, slot, seq)) {
      deliver(r, slot, seq, r->last_seq ? seq - r->last_seq - 1 : 0, out);
      return 0;
    }
  }
  return -EAGAIN;
}

static int take_next(shl_reader *r, shl_sample *out) {
  struct stream *s = &r->s;
  for (int attempt = 0; attempt < PIN_ATTEMPTS; attempt++) {
    /* Acquire: pairs with shl_writer_publish's release of latest. */
    uint64_t head = atomic_load_explicit(&s->ctl->latest, memory_order_acquire) >> SLOT_BITS;
    uint64_t want = r->next_seq;
    if (want > head) return -EAGAIN;
    /* The wanted frame, or else the oldest one after it: those between are lost. */
    int best = -1;
    uint64_t best_seq = UINT64_MAX;
    for (uint32_t i = 0; i < s->slots; i++) {
      /* Pairs with publish's release; 0 (being written) is below want (I1). */
      uint64_t seq = atomic_load(&s->slot[i].seq);
      if (seq >= want && seq < best_seq) best = (int)i, best_seq = seq;
    }
    if (best < 0 || !pin(r, (uint32_t)best, best_seq)) continue;
    deliver(r, (uint32_t)best, best_seq, best_seq - want, out);
    r->next_seq = best_seq + 1;
    /* Pairs with scan_readers' floor: a blocking writer may now reuse it (I6). */
    atomic_store_explicit(&r->entry->next_seq, r->next_seq, memory_order_release);
    if (s->flags & SHL_STREAM_BLOCK) signal_space(s);
    return 0;
  }
  return -EAGAIN;
}

/* 0 while a writer holds the stream (or that cannot be told), else why not:
 * a clean close clears the writer word before it drops the role lock. The
 * segment's own descriptor holds no role, so any lock seen is another's. */
static int writer_state(const struct stream *s) {
  if (shl__role_held(s->seg->fd, SHL__ROLE_WRITER) != 0) return 0;
  /* Read after the lock is seen free: pairs with shl_writer_close's store. */
  return atomic_load(&s->ctl->writer) ? SHL_E_WRITER_GONE : SHL_E_WRITER_CLOSED;
}

/* A writer that the liveness word says is alive: its keeper holds it. */
static bool alive_says_live(uint32_t v) {
  uint32_t tid = v & SHL__ALIVE_TID_MASK;
  return tid != 0 && tid != SHL__ALIVE_NO_KEEPER && !(v & SHL__ALIVE_DIED);
}

/* Sleep until the change counter moves from `changes`, the deadline passes
 * or the writer is gone. -EAGAIN: look again; SHL_E_WRITER_GONE or
 * SHL_E_WRITER_CLOSED (decided by the role lock, writer_state); -ETIMEDOUT;
 * -EINTR. With futex_waitv the reader sleeps on the counter and the liveness
 * word at once, with no timer while the word names a live keeper: an idle
 * reader costs no wake-up, and the kernel wakes one sleeper at the writer's
 * death, which wakes the others. Without it, slices of LIVENESS_PERIOD_NS. */
static int wait_for_frame(shl_reader *r, uint64_t changes, int64_t deadline, shl_wait_opts *wait) {
  struct stream *s = &r->s;
  _Atomic uint32_t *word = &s->ctl->writer_alive;
  bool waitv = shl__futex_waitv_usable();
  uint32_t alive = atomic_load(word);
  bool live = waitv && alive_says_live(alive);
  int64_t period = LIVENESS_PERIOD_NS;
  if (live) {
    period = LIVENESS_SAFETY_NS;
    r->death_poll_ns = DEATH_POLL_NS;
  } else if (waitv && (alive & SHL__ALIVE_TID_MASK) != SHL__ALIVE_NO_KEEPER) {
    if (r->death_poll_ns < DEATH_POLL_NS) r->death_poll_ns = DEATH_POLL_NS;
    period = r->death_poll_ns;
    r->death_poll_ns = period < LIVENESS_PERIOD_NS / 2 ? 2 * period : LIVENESS_PERIOD_NS;
  }
  int64_t now = shl__monotonic_ns();
  if (now - r->liveness_checked_ns >= period) {
    r->liveness_checked_ns = now;
    int gone = writer_state(s);
    if (gone < 0) return gone; /* nothing new, and nobody left to publish it */
  }
  int64_t left = deadline - now;
  if (left <= 0) return -ETIMEDOUT;
  int64_t slice = left < period ? left : period;
  int rc;
  if (!waitv) {
    rc = shl_wait_ex(s->seg, changes, slice, wait, NULL);
  } else {
    /* The kernel wakes a sleeper at the death only if WAITERS is set. */
    uint32_t expected = live ? alive | SHL__ALIVE_WAITERS : alive;
    if (expected != alive && !atomic_compare_exchange_strong(word, &alive, expected))
      return -EAGAIN; /* the word moved meanwhile: look at it again */
    struct shl__also also = {word, expected};
    rc = shl__wait_also(s->seg, changes, slice, wait, &also, NULL);
    /* The kernel wakes one sleeper at a death: pass it on to the others. */
    if (atomic_load(word) != expected) shl__futex_wake_all(word);
  }
  if (rc == -EINTR) return rc;
  wait->spin_ns = 0; /* spin once per call: an idle stream costs no CPU */
  return -EAGAIN;
}

int shl_reader_receive(shl_reader *r, shl_sample *out, int64_t timeout_ns, uint32_t flags) {
  if (inherited(&r->s)) return SHL_E_FORKED;
  if (r->pinned >= r->max_pinned) return SHL_E_PIN_LIMIT;
  int64_t deadline = deadline_after(timeout_ns);
  shl_wait_opts wait = {sizeof wait, flags & SHL_WAIT_INTERRUPTIBLE, r->spin_ns};
  for (;;) {
    /* Read before looking; pairs with publish's notify (I7). */
    uint64_t changes = shl_changes(r->s.seg);
    int rc = r->policy == SHL_RECV_ALL ? take_next(r, out) : take_latest(r, out);
    if (rc != -EAGAIN) return rc;
    int why = wait_for_frame(r, changes, deadline, &wait);
    if (why == SHL_E_WRITER_GONE || why == SHL_E_WRITER_CLOSED) {
      rc = r->policy == SHL_RECV_ALL ? take_next(r, out) : take_latest(r, out);
      return rc == -EAGAIN ? why : rc;
    }
    if (why != -EAGAIN) return why;
  }
}

void shl_reader_set_spin(shl_reader *r, uint32_t spin_ns) { r->spin_ns = spin_ns; }

int shl_reader_release(shl_reader *r, const shl_sample *sample) {
  if (inherited(&r->s)) return SHL_E_FORKED;
  if (!sample || sample->slot >= r->s.slots || r->held[sample->slot] == 0) return -EINVAL;
  unpin(r, sample->slot);
  return 0;
}

int shl_stream_get_info(const shl_segment *seg, shl_stream_info *out) {
  struct stream s;
  int rc = bind(&s, (shl_segment *)seg);
  if (rc < 0) return rc;
  shl_stream_info info = SHL_STREAM_INFO_INIT;
  info.slots = s.slots;
  info.max_readers = s.max_readers;
  info.flags = s.flags;
  info.slot_stride = s.stride;
  /* A snapshot for people: from the role locks ("cannot tell" counts as
   * alive) and single loads, with no ordering between them. */
  for (uint32_t i = 0, n = reader_hwm(&s); i < n; i++)
    if (shl__role_held(seg->fd, SHL__ROLE_READER(i)) != 0) info.readers_alive++;
  info.writer_alive = shl__role_held(seg->fd, SHL__ROLE_WRITER);
  info.writer_pid = (int32_t)(uint32_t)atomic_load(&s.ctl->writer);
  uint64_t latest = atomic_load(&s.ctl->latest);
  info.last_seq = latest >> SLOT_BITS;
  uint32_t slot = (uint32_t)(latest & ((1u << SLOT_BITS) - 1));
  if (latest && slot < s.slots) info.last_timestamp_ns = atomic_load(&s.slot[slot].timestamp_ns);
  return shl__info_copy(out, &info, sizeof info);
}
