/* shmlane: list, describe, create and remove segments from the shell.
 * Uses only the public API (shmlane.h), like any other client would.
 * Exit status: 0 success, 1 runtime error, 2 usage error. */
#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"

/* ---------------------------------------------------------------- parsing */

/* Digits only (no sign, no blanks, which strtoull would accept), no overflow. */
static bool parse_uint(const char *s, char **end, int base, uint64_t *out) {
  if (!isdigit((unsigned char)*s)) return false;
  errno = 0;
  unsigned long long v = strtoull(s, end, base);
  if (errno == ERANGE) return false;
  *out = v;
  return true;
}

/* "3,4", "(3,4)", "7"; "" or "()" is ndim 0. */
static bool parse_shape(const char *s, shl_layout *layout) {
  const char *stop = s + strlen(s);
  if (stop - s >= 2 && s[0] == '(' && stop[-1] == ')') s++, stop--;
  layout->ndim = 0;
  if (s == stop) return true;
  for (;;) {
    char *end;
    if (layout->ndim == SHL_MAX_NDIM || !parse_uint(s, &end, 10, &layout->shape[layout->ndim]))
      return false;
    layout->ndim++;
    if (end == stop) return true;
    if (*end != ',') return false;
    s = end + 1;
  }
}

/* Octal permission bits, 1..0777 (0 would mean "default" to shl_create). */
static bool parse_mode(const char *s, uint32_t *mode) {
  char *end;
  uint64_t v;
  if (!parse_uint(s, &end, 8, &v) || *end || v == 0 || v > 0777) return false;
  *mode = (uint32_t)v;
  return true;
}

/* A NumPy type string ("f8", "<i4", "u1", "S16", "?") as the library's
 * canonical format; anything else is returned as given and left to the
 * library's parser. */
static const char *format_from_numpy(const char *s, char out[32]) {
  return shl_format_from_typestr(s, out, 32) >= 0 ? out : s;
}

/* ---------------------------------------------------------------- commands */

enum {
  OPT_JSON,
  OPT_NO_RATE,
  OPT_FORMAT,
  OPT_SHAPE,
  OPT_MODE,
  OPT_REPLACE,
  OPT_DRY_RUN,
  OPT_ALL_DEAD,
  OPT_GRACE,
  OPT_ONCE,
  OPT_REPEAT,
  OPT_COUNT
};

static const struct option {
  const char *name; /* long form, without "--" */
  char letter;      /* short form, 0 if none */
  bool has_value;
} options[OPT_COUNT] = {
    [OPT_JSON] = {"json", 0, false},      [OPT_NO_RATE] = {"no-rate", 0, false},
    [OPT_FORMAT] = {"format", 'f', true}, [OPT_SHAPE] = {"shape", 's', true},
    [OPT_MODE] = {"mode", 'm', true},     [OPT_REPLACE] = {"replace", 0, false},
    [OPT_DRY_RUN] = {"dry-run", 'n', false}, [OPT_ALL_DEAD] = {"all-dead", 0, false},
    [OPT_GRACE] = {"grace", 0, true},     [OPT_ONCE] = {"once", 0, false},
    [OPT_REPEAT] = {"count", 0, true},
};

struct cmdline {
  bool given[OPT_COUNT];
  const char *value[OPT_COUNT];
  char **names;
  int nnames;
};

struct command {
  const char *name;
  int (*run)(const struct cmdline *cl);
  unsigned opts; /* allowed options, 1u << OPT_* */
  int min_names, max_names;
  const char *synopsis, *summary, *details;
};

static int cmd_ls(const struct cmdline *cl) {
  struct snapshot snap;
  int rc = snapshot_take(&snap);
  if (rc < 0) {
    errorf(rc, "cannot list segments");
    return EXIT_RUNTIME;
  }
  if (!cl->given[OPT_NO_RATE]) measure_rates(snap.entries, snap.n);
  uint64_t now = clock_ns(CLOCK_REALTIME);
  if (cl->given[OPT_JSON]) {
    putchar('[');
    for (size_t i = 0; i < snap.n; i++) {
      fputs(i ? ",\n  " : "\n  ", stdout);
      print_info_json(&snap.entries[i], now);
    }
    fputs(snap.n ? "\n]\n" : "]\n", stdout);
  } else {
    print_table(snap.entries, snap.n, now);
  }
  int status = 0;
  if (snap.unreadable) {
    errorf(0, "ls: %zu of %zu entries could not be read (STATUS says why)", snap.unreadable,
           snap.n);
    status = EXIT_RUNTIME;
  }
  snapshot_free(&snap);
  return status;
}

