/* `bridge send NAME ENDPOINT`: reads the local stream NAME and sends it to
 * every receiver that joined, on a ROUTER socket (one queue per receiver,
 * of --hwm frames; a receiver whose queue is full misses the frame).
 *
 * Frames go from the pinned slot to the socket without a copy
 * (zmq_msg_init_data, one message per receiver); ZeroMQ's I/O thread calls
 * ref_done when a receiver's queue has written (or dropped) it, and this
 * thread releases the pin once every receiver's is done: a reader handle
 * belongs to one thread. So that a receiver that reads slowly or not at all
 * costs only itself, one receiver may hold few pinned frames: past that
 * it is sent a copy (made once a frame, shared by every such receiver),
 * and past the copy budget the frame is dropped for it alone. The reader
 * never waits for a receiver. */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "bridge.h"
#include "codec.h"

/* A receiver that joined (a JOIN message), known by its ROUTER routing id. */
struct peer {
  bool used;
  uint8_t id[255];
  size_t id_len;
  uint64_t joined_ns, heard_ns;
  atomic_uint pinned;   /* zero-copy frames in its queue (ref_done counts down) */
  atomic_uint inflight; /* messages in its queue: the entry is reused at 0 only */
  uint64_t dropped;
};

struct held;
/* One receiver's message of a frame: ZeroMQ's free function hint. */
struct ref {
  struct held *frame;
  struct peer *peer;
  bool pinned;
};

/* A frame ZeroMQ may still be writing: a pinned slot, or a buffer of ours. */
struct held {
  atomic_int refs; /* messages not yet done (+1 while this thread sends them) */
  bool used, pinned;
  shl_sample sample;
  uint8_t *buf; /* a copy, or the compressed frame */
  size_t cap, len;
  struct ref *refs_of; /* [max_receivers] */
};

/* Receivers silent this long (no JOIN) are forgotten. */
#define PEER_TIMEOUT_NS 5000000000u

struct sender {
  const struct bridge_opts *o;
  void *ctx, *sock, *monitor, *zap;
  int generation; /* of the socket, for its monitor's name */
  int status;     /* an exit status that ends the loop */
  shl_reader *reader;
  struct wire_layout layout;
  struct wire_preamble pre;
  uint8_t *scratch; /* layout and frame headers */
  size_t scratch_size, layout_len;
  struct held *held;
  struct peer *peers;
  uint32_t nheld, npinned, max_pinned, peer_pins, ncopies, max_copies, nbuffers, npeers;
  struct mem_guard guard;
  struct codec *codec;
  struct codec_plan plan; /* how frames of the layout are sent */
  uint8_t (*allowed)[32];
  struct admit_policy policy;
  struct conns conns; /* over ipc, the socket's connections */
  uint64_t next_layout_along, next_allowed_ns;
  uint64_t last_err_ns, last_auth_ns, last_zap_ns, last_peer_ns;
  bool said_waiting;
  bool uncarried; /* the stream's layout now cannot be carried: its frames are not sent */
  /* Counters, since start and at the last statistics line. */
  uint64_t frames, bytes, lost, skipped, dropped, copied, bad;
  uint64_t last_frames, last_bytes, last_stats_ns;
};

static void ref_done(void *data, void *hint) {
  (void)data;
  struct ref *r = hint;
  if (r->pinned) atomic_fetch_sub_explicit(&r->peer->pinned, 1, memory_order_relaxed);
  atomic_fetch_sub_explicit(&r->peer->inflight, 1, memory_order_release);
  atomic_fetch_sub_explicit(&r->frame->refs, 1, memory_order_release);
}

/* Buffers kept for reuse when idle; more are freed as they come back. */
static uint32_t buffers_kept(const struct sender *s) { return (uint32_t)s->o->hwm + 2; }

