/* The sink's writer, shared with the pool of loaned slots it offers upstream
 * (docs/gstreamer.md, Zero copy). */
#include "pool.h"

#include <errno.h>

#define LOAN_SLICE_NS 20000000 /* a loan waits in slices, to notice flushing */

shlgst_writer *shlgst_writer_new(shl_writer *w) {
  shlgst_writer *wr = g_new0(shlgst_writer, 1);
  wr->refs = 1;
  g_mutex_init(&wr->lock);
  g_cond_init(&wr->cond.cond);
  wr->w = w;
  wr->timeout_ns = -1;
  return wr;
}

shlgst_writer *shlgst_writer_ref(shlgst_writer *wr) {
  g_atomic_int_inc(&wr->refs);
  return wr;
}

/* A buffer over one slot of wr's mapping and its memory (the memory's
 * destroy notify data). It is made at the slot's first loan and kept in
 * wr->slots while its memory lives and the buffer is the pool's: returned
 * with the memory its own alone, it waits there for the slot's next loan. */
struct shlgst_slot {
  shlgst_writer *wr; /* a reference */
  void *frame;
  GstBuffer *buf;
  GstMemory *mem;
  gboolean out; /* under wr->lock: counted in wr->live (lent, or shared beyond buf) */
};

/* Under wr->lock, with no slot memory out: frees the buffers kept over
 * the mapping's slots (their memories' destroy notify takes no lock then). */
static void drop_slots_locked(shlgst_writer *wr) {
  g_assert(wr->live == 0);
  while (wr->n_slots) gst_buffer_unref(wr->slots[--wr->n_slots]->buf);
}

/* Under wr->lock. */
static void close_if_done(shlgst_writer *wr) {
  if (wr->closing && wr->live == 0 && wr->w) {
    drop_slots_locked(wr);
    shl_writer_close(wr->w);
    wr->w = NULL;
  }
}

void shlgst_writer_unref(shlgst_writer *wr) {
  if (!wr || !g_atomic_int_dec_and_test(&wr->refs)) return;
  /* Every slot memory, and so every kept buffer, holds a reference. */
  g_assert(wr->live == 0 && wr->n_slots == 0);
  shl_writer_close(wr->w);
  g_mutex_clear(&wr->lock);
  g_cond_clear(&wr->cond.cond);
  g_free(wr);
}

void shlgst_writer_finish(shlgst_writer *wr) {
  if (!wr) return;
  g_mutex_lock(&wr->lock);
  wr->closing = TRUE;
  close_if_done(wr);
  shlgst_cond_broadcast(&wr->cond);
  g_mutex_unlock(&wr->lock);
  shlgst_writer_unref(wr);
}

void shlgst_writer_set_flushing(shlgst_writer *wr, gboolean flushing) {
  g_atomic_int_set(&wr->flushing, flushing);
  g_mutex_lock(&wr->lock);
  shlgst_cond_broadcast(&wr->cond);
  g_mutex_unlock(&wr->lock);
}

/* The end of a wait of timeout_ns from now, less `spent` ns already waited.
 * Reckoned only once a wait is needed: the clock is not read per frame. */
static gint64 deadline_of(int64_t timeout_ns, int64_t spent) {
  return timeout_ns < 0 ? G_MAXINT64 : g_get_monotonic_time() + (timeout_ns - spent) / 1000;
}

gboolean shlgst_writer_wait_idle_locked(shlgst_writer *wr, const gint *stop) {
  gint64 deadline = 0;
  while (wr->loan || wr->live) {
    if (g_atomic_int_get(&wr->flushing) || (stop && g_atomic_int_get(stop))) return FALSE;
    if (!deadline) deadline = deadline_of(wr->timeout_ns, 0);
    if (!shlgst_cond_wait_until(&wr->cond, &wr->lock, deadline)) return !wr->loan && !wr->live;
  }
  return TRUE;
}

int shlgst_writer_replace_locked(shlgst_writer *wr, const shl_layout *frame,
                                 const shl_stream_opts *opts) {
  drop_slots_locked(wr);
  wr->stream++;
  return shl_writer_replace(&wr->w, frame, opts);
}

int shlgst_writer_loan_locked(shlgst_writer *wr, void **frame, const gint *stop) {
  gint64 deadline = 0;
  if (!wr->w || wr->closing) return SHL_E_WRITER_CLOSED;
  for (;;) {
    int rc = shl_writer_loan(wr->w, frame, LOAN_SLICE_NS);
    if (rc != -ETIMEDOUT && rc != SHL_E_SLOTS_PINNED) return rc < 0 ? rc : 0;
    if (!deadline) deadline = deadline_of(wr->timeout_ns, LOAN_SLICE_NS);
    if (g_atomic_int_get(&wr->flushing) || (stop && g_atomic_int_get(stop)) ||
        g_get_monotonic_time() >= deadline)
      return rc;
  }
}

