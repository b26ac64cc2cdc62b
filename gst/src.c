/* shmlanesrc: a live source of a shmlane stream's frames (docs/gstreamer.md).
 *
 * Each buffer wraps a pinned sample: no copy, and the pin goes when the
 * last holder of the buffer lets it go. At most max-pinned buffers over
 * samples are out at once: past that, frames are copied into ordinary
 * buffers (as v4l2src does when its pool runs low), through one pin kept
 * in reserve, so elements that hold many buffers (filesink's batches, an
 * encoder's lookahead) never stall the source, and the writer never waits
 * for them. Caps come from the stream's layout and each frame's record; a
 * stream replaced under its name is followed and renegotiated. */
#include <errno.h>
#include <pwd.h>
#include <string.h>
#include <time.h>

#include "cond.h"
#include "elements.h"
#include "layout.h"
#include "util.h"

GST_DEBUG_CATEGORY_STATIC(src_debug);
#define GST_CAT_DEFAULT src_debug

#define OPEN_SLICE_NS (50 * GST_MSECOND) /* waiting for the stream to appear */
#define GONE_POLL_US (50 * G_TIME_SPAN_MILLISECOND) /* waiting for a new writer */
#define DEFAULT_MAX_PINNED 2

/* The reader handle, shared with the buffers over its samples. The handle
 * is single-threaded: every call on it is made under `lock`, except the
 * receive itself, during which a buffer freed in another thread leaves its
 * sample in `pending` and wakes the receive, whose thread releases it. */
typedef struct reader {
  gint refs;
  GMutex lock;
  shlgst_cond cond;   /* a buffer came back, or flushing began */
  shl_reader *r;      /* NULL once closed */
  gboolean receiving; /* a receive runs, without the lock */
  gboolean closing;   /* the element is done: close once no buffer is left */
  GArray *pending;    /* shl_sample: freed while a receive ran */
  guint held;         /* buffers over samples, alive */
} reader;

typedef struct pin {
  reader *rd;
  shl_sample sample;
} pin;

static reader *reader_new(shl_reader *r) {
  reader *rd = g_new0(reader, 1);
  rd->refs = 1;
  g_mutex_init(&rd->lock);
  g_cond_init(&rd->cond.cond);
  rd->r = r;
  rd->pending = g_array_new(FALSE, FALSE, sizeof(shl_sample));
  return rd;
}

static reader *reader_ref(reader *rd) {
  g_atomic_int_inc(&rd->refs);
  return rd;
}

static void reader_unref(reader *rd) {
  if (!rd || !g_atomic_int_dec_and_test(&rd->refs)) return;
  shl_reader_close(rd->r);
  g_array_free(rd->pending, TRUE);
  g_mutex_clear(&rd->lock);
  g_cond_clear(&rd->cond.cond);
  g_free(rd);
}

/* Under rd->lock, with no receive running. */
static void drain_locked(reader *rd) {
  for (guint i = 0; i < rd->pending->len; i++)
    shl_reader_release(rd->r, &g_array_index(rd->pending, shl_sample, i));
  g_array_set_size(rd->pending, 0);
  if (rd->closing && rd->held == 0 && rd->r) {
    shl_reader_close(rd->r);
    rd->r = NULL;
  }
}

static void pin_free(gpointer data) {
  pin *p = data;
  reader *rd = p->rd;
  g_mutex_lock(&rd->lock);
  g_array_append_val(rd->pending, p->sample);
  rd->held--;
  if (rd->receiving)
    shl_reader_wake(rd->r);
  else
    drain_locked(rd);
  shlgst_cond_broadcast(&rd->cond);
  g_mutex_unlock(&rd->lock);
  reader_unref(rd);
  g_free(p);
}

static void reader_finish(reader *rd) {
  if (!rd) return;
  g_mutex_lock(&rd->lock);
  rd->closing = TRUE;
  if (!rd->receiving) drain_locked(rd);
  g_mutex_unlock(&rd->lock);
  reader_unref(rd);
}

/* ---------------------------------------------------------------- element */

