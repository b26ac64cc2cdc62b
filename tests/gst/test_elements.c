/* shmlanesink and shmlanesrc in one process (GstCheck, GstHarness): caps <->
 * layout for every format, the pool of loaned slots (and converters and
 * decoders writing into it), renegotiation,
 * writer gone, pins, state changes under a running peer, flushing and
 * seeking, the source's timestamps, modes, the
 * declared period, and a peer with write access rewriting the stream's
 * metadata fields (through shm_layout.h, as such a peer sees them) and
 * writing what it likes into the frames' records. The
 * elements are registered statically, so this runs under ASan with the
 * plugin. */
#include <gst/check/gstcheck.h>
#include <gst/check/gstharness.h>
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "elements.h"
#include "layout.h"
#include "shm_layout.h"
#include "shmlane.h"

/* The program's pid. Tests run in forked children and name their streams
 * after it: a test that fails exits before it removes what it made, and the
 * program removes that after the run (remove_leftovers). */
static int run_pid;

/* A stream name of this run, removed by the test that made it. */
static gchar *stream_name(const char *tag) {
  return g_strdup_printf("gstt%d.%s", run_pid, tag);
}

/* Removes every object of this run's names from /dev/shm (streams, and a
 * replacement staged when a test died): how many there were. */
static int remove_leftovers(void) {
  gchar *tag = g_strdup_printf("gstt%d.", run_pid);
  GDir *dir = g_dir_open("/dev/shm", 0, NULL);
  const gchar *entry;
  int n = 0;
  while (dir && (entry = g_dir_read_name(dir)) != NULL) {
    if (!strstr(entry, tag)) continue;
    gchar *path = g_build_filename("/dev/shm", entry, NULL);
    if (unlink(path) == 0) {
      g_printerr("removed /dev/shm/%s, left by a test\n", entry);
      n++;
    }
    g_free(path);
  }
  if (dir) g_dir_close(dir);
  g_free(tag);
  return n;
}

static const char *formats[] = {"RGB",   "BGR",   "RGBA",      "BGRA",      "ARGB", "ABGR",
                                "RGBx",  "BGRx",  "xRGB",      "xBGR",      "I420", "YV12",
                                "NV12",  "NV21",  "GRAY8",     "GRAY16_LE", "GRAY16_BE"};

GST_START_TEST(test_layout_roundtrip) {
  /* Every format at sizes even and odd: the source inverts what the sink
   * stores, and the frames lie where GstVideoInfo says. */
  static const guint sizes[][2] = {{640, 480}, {641, 479}, {1, 1}, {1920, 1080}};
  for (gsize f = 0; f < G_N_ELEMENTS(formats); f++) {
    for (gsize i = 0; i < G_N_ELEMENTS(sizes); i++) {
      GstVideoInfo in, frames, back;
      shlgst_layout lay;
      GstVideoFormat fmt = gst_video_format_from_string(formats[f]);
      fail_unless(gst_video_info_set_format(&in, fmt, sizes[i][0], sizes[i][1]));
      fail_unless(shlgst_layout_from_info(&in, &lay, &frames), "%s", formats[f]);
      fail_unless(shl_format_itemsize(lay.format) > 0, "%s: %s", formats[f], lay.format);
      fail_unless(shlgst_info_from_layout(&lay.layout, &back), "%s %ux%u: %s", formats[f],
                  sizes[i][0], sizes[i][1], lay.format);
      fail_unless_equals_int(GST_VIDEO_INFO_FORMAT(&back), fmt);
      fail_unless_equals_int(GST_VIDEO_INFO_WIDTH(&back), sizes[i][0]);
      fail_unless_equals_int(GST_VIDEO_INFO_HEIGHT(&back), sizes[i][1]);
      fail_unless_equals_uint64(back.size, frames.size);
      for (guint p = 0; p < GST_VIDEO_INFO_N_PLANES(&back); p++) {
        fail_unless_equals_int(back.stride[p], frames.stride[p]);
        fail_unless_equals_uint64(back.offset[p], frames.offset[p]);
      }
      /* The frame spans exactly the layout's bytes. */
      int64_t itemsize = shl_format_itemsize(lay.format);
      uint64_t span = (uint64_t)itemsize;
      for (uint32_t d = 0; d < lay.layout.ndim; d++) span *= lay.layout.shape[d];
      fail_unless_equals_uint64(span, frames.size);
      fail_unless_equals_uint64(shlgst_layout_span(&lay.layout), frames.size);
    }
  }
}
GST_END_TEST;

GST_START_TEST(test_layout_conventions) {
  /* What other writers make: OpenCV's BGR as a plain array, a padded
   * row, the named channels; what is not video is refused. */
  GstVideoInfo info;
  shl_layout bgr = {.format = "B", .ndim = 3, .shape = {480, 640, 3}};
  fail_unless(shlgst_info_from_layout(&bgr, &info));
  fail_unless_equals_string(gst_video_format_to_string(GST_VIDEO_INFO_FORMAT(&info)), "BGR");
  shl_layout gray = {.format = "<H", .ndim = 2, .shape = {480, 640}, .strides = {1300, 2}};
  fail_unless(shlgst_info_from_layout(&gray, &info));
  fail_unless_equals_string(gst_video_format_to_string(GST_VIDEO_INFO_FORMAT(&info)), "GRAY16_LE");
  fail_unless_equals_int(info.stride[0], 1300);
  /* The source checks the frame against the bytes the layout spans. */
  fail_unless_equals_uint64(shlgst_layout_span(&gray), 1300 * 479 + 640 * 2);
  fail_unless_equals_uint64(info.size, shlgst_layout_span(&gray));
  fail_if(shlgst_layout_is_default(&info));
  shl_layout rgb = {.format = "T{B:r:B:g:B:b:}", .ndim = 2, .shape = {2, 2}};
  fail_unless(shlgst_info_from_layout(&rgb, &info));
  fail_unless_equals_string(gst_video_format_to_string(GST_VIDEO_INFO_FORMAT(&info)), "RGB");
  shl_layout bad[] = {
      {.format = "<d", .ndim = 2, .shape = {4, 4}},
      {.format = "B", .ndim = 3, .shape = {4, 4, 2}},
      {.format = "B", .ndim = 1, .shape = {16}},
      {.format = "B", .ndim = 2, .shape = {4, 4}, .strides = {3, 1}}, /* rows overlap */
      {.format = "T{(4,4)B:y:(2,2)B:u:}", .ndim = 0},
      {.format = "T{B:r:B:g:}", .ndim = 2, .shape = {4, 4}},
  };
  for (gsize i = 0; i < G_N_ELEMENTS(bad); i++)
    fail_if(shlgst_info_from_layout(&bad[i], &info), "layout %zu accepted", i);
  shl_layout empty = {.format = "B", .ndim = 2, .shape = {0, 4}};
  shl_layout huge = {.format = "B", .ndim = 2, .shape = {1ull << 40, 2}, .strides = {1ll << 40, 1}};
  fail_unless_equals_uint64(shlgst_layout_span(&empty), 0);
  fail_unless_equals_uint64(shlgst_layout_span(&huge), 0);
}
GST_END_TEST;

static GstElement *launch(const gchar *description) {
  GError *err = NULL;
  GstElement *p = gst_parse_launch(description, &err);
  fail_unless(p != NULL && err == NULL, "%s: %s", description, err ? err->message : "?");
  return p;
}

/* Runs a pipeline to EOS (or error: fails). A GThreadFunc. */
static gpointer run_to_eos(gpointer data) {
  GstElement *p = data;
  fail_unless(gst_element_set_state(p, GST_STATE_PLAYING) != GST_STATE_CHANGE_FAILURE);
  GstMessage *m = gst_bus_timed_pop_filtered(GST_ELEMENT_BUS(p), 20 * GST_SECOND,
                                             GST_MESSAGE_EOS | GST_MESSAGE_ERROR);
  fail_unless(m != NULL, "no EOS");
  if (GST_MESSAGE_TYPE(m) == GST_MESSAGE_ERROR) {
    GError *e = NULL;
    gst_message_parse_error(m, &e, NULL);
    fail("error: %s", e->message);
  }
  gst_message_unref(m);
  gst_element_set_state(p, GST_STATE_NULL);
  return NULL;
}

static guint stat_of(GstElement *e, const char *field) {
  GstStructure *s = NULL;
  guint v = 0;
  g_object_get(e, "stats", &s, NULL);
  fail_unless(gst_structure_get_uint(s, field, &v));
  gst_structure_free(s);
  return v;
}

/* n frames of videotestsrc, through `upstream` (its properties and what
 * follows it up to the sink), into a stream; a reader of policy `all` opened
 * first gets every one, with its record (numbered as videotestsrc numbers
 * them unless a decoder lies between), and `check` (if given) looks at each
 * frame's bytes; the sink copied `copies` of them. */
static void check_publish(const char *tag, const char *upstream, gboolean decoded, guint n,
                          guint copies, void (*check)(const guint8 *frame)) {
  gchar *name = stream_name(tag);
  shl_reader *r = NULL;
  gchar *d = g_strdup_printf("videotestsrc num-buffers=%u %s ! shmlanesink name=sink stream=%s "
                             "sync=false block=true",
                             n, upstream, name);
  GstElement *p = launch(d);
  GstElement *sink = gst_bin_get_by_name(GST_BIN(p), "sink");
  fail_unless(gst_element_set_state(p, GST_STATE_PAUSED) != GST_STATE_CHANGE_FAILURE);
  shl_reader_opts o = SHL_READER_OPTS_INIT;
  o.policy = SHL_RECV_ALL;
  o.timeout_ns = 5 * GST_SECOND;
  fail_unless_equals_int(shl_reader_open_ex(&r, name, &o), 0);
  GThread *t = g_thread_new("run", run_to_eos, p);
  for (guint i = 0; i < n; i++) {
    shl_sample s;
    shlgst_record rec;
    int rc = shl_reader_receive(r, &s, 5 * GST_SECOND, 0);
    fail_unless_equals_int(rc, 0);
    fail_unless_equals_uint64(s.lost, 0);
    const void *meta = NULL;
    uint64_t size = 0;
    fail_unless_equals_int(shl_sample_get_meta(r, &s, &meta, &size), 0);
    fail_unless(shlgst_record_read(meta, size, &rec));
    if (!decoded) fail_unless_equals_uint64(rec.offset, i);
    fail_unless_equals_int(rec.fps_n, 30);
    if (check) check(s.data);
    shl_reader_release(r, &s);
  }
  g_thread_join(t);
  shl_reader_close(r);
  fail_unless_equals_int(stat_of(sink, "copied"), copies);
  fail_unless_equals_int(stat_of(sink, "published"), n);
  gst_object_unref(sink);
  gst_object_unref(p);
  g_free(d);
  fail_unless_equals_int(shl_unlink(name), 0);
  g_free(name);
}

GST_START_TEST(test_sink_zero_copy) {
  /* videotestsrc writes into the loaned slots: nothing copied. */
  check_publish("zc", "! video/x-raw,format=I420,width=320,height=240,framerate=30/1", FALSE, 20,
                0, NULL);
}
GST_END_TEST;

/* videotestsrc's smpte75 in I420, as it draws it at 1920x1080: the middle
 * of each of its seven bars in Y and in U. */
static const guint8 bars[2][7] = {{180, 168, 145, 133, 63, 51, 28},
                                  {128, 44, 147, 63, 193, 109, 212}};

/* The bars are where the stream's layout (GstVideoInfo's for I420
 * 1920x1080) puts them, in the first, middle and last row of Y and of U,
 * within a lossy codec's error: a producer that wrote with other strides or
 * plane offsets than the slot's (a decoder's rows padded to 1088) fails. */
static void check_bars(const guint8 *frame) {
  GstVideoInfo info;
  fail_unless(gst_video_info_set_format(&info, GST_VIDEO_FORMAT_I420, 1920, 1080));
  for (guint p = 0; p < 2; p++) {
    const guint8 *plane = frame + GST_VIDEO_INFO_PLANE_OFFSET(&info, p);
    gint stride = GST_VIDEO_INFO_PLANE_STRIDE(&info, p);
    gint width = GST_VIDEO_INFO_COMP_WIDTH(&info, p), height = GST_VIDEO_INFO_COMP_HEIGHT(&info, p);
    const gint rows[] = {0, height / 2, height - 1};
    for (guint k = 0; k < 7; k++)
      for (guint j = 0; j < G_N_ELEMENTS(rows); j++) {
        gint v = plane[rows[j] * stride + (2 * k + 1) * width / 14];
        fail_unless(ABS(v - bars[p][k]) <= 12, "plane %u, bar %u, row %d: %d, not %d", p, k,
                    rows[j], v, bars[p][k]);
      }
  }
}

