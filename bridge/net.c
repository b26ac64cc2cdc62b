/* The bridge's network room (bridge.h): endpoints, keys, socket options,
 * admission (ZAP) and monitor events, for both sides. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <net/if.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <zmq.h>

#include "bridge.h"

/* ---------------------------------------------------------------- endpoints */

static bool is_loopback(const struct sockaddr *sa) {
  if (sa->sa_family == AF_INET)
    return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
  if (sa->sa_family != AF_INET6) return false;
  const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
  return IN6_IS_ADDR_LOOPBACK(a) || (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
}

/* tcp://HOST:PORT: HOST resolved once, every address judged (loopback or
 * not), and the numeric address handed to ZeroMQ, so that what was judged
 * is what is used. */
static int parse_tcp(const char *text, const char *rest, bool bind, struct endpoint *ep) {
  char host[256];
  const char *colon = strrchr(rest, ':'), *h = rest;
  size_t hlen = colon ? (size_t)(colon - rest) : 0;
  if (hlen && rest[0] == '[' && rest[hlen - 1] == ']') h++, hlen -= 2;
  char *end;
  long port = colon ? strtol(colon + 1, &end, 10) : 0;
  if (!colon || !hlen || hlen >= sizeof host || !colon[1] || *end || port < 1 || port > 65535) {
    logf_("%s: a TCP endpoint is tcp://HOST:PORT, with a port from 1 to 65535", text);
    return EXIT_USAGE;
  }
  memcpy(host, h, hlen);
  host[hlen] = 0;
  if (bind && !strcmp(host, "*")) { /* every interface */
    snprintf(ep->zmq, sizeof ep->zmq, "tcp://*:%ld", port);
    return 0;
  }
  struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res;
  int rc = getaddrinfo(host, NULL, &hints, &res);
  if (rc != 0) {
    if (bind && if_nametoindex(host)) { /* ZeroMQ binds to an interface by name */
      ep->loopback = !strcmp(host, "lo");
      snprintf(ep->zmq, sizeof ep->zmq, "tcp://%s:%ld", host, port);
      return 0;
    }
    logf_("%s: cannot resolve %s: %s", text, host, gai_strerror(rc));
    return EXIT_USAGE;
  }
  const struct addrinfo *pick = NULL;
  ep->loopback = true;
  for (const struct addrinfo *a = res; a; a = a->ai_next) {
    if (a->ai_family != AF_INET && a->ai_family != AF_INET6) continue;
    ep->loopback &= is_loopback(a->ai_addr);
    if (!pick || (pick->ai_family == AF_INET6 && a->ai_family == AF_INET)) pick = a;
  }
  char num[INET6_ADDRSTRLEN] = "";
  if (pick) {
    ep->ipv6 = pick->ai_family == AF_INET6;
    const void *addr = ep->ipv6 ? (const void *)&((struct sockaddr_in6 *)pick->ai_addr)->sin6_addr
                                : (const void *)&((struct sockaddr_in *)pick->ai_addr)->sin_addr;
    inet_ntop(pick->ai_family, addr, num, sizeof num);
  }
  freeaddrinfo(res);
  if (!pick) {
    logf_("%s: %s has no IPv4 or IPv6 address", text, host);
    return EXIT_USAGE;
  }
  snprintf(ep->zmq, sizeof ep->zmq, ep->ipv6 ? "tcp://[%s]:%ld" : "tcp://%s:%ld", num, port);
  return 0;
}

int endpoint_parse(const char *text, bool bind, struct endpoint *ep) {
  memset(ep, 0, sizeof *ep);
  ep->text = text;
  const char *sep = strstr(text, "://");
  if (!sep) {
    logf_("'%s' names no transport: write tcp://HOST:PORT (across hosts) or ipc://PATH (on "
          "this machine)", text);
    return EXIT_USAGE;
  }
  if (!strncmp(text, "tcp://", 6)) return parse_tcp(text, text + 6, bind, ep);
  if (strncmp(text, "ipc://", 6) != 0) {
    logf_("%s: the bridge carries streams over tcp:// (across hosts) or ipc:// (on this "
          "machine), not %.*s", text, (int)(sep - text), text);
    return EXIT_USAGE;
  }
  size_t len = strlen(text + 6);
  if (!len || len >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
    logf_("%s: an ipc endpoint is ipc://PATH, a path of 1 to %zu bytes", text,
          sizeof(((struct sockaddr_un *)0)->sun_path) - 1);
    return EXIT_USAGE;
  }
  ep->ipc = true;
  snprintf(ep->zmq, sizeof ep->zmq, "%s", text);
  return 0;
}

/* ---------------------------------------------------------------- keys */

/* A key pair's file must be ours and closed to others, as keygen makes it:
 * one others may read gives them our secret, one another user owns (planted)
 * is theirs. 0, or -EKEYREJECTED (said here). */
static int key_private(FILE *f, const char *path) {
  struct stat st;
  if (fstat(fileno(f), &st) != 0) return -errno;
  if (st.st_uid != geteuid()) {
    logf_("--key %s: owned by uid %u, not by us (uid %u): another user may have put it there, "
          "and knows its secret; use a key pair of our own ('shmlane bridge keygen')",
          path, (unsigned)st.st_uid, (unsigned)geteuid());
    return -EKEYREJECTED;
  }
  if (st.st_mode & 077) {
    logf_("--key %s: other users may read or change this secret key (mode %03o): chmod 600 %s, "
          "and make a new key pair if they may have read it",
          path, (unsigned)(st.st_mode & 0777), path);
    return -EKEYREJECTED;
  }
  return 0;
}

/* "public = <Z85>" and "secret = <Z85>" lines, as keygen writes them; a
 * secret only from a private file (key_private). */
static int read_key_file(const char *path, char public_key[41], char secret_key[41]) {
  FILE *f = fopen(path, "r");
  if (!f) return -errno;
  int rc = secret_key ? key_private(f, path) : 0;
  if (rc) {
    fclose(f);
    return rc;
  }
  char line[256];
  bool got_public = false, got_secret = false;
  while (fgets(line, sizeof line, f)) {
    char field[16], value[64];
    if (sscanf(line, " %15[a-z] = %63s", field, value) != 2 || strlen(value) != 40) continue;
    if (!strcmp(field, "public")) {
      memcpy(public_key, value, 41);
      got_public = true;
    } else if (!strcmp(field, "secret") && secret_key) {
      memcpy(secret_key, value, 41);
      got_secret = true;
    }
  }
  fclose(f);
  if (!got_public || (secret_key && !got_secret)) return -EINVAL;
  return 0;
}

static int write_file(const char *path, const char *text, mode_t mode) {
  int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) return -errno;
  size_t len = strlen(text);
  int rc = write(fd, text, len) == (ssize_t)len ? 0 : -EIO;
  if (close(fd) != 0 && rc == 0) rc = -errno;
  return rc;
}

