/* Peers for the bridge's tests and benchmark (tests/bridge/test_bridge.py,
 * bench/bridge.py).
 *
 *   bridge_peer [--image] write NAME COUNT FPS [SHAPE [MODE]]   frames "B" shaped SHAPE
 *                                              (H,W[,C][/ROW_STRIDE]; 32,24,3), metadata
 *                                              T{<Q:count:<d:value:}, mode MODE (octal, 0600);
 *                                              COUNT 0: until SIGTERM (then closes the writer);
 *                                              replaces another layout; --image: a smooth picture
 *   bridge_peer [--image] read NAME COUNT SECONDS   a reader (all): a JSON line per sample or
 *                                              event, with its error from what was written
 *                                              and the time it came (CLOCK_MONOTONIC, s)
 *   bridge_peer garbage ENDPOINT SECONDS [jpeg]   binds a ROUTER that sends malformed
 *                                              messages (jpeg: JPEG frames, most of them
 *                                              corrupt, with their layout)
 *   bridge_peer bench-write NAME SHAPE FPS SECONDS [noisy]   camera-like frames (precomputed;
 *                                              noisy: under sensor-like noise), the publish
 *                                              time in the metadata; FPS 0: flat out
 *   bridge_peer bench-read NAME SECONDS        frames/s and latency from that publish time
 *   bridge_peer codec-cost H,W camera|noisy LEVEL THREADS   zstd (row deltas) on (H, W, 3)
 *                                              frames through codec.c: one JSON line, the
 *                                              ratio and the median ms to code and decode
 *   bridge_peer raw-pub ENDPOINT BYTES FPS SECONDS   raw ZeroMQ PUB/SUB moving the same bytes
 *   bridge_peer raw-sub ENDPOINT BYTES SECONDS       (header and frame) for the benchmark
 *   bridge_peer corpus DIR ENDPOINT           fuzz/fuzz_wire.c's seeds: the messages a real
 *                                              sender at ENDPOINT sends a receiver, and those
 *                                              a receiver and libzmq's ZAP send the sender
 *   bridge_peer join ENDPOINT SECONDS          a plain receiver: counts the messages it gets
 *   bridge_peer flood ENDPOINT SECONDS         a hostile receiver: a 16 MiB message, then a
 *                                              flood of others (reconnecting when cut off)
 *   bridge_peer flaky-sub ENDPOINT PERIOD SECONDS    joins, reads nothing, leaves after
 *                                              PERIOD seconds, again and again
 * The bench-read and raw-sub print one JSON line: frames, fps, p50/p99 latency.
 * Exit status 0, or 1 with a message. */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "codec.h"
#include "shmlane.h"
#include "wire.h"

#define META "T{<Q:count:<d:value:}"

struct meta {
  uint64_t count;
  double value;
};

static volatile sig_atomic_t stop;
static void on_term(int sig) {
  (void)sig;
  stop = 1;
}

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int fail(const char *what, int rc) {
  fprintf(stderr, "bridge_peer: %s: %s\n", what, rc ? shl_strerror(rc) : "failed");
  return 1;
}

/* A context whose sockets drop what they could not deliver when closed: a
 * message a refused handshake never carried must not hold up the exit
 * (zmq_ctx_term waits for it forever by default). */
static void *context(void) {
  void *ctx = zmq_ctx_new();
  zmq_ctx_set(ctx, ZMQ_BLOCKY, 0);
  return ctx;
}

static bool image_mode; /* --image */

static uint8_t pattern(uint64_t count, uint64_t i) { return (uint8_t)(count * 31 + i * 7); }

/* --image: a triangle wave of slope 4 across and 3 down, its channels out of
 * phase, moving 24 levels a frame: smooth, so JPEG keeps it well, and unlike
 * the frames before and after it. */
static uint8_t image_value(uint64_t count, uint64_t y, uint64_t x, uint64_t c) {
  uint64_t v = (4 * x + 3 * y + 85 * c + 24 * count) % 512;
  return (uint8_t)(v < 256 ? v : 511 - v);
}

/* A frame's elements: (y, x, c) at y * sy + x * sx + c * sc. */
struct geom {
  uint64_t h, w, c;
  int64_t sy, sx, sc;
};

static struct geom geom_of(const shl_layout *l) {
  struct geom g = {l->shape[0], l->ndim > 1 ? l->shape[1] : 1, l->ndim > 2 ? l->shape[2] : 1,
                   l->strides[0], l->ndim > 1 ? l->strides[1] : 0, l->ndim > 2 ? l->strides[2] : 0};
  if (!g.sy && !g.sx && !g.sc) /* C order */
    g.sc = 1, g.sx = (int64_t)g.c, g.sy = (int64_t)(g.c * g.w);
  return g;
}

static uint8_t expected(const struct geom *g, uint64_t count, uint64_t y, uint64_t x, uint64_t c) {
  return image_mode ? image_value(count, y, x, c) : pattern(count, (y * g->w + x) * g->c + c);
}

