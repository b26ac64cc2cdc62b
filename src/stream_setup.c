/* Streams' setup and lifecycle, the writer's side: planning a stream and
 * creating it, opening it as its writer (create, take over, replace),
 * closing; stream_readers.c holds the readers' side. The protocol these
 * steps join (docs/format.md, Streams; invariants I1-I7) is stated and kept
 * in stream.c; the steps here that touch shared words name the invariant
 * they keep.
 *
 * Replacement. A writer with another layout (SHL_STREAM_REPLACE) takes the
 * old stream's writer role, creates the new stream under the name with
 * base_seq set past the old numbers, and only then sets the old one's
 * `replaced` and wakes its readers. A reader that has received every frame
 * of its stream and finds it replaced, or its writer gone and the name
 * holding another object, registers on the object the name holds and goes
 * on from there (shl__reader_follow). Rings it left that still have pinned
 * samples stay mapped until those are released.
 */
#include <assert.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "stream.h"

#define DEFAULT_SLOTS 8
#define DEFAULT_READERS 64
/* A writer taking over a cleanly closed stream looks at the role this often. */
#define CLOSED_ROLE_POLL_NS 1000000

int shl__stream_check_mode(const shl_segment *seg) {
  struct stat st;
  if (fstat(seg->fd, &st) < 0) return -errno;
  return shl_mode_check((uint32_t)st.st_mode & 07777, SHL_KIND_STREAM);
}

void shl__stream_close(struct stream *s) {
  shl__role_fd_close(&s->role); /* drops the role: after the shared words are final */
  shl_close(detach(&s->seg));
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
    shl__sleep_ns(CLOSED_ROLE_POLL_NS);
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
  rc = shl__stream_bind(s, seg);
  if (rc < 0) {
    shl__stream_close(s);
    s->seg = NULL;
  }
  return rc;
}

/* Builds the stream planned under a private name and swaps it in for the
 * object open as old_fd (the name never lacks an object, and a failure
 * leaves the old one in place). -ESTALE if the name no longer holds it. */
static int swap_stream(struct stream *s, const char *name, int old_fd, const shl_layout *frame,
                       struct plan *p, uint32_t mode) {
  int rc = create_stream(s, name, frame, p, mode, true);
  if (rc < 0) return rc;
  rc = shl__segment_swap_in(s->seg, old_fd);
  if (rc < 0) {
    shl__stream_close(s); /* removes the staged object */
    s->seg = NULL;
  }
  return rc;
}

/* The bound stream `old` makes way for a new one under its name, whose
 * writer role `s` will hold. Frame numbers go on from `base`, or start
 * again when they are used up. Readers of `old` follow once they see
 * `replaced`. -ESTALE if the name no longer holds `old`. */
static int replace_stream(struct stream *s, struct stream *old, const shl_layout *frame,
                          struct plan *p, uint32_t mode, uint64_t base) {
  p->ctl.base_seq = base < SHL__SEQ_MAX ? base : 0;
  int rc = swap_stream(s, old->seg->name, old->seg->fd, frame, p, mode);
  if (rc < 0) return rc;
  /* After the new stream is under the name: a reader that sees the flag
   * finds it there. Pairs with receive's look at `replaced`. */
  atomic_store(&old->ctl->replaced, 1);
  shl_notify(old->seg, NULL);
  return 0;
}

/* What openers refuse in an object under a stream's name (a peer's damage,
 * a creator killed half-way, another format version): SHL_STREAM_REPLACE
 * takes such a name back. SHL_E_BAD_KIND counts only from the header: a
 * valid segment of another kind is the caller's to remove. */
static bool not_a_stream(int rc) {
  /* The validators' codes, SHL_E_NOT_SHMLANE down to SHL_E_ITEMSIZE
   * (shmlane.h), but a creator still at work. */
  return (rc <= SHL_E_NOT_SHMLANE && rc >= SHL_E_ITEMSIZE && rc != SHL_E_NOT_READY) ||
         rc == SHL_E_CREATOR_DEAD;
}

