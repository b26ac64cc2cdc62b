/* shmlanesink: raw video into a shmlane stream (docs/gstreamer.md).
 *
 * The stream is created (or taken over) when caps arrive, with the layout
 * layout.c makes of them and a metadata record per frame; other caps
 * replace it (its readers follow). A buffer from the sink's own pool is a
 * loaned slot upstream filled: it is published as it is. Any other buffer
 * is copied once into a slot. */
#include <errno.h>

#include "elements.h"
#include "layout.h"
#include "pool.h"
#include "util.h"

GST_DEBUG_CATEGORY_STATIC(sink_debug);
#define GST_CAT_DEFAULT sink_debug

#define DEFAULT_TIMEOUT_NS (5 * GST_SECOND)

struct _GstShmlaneSink {
  GstBaseSink parent;
  /* Properties, under the object lock. */
  gchar *stream;
  guint slots, max_readers, mode;
  gboolean block;
  gint64 timeout;
  /* The stream: set in the streaming thread, read under the object lock
   * elsewhere (unlock, stop, stats). */
  shlgst_writer *wr;
  GstBufferPool *pool;
  gboolean flushing;
  /* Streaming thread only. */
  GstVideoInfo caps_info; /* frames as negotiated */
  GstVideoInfo frames;    /* frames as the stream lays them out */
  gboolean lend;          /* the two agree: upstream may write into slots */
  gboolean pending;       /* caps of other frames came while a slot was out: */
  GstVideoInfo pending_info; /* the stream is replaced for them at the next frame */
  shlgst_record record;
  /* Counters (atomic). */
  gint published, copied, dropped;
};

G_DEFINE_TYPE(GstShmlaneSink, gst_shmlane_sink, GST_TYPE_BASE_SINK)

enum { PROP_0, PROP_STREAM, PROP_SLOTS, PROP_MAX_READERS, PROP_BLOCK, PROP_MODE, PROP_TIMEOUT,
       PROP_STATS };

static GstStaticPadTemplate sink_template =
    GST_STATIC_PAD_TEMPLATE("sink", GST_PAD_SINK, GST_PAD_ALWAYS, GST_STATIC_CAPS(SHLGST_CAPS));

static gboolean same_frames(const GstVideoInfo *a, const GstVideoInfo *b) {
  return GST_VIDEO_INFO_FORMAT(a) == GST_VIDEO_INFO_FORMAT(b) &&
         GST_VIDEO_INFO_WIDTH(a) == GST_VIDEO_INFO_WIDTH(b) &&
         GST_VIDEO_INFO_HEIGHT(a) == GST_VIDEO_INFO_HEIGHT(b);
}

static void drop_pool(GstShmlaneSink *sink) {
  GST_OBJECT_LOCK(sink);
  GstBufferPool *pool = sink->pool;
  sink->pool = NULL;
  GST_OBJECT_UNLOCK(sink);
  if (pool) gst_object_unref(pool);
}

/* The message of a failed open: a refused setting names the rule. */
static void open_error(GstShmlaneSink *sink, const gchar *name, int rc, const shl_stream_opts *o,
                       const char *format) {
  gchar *text = shlgst_error_text(name, rc);
  if (rc == -EINVAL && o->slots == 1)
    GST_ELEMENT_ERROR(sink, RESOURCE, SETTINGS,
                      ("stream '%s': slots 1: a stream holds 2 to %d frames (0: 8)", name,
                       SHL_STREAM_MAX_SLOTS),
                      (NULL));
  else if (rc == SHL_E_BAD_MODE) /* the property's was checked at start: the stream's */
    GST_ELEMENT_ERROR(sink, RESOURCE, SETTINGS, ("%s", text),
                      ("the stream found under the name has such a mode (a chmod): remove it "
                       "first (shmlane rm %s)",
                       name));
  else
    GST_ELEMENT_ERROR(sink, RESOURCE, OPEN_WRITE, ("%s", text), ("layout %s", format));
  g_free(text);
}