GST_START_TEST(test_sink_producers) {
  /* Elements that write their output into the buffers the sink lends
   * (docs/gstreamer.md, Zero copy): a converter, a scaler and decoders,
   * at a size decoders pad; nothing is copied. libav's decoder wants
   * padded rows (1090 of them at 1080p) and decodes into a pool of its own
   * (here with B-frames to reorder): each frame is copied once, and nothing
   * waits on the sink's pool. Every frame is whole. The elements of
   * plugins-ugly, -bad and libav are checked where installed. */
  static const struct {
    const char *upstream; /* from the test source's output on */
    gboolean decoded, copied;
    const char *needs[2]; /* elements not in plugins-base or -good */
  } producers[] = {
      {"! video/x-raw,format=NV12,width=1920,height=1080 ! videoconvert", FALSE, FALSE, {NULL}},
      {"! video/x-raw,format=I420,width=1280,height=720 ! videoscale", FALSE, FALSE, {NULL}},
      {"! jpegenc ! jpegdec", TRUE, FALSE, {NULL}},
      {"! vp8enc deadline=1 ! vp8dec", TRUE, FALSE, {NULL}},
      {"! theoraenc ! theoradec", TRUE, FALSE, {NULL}},
      {"! x264enc tune=zerolatency ! h264parse ! openh264dec", TRUE, FALSE,
       {"x264enc", "openh264dec"}},
      {"! x264enc bframes=2 b-adapt=false ! h264parse ! avdec_h264", TRUE, TRUE,
       {"x264enc", "avdec_h264"}},
  };
  const char *caps = "video/x-raw,format=I420,width=1920,height=1080,framerate=30/1";
  for (guint i = 0; i < G_N_ELEMENTS(producers); i++) {
    gboolean found = TRUE;
    for (guint e = 0; e < G_N_ELEMENTS(producers[i].needs) && producers[i].needs[e]; e++) {
      GstElementFactory *f = gst_element_factory_find(producers[i].needs[e]);
      found = found && f;
      if (f) gst_object_unref(f);
    }
    if (!found) continue;
    /* An encoder is given the frame size; the stream gets it after them all. */
    gchar *up = g_strdup_printf("pattern=smpte75 %s%s %s ! %s", producers[i].decoded ? "! " : "",
                                producers[i].decoded ? caps : "", producers[i].upstream, caps);
    gchar *tag = g_strdup_printf("prod%u", i);
    check_publish(tag, up, producers[i].decoded, 10, producers[i].copied ? 10 : 0, check_bars);
    g_free(tag);
    g_free(up);
  }
}
GST_END_TEST;

GST_START_TEST(test_sink_copy_once) {
  /* Rows padded by GStreamer (RGB 321 wide) cannot be lent: one copy each. */
  check_publish("copy", "! video/x-raw,format=RGB,width=321,height=240,framerate=30/1", FALSE, 10,
                10, NULL);
}
GST_END_TEST;

static GstCaps *caps_of(const char *format, int width, int height) {
  return gst_caps_new_simple("video/x-raw", "format", G_TYPE_STRING, format, "width", G_TYPE_INT,
                             width, "height", G_TYPE_INT, height, "framerate", GST_TYPE_FRACTION,
                             25, 1, NULL);
}

/* A harness around a shmlanesink of these properties: set before the
 * harness plays it (at once), as they are fixed from READY on. */
static GstHarness *new_sink_harness(const gchar *first_property, ...) {
  GstElement *e = gst_element_factory_make("shmlanesink", NULL);
  va_list ap;
  va_start(ap, first_property);
  g_object_set_valist(G_OBJECT(e), first_property, ap);
  va_end(ap);
  GstHarness *h = gst_harness_new_with_element(e, "sink", NULL);
  gst_object_unref(e);
  return h;
}

static GstHarness *sink_harness(const char *name, const char *format, int width, int height) {
  GstHarness *h = new_sink_harness("stream", name, "sync", FALSE, "block", TRUE, NULL);
  GstCaps *caps = caps_of(format, width, height);
  gst_harness_set_src_caps(h, caps);
  return h;
}

/* Pushes a frame of `size` bytes filled with `fill`. */
static void push_frame(GstHarness *h, gsize size, guint8 fill) {
  GstBuffer *b = gst_buffer_new_allocate(NULL, size, NULL);
  gst_buffer_memset(b, 0, fill, size);
  GST_BUFFER_PTS(b) = fill * GST_MSECOND;
  fail_unless_equals_int(gst_harness_push(h, b), GST_FLOW_OK);
}

static void check_frame(GstBuffer *b, gsize size, guint8 fill) {
  GstMapInfo map;
  fail_unless(b != NULL);
  fail_unless(gst_buffer_map(b, &map, GST_MAP_READ));
  fail_unless_equals_uint64(map.size, size);
  for (gsize i = 0; i < size; i += 97) fail_unless_equals_int(map.data[i], fill);
  gst_buffer_unmap(b, &map);
}

/* What a handle opened now sees of the stream. */
static shl_stream_info stream_info(const char *name) {
  shl_segment *seg = NULL;
  shl_stream_info info = SHL_STREAM_INFO_INIT;
  fail_unless_equals_int(shl_open(&seg, name, SHL_OPEN_READONLY, 0), 0);
  fail_unless_equals_int(shl_stream_get_info(seg, &info), 0);
  shl_close(seg);
  return info;
}

/* Waits until the stream has `n` readers. */
static void wait_readers(const char *name, guint n) {
  shl_stream_info info = stream_info(name);
  for (int i = 0; i < 500 && info.readers_alive < n; i++) {
    g_usleep(10000);
    info = stream_info(name);
  }
  fail_unless_equals_int(info.readers_alive, n);
}

/* A source of policy `all` that has joined the stream (its `n`th reader). */
static GstHarness *src_harness(const char *name, guint n, gboolean eos_on_gone, guint max_pinned) {
  GstHarness *h = gst_harness_new("shmlanesrc");
  g_object_set(h->element, "stream", name, "policy", SHL_RECV_ALL, "eos-on-writer-gone",
               eos_on_gone, "max-pinned", max_pinned, NULL);
  gst_harness_play(h);
  wait_readers(name, n);
  return h;
}

/* Tears a source and a sink harness down and removes their stream. */
static void end_harnesses(gchar *name, GstHarness *src, GstHarness *sink) {
  gst_harness_teardown(src);
  gst_harness_teardown(sink);
  fail_unless_equals_int(shl_unlink(name), 0);
  g_free(name);
}

GST_START_TEST(test_renegotiate) {
  /* A caps change replaces the stream; the source follows and sends the
   * new caps before the new frames. */
  gchar *name = stream_name("reneg");
  GstHarness *sink = sink_harness(name, "GRAY8", 64, 48);
  GstHarness *src = src_harness(name, 1, FALSE, 2);
  push_frame(sink, 64 * 48, 2);
  GstBuffer *b = gst_harness_pull(src);
  check_frame(b, 64 * 48, 2);
  gst_buffer_unref(b);
  GstCaps *c = gst_pad_get_current_caps(src->sinkpad);
  fail_unless_equals_string(gst_structure_get_string(gst_caps_get_structure(c, 0), "format"),
                            "GRAY8");
  gst_caps_unref(c);

  gst_harness_set_src_caps(sink, caps_of("BGR", 32, 16));
  push_frame(sink, 32 * 16 * 3, 3);
  b = gst_harness_pull(src);
  check_frame(b, 32 * 16 * 3, 3);
  gst_buffer_unref(b);
  c = gst_pad_get_current_caps(src->sinkpad);
  GstStructure *s = gst_caps_get_structure(c, 0);
  gint w = 0, fn = 0, fd = 0;
  fail_unless_equals_string(gst_structure_get_string(s, "format"), "BGR");
  fail_unless(gst_structure_get_int(s, "width", &w) && w == 32);
  fail_unless(gst_structure_get_fraction(s, "framerate", &fn, &fd) && fn == 25 && fd == 1);
  gst_caps_unref(c);
  end_harnesses(name, src, sink);
}
GST_END_TEST;

/* The next event of type `type` the harness's source sent, within 5 s. */
static gboolean wait_event(GstHarness *h, GstEventType type) {
  for (int i = 0; i < 500; i++) {
    GstEvent *e = gst_harness_try_pull_event(h);
    if (e) {
      gboolean hit = GST_EVENT_TYPE(e) == type;
      gst_event_unref(e);
      if (hit) return TRUE;
    } else {
      g_usleep(10000);
    }
  }
  return FALSE;
}

GST_START_TEST(test_writer_gone) {
  /* Waiting (default): a new writer's frames come through. EOS with
   * eos-on-writer-gone. */
  gchar *name = stream_name("gone");
  GstHarness *sink = sink_harness(name, "GRAY8", 16, 16);
  GstHarness *waiting = src_harness(name, 1, FALSE, 2);
  GstHarness *ending = src_harness(name, 2, TRUE, 2);
  push_frame(sink, 256, 7);
  GstBuffer *b = gst_harness_pull(waiting);
  check_frame(b, 256, 7);
  gst_buffer_unref(b);
  b = gst_harness_pull(ending);
  check_frame(b, 256, 7);
  gst_buffer_unref(b);
  gst_harness_teardown(sink); /* the writer closes */

  fail_unless(wait_event(ending, GST_EVENT_EOS));
  gst_harness_teardown(ending);
  g_usleep(200000);
  fail_unless(gst_harness_try_pull(waiting) == NULL);
  sink = sink_harness(name, "GRAY8", 16, 16); /* takes over: same layout */
  push_frame(sink, 256, 8);
  b = gst_harness_pull(waiting);
  check_frame(b, 256, 8);
  gst_buffer_unref(b);
  gst_harness_teardown(waiting);
  gst_harness_teardown(sink);
  fail_unless_equals_int(shl_unlink(name), 0);
  g_free(name);
}
GST_END_TEST;

GST_START_TEST(test_pin_limit) {
  /* Downstream holds max-pinned buffers: the next frames come as copies,
   * at once, and the held frames never change while the writer goes on. */
  gchar *name = stream_name("pins");
  GstHarness *sink = sink_harness(name, "GRAY8", 16, 16);
  GstHarness *src = src_harness(name, 1, FALSE, 2);
  for (guint8 i = 1; i <= 12; i++) push_frame(sink, 256, i);
  GstBuffer *held[12];
  for (guint8 i = 0; i < 12; i++) {
    held[i] = gst_harness_pull(src);
    check_frame(held[i], 256, i + 1);
  }
  fail_unless_equals_int(stat_of(src->element, "copied"), 10);
  for (guint8 i = 0; i < 12; i++) {
    check_frame(held[i], 256, i + 1);
    gst_buffer_unref(held[i]);
  }
  push_frame(sink, 256, 13); /* pins released: zero copy again */
  GstBuffer *b = gst_harness_pull(src);
  check_frame(b, 256, 13);
  gst_buffer_unref(b);
  fail_unless_equals_int(stat_of(src->element, "copied"), 10);
  end_harnesses(name, src, sink);
}
GST_END_TEST;

/* The names in /dev/shm that contain `name`. */
static guint objects_named(const char *name) {
  GDir *dir = g_dir_open("/dev/shm", 0, NULL);
  const gchar *entry;
  guint n = 0;
  while (dir && (entry = g_dir_read_name(dir)) != NULL) n += strstr(entry, name) != NULL;
  if (dir) g_dir_close(dir);
  return n;
}

/* A live writer pipeline (NV12 at 200 frames/s) into the stream `name`,
 * playing, and a source pipeline of it, stopped, that ends in the fakesink
 * returned. */
static GstElement *live_pair(const char *name, GstElement **writer, GstElement **reader) {
  gchar *d = g_strdup_printf("videotestsrc is-live=true ! video/x-raw,format=NV12,width=64,"
                             "height=48,framerate=200/1 ! shmlanesink stream=%s",
                             name);
  *writer = launch(d);
  g_free(d);
  fail_unless(gst_element_set_state(*writer, GST_STATE_PLAYING) != GST_STATE_CHANGE_FAILURE);
  d = g_strdup_printf("shmlanesrc stream=%s ! queue max-size-buffers=2 ! fakesink name=out "
                      "signal-handoffs=true",
                      name);
  *reader = launch(d);
  g_free(d);
  return gst_bin_get_by_name(GST_BIN(*reader), "out");
}

/* The stopped source pipeline left no reader; both go, and the stream. */
static void end_pair(gchar *name, GstElement *writer, GstElement *reader, GstElement *out) {
  fail_unless_equals_int(stream_info(name).readers_alive, 0);
  gst_object_unref(out);
  gst_object_unref(reader);
  gst_element_set_state(writer, GST_STATE_NULL);
  gst_object_unref(writer);
  fail_unless_equals_int(shl_unlink(name), 0);
  g_free(name);
}

