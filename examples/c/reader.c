/* Receive the frames writer.c publishes, check each one, report once a second.
 *
 *   reader [--name cam0] [--mode latest|all] [--seconds S] [--wait-open S]
 *          [--exit-on-gone]
 *
 * latest: always the newest frame (a display); all: every frame in order,
 * laps counted as lost (a recorder). Waits up to --wait-open seconds (5) for
 * the stream to appear, then runs for --seconds (default: until Ctrl-C).
 *
 * Each second prints frames/s, latency (publish to receive) p50 and p99 in
 * microseconds, frames lost, frames torn, frames whose metadata does not
 * match them, and the frame size. A frame is torn if any byte lacks its
 * sequence number's stamp, which writer.c puts in every byte
 * (frame_stamp.h). Before anything, the check proves on a frame torn in the
 * middle of a row that it can see one (exit status 3 if not). Its metadata
 * record (struct frame_meta, frame_meta.h) must give its sequence number
 * and size.
 *
 * When the writer dies or stops it prints "writer gone" and keeps waiting: a
 * new writer on the same name takes over the stream, and this reader goes on
 * without reopening. --exit-on-gone stops there instead. A writer that
 * replaces the stream with one of another size (writer --replace, write.py
 * --resize-every) is followed: "new stream WxH".
 *
 * Exit status 0 only if at least one frame arrived, none was torn and every
 * metadata record matched its frame. */
#define _POSIX_C_SOURCE 200809L /* sigaction with -std=c11 */

#include <errno.h>
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
#define MAX_PER_SECOND 4096     /* latencies kept per report; frames beyond still count */

static volatile sig_atomic_t stop;

static void on_signal(int sig) {
  (void)sig;
  stop = 1;
}

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * SECOND + ts.tv_nsec;
}

static void usage(FILE *out) {
  fputs("usage: reader [--name cam0] [--mode latest|all] [--seconds S] [--wait-open S]\n"
        "              [--exit-on-gone]\n",
        out);
}

static int parse_seconds(const char *s, double min, double *out) {
  char *end;
  double v = strtod(s, &end);
  if (end == s || *end || !isfinite(v) || v < min || v > 1e9) return 0;
  *out = v;
  return 1;
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return (x > y) - (x < y);
}

/* Nearest-rank percentile of n sorted values. */
static uint64_t percentile(const uint64_t *sorted, size_t n, unsigned p) {
  size_t rank = (n * p + 99) / 100; /* ceil(n * p / 100), 1-based */
  return sorted[rank ? rank - 1 : 0];
}

/* Statistics of one report period. */
struct period {
  uint64_t latency_ns[MAX_PER_SECOND];
  size_t kept;
  uint64_t frames, lost, torn, meta_bad;
  int64_t start_ns;
};

/* The size of the frames of the stream r reads now, if they are writer.c's:
 * (height, width, 3) of "B", C-contiguous, with struct frame_meta records. */
static int frame_size(shl_reader *r, uint64_t *width, uint64_t *height) {
  shl_layout l;
  char meta[SHL_FORMAT_MAX + 1];
  shl_get_layout(shl_reader_segment(r), &l);
  if (strcmp(l.format, "B") != 0 || l.ndim != 3 || l.shape[2] != 3 || l.shape[1] < 3 ||
      l.strides[2] != 1 || l.strides[1] != 3 || l.strides[0] != (int64_t)(l.shape[1] * 3))
    return 0;
  if (shl_stream_get_meta(shl_reader_segment(r), meta, sizeof meta) <= 0 ||
      strcmp(meta, FRAME_META_FORMAT) != 0)
    return 0;
  *width = l.shape[1], *height = l.shape[0];
  return 1;
}