static void fill(uint8_t *f, const struct geom *g, uint64_t count) {
  for (uint64_t y = 0; y < g->h; y++)
    for (uint64_t x = 0; x < g->w; x++)
      for (uint64_t c = 0; c < g->c; c++)
        f[y * g->sy + x * g->sx + c * g->sc] = expected(g, count, y, x, c);
}

/* Whether f is frame `count` exactly; its mean squared error from it, and from the next. */
static bool compare(const uint8_t *f, const struct geom *g, uint64_t count, double *mse,
                    double *mse_next) {
  double se = 0, se_next = 0, n = (double)(g->h * g->w * g->c);
  for (uint64_t y = 0; y < g->h; y++)
    for (uint64_t x = 0; x < g->w; x++)
      for (uint64_t c = 0; c < g->c; c++) {
        int v = f[y * g->sy + x * g->sx + c * g->sc], d = v - expected(g, count, y, x, c),
            d2 = v - expected(g, count + 1, y, x, c);
        se += d * d, se_next += d2 * d2;
      }
  *mse = n ? se / n : 0, *mse_next = n ? se_next / n : 0;
  return se == 0;
}

/* A stream of "B" frames shaped "H,W[,C][/ROW_STRIDE]" (32,24,3 for NULL)
 * with META, 8 slots, replacing one of another layout; its writer, the
 * bytes of its C-order frame, and how its elements lie. */
static int open_stream(const char *name, const char *shape, const char *mode, shl_writer **w,
                       uint64_t *bytes, struct geom *g) {
  shl_layout layout = {.format = "B", .ndim = 3, .shape = {32, 24, 3}};
  if (shape) {
    const char *p = shape;
    char *end;
    layout.ndim = 0;
    for (;;) {
      layout.shape[layout.ndim++] = strtoul(p, &end, 10);
      if (*end != ',' || layout.ndim == 3) break;
      p = end + 1;
    }
    if (*end == '/') { /* rows this far apart: pixels next to each other, rows padded */
      layout.strides[0] = (int64_t)strtoul(end + 1, &end, 10);
      layout.strides[1] = layout.ndim == 3 ? (int64_t)layout.shape[2] : 1;
      layout.strides[2] = layout.ndim == 3 ? 1 : 0;
    }
    if (*end || layout.ndim < 2) return fail("bad shape", 0);
  }
  shl_stream_opts so = SHL_STREAM_OPTS_INIT;
  so.slots = 8;
  so.mode = mode ? (uint32_t)strtoul(mode, NULL, 8) : 0;
  so.meta_format = META;
  so.flags = SHL_STREAM_REPLACE;
  int rc = shl_writer_open(w, name, &layout, &so);
  if (rc < 0) return fail("writer_open", rc);
  *g = geom_of(&layout);
  *bytes = g->h * g->w * g->c;
  return 0;
}

static int do_write(const char *name, long count, double fps, const char *shape, const char *mode) {
  shl_writer *w;
  uint64_t bytes;
  struct geom g;
  int rc;
  if (open_stream(name, shape, mode, &w, &bytes, &g)) return 1;
  uint64_t period = fps > 0 ? (uint64_t)(1e9 / fps) : 0, next = now_ns();
  printf("ready\n");
  fflush(stdout);
  for (long n = 1; !stop && (count == 0 || n <= count); n++) {
    void *frame;
    rc = shl_writer_loan(w, &frame, 1000000000);
    if (rc < 0) return fail("loan", rc);
    fill(frame, &g, (uint64_t)n);
    struct meta *m = shl_writer_meta(w);
    m->count = (uint64_t)n;
    m->value = (double)n / 2;
    if ((rc = shl_writer_publish(w, NULL)) < 0) return fail("publish", rc);
    if (period) {
      next += period;
      uint64_t t = now_ns();
      if (next > t) {
        struct timespec d = {(time_t)((next - t) / 1000000000u), (long)((next - t) % 1000000000u)};
        nanosleep(&d, NULL);
      }
    }
  }
  if (count) { /* stay, so that the stream's writer lives until told */
    while (!stop) pause();
  }
  shl_writer_close(w);
  return 0;
}

/* An `all` reader, waiting up to `seconds` for the stream. */
static int open_reader(const char *name, double seconds, shl_reader **r) {
  shl_reader_opts ro = SHL_READER_OPTS_INIT;
  ro.policy = SHL_RECV_ALL;
  ro.timeout_ns = (int64_t)(seconds * 1e9);
  return shl_reader_open_ex(r, name, &ro);
}