GST_START_TEST(test_state_changes) {
  /* A source pipeline taken NULL <-> PLAYING 100 times beside a running
   * sink: each run receives frames, and none leaves a reader or an object
   * in /dev/shm behind (make test-gst-long does this across processes,
   * with kills). */
  gchar *name = stream_name("states");
  GstElement *writer, *reader, *out = live_pair(name, &writer, &reader);
  for (int i = 0; i < 100; i++) {
    fail_unless(gst_element_set_state(reader, GST_STATE_PLAYING) != GST_STATE_CHANGE_FAILURE);
    GstSample *s = NULL;
    for (int tries = 0; tries < 200 && !s; tries++) {
      g_usleep(5000);
      g_object_get(out, "last-sample", &s, NULL);
    }
    fail_unless(s != NULL, "run %d: no frame", i);
    gst_sample_unref(s);
    fail_unless(gst_element_set_state(reader, GST_STATE_NULL) == GST_STATE_CHANGE_SUCCESS);
  }
  fail_unless_equals_int(objects_named(name), 1); /* the stream alone */
  end_pair(name, writer, reader, out);
}
GST_END_TEST;

/* Slots pinned by the stream's live readers, in all. */
static guint pins_of(const char *name) {
  shl_segment *seg = NULL;
  guint n = 0;
  int rc;
  fail_unless_equals_int(shl_open(&seg, name, SHL_OPEN_READONLY, 0), 0);
  for (uint32_t i = 0;; i++) {
    shl_stream_reader entry = SHL_STREAM_READER_INIT;
    if ((rc = shl_stream_get_reader(seg, i, &entry)) < 0) break;
    if (rc == 1 && entry.alive == 1) n += (guint)__builtin_popcountll(entry.pinned);
  }
  fail_unless_equals_int(rc, -ERANGE);
  shl_close(seg);
  return n;
}

/* Waits (up to 5 s) until the stream's readers pin `n` slots. */
static void wait_pins(const char *name, guint n) {
  for (int i = 0; i < 500 && pins_of(name) != n; i++) g_usleep(10000);
  fail_unless_equals_int(pins_of(name), n);
}

/* A harness's sink pad after flush-stop: a new segment, as after a seek. */
static void push_segment(GstHarness *h) {
  GstSegment seg;
  gst_segment_init(&seg, GST_FORMAT_TIME);
  fail_unless(gst_harness_push_event(h, gst_event_new_segment(&seg)));
}

typedef struct pusher {
  GstHarness *h;
  guint n;             /* frames to push, filled with 1, 2, ... */
  gint pushed;         /* atomic */
  GstFlowReturn last;  /* what the last push returned */
} pusher;

/* A GThreadFunc: pushes p->n frames of 256 bytes until one is refused. */
static gpointer push_frames(gpointer data) {
  pusher *p = data;
  for (guint i = 0; i < p->n; i++) {
    GstBuffer *b = gst_buffer_new_allocate(NULL, 256, NULL);
    gst_buffer_memset(b, 0, (guint8)(i + 1), 256);
    p->last = gst_harness_push(p->h, b);
    if (p->last != GST_FLOW_OK) break;
    g_atomic_int_inc(&p->pushed);
  }
  return NULL;
}

GST_START_TEST(test_sink_flush) {
  /* A blocking sink that waits, with no timeout, for a slot a reader of
   * policy all has not read: flush-start ends the wait (FLUSHING, nothing
   * dropped, nothing published half-written); after flush-stop the frames
   * flow again, numbered on without a gap. */
  gchar *name = stream_name("sflush");
  GstHarness *sink = new_sink_harness("stream", name, "sync", FALSE, "block", TRUE, "slots", 4,
                                      "timeout", (gint64)-1, NULL);
  gst_harness_set_src_caps(sink, caps_of("GRAY8", 16, 16));
  shl_reader *r = NULL;
  shl_reader_opts o = SHL_READER_OPTS_INIT;
  o.policy = SHL_RECV_ALL;
  o.timeout_ns = 5 * GST_SECOND;
  fail_unless_equals_int(shl_reader_open_ex(&r, name, &o), 0);
  pusher p = {.h = sink, .n = 10};
  GThread *t = g_thread_new("push", push_frames, &p);
  /* Four frames fill the ring; the fifth waits for the reader. */
  for (int i = 0; i < 500 && stat_of(sink->element, "published") < 4; i++) g_usleep(10000);
  g_usleep(100000);
  fail_unless_equals_int(stat_of(sink->element, "published"), 4);
  fail_unless_equals_int(g_atomic_int_get(&p.pushed), 4);
  fail_unless(gst_harness_push_event(sink, gst_event_new_flush_start()));
  g_thread_join(t);
  fail_unless_equals_int(p.last, GST_FLOW_FLUSHING);
  fail_unless(gst_harness_push_event(sink, gst_event_new_flush_stop(TRUE)));
  push_segment(sink);
  for (guint8 i = 1; i <= 4; i++) {
    shl_sample s;
    fail_unless_equals_int(shl_reader_receive(r, &s, 5 * GST_SECOND, 0), 0);
    fail_unless_equals_uint64(s.seq, i);
    fail_unless_equals_int(((const guint8 *)s.data)[100], i);
    shl_reader_release(r, &s);
  }
  push_frame(sink, 256, 9);
  shl_sample s;
  fail_unless_equals_int(shl_reader_receive(r, &s, 5 * GST_SECOND, 0), 0);
  fail_unless(s.seq == 5 && s.lost == 0 && ((const guint8 *)s.data)[100] == 9);
  shl_reader_release(r, &s);
  fail_unless_equals_int(stat_of(sink->element, "published"), 5);
  fail_unless_equals_int(stat_of(sink->element, "dropped"), 0);
  shl_reader_close(r);
  gst_harness_teardown(sink);
  fail_unless_equals_int(shl_unlink(name), 0);
  g_free(name);
}
GST_END_TEST;

/* The sink's default timeout (a frame's wait for a slot). */
#define SINK_TIMEOUT (5 * GST_SECOND)

/* A sink of GRAY8 16x16 frames into a ring of 4 slots. */
static GstHarness *pool_harness(const char *name, gint64 timeout) {
  GstHarness *h =
      new_sink_harness("stream", name, "sync", FALSE, "slots", 4, "timeout", timeout, NULL);
  gst_harness_set_src_caps(h, caps_of("GRAY8", 16, 16));
  return h;
}

/* A reader of policy `all` of the stream. */
static shl_reader *all_reader(const char *name) {
  shl_reader *r = NULL;
  shl_reader_opts o = SHL_READER_OPTS_INIT;
  o.policy = SHL_RECV_ALL;
  o.timeout_ns = 5 * GST_SECOND;
  fail_unless_equals_int(shl_reader_open_ex(&r, name, &o), 0);
  return r;
}

/* The reader's next frame is number `seq`, filled with `fill`, none lost. */
static void expect_frame(shl_reader *r, uint64_t seq, guint8 fill) {
  shl_sample s;
  fail_unless_equals_int(shl_reader_receive(r, &s, 5 * GST_SECOND, 0), 0);
  fail_unless_equals_uint64(s.seq, seq);
  fail_unless_equals_uint64(s.lost, 0);
  fail_unless_equals_int(((const guint8 *)s.data)[100], fill);
  shl_reader_release(r, &s);
}

/* The pool the sink offers upstream (its answer to an allocation query),
 * active. */
static GstBufferPool *lent_pool(GstHarness *h) {
  GstCaps *caps = gst_pad_get_current_caps(h->srcpad);
  GstQuery *q = gst_query_new_allocation(caps, TRUE);
  GstBufferPool *pool = NULL;
  fail_unless(gst_pad_peer_query(h->srcpad, q));
  fail_unless_equals_int(gst_query_get_n_allocation_pools(q), 1);
  gst_query_parse_nth_allocation_pool(q, 0, &pool, NULL, NULL, NULL);
  fail_unless(pool != NULL && gst_buffer_pool_set_active(pool, TRUE));
  gst_query_unref(q);
  gst_caps_unref(caps);
  return pool;
}

/* A pool test's sink (pool_harness), the bus it posts to, its pool as
 * upstream got it, and a reader of policy `all` (or none). */
typedef struct pool_test {
  gchar *name;
  GstHarness *sink;
  GstBus *bus;
  shl_reader *r;
  GstBufferPool *pool;
} pool_test;

static pool_test begin_pool_test(const char *tag, gboolean reader, gint64 timeout) {
  pool_test t = {.name = stream_name(tag), .bus = gst_bus_new()};
  t.sink = pool_harness(t.name, timeout);
  gst_element_set_bus(t.sink->element, t.bus);
  t.r = reader ? all_reader(t.name) : NULL;
  t.pool = lent_pool(t.sink);
  return t;
}

/* The text of the next message of `type` t's sink posted (fails if none). */
static gchar *posted(pool_test *t, GstMessageType type) {
  GstMessage *m = gst_bus_pop_filtered(t->bus, type);
  GError *e = NULL;
  fail_unless(m != NULL, "no %s message", gst_message_type_get_name(type));
  if (type == GST_MESSAGE_ERROR)
    gst_message_parse_error(m, &e, NULL);
  else
    gst_message_parse_warning(m, &e, NULL);
  gchar *text = g_strdup(e->message);
  g_error_free(e);
  gst_message_unref(m);
  return text;
}

static void end_pool_test(pool_test *t) {
  gst_element_set_bus(t->sink->element, NULL);
  gst_object_unref(t->bus);
  fail_unless(gst_buffer_pool_set_active(t->pool, FALSE));
  gst_object_unref(t->pool);
  shl_reader_close(t->r);
  gst_harness_teardown(t->sink);
  fail_unless_equals_int(shl_unlink(t->name), 0);
  g_free(t->name);
}

/* A buffer from `pool`, filled with `fill`: TRUE if the pool lent it
 * before (it is marked the first time). */
static gboolean acquire_filled(GstBufferPool *pool, GstBuffer **b, guint8 fill) {
  GQuark seen = g_quark_from_static_string("shlgst-test-seen");
  fail_unless_equals_int(gst_buffer_pool_acquire_buffer(pool, b, NULL), GST_FLOW_OK);
  gboolean again = gst_mini_object_get_qdata(GST_MINI_OBJECT(*b), seen) != NULL;
  gst_mini_object_set_qdata(GST_MINI_OBJECT(*b), seen, GINT_TO_POINTER(1), NULL);
  gst_buffer_memset(*b, 0, fill, gst_buffer_get_size(*b));
  return again;
}

/* A frame written into a buffer of `pool` (TRUE if lent before), pushed,
 * and received by t's reader as number `seq`. */
static gboolean publish_lent(pool_test *t, GstBufferPool *pool, uint64_t seq, guint8 fill) {
  GstBuffer *b = NULL;
  gboolean again = acquire_filled(pool, &b, fill);
  fail_unless_equals_int(gst_harness_push(t->sink, b), GST_FLOW_OK);
  expect_frame(t->r, seq, fill);
  return again;
}

GST_START_TEST(test_pool_reuse) {
  /* Upstream writing into the sink's pool, as videotestsrc does: a buffer
   * is made once per slot and lent again for it; one returned unpublished
   * is discarded (no frame, no gap in the numbers); nothing is copied. */
  pool_test t = begin_pool_test("reuse", TRUE, SINK_TIMEOUT);
  guint again = 0;
  uint64_t seq = 0;
  for (guint8 i = 1; i <= 12; i++) {
    GstBuffer *b = NULL;
    again += acquire_filled(t.pool, &b, i);
    if (i % 3 == 0) {
      gst_buffer_unref(b);
      continue;
    }
    fail_unless_equals_int(gst_harness_push(t.sink, b), GST_FLOW_OK);
    expect_frame(t.r, ++seq, i);
  }
  fail_unless(again >= 12 - 4, "%u of 12 loans made a new buffer (4 slots)", 12 - again);
  fail_unless_equals_int(stat_of(t.sink->element, "published"), 8);
  fail_unless_equals_int(stat_of(t.sink->element, "copied"), 0);
  end_pool_test(&t);
}
GST_END_TEST;

typedef struct acquirer {
  GstBufferPool *pool;
  GstBuffer *buf;
  GstFlowReturn ret;
  gint done; /* atomic */
} acquirer;

/* A GThreadFunc: one buffer from a->pool. */
static gpointer acquire_one(gpointer data) {
  acquirer *a = data;
  a->ret = gst_buffer_pool_acquire_buffer(a->pool, &a->buf, NULL);
  g_atomic_int_set(&a->done, 1);
  return NULL;
}

