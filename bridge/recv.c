/* `bridge recv ENDPOINT [LOCAL_NAME]`: joins a sender and writes
 * what it carries into a local stream of the same layout.
 *
 * The work runs in a child process, watched by the parent (the process the
 * user started). A local stream's readers tell a writer that died
 * (SHL_E_WRITER_GONE) from one that closed it by the death of the writer's
 * process: when the sender says that the writer on its host died, the
 * child exits without closing its writer, and the parent starts a new
 * child, which takes the stream over (readers keep their place) once
 * frames come again. A child that crashes is started again the same way.
 * The child never outlives the parent: the kernel sends it SIGTERM when the
 * parent dies (PR_SET_PDEATHSIG), however it dies. Whoever stops last
 * removes the stream, or one an earlier child left behind. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zmq.h>

#include "bridge.h"
#include "codec.h"

enum { EXIT_WRITER_GONE = 3 };

/* A larger gap in the sender's numbers is a new numbering, not losses. */
#define MAX_GAP (UINT64_C(1) << 32)
/* Handshakes that fail in a row before a receiver with keys gives up. */
#define MAX_FAILED_HANDSHAKES 3
/* A sender serving --max-receivers refuses us for now (ZAP status 500, see
 * zap_decide) and libzmq connects there no more: we make the socket again
 * after a pause that doubles from the first to the last. */
#define RETRY_FIRST_MS 100
#define RETRY_MAX_MS 1000
/* libzmq says it connects again (CONNECT_RETRIED) right after a connection
 * ends; if it has not within this, it has given the address up. */
#define GIVEN_UP_NS 1000000000u

/* Between the parent and its children (an anonymous shared mapping): the
 * local stream and the last child that wrote it. */
struct written {
  char name[SHL_NAME_MAX + 1];
  int32_t writer_pid;
};

struct receiver {
  const struct bridge_opts *o;
  struct written *shared;
  void *ctx, *sock, *monitor;
  int status; /* an exit status that ends the loop */
  bool have_layout;
  struct wire_layout layout; /* the sender's, as last told */
  struct wire_preamble pre;  /* whose frames match it */
  shl_writer *writer;
  struct wire_layout written; /* the layout of the local stream we write */
  char name[SHL_NAME_MAX + 1];
  uint64_t offset;   /* local numbers = the sender's + offset */
  bool wrote;        /* this process opened the local stream as its writer */
  bool fresh;        /* nothing published in it yet: the first gap is no loss */
  bool handshake_ok; /* on the current connection */
  int failed_handshakes;
  uint32_t retry_ms; /* the pause before the next try after a refusal "try again" */
  uint64_t retry_ns; /* when to make the socket again; 0: not refused */
  uint64_t given_up_ns; /* a connection ended in its handshake: when libzmq has given up */
  int generation; /* of the socket, for its monitor's name */
  struct mem_guard guard;
  uint32_t self_uid;
  uint64_t id, next_join_ns; /* ours, in JOIN messages; when to send the next */
  struct codec *codec;
  uint64_t frames, bytes, lost, bad, latency_ns, latency_n;
  uint64_t last_frames, last_bytes, last_stats_ns, last_bad_ns, last_err_ns, last_peer_ns;
};

static void drop(struct receiver *r, const char *why) {
  r->bad++;
  log_limited(&r->last_bad_ns, "dropped a bad message (%s); %llu so far", why,
              (unsigned long long)r->bad);
}

static void close_writer(struct receiver *r) {
  shl_writer_close(r->writer);
  r->writer = NULL;
}

/* Who holds the name we cannot write: its writer's pid. */
static void report_busy(struct receiver *r) {
  shl_segment *seg;
  shl_stream_info info = SHL_STREAM_INFO_INIT;
  if (shl_open(&seg, r->name, 0, 0) == 0) {
    shl_stream_get_info(seg, &info);
    shl_close(seg);
  }
  log_limited(&r->last_err_ns,
              "%s: cannot write the local stream: another writer holds it (pid %d): another "
              "'bridge recv'? Stop it, or give this one another LOCAL_NAME",
              r->name, (int)info.writer_pid);
}

/* The name holds what we may never write: another user's object (planted
 * before us, or theirs), or a segment of ours that is no stream. */