static int do_read(const char *name, long count, double seconds) {
  shl_reader *r;
  int rc = open_reader(name, seconds, &r);
  if (rc < 0) return fail("reader_open", rc);
  printf("{\"event\": \"open\"}\n");
  fflush(stdout);
  uint64_t deadline = now_ns() + (uint64_t)(seconds * 1e9);
  int last_event = 0;
  long got = 0;
  while (!stop && got < count && now_ns() < deadline) {
    shl_sample s;
    rc = shl_reader_receive(r, &s, 50000000, 0);
    if (rc == -ETIMEDOUT) continue;
    if (rc < 0) {
      if (rc != last_event) printf("{\"event\": \"%s\"}\n", shl_err_name(rc));
      fflush(stdout);
      last_event = rc;
      usleep(20000);
      continue;
    }
    last_event = 0;
    shl_layout layout;
    shl_get_layout(shl_reader_segment(r), &layout);
    const struct meta *m = shl_sample_meta(r, &s);
    struct geom g = geom_of(&layout);
    uint64_t bytes = layout.itemsize * g.h * g.w * g.c;
    double mse = 0, mse_next = 0;
    int meta_ok = m && m->value == (double)m->count / 2;
    int ok = m && compare(s.data, &g, m->count, &mse, &mse_next) && meta_ok;
    printf(
        "{\"seq\": %llu, \"lost\": %llu, \"count\": %llu, \"new\": %d, \"bytes\": %llu, "
        "\"ok\": %d, \"meta_ok\": %d, \"mse\": %.3f, \"mse_next\": %.3f, \"t\": %.4f}\n",
        (unsigned long long)s.seq, (unsigned long long)s.lost,
        (unsigned long long)(m ? m->count : 0), !!(s.flags & SHL_SAMPLE_NEW_STREAM),
        (unsigned long long)bytes, ok, meta_ok, mse, mse_next, (double)now_ns() / 1e9);
    fflush(stdout);
    shl_reader_release(r, &s);
    got++;
  }
  shl_reader_close(r);
  return 0;
}

/* A reader that keeps every frame it may (max_pinned) for `seconds`: with
 * a few of them, no slot is left for the writer. */
static int do_hoard(const char *name, double seconds) {
  shl_reader *r;
  int rc = open_reader(name, seconds, &r);
  if (rc < 0) return fail("reader_open", rc);
  shl_sample kept[SHL_STREAM_MAX_SLOTS];
  int n = 0;
  uint64_t deadline = now_ns() + (uint64_t)(seconds * 1e9);
  while (!stop && now_ns() < deadline)
    if (n == SHL_STREAM_MAX_SLOTS || shl_reader_receive(r, &kept[n], 20000000, 0) < 0)
      usleep(10000);
    else
      n++;
  while (n > 0) shl_reader_release(r, &kept[--n]);
  shl_reader_close(r);
  return 0;
}

/* The layout of what `garbage` sends: a (h, 24, comps) byte image. */
static struct wire_layout image_layout(uint64_t h, uint64_t comps) {
  struct wire_layout l = {.state = WIRE_LIVE, .slots = 4, .max_readers = 8, .ndim = 3};
  l.itemsize = 1, l.shape[0] = h, l.shape[1] = 24, l.shape[2] = comps;
  l.frame_bytes = h * 24 * comps;
  strcpy(l.format, "B"), strcpy(l.name, "garbage");
  return l;
}

/* A JPEG of an (h, 24, comps) image (a gradient) into out: its size. */
static size_t jpeg_of(struct codec *c, uint64_t h, uint64_t comps, uint8_t *out, size_t cap) {
  struct wire_layout l = image_layout(h, comps);
  uint8_t src[32 * 24 * 3];
  for (size_t i = 0; i < l.frame_bytes && i < sizeof src; i++) src[i] = (uint8_t)(i / 3 * 5);
  struct codec_plan p;
  char why[300];
  codec_plan(c, &l, &p, why, sizeof why);
  return codec_pack(c, &p, out, cap, src, l.frame_bytes);
}

/* A JPEG for a (16, 24, 3) image, most likely corrupt: cut short, a byte of its
 * coded data changed, its header's height or width beyond the layout's
 * (a decoder that believed it would write past the frame), an image of one
 * component or of more rows, random bytes; one in eight intact. */
static size_t hostile_jpeg(struct codec *c, uint8_t *out, size_t cap) {
  size_t len = jpeg_of(c, 16, 3, out, cap);
  switch (rand() % 8) {
  case 0: break;
  case 1: len = (size_t)rand() % len; break;
  case 2: out[len / 2 + (size_t)rand() % (len / 2)] ^= (uint8_t)(1 + rand() % 255); break;
  case 3:
  case 4: /* SOF0: FF C0, length (2), precision (1), height (2), width (2), big-endian */
    for (size_t i = 0; i + 9 < len; i++)
      if (out[i] == 0xFF && out[i + 1] == 0xC0) {
        out[i + (rand() % 2 ? 5 : 7)] = 1; /* + 256 */
        break;
      }
    break;
  case 5: len = jpeg_of(c, 16, 1, out, cap); break;
  case 6: len = jpeg_of(c, 32, 3, out, cap); break;
  default:
    for (size_t i = 0; i < len; i++) out[i] = (uint8_t)rand();
  }
  return len;
}