GST_START_TEST(test_pool_shared_memory) {
  /* A lent buffer copied downstream (the copy shares its memory over the
   * slot, as gst_buffer_make_writable's does behind a tee): while the copy
   * lives no slot is lent, for its slot may be the next, and the copy's
   * bytes never change; once it goes, the frames flow again. */
  pool_test t = begin_pool_test("shared", TRUE, SINK_TIMEOUT);
  GstBuffer *b = NULL;
  acquire_filled(t.pool, &b, 1);
  GstBuffer *copy = gst_buffer_copy(b);
  fail_unless_equals_int(gst_harness_push(t.sink, b), GST_FLOW_OK);
  expect_frame(t.r, 1, 1);
  acquirer a = {.pool = t.pool};
  GThread *thread = g_thread_new("acquire", acquire_one, &a);
  g_usleep(200000);
  fail_if(g_atomic_int_get(&a.done), "a slot lent while a copy holds memory over one");
  check_frame(copy, 256, 1);
  gst_buffer_unref(copy);
  g_thread_join(thread);
  fail_unless_equals_int(a.ret, GST_FLOW_OK);
  gst_buffer_memset(a.buf, 0, 2, 256);
  fail_unless_equals_int(gst_harness_push(t.sink, a.buf), GST_FLOW_OK);
  expect_frame(t.r, 2, 2);
  fail_unless_equals_int(stat_of(t.sink->element, "copied"), 0);
  end_pool_test(&t);
}
GST_END_TEST;

GST_START_TEST(test_pool_timeout) {
  /* A lent buffer held on (a tee's other branch keeps it) past the sink's
   * timeout: upstream's next buffer is ordinary memory, not FLUSHING (which
   * stops a producer without an error); the sink drops that frame with a
   * warning that says why, and the frames flow again once the held buffer
   * goes. */
  pool_test t = begin_pool_test("ptime", TRUE, 20 * GST_MSECOND);
  GstBuffer *b = NULL, *next = NULL;
  acquire_filled(t.pool, &b, 1);
  GstBuffer *held = gst_buffer_ref(b);
  fail_unless_equals_int(gst_harness_push(t.sink, b), GST_FLOW_OK);
  expect_frame(t.r, 1, 1);
  fail_unless_equals_int(gst_buffer_pool_acquire_buffer(t.pool, &next, NULL), GST_FLOW_OK);
  gst_buffer_memset(next, 0, 2, 256);
  fail_unless_equals_int(gst_harness_push(t.sink, next), GST_FLOW_OK);
  fail_unless_equals_int(stat_of(t.sink->element, "dropped"), 1);
  gchar *text = posted(&t, GST_MESSAGE_WARNING);
  fail_unless(strstr(text, "no slot came free within the timeout") != NULL, "%s", text);
  g_free(text);
  check_frame(held, 256, 1);
  gst_buffer_unref(held);
  publish_lent(&t, t.pool, 2, 3);
  end_pool_test(&t);
}
GST_END_TEST;

GST_START_TEST(test_pool_writer_finish) {
  /* The sink stopped while upstream still holds a lent buffer (and the
   * pool keeps another): the writer role stays, the slot's memory mapped
   * and writable, until that buffer comes back; then the writer closes. */
  pool_test t = begin_pool_test("finish", FALSE, SINK_TIMEOUT);
  GstBuffer *b = NULL;
  acquire_filled(t.pool, &b, 1);
  fail_unless_equals_int(gst_harness_push(t.sink, b), GST_FLOW_OK);
  acquire_filled(t.pool, &b, 2);
  fail_unless(gst_element_set_state(t.sink->element, GST_STATE_NULL) == GST_STATE_CHANGE_SUCCESS);
  fail_unless_equals_int(stream_info(t.name).writer_alive, 1);
  gst_buffer_memset(b, 0, 3, 256);
  gst_buffer_unref(b);
  fail_unless_equals_int(stream_info(t.name).writer_alive, 0);
  end_pool_test(&t);
}
GST_END_TEST;

GST_START_TEST(test_pool_flush) {
  /* Flushing, as a flushing seek does (the sink's events and upstream's
   * pool), with a buffer kept by the pool and one out: no buffer while
   * flushing; the one out comes back unpublished (discarded); afterwards
   * kept buffers are lent again and the frames are numbered on, none lost. */
  pool_test t = begin_pool_test("pflush", TRUE, SINK_TIMEOUT);
  GstBuffer *b = NULL, *out = NULL;
  publish_lent(&t, t.pool, 1, 1);
  acquire_filled(t.pool, &out, 9);
  fail_unless(gst_harness_push_event(t.sink, gst_event_new_flush_start()));
  gst_buffer_pool_set_flushing(t.pool, TRUE);
  fail_unless_equals_int(gst_buffer_pool_acquire_buffer(t.pool, &b, NULL), GST_FLOW_FLUSHING);
  gst_buffer_unref(out);
  gst_buffer_pool_set_flushing(t.pool, FALSE);
  fail_unless(gst_harness_push_event(t.sink, gst_event_new_flush_stop(TRUE)));
  push_segment(t.sink);
  guint again = 0;
  for (guint8 i = 2; i <= 5; i++) again += publish_lent(&t, t.pool, i, i);
  fail_unless(again > 0, "no kept buffer lent after the flush");
  end_pool_test(&t);
}
GST_END_TEST;

GST_START_TEST(test_pool_flush_while_loaning) {
  /* Upstream waits in the pool, with no timeout, for a slot (a reader pins
   * all but the newest), while the sink itself goes on: upstream's own
   * flush (its pool set flushing, as a source stopping does) ends the wait
   * with FLUSHING. */
  pool_test t = begin_pool_test("ploan", FALSE, -1);
  shl_reader_opts o = SHL_READER_OPTS_INIT;
  o.policy = SHL_RECV_ALL;
  o.max_pinned = 3;
  fail_unless_equals_int(shl_reader_open_ex(&t.r, t.name, &o), 0);
  shl_sample pinned[3];
  for (guint8 i = 1; i <= 4; i++) {
    GstBuffer *b = NULL;
    acquire_filled(t.pool, &b, i);
    fail_unless_equals_int(gst_harness_push(t.sink, b), GST_FLOW_OK);
  }
  for (int i = 0; i < 3; i++)
    fail_unless_equals_int(shl_reader_receive(t.r, &pinned[i], 5 * GST_SECOND, 0), 0);
  acquirer a = {.pool = t.pool};
  GThread *thread = g_thread_new("acquire", acquire_one, &a);
  g_usleep(100000);
  fail_if(g_atomic_int_get(&a.done), "a slot lent while every other is pinned");
  gst_buffer_pool_set_flushing(t.pool, TRUE);
  g_thread_join(thread);
  fail_unless_equals_int(a.ret, GST_FLOW_FLUSHING);
  for (int i = 0; i < 3; i++) shl_reader_release(t.r, &pinned[i]);
  gst_buffer_pool_set_flushing(t.pool, FALSE);
  end_pool_test(&t);
}
GST_END_TEST;

GST_START_TEST(test_pool_renegotiate) {
  /* Caps of other frames replace the stream: the new pool's buffers are
   * made for the new frames (the kept ones went with the old stream), and
   * the old pool, still active, lends no slot of the new stream: the
   * sink's next frame from elsewhere is copied into one at once. */
  pool_test t = begin_pool_test("preneg", TRUE, SINK_TIMEOUT);
  GstBuffer *old = NULL;
  publish_lent(&t, t.pool, 1, 1);
  gst_harness_set_src_caps(t.sink, caps_of("GRAY8", 16, 32));
  GstBufferPool *now = lent_pool(t.sink);
  fail_if(publish_lent(&t, now, 2, 2), "a buffer of the old stream lent by the new pool");
  acquire_filled(t.pool, &old, 3);
  push_frame(t.sink, 512, 4);
  expect_frame(t.r, 3, 4);
  gst_buffer_unref(old);
  fail_unless_equals_int(stat_of(t.sink->element, "dropped"), 0);
  fail_unless(gst_buffer_pool_set_active(now, FALSE));
  gst_object_unref(now);
  end_pool_test(&t);
}
GST_END_TEST;

GST_START_TEST(test_sink_caps_while_flushing) {
  /* Caps of other frames come while a lent buffer is held downstream (the
   * stream cannot be replaced under it): they are taken at once, and the
   * first frame of them waits; a flush that begins meanwhile ends the wait
   * with no error, and the frame after it replaces the stream (its reader
   * follows, numbers go on); with a timeout, the wait ends in an error that
   * says what holds the stream. 8x32 frames are as large as 16x16 ones. */
  pool_test t = begin_pool_test("capsflush", TRUE, -1);
  GstBuffer *b = NULL;
  acquire_filled(t.pool, &b, 1);
  GstBuffer *held = gst_buffer_ref(b);
  fail_unless_equals_int(gst_harness_push(t.sink, b), GST_FLOW_OK);
  expect_frame(t.r, 1, 1);
  fail_unless(gst_harness_push_event(t.sink, gst_event_new_caps(caps_of("GRAY8", 8, 32))));
  pusher p = {.h = t.sink, .n = 1};
  GThread *thread = g_thread_new("push", push_frames, &p);
  g_usleep(100000);
  fail_if(g_atomic_int_get(&p.pushed), "the stream replaced under a held buffer");
  fail_unless(gst_harness_push_event(t.sink, gst_event_new_flush_start()));
  g_thread_join(thread);
  fail_unless_equals_int(p.last, GST_FLOW_FLUSHING);
  GstMessage *m = gst_bus_pop_filtered(t.bus, GST_MESSAGE_ERROR);
  fail_if(m != NULL, "an error while flushing: %" GST_PTR_FORMAT, m);
  gst_buffer_unref(held);
  fail_unless(gst_harness_push_event(t.sink, gst_event_new_flush_stop(TRUE)));
  push_segment(t.sink);
  push_frame(t.sink, 256, 5);
  expect_frame(t.r, 2, 5);
  end_pool_test(&t);

  t = begin_pool_test("capsheld", TRUE, 20 * GST_MSECOND);
  acquire_filled(t.pool, &b, 1);
  held = gst_buffer_ref(b);
  fail_unless_equals_int(gst_harness_push(t.sink, b), GST_FLOW_OK);
  fail_unless(gst_harness_push_event(t.sink, gst_event_new_caps(caps_of("GRAY8", 8, 32))));
  b = gst_buffer_new_allocate(NULL, 256, NULL);
  fail_unless_equals_int(gst_harness_push(t.sink, b), GST_FLOW_ERROR);
  gchar *text = posted(&t, GST_MESSAGE_ERROR);
  fail_unless(strstr(text, "still held downstream") != NULL, "%s", text);
  g_free(text);
  gst_buffer_unref(held);
  end_pool_test(&t);
}
GST_END_TEST;

/* A pipeline of `upstream` into a shmlanesink of the stream `name`
 * (unsynchronised, with `props`), playing; *sink gets the sink. */
static GstElement *play_into(const char *upstream, const char *name, const char *props,
                             GstElement **sink) {
  gchar *d = g_strdup_printf("%s ! shmlanesink name=sink stream=%s sync=false %s", upstream, name,
                             props);
  GstElement *p = launch(d);
  g_free(d);
  *sink = gst_bin_get_by_name(GST_BIN(p), "sink");
  fail_unless(gst_element_set_state(p, GST_STATE_PLAYING) != GST_STATE_CHANGE_FAILURE);
  return p;
}

/* Waits (up to 2 s) until the sink has published `n` frames: FALSE if not. */
static gboolean wait_published(GstElement *sink, guint n) {
  for (int tries = 0; tries < 400 && stat_of(sink, "published") < n; tries++) g_usleep(5000);
  return stat_of(sink, "published") >= n;
}