/* Creates the stream, takes it over, or replaces it (other frames). The
 * caps' framerate is the period declared to readers, declared again when
 * only it changes. A replace that would wait for memory over a slot
 * (`defer`) is left for the first frame of the new caps: the caps often
 * come from the very thread that holds that memory, a transform whose input
 * is a lent buffer and that stops passing it through (videoscale, when the
 * caps downstream of it change), and it lets go of its input before it
 * pushes its output. */
static gboolean open_stream(GstShmlaneSink *sink, const GstVideoInfo *info, gboolean defer) {
  shlgst_layout lay;
  GstVideoInfo frames;
  if (!shlgst_layout_from_info(info, &lay, &frames)) return FALSE;
  GST_OBJECT_LOCK(sink);
  gchar *name = shlgst_stream_name(GST_ELEMENT(sink), sink->stream);
  shl_stream_opts opts = SHL_STREAM_OPTS_INIT;
  opts.slots = sink->slots;
  opts.max_readers = sink->max_readers;
  opts.mode = sink->mode;
  opts.flags = SHL_STREAM_REPLACE | (sink->block ? SHL_STREAM_BLOCK : 0);
  opts.meta_format = SHLGST_META_FORMAT;
  if (GST_VIDEO_INFO_FPS_N(info) > 0 && GST_VIDEO_INFO_FPS_D(info) > 0)
    opts.period_ns = gst_util_uint64_scale_int(GST_SECOND, GST_VIDEO_INFO_FPS_D(info),
                                               GST_VIDEO_INFO_FPS_N(info));
  gint64 timeout = sink->timeout;
  shlgst_writer *wr = sink->wr;
  GST_OBJECT_UNLOCK(sink);

  int rc = 0;
  gboolean held = FALSE; /* the old stream's slots stayed out: not replaced */
  gboolean deferred = FALSE;
  if (!wr) {
    shl_writer *w = NULL;
    rc = shl_writer_open(&w, name, &lay.layout, &opts);
    if (rc == 0) {
      wr = shlgst_writer_new(w);
      wr->timeout_ns = timeout;
      GST_OBJECT_LOCK(sink);
      sink->wr = wr;
      if (sink->flushing) g_atomic_int_set(&wr->flushing, TRUE);
      GST_OBJECT_UNLOCK(sink);
    }
  } else if (!same_frames(&sink->frames, &frames)) {
    /* No memory over the old stream's slots may outlive its mapping. The
     * new stream gets the properties (0: the old stream's) and the period. */
    drop_pool(sink);
    g_mutex_lock(&wr->lock);
    deferred = defer && (wr->loan || wr->live);
    if (!deferred) {
      held = !shlgst_writer_wait_idle_locked(wr, NULL);
      rc = held ? -ETIMEDOUT : shlgst_writer_replace_locked(wr, &lay.layout, &opts);
    }
    g_mutex_unlock(&wr->lock);
  } else { /* the same frames at another rate, or none: only the period changes */
    g_mutex_lock(&wr->lock);
    rc = shl_writer_set_period(wr->w, opts.period_ns);
    g_mutex_unlock(&wr->lock);
  }
  if (deferred) {
    GST_INFO_OBJECT(sink, "a buffer over a slot is out: frames %s at the next frame", lay.format);
    sink->pending = TRUE;
    sink->pending_info = *info;
  } else if (held && g_atomic_int_get(&wr->flushing)) {
    /* A flush or a stop ended the wait: no error (the caps come again
     * after a flush). */
    GST_INFO_OBJECT(sink, "flushing: the stream stays as it is");
  } else if (held) {
    GST_ELEMENT_ERROR(sink, RESOURCE, BUSY,
                      ("stream '%s': a buffer over its slots is still held downstream: the "
                       "stream cannot be replaced for other frames under it",
                       name),
                      ("held past the timeout; layout %s", lay.format));
  } else if (rc < 0) {
    open_error(sink, name, rc, &opts, lay.format);
  } else {
    GST_INFO_OBJECT(sink, "stream '%s': frames %s", name, lay.format);
    sink->pending = FALSE;
    sink->caps_info = *info;
    sink->frames = frames;
    sink->lend = shlgst_layout_is_default(&frames);
    shlgst_record_init(&sink->record, info);
  }
  g_free(name);
  return rc == 0;
}