static void report_taken(struct receiver *r, int rc) {
  shl_open_opts oo = SHL_OPEN_OPTS_INIT;
  oo.flags = SHL_OPEN_READONLY;
  oo.owner = SHL_OWNER_ANY;
  oo.timeout_ns = 0;
  shl_segment *seg;
  shl_info info = SHL_INFO_INIT;
  bool known = shl_open_ex(&seg, r->name, &oo) == 0 && shl_get_info(seg, &info) == 0;
  if (known) shl_close(seg);
  if (rc == SHL_E_BAD_KIND)
    logf_("%s: cannot write the local stream: the name holds %s, not a stream: give this "
          "receiver another LOCAL_NAME, or remove it ('shmlane rm %s')",
          r->name, info.kind == SHL_KIND_ARRAY ? "an array segment" : "a struct segment", r->name);
  else if (known)
    logf_("%s: cannot write the local stream: the name is another user's (uid %u): give this "
          "receiver another LOCAL_NAME",
          r->name, (unsigned)info.uid);
  else
    logf_("%s: cannot write the local stream: %s (another user's object?): give this receiver "
          "another LOCAL_NAME",
          r->name, shl_strerror(rc));
}

/* The local stream, in the sender's layout: created, taken over, or made to
 * replace one of another layout (its readers follow; a layout change while
 * we write replaces our own stream, so they never find the writer gone). */
static int open_writer(struct receiver *r) {
  const struct wire_layout *l = &r->layout;
  if (!r->name[0]) snprintf(r->name, sizeof r->name, "%s", l->name);
  if (r->writer && wire_same_layout(&r->written, l)) return 0;
  shl_layout layout;
  wire_to_layout(l, &layout);
  shl_stream_opts so = SHL_STREAM_OPTS_INIT;
  so.slots = r->o->slots ? r->o->slots : l->slots;
  so.max_readers = l->max_readers;
  so.flags = SHL_STREAM_REPLACE;
  so.meta_format = l->meta_format;
  int rc;
  if (r->writer) {
    logf_("%s: the sender's layout changed: replacing the local stream", r->name);
    rc = shl_writer_replace(&r->writer, &layout, &so);
    if (rc < 0) close_writer(r);
  } else {
    rc = shl_writer_open(&r->writer, r->name, &layout, &so);
  }
  if (rc == -EBUSY) {
    report_busy(r);
    return rc;
  }
  if (rc == SHL_E_FOREIGN_OWNER || rc == -EACCES || rc == SHL_E_BAD_KIND) {
    report_taken(r, rc); /* for good: no frame will change that */
    r->status = EXIT_RUNTIME;
    return rc;
  }
  if (rc < 0) {
    log_limited(&r->last_err_ns, "%s: cannot write the local stream: %s", r->name,
                shl_strerror(rc));
    return rc;
  }
  shl_stream_info info = SHL_STREAM_INFO_INIT;
  shl_stream_get_info(shl_writer_segment(r->writer), &info);
  r->fresh = shl_writer_next_seq(r->writer) == info.base_seq + 1;
  r->written = *l;
  r->wrote = true;
  r->offset = 0;
  snprintf(r->shared->name, sizeof r->shared->name, "%s", r->name);
  r->shared->writer_pid = (int32_t)getpid();
  char ftext[256], mtext[512]; /* "" (no metadata) is printed as it is */
  logf_("%s: writing frames of %s (%llu bytes a frame)%s%s", r->name,
        format_text(l->format, ftext, sizeof ftext), (unsigned long long)l->frame_bytes,
        l->meta_size ? ", metadata " : "", format_text(l->meta_format, mtext, sizeof mtext));
  return 0;
}

static void on_layout(struct receiver *r, const struct wire_preamble *pre, const void *buf,
                      size_t len) {
  struct wire_layout l;
  const char *why = wire_decode_layout(buf, len, &l);
  if (why) {
    drop(r, why);
    return;
  }
  if (l.state == WIRE_ABSENT) return; /* nothing to copy yet */
  if (!r->have_layout || !wire_same_layout(&l, &r->layout) || pre->gen != r->pre.gen ||
      pre->sender != r->pre.sender) {
    r->layout = l;
    r->pre = *pre;
    r->have_layout = true;
  }
  r->layout.state = l.state;
  if (l.state == WIRE_GONE && r->writer) {
    logf_("%s: the writer on the sender's host died: so does ours", r->name);
    fflush(stderr);
    _exit(EXIT_WRITER_GONE); /* the parent starts a new child */
  }
  if (l.state == WIRE_CLOSED && r->writer) {
    logf_("%s: the writer on the sender's host closed the stream: so do we", r->name);
    close_writer(r);
  }
}