static void release_done(struct sender *s) {
  for (uint32_t i = 0; i < s->nheld; i++) {
    struct held *h = &s->held[i];
    if (!h->used || atomic_load_explicit(&h->refs, memory_order_acquire) != 0) continue;
    h->used = false;
    if (h->pinned) {
      shl_reader_release(s->reader, &h->sample);
      h->pinned = false;
      s->npinned--;
      continue;
    }
    s->ncopies--;
    if (s->nbuffers > buffers_kept(s)) {
      free(h->buf);
      h->buf = NULL, h->cap = 0;
      s->nbuffers--;
    }
  }
}

/* A free entry: one with a buffer if a buffer is wanted, else one without. */
static struct held *free_entry(struct sender *s, bool want_buffer) {
  struct held *any = NULL;
  for (uint32_t i = 0; i < s->nheld; i++) {
    struct held *h = &s->held[i];
    if (h->used) continue;
    if (want_buffer == (h->buf != NULL)) return h;
    if (!any) any = h;
  }
  return any;
}

/* A buffer of `size` bytes for a frame of ours (copy or compressed), within
 * the copy budget; NULL past it. */
static struct held *take_buffer(struct sender *s, size_t size) {
  if (s->ncopies >= s->max_copies) return NULL;
  struct held *h = free_entry(s, true);
  if (!h) return NULL;
  if (h->cap < size) {
    if (!h->buf) s->nbuffers++;
    free(h->buf);
    if (!(h->buf = malloc(size))) {
      h->cap = 0;
      s->nbuffers--;
      return NULL;
    }
    h->cap = size;
  }
  h->used = true;
  h->pinned = false;
  atomic_store(&h->refs, 1);
  s->ncopies++;
  return h;
}

/* ---------------------------------------------------------------- receivers */

static void forget_peer(struct sender *s, struct peer *p, const char *why) {
  logf_("%s: a receiver left (%s); %u left", s->o->name, why, s->npeers - 1);
  p->used = false;
  s->npeers--;
  s->policy.receivers = (int)s->npeers;
}

/* The routing id that starts a message to one receiver: false if it is
 * gone (forgotten) or its queue is full (the message dropped for it alone). */
static bool send_to(struct sender *s, struct peer *p) {
  if (zmq_send(s->sock, p->id, p->id_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) >= 0) return true;
  if (errno == EHOSTUNREACH) forget_peer(s, p, "disconnected");
  return false;
}

static int send_layout_to(struct sender *s, struct peer *p) {
  if (!send_to(s, p)) return -errno;
  return zmq_send(s->sock, s->scratch, s->layout_len, ZMQ_DONTWAIT) < 0 ? -errno : 0;
}

/* The layout, encoded at the start of the scratch buffer. */
static void encode_layout(struct sender *s) {
  s->pre.type = WIRE_LAYOUT;
  s->layout_len = wire_encode_layout(s->scratch, s->scratch_size, &s->pre, &s->layout);
}

static void send_layout(struct sender *s) {
  for (uint32_t i = 0; i < (uint32_t)s->o->max_receivers; i++)
    if (s->peers[i].used) send_layout_to(s, &s->peers[i]);
}

/* JOIN messages: a new receiver is sent the layout at once; one heard
 * from again stays. Anything else a receiver sends is dropped: the ROUTER
 * stores nothing of it beyond its bounded queue. */
