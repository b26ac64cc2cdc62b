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
 * Replacement. A writer with another layout (SHL_STREAM_REPLACE) takes the
 * old stream's writer role, creates the new stream under the name with
 * base_seq set past the old numbers, and only then sets the old one's
 * `replaced` and wakes its readers. A reader that has received every frame
 * of its stream and finds it replaced, or its writer gone and the name
 * holding another object, registers on the object the name holds and goes
 * on from there (follow()). Rings it left that still have pinned samples
 * stay mapped until those are released.
 *
 * A handle is used by one thread at a time (shmlane.h, Threads). Handles
 * belong to the process that opened them: in a forked child every call
 * returns SHL_E_FORKED, and closing touches nothing shared. */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

/* Test programs that include this file may stop a process at these points. */
#ifndef SHL__TEST_POINT
#define SHL__TEST_POINT(name) ((void)0)
#endif

#define DEFAULT_SLOTS 8
#define DEFAULT_READERS 64
/* Without futex_waitv, readers test the writer role each period: they
 * notice a dead writer within two. With it they sleep on their liveness word
 * too and test the role when it moves; the long period is only a safety net
 * (a word a peer with write access scribbled on). While the word says the
 * keeper died but the role is still held (a dying writer's files are closed
 * after its threads' robust lists are walked) they look again after
 * DEATH_POLL_NS, doubling each time up to DEATH_POLL_MAX_NS; with no writer
 * at all (or one without a keeper), every LIVENESS_PERIOD_NS. */
#define LIVENESS_PERIOD_NS 50000000
#define LIVENESS_SAFETY_NS 10000000000
#define DEATH_POLL_NS 50000
#define DEATH_POLL_MAX_NS 5000000
/* An `all` reader's next_seq in the entry it left for a stream that
 * replaced this one: a blocking writer of the new stream waits for it. */
#define NEXT_SEQ_FOLLOWED UINT64_MAX
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
  uint64_t meta_offset, meta_size; /* meta_size 0: no metadata */
  uint64_t base_seq;
  uint32_t slots, max_readers, flags;
  struct shl__role_fd role; /* this handle's role locks */
  char meta_format[SHL_FORMAT_MAX + 1]; /* "" for none; validated against meta_size */
};

struct shl_writer {
  struct stream s;
  struct shl__keeper *keeper; /* holds the liveness words; NULL: none could start */
  _Atomic uint32_t **alive;   /* [max_readers]: each reader entry's liveness word */
  uint64_t next_seq;
  int loaned; /* slot index, -1 for none */
  /* A blocking writer's previous stream after a replace, until every live
   * `all` reader of it has moved here (followers_floor); seg NULL: none. */
  struct stream prev;
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
  _Atomic uint32_t wake;       /* futex: bumped by shl_reader_wake, from any thread */
  uint32_t wake_seen;          /* the last value receive answered with -EINTR */
};

/* This process in the shared words: its pid, as it sees it. Information for
 * people (messages, the CLI); never used to decide liveness. */
static uint64_t self_word(void) { return (uint32_t)getpid(); }

/* `latest` packs the newest frame's number and slot. */
static uint64_t latest_pack(uint64_t seq, uint32_t slot) { return seq << SHL__SLOT_BITS | slot; }
static uint64_t latest_seq(uint64_t latest) { return latest >> SHL__SLOT_BITS; }
static uint32_t latest_slot(uint64_t latest) { return (uint32_t)(latest & SHL__SLOT_MASK); }

/* A handle's own state before it is bound: no role descriptor yet. */
static void init_handle(struct stream *s) { shl__role_fd_init(&s->role); }

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

/* The metadata part of the control block, read once into s (meta_offset,
 * meta_size, meta_format) and checked there: what is checked is what is used,
 * whatever a peer writes later. `fixed` is where the area's fixed part ends. */
static int bind_meta(struct stream *s, const shl_segment *seg, const struct shl__stream_ctl *live,
                     uint64_t fixed, uint64_t frame_size, uint64_t stride) {
  uint32_t len = live->meta_format_len;
  uint64_t at = live->meta_format_offset, size = live->meta_size, offset = live->meta_offset, end;
  s->meta_format[0] = '\0';
  s->meta_offset = s->meta_size = 0;
  if (len == 0) return at || size || offset ? SHL_E_BAD_HEADER : 0;
  if (len > SHL_FORMAT_MAX || at < fixed || __builtin_add_overflow(at, (uint64_t)len + 1, &end) ||
      end > seg->ext_size)
    return SHL_E_BAD_HEADER;
  memcpy(s->meta_format, seg->ext + at, len + 1);
  if (s->meta_format[len] != '\0' || strlen(s->meta_format) != len) {
    s->meta_format[0] = '\0';
    return SHL_E_BAD_FORMAT;
  }
  int64_t itemsize = shl__format_parse(s->meta_format, len);
  int rc = itemsize < 0 ? (int)itemsize : (uint64_t)itemsize != size ? SHL_E_ITEMSIZE : 0;
  if (rc == 0 && (offset % 64 || offset < frame_size ||
                  __builtin_add_overflow(offset, size, &end) || end > stride))
    rc = SHL_E_BAD_HEADER;
  if (rc < 0) {
    s->meta_format[0] = '\0';
    return rc;
  }
  s->meta_offset = offset;
  s->meta_size = size;
  return 0;
}

/* The snapshot's metadata format, copied into out (of out_size bytes; out
 * may be NULL): its record's size, 0 for none. */
static int64_t copy_meta(const struct stream *s, char *out, size_t out_size) {
  size_t len = strlen(s->meta_format);
  if (out && out_size) out[0] = '\0';
  if (!s->meta_size) return 0;
  if (out) {
    if (out_size < len + 1) return -ERANGE;
    memcpy(out, s->meta_format, len + 1);
  }
  return (int64_t)s->meta_size;
}

