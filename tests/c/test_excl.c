/* Exclusive creation: of several processes racing to create one name,
 * exactly one wins and openers racing with it only ever see a complete
 * segment; and whatever already sits at the name (a foreign file, a planted
 * symlink) is neither taken over nor followed. */
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>

#include "testutil_proc.h"

#define CREATORS 8
#define OPENERS 2
#define ROUNDS 50
#define WAIT_NS 1000000000LL

static const shl_layout layout = {.format = "<q", .ndim = 2, .shape = {3, 5}};

static int layout_ok(const shl_segment *seg) {
  shl_layout l;
  shl_get_layout(seg, &l);
  return strcmp(l.format, "<q") == 0 && l.itemsize == 8 && l.ndim == 2 && l.shape[0] == 3 &&
         l.shape[1] == 5 && shl_payload_size(seg) >= 3 * 5 * 8;
}

/* ---------------------------------------------------------------- the race */

enum role { CREATOR, OPENER };

/* What a racer reports: shl_create's or shl_open's result. An opener that
 * opened a segment whose layout was wrong reports LAYOUT_WRONG. */
#define LAYOUT_WRONG 1

static int race(enum role role, const char *name) {
  shl_segment *seg = NULL;
  int rc;
  if (role == CREATOR) {
    rc = shl_create(&seg, name, &layout, NULL);
  } else {
    /* The name may not exist yet: retry until it does, within a bound. */
    long long deadline = t_now_ns() + WAIT_NS;
    while ((rc = shl_open(&seg, name, 0, WAIT_NS)) == -ENOENT && t_now_ns() < deadline) {
    }
  }
  if (rc == 0 && !layout_ok(seg)) rc = LAYOUT_WRONG;
  shl_close(seg);
  return rc;
}

/* The barrier and the way back: racers write `ready`, block reading `go`
 * until the parent closes its end, and report on `result`. */
struct pipes {
  int ready[2], go[2], result[2];
};

/* Fork a racer: it says it is ready, blocks until `go` closes (so all start
 * together), races, and writes its result. */
static pid_t spawn_racer(enum role role, const char *name, const struct pipes *p) {
  pid_t pid = fork();
  if (pid != 0) return pid;
  alarm(10);
  /* Only the parent may hold the go pipe's write end, or it never reads EOF. */
  close(p->go[1]);
  char byte = 'r';
  int rc = INT_MIN;
  if (write(p->ready[1], &byte, 1) == 1 && read(p->go[0], &byte, 1) == 0) rc = race(role, name);
  int out[2] = {(int)role, rc};
  _exit(write(p->result[1], out, sizeof out) == (ssize_t)sizeof out ? 0 : 1);
}

static void one_round(const char *name, int round) {
  struct pipes p;
  T_REQUIRE(pipe(p.ready) == 0 && pipe(p.go) == 0 && pipe(p.result) == 0);
  int *ready = p.ready, *go = p.go, *result = p.result;
  fflush(NULL);
  pid_t pids[CREATORS + OPENERS];
  for (int i = 0; i < CREATORS + OPENERS; i++) {
    pids[i] = spawn_racer(i < CREATORS ? CREATOR : OPENER, name, &p);
    T_REQUIRE(pids[i] > 0);
  }
  close(ready[1]);
  close(go[0]);
  close(result[1]);
  /* All racers are at the barrier: release them at once. */
  char byte;
  for (int i = 0; i < CREATORS + OPENERS; i++) T_REQUIRE(read(ready[0], &byte, 1) == 1);
  close(go[1]);

  int winners = 0, losers = 0, opened = 0, out[2];
  for (int i = 0; i < CREATORS + OPENERS; i++) {
    T_REQUIRE(read(result[0], out, sizeof out) == (ssize_t)sizeof out);
    if (out[0] == CREATOR) {
      winners += out[1] == 0;
      losers += out[1] == -EEXIST;
    } else {
      opened += out[1] == 0;
    }
    if (out[1] != 0 && !(out[0] == CREATOR && out[1] == -EEXIST))
      fprintf(stderr, "round %d: %s got %d (%s)\n", round, out[0] == CREATOR ? "creator" : "opener",
              out[1], out[1] == LAYOUT_WRONG ? "wrong layout" : shl_err_name(out[1]));
  }
  for (int i = 0; i < CREATORS + OPENERS; i++) T_EXPECT_EXIT(t_child_reap(pids[i]), 0);
  close(ready[0]);
  close(result[0]);
  if (winners != 1 || losers != CREATORS - 1 || opened != OPENERS) {
    fprintf(stderr, "round %d: %d created, %d -EEXIST, %d opened\n", round, winners, losers,
            opened);
    t_failures++;
  }
  T_EXPECT_RC(shl_unlink(name), 0);
}

static void test_race(void) {
  const char *name = t_name("race");
  t_unlink_at_exit(name);
  for (int round = 0; round < ROUNDS && !t_failures; round++) one_round(name, round);
}

/* ---------------------------------------------------------------- squatters */

static const char precious[] = "precious data, not a segment\n";