static void serve_peers(struct sender *s) {
  for (int n = 0; n < 256; n++) {
    zmq_msg_t id, m;
    zmq_msg_init(&id);
    zmq_msg_init(&m);
    if (zmq_msg_recv(&id, s->sock, ZMQ_DONTWAIT) < 0) {
      zmq_msg_close(&id);
      zmq_msg_close(&m);
      return;
    }
    int parts = 1;
    bool more = zmq_msg_more(&id);
    while (more && zmq_msg_recv(&m, s->sock, 0) >= 0) { /* the last part is the message */
      more = zmq_msg_more(&m);
      parts++;
    }
    struct wire_preamble pre;
    const char *why = parts != 2 ? "wrong number of parts"
                                 : wire_decode_preamble(zmq_msg_data(&m), zmq_msg_size(&m), &pre);
    if (!why && pre.type != WIRE_JOIN) why = "a receiver sent something else than JOIN";
    size_t id_len = zmq_msg_size(&id);
    if (why || id_len > sizeof s->peers[0].id) {
      s->bad++;
      log_limited(&s->last_peer_ns, "%s: dropped a message from a receiver (%s)", s->o->name,
                  why ? why : "routing id too long");
    } else {
      struct peer *p = NULL, *free_p = NULL;
      for (uint32_t i = 0; i < (uint32_t)s->o->max_receivers && !p; i++) {
        struct peer *q = &s->peers[i];
        if (q->used && q->id_len == id_len && !memcmp(q->id, zmq_msg_data(&id), id_len)) p = q;
        if (!q->used && !free_p && atomic_load(&q->inflight) == 0) free_p = q;
      }
      uint64_t now = now_ns();
      if (!p && free_p) { /* a new receiver */
        p = free_p;
        p->used = true;
        memcpy(p->id, zmq_msg_data(&id), id_len);
        p->id_len = id_len;
        p->joined_ns = now;
        p->dropped = 0;
        s->npeers++;
        s->policy.receivers = (int)s->npeers;
        logf_("%s: a receiver joined; %u now", s->o->name, s->npeers);
        if (s->layout_len) send_layout_to(s, p);
      } else if (!p) {
        log_limited(&s->last_peer_ns, "%s: a receiver beyond --max-receivers (%d) is not served",
                    s->o->name, s->o->max_receivers);
      }
      if (p) p->heard_ns = now;
    }
    zmq_msg_close(&id);
    zmq_msg_close(&m);
  }
}

static void forget_silent(struct sender *s, uint64_t now) {
  for (uint32_t i = 0; i < (uint32_t)s->o->max_receivers; i++)
    if (s->peers[i].used && now - s->peers[i].heard_ns > PEER_TIMEOUT_NS)
      forget_peer(s, &s->peers[i], "silent for 5 s");
}

/* The ROUTER socket and its monitor, bound. */
static int open_sock(struct sender *s) {
  s->sock = zmq_socket(s->ctx, ZMQ_ROUTER);
  int rc = setup_socket(s->sock, s->o, true);
  if (rc) return rc;
  int one = 1, hwm = s->o->latest ? 1 : s->o->hwm, in = 16;
  zmq_setsockopt(s->sock, ZMQ_ROUTER_MANDATORY, &one, sizeof one); /* full or gone: told */
  zmq_setsockopt(s->sock, ZMQ_SNDHWM, &hwm, sizeof hwm);
  zmq_setsockopt(s->sock, ZMQ_RCVHWM, &in, sizeof in); /* JOINs: a few are plenty */
  s->monitor = open_monitor(s->ctx, s->sock, true, &s->generation);
  s->policy.connections = 0;
  if (zmq_bind(s->sock, s->o->ep.zmq) != 0) {
    logf_("cannot bind %s: %s", s->o->ep.text, zmq_strerror(errno));
    return EXIT_RUNTIME;
  }
  return 0;
}

/* Linger 0: queued frames are dropped, their free functions run; every
 * receiver joins again. */
static void close_sock(struct sender *s) {
  close_monitored(s->sock, s->monitor);
  s->sock = s->monitor = NULL;
  conns_clear(&s->conns);
  for (uint32_t i = 0; i < (uint32_t)s->o->max_receivers; i++) s->peers[i].used = false;
  s->npeers = 0;
  s->policy.receivers = 0;
}

/* ---------------------------------------------------------------- the stream */

static void set_state(struct sender *s, uint32_t state) {
  if (s->layout.state == state) return;
  s->layout.state = state;
  static const char *const what[] = {"the writer publishes", "the writer died",
                                     "the writer closed the stream", "no stream yet"};
  logf_("%s: %s", s->o->name, what[state]);
  encode_layout(s);
  send_layout(s);
}

