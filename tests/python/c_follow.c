/* A C writer and a C reader of a stream whose layout changes, for
 * test_stream_follow.py. Built by conftest.py against the core; public API
 * only.
 *
 *   c_follow write|write-live NAME FRAMES READERS
 *       For each layout of LAYOUTS in turn: open the writer (replacing the
 *       stream of the previous layout), wait until READERS readers are on
 *       it, publish FRAMES frames, close. write-live keeps one writer that
 *       replaces its own stream (shl_writer_replace). Frame n (numbers go
 *       on across the layouts) has every element equal to n (modulo its
 *       size) and its metadata record says n. Prints "done LAST_SEQ".
 *   c_follow read NAME TOTAL
 *       Receive (policy "all") until frame TOTAL, following the stream to
 *       each new layout; check every frame against its metadata and its
 *       layout. Prints "frames N lost L bad B moves M gone G shapes S1;S2;...",
 *       G counting the times it found the writer gone.
 */
#include <errno.h>
#include <shmlane.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SECOND 1000000000LL
#define META_FORMAT "T{<Q:frame:<Q:layout:<I:width:<I:height:}"

struct meta {
  uint64_t frame;
  uint64_t layout;
  uint32_t width, height;
};

/* The same four layouts as LAYOUTS in test_stream_follow.py. */
static const struct {
  const char *format;
  uint32_t ndim;
  uint64_t shape[3];
  uint32_t slots;
} LAYOUTS[] = {
    {"B", 3, {48, 64, 3}, 4},
    {"B", 3, {24, 32, 3}, 6},
    {"<H", 2, {30, 40, 0}, 4},
    {"B", 3, {48, 64, 3}, 8},
};
#define NLAYOUTS (sizeof LAYOUTS / sizeof LAYOUTS[0])

static void check(int rc, const char *what) {
  if (rc < 0) {
    fprintf(stderr, "c_follow: %s: %s (%s)\n", what, shl_strerror(rc), shl_err_name(rc));
    exit(1);
  }
}

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * SECOND + ts.tv_nsec;
}

static uint64_t elements(const shl_layout *l) {
  uint64_t n = 1;
  for (uint32_t i = 0; i < l->ndim; i++) n *= l->shape[i];
  return n;
}

/* Every element of a C-contiguous frame equal to seq, modulo its size. */
static void paint(void *frame, const shl_layout *l, uint64_t seq) {
  for (uint64_t i = 0, n = elements(l); i < n; i++) {
    if (l->itemsize == 1)
      ((uint8_t *)frame)[i] = (uint8_t)seq;
    else
      ((uint16_t *)frame)[i] = (uint16_t)seq;
  }
}

static int painted(const void *frame, const shl_layout *l, uint64_t seq) {
  for (uint64_t i = 0, n = elements(l); i < n; i++) {
    uint64_t v = l->itemsize == 1 ? ((const uint8_t *)frame)[i] : ((const uint16_t *)frame)[i];
    if (v != (l->itemsize == 1 ? (uint8_t)seq : (uint16_t)seq)) return 0;
  }
  return 1;
}

