/* Publish a synthetic "webcam": height x width RGB frames on a stream.
 *
 *   writer [--name cam0] [--width 640] [--height 480] [--fps 30]
 *          [--frames N | --seconds S] [--slots 8] [--max-readers 64] [--replace]
 *
 * Each frame is drawn straight into a slot loaned from the stream (no copy),
 * then published. Readers (reader.c, or NumPy) see frames of format "B" and
 * shape (height, width, 3). Runs until N frames, S seconds, or Ctrl-C.
 *
 * Every byte of a frame carries the sequence number shl_writer_publish gives
 * it (frame_stamp.h): a reader that finds another number anywhere has been
 * handed a torn frame. Beside each frame goes a metadata record (struct
 * frame_meta, frame_meta.h): its frame number, capture time, a frame count
 * in place of an exposure, and its size.
 *
 * The stream outlives the writer: run it again with the same name and size
 * and it takes over, and running readers carry on. --replace replaces a
 * stream of another size or slot count instead (its readers follow the
 * name). Remove the stream with `shmlane rm NAME`. */
#define _POSIX_C_SOURCE 200809L /* clock_nanosleep, sigaction with -std=c11 */

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "frame_meta.h"
#include "frame_stamp.h"
#include "shmlane.h"

#define SECOND 1000000000LL

static volatile sig_atomic_t stop;

static void on_signal(int sig) {
  (void)sig;
  stop = 1;
}

static int64_t clock_ns(clockid_t clock) {
  struct timespec ts;
  clock_gettime(clock, &ts);
  return (int64_t)ts.tv_sec * SECOND + ts.tv_nsec;
}

static int64_t now_ns(void) { return clock_ns(CLOCK_MONOTONIC); }

/* Sleeps until `deadline` on CLOCK_MONOTONIC. An absolute deadline keeps the
 * frame rate exact: time spent drawing is not added to each period. */
static void sleep_until(int64_t deadline) {
  struct timespec ts = {(time_t)(deadline / SECOND), (long)(deadline % SECOND)};
  while (!stop && clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
  }
}

static void usage(FILE *out) {
  fputs("usage: writer [--name cam0] [--width 640] [--height 480] [--fps 30]\n"
        "              [--frames N | --seconds S] [--slots 8] [--max-readers 64] [--replace]\n",
        out);
}

/* An integer in [min, max], or false. */
static int parse_long(const char *s, long min, long max, long *out) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno || end == s || *end || v < min || v > max) return 0;
  *out = v;
  return 1;
}

static int parse_seconds(const char *s, double *out) {
  char *end;
  double v = strtod(s, &end);
  if (end == s || *end || !isfinite(v) || v <= 0 || v > 1e9) return 0;
  *out = v;
  return 1;
}

/* A test card that changes every frame: colour gradients that scroll with
 * the frame number and a white bar sweeping across; then the stamp. */
static void draw(uint8_t *img, long width, long height, uint64_t seq) {
  size_t row_bytes = (size_t)width * 3;
  unsigned phase = (unsigned)(seq * 4);
  long bar_width = width / 16 > 0 ? width / 16 : 1;
  long bar_x = (long)(seq * 8 % (uint64_t)width);
  for (long y = 0; y < height; y++) {
    uint8_t *row = img + (size_t)y * row_bytes;
    for (long x = 0; x < width; x++) {
      uint8_t *px = row + 3 * x;
      px[0] = (uint8_t)(x + phase);
      px[1] = (uint8_t)(y + phase / 2);
      px[2] = (uint8_t)((x + y) / 2 - phase);
    }
    for (long i = 0; i < bar_width; i++) memset(row + 3 * ((bar_x + i) % width), 255, 3);
  }
  frame_stamp(img, (uint64_t)height, row_bytes, seq);
}

