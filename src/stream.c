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
 * PID namespace. Only processes that may write a stream can open it (its
 * mode never grants read alone), so no other user can hold those locks or
 * sleep on its words. A dead writer is noticed by waiting readers: each
 * sleeps on its own entry's liveness word, which the writer's keeper holds
 * as a robust futex, so the kernel wakes every one of them at the death. A
 * dead reader's pins are reclaimed by taking its entry's lock, by whoever
 * needs the slot or the entry. The pids in the shared words are for people.
 *
 * Where the steps live: this file holds the data path (claim, publish,
 * pin/unpin, take, reap, wait, receive); stream_setup.c the steps that join
 * and leave a stream (a writer's takeover and replacement, a reader's
 * registration with the joining side of I5 and I6, following, closing), and
 * calls nothing here; stream.h the few steps both take (signal_space,
 * clear_entry, reader_hwm, writer_state).
 *
 * A handle is used by one thread at a time (shmlane.h, Threads), but for
 * the wake-up calls, which touch only the handle's wake word. Handles
 * belong to the process that opened them: in a forked child every call
 * returns SHL_E_FORKED, and closing touches nothing shared. */
#include <assert.h>
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "stream.h"

/* Without futex_waitv, readers test the writer role each period: they
 * notice a dead writer within two. With it they sleep on their liveness word
 * too and test the role when it moves; the long period is only a safety net
 * (a word a peer with write access scribbled on). While the word says the
 * keeper died but the role is still held (a dying writer's files are closed
 * after its threads' robust lists are walked) they look again after
 * DEATH_POLL_NS, doubling each time up to DEATH_POLL_MAX_NS; with no writer
 * at all (or one without a keeper), every LIVENESS_PERIOD_NS. */
#ifndef LIVENESS_PERIOD_NS /* a test that includes this file may make it a variable */
#define LIVENESS_PERIOD_NS 50000000
#endif
#define LIVENESS_SAFETY_NS 10000000000
#define DEATH_POLL_NS 50000
#define DEATH_POLL_MAX_NS 5000000

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

/* A wake-up (shl_reader_wake, shl_writer_wake) from any thread: bumped
 * before the futex wake of whatever word the handle's thread sleeps on. */
static void wake_bump(struct wake *k) { atomic_fetch_add(&k->word, 1); }

/* Before a handle's thread sleeps (not instead of a time-out): true once
 * for each new wake-up, which the caller answers with -EINTR; else *word is
 * the value to sleep on, so that a wake-up landing after this read ends
 * the sleep (the futex sees the word moved). Pairs with wake_bump. */
static bool wake_taken(struct wake *k, uint32_t *word) {
  *word = atomic_load(&k->word);
  if (*word == k->seen) return false;
  k->seen = *word;
  return true;
}

/* ---------------------------------------------------------------- writer */

int shl_writer_set_next_seq(shl_writer *w, uint64_t seq) {
  if (inherited(&w->s)) return SHL_E_FORKED;
  if (w->loaned >= 0) return -EBUSY;
  if (seq < w->next_seq || seq > SHL__SEQ_MAX) return -EINVAL;
  w->next_seq = seq;
  return 0;
}

int shl_writer_set_period(shl_writer *w, uint64_t period_ns) {
  if (inherited(&w->s)) return SHL_E_FORKED;
  /* Only the writer stores it; readers take it as a first guess of the pace. */
  atomic_store(&w->s.ctl->period_ns, period_ns);
  return 0;
}

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

/* A free slot, already cleared so no reader can pin it, or -1. While an
 * `all` reader has a place in the stream, the oldest frame's, so such
 * readers lose as little as possible. Otherwise no frame but the newest is
 * wanted, and the slot lent is the most recently written free one: its
 * memory, touched a frame or two ago, is the warmest in the cache, where
 * the oldest's was last touched a round of every slot ago. */
