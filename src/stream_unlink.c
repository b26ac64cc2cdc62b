/* Removing a stream's name only while nothing uses it: the check and the
 * unlink under the writer role, so that no writer can start in between. */
#include <errno.h>
#include <sys/stat.h>

#include "internal.h"

/* 0 if the object open as fd and the one open as seg are the same file. */
static int same_file(int fd, const shl_segment *seg) {
  struct stat a, b;
  if (fstat(fd, &a) < 0 || fstat(seg->fd, &b) < 0) return -errno;
  return a.st_ino == b.st_ino && a.st_dev == b.st_dev ? 0 : -ESTALE;
}

/* -EBUSY while a creator, writer or reader role of the object is held.
 * Every reader entry's byte, whatever the stream's header says: a peer
 * may rewrite max_readers to hide readers. */
static int roles_free(int fd) {
  if (shl__role_held(fd, SHL__ROLE_CREATOR) != 0) return -EBUSY;
  for (uint32_t i = 0; i < SHL_STREAM_MAX_READERS; i++)
    if (shl__role_held(fd, SHL__ROLE_READER(i)) != 0) return -EBUSY;
  return 0;
}

int shl_stream_unlink_unused(const char *name, int fd) {
  shl_open_opts opts = SHL_OPEN_OPTS_INIT;
  opts.flags = SHL_OPEN_DESCRIBE;
  opts.timeout_ns = 0;
  opts.owner = SHL_OWNER_ANY; /* the unlink, not the open, says whose it may be */
  shl_segment *seg;
  int rc = shl_open_ex(&seg, name, &opts);
  if (rc < 0) return rc;
  if (fd >= 0) rc = same_file(fd, seg);
  if (rc == 0 && seg->kind != SHL_KIND_STREAM) rc = SHL_E_BAD_KIND;
  /* A writer that comes now waits for the role, then sees the name gone
   * (or another object under it) and creates a stream afresh. */
  struct shl__role_fd role;
  shl__role_fd_init(&role);
  if (rc == 0) rc = shl__seg_role_open(seg, &role, SHL__ROLE_WRITER);
  if (rc == 0) rc = roles_free(role.fd);
  SHL__TEST_POINT(stream_unlink_checked);
  if (rc == 0) rc = shl_unlink_if_same(name, seg->fd);
  shl__role_fd_close(&role);
  shl_close(seg);
  return rc;
}