/* Who may read the stream now; when that narrows, every receiver admitted
 * under the old rule must be admitted again: the socket starts afresh. */
static void update_access(struct sender *s) {
  shl_info info = SHL_INFO_INIT;
  if (shl_get_info(shl_reader_segment(s->reader), &info) < 0) return;
  struct stream_access was = s->policy.stream, now = {true, info.uid, info.gid, info.mode & 07777};
  s->policy.stream = now;
  bool narrower = was.known && (was.owner_uid != now.owner_uid ||
                                ((was.mode & 0004) && !(now.mode & 0004)) ||
                                ((was.mode & 0040) && (!(now.mode & 0040) || was.group != now.group)));
  if (!narrower || !s->o->ep.ipc) return;
  logf_("%s: the stream's owner or mode changed: every receiver is admitted again", s->o->name);
  close_sock(s);
  s->status = open_sock(s);
}

/* The layout of the stream the reader is on now; a new generation. One that
 * cannot be carried leaves the one told before, or (the first) ends the run. */
static int describe_stream(struct sender *s) {
  shl_segment *seg = shl_reader_segment(s->reader);
  shl_layout layout;
  shl_stream_info info = SHL_STREAM_INFO_INIT;
  struct wire_layout told, *l = &told;
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
  bool big_meta = l->meta_size > WIRE_MAX_META; /* a frame's header could not hold it */
  if (!l->frame_bytes || l->frame_bytes > info.slot_stride || big_meta) {
    logf_("%s: %s cannot be carried%s", s->o->name,
          big_meta ? "metadata records over 65536 bytes"
                   : "frames of this layout (empty or negative strides)",
          s->pre.gen ? ": its frames are not sent" : "");
    if (s->pre.gen) return -EINVAL;
    s->status = EXIT_USAGE; /* the first layout, as a first one --jpeg cannot code */
    return 0;
  }
  l->state = WIRE_LIVE;
  s->layout = told, l = &s->layout;
  char ftext[256], mtext[512]; /* "" (no metadata) is printed as it is */
  if (codec_plan(s->codec, l, &s->plan, mtext, sizeof mtext) < 0) { /* --jpeg, and no image */
    bool refuse = !s->pre.gen && !s->o->codec.zstd_level; /* the first layout: a usage error */
    logf_("%s: %s: %s", s->o->name, mtext,
          refuse ? "use --zstd (lossless) instead" : "sending them without JPEG");
    if (refuse) {
      s->status = EXIT_USAGE;
      return 0;
    }
  }
  s->pre.gen++;
  update_access(s);
  logf_("%s: layout %s shape (%u dims, %llu bytes a frame)%s%s, sent as %s", s->o->name,
        format_text(l->format, ftext, sizeof ftext), l->ndim, (unsigned long long)l->frame_bytes,
        meta ? ", metadata " : "", format_text(l->meta_format, mtext, sizeof mtext),
        codec_name(&s->plan));
  encode_layout(s);
  send_layout(s);
  return 0;
}

/* What a stream name that cannot be read is: worth waiting for, or not. */
static int cannot_read(struct sender *s, int rc) {
  if (rc == -ENOENT || rc == SHL_E_NOT_READY || rc == SHL_E_CREATOR_DEAD) {
    if (!s->said_waiting)
      logf_("%s: no such stream yet: waiting for it to appear (as its readers do)", s->o->name);
    s->said_waiting = true;
    return 0;
  }
  if (rc == SHL_E_BAD_KIND) {
    shl_segment *seg;
    shl_info info = SHL_INFO_INIT;
    if (shl_open(&seg, s->o->name, 0, 0) == 0) {
      shl_get_info(seg, &info);
      shl_close(seg);
    }
    logf_("%s is %s, not a stream: the bridge carries streams (a Writer's, or shl_writer_open's)",
          s->o->name, info.kind == SHL_KIND_ARRAY ? "an array segment" : "a struct segment");
    return EXIT_USAGE;
  }
  if (rc == -EACCES || rc == SHL_E_FOREIGN_OWNER || rc == SHL_E_NOT_SHMLANE || rc == SHL_E_VERSION) {
    logf_("%s: cannot read the stream: %s", s->o->name, shl_strerror(rc));
    return EXIT_RUNTIME;
  }
  log_limited(&s->last_err_ns, "%s: cannot read the stream: %s", s->o->name, shl_strerror(rc));
  return 0;
}

