/* `bridge send NAME ENDPOINT`: reads the local stream NAME and publishes it
 * on an XPUB socket. Frames go from the pinned slot to the socket without a
 * copy (zmq_msg_init_data); ZeroMQ's I/O thread marks a frame done when it
 * has written it (or dropped it), and this thread then releases the pin: a
 * reader handle belongs to one thread. */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>
#ifdef HAVE_ZSTD
#include <zstd.h>
#endif

#include "bridge.h"

#define MAX_PENDING SHL_STREAM_MAX_SLOTS

struct pending {
  bool used;
  atomic_int done; /* set by ZeroMQ's free function, from its I/O thread */
  shl_sample sample;
};

struct sender {
  const struct bridge_opts *o;
  void *ctx, *pub, *monitor, *zap;
  shl_reader *reader;
  struct wire_layout layout;
  struct wire_preamble pre;
  uint8_t *scratch; /* layout and frame headers */
  size_t scratch_size;
  struct pending pending[MAX_PENDING];
  uint32_t npinned, max_pinned;
  uint8_t allowed[MAX_ALLOW * 4][32];
  int nallowed;
  int receivers;
  uint64_t layout_along_until, next_layout_along;
  uint64_t next_allowed_ns, last_err_ns, last_auth_ns, last_zap_ns;
#ifdef HAVE_ZSTD
  ZSTD_CCtx *cctx;
#endif
  /* Counters, since start and at the last statistics line. */
  uint64_t frames, bytes, lost, skipped, raw_bytes, packed_bytes, pack_ns;
  uint64_t last_frames, last_bytes, last_raw, last_packed, last_pack_ns, last_stats_ns;
};

static void frame_done(void *data, void *hint) {
  (void)data;
  atomic_store_explicit(&((struct pending *)hint)->done, 1, memory_order_release);
}

#ifdef HAVE_ZSTD
static void free_hint(void *data, void *hint) {
  (void)hint;
  free(data);
}
#endif

static void release_done(struct sender *s) {
  for (int i = 0; i < MAX_PENDING; i++) {
    struct pending *p = &s->pending[i];
    if (!p->used || !atomic_load_explicit(&p->done, memory_order_acquire)) continue;
    shl_reader_release(s->reader, &p->sample);
    p->used = false;
    s->npinned--;
  }
}

static struct pending *pending_slot(struct sender *s) {
  for (int i = 0; i < MAX_PENDING; i++)
    if (!s->pending[i].used) return &s->pending[i];
  return NULL;
}

static int send_layout(struct sender *s) {
  s->pre.type = WIRE_LAYOUT;
  size_t n = wire_encode_layout(s->scratch, s->scratch_size, &s->pre, &s->layout);
  if (!n) return -EINVAL;
  return zmq_send(s->pub, s->scratch, n, ZMQ_DONTWAIT) < 0 ? -errno : 0;
}

static void set_state(struct sender *s, uint32_t state) {
  if (s->layout.state == state) return;
  s->layout.state = state;
  static const char *const what[] = {"the writer publishes", "the writer died",
                                     "the writer closed the stream", "no stream yet"};
  logf_("%s: %s", s->o->name, what[state]);
  send_layout(s);
}

/* The layout of the stream the reader is on now; a new generation. */
static int describe_stream(struct sender *s) {
  shl_segment *seg = shl_reader_segment(s->reader);
  shl_layout layout;
  shl_stream_info info = SHL_STREAM_INFO_INIT;
  struct wire_layout *l = &s->layout;
  int rc = shl_stream_get_info(seg, &info);
  if (rc < 0) return rc;
  shl_get_layout(seg, &layout);
  memset(l, 0, sizeof *l);
  snprintf(l->name, sizeof l->name, "%s", s->o->name);
  snprintf(l->format, sizeof l->format, "%s", layout.format);
  /* The reader's own copy: the size it validated is the one records are read with. */
  int64_t meta = shl_reader_get_meta(s->reader, l->meta_format, sizeof l->meta_format);
  if (meta < 0) return (int)meta;
  l->meta_size = (uint64_t)meta;
  l->slots = info.slots;
  l->max_readers = info.max_readers;
  l->ndim = layout.ndim;
  l->itemsize = layout.itemsize;
  memcpy(l->shape, layout.shape, sizeof l->shape);
  memcpy(l->strides, layout.strides, sizeof l->strides);
  l->frame_bytes = wire_frame_bytes(&layout);
  if (!l->frame_bytes || l->frame_bytes > info.slot_stride) {
    logf_("%s: frames of this layout cannot be carried (empty or negative strides)", s->o->name);
    return -EINVAL;
  }
  l->state = WIRE_LIVE;
  s->pre.gen++;
  logf_("%s: layout %s shape (%u dims, %llu bytes a frame)%s%s", s->o->name, l->format, l->ndim,
        (unsigned long long)l->frame_bytes, meta ? ", metadata " : "", l->meta_format);
  return send_layout(s);
}

