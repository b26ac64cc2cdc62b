/* What the shmlane command prints: `info` as text or JSON, `ls` and `top` as tables.
 * Strings from the shared-memory directory and headers are untrusted. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

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

/* How every reader reads `format`, on a line of its own, when the header
 * spells it otherwise: standard sizes, byte orders and padding written out,
 * C char arrays as byte strings ("(64)1s" reads as "64s"). */
static void print_reads_as(const char *format) {
  int64_t len = shl_format_canonical(format, NULL, 0);
  char *canonical = len >= 0 ? malloc((size_t)len + 1) : NULL;
  if (canonical && shl_format_canonical(format, canonical, (size_t)len + 1) >= 0 &&
      strcmp(canonical, format) != 0) {
    print_key("");
    fputs("reads as ", stdout);
    put_text(canonical, stdout);
    putchar('\n');
  }
  free(canonical);
}

static void print_stream_text(const struct entry *e) {
  const shl_stream_info *s = &e->stream;
  char age[32];
  uint64_t age_ns;
  print_field("slots:", "%" PRIu32, s->slots);
  print_field("slot stride:", "%" PRIu64, s->slot_stride);
  print_key("metadata:");
  if (e->meta_format) {
    put_text(e->meta_format, stdout);
    printf(" (%" PRIu64 " bytes at %" PRIu64 " in each slot)\n", s->meta_size, s->meta_offset);
    print_reads_as(e->meta_format);
  } else {
    puts("none");
  }
  print_field("max readers:", "%" PRIu32, s->max_readers);
  print_field("readers alive:", "%" PRIu32, s->readers_alive);
  print_field("blocking:", "%s", s->flags & SHL_STREAM_BLOCK ? "yes" : "no");
  if (s->writer_pid)
    print_field("writer pid:", "%" PRId32 " (alive: %s)", s->writer_pid,
                alive_text(s->writer_alive, false));
  else
    print_field("writer pid:", "none");
  print_field("last seq:", "%" PRIu64, s->last_seq);
  if (s->base_seq) print_field("first seq:", "%" PRIu64, s->base_seq + 1);
  if (s->replaced) print_field("replaced:", "yes: the name now holds a newer stream");
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
  for (uint32_t i = 0; i < e->nreaders; i++) {
    const shl_stream_reader *r = &e->readers[i];
    print_key("reader:");
    printf("pid %" PRId32 " (alive: %s), %s, pinned %d", r->pid, alive_text(r->alive, false),
           r->policy == SHL_RECV_ALL ? "all" : "latest", __builtin_popcountll(r->pinned));
    if (r->policy == SHL_RECV_ALL) printf(", next %" PRIu64, r->next_seq);
    printf(", lost %" PRIu64 "\n", r->lost);
  }
}

void print_info_text(const struct entry *e, uint64_t now) {
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
  put_text(lo->format, stdout);
  putchar('\n');
  print_reads_as(lo->format);
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
  print_field("changes:", "%" PRIu64, in->changes);
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
  fputs(", \"meta_format\": ", stdout);
  if (e->meta_format)
    json_string(e->meta_format);
  else
    fputs("null", stdout);
  printf(", \"meta_size\": %" PRIu64 ", \"meta_offset\": %" PRIu64 ", \"base_seq\": %" PRIu64
         ", \"replaced\": %s",
         s->meta_size, s->meta_offset, s->base_seq, s->replaced ? "true" : "false");
  json_member("writer_pid", s->writer_pid != 0, "%" PRId32, s->writer_pid);
  printf(", \"writer_alive\": %s, \"last_seq\": %" PRIu64, alive_text(s->writer_alive, true),
         s->last_seq);
  json_member("last_frame_age_s", has_frame, "%.6f", (double)age_ns / 1e9);
  json_member("fps", e->fps >= 0, "%.3f", e->fps);
  fputs(", \"readers\": [", stdout);
  for (uint32_t i = 0; i < e->nreaders; i++) {
    const shl_stream_reader *r = &e->readers[i];
    printf("%s{\"pid\": %" PRId32 ", \"alive\": %s, \"policy\": \"%s\", \"pinned\": %d",
           i ? ", " : "", r->pid, alive_text(r->alive, true),
           r->policy == SHL_RECV_ALL ? "all" : "latest", __builtin_popcountll(r->pinned));
    json_member("next_seq", r->policy == SHL_RECV_ALL, "%" PRIu64, r->next_seq);
    printf(", \"lost\": %" PRIu64 "}", r->lost);
  }
  putchar(']');
  putchar('}');
}