/* Checks the control area against the segment and takes a private snapshot
 * of its immutable fields, each read once; a hostile peer cannot move us out
 * of bounds. */
static int bind(struct stream *s, shl_segment *seg) {
  if (seg->kind != SHL_KIND_STREAM) return SHL_E_BAD_KIND;
  if (!seg->ext || seg->ext_size < sizeof(struct shl__stream_ctl)) return SHL_E_BAD_HEADER;
  struct shl__stream_ctl *ctl = (struct shl__stream_ctl *)(void *)seg->ext;
  uint32_t slots = ctl->slots, readers = ctl->max_readers;
  uint64_t stride = ctl->slot_stride, frame_size = ctl->frame_size, base_seq = ctl->base_seq;
  uint64_t extent, total;
  if (slots < 2 || slots > SHL_STREAM_MAX_SLOTS || readers < 1 ||
      readers > SHL_STREAM_MAX_READERS || seg->ext_size < ext_bytes(slots, readers))
    return SHL_E_BAD_HEADER;
  int rc = shl__layout_extent(&seg->layout, seg->layout.itemsize, &extent);
  if (rc < 0) return rc;
  if (stride % 64 || frame_size < extent || frame_size > stride ||
      __builtin_mul_overflow(stride, (uint64_t)slots, &total) || total > seg->payload_size)
    return SHL_E_BAD_HEADER;
  rc = bind_meta(s, seg, ctl, ext_bytes(slots, readers), frame_size, stride);
  if (rc < 0) return rc;
  if (base_seq >= SHL__SEQ_MAX) return SHL_E_BAD_HEADER; /* its first frame must be numbered */
  s->base_seq = base_seq;
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

/* Streams are opened only by processes that may write them (docs/format.md,
 * Permissions): SHL_E_BAD_MODE for a mode that grants some class read alone. */
static int check_mode(const shl_segment *seg) {
  struct stat st;
  if (fstat(seg->fd, &st) < 0) return -errno;
  return shl__mode_has_readonly_class((uint32_t)st.st_mode) ? SHL_E_BAD_MODE : 0;
}

/* 0 while a writer holds the stream (or that cannot be told), else why not:
 * a clean close clears the writer word before it drops the role lock. The
 * segment's own descriptor holds no role, so any lock seen is another's. */
static int writer_state(const struct stream *s) {
  if (shl__role_held(s->seg->fd, SHL__ROLE_WRITER) != 0) return 0;
  /* Read after the lock is seen free: pairs with shl_writer_close's store. */
  return atomic_load(&s->ctl->writer) ? SHL_E_WRITER_GONE : SHL_E_WRITER_CLOSED;
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

/* What a new stream's creator writes into its area, and the sizes it needs. */
struct plan {
  struct shl__stream_ctl ctl;
  const char *meta_format;
  uint64_t ext_size, payload;
};

static void init_area(void *ext, void *arg) {
  const struct plan *p = arg;
  memcpy(ext, &p->ctl, sizeof p->ctl);
  if (p->ctl.meta_format_len)
    memcpy((char *)ext + p->ctl.meta_format_offset, p->meta_format, p->ctl.meta_format_len + 1);
}

static bool same_frame(const shl_layout *a, const shl_layout *b) {
  if (strcmp(a->format, b->format) != 0 || a->ndim != b->ndim) return false;
  for (uint32_t i = 0; i < a->ndim; i++)
    if (a->shape[i] != b->shape[i] || a->strides[i] != b->strides[i]) return false;
  return true;
}

/* 0 if the bound stream has the frame, (if asked) slot count and metadata
 * planned; else which of them differs. */
static int same_layout(const struct stream *s, const shl_layout *frame, const struct plan *p,
                       uint32_t slots) {
  shl_layout have;
  shl_get_layout(s->seg, &have);
  if (!same_frame(&have, frame) || (slots && slots != s->slots)) return SHL_E_LAYOUT_MISMATCH;
  return strcmp(s->meta_format, p->meta_format ? p->meta_format : "") ? SHL_E_META_MISMATCH : 0;
}

/* How long a writer taking over a cleanly closed stream waits for the role
 * to come free: a process forked a moment before the close holds a copy of
 * the role descriptor until its fork handler has closed it. */
#define CLOSED_ROLE_WAIT_NS 100000000

/* Take the writer role of the bound stream: -EBUSY while a live writer holds it. */
static int claim_writer(struct stream *s) {
  /* A descriptor of this handle's own: the segment's holds no role. */
  int rc = shl__seg_role_open(s->seg, &s->role, SHL__ROLE_NONE);
  if (rc < 0) return rc;
  int64_t until = deadline_after(CLOSED_ROLE_WAIT_NS);
  while ((rc = shl__role_take(s->role.fd, SHL__ROLE_WRITER)) == -EBUSY &&
         atomic_load(&s->ctl->writer) == 0 && shl__monotonic_ns() < until)
    shl__sleep_ns(DEATH_POLL_MAX_NS / 5);
  return rc;
}

/* Sequence numbers go on from the highest any slot or `latest` shows: a
 * writer may have died between stamping a slot and updating `latest`.
 * Numbers above SHL__SEQ_MAX are damage (a peer's), never frames. */
static uint64_t highest_seq(const struct stream *s) {
  /* With the role held no one else stores seq or latest (I1: never repeated). */
  uint64_t high = latest_seq(atomic_load(&s->ctl->latest));
  if (high > SHL__SEQ_MAX) high = 0;
  if (s->base_seq > high) high = s->base_seq;
  for (uint32_t i = 0; i < s->slots; i++) {
    uint64_t seq = atomic_load(&s->slot[i].seq);
    if (seq > high && seq <= SHL__SEQ_MAX) high = seq;
  }
  return high;
}

/* Create the stream planned under `name`, holding its writer role; staged:
 * under a private name, for swap_in to put under `name`. */
static int create_stream(struct stream *s, const char *name, const shl_layout *frame,
                         struct plan *p, uint32_t mode, bool staged) {
  struct shl__extra extra = {p->ext_size, p->payload, init_area, p, &s->role, SHL__ROLE_WRITER,
                             staged};
  shl_create_opts copts = {sizeof copts, SHL_KIND_STREAM, mode, 0};
  shl_segment *seg;
  int rc = shl__segment_create(&seg, name, frame, &copts, &extra);
  if (rc < 0) return rc;
  s->seg = seg;
  rc = bind(s, seg);
  if (rc < 0) {
    close_stream(s);
    s->seg = NULL;
  }
  return rc;
}

/* The bound stream `old` makes way for a new one under its name, whose
 * writer role `s` will hold: built under a private name, then swapped in
 * (the name never lacks a stream, and a failure leaves the old one in
 * place). Frame numbers go on from `base`, or start again when they are used
 * up. Readers of `old` follow once they see `replaced`. -ESTALE if the name
 * no longer holds `old`. */
static int replace_stream(struct stream *s, struct stream *old, const shl_layout *frame,
                          struct plan *p, uint32_t mode, uint64_t base) {
  p->ctl.base_seq = base < SHL__SEQ_MAX ? base : 0;
  int rc = create_stream(s, old->seg->name, frame, p, mode, true);
  if (rc < 0) return rc;
  rc = shl__segment_swap_in(s->seg, old->seg->fd);
  if (rc < 0) {
    close_stream(s); /* removes the staged object */
    s->seg = NULL;
    return rc;
  }
  /* After the new stream is under the name: a reader that sees the flag
   * finds it there. Pairs with receive's look at `replaced`. */
  atomic_store(&old->ctl->replaced, 1);
  shl_notify(old->seg, NULL);
  return 0;
}

/* A blocking writer keeps the stream it replaced mapped (no role held)
 * until that stream's `all` readers have moved (followers_floor). */
static void keep_prev(shl_writer *w, const struct stream *old) {
  w->prev = *old;
  init_handle(&w->prev); /* the role descriptor was old's, and is closed */
}

/* Attempts at a name that keeps changing under us before giving up. */
#define NAME_ATTEMPTS 8

/* Open the stream `name` as its writer: create it, take it over, or replace
 * it. On success w->s is bound and holds the writer role; w->prev may hold
 * the stream replaced. */
static int open_writer(shl_writer *w, const char *name, const shl_layout *frame, struct plan *p,
                       const shl_stream_opts *opts) {
  struct stream *s = &w->s;
  int rc = -EAGAIN;
  for (int attempt = 0; attempt < NAME_ATTEMPTS; attempt++) {
    rc = create_stream(s, name, frame, p, opts->mode, false);
    if (rc != -EEXIST) return rc;
    /* Never adopt another user's object: it could read every frame. */
    shl_open_opts oopts = SHL_OPEN_OPTS_INIT;
    oopts.owner = SHL_OWNER_CREATOR;
    shl_segment *seg;
    rc = shl_open_ex(&seg, name, &oopts);
    if (rc == -ENOENT) continue; /* removed meanwhile: create it */
    if (rc < 0) return rc;
    shl__stage_sweep(name); /* what a replacement killed half-way left */
    struct stream old;
    init_handle(&old);
    old.seg = seg;
    rc = bind(&old, seg);
    if (rc == 0) rc = check_mode(seg);
    int differs = rc == 0 ? same_layout(&old, frame, p, opts->slots) : 0;
    if (differs && !(opts->flags & SHL_STREAM_REPLACE)) rc = differs;
    if (rc == 0) rc = claim_writer(&old);
    /* Frame numbers used up (or a peer's damage): a new stream, numbered afresh. */
    uint64_t high = rc == 0 ? highest_seq(&old) : 0;
    if (rc == 0 && !differs && high < SHL__SEQ_MAX) {
      *s = old;
      shl__role_fd_move(&s->role, &old.role); /* with its fork registration */
      return 0;
    }
    if (rc == 0) rc = replace_stream(s, &old, frame, p, opts->mode, high);
    shl__role_fd_close(&old.role);
    if (rc == 0 && (s->flags & SHL_STREAM_BLOCK)) {
      keep_prev(w, &old); /* its `all` readers may still come */
      return 0;
    }
    close_stream(&old);
    if (rc != -ESTALE && rc != -EEXIST) return rc;
  }
  return rc;
}

/* Checks the caller's options (copied already) and frame, and plans the
 * stream they describe: its frame layout and its area. */
static int plan_stream(const shl_layout *frame, const shl_stream_opts *opts, shl_layout *layout,
                       struct plan *p) {
  uint32_t slots = opts->slots ? opts->slots : DEFAULT_SLOTS;
  uint32_t readers = opts->max_readers ? opts->max_readers : DEFAULT_READERS;
  if (slots < 2 || slots > SHL_STREAM_MAX_SLOTS || readers > SHL_STREAM_MAX_READERS ||
      (opts->flags & ~(uint32_t)(SHL_STREAM_BLOCK | SHL_STREAM_REPLACE)) || (opts->mode & ~07777u))
    return -EINVAL;
  if (shl__mode_has_readonly_class(opts->mode)) return SHL_E_BAD_MODE;
  uint64_t frame_size;
  int rc = shl__layout_plan(frame, layout, &frame_size);
  if (rc < 0) return rc;
  *p = (struct plan){.ctl = {.slots = slots, .max_readers = readers,
                             .flags = opts->flags & SHL_STREAM_BLOCK, .frame_size = frame_size}};
  p->ext_size = ext_bytes(slots, readers);
  uint64_t slot_bytes = frame_size;
  if (opts->meta_format && opts->meta_format[0]) {
    size_t len = strnlen(opts->meta_format, SHL_FORMAT_MAX + 1);
    int64_t meta_size = shl__format_parse(opts->meta_format, len);
    if (len > SHL_FORMAT_MAX || meta_size < 0) return SHL_E_BAD_FORMAT;
    p->meta_format = opts->meta_format;
    p->ctl.meta_format_len = (uint32_t)len;
    p->ctl.meta_format_offset = p->ext_size;
    p->ctl.meta_size = (uint64_t)meta_size;
    p->ctl.meta_offset = shl__round_up(frame_size, 64);
    p->ext_size += len + 1;
    slot_bytes = p->ctl.meta_offset + p->ctl.meta_size;
  }
  /* Big frames start on a page, small ones on a cache line. */
  p->ctl.slot_stride = shl__round_up(slot_bytes ? slot_bytes : 1, slot_bytes >= 4096 ? 4096 : 64);
  if (__builtin_mul_overflow(p->ctl.slot_stride, (uint64_t)slots, &p->payload))
    return SHL_E_BAD_SHAPE;
  atomic_init(&p->ctl.writer, self_word());
  atomic_init(&p->ctl.period_ns, opts->period_ns);
  return 0;
}

static shl_writer *writer_new(void) {
  shl_writer *w = calloc(1, sizeof *w);
  if (w) {
    w->loaned = -1;
    init_handle(&w->s);
    init_handle(&w->prev);
  }
  return w;
}

/* With the role held: every reader entry's liveness word names this
 * writer's keeper from now on (or says it has none); readers asleep on a
 * previous value look again. */
static int start_keeper(shl_writer *w) {
  struct stream *s = &w->s;
  w->alive = calloc(s->max_readers, sizeof *w->alive);
  if (!w->alive) return -ENOMEM;
  for (uint32_t i = 0; i < s->max_readers; i++) w->alive[i] = &s->reader[i].alive;
  w->keeper = shl__keeper_start(w->alive, s->max_readers);
  for (uint32_t i = 0; i < s->max_readers; i++) {
    if (!w->keeper) atomic_store(w->alive[i], SHL__ALIVE_NO_KEEPER);
    shl__futex_wake_all(w->alive[i]);
  }
  return 0;
}

/* Before the role goes (a writer taking over next must not find our words,
 * nor our keeper's id in them): each word still ours becomes 0, which wakes
 * its reader; then the keeper stops. */
static void stop_keeper(shl_writer *w) {
  uint32_t ours = w->keeper ? shl__keeper_tid(w->keeper) : SHL__ALIVE_NO_KEEPER;
  for (uint32_t i = 0; w->alive && i < w->s.max_readers; i++) {
    uint32_t v = atomic_load(w->alive[i]);
    while ((v & (SHL__ALIVE_TID_MASK | SHL__ALIVE_DIED)) == ours &&
           !atomic_compare_exchange_weak(w->alive[i], &v, 0)) {
    }
    shl__futex_wake_all(w->alive[i]);
  }
  shl__keeper_stop(w->keeper);
  w->keeper = NULL;
}

/* The writer role is ours: say so, repair what a dead writer or a peer left,
 * and go on from the highest number. */
static int writer_start(shl_writer *w, uint64_t period_ns) {
  struct stream *s = &w->s;
  /* A writer killed in its futex wait left the flag set: nobody sleeps now. */
  atomic_store(&s->ctl->writer_waiting, 0);
  /* After the role is ours (I4); read by writer_state, for people only. */
  atomic_store(&s->ctl->writer, self_word());
  if (period_ns) atomic_store(&s->ctl->period_ns, period_ns);
  uint64_t high = highest_seq(s);
  /* Numbers no frame can carry (a peer's, or a reclaim cut short) go. */
  for (uint32_t i = 0; i < s->slots; i++)
    if (atomic_load(&s->slot[i].seq) > SHL__SEQ_MAX) atomic_store(&s->slot[i].seq, 0);
  uint64_t latest = atomic_load(&s->ctl->latest);
  if (latest && (latest_seq(latest) > SHL__SEQ_MAX || latest_slot(latest) >= s->slots))
    atomic_store(&s->ctl->latest, 0);
  w->next_seq = high + 1;
  return start_keeper(w);
}

/* Gives up the role and the stream: words and keeper first, role last. */
static void writer_release(shl_writer *w) {
  bool mine = !inherited(&w->s);
  /* Pairs with writer_state: the word is 0 before the role lock drops. */
  if (mine) atomic_store(&w->s.ctl->writer, 0);
  if (mine) {
    stop_keeper(w);
  } else {
    shl__keeper_stop(w->keeper); /* a forked child: frees only */
    w->keeper = NULL;
  }
  free(w->alive);
  w->alive = NULL;
  SHL__TEST_POINT(writer_role_drop);
  shl__role_fd_close(&w->s.role);
}

int shl_writer_open(shl_writer **out, const char *name, const shl_layout *frame,
                    const shl_stream_opts *opts) {
  shl_stream_opts o = SHL_STREAM_OPTS_INIT;
  if (!out) return -EINVAL;
  *out = NULL;
  int rc = opts ? shl__opts_copy(&o, sizeof o, opts, opts->size) : 0;
  if (rc < 0) return rc;
  shl_layout layout;
  struct plan p;
  rc = plan_stream(frame, &o, &layout, &p);
  if (rc < 0) return rc;
  shl_writer *w = writer_new();
  if (!w) return -ENOMEM;
  rc = open_writer(w, name, &layout, &p, &o);
  if (rc == 0) rc = writer_start(w, o.period_ns);
  if (rc < 0) {
    shl_writer_close(w);
    return rc;
  }
  *out = w;
  return 0;
}

int shl_writer_replace(shl_writer **wp, const shl_layout *frame, const shl_stream_opts *opts) {
  if (!wp || !*wp) return -EINVAL;
  shl_writer *old = *wp;
  struct stream *s = &old->s;
  if (inherited(s)) return SHL_E_FORKED;
  if (old->loaned >= 0) return -EBUSY;
  shl_stream_opts o = SHL_STREAM_OPTS_INIT;
  int rc = 0;
  if (opts) {
    rc = shl__opts_copy(&o, sizeof o, opts, opts->size);
  } else { /* as the old stream */
    o.flags = s->flags;
    o.meta_format = s->meta_format;
  }
  if (rc < 0) return rc;
  struct stat st;
  if (!o.slots) o.slots = s->slots;
  if (!o.max_readers) o.max_readers = s->max_readers;
  if (!o.mode && fstat(s->seg->fd, &st) == 0) o.mode = (uint32_t)st.st_mode & 07777;
  if (!o.period_ns) o.period_ns = atomic_load(&s->ctl->period_ns);
  shl_layout layout;
  struct plan p;
  rc = plan_stream(frame, &o, &layout, &p);
  if (rc < 0) return rc;
  shl_writer *w = writer_new();
  if (!w) return -ENOMEM;
  /* Numbers go on from the last one this writer stamped, or skipped to. */
  uint64_t high = highest_seq(s), base = old->next_seq - 1 > high ? old->next_seq - 1 : high;
  rc = replace_stream(&w->s, s, &layout, &p, o.mode, base);
  if (rc == 0) rc = writer_start(w, o.period_ns);
  if (rc < 0) {
    shl_writer_close(w); /* (after a start that failed, the new stream stays writerless) */
    return rc;
  }
  /* The old stream's readers heard of the new one before its writer goes
   * (replace_stream), so they follow without ever finding the writer gone. */
  writer_release(old);
  if (w->s.flags & SHL_STREAM_BLOCK) {
    keep_prev(w, &old->s);
    old->s.seg = NULL; /* now w's */
  }
  shl_writer_close(old);
  *wp = w;
  return 0;
}

/* A clean close clears the writer word before the role lock drops, so that
 * readers tell it from a death (SHL_E_WRITER_CLOSED); the liveness words and
 * the keeper go before the role too (writer_release). */
void shl_writer_close(shl_writer *w) {
  if (!w) return;
  if (w->s.seg) {
    writer_release(w);
    close_stream(&w->s);
  }
  if (w->prev.seg) close_stream(&w->prev);
  free(w);
}

shl_segment *shl_writer_segment(const shl_writer *w) { return w->s.seg; }

uint64_t shl_writer_next_seq(const shl_writer *w) { return w->next_seq; }

int shl_writer_set_next_seq(shl_writer *w, uint64_t seq) {
  if (inherited(&w->s)) return SHL_E_FORKED;
  if (w->loaned >= 0) return -EBUSY;
  if (seq < w->next_seq || seq > SHL__SEQ_MAX) return -EINVAL;
  w->next_seq = seq;
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

/* A blocking writer after a replace keeps, for the `all` readers of the
 * stream it replaced, every frame of the new one until they have moved here
 * (follow() marks their old entries): the lowest sequence they may still
 * want, base_seq + 1, or UINT64_MAX once none is left (the old stream is
 * then let go). Their role locks alone tell live readers; the old
 * segment's own descriptor holds none. */
static uint64_t followers_floor(shl_writer *w) {
  struct stream *prev = &w->prev;
  for (uint32_t i = 0, n = reader_hwm(prev); i < n; i++) {
    const struct shl__reader *e = &prev->reader[i];
    if (atomic_load(&e->owner) != 0 && atomic_load(&e->policy) == SHL_RECV_ALL &&
        atomic_load(&e->next_seq) != NEXT_SEQ_FOLLOWED &&
        shl__role_held(prev->seg->fd, SHL__ROLE_READER(i)) != 0)
      return w->s.base_seq + 1;
  }
  close_stream(prev);
  init_handle(prev);
  prev->seg = NULL;
  return UINT64_MAX;
}

/* A free slot, already cleared so no reader can pin it, or -1. Prefers the
 * oldest frame, so `all` readers lose as little as possible. */
static int claim_slot(shl_writer *w) {
  struct stream *s = &w->s;
  uint64_t floor, tried = 0;
  uint64_t pinned = scan_readers(s, &floor);
  if (!(s->flags & SHL_STREAM_BLOCK)) floor = UINT64_MAX;
  if (w->prev.seg) { /* readers of the stream this one replaced are on their way */
    uint64_t coming = followers_floor(w);
    if (coming < floor) floor = coming;
  }
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
      if (seq < best_seq || best < 0) best = (int)i, best_seq = seq;
    }
    if (best < 0) return -1;
    /* Unreadable while we decide, but not skipped: a reader seeing the mark
     * looks again (take_next). Pairs with pin()'s read of seq after its set
     * (I2), and with start_at_head's read after it stores next_seq (I6). */
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
  uint64_t all = s->slots == 64 ? ~0ull : (1ull << s->slots) - 1;
  uint32_t newest = latest_slot(latest);
  if (latest && newest < s->slots) pinned |= 1ull << newest; /* a peer may write any slot */
  return (pinned & all) == all;
}

/* Sleep on the stream's `space` until it moves from `space`, or the liveness
 * period or the deadline passes (I7). */
static void wait_space(struct stream *s, uint32_t space, int64_t left) {
  /* The flag pairs with signal_space's read: a freer that sees 0 skips the
   * wake, and this sleep then returns at once, `space` having changed. */
  atomic_store(&s->ctl->writer_waiting, 1);
  shl__futex_wait(&s->ctl->space, space, left < LIVENESS_PERIOD_NS ? left : LIVENESS_PERIOD_NS);
  atomic_store(&s->ctl->writer_waiting, 0);
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
    /* Wake on a freed slot, or re-check reader liveness each period. */
    wait_space(s, space, left);
  }
}

int shl_writer_publish(shl_writer *w, uint64_t *seq_out) {
  struct stream *s = &w->s;
  if (inherited(s)) return SHL_E_FORKED;
  if (w->loaned < 0) return -EINVAL;
  if (w->next_seq > SHL__SEQ_MAX) return -EOVERFLOW;
  uint32_t slot = (uint32_t)w->loaned;
  uint64_t seq = w->next_seq++;
  atomic_store_explicit(&s->slot[slot].timestamp_ns, (uint64_t)shl__monotonic_ns(),
                        memory_order_relaxed);
  /* Release: the frame's bytes and time are visible before its number (I1).
   * seq pairs with pin()'s and take_next's reads, latest with take_latest's
   * and take_next's acquire; the notify below with shl_reader_receive's
   * read of the change counter before it looks (I7). */
  atomic_store_explicit(&s->slot[slot].seq, seq, memory_order_release);
  atomic_store_explicit(&s->ctl->latest, latest_pack(seq, slot), memory_order_release);
  w->loaned = -1;
  if (seq_out) *seq_out = seq;
  return shl_notify(s->seg, NULL);
}

void *shl_writer_meta(const shl_writer *w) {
  const struct stream *s = &w->s;
  if (w->loaned < 0 || !s->meta_size) return NULL;
  return s->frames + (uint64_t)w->loaned * s->stride + s->meta_offset;
}

int64_t shl_writer_get_meta(const shl_writer *w, char *format, size_t size) {
  return copy_meta(&w->s, format, size);
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
  struct ring *ring = r->cur;
  struct stream *s = &ring->s;
  for (int attempt = 0;; attempt++) {
    uint64_t latest = atomic_load(&s->ctl->latest);
    uint64_t head = latest_seq(latest);
    uint32_t slot = latest_slot(latest);
    SHL__TEST_POINT(start_at_head);
    if (head > SHL__SEQ_MAX) head = 0; /* a peer's damage: no frame to start from */
    /* A reader waiting for a new writer starts after the frames it found. */
    r->next_seq = r->await_writer ? (head > s->base_seq ? head : s->base_seq) + 1
                                  : head ? head : s->base_seq + 1;
    /* Pairs with claim_slot's second look at next_seq (I6); then seq is
     * read again, pairing with claim_slot's clear. */
    atomic_store(&ring->entry->next_seq, r->next_seq);
    if (!head || slot >= s->slots || atomic_load(&s->slot[slot].seq) == head ||
        attempt == PIN_ATTEMPTS)
      return;
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

/* Register on the stream open as seg (taken over, closed on failure). */
static int open_ring(struct ring **out, shl_segment *seg, uint32_t policy) {
  struct ring *ring = calloc(1, sizeof *ring);
  if (!ring) {
    shl_close(seg);
    return -ENOMEM;
  }
  init_handle(&ring->s);
  ring->s.seg = seg;
  int rc = (seg->flags & SHL__SEG_HDR_WRITABLE) ? 0 : SHL_E_READONLY; /* cannot pin */
  if (rc == 0) rc = bind(&ring->s, seg);
  if (rc == 0) rc = check_mode(seg);
  if (rc == 0) rc = shl__seg_role_open(seg, &ring->s.role, SHL__ROLE_NONE);
  if (rc == 0) rc = register_reader(ring, policy);
  if (rc < 0) {
    close_stream(&ring->s);
    free(ring);
    return rc;
  }
  *out = ring;
  return 0;
}

/* Leave the entry: its words cleared before its lock goes. */
static void close_ring(struct ring *ring) {
  if (!inherited(&ring->s)) {
    clear_entry(ring->entry);
    signal_space(&ring->s);
  }
  close_stream(&ring->s);
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

/* Open the stream `name` for a reader: read-only, owners as the reader accepts. */
static int open_for_reader(shl_segment **seg, const char *name, uint32_t flags,
                           int64_t timeout_ns, uint32_t owner, uint32_t owner_uid) {
  shl_open_opts oopts = SHL_OPEN_OPTS_INIT;
  oopts.flags = SHL_OPEN_READONLY | flags;
  oopts.timeout_ns = timeout_ns;
  oopts.owner = owner;
  oopts.owner_uid = owner_uid;
  return shl_open_ex(seg, name, &oopts);
}

int shl_reader_open_ex(shl_reader **out, const char *name, const shl_reader_opts *user_opts) {
  shl_reader_opts opts = SHL_READER_OPTS_INIT;
  if (!out) return -EINVAL;
  *out = NULL;
  int rc = user_opts ? shl__opts_copy(&opts, sizeof opts, user_opts, user_opts->size) : 0;
  if (rc < 0) return rc;
  if ((opts.policy != SHL_RECV_LATEST && opts.policy != SHL_RECV_ALL) ||
      (opts.flags & ~(uint32_t)(SHL_READER_NO_FOLLOW | SHL_READER_KEEP_LAST)))
    return -EINVAL;
  /* The stream may not exist yet, or its writer may still be creating it:
   * wait for it, within the caller's time. */
  shl_segment *seg;
  int64_t asked_ns = shl__realtime_ns();
  rc = open_for_reader(&seg, name, SHL_OPEN_WAIT_NAME, opts.timeout_ns, opts.owner,
                       opts.owner_uid);
  if (rc < 0) return rc;
  shl_reader *r = calloc(1, sizeof *r);
  if (!r) {
    shl_close(seg);
    return -ENOMEM;
  }
  r->policy = opts.policy;
  r->flags = opts.flags;
  r->owner = opts.owner;
  r->owner_uid = opts.owner_uid;
  rc = open_ring(&r->cur, seg, r->policy);
  if (rc < 0) {
    free(r);
    return rc;
  }
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
  while (r->left) {
    struct ring *ring = r->left;
    r->left = ring->next;
    close_ring(ring);
  }
  close_ring(r->cur);
  free(r);
}

shl_segment *shl_reader_segment(const shl_reader *r) { return r->cur->s.seg; }

/* The ring a sample came from: the one whose frames hold its data. */
static struct ring *ring_of(const shl_reader *r, const shl_sample *sample) {
  for (struct ring *ring = r->cur; ring; ring = ring == r->cur ? r->left : ring->next) {
    const struct stream *s = &ring->s;
    uintptr_t at = (uintptr_t)sample->data, base = (uintptr_t)s->frames;
    if (sample->slot < s->slots && at == base + sample->slot * s->stride) return ring;
  }
  return NULL;
}

static void unpin(shl_reader *r, struct ring *ring, uint32_t slot) {
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
  close_ring(ring);
}

/* Pin `slot` of the current ring if it still holds frame `seq`. */
static bool pin(shl_reader *r, uint32_t slot, uint64_t seq) {
  struct ring *ring = r->cur;
  SHL__TEST_POINT(pin);
  r->pinned++;
  ring->pinned++;
  /* Set, then read seq: pairs with claim_slot's clear, then scan (I2). */
  if (ring->held[slot]++ == 0) atomic_fetch_or(&ring->entry->pinned, 1ull << slot);
  if (atomic_load(&ring->s.slot[slot].seq) == seq) return true;
  unpin(r, ring, slot);
  return false;
}

static void deliver(shl_reader *r, uint32_t slot, uint64_t seq, uint64_t lost, shl_sample *out) {
  const struct stream *s = &r->cur->s;
  out->data = s->frames + (uint64_t)slot * s->stride;
  out->seq = seq;
  /* Relaxed: ordered by the acquire of latest or seq that found the frame (I1). */
  out->timestamp_ns = atomic_load_explicit(&s->slot[slot].timestamp_ns, memory_order_relaxed);
  out->lost = lost;
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
    /* Above SEQ_MAX: no frame but a peer's damage, which the writer's next
     * publish overwrites. */
    if (seq <= r->last_seq || seq > SHL__SEQ_MAX) return -EAGAIN;
    if (slot >= s->slots) return SHL_E_BAD_HEADER;
    if (pin(r, slot, seq)) {
      deliver(r, slot, seq, r->last_seq ? seq - r->last_seq - 1 : 0, out);
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
    uint64_t want = r->next_seq;
    if (want > head || head > SHL__SEQ_MAX) return -EAGAIN;
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
    if (reclaiming && attempt < PIN_ATTEMPTS / 2) {
      SHL__TEST_POINT(take_next_reclaim);
      shl__cpu_relax();
      continue;
    }
    if (best < 0 || !pin(r, (uint32_t)best, best_seq)) continue;
    deliver(r, (uint32_t)best, best_seq, best_seq - want, out);
    r->next_seq = best_seq + 1;
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

/* Move to the stream the name holds now: 1 moved, 0 nothing to move to
 * (no stream under the name yet, or this very one), or an error. Frame
 * numbers that go on across the move keep counting what this reader missed
 * in `lost`; numbers that start again cannot (the gap is unknown). The ring
 * left stays while its samples are held. */
static int follow(shl_reader *r) {
  struct ring *old = r->cur, *ring;
  shl_segment *seg;
  int rc = open_for_reader(&seg, old->s.seg->name, 0, 0, r->owner, r->owner_uid);
  if (rc == -ENOENT || rc == SHL_E_NOT_READY) return 0;
  if (rc < 0) return rc;
  struct stat a, b;
  if (fstat(seg->fd, &a) == 0 && fstat(old->s.seg->fd, &b) == 0 && a.st_ino == b.st_ino &&
      a.st_dev == b.st_dev) {
    shl_close(seg); /* the name came back to this very stream */
    return 0;
  }
  rc = open_ring(&ring, seg, r->policy);
  if (rc < 0) return rc;
  uint64_t base = ring->s.base_seq;
  if (base < r->last_seq || r->next_seq > base + 1) {
    r->last_seq = base;
    r->next_seq = base + 1;
  }
  if (!r->next_seq) r->next_seq = base + 1;
  atomic_store(&ring->entry->next_seq, r->next_seq); /* as start_at_head's (I6) */
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
    close_ring(old);
  }
  if (!r->max_pinned_asked) r->max_pinned = default_max_pinned(ring->s.slots);
  if (r->pace_on) shl__pace_reset(&r->pace, atomic_load(&ring->s.ctl->period_ns));
  return 1;
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
  if (plan == SHL__PACE_SPIN && (flags & SHL_WAIT_RETURN_DUE)) return DUE;
  int64_t left = deadline - now;
  if (left <= 0) return -ETIMEDOUT;
  /* Before any sleep (not instead of a time-out): pairs with
   * shl_reader_wake's bump, made before its futex wake. */
  uint32_t wake = atomic_load(&r->wake);
  if (wake != r->wake_seen) {
    r->wake_seen = wake;
    return -EINTR;
  }
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
    struct shl__also also[2] = {{word, expected}, {&r->wake, wake}};
    rc = shl__wait_also(s->seg, changes, slice, wait, also, 2, NULL);
  }
  if (rc == -EINTR) return rc;
  wait->spin_ns = 0; /* spin once per call: an idle stream costs no CPU */
  return -EAGAIN;
}

int shl_reader_receive(shl_reader *r, shl_sample *out, int64_t timeout_ns, uint32_t flags) {
  if (inherited(&r->cur->s)) return SHL_E_FORKED;
  if (r->pinned >= r->max_pinned) return SHL_E_PIN_LIMIT;
  int64_t deadline = deadline_after(timeout_ns);
  shl_wait_opts wait = {sizeof wait, flags & SHL_WAIT_INTERRUPTIBLE, r->spin_ns};
  if (flags & ~(uint32_t)(SHL_WAIT_INTERRUPTIBLE | SHL_WAIT_RETURN_DUE)) return -EINVAL;
  for (;;) {
    struct stream *s = &r->cur->s;
    /* Read before looking; pairs with publish's notify (I7). */
    uint64_t changes = shl_changes(s->seg);
    int rc = take(r, out);
    if (rc != -EAGAIN) return rc;
    /* Pairs with replace()'s store, made once the new stream is ready. */
    int why = atomic_load(&s->ctl->replaced) ? SHL_E_REPLACED
                                             : wait_for_frame(r, changes, deadline, &wait, flags);
    /* Gone, and the name holds another object: removed and created again. */
    if ((why == SHL_E_WRITER_GONE || why == SHL_E_WRITER_CLOSED) &&
        shl__seg_names_object(s->seg) == -ESTALE)
      why = SHL_E_REPLACED;
    if (why == SHL_E_WRITER_GONE || why == SHL_E_WRITER_CLOSED || why == SHL_E_REPLACED) {
      /* Nothing new, and nobody left to publish it. */
      rc = take(r, out);
      if (rc != -EAGAIN) return rc;
      if (why != SHL_E_REPLACED || (r->flags & SHL_READER_NO_FOLLOW)) return why;
      rc = follow(r);
      if (rc < 0) return rc;
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

void shl_reader_set_spin(shl_reader *r, uint32_t spin_ns) {
  bool pace = spin_ns == SHL_SPIN_AUTO;
  if (pace && !r->pace_on) shl__pace_reset(&r->pace, atomic_load(&r->cur->s.ctl->period_ns));
  r->pace_on = pace;
  r->spin_ns = pace ? 0 : spin_ns;
}

void shl_reader_wake(shl_reader *r) {
  /* Pairs with wait_for_frame's read before it sleeps on the word. */
  atomic_fetch_add(&r->wake, 1);
  shl__futex_wake_all(&r->wake);
}

int shl_reader_release(shl_reader *r, const shl_sample *sample) {
  if (inherited(&r->cur->s)) return SHL_E_FORKED;
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

int64_t shl_reader_get_meta(const shl_reader *r, char *format, size_t size) {
  return copy_meta(&r->cur->s, format, size);
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
  info.meta_size = s.meta_size;
  info.meta_offset = s.meta_offset;
  info.base_seq = s.base_seq;
  /* A snapshot for people: from the role locks ("cannot tell" counts as
   * alive) and single loads, with no ordering between them. */
  for (uint32_t i = 0, n = reader_hwm(&s); i < n; i++)
    if (shl__role_held(seg->fd, SHL__ROLE_READER(i)) != 0) info.readers_alive++;
  info.writer_alive = shl__role_held(seg->fd, SHL__ROLE_WRITER);
  info.writer_pid = (int32_t)(uint32_t)atomic_load(&s.ctl->writer);
  info.replaced = atomic_load(&s.ctl->replaced) != 0;
  info.period_ns = atomic_load(&s.ctl->period_ns);
  uint64_t latest = atomic_load(&s.ctl->latest);
  info.last_seq = latest_seq(latest);
  uint32_t slot = latest_slot(latest);
  if (latest && slot < s.slots) info.last_timestamp_ns = atomic_load(&s.slot[slot].timestamp_ns);
  return shl__info_copy(out, &info, sizeof info);
}

int shl_stream_get_reader(const shl_segment *seg, uint32_t index, shl_stream_reader *out) {
  struct stream s;
  int rc = bind(&s, (shl_segment *)seg);
  if (rc < 0) return rc;
  if (index >= s.max_readers) return -ERANGE;
  const struct shl__reader *e = &s.reader[index];
  shl_stream_reader info = SHL_STREAM_READER_INIT;
  uint64_t owner = atomic_load(&e->owner);
  if (!owner || index >= reader_hwm(&s)) return 0;
  info.pid = (int32_t)(uint32_t)owner;
  info.alive = shl__role_held(seg->fd, SHL__ROLE_READER(index));
  info.policy = atomic_load(&e->policy);
  info.pinned = atomic_load(&e->pinned) & (s.slots == 64 ? ~0ull : (1ull << s.slots) - 1);
  info.next_seq = atomic_load(&e->next_seq);
  rc = shl__info_copy(out, &info, sizeof info);
  return rc < 0 ? rc : 1;
}

int64_t shl_stream_get_meta(const shl_segment *seg, char *format, size_t size) {
  struct stream s;
  if (format && size) format[0] = '\0';
  int rc = bind(&s, (shl_segment *)seg);
  return rc < 0 ? rc : copy_meta(&s, format, size);
}