static int open_reader(struct sender *s) {
  shl_reader_opts ro = SHL_READER_OPTS_INIT;
  ro.policy = s->o->latest ? SHL_RECV_LATEST : SHL_RECV_ALL;
  ro.timeout_ns = 0;
  int rc = shl_reader_open_ex(&s->reader, s->o->name, &ro);
  if (rc < 0) return rc;
  shl_stream_info info = SHL_STREAM_INFO_INIT;
  shl_stream_get_info(shl_reader_segment(s->reader), &info);
  /* Hold at most half the ring: the local writer always finds a slot. */
  s->max_pinned = info.slots / 2 ? info.slots / 2 : 1;
  ro.max_pinned = s->max_pinned;
  shl_reader_close(s->reader);
  s->reader = NULL;
  rc = shl_reader_open_ex(&s->reader, s->o->name, &ro);
  if (rc < 0) return rc;
  rc = describe_stream(s);
  if (rc == -EINVAL) return rc;
  return 0;
}

/* The frame's bytes as a message: the slot itself, or a compressed copy. */
static int frame_message(struct sender *s, struct pending *p, zmq_msg_t *m, uint32_t *codec) {
  size_t size = s->layout.frame_bytes;
  *codec = WIRE_RAW;
#ifdef HAVE_ZSTD
  if (s->o->zstd_level) {
    size_t cap = ZSTD_compressBound(size);
    void *buf = malloc(cap);
    if (!buf) return -ENOMEM;
    uint64_t t0 = now_ns();
    size_t n = ZSTD_compressCCtx(s->cctx, buf, cap, p->sample.data, size, s->o->zstd_level);
    s->pack_ns += now_ns() - t0;
    if (ZSTD_isError(n)) {
      free(buf);
      return -EIO;
    }
    s->raw_bytes += size;
    s->packed_bytes += n;
    *codec = WIRE_ZSTD;
    zmq_msg_init_data(m, buf, n, free_hint, NULL);
    atomic_store(&p->done, 1); /* the slot is no longer needed */
    return 0;
  }
#endif
  return zmq_msg_init_data(m, (void *)p->sample.data, size, frame_done, p) ? -errno : 0;
}