static void report(struct period *p, int64_t now, int64_t run_start, uint64_t width,
                   uint64_t height) {
  double span = (double)(now - p->start_ns) / SECOND;
  printf("[%6.1f s] %5.1f frames/s", (double)(now - run_start) / SECOND,
         span > 0 ? (double)p->frames / span : 0.0);
  if (p->kept) {
    qsort(p->latency_ns, p->kept, sizeof p->latency_ns[0], cmp_u64);
    printf("  latency p50 %llu us  p99 %llu us",
           (unsigned long long)(percentile(p->latency_ns, p->kept, 50) / 1000),
           (unsigned long long)(percentile(p->latency_ns, p->kept, 99) / 1000));
  } else {
    printf("  latency p50 - us  p99 - us");
  }
  printf("  lost %llu  torn %llu  meta ok %llu bad %llu  %llux%llu\n", (unsigned long long)p->lost,
         (unsigned long long)p->torn, (unsigned long long)(p->frames - p->meta_bad),
         (unsigned long long)p->meta_bad, (unsigned long long)width, (unsigned long long)height);
  p->kept = 0;
  p->frames = p->lost = p->torn = p->meta_bad = 0;
  p->start_ns = now;
}

int main(int argc, char **argv) {
  const char *name = "cam0";
  uint32_t policy = SHL_RECV_LATEST;
  double seconds = 0, wait_open = 5;
  int exit_on_gone = 0;

  for (int i = 1; i < argc; i++) {
    const char *opt = argv[i];
    if (strcmp(opt, "-h") == 0 || strcmp(opt, "--help") == 0) {
      usage(stdout);
      return 0;
    }
    if (strcmp(opt, "--exit-on-gone") == 0) {
      exit_on_gone = 1;
      continue;
    }
    if (i + 1 == argc) {
      fprintf(stderr, "reader: %s: missing value\n", opt);
      usage(stderr);
      return 2;
    }
    const char *val = argv[++i];
    int ok = 1;
    if (strcmp(opt, "--name") == 0) {
      name = val;
    } else if (strcmp(opt, "--mode") == 0) {
      ok = strcmp(val, "latest") == 0 || strcmp(val, "all") == 0;
      policy = strcmp(val, "all") == 0 ? SHL_RECV_ALL : SHL_RECV_LATEST;
    } else if (strcmp(opt, "--seconds") == 0) {
      ok = parse_seconds(val, 1e-3, &seconds);
    } else if (strcmp(opt, "--wait-open") == 0) {
      ok = parse_seconds(val, 0, &wait_open);
    } else {
      ok = 0;
    }
    if (!ok) {
      fprintf(stderr, "reader: bad option or value: %s %s\n", opt, val);
      usage(stderr);
      return 2;
    }
  }
  setvbuf(stdout, NULL, _IOLBF, 0); /* one line at a time, even into a pipe or file */
  if (!frame_check_works()) {
    fputs("reader: the torn check misses a frame torn in the middle of a row\n", stderr);
    return 3;
  }

  /* Waits for the writer to create the stream: either may start first. */
  shl_reader *r;
  int rc = shl_reader_open(&r, name, policy, (int64_t)(wait_open * SECOND));
  if (rc < 0) {
    fprintf(stderr, "reader: cannot open stream %s: %s\n", name, shl_strerror(rc));
    if (rc == -ENOENT) fprintf(stderr, "reader: no writer created it within %g s\n", wait_open);
    return 1;
  }

  /* The stream describes its frames: check they are writer.c's before
   * reading rows. A takeover keeps them; a replacement may change them. */
  uint64_t width, rows;
  if (!frame_size(r, &width, &rows)) {
    fprintf(stderr,
            "reader: %s does not hold writer.c's frames: (height, width, 3) of \"B\" "
            "with a struct frame_meta\n",
            name);
    shl_reader_close(r);
    return 1;
  }
  printf("reader: %s %llux%llu, mode %s\n", name, (unsigned long long)width,
         (unsigned long long)rows, policy == SHL_RECV_ALL ? "all" : "latest");

  /* Installed after opening, so that Ctrl-C while waiting for the stream quits
   * at once. No SA_RESTART: with SHL_WAIT_INTERRUPTIBLE a signal ends the
   * receive with -EINTR. */
  struct sigaction sa = {.sa_handler = on_signal};
  sigemptyset(&sa.sa_mask);
  if (sigaction(SIGINT, &sa, NULL) < 0 || sigaction(SIGTERM, &sa, NULL) < 0) {
    perror("reader: sigaction");
    shl_reader_close(r);
    return 1;
  }

  static struct period per; /* static: 32 KiB of latencies stay off the stack */
  const int64_t start = now_ns();
  const int64_t end = seconds ? start + (int64_t)(seconds * SECOND) : INT64_MAX;
  int64_t next_report = start + SECOND;
  uint64_t frames = 0, lost = 0, torn = 0, meta_bad = 0, new_streams = 0, max_latency = 0;
  int said_gone = 0, status = 0;
  per.start_ns = start;

  while (!stop) {
    int64_t now = now_ns();
    if (now >= next_report) {
      report(&per, now, start, width, rows);
      next_report += SECOND;
      if (next_report <= now) next_report = now + SECOND; /* we were stopped: no catch-up */
    }
    if (now >= end) break;

    /* Wait no longer than the next report is due. */
    shl_sample s;
    int64_t until = next_report < end ? next_report : end;
    rc = shl_reader_receive(r, &s, until - now, SHL_WAIT_INTERRUPTIBLE);
    if (rc == -ETIMEDOUT || rc == -EINTR) continue;
    if (rc == SHL_E_WRITER_GONE || rc == SHL_E_WRITER_CLOSED) {
      /* Every frame it published has been delivered (and the writer died, or
       * closed the stream). Returned again about every 50 ms while nobody
       * writes, so this does not spin. */
      if (!said_gone) printf("writer gone\n");
      said_gone = 1;
      if (exit_on_gone) break;
      continue;
    }
    if (rc < 0) {
      fprintf(stderr, "reader: receive: %s\n", shl_strerror(rc));
      status = 1;
      break;
    }
    /* Both clocks are CLOCK_MONOTONIC, which all processes share. */
    uint64_t latency = (uint64_t)now_ns() - s.timestamp_ns;
    if (s.flags & SHL_SAMPLE_NEW_STREAM) {
      /* The stream was replaced: from this frame on, frames are the new one's. */
      if (!frame_size(r, &width, &rows)) {
        fprintf(stderr, "reader: %s was replaced by a stream of other frames\n", name);
        shl_reader_release(r, &s);
        status = 1;
        break;
      }
      printf("reader: new stream %llux%llu from frame %llu\n", (unsigned long long)width,
             (unsigned long long)rows, (unsigned long long)s.seq);
      new_streams++;
    } else if (said_gone) {
      printf("writer back at frame %llu\n", (unsigned long long)s.seq);
    }
    said_gone = 0;

    int ok = frame_intact(s.data, rows, width * 3, s.seq);
    const struct frame_meta *meta = shl_sample_meta(r, &s);
    int meta_ok = meta->frame == s.seq && meta->width == width && meta->height == rows;
    /* Release at once: a pinned slot is one the writer cannot reuse. */
    rc = shl_reader_release(r, &s);
    if (rc < 0) {
      fprintf(stderr, "reader: release: %s\n", shl_strerror(rc));
      status = 1;
      break;
    }
    if (!ok) fprintf(stderr, "reader: frame %llu is torn\n", (unsigned long long)s.seq);
    if (!meta_ok)
      fprintf(stderr, "reader: frame %llu: its metadata does not match it\n",
              (unsigned long long)s.seq);

    frames++, per.frames++;
    lost += s.lost, per.lost += s.lost;
    torn += !ok, per.torn += !ok;
    meta_bad += !meta_ok, per.meta_bad += !meta_ok;
    if (per.kept < MAX_PER_SECOND) per.latency_ns[per.kept++] = latency;
    if (latency > max_latency) max_latency = latency;
  }

  double elapsed = (double)(now_ns() - start) / SECOND;
  shl_reader_close(r);
  printf(
      "reader: frames=%llu lost=%llu torn=%llu meta ok=%llu bad=%llu in %.2f s, "
      "latency max %llu us, last %llux%llu, %llu new stream(s)%s\n",
      (unsigned long long)frames, (unsigned long long)lost, (unsigned long long)torn,
      (unsigned long long)(frames - meta_bad), (unsigned long long)meta_bad, elapsed,
      (unsigned long long)(max_latency / 1000), (unsigned long long)width, (unsigned long long)rows,
      (unsigned long long)new_streams, stop ? ", interrupted" : "");
  if (status == 0 && (torn > 0 || meta_bad > 0 || frames == 0)) status = 1;
  return status;
}
