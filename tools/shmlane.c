/* shmlane: list, describe, create and remove segments from the shell.
 * Uses only the public API (shmlane.h), like any other client would.
 * Exit status: 0 success, 1 runtime error, 2 usage error. */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "shmlane.h"

enum { EXIT_RUNTIME = 1, EXIT_USAGE = 2 };

/* ---------------------------------------------------------------- messages */

/* One line on stderr: "shmlane: <what>[: <reason for rc>]". */
static void errorf(int rc, const char *fmt, ...) {
  va_list ap;
  fputs("shmlane: ", stderr);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  if (rc) fprintf(stderr, ": %s", shl_strerror(rc));
  fputc('\n', stderr);
}

/* Strings read from the shared-memory directory or a segment header are
 * untrusted (a format may hold any blank, newlines included): print one '?'
 * per non-printable byte, so terminals stay sane and one byte is one column. */
static void put_text(const char *s) {
  for (; *s; s++) putchar(isprint((unsigned char)*s) ? *s : '?'); /* "C" locale: ASCII */
}

/* A JSON string. Names and formats are ASCII; any other byte becomes U+FFFD,
 * so the output is valid JSON whatever the bytes. */
static void json_string(const char *s) {
  const unsigned char *p = (const unsigned char *)s;
  putchar('"');
  for (; *p; p++) {
    if (*p == '"' || *p == '\\')
      printf("\\%c", *p);
    else if (*p < 0x20 || *p == 0x7F)
      printf("\\u%04x", *p);
    else if (*p < 0x80)
      putchar(*p);
    else
      fputs("\\ufffd", stdout);
  }
  putchar('"');
}

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

/* NumPy-style shorthand ("f8", "<i4", "u1", "?") to a PEP 3118 format with
 * standard sizes and an explicit byte order; anything else is returned as
 * given and left to the library's parser. */
static const char *format_from_numpy(const char *s, char out[8]) {
  static const struct {
    const char *numpy, *code;
  } codes[] = {
      {"?", "?"},  {"b1", "?"}, {"i1", "b"}, {"u1", "B"},  {"i2", "h"},
      {"u2", "H"}, {"i4", "i"}, {"u4", "I"}, {"i8", "q"},  {"u8", "Q"},
      {"f2", "e"}, {"f4", "f"}, {"f8", "d"}, {"c8", "Zf"}, {"c16", "Zd"},
  };
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  char order = '<';
#else
  char order = '>';
#endif
  const char *p = s;
  if (*p == '<' || *p == '>')
    order = *p++;
  else if (*p == '=' || *p == '|')
    p++;
  for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
    if (strcmp(p, codes[i].numpy) != 0) continue;
    size_t used = 0;
    if (!strchr("?bB", codes[i].code[0])) out[used++] = order; /* moot for one byte */
    snprintf(out + used, 8 - used, "%s", codes[i].code);
    return out;
  }
  return s;
}

/* ---------------------------------------------------------------- describing */

/* A segment as read (and closed again: a listing holds one descriptor at a
 * time, however many entries), or why it could not be read. */
struct entry {
  const char *name;
  int rc;       /* 0: described below */
  char *format; /* owned copy; layout.format points to it */
  shl_info info;
  shl_layout layout;
  char owner[64]; /* user name, or the uid in decimal when it has none */
  bool owner_named;
  /* Streams only: */
  shl_stream_info stream;
  uint64_t sampled_ns; /* CLOCK_MONOTONIC when `stream` was read */
  double fps;          /* < 0: not measured */
};

