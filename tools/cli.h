/* Private interfaces between the files of the shmlane command (tools/cli*.c).
 * Calls go down: cli.c (the entry point: options, commands) calls the
 * others; cli_top.c calls cli_output.c; cli_output.c and cli_gc.c call
 * cli_entry.c (segments as read); cli_util.c (messages, name lists, object
 * paths) calls none of them. */
#ifndef SHMLANE_CLI_H
#define SHMLANE_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include "shmlane.h"

enum { EXIT_RUNTIME = 1, EXIT_USAGE = 2 };

/* cli_util.c: an untrusted string (from the shared-memory directory, a
 * segment header or the command line: a format may hold any blank, newlines
 * and escapes included), one '?' per non-printable byte, so terminals stay
 * sane and one byte is one column. */
void put_text(const char *s, FILE *f);
/* cli_util.c: one line on stderr: "shmlane: <what>[: <reason for rc>]", its
 * text printed as put_text prints. */
void errorf(int rc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* cli_util.c: names gathered by shl_list (collect_name as its callback) or from
 * the command line, sorted with compare_names. */
struct list {
  char **names;
  size_t n, cap;
};
int collect_name(const char *name, void *arg);
/* Adds the entries under the shmlane prefix that are no valid name (which
 * shl_list leaves out: a blank, an escape sequence, a newline, too long),
 * each escaped: every byte that is not printable ASCII, a blank or a
 * backslash as \xNN. An escaped name is never valid, so it names no segment. */
int collect_bad_names(struct list *l);
int compare_names(const void *a, const void *b);
void list_free(struct list *l);

/* cli_util.c: where a segment's object appears as a file; false if it does not fit. */
bool shm_path(const char *name, char *buf, size_t size);

/* cli_entry.c: a segment as read (and closed again: a listing holds one
 * descriptor at a time, however many entries), or why it could not be read. */
struct entry {
  const char *name;
  int rc;       /* 0: described below */
  char *format; /* owned copy; layout.format points to it */
  char *meta_format; /* streams: their metadata format (owned), NULL for none */
  shl_info info;
  shl_layout layout;
  char owner[64]; /* user name, or the uid in decimal when it has none */
  bool owner_named;
  /* Another user's object this user may not read (rc -EACCES): only its
   * owner (info.uid, owner) is known. Not an error of a listing. */
  bool private_obj;
  /* Streams only: */
  shl_stream_info stream;
  uint64_t sampled_ns; /* CLOCK_MONOTONIC when `stream` was read */
  double fps;          /* < 0: not measured */
  shl_stream_reader *readers; /* the entries in use (owned), nreaders of them */
  uint32_t nreaders;
  double changes_rate; /* changes per second between two snapshots (top); < 0: not measured */
};

uint64_t clock_ns(clockid_t clock);
/* The user name of uid, or false. */
bool user_name(uint32_t uid, char *buf, size_t size);
/* Opens name to describe it (SHL_OPEN_DESCRIBE), whoever owns it (looking
 * is not trusting: the tool never acts on another user's data; gc checks
 * ownership itself), runs look on it and closes it. The open's error
 * (SHL_E_TRUNCATED for an object cut short while it was read) or look's result. */
typedef int (*look_fn)(shl_segment *seg, void *arg);
int look_at(const char *name, int64_t timeout_ns, look_fn look, void *arg);
void entry_open(struct entry *e, const char *name, int64_t timeout_ns);
/* What the STATUS column says: "ok", "private", or the error's name. */
const char *entry_status(const struct entry *e);
void entry_free(struct entry *e);
bool is_stream(const struct entry *e);
/* Slots some reader of the stream pins now (bits). */
uint64_t pinned_slots(const struct entry *e);
/* Sample every stream a second time after one shared pause. */
void measure_rates(struct entry *entries, size_t n);
/* Time from the newest frame's publication to the sample; false if none yet. */
bool last_frame_age(const struct entry *e, uint64_t *ns);

/* Whether rc says that an entry could not be read at all (permissions,
 * resources: an errno), as opposed to what was read (SHL_E_* codes). */
bool unreadable(int rc);

/* Every segment, sorted by name, as read at one moment (`ls`, `top`). */
struct snapshot {
  struct list names;
  struct entry *entries;
  size_t n;          /* entries read (those removed since they were listed are left out) */
  size_t unreadable; /* of them, how many could not be read at all */
  uint64_t taken_ns; /* CLOCK_MONOTONIC */
};
/* 0, or the library's code when the directory cannot be listed. */
int snapshot_take(struct snapshot *s);
void snapshot_free(struct snapshot *s);
/* Frame rates (streams) and change rates (all) of `now` since `before`, for
 * the entries that are the same object in both. */
void snapshot_rates(struct snapshot *now, const struct snapshot *before);

/* cli_output.c: `info` as text or JSON, `ls` and `top` as tables. */
void print_info_text(const struct entry *e, uint64_t now);
void print_info_json(const struct entry *e, uint64_t now);
void print_table(const struct entry *entries, size_t n, uint64_t now);
void print_top(const struct snapshot *s, uint64_t now);

/* cli_top.c */
struct top_opts {
  bool json;
  unsigned count; /* tables to print; 0: until interrupted */
};
int top_run(const struct top_opts *o);

/* cli_gc.c */
enum { GC_DEFAULT_GRACE_S = 10 };
struct gc_opts {
  bool dry_run, all_dead;
  uint64_t grace_ns;
};
/* Removes what nobody uses any more among names (sorted), printing a line
 * for each; EXIT_RUNTIME if any removal failed, else 0. */
int gc_run(char *const *names, size_t n, const struct gc_opts *o);

#endif /* SHMLANE_CLI_H */