static int cmd_info(const struct cmdline *cl) {
  struct entry e;
  entry_open(&e, cl->names[0], SHL_OPEN_DEFAULT_TIMEOUT_NS);
  if (e.rc) {
    errorf(e.rc, "cannot open '%s'", e.name);
    entry_free(&e);
    return EXIT_RUNTIME;
  }
  if (!cl->given[OPT_NO_RATE]) measure_rates(&e, 1);
  uint64_t now = clock_ns(CLOCK_REALTIME);
  if (cl->given[OPT_JSON]) {
    print_info_json(&e, now);
    putchar('\n');
  } else {
    print_info_text(&e, now);
  }
  entry_free(&e);
  return 0;
}

static int cmd_create(const struct cmdline *cl) {
  const char *name = cl->names[0];
  char converted[32];
  shl_layout layout = {.format = format_from_numpy(cl->value[OPT_FORMAT], converted)};
  shl_create_opts opts = {.size = sizeof(shl_create_opts), .flags = cl->given[OPT_REPLACE] ? SHL_CREATE_REPLACE : 0};
  const char *shape = cl->given[OPT_SHAPE] ? cl->value[OPT_SHAPE] : "";

  int64_t itemsize = shl_format_itemsize(layout.format);
  if (itemsize < 0) {
    errorf((int)itemsize, "bad format '%s'", cl->value[OPT_FORMAT]);
    return EXIT_USAGE;
  }
  if (!parse_shape(shape, &layout)) {
    errorf(0, "bad shape '%s': expected up to %d comma-separated sizes, like 3,4", shape,
           SHL_MAX_NDIM);
    return EXIT_USAGE;
  }
  if (cl->given[OPT_MODE] && !parse_mode(cl->value[OPT_MODE], &opts.mode)) {
    errorf(0, "bad mode '%s': expected octal permission bits 1..0777, like 0640",
           cl->value[OPT_MODE]);
    return EXIT_USAGE;
  }
  shl_segment *seg;
  int rc = shl_create(&seg, name, &layout, &opts);
  if (rc == -EEXIST) {
    errorf(0, "cannot create '%s': %s (--replace removes the existing one first)", name,
           shl_strerror(rc));
    return EXIT_RUNTIME;
  }
  if (rc == SHL_E_BAD_MODE) { /* the rule is the library's: say it as a usage error */
    errorf(0, "bad mode '%s': %s", cl->value[OPT_MODE], shl_strerror(rc));
    return EXIT_USAGE;
  }
  if (rc) {
    errorf(rc, "cannot create '%s'", name);
    return EXIT_RUNTIME;
  }
  shl_close(seg);
  return 0;
}

/* What a path holds when it is not a file, for messages; NULL for a file. */
static const char *file_kind(mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISLNK(mode)) return "a symbolic link";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISCHR(mode) || S_ISBLK(mode)) return "a device node";
  return NULL;
}

/* rm refused (EACCES: glibc's shm_unlink reports the sticky directory's
 * EPERM so) on another user's object: say whose it is and who may. */
static void refused_owner(const char *name, int rc, uid_t uid) {
  char owner[64];
  if (!user_name((uint32_t)uid, owner, sizeof owner)) owner[0] = 0;
  errorf(0, "cannot remove '%s': %s: it belongs to %s%suid %u%s, and in /dev/shm only its owner "
         "(or root) may remove it", name, shl_strerror(rc), owner, owner[0] ? " (" : "",
         (unsigned)uid, owner[0] ? ")" : "");
}

static int cmd_rm(const struct cmdline *cl) {
  int status = 0;
  for (int i = 0; i < cl->nnames; i++) {
    const char *name = cl->names[i];
    int rc = shl_unlink(name);
    if (rc == 0) continue;
    status = EXIT_RUNTIME;
    char path[64];
    struct stat st;
    const char *what = NULL;
    bool st_found = shm_path(name, path, sizeof path) && lstat(path, &st) == 0;
    if (st_found) what = file_kind(st.st_mode);
    /* Anything else under the name is unlinked like a file; a directory is
     * not, and is nothing shmlane made: say so rather than "Is a directory". */
    if (rc == -EISDIR && what)
      errorf(0, "cannot remove '%s': %s is %s, not a segment; left in place (rm removes only "
             "files)", name, path, what);
    else if ((rc == -EACCES || rc == -EPERM) && st_found && st.st_uid != geteuid())
      refused_owner(name, rc, st.st_uid);
    else
      errorf(rc, "cannot remove '%s'", name);
  }
  return status;
}

