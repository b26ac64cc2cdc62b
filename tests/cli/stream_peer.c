/* A stream writer (and readers) for the CLI tests, which have no other way
 * to make a stream.
 *
 * Usage: stream_peer NAME COUNT FPS READERS [META_FORMAT]
 *        stream_peer --reader all|latest NAME
 *
 * Opens NAME as a stream of 4 slots of "<f" frames shaped 2,3 (8 readers at
 * most; metadata "T{<Q:frame:<d:exposure:}" unless META_FORMAT is given,
 * records left zero), opens READERS `latest` readers that never receive, then publishes
 * COUNT frames, FPS a second (0: back to back; COUNT 0: without end).
 * Prints "ready" once the COUNT-th frame is out (the first when COUNT is 0).
 * Then, with a COUNT, each line "N" on stdin publishes N frames more, back
 * to back, answered by "published SEQ" (the last one's number).
 * When stdin closes it stops publishing, closes writer and readers and exits
 * 0; a test that wants a dead writer kills it instead. Exit status 1 on any
 * failure, with a message on stderr.
 *
 * With --reader it is one reader of NAME (waiting up to 10 s for it), of
 * that policy: it prints "ready" once open, then at each line on stdin
 * receives every frame there is without waiting, printing "SEQ LOST" for
 * each and "end" after them. It keeps the last sample it received (one slot
 * pinned) and exits 0 when stdin closes. */
#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shmlane.h"

#define MAX_READERS 8

static int fail(const char *what, int rc) {
  fprintf(stderr, "stream_peer: %s: %s\n", what, shl_strerror(rc));
  return 1;
}

/* Waits up to timeout_ms (< 0: forever) for stdin to close; true if it did.
 * The frame pacing rides on this wait, so the peer stops promptly. */
static bool stdin_closed(int timeout_ms) {
  struct pollfd p = {.fd = STDIN_FILENO, .events = POLLIN};
  char buf[64];
  for (;;) {
    int n = poll(&p, 1, timeout_ms);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return n < 0;
    if (read(STDIN_FILENO, buf, sizeof buf) <= 0) return true;
  }
}

static int publish(shl_writer *w, uint64_t n) {
  void *frame;
  int rc = shl_writer_loan(w, &frame, 1000000000);
  if (rc < 0) return rc;
  float *values = frame;
  for (int i = 0; i < 6; i++) values[i] = (float)n;
  return shl_writer_publish(w, NULL);
}

/* --reader: receives what there is at each line of stdin. */
static int reader_main(const char *policy_name, const char *name) {
  uint32_t policy = SHL_RECV_LATEST;
  if (strcmp(policy_name, "all") == 0) policy = SHL_RECV_ALL;
  else if (strcmp(policy_name, "latest") != 0) return fail("policy", -EINVAL);
  shl_reader *r;
  int rc = shl_reader_open(&r, name, policy, 10000000000);
  if (rc < 0) return fail("cannot open reader", rc);
  shl_sample kept, s;
  bool holding = false;
  char line[64];
  puts("ready");
  fflush(stdout);
  while (rc >= 0 && fgets(line, sizeof line, stdin)) {
    while ((rc = shl_reader_receive(r, &s, 0, 0)) == 0) {
      printf("%llu %llu\n", (unsigned long long)s.seq, (unsigned long long)s.lost);
      if (holding && (rc = shl_reader_release(r, &kept)) < 0) break;
      kept = s;
      holding = true;
    }
    if (rc == -EAGAIN || rc == -ETIMEDOUT) rc = 0;
    puts("end");
    fflush(stdout);
  }
  if (rc < 0) return fail("cannot receive", rc);
  shl_reader_close(r);
  return 0;
}

int main(int argc, char **argv) {
  if (argc == 4 && strcmp(argv[1], "--reader") == 0) return reader_main(argv[2], argv[3]);
  if (argc != 5 && argc != 6) {
    fputs("usage: stream_peer NAME COUNT FPS READERS [META_FORMAT]\n", stderr);
    return 2;
  }
  const char *name = argv[1];
  uint64_t count = strtoull(argv[2], NULL, 10);
  unsigned fps = (unsigned)strtoul(argv[3], NULL, 10);
  unsigned nreaders = (unsigned)strtoul(argv[4], NULL, 10);
  if (nreaders > MAX_READERS) nreaders = MAX_READERS;
  int period_ms = fps ? (int)(1000 / fps) : 0;

  shl_layout frame = {.format = "<f", .ndim = 2, .shape = {2, 3}};
  shl_stream_opts opts = {.size = sizeof(shl_stream_opts), .slots = 4, .max_readers = MAX_READERS,
                          .meta_format = argc > 5 ? argv[5] : "T{<Q:frame:<d:exposure:}"};
  shl_writer *w;
  shl_reader *readers[MAX_READERS] = {0};
  int rc = shl_writer_open(&w, name, &frame, &opts);
  if (rc < 0) return fail("cannot open writer", rc);
  for (unsigned i = 0; i < nreaders && rc == 0; i++)
    rc = shl_reader_open(&readers[i], name, SHL_RECV_LATEST, 0);
  if (rc < 0) return fail("cannot open reader", rc);

  bool closed = false;
  for (uint64_t n = 1; !closed && (count == 0 || n <= count); n++) {
    if ((rc = publish(w, n)) < 0) return fail("cannot publish", rc);
    if (n == (count ? count : 1)) {
      puts("ready");
      fflush(stdout);
    }
    if (count == 0 || n < count) closed = stdin_closed(period_ms);
  }
  /* Past the pacing, stdin is read as lines: more frames on demand. */
  char line[64];
  uint64_t next = count + 1;
  while (!closed && count && fgets(line, sizeof line, stdin)) {
    for (uint64_t end = next + strtoull(line, NULL, 10); next < end; next++)
      if ((rc = publish(w, next)) < 0) return fail("cannot publish", rc);
    printf("published %llu\n", (unsigned long long)(next - 1));
    fflush(stdout);
  }
  for (unsigned i = 0; i < nreaders; i++) shl_reader_close(readers[i]);
  shl_writer_close(w);
  return 0;
}