static gboolean sink_set_caps(GstBaseSink *bsink, GstCaps *caps) {
  GstShmlaneSink *sink = GST_SHMLANE_SINK(bsink);
  GstVideoInfo info;
  if (!gst_video_info_from_caps(&info, caps)) return FALSE;
  if (GST_VIDEO_INFO_IS_INTERLACED(&info)) {
    GST_ELEMENT_ERROR(sink, STREAM, FORMAT, ("interlaced video is not supported"), (NULL));
    return FALSE;
  }
  return open_stream(sink, &info, TRUE);
}

static gboolean sink_propose_allocation(GstBaseSink *bsink, GstQuery *query) {
  GstShmlaneSink *sink = GST_SHMLANE_SINK(bsink);
  GstCaps *caps = NULL;
  gboolean need_pool = FALSE;
  GstVideoInfo info;
  gst_query_parse_allocation(query, &caps, &need_pool);
  gst_query_add_allocation_meta(query, GST_VIDEO_META_API_TYPE, NULL);
  /* Slots are lent for the caps of the stream only, laid out as
   * GStreamer's default: the pool's buffers need no GstVideoMeta (mapping
   * through one costs upstream a map per plane). */
  if (!caps || !need_pool || !sink->lend || gst_base_sink_is_last_sample_enabled(bsink) ||
      !gst_video_info_from_caps(&info, caps) || !same_frames(&info, &sink->caps_info))
    return TRUE;
  guint size = (guint)sink->frames.size;
  /* A reference, taken under the lock: a stop on another thread may take
   * the writer away and finish it meanwhile (a pool over a finished writer
   * lends nothing). */
  GST_OBJECT_LOCK(sink);
  shlgst_writer *wr = sink->wr ? shlgst_writer_ref(sink->wr) : NULL;
  GstBufferPool *pool = sink->pool ? gst_object_ref(sink->pool) : NULL;
  GST_OBJECT_UNLOCK(sink);
  if (wr && (!pool || gst_buffer_pool_is_active(pool))) {
    if (pool) gst_object_unref(pool);
    pool = gst_shmlane_pool_new(wr, &sink->frames);
    GstStructure *config = gst_buffer_pool_get_config(pool);
    gst_buffer_pool_config_set_params(config, caps, size, 1, 1);
    if (gst_buffer_pool_set_config(pool, config)) {
      GST_OBJECT_LOCK(sink);
      gst_object_replace((GstObject **)&sink->pool, GST_OBJECT(pool));
      GST_OBJECT_UNLOCK(sink);
    } else {
      gst_object_unref(pool);
      pool = NULL;
    }
  }
  if (wr && pool) gst_query_add_allocation_pool(query, pool, size, 1, 1);
  if (pool) gst_object_unref(pool);
  shlgst_writer_unref(wr);
  return TRUE;
}

/* Under wr->lock, with a loan: stores the record and publishes. */
static int publish_locked(GstShmlaneSink *sink, shlgst_writer *wr, GstBuffer *buf) {
  void *meta = shl_writer_meta(wr->w);
  if (meta) shlgst_record_write(meta, &sink->record, buf);
  int rc = shl_writer_publish(wr->w, NULL);
  if (rc < 0) shl_writer_discard(wr->w);
  return rc;
}

/* Copies buf's frame into the loaned slot at `slot`. */
static gboolean copy_frame(GstShmlaneSink *sink, GstBuffer *buf, void *slot) {
  GstVideoFrame in, out;
  gsize size = sink->frames.size;
  GstBuffer *target = gst_buffer_new_wrapped_full(0, slot, size, 0, size, NULL, NULL);
  gboolean ok = FALSE;
  if (gst_video_frame_map(&in, &sink->caps_info, buf, GST_MAP_READ)) {
    if (gst_video_frame_map(&out, &sink->frames, target, GST_MAP_WRITE)) {
      ok = gst_video_frame_copy(&out, &in);
      gst_video_frame_unmap(&out);
    }
    gst_video_frame_unmap(&in);
  }
  gst_buffer_unref(target);
  return ok;
}