int keygen(const char *prefix) {
  char pub[41], sec[41], path[4096], text[256];
  if (zmq_curve_keypair(pub, sec) != 0) {
    logf_("keygen: this libzmq has no CURVE support: %s", zmq_strerror(errno));
    return EXIT_RUNTIME;
  }
  const char *suffix[2] = {".key", ".pub"};
  for (int i = 0; i < 2; i++) {
    snprintf(path, sizeof path, "%s%s", prefix, suffix[i]);
    if (i == 0)
      snprintf(text, sizeof text,
               "# shmlane bridge CURVE key pair: keep this file secret\npublic = %s\nsecret = %s\n",
               pub, sec);
    else
      snprintf(text, sizeof text, "# shmlane bridge CURVE public key\npublic = %s\n", pub);
    int rc = write_file(path, text, i == 0 ? 0600 : 0644);
    if (rc) {
      logf_("keygen: cannot write %s: %s", path, strerror(-rc));
      return EXIT_RUNTIME;
    }
    printf("%s\n", path);
  }
  return 0;
}

static int key_failed(const char *what, const char *path, int rc) {
  if (rc == -EKEYREJECTED) return EXIT_USAGE; /* key_private said why */
  logf_("cannot read %s %s: %s", what, path,
        rc == -EINVAL ? "no 'public' (and, for a key pair, 'secret') line; 'shmlane bridge "
                        "keygen' makes them"
                      : strerror(-rc));
  return EXIT_USAGE;
}

int load_allowed(const struct bridge_opts *o, uint8_t (*keys)[32], int max) {
  int n = 0;
  for (int i = 0; i < o->nallow; i++) {
    FILE *f = fopen(o->allow[i], "r");
    if (!f) {
      logf_("cannot read --allow %s: %s", o->allow[i], strerror(errno));
      return -1;
    }
    char line[256], field[16], value[64];
    int before = n;
    while (fgets(line, sizeof line, f) && n < max)
      if (sscanf(line, " %15[a-z] = %63s", field, value) == 2 && !strcmp(field, "public") &&
          strlen(value) == 40 && zmq_z85_decode(keys[n], value))
        n++;
    fclose(f);
    if (n == before) {
      logf_("--allow %s holds no 'public = KEY' line", o->allow[i]);
      return -1;
    }
  }
  return n;
}