struct _GstShmlaneSrc {
  GstPushSrc parent;
  /* Properties, under the object lock. */
  gchar *stream;
  gint policy;
  guint max_pinned;
  gchar *owner;
  gboolean eos_on_gone;
  /* The reader: set in the streaming thread, read under the object lock
   * by unlock() and stop(). */
  reader *rd;
  GstCaps *caps; /* the caps of the frames pushed now, under the object lock */
  gint flushing; /* atomic */
  /* Streaming thread only. */
  gboolean new_stream;   /* the next sample starts a stream: read its layout */
  gboolean has_record;   /* the stream's metadata is the sink's record */
  uint64_t period_ns;    /* the stream's declared frame period, 0 unknown */
  GstVideoInfo frames;   /* as the stream lays them out */
  GstVideoInfo caps_info; /* the frames with their record's caps part: the caps */
  GstVideoInfo out;      /* as pushed (differs only when copying to the default layout) */
  gboolean copy;         /* downstream cannot read the stream's layout in place */
  guint opened;          /* max-pinned, as the reader was opened with */
  guint limit;           /* that, or less: what the stream's ring spares (read_layout_locked) */
  gboolean downstream_meta;
  shlgst_record last;    /* the caps part of the last record */
  GstClock *clock;       /* the clock last seen, and whether it is CLOCK_MONOTONIC */
  gboolean clock_is_monotonic;
  /* Counters (atomic). */
  gint pushed, lost, copied;
};

G_DEFINE_TYPE(GstShmlaneSrc, gst_shmlane_src, GST_TYPE_PUSH_SRC)

enum { PROP_0, PROP_STREAM, PROP_POLICY, PROP_MAX_PINNED, PROP_OWNER, PROP_EOS_ON_GONE,
       PROP_STATS };

static GstStaticPadTemplate src_template =
    GST_STATIC_PAD_TEMPLATE("src", GST_PAD_SRC, GST_PAD_ALWAYS, GST_STATIC_CAPS(SHLGST_CAPS));

#define GST_TYPE_SHMLANE_POLICY (shmlane_policy_get_type())
static GType shmlane_policy_get_type(void) {
  static GType type = 0;
  static const GEnumValue values[] = {
      {SHL_RECV_LATEST, "The newest frame; older ones not yet received are skipped", "latest"},
      {SHL_RECV_ALL, "Every frame in order (the writer may lap a slow reader: see block)", "all"},
      {0, NULL, NULL}};
  if (g_once_init_enter(&type)) g_once_init_leave(&type, g_enum_register_static("GstShmlanePolicy", values));
  return type;
}

/* The owner property as the core's policy: "" this user's or root's,
 * "any", a uid (digits only, below 2^32 - 1, which is no user: never a
 * sign, or a value that wraps round to another uid) or a user name. FALSE
 * for an unknown user. */
static gboolean parse_owner(const gchar *owner, shl_reader_opts *o) {
  guint64 uid;
  if (!owner || !*owner) return TRUE;
  if (strcmp(owner, "any") == 0) {
    o->owner = SHL_OWNER_ANY;
    return TRUE;
  }
  if (!g_ascii_string_to_unsigned(owner, 10, 0, G_MAXUINT32 - 1, &uid, NULL)) {
    struct passwd pw, *found = NULL;
    char buf[1024];
    if (getpwnam_r(owner, &pw, buf, sizeof buf, &found) != 0 || !found) return FALSE;
    uid = found->pw_uid;
  }
  o->owner = SHL_OWNER_UID;
  o->owner_uid = (uint32_t)uid;
  return TRUE;
}

