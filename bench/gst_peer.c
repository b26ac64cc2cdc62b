/* One side of the GStreamer benchmark (bench/gst.py): runs a pipeline and
 * reports, as one JSON line on stdout, what it measured.
 *
 *   gst_peer send PIPELINE   the pipeline's element "sink" gets each buffer
 *                            stamped (CLOCK_MONOTONIC ns, then a counter, in
 *                            its first 16 bytes) as it enters the sink's
 *                            chain; runs until SIGINT or EOS
 *   gst_peer recv PIPELINE N [SENDER_PID]
 *                            the buffers leaving element "src" are read:
 *                            latency = now - stamp; stops after N
 *
 * Both report the frames they saw (total), and their CPU time and minor page
 * faults (getrusage) from their WARMUP-th frame on (not start-up) with the
 * frames since (frames); send reports the
 * buffers that reached the sink in its own memory (written in place, no
 * copy into shared memory), recv the frames it missed (counter gaps).
 *
 * The receiver's window: given the sender's pid, recv sends it SIGUSR1 at its
 * own WARMUP-th frame and SIGUSR2 at its last; send then also reports its CPU
 * time, faults and frames between the two (window_*), taken at the first
 * frame after each signal, and when (window_ns, CLOCK_MONOTONIC). A sink
 * runs before its reader comes and after it leaves, flat out too; its
 * figures per frame are those of the window. */
#include <glib-unix.h>
#include <gst/gst.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#define WARMUP 10

typedef struct {
  GMainLoop *loop;
  guint64 frames, in_place, missed, last_count, limit;
  gint64 cpu_at_warmup, faults_at_warmup;
  GArray *latencies;   /* gint64 ns, from the WARMUP-th frame on */
  int window_seen;     /* send: the last window signal acted on (0, 1, 2) */
  gint64 window[2][4]; /* send: cpu, faults, frames, time at its start, end */
  pid_t sender;        /* recv: where the window signals go (0: nowhere) */
} peer;

static volatile sig_atomic_t window_signal; /* send: 1 after SIGUSR1, 2 after SIGUSR2 */

static void on_window_signal(int sig) { window_signal = sig == SIGUSR1 ? 1 : 2; }

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
  int w = window_signal;
  if (w == p->window_seen + 1) { /* in this thread: the frame counter is this thread's */
    gint64 *at = p->window[w - 1];
    at[0] = cpu_ns(), at[1] = minor_faults(), at[2] = (gint64)p->frames, at[3] = now_ns();
    p->window_seen = w;
  }
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
  if (p->sender && (p->frames == WARMUP || p->frames == p->limit))
    kill(p->sender, p->frames == WARMUP ? SIGUSR1 : SIGUSR2);
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
    fprintf(stderr, "usage: gst_peer send PIPELINE | gst_peer recv PIPELINE FRAMES [SENDER_PID]\n");
    return 2;
  }
  gboolean send = strcmp(argv[1], "send") == 0;
  peer p = {.loop = g_main_loop_new(NULL, FALSE),
            .latencies = g_array_new(FALSE, FALSE, sizeof(gint64)),
            .limit = argc > 3 ? g_ascii_strtoull(argv[3], NULL, 10) : 0,
            .sender = argc > 4 ? (pid_t)g_ascii_strtoll(argv[4], NULL, 10) : 0};
  if (send) {
    struct sigaction sa = {.sa_handler = on_window_signal, .sa_flags = SA_RESTART};
    sigaction(SIGUSR1, &sa, NULL);
    sigaction(SIGUSR2, &sa, NULL);
  }
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
         ", \"cpu_ns\": %" G_GINT64_FORMAT ", \"minflt\": %" G_GINT64_FORMAT
         ", \"in_place\": %" G_GUINT64_FORMAT ", \"missed\": %" G_GUINT64_FORMAT,
         p.frames, p.frames > WARMUP ? p.frames - WARMUP : 0, cpu, faults, p.in_place, p.missed);
  if (p.window_seen == 2)
    printf(", \"window_cpu_ns\": %" G_GINT64_FORMAT ", \"window_minflt\": %" G_GINT64_FORMAT
           ", \"window_frames\": %" G_GINT64_FORMAT ", \"window_ns\": [%" G_GINT64_FORMAT
           ", %" G_GINT64_FORMAT "]",
           p.window[1][0] - p.window[0][0], p.window[1][1] - p.window[0][1],
           p.window[1][2] - p.window[0][2], p.window[0][3], p.window[1][3]);
  printf(", \"latency_ns\": [");
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