static int open_reader(struct sender *s) {
  shl_reader_opts ro = SHL_READER_OPTS_INIT;
  ro.policy = s->o->latest ? SHL_RECV_LATEST : SHL_RECV_ALL;
  ro.timeout_ns = 0;
  int rc = shl_reader_open_ex(&s->reader, s->o->name, &ro);
  if (rc < 0) return rc;
  shl_stream_info info = SHL_STREAM_INFO_INIT;
  shl_stream_get_info(shl_reader_segment(s->reader), &info);
  /* Hold at most half the ring: the local writer always finds a slot. One
   * pin of them is for the frame being received; one receiver may hold
   * half the others (at least one). */
  ro.max_pinned = info.slots / 2 ? info.slots / 2 : 1;
  s->max_pinned = ro.max_pinned - 1;
  s->peer_pins = s->max_pinned / 2 ? s->max_pinned / 2 : 1;
  shl_reader_close(s->reader);
  s->reader = NULL;
  rc = shl_reader_open_ex(&s->reader, s->o->name, &ro);
  if (rc < 0) return rc;
  if (s->said_waiting) logf_("%s: the stream is there: reading it", s->o->name);
  s->said_waiting = false;
  describe_stream(s);
  return 0;
}

/* ---------------------------------------------------------------- frames */

/* The buffer sent for a frame when the slot is not: compressed, or a copy. */
static struct held *frame_buffer(struct sender *s, const struct held *p, uint32_t *codec) {
  size_t size = s->layout.frame_bytes;
  struct held *b = take_buffer(s, codec_bound(&s->plan, size));
  if (!b) return NULL;
  if (s->plan.codec != WIRE_RAW) {
    b->len = codec_pack(s->codec, &s->plan, b->buf, b->cap, p->sample.data, size);
    *codec = s->plan.codec;
    if (!b->len) { /* cannot happen with a bound-sized buffer */
      atomic_store(&b->refs, 0);
      return NULL;
    }
  } else {
    memcpy(b->buf, p->sample.data, size);
    b->len = size;
    s->copied++;
  }
  return b;
}

/* One receiver's data part: the slot, or the buffer; false if neither may
 * be had (the frame is dropped for it). */
static bool data_part(struct sender *s, struct held *p, struct held **b, struct peer *peer,
                      uint32_t i, zmq_msg_t *m) {
  bool pin = p->pinned && atomic_load(&peer->pinned) < s->peer_pins;
  struct held *f = pin ? p : *b;
  if (!f) {
    uint32_t codec = WIRE_RAW;
    if (!(*b = frame_buffer(s, p, &codec))) return false;
    f = *b;
  }
  struct ref *r = &f->refs_of[i];
  *r = (struct ref){f, peer, pin};
  atomic_fetch_add(&f->refs, 1);
  atomic_fetch_add(&peer->inflight, 1);
  if (pin) atomic_fetch_add(&peer->pinned, 1);
  void *data = pin ? (void *)p->sample.data : f->buf;
  zmq_msg_init_data(m, data, pin ? s->layout.frame_bytes : f->len, ref_done, r);
  return true;
}