static void make_file(const char *path) {
  int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  T_REQUIRE(fd >= 0);
  T_REQUIRE(write(fd, precious, sizeof precious - 1) == (ssize_t)sizeof precious - 1);
  close(fd);
}

/* The file still holds exactly what make_file() wrote. */
static bool file_untouched(const char *path) {
  char buf[sizeof precious + 16];
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  ssize_t n = read(fd, buf, sizeof buf);
  close(fd);
  return n == (ssize_t)sizeof precious - 1 && memcmp(buf, precious, (size_t)n) == 0;
}

static bool is_symlink(const char *path) {
  struct stat st;
  return lstat(path, &st) == 0 && S_ISLNK(st.st_mode);
}

/* A plain file made at the name by someone else: create must not take it over. */
static void test_precreated_file(void) {
  const char *name = t_name("pre");
  char path[T_PATH_MAX];
  shl_segment *seg = NULL;
  t_unlink_at_exit(name);
  make_file(t_shm_path(name, path));

  T_EXPECT_RC(shl_create(&seg, name, &layout, NULL), -EEXIST);
  T_CHECK(seg == NULL);
  T_CHECK(file_untouched(path));
  T_EXPECT_RC(shl_open(&seg, name, 0, WAIT_NS), SHL_E_NOT_SHMLANE);
  T_CHECK(file_untouched(path));
  T_EXPECT_RC(shl_unlink(name), 0);
}

/* Opening through a planted symlink must fail without following it, and say
 * that the name holds something else (docs/reliability.md), not ELOOP. */
static void expect_not_followed(const char *name, const char *what) {
  static const uint32_t modes[] = {0, SHL_OPEN_READONLY};
  for (size_t m = 0; m < 2; m++) {
    shl_segment *seg = NULL;
    int rc = shl_open(&seg, name, modes[m], WAIT_NS);
    if (rc != SHL_E_NOT_SHMLANE) {
      fprintf(stderr, "open (flags %u) via symlink to %s: %d (%s), want NOT_SHMLANE\n", modes[m],
              what, rc, shl_err_name(rc));
      t_failures++;
    }
    shl_close(seg);
  }
  shl_reader *r = NULL;
  T_EXPECT_RC(shl_reader_open(&r, name, SHL_RECV_LATEST, 0), SHL_E_NOT_SHMLANE);
}

static void test_symlinks(void) {
  const char *name = t_name("sym");
  const char *real = t_name("symreal");
  char path[T_PATH_MAX], real_path[T_PATH_MAX], target[96], dangling[96];
  shl_segment *seg = NULL;
  t_unlink_at_exit(name);
  t_unlink_at_exit(real);
  t_shm_path(name, path);
  snprintf(target, sizeof target, "/tmp/tshl-target-%ld", (long)getpid());
  snprintf(dangling, sizeof dangling, "/tmp/tshl-dangling-%ld", (long)getpid());
  unlink(target);
  make_file(target);

  /* To a file elsewhere: no open, no create, and the file stays as it was. */
  T_REQUIRE(symlink(target, path) == 0);
  expect_not_followed(name, "a foreign file");
  T_EXPECT_RC(shl_create(&seg, name, &layout, NULL), -EEXIST);
  T_CHECK(seg == NULL && is_symlink(path));
  T_CHECK(file_untouched(target));
  /* REPLACE removes the link itself and creates a real segment in its place. */
  shl_create_opts replace = {.size = sizeof(shl_create_opts), .flags = SHL_CREATE_REPLACE};
  T_EXPECT_RC(shl_create(&seg, name, &layout, &replace), 0);
  shl_close(seg);
  seg = NULL;
  T_CHECK(!is_symlink(path));
  T_CHECK(file_untouched(target));
  T_EXPECT_RC(shl_unlink(name), 0);

  /* To a valid segment: following would succeed, so success means it followed. */
  T_EXPECT_RC(shl_create(&seg, real, &layout, NULL), 0);
  shl_close(seg);
  seg = NULL;
  T_REQUIRE(symlink(t_shm_path(real, real_path), path) == 0);
  expect_not_followed(name, "a valid segment");
  /* Unlinking the name removes the link, never what it points to. */
  T_EXPECT_RC(shl_unlink(name), 0);
  T_CHECK(access(real_path, F_OK) == 0);
  T_EXPECT_RC(shl_unlink(real), 0);

  /* Dangling: create must not make the target through the link. */
  unlink(dangling);
  T_REQUIRE(symlink(dangling, path) == 0);
  T_EXPECT_RC(shl_create(&seg, name, &layout, NULL), -EEXIST);
  T_CHECK(seg == NULL);
  T_CHECK(access(dangling, F_OK) != 0);
  expect_not_followed(name, "nothing");
  T_EXPECT_RC(shl_unlink(name), 0);
  T_CHECK(access(dangling, F_OK) != 0);

  T_CHECK(file_untouched(target));
  unlink(target);
  unlink(dangling);
}

int main(void) {
  test_race();
  test_precreated_file();
  test_symlinks();
  return t_result();
}
