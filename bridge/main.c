/* shmlane-bridge: carry a shmlane stream to other hosts over ZeroMQ.
 *
 *   shmlane-bridge send NAME ENDPOINT [options]
 *   shmlane-bridge recv ENDPOINT [LOCAL_NAME] [options]
 *   shmlane-bridge keygen PREFIX
 *
 * Normally run as `shmlane bridge ...` (tools/cli.c hands it over). Exit
 * status: 0 stopped by SIGINT/SIGTERM (or --seconds), 1 runtime error, 2
 * usage error. docs/bridge.md describes it all. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "bridge.h"

volatile sig_atomic_t stop_requested;
static char log_prefix[64] = "shmlane-bridge";

static void vlog(const char *fmt, va_list ap) {
  char line[1024];
  vsnprintf(line, sizeof line, fmt, ap);
  fprintf(stderr, "%s: %s\n", log_prefix, line);
}

void logf_(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vlog(fmt, ap);
  va_end(ap);
}

void log_limited(uint64_t *last_ns, const char *fmt, ...) {
  uint64_t now = now_ns();
  if (*last_ns && now - *last_ns < 1000000000u) return;
  *last_ns = now;
  va_list ap;
  va_start(ap, fmt);
  vlog(fmt, ap);
  va_end(ap);
}

static uint64_t clock_of(clockid_t c) {
  struct timespec ts;
  clock_gettime(c, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}
uint64_t now_ns(void) { return clock_of(CLOCK_MONOTONIC); }
uint64_t realtime_ns(void) { return clock_of(CLOCK_REALTIME); }

bool endpoint_is_local(const char *e) {
  if (!strncmp(e, "ipc://", 6) || !strncmp(e, "inproc://", 9)) return true;
  if (strncmp(e, "tcp://", 6) != 0) return false;
  e += 6;
  const char *semi = strchr(e, ';'); /* "tcp://source;dest": judge the destination */
  if (semi) e = semi + 1;
  return !strncmp(e, "127.", 4) || !strncmp(e, "localhost:", 10) || !strncmp(e, "[::1]:", 6) ||
         !strncmp(e, "lo:", 3);
}

/* ---------------------------------------------------------------- keys */