/* ---------------------------------------------------------------- sockets */

static int set_str(void *sock, int option, const char *value) {
  return zmq_setsockopt(sock, option, value, strlen(value));
}

static int set_int(void *sock, int option, int value) {
  return zmq_setsockopt(sock, option, &value, sizeof value);
}

/* Largest message a receiver takes (no frame is larger), and a sender: it
 * gets JOINs (32 bytes) only, but the CURVE handshake's commands are
 * counted too (INITIATE, a few hundred bytes). A larger one cuts the peer off. */
#define RECV_MAX_MESSAGE ((int64_t)4 << 30)
#define SEND_MAX_MESSAGE 1024

/* Each connection to the sender holds a file descriptor from its first
 * byte on, for up to libzmq's 30 s handshake time limit, and a libzmq out
 * of them aborts (an ipc accept) or spins (a TCP one): the limit goes up
 * to what the system allows this process (the soft limit is often 1024
 * beside a hard one of 500000 or more). */
static void raise_file_limit(void) {
  struct rlimit lim;
  if (getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < lim.rlim_max) {
    lim.rlim_cur = lim.rlim_max;
    setrlimit(RLIMIT_NOFILE, &lim);
  }
}

/* Time after which data the receiver sent (its JOINs, every second) and
 * the sender never acknowledged ends a TCP connection: a dead link. */
#define RECV_TCP_MAXRT_MS 5000

/* CURVE keys (both sides), admission by our ZAP handler (the sender),
 * bounded queues and messages, quick reconnects, a dead link noticed within
 * seconds. ZeroMQ's heartbeat times out a peer from which no whole message
 * came for its timeout, however fast bytes come: on a slow link one frame
 * may take longer than that. So only the sender uses it (its receivers'
 * JOINs are small and come every second) and asks receivers for no time
 * limit (no TTL); a receiver relies on TCP's limit on unacknowledged data. */
int setup_socket(void *sock, const struct bridge_opts *o, bool server) {
  char pub[41], sec[41], server_pub[41];
  int rc;
  set_int(sock, ZMQ_LINGER, 0);
  set_int(sock, server ? ZMQ_SNDHWM : ZMQ_RCVHWM, o->hwm);
  set_int(sock, ZMQ_RECONNECT_IVL, 100);
  set_int(sock, ZMQ_RECONNECT_IVL_MAX, 1000);
  set_int(sock, ZMQ_HEARTBEAT_IVL, server ? 1000 : 0);
  set_int(sock, ZMQ_HEARTBEAT_TIMEOUT, 3000);
  set_int(sock, ZMQ_HEARTBEAT_TTL, 0);
  if (!server) set_int(sock, ZMQ_TCP_MAXRT, RECV_TCP_MAXRT_MS);
  if (o->ep.ipv6) set_int(sock, ZMQ_IPV6, 1);
  int64_t maxsize = server ? SEND_MAX_MESSAGE : RECV_MAX_MESSAGE;
  zmq_setsockopt(sock, ZMQ_MAXMSGSIZE, &maxsize, sizeof maxsize);
  /* The sender's peers all go through zap_serve. A receiver has no ZAP
   * handler (libzmq then lets its handshakes on): the domain makes libzmq
   * refuse a ZMTP 1.0 peer, as any program that sends a first byte other
   * than 0xff looks (an SSH server's banner), instead of waiting on it for
   * ever; the connection ends, with no handshake event. */
  set_str(sock, ZMQ_ZAP_DOMAIN, "shmlane");
  if (server) raise_file_limit();
  if (server && o->key) {
    if ((rc = read_key_file(o->key, pub, sec))) return key_failed("key file", o->key, rc);
    set_int(sock, ZMQ_CURVE_SERVER, 1);
    set_str(sock, ZMQ_CURVE_SECRETKEY, sec);
  } else if (!server && o->server_key) {
    if ((rc = read_key_file(o->server_key, server_pub, NULL)))
      return key_failed("the sender's public key", o->server_key, rc);
    if (o->key) {
      if ((rc = read_key_file(o->key, pub, sec))) return key_failed("key file", o->key, rc);
    } else if (zmq_curve_keypair(pub, sec) != 0) { /* a key of the moment */
      logf_("this libzmq has no CURVE support");
      return EXIT_RUNTIME;
    }
    set_str(sock, ZMQ_CURVE_SERVERKEY, server_pub);
    set_str(sock, ZMQ_CURVE_PUBLICKEY, pub);
    set_str(sock, ZMQ_CURVE_SECRETKEY, sec);
  }
  return 0;
}