static GstFlowReturn sink_render(GstBaseSink *bsink, GstBuffer *buf) {
  GstShmlaneSink *sink = GST_SHMLANE_SINK(bsink);
  shlgst_writer *wr = sink->wr;
  void *slot = NULL;
  int rc;
  if (!wr) return GST_FLOW_NOT_NEGOTIATED;
  if (sink->pending) {
    if (!open_stream(sink, &sink->pending_info, FALSE))
      return g_atomic_int_get(&wr->flushing) ? GST_FLOW_FLUSHING : GST_FLOW_ERROR;
    /* Upstream asks again for a pool: the new stream's slots. */
    gst_pad_push_event(GST_BASE_SINK_PAD(sink), gst_event_new_reconfigure());
  }
  g_mutex_lock(&wr->lock);
  GstMemory *mem = gst_buffer_n_memory(buf) == 1 ? gst_buffer_peek_memory(buf, 0) : NULL;
  if (wr->loan && mem == wr->loan) {
    /* Upstream wrote into the slot we lent it: nothing to copy. */
    wr->loan = NULL;
    rc = publish_locked(sink, wr, buf);
  } else {
    rc = shlgst_writer_wait_idle_locked(wr, NULL) ? shlgst_writer_loan_locked(wr, &slot, NULL)
                                                   : -ETIMEDOUT;
    if (rc == 0 && !copy_frame(sink, buf, slot)) {
      shl_writer_discard(wr->w);
      g_mutex_unlock(&wr->lock);
      GST_ELEMENT_ERROR(sink, STREAM, FAILED, ("cannot read the frame"), (NULL));
      return GST_FLOW_ERROR;
    }
    if (rc == 0) {
      rc = publish_locked(sink, wr, buf);
      if (rc == 0) g_atomic_int_inc(&sink->copied);
    }
  }
  g_mutex_unlock(&wr->lock);
  if (rc == 0) {
    g_atomic_int_inc(&sink->published);
    return GST_FLOW_OK;
  }
  if (g_atomic_int_get(&wr->flushing)) return GST_FLOW_FLUSHING;
  /* Readers pin every slot, or hold back a blocking stream: this frame is
   * lost, the pipeline goes on. */
  g_atomic_int_inc(&sink->dropped);
  const char *why = rc == -ETIMEDOUT ? "no slot came free within the timeout (readers of policy "
                                       "all behind a blocking stream, or a buffer over a slot "
                                       "held downstream)"
                                     : shl_strerror(rc);
  GST_ELEMENT_WARNING(sink, RESOURCE, BUSY, ("dropped a frame: %s", why), (NULL));
  return GST_FLOW_OK;
}

/* unlock (TRUE) and unlock_stop (FALSE): waits for slots end, or may wait. */
static gboolean set_flushing(GstShmlaneSink *sink, gboolean flushing) {
  GST_OBJECT_LOCK(sink);
  sink->flushing = flushing;
  shlgst_writer *wr = sink->wr ? shlgst_writer_ref(sink->wr) : NULL;
  GST_OBJECT_UNLOCK(sink);
  if (wr) shlgst_writer_set_flushing(wr, flushing);
  shlgst_writer_unref(wr);
  return TRUE;
}

static gboolean sink_unlock(GstBaseSink *bsink) {
  return set_flushing(GST_SHMLANE_SINK(bsink), TRUE);
}

static gboolean sink_unlock_stop(GstBaseSink *bsink) {
  return set_flushing(GST_SHMLANE_SINK(bsink), FALSE);
}

/* A mode no stream may have (shl_mode_check) is the property's error, at
 * start rather than when the first caps come. */