/* Opens the stream, waiting for it to appear while not flushing. */
static GstFlowReturn open_reader(GstShmlaneSrc *src) {
  shl_reader_opts o = SHL_READER_OPTS_INIT;
  GST_OBJECT_LOCK(src);
  gchar *name = shlgst_stream_name(GST_ELEMENT(src), src->stream);
  o.policy = (uint32_t)src->policy;
  o.max_pinned = src->max_pinned + 1; /* the reserve, for copies */
  gboolean owner_ok = parse_owner(src->owner, &o);
  /* A copy for the message: a property change may free the string. */
  gchar *owner = owner_ok ? NULL : g_strdup(src->owner);
  GST_OBJECT_UNLOCK(src);
  o.timeout_ns = OPEN_SLICE_NS;
  int rc = owner_ok ? -ENOENT : -EINVAL;
  shl_reader *r = NULL;
  while (owner_ok && !g_atomic_int_get(&src->flushing)) {
    rc = shl_reader_open_ex(&r, name, &o);
    if (rc != -ENOENT && rc != -ETIMEDOUT && rc != SHL_E_NOT_READY) break;
  }
  if (rc == 0) {
    GST_OBJECT_LOCK(src);
    src->rd = reader_new(r);
    GST_OBJECT_UNLOCK(src);
    src->opened = o.max_pinned - 1;
    src->new_stream = TRUE;
  } else if (owner_ok && g_atomic_int_get(&src->flushing)) {
    rc = 0;
  } else {
    gchar *text = owner_ok ? shlgst_error_text(name, rc)
                           : g_strdup_printf("stream '%s': no user '%s' (owner)", name, owner);
    GST_ELEMENT_ERROR(src, RESOURCE, OPEN_READ, ("%s", text), (NULL));
    g_free(text);
  }
  g_free(name);
  g_free(owner);
  return src->rd ? GST_FLOW_OK : rc == 0 ? GST_FLOW_FLUSHING : GST_FLOW_ERROR;
}

/* Waits up to `us` for a buffer to come back or flushing to begin. */
static void wait_a_little(reader *rd, gint64 us) {
  g_mutex_lock(&rd->lock);
  shlgst_cond_wait_until(&rd->cond, &rd->lock, g_get_monotonic_time() + us);
  g_mutex_unlock(&rd->lock);
}

/* The next sample, pinned. The reader holds at most `limit` samples
 * besides (wrap_sample), so its pin limit, one more, is never reached. */
static GstFlowReturn receive(GstShmlaneSrc *src, reader *rd, shl_sample *s) {
  for (;;) {
    g_mutex_lock(&rd->lock);
    drain_locked(rd);
    if (g_atomic_int_get(&src->flushing)) {
      g_mutex_unlock(&rd->lock);
      return GST_FLOW_FLUSHING;
    }
    rd->receiving = TRUE;
    g_mutex_unlock(&rd->lock);
    int rc = shl_reader_receive(rd->r, s, -1, 0);
    g_mutex_lock(&rd->lock);
    rd->receiving = FALSE;
    drain_locked(rd);
    g_mutex_unlock(&rd->lock);
    GST_LOG_OBJECT(src, "receive: %s", rc < 0 ? shl_err_name(rc) : "a frame");
    switch (rc) {
      case 0: return GST_FLOW_OK;
      case -EINTR: continue; /* shl_reader_wake: flushing, or a sample to release */
      case SHL_E_WRITER_GONE:
      case SHL_E_WRITER_CLOSED: {
        GST_OBJECT_LOCK(src);
        gboolean eos = src->eos_on_gone;
        GST_OBJECT_UNLOCK(src);
        if (eos) return GST_FLOW_EOS;
        /* Like a camera unplugged: wait for a writer to take over. */
        wait_a_little(rd, GONE_POLL_US);
        continue;
      }
      default: {
        GST_OBJECT_LOCK(src);
        gchar *name = shlgst_stream_name(GST_ELEMENT(src), src->stream);
        GST_OBJECT_UNLOCK(src);
        gchar *text = shlgst_error_text(name, rc);
        GST_ELEMENT_ERROR(src, RESOURCE, READ, ("%s", text), (NULL));
        g_free(text);
        g_free(name);
        return GST_FLOW_ERROR;
      }
    }
  }
}

/* Under rd->lock: the frames of the stream the reader reads now, from the
 * reader's private snapshot of its layout and metadata format (validated
 * when it joined that stream, which no peer can change since): the core
 * checked that a frame of that layout lies within its slot, before the
 * record, so a frame of src->frames, no larger, does too. */