GST_START_TEST(test_pool_caps_change_passthrough) {
  /* The caps after a scaler change while its input is a lent buffer (it
   * passed the sink's pool up to the test source while it passed buffers
   * through): the scaler sends the new caps while it holds that buffer. The
   * stream is replaced at the next frame, the frames go on at once (no wait
   * for the sink's timeout, no error), and upstream, asked again, writes
   * into the new stream's slots (at most one frame copied). */
  gchar *name = stream_name("scale");
  GstElement *sink = NULL;
  GstElement *p = play_into("videotestsrc is-live=true ! video/x-raw,format=I420,width=64,"
                            "height=48,framerate=100/1 ! videoscale ! capsfilter name=cf "
                            "caps=video/x-raw,width=64,height=48",
                            name, "", &sink);
  GstElement *cf = gst_bin_get_by_name(GST_BIN(p), "cf");
  fail_unless(wait_published(sink, 3));
  GstCaps *smaller = gst_caps_from_string("video/x-raw,width=32,height=24");
  g_object_set(cf, "caps", smaller, NULL);
  gst_caps_unref(smaller);
  shl_reader *r = all_reader(name); /* joins the old stream or the new: follows */
  shl_sample s;
  gboolean small = FALSE;
  for (int i = 0; i < 20 && !small; i++) {
    fail_unless(shl_reader_receive(r, &s, GST_SECOND, 0) == 0, "frame %d: none", i);
    shl_layout l;
    shl_get_layout(shl_reader_segment(r), &l);
    small = strcmp(l.format, "T{(24,32)B:y:(12,16)B:u:(12,16)B:v:}") == 0;
    shl_reader_release(r, &s);
  }
  fail_unless(small, "no frame of the new size");
  GstMessage *m = gst_bus_pop_filtered(GST_ELEMENT_BUS(p), GST_MESSAGE_ERROR);
  fail_if(m != NULL, "%" GST_PTR_FORMAT, m);
  fail_unless(stat_of(sink, "copied") <= 1, "%u frames copied", stat_of(sink, "copied"));
  fail_unless_equals_int(stat_of(sink, "dropped"), 0);
  fail_unless(gst_element_set_state(p, GST_STATE_NULL) == GST_STATE_CHANGE_SUCCESS);
  shl_reader_close(r);
  gst_object_unref(cf);
  gst_object_unref(sink);
  gst_object_unref(p);
  fail_unless_equals_int(shl_unlink(name), 0);
  g_free(name);
}
GST_END_TEST;

GST_START_TEST(test_sink_last_sample) {
  /* enable-last-sample keeps the frame last published: a lent buffer would
   * hold its slot, and the pool lends none while one is held. While it is
   * on, frames are copied (and flow: no wait for the timeout, nothing
   * dropped); turned off while playing, upstream writes into the slots
   * again; on again, copies again. */
  gchar *name = stream_name("last");
  GstElement *sink = NULL;
  GstElement *p = play_into("videotestsrc is-live=true ! video/x-raw,format=GRAY8,width=64,"
                            "height=48,framerate=200/1",
                            name, "enable-last-sample=true", &sink);
  for (int round = 0; round < 3; round++) {
    gboolean keep = round != 1;
    guint published = stat_of(sink, "published"), copied = stat_of(sink, "copied");
    if (round) g_object_set(sink, "enable-last-sample", keep, NULL);
    fail_unless(wait_published(sink, published + 5), "round %d: no frames", round);
    GstSample *kept = NULL;
    g_object_get(sink, "last-sample", &kept, NULL);
    fail_unless((kept != NULL) == keep, "round %d: last sample %p", round, (void *)kept);
    if (kept) gst_sample_unref(kept);
    published = stat_of(sink, "published");
    copied = stat_of(sink, "copied");
    fail_unless(wait_published(sink, published + 3), "round %d: no frames", round);
    guint more = stat_of(sink, "copied") - copied;
    fail_unless(keep ? more >= 3 : more == 0, "round %d: %u frames copied", round, more);
  }
  fail_unless_equals_int(stat_of(sink, "dropped"), 0);
  fail_unless(gst_element_set_state(p, GST_STATE_NULL) == GST_STATE_CHANGE_SUCCESS);
  gst_object_unref(sink);
  gst_object_unref(p);
  fail_unless_equals_int(shl_unlink(name), 0);
  g_free(name);
}
GST_END_TEST;

GST_START_TEST(test_pool_states) {
  /* A writer pipeline whose producer writes into the pool, taken NULL <->
   * PLAYING 20 times: each run publishes in place, and each stop closes the
   * writer, whatever the pool kept. */
  gchar *name = stream_name("pstates");
  gchar *d = g_strdup_printf("videotestsrc is-live=true ! video/x-raw,format=NV12,width=64,"
                             "height=48,framerate=200/1 ! shmlanesink name=sink stream=%s",
                             name);
  GstElement *p = launch(d);
  GstElement *sink = gst_bin_get_by_name(GST_BIN(p), "sink");
  for (int i = 0; i < 20; i++) {
    guint before = stat_of(sink, "published");
    fail_unless(gst_element_set_state(p, GST_STATE_PLAYING) != GST_STATE_CHANGE_FAILURE);
    fail_unless(wait_published(sink, before + 3), "run %d: no frames", i);
    fail_unless(gst_element_set_state(p, GST_STATE_NULL) == GST_STATE_CHANGE_SUCCESS);
    fail_unless_equals_int(stream_info(name).writer_alive, 0);
  }
  fail_unless_equals_int(stat_of(sink, "copied"), 0);
  fail_unless_equals_int(objects_named(name), 1);
  gst_object_unref(sink);
  gst_object_unref(p);
  g_free(d);
  fail_unless_equals_int(shl_unlink(name), 0);
  g_free(name);
}
GST_END_TEST;

GST_START_TEST(test_src_flush) {
  /* The source flushed (flush-start, flush-stop sent to it, which it sends
   * downstream) while it waits for a frame: the buffers downstream drops
   * give their pins back while the source is stopped; a frame published
   * meanwhile is not pushed while flushing; after flush-stop the frames
   * flow again, in order, none lost (policy all). */
  gchar *name = stream_name("rflush");
  GstHarness *sink = sink_harness(name, "GRAY8", 16, 16);
  GstHarness *src = src_harness(name, 1, FALSE, 2);
  push_frame(sink, 256, 1);
  push_frame(sink, 256, 2);
  GstBuffer *held[2];
  for (guint8 i = 0; i < 2; i++) {
    held[i] = gst_harness_pull(src);
    check_frame(held[i], 256, i + 1);
  }
  fail_unless_equals_int(pins_of(name), 2);
  fail_unless(gst_element_send_event(src->element, gst_event_new_flush_start()));
  for (guint8 i = 0; i < 2; i++) gst_buffer_unref(held[i]);
  wait_pins(name, 0);
  push_frame(sink, 256, 3);
  g_usleep(100000);
  fail_unless(gst_harness_try_pull(src) == NULL, "a buffer pushed while flushing");
  fail_unless_equals_int(pins_of(name), 0);
  fail_unless(gst_element_send_event(src->element, gst_event_new_flush_stop(TRUE)));
  push_frame(sink, 256, 4);
  for (guint8 fill = 3; fill <= 4; fill++) {
    GstBuffer *b = gst_harness_pull(src);
    check_frame(b, 256, fill);
    fail_if(GST_BUFFER_FLAG_IS_SET(b, GST_BUFFER_FLAG_DISCONT));
    gst_buffer_unref(b);
  }
  wait_pins(name, 0);
  fail_unless_equals_int(stat_of(src->element, "lost"), 0);
  end_harnesses(name, src, sink);
}
GST_END_TEST;

/* The number of buffers fakesink "out" has handled (its handoff signal). */
static void count_handoff(GstElement *sink, GstBuffer *b, GstPad *pad, gpointer data) {
  (void)sink, (void)b, (void)pad;
  g_atomic_int_inc((gint *)data);
}

/* Waits (up to 5 s) until `count` passes `above`. */
static void wait_count(gint *count, gint above) {
  for (int i = 0; i < 500 && g_atomic_int_get(count) <= above; i++) g_usleep(10000);
  fail_unless(g_atomic_int_get(count) > above, "no frame after %d", above);
}

GST_START_TEST(test_src_pipeline_seek) {
  /* A running source pipeline beside a running sink: a flushing seek is
   * refused (a live stream has no position to seek to, as v4l2src has
   * none) and the frames go on; flush events sent into the pipeline stop
   * and restart it, and frames come again each time; the source keeps no
   * more pins than its buffers downstream. */
  gchar *name = stream_name("seek");
  GstElement *writer, *reader, *out = live_pair(name, &writer, &reader);
  gint count = 0;
  g_signal_connect(out, "handoff", G_CALLBACK(count_handoff), &count);
  fail_unless(gst_element_set_state(reader, GST_STATE_PLAYING) != GST_STATE_CHANGE_FAILURE);
  wait_count(&count, 0);
  for (int i = 0; i < 5; i++) {
    fail_if(gst_element_seek_simple(reader, GST_FORMAT_TIME, GST_SEEK_FLAG_FLUSH, 0));
    wait_count(&count, g_atomic_int_get(&count));
    fail_unless(gst_element_send_event(reader, gst_event_new_flush_start()));
    fail_unless(gst_element_send_event(reader, gst_event_new_flush_stop(TRUE)));
    wait_count(&count, g_atomic_int_get(&count));
  }
  fail_unless(pins_of(name) <= 2); /* max-pinned: beyond, frames are copies */
  fail_unless(gst_element_set_state(reader, GST_STATE_NULL) == GST_STATE_CHANGE_SUCCESS);
  end_pair(name, writer, reader, out);
}
GST_END_TEST;

/* Frames published at uneven intervals, received by a reader of policy all
 * and pulled from a source under `clock`: each PTS is the frame's publish
 * time (the stream's CLOCK_MONOTONIC) as the clock's running time, so the
 * PTS rise, frame to frame, by the writer's own deltas (within `tolerance`
 * ns); with `exact`, PTS + base time is the publish time itself. */
static void check_timestamps(GstClock *clock, GstClockTime tolerance, gboolean exact) {
  enum { N = 8 };
  gchar *name = stream_name("pts");
  GstHarness *sink = sink_harness(name, "GRAY8", 16, 16);
  shl_reader *r = NULL;
  shl_reader_opts o = SHL_READER_OPTS_INIT;
  o.policy = SHL_RECV_ALL;
  fail_unless_equals_int(shl_reader_open_ex(&r, name, &o), 0);
  GstHarness *src = gst_harness_new("shmlanesrc");
  g_object_set(src->element, "stream", name, "policy", SHL_RECV_ALL, NULL);
  gst_harness_use_systemclock(src);
  if (clock) gst_element_set_clock(src->element, clock);
  gst_harness_play(src);
  wait_readers(name, 2);
  for (guint8 i = 1; i <= N; i++) {
    push_frame(sink, 256, i);
    g_usleep(3000 + 2000 * (i % 3));
  }
  GstClockTime pts[N];
  uint64_t ts[N];
  for (int i = 0; i < N; i++) {
    shl_sample s;
    fail_unless_equals_int(shl_reader_receive(r, &s, 5 * GST_SECOND, 0), 0);
    ts[i] = s.timestamp_ns;
    shl_reader_release(r, &s);
    GstBuffer *b = gst_harness_pull(src);
    check_frame(b, 256, (guint8)(i + 1));
    pts[i] = GST_BUFFER_PTS(b);
    gst_buffer_unref(b);
    fail_unless(GST_CLOCK_TIME_IS_VALID(pts[i]));
    if (exact)
      fail_unless_equals_uint64(pts[i] + gst_element_get_base_time(src->element), ts[i]);
    if (i == 0) continue;
    fail_unless(pts[i] > pts[i - 1], "frame %d: PTS %" G_GUINT64_FORMAT " after %" G_GUINT64_FORMAT,
                i, pts[i], pts[i - 1]);
    gint64 off = (gint64)(pts[i] - pts[i - 1]) - (gint64)(ts[i] - ts[i - 1]);
    fail_unless(ABS(off) <= (gint64)tolerance, "frame %d: PTS delta %" G_GINT64_FORMAT
                " ns off the writer's", i, off);
  }
  GstClock *now = gst_element_get_clock(src->element);
  fail_unless(pts[N - 1] <= gst_clock_get_time(now) - gst_element_get_base_time(src->element),
              "a PTS in the future");
  gst_object_unref(now);
  shl_reader_close(r);
  end_harnesses(name, src, sink);
}

GST_START_TEST(test_timestamps) {
  /* The system clock (CLOCK_MONOTONIC, as the stream's): exact. */
  check_timestamps(NULL, 0, TRUE);
  /* A clock of another kind (the wall clock): the publish times mapped
   * through the two clocks' offset, read at each frame. */
  GstClock *wall = g_object_new(GST_TYPE_SYSTEM_CLOCK, "clock-type", GST_CLOCK_TYPE_REALTIME, NULL);
  check_timestamps(wall, 2 * GST_MSECOND, FALSE);
  gst_object_unref(wall);
}
GST_END_TEST;

/* The error a pipeline posts within 10 s (fails if it posts none). */
static GError *pipeline_error(GstElement *p, gchar **debug) {
  gst_element_set_state(p, GST_STATE_PLAYING); /* fails at once for an element's start */
  GstMessage *m = gst_bus_timed_pop_filtered(GST_ELEMENT_BUS(p), 10 * GST_SECOND,
                                             GST_MESSAGE_EOS | GST_MESSAGE_ERROR);
  fail_unless(m != NULL && GST_MESSAGE_TYPE(m) == GST_MESSAGE_ERROR, "no error");
  GError *e = NULL;
  gst_message_parse_error(m, &e, debug);
  gst_message_unref(m);
  gst_element_set_state(p, GST_STATE_NULL);
  return e;
}