/* "public = <Z85>" and "secret = <Z85>" lines, as keygen writes them. */
int read_key_file(const char *path, char public_key[41], char secret_key[41]) {
  FILE *f = fopen(path, "r");
  if (!f) return -errno;
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

static int keygen(const char *prefix) {
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

/* ---------------------------------------------------------------- sockets */

static int set_str(void *sock, int option, const char *value) {
  return zmq_setsockopt(sock, option, value, strlen(value));
}

static int set_int(void *sock, int option, int value) {
  return zmq_setsockopt(sock, option, &value, sizeof value);
}

/* CURVE keys (both sides), bounded queues, quick reconnects and heartbeats
 * that notice a dead link within seconds. */
int setup_socket(void *sock, const struct bridge_opts *o, bool server) {
  char pub[41], sec[41], server_pub[41];
  int rc;
  set_int(sock, ZMQ_LINGER, 0);
  set_int(sock, server ? ZMQ_SNDHWM : ZMQ_RCVHWM, o->hwm);
  set_int(sock, ZMQ_RECONNECT_IVL, 100);
  set_int(sock, ZMQ_RECONNECT_IVL_MAX, 1000);
  set_int(sock, ZMQ_HEARTBEAT_IVL, 1000);
  set_int(sock, ZMQ_HEARTBEAT_TIMEOUT, 3000);
  set_int(sock, ZMQ_HEARTBEAT_TTL, 3000);
  /* No peer may make us allocate a message larger than any frame could be. */
  int64_t maxsize = (int64_t)4 << 30;
  zmq_setsockopt(sock, ZMQ_MAXMSGSIZE, &maxsize, sizeof maxsize);
  if (server && o->key) {
    if ((rc = read_key_file(o->key, pub, sec))) {
      logf_("cannot read key file %s: %s", o->key,
            rc == -EINVAL ? "no 'public' and 'secret' lines (make one with 'shmlane bridge keygen')"
                          : strerror(-rc));
      return EXIT_USAGE;
    }
    set_int(sock, ZMQ_CURVE_SERVER, 1);
    set_str(sock, ZMQ_CURVE_SECRETKEY, sec);
    set_str(sock, ZMQ_ZAP_DOMAIN, "shmlane");
  } else if (!server && o->server_key) {
    if ((rc = read_key_file(o->server_key, server_pub, NULL))) {
      logf_("cannot read the sender's public key %s: %s", o->server_key,
            rc == -EINVAL ? "no 'public' line" : strerror(-rc));
      return EXIT_USAGE;
    }
    if (o->key) {
      if ((rc = read_key_file(o->key, pub, sec))) {
        logf_("cannot read key file %s: %s", o->key,
              rc == -EINVAL ? "no 'public' and 'secret' lines" : strerror(-rc));
        return EXIT_USAGE;
      }
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

/* Reads one monitor event; a sentence for a failed handshake, else NULL. */
const char *handshake_failure(void *monitor, bool server, char *peer, size_t peer_size,
                              int *event_out) {
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
  if (event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH)
    return server ? "refused a receiver whose key is not in the --allow list"
                  : "the sender refused our key: it is not in the sender's --allow list";
  if (event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL) {
    if (value == ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH)
      return server
                 ? "a receiver's security does not match ours (one side has keys, the other none)"
                 : "the sender's security does not match ours (one side has keys, the other "
                   "none): give --server-key, or run both without keys";
    if (value == ZMQ_PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC)
      return server ? "a receiver failed the CURVE handshake: it has the wrong --server-key"
                    : "CURVE handshake failed: --server-key is not the sender's public key";
    return "handshake failed (protocol error: not a shmlane bridge peer?)";
  }
  if (event == ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL)
    return server ? "a receiver's handshake failed"
                  : "handshake with the sender failed (with CURVE: is --server-key the sender's "
                    "public key?)";
  return NULL;
}

/* ---------------------------------------------------------------- options */

static void usage(FILE *f) {
  fputs(
      "Usage: shmlane bridge send NAME ENDPOINT [options]\n"
      "       shmlane bridge recv ENDPOINT [LOCAL_NAME] [options]\n"
      "       shmlane bridge keygen PREFIX\n"
      "See 'shmlane bridge --help' and docs/bridge.md.\n",
      f);
}

static bool parse_num(const char *s, double lo, double hi, double *out) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (errno || end == s || *end || !(v >= lo && v <= hi)) return false;
  *out = v;
  return true;
}

static void on_signal(int sig) {
  (void)sig;
  stop_requested = 1;
}

int main(int argc, char **argv) {
  if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
    usage(argc < 2 ? stderr : stdout);
    return argc < 2 ? EXIT_USAGE : 0;
  }
  const char *cmd = argv[1];
  struct bridge_opts o = {.hwm = 4};
  const char *pos[3];
  int npos = 0;
  for (int i = 2; i < argc; i++) {
    const char *a = argv[i], *v = NULL;
    const char *eq = strchr(a, '=');
    char opt[32] = "";
    if (a[0] != '-' || a[1] != '-') {
      if (npos == 3) {
        logf_("%s: unexpected argument '%s'", cmd, a);
        return EXIT_USAGE;
      }
      pos[npos++] = a;
      continue;
    }
    snprintf(opt, sizeof opt, "%.*s", eq ? (int)(eq - a) : (int)strlen(a), a);
    if (eq) v = eq + 1;
    bool takes = strcmp(opt, "--insecure") && strcmp(opt, "--latest") && strcmp(opt, "--quiet") &&
                 strcmp(opt, "--zstd");
    if (takes && !v) {
      if (i + 1 == argc) {
        logf_("%s: option '%s' needs a value", cmd, opt);
        return EXIT_USAGE;
      }
      v = argv[++i];
    }
    double num = 0;
    if (!strcmp(opt, "--key"))
      o.key = v;
    else if (!strcmp(opt, "--server-key"))
      o.server_key = v;
    else if (!strcmp(opt, "--allow") && o.nallow < MAX_ALLOW)
      o.allow[o.nallow++] = v;
    else if (!strcmp(opt, "--insecure") && !v)
      o.insecure = true;
    else if (!strcmp(opt, "--latest") && !v)
      o.latest = true;
    else if (!strcmp(opt, "--quiet") && !v)
      o.quiet = true;
    else if (!strcmp(opt, "--zstd") && (!v || parse_num(v, 1, 19, &num)))
      o.zstd_level = v ? (int)num : 3;
    else if (!strcmp(opt, "--max-fps") && parse_num(v, 0.001, 1e6, &num))
      o.max_fps = num;
    else if (!strcmp(opt, "--hwm") && parse_num(v, 1, 100000, &num))
      o.hwm = (int)num;
    else if (!strcmp(opt, "--slots") && parse_num(v, 2, SHL_STREAM_MAX_SLOTS, &num))
      o.slots = (uint32_t)num;
    else if (!strcmp(opt, "--seconds") && parse_num(v, 0.001, 1e9, &num))
      o.seconds = num;
    else {
      logf_("%s: bad option '%s'%s%s (see 'shmlane bridge --help')", cmd, opt, v ? " " : "",
            v ? v : "");
      return EXIT_USAGE;
    }
  }
  if (!strcmp(cmd, "keygen")) {
    if (npos != 1) {
      usage(stderr);
      return EXIT_USAGE;
    }
    return keygen(pos[0]);
  }
  bool send = !strcmp(cmd, "send");
  if (!send && strcmp(cmd, "recv")) {
    logf_("unknown command '%s'", cmd);
    usage(stderr);
    return EXIT_USAGE;
  }
  if ((send && npos != 2) || (!send && (npos < 1 || npos > 2))) {
    usage(stderr);
    return EXIT_USAGE;
  }
  o.name = send ? pos[0] : (npos == 2 ? pos[1] : NULL);
  o.endpoint = send ? pos[1] : pos[0];
  if (o.name && shl_name_check(o.name)) {
    logf_("%s: bad stream name '%s'", cmd, o.name);
    return EXIT_USAGE;
  }
  if (send ? !o.key && (o.nallow) : (o.key && !o.server_key)) {
    logf_("%s: %s", cmd,
          send ? "--allow needs --key (the allow list is of CURVE keys)"
               : "--key needs --server-key (the sender's public key)");
    return EXIT_USAGE;
  }
  bool secure = send ? o.key != NULL : o.server_key != NULL;
  if (!secure && !o.insecure && !endpoint_is_local(o.endpoint)) {
    logf_(
        "%s: %s is not a loopback endpoint: across hosts the bridge uses CURVE keys (%s; "
        "see 'shmlane bridge keygen'), or --insecure to go without",
        cmd, o.endpoint, send ? "--key" : "--server-key");
    return EXIT_USAGE;
  }
  snprintf(log_prefix, sizeof log_prefix, "shmlane bridge %s", cmd);
  struct sigaction sa = {.sa_handler = on_signal};
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);
  return send ? run_send(&o) : run_recv(&o);
}
