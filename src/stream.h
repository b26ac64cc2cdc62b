/* Streams, private to the core: the handles' structs, and the small steps
 * on shared words that both stream files take. stream.c holds the protocol
 * (docs/format.md, Streams; its invariants I1-I7 are stated there),
 * stream_bind.c the check of a stream's area, stream_setup.c (writers) and
 * stream_readers.c (readers) the setup and lifecycle of streams and their
 * handles, stream_info.c what they report. */
#ifndef SHL_STREAM_H
#define SHL_STREAM_H

#include <stdbool.h>
#include <stdint.h>
#include <unistd.h>

#include "internal.h"

/* An `all` reader's next_seq in the entry it left for a stream that
 * replaced this one: a blocking writer of the new stream waits for it. */
#define NEXT_SEQ_FOLLOWED UINT64_MAX
/* Attempts to pin before treating the stream as quiet: only a writer that
 * breaks the protocol can make a reader miss this many times in a row. */
#define PIN_ATTEMPTS 4096

/* A handle's wake-up from another thread (shl_reader_wake, shl_writer_wake):
 * the waker bumps `word`, then wakes its futex; the handle's own thread,
 * about to sleep, answers each new value once with -EINTR (stream.c,
 * wake_taken). Private memory: a waker touches nothing shared, and a
 * reader sleeps on `word` as a private futex (its wakers are threads of
 * this process). */
struct wake {
  _Atomic uint32_t word;
  uint32_t seen; /* the last value answered */
};

/* The validated control area, shared by writer and reader handles. */
struct stream {
  shl_segment *seg;
  struct shl__stream_ctl *ctl;
  struct shl__slot *slot;     /* [slots] */
  struct shl__reader *reader; /* [max_readers] */
  unsigned char *frames;
  uint64_t stride;
  uint64_t meta_offset, meta_size; /* meta_size 0: no metadata */
  uint64_t base_seq;
  uint32_t slots, max_readers, flags;
  char meta_format[SHL_FORMAT_MAX + 1]; /* "" for none; validated against meta_size */
  /* This handle's role locks. Last: a registered descriptor's links are the
   * list's (roles.c), so a handle is copied without it, and it is moved. */
  struct shl__role_fd role;
};

struct shl_writer {
  struct stream s;
  struct shl__keeper *keeper; /* holds the liveness words; NULL: none could start */
  /* [0, nalive): each reader entry's liveness word, the keeper's list. Part of
   * the handle, so that starting the writer cannot fail once a replacement
   * is under the name. */
  _Atomic uint32_t *alive[SHL_STREAM_MAX_READERS];
  uint32_t nalive;
  uint64_t next_seq;
  int loaned; /* slot index, -1 for none */
  /* A blocking writer's previous stream after a replace, until every live
   * `all` reader of it has moved here (followers_floor); seg NULL: none. */
  struct stream prev;
  struct wake wake; /* shl_writer_wake, from any thread: ends a loan's wait */
};

/* A stream a reader is registered on: the one it reads, or one it followed
 * the name away from whose samples it still holds. */
struct ring {
  struct stream s;
  struct shl__reader *entry;
  uint32_t pinned;                     /* samples held from this ring */
  uint32_t held[SHL_STREAM_MAX_SLOTS]; /* samples held per slot */
  struct ring *next;                   /* the reader's list of rings left */
};

struct shl_reader {
  struct ring *cur;  /* the stream it reads */
  struct ring *left; /* rings it left that still have pinned samples */
  uint64_t last_seq; /* newest sequence delivered */
  uint64_t next_seq; /* policy `all`: next sequence wanted */
  uint64_t lost;     /* frames missed so far: its entry shows this copy */
  int64_t liveness_checked_ns;
  int64_t death_poll_ns; /* wait_for_frame's next look while the word and the role disagree */
  uint32_t policy; /* enum shl_recv_policy */
  uint32_t spin_ns;
  bool pace_on;            /* SHL_SPIN_AUTO: wait as the stream's pace predicts */
  struct shl__pace pace;
  uint32_t max_pinned, pinned; /* samples this reader may hold, and holds */
  uint32_t max_pinned_asked;   /* 0: the default for the ring's slots */
  uint32_t flags;              /* enum shl_reader_flags */
  uint32_t owner, owner_uid;   /* whose stream the name may lead to */
  bool moved;                  /* the next sample is the first of a followed stream */
  bool await_writer;           /* opened with no live writer: wait for one, skip its frames */
  struct wake wake;            /* shl_reader_wake, from any thread: ends a receive's wait */
};

/* This process in the shared words: its pid, as it sees it. Information for
 * people (messages, the CLI); never used to decide liveness. */
static inline uint64_t self_word(void) { return (uint32_t)getpid(); }

/* `latest` packs the newest frame's number and slot. */
static inline uint64_t latest_pack(uint64_t seq, uint32_t slot) {
  return seq << SHL__SLOT_BITS | slot;
}
static inline uint64_t latest_seq(uint64_t latest) { return latest >> SHL__SLOT_BITS; }
static inline uint32_t latest_slot(uint64_t latest) { return (uint32_t)(latest & SHL__SLOT_MASK); }
/* Bits of every slot of a ring of `slots` (1..64). */
static inline uint64_t slots_mask(uint32_t slots) {
  return slots == 64 ? ~0ull : (1ull << slots) - 1;
}