GST_START_TEST(test_sink_mode) {
  /* A mode that grants read without write, that its owner cannot read and
   * write, or that grants write without read is refused at start with an
   * error that names the property and the rule, and nothing is created;
   * 0660 (as gst-launch-1.0 spells it) shares with the group. One slot (the
   * property takes 0 to 64) is refused with the range, not "Invalid
   * argument". */
  static const struct {
    const char *setting, *says, *details;
  } bad[] = {
      {"mode=0640", "property mode=0640: bad mode", "0660 shares it with a group"},
      {"mode=0644", "property mode=0644: bad mode", "0660 shares it with a group"},
      {"mode=0604", "property mode=0604: bad mode", "0660 shares it with a group"},
      {"mode=0664", "stream grants read only with write", "0660 shares it with a group"},
      {"mode=0066", "property mode=0066: bad mode: the owner must read and write", ""},
      {"mode=0200", "property mode=0200: bad mode: the owner must read and write", ""},
      {"mode=0002", "property mode=0002: bad mode", ""},
      {"mode=0622", "property mode=0622: bad mode", ""},
      {"slots=1", "a stream holds 2 to 64 frames", ""},
  };
  gchar *name = stream_name("mode");
  for (gsize i = 0; i < G_N_ELEMENTS(bad); i++) {
    gchar *d = g_strdup_printf("videotestsrc num-buffers=1 ! video/x-raw,format=GRAY8,width=16,"
                               "height=16 ! shmlanesink stream=%s %s",
                               name, bad[i].setting);
    GstElement *p = launch(d);
    gchar *debug = NULL;
    GError *e = pipeline_error(p, &debug);
    fail_unless(g_error_matches(e, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_SETTINGS), "%s: %s",
                bad[i].setting, e->message);
    fail_unless(strstr(e->message, bad[i].says) != NULL, "%s", e->message);
    fail_unless(strstr(debug, bad[i].details) != NULL, "%s", debug);
    g_error_free(e);
    g_free(debug);
    gst_object_unref(p);
    g_free(d);
    shl_segment *seg = NULL;
    fail_unless_equals_int(shl_open(&seg, name, SHL_OPEN_READONLY, 0), -ENOENT);
  }
  /* A stream made readable by chmod is refused as the stream's fault. */
  shl_writer *w = NULL;
  shl_layout gray = {.format = "B", .ndim = 2, .shape = {16, 16}};
  fail_unless_equals_int(shl_writer_open(&w, name, &gray, NULL), 0);
  shl_writer_close(w);
  gchar *path = g_strdup_printf("/dev/shm%s%s", SHL_POSIX_PREFIX, name), *debug = NULL;
  fail_unless(chmod(path, 0640) == 0);
  g_free(path);
  gchar *d = g_strdup_printf("videotestsrc num-buffers=1 ! video/x-raw,format=GRAY8,width=16,"
                             "height=16 ! shmlanesink stream=%s",
                             name);
  GstElement *p = launch(d);
  GError *e = pipeline_error(p, &debug);
  fail_unless(strstr(e->message, "bad mode") && strstr(debug, "(a chmod)"), "%s", debug);
  g_error_free(e);
  g_free(debug);
  gst_object_unref(p);
  g_free(d);
  fail_unless_equals_int(shl_unlink(name), 0);
  d = g_strdup_printf("videotestsrc num-buffers=1 ! video/x-raw,format=GRAY8,width=16,"
                      "height=16 ! shmlanesink stream=%s mode=0660",
                      name);
  p = launch(d);
  run_to_eos(p);
  gst_object_unref(p);
  g_free(d);
  shl_segment *seg = NULL;
  shl_info info = SHL_INFO_INIT;
  fail_unless_equals_int(shl_open(&seg, name, SHL_OPEN_READONLY, 0), 0);
  fail_unless_equals_int(shl_get_info(seg, &info), 0);
  fail_unless_equals_int(info.mode, 0660);
  shl_close(seg);
  fail_unless_equals_int(shl_unlink(name), 0);
  g_free(name);
}
GST_END_TEST;

GST_START_TEST(test_properties_fixed_while_playing) {
  /* What the elements read when they open their stream (flagged mutable in
   * READY) keeps its value while playing, with a warning, as GStreamer's own
   * elements do: a change applied only at the next start, and the sink's
   * messages named a stream it did not write. eos-on-writer-gone, read as
   * it is needed, changes at once. Changed in NULL, each takes its value. */
  gchar *name = stream_name("fixed");
  gchar *d = g_strdup_printf("videotestsrc is-live=true ! video/x-raw,format=GRAY8,width=16,"
                             "height=16 ! shmlanesink name=sink stream=%s "
                             "shmlanesrc name=src stream=%s.none ! fakesink",
                             name, name);
  GstElement *p = launch(d);
  GstElement *sink = gst_bin_get_by_name(GST_BIN(p), "sink");
  GstElement *src = gst_bin_get_by_name(GST_BIN(p), "src");
  fail_unless(gst_element_set_state(p, GST_STATE_PLAYING) != GST_STATE_CHANGE_FAILURE);
  shl_reader *r = NULL;
  shl_reader_opts o = SHL_READER_OPTS_INIT;
  o.timeout_ns = 5 * GST_SECOND;
  fail_unless_equals_int(shl_reader_open_ex(&r, name, &o), 0); /* the sink writes it */
  shl_reader_close(r);
  ASSERT_WARNING(g_object_set(sink, "stream", "elsewhere", NULL));
  ASSERT_WARNING(g_object_set(sink, "timeout", (gint64)1, NULL));
  ASSERT_WARNING(g_object_set(src, "policy", SHL_RECV_ALL, NULL));
  g_object_set(src, "eos-on-writer-gone", TRUE, NULL); /* no warning: one would fail the test */
  gchar *stream = NULL;
  gint64 timeout = 0;
  gint policy = 0;
  gboolean eos = FALSE;
  g_object_get(sink, "stream", &stream, "timeout", &timeout, NULL);
  g_object_get(src, "policy", &policy, "eos-on-writer-gone", &eos, NULL);
  fail_unless_equals_string(stream, name);
  fail_unless(timeout == 5 * GST_SECOND && policy == SHL_RECV_LATEST && eos);
  g_free(stream);
  gst_element_set_state(p, GST_STATE_NULL);
  g_object_set(sink, "stream", "elsewhere", "timeout", (gint64)1, NULL);
  g_object_get(sink, "stream", &stream, "timeout", &timeout, NULL);
  fail_unless_equals_string(stream, "elsewhere");
  fail_unless(timeout == 1);
  fail_unless_equals_int(shl_unlink(name), 0);
  g_free(stream);
  g_free(name);
  g_free(d);
  gst_object_unref(src);
  gst_object_unref(sink);
  gst_object_unref(p);
}
GST_END_TEST;

GST_START_TEST(test_sink_takes_back_damaged_name) {
  /* A peer with write access zeroed the format length of a stream no
   * writer holds: every opener refuses it, and the sink, which replaces,
   * takes the name back with a stream of its own. */
  gchar *name = stream_name("damaged");
  shl_writer *w = NULL;
  shl_layout gray = {.format = "B", .ndim = 2, .shape = {8, 8}};
  fail_unless_equals_int(shl_writer_open(&w, name, &gray, NULL), 0);
  shl_writer_close(w);
  gchar *path = g_strdup_printf("/dev/shm%s%s", SHL_POSIX_PREFIX, name);
  int fd = open(path, O_RDWR | O_CLOEXEC);
  uint32_t zero = 0;
  fail_unless(fd >= 0);
  fail_unless(pwrite(fd, &zero, sizeof zero, offsetof(struct shl__header, format_len)) == 4);
  close(fd);
  shl_segment *seg = NULL;
  fail_unless_equals_int(shl_open(&seg, name, SHL_OPEN_READONLY, 0), SHL_E_BAD_HEADER);
  GstHarness *sink = sink_harness(name, "GRAY8", 16, 16);
  push_frame(sink, 256, 1);
  fail_unless_equals_uint64(stream_info(name).last_seq, 1);
  gst_harness_teardown(sink);
  fail_unless_equals_int(shl_unlink(name), 0);
  g_free(path);
  g_free(name);
}
GST_END_TEST;

/* The caps of the last buffer the harness's source pushed: framerate. */
static void check_framerate(GstHarness *h, gint n, gint d) {
  GstCaps *c = gst_pad_get_current_caps(h->sinkpad);
  gint fn = 0, fd = 0;
  fail_unless(gst_structure_get_fraction(gst_caps_get_structure(c, 0), "framerate", &fn, &fd));
  fail_unless(fn == n && fd == d, "framerate %d/%d, not %d/%d", fn, fd, n, d);
  gst_caps_unref(c);
}

GST_START_TEST(test_period) {
  /* The sink declares the caps' framerate as the stream's frame period, and
   * declares it again when only the framerate changes; a source of a stream without the sink's records (a C or Python writer's)
   * takes its framerate and durations from that period. */
  gchar *name = stream_name("period");
  GstHarness *sink = sink_harness(name, "GRAY8", 16, 16); /* 25/1 */
  push_frame(sink, 256, 1);
  fail_unless_equals_uint64(stream_info(name).period_ns, 40 * GST_MSECOND);
  /* Only the rate changes: the same stream (no replacement), a new period. */
  GstCaps *faster = caps_of("GRAY8", 16, 16);
  gst_caps_set_simple(faster, "framerate", GST_TYPE_FRACTION, 50, 1, NULL);
  gst_harness_set_src_caps(sink, faster);
  push_frame(sink, 256, 2);
  shl_stream_info info = stream_info(name);
  fail_unless_equals_uint64(info.period_ns, 20 * GST_MSECOND);
  fail_unless(!info.replaced && info.last_seq == 2);
  gst_harness_teardown(sink);
  fail_unless_equals_int(shl_unlink(name), 0);

  shl_writer *w = NULL;
  shl_layout gray = {.format = "B", .ndim = 2, .shape = {16, 16}};
  shl_stream_opts o = SHL_STREAM_OPTS_INIT;
  o.period_ns = 33366667; /* NTSC's 30000/1001 */
  fail_unless_equals_int(shl_writer_open(&w, name, &gray, &o), 0);
  GstHarness *src = src_harness(name, 1, FALSE, 2);
  void *frame = NULL;
  fail_unless(shl_writer_loan(w, &frame, 0) >= 0);
  memset(frame, 9, 256);
  fail_unless_equals_int(shl_writer_publish(w, NULL), 0);
  GstBuffer *b = gst_harness_pull(src);
  check_frame(b, 256, 9);
  fail_unless_equals_uint64(GST_BUFFER_DURATION(b),
                            gst_util_uint64_scale_int(GST_SECOND, 1001, 30000));
  gst_buffer_unref(b);
  check_framerate(src, 30000, 1001);
  gst_harness_teardown(src);
  shl_writer_close(w);
  fail_unless_equals_int(shl_unlink(name), 0);
  g_free(name);
}
GST_END_TEST;

/* A GRAY8 16x16 writer of the stream, with frames of `slots` slots. */
static shl_writer *gray_writer(const char *name, guint slots) {
  shl_layout gray = {.format = "B", .ndim = 2, .shape = {16, 16}};
  shl_stream_opts o = SHL_STREAM_OPTS_INIT;
  o.slots = slots;
  shl_writer *w = NULL;
  fail_unless_equals_int(shl_writer_open(&w, name, &gray, &o), 0);
  return w;
}

static void publish_fill(shl_writer *w, guint8 fill) {
  void *frame = NULL;
  fail_unless(shl_writer_loan(w, &frame, GST_SECOND) >= 0);
  memset(frame, fill, 256);
  fail_unless_equals_int(shl_writer_publish(w, NULL), 0);
}

/* Tears down a source harness, the bus it posted to and the stream's
 * writer, and removes the stream. */
static void end_src_test(gchar *name, GstHarness *src, GstBus *bus, shl_writer *w) {
  gst_element_set_bus(src->element, NULL);
  gst_object_unref(bus);
  gst_harness_teardown(src);
  shl_writer_close(w);
  fail_unless_equals_int(shl_unlink(name), 0);
  g_free(name);
}