static int send_frame(struct sender *s, struct pending *p) {
  const shl_sample *smp = &p->sample;
  const void *meta;
  uint64_t meta_size;
  int rc = shl_sample_get_meta(s->reader, smp, &meta, &meta_size);
  if (rc < 0) return rc;
  struct wire_frame f = {.seq = smp->seq,
                         .timestamp_ns = smp->timestamp_ns,
                         .raw_bytes = s->layout.frame_bytes,
                         .meta_size = (uint32_t)meta_size,
                         .meta = meta};
  uint64_t mono = now_ns();
  f.realtime_ns = realtime_ns() - (mono > f.timestamp_ns ? mono - f.timestamp_ns : 0);
  zmq_msg_t data;
  rc = frame_message(s, p, &data, &f.codec);
  if (rc < 0) return rc;
  s->pre.type = WIRE_FRAME;
  size_t n = wire_encode_frame(s->scratch, s->scratch_size, &s->pre, &f);
  /* A full queue drops whole messages: a layout sent on its own may be lost
   * while frames flow. So for a while after each new subscription, and once
   * a second, the layout rides along as a third part. */
  uint64_t now = now_ns();
  bool with_layout = now < s->layout_along_until || now >= s->next_layout_along;
  size_t ln = 0;
  if (with_layout) {
    s->next_layout_along = now + 1000000000u;
    s->pre.type = WIRE_LAYOUT;
    ln = wire_encode_layout(s->scratch + n, s->scratch_size - n, &s->pre, &s->layout);
  }
  /* XPUB never blocks: a receiver whose queue is full misses the frame. */
  size_t size = zmq_msg_size(&data);
  if (zmq_send(s->pub, s->scratch, n, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
      zmq_msg_send(&data, s->pub, ZMQ_DONTWAIT | (ln ? ZMQ_SNDMORE : 0)) < 0 ||
      (ln && zmq_send(s->pub, s->scratch + n, ln, ZMQ_DONTWAIT) < 0)) {
    rc = -errno;
    zmq_msg_close(&data); /* calls frame_done */
    return rc;
  }
  s->frames++;
  s->bytes += n + size + ln;
  return 0;
}

/* Subscriptions (each new receiver gets the layout at once), the ZAP
 * handler, monitor events. */
static void serve_sockets(struct sender *s, long timeout_ms) {
  zmq_pollitem_t items[3] = {
      {s->pub, 0, ZMQ_POLLIN, 0}, {s->monitor, 0, ZMQ_POLLIN, 0}, {s->zap, 0, ZMQ_POLLIN, 0}};
  if (zmq_poll(items, s->zap ? 3 : 2, timeout_ms) <= 0) return;
  if (items[0].revents) {
    zmq_msg_t m;
    zmq_msg_init(&m);
    while (zmq_msg_recv(&m, s->pub, ZMQ_DONTWAIT) >= 0) {
      if (zmq_msg_size(&m) >= 1 && ((uint8_t *)zmq_msg_data(&m))[0] == 1) {
        s->receivers++;
        send_layout(s);
        s->layout_along_until = now_ns() + 1000000000u;
      } else if (zmq_msg_size(&m) >= 1 && s->receivers > 0) {
        s->receivers--;
      }
    }
    zmq_msg_close(&m);
  }
  if (items[1].revents) {
    char peer[256];
    const char *why;
    int event;
    do {
      why = handshake_failure(s->monitor, true, peer, sizeof peer, &event);
      if (why) log_limited(&s->last_auth_ns, "%s: %s (on %s)", s->o->name, why, peer);
    } while (event >= 0);
  }
  if (s->zap && items[2].revents) {
    /* ZAP request: version, id, domain, address, identity, mechanism, key. */
    zmq_msg_t part[8];
    int n = 0;
    for (bool more = true; more && n < 8; n++) {
      zmq_msg_init(&part[n]);
      if (zmq_msg_recv(&part[n], s->zap, 0) < 0) break;
      more = zmq_msg_more(&part[n]);
    }
    bool ok = false;
    char address[64] = "?";
    if (n == 7 && zmq_msg_size(&part[6]) == 32) {
      for (int i = 0; i < s->nallowed && !ok; i++)
        ok = !memcmp(zmq_msg_data(&part[6]), s->allowed[i], 32);
      snprintf(address, sizeof address, "%.*s", (int)zmq_msg_size(&part[3]),
               (char *)zmq_msg_data(&part[3]));
    }
    if (!ok)
      log_limited(&s->last_zap_ns,
                  "%s: refused a receiver at %s: its key is not in the --allow list", s->o->name,
                  address);
    const char *status = ok ? "200" : "400", *text = ok ? "OK" : "key not allowed";
    zmq_send(s->zap, "1.0", 3, ZMQ_SNDMORE);
    zmq_send(s->zap, n >= 2 ? zmq_msg_data(&part[1]) : "", n >= 2 ? zmq_msg_size(&part[1]) : 0,
             ZMQ_SNDMORE);
    zmq_send(s->zap, status, 3, ZMQ_SNDMORE);
    zmq_send(s->zap, text, strlen(text), ZMQ_SNDMORE);
    zmq_send(s->zap, "", 0, ZMQ_SNDMORE);
    zmq_send(s->zap, "", 0, 0);
    for (int i = 0; i < n && i < 8; i++) zmq_msg_close(&part[i]);
  }
}

static void print_stats(struct sender *s, uint64_t now) {
  double dt = (double)(now - s->last_stats_ns) / 1e9;
  char zstd[96] = "";
  uint64_t raw = s->raw_bytes - s->last_raw, packed = s->packed_bytes - s->last_packed;
  uint64_t frames = s->frames - s->last_frames;
  if (s->o->zstd_level && packed && frames)
    snprintf(zstd, sizeof zstd, ", zstd %.2f:1 %.2f ms/frame", (double)raw / (double)packed,
             (double)(s->pack_ns - s->last_pack_ns) / 1e6 / (double)frames);
  if (!s->o->quiet)
    logf_("%s: %.1f frames/s %.1f MB/s, sent %llu, lost %llu, skipped %llu, receivers %d%s",
          s->o->name, (double)frames / dt, (double)(s->bytes - s->last_bytes) / dt / 1e6,
          (unsigned long long)s->frames, (unsigned long long)s->lost,
          (unsigned long long)s->skipped, s->receivers, zstd);
  s->last_frames = s->frames, s->last_bytes = s->bytes, s->last_raw = s->raw_bytes;
  s->last_packed = s->packed_bytes, s->last_pack_ns = s->pack_ns, s->last_stats_ns = now;
}

static int load_allowed(struct sender *s) {
  for (int i = 0; i < s->o->nallow; i++) {
    FILE *f = fopen(s->o->allow[i], "r");
    if (!f) {
      logf_("cannot read --allow %s: %s", s->o->allow[i], strerror(errno));
      return EXIT_USAGE;
    }
    char line[256], field[16], value[64];
    int before = s->nallowed;
    while (fgets(line, sizeof line, f) && s->nallowed < MAX_ALLOW * 4)
      if (sscanf(line, " %15[a-z] = %63s", field, value) == 2 && !strcmp(field, "public") &&
          strlen(value) == 40 && zmq_z85_decode(s->allowed[s->nallowed], value))
        s->nallowed++;
    fclose(f);
    if (s->nallowed == before) {
      logf_("--allow %s holds no 'public = KEY' line", s->o->allow[i]);
      return EXIT_USAGE;
    }
  }
  return 0;
}

static int setup(struct sender *s) {
  s->ctx = zmq_ctx_new();
  s->pub = zmq_socket(s->ctx, ZMQ_XPUB);
  int rc = setup_socket(s->pub, s->o, true);
  if (rc) return rc;
  int one = 1;
  zmq_setsockopt(s->pub, ZMQ_XPUB_VERBOSE, &one, sizeof one);
  if (s->o->latest) {
    int hwm = 1;
    zmq_setsockopt(s->pub, ZMQ_SNDHWM, &hwm, sizeof hwm);
  }
  if (s->o->nallow) {
    if ((rc = load_allowed(s))) return rc;
    s->zap = zmq_socket(s->ctx, ZMQ_REP);
    if (zmq_bind(s->zap, "inproc://zeromq.zap.01") != 0) return EXIT_RUNTIME;
  }
  char mon[64];
  snprintf(mon, sizeof mon, "inproc://monitor-send");
  zmq_socket_monitor(s->pub, mon,
                     ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                         ZMQ_EVENT_HANDSHAKE_FAILED_AUTH);
  s->monitor = zmq_socket(s->ctx, ZMQ_PAIR);
  zmq_connect(s->monitor, mon);
  if (zmq_bind(s->pub, s->o->endpoint) != 0) {
    logf_("cannot bind %s: %s", s->o->endpoint, zmq_strerror(errno));
    return EXIT_RUNTIME;
  }
#ifdef HAVE_ZSTD
  if (s->o->zstd_level && !(s->cctx = ZSTD_createCCtx())) return EXIT_RUNTIME;
#else
  if (s->o->zstd_level) {
    logf_("--zstd: this bridge was built without libzstd");
    return EXIT_USAGE;
  }
#endif
  s->scratch_size = WIRE_PREAMBLE + WIRE_LAYOUT_FIXED + 16 * SHL_MAX_NDIM + 3 * SHL_FORMAT_MAX +
                    WIRE_FRAME_FIXED + WIRE_MAX_META;
  if (!(s->scratch = malloc(s->scratch_size))) return EXIT_RUNTIME;
  s->layout.state = WIRE_ABSENT;
  snprintf(s->layout.name, sizeof s->layout.name, "%s", s->o->name);
  uint64_t id = realtime_ns() ^ ((uint64_t)getpid() << 40);
  s->pre.sender = id ? id : 1;
  return 0;
}

/* One turn of the loop: take the next frame, if any, and send it. */
static void pump(struct sender *s) {
  if (!s->reader) {
    int rc = open_reader(s);
    if (rc == 0) return;
    if (rc != -ENOENT && rc != SHL_E_NOT_READY && rc != SHL_E_CREATOR_DEAD)
      log_limited(&s->last_err_ns, "%s: cannot read the stream: %s", s->o->name, shl_strerror(rc));
    shl_reader_close(s->reader);
    s->reader = NULL;
    serve_sockets(s, 100);
    return;
  }
  if (s->npinned >= s->max_pinned) { /* ZeroMQ still writes the frames we hold */
    serve_sockets(s, 1);
    return;
  }
  struct pending *p = pending_slot(s);
  int rc = shl_reader_receive(s->reader, &p->sample, 10000000, 0);
  if (rc == -ETIMEDOUT || rc == -EINTR || rc == SHL_E_PIN_LIMIT) return;
  if (rc == SHL_E_WRITER_GONE || rc == SHL_E_WRITER_CLOSED) {
    set_state(s, rc == SHL_E_WRITER_GONE ? WIRE_GONE : WIRE_CLOSED);
    serve_sockets(s, 50);
    return;
  }
  if (rc < 0) {
    log_limited(&s->last_err_ns, "%s: receive failed: %s", s->o->name, shl_strerror(rc));
    serve_sockets(s, 100);
    return;
  }
  p->used = true;
  atomic_store(&p->done, 0);
  s->npinned++;
  if ((p->sample.flags & SHL_SAMPLE_NEW_STREAM) && describe_stream(s) < 0) {
    atomic_store(&p->done, 1);
    return;
  }
  set_state(s, WIRE_LIVE);
  s->lost += p->sample.lost;
  uint64_t now = now_ns();
  if (s->o->max_fps && now < s->next_allowed_ns) {
    s->skipped++;
    atomic_store(&p->done, 1);
    return;
  }
  if (s->o->max_fps) {
    uint64_t period = (uint64_t)(1e9 / s->o->max_fps);
    s->next_allowed_ns = (now - s->next_allowed_ns < period ? s->next_allowed_ns : now) + period;
  }
  rc = send_frame(s, p);
  if (rc < 0) log_limited(&s->last_err_ns, "%s: send failed: %s", s->o->name, zmq_strerror(-rc));
}

int run_send(const struct bridge_opts *o) {
  struct sender s = {.o = o};
  int status = setup(&s);
  uint64_t start = now_ns(), next_hello = start;
  s.last_stats_ns = start;
  while (!status && !stop_requested) {
    uint64_t now = now_ns();
    if (o->seconds && now - start >= (uint64_t)(o->seconds * 1e9)) break;
    if (now >= next_hello) { /* the layout again: the receivers' heartbeat */
      send_layout(&s);
      next_hello = now + 1000000000u;
    }
    if (now - s.last_stats_ns >= 1000000000u) print_stats(&s, now);
    serve_sockets(&s, 0);
    release_done(&s);
    pump(&s);
    release_done(&s);
  }
  if (!status && !o->quiet) print_stats(&s, now_ns());
  /* Linger 0: queued frames are dropped, their free functions run. */
  if (s.pub) zmq_close(s.pub);
  if (s.monitor) zmq_close(s.monitor);
  if (s.zap) zmq_close(s.zap);
  if (s.ctx) zmq_ctx_term(s.ctx);
  for (int i = 0; i < MAX_PENDING; i++) atomic_store(&s.pending[i].done, 1);
  if (s.reader) release_done(&s);
  shl_reader_close(s.reader);
#ifdef HAVE_ZSTD
  ZSTD_freeCCtx(s.cctx);
#endif
  free(s.scratch);
  return status;
}