static void on_frame(struct receiver *r, const struct wire_preamble *pre, const void *head,
                     size_t head_len, zmq_msg_t *data) {
  struct wire_frame f;
  const char *why = wire_decode_frame(head, head_len, &f);
  if (why) {
    drop(r, why);
    return;
  }
  /* Frames of a layout not (yet) heard of are skipped: the layout comes
   * first to every receiver that joins, and again every second. */
  if (!r->have_layout || pre->sender != r->pre.sender || pre->gen != r->pre.gen) return;
  const struct wire_layout *l = &r->layout;
  if (f.meta_size != l->meta_size || f.raw_bytes != l->frame_bytes) {
    drop(r, "frame does not match its layout");
    return;
  }
  size_t size = zmq_msg_size(data);
  if ((why = codec_check(l, f.codec, size))) {
    drop(r, why);
    return;
  }
  if (open_writer(r) < 0) return;
  /* The sender's numbers, gaps (frames lost on the way) included; numbers
   * that start again (a new stream there) or leap ahead go on from ours. */
  uint64_t next = shl_writer_next_seq(r->writer), want = f.seq + r->offset;
  if (want < next || want - next > MAX_GAP) { /* modulo 2^64: the offset may be "negative" */
    r->offset = next - f.seq;
    want = next;
  }
  if (!r->fresh) r->lost += want - next; /* a fresh stream's readers missed nothing */
  if (want != next) shl_writer_set_next_seq(r->writer, want);
  void *slot;
  int rc = shl_writer_loan(r->writer, &slot, 100000000);
  if (rc < 0) {
    log_limited(&r->last_err_ns, "%s: no slot for a frame: %s", r->name, shl_strerror(rc));
    r->lost++;
    return;
  }
  /* Decoded straight into the slot (raw frames copied); a frame that does
   * not decode is discarded, the slot unpublished. */
  if ((why = codec_unpack(r->codec, l, f.codec, slot, zmq_msg_data(data), size))) {
    shl_writer_discard(r->writer);
    drop(r, why);
    return;
  }
  if (f.meta_size) memcpy(shl_writer_meta(r->writer), f.meta, f.meta_size);
  shl_writer_publish(r->writer, NULL);
  r->fresh = false;
  uint64_t mono = now_ns();
  if (mono > f.timestamp_ns && mono - f.timestamp_ns < 60000000000u) { /* same clock: one host */
    r->latency_ns += mono - f.timestamp_ns;
    r->latency_n++;
  }
  r->frames++;
  r->bytes += size + head_len;
}

/* Over ipc the kernel tells who the sender is: our own user or root, unless
 * --insecure. */
static bool sender_trusted(struct receiver *r, zmq_msg_t *m) {
  if (!r->o->ep.ipc || r->o->insecure) return true;
  const char *address = zmq_msg_gets(m, "Peer-Address");
  uint32_t uid, gid;
  int32_t pid;
  if (address && peer_creds(address, &uid, &gid, &pid) && (uid == 0 || uid == r->self_uid))
    return true;
  log_limited(&r->last_peer_ns,
              "the sender at %s runs as %s%u (pid %d), not as our user or root: its messages are "
              "dropped (--insecure takes them)",
              r->o->ep.text, address ? "uid " : "an unknown user ", address ? uid : 0,
              address ? (int)pid : 0);
  return false;
}

/* "Send me the stream": at once when connected, then every second (the
 * sender forgets receivers silent for 5 s). A full queue (no connection
 * yet) just skips one. */
static void send_join(struct receiver *r) {
  uint8_t buf[WIRE_PREAMBLE];
  size_t n = wire_encode_join(buf, sizeof buf, r->id);
  zmq_send(r->sock, buf, n, ZMQ_DONTWAIT);
  r->next_join_ns = now_ns() + 1000000000u;
}