static int cmd_gc(const struct cmdline *cl) {
  struct gc_opts o = {cl->given[OPT_DRY_RUN], cl->given[OPT_ALL_DEAD],
                      GC_DEFAULT_GRACE_S * 1000000000ull};
  if (cl->given[OPT_GRACE]) {
    char *end;
    uint64_t secs;
    if (!parse_uint(cl->value[OPT_GRACE], &end, 10, &secs) || *end || secs > 100u * 365 * 86400) {
      errorf(0, "gc: bad grace '%s': expected whole seconds, like 10", cl->value[OPT_GRACE]);
      return EXIT_USAGE;
    }
    o.grace_ns = secs * 1000000000u;
  }
  struct list l = {0};
  int status, rc = 0;
  if (cl->nnames) {
    for (int i = 0; i < cl->nnames && rc == 0; i++) rc = collect_name(cl->names[i], &l);
  } else {
    rc = shl_list(collect_name, &l);
  }
  if (rc < 0) {
    errorf(rc, "gc: cannot list segments");
    status = EXIT_RUNTIME;
  } else {
    qsort(l.names, l.n, sizeof *l.names, compare_names);
    status = gc_run(l.names, l.n, &o);
  }
  list_free(&l);
  return status;
}

static int cmd_top(const struct cmdline *cl) {
  struct top_opts o = {cl->given[OPT_JSON], cl->given[OPT_ONCE] ? 1 : 0};
  if (cl->given[OPT_REPEAT]) {
    char *end;
    uint64_t n;
    if (!parse_uint(cl->value[OPT_REPEAT], &end, 10, &n) || *end || n == 0 || n > 1000000 ||
        cl->given[OPT_ONCE]) {
      errorf(0, "top: bad count '%s': expected a number of tables, 1 or more (without --once)",
             cl->value[OPT_REPEAT]);
      return EXIT_USAGE;
    }
    o.count = (unsigned)n;
  }
  return top_run(&o);
}