/* `name` holds an object that is not a valid stream: with no writer or
 * creator holding its roles (kernel locks: the object's bytes are never
 * trusted), a new stream numbered afresh takes its place. Readers of the
 * old object, if any, see its writer gone and the name holding another
 * object, and follow; its control block is not trusted with `replaced`. */
static int take_back(struct stream *s, const char *name, const shl_layout *frame, struct plan *p,
                     uint32_t mode) {
  char pname[sizeof SHL_POSIX_PREFIX + SHL_NAME_MAX];
  struct shl__role_fd role;
  int fd;
  snprintf(pname, sizeof pname, "%s%s", SHL_POSIX_PREFIX, name);
  int rc = shl__role_claim_writer(&role, pname, &fd);
  if (rc < 0) return rc;
  p->ctl.base_seq = 0;
  rc = swap_stream(s, name, fd, frame, p, mode);
  shl__role_fd_close(&role); /* after the swap: no other writer took it meanwhile */
  close(fd);
  return rc;
}

/* A blocking writer keeps the stream it replaced mapped (no role held)
 * until that stream's `all` readers have moved (followers_floor). */
static void keep_prev(shl_writer *w, const struct stream *old) {
  w->prev = *old;
  init_handle(&w->prev); /* the role descriptor was old's, and is closed */
}

/* A blocking writer after a replace keeps, for the `all` readers of the
 * stream it replaced, every frame of the new one until they have moved here
 * (shl__reader_follow marks their old entries): base_seq + 1 while one is on
 * its way. Their role locks alone tell live readers; the old segment's own
 * descriptor holds none. */
uint64_t shl__followers_floor(shl_writer *w) {
  struct stream *prev = &w->prev;
  for (uint32_t i = 0, n = reader_hwm(prev); i < n; i++) {
    const struct shl__reader *e = &prev->reader[i];
    if (atomic_load(&e->owner) != 0 && atomic_load(&e->policy) == SHL_RECV_ALL &&
        atomic_load(&e->next_seq) != NEXT_SEQ_FOLLOWED &&
        shl__role_held(prev->seg->fd, SHL__ROLE_READER(i)) != 0)
      return w->s.base_seq + 1;
  }
  shl__stream_close(prev);
  init_handle(prev);
  prev->seg = NULL;
  return UINT64_MAX;
}

/* How long a blocking writer's replace waits for the readers of the stream
 * it replaced before (await_followers), and how often it looks at their roles. */
#define FOLLOWERS_WAIT_NS 1000000000
#define FOLLOWERS_POLL_NS 50000000

/* A blocking writer replaces its stream again only once the `all` readers
 * of the one it replaced before have moved to it: after the swap they would
 * follow the name past it, losing its frames. A follower bumps `space` as
 * it registers (shl__reader_follow). -ETIMEDOUT if one is still on its way. */