/* One message, all its parts; anything malformed is counted and dropped. */
static void receive_one(struct receiver *r) {
  enum { MAX_PARTS = 3 };
  zmq_msg_t part[MAX_PARTS];
  int parts = 0;
  bool more = true;
  for (int i = 0; i < MAX_PARTS; i++) zmq_msg_init(&part[i]);
  while (more) { /* all of it, whatever it is; parts beyond MAX_PARTS are dropped */
    zmq_msg_t *m = &part[parts < MAX_PARTS ? parts : MAX_PARTS - 1];
    if (zmq_msg_recv(m, r->sock, parts ? 0 : ZMQ_DONTWAIT) < 0) break;
    more = zmq_msg_more(m);
    parts++;
  }
  struct wire_preamble pre, lpre;
  const char *why =
      parts ? wire_decode_preamble(zmq_msg_data(&part[0]), zmq_msg_size(&part[0]), &pre) : NULL;
  if (!parts || !sender_trusted(r, &part[0])) {
  } else if (why) {
    drop(r, why);
  } else if (pre.type == WIRE_LAYOUT && parts == 1) {
    on_layout(r, &pre, zmq_msg_data(&part[0]), zmq_msg_size(&part[0]));
  } else if (pre.type == WIRE_FRAME && (parts == 2 || parts == 3)) {
    /* A layout riding along comes first. */
    if (parts == 3) {
      why = wire_decode_preamble(zmq_msg_data(&part[2]), zmq_msg_size(&part[2]), &lpre);
      if (!why && lpre.type != WIRE_LAYOUT) why = "third part is not a layout";
    }
    if (why)
      drop(r, why);
    else if (parts == 3)
      on_layout(r, &lpre, zmq_msg_data(&part[2]), zmq_msg_size(&part[2]));
    if (!why) on_frame(r, &pre, zmq_msg_data(&part[0]), zmq_msg_size(&part[0]), &part[1]);
  } else {
    drop(r, "wrong number of parts");
  }
  for (int i = 0; i < MAX_PARTS; i++) zmq_msg_close(&part[i]);
}

/* The handshake at the address failed for good: said (with the keys' advice
 * if we have keys), and the receiver ends with status 1. */
static void handshake_failed(struct receiver *r, const char *peer, const char *why, bool refused) {
  const struct bridge_opts *o = r->o;
  logf_("%s: %s", peer, why);
  if (!refused)
    logf_("the peer at %s failed the handshake: it may not be our sender (another program "
          "listening there, where a sender started after it cannot bind)", o->ep.text);
  if (o->server_key)
    logf_("%scheck the keys: --server-key %s must be the sender's public key (its --key's "
          ".pub)%s%s%s", refused ? "" : "if it is our sender, ",
          o->server_key, o->key ? ", and --key " : "", o->key ? o->key : "",
          o->key ? "'s public key must be in the sender's --allow list" : "");
  r->status = EXIT_RUNTIME;
}

/* Monitor events: handshake failures reported; those that cannot mend by
 * themselves (wrong keys, a refusal, a protocol error, after which libzmq
 * does not connect again) end the receiver with status 1. Only a refusal
 * surely comes from a sender: the peer may be another program that took
 * the address first (a sender started after it cannot bind there). */
static void serve_monitor(struct receiver *r) {
  const struct bridge_opts *o = r->o;
  char peer[256];
  const char *why;
  int event;
  uint32_t value;
  do {
    why = monitor_event(r->monitor, o, false, peer, sizeof peer, &event, &value);
    if (event == ZMQ_EVENT_CONNECTED) r->handshake_ok = false;
    /* A peer that is no ZeroMQ program (an SSH server's banner) makes
     * libzmq end the connection with no handshake event and connect there
     * no more: nothing would come again. */
    if (event == ZMQ_EVENT_CONNECTED || event == ZMQ_EVENT_CONNECT_RETRIED) r->given_up_ns = 0;
    if (event == ZMQ_EVENT_DISCONNECTED && !r->handshake_ok && !r->retry_ns)
      r->given_up_ns = now_ns() + GIVEN_UP_NS;
    if (event == ZMQ_EVENT_HANDSHAKE_SUCCEEDED) {
      r->handshake_ok = true, r->failed_handshakes = 0, r->retry_ms = 0;
      send_join(r);
    }
    if (event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH && value == 500 && !r->retry_ns) {
      r->retry_ms = r->retry_ms ? 2 * r->retry_ms : RETRY_FIRST_MS;
      if (r->retry_ms > RETRY_MAX_MS) r->retry_ms = RETRY_MAX_MS;
      r->retry_ns = now_ns() + (uint64_t)r->retry_ms * 1000000u;
      log_limited(&r->last_err_ns, "%s: the sender serves as many receivers as it may "
                  "(--max-receivers): trying again in %.1f s", peer, r->retry_ms / 1e3);
    }
    bool fatal = (event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH && value != 500) ||
                 event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL;
    /* Without keys, a failure that says nothing, again and again, is a
     * sender with keys (monitor_event). */
    if (event == ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL && !o->server_key)
      fatal = ++r->failed_handshakes >= MAX_FAILED_HANDSHAKES;
    /* A sender that cannot read our CURVE hello just hangs up. */
    if (event == ZMQ_EVENT_DISCONNECTED && !r->handshake_ok && o->server_key && !r->retry_ns) {
      why = "the peer hung up during the CURVE handshake: if it is our sender and has no keys, "
            "give the sender --key (or run both without keys)";
      fatal = ++r->failed_handshakes >= MAX_FAILED_HANDSHAKES;
    }
    if (why && fatal) {
      handshake_failed(r, peer, why, event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH);
    } else if (why) {
      log_limited(&r->last_err_ns, "%s: %s", peer, why);
    }
  } while (event >= 0);
}