/* ---------------------------------------------------------------- admission */

static void zap_reply(void *zap, const struct zap_request *q, int code) {
  char status[4];
  snprintf(status, sizeof status, "%d", code);
  const char *text = code == 200 ? "OK" : "not admitted";
  zmq_send(zap, "1.0", 3, ZMQ_SNDMORE);
  zmq_send(zap, q->request_id, q->request_id_len, ZMQ_SNDMORE);
  zmq_send(zap, status, 3, ZMQ_SNDMORE);
  zmq_send(zap, text, strlen(text), ZMQ_SNDMORE);
  zmq_send(zap, "", 0, ZMQ_SNDMORE);
  zmq_send(zap, "", 0, 0);
}

void conns_event(struct conns *c, int event, uint32_t value) {
  if (event != ZMQ_EVENT_ACCEPTED && event != ZMQ_EVENT_DISCONNECTED) return;
  size_t fd = value;
  if (fd >= c->cap) {
    if (event == ZMQ_EVENT_DISCONNECTED || fd >= (1u << 24)) return;
    size_t cap = c->cap ? c->cap : 64;
    while (cap <= fd) cap *= 2;
    struct conn *v = realloc(c->by_fd, cap * sizeof *v);
    if (!v) return; /* not found: refused if its groups are needed */
    memset(v + c->cap, 0, (cap - c->cap) * sizeof *v);
    c->by_fd = v, c->cap = cap;
  }
  c->by_fd[fd] = (struct conn){.serial = event == ZMQ_EVENT_ACCEPTED ? ++c->serial : 0};
}

void conns_clear(struct conns *c) {
  free(c->by_fd);
  *c = (struct conns){0};
}

/* Whether `group` is among the supplementary groups the kernel recorded for
 * the peer of unix socket `fd` at its connect (SO_PEERGROUPS, Linux 4.13):
 * 1, 0, or -1 if they cannot be read. */
static int peer_in_group(int fd, uint32_t group) {
  gid_t some[64], *g = some;
  socklen_t len = sizeof some;
  int rc = getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, g, &len);
  if (rc != 0 && errno == ERANGE && (g = malloc(len))) /* len: what they take */
    rc = getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, g, &len);
  bool found = false;
  for (size_t i = 0; rc == 0 && i < len / sizeof *g; i++) found |= g[i] == group;
  if (g != some) free(g);
  return rc == 0 ? found : -1;
}

/* Whether the connection of request q has the stream's group among its
 * supplementary groups: 1, 0, or -1 if no connection of the socket has q's
 * credentials (it closed during its handshake). Its connection is one with
 * the same credentials (SO_PEERCRED, which libzmq put in the request). A
 * descriptor's reads count only if no event came for it after them (closed
 * and reused, it may be another's). Several alike (one process's, or a pid
 * reused while another's connection stays open): a member by all or not. */