static int claim_slot(shl_writer *w) {
  struct stream *s = &w->s;
  uint64_t floor, tried = 0;
  /* Readers of the stream this one replaced, on their way: looked at first,
   * as a follower registers here before it marks its old entry followed
   * (shl__reader_follow), so the scan below finds one this look missed. */
  uint64_t coming = w->prev.seg ? shl__followers_floor(w) : UINT64_MAX;
  uint64_t pinned = scan_readers(s, &floor);
  SHL__TEST_POINT(claim_slot_scanned);
  bool oldest = floor != UINT64_MAX || coming != UINT64_MAX;
  if (!(s->flags & SHL_STREAM_BLOCK)) floor = UINT64_MAX;
  if (coming < floor) floor = coming;
  /* Only this writer stores latest: the newest slot stays out (I3). */
  uint64_t latest = atomic_load(&s->ctl->latest);
  uint32_t newest = latest ? latest_slot(latest) : UINT32_MAX;
  for (;;) {
    int best = -1;
    uint64_t best_seq = UINT64_MAX;
    for (uint32_t i = 0; i < s->slots; i++) {
      if (i == newest || ((pinned | tried) >> i) & 1) continue;
      uint64_t seq = atomic_load(&s->slot[i].seq);
      if (seq >= floor) continue; /* a blocking stream keeps what `all` readers still want */
      if (best < 0 || (oldest ? seq < best_seq : seq > best_seq)) best = (int)i, best_seq = seq;
    }
    if (best < 0) return -1;
    assert((uint32_t)best != newest); /* I3 */
    /* Unreadable while we decide, but not skipped: a reader seeing the mark
     * looks again (take_next). Pairs with pin()'s read of seq after its set
     * (I2); the look below finds a reader that came since the scan (I6). */
    atomic_store(&s->slot[best].seq, SHL__SEQ_RECLAIM);
    SHL__TEST_POINT(claim_slot);
    /* Look again: a reader may have pinned it, or a new `all` reader may
     * want it (its next_seq is stored before it checks the frame is there). */
    uint64_t now_floor;
    bool pinned_now = (scan_readers(s, &now_floor) >> best) & 1;
    bool wanted = (s->flags & SHL_STREAM_BLOCK) && best_seq >= now_floor;
    /* Ours (0: being written, I1); a reader's, unlisted; or its frame back. */
    atomic_store(&s->slot[best].seq, wanted && !pinned_now ? best_seq : 0);
    SHL__TEST_POINT(claim_slot_decided);
    if (!pinned_now && !wanted) return best;
    tried |= 1ull << best;
  }
}

/* No slot but the newest is free of pins: waiting is up to the readers. */
static bool all_pinned(const struct stream *s) {
  uint64_t floor, pinned = scan_readers(s, &floor);
  uint64_t latest = atomic_load(&s->ctl->latest);
  uint64_t all = slots_mask(s->slots);
  uint32_t newest = latest_slot(latest);
  if (latest && newest < s->slots) pinned |= 1ull << newest; /* a peer may write any slot */
  return (pinned & all) == all;
}

/* The words publish stores to, brought into this CPU's cache now by a
 * store of the value they hold (only this writer stores `latest`; an
 * addition of 0 to the change counter changes nothing for anyone): the
 * frame is filled in between, and publish then need not wait for another
 * CPU to give the lines up before it wakes a sleeping reader. The slot's
 * line is ours already (claim_slot stored its number). */
static void own_publish_lines(struct stream *s) {
  atomic_fetch_add_explicit(&s->ctl->latest, 0, memory_order_relaxed);
  atomic_fetch_add_explicit(&s->seg->hdr->changes, 0, memory_order_relaxed);
}

int shl_writer_loan(shl_writer *w, void **frame, int64_t timeout_ns) {
  struct stream *s = &w->s;
  if (inherited(s)) return SHL_E_FORKED;
  if (!frame) return -EINVAL;
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
      own_publish_lines(s);
      return slot;
    }
    int64_t left = deadline - shl__monotonic_ns();
    if (left <= 0) return all_pinned(s) ? SHL_E_SLOTS_PINNED : -ETIMEDOUT;
    uint32_t wake;
    if (wake_taken(&w->wake, &wake)) return -EINTR; /* no slot is held */
    /* Wake on a freed slot, or re-check reader liveness each period. */
    wait_space(s, space, left < LIVENESS_PERIOD_NS ? left : LIVENESS_PERIOD_NS);
  }
}