static void send_frame(struct sender *s, struct held *p) {
  const shl_sample *smp = &p->sample;
  const void *meta;
  uint64_t meta_size;
  int rc = shl_sample_get_meta(s->reader, smp, &meta, &meta_size);
  if (rc < 0 || meta_size != s->layout.meta_size) {
    log_limited(&s->last_err_ns, "%s: a frame's metadata cannot be read: %s", s->o->name,
                rc < 0 ? shl_strerror(rc) : "not of its layout's size");
    s->dropped++;
    return;
  }
  struct wire_frame f = {.seq = smp->seq,
                         .timestamp_ns = smp->timestamp_ns,
                         .raw_bytes = s->layout.frame_bytes,
                         .codec = WIRE_RAW,
                         .meta_size = (uint32_t)meta_size,
                         .meta = meta};
  uint64_t mono = now_ns();
  f.realtime_ns = realtime_ns() - (mono > f.timestamp_ns ? mono - f.timestamp_ns : 0);
  s->frames++;
  if (!s->npeers) return; /* nobody to send it to */
  /* Compressed: once, for everyone; raw: from the slot while it may be
   * pinned, else from one copy. */
  struct held *b = NULL;
  p->pinned = s->plan.codec == WIRE_RAW && s->npinned < s->max_pinned;
  if (p->pinned) s->npinned++;
  if (s->plan.codec != WIRE_RAW && !(b = frame_buffer(s, p, &f.codec))) {
    s->dropped++;
    return;
  }
  uint8_t *head = s->scratch + s->layout_len;
  s->pre.type = WIRE_FRAME;
  size_t n = wire_encode_frame(head, s->scratch_size - s->layout_len, &s->pre, &f);
  /* A full queue drops whole messages: a layout sent on its own may be
   * lost while frames flow. So for a second after a receiver joins, and to
   * everyone once a second, the layout rides along as a third part. */
  uint64_t now = now_ns();
  bool all_layout = now >= s->next_layout_along;
  if (all_layout) s->next_layout_along = now + 1000000000u;
  for (uint32_t i = 0; i < (uint32_t)s->o->max_receivers; i++) {
    struct peer *peer = &s->peers[i];
    if (!peer->used) continue;
    bool layout = all_layout || now - peer->joined_ns < 1000000000u;
    zmq_msg_t data;
    if (!data_part(s, p, &b, peer, i, &data)) {
      peer->dropped++, s->dropped++;
      continue;
    }
    size_t size = zmq_msg_size(&data);
    if (!send_to(s, peer)) { /* its queue is full, or it is gone */
      zmq_msg_close(&data);      /* calls ref_done */
      peer->dropped++, s->dropped++;
      continue;
    }
    /* Past the routing id, the parts of a message are not refused. */
    zmq_send(s->sock, head, n, ZMQ_SNDMORE);
    zmq_msg_send(&data, s->sock, layout ? ZMQ_SNDMORE : 0);
    if (layout) zmq_send(s->sock, s->scratch, s->layout_len, 0);
    s->bytes += n + size + (layout ? s->layout_len : 0);
  }
  if (b) atomic_fetch_sub(&b->refs, 1); /* ours: the buffer is done when every message is */
  if (!p->pinned) return;
  /* The slot: done when every receiver's message is; at once if none took it. */
  atomic_fetch_sub(&p->refs, 1);
}

/* ---------------------------------------------------------------- sockets */

/* Every monitor event waiting: connections counted, and over ipc known. */
static void drain_monitor(void *arg) {
  struct sender *s = arg;
  char peer[256];
  int event;
  uint32_t value;
  do {
    const char *why = monitor_event(s->monitor, s->o, true, peer, sizeof peer, &event, &value);
    s->policy.connections = handshaken(s->policy.connections, event);
    if (s->o->ep.ipc) conns_event(&s->conns, event, value);
    if (why) log_limited(&s->last_auth_ns, "%s: %s (on %s)", s->o->name, why, peer);
  } while (event >= 0);
}

