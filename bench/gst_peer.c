/* One side of the GStreamer benchmark (bench/gst.py): runs a pipeline and
 * reports, as one JSON line on stdout, what it measured.
 *
 *   gst_peer send PIPELINE   the pipeline's element "sink" gets each buffer
 *                            stamped (CLOCK_MONOTONIC ns, then a counter, in
 *                            its first 16 bytes) as it enters the sink's
 *                            chain; runs until SIGINT or EOS
 *   gst_peer recv PIPELINE N the buffers leaving element "src" are read:
 *                            latency = now - stamp; stops after N
 *
 * Both report the frames they saw (total), and their CPU time and minor page
 * faults (getrusage) from their WARMUP-th frame on (not start-up) with the
 * frames since (frames); send reports the
 * buffers that reached the sink in its own memory (written in place, no
 * copy into shared memory), recv the frames it missed (counter gaps). */
#include <glib-unix.h>
#include <gst/gst.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#define WARMUP 10

typedef struct {
  GMainLoop *loop;
  guint64 frames, in_place, missed, last_count, limit;
  gint64 cpu_at_warmup, faults_at_warmup;
  GArray *latencies; /* gint64 ns, from the WARMUP-th frame on */
} peer;

static gint64 now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * (gint64)1000000000 + ts.tv_nsec;
}

static gint64 cpu_ns(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * (gint64)1000000000 +
         (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * (gint64)1000;
}

static gint64 minor_faults(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_minflt;
}

/* The WARMUP-th frame: what is counted starts here. */
static void warm(peer *p) {
  p->cpu_at_warmup = cpu_ns();
  p->faults_at_warmup = minor_faults();
}

/* Memory the sink itself handed upstream: shmlanesink's pool, shmsink's
 * allocator. Anything else is copied into shared memory by the sink. */
static gboolean sinks_own(GstBuffer *buf) {
  GstMemory *mem = gst_buffer_peek_memory(buf, 0);
  const char *pool = buf->pool ? G_OBJECT_TYPE_NAME(buf->pool) : "";
  const char *alloc = mem && mem->allocator ? G_OBJECT_TYPE_NAME(mem->allocator) : "";
  return strcmp(pool, "GstShmlanePool") == 0 || strcmp(alloc, "GstShmSinkAllocator") == 0;
}

static GstPadProbeReturn stamp(GstPad *pad, GstPadProbeInfo *info, gpointer data) {
  peer *p = data;
  GstBuffer *buf = GST_PAD_PROBE_INFO_BUFFER(info);
  GstMapInfo map;
  (void)pad;
  if (sinks_own(buf)) p->in_place++;
  if (gst_buffer_map(buf, &map, GST_MAP_WRITE)) {
    gint64 stamp[2] = {now_ns(), (gint64)++p->frames};
    memcpy(map.data, stamp, sizeof stamp);
    gst_buffer_unmap(buf, &map);
  }
  if (p->frames == WARMUP) warm(p);
  return GST_PAD_PROBE_OK;
}

static GstPadProbeReturn measure(GstPad *pad, GstPadProbeInfo *info, gpointer data) {
  peer *p = data;
  GstMapInfo map;
  gint64 stamp[2];
  (void)pad;
  if (!gst_buffer_map(GST_PAD_PROBE_INFO_BUFFER(info), &map, GST_MAP_READ)) return GST_PAD_PROBE_OK;
  memcpy(stamp, map.data, sizeof stamp);
  gst_buffer_unmap(GST_PAD_PROBE_INFO_BUFFER(info), &map);
  gint64 lat = now_ns() - stamp[0];
  if (p->last_count && (guint64)stamp[1] > p->last_count + 1)
    p->missed += (guint64)stamp[1] - p->last_count - 1;
  p->last_count = (guint64)stamp[1];
  if (++p->frames == WARMUP) warm(p);
  if (p->frames > WARMUP) g_array_append_val(p->latencies, lat);
  if (p->frames == p->limit) g_main_loop_quit(p->loop);
  return GST_PAD_PROBE_OK;
}

static gboolean on_bus(GstBus *bus, GstMessage *m, gpointer data) {
  peer *p = data;
  (void)bus;
  if (GST_MESSAGE_TYPE(m) == GST_MESSAGE_ERROR) {
    GError *e = NULL;
    gst_message_parse_error(m, &e, NULL);
    fprintf(stderr, "gst_peer: %s\n", e->message);
    g_error_free(e);
    g_main_loop_quit(p->loop);
  } else if (GST_MESSAGE_TYPE(m) == GST_MESSAGE_EOS) {
    g_main_loop_quit(p->loop);
  }
  return TRUE;
}

static gboolean on_signal(gpointer data) {
  g_main_loop_quit(((peer *)data)->loop);
  return G_SOURCE_REMOVE;
}

int main(int argc, char **argv) {
  gst_init(&argc, &argv);
  if (argc < 3 || (strcmp(argv[1], "send") && strcmp(argv[1], "recv"))) {
    fprintf(stderr, "usage: gst_peer send PIPELINE | gst_peer recv PIPELINE FRAMES\n");
    return 2;
  }
  gboolean send = strcmp(argv[1], "send") == 0;
  peer p = {.loop = g_main_loop_new(NULL, FALSE),
            .latencies = g_array_new(FALSE, FALSE, sizeof(gint64)),
            .limit = argc > 3 ? g_ascii_strtoull(argv[3], NULL, 10) : 0};
  GError *err = NULL;
  GstElement *pipe = gst_parse_launch(argv[2], &err);
  if (!pipe) {
    fprintf(stderr, "gst_peer: %s\n", err->message);
    return 2;
  }
  GstElement *e = gst_bin_get_by_name(GST_BIN(pipe), send ? "sink" : "src");
  GstPad *pad = gst_element_get_static_pad(e, send ? "sink" : "src");
  gst_pad_add_probe(pad, GST_PAD_PROBE_TYPE_BUFFER, send ? stamp : measure, &p, NULL);
  gst_bus_add_watch(GST_ELEMENT_BUS(pipe), on_bus, &p);
  g_unix_signal_add(SIGINT, on_signal, &p);
  g_unix_signal_add(SIGTERM, on_signal, &p);
  gst_element_set_state(pipe, GST_STATE_PLAYING);
  g_main_loop_run(p.loop);
  gint64 cpu = cpu_ns() - p.cpu_at_warmup, faults = minor_faults() - p.faults_at_warmup;
  printf("{\"total\": %" G_GUINT64_FORMAT ", \"frames\": %" G_GUINT64_FORMAT
         ", \"cpu_ns\": %" G_GINT64_FORMAT
         ", \"minflt\": %" G_GINT64_FORMAT ", \"in_place\": %" G_GUINT64_FORMAT
         ", \"missed\": %" G_GUINT64_FORMAT ", \"latency_ns\": [",
         p.frames, p.frames > WARMUP ? p.frames - WARMUP : 0, cpu, faults, p.in_place, p.missed);
  for (guint i = 0; i < p.latencies->len; i++)
    printf("%s%" G_GINT64_FORMAT, i ? ", " : "", g_array_index(p.latencies, gint64, i));
  printf("]}\n");
  fflush(stdout);
  gst_element_set_state(pipe, GST_STATE_NULL);
  gst_object_unref(pad);
  gst_object_unref(e);
  gst_object_unref(pipe);
  g_array_free(p.latencies, TRUE);
  g_main_loop_unref(p.loop);
  return 0;
}