/* The loan sleeps on `space` alone (the path a blocking stream's writer
 * takes at every frame costs what it did): the wake moves it as a freed slot
 * would, and the loan, seeing no slot, finds the wake (I7: `space` was read
 * before the wake word). */
void shl_writer_wake(shl_writer *w) {
  wake_bump(&w->wake);
  atomic_fetch_add(&w->s.ctl->space, 1);
  shl__futex_wake_all(&w->s.ctl->space);
}

int shl_writer_publish(shl_writer *w, uint64_t *seq_out) {
  struct stream *s = &w->s;
  if (inherited(s)) return SHL_E_FORKED;
  if (w->loaned < 0) return -EINVAL;
  if (w->next_seq > SHL__SEQ_MAX) return -EOVERFLOW;
  uint32_t slot = (uint32_t)w->loaned;
  uint64_t seq = w->next_seq++;
  /* The loan is a slot of this ring, claimed under the writer role (I4);
   * its number goes on past every number of this stream (I1). */
  assert(slot < s->slots && s->role.fd >= 0 && seq > s->base_seq);
  atomic_store_explicit(&s->slot[slot].timestamp_ns, (uint64_t)shl__monotonic_ns(),
                        memory_order_relaxed);
  /* Release: the frame's bytes and time are visible before its number (I1).
   * seq pairs with pin()'s and take_next's reads, latest with take_latest's
   * and take_next's acquire; the notify below with shl_reader_receive's
   * read of the change counter before it looks (I7). latest is seq_cst: in
   * the one order of such operations it comes before the next claim's scan
   * of next_seq, as a joiner's store of next_seq before its second read of
   * latest (I6); release alone would leave that to the CPU. */
  atomic_store_explicit(&s->slot[slot].seq, seq, memory_order_release);
  atomic_store(&s->ctl->latest, latest_pack(seq, slot));
  w->loaned = -1;
  if (seq_out) *seq_out = seq;
  return shl_notify(s->seg, NULL);
}

void *shl_writer_meta(const shl_writer *w) {
  const struct stream *s = &w->s;
  if (w->loaned < 0 || !s->meta_size) return NULL;
  return s->frames + (uint64_t)w->loaned * s->stride + s->meta_offset;
}

int shl_writer_discard(shl_writer *w) {
  if (inherited(&w->s)) return SHL_E_FORKED;
  if (w->loaned < 0) return -EINVAL;
  w->loaned = -1; /* the slot's number is already 0: free for the next loan */
  return 0;
}

/* ---------------------------------------------------------------- reader */

/* The ring a sample came from: the one whose frames hold its data. */
static struct ring *ring_of(const shl_reader *r, const shl_sample *sample) {
  for (struct ring *ring = r->cur; ring; ring = ring == r->cur ? r->left : ring->next) {
    const struct stream *s = &ring->s;
    uintptr_t at = (uintptr_t)sample->data, base = (uintptr_t)s->frames;
    if (sample->slot < s->slots && at == base + sample->slot * s->stride) return ring;
  }
  return NULL;
}

#ifndef NDEBUG
/* The samples a reader holds, counted three ways in this process: per slot
 * of each ring, per ring, in all. (The entry's `pinned` bits are shared
 * words a peer may scribble on: what a peer can change is never asserted.) */
static bool counts_agree(const shl_reader *r) {
  uint32_t total = 0;
  for (const struct ring *ring = r->cur; ring; ring = ring == r->cur ? r->left : ring->next) {
    uint32_t held = 0;
    for (uint32_t i = 0; i < ring->s.slots; i++) held += ring->held[i];
    if (held != ring->pinned) return false;
    total += held;
  }
  return total == r->pinned;
}
#endif

