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

/* Under wr->lock. */
static void close_if_done(shlgst_writer *wr) {
  if (wr->closing && wr->live == 0 && wr->w) {
    shl_writer_close(wr->w);
    wr->w = NULL;
  }
}

void shlgst_writer_unref(shlgst_writer *wr) {
  if (!wr || !g_atomic_int_dec_and_test(&wr->refs)) return;
  g_assert(wr->live == 0); /* every slot memory holds a reference */
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

static gint64 deadline_of(int64_t timeout_ns) {
  return timeout_ns < 0 ? G_MAXINT64 : g_get_monotonic_time() + timeout_ns / 1000;
}

gboolean shlgst_writer_wait_idle_locked(shlgst_writer *wr, const gint *stop) {
  gint64 deadline = deadline_of(wr->timeout_ns);
  while (wr->loan || wr->live) {
    if (g_atomic_int_get(&wr->flushing) || (stop && g_atomic_int_get(stop))) return FALSE;
    if (!shlgst_cond_wait_until(&wr->cond, &wr->lock, deadline)) return !wr->loan && !wr->live;
  }
  return TRUE;
}

int shlgst_writer_loan_locked(shlgst_writer *wr, void **frame) {
  gint64 deadline = deadline_of(wr->timeout_ns);
  if (!wr->w || wr->closing) return SHL_E_WRITER_CLOSED;
  for (;;) {
    int rc = shl_writer_loan(wr->w, frame, LOAN_SLICE_NS);
    if (rc != -ETIMEDOUT && rc != SHL_E_SLOTS_PINNED) return rc < 0 ? rc : 0;
    if (g_atomic_int_get(&wr->flushing) || g_get_monotonic_time() >= deadline) return rc;
  }
}

/* ---------------------------------------------------------------- pool */

struct _GstShmlanePool {
  GstBufferPool parent;
  shlgst_writer *wr;
  GstVideoInfo frames;
  gint flushing; /* atomic */
};

G_DEFINE_TYPE(GstShmlanePool, gst_shmlane_pool, GST_TYPE_BUFFER_POOL)

/* The destroy notify of memory over a slot. A loan is made only while no
 * such memory lives, so there is at most one, and a loan still out is its
 * own: never published, it is discarded. The last memory lets a finished
 * writer close. */
static void slot_memory_gone(gpointer data) {
  shlgst_writer *wr = data;
  g_mutex_lock(&wr->lock);
  g_assert(wr->live == 1 && wr->w);
  if (wr->loan) {
    shl_writer_discard(wr->w);
    wr->loan = NULL;
  }
  wr->live--;
  close_if_done(wr);
  shlgst_cond_broadcast(&wr->cond);
  g_mutex_unlock(&wr->lock);
  shlgst_writer_unref(wr);
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
  /* One buffer at a time, and none while memory over an earlier slot lives:
   * that slot may be loaned again once it is not the newest. */
  if (!shlgst_writer_wait_idle_locked(wr, &pool->flushing)) {
    g_mutex_unlock(&wr->lock);
    return GST_FLOW_FLUSHING;
  }
  rc = shlgst_writer_loan_locked(wr, &frame);
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
  GstMemory *mem = gst_memory_new_wrapped(0, frame, f->size, 0, f->size, shlgst_writer_ref(wr),
                                          slot_memory_gone);
  wr->loan = mem;
  wr->live++;
  g_mutex_unlock(&wr->lock);

  GstBuffer *buf = gst_buffer_new();
  gst_buffer_append_memory(buf, mem);
  gst_buffer_add_video_meta_full(buf, GST_VIDEO_FRAME_FLAG_NONE, GST_VIDEO_INFO_FORMAT(f),
                                 GST_VIDEO_INFO_WIDTH(f), GST_VIDEO_INFO_HEIGHT(f),
                                 GST_VIDEO_INFO_N_PLANES(f), (gsize *)f->offset, (gint *)f->stride);
  *out = buf;
  return GST_FLOW_OK;
}

/* Buffers are made afresh for each loan: a released one is freed, and its
 * memory with it (or later, by whoever still holds it). */
static void pool_release(GstBufferPool *bp, GstBuffer *buf) {
  (void)bp;
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

static const gchar **pool_get_options(GstBufferPool *bp) {
  static const gchar *options[] = {GST_BUFFER_POOL_OPTION_VIDEO_META, NULL};
  (void)bp;
  return options;
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
  pc->start = NULL; /* nothing to allocate ahead: buffers are loans */
  pc->get_options = pool_get_options;
  pc->set_config = pool_set_config;
  pc->acquire_buffer = pool_acquire;
  pc->reset_buffer = NULL;
  pc->release_buffer = pool_release;
  pc->flush_start = pool_flush_start;
  pc->flush_stop = pool_flush_stop;
}

static void gst_shmlane_pool_init(GstShmlanePool *pool) { (void)pool; }

GstBufferPool *gst_shmlane_pool_new(shlgst_writer *wr, const GstVideoInfo *frames) {
  GstShmlanePool *pool = g_object_new(GST_TYPE_SHMLANE_POOL, NULL);
  gst_object_ref_sink(pool);
  pool->wr = shlgst_writer_ref(wr);
  pool->frames = *frames;
  return GST_BUFFER_POOL(pool);
}

gboolean gst_shmlane_pool_is_for(GstBufferPool *pool, const shlgst_writer *wr) {
  return GST_IS_SHMLANE_POOL(pool) && GST_SHMLANE_POOL(pool)->wr == wr;
}