/* One JPEG frame of `garbage ... jpeg`, its layout riding along. */
static void send_hostile_jpeg(void *sock, const uint8_t *id, size_t id_len, struct codec *c,
                              uint64_t seq) {
  uint8_t head[WIRE_PREAMBLE + WIRE_FRAME_FIXED], layout[512], jpeg[16384];
  struct wire_preamble pre = {.type = WIRE_FRAME, .sender = 7, .gen = 1};
  struct wire_layout l = image_layout(16, 3);
  struct wire_frame f = {.seq = seq, .raw_bytes = l.frame_bytes, .codec = WIRE_JPEG};
  size_t head_len = wire_encode_frame(head, sizeof head, &pre, &f);
  pre.type = WIRE_LAYOUT;
  size_t layout_len = wire_encode_layout(layout, sizeof layout, &pre, &l);
  size_t jpeg_len = hostile_jpeg(c, jpeg, sizeof jpeg);
  zmq_send(sock, id, id_len, ZMQ_SNDMORE);
  zmq_send(sock, head, head_len, ZMQ_SNDMORE);
  zmq_send(sock, jpeg, jpeg_len, ZMQ_SNDMORE);
  zmq_send(sock, layout, layout_len, 0);
}

/* Random bytes, truncated and corrupted copies of real messages, wrong part
 * counts, to every receiver that sends a JOIN (a ROUTER, as the sender);
 * with `jpeg`, JPEG frames of hostile_jpeg's. */
static int do_garbage(const char *endpoint, double seconds, bool jpeg) {
  void *ctx = context(), *sock = zmq_socket(ctx, ZMQ_ROUTER);
  if (zmq_bind(sock, endpoint) != 0) return fail("bind", -errno);
  struct codec_opts jo = {.jpeg_quality = 85};
  struct codec *c = jpeg ? codec_new(&jo, NULL) : NULL;
  if (jpeg && !c) return fail("no JPEG in this build", 0);
  srand(1);
  uint8_t buf[512], id[256];
  int id_len = -1;
  uint64_t end = now_ns() + (uint64_t)(seconds * 1e9);
  long sent = 0;
  while (now_ns() < end) {
    int n = zmq_recv(sock, id, sizeof id, ZMQ_DONTWAIT); /* a JOIN: who to send to */
    if (n > 0 && n <= (int)sizeof id) {
      id_len = n;
      while (zmq_recv(sock, buf, sizeof buf, ZMQ_DONTWAIT) >= 0) continue; /* its body */
    }
    if (id_len < 0) {
      usleep(10000);
      continue;
    }
    if (jpeg) {
      send_hostile_jpeg(sock, id, (size_t)id_len, c, (uint64_t)++sent);
      usleep(200);
      continue;
    }
    size_t len = (size_t)(rand() % (int)sizeof buf);
    for (size_t i = 0; i < len; i++) buf[i] = (uint8_t)rand();
    if (len >= 8 && rand() % 2) { /* get past the magic and version */
      memcpy(buf, "SHLB", 4);
      buf[4] = WIRE_VERSION;
      buf[5] = (uint8_t)(1 + rand() % 3);
      uint64_t body = len - 32;
      if (len >= 32 && rand() % 2) memcpy(buf + 24, &body, 8);
    }
    zmq_send(sock, id, (size_t)id_len, ZMQ_SNDMORE);
    if (rand() % 3 == 0) { /* a real layout or frame, truncated or with a byte changed */
      struct wire_preamble pre = {.type = WIRE_LAYOUT, .sender = 7, .gen = 1};
      struct wire_layout l = image_layout(3, 1);
      struct wire_frame f = {
          .seq = (uint64_t)sent + 1, .raw_bytes = 72, .codec = (uint32_t)(rand() % 4)};
      bool layout = rand() % 2;
      if (layout) len = wire_encode_layout(buf, sizeof buf, &pre, &l);
      pre.type = WIRE_FRAME;
      if (!layout) len = wire_encode_frame(buf, sizeof buf, &pre, &f);
      if (rand() % 2)
        buf[rand() % (int)len] ^= (uint8_t)(1 + rand() % 255);
      else
        len = (size_t)(rand() % (int)len);
      zmq_send(sock, buf, len, layout ? 0 : ZMQ_SNDMORE);
      if (!layout) zmq_send(sock, buf, (size_t)(rand() % 128), 0); /* the frame's bytes */
      sent++;
      usleep(200);
      continue;
    }
    int parts = 1 + rand() % 3;
    for (int p = 0; p < parts; p++)
      zmq_send(sock, buf, p ? len / 2 : len, p + 1 < parts ? ZMQ_SNDMORE : 0);
    sent++;
    usleep(200);
  }
  printf("{\"sent\": %ld}\n", sent);
  codec_free(c);
  zmq_close(sock);
  zmq_ctx_term(ctx);
  return 0;
}

/* Frames like a camera's: a gradient with a bit of noise, so zstd has
 * something to do. It folds back at 255 as light does not (no edge from
 * white to black, which no camera sees and JPEG would smear). */
static uint8_t *camera_frames(size_t bytes, int n) {
  uint8_t *f = malloc(bytes * (size_t)n);
  uint32_t x = 12345;
  for (int k = 0; k < n; k++)
    for (size_t i = 0; i < bytes; i++) {
      x = x * 1103515245u + 12345u;
      size_t v = ((i / 3 % 640) / 3 + (i / 1920) / 4 + (size_t)k + (x >> 31)) % 510;
      f[(size_t)k * bytes + i] = (uint8_t)(v < 256 ? v : 509 - v);
    }
  return f;
}