static void print_stats(struct receiver *r, uint64_t now) {
  double dt = (double)(now - r->last_stats_ns) / 1e9;
  char latency[48] = "", coded[96];
  codec_stats(r->codec, coded, sizeof coded);
  if (r->latency_n)
    snprintf(latency, sizeof latency, ", latency %.2f ms",
             (double)r->latency_ns / (double)r->latency_n / 1e6);
  if (!r->o->quiet)
    logf_("%s: %.1f frames/s %.1f MB/s, received %llu, lost %llu, bad %llu%s%s",
          r->name[0] ? r->name : "(no stream yet)", (double)(r->frames - r->last_frames) / dt,
          (double)(r->bytes - r->last_bytes) / dt / 1e6, (unsigned long long)r->frames,
          (unsigned long long)r->lost, (unsigned long long)r->bad, latency, coded);
  r->latency_ns = r->latency_n = 0;
  r->last_frames = r->frames, r->last_bytes = r->bytes, r->last_stats_ns = now;
}

/* The DEALER socket and its monitor, connecting. */
static int open_sock(struct receiver *r) {
  r->sock = zmq_socket(r->ctx, ZMQ_DEALER);
  int rc = setup_socket(r->sock, r->o, false);
  if (rc) return rc;
  int joins = 4; /* we send JOINs only */
  zmq_setsockopt(r->sock, ZMQ_SNDHWM, &joins, sizeof joins);
  r->monitor = open_monitor(r->ctx, r->sock, false, &r->generation);
  r->handshake_ok = false;
  r->given_up_ns = 0; /* the old socket's connection */
  if (zmq_connect(r->sock, r->o->ep.zmq) != 0) {
    logf_("cannot connect to %s: %s", r->o->ep.text, zmq_strerror(errno));
    return EXIT_USAGE;
  }
  return 0;
}

static void close_sock(struct receiver *r) {
  close_monitored(r->sock, r->monitor);
  r->sock = r->monitor = NULL;
}

/* What a sender's messages may take: the queue (--hwm messages, and one
 * being read) of frames of the layout it told, coded or not (twice the
 * frame), with their headers and a layout (16 KiB); the decoder. */
static uint64_t allowed_memory(const struct receiver *r) {
  uint64_t message = r->have_layout ? 2 * r->layout.frame_bytes + WIRE_MAX_META + 16384 : 0;
  return (uint64_t)(r->o->hwm + 2) * message + codec_memory(r->codec);
}

static int setup(struct receiver *r) {
  r->self_uid = (uint32_t)geteuid();
  r->id = realtime_ns() ^ ((uint64_t)getpid() << 40);
  r->ctx = zmq_ctx_new();
  mem_guard_start(&r->guard, 64u << 20);
  int rc = open_sock(r);
  if (rc) return rc;
  if (!(r->codec = codec_new(NULL, NULL))) { /* decodes what this build can: the rest is dropped */
    logf_("out of memory");
    return EXIT_RUNTIME;
  }
  if (r->o->name) snprintf(r->name, sizeof r->name, "%s", r->o->name);
  return 0;
}

/* The stream an earlier child left when its writer died with the sender's,
 * if nobody took it over since: removed (every way of stopping ends here). */
static void remove_left_stream(struct written *w) {
  if (!w->name[0]) return;
  shl_segment *seg;
  shl_stream_info info = SHL_STREAM_INFO_INIT;
  if (shl_open(&seg, w->name, 0, 0) != 0) return;
  int rc = shl_stream_get_info(seg, &info);
  shl_close(seg);
  if (rc == 0 && info.writer_pid == w->writer_pid && info.writer_alive == 0) shl_unlink(w->name);
}