static const struct command commands[] = {
    {"ls", cmd_ls, 1u << OPT_JSON | 1u << OPT_NO_RATE, 0, 0, "ls [--json] [--no-rate]",
     "list segments",
     "Lists every entry of the shared-memory directory that carries the shmlane\n"
     "prefix, sorted by name, whoever owns it; each is opened read-only and closed\n"
     "again. Entries that cannot be opened (foreign files, corrupt or half-created\n"
     "segments) are listed with STATUS set to the error name; another user's\n"
     "object you may not read as 'private', with its owner; a name that is no\n"
     "valid segment name escaped (\\xNN) with SHL_E_BAD_NAME. If any could not be\n"
     "read at all (an errno such as EACCES or EMFILE), ls exits 1 after listing.\n"
     "\n"
     "Columns: NAME KIND SHAPE BYTES (payload) CHANGES (change counter) PID (creator)\n"
     "ALIVE (yes/no/?) AGE OWNER STATUS STREAM FORMAT. STREAM, for streams only, reads\n"
     "slots=N,readers=ALIVE,seq=LAST,fps=RATE; the rate takes one 0.2 s pause\n"
     "for all streams together.\n"
     "\n"
     "Options:\n"
     "  --json      print a JSON array of objects instead of a table\n"
     "  --no-rate   do not measure frame rates (no pause)\n"},
    {"info", cmd_info, 1u << OPT_JSON | 1u << OPT_NO_RATE, 1, 1, "info [--json] [--no-rate] NAME",
     "describe one segment",
     "Opens the segment read-only, whoever owns it, and prints its layout, owner\n"
     "and header fields; for a stream also its slots, readers, writer, last frame\n"
     "and frame rate (measured over a 0.2 s pause).\n"
     "\n"
     "Options:\n"
     "  --json      print one JSON object\n"
     "  --no-rate   do not measure the frame rate (no pause)\n"},
    {"top", cmd_top, 1u << OPT_ONCE | 1u << OPT_JSON | 1u << OPT_REPEAT, 0, 0,
     "top [--once] [--json] [--count N]", "a live view of streams and segments",
     "Shows every segment in two tables refreshed once a second, until Ctrl-C:\n"
     "streams (writer pid and whether it is alive, frames/s published, last\n"
     "sequence number, readers alive out of the places, slots, age of the last\n"
     "frame, owner, metadata format) and the other segments (kind, shape, change\n"
     "counter and changes/s, creator and whether it has it open, owner, format).\n"
     "Entries that cannot be read are listed with their error name. Rates are\n"
     "measured between two looks: 0.2 s for the first table, then a second.\n"
     "On a terminal each table replaces the last; into a pipe they follow\n"
     "each other, separated by a blank line.\n"
     "\n"
     "Options:\n"
     "  --once      print one table (after a 0.2 s look) and exit\n"
     "  --json      each table as one line of JSON: {\"time_ns\": ..., \"entries\": [...]},\n"
     "              the entries as 'ls --json' prints them, with changes_per_s\n"
     "  --count N   print N tables, then exit\n"},
    {"create", cmd_create, 1u << OPT_FORMAT | 1u << OPT_SHAPE | 1u << OPT_MODE | 1u << OPT_REPLACE,
     1, 1, "create NAME --format F [--shape D,D,...] [--mode OCTAL] [--replace]",
     "create a zero-filled segment",
     "Creates a segment with a zero-filled payload, owned by nobody: it stays until\n"
     "'shmlane rm'. The kind is struct for a T{...} format with ndim 0, else array.\n"
     "\n"
     "Options:\n"
     "  -f, --format F    element format: PEP 3118 (\"<d\", \"B\", \"T{<i:x:<d:y:}\") or a\n"
     "                    NumPy type (\"f8\", \"<i4\", \">u2\", \"u1\", \"c16\", \"?\", \"S16\")\n"
     "  -s, --shape S     comma-separated sizes (\"3,4\"); \"\" or \"()\" (default): ndim 0\n"
     "  -m, --mode OCTAL  permission bits (default 0600)\n"
     "  --replace         remove an existing segment of that name first\n"},
    {"rm", cmd_rm, 0, 1, -1, "rm NAME...", "remove segments",
     "Removes each name. Processes that have a segment open keep their mapping.\n"
     "A directory under a segment's name is reported and left in place; another\n"
     "user's object is reported with its owner (only the owner or root may remove it).\n"},
    {"gc", cmd_gc, 1u << OPT_DRY_RUN | 1u << OPT_ALL_DEAD | 1u << OPT_GRACE, 0, -1,
     "gc [--dry-run] [--all-dead] [--grace SECONDS] [NAME...]",
     "remove segments nobody uses any more",
     "Removes, among the given names (default: every segment) and among this user's\n"
     "objects only (root: everyone's):\n"
     "  - streams whose writer is dead or gone and that have no live reader;\n"
     "  - objects never initialised whose creator died (nobody holds its creator\n"
     "    role lock), and zero-sized ones whose last change is older than the grace\n"
     "    period;\n"
     "  - with --all-dead, also arrays and structs whose creator is dead.\n"
     "A segment normally outlives its creator and nothing records who else has an\n"
     "array or struct open, so those are kept unless --all-dead asks. Foreign,\n"
     "corrupt and unreadable entries are never removed (use 'shmlane rm').\n"
     "Prints one line per segment removed. Several gc may run at once.\n"
     "\n"
     "Options:\n"
     "  -n, --dry-run      print what would be removed, remove nothing\n"
     "  --all-dead         also remove arrays and structs whose creator is dead\n"
     "  --grace SECONDS    age before an empty never-initialised object goes (default 10)\n"},
    /* Handed to the shmlane-bridge program (main): only its help is here. */
    {"bridge", NULL, 0, 0, 0,
     "bridge send NAME ENDPOINT | recv ENDPOINT [LOCAL_NAME] | keygen PREFIX [options]",
     "carry a stream to other hosts over ZeroMQ",
     "send: reads the local stream NAME and serves it on a ZeroMQ endpoint:\n"
     "ipc://PATH on this machine, tcp://HOST:PORT across hosts. recv: connects to one\n"
     "and writes a local stream of the same layout, named like the sender's unless\n"
     "LOCAL_NAME is given; its readers see the sender's sequence numbers, metadata,\n"
     "losses, writer death and layout changes as local readers do. Both run until\n"
     "SIGINT/SIGTERM and print statistics once a second. keygen: writes a CURVE key\n"
     "pair to PREFIX.key (secret, 0600) and PREFIX.pub. Over ipc only users who may\n"
     "read the stream are served; TCP needs keys (or --insecure). Runs the\n"
     "shmlane-bridge program (beside shmlane or on PATH), built when libzmq is\n"
     "found. See docs/bridge.md.\n"
     "\n"
     "Options:\n"
     "  --key FILE         our key pair (PREFIX.key): the sender's; a receiver's for --allow\n"
     "  --server-key FILE  recv: the sender's public key (PREFIX.pub); turns CURVE on\n"
     "  --allow FILE       send: accept only receivers with these public keys (repeatable)\n"
     "  --insecure         TCP without keys (any local user, or anyone on the network,\n"
     "                     may connect); ipc: take a sender of another user\n"
     "  --max-receivers N  send: receivers served at once (default 16)\n"
     "  --zstd             send: compress frames with zstd (level 1; --zstd=LEVEL, -7..19)\n"
     "  --zstd-threads N   send: zstd's worker threads (default 2)\n"
     "  --delta, --no-delta  send: code rows as differences before zstd (default: byte images)\n"
     "  --jpeg             send: JPEG, lossy, for byte images (H,W,3), (H,W), (H,W,1)\n"
     "                     (quality 85; --jpeg=QUALITY, 1..100); others as without it\n"
     "  --latest           send: newest frames only (a slow link skips, never queues)\n"
     "  --max-fps N        send: at most N frames a second; the others count as lost\n"
     "  --hwm N            frames queued per receiver before dropping (default 4)\n"
     "  --slots N          recv: slots of the local stream (default: the sender's)\n"
     "  --seconds N        stop after N seconds\n"
     "  --quiet            no statistics\n"},
};

