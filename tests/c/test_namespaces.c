/* Containers (docs/containers.md): a /dev/shm mounted read-only. Each case
 * runs in a forked child that enters namespaces of its own, so the test
 * program's own are never touched; a tmpfs mounted there goes with the
 * child. Needs root: skipped otherwise, or where the namespaces cannot be
 * made. */
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>

#include "testutil_stream.h"

#define MARK 0xC0FFEEu
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

int main(void) {
  if (geteuid() != 0) {
    fprintf(stderr, "skip: needs root to mount\n");
    return T_SKIP;
  }
  umask(077);
  test_readonly_mount();
  return t_result();
}
