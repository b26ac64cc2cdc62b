/* Peers for the bridge's tests and benchmark (tests/bridge/test_bridge.py,
 * bench/bridge.py).
 *
 *   bridge_peer write NAME COUNT FPS [SHAPE]   frames "B" shaped SHAPE (32,24,3), metadata
 *                                              T{<Q:count:<d:value:}; COUNT 0: until SIGTERM
 *                                              (then closes the writer); replaces another layout
 *   bridge_peer read NAME COUNT SECONDS        a reader (all): one JSON line per sample or event
 *   bridge_peer garbage ENDPOINT SECONDS       binds a PUB that sends malformed messages
 *   bridge_peer raw-pub ENDPOINT BYTES COUNT   raw ZeroMQ PUB/SUB moving the same bytes as the
 *   bridge_peer raw-sub ENDPOINT BYTES COUNT   bridge, for the benchmark; sub prints frames/s
 *                                              and mean latency as JSON
 * Exit status 0, or 1 with a message. */
#include <errno.h>
#include <stdbool.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "shmlane.h"

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

static uint8_t pattern(uint64_t count, uint64_t i) { return (uint8_t)(count * 31 + i * 7); }

static int do_write(const char *name, long count, double fps, const char *shape) {
  shl_layout layout = {.format = "B", .ndim = 3, .shape = {32, 24, 3}};
  if (shape && sscanf(shape, "%lu,%lu,%lu", &layout.shape[0], &layout.shape[1],
                      &layout.shape[2]) != 3)
    return fail("bad shape", 0);
  shl_stream_opts so = SHL_STREAM_OPTS_INIT;
  so.slots = 8;
  so.meta_format = META;
  so.flags = SHL_STREAM_REPLACE;
  shl_writer *w;
  int rc = shl_writer_open(&w, name, &layout, &so);
  if (rc < 0) return fail("writer_open", rc);
  uint64_t bytes = layout.shape[0] * layout.shape[1] * layout.shape[2];
  uint64_t period = fps > 0 ? (uint64_t)(1e9 / fps) : 0, next = now_ns();
  printf("ready\n");
  fflush(stdout);
  for (long n = 1; !stop && (count == 0 || n <= count); n++) {
    void *frame;
    rc = shl_writer_loan(w, &frame, 1000000000);
    if (rc < 0) return fail("loan", rc);
    for (uint64_t i = 0; i < bytes; i++) ((uint8_t *)frame)[i] = pattern((uint64_t)n, i);
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

static int do_read(const char *name, long count, double seconds) {
  shl_reader_opts ro = SHL_READER_OPTS_INIT;
  ro.policy = SHL_RECV_ALL;
  ro.timeout_ns = (int64_t)(seconds * 1e9);
  shl_reader *r;
  int rc = shl_reader_open_ex(&r, name, &ro);
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
    uint64_t bytes = layout.itemsize;
    for (uint32_t i = 0; i < layout.ndim; i++) bytes *= layout.shape[i];
    const struct meta *m = shl_sample_meta(r, &s);
    int ok = m != NULL;
    for (uint64_t i = 0; ok && i < bytes; i++) ok = ((const uint8_t *)s.data)[i] == pattern(m->count, i);
    ok = ok && m->value == (double)m->count / 2;
    printf("{\"seq\": %llu, \"lost\": %llu, \"count\": %llu, \"new\": %d, \"bytes\": %llu, "
           "\"ok\": %d}\n",
           (unsigned long long)s.seq, (unsigned long long)s.lost,
           (unsigned long long)(m ? m->count : 0), !!(s.flags & SHL_SAMPLE_NEW_STREAM),
           (unsigned long long)bytes, ok);
    fflush(stdout);
    shl_reader_release(r, &s);
    got++;
  }
  shl_reader_close(r);
  return 0;
}

/* Random bytes, truncated and corrupted copies of real messages, wrong part counts. */
static int do_garbage(const char *endpoint, double seconds) {
  void *ctx = zmq_ctx_new(), *pub = zmq_socket(ctx, ZMQ_PUB);
  if (zmq_bind(pub, endpoint) != 0) return fail("bind", -errno);
  srand(1);
  uint8_t buf[512];
  uint64_t end = now_ns() + (uint64_t)(seconds * 1e9);
  long sent = 0;
  while (now_ns() < end) {
    size_t len = (size_t)(rand() % (int)sizeof buf);
    for (size_t i = 0; i < len; i++) buf[i] = (uint8_t)rand();
    if (len >= 8 && rand() % 2) { /* get past the magic and version */
      memcpy(buf, "SHLB\x01", 5);
      buf[5] = (uint8_t)(1 + rand() % 2);
      uint64_t body = len - 32;
      if (len >= 32 && rand() % 2) memcpy(buf + 24, &body, 8);
    }
    int parts = 1 + rand() % 3;
    for (int p = 0; p < parts; p++) zmq_send(pub, buf, p ? len / 2 : len, p + 1 < parts ? ZMQ_SNDMORE : 0);
    sent++;
    usleep(200);
  }
  printf("{\"sent\": %ld}\n", sent);
  zmq_close(pub);
  zmq_ctx_term(ctx);
  return 0;
}

/* The same bytes as a bridge frame: a 104-byte header and the frame. */
static int do_raw(bool pub, const char *endpoint, size_t bytes, long count) {
  void *ctx = zmq_ctx_new(), *s = zmq_socket(ctx, pub ? ZMQ_PUB : ZMQ_SUB);
  int hwm = 4;
  zmq_setsockopt(s, pub ? ZMQ_SNDHWM : ZMQ_RCVHWM, &hwm, sizeof hwm);
  uint8_t *frame = calloc(1, bytes);
  uint64_t head[13] = {0};
  if (pub) {
    if (zmq_bind(s, endpoint) != 0) return fail("bind", -errno);
    usleep(300000); /* the subscriber connects */
    for (long n = 1; n <= count && !stop; n++) {
      head[0] = now_ns();
      head[1] = (uint64_t)n;
      zmq_send(s, head, sizeof head, ZMQ_SNDMORE);
      zmq_send(s, frame, bytes, 0);
    }
    head[1] = 0; /* the end */
    for (int i = 0; i < 20; i++) {
      zmq_send(s, head, sizeof head, ZMQ_SNDMORE);
      zmq_send(s, frame, 0, 0);
      usleep(10000);
    }
  } else {
    zmq_setsockopt(s, ZMQ_SUBSCRIBE, "", 0);
    if (zmq_connect(s, endpoint) != 0) return fail("connect", -errno);
    int timeout = 5000;
    zmq_setsockopt(s, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
    long got = 0;
    uint64_t first = 0, last = 0, latency = 0;
    for (;;) {
      if (zmq_recv(s, head, sizeof head, 0) < 0) break;
      int more;
      size_t len = sizeof more;
      zmq_getsockopt(s, ZMQ_RCVMORE, &more, &len);
      zmq_msg_t m;
      zmq_msg_init(&m);
      if (more) zmq_msg_recv(&m, s, 0);
      if (head[1] == 0) {
        zmq_msg_close(&m);
        break;
      }
      memcpy(frame, zmq_msg_data(&m), zmq_msg_size(&m) < bytes ? zmq_msg_size(&m) : bytes);
      zmq_msg_close(&m);
      last = now_ns();
      if (!got++) first = last;
      latency += last - head[0];
    }
    printf("{\"frames\": %ld, \"fps\": %.1f, \"latency_ms\": %.3f}\n", got,
           got > 1 ? (double)(got - 1) * 1e9 / (double)(last - first) : 0.0,
           got ? (double)latency / (double)got / 1e6 : 0.0);
  }
  free(frame);
  zmq_close(s);
  zmq_ctx_term(ctx);
  return 0;
}

int main(int argc, char **argv) {
  struct sigaction sa = {.sa_handler = on_term};
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  if (argc >= 5 && !strcmp(argv[1], "write"))
    return do_write(argv[2], atol(argv[3]), atof(argv[4]), argc > 5 ? argv[5] : NULL);
  if (argc == 5 && !strcmp(argv[1], "read")) return do_read(argv[2], atol(argv[3]), atof(argv[4]));
  if (argc == 4 && !strcmp(argv[1], "garbage")) return do_garbage(argv[2], atof(argv[3]));
  if (argc == 5 && !strncmp(argv[1], "raw-", 4))
    return do_raw(!strcmp(argv[1], "raw-pub"), argv[2], (size_t)atol(argv[3]), atol(argv[4]));
  fprintf(stderr, "usage: see tests/bridge/bridge_peer.c\n");
  return 2;
}
