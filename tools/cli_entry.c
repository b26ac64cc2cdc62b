/* Reading segments for `ls` and `info`: each opened read-only, described,
 * closed again; streams sampled twice for their frame rate. */
#include <errno.h>
#include <inttypes.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"

uint64_t clock_ns(clockid_t clock) {
  struct timespec ts;
  clock_gettime(clock, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

bool is_stream(const struct entry *e) {
  return e->rc == 0 && e->info.kind == SHL_KIND_STREAM;
}

/* The stream's counters, and when they were read: the frame timestamps
 * are CLOCK_MONOTONIC too, so ages need no second clock reading. */
static int sample_stream(const shl_segment *seg, shl_stream_info *out, uint64_t *when) {
  int rc = shl_stream_get_info(seg, out);
  *when = clock_ns(CLOCK_MONOTONIC);
  return rc;
}

/* Whoever owns it: looking is not trusting (the tool never acts on another
 * user's data; gc checks ownership itself). Described, never mapped: the
 * owner may cut the object short (ftruncate) while it is read, which makes
 * the open fail (SHL_E_TRUNCATED) where touching a mapping past the new end
 * would kill `ls`, `info`, `gc` and `top` with SIGBUS. */
int look_at(const char *name, int64_t timeout_ns, look_fn look, void *arg) {
  shl_open_opts opts = SHL_OPEN_OPTS_INIT;
  opts.flags = SHL_OPEN_DESCRIBE;
  opts.timeout_ns = timeout_ns;
  opts.owner = SHL_OWNER_ANY;
  shl_segment *seg;
  int rc = shl_open_ex(&seg, name, &opts);
  if (rc == 0) {
    rc = look(seg, arg);
    shl_close(seg);
  }
  return rc;
}

/* One lookup per distinct uid in a row: a listing's entries mostly share an owner. */
bool user_name(uint32_t uid, char *buf, size_t size) {
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

/* The stream's metadata format, in a string of its own. */
static int copy_meta_format(const shl_segment *seg, char **out) {
  if (!(*out = malloc(SHL_FORMAT_MAX + 1))) return -ENOMEM;
  int64_t rc = shl_stream_get_meta(seg, *out, SHL_FORMAT_MAX + 1);
  if (rc < 0) {
    free(*out);
    *out = NULL;
    return (int)rc;
  }
  return 0;
}

/* The reader entries in use, into e->readers. */
static int sample_readers(const shl_segment *seg, struct entry *e) {
  e->readers = calloc(e->stream.max_readers ? e->stream.max_readers : 1, sizeof *e->readers);
  if (!e->readers) return -ENOMEM;
  for (uint32_t i = 0; i < e->stream.max_readers; i++) {
    e->readers[e->nreaders] = (shl_stream_reader)SHL_STREAM_READER_INIT;
    int rc = shl_stream_get_reader(seg, i, &e->readers[e->nreaders]);
    if (rc < 0) return rc;
    e->nreaders += (uint32_t)rc;
  }
  return 0;
}

uint64_t pinned_slots(const struct entry *e) {
  uint64_t bits = 0;
  for (uint32_t i = 0; i < e->nreaders; i++) bits |= e->readers[i].pinned;
  return bits;
}

/* What entry_open reads of an open segment; a stream whose control area
 * does not check out is as broken as a bad header. */
static int entry_look(shl_segment *seg, void *arg) {
  struct entry *e = arg;
  int rc = shl_get_info(seg, &e->info);
  if (rc == 0) {
    shl_get_layout(seg, &e->layout);
    e->layout.format = e->format = strdup(e->layout.format);
    if (!e->format) rc = -ENOMEM;
  }
  if (rc < 0 || e->info.kind != SHL_KIND_STREAM) return rc;
  rc = sample_stream(seg, &e->stream, &e->sampled_ns);
  if (rc == 0 && e->stream.meta_size) rc = copy_meta_format(seg, &e->meta_format);
  return rc == 0 ? sample_readers(seg, e) : rc;
}

void entry_open(struct entry *e, const char *name, int64_t timeout_ns) {
  e->name = name;
  e->format = e->meta_format = NULL;
  e->readers = NULL;
  e->nreaders = 0;
  e->fps = e->changes_rate = -1;
  e->info = (shl_info)SHL_INFO_INIT;
  e->stream = (shl_stream_info)SHL_STREAM_INFO_INIT;
  e->private_obj = false;
  e->rc = look_at(name, timeout_ns, entry_look, e);
  struct stat st;
  char path[64];
  /* Not readable: another user's private object (0600, the default) shows
   * whose it is, from the directory entry. */
  if (e->rc == -EACCES && shm_path(name, path, sizeof path) && lstat(path, &st) == 0 &&
      S_ISREG(st.st_mode) && st.st_uid != geteuid()) {
    e->private_obj = true;
    e->info.uid = (uint32_t)st.st_uid;
  }
  if (e->rc == 0 || e->private_obj) {
    e->owner_named = user_name(e->info.uid, e->owner, sizeof e->owner);
    if (!e->owner_named) snprintf(e->owner, sizeof e->owner, "%" PRIu32, e->info.uid);
  }
}

const char *entry_status(const struct entry *e) {
  return e->private_obj ? "private" : e->rc ? shl_err_name(e->rc) : "ok";
}

void entry_free(struct entry *e) {
  free(e->format);
  free(e->meta_format);
  free(e->readers);
}

/* A second look at an entry's stream: the same stream only (a new one made
 * under the name since has other creation stamps). */
struct resample {
  const struct entry *e;
  shl_stream_info *out;
  uint64_t *when;
};

static int resample_look(shl_segment *seg, void *arg) {
  const struct resample *r = arg;
  shl_info now = SHL_INFO_INIT;
  int rc = shl_get_info(seg, &now);
  if (rc == 0 &&
      (now.created_ns != r->e->info.created_ns || now.creator_pid != r->e->info.creator_pid))
    rc = -ESTALE;
  return rc == 0 ? sample_stream(seg, r->out, r->when) : rc;
}

static int resample_stream(const struct entry *e, shl_stream_info *out, uint64_t *when) {
  struct resample r = {e, out, when};
  return look_at(e->name, 0, resample_look, &r);
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

/* One shared pause for every stream: a listing costs a single window however
 * many streams it holds, and none without streams. */
void measure_rates(struct entry *entries, size_t n) {
  bool any = false;
  for (size_t i = 0; i < n; i++) any |= is_stream(&entries[i]);
  if (!any) return;
  struct timespec left = {0, RATE_WINDOW_NS};
  while (nanosleep(&left, &left) != 0 && errno == EINTR) continue;
  for (size_t i = 0; i < n; i++) {
    struct entry *e = &entries[i];
    shl_stream_info later = SHL_STREAM_INFO_INIT;
    uint64_t when;
    if (!is_stream(e) || resample_stream(e, &later, &when) != 0) continue;
    e->fps = frame_rate(&e->stream, e->sampled_ns, &later, when);
    e->stream = later;
    e->sampled_ns = when;
  }
}

bool last_frame_age(const struct entry *e, uint64_t *ns) {
  const shl_stream_info *s = &e->stream;
  if (!s->last_seq) return false;
  *ns = e->sampled_ns > s->last_timestamp_ns ? e->sampled_ns - s->last_timestamp_ns : 0;
  return true;
}

bool unreadable(int rc) { return rc < 0 && rc > SHL_E_NOT_SHMLANE; }

int snapshot_take(struct snapshot *s) {
  *s = (struct snapshot){0};
  int rc = shl_list(collect_name, &s->names);
  if (rc >= 0) rc = collect_bad_names(&s->names);
  if (rc >= 0 && s->names.n && !(s->entries = calloc(s->names.n, sizeof *s->entries))) rc = -ENOMEM;
  if (rc < 0) {
    snapshot_free(s);
    return rc;
  }
  qsort(s->names.names, s->names.n, sizeof *s->names.names, compare_names);
  /* No waiting: a segment still being created shows as SHL_E_NOT_READY. */
  for (size_t i = 0; i < s->names.n; i++) {
    struct entry *e = &s->entries[s->n];
    entry_open(e, s->names.names[i], 0);
    if (e->rc == -ENOENT) { /* removed since it was listed */
      entry_free(e);
      continue;
    }
    s->unreadable += unreadable(e->rc) && !e->private_obj;
    s->n++;
  }
  s->taken_ns = clock_ns(CLOCK_MONOTONIC);
  return 0;
}

void snapshot_free(struct snapshot *s) {
  for (size_t i = 0; i < s->n; i++) entry_free(&s->entries[i]);
  free(s->entries);
  list_free(&s->names);
  *s = (struct snapshot){0};
}

/* The same object in two snapshots: a name re-created meanwhile is another. */
static bool same_object(const struct entry *a, const struct entry *b) {
  return a->rc == 0 && b->rc == 0 && a->info.created_ns == b->info.created_ns &&
         a->info.creator_pid == b->info.creator_pid && a->info.kind == b->info.kind;
}

void snapshot_rates(struct snapshot *now, const struct snapshot *before) {
  double seconds = (double)(now->taken_ns - before->taken_ns) / 1e9;
  size_t j = 0; /* both are sorted by name: one walk */
  for (size_t i = 0; i < now->n; i++) {
    struct entry *e = &now->entries[i];
    while (j < before->n && strcmp(before->entries[j].name, e->name) < 0) j++;
    if (j == before->n || strcmp(before->entries[j].name, e->name) != 0) continue;
    const struct entry *old = &before->entries[j];
    if (!same_object(old, e) || seconds <= 0) continue;
    uint64_t more = e->info.changes > old->info.changes ? e->info.changes - old->info.changes : 0;
    e->changes_rate = (double)more / seconds;
    if (is_stream(e)) e->fps = frame_rate(&old->stream, old->sampled_ns, &e->stream, e->sampled_ns);
  }
}