/* Receivers (JOIN), admission (ZAP), monitor events. */
static void serve_sockets(struct sender *s, long timeout_ms) {
  zmq_pollitem_t items[3] = {
      {s->monitor, 0, ZMQ_POLLIN, 0}, {s->zap, 0, ZMQ_POLLIN, 0}, {s->sock, 0, ZMQ_POLLIN, 0}};
  if (zmq_poll(items, 3, timeout_ms) <= 0) return;
  if (items[0].revents) drain_monitor(s); /* before admission: the count is current */
  for (int i = 0; items[1].revents && i < 64; i++)
    if (!zap_serve(s->zap, &s->policy, s->o->name, &s->last_zap_ns, &s->conns, drain_monitor, s))
      break;
  if (items[2].revents) serve_peers(s);
}

static void print_stats(struct sender *s, uint64_t now) {
  double dt = (double)(now - s->last_stats_ns) / 1e9;
  char coded[96] = "", extra[96] = "";
  codec_stats(s->codec, coded, sizeof coded);
  if (s->copied || s->dropped)
    snprintf(extra, sizeof extra, ", copied %llu, dropped %llu (for slow receivers)",
             (unsigned long long)s->copied, (unsigned long long)s->dropped);
  if (!s->o->quiet && s->reader)
    logf_("%s: %.1f frames/s %.1f MB/s, sent %llu, lost %llu, skipped %llu%s, receivers %u%s",
          s->o->name, (double)(s->frames - s->last_frames) / dt,
          (double)(s->bytes - s->last_bytes) / dt / 1e6, (unsigned long long)s->frames,
          (unsigned long long)s->lost, (unsigned long long)s->skipped, extra, s->npeers, coded);
  s->last_frames = s->frames, s->last_bytes = s->bytes, s->last_stats_ns = now;
}

static int setup(struct sender *s) {
  const struct bridge_opts *o = s->o;
  s->ctx = zmq_ctx_new();
  s->policy.ipc = o->ep.ipc;
  s->policy.self_uid = (uint32_t)geteuid();
  s->policy.max_receivers = o->max_receivers;
  if (o->nallow) {
    if (!(s->allowed = calloc(MAX_ALLOW * 4, sizeof *s->allowed))) return EXIT_RUNTIME;
    int n = load_allowed(o, s->allowed, MAX_ALLOW * 4);
    if (n < 0) return EXIT_USAGE;
    s->policy.allowed = (const uint8_t(*)[32])s->allowed;
    s->policy.nallowed = n;
  }
  const char *missing = NULL;
  if ((o->codec.zstd_level || o->codec.jpeg_quality) &&
      !(s->codec = codec_new(&o->codec, &missing))) {
    logf_("%s%s", missing ? "this bridge was built without " : "out of memory",
          missing ? missing : "");
    return missing ? EXIT_USAGE : EXIT_RUNTIME;
  }
  /* Frames held: the pins, the copies (each receiver's queue, and the one
   * being written), one being received. */
  s->max_copies = (uint32_t)(o->hwm + 1) * (uint32_t)o->max_receivers;
  s->nheld = SHL_STREAM_MAX_SLOTS + s->max_copies + 1;
  s->held = calloc(s->nheld, sizeof *s->held);
  s->peers = calloc((size_t)o->max_receivers, sizeof *s->peers);
  if (!s->held || !s->peers) return EXIT_RUNTIME;
  for (uint32_t i = 0; i < s->nheld; i++)
    if (!(s->held[i].refs_of = calloc((size_t)o->max_receivers, sizeof(struct ref))))
      return EXIT_RUNTIME;
  s->scratch_size = 2 * (WIRE_PREAMBLE + WIRE_LAYOUT_FIXED + 16 * SHL_MAX_NDIM +
                         3 * SHL_FORMAT_MAX + WIRE_FRAME_FIXED + WIRE_MAX_META);
  if (!(s->scratch = malloc(s->scratch_size))) return EXIT_RUNTIME;
  s->layout.state = WIRE_ABSENT;
  snprintf(s->layout.name, sizeof s->layout.name, "%s", o->name);
  uint64_t id = realtime_ns() ^ ((uint64_t)getpid() << 40);
  s->pre.sender = id ? id : 1;
  encode_layout(s);
  s->zap = zmq_socket(s->ctx, ZMQ_REP);
  if (zmq_bind(s->zap, "inproc://zeromq.zap.01") != 0) return EXIT_RUNTIME;
  /* Besides its buffers: each receiver's queued headers and layouts, its engine. */
  mem_guard_start(&s->guard, (64u << 20) + (uint64_t)o->max_receivers *
                                               ((o->hwm + 1) * s->scratch_size + (256u << 10)));
  return open_sock(s);
}