/* The "uid" and "owner" members (owner null for a uid with no name). */
static void print_owner_json(const struct entry *e) {
  printf(", \"uid\": %" PRIu32 ", \"owner\": ", e->info.uid);
  if (e->owner_named)
    json_string(e->owner);
  else
    fputs("null", stdout);
}

/* One JSON object; a failed entry carries only name, status and error (and
 * a private one its owner). */
void print_info_json(const struct entry *e, uint64_t now) {
  printf("{\"name\": ");
  json_string(e->name);
  printf(", \"status\": \"%s\"", entry_status(e));
  if (e->rc) {
    printf(", \"error\": ");
    json_string(shl_strerror(e->rc));
    if (e->private_obj) print_owner_json(e);
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
  printf(", \"mode\": %" PRIu32, in->mode);
  print_owner_json(e);
  printf(", \"creator_pid\": %" PRId32, in->creator_pid);
  printf(", \"creator_alive\": %s", alive_text(in->creator_alive, true));
  printf(", \"created_ns\": %" PRIu64 ", \"age_s\": %" PRIu64, in->created_ns,
         age_seconds(in, now));
  /* "version" is the old name of "changes", kept for scripts that read it. */
  printf(", \"changes\": %" PRIu64 ", \"version\": %" PRIu64 ", \"format_version\": %" PRIu32,
         in->changes, in->changes, in->format_version);
  if (e->changes_rate >= 0) printf(", \"changes_per_s\": %.3f", e->changes_rate);
  print_stream_json(e);
  putchar('}');
}

/* ---------------------------------------------------------------- tables */

enum { MAX_COLS = 12 };
typedef char cell_buf[SHAPE_TEXT_MAX];

/* A table: its column titles, which are right-aligned, and how to get the
 * cells of row i (small ones formatted into buf). */
struct columns {
  int n;
  const char *const *title;
  const bool *right;
  void (*row)(const void *ctx, size_t i, cell_buf buf[MAX_COLS], const char *cell[MAX_COLS]);
  const void *ctx;
};

static void print_row(const struct columns *t, const char *const cell[], const size_t width[]) {
  for (int c = 0; c < t->n; c++) {
    size_t pad = width[c] - strlen(cell[c]);
    if (t->right[c]) printf("%*s", (int)pad, "");
    put_text(cell[c], stdout);
    if (c == t->n - 1) break;
    printf("%*s", (int)(t->right[c] ? 2 : pad + 2), "");
  }
  putchar('\n');
}

/* Columns as wide as their widest cell, two blanks apart. */
static void print_columns(const struct columns *t, size_t nrows) {
  size_t width[MAX_COLS];
  cell_buf buf[MAX_COLS];
  const char *cell[MAX_COLS];
  for (int c = 0; c < t->n; c++) width[c] = strlen(t->title[c]);
  for (size_t i = 0; i < nrows; i++) {
    t->row(t->ctx, i, buf, cell);
    for (int c = 0; c < t->n; c++)
      if (strlen(cell[c]) > width[c]) width[c] = strlen(cell[c]);
  }
  print_row(t, t->title, width);
  for (size_t i = 0; i < nrows; i++) {
    t->row(t->ctx, i, buf, cell);
    print_row(t, cell, width);
  }
}

/* ---------------------------------------------------------------- ls table */

enum {
  COL_NAME,
  COL_KIND,
  COL_SHAPE,
  COL_BYTES,
  COL_CHANGES,
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
    "NAME", "KIND", "SHAPE", "BYTES", "CHANGES", "PID",
    "ALIVE", "AGE", "OWNER", "STATUS", "STREAM", "FORMAT"};
static const bool col_right[NCOLS] = {
    [COL_BYTES] = true, [COL_CHANGES] = true, [COL_PID] = true, [COL_AGE] = true};

/* "slots=8,readers=2,seq=1234,fps=30.0": no blanks, so every row stays one
 * whitespace-separated field per column. */
static void stream_cell(const struct entry *e, char *buf, size_t size) {
  const shl_stream_info *s = &e->stream;
  int used = snprintf(buf, size, "slots=%" PRIu32 ",readers=%" PRIu32 ",seq=%" PRIu64, s->slots,
                      s->readers_alive, s->last_seq);
  if (e->fps >= 0 && used >= 0 && (size_t)used < size)
    snprintf(buf + used, size - (size_t)used, ",fps=%.1f", e->fps);
}

struct rows {
  const struct entry *entries;
  uint64_t now;
};

static void ls_row(const void *ctx, size_t i, cell_buf buf[MAX_COLS], const char *cell[MAX_COLS]) {
  const struct rows *r = ctx;
  const struct entry *e = &r->entries[i];
  for (int c = 0; c < NCOLS; c++) cell[c] = "-";
  cell[COL_NAME] = e->name;
  cell[COL_STATUS] = entry_status(e);
  if (e->private_obj) cell[COL_OWNER] = e->owner;
  if (e->rc) return;
  const shl_info *in = &e->info;
  cell[COL_KIND] = kind_name(in->kind);
  cell[COL_ALIVE] = alive_text(in->creator_alive, false);
  cell[COL_FORMAT] = e->layout.format;
  cell[COL_OWNER] = e->owner;
  shape_text(&e->layout, buf[COL_SHAPE], sizeof buf[0]);
  snprintf(buf[COL_BYTES], sizeof buf[0], "%" PRIu64, in->payload_size);
  snprintf(buf[COL_CHANGES], sizeof buf[0], "%" PRIu64, in->changes);
  snprintf(buf[COL_PID], sizeof buf[0], "%" PRId32, in->creator_pid);
  age_text(age_seconds(in, r->now), buf[COL_AGE], sizeof buf[0]);
  for (int c = COL_SHAPE; c <= COL_AGE; c++)
    if (c != COL_ALIVE) cell[c] = buf[c];
  if (is_stream(e)) {
    stream_cell(e, buf[COL_STREAM], sizeof buf[0]);
    cell[COL_STREAM] = buf[COL_STREAM];
  }
}

void print_table(const struct entry *entries, size_t n, uint64_t now) {
  struct rows rows = {entries, now};
  struct columns t = {NCOLS, col_title, col_right, ls_row, &rows};
  print_columns(&t, n);
}

/* ---------------------------------------------------------------- top tables */

enum { T_NAME, T_WRITER, T_ALIVE, T_FPS, T_SEQ, T_READERS, T_SLOTS, T_LAST, T_OWNER, T_META, T_NCOLS };
static const char *const top_stream_title[T_NCOLS] = {
    "STREAM", "WRITER", "ALIVE", "FPS", "SEQ", "READERS", "SLOTS", "LAST", "OWNER", "METADATA"};
static const bool top_stream_right[T_NCOLS] = {
    [T_WRITER] = true, [T_FPS] = true, [T_SEQ] = true, [T_READERS] = true, [T_SLOTS] = true,
    [T_LAST] = true};

enum { S_NAME, S_KIND, S_SHAPE, S_CHANGES, S_RATE, S_PID, S_ALIVE, S_OWNER, S_STATUS, S_FORMAT,
       S_NCOLS };
static const char *const top_segment_title[S_NCOLS] = {
    "SEGMENT", "KIND", "SHAPE", "CHANGES", "CHANGES/S", "PID", "ALIVE", "OWNER", "STATUS", "FORMAT"};
static const bool top_segment_right[S_NCOLS] = {
    [S_CHANGES] = true, [S_RATE] = true, [S_PID] = true};

enum { R_STREAM, R_PID, R_ALIVE, R_POLICY, R_PINNED, R_NEXT, R_LOST, R_NCOLS };
static const char *const top_reader_title[R_NCOLS] = {"READER OF", "PID",  "ALIVE", "POLICY",
                                                      "PINNED",    "NEXT", "LOST"};
static const bool top_reader_right[R_NCOLS] = {
    [R_PID] = true, [R_PINNED] = true, [R_NEXT] = true, [R_LOST] = true};

/* The entries of one table: pointers into a snapshot. */
struct picked {
  const struct entry **entries;
  uint64_t now;
};

/* A rate, or "-" before it could be measured. */
static const char *rate_text(double rate, char *buf, size_t size) {
  if (rate < 0) return "-";
  snprintf(buf, size, "%.1f", rate);
  return buf;
}

static void stream_row(const void *ctx, size_t i, cell_buf buf[MAX_COLS],
                       const char *cell[MAX_COLS]) {
  const struct entry *e = ((const struct picked *)ctx)->entries[i];
  const shl_stream_info *s = &e->stream;
  uint64_t age_ns;
  cell[T_NAME] = e->name;
  cell[T_WRITER] = "-";
  if (s->writer_pid) {
    snprintf(buf[T_WRITER], sizeof buf[0], "%" PRId32, s->writer_pid);
    cell[T_WRITER] = buf[T_WRITER];
  }
  cell[T_ALIVE] = s->writer_pid ? alive_text(s->writer_alive, false) : "gone";
  cell[T_FPS] = rate_text(e->fps, buf[T_FPS], sizeof buf[0]);
  snprintf(buf[T_SEQ], sizeof buf[0], "%" PRIu64, s->last_seq);
  snprintf(buf[T_READERS], sizeof buf[0], "%" PRIu32 "/%" PRIu32, s->readers_alive, s->max_readers);
  snprintf(buf[T_SLOTS], sizeof buf[0], "%d/%" PRIu32 "%s", __builtin_popcountll(pinned_slots(e)),
           s->slots, s->flags & SHL_STREAM_BLOCK ? ",block" : "");
  cell[T_LAST] = "-";
  if (last_frame_age(e, &age_ns)) {
    frame_age_text(age_ns, buf[T_LAST], sizeof buf[0]);
    cell[T_LAST] = buf[T_LAST];
  }
  cell[T_SEQ] = buf[T_SEQ];
  cell[T_READERS] = buf[T_READERS];
  cell[T_SLOTS] = buf[T_SLOTS];
  cell[T_OWNER] = e->owner;
  cell[T_META] = e->meta_format ? e->meta_format : "-";
}

/* Every reader entry in use of the streams of a table, in order. */
struct reader_rows {
  const struct entry **streams;
  size_t nstreams;
};

static void reader_row(const void *ctx, size_t i, cell_buf buf[MAX_COLS],
                       const char *cell[MAX_COLS]) {
  const struct reader_rows *rows = ctx;
  const struct entry *e = NULL;
  for (size_t k = 0; k < rows->nstreams; k++, i -= e->nreaders)
    if (i < (e = rows->streams[k])->nreaders) break;
  const shl_stream_reader *r = &e->readers[i];
  cell[R_STREAM] = e->name;
  snprintf(buf[R_PID], sizeof buf[0], "%" PRId32, r->pid);
  cell[R_PID] = buf[R_PID];
  cell[R_ALIVE] = alive_text(r->alive, false);
  cell[R_POLICY] = r->policy == SHL_RECV_ALL ? "all" : "latest";
  snprintf(buf[R_PINNED], sizeof buf[0], "%d", __builtin_popcountll(r->pinned));
  cell[R_PINNED] = buf[R_PINNED];
  cell[R_NEXT] = "-";
  if (r->policy == SHL_RECV_ALL) {
    snprintf(buf[R_NEXT], sizeof buf[0], "%" PRIu64, r->next_seq);
    cell[R_NEXT] = buf[R_NEXT];
  }
  snprintf(buf[R_LOST], sizeof buf[0], "%" PRIu64, r->lost);
  cell[R_LOST] = buf[R_LOST];
}

static void segment_row(const void *ctx, size_t i, cell_buf buf[MAX_COLS],
                        const char *cell[MAX_COLS]) {
  const struct entry *e = ((const struct picked *)ctx)->entries[i];
  for (int c = 0; c < S_NCOLS; c++) cell[c] = "-";
  cell[S_NAME] = e->name;
  cell[S_STATUS] = entry_status(e);
  if (e->private_obj) cell[S_OWNER] = e->owner;
  if (e->rc) return;
  cell[S_KIND] = kind_name(e->info.kind);
  shape_text(&e->layout, buf[S_SHAPE], sizeof buf[0]);
  cell[S_SHAPE] = buf[S_SHAPE];
  snprintf(buf[S_CHANGES], sizeof buf[0], "%" PRIu64, e->info.changes);
  cell[S_CHANGES] = buf[S_CHANGES];
  cell[S_RATE] = rate_text(e->changes_rate, buf[S_RATE], sizeof buf[0]);
  snprintf(buf[S_PID], sizeof buf[0], "%" PRId32, e->info.creator_pid);
  cell[S_PID] = buf[S_PID];
  cell[S_ALIVE] = alive_text(e->info.creator_alive, false);
  cell[S_OWNER] = e->owner;
  cell[S_FORMAT] = e->layout.format;
}

void print_top(const struct snapshot *s, uint64_t now) {
  const struct entry **streams = calloc(s->n + 1, sizeof *streams);
  const struct entry **others = calloc(s->n + 1, sizeof *others);
  size_t nstreams = 0, nothers = 0;
  if (!streams || !others) {
    free(streams);
    free(others);
    errorf(-ENOMEM, "top");
    return;
  }
  for (size_t i = 0; i < s->n; i++) {
    if (is_stream(&s->entries[i])) streams[nstreams++] = &s->entries[i];
    else others[nothers++] = &s->entries[i];
  }
  char when[32];
  time_t secs = (time_t)(now / 1000000000u);
  struct tm tm;
  if (!localtime_r(&secs, &tm) || !strftime(when, sizeof when, "%H:%M:%S", &tm))
    snprintf(when, sizeof when, "?");
  printf("shmlane top - %s - %zu streams, %zu other segments", when, nstreams, nothers);
  if (s->unreadable) printf(" (%zu unreadable)", s->unreadable);
  fputs(" - Ctrl-C quits\n\n", stdout);
  struct picked p = {streams, now}, q = {others, now};
  struct reader_rows rr = {streams, nstreams};
  size_t nreaders = 0;
  for (size_t i = 0; i < nstreams; i++) nreaders += streams[i]->nreaders;
  struct columns st = {T_NCOLS, top_stream_title, top_stream_right, stream_row, &p};
  struct columns rd = {R_NCOLS, top_reader_title, top_reader_right, reader_row, &rr};
  struct columns sg = {S_NCOLS, top_segment_title, top_segment_right, segment_row, &q};
  if (nstreams) print_columns(&st, nstreams);
  if (nreaders) putchar('\n');
  if (nreaders) print_columns(&rd, nreaders);
  if (nstreams && nothers) putchar('\n');
  if (nothers) print_columns(&sg, nothers);
  free(streams);
  free(others);
}