static gboolean read_layout_locked(GstShmlaneSrc *src, reader *rd) {
  shl_segment *seg = shl_reader_segment(rd->r);
  shl_layout l;
  char meta[sizeof SHLGST_META_FORMAT];
  shl_get_layout(seg, &l);
  if (!shlgst_info_from_layout(&l, &src->frames)) {
    GST_ELEMENT_ERROR(src, STREAM, WRONG_TYPE, ("the stream's frames are not raw video"),
                      ("format %s, %u dimensions: see docs/gstreamer.md for the layouts of raw "
                       "video",
                       l.format, l.ndim));
    return FALSE;
  }
  if (src->frames.size > shlgst_layout_span(&l)) {
    GST_ELEMENT_ERROR(src, STREAM, FAILED, ("the stream's frames do not fit their layout"),
                      ("format %s: %" G_GSIZE_FORMAT " bytes", l.format, src->frames.size));
    return FALSE;
  }
  src->has_record = shl_reader_get_meta(rd->r, meta, sizeof meta) == sizeof(shlgst_record) &&
                    strcmp(meta, SHLGST_META_FORMAT) == 0;
  /* The period its writer declared: the framerate of frames without a
   * record that says it (a hint, read once; absurd values are ignored). */
  shl_stream_info info = SHL_STREAM_INFO_INIT;
  src->period_ns = 0;
  src->limit = src->opened;
  if (shl_stream_get_info(seg, &info) != 0) return TRUE;
  if (info.period_ns >= GST_USECOND && info.period_ns <= 1000 * GST_SECOND)
    src->period_ns = info.period_ns;
  /* Buffers downstream keeps leave the writer a slot besides the newest
   * frame's (with 2 slots every frame is copied): a hoarding element never
   * starves it. */
  src->limit = MIN(src->opened, info.slots > 2 ? info.slots - 2 : 0);
  return TRUE;
}

static gboolean same_caps_part(const shlgst_record *a, const shlgst_record *b) {
  return a->fps_n == b->fps_n && a->fps_d == b->fps_d && a->par_n == b->par_n &&
         a->par_d == b->par_d && strcmp(a->colorimetry, b->colorimetry) == 0 &&
         strcmp(a->chroma_site, b->chroma_site) == 0;
}

/* A flush or a state change in another thread has begun: the pad takes
 * no caps then, and that is no error (the caps are set after it). */
static gboolean pad_flushing(GstShmlaneSrc *src) {
  GstPad *pad = GST_BASE_SRC_PAD(src);
  GST_OBJECT_LOCK(pad);
  gboolean flushing = GST_PAD_IS_FLUSHING(pad);
  GST_OBJECT_UNLOCK(pad);
  return flushing || g_atomic_int_get(&src->flushing);
}

/* Streaming thread: whether frames of src->caps_info go as the stream lays
 * them out (GStreamer's default layout, or downstream reads GstVideoMeta)
 * or are copied to GStreamer's default layout (src->copy, src->out). */
static void choose_layout(GstShmlaneSrc *src) {
  GstVideoInfo def;
  const GstVideoInfo *in = &src->caps_info;
  src->out = *in;
  src->copy = !src->downstream_meta && !shlgst_layout_is_default(in);
  if (!src->copy || !gst_video_info_set_format(&def, GST_VIDEO_INFO_FORMAT(in),
                                               GST_VIDEO_INFO_WIDTH(in),
                                               GST_VIDEO_INFO_HEIGHT(in)))
    return;
  /* The default layout, the caps' rate and colours kept (durations). */
  memcpy(src->out.stride, def.stride, sizeof def.stride);
  memcpy(src->out.offset, def.offset, sizeof def.offset);
  src->out.size = def.size;
}

/* Sets caps for frames of src->frames described by `rec`: OK, FLUSHING,
 * or NOT_NEGOTIATED with an error that names the caps downstream refuses
 * (asked first: a caps event is stored whatever downstream says of it).
 * New caps are set through src_negotiate, which asks downstream for its
 * allocation with them (whether it reads GstVideoMeta) before the layout
 * of the frames is chosen. */
static GstFlowReturn negotiate_frames(GstShmlaneSrc *src, const shlgst_record *rec) {
  src->caps_info = src->frames;
  shlgst_record_apply(rec, &src->caps_info);
  GstCaps *caps = gst_video_info_to_caps(&src->caps_info);
  GST_OBJECT_LOCK(src);
  gboolean same = src->caps && gst_caps_is_equal(caps, src->caps);
  GST_OBJECT_UNLOCK(src);
  GstFlowReturn ret = GST_FLOW_OK;
  if (!same) {
    GST_INFO_OBJECT(src, "caps %" GST_PTR_FORMAT, caps);
    gboolean ok = gst_pad_peer_query_accept_caps(GST_BASE_SRC_PAD(src), caps);
    if (ok) {
      GST_OBJECT_LOCK(src);
      gst_caps_replace(&src->caps, caps);
      GST_OBJECT_UNLOCK(src);
      ok = gst_base_src_negotiate(GST_BASE_SRC(src));
      if (!ok) {
        GST_OBJECT_LOCK(src);
        gst_caps_replace(&src->caps, NULL);
        GST_OBJECT_UNLOCK(src);
      }
    }
    if (!ok && pad_flushing(src)) {
      ret = GST_FLOW_FLUSHING;
    } else if (!ok) {
      GST_ELEMENT_ERROR(src, CORE, NEGOTIATION, ("downstream refuses the stream's caps"),
                        ("%" GST_PTR_FORMAT, caps));
      ret = GST_FLOW_NOT_NEGOTIATED;
    }
  }
  gst_caps_unref(caps);
  choose_layout(src);
  return ret;
}