static int await_followers(shl_writer *w) {
  struct stream *s = &w->s;
  int64_t deadline = deadline_after(FOLLOWERS_WAIT_NS);
  for (;;) {
    uint32_t space = atomic_load(&s->ctl->space); /* before the look (I7) */
    if (!w->prev.seg || shl__followers_floor(w) == UINT64_MAX) return 0;
    int64_t left = deadline - shl__monotonic_ns();
    if (left <= 0) return -ETIMEDOUT;
    wait_space(s, space, left < FOLLOWERS_POLL_NS ? left : FOLLOWERS_POLL_NS);
  }
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
    shl__stage_sweep(name); /* what a replacement killed half-way left */
    struct stream old;
    init_handle(&old);
    old.seg = seg;
    if (rc == 0) rc = shl__stream_bind(&old, seg);
    /* No valid stream under the name (its header or its area refused). */
    if (rc < 0 && not_a_stream(rc) && (!seg || seg->kind == SHL_KIND_STREAM) &&
        (opts->flags & SHL_STREAM_REPLACE)) {
      shl_close(seg);
      rc = take_back(s, name, frame, p, opts->mode);
      if (rc != -ESTALE && rc != -EEXIST && rc != -ENOENT) return rc;
      continue;
    }
    if (!seg) return rc;
    if (rc == 0) rc = shl__stream_check_mode(seg);
    int differs = rc == 0 ? same_layout(&old, frame, p, opts->slots) : 0;
    if (differs && !(opts->flags & SHL_STREAM_REPLACE)) rc = differs;
    if (rc == 0) rc = claim_writer(&old);
    /* Removed (or replaced) while this waited for the role, by one that held
     * it to do so (shl_stream_unlink_unused): a new stream under the name. */
    if (rc == 0 && shl__seg_names_object(seg) != 0) rc = -ESTALE;
    /* Frame numbers used up (or a peer's damage): a new stream, numbered afresh. */
    uint64_t high = rc == 0 ? highest_seq(&old) : 0;
    if (rc == 0 && !differs && high < SHL__SEQ_MAX) {
      memcpy(s, &old, offsetof(struct stream, role));
      shl__role_fd_move(&s->role, &old.role); /* with its fork registration */
      return 0;
    }
    if (rc == 0) rc = replace_stream(s, &old, frame, p, opts->mode, high);
    shl__role_fd_close(&old.role);
    if (rc == 0 && (s->flags & SHL_STREAM_BLOCK)) {
      keep_prev(w, &old); /* its `all` readers may still come */
      return 0;
    }
    shl__stream_close(&old);
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
      (opts->flags & ~(uint32_t)(SHL_STREAM_BLOCK | SHL_STREAM_REPLACE)))
    return -EINVAL;
  int rc = shl_mode_check(opts->mode ? opts->mode : 0600, SHL_KIND_STREAM);
  if (rc < 0) return rc;
  uint64_t frame_size;
  rc = shl__layout_plan(frame, layout, &frame_size);
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

/* Plans the stream that the caller's options (copied already) and frame
 * describe, and allocates the handle of its writer-to-be. */
static int writer_new(shl_writer **out, const shl_layout *frame, const shl_stream_opts *opts,
                      shl_layout *layout, struct plan *p) {
  int rc = plan_stream(frame, opts, layout, p);
  if (rc < 0) return rc;
  shl_writer *w = calloc(1, sizeof *w);
  if (!w) return -ENOMEM;
  w->loaned = -1;
  init_handle(&w->s);
  init_handle(&w->prev);
  *out = w;
  return 0;
}

/* With the role held: every reader entry's liveness word names this
 * writer's keeper from now on (or says it has none); readers asleep on a
 * previous value look again. Cannot fail: a keeper that cannot start
 * leaves readers polling (NO_KEEPER). */
static void start_keeper(shl_writer *w) {
  struct stream *s = &w->s;
  w->nalive = s->max_readers;
  for (uint32_t i = 0; i < w->nalive; i++) w->alive[i] = &s->reader[i].alive;
  w->keeper = shl__keeper_start(w->alive, w->nalive);
  for (uint32_t i = 0; i < w->nalive; i++) {
    if (!w->keeper) atomic_store(w->alive[i], SHL__ALIVE_NO_KEEPER);
    shl__futex_wake_all(w->alive[i]);
  }
}

/* Before the role goes (a writer taking over next must not find our words,
 * nor our keeper's id in them): each word still ours becomes 0, which wakes
 * its reader; then the keeper stops. */
static void stop_keeper(shl_writer *w) {
  uint32_t ours = w->keeper ? shl__keeper_tid(w->keeper) : SHL__ALIVE_NO_KEEPER;
  for (uint32_t i = 0; i < w->nalive; i++) {
    uint32_t v = atomic_load(w->alive[i]);
    while ((v & (SHL__ALIVE_TID_MASK | SHL__ALIVE_DIED)) == ours &&
           !atomic_compare_exchange_weak(w->alive[i], &v, 0)) {
    }
    shl__futex_wake_all(w->alive[i]);
  }
  shl__keeper_stop(detach(&w->keeper));
  SHL__TEST_POINT(keeper_stopped);
}