static int write_layouts(const char *name, uint64_t frames, uint32_t readers, int live) {
  uint64_t seq = 0;
  shl_writer *w = NULL;
  for (size_t k = 0; k < NLAYOUTS; k++) {
    shl_layout l = {.format = LAYOUTS[k].format, .ndim = LAYOUTS[k].ndim};
    memcpy(l.shape, LAYOUTS[k].shape, sizeof LAYOUTS[k].shape);
    shl_stream_opts o = SHL_STREAM_OPTS_INIT;
    o.slots = LAYOUTS[k].slots;
    o.flags = SHL_STREAM_BLOCK | SHL_STREAM_REPLACE;
    o.meta_format = META_FORMAT;
    if (w)
      check(shl_writer_replace(&w, &l, &o), "writer replace");
    else
      check(shl_writer_open(&w, name, &l, &o), "writer open");
    shl_get_layout(shl_writer_segment(w), &l);
    /* Readers register on a new stream when they follow: frames published
     * before that are not theirs to wait for. */
    for (int64_t until = now_ns() + 20 * SECOND;;) {
      shl_stream_info info = SHL_STREAM_INFO_INIT;
      check(shl_stream_get_info(shl_writer_segment(w), &info), "stream info");
      if (info.readers_alive >= readers) break;
      if (now_ns() > until) check(-ETIMEDOUT, "waiting for the readers");
      struct timespec pause = {0, 1000000};
      nanosleep(&pause, NULL);
    }
    for (uint64_t i = 0; i < frames; i++) {
      void *frame;
      check(shl_writer_loan(w, &frame, 10 * SECOND), "loan");
      seq = shl_writer_next_seq(w);
      paint(frame, &l, seq);
      struct meta *m = shl_writer_meta(w);
      *m = (struct meta){seq, k, (uint32_t)l.shape[1], (uint32_t)l.shape[0]};
      check(shl_writer_publish(w, NULL), "publish");
    }
    if (!live) {
      shl_writer_close(w);
      w = NULL;
    }
  }
  shl_writer_close(w);
  printf("done %llu\n", (unsigned long long)seq);
  return 0;
}

static int read_layouts(const char *name, uint64_t total) {
  shl_reader_opts o = SHL_READER_OPTS_INIT;
  o.policy = SHL_RECV_ALL;
  o.timeout_ns = 20 * SECOND;
  shl_reader *r;
  check(shl_reader_open_ex(&r, name, &o), "reader open");
  uint64_t frames = 0, lost = 0, bad = 0, moves = 0, gone = 0, last = 0;
  char shapes[256] = "";
  int64_t until = now_ns() + 60 * SECOND;
  while (last < total && now_ns() < until) {
    shl_sample s;
    int rc = shl_reader_receive(r, &s, SECOND, 0);
    /* Between one writer's close and the next one's replacement. */
    if (rc == SHL_E_WRITER_CLOSED || rc == SHL_E_WRITER_GONE) gone++;
    if (rc == -ETIMEDOUT || rc == SHL_E_WRITER_CLOSED || rc == SHL_E_WRITER_GONE) continue;
    check(rc, "receive");
    shl_layout l;
    shl_get_layout(shl_reader_segment(r), &l);
    const struct meta *m = shl_sample_meta(r, &s);
    if (s.flags & SHL_SAMPLE_NEW_STREAM) moves++;
    if (s.flags & SHL_SAMPLE_NEW_STREAM || frames == 0) {
      size_t at = strlen(shapes);
      snprintf(shapes + at, sizeof shapes - at, "%s%llux%llu", at ? ";" : "",
               (unsigned long long)l.shape[0], (unsigned long long)l.shape[1]);
    }
    frames++;
    lost += s.lost;
    if (!m || m->frame != s.seq || m->height != l.shape[0] || m->width != l.shape[1] ||
        !painted(s.data, &l, s.seq))
      bad++;
    last = s.seq;
    check(shl_reader_release(r, &s), "release");
  }
  printf("frames %llu lost %llu bad %llu moves %llu gone %llu shapes %s\n",
         (unsigned long long)frames, (unsigned long long)lost, (unsigned long long)bad,
         (unsigned long long)moves, (unsigned long long)gone, shapes);
  shl_reader_close(r);
  return 0;
}

int main(int argc, char **argv) {
  if (argc != 5 && !(argc == 4 && strcmp(argv[1], "read") == 0)) {
    fputs("usage: c_follow write|write-live NAME FRAMES READERS | read NAME TOTAL\n", stderr);
    return 2;
  }
  if (strncmp(argv[1], "write", 5) == 0)
    return write_layouts(argv[2], strtoull(argv[3], NULL, 10), (uint32_t)strtoul(argv[4], NULL, 10),
                         strcmp(argv[1], "write-live") == 0);
  return read_layouts(argv[2], strtoull(argv[3], NULL, 10));
}