GST_START_TEST(test_src_caps_while_flushing) {
  /* The source's pad starts flushing (a flush or a state change in another
   * thread) while it has a frame whose caps it must set: it stops as a
   * flush stops it, with no error; after the flush the caps are set and the
   * frames flow. */
  gchar *name = stream_name("srccapsflush");
  shl_writer *w = gray_writer(name, 4);
  GstHarness *src = src_harness(name, 1, FALSE, 2);
  GstBus *bus = gst_bus_new();
  gst_element_set_bus(src->element, bus);
  GstPad *pad = GST_BASE_SRC_PAD(src->element);
  GST_OBJECT_LOCK(pad);
  GST_PAD_SET_FLUSHING(pad);
  GST_OBJECT_UNLOCK(pad);
  publish_fill(w, 1);
  for (int i = 0; i < 500 && gst_pad_get_task_state(pad) != GST_TASK_PAUSED; i++) g_usleep(10000);
  fail_unless_equals_int(gst_pad_get_task_state(pad), GST_TASK_PAUSED);
  GstMessage *m = gst_bus_pop_filtered(bus, GST_MESSAGE_ERROR);
  fail_if(m != NULL, "an error while flushing: %" GST_PTR_FORMAT, m);
  fail_unless(gst_element_send_event(src->element, gst_event_new_flush_start()));
  fail_unless(gst_element_send_event(src->element, gst_event_new_flush_stop(TRUE)));
  publish_fill(w, 2);
  GstBuffer *b = gst_harness_pull(src);
  check_frame(b, 256, 2);
  gst_buffer_unref(b);
  check_framerate(src, 0, 1);
  end_src_test(name, src, bus, w);
}
GST_END_TEST;

GST_START_TEST(test_pin_limit_small_ring) {
  /* Downstream keeps every buffer, over a ring of 3 slots: one of them may
   * be over a slot (not max-pinned's 2), so the writer always has one
   * besides the newest frame's; of 2 slots, every frame is copied. */
  for (guint slots = 2; slots <= 3; slots++) {
    gchar *name = stream_name(slots == 2 ? "ring2" : "ring3");
    shl_writer *w = gray_writer(name, slots);
    GstHarness *src = src_harness(name, 1, FALSE, 2);
    GstBus *bus = gst_bus_new();
    gst_element_set_bus(src->element, bus);
    GstBuffer *held[4];
    for (guint8 i = 0; i < 4; i++) {
      publish_fill(w, i + 1);
      held[i] = gst_harness_pull(src);
      check_frame(held[i], 256, i + 1);
    }
    fail_unless_equals_int(stat_of(src->element, "copied"), slots == 2 ? 4 : 3);
    for (guint8 i = 0; i < 4; i++) {
      check_frame(held[i], 256, i + 1);
      gst_buffer_unref(held[i]);
    }
    end_src_test(name, src, bus, w);
  }
}
GST_END_TEST;

GST_START_TEST(test_src_owner) {
  /* owner: this user's uid or name reads the stream; a sign, or a uid past
   * 2^32 - 2 (which would wrap round to this user's), names no user: an
   * error that says so. */
  gchar *name = stream_name("owner");
  shl_writer *w = gray_writer(name, 4);
  struct passwd *me = getpwuid(geteuid());
  fail_unless(me != NULL);
  gchar *wrapped = g_strdup_printf("%" G_GUINT64_FORMAT, ((guint64)1 << 32) + geteuid());
  gchar *mine = g_strdup_printf("%u", (unsigned)geteuid());
  const gchar *owners[] = {mine, me->pw_name, "-1", wrapped, "+0"};
  publish_fill(w, 7);
  for (guint i = 0; i < G_N_ELEMENTS(owners); i++) {
    GstHarness *src = gst_harness_new("shmlanesrc");
    GstBus *bus = gst_bus_new();
    gst_element_set_bus(src->element, bus);
    g_object_set(src->element, "stream", name, "owner", owners[i], NULL);
    gst_harness_play(src);
    if (i < 2) { /* it joins with the newest frame */
      GstBuffer *b = gst_harness_pull(src);
      check_frame(b, 256, 7);
      gst_buffer_unref(b);
    } else {
      GstMessage *m = gst_bus_timed_pop_filtered(bus, 5 * GST_SECOND, GST_MESSAGE_ERROR);
      GError *e = NULL;
      fail_unless(m != NULL, "owner %s: no error", owners[i]);
      gst_message_parse_error(m, &e, NULL);
      fail_unless(strstr(e->message, "no user") != NULL, "owner %s: %s", owners[i], e->message);
      g_error_free(e);
      gst_message_unref(m);
    }
    gst_element_set_bus(src->element, NULL);
    gst_object_unref(bus);
    gst_harness_teardown(src);
  }
  g_free(mine);
  g_free(wrapped);
  shl_writer_close(w);
  fail_unless_equals_int(shl_unlink(name), 0);
  g_free(name);
}
GST_END_TEST;

GST_START_TEST(test_src_padded_rows) {
  /* GRAY8 16x16 frames whose rows are 20 bytes apart (the padding 0xff), as
   * a C writer may lay them out: a converter downstream reads GstVideoMeta,
   * so the source pushes them as they are (nothing copied) and the
   * converter reads the rows where they are (no padding in its output). */
  gchar *name = stream_name("padded");
  shl_layout l = {.format = "B", .ndim = 2, .shape = {16, 16}, .strides = {20, 1}};
  shl_writer *w = NULL;
  fail_unless_equals_int(shl_writer_open(&w, name, &l, NULL), 0);
  GstHarness *h = gst_harness_new_parse("shmlanesrc name=src policy=all ! videoconvert ! "
                                        "capsfilter caps=video/x-raw,format=RGB");
  GstElement *src = gst_bin_get_by_name(GST_BIN(h->element), "src");
  g_object_set(src, "stream", name, NULL);
  gst_harness_play(h);
  wait_readers(name, 1);
  for (guint8 i = 1; i <= 3; i++) {
    guint8 *frame = NULL;
    fail_unless(shl_writer_loan(w, (void **)&frame, GST_SECOND) >= 0);
    memset(frame, 0xff, 20 * 16);
    for (int row = 0; row < 16; row++) memset(frame + row * 20, 40 * i, 16);
    fail_unless_equals_int(shl_writer_publish(w, NULL), 0);
    GstBuffer *b = gst_harness_pull(h);
    GstMapInfo map;
    fail_unless(gst_buffer_map(b, &map, GST_MAP_READ));
    GstVideoInfo rgb;
    gst_video_info_set_format(&rgb, GST_VIDEO_FORMAT_RGB, 16, 16);
    for (int row = 0; row < 16; row++)
      for (int col = 0; col < 16 * 3; col++)
        fail_unless_equals_int(map.data[row * rgb.stride[0] + col], map.data[0]);
    gst_buffer_unmap(b, &map);
    gst_buffer_unref(b);
  }
  fail_unless_equals_int(stat_of(src, "copied"), 0);
  gst_object_unref(src);
  gst_harness_teardown(h);
  shl_writer_close(w);
  fail_unless_equals_int(shl_unlink(name), 0);
  g_free(name);
}
GST_END_TEST;

GST_START_TEST(test_src_caps_refused) {
  /* Downstream takes GRAY8 only, the stream carries RGB: an error that
   * says downstream refuses the stream's caps, and names them. */
  gchar *name = stream_name("refused");
  shl_layout rgb = {.format = "T{B:r:B:g:B:b:}", .ndim = 2, .shape = {16, 16}};
  shl_writer *w = NULL;
  fail_unless_equals_int(shl_writer_open(&w, name, &rgb, NULL), 0);
  gchar *d = g_strdup_printf("shmlanesrc stream=%s ! capsfilter caps=video/x-raw,format=GRAY8",
                             name);
  GstHarness *src = gst_harness_new_parse(d);
  g_free(d);
  GstBus *bus = gst_bus_new();
  gst_element_set_bus(src->element, bus);
  gst_harness_play(src);
  wait_readers(name, 1);
  void *frame = NULL;
  fail_unless(shl_writer_loan(w, &frame, GST_SECOND) >= 0);
  fail_unless_equals_int(shl_writer_publish(w, NULL), 0);
  GstMessage *m = gst_bus_timed_pop_filtered(bus, 5 * GST_SECOND, GST_MESSAGE_ERROR);
  fail_unless(m != NULL, "no error");
  GError *e = NULL;
  gchar *debug = NULL;
  gst_message_parse_error(m, &e, &debug);
  fail_unless(g_error_matches(e, GST_CORE_ERROR, GST_CORE_ERROR_NEGOTIATION), "%s", e->message);
  fail_unless(strstr(debug, "format=(string)RGB") != NULL, "%s", debug);
  g_error_free(e);
  g_free(debug);
  gst_message_unref(m);
  end_src_test(name, src, bus, w);
}
GST_END_TEST;

/* Waits (5 s) for the element's next error of GST_STREAM_ERROR `code`. */
static gboolean next_stream_error(GstBus *bus, GstStreamError code) {
  for (;;) {
    GstMessage *m = gst_bus_timed_pop_filtered(bus, 5 * GST_SECOND, GST_MESSAGE_ERROR);
    if (!m) return FALSE;
    GError *e = NULL;
    gst_message_parse_error(m, &e, NULL);
    gboolean hit = g_error_matches(e, GST_STREAM_ERROR, code);
    g_error_free(e);
    gst_message_unref(m);
    if (hit) return TRUE;
  }
}

GST_START_TEST(test_src_bad_stream_after_flush) {
  /* A stream replaced by one that is not raw video: an error; a flush
   * restarts the source on that stream, and its next frame is an error
   * again, never a buffer laid out as the stream before (12 KiB over a slot
   * of 8 bytes). */
  gchar *name = stream_name("badflush");
  shl_layout bgra = {.format = "B", .ndim = 3, .shape = {48, 64, 4}};
  shl_layout dbl = {.format = "<d", .ndim = 2, .shape = {1, 1}};
  shl_writer *w = NULL;
  fail_unless_equals_int(shl_writer_open(&w, name, &bgra, NULL), 0);
  GstHarness *src = src_harness(name, 1, FALSE, 2);
  GstBus *bus = gst_bus_new();
  gst_element_set_bus(src->element, bus);
  void *frame = NULL;
  fail_unless(shl_writer_loan(w, &frame, GST_SECOND) >= 0);
  memset(frame, 1, 64 * 48 * 4);
  fail_unless_equals_int(shl_writer_publish(w, NULL), 0);
  GstBuffer *b = gst_harness_pull(src);
  check_frame(b, 64 * 48 * 4, 1);
  gst_buffer_unref(b);
  fail_unless_equals_int(shl_writer_replace(&w, &dbl, NULL), 0);
  for (int i = 0; i < 2; i++) {
    fail_unless(shl_writer_loan(w, &frame, GST_SECOND) >= 0);
    memset(frame, 2, 8);
    fail_unless_equals_int(shl_writer_publish(w, NULL), 0);
    fail_unless(next_stream_error(bus, GST_STREAM_ERROR_WRONG_TYPE), "frame %d: no error", i);
    fail_unless(gst_element_send_event(src->element, gst_event_new_flush_start()));
    fail_unless(gst_element_send_event(src->element, gst_event_new_flush_stop(TRUE)));
  }
  fail_unless(gst_harness_try_pull(src) == NULL, "a frame of a stream that is not video");
  end_src_test(name, src, bus, w);
}
GST_END_TEST;

/* The stream as a peer with write access maps it (whole, read-write). */
typedef struct peer_map {
  void *base;
  size_t size;
  struct shl__stream_ctl *ctl;
} peer_map;