int main(int argc, char **argv) {
  const char *name = "cam0";
  long width = 640, height = 480, fps = 30, frames = 0, slots = 0, max_readers = 0;
  double seconds = 0;
  uint32_t flags = 0;

  for (int i = 1; i < argc; i++) {
    const char *opt = argv[i];
    if (strcmp(opt, "-h") == 0 || strcmp(opt, "--help") == 0) {
      usage(stdout);
      return 0;
    }
    if (strcmp(opt, "--replace") == 0) {
      flags |= SHL_STREAM_REPLACE;
      continue;
    }
    if (i + 1 == argc) {
      fprintf(stderr, "writer: %s: missing value\n", opt);
      usage(stderr);
      return 2;
    }
    const char *val = argv[++i];
    int ok = 1;
    if (strcmp(opt, "--name") == 0) {
      name = val;
    } else if (strcmp(opt, "--width") == 0) {
      ok = parse_long(val, 3, 1 << 16, &width); /* a row must hold the 8-byte stamp */
    } else if (strcmp(opt, "--height") == 0) {
      ok = parse_long(val, 1, 1 << 16, &height);
    } else if (strcmp(opt, "--fps") == 0) {
      ok = parse_long(val, 1, 1000, &fps);
    } else if (strcmp(opt, "--frames") == 0) {
      ok = parse_long(val, 1, LONG_MAX, &frames);
    } else if (strcmp(opt, "--seconds") == 0) {
      ok = parse_seconds(val, &seconds);
    } else if (strcmp(opt, "--slots") == 0) {
      ok = parse_long(val, 2, SHL_STREAM_MAX_SLOTS, &slots);
    } else if (strcmp(opt, "--max-readers") == 0) {
      ok = parse_long(val, 1, SHL_STREAM_MAX_READERS, &max_readers);
    } else {
      ok = 0;
    }
    if (!ok) {
      fprintf(stderr, "writer: bad option or value: %s %s\n", opt, val);
      usage(stderr);
      return 2;
    }
  }
  if (frames && seconds) {
    fputs("writer: give --frames or --seconds, not both\n", stderr);
    return 2;
  }

  /* Before opening, so that Ctrl-C always ends in shl_writer_close: no
   * signal can leave the stream with a writer that is about to die. */
  struct sigaction sa = {.sa_handler = on_signal}; /* no SA_RESTART: sleeps end early */
  sigemptyset(&sa.sa_mask);
  if (sigaction(SIGINT, &sa, NULL) < 0 || sigaction(SIGTERM, &sa, NULL) < 0) {
    perror("writer: sigaction");
    return 1;
  }

  /* The frame layout is stored in the stream: readers learn it from there. */
  shl_layout frame = {.format = "B", .ndim = 3, .shape = {(uint64_t)height, (uint64_t)width, 3}};
  /* 0: the default for a new stream, and whatever an existing one has. Each
   * frame carries a struct frame_meta, described by its format. */
  shl_stream_opts opts = SHL_STREAM_OPTS_INIT;
  opts.slots = (uint32_t)slots;
  opts.max_readers = (uint32_t)max_readers;
  opts.flags = flags;
  opts.meta_format = FRAME_META_FORMAT;
  shl_writer *w;
  int rc = shl_writer_open(&w, name, &frame, &opts);
  if (rc < 0) {
    fprintf(stderr, "writer: cannot open stream %s: %s\n", name, shl_strerror(rc));
    if (rc == -EBUSY) fputs("writer: another writer is running on it\n", stderr);
    if (rc == -EINVAL)
      fprintf(stderr,
              "writer: it exists with another frame size or slot count: "
              "--replace, `shmlane rm %s` or choose another --name\n",
              name);
    return 1;
  }

  /* A new stream starts at 1; one we take over goes on from its last frame. */
  printf("writer: %s %ldx%ld at %ld fps, from frame %llu\n", name, width, height, fps,
         (unsigned long long)shl_writer_next_seq(w));
  fflush(stdout);

  const int64_t period = SECOND / fps;
  const int64_t start = now_ns();
  const int64_t end = seconds ? start + (int64_t)(seconds * SECOND) : INT64_MAX;
  int64_t next = start;
  long published = 0, loan_timeouts = 0;
  int status = 0;
  while (!stop && (frames == 0 || published < frames) && now_ns() < end) {
    void *slot;
    /* Without SHL_STREAM_BLOCK a loan waits only while readers pin every
     * slot. Then this frame is skipped: a camera does not wait either. */
    rc = shl_writer_loan(w, &slot, period);
    if (rc == -ETIMEDOUT) {
      loan_timeouts++;
    } else if (rc < 0) {
      fprintf(stderr, "writer: loan: %s\n", shl_strerror(rc));
      status = 1;
      break;
    } else {
      /* The record is the loaned slot's, published with it: every field is set. */
      struct frame_meta *meta = shl_writer_meta(w);
      *meta = (struct frame_meta){.frame = shl_writer_next_seq(w),
                                  .capture_ns = now_ns(),
                                  .realtime_ns = clock_ns(CLOCK_REALTIME),
                                  .exposure = (double)(published + 1),
                                  .width = (uint32_t)width,
                                  .height = (uint32_t)height};
      draw(slot, width, height, meta->frame);
      rc = shl_writer_publish(w, NULL);
      if (rc < 0) {
        fprintf(stderr, "writer: publish: %s\n", shl_strerror(rc));
        status = 1;
        break;
      }
      published++;
    }

    next += period;
    /* More than a frame late (a long loan wait, a stopped process): skip the
     * missed ticks rather than publish them in a burst. */
    int64_t now = now_ns();
    if (now - next > period) next = now;
    sleep_until(next < end ? next : end);
  }

  double elapsed = (double)(now_ns() - start) / SECOND;
  shl_writer_close(w); /* readers see "writer gone"; the stream stays */
  printf("writer: published %ld frames in %.2f s (%.1f fps), %ld loan time-outs%s\n",
         published, elapsed, elapsed > 0 ? published / elapsed : 0.0, loan_timeouts,
         stop ? ", interrupted" : "");
  return status;
}