/* ---------------------------------------------------------------- pool */

struct _GstShmlanePool {
  GstBufferPool parent;
  shlgst_writer *wr;
  guint stream; /* wr->stream when it was made: its frames are that stream's */
  GstVideoInfo frames;
  gint flushing; /* atomic */
};

G_DEFINE_TYPE(GstShmlanePool, gst_shmlane_pool, GST_TYPE_BUFFER_POOL)

/* Under wr->lock: s no longer kept (its buffer is let go). */
static void forget_slot(shlgst_writer *wr, const shlgst_slot *s) {
  for (guint i = 0; i < wr->n_slots; i++)
    if (wr->slots[i] == s) {
      wr->slots[i] = wr->slots[--wr->n_slots];
      return;
    }
}

/* Under wr->lock, out: the slot is the pool's again; a loan still out is
 * its own, never published: it is discarded. */
static void slot_back(shlgst_writer *wr, shlgst_slot *s) {
  if (wr->loan == s->mem) {
    shl_writer_discard(wr->w);
    wr->loan = NULL;
  }
  s->out = FALSE;
  wr->live--;
  shlgst_cond_broadcast(&wr->cond);
}

/* The destroy notify of memory over a slot. Memory that was not out is
 * freed by drop_slots_locked, which holds the lock. The last memory out
 * lets a finished writer close. */
static void slot_memory_gone(gpointer data) {
  shlgst_slot *s = data;
  shlgst_writer *wr = s->wr;
  if (s->out) {
    g_mutex_lock(&wr->lock);
    g_assert(wr->live == 1 && wr->w);
    forget_slot(wr, s);
    slot_back(wr, s);
    close_if_done(wr);
    g_mutex_unlock(&wr->lock);
  }
  g_free(s);
  shlgst_writer_unref(wr);
}

/* Under wr->lock: the buffer kept over `frame`, or a new one (the memory
 * over a slot is the buffer's own, as a pool's buffers are made). */
static shlgst_slot *slot_of_frame(shlgst_writer *wr, void *frame, gsize size) {
  for (guint i = 0; i < wr->n_slots; i++)
    if (wr->slots[i]->frame == frame) {
      g_assert(!wr->slots[i]->out); /* a loan is made only while no slot is out */
      return wr->slots[i];
    }
  g_assert(wr->n_slots < G_N_ELEMENTS(wr->slots)); /* one per slot of the mapping */
  shlgst_slot *s = g_new0(shlgst_slot, 1);
  s->wr = shlgst_writer_ref(wr);
  s->frame = frame;
  s->mem = gst_memory_new_wrapped(0, frame, size, 0, size, s, slot_memory_gone);
  s->buf = gst_buffer_new();
  gst_buffer_append_memory(s->buf, s->mem);
  GST_BUFFER_FLAG_UNSET(s->buf, GST_BUFFER_FLAG_TAG_MEMORY);
  wr->slots[wr->n_slots++] = s;
  return s;
}

static GstFlowReturn pool_acquire(GstBufferPool *bp, GstBuffer **out,
                                  GstBufferPoolAcquireParams *params) {
  GstShmlanePool *pool = GST_SHMLANE_POOL(bp);
  shlgst_writer *wr = pool->wr;
  const GstVideoInfo *f = &pool->frames;
  void *frame = NULL;
  int rc;
  (void)params;
  g_mutex_lock(&wr->lock);
  /* One buffer at a time, and none while memory over an earlier slot is
   * out: that slot may be loaned again once it is not the newest. A pool
   * of replaced caps, still in use upstream, lends no slot of the new
   * stream: their frames may be larger. */
  if (!shlgst_writer_wait_idle_locked(wr, &pool->flushing))
    rc = -ETIMEDOUT;
  else
    rc = pool->stream == wr->stream ? shlgst_writer_loan_locked(wr, &frame, &pool->flushing)
                                    : SHL_E_REPLACED;
  if (rc < 0) {
    g_mutex_unlock(&wr->lock);
    if (g_atomic_int_get(&pool->flushing) || g_atomic_int_get(&wr->flushing))
      return GST_FLOW_FLUSHING;
    /* No slot: upstream fills ordinary memory and the sink decides (it
     * copies, or drops the frame with a warning if there is still none). */
    GST_INFO_OBJECT(pool, "no slot to lend (%s): ordinary memory", shl_strerror(rc));
    *out = gst_buffer_new_allocate(NULL, f->size, NULL);
    return *out ? GST_FLOW_OK : GST_FLOW_ERROR;
  }
  shlgst_slot *s = slot_of_frame(wr, frame, f->size);
  s->out = TRUE;
  wr->loan = s->mem;
  wr->live++;
  g_mutex_unlock(&wr->lock);
  *out = s->buf;
  return GST_FLOW_OK;
}