static peer_map peer_map_open(const char *name) {
  gchar *path = g_strdup_printf("/dev/shm/shl.%s", name);
  int fd = open(path, O_RDWR);
  struct stat st;
  fail_unless(fd >= 0 && fstat(fd, &st) == 0, "%s", path);
  peer_map m = {.size = (size_t)st.st_size};
  m.base = mmap(NULL, m.size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  fail_unless(m.base != MAP_FAILED);
  close(fd);
  g_free(path);
  m.ctl = (struct shl__stream_ctl *)((char *)m.base + ((struct shl__header *)m.base)->ext_offset);
  return m;
}

/* Tears down a source harness, the peer's map and the stream's writer, and
 * removes the stream. */
static void end_peer_test(GstHarness *src, peer_map *m, shl_writer *w, gchar *name) {
  gst_harness_teardown(src);
  munmap(m->base, m->size);
  shl_writer_close(w);
  fail_unless_equals_int(shl_unlink(name), 0);
  g_free(name);
}

/* The control block's metadata fields, as a peer rewrites them. */
static void peer_set_meta(peer_map *m, uint64_t offset, const char *format, uint64_t size) {
  strcpy((char *)m->ctl + m->ctl->meta_format_offset, format);
  m->ctl->meta_format_len = (uint32_t)strlen(format);
  m->ctl->meta_offset = offset;
  m->ctl->meta_size = size;
}

/* A record of framerate fps_n/1 at `at`. */
static void put_record(void *at, gint fps_n) {
  GstVideoInfo info;
  shlgst_record rec;
  GstBuffer *b = gst_buffer_new();
  gst_video_info_set_format(&info, GST_VIDEO_FORMAT_GRAY8, 128, 64);
  GST_VIDEO_INFO_FPS_N(&info) = fps_n;
  GST_VIDEO_INFO_FPS_D(&info) = 1;
  shlgst_record_init(&rec, &info);
  shlgst_record_write(at, &rec, b);
  gst_buffer_unref(b);
}

/* A writer of GRAY8 frames, rows x cols, in 4 slots, each with the sink's
 * record, as a C writer (or a peer) makes it. */
static shl_writer *record_writer(const char *name, uint32_t rows, uint32_t cols) {
  shl_layout gray = {.format = "B", .ndim = 2, .shape = {rows, cols}};
  shl_stream_opts o = SHL_STREAM_OPTS_INIT;
  o.slots = 4;
  o.meta_format = SHLGST_META_FORMAT;
  shl_writer *w = NULL;
  fail_unless_equals_int(shl_writer_open(&w, name, &gray, &o), 0);
  return w;
}

GST_START_TEST(test_meta_switched_after_join) {
  /* GRAY8 128x64 frames of 8 KiB, the sink's 88-byte record: slots of
   * 12 KiB. A peer moves the record to the slot's last 128 bytes (state A,
   * valid) before the source joins, then to a 4 KiB record of another
   * format at 8 KiB (state B, valid too): the source reads the record where
   * its snapshot, A, says, with A's format and size (B's size at A's place
   * would reach into the next slot, or past the mapping from the last). */
  gchar *name = stream_name("hmeta");
  shl_writer *w = record_writer(name, 64, 128);
  peer_map m = peer_map_open(name);
  fail_unless(m.ctl->slot_stride == 12288 && m.ctl->meta_offset == 8192);
  const uint64_t at_a = 12288 - 128;
  peer_set_meta(&m, at_a, SHLGST_META_FORMAT, sizeof(shlgst_record));
  GstHarness *src = src_harness(name, 1, FALSE, 1);
  peer_set_meta(&m, 8192, "4096x", 4096);
  for (int i = 0; i < 3; i++) {
    void *frame = NULL;
    fail_unless(shl_writer_loan(w, &frame, GST_SECOND) >= 0);
    memset(frame, 5 + i, 8192);
    put_record((char *)frame + at_a, 7); /* where the source's snapshot says */
    put_record(shl_writer_meta(w), 9);   /* where the writer's says */
    /* B's record, up to A's, as a writer of B would fill it */
    memset((char *)frame + 8192 + sizeof(shlgst_record), 0xff, at_a - 8192 - sizeof(shlgst_record));
    fail_unless_equals_int(shl_writer_publish(w, NULL), 0);
    GstBuffer *b = gst_harness_pull(src);
    check_frame(b, 8192, 5 + i);
    gst_buffer_unref(b);
    check_framerate(src, 7, 1);
  }
  end_peer_test(src, &m, w, name);
}
GST_END_TEST;

/* Stores `r` as the sink's record writer does, times and all (a time of -1
 * is GStreamer's "none", stored as -1 again), with the strings as given:
 * 16 bytes each, terminated or not. */
static void put_raw_record(void *at, const shlgst_record *r) {
  GstBuffer *b = gst_buffer_new();
  GST_BUFFER_PTS(b) = (GstClockTime)r->pts;
  GST_BUFFER_DTS(b) = (GstClockTime)r->dts;
  GST_BUFFER_DURATION(b) = (GstClockTime)r->duration;
  GST_BUFFER_OFFSET(b) = r->offset;
  GST_BUFFER_FLAGS(b) = r->flags;
  shlgst_record_write(at, r, b);
  gst_buffer_unref(b);
}

/* Records a peer with write access may write: rates and aspect ratios of
 * every sign and size, strings without their NUL or naming nothing,
 * colorimetry of numbers no table has (random bytes follow them). */
static const shlgst_record hostile_records[] = {
    {.duration = -1, .fps_n = 0, .fps_d = 0, .par_n = 0, .par_d = 0},
    {.duration = G_MAXINT64, .fps_n = G_MAXINT32, .fps_d = 1, .par_n = G_MAXINT32, .par_d = 1},
    {.duration = G_MININT64, .fps_n = 1, .fps_d = G_MAXINT32, .par_n = 1, .par_d = G_MAXINT32},
    {.duration = -2, .fps_n = -5, .fps_d = -1, .par_n = -1, .par_d = -1},
    {.fps_n = G_MININT32, .fps_d = G_MININT32, .par_n = G_MININT32, .par_d = 0},
    {.fps_n = 30, .fps_d = 1, .colorimetry = "zzzzzzzzzzzzzzzz", .chroma_site = "qqqqqqqqqqqqqqqq"},
    {.fps_n = 30, .fps_d = 1, .colorimetry = "bt2020", .chroma_site = "jpeg"},
    {.fps_n = 30, .fps_d = 1, .colorimetry = "99:99:99:99", .chroma_site = "v-cosited+none"},
    {.fps_n = 30, .fps_d = 1, .colorimetry = "-1:-1:-1:-1", .chroma_site = "alt-line"},
    {.fps_n = 30, .fps_d = 1, .colorimetry = "1:2147483647:0", .chroma_site = "h-cosited"},
};

/* Publishes GRAY8 64x32 frames into w, each with one of hostile_records,
 * then random records, and pulls each from h, whose last element is
 * shmlanesrc (`gray`: its frames are checked) or a converter to RGB after
 * it. Every frame comes, under caps GStreamer reads back as video. */
static void pull_hostile_records(shl_writer *w, GstHarness *h, gboolean gray) {
  GRand *rand = g_rand_new_with_seed(26);
  for (guint i = 0; i < G_N_ELEMENTS(hostile_records) + 200; i++) {
    void *frame = NULL;
    fail_unless(shl_writer_loan(w, &frame, GST_SECOND) >= 0);
    memset(frame, (int)(i & 0xff), 2048);
    guint8 *rec = shl_writer_meta(w);
    if (i < G_N_ELEMENTS(hostile_records))
      put_raw_record(rec, &hostile_records[i]);
    else
      for (gsize k = 0; k < sizeof(shlgst_record); k++) rec[k] = (guint8)g_rand_int(rand);
    fail_unless_equals_int(shl_writer_publish(w, NULL), 0);
    GstBuffer *b = gst_harness_pull(h);
    if (gray)
      check_frame(b, 2048, (guint8)(i & 0xff));
    else
      fail_unless(b && gst_buffer_get_size(b) == 64 * 32 * 3);
    gst_buffer_unref(b);
    GstCaps *c = gst_pad_get_current_caps(h->sinkpad);
    GstVideoInfo info;
    fail_unless(c && gst_video_info_from_caps(&info, c), "frame %u: caps %" GST_PTR_FORMAT, i, c);
    fail_unless(GST_VIDEO_INFO_WIDTH(&info) == 64 && GST_VIDEO_INFO_HEIGHT(&info) == 32);
    fail_unless(GST_VIDEO_INFO_FPS_N(&info) >= 0 && GST_VIDEO_INFO_FPS_D(&info) > 0);
    fail_unless(GST_VIDEO_INFO_PAR_N(&info) > 0 && GST_VIDEO_INFO_PAR_D(&info) > 0);
    gst_caps_unref(c);
  }
  g_rand_free(rand);
}

GST_START_TEST(test_hostile_record) {
  /* A peer with write access fills each frame's record with what it likes:
   * every frame still comes whole, nothing is read past the record (ASan),
   * and a converter downstream takes each caps the source sets. */
  gchar *name = stream_name("hrec");
  shl_writer *w = record_writer(name, 32, 64);
  GstHarness *src = src_harness(name, 1, FALSE, 1);
  pull_hostile_records(w, src, TRUE);
  gst_harness_teardown(src);
  gchar *d = g_strdup_printf("shmlanesrc stream=%s policy=all max-pinned=1 ! videoconvert ! "
                             "capsfilter caps=video/x-raw,format=RGB",
                             name);
  src = gst_harness_new_parse(d);
  g_free(d);
  gst_harness_play(src);
  wait_readers(name, 1);
  pull_hostile_records(w, src, FALSE);
  gst_harness_teardown(src);
  shl_writer_close(w);
  fail_unless_equals_int(shl_unlink(name), 0);
  g_free(name);
}
GST_END_TEST;

GST_START_TEST(test_hostile_timestamp) {
  /* A peer with write access stamps the newest frame a day in the future
   * before the source joins: its PTS is no later than the pipeline's time
   * when it is pushed (a sink that synchronises would wait for it). */
  gchar *name = stream_name("hstamp");
  shl_writer *w = gray_writer(name, 4);
  publish_fill(w, 3);
  peer_map m = peer_map_open(name);
  struct shl__slot *slot = (struct shl__slot *)(void *)((char *)m.ctl + sizeof *m.ctl);
  for (guint i = 0; i < m.ctl->slots; i++) slot[i].timestamp_ns += 24 * 3600 * GST_SECOND;
  GstHarness *src = gst_harness_new("shmlanesrc");
  g_object_set(src->element, "stream", name, NULL);
  gst_harness_use_systemclock(src);
  gst_harness_play(src);
  GstBuffer *b = gst_harness_pull(src);
  check_frame(b, 256, 3);
  GstClock *clock = gst_element_get_clock(src->element);
  GstClockTime now = gst_clock_get_time(clock) - gst_element_get_base_time(src->element);
  fail_unless(GST_BUFFER_PTS(b) <= now, "PTS %" GST_TIME_FORMAT " after the pipeline's %"
              GST_TIME_FORMAT, GST_TIME_ARGS(GST_BUFFER_PTS(b)), GST_TIME_ARGS(now));
  gst_object_unref(clock);
  gst_buffer_unref(b);
  end_peer_test(src, &m, w, name);
}
GST_END_TEST;

static Suite *shmlane_suite(void) {
  Suite *s = suite_create("shmlane-gst");
  TCase *tc = tcase_create("elements");
  tcase_set_timeout(tc, 60);
  suite_add_tcase(s, tc);
  tcase_add_test(tc, test_layout_roundtrip);
  tcase_add_test(tc, test_layout_conventions);
  tcase_add_test(tc, test_sink_zero_copy);
  tcase_add_test(tc, test_sink_copy_once);
  tcase_add_test(tc, test_sink_producers);
  tcase_add_test(tc, test_renegotiate);
  tcase_add_test(tc, test_writer_gone);
  tcase_add_test(tc, test_pin_limit);
  tcase_add_test(tc, test_state_changes);
  tcase_add_test(tc, test_sink_flush);
  tcase_add_test(tc, test_pool_reuse);
  tcase_add_test(tc, test_pool_shared_memory);
  tcase_add_test(tc, test_pool_timeout);
  tcase_add_test(tc, test_pool_writer_finish);
  tcase_add_test(tc, test_pool_flush);
  tcase_add_test(tc, test_pool_flush_while_loaning);
  tcase_add_test(tc, test_pool_renegotiate);
  tcase_add_test(tc, test_pool_states);
  tcase_add_test(tc, test_sink_last_sample);
  tcase_add_test(tc, test_sink_caps_while_flushing);
  tcase_add_test(tc, test_pool_caps_change_passthrough);
  tcase_add_test(tc, test_src_flush);
  tcase_add_test(tc, test_src_pipeline_seek);
  tcase_add_test(tc, test_timestamps);
  tcase_add_test(tc, test_sink_mode);
  tcase_add_test(tc, test_sink_takes_back_damaged_name);
  tcase_add_test(tc, test_properties_fixed_while_playing);
  tcase_add_test(tc, test_period);
  tcase_add_test(tc, test_src_caps_while_flushing);
  tcase_add_test(tc, test_src_bad_stream_after_flush);
  tcase_add_test(tc, test_src_caps_refused);
  tcase_add_test(tc, test_pin_limit_small_ring);
  tcase_add_test(tc, test_src_owner);
  tcase_add_test(tc, test_src_padded_rows);
  tcase_add_test(tc, test_meta_switched_after_join);
  tcase_add_test(tc, test_hostile_record);
  tcase_add_test(tc, test_hostile_timestamp);
  return s;
}

int main(int argc, char **argv) {
  run_pid = (int)getpid();
  gst_check_init(&argc, &argv);
  if (!gst_plugin_register_static(GST_VERSION_MAJOR, GST_VERSION_MINOR, "shmlane",
                                  "shmlane elements", shlgst_register_elements,
                                  SHL_VERSION_STRING, "MIT", "shmlane", "shmlane", "shmlane"))
    return 1;
  Suite *s = shmlane_suite();
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  /* Passing tests remove what they made: anything left is a failure too. */
  int left = remove_leftovers();
  return failed || left ? 1 : 0;
}
