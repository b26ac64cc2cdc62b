/* Containers (docs/containers.md): a /dev/shm mounted read-only, and a user
 * namespace whose uid is the overflow uid (65534), the id every owner it does
 * not map shows as. Each case runs in a forked child that enters namespaces
 * of its own, so the test program's own are never touched; a tmpfs mounted
 * there goes with the child. Needs root: skipped otherwise, or where the
 * namespaces cannot be made. */
#include <grp.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>

#include "testutil_stream.h"

#define MARK 0xC0FFEEu
#define OVERFLOW_UID 65534
#define STRANGER 4242 /* a uid no namespace here maps */
#define SKIPPED 1000  /* a child's result: the namespace could not be made */

static const shl_layout layout = {.format = "<I", .ndim = 1, .shape = {64}};

static shl_segment *make(const char *name, uint32_t mode) {
  shl_segment *seg = NULL;
  shl_create_opts opts = {.size = sizeof opts, .mode = mode};
  T_EXPECT_RC(shl_create(&seg, name, &layout, &opts), 0);
  T_REQUIRE(seg);
  ((uint32_t *)shl_payload(seg))[0] = MARK;
  return seg;
}

static shl_writer *make_stream(const char *name, uint32_t mode) {
  shl_layout frame = t_frame_layout(8);
  shl_stream_opts opts = {.size = sizeof opts, .slots = 2, .mode = mode};
  shl_writer *w = NULL;
  T_EXPECT_RC(shl_writer_open(&w, name, &frame, &opts), 0);
  return w;
}

/* ---------------------------------------------------------------- read-only /dev/shm */

/* In a mount namespace of its own: a tmpfs at /dev/shm holding root's
 * segment and stream, then bound read-only over itself (as a container's
 * `-v shm:/dev/shm:ro`). Types the calls ignore are "none", not NULL, which
 * valgrind takes for a bad pointer. */
static int on_readonly_mount(void *arg) {
  (void)arg;
  t_failures = 0; /* the child's own, returned */
  if (unshare(CLONE_NEWNS) < 0 || mount("none", "/", "none", MS_REC | MS_PRIVATE, NULL) < 0 ||
      mount("tmpfs", "/dev/shm", "tmpfs", 0, "size=1m,mode=1777") < 0)
    return SKIPPED;
  shl_segment *rw = make("calib", 0600);
  shl_writer *w = make_stream("cam", 0600);
  T_REQUIRE(mount("/dev/shm", "/dev/shm", "none", MS_BIND, NULL) == 0 &&
            mount("none", "/dev/shm", "none", MS_REMOUNT | MS_BIND | MS_RDONLY, NULL) == 0);
  /* Its owner, who may write it, reads it read-only (it got EROFS). */
  shl_segment *ro = NULL;
  T_EXPECT_RC(shl_open(&ro, "calib", SHL_OPEN_READONLY, 0), 0);
  if (ro) {
    T_CHECK(((const volatile uint32_t *)shl_payload(ro))[0] == MARK);
    T_CHECK(shl_is_readonly(ro));
    uint64_t since = shl_changes(ro), seen = 0;
    T_EXPECT_RC(shl_notify(rw, NULL), 0); /* a handle opened before the mount turned */
    T_EXPECT_RC(shl_wait(ro, since, 5000 * T_MS, &seen), 0);
    T_CHECK(seen == since + 1);
    T_EXPECT_RC(shl_lock(ro, 0), SHL_E_READONLY);
  }
  shl_close(ro);
  /* What needs to write says why it cannot. */
  shl_segment *seg = NULL;
  T_EXPECT_RC(shl_open(&seg, "calib", 0, 0), -EROFS);
  shl_reader *r = NULL;
  T_EXPECT_RC(shl_reader_open(&r, "cam", SHL_RECV_ALL, 0), -EROFS);
  shl_writer_close(w);
  shl_close(rw);
  return t_failures;
}

static void test_readonly_mount(void) {
  int rc;
  T_EXPECT_EXIT(t_child_run(on_readonly_mount, NULL, 20, &rc), 0);
  if (rc == SKIPPED)
    fprintf(stderr, "skip: cannot mount a tmpfs at /dev/shm in a mount namespace\n");
  else
    T_EXPECT_RC(rc, 0);
}

/* ---------------------------------------------------------------- the overflow uid */

