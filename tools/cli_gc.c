/* shmlane gc: remove what dead processes left behind. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"

/* Nothing in a segment records who has it open, so "unused" can only be
 * proven for streams (writer and readers register themselves) and for
 * objects whose creator never finished. Everything else needs --all-dead. */

static uint64_t stat_ns(const struct timespec *ts) {
  return (uint64_t)ts->tv_sec * 1000000000u + (uint64_t)ts->tv_nsec;
}

/* Whether this process may remove the object `seen` at path: in the sticky
 * /dev/shm, its owner or a holder of CAP_FOWNER over it may (root; the root
 * of a user namespace only over the owners that namespace maps), the same
 * processes the kernel lets open a file with O_NOATIME. Comparing st_uid
 * with geteuid() would not do: there every owner the namespace does not map
 * shows as 65534, and uid 0 is not everyone's root. */
static bool may_remove(const char *path, const struct stat *seen) {
  int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOATIME);
  if (fd < 0) return false;
  struct stat now;
  bool same = fstat(fd, &now) == 0 && now.st_ino == seen->st_ino && now.st_dev == seen->st_dev;
  close(fd);
  return same;
}

/* Why a ready segment may be removed (look_at's look), or NULL to keep it. */
struct judged {
  const struct gc_opts *o;
  const char *why;
  bool stream; /* removed only with its writer role held (shl_stream_unlink_unused) */
};

static int judge(shl_segment *seg, void *arg) {
  struct judged *j = arg;
  shl_info info = SHL_INFO_INIT;
  if (shl_get_info(seg, &info) < 0) return 0;
  if (info.kind == SHL_KIND_STREAM) {
    shl_stream_info s = SHL_STREAM_INFO_INIT;
    j->stream = true;
    /* writer_alive and readers_alive count "cannot tell" as alive. */
    if (shl_stream_get_info(seg, &s) == 0 && s.writer_alive == 0 && s.readers_alive == 0)
      j->why = s.writer_pid ? "stream: writer dead, no reader" : "stream: no writer, no reader";
  } else if (j->o->all_dead && info.creator_alive == 0) {
    j->why = "creator dead (--all-dead)";
  }
  return 0;
}

/* Why `name`, the object open as fd at path, may be removed, or NULL to
 * keep it; *stream: a stream judged unused. */
static const char *gc_verdict(const char *name, const char *path, const struct gc_opts *o, int fd,
                              bool *stream) {
  struct stat seen;
  if (fstat(fd, &seen) < 0 || !S_ISREG(seen.st_mode)) return NULL;
  /* Only what this process may remove: this user's objects (root: everyone's).
   * Another user's may look abandoned while they use it as they see fit, and
   * the sticky /dev/shm would refuse the unlink anyway. */
  if (!may_remove(path, &seen)) return NULL;
  struct judged j = {o, NULL, false};
  int rc = look_at(name, 0, judge, &j);
  *stream = rc == 0 && j.stream;
  if (rc == SHL_E_NOT_READY) {
    /* Not ready, yet not SHL_E_CREATOR_DEAD: its creator holds the creator
     * role lock (alive: reserving a large payload, or stopped), or it cannot
     * be told. Only an empty object can lack the lock with its creator
     * alive (the moment between shm_open and the lock): one still empty
     * after the grace period was planted, or its creator died on the way.
     * Age by mtime, which shm_open(O_CREAT) sets. */
    if (seen.st_size > 0) return NULL;
    uint64_t changed = stat_ns(&seen.st_mtim);
    uint64_t now = clock_ns(CLOCK_REALTIME);
    return now >= changed && now - changed >= o->grace_ns ? "never initialised" : NULL;
  }
  /* Its creator's role lock is free: the creator is gone, whatever namespace it ran in. */
  if (rc == SHL_E_CREATOR_DEAD) return "creator died before it was ready";
  /* Else gone, foreign, corrupt, cut short or not ours to read: not gc's call. */
  return rc < 0 ? NULL : j.why;
}

/* 0 removed (or gone already: another gc got there), 1 kept, < 0 error. */
static int gc_one(const char *name, const struct gc_opts *o) {
  /* The descriptor holds the object judged (O_PATH: no access needed, and
   * nothing but the name is opened), so that a replacement created under the
   * name meanwhile is told apart and left alone. */
  char path[64];
  int fd = shm_path(name, path, sizeof path) ? open(path, O_PATH | O_NOFOLLOW | O_CLOEXEC) : -1;
  if (fd < 0) return 1;
  bool stream = false;
  const char *why = gc_verdict(name, path, o, fd, &stream);
  int rc = why ? 0 : 1;
  if (why && o->dry_run) {
    printf("would remove %s (%s)\n", name, why);
  } else if (why) {
    /* A stream: judged again with its writer role held, so that no writer
     * can start between the judgment and the unlink. */
    rc = stream ? shl_stream_unlink_unused(name, fd) : shl_unlink_if_same(name, fd);
    if (rc == 0)
      printf("removed %s (%s)\n", name, why);
    else if (rc == -ENOENT || rc == -ESTALE)
      rc = 0; /* gone, or replaced: not the object judged */
    else if (rc == -EBUSY || rc == SHL_E_NOT_READY)
      rc = 1; /* in use again since it was judged: kept */
    else
      errorf(rc, "gc: cannot remove '%s'", name);
  }
  close(fd);
  return rc;
}

int gc_run(char *const *names, size_t n, const struct gc_opts *o) {
  int status = 0;
  for (size_t i = 0; i < n; i++)
    if (gc_one(names[i], o) < 0) status = EXIT_RUNTIME;
  return status;
}