static GstClockTime running_time_of(GstShmlaneSrc *src, uint64_t monotonic_ns) {
  GstClock *clock = gst_element_get_clock(GST_ELEMENT(src));
  if (!clock) return GST_CLOCK_TIME_NONE;
  if (clock != src->clock) {
    GstClockType type = GST_CLOCK_TYPE_REALTIME;
    if (GST_IS_SYSTEM_CLOCK(clock)) g_object_get(clock, "clock-type", &type, NULL);
    src->clock = clock; /* compared only, never dereferenced */
    src->clock_is_monotonic = type == GST_CLOCK_TYPE_MONOTONIC;
  }
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts); /* the vDSO's: no system call */
  int64_t now = ts.tv_sec * (int64_t)GST_SECOND + ts.tv_nsec, offset = 0;
  if (!src->clock_is_monotonic) offset = (int64_t)gst_clock_get_time(clock) - now;
  gst_object_unref(clock);
  /* A frame is published before it is received: a later stamp is a peer's
   * (with write access), and a sink that synchronises would wait for it. */
  if (monotonic_ns > (uint64_t)now) monotonic_ns = (uint64_t)now;
  int64_t t = (int64_t)monotonic_ns + offset - (int64_t)gst_element_get_base_time(GST_ELEMENT(src));
  return t > 0 ? (GstClockTime)t : 0; /* frames published before the pipeline ran */
}

static void add_video_meta(GstBuffer *buf, const GstVideoInfo *f) {
  gst_buffer_add_video_meta_full(buf, GST_VIDEO_FRAME_FLAG_NONE, GST_VIDEO_INFO_FORMAT(f),
                                 GST_VIDEO_INFO_WIDTH(f), GST_VIDEO_INFO_HEIGHT(f),
                                 GST_VIDEO_INFO_N_PLANES(f), (gsize *)f->offset, (gint *)f->stride);
}

/* A buffer over the pinned sample; or, when downstream holds max-pinned
 * of them or cannot read the stream's layout, a copy (the sample is
 * released at once). */
static GstBuffer *wrap_sample(GstShmlaneSrc *src, reader *rd, const shl_sample *s) {
  gsize size = src->frames.size;
  g_mutex_lock(&rd->lock);
  gboolean copy = src->copy || rd->held >= src->limit;
  if (!copy) rd->held++;
  g_mutex_unlock(&rd->lock);
  if (!copy) {
    pin *p = g_new(pin, 1);
    p->rd = reader_ref(rd);
    p->sample = *s;
    GstBuffer *buf = gst_buffer_new_wrapped_full(GST_MEMORY_FLAG_READONLY, (gpointer)s->data, size,
                                                 0, size, p, pin_free);
    if (!shlgst_layout_is_default(&src->frames)) add_video_meta(buf, &src->frames);
    return buf;
  }
  GstBuffer *buf = gst_buffer_new_allocate(NULL, src->out.size, NULL);
  GstBuffer *in = gst_buffer_new_wrapped_full(GST_MEMORY_FLAG_READONLY, (gpointer)s->data, size, 0,
                                              size, NULL, NULL);
  GstVideoFrame fi, fo;
  if (gst_video_frame_map(&fi, &src->frames, in, GST_MAP_READ)) {
    if (gst_video_frame_map(&fo, &src->out, buf, GST_MAP_WRITE)) {
      gst_video_frame_copy(&fo, &fi);
      gst_video_frame_unmap(&fo);
    }
    gst_video_frame_unmap(&fi);
  }
  gst_buffer_unref(in);
  g_mutex_lock(&rd->lock);
  shl_reader_release(rd->r, s);
  g_mutex_unlock(&rd->lock);
  if (!shlgst_layout_is_default(&src->out)) add_video_meta(buf, &src->out);
  g_atomic_int_inc(&src->copied);
  return buf;
}