/* The writer role is ours: say so, repair what a dead writer or a peer left,
 * and go on from the highest number. Cannot fail: it runs after a
 * replacement is under the name, where a failure would leave the name a
 * stream without a writer and the caller's writer on the stream it left. */
static void writer_start(shl_writer *w, uint64_t period_ns) {
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
  start_keeper(w);
}

/* Gives up the role and the stream: words and keeper first, role last. */
static void writer_release(shl_writer *w) {
  bool mine = !inherited(&w->s);
  /* Pairs with writer_state: the word is 0 before the role lock drops. */
  if (mine) atomic_store(&w->s.ctl->writer, 0);
  if (mine) {
    stop_keeper(w);
  } else {
    shl__keeper_stop(detach(&w->keeper)); /* a forked child: frees only */
  }
  w->nalive = 0;
  SHL__TEST_POINT(writer_role_drop);
  assert(!w->keeper); /* the role goes last */
  shl__role_fd_close(&w->s.role);
}

int shl_writer_open(shl_writer **out, const char *name, const shl_layout *frame,
                    const shl_stream_opts *opts) {
  shl_stream_opts o = SHL_STREAM_OPTS_INIT;
  if (!out) return -EINVAL;
  *out = NULL;
  int rc = opts ? shl__opts_copy(&o, &shl__stream_opts_fields, opts) : 0;
  if (rc < 0) return rc;
  shl_layout layout;
  struct plan p;
  shl_writer *w;
  rc = writer_new(&w, frame, &o, &layout, &p);
  if (rc < 0) return rc;
  rc = open_writer(w, name, &layout, &p, &o);
  if (rc < 0) {
    shl_writer_close(w);
    return rc;
  }
  writer_start(w, o.period_ns);
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
    rc = shl__opts_copy(&o, &shl__stream_opts_fields, opts);
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
  shl_writer *w;
  rc = writer_new(&w, frame, &o, &layout, &p);
  if (rc < 0) return rc;
  /* Numbers go on from the last one this writer stamped, or skipped to. */
  uint64_t high = highest_seq(s), base = old->next_seq - 1 > high ? old->next_seq - 1 : high;
  rc = await_followers(old);
  if (rc == 0) rc = replace_stream(&w->s, s, &layout, &p, o.mode, base);
  if (rc < 0) {
    shl_writer_close(w); /* the old stream is still the name's, and `old` its writer */
    return rc;
  }
  writer_start(w, o.period_ns); /* nothing fails once the new stream is under the name */
  /* The old stream's readers heard of the new one before its writer goes
   * (replace_stream), so they follow without ever finding the writer gone. */
  writer_release(old);
  if (w->s.flags & SHL_STREAM_BLOCK) {
    keep_prev(w, &old->s);
    old->s.seg = NULL; /* now w's */
  }
  /* The caller's handle is w's before old is freed: a child forked at any
   * moment inherits the one or the other, never a freed one. */
  __atomic_store_n(wp, w, __ATOMIC_SEQ_CST);
  shl_writer_close(old);
  SHL__TEST_POINT(writer_replaced);
  return 0;
}

/* A clean close clears the writer word before the role lock drops, so that
 * readers tell it from a death (SHL_E_WRITER_CLOSED); the liveness words and
 * the keeper go before the role too (writer_release). */
void shl_writer_close(shl_writer *w) {
  if (!w) return;
  if (w->s.seg) writer_release(w);
  shl__stream_close(&w->s);
  SHL__TEST_POINT(writer_stream_closed);
  shl__stream_close(&w->prev);
  free(w);
}