struct names {
  const char *mine, *theirs, *their_stream;
};

/* As STRANGER: a segment and a stream (no writer left) that anyone may write. */
static int as_stranger(void *arg) {
  const struct names *n = arg;
  t_failures = 0;
  if (setgroups(0, NULL) < 0 || setgid(STRANGER) < 0 || setuid(STRANGER) < 0) return SKIPPED;
  shl_close(make(n->theirs, 0666));
  shl_writer_close(make_stream(n->their_stream, 0666));
  return t_failures;
}

static int write_file(const char *path, const char *text) {
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  ssize_t n = write(fd, text, strlen(text));
  close(fd);
  return n == (ssize_t)strlen(text) ? 0 : -1;
}

/* In a user namespace that maps root, and root only, to 65534: root's
 * objects and STRANGER's both show as owned by 65534, this process's uid. */
static int as_overflow_uid(void *arg) {
  const struct names *n = arg;
  t_failures = 0;
  char map[32];
  snprintf(map, sizeof map, "%d 0 1\n", OVERFLOW_UID);
  if (unshare(CLONE_NEWUSER) < 0 || write_file("/proc/self/uid_map", map) < 0 ||
      write_file("/proc/self/setgroups", "deny") < 0 || write_file("/proc/self/gid_map", map) < 0)
    return SKIPPED;
  char path[T_PATH_MAX];
  struct stat st;
  T_REQUIRE(geteuid() == OVERFLOW_UID);
  T_REQUIRE(stat(t_shm_path(n->theirs, path), &st) == 0 && st.st_uid == OVERFLOW_UID);
  /* STRANGER's objects are another user's, whatever the uid shown. */
  shl_segment *seg = NULL;
  T_EXPECT_RC(shl_open(&seg, n->theirs, 0, 0), SHL_E_FOREIGN_OWNER);
  shl_close(seg);
  shl_open_opts creator = SHL_OPEN_OPTS_INIT;
  creator.owner = SHL_OWNER_CREATOR;
  seg = NULL;
  T_EXPECT_RC(shl_open_ex(&seg, n->theirs, &creator), SHL_E_FOREIGN_OWNER);
  shl_close(seg);
  shl_layout frame = t_frame_layout(8);
  shl_stream_opts sopts = {.size = sizeof sopts, .slots = 2, .mode = 0666};
  shl_writer *w = NULL;
  T_EXPECT_RC(shl_writer_open(&w, n->their_stream, &frame, &sopts), SHL_E_FOREIGN_OWNER);
  shl_writer_close(w);
  shl_reader *r = NULL;
  T_EXPECT_RC(shl_reader_open(&r, n->their_stream, SHL_RECV_ALL, 0), SHL_E_FOREIGN_OWNER);
  shl_reader_close(r);
  /* Named, they open; and this process's own object is still its own. */
  shl_open_opts any = SHL_OPEN_OPTS_INIT;
  any.owner = SHL_OWNER_ANY;
  seg = NULL;
  T_EXPECT_RC(shl_open_ex(&seg, n->theirs, &any), 0);
  shl_close(seg);
  seg = NULL;
  T_EXPECT_RC(shl_open_ex(&seg, n->mine, &creator), 0);
  if (seg) T_CHECK(((const volatile uint32_t *)shl_payload(seg))[0] == MARK);
  shl_close(seg);
  return t_failures;
}

static void test_overflow_uid(void) {
  struct names n = {t_name("nsown"), t_name("nsfor"), t_name("nsfst")};
  t_unlink_at_exit(n.mine);
  t_unlink_at_exit(n.theirs);
  t_unlink_at_exit(n.their_stream);
  shl_close(make(n.mine, 0600));
  int rc;
  T_EXPECT_EXIT(t_child_run(as_stranger, &n, 10, &rc), 0);
  T_REQUIRE(rc == 0);
  T_EXPECT_EXIT(t_child_run(as_overflow_uid, &n, 10, &rc), 0);
  if (rc == SKIPPED)
    fprintf(stderr, "skip: cannot make a user namespace here\n");
  else
    T_EXPECT_RC(rc, 0);
}

int main(void) {
  if (geteuid() != 0) {
    fprintf(stderr, "skip: needs root to mount and to create as another user\n");
    return T_SKIP;
  }
  umask(077);
  test_readonly_mount();
  test_overflow_uid();
  return t_result();
}
