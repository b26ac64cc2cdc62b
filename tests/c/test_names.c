/* Segment names: which are accepted, that every entry point rejects the
 * others with SHL_E_BAD_NAME, and that a name maps to /dev/shm/shl.<name>
 * and nowhere else. */
#include <stdint.h>
#include <sys/stat.h>

#include "testutil_proc.h"

#define WAIT_NS 1000000000LL

static const shl_layout layout = {.format = "B", .ndim = 1, .shape = {16}};

static int path_exists(const char *path) {
  struct stat st;
  return lstat(path, &st) == 0;
}

/* Create, find the file, open, unlink: the full life of a valid name. */
static void round_trip(const char *name) {
  char path[T_PATH_MAX];
  shl_segment *seg = NULL, *again = NULL;
  T_EXPECT_RC(shl_name_check(name), 0);
  t_unlink_at_exit(name);
  int rc = shl_create(&seg, name, &layout, NULL);
  if (rc != 0) {
    fprintf(stderr, "create \"%s\": %s\n", name, shl_err_name(rc));
    t_failures++;
    return;
  }
  T_CHECK(strcmp(shl_name(seg), name) == 0);
  T_CHECK(path_exists(t_shm_path(name, path)));
  T_EXPECT_RC(shl_open(&again, name, 0, WAIT_NS), 0);
  shl_close(again);
  shl_close(seg);
  T_EXPECT_RC(shl_unlink(name), 0);
  T_CHECK(!path_exists(path));
}

/* Valid names pass the check; names of each valid shape (made unique to this
 * process) live through create, open and unlink. */
static void test_valid(void) {
  static const char *const checked_only[] = {
      "a",
      "Z",
      "7",
      "a.b",
      "a-b",
      "a_b",
      "a..b",
      "a.",
      "a-",
      "a_",
      "9lives",
      "x.y-z_w",
      "calib",
      "abcdefghijklmnopqrstuvwxyz",
      "0123456789ABCDEFGHIJKLMNOP",
  };
  for (size_t i = 0; i < sizeof checked_only / sizeof checked_only[0]; i++) {
    if (shl_name_check(checked_only[i]) != 0) {
      fprintf(stderr, "valid name \"%s\" rejected\n", checked_only[i]);
      t_failures++;
    }
  }

  long pid = (long)getpid();
  char name[64];
  snprintf(name, sizeof name, "%ld.dot-dash_und", pid); /* digit first */
  round_trip(name);
  snprintf(name, sizeof name, "N%ld..", pid); /* trailing dots */
  round_trip(name);
  /* Exactly SHL_NAME_MAX characters. */
  snprintf(name, sizeof name, "L%ld-%s", pid, "abcdefghijklmnopqrstuvwxyz");
  name[SHL_NAME_MAX] = '\0';
  round_trip(name);

  /* One character: shared by every run on this machine, so only if free. */
  shl_segment *seg = NULL;
  int rc = shl_create(&seg, "Q", &layout, NULL);
  if (rc == 0) {
    shl_close(seg);
    T_EXPECT_RC(shl_unlink("Q"), 0);
  } else {
    T_EXPECT_RC(rc, -EEXIST);
  }
}

/* Every entry point refuses the name before touching the file system. */
static void expect_bad(const char *name, const char *what) {
  static const char *const calls[4] = {"shl_name_check", "shl_create", "shl_open", "shl_unlink"};
  shl_segment *created = NULL, *opened = NULL;
  int rcs[4];
  rcs[0] = shl_name_check(name);
  rcs[1] = shl_create(&created, name, &layout, NULL);
  rcs[2] = shl_open(&opened, name, 0, WAIT_NS);
  rcs[3] = shl_unlink(name); /* last: it also removes whatever a faulty create made */
  for (int i = 0; i < 4; i++) {
    if (rcs[i] != SHL_E_BAD_NAME) {
      fprintf(stderr, "%s(%s): %d (%s), want SHL_E_BAD_NAME\n", calls[i], what, rcs[i],
              shl_err_name(rcs[i]));
      t_failures++;
    }
  }
  T_CHECK(created == NULL && opened == NULL);
  shl_close(opened);
  shl_close(created);
}