static void unpin(shl_reader *r, struct ring *ring, uint32_t slot) {
  assert(ring->held[slot] > 0 && counts_agree(r)); /* I2, this process's side */
  r->pinned--;
  ring->pinned--;
  if (--ring->held[slot] > 0) return;
  /* Release: this reader's reads of the frame come before the writer, in
   * scan_readers, can see the slot free and rewrite it (I2). */
  atomic_fetch_and_explicit(&ring->entry->pinned, ~(1ull << slot), memory_order_release);
  signal_space(&ring->s);
  if (ring == r->cur || ring->pinned) return;
  /* A ring left behind, its last sample released: leave it. */
  for (struct ring **p = &r->left; *p; p = &(*p)->next)
    if (*p == ring) {
      *p = ring->next;
      break;
    }
  shl__ring_close(ring);
}

/* Pin `slot` of the current ring if it still holds frame `seq`. */
static bool pin(shl_reader *r, uint32_t slot, uint64_t seq) {
  struct ring *ring = r->cur;
  SHL__TEST_POINT(pin);
  /* I2, this process's side; I4: the entry is ours, through our role. */
  assert(slot < ring->s.slots && ring->s.role.fd >= 0 && counts_agree(r));
  r->pinned++;
  ring->pinned++;
  /* Set, then read seq: pairs with claim_slot's clear, then scan (I2). */
  if (ring->held[slot]++ == 0) atomic_fetch_or(&ring->entry->pinned, 1ull << slot);
  if (atomic_load(&ring->s.slot[slot].seq) == seq) return true;
  unpin(r, ring, slot);
  return false;
}

/* Fills the fields of 0.1 alone: an older caller's sample ends there
 * (shl_reader_receive). */
static void deliver(shl_reader *r, uint32_t slot, uint64_t seq, uint64_t lost, shl_sample *out) {
  const struct stream *s = &r->cur->s;
  out->data = s->frames + (uint64_t)slot * s->stride;
  out->seq = seq;
  /* Relaxed: ordered by the acquire of latest or seq that found the frame (I1). */
  out->timestamp_ns = atomic_load_explicit(&s->slot[slot].timestamp_ns, memory_order_relaxed);
  out->lost = lost;
  if (lost) {
    /* Stored only when it grows, so a reader that misses nothing writes
     * nothing more per frame; relaxed: a figure for people, ordered with
     * nothing (shl_stream_get_reader). */
    r->lost += lost;
    atomic_store_explicit(&r->cur->entry->lost, r->lost, memory_order_relaxed);
  }
  out->slot = slot;
  out->flags = r->moved ? SHL_SAMPLE_NEW_STREAM : 0;
  r->moved = false;
  r->await_writer = false; /* a frame published after the reader came: a writer did */
  r->last_seq = seq;
  if (r->pace_on) shl__pace_frame(&r->pace, seq, (int64_t)out->timestamp_ns, shl__monotonic_ns());
}

/* 0 with a pinned sample, -EAGAIN when nothing newer is published. */
static int take_latest(shl_reader *r, shl_sample *out) {
  const struct stream *s = &r->cur->s;
  for (int attempt = 0; attempt < PIN_ATTEMPTS; attempt++) {
    /* Acquire: pairs with shl_writer_publish's release of latest. */
    uint64_t latest = atomic_load_explicit(&s->ctl->latest, memory_order_acquire);
    uint64_t seq = latest_seq(latest);
    uint32_t slot = latest_slot(latest);
    /* Above SEQ_MAX or past the ring: no frame but a peer's damage, which
     * the writer's next publish overwrites. Below the last one delivered:
     * that one was a peer's number (a stream's numbers only grow), and this
     * is news. */
    if (seq == r->last_seq || seq == 0 || seq > SHL__SEQ_MAX || slot >= s->slots) return -EAGAIN;
    if (pin(r, slot, seq)) {
      deliver(r, slot, seq, r->last_seq && seq > r->last_seq ? seq - r->last_seq - 1 : 0, out);
      return 0;
    }
  }
  return -EAGAIN;
}