static GstFlowReturn src_create(GstPushSrc *psrc, GstBuffer **out) {
  GstShmlaneSrc *src = GST_SHMLANE_SRC(psrc);
  shl_sample s;
  shlgst_record rec;
  GstFlowReturn ret = GST_FLOW_OK;
  if (!src->rd && (ret = open_reader(src)) != GST_FLOW_OK) return ret;
  reader *rd = src->rd;
  if ((ret = receive(src, rd, &s)) != GST_FLOW_OK) return ret;

  /* The layout and the record, read under the lock like every call on the
   * reader (a buffer may be freed in another thread meanwhile). */
  g_mutex_lock(&rd->lock);
  gboolean ok = TRUE, have_rec = FALSE;
  if (src->new_stream || (s.flags & SHL_SAMPLE_NEW_STREAM)) {
    ok = read_layout_locked(src, rd);
    src->new_stream = !ok; /* a stream it cannot push: each frame of it is an error again */
    memset(&src->last, 0xff, sizeof src->last); /* renegotiate */
  }
  const void *meta = NULL;
  uint64_t meta_size = 0;
  if (ok && src->has_record && shl_sample_get_meta(rd->r, &s, &meta, &meta_size) == 0 && meta)
    have_rec = shlgst_record_read(meta, meta_size, &rec);
  if (!ok) shl_reader_release(rd->r, &s);
  g_mutex_unlock(&rd->lock);
  if (!ok) return GST_FLOW_ERROR;

  if (!have_rec) {
    memset(&rec, 0, sizeof rec); /* applies nothing: GStreamer's defaults */
    rec.duration = -1;
  }
  if (rec.fps_n <= 0 && src->period_ns)
    gst_video_guess_framerate(src->period_ns, &rec.fps_n, &rec.fps_d);
  if (!same_caps_part(&rec, &src->last)) {
    if ((ret = negotiate_frames(src, &rec)) != GST_FLOW_OK) {
      g_mutex_lock(&rd->lock);
      shl_reader_release(rd->r, &s);
      g_mutex_unlock(&rd->lock);
      return ret;
    }
    src->last = rec;
  }

  GstBuffer *buf = wrap_sample(src, rd, &s);
  GST_BUFFER_PTS(buf) = running_time_of(src, s.timestamp_ns);
  if (rec.duration >= 0)
    GST_BUFFER_DURATION(buf) = (GstClockTime)rec.duration;
  else if (GST_VIDEO_INFO_FPS_N(&src->out) > 0)
    GST_BUFFER_DURATION(buf) = gst_util_uint64_scale_int(GST_SECOND, GST_VIDEO_INFO_FPS_D(&src->out),
                                                         GST_VIDEO_INFO_FPS_N(&src->out));
  GST_BUFFER_OFFSET(buf) = s.seq;
  if (s.lost) {
    GST_BUFFER_FLAG_SET(buf, GST_BUFFER_FLAG_DISCONT);
    g_atomic_int_add(&src->lost, (gint)MIN(s.lost, (uint64_t)G_MAXINT));
  }
  g_atomic_int_inc(&src->pushed);
  *out = buf;
  return GST_FLOW_OK;
}

static GstCaps *src_get_caps(GstBaseSrc *bsrc, GstCaps *filter) {
  GstShmlaneSrc *src = GST_SHMLANE_SRC(bsrc);
  GST_OBJECT_LOCK(src);
  GstCaps *caps = src->caps ? gst_caps_ref(src->caps) : NULL;
  GST_OBJECT_UNLOCK(src);
  if (!caps) caps = gst_pad_get_pad_template_caps(GST_BASE_SRC_PAD(bsrc));
  if (filter) {
    GstCaps *both = gst_caps_intersect_full(filter, caps, GST_CAPS_INTERSECT_FIRST);
    gst_caps_unref(caps);
    caps = both;
  }
  return caps;
}