static void test_invalid(void) {
  static const struct {
    const char *name, *what;
  } cases[] = {
      {"", "empty"},
      {"abcdefghijklmnopqrstuvwxyz0", "27 chars"},
      {".a", "leading dot"},
      {"-a", "leading dash"},
      {"_a", "leading underscore"},
      {".", "dot"},
      {"..", "dot dot"},
      {"/a", "leading slash"},
      {"a/b", "slash"},
      {"a/", "trailing slash"},
      {"../a", "parent escape"},
      {"a b", "space"},
      {" a", "leading space"},
      {"a\tb", "tab"},
      {"a\nb", "newline"},
      {"a:b", "colon"},
      {"a*", "star"},
      {"a\\b", "backslash"},
      {"caf\xc3\xa9", "UTF-8"},
      {"\xff", "byte 0xff"},
      {"a\x7f", "DEL"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    expect_bad(cases[i].name, cases[i].what);
  expect_bad(NULL, "NULL");

  /* Far too long: must be rejected without overflowing a fixed buffer. */
  static char long_name[8192];
  memset(long_name, 'a', sizeof long_name - 1);
  expect_bad(long_name, "8191 chars");
}

/* A slash cannot steer the object out of /dev/shm: not by create (nothing
 * appears outside), nor by unlink (nothing outside disappears). */
static void test_no_escape(void) {
  char victim[128], tail[64], name[SHL_NAME_MAX * 4];
  snprintf(tail, sizeof tail, "tshl-victim-%ld", (long)getpid());
  snprintf(victim, sizeof victim, "/tmp/%s", tail);
  snprintf(name, sizeof name, "../../tmp/%s", tail);
  shl_segment *seg = NULL;

  T_EXPECT_RC(shl_create(&seg, name, &layout, NULL), SHL_E_BAD_NAME);
  T_CHECK(seg == NULL && !path_exists(victim));

  int fd = open(victim, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  T_REQUIRE(fd >= 0);
  close(fd);
  T_EXPECT_RC(shl_unlink(name), SHL_E_BAD_NAME);
  T_EXPECT_RC(shl_open(&seg, name, 0, WAIT_NS), SHL_E_BAD_NAME);
  T_CHECK(path_exists(victim));
  unlink(victim);
}

/* ---------------------------------------------------------------- listing */

struct listing {
  const char *want[3];
  int seen[3];
  int calls, stop_after;
};

static int collect(const char *name, void *arg) {
  struct listing *l = arg;
  l->calls++;
  for (int i = 0; i < 3; i++)
    if (strcmp(name, l->want[i]) == 0) l->seen[i]++;
  return l->stop_after && l->calls == l->stop_after ? -ECANCELED : 0;
}

/* shl_list reports each valid shmlane name once, skips what is not ours, and
 * returns the count, or the callback's negative code when it stops the walk. */
static void test_list(void) {
  struct listing l = {{t_name("la"), t_name("lb"), t_name("lc")}, {0}, 0, 0};
  shl_segment *seg[3] = {NULL};
  for (int i = 0; i < 3; i++) {
    t_unlink_at_exit(l.want[i]);
    T_EXPECT_RC(shl_create(&seg[i], l.want[i], &layout, NULL), 0);
  }
  char foreign[T_PATH_MAX], bad[T_PATH_MAX];
  snprintf(foreign, sizeof foreign, "/dev/shm/notshl.%ld", (long)getpid());
  snprintf(bad, sizeof bad, "/dev/shm%s.bad%ld", SHL_POSIX_PREFIX, (long)getpid());
  int fd = open(foreign, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  int fd2 = open(bad, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  T_REQUIRE(fd >= 0 && fd2 >= 0);
  close(fd);
  close(fd2);

  int count = shl_list(collect, &l);
  T_CHECK(count == l.calls && count >= 3);
  T_CHECK(l.seen[0] == 1 && l.seen[1] == 1 && l.seen[2] == 1);
  T_CHECK(shl_list(NULL, NULL) >= 3); /* no callback: just the count (other tests run too) */

  struct listing stop = {{"", "", ""}, {0}, 0, 2};
  T_EXPECT_RC(shl_list(collect, &stop), -ECANCELED);
  T_CHECK(stop.calls == 2); /* no call after the stop */

  unlink(foreign);
  unlink(bad);
  for (int i = 0; i < 3; i++) shl_close(seg[i]);
}

int main(void) {
  test_valid();
  test_invalid();
  test_no_escape();
  test_list();
  return t_result();
}
