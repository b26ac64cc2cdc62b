/* shmlane-bridge: carry a shmlane stream to other hosts over ZeroMQ.
 *
 *   shmlane-bridge send NAME ENDPOINT [options]
 *   shmlane-bridge recv ENDPOINT [LOCAL_NAME] [options]
 *   shmlane-bridge keygen PREFIX
 *
 * Normally run as `shmlane bridge ...` (tools/cli.c hands it over). Exit
 * status: 0 stopped by SIGINT/SIGTERM (or --seconds), 1 runtime error, 2
 * usage error. docs/bridge.md describes it all. This file is the entry
 * point only: options, the security rule, then one of the sides. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bridge.h"

static void usage(FILE *f) {
  fputs(
      "Usage: shmlane bridge send NAME ENDPOINT [options]\n"
      "       shmlane bridge recv ENDPOINT [LOCAL_NAME] [options]\n"
      "       shmlane bridge keygen PREFIX\n"
      "See 'shmlane bridge --help' and docs/bridge.md.\n",
      f);
}

/* --jpeg's quality when none is given: GStreamer's jpegenc's default
 * (docs/bridge.md, Compression, says what it costs and why). */
#define JPEG_QUALITY 85

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

/* Options without a value. */
static bool is_flag(const char *opt) {
  static const char *const flags[] = {"--insecure", "--latest", "--quiet", "--zstd", "--delta",
                                      "--no-delta", "--jpeg"};
  for (size_t i = 0; i < sizeof flags / sizeof *flags; i++)
    if (!strcmp(opt, flags[i])) return true;
  return false;
}

/* One option (and its value); false if unknown or out of range. */
static bool set_option(struct bridge_opts *o, const char *opt, const char *v) {
  double num = 0;
  if (!strcmp(opt, "--key"))
    o->key = v;
  else if (!strcmp(opt, "--server-key"))
    o->server_key = v;
  else if (!strcmp(opt, "--allow") && o->nallow < MAX_ALLOW)
    o->allow[o->nallow++] = v;
  else if (!strcmp(opt, "--insecure") && !v)
    o->insecure = true;
  else if (!strcmp(opt, "--latest") && !v)
    o->latest = true;
  else if (!strcmp(opt, "--quiet") && !v)
    o->quiet = true;
  else if (!strcmp(opt, "--zstd") && (!v || parse_num(v, -7, 19, &num)) && (!v || num != 0))
    o->codec.zstd_level = v ? (int)num : 1;
  else if (!strcmp(opt, "--zstd-threads") && parse_num(v, 0, 16, &num))
    o->codec.zstd_threads = (int)num;
  else if ((!strcmp(opt, "--delta") || !strcmp(opt, "--no-delta")) && !v)
    o->codec.delta = opt[2] == 'd';
  else if (!strcmp(opt, "--jpeg") && (!v || parse_num(v, 1, 100, &num)))
    o->codec.jpeg_quality = v ? (int)num : JPEG_QUALITY;
  else if (!strcmp(opt, "--max-fps") && parse_num(v, 0.001, 1e6, &num))
    o->max_fps = num;
  else if (!strcmp(opt, "--hwm") && parse_num(v, 1, 1000, &num))
    o->hwm = (int)num;
  else if (!strcmp(opt, "--max-receivers") && parse_num(v, 1, 1024, &num))
    o->max_receivers = (int)num;
  else if (!strcmp(opt, "--slots") && parse_num(v, 2, SHL_STREAM_MAX_SLOTS, &num))
    o->slots = (uint32_t)num;
  else if (!strcmp(opt, "--seconds") && parse_num(v, 0.001, 1e9, &num))
    o->seconds = num;
  else
    return false;
  return true;
}

/* Without keys only ipc:// tells users apart (docs/bridge.md, Security). */
static int check_security(const char *cmd, const struct bridge_opts *o, bool send) {
  if (send ? (!o->key && o->nallow) : (o->key && !o->server_key)) {
    logf_("%s: %s", cmd,
          send ? "--allow needs --key (the allow list is of CURVE keys)"
               : "--key needs --server-key (the sender's public key)");
    return EXIT_USAGE;
  }
  bool keys = send ? o->key != NULL : o->server_key != NULL;
  if (keys || o->ep.ipc || o->insecure) return 0;
  logf_("%s: %s without keys: TCP tells no users apart, so %s could %s. On one machine use "
        "ipc://PATH (only users who may read the stream are served); across hosts CURVE keys "
        "(%s; see 'shmlane bridge keygen'); or --insecure to go without",
        cmd, o->ep.text,
        o->ep.loopback ? "every local user" : "anyone who reaches the address",
        send ? "receive the stream's frames" : "pose as the sender",
        send ? "--key" : "--server-key");
  return EXIT_USAGE;
}

int main(int argc, char **argv) {
  if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
    usage(argc < 2 ? stderr : stdout);
    return argc < 2 ? EXIT_USAGE : 0;
  }
  const char *cmd = argv[1];
  struct bridge_opts o = {.hwm = 4, .max_receivers = 16, .codec = {.delta = -1, .zstd_threads = 2}};
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
    if (!is_flag(opt) && !v) {
      if (i + 1 == argc) {
        logf_("%s: option '%s' needs a value", cmd, opt);
        return EXIT_USAGE;
      }
      v = argv[++i];
    }
    if (!set_option(&o, opt, v)) {
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
  if (o.name && shl_name_check(o.name)) {
    logf_("%s: bad stream name '%s'", cmd, o.name);
    return EXIT_USAGE;
  }
  char prefix[32];
  snprintf(prefix, sizeof prefix, "shmlane bridge %s", cmd);
  set_log_prefix(prefix);
  int rc = endpoint_parse(send ? pos[1] : pos[0], send, &o.ep);
  if (rc || (rc = check_security(cmd, &o, send))) return rc;
  struct sigaction sa = {.sa_handler = on_signal};
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);
  return send ? run_send(&o) : run_recv(&o);
}