static int conn_in_group(struct conns *c, const struct zap_request *q, uint32_t group,
                         void (*drain)(void *), void *arg) {
  drain(arg);
  uint64_t asked = ++c->asked;
  for (size_t fd = 0; fd < c->cap; fd++) {
    struct conn *e = &c->by_fd[fd];
    struct ucred cred;
    socklen_t len = sizeof cred;
    if (e->serial && !e->known) {
      if (getsockopt((int)fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
        e->serial = 0; /* closed, or no socket: its events are on their way */
        continue;
      }
      e->known = true, e->uid = cred.uid, e->gid = cred.gid, e->pid = cred.pid;
    }
    if (e->serial && e->uid == q->uid && e->gid == q->gid && e->pid == q->pid)
      e->asked = asked, e->in_group = peer_in_group((int)fd, group) == 1;
  }
  drain(arg); /* an event since a read resets its entry */
  int found = -1;
  for (size_t fd = 0; fd < c->cap; fd++)
    if (c->by_fd[fd].serial && c->by_fd[fd].asked == asked)
      found = found != 0 && c->by_fd[fd].in_group;
  return found;
}

bool zap_serve(void *zap, const struct admit_policy *p, const char *name, uint64_t *last_log,
               struct conns *conns, void (*drain)(void *), void *arg) {
  zmq_msg_t part[ZAP_PARTS + 1];
  const void *data[ZAP_PARTS];
  size_t size[ZAP_PARTS];
  int n = 0;
  bool more = true;
  while (more) { /* all of it; parts beyond ZAP_PARTS make it malformed */
    zmq_msg_t *m = &part[n < ZAP_PARTS ? n : ZAP_PARTS];
    zmq_msg_init(m);
    if (zmq_msg_recv(m, zap, ZMQ_DONTWAIT) < 0) {
      zmq_msg_close(m);
      if (!n) return false;
      break;
    }
    more = zmq_msg_more(m);
    if (n < ZAP_PARTS) {
      data[n] = zmq_msg_data(m), size[n] = zmq_msg_size(m);
    } else {
      zmq_msg_close(m);
    }
    n++;
  }
  struct zap_request q;
  const char *why = zap_parse(data, size, n, &q);
  int member = 0; /* its connection's groups count: only they make it a reader */
  if (!why && p->ipc && q.has_creds && !may_read(p, q.uid, q.gid, false) &&
      may_read(p, q.uid, q.gid, true))
    q.in_group = (member = conn_in_group(conns, &q, p->stream.group, drain, arg)) == 1;
  int code = why ? 400 : zap_decide(&q, p, &why);
  if (code == 400 && member < 0) why = "its connection is gone (closed during its handshake?)";
  if (code != 200 && q.has_creds)
    log_limited(last_log, "%s: refused a receiver at %s (uid %u, pid %d): %s", name, q.address,
                q.uid, q.pid, why);
  else if (code != 200)
    log_limited(last_log, "%s: refused a receiver at %s: %s", name,
                q.address[0] ? q.address : "?", why);
  zap_reply(zap, &q, code);
  for (int i = 0; i < n && i < ZAP_PARTS; i++) zmq_msg_close(&part[i]);
  return true;
}

/* ---------------------------------------------------------------- monitor */

int handshaken(int count, int event) {
  if (event == ZMQ_EVENT_HANDSHAKE_SUCCEEDED || event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH ||
      event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL || event == ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL)
    return count + 1;
  return event == ZMQ_EVENT_DISCONNECTED && count > 0 ? count - 1 : count;
}

void *open_monitor(void *ctx, void *sock, bool server, int *generation) {
  char name[64];
  snprintf(name, sizeof name, "inproc://monitor-%s-%d", server ? "send" : "recv", (*generation)++);
  zmq_socket_monitor(sock, name,
                     ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                         ZMQ_EVENT_HANDSHAKE_FAILED_AUTH | ZMQ_EVENT_HANDSHAKE_SUCCEEDED |
                         ZMQ_EVENT_DISCONNECTED |
                         (server ? ZMQ_EVENT_ACCEPTED
                                 : ZMQ_EVENT_CONNECTED | ZMQ_EVENT_CONNECT_RETRIED));
  void *monitor = zmq_socket(ctx, ZMQ_PAIR);
  int all = 0; /* unbounded: libzmq's threads never wait for us to read an event */
  zmq_setsockopt(monitor, ZMQ_RCVHWM, &all, sizeof all);
  zmq_connect(monitor, name);
  return monitor;
}

void close_monitored(void *sock, void *monitor) {
  if (sock) zmq_socket_monitor(sock, NULL, 0); /* no event after this returns */
  zmq_close(monitor);
  zmq_close(sock);
}

const char *monitor_event(void *monitor, const struct bridge_opts *o, bool server, char *peer,
                          size_t peer_size, int *event_out, uint32_t *value_out) {
  zmq_msg_t m;
  *event_out = -1;
  zmq_msg_init(&m);
  if (zmq_msg_recv(&m, monitor, ZMQ_DONTWAIT) < 0) return NULL;
  uint16_t event = 0;
  uint32_t value = 0;
  if (zmq_msg_size(&m) >= 6) {
    memcpy(&event, zmq_msg_data(&m), 2);
    memcpy(&value, (char *)zmq_msg_data(&m) + 2, 4);
  }
  bool more = zmq_msg_more(&m);
  zmq_msg_close(&m);
  *event_out = event;
  *value_out = value;
  peer[0] = 0;
  if (more) {
    zmq_msg_init(&m);
    if (zmq_msg_recv(&m, monitor, 0) >= 0) {
      size_t n = zmq_msg_size(&m) < peer_size - 1 ? zmq_msg_size(&m) : peer_size - 1;
      memcpy(peer, zmq_msg_data(&m), n);
      peer[n] = 0;
    }
    zmq_msg_close(&m);
  }
  if (event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH && value == 500) /* recv.c says it */
    return NULL;
  if (event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH) /* the sender's zap_serve said why */
    return server ? NULL
           : o->key ? "the sender refused us: the public key of --key is not in its --allow "
                      "list, or (ipc) our user may not read the stream"
           : o->server_key ? "the sender refused us: it has an --allow list (give --key with an "
                             "allowed key pair)"
                           : "the sender refused us: our user may not read the stream (ipc)";
  if (event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL) {
    if (value == ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH)
      return server ? "a receiver's security does not match ours (one side has keys, the other "
                      "none)"
             : o->server_key ? "the peer has no keys and we have --server-key: give the sender "
                               "--key, or run both without keys"
                             : "the peer uses CURVE keys: give --server-key (its public key)";
    if (value == ZMQ_PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC)
      return server ? "a receiver failed the CURVE handshake: it has the wrong --server-key"
                    : "CURVE handshake failed: the peer does not hold the key of --server-key";
    return "handshake failed (protocol error: not a shmlane bridge peer?)";
  }
  /* A CURVE sender may hang up on our plain greeting before we read its
   * own: libzmq then says no more than this. */
  if (event == ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL)
    return server          ? "a receiver's handshake failed"
           : o->server_key ? "handshake with the peer failed (with CURVE: is --server-key the "
                             "sender's public key?)"
                           : "handshake with the peer failed: if it is a sender with CURVE keys, "
                             "give --server-key (its public key)";
  return NULL;
}

/* ---------------------------------------------------------------- memory */

/* Bytes the process's allocator has handed out and not had back: what
 * ZeroMQ's queues hold counts at once, and nothing freed does (an
 * allocator may keep freed memory: the resident size would stay up after
 * every connection was dropped, and the guard would drop them again and
 * again). ASan's own allocator, glibc's (2.33 on), else the resident
 * pages not backed by a file or shared memory. */
#if defined(__SANITIZE_ADDRESS__)
size_t __sanitizer_get_current_allocated_bytes(void); /* <sanitizer/allocator_interface.h> */
#endif
static uint64_t heap_bytes(void) {
#if defined(__SANITIZE_ADDRESS__)
  return __sanitizer_get_current_allocated_bytes();
#elif defined(__GLIBC__) && (__GLIBC__ > 2 || __GLIBC_MINOR__ >= 33)
  struct mallinfo2 m = mallinfo2();
  return m.uordblks + m.hblkhd;
#else
  unsigned long long size, resident, shared = 0;
  FILE *f = fopen("/proc/self/statm", "r");
  if (!f) return 0;
  int n = fscanf(f, "%llu %llu %llu", &size, &resident, &shared);
  fclose(f);
  return n == 3 && resident > shared ? (resident - shared) * (uint64_t)sysconf(_SC_PAGESIZE) : 0;
#endif
}

void mem_guard_start(struct mem_guard *g, uint64_t headroom) {
  *g = (struct mem_guard){heap_bytes(), headroom, 0, 0, 0};
}

bool mem_guard_over(struct mem_guard *g, uint64_t allowed, uint64_t now) {
  if (now < g->next_ns) return false;
  g->next_ns = now + 20000000u;
#ifdef __GLIBC__
  if (g->trim_ns && now >= g->trim_ns) /* a dropped socket's memory, back to the system */
    malloc_trim(0), g->trim_ns = 0;
#endif
  uint64_t limit = g->base + g->headroom + allowed, used = heap_bytes();
  if (used <= limit) g->held = 0; /* the last drop took effect */
  /* While libzmq's threads free what the dropped socket held (or if they
   * never do), only more than that counts: no drop after drop. */
  if (g->held) limit = g->held + g->headroom;
  if (!used || used <= limit) return false;
  logf_("ZeroMQ holds %llu MB of messages from peers, more than the %llu MB allowed (a message "
        "of endless parts?): every connection is dropped, and made again",
        (unsigned long long)((used - g->base - allowed) >> 20),
        (unsigned long long)(g->headroom >> 20));
  g->held = used;
  g->trim_ns = now + 200000000u;
  return true;
}