static int take_next(shl_reader *r, shl_sample *out) {
  struct ring *ring = r->cur;
  struct stream *s = &ring->s;
  for (int attempt = 0; attempt < PIN_ATTEMPTS; attempt++) {
    /* Acquire: pairs with shl_writer_publish's release of latest. */
    uint64_t head = latest_seq(atomic_load_explicit(&s->ctl->latest, memory_order_acquire));
    if (head > SHL__SEQ_MAX) return -EAGAIN;
    /* A head below the last frame delivered: that one was a peer's number
     * (a stream's numbers only grow; 0 is no frame yet): go on from here. */
    if (head && head + 1 < r->next_seq) r->next_seq = head;
    uint64_t want = r->next_seq;
    if (want > head) return -EAGAIN;
    /* The wanted frame, or else the oldest one after it: those between are lost. */
    int best = -1;
    uint64_t best_seq = UINT64_MAX;
    bool reclaiming = false;
    for (uint32_t i = 0; i < s->slots; i++) {
      /* Pairs with publish's release; 0 (being written) is below want (I1);
       * nothing above head is a frame yet. */
      uint64_t seq = atomic_load(&s->slot[i].seq);
      reclaiming |= seq == SHL__SEQ_RECLAIM;
      if (seq >= want && seq <= head && seq < best_seq) best = (int)i, best_seq = seq;
    }
    /* The writer may be putting the wanted frame back (claim_slot): look
     * again rather than skip it. A mark that stays is a peer's: ignored. */
    if (reclaiming && best_seq != want && attempt < PIN_ATTEMPTS / 2) {
      SHL__TEST_POINT(take_next_reclaim);
      shl__cpu_relax();
      continue;
    }
    if (best < 0 || !pin(r, (uint32_t)best, best_seq)) continue;
    deliver(r, (uint32_t)best, best_seq, best_seq - want, out);
    r->next_seq = best_seq + 1;
    assert(r->next_seq > want); /* I6: an `all` reader's next_seq only grows */
    /* Pairs with scan_readers' floor: a blocking writer may now reuse it (I6). */
    atomic_store_explicit(&ring->entry->next_seq, r->next_seq, memory_order_release);
    if (s->flags & SHL_STREAM_BLOCK) signal_space(s);
    return 0;
  }
  return -EAGAIN;
}

static int take(shl_reader *r, shl_sample *out) {
  return r->policy == SHL_RECV_ALL ? take_next(r, out) : take_latest(r, out);
}

/* wait_for_frame: the next frame is due (SHL_WAIT_RETURN_DUE), poll for it. */
#define DUE 1

/* A writer that the liveness word says is alive: its keeper holds it. */
static bool alive_says_live(uint32_t v) {
  uint32_t tid = v & SHL__ALIVE_TID_MASK;
  return tid != 0 && tid != SHL__ALIVE_NO_KEEPER && !(v & SHL__ALIVE_DIED);
}

/* Sleep until the change counter moves from `changes`, the deadline passes
 * or the writer is gone. -EAGAIN: look again; SHL_E_WRITER_GONE or
 * SHL_E_WRITER_CLOSED (decided by the role lock, writer_state); -ETIMEDOUT;
 * -EINTR; SHL_E_REPLACED for a reader waiting for a writer whose name came
 * to hold another stream. With futex_waitv the reader sleeps on the counter
 * and on its entry's liveness word at once, with no timer while the word
 * names a live keeper: an idle reader costs no wake-up, and at the writer's
 * death the kernel wakes the one sleeper on each entry's word, this reader.
 * Without it, slices of LIVENESS_PERIOD_NS. */