static gboolean sink_start(GstBaseSink *bsink) {
  GstShmlaneSink *sink = GST_SHMLANE_SINK(bsink);
  GST_OBJECT_LOCK(sink);
  guint mode = sink->mode;
  GST_OBJECT_UNLOCK(sink);
  int rc = shl_mode_check(mode ? mode : 0600, SHL_KIND_STREAM);
  if (rc < 0)
    GST_ELEMENT_ERROR(sink, RESOURCE, SETTINGS, ("property mode=%04o: %s", mode, shl_strerror(rc)),
                      ("0600 keeps the stream to its owner, 0660 shares it with a group, "
                       "0666 with everyone"));
  return rc == 0;
}

/* Gives up the stream: the writer role goes at once, or when the last
 * buffer over a slot does. The stream stays for its readers. */
static gboolean sink_stop(GstBaseSink *bsink) {
  GstShmlaneSink *sink = GST_SHMLANE_SINK(bsink);
  drop_pool(sink);
  GST_OBJECT_LOCK(sink);
  shlgst_writer *wr = sink->wr;
  sink->wr = NULL;
  GST_OBJECT_UNLOCK(sink);
  sink->pending = FALSE;
  shlgst_writer_finish(wr);
  return TRUE;
}

static void sink_set_property(GObject *obj, guint id, const GValue *value, GParamSpec *pspec) {
  GstShmlaneSink *sink = GST_SHMLANE_SINK(obj);
  GST_OBJECT_LOCK(sink);
  if (!shlgst_property_settable(GST_ELEMENT(sink), pspec)) {
    GST_OBJECT_UNLOCK(sink);
    return;
  }
  switch (id) {
    case PROP_STREAM:
      g_free(sink->stream);
      sink->stream = g_value_dup_string(value);
      break;
    case PROP_SLOTS: sink->slots = g_value_get_uint(value); break;
    case PROP_MAX_READERS: sink->max_readers = g_value_get_uint(value); break;
    case PROP_BLOCK: sink->block = g_value_get_boolean(value); break;
    case PROP_MODE: sink->mode = g_value_get_uint(value); break;
    case PROP_TIMEOUT: sink->timeout = g_value_get_int64(value); break;
    default: G_OBJECT_WARN_INVALID_PROPERTY_ID(obj, id, pspec); break;
  }
  GST_OBJECT_UNLOCK(sink);
}

static void sink_get_property(GObject *obj, guint id, GValue *value, GParamSpec *pspec) {
  GstShmlaneSink *sink = GST_SHMLANE_SINK(obj);
  GST_OBJECT_LOCK(sink);
  switch (id) {
    case PROP_STREAM: g_value_set_string(value, sink->stream); break;
    case PROP_SLOTS: g_value_set_uint(value, sink->slots); break;
    case PROP_MAX_READERS: g_value_set_uint(value, sink->max_readers); break;
    case PROP_BLOCK: g_value_set_boolean(value, sink->block); break;
    case PROP_MODE: g_value_set_uint(value, sink->mode); break;
    case PROP_TIMEOUT: g_value_set_int64(value, sink->timeout); break;
    case PROP_STATS:
      g_value_take_boxed(
          value, gst_structure_new("application/x-shmlane-sink-stats", "published", G_TYPE_UINT,
                                   (guint)g_atomic_int_get(&sink->published), "copied", G_TYPE_UINT,
                                   (guint)g_atomic_int_get(&sink->copied), "dropped", G_TYPE_UINT,
                                   (guint)g_atomic_int_get(&sink->dropped), NULL));
      break;
    default: G_OBJECT_WARN_INVALID_PROPERTY_ID(obj, id, pspec); break;
  }
  GST_OBJECT_UNLOCK(sink);
}

static void sink_finalize(GObject *obj) {
  GstShmlaneSink *sink = GST_SHMLANE_SINK(obj);
  g_free(sink->stream);
  G_OBJECT_CLASS(gst_shmlane_sink_parent_class)->finalize(obj);
}