enum { NCOMMANDS = sizeof commands / sizeof commands[0] };

static void print_help(void) {
  printf(
      "Usage: shmlane [--help] [--version] COMMAND [ARGS]\n\n"
      "Named, self-describing shared-memory segments (%s).\n\nCommands:\n",
      SHL_POSIX_PREFIX "NAME");
  for (size_t i = 0; i < NCOMMANDS; i++)
    printf("  %-8s %s\n", commands[i].name, commands[i].summary);
  printf(
      "\nRun 'shmlane COMMAND --help' for details.\n"
      "Exit status: 0 success, 1 runtime error, 2 usage error.\n");
}

static void print_command_help(const struct command *cmd) {
  printf("Usage: shmlane %s\n\n%s", cmd->synopsis, cmd->details);
}

/* Index of the option `arg` names, and its value; -1 after reporting why not. */
static int match_option(const struct command *cmd, char **argv, int argc, int *i,
                        const char **value) {
  const char *arg = argv[*i], *inline_value = NULL;
  int id = -1;
  for (int o = 0; o < OPT_COUNT && id < 0; o++) {
    if (!(cmd->opts & 1u << o)) continue;
    size_t len = strlen(options[o].name);
    if (arg[1] == '-' && !strncmp(arg + 2, options[o].name, len) &&
        (arg[2 + len] == '\0' || arg[2 + len] == '=')) {
      id = o;
      if (arg[2 + len] == '=') inline_value = arg + 3 + len;
    } else if (arg[1] != '-' && options[o].letter && arg[1] == options[o].letter) {
      id = o;
      if (arg[2]) inline_value = arg + 2;
    }
  }
  if (id < 0) {
    errorf(0, "%s: unknown option '%s' (see 'shmlane %s --help')", cmd->name, arg, cmd->name);
    return -1;
  }
  if (!options[id].has_value) {
    if (!inline_value) return id;
    errorf(0, "%s: option '--%s' takes no value", cmd->name, options[id].name);
    return -1;
  }
  if (inline_value) {
    *value = inline_value;
  } else if (*i + 1 < argc) {
    *value = argv[++*i];
  } else {
    errorf(0, "%s: option '%s' needs a value", cmd->name, arg);
    return -1;
  }
  return id;
}

/* Options may come before or after names; names are gathered at the front
 * of argv. Returns 0, EXIT_USAGE after a message, or -1 when help was asked. */