static int wait_for_frame(shl_reader *r, uint64_t changes, int64_t deadline, shl_wait_opts *wait,
                          uint32_t flags) {
  struct stream *s = &r->cur->s;
  _Atomic uint32_t *word = &r->cur->entry->alive;
  bool waitv = shl__futex_waitv_usable();
  uint32_t alive = atomic_load(word);
  bool live = waitv && alive_says_live(alive);
  int64_t period = LIVENESS_PERIOD_NS;
  if (live) {
    period = LIVENESS_SAFETY_NS;
    r->death_poll_ns = DEATH_POLL_NS;
  } else if (waitv && (alive & SHL__ALIVE_TID_MASK) != SHL__ALIVE_NO_KEEPER) {
    /* Just ended (cleanly: 0; a death: DIED) or no writer: look again soon,
     * less and less often; a death is final, so it is looked at more often. */
    int64_t cap = (alive & SHL__ALIVE_DIED) ? DEATH_POLL_MAX_NS : LIVENESS_PERIOD_NS;
    if (r->death_poll_ns < DEATH_POLL_NS) r->death_poll_ns = DEATH_POLL_NS;
    period = r->death_poll_ns < cap ? r->death_poll_ns : cap;
    r->death_poll_ns = period < cap / 2 ? 2 * period : cap;
  }
  int64_t now = shl__monotonic_ns();
  if (now - r->liveness_checked_ns >= period) {
    r->liveness_checked_ns = now;
    int gone = writer_state(s);
    if (gone == 0) {
      r->await_writer = false; /* a writer came: from here on its death ends the wait */
    } else if (!r->await_writer) {
      return gone; /* nothing new, and nobody left to publish it */
    } else if (shl__seg_names_object(s->seg) == -ESTALE) {
      return SHL_E_REPLACED; /* a new stream under the name: follow it */
    }
  }
  /* The predictive wait: sleep until the window opens, then spin in it. */
  int64_t until = 0;
  int plan = r->pace_on ? shl__pace_plan(&r->pace, now, &until) : SHL__PACE_SLEEP;
  if (plan == SHL__PACE_SPIN && (flags & SHL_WAIT_RETURN_DUE)) {
    shl__pace_polled(&r->pace, now);
    return DUE;
  }
  int64_t left = deadline - now;
  if (left <= 0) return -ETIMEDOUT;
  uint32_t wake;
  if (wake_taken(&r->wake, &wake)) return -EINTR;
  int64_t slice = left < period ? left : period;
  if (plan == SHL__PACE_EARLY && until - now < slice) slice = until - now;
  if (plan == SHL__PACE_SPIN) wait->spin_ns = (uint32_t)(until - now); /* then sleep */
  int rc;
  if (!waitv) {
    rc = shl_wait_ex(s->seg, changes, slice, wait, NULL);
  } else {
    /* The kernel wakes a sleeper at the death only if WAITERS is set. */
    uint32_t expected = live ? alive | SHL__ALIVE_WAITERS : alive;
    if (expected != alive && !atomic_compare_exchange_strong(word, &alive, expected))
      return -EAGAIN; /* the word moved meanwhile: look at it again */
    struct shl__also also[2] = {{word, expected, false}, {&r->wake.word, wake, true}};
    rc = shl__wait_also(s->seg, changes, slice, wait, also, 2, NULL);
  }
  if (rc == -EINTR) return rc;
  wait->spin_ns = 0; /* spin once per call: an idle stream costs no CPU */
  return -EAGAIN;
}

/* In a forked child; r->cur NULL: half-closed there (another thread of the
 * parent was closing it at the fork). */
static bool reader_inherited(const shl_reader *r) { return !r->cur || inherited(&r->cur->s); }