static void gst_shmlane_sink_class_init(GstShmlaneSinkClass *klass) {
  GObjectClass *oc = G_OBJECT_CLASS(klass);
  GstElementClass *ec = GST_ELEMENT_CLASS(klass);
  GstBaseSinkClass *bc = GST_BASE_SINK_CLASS(klass);
  GParamFlags rw = G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_READY;
  GST_DEBUG_CATEGORY_INIT(sink_debug, "shmlanesink", 0, "shmlane stream sink");
  oc->set_property = sink_set_property;
  oc->get_property = sink_get_property;
  oc->finalize = sink_finalize;
  g_object_class_install_property(
      oc, PROP_STREAM,
      g_param_spec_string("stream", "Stream", "Name of the stream (default: the element's name)",
                          NULL, rw));
  g_object_class_install_property(
      oc, PROP_SLOTS,
      g_param_spec_uint("slots", "Slots", "Frames the stream's ring holds, 2 to 64 (0: 8)", 0,
                        SHL_STREAM_MAX_SLOTS, 0, rw));
  g_object_class_install_property(
      oc, PROP_MAX_READERS,
      g_param_spec_uint("max-readers", "Max readers", "Readers the stream can hold (0: 64)", 0,
                        SHL_STREAM_MAX_READERS, 0, rw));
  g_object_class_install_property(
      oc, PROP_BLOCK,
      g_param_spec_boolean("block", "Block",
                           "Never lap a reader of policy 'all': wait for it (lossless)", FALSE,
                           rw));
  g_object_class_install_property(
      oc, PROP_MODE,
      g_param_spec_uint("mode", "Mode",
                        "Permission bits of a new stream (0: 0600; 0660 or 0666 to share with a "
                        "group or everyone). The owner reads and writes, and read is granted "
                        "only with write: 0640, 0644, 0200, 0066 and the like are an error at "
                        "start (a reader writes its pins, and one who could only read could "
                        "blind the others)",
                        0, 0777, 0, rw));
  g_object_class_install_property(
      oc, PROP_TIMEOUT,
      g_param_spec_int64("timeout", "Timeout",
                         "How long a frame waits for a free slot before it is dropped with a "
                         "warning (ns; -1: forever)",
                         -1, G_MAXINT64, DEFAULT_TIMEOUT_NS, rw));
  g_object_class_install_property(
      oc, PROP_STATS,
      g_param_spec_boxed("stats", "Statistics",
                         "Frames published, copied into a slot (the others were written in "
                         "place), dropped",
                         GST_TYPE_STRUCTURE, G_PARAM_READABLE | G_PARAM_STATIC_STRINGS));
  gst_element_class_set_static_metadata(
      ec, "shmlane stream sink", "Sink/Video",
      "Publishes raw video frames into a shmlane stream in shared memory", "shmlane");
  gst_element_class_add_static_pad_template(ec, &sink_template);
  bc->set_caps = sink_set_caps;
  bc->propose_allocation = sink_propose_allocation;
  bc->render = sink_render;
  bc->unlock = sink_unlock;
  bc->unlock_stop = sink_unlock_stop;
  bc->start = sink_start;
  bc->stop = sink_stop;
}

/* A kept last sample would hold the slot it was lent over until the next
 * frame, and the pool lends no slot while one is held: while
 * enable-last-sample is on, no slot is lent (propose_allocation) and frames
 * are copied. Upstream is asked again for its pool when it changes. */
static void last_sample_changed(GObject *obj, GParamSpec *pspec, gpointer data) {
  (void)pspec;
  (void)data;
  gst_pad_push_event(GST_BASE_SINK_PAD(obj), gst_event_new_reconfigure());
}

static void gst_shmlane_sink_init(GstShmlaneSink *sink) {
  sink->timeout = DEFAULT_TIMEOUT_NS;
  gst_base_sink_set_last_sample_enabled(GST_BASE_SINK(sink), FALSE);
  g_signal_connect(sink, "notify::enable-last-sample", G_CALLBACK(last_sample_changed), NULL);
}