/* TRUE if `buf`, back from upstream, is s's buffer holding s's memory, and
 * nothing else holds that memory (gst_buffer_copy shares it): as
 * GstBufferPool's own release, which keeps only such buffers. */
static gboolean sole_holder(GstBuffer *buf, const shlgst_slot *s) {
  return s->buf == buf && !GST_BUFFER_FLAG_IS_SET(buf, GST_BUFFER_FLAG_TAG_MEMORY) &&
         gst_buffer_n_memory(buf) == 1 && gst_buffer_peek_memory(buf, 0) == s->mem &&
         GST_MINI_OBJECT_REFCOUNT_VALUE(s->mem) == 1 && gst_memory_is_writable(s->mem);
}

/* A buffer back from upstream: kept for its slot's next loan while the
 * writer lends, else freed, its memory with it or later (whoever still
 * holds it keeps the slot out until then). */
static void pool_release(GstBufferPool *bp, GstBuffer *buf) {
  shlgst_writer *wr = GST_SHMLANE_POOL(bp)->wr;
  shlgst_slot *s = NULL;
  g_mutex_lock(&wr->lock);
  for (guint i = 0; i < wr->n_slots && !s; i++)
    if (wr->slots[i]->buf == buf) s = wr->slots[i];
  if (s && sole_holder(buf, s) && !wr->closing) {
    slot_back(wr, s);
    g_mutex_unlock(&wr->lock);
    return;
  }
  if (s) forget_slot(wr, s);
  g_mutex_unlock(&wr->lock);
  gst_buffer_unref(buf);
}

static void pool_flush_start(GstBufferPool *bp) {
  GstShmlanePool *pool = GST_SHMLANE_POOL(bp);
  g_atomic_int_set(&pool->flushing, TRUE);
  g_mutex_lock(&pool->wr->lock);
  shlgst_cond_broadcast(&pool->wr->cond);
  g_mutex_unlock(&pool->wr->lock);
}

static void pool_flush_stop(GstBufferPool *bp) {
  g_atomic_int_set(&GST_SHMLANE_POOL(bp)->flushing, FALSE);
}

/* Upstream may set its own minimum and maximum: whatever it says, there is
 * one buffer at a time. Caps must be the pool's, buffers no larger. */
static gboolean pool_set_config(GstBufferPool *bp, GstStructure *config) {
  GstShmlanePool *pool = GST_SHMLANE_POOL(bp);
  GstCaps *caps = NULL;
  guint size = 0;
  GstVideoInfo info;
  if (!gst_buffer_pool_config_get_params(config, &caps, &size, NULL, NULL) || !caps ||
      !gst_video_info_from_caps(&info, caps) ||
      GST_VIDEO_INFO_FORMAT(&info) != GST_VIDEO_INFO_FORMAT(&pool->frames) ||
      GST_VIDEO_INFO_WIDTH(&info) != GST_VIDEO_INFO_WIDTH(&pool->frames) ||
      GST_VIDEO_INFO_HEIGHT(&info) != GST_VIDEO_INFO_HEIGHT(&pool->frames) ||
      size > pool->frames.size)
    return FALSE;
  return GST_BUFFER_POOL_CLASS(gst_shmlane_pool_parent_class)->set_config(bp, config);
}

static void pool_finalize(GObject *obj) {
  shlgst_writer_unref(GST_SHMLANE_POOL(obj)->wr);
  G_OBJECT_CLASS(gst_shmlane_pool_parent_class)->finalize(obj);
}

static void gst_shmlane_pool_class_init(GstShmlanePoolClass *klass) {
  GstBufferPoolClass *pc = GST_BUFFER_POOL_CLASS(klass);
  G_OBJECT_CLASS(klass)->finalize = pool_finalize;
  pc->start = NULL; /* nothing to allocate ahead: buffers are made at a slot's first loan */
  pc->set_config = pool_set_config;
  pc->acquire_buffer = pool_acquire;
  pc->release_buffer = pool_release;
  pc->flush_start = pool_flush_start;
  pc->flush_stop = pool_flush_stop;
}

static void gst_shmlane_pool_init(GstShmlanePool *pool) { (void)pool; }

GstBufferPool *gst_shmlane_pool_new(shlgst_writer *wr, const GstVideoInfo *frames) {
  GstShmlanePool *pool = g_object_new(GST_TYPE_SHMLANE_POOL, NULL);
  gst_object_ref_sink(pool);
  pool->wr = shlgst_writer_ref(wr);
  g_mutex_lock(&wr->lock);
  pool->stream = wr->stream;
  g_mutex_unlock(&wr->lock);
  pool->frames = *frames;
  return GST_BUFFER_POOL(pool);
}

gboolean gst_shmlane_pool_is_for(GstBufferPool *pool, const shlgst_writer *wr) {
  return GST_IS_SHMLANE_POOL(pool) && GST_SHMLANE_POOL(pool)->wr == wr;
}