/* Caps come from the stream, with its first frame: nothing to choose before. */
static gboolean src_negotiate(GstBaseSrc *bsrc) {
  GstShmlaneSrc *src = GST_SHMLANE_SRC(bsrc);
  GST_OBJECT_LOCK(src);
  GstCaps *caps = src->caps ? gst_caps_ref(src->caps) : NULL;
  GST_OBJECT_UNLOCK(src);
  if (!caps) return TRUE;
  gboolean ok = gst_base_src_set_caps(bsrc, caps);
  gst_caps_unref(caps);
  return ok;
}

/* Whether downstream reads GstVideoMeta, so frames whose rows are laid out
 * otherwise than GStreamer's default may go as they are. */
static gboolean src_decide_allocation(GstBaseSrc *bsrc, GstQuery *query) {
  GstShmlaneSrc *src = GST_SHMLANE_SRC(bsrc);
  src->downstream_meta = gst_query_find_allocation_meta(query, GST_VIDEO_META_API_TYPE, NULL);
  if (src->caps_info.finfo) choose_layout(src); /* after frames, downstream changed */
  return TRUE;
}

static gboolean src_unlock(GstBaseSrc *bsrc) {
  GstShmlaneSrc *src = GST_SHMLANE_SRC(bsrc);
  g_atomic_int_set(&src->flushing, TRUE);
  GST_OBJECT_LOCK(src);
  reader *rd = src->rd ? reader_ref(src->rd) : NULL;
  GST_OBJECT_UNLOCK(src);
  if (rd) {
    g_mutex_lock(&rd->lock);
    if (rd->r) shl_reader_wake(rd->r);
    shlgst_cond_broadcast(&rd->cond);
    g_mutex_unlock(&rd->lock);
    reader_unref(rd);
  }
  return TRUE;
}

static gboolean src_unlock_stop(GstBaseSrc *bsrc) {
  g_atomic_int_set(&GST_SHMLANE_SRC(bsrc)->flushing, FALSE);
  return TRUE;
}

static gboolean src_start(GstBaseSrc *bsrc) {
  GstShmlaneSrc *src = GST_SHMLANE_SRC(bsrc);
  src->clock = NULL;
  src->downstream_meta = FALSE;
  return TRUE;
}

/* Leaves the stream: the reader closes once downstream has let go of
 * every buffer. */
static gboolean src_stop(GstBaseSrc *bsrc) {
  GstShmlaneSrc *src = GST_SHMLANE_SRC(bsrc);
  GST_OBJECT_LOCK(src);
  reader *rd = src->rd;
  src->rd = NULL;
  gst_caps_replace(&src->caps, NULL);
  GST_OBJECT_UNLOCK(src);
  reader_finish(rd);
  return TRUE;
}

static void src_set_property(GObject *obj, guint id, const GValue *value, GParamSpec *pspec) {
  GstShmlaneSrc *src = GST_SHMLANE_SRC(obj);
  GST_OBJECT_LOCK(src);
  if (!shlgst_property_settable(GST_ELEMENT(src), pspec)) {
    GST_OBJECT_UNLOCK(src);
    return;
  }
  switch (id) {
    case PROP_STREAM:
      g_free(src->stream);
      src->stream = g_value_dup_string(value);
      break;
    case PROP_POLICY: src->policy = g_value_get_enum(value); break;
    case PROP_MAX_PINNED: src->max_pinned = g_value_get_uint(value); break;
    case PROP_OWNER:
      g_free(src->owner);
      src->owner = g_value_dup_string(value);
      break;
    case PROP_EOS_ON_GONE: src->eos_on_gone = g_value_get_boolean(value); break;
    default: G_OBJECT_WARN_INVALID_PROPERTY_ID(obj, id, pspec); break;
  }
  GST_OBJECT_UNLOCK(src);
}