static int parse_cmdline(const struct command *cmd, int argc, char **argv, struct cmdline *cl) {
  bool options_done = false;
  cl->names = argv;
  for (int i = 0; i < argc; i++) {
    char *arg = argv[i];
    if (options_done || arg[0] != '-' || arg[1] == '\0') {
      argv[cl->nnames++] = arg;
    } else if (!strcmp(arg, "--")) {
      options_done = true;
    } else if (!strcmp(arg, "-h") || !strcmp(arg, "--help")) {
      return -1;
    } else {
      const char *value = NULL;
      int id = match_option(cmd, argv, argc, &i, &value);
      if (id < 0) return EXIT_USAGE;
      cl->given[id] = true;
      cl->value[id] = value;
    }
  }
  if (cl->nnames < cmd->min_names) {
    errorf(0, "%s: missing NAME (see 'shmlane %s --help')", cmd->name, cmd->name);
    return EXIT_USAGE;
  }
  if (cmd->max_names >= 0 && cl->nnames > cmd->max_names) {
    errorf(0, "%s: unexpected argument '%s' (see 'shmlane %s --help')", cmd->name,
           cl->names[cmd->max_names], cmd->name);
    return EXIT_USAGE;
  }
  if ((cmd->opts & 1u << OPT_FORMAT) && !cl->given[OPT_FORMAT]) {
    errorf(0, "%s: missing --format (see 'shmlane %s --help')", cmd->name, cmd->name);
    return EXIT_USAGE;
  }
  for (int i = 0; i < cl->nnames; i++) {
    int rc = shl_name_check(cl->names[i]);
    if (rc) {
      errorf(0, "bad name '%s': %s; a name is 1 to %d characters from A-Z a-z 0-9 . _ -, "
                "starting with a letter or digit", cl->names[i], shl_strerror(rc), SHL_NAME_MAX);
      return EXIT_USAGE;
    }
  }
  return 0;
}

/* Output that did not reach its destination (full disk, closed pipe) is a failure. */
static int finish(int status) {
  errno = 0;
  if (fflush(stdout) != 0 || ferror(stdout)) {
    errorf(errno ? -errno : -EIO, "cannot write output");
    return EXIT_RUNTIME;
  }
  return status;
}

/* `shmlane bridge ARGS`: exec shmlane-bridge ARGS, found beside this program
 * (installed), in ../bridge/ (a build tree) or on PATH. */
static int run_bridge(char **argv) {
  static const char prog[] = "shmlane-bridge";
  char self[4096], path[4096 + 32];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  argv[0] = (char *)prog;
  if (n > 0) {
    self[n] = 0;
    char *slash = strrchr(self, '/');
    if (slash) *slash = 0;
    const char *places[] = {"%s/%s", "%s/../bridge/%s"};
    for (size_t i = 0; i < 2; i++) {
      snprintf(path, sizeof path, places[i], self, prog);
      if (access(path, X_OK) == 0) execv(path, argv);
    }
  }
  execvp(prog, argv);
  errorf(0, "bridge: %s was not found beside shmlane or on PATH: this install was built "
         "without libzmq. The wheels include the bridge; 'pip install .' and meson build it "
         "where libzmq's development files are found (Debian: libzmq3-dev, and libzstd-dev, "
         "libjpeg62-turbo-dev, pkg-config for --zstd, --jpeg; 'make deps' installs them): "
         "install them and reinstall, or build the source tree ('make deps build') and run "
         "build/tools/shmlane", prog);
  return EXIT_RUNTIME;
}

int main(int argc, char **argv) {
  if (argc > 2 && !strcmp(argv[1], "bridge") && strcmp(argv[2], "-h") && strcmp(argv[2], "--help"))
    return run_bridge(argv + 1);
  if (argc < 2) {
    errorf(0, "missing command (see 'shmlane --help')");
    return EXIT_USAGE;
  }
  const char *arg = argv[1];
  if (!strcmp(arg, "-h") || !strcmp(arg, "--help")) {
    print_help();
    return finish(0);
  }
  if (!strcmp(arg, "-V") || !strcmp(arg, "--version")) {
    printf("shmlane %s\n", shl_version_string());
    return finish(0);
  }
  for (size_t i = 0; i < NCOMMANDS; i++) {
    if (strcmp(arg, commands[i].name) != 0) continue;
    struct cmdline cl = {0};
    int rc = parse_cmdline(&commands[i], argc - 2, argv + 2, &cl);
    if (rc < 0) {
      print_command_help(&commands[i]);
      return finish(0);
    }
    if (rc == 0 && !commands[i].run) { /* `shmlane bridge` alone */
      errorf(0, "%s: missing subcommand (see 'shmlane %s --help')", arg, arg);
      return EXIT_USAGE;
    }
    return rc ? rc : finish(commands[i].run(&cl));
  }
  errorf(0, "unknown %s '%s' (see 'shmlane --help')", arg[0] == '-' ? "option" : "command", arg);
  return EXIT_USAGE;
}