/* One turn of the loop: take the next frame, if any, and send it. */
static void pump(struct sender *s) {
  if (!s->reader) {
    int rc = open_reader(s);
    if (rc == 0) return;
    shl_reader_close(s->reader);
    s->reader = NULL;
    s->status = cannot_read(s, rc);
    serve_sockets(s, 100);
    return;
  }
  /* An entry (one for every pin and copy, and one more) and a pin are kept
   * for receiving: neither can be missing. */
  struct held *p = free_entry(s, false);
  int rc = p ? shl_reader_receive(s->reader, &p->sample, 10000000, 0) : SHL_E_PIN_LIMIT;
  if (rc == SHL_E_PIN_LIMIT) {
    serve_sockets(s, 1);
    return;
  }
  if (rc == -ETIMEDOUT || rc == -EINTR) return;
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
  p->pinned = false;
  atomic_store(&p->refs, 1);
  bool send = true;
  if (p->sample.flags & SHL_SAMPLE_NEW_STREAM) s->uncarried = describe_stream(s) < 0;
  if (s->uncarried) send = false;
  set_state(s, WIRE_LIVE);
  s->lost += p->sample.lost;
  uint64_t now = now_ns();
  if (send && s->o->max_fps) {
    uint64_t period = (uint64_t)(1e9 / s->o->max_fps);
    if (now < s->next_allowed_ns) {
      s->skipped++;
      send = false;
    } else {
      s->next_allowed_ns = (now - s->next_allowed_ns < period ? s->next_allowed_ns : now) + period;
    }
  }
  if (send) send_frame(s, p);
  if (!p->pinned) { /* copied, compressed, dropped or skipped: the slot goes back now */
    shl_reader_release(s->reader, &p->sample);
    p->used = false;
  }
}

int run_send(const struct bridge_opts *o) {
  struct sender s = {.o = o};
  s.status = setup(&s);
  uint64_t start = now_ns(), next_hello = start;
  s.last_stats_ns = start;
  while (!s.status && !stop_requested) {
    uint64_t now = now_ns();
    if (o->seconds && now - start >= (uint64_t)(o->seconds * 1e9)) break;
    if (now >= next_hello) { /* the layout again: the receivers' heartbeat */
      send_layout(&s);
      forget_silent(&s, now);
      next_hello = now + 1000000000u;
    }
    if (now - s.last_stats_ns >= 1000000000u) print_stats(&s, now);
    uint64_t ours = codec_memory(s.codec); /* and the buffers: copies, compressed frames */
    for (uint32_t i = 0; i < s.nheld; i++) ours += s.held[i].cap;
    if (mem_guard_over(&s.guard, ours, now)) close_sock(&s), s.status = open_sock(&s);
    serve_sockets(&s, 0);
    release_done(&s);
    pump(&s);
    release_done(&s);
  }
  if (!s.status && !o->quiet) print_stats(&s, now_ns());
  if (s.sock) close_sock(&s);
  if (s.zap) zmq_close(s.zap);
  if (s.ctx) zmq_ctx_term(s.ctx); /* every free function has run */
  for (uint32_t i = 0; s.held && i < s.nheld; i++) atomic_store(&s.held[i].refs, 0);
  if (s.reader) release_done(&s);
  shl_reader_close(s.reader);
  for (uint32_t i = 0; s.held && i < s.nheld; i++) free(s.held[i].buf), free(s.held[i].refs_of);
  free(s.held), free(s.peers), free(s.allowed), free(s.scratch);
  codec_free(s.codec);
  return s.status;
}
