/* Openers against a creator that is slow, stopped or killed mid-creation,
 * creator_alive, and a directory planted at a segment's path. The creator
 * holds its role lock (SHL__ROLE_CREATOR) from shm_open until its handle
 * closes: an opener waits while it is held and knows the creator died when
 * it is free and the header is not ready. */
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "internal.h"
#include "testutil_proc.h"

static const shl_layout layout = {.format = "<i", .ndim = 1, .shape = {4}};

/* A creator caught half-way, as shl_create leaves the object while it
 * reserves a large payload: role taken, sized, pid written, not ready. It
 * stops itself; once continued it publishes a header copied from a segment
 * it creates properly under another name. */
static void fake_creator(const char *name, const char *model) {
  char pname[SHL_NAME_MAX + 8];
  snprintf(pname, sizeof pname, "%s%s", SHL_POSIX_PREFIX, name);
  int fd = shm_open(pname, O_RDWR | O_CREAT | O_EXCL, 0600);
  struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET,
                     .l_start = (off_t)SHL__ROLE_CREATOR, .l_len = 1};
  if (fd < 0 || fcntl(fd, F_OFD_SETLK, &fl) < 0 || ftruncate(fd, 8192) < 0) _exit(1);
  int32_t pid = (int32_t)getpid();
  if (pwrite(fd, &pid, sizeof pid, offsetof(struct shl__header, creator_pid)) != sizeof pid)
    _exit(1);
  raise(SIGSTOP);
  shl_segment *seg = NULL;
  shl_create_opts opts = {.size = sizeof(shl_create_opts), .flags = SHL_CREATE_REPLACE};
  if (shl_create(&seg, model, &layout, &opts) < 0) _exit(2);
  shl_info info = SHL_INFO_INIT;
  char path[T_PATH_MAX];
  int model_fd = open(t_shm_path(model, path), O_RDONLY | O_CLOEXEC);
  if (shl_get_info(seg, &info) < 0 || model_fd < 0) _exit(3);
  unsigned char *copy = malloc(info.total_size);
  if (!copy || pread(model_fd, copy, info.total_size, 0) != (ssize_t)info.total_size) _exit(3);
  shl_unlink(model);
  struct shl__header *h = (struct shl__header *)(void *)copy;
  h->creator_pid = pid;
  h->state = SHL__STATE_INIT;
  uint32_t ready = SHL__STATE_READY;
  if (ftruncate(fd, (off_t)info.total_size) < 0 ||
      pwrite(fd, copy, info.total_size, 0) != (ssize_t)info.total_size ||
      pwrite(fd, &ready, sizeof ready, offsetof(struct shl__header, state)) != sizeof ready)
    _exit(3);
  _exit(0);
}

static pid_t start_fake(const char *name, const char *model) {
  fflush(NULL);
  pid_t pid = fork();
  if (pid == 0) {
    alarm(30);
    fake_creator(name, model);
  }
  int status;
  T_REQUIRE(pid > 0 && waitpid(pid, &status, WUNTRACED) == pid && WIFSTOPPED(status));
  return pid;
}

struct opener {
  const char *name;
  int64_t timeout_ns;
  int rc;
};

static void *open_thread(void *p) {
  struct opener *o = p;
  shl_segment *seg = NULL;
  o->rc = shl_open(&seg, o->name, 0, o->timeout_ns);
  shl_close(seg);
  return NULL;
}

/* While the creator lives, an opener waits for it, past the old fixed 1 s,
 * up to its timeout; it gets the segment once the creator publishes it. */
static void test_slow_creator(void) {
  const char *name = t_name("cslow"), *model = t_name("cmodel");
  t_unlink_at_exit(name);
  t_unlink_at_exit(model);
  pid_t pid = start_fake(name, model);

  long long t0 = t_now_ns();
  shl_segment *seg = NULL;
  T_EXPECT_RC(shl_open(&seg, name, 0, 200000000), SHL_E_NOT_READY); /* alive: waits it out */
  T_CHECK(t_now_ns() - t0 >= 200000000);

  /* The default timeout outlasts the stop; the opener succeeds after it. */
  struct opener o = {name, SHL_OPEN_DEFAULT_TIMEOUT_NS, 1};
  pthread_t t;
  T_REQUIRE(pthread_create(&t, NULL, open_thread, &o) == 0);
  t_sleep_ms(1500); /* longer than the default timeout used to be */
  kill(pid, SIGCONT);
  pthread_join(t, NULL);
  T_EXPECT_RC(o.rc, 0);
  T_EXPECT_EXIT(t_child_reap(pid), 0);
  shl_unlink(name);
}