/* A stream's area: its control block, slot descriptors and reader table
 * (shm_layout.h), before any metadata format. */
static inline uint64_t slots_bytes(uint32_t slots) {
  return shl__round_up((uint64_t)slots * sizeof(struct shl__slot), 64);
}
static inline uint64_t ext_bytes(uint32_t slots, uint32_t readers) {
  return sizeof(struct shl__stream_ctl) + slots_bytes(slots) +
         (uint64_t)readers * sizeof(struct shl__reader);
}

/* A handle's own state before it is bound: no role descriptor yet. */
static inline void init_handle(struct stream *s) { shl__role_fd_init(&s->role); }

/* A handle's part taken out, NULL left in its place before it is freed: a
 * child forked at any moment of a close (by another thread) finds each part
 * either still there or gone, never freed and still named (its own close
 * would free it again). */
#define detach(p) __atomic_exchange_n((p), NULL, __ATOMIC_SEQ_CST)

/* No segment: a handle a forked child inherited half-closed. */
static inline bool inherited(const struct stream *s) {
  return !s->seg || shl__seg_inherited(s->seg);
}

static inline int64_t deadline_after(int64_t timeout_ns) {
  return shl__deadline(shl__monotonic_ns(), timeout_ns);
}

/* 0 while a writer holds the stream (or that cannot be told), else why not:
 * a clean close clears the writer word before it drops the role lock. The
 * segment's own descriptor holds no role, so any lock seen is another's. */
static inline int writer_state(const struct stream *s) {
  if (shl__role_held(s->seg->fd, SHL__ROLE_WRITER) != 0) return 0;
  SHL__TEST_POINT(writer_state);
  /* Read after the lock is seen free: pairs with shl_writer_close's store. */
  bool word = atomic_load(&s->ctl->writer) != 0;
  /* Not 0: a dead writer's, or that of one that took the stream over since
   * the look (writer_start stores it once the role is held): look again. */
  if (word && shl__role_held(s->seg->fd, SHL__ROLE_WRITER) != 0) return 0;
  return word ? SHL_E_WRITER_GONE : SHL_E_WRITER_CLOSED;
}

static inline uint32_t reader_hwm(const struct stream *s) {
  /* Pairs with register_reader's raise of the mark (I5). */
  uint32_t hwm = atomic_load(&s->ctl->reader_hwm);
  return hwm < s->max_readers ? hwm : s->max_readers;
}

/* Tell a writer sleeping for space that a slot may have been freed. */
static inline void signal_space(struct stream *s) {
  /* Pairs with shl_writer_loan's read of `space` before it claims, and of
   * writer_waiting around its sleep (I7). A peer that clears the flag
   * delays the writer by a slice at most (wait_space). */
  atomic_fetch_add(&s->ctl->space, 1);
  if (atomic_load(&s->ctl->writer_waiting)) shl__futex_wake_all(&s->ctl->space);
}

/* A writer's sleep on `space` until it moves from `space` (I7), or
 * slice_ns (an exposed stream's slice at most) passes. shl_writer_wake
 * moves it too. */
static inline void wait_space(struct stream *s, uint32_t space, int64_t slice_ns) {
  if (shl__seg_exposed(s->seg) && slice_ns > SHL__EXPOSED_SLICE_NS) slice_ns = SHL__EXPOSED_SLICE_NS;
  /* The flag pairs with signal_space's read: a freer that sees 0 skips the
   * wake, and this sleep then returns at once, `space` having changed. */
  atomic_store(&s->ctl->writer_waiting, 1);
  shl__futex_wait(&s->ctl->space, space, slice_ns);
  atomic_store(&s->ctl->writer_waiting, 0);
}

/* By the entry's owner (close) or a reaper holding its lock (I4). Pins and
 * next_seq go first, owner last (release): a writer that skips an entry for
 * its owner 0 (scan_readers) loses no pin it should have seen. */
static inline void clear_entry(struct shl__reader *e) {
  atomic_store(&e->pinned, 0);
  atomic_store(&e->next_seq, 0);
  atomic_store_explicit(&e->lost, 0, memory_order_relaxed);
  atomic_store_explicit(&e->owner, 0, memory_order_release);
}

/* stream_bind.c: checks the control area against the segment and takes a
 * private snapshot of its immutable fields (a hostile peer cannot move us
 * out of bounds). */
int shl__stream_bind(struct stream *s, shl_segment *seg);

/* stream_setup.c */
/* Streams are opened only by processes that may write them (docs/format.md,
 * Permissions): SHL_E_BAD_MODE for a mode that grants some class read alone. */
int shl__stream_check_mode(const shl_segment *seg);
/* A blocking writer after a replace: the lowest frame number that readers
 * of the stream it replaced may still want, or UINT64_MAX once none is on
 * its way (that stream is then let go). */
uint64_t shl__followers_floor(shl_writer *w);
/* Drops the handle's roles (after the shared words are final) and closes
 * its segment; again (a child's close of a handle half-closed at its fork),
 * nothing. */
void shl__stream_close(struct stream *s);
/* stream_readers.c */
/* Leaves a reader's entry (its words cleared before its lock goes) and frees
 * the ring (NULL: none). */
void shl__ring_close(struct ring *ring);
/* Moves the reader to the stream its name holds now: 1 moved, 0 nothing to
 * move to (no stream under the name yet, or this very one), or an error. */
int shl__reader_follow(shl_reader *r);

#endif /* SHL_STREAM_H */