/* Frames more like a real camera's: smooth shapes (triangle waves, blocks
 * of other brightness) under sensor noise of about 2 levels (standard
 * deviation), which no lossless coder can drop. (h, w, 3), C order. */
static uint8_t *noisy_frames(uint64_t h, uint64_t w, int n) {
  uint8_t *f = malloc(h * w * 3 * (size_t)n), *p = f;
  uint32_t x = 777;
  for (int k = 0; k < n; k++)
    for (uint64_t y = 0; y < h; y++)
      for (uint64_t i = 0; i < w; i++)
        for (uint64_t c = 0; c < 3; c++) {
          uint64_t t = (3 * i + 2 * y + 90 * c + 5 * (uint64_t)k) % 512;
          int v = (int)(t < 256 ? t : 511 - t) / 2 + 40 * (int)((i / 97 + y / 61) % 3) + 30;
          for (int j = 0; j < 4; j++) { /* four uniform 0..3: mean 6, sd 2.2 */
            x = x * 1103515245u + 12345u;
            v += (int)(x >> 30);
          }
          v -= 6;
          *p++ = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
        }
  return f;
}

static double cpu_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* What --zstd=LEVEL --zstd-threads THREADS costs on (h, w, 3) frames, as the
 * bridge codes them (codec.c: row deltas, zstd): 12 frames, each coded and
 * decoded; the ratio, the median wall-clock ms of each, and the CPU time
 * of both (all threads) per frame. */
static int do_codec_cost(const char *shape, const char *kind, int level, int threads) {
  enum { FRAMES = 4, REPS = 12 };
  struct wire_layout l = {.ndim = 3, .itemsize = 1, .format = "B"};
  if (sscanf(shape, "%" SCNu64 ",%" SCNu64, &l.shape[0], &l.shape[1]) != 2)
    return fail("bad shape", 0);
  l.shape[2] = 3;
  size_t n = l.frame_bytes = l.shape[0] * l.shape[1] * 3;
  uint8_t *frames = !strcmp(kind, "noisy") ? noisy_frames(l.shape[0], l.shape[1], FRAMES)
                                           : camera_frames(n, FRAMES);
  struct codec_opts o = {.zstd_level = level, .zstd_threads = threads, .delta = -1};
  struct codec *tx = codec_new(&o, NULL), *rx = codec_new(NULL, NULL);
  struct codec_plan plan;
  char why[512];
  if (!tx || !rx || codec_plan(tx, &l, &plan, why, sizeof why) < 0) return fail("codec", 0);
  size_t cap = codec_bound(&plan, n), coded = 0;
  uint8_t *z = malloc(cap), *back = malloc(n);
  double code[REPS], decode[REPS], cpu0 = cpu_s();
  for (int r = 0; r < REPS; r++) {
    const uint8_t *src = frames + (size_t)(r % FRAMES) * n;
    uint64_t t0 = now_ns();
    size_t len = codec_pack(tx, &plan, z, cap, src, n);
    uint64_t t1 = now_ns();
    if (!len || codec_unpack(rx, &l, plan.codec, back, z, len) || memcmp(back, src, n))
      return fail("a frame does not come back", 0);
    code[r] = (double)(t1 - t0) / 1e6, decode[r] = (double)(now_ns() - t1) / 1e6;
    coded += len;
  }
  double cpu = (cpu_s() - cpu0) * 1e3 / REPS;
  qsort(code, REPS, sizeof *code, cmp_double);
  qsort(decode, REPS, sizeof *decode, cmp_double);
  printf(
      "{\"codec\": \"%s\", \"ratio\": %.3f, \"code_ms\": %.2f, \"decode_ms\": %.2f, "
      "\"cpu_ms\": %.2f}\n",
      codec_name(&plan), (double)n * REPS / (double)coded, code[REPS / 2], decode[REPS / 2], cpu);
  codec_free(tx), codec_free(rx);
  free(frames), free(z), free(back);
  return 0;
}