/* A creator killed mid-creation: its role lock is gone with it, so an
 * opener says so at once instead of waiting out its timeout. */
static void test_dead_creator(void) {
  const char *name = t_name("cdead");
  t_unlink_at_exit(name);
  pid_t pid = start_fake(name, t_name("cunused"));
  kill(pid, SIGKILL);
  T_EXPECT_SIGNAL(t_child_reap(pid), SIGKILL);
  long long t0 = t_now_ns();
  shl_segment *seg = NULL;
  T_EXPECT_RC(shl_open(&seg, name, 0, 10000000000LL), SHL_E_CREATOR_DEAD);
  T_EXPECT_RC(shl_open(&seg, name, SHL_OPEN_READONLY, 10000000000LL), SHL_E_CREATOR_DEAD);
  T_CHECK(t_now_ns() - t0 < 5000000000LL); /* generous; the timeout was 10 s each */
  T_EXPECT_RC(shl_unlink(name), 0);
}

static int alive_seen_by_child(void *name) {
  shl_segment *seg = NULL;
  int rc = shl_open(&seg, name, 0, 1000000000);
  if (rc < 0) return rc;
  shl_info info = SHL_INFO_INIT;
  rc = shl_get_info(seg, &info);
  shl_close(seg);
  return rc < 0 ? rc : info.creator_alive;
}

/* creator_alive: the creator still has the segment open (not its pid). */
static void test_creator_alive(void) {
  const char *name = t_name("calive");
  shl_segment *seg = NULL, *other = NULL;
  shl_create_opts opts = {.size = sizeof(shl_create_opts), .flags = SHL_CREATE_REPLACE};
  T_REQUIRE(shl_create(&seg, name, &layout, &opts) == 0);
  t_unlink_at_exit(name);
  T_REQUIRE(shl_open(&other, name, 0, 1000000000) == 0);
  shl_info info = SHL_INFO_INIT;
  T_EXPECT_RC(shl_get_info(seg, &info), 0);
  T_CHECK(info.creator_alive == 1);
  T_EXPECT_RC(shl_get_info(other, &info), 0);
  T_CHECK(info.creator_alive == 1);
  int rc;
  T_EXPECT_EXIT(t_child_run(alive_seen_by_child, (void *)name, 10, &rc), 0);
  T_EXPECT_RC(rc, 1); /* a forked child's copy does not hide the parent's */
  shl_close(seg);
  T_EXPECT_RC(shl_get_info(other, &info), 0);
  T_CHECK(info.creator_alive == 0 && info.creator_pid == getpid());
  shl_close(other);
  shl_unlink(name);
}

/* A directory planted at a segment's path is named as what it is. */
static void test_directory(void) {
  const char *name = t_name("cdir");
  char path[T_PATH_MAX];
  T_REQUIRE(mkdir(t_shm_path(name, path), 0755) == 0);
  shl_segment *seg = NULL;
  T_EXPECT_RC(shl_open(&seg, name, 0, 0), SHL_E_NOT_SHMLANE);
  T_EXPECT_RC(shl_open(&seg, name, SHL_OPEN_READONLY, 0), SHL_E_NOT_SHMLANE);
  T_EXPECT_RC(shl_create(&seg, name, &layout, NULL), -EEXIST);
  shl_writer *w = NULL;
  shl_reader *r = NULL;
  T_EXPECT_RC(shl_writer_open(&w, name, &layout, NULL), SHL_E_NOT_SHMLANE);
  T_EXPECT_RC(shl_reader_open(&r, name, SHL_RECV_LATEST, 0), SHL_E_NOT_SHMLANE);
  T_CHECK(rmdir(path) == 0);
}

int main(void) {
  test_dead_creator();
  test_creator_alive();
  test_directory();
  test_slow_creator();
  return t_result();
}