static void src_get_property(GObject *obj, guint id, GValue *value, GParamSpec *pspec) {
  GstShmlaneSrc *src = GST_SHMLANE_SRC(obj);
  GST_OBJECT_LOCK(src);
  switch (id) {
    case PROP_STREAM: g_value_set_string(value, src->stream); break;
    case PROP_POLICY: g_value_set_enum(value, src->policy); break;
    case PROP_MAX_PINNED: g_value_set_uint(value, src->max_pinned); break;
    case PROP_OWNER: g_value_set_string(value, src->owner); break;
    case PROP_EOS_ON_GONE: g_value_set_boolean(value, src->eos_on_gone); break;
    case PROP_STATS:
      g_value_take_boxed(
          value, gst_structure_new("application/x-shmlane-src-stats", "pushed", G_TYPE_UINT,
                                   (guint)g_atomic_int_get(&src->pushed), "lost", G_TYPE_UINT,
                                   (guint)g_atomic_int_get(&src->lost), "copied", G_TYPE_UINT,
                                   (guint)g_atomic_int_get(&src->copied), NULL));
      break;
    default: G_OBJECT_WARN_INVALID_PROPERTY_ID(obj, id, pspec); break;
  }
  GST_OBJECT_UNLOCK(src);
}

static void src_finalize(GObject *obj) {
  GstShmlaneSrc *src = GST_SHMLANE_SRC(obj);
  g_free(src->stream);
  g_free(src->owner);
  G_OBJECT_CLASS(gst_shmlane_src_parent_class)->finalize(obj);
}

static void gst_shmlane_src_class_init(GstShmlaneSrcClass *klass) {
  GObjectClass *oc = G_OBJECT_CLASS(klass);
  GstElementClass *ec = GST_ELEMENT_CLASS(klass);
  GstBaseSrcClass *bc = GST_BASE_SRC_CLASS(klass);
  GParamFlags rw = G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_READY;
  GST_DEBUG_CATEGORY_INIT(src_debug, "shmlanesrc", 0, "shmlane stream source");
  oc->set_property = src_set_property;
  oc->get_property = src_get_property;
  oc->finalize = src_finalize;
  g_object_class_install_property(
      oc, PROP_STREAM,
      g_param_spec_string("stream", "Stream", "Name of the stream (default: the element's name)",
                          NULL, rw));
  g_object_class_install_property(
      oc, PROP_POLICY,
      g_param_spec_enum("policy", "Policy", "Which frames to receive", GST_TYPE_SHMLANE_POLICY,
                        SHL_RECV_LATEST, rw));
  g_object_class_install_property(
      oc, PROP_MAX_PINNED,
      g_param_spec_uint("max-pinned", "Max pinned",
                        "Buffers over the stream's slots downstream may hold at once (at most "
                        "the stream's slots less 2); past that, frames are copied",
                        1, SHL_STREAM_MAX_SLOTS - 2, DEFAULT_MAX_PINNED, rw));
  g_object_class_install_property(
      oc, PROP_OWNER,
      g_param_spec_string("owner", "Owner",
                          "Whose stream to read: empty for this user's or root's, a user name "
                          "or uid, or 'any'",
                          NULL, rw));
  g_object_class_install_property(
      oc, PROP_EOS_ON_GONE,
      g_param_spec_boolean("eos-on-writer-gone", "EOS on writer gone",
                           "End the stream when its writer is gone instead of waiting for a new "
                           "one (may change while playing)",
                           FALSE, G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS |
                                      GST_PARAM_MUTABLE_PLAYING));
  g_object_class_install_property(
      oc, PROP_STATS,
      g_param_spec_boxed("stats", "Statistics",
                         "Buffers pushed, frames lost (policy all: lapped; latest: skipped), "
                         "copied (for a downstream that cannot read the stream's layout)",
                         GST_TYPE_STRUCTURE, G_PARAM_READABLE | G_PARAM_STATIC_STRINGS));
  gst_element_class_set_static_metadata(ec, "shmlane stream source", "Source/Video",
                                        "Receives raw video frames from a shmlane stream in "
                                        "shared memory, without copying them",
                                        "shmlane");
  gst_element_class_add_static_pad_template(ec, &src_template);
  bc->get_caps = src_get_caps;
  bc->negotiate = src_negotiate;
  bc->decide_allocation = src_decide_allocation;
  bc->unlock = src_unlock;
  bc->unlock_stop = src_unlock_stop;
  bc->start = src_start;
  bc->stop = src_stop;
  GST_PUSH_SRC_CLASS(klass)->create = src_create;
}

static void gst_shmlane_src_init(GstShmlaneSrc *src) {
  src->max_pinned = DEFAULT_MAX_PINNED;
  gst_base_src_set_live(GST_BASE_SRC(src), TRUE);
  gst_base_src_set_format(GST_BASE_SRC(src), GST_FORMAT_TIME);
}