static uint64_t clock_ns(clockid_t clock) {
  struct timespec ts;
  clock_gettime(clock, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static bool is_stream(const struct entry *e) {
  return e->rc == 0 && e->info.kind == SHL_KIND_STREAM;
}

/* The stream's counters, and when they were read: the frame timestamps
 * are CLOCK_MONOTONIC too, so ages need no second clock reading. */
static int sample_stream(const shl_segment *seg, shl_stream_info *out, uint64_t *when) {
  int rc = shl_stream_get_info(seg, out);
  *when = clock_ns(CLOCK_MONOTONIC);
  return rc;
}

/* Read-only, whoever owns it: looking is not trusting (the tool never acts
 * on another user's data; gc checks ownership itself). */
static int open_any_owner(shl_segment **seg, const char *name, int64_t timeout_ns) {
  shl_open_opts opts = SHL_OPEN_OPTS_INIT;
  opts.flags = SHL_OPEN_READONLY;
  opts.timeout_ns = timeout_ns;
  opts.owner = SHL_OWNER_ANY;
  return shl_open_ex(seg, name, &opts);
}

/* The user name of uid, or false. One lookup per distinct uid in a row:
 * a listing's entries mostly share an owner. */
static bool user_name(uint32_t uid, char *buf, size_t size) {
  static uint32_t last_uid;
  static char last_name[64];
  static int last_found = -1; /* -1: nothing looked up yet */
  if (last_found < 0 || uid != last_uid) {
    struct passwd *pw = getpwuid((uid_t)uid);
    last_uid = uid;
    last_found = pw && strlen(pw->pw_name) < sizeof last_name;
    if (last_found) snprintf(last_name, sizeof last_name, "%s", pw->pw_name);
  }
  if (last_found) snprintf(buf, size, "%s", last_name);
  return last_found;
}

static void entry_open(struct entry *e, const char *name, int64_t timeout_ns) {
  shl_segment *seg = NULL;
  e->name = name;
  e->format = NULL;
  e->fps = -1;
  e->rc = open_any_owner(&seg, name, timeout_ns);
  if (e->rc == 0) e->rc = shl_get_info(seg, &e->info);
  if (e->rc == 0) {
    shl_get_layout(seg, &e->layout);
    e->layout.format = e->format = strdup(e->layout.format);
    if (!e->format) e->rc = -ENOMEM;
  }
  if (e->rc == 0) {
    e->owner_named = user_name(e->info.uid, e->owner, sizeof e->owner);
    if (!e->owner_named) snprintf(e->owner, sizeof e->owner, "%" PRIu32, e->info.uid);
  }
  /* A stream whose control area does not check out is as broken as a bad header. */
  if (is_stream(e)) e->rc = sample_stream(seg, &e->stream, &e->sampled_ns);
  shl_close(seg);
}

/* A second look at an entry's stream, by name: the same stream only (a new
 * one made under the name since has other creation stamps). */
static int resample_stream(const struct entry *e, shl_stream_info *out, uint64_t *when) {
  shl_segment *seg;
  shl_info now;
  int rc = open_any_owner(&seg, e->name, 0);
  if (rc < 0) return rc;
  rc = shl_get_info(seg, &now);
  if (rc == 0 && (now.created_ns != e->info.created_ns || now.creator_pid != e->info.creator_pid))
    rc = -ESTALE;
  if (rc == 0) rc = sample_stream(seg, out, when);
  shl_close(seg);
  return rc;
}

enum { RATE_WINDOW_NS = 200000000 };

/* Frames per second between two samples of one stream. Measured over whole
 * frame intervals (the frames' own publish times) when both samples saw a
 * frame: the 0.2 s window alone would read a 30 fps stream as 25 or 35. */
static double frame_rate(const shl_stream_info *a, uint64_t a_ns, const shl_stream_info *b,
                         uint64_t b_ns) {
  if (b->last_seq <= a->last_seq) return 0;
  double frames = (double)(b->last_seq - a->last_seq);
  if (a->last_seq && b->last_timestamp_ns > a->last_timestamp_ns)
    return frames * 1e9 / (double)(b->last_timestamp_ns - a->last_timestamp_ns);
  return frames * 1e9 / (double)(b_ns - a_ns);
}

/* Sample every stream a second time after one shared pause: a listing costs
 * a single window however many streams it holds, and none without streams. */
static void measure_rates(struct entry *entries, size_t n) {
  bool any = false;
  for (size_t i = 0; i < n; i++) any |= is_stream(&entries[i]);
  if (!any) return;
  struct timespec left = {0, RATE_WINDOW_NS};
  while (nanosleep(&left, &left) != 0 && errno == EINTR) continue;
  for (size_t i = 0; i < n; i++) {
    struct entry *e = &entries[i];
    shl_stream_info later;
    uint64_t when;
    if (!is_stream(e) || resample_stream(e, &later, &when) != 0) continue;
    e->fps = frame_rate(&e->stream, e->sampled_ns, &later, when);
    e->stream = later;
    e->sampled_ns = when;
  }
}

/* Time from the newest frame's publication to the sample; false if none yet. */
static bool last_frame_age(const struct entry *e, uint64_t *ns) {
  const shl_stream_info *s = &e->stream;
  if (!s->last_seq) return false;
  *ns = e->sampled_ns > s->last_timestamp_ns ? e->sampled_ns - s->last_timestamp_ns : 0;
  return true;
}

static const char *kind_name(uint32_t kind) {
  switch (kind) {
  case SHL_KIND_ARRAY: return "array";
  case SHL_KIND_STRUCT: return "struct";
  case SHL_KIND_STREAM: return "stream";
  default: return "unknown";
  }
}

/* shl_info.creator_alive (1 alive, 0 dead, -1 unknown) for people or for JSON. */
static const char *alive_text(int alive, bool json) {
  static const char *const words[2][3] = {{"?", "no", "yes"}, {"null", "false", "true"}};
  return words[json][alive < 0 ? 0 : alive > 0 ? 2 : 1];
}

/* "3,4", or "()" for ndim 0: the form --shape accepts. */
static void shape_text(const shl_layout *lo, char *buf, size_t size) {
  size_t used = (size_t)snprintf(buf, size, "%s", lo->ndim ? "" : "()");
  for (uint32_t i = 0; i < lo->ndim && used < size; i++)
    used += (size_t)snprintf(buf + used, size - used, "%s%" PRIu64, i ? "," : "", lo->shape[i]);
}

static uint64_t age_seconds(const shl_info *info, uint64_t now) {
  return now > info->created_ns ? (now - info->created_ns) / 1000000000u : 0;
}

/* 42s, 5m, 3h, 12d: the largest unit that fits, truncated. */
static void age_text(uint64_t secs, char *buf, size_t size) {
  static const struct {
    uint64_t secs;
    char unit;
  } units[] = {{86400, 'd'}, {3600, 'h'}, {60, 'm'}, {1, 's'}};
  size_t i = 0;
  while (units[i].secs > secs && units[i].secs > 1) i++;
  snprintf(buf, size, "%" PRIu64 "%c", secs / units[i].secs, units[i].unit);
}

/* A frame's age: milliseconds matter under a minute (0.033s), not after. */
static void frame_age_text(uint64_t ns, char *buf, size_t size) {
  if (ns < 60 * 1000000000ull)
    snprintf(buf, size, "%.3fs", (double)ns / 1e9);
  else
    age_text(ns / 1000000000u, buf, size);
}

enum { SHAPE_TEXT_MAX = SHL_MAX_NDIM * 21 + 3 };

static void print_key(const char *key) { printf("%-15s ", key); }

static void print_field(const char *key, const char *fmt, ...) {
  va_list ap;
  print_key(key);
  va_start(ap, fmt);
  vprintf(fmt, ap);
  va_end(ap);
  putchar('\n');
}

static void print_stream_text(const struct entry *e) {
  const shl_stream_info *s = &e->stream;
  char age[32];
  uint64_t age_ns;
  print_field("slots:", "%" PRIu32, s->slots);
  print_field("slot stride:", "%" PRIu64, s->slot_stride);
  print_field("max readers:", "%" PRIu32, s->max_readers);
  print_field("readers alive:", "%" PRIu32, s->readers_alive);
  print_field("blocking:", "%s", s->flags & SHL_STREAM_BLOCK ? "yes" : "no");
  if (s->writer_pid)
    print_field("writer pid:", "%" PRId32 " (alive: %s)", s->writer_pid,
                alive_text(s->writer_alive, false));
  else
    print_field("writer pid:", "none");
  print_field("last seq:", "%" PRIu64, s->last_seq);
  if (last_frame_age(e, &age_ns)) {
    frame_age_text(age_ns, age, sizeof age);
    print_field("last frame:", "%s ago", age);
  } else {
    print_field("last frame:", "none");
  }
  if (e->fps >= 0)
    print_field("frame rate:", "%.1f fps", e->fps);
  else
    print_field("frame rate:", "not measured");
}

static void print_info_text(const struct entry *e, uint64_t now) {
  const shl_info *in = &e->info;
  const shl_layout *lo = &e->layout;
  char shape[SHAPE_TEXT_MAX], age[32], created[64];

  time_t secs = (time_t)(in->created_ns / 1000000000u);
  struct tm tm;
  if (!localtime_r(&secs, &tm) || !strftime(created, sizeof created, "%Y-%m-%d %H:%M:%S %z", &tm))
    snprintf(created, sizeof created, "?");
  age_text(age_seconds(in, now), age, sizeof age);
  shape_text(lo, shape, sizeof shape);

  print_field("name:", "%s", in->name);
  print_field("kind:", "%s", kind_name(in->kind));
  print_key("format:");
  put_text(lo->format);
  putchar('\n');
  print_field("itemsize:", "%" PRIu64, lo->itemsize);
  print_field("shape:", "%s", shape);
  /* As the header records them and the library addresses elements: shl_create
   * stores C-order strides when none are given, so zeros here mean a writer
   * put them there, and every element is then the same bytes. */
  print_key("strides:");
  for (uint32_t i = 0; i < lo->ndim; i++) printf("%s%" PRId64, i ? "," : "", lo->strides[i]);
  printf("%s\n", lo->ndim ? "" : "()");
  print_field("payload bytes:", "%" PRIu64, in->payload_size);
  print_field("total bytes:", "%" PRIu64, in->total_size);
  print_field("mode:", "%04" PRIo32, in->mode);
  if (e->owner_named)
    print_field("owner:", "%s (uid %" PRIu32 ")", e->owner, in->uid);
  else
    print_field("owner:", "uid %" PRIu32, in->uid);
  print_field("creator pid:", "%" PRId32 " (alive: %s)", in->creator_pid,
              alive_text(in->creator_alive, false));
  print_field("created:", "%s (%s ago)", created, age);
  print_field("version:", "%" PRIu64, in->version);
  print_field("header format:", "%" PRIu32, in->format_version);
  if (is_stream(e)) print_stream_text(e);
}

/* `, "key": value`, the value formatted as fmt says, or null if absent. */
static void json_member(const char *key, bool present, const char *fmt, ...) {
  va_list ap;
  printf(", \"%s\": ", key);
  if (!present) {
    fputs("null", stdout);
    return;
  }
  va_start(ap, fmt);
  vprintf(fmt, ap);
  va_end(ap);
}

/* The "stream" member: an object for streams, null for other kinds. */
static void print_stream_json(const struct entry *e) {
  const shl_stream_info *s = &e->stream;
  uint64_t age_ns = 0;
  if (!is_stream(e)) {
    fputs(", \"stream\": null", stdout);
    return;
  }
  bool has_frame = last_frame_age(e, &age_ns);
  printf(", \"stream\": {\"slots\": %" PRIu32 ", \"slot_stride\": %" PRIu64
         ", \"max_readers\": %" PRIu32 ", \"readers_alive\": %" PRIu32 ", \"blocking\": %s",
         s->slots, s->slot_stride, s->max_readers, s->readers_alive,
         s->flags & SHL_STREAM_BLOCK ? "true" : "false");
  json_member("writer_pid", s->writer_pid != 0, "%" PRId32, s->writer_pid);
  printf(", \"writer_alive\": %s, \"last_seq\": %" PRIu64, alive_text(s->writer_alive, true),
         s->last_seq);
  json_member("last_frame_age_s", has_frame, "%.6f", (double)age_ns / 1e9);
  json_member("fps", e->fps >= 0, "%.3f", e->fps);
  putchar('}');
}

/* One JSON object; a failed entry carries only name, status and error. */
static void print_info_json(const struct entry *e, uint64_t now) {
  printf("{\"name\": ");
  json_string(e->name);
  printf(", \"status\": \"%s\"", e->rc ? shl_err_name(e->rc) : "ok");
  if (e->rc) {
    printf(", \"error\": ");
    json_string(shl_strerror(e->rc));
    putchar('}');
    return;
  }
  const shl_info *in = &e->info;
  const shl_layout *lo = &e->layout;
  printf(", \"kind\": \"%s\", \"format\": ", kind_name(in->kind));
  json_string(lo->format);
  printf(", \"itemsize\": %" PRIu64 ", \"ndim\": %" PRIu32 ", \"shape\": [", lo->itemsize,
         lo->ndim);
  for (uint32_t i = 0; i < lo->ndim; i++) printf("%s%" PRIu64, i ? ", " : "", lo->shape[i]);
  printf("], \"strides\": [");
  for (uint32_t i = 0; i < lo->ndim; i++) printf("%s%" PRId64, i ? ", " : "", lo->strides[i]);
  printf("], \"payload_size\": %" PRIu64 ", \"total_size\": %" PRIu64, in->payload_size,
         in->total_size);
  printf(", \"mode\": %" PRIu32 ", \"uid\": %" PRIu32 ", \"owner\": ", in->mode, in->uid);
  if (e->owner_named)
    json_string(e->owner);
  else
    fputs("null", stdout);
  printf(", \"creator_pid\": %" PRId32, in->creator_pid);
  printf(", \"creator_alive\": %s", alive_text(in->creator_alive, true));
  printf(", \"created_ns\": %" PRIu64 ", \"age_s\": %" PRIu64, in->created_ns,
         age_seconds(in, now));
  printf(", \"version\": %" PRIu64 ", \"format_version\": %" PRIu32, in->version,
         in->format_version);
  print_stream_json(e);
  putchar('}');
}

/* ---------------------------------------------------------------- ls table */

enum {
  COL_NAME,
  COL_KIND,
  COL_SHAPE,
  COL_BYTES,
  COL_VERSION,
  COL_PID,
  COL_ALIVE,
  COL_AGE,
  COL_OWNER,
  COL_STATUS,
  COL_STREAM,
  COL_FORMAT,
  NCOLS
};

static const char *const col_title[NCOLS] = {
    "NAME", "KIND", "SHAPE", "BYTES", "VERSION", "PID",
    "ALIVE", "AGE", "OWNER", "STATUS", "STREAM", "FORMAT"};
static const bool col_right[NCOLS] = {
    [COL_BYTES] = true, [COL_VERSION] = true, [COL_PID] = true, [COL_AGE] = true};

typedef char cell_buf[SHAPE_TEXT_MAX];

/* "slots=8,readers=2,seq=1234,fps=30.0": no blanks, so every row stays one
 * whitespace-separated field per column. */
static void stream_cell(const struct entry *e, char *buf, size_t size) {
  const shl_stream_info *s = &e->stream;
  int used = snprintf(buf, size, "slots=%" PRIu32 ",readers=%" PRIu32 ",seq=%" PRIu64, s->slots,
                      s->readers_alive, s->last_seq);
  if (e->fps >= 0 && used >= 0 && (size_t)used < size)
    snprintf(buf + used, size - (size_t)used, ",fps=%.1f", e->fps);
}

/* Cells of one row; the small ones are formatted into buf. */
static void row_cells(const struct entry *e, uint64_t now, cell_buf buf[NCOLS],
                      const char *cell[NCOLS]) {
  for (int c = 0; c < NCOLS; c++) cell[c] = "-";
  cell[COL_NAME] = e->name;
  cell[COL_STATUS] = e->rc ? shl_err_name(e->rc) : "ok";
  if (e->rc) return;
  const shl_info *in = &e->info;
  cell[COL_KIND] = kind_name(in->kind);
  cell[COL_ALIVE] = alive_text(in->creator_alive, false);
  cell[COL_FORMAT] = e->layout.format;
  cell[COL_OWNER] = e->owner;
  shape_text(&e->layout, buf[COL_SHAPE], sizeof buf[0]);
  snprintf(buf[COL_BYTES], sizeof buf[0], "%" PRIu64, in->payload_size);
  snprintf(buf[COL_VERSION], sizeof buf[0], "%" PRIu64, in->version);
  snprintf(buf[COL_PID], sizeof buf[0], "%" PRId32, in->creator_pid);
  age_text(age_seconds(in, now), buf[COL_AGE], sizeof buf[0]);
  for (int c = COL_SHAPE; c <= COL_AGE; c++)
    if (c != COL_ALIVE) cell[c] = buf[c];
  if (is_stream(e)) {
    stream_cell(e, buf[COL_STREAM], sizeof buf[0]);
    cell[COL_STREAM] = buf[COL_STREAM];
  }
}

static void print_row(const char *const cell[NCOLS], const size_t width[NCOLS]) {
  for (int c = 0; c < NCOLS; c++) {
    size_t pad = width[c] - strlen(cell[c]);
    if (col_right[c]) printf("%*s", (int)pad, "");
    put_text(cell[c]);
    if (c == NCOLS - 1) break;
    printf("%*s", (int)(col_right[c] ? 2 : pad + 2), "");
  }
  putchar('\n');
}

static void print_table(const struct entry *entries, size_t n, uint64_t now) {
  size_t width[NCOLS];
  cell_buf buf[NCOLS];
  const char *cell[NCOLS];
  for (int c = 0; c < NCOLS; c++) width[c] = strlen(col_title[c]);
  for (size_t i = 0; i < n; i++) {
    row_cells(&entries[i], now, buf, cell);
    for (int c = 0; c < NCOLS; c++)
      if (strlen(cell[c]) > width[c]) width[c] = strlen(cell[c]);
  }
  print_row(col_title, width);
  for (size_t i = 0; i < n; i++) {
    row_cells(&entries[i], now, buf, cell);
    print_row(cell, width);
  }
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
    [OPT_GRACE] = {"grace", 0, true},
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

struct list {
  char **names;
  size_t n, cap;
};

static int collect_name(const char *name, void *arg) {
  struct list *l = arg;
  if (l->n == l->cap) {
    size_t cap = l->cap ? 2 * l->cap : 16;
    char **grown = realloc(l->names, cap * sizeof *grown);
    if (!grown) return -ENOMEM;
    l->names = grown;
    l->cap = cap;
  }
  if (!(l->names[l->n] = strdup(name))) return -ENOMEM;
  l->n++;
  return 0;
}

static int compare_names(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Whether rc says that the entry could not be read at all (permissions,
 * resources: an errno), as opposed to what was read (SHL_E_* codes, which
 * are below every errno value and SHL_E_NOT_SHMLANE the highest of them). */
static bool unreadable(int rc) { return rc < 0 && rc > SHL_E_NOT_SHMLANE; }

static int cmd_ls(const struct cmdline *cl) {
  struct list l = {0};
  struct entry *entries = NULL;
  size_t n = 0, failed = 0;
  int status = 0, rc = shl_list(collect_name, &l);
  if (rc >= 0 && l.n && !(entries = calloc(l.n, sizeof *entries))) rc = -ENOMEM;
  if (rc < 0) {
    errorf(rc, "cannot list segments");
    status = EXIT_RUNTIME;
    goto out;
  }
  qsort(l.names, l.n, sizeof *l.names, compare_names);
  /* No waiting: a segment still being created shows as SHL_E_NOT_READY. */
  for (size_t i = 0; i < l.n; i++) {
    entry_open(&entries[n], l.names[i], 0);
    if (entries[n].rc == -ENOENT) continue; /* removed since it was listed */
    failed += unreadable(entries[n].rc);
    n++;
  }
  if (!cl->given[OPT_NO_RATE]) measure_rates(entries, n);
  uint64_t now = clock_ns(CLOCK_REALTIME);
  if (cl->given[OPT_JSON]) {
    putchar('[');
    for (size_t i = 0; i < n; i++) {
      fputs(i ? ",\n  " : "\n  ", stdout);
      print_info_json(&entries[i], now);
    }
    fputs(n ? "\n]\n" : "]\n", stdout);
  } else {
    print_table(entries, n, now);
  }
  if (failed) {
    errorf(0, "ls: %zu of %zu entries could not be read (STATUS says why)", failed, n);
    status = EXIT_RUNTIME;
  }
out:
  for (size_t i = 0; i < n; i++) free(entries[i].format);
  for (size_t i = 0; i < l.n; i++) free(l.names[i]);
  free(entries);
  free(l.names);
  return status;
}

static int cmd_info(const struct cmdline *cl) {
  struct entry e;
  entry_open(&e, cl->names[0], SHL_OPEN_DEFAULT_TIMEOUT_NS);
  if (e.rc) {
    errorf(e.rc, "cannot open '%s'", e.name);
    free(e.format);
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
  free(e.format);
  return 0;
}

static int cmd_create(const struct cmdline *cl) {
  const char *name = cl->names[0];
  char converted[8];
  shl_layout layout = {.format = format_from_numpy(cl->value[OPT_FORMAT], converted)};
  shl_create_opts opts = {.flags = cl->given[OPT_REPLACE] ? SHL_CREATE_REPLACE : 0};
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
  if (rc) {
    errorf(rc, "cannot create '%s'", name);
    return EXIT_RUNTIME;
  }
  shl_close(seg);
  return 0;
}

static bool shm_path(const char *name, char *buf, size_t size) {
  int n = snprintf(buf, size, "/dev/shm%s%s", SHL_POSIX_PREFIX, name);
  return n > 0 && (size_t)n < size;
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
    if (shm_path(name, path, sizeof path) && lstat(path, &st) == 0) what = file_kind(st.st_mode);
    /* Anything else under the name is unlinked like a file; a directory is
     * not, and is nothing shmlane made: say so rather than "Is a directory". */
    if (rc == -EISDIR && what)
      errorf(0, "cannot remove '%s': %s is %s, not a segment; left in place (rm removes only "
             "files)", name, path, what);
    else
      errorf(rc, "cannot remove '%s'", name);
  }
  return status;
}

/* ---------------------------------------------------------------- gc */

/* Nothing in a segment records who has it open, so "unused" can only be
 * proven for streams (writer and readers register themselves) and for
 * objects whose creator never finished. Everything else needs --all-dead. */
enum { GC_DEFAULT_GRACE_S = 10 };

struct gc_opts {
  bool dry_run, all_dead;
  uint64_t grace_ns;
};

static uint64_t stat_ns(const struct timespec *ts) {
  return (uint64_t)ts->tv_sec * 1000000000u + (uint64_t)ts->tv_nsec;
}

static bool same_object(const struct stat *a, const struct stat *b) {
  return a->st_ino == b->st_ino && a->st_dev == b->st_dev;
}

/* Why `name` may be removed, or NULL to keep it. *seen identifies the object
 * judged, so a replacement created meanwhile under the name is left alone. */
static const char *gc_verdict(const char *name, const struct gc_opts *o, struct stat *seen) {
  char path[64];
  if (!shm_path(name, path, sizeof path) || lstat(path, seen) < 0 || !S_ISREG(seen->st_mode))
    return NULL;
  /* This user's objects only (root: everyone's). Another user's may look
   * abandoned while they use it as they see fit, and the sticky /dev/shm
   * would refuse the unlink anyway. */
  if (geteuid() != 0 && seen->st_uid != geteuid()) return NULL;
  shl_segment *seg;
  int rc = open_any_owner(&seg, name, 0);
  if (rc == SHL_E_NOT_READY) {
    /* A creator sizes, fills and publishes a segment in one go: one that is
     * still not ready after the grace period died on the way (or was
     * planted). Age by mtime, which shm_open(O_CREAT) and ftruncate set. */
    uint64_t changed = stat_ns(&seen->st_mtim);
    uint64_t now = clock_ns(CLOCK_REALTIME);
    return now >= changed && now - changed >= o->grace_ns ? "never initialised" : NULL;
  }
  /* Its creator's role lock is free: the creator is gone, whatever namespace it ran in. */
  if (rc == SHL_E_CREATOR_DEAD) return "creator died before it was ready";
  if (rc < 0) return NULL; /* gone, foreign, corrupt, or not ours to read: not gc's call */
  const char *why = NULL;
  shl_info info;
  if (shl_get_info(seg, &info) == 0) {
    if (info.kind == SHL_KIND_STREAM) {
      shl_stream_info s;
      /* writer_alive and readers_alive count "cannot tell" as alive. */
      if (shl_stream_get_info(seg, &s) == 0 && s.writer_alive == 0 && s.readers_alive == 0)
        why = s.writer_pid ? "stream: writer dead, no reader" : "stream: no writer, no reader";
    } else if (o->all_dead && info.creator_alive == 0) {
      why = "creator dead (--all-dead)";
    }
  }
  shl_close(seg);
  return why;
}

/* 0 removed (or gone already: another gc got there), 1 kept, < 0 error. */
static int gc_one(const char *name, const struct gc_opts *o) {
  struct stat seen, now;
  char path[64];
  const char *why = gc_verdict(name, o, &seen);
  if (!why) return 1;
  if (o->dry_run) {
    printf("would remove %s (%s)\n", name, why);
    return 0;
  }
  /* Names cannot be unlinked by identity: re-check just before, which
   * leaves a window of microseconds instead of the whole verdict. */
  if (!shm_path(name, path, sizeof path) || lstat(path, &now) < 0 || !same_object(&seen, &now))
    return 0;
  int rc = shl_unlink(name);
  if (rc == -ENOENT) return 0;
  if (rc < 0) {
    errorf(rc, "gc: cannot remove '%s'", name);
    return rc;
  }
  printf("removed %s (%s)\n", name, why);
  return 0;
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
  int status = 0, rc = 0;
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
    for (size_t i = 0; i < l.n; i++)
      if (gc_one(l.names[i], &o) < 0) status = EXIT_RUNTIME;
  }
  for (size_t i = 0; i < l.n; i++) free(l.names[i]);
  free(l.names);
  return status;
}

static const struct command commands[] = {
    {"ls", cmd_ls, 1u << OPT_JSON | 1u << OPT_NO_RATE, 0, 0, "ls [--json] [--no-rate]",
     "list segments",
     "Lists every entry of the shared-memory directory that carries the shmlane\n"
     "prefix, sorted by name, whoever owns it; each is opened read-only and closed\n"
     "again. Entries that cannot be opened (foreign files, corrupt or half-created\n"
     "segments) are listed with STATUS set to the error name; if any could not be\n"
     "read at all (an errno such as EACCES or EMFILE), ls exits 1 after listing.\n"
     "\n"
     "Columns: NAME KIND SHAPE BYTES (payload) VERSION (change counter) PID (creator)\n"
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
    {"create", cmd_create, 1u << OPT_FORMAT | 1u << OPT_SHAPE | 1u << OPT_MODE | 1u << OPT_REPLACE,
     1, 1, "create NAME --format F [--shape D,D,...] [--mode OCTAL] [--replace]",
     "create a zero-filled segment",
     "Creates a segment with a zero-filled payload, owned by nobody: it stays until\n"
     "'shmlane rm'. The kind is struct for a T{...} format with ndim 0, else array.\n"
     "\n"
     "Options:\n"
     "  -f, --format F    element format: PEP 3118 (\"<d\", \"B\", \"T{<i:x:<d:y:}\") or a\n"
     "                    NumPy shorthand (\"f8\", \"<i4\", \">u2\", \"u1\", \"c16\", \"?\")\n"
     "  -s, --shape S     comma-separated sizes (\"3,4\"); \"\" or \"()\" (default): ndim 0\n"
     "  -m, --mode OCTAL  permission bits (default 0600)\n"
     "  --replace         remove an existing segment of that name first\n"},
    {"rm", cmd_rm, 0, 1, -1, "rm NAME...", "remove segments",
     "Removes each name. Processes that have a segment open keep their mapping.\n"
     "A directory under a segment's name is reported and left in place.\n"},
    {"gc", cmd_gc, 1u << OPT_DRY_RUN | 1u << OPT_ALL_DEAD | 1u << OPT_GRACE, 0, -1,
     "gc [--dry-run] [--all-dead] [--grace SECONDS] [NAME...]",
     "remove segments nobody uses any more",
     "Removes, among the given names (default: every segment) and among this user's\n"
     "objects only (root: everyone's):\n"
     "  - streams whose writer is dead or gone and that have no live reader;\n"
     "  - objects still not initialised (zero-sized, or never published ready)\n"
     "    whose last change is older than the grace period: their creator died;\n"
     "  - with --all-dead, also arrays and structs whose creator is dead.\n"
     "A segment normally outlives its creator and nothing records who else has an\n"
     "array or struct open, so those are kept unless --all-dead asks. Foreign,\n"
     "corrupt and unreadable entries are never removed (use 'shmlane rm').\n"
     "Prints one line per segment removed. Several gc may run at once.\n"
     "\n"
     "Options:\n"
     "  -n, --dry-run      print what would be removed, remove nothing\n"
     "  --all-dead         also remove arrays and structs whose creator is dead\n"
     "  --grace SECONDS    age before a never-initialised object goes (default 10)\n"},
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
    errorf(0, "%s: unexpected argument '%s'", cmd->name, cl->names[cmd->max_names]);
    return EXIT_USAGE;
  }
  if ((cmd->opts & 1u << OPT_FORMAT) && !cl->given[OPT_FORMAT]) {
    errorf(0, "%s: missing --format (see 'shmlane %s --help')", cmd->name, cmd->name);
    return EXIT_USAGE;
  }
  for (int i = 0; i < cl->nnames; i++) {
    int rc = shl_name_check(cl->names[i]);
    if (rc) {
      errorf(rc, "bad name '%s'", cl->names[i]);
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

int main(int argc, char **argv) {
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
    return rc ? rc : finish(commands[i].run(&cl));
  }
  errorf(0, "unknown %s '%s' (see 'shmlane --help')", arg[0] == '-' ? "option" : "command", arg);
  return EXIT_USAGE;
}