int shl_reader_receive(shl_reader *r, shl_sample *out, int64_t timeout_ns, uint32_t flags) {
  if (reader_inherited(r)) return SHL_E_FORKED;
  if (!out) return -EINVAL;
  if (r->pinned >= r->max_pinned) return SHL_E_PIN_LIMIT;
  int64_t deadline = deadline_after(timeout_ns);
  shl_wait_opts wait = {sizeof wait, flags & SHL_WAIT_INTERRUPTIBLE, r->spin_ns};
  if (flags & ~(uint32_t)(SHL_WAIT_INTERRUPTIBLE | SHL_WAIT_RETURN_DUE)) return -EINVAL;
  /* Back from the warm-up a due poll sent the caller to (pace.c). */
  if (r->pace.polled > 0) shl__pace_came_back(&r->pace, shl__monotonic_ns());
  for (;;) {
    struct stream *s = &r->cur->s;
    /* Read before looking; pairs with publish's notify (I7). */
    uint64_t changes = shl_changes(s->seg);
    int rc = take(r, out);
    if (rc != -EAGAIN) return rc;
    /* Pairs with replace_stream's store, made once the new stream is under
     * the name: a flag on a stream the name still holds is a peer's. */
    int why = atomic_load(&s->ctl->replaced) && shl__seg_names_object(s->seg) != 0
                  ? SHL_E_REPLACED
                  : wait_for_frame(r, changes, deadline, &wait, flags);
    /* Gone, and the name holds another object: removed and created again. */
    if ((why == SHL_E_WRITER_GONE || why == SHL_E_WRITER_CLOSED) &&
        shl__seg_names_object(s->seg) == -ESTALE)
      why = SHL_E_REPLACED;
    if (why == SHL_E_WRITER_GONE || why == SHL_E_WRITER_CLOSED || why == SHL_E_REPLACED) {
      /* Nothing new, and nobody left to publish it. */
      rc = take(r, out);
      if (rc != -EAGAIN) return rc;
      if (why != SHL_E_REPLACED) return why;
      rc = r->flags & SHL_READER_NO_FOLLOW ? why : shl__reader_follow(r);
      if (rc < 0) {
        /* Told it does not come (or cannot: no free entry there, -EUSERS):
         * a blocking writer of the new stream keeps no frame for it
         * (shl__followers_floor). Our entry (I4). */
        atomic_store(&r->cur->entry->next_seq, NEXT_SEQ_FOLLOWED);
        return rc;
      }
      if (rc > 0) continue; /* to the new stream's frames */
      /* No other stream under the name (yet), or a flag set by a peer that
       * breaks the protocol: wait here, as for any stream. */
      why = wait_for_frame(r, changes, deadline, &wait, flags);
      if (why == SHL_E_WRITER_GONE || why == SHL_E_WRITER_CLOSED) return why;
    }
    if (why == DUE) return -EAGAIN; /* the caller polls */
    if (why != -EAGAIN) return why;
  }
}

int shl_reader_receive_ex(shl_reader *r, shl_sample *out, int64_t timeout_ns, uint32_t flags) {
  const size_t after = offsetof(shl_sample, size) + sizeof out->size;
  if (!out || out->size < after) return -EINVAL;
  size_t tail = out->size - after;
  int rc = shl_reader_receive(r, out, timeout_ns, flags);
  /* Past `size`: `reserved` (zero), then zeros for a newer caller's fields. */
  if (rc == 0) memset((char *)out + after, 0, tail);
  return rc;
}

void shl_reader_set_spin(shl_reader *r, uint32_t spin_ns) {
  bool pace = spin_ns == SHL_SPIN_AUTO;
  if (!r->cur) return; /* half-closed at a fork: it never receives again */
  if (pace && !r->pace_on) shl__pace_reset(&r->pace, atomic_load(&r->cur->s.ctl->period_ns));
  r->pace_on = pace;
  r->spin_ns = pace ? 0 : spin_ns;
}

void shl_reader_wake(shl_reader *r) {
  wake_bump(&r->wake);
  shl__futex_wake_private(&r->wake.word); /* its receive sleeps on it too */
}

int shl_reader_release(shl_reader *r, const shl_sample *sample) {
  if (reader_inherited(r)) return SHL_E_FORKED;
  struct ring *ring = sample ? ring_of(r, sample) : NULL;
  if (!ring || ring->held[sample->slot] == 0) return -EINVAL;
  unpin(r, ring, sample->slot);
  return 0;
}

const void *shl_sample_meta(const shl_reader *r, const shl_sample *sample) {
  const void *meta = NULL;
  uint64_t size;
  return shl_sample_get_meta(r, sample, &meta, &size) == 0 ? meta : NULL;
}

int shl_sample_get_meta(const shl_reader *r, const shl_sample *sample, const void **meta,
                        uint64_t *size) {
  const struct ring *ring = sample ? ring_of(r, sample) : NULL;
  if (!ring || !meta || !size) return -EINVAL;
  /* Offset and size from one snapshot: the record lies inside the slot (bind). */
  *meta = ring->s.meta_size ? (const unsigned char *)sample->data + ring->s.meta_offset : NULL;
  *size = ring->s.meta_size;
  return 0;
}