static void sleep_until(uint64_t t) {
  uint64_t n = now_ns();
  if (t <= n) return;
  struct timespec d = {(time_t)((t - n) / 1000000000u), (long)((t - n) % 1000000000u)};
  nanosleep(&d, NULL);
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

/* mse: the frames' mean squared error from what was written (-1: not measured). */
static void print_result(uint64_t *lat, long got, uint64_t first, uint64_t last, uint64_t lost,
                         double mse) {
  qsort(lat, (size_t)got, sizeof *lat, cmp_u64);
  printf("{\"frames\": %ld, \"fps\": %.1f, \"p50_ms\": %.3f, \"p99_ms\": %.3f, \"lost\": %llu, "
         "\"mse\": %.4f}\n",
         got, got > 1 ? (double)(got - 1) * 1e9 / (double)(last - first) : 0.0,
         got ? (double)lat[got / 2] / 1e6 : 0.0, got ? (double)lat[got * 99 / 100] / 1e6 : 0.0,
         (unsigned long long)lost, mse);
}

enum { MAX_SAMPLES = 1 << 20 };

static int do_bench_write(const char *name, const char *shape, double fps, double seconds,
                          bool noisy) {
  shl_writer *w;
  uint64_t bytes;
  struct geom g;
  int rc;
  if (open_stream(name, shape, NULL, &w, &bytes, &g)) return 1;
  if (noisy && g.c != 3) return fail("noisy frames are (H, W, 3)", 0);
  uint8_t *frames = noisy ? noisy_frames(g.h, g.w, 4) : camera_frames(bytes, 4);
  uint64_t start = now_ns(), end = start + (uint64_t)(seconds * 1e9), next = start;
  for (uint64_t n = 1; !stop && now_ns() < end; n++) {
    void *frame;
    if ((rc = shl_writer_loan(w, &frame, 1000000000)) < 0) return fail("loan", rc);
    memcpy(frame, frames + (n % 4) * bytes, bytes);
    struct meta *m = shl_writer_meta(w);
    m->count = n;
    m->value = (double)now_ns();
    shl_writer_publish(w, NULL);
    if (fps > 0) sleep_until(next += (uint64_t)(1e9 / fps));
  }
  shl_writer_close(w);
  free(frames);
  return 0;
}

/* With `mse`, every 8th frame (after its time is taken) is compared with
 * the camera frame it was: their mean squared error. */
static int do_bench_read(const char *name, double seconds, bool mse) {
  shl_reader *r;
  int rc = open_reader(name, seconds, &r);
  if (rc < 0) return fail("reader_open", rc);
  uint64_t *lat = malloc(MAX_SAMPLES * sizeof *lat), first = 0, last = 0, lost = 0;
  uint64_t end = now_ns() + (uint64_t)(seconds * 1e9);
  shl_layout layout;
  shl_get_layout(shl_reader_segment(r), &layout);
  uint64_t bytes = mse ? wire_frame_bytes(&layout) : 0;
  uint8_t *frames = bytes ? camera_frames(bytes, 4) : NULL;
  double se = 0, compared = 0;
  long got = 0;
  while (!stop && now_ns() < end && got < MAX_SAMPLES) {
    shl_sample s;
    rc = shl_reader_receive(r, &s, 50000000, 0);
    if (rc < 0) continue;
    const struct meta *m = shl_sample_meta(r, &s);
    last = now_ns();
    if (!got)
      first = last;
    else
      lost += s.lost;
    lat[got++] = last - (uint64_t)m->value;
    for (uint64_t i = 0; frames && got % 8 == 0 && i < bytes; i++) {
      int d = ((const uint8_t *)s.data)[i] - frames[m->count % 4 * bytes + i];
      se += d * d, compared += 1;
    }
    shl_reader_release(r, &s);
  }
  free(frames);
  print_result(lat, got, first, last, lost, compared ? se / compared : -1);
  free(lat);
  shl_reader_close(r);
  return 0;
}

/* The same bytes as a bridge frame: a 72-byte header (the bridge's preamble
 * and frame fields) and the frame, sent from the publisher's memory without
 * a copy, copied once out of the message at the subscriber (as the bridge
 * copies into a slot). */
static int do_raw(bool pub, const char *endpoint, size_t bytes, double fps, double seconds) {
  void *ctx = context(), *s = zmq_socket(ctx, pub ? ZMQ_PUB : ZMQ_SUB);
  int hwm = 4;
  zmq_setsockopt(s, pub ? ZMQ_SNDHWM : ZMQ_RCVHWM, &hwm, sizeof hwm);
  uint8_t *frames = pub ? camera_frames(bytes, 4) : malloc(bytes);
  uint64_t head[9] = {0};
  if (pub) {
    if (zmq_bind(s, endpoint) != 0) return fail("bind", -errno);
    uint64_t start = now_ns(), end = start + (uint64_t)(seconds * 1e9), next = start;
    for (uint64_t n = 1; !stop && now_ns() < end; n++) {
      head[0] = now_ns();
      head[1] = n;
      zmq_msg_t m;
      zmq_msg_init_data(&m, frames + (n % 4) * bytes, bytes, NULL, NULL);
      zmq_send(s, head, sizeof head, ZMQ_SNDMORE);
      zmq_msg_send(&m, s, 0);
      if (fps > 0) sleep_until(next += (uint64_t)(1e9 / fps));
    }
  } else {
    zmq_setsockopt(s, ZMQ_SUBSCRIBE, "", 0);
    if (zmq_connect(s, endpoint) != 0) return fail("connect", -errno);
    int timeout = 200;
    zmq_setsockopt(s, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
    uint64_t *lat = malloc(MAX_SAMPLES * sizeof *lat), first = 0, last = 0, lost = 0, prev = 0;
    uint64_t end = now_ns() + (uint64_t)(seconds * 1e9);
    long got = 0;
    while (!stop && now_ns() < end && got < MAX_SAMPLES) {
      if (zmq_recv(s, head, sizeof head, 0) < 0) continue;
      zmq_msg_t m;
      zmq_msg_init(&m);
      zmq_msg_recv(&m, s, 0);
      memcpy(frames, zmq_msg_data(&m), zmq_msg_size(&m) < bytes ? zmq_msg_size(&m) : bytes);
      zmq_msg_close(&m);
      last = now_ns();
      if (!got)
        first = last;
      else
        lost += head[1] - prev - 1;
      prev = head[1];
      lat[got++] = last - head[0];
    }
    print_result(lat, got, first, last, lost, -1);
    free(lat);
  }
  free(frames);
  zmq_close(s);
  zmq_ctx_term(ctx);
  return 0;
}

/* A hostile receiver: a 16 MiB message, then a flood of others (JOINs
 * with new ids, and junk), reconnecting whenever the sender cuts it off. */
static int do_flood(const char *endpoint, double seconds) {
  void *ctx = context(), *s = zmq_socket(ctx, ZMQ_DEALER);
  int ivl = 50, hwm = 100000, zero = 0;
  zmq_setsockopt(s, ZMQ_RECONNECT_IVL, &ivl, sizeof ivl);
  zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
  zmq_setsockopt(s, ZMQ_SNDHWM, &hwm, sizeof hwm);
  if (zmq_connect(s, endpoint) != 0) return fail("connect", -errno);
  size_t big = 16u << 20;
  uint8_t *msg = calloc(1, big);
  zmq_send(s, msg, big, 0);
  uint64_t end = now_ns() + (uint64_t)(seconds * 1e9);
  long sent = 0;
  while (!stop && now_ns() < end) {
    size_t len = wire_encode_join(msg, 64, (uint64_t)sent);
    if (sent % 3 == 0) len = 1 + (size_t)(sent % 1000) * 64; /* junk of many sizes */
    if (zmq_send(s, msg, len, ZMQ_DONTWAIT) >= 0) sent++;
    if (sent % 100 == 0) usleep(1000);
  }
  printf("{\"sent\": %ld}\n", sent);
  free(msg);
  zmq_close(s);
  zmq_ctx_term(ctx);
  return 0;
}

/* A plain receiver (a DEALER sending JOIN once a second): the messages it
 * got, as another user would try. */
static int do_join(const char *endpoint, double seconds) {
  void *ctx = context(), *s = zmq_socket(ctx, ZMQ_DEALER);
  int timeout = 100;
  zmq_setsockopt(s, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
  if (zmq_connect(s, endpoint) != 0) return fail("connect", -errno);
  uint8_t buf[256];
  uint64_t end = now_ns() + (uint64_t)(seconds * 1e9), next_join = 0;
  long messages = 0;
  while (!stop && now_ns() < end) {
    if (now_ns() >= next_join) {
      zmq_send(s, buf, wire_encode_join(buf, sizeof buf, 42), ZMQ_DONTWAIT);
      next_join = now_ns() + 1000000000u;
    }
    if (zmq_recv(s, buf, sizeof buf, 0) >= 0) messages++;
  }
  printf("{\"messages\": %ld}\n", messages);
  zmq_close(s);
  zmq_ctx_term(ctx);
  return 0;
}

/* One seed of fuzz/fuzz_wire.c: the path byte, then each part as a 2-byte
 * little-endian length and its bytes. */
static int put_seed(const char *dir, const char *file, uint8_t path, int n,
                    const void *const *parts, const size_t *sizes) {
  char name[4096];
  snprintf(name, sizeof name, "%s/%s", dir, file);
  FILE *f = fopen(name, "wb");
  if (!f) return fail(name, -errno);
  fputc(path, f);
  for (int i = 0; i < n; i++) {
    uint8_t len[2] = {(uint8_t)sizes[i], (uint8_t)(sizes[i] >> 8)};
    fwrite(len, 1, 2, f);
    fwrite(parts[i], 1, sizes[i], f);
  }
  return fclose(f) != 0;
}

/* Joins a real sender (run with --zstd or without) and records what it
 * sends: a layout, a frame, a frame with the layout along. */
static int do_corpus(const char *dir, const char *endpoint) {
  void *ctx = context(), *s = zmq_socket(ctx, ZMQ_DEALER);
  int timeout = 3000;
  zmq_setsockopt(s, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
  if (zmq_connect(s, endpoint) != 0) return fail("connect", -errno);
  uint8_t join[WIRE_PREAMBLE];
  size_t join_len = wire_encode_join(join, sizeof join, 42);
  const void *jp[1] = {join};
  if (put_seed(dir, "join", 1, 1, jp, &join_len)) return 1;
  zmq_send(s, join, join_len, 0);
  bool got[4] = {0};
  for (int tries = 0; tries < 200 && !(got[1] && got[2] && got[3]); tries++) {
    zmq_msg_t m[3];
    int n = 0;
    for (bool more = true; more && n < 3; n++) {
      zmq_msg_init(&m[n]);
      if (zmq_msg_recv(&m[n], s, 0) < 0) return fail("no message from the sender", 0);
      more = zmq_msg_more(&m[n]);
    }
    const void *parts[3];
    size_t sizes[3];
    for (int i = 0; i < n; i++) parts[i] = zmq_msg_data(&m[i]), sizes[i] = zmq_msg_size(&m[i]);
    static const char *const names[4] = {"", "layout", "frame", "frame-with-layout"};
    bool fits = sizes[n - 1] < 65536 && (n < 2 || sizes[1] < 65536);
    if (fits && !got[n]) {
      got[n] = true;
      if (put_seed(dir, names[n], 0, n, parts, sizes)) return 1;
    }
    for (int i = 0; i < n; i++) zmq_msg_close(&m[i]);
  }
  /* ZAP requests as libzmq makes them: over ipc (peer credentials in the
   * address) without keys, and over TCP with a CURVE key. */
  uint8_t key[32];
  for (int i = 0; i < 32; i++) key[i] = (uint8_t)(i * 7);
  const void *ipc[6] = {"1.0", "1", "shmlane", "localhost:65534:65534:4781", "", "NULL"};
  const void *tcp[7] = {"1.0", "2", "shmlane", "198.51.100.2", "", "CURVE", key};
  size_t ipc_sizes[6], tcp_sizes[7];
  for (int i = 0; i < 6; i++) ipc_sizes[i] = strlen(ipc[i]);
  for (int i = 0; i < 6; i++) tcp_sizes[i] = strlen(tcp[i]);
  tcp_sizes[6] = 32;
  if (put_seed(dir, "zap-ipc", 2, 6, ipc, ipc_sizes) || put_seed(dir, "zap-curve", 2, 7, tcp, tcp_sizes))
    return 1;
  zmq_close(s);
  zmq_ctx_term(ctx);
  return got[1] && got[2] && got[3] ? 0 : fail("not every kind of message came", 0);
}

/* A receiver that never reads and leaves after `period`, again and again. */
static int do_flaky_sub(const char *endpoint, double period, double seconds) {
  void *ctx = context();
  uint64_t end = now_ns() + (uint64_t)(seconds * 1e9);
  int rounds = 0, hwm = 4, zero = 0;
  while (!stop && now_ns() < end) {
    void *s = zmq_socket(ctx, ZMQ_DEALER);
    zmq_setsockopt(s, ZMQ_RCVHWM, &hwm, sizeof hwm);
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
    if (zmq_connect(s, endpoint) != 0) return fail("connect", -errno);
    uint8_t join[WIRE_PREAMBLE];
    zmq_send(s, join, wire_encode_join(join, sizeof join, (uint64_t)rounds + 1), 0);
    sleep_until(now_ns() + (uint64_t)(period * 1e9));
    zmq_close(s);
    rounds++;
  }
  printf("{\"rounds\": %d}\n", rounds);
  zmq_ctx_term(ctx);
  return 0;
}

int main(int argc, char **argv) {
  struct sigaction sa = {.sa_handler = on_term};
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  if (argc > 1 && !strcmp(argv[1], "--image")) image_mode = true, argc--, argv++;
  if (argc >= 5 && !strcmp(argv[1], "write"))
    return do_write(argv[2], atol(argv[3]), atof(argv[4]), argc > 5 ? argv[5] : NULL,
                    argc > 6 ? argv[6] : NULL);
  if (argc == 4 && !strcmp(argv[1], "corpus")) return do_corpus(argv[2], argv[3]);
  if (argc == 4 && !strcmp(argv[1], "join")) return do_join(argv[2], atof(argv[3]));
  if (argc == 4 && !strcmp(argv[1], "flood")) return do_flood(argv[2], atof(argv[3]));
  if (argc == 5 && !strcmp(argv[1], "flaky-sub"))
    return do_flaky_sub(argv[2], atof(argv[3]), atof(argv[4]));
  if (argc == 5 && !strcmp(argv[1], "read")) return do_read(argv[2], atol(argv[3]), atof(argv[4]));
  if (argc == 4 && !strcmp(argv[1], "hoard")) return do_hoard(argv[2], atof(argv[3]));
  if ((argc == 4 || argc == 5) && !strcmp(argv[1], "garbage"))
    return do_garbage(argv[2], atof(argv[3]), argc == 5 && !strcmp(argv[4], "jpeg"));
  if ((argc == 6 || argc == 7) && !strcmp(argv[1], "bench-write"))
    return do_bench_write(argv[2], argv[3], atof(argv[4]), atof(argv[5]),
                          argc == 7 && !strcmp(argv[6], "noisy"));
  if (argc == 6 && !strcmp(argv[1], "codec-cost"))
    return do_codec_cost(argv[2], argv[3], atoi(argv[4]), atoi(argv[5]));
  if ((argc == 4 || argc == 5) && !strcmp(argv[1], "bench-read"))
    return do_bench_read(argv[2], atof(argv[3]), argc == 5 && !strcmp(argv[4], "mse"));
  if (argc == 6 && !strcmp(argv[1], "raw-pub"))
    return do_raw(true, argv[2], (size_t)atol(argv[3]), atof(argv[4]), atof(argv[5]));
  if (argc == 5 && !strcmp(argv[1], "raw-sub"))
    return do_raw(false, argv[2], (size_t)atol(argv[3]), 0, atof(argv[4]));
  fprintf(stderr, "usage: see tests/bridge/bridge_peer.c\n");
  return 2;
}