static int child(const struct bridge_opts *o, struct written *shared, double seconds) {
  struct receiver r = {.o = o, .shared = shared};
  r.status = setup(&r);
  uint64_t start = now_ns();
  r.last_stats_ns = start;
  while (!r.status && !stop_requested) {
    uint64_t now = now_ns();
    if (seconds > 0 && now - start >= (uint64_t)(seconds * 1e9)) break;
    if (now - r.last_stats_ns >= 1000000000u) print_stats(&r, now);
    if (r.given_up_ns && now >= r.given_up_ns) {
      handshake_failed(&r, r.o->ep.text, "the peer ended the connection before any ZeroMQ "
                       "handshake, and libzmq connects there no more (not a ZeroMQ program?)",
                       false);
      break;
    }
    bool retry = r.retry_ns && now >= r.retry_ns;
    if (mem_guard_over(&r.guard, allowed_memory(&r), now) || retry) {
      close_sock(&r);
      r.retry_ns = 0;
      if ((r.status = open_sock(&r))) break;
    }
    if (now >= r.next_join_ns) send_join(&r);
    zmq_pollitem_t items[2] = {{r.sock, 0, ZMQ_POLLIN, 0}, {r.monitor, 0, ZMQ_POLLIN, 0}};
    if (zmq_poll(items, 2, 20) <= 0) continue; /* 20 ms: the memory guard's turn */
    if (items[0].revents) /* a frame may wait 100 ms for a slot: SIGTERM is not kept waiting */
      for (int i = 0; i < 64 && !stop_requested; i++) {
        int events = 0;
        size_t len = sizeof events;
        zmq_getsockopt(r.sock, ZMQ_EVENTS, &events, &len);
        if (!(events & ZMQ_POLLIN)) break;
        receive_one(&r);
      }
    if (items[1].revents) serve_monitor(&r);
  }
  if (r.status != EXIT_USAGE && !o->quiet) print_stats(&r, now_ns());
  if (r.wrote) {
    close_writer(&r);
    /* Stopped: the stream goes too. Its readers keep it mapped, see
     * SHL_E_WRITER_CLOSED, and follow a new bridge's stream to come. */
    shl_unlink(r.name);
    shared->name[0] = 0;
  } else {
    remove_left_stream(shared);
  }
  close_sock(&r);
  zmq_ctx_term(r.ctx);
  codec_free(r.codec);
  return r.status;
}

static volatile sig_atomic_t child_pid;

static void forward(int sig) {
  stop_requested = 1;
  if (child_pid > 0) kill(child_pid, sig);
}

int run_recv(const struct bridge_opts *o) {
  struct sigaction sa = {.sa_handler = forward};
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  struct written *shared = mmap(NULL, sizeof *shared, PROT_READ | PROT_WRITE,
                                MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (shared == MAP_FAILED) {
    logf_("cannot map: %s", strerror(errno));
    return EXIT_RUNTIME;
  }
  uint64_t start = now_ns();
  pid_t parent = getpid();
  int status = 0;
  for (;;) {
    double left = 0;
    if (o->seconds) {
      left = o->seconds - (double)(now_ns() - start) / 1e9;
      if (left <= 0) break;
    }
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
      logf_("cannot fork: %s", strerror(errno));
      status = EXIT_RUNTIME;
      break;
    }
    if (pid == 0) { /* `forward` only stops it (child_pid is 0 there) */
      prctl(PR_SET_PDEATHSIG, SIGTERM);
      if (getppid() != parent) stop_requested = 1; /* the parent died before the line above */
      _exit(child(o, shared, left));
    }
    child_pid = pid;
    if (stop_requested) kill(pid, SIGTERM);
    int wstatus;
    while (waitpid(pid, &wstatus, 0) < 0 && errno == EINTR) continue;
    child_pid = 0;
    if (stop_requested) break;
    if (WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == EXIT_WRITER_GONE) continue;
    if (WIFEXITED(wstatus)) {
      status = WEXITSTATUS(wstatus);
      break;
    }
    logf_("the receiving process ended by signal %d: starting it again", WTERMSIG(wstatus));
    usleep(500000);
  }
  remove_left_stream(shared);
  munmap(shared, sizeof *shared);
  return status;
}
