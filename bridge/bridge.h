/* shmlane-bridge: private interfaces between its files. The only code of the
 * project that knows ZeroMQ (docs/bridge.md).
 *
 * Calls go one way: main.c (the entry point) calls send.c and recv.c (the
 * two sides), which call net.c (endpoints, keys, sockets, admission) and
 * codec.c (compression); util.c (logging, clocks), wire.c (the byte layout)
 * and admit.c (who may receive) call none of them. */
#ifndef SHMLANE_BRIDGE_H
#define SHMLANE_BRIDGE_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "admit.h"
#include "codec.h"
#include "shmlane.h"
#include "wire.h"

enum { EXIT_RUNTIME = 1, EXIT_USAGE = 2 };

#define MAX_ALLOW 64

/* An endpoint as the user wrote it, checked and resolved once (net.c). */
struct endpoint {
  const char *text; /* as given */
  bool ipc;
  bool loopback; /* tcp: every address the host resolved to is a loopback one */
  bool ipv6;     /* the address handed to ZeroMQ is IPv6 (needs ZMQ_IPV6) */
  char zmq[300]; /* handed to ZeroMQ: tcp://NUMERIC:PORT (or *, or an interface), ipc://PATH */
};

struct bridge_opts {
  const char *name; /* send: the local stream; recv: LOCAL_NAME or NULL */
  struct endpoint ep;
  const char *key;              /* our key file (PREFIX.key) */
  const char *server_key;       /* recv: the sender's public key file */
  const char *allow[MAX_ALLOW]; /* send: receivers' public key files */
  int nallow;
  bool insecure, latest, quiet;
  struct codec_opts codec; /* send: --zstd, --zstd-threads, --delta, --jpeg */
  double max_fps;          /* 0: no limit */
  int hwm;           /* ZeroMQ high-water mark, in messages */
  int max_receivers; /* send: connections admitted at once */
  uint32_t slots;    /* recv: 0 = as the sender's stream */
  double seconds;    /* 0: run until stopped */
};

/* util.c */
extern volatile sig_atomic_t stop_requested;
void set_log_prefix(const char *prefix);
void logf_(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Like logf_, at most once a second for one `last_ns` counter. */
void log_limited(uint64_t *last_ns, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
uint64_t now_ns(void);
uint64_t realtime_ns(void);
/* A format for people: as every reader reads it (shl_format_canonical, C
 * char arrays as byte strings), or as given if that does not fit in buf. */
const char *format_text(const char *format, char *buf, size_t size);

/* net.c */
/* Checks and resolves an endpoint (tcp://HOST:PORT or ipc://PATH): 0, or
 * EXIT_USAGE after saying what is wrong. */
int endpoint_parse(const char *text, bool bind, struct endpoint *ep);
int keygen(const char *prefix);
/* CURVE, bounds, reconnects and heartbeats for either side's socket: 0 or an exit status. */
int setup_socket(void *sock, const struct bridge_opts *o, bool server);
/* The --allow files' keys: their count, or -1 after saying what is wrong. */
int load_allowed(const struct bridge_opts *o, uint8_t (*keys)[32], int max);
/* The sender's ipc connections by descriptor, from its monitor's events:
 * libzmq sends ACCEPTED (the descriptor) before the connection's handshake
 * can start, and DISCONNECTED before it closes the descriptor, so after
 * every event sent before a ZAP request is read, that request's connection
 * is in the table. Its peer's credentials are read once (SO_PEERCRED). */
struct conn {
  uint64_t serial; /* of its ACCEPTED event; 0: no connection */
  uint64_t asked;  /* the ZAP request whose check read it, with in_group */
  bool known, in_group;
  uint32_t uid, gid;
  int32_t pid;
};
struct conns {
  struct conn *by_fd;
  size_t cap;
  uint64_t serial, asked;
};
void conns_event(struct conns *c, int event, uint32_t value);
void conns_clear(struct conns *c);

/* Answers one ZAP request from `zap` by the policy (false: none waited); a
 * refusal is logged. Over ipc a request whose user may read only by a
 * supplementary group is judged by its connection's groups (`conns`, kept
 * current by drain(arg), which reads every monitor event waiting). */
bool zap_serve(void *zap, const struct admit_policy *p, const char *name, uint64_t *last_log,
               struct conns *conns, void (*drain)(void *), void *arg);
/* A PAIR socket connected to a new monitor of `sock` (the events of a
 * sender's listening socket, or of a receiver's connection and its
 * reconnects; *generation makes its name), keeping every event: libzmq's
 * I/O thread sends them with a blocking send, and would wait on a full
 * queue. */
void *open_monitor(void *ctx, void *sock, bool server, int *generation);
/* Closes a socket and its monitor, the monitor stopped first: closed the
 * other way (or both at once), an event libzmq's I/O thread sends for a
 * connection being torn down finds no reader, and that thread waits
 * forever (every socket of the context stops). */
void close_monitored(void *sock, void *monitor);
/* Reads one monitor event (its code in *event, -1 if none was waiting; its
 * value in *value): the text for a failed handshake, or NULL. */
const char *monitor_event(void *monitor, const struct bridge_opts *o, bool server, char *peer,
                          size_t peer_size, int *event, uint32_t *value);

/* The count of connections past their handshake after a monitor event:
 * libzmq ends each handshake with one HANDSHAKE_ event, then a closed
 * connection with DISCONNECTED. One still in its handshake (a peer that
 * says nothing, or one being admitted) is not counted: idle peers must not
 * keep admitted ones out. */
int handshaken(int count, int event);

/* ZeroMQ keeps every part of a message until its last has come, whatever
 * the high-water mark (which counts whole messages): a peer that sends one
 * endless message would fill the memory. The guard compares the memory
 * allocated now (not the streams' shared memory) every 20 ms with what it
 * was at the start, plus the bridge's own buffers (`allowed`) and a
 * headroom; when it is over, it says so and the caller drops every
 * connection, and what they queued, with its socket. */
struct mem_guard {
  uint64_t base, headroom, next_ns, trim_ns;
  uint64_t held; /* at the last drop, until the memory is back under the bound */
};
void mem_guard_start(struct mem_guard *g, uint64_t headroom);
bool mem_guard_over(struct mem_guard *g, uint64_t allowed, uint64_t now);

/* send.c, recv.c */
int run_send(const struct bridge_opts *o);
int run_recv(const struct bridge_opts *o);

#endif /* SHMLANE_BRIDGE_H */
