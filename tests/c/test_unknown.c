/* "Cannot tell" whether a role is held is never taken for "gone": info
 * reports -1, readers that may live count as alive, a reader does not
 * declare the writer gone, the tool prints "?" and gc keeps the stream.
 * getlk_eio.c makes the role-lock query fail: linked in here (switched by
 * the environment), preloaded into the tool.
 * Usage: test_unknown PATH-TO-shmlane PATH-TO-getlk_eio.so */
#include <sys/stat.h>

#include "testutil_stream.h"

#define WORDS 2
#define GETLK_EIO "SHL_TEST_GETLK_EIO"

static void cannot_tell(int on) {
  if (on) T_REQUIRE(setenv(GETLK_EIO, "1", 1) == 0);
  else T_REQUIRE(unsetenv(GETLK_EIO) == 0);
}

/* In a child: publish one frame, then exit without closing: a dead writer. */
static int write_and_die(void *name) {
  shl_layout l = t_frame_layout(WORDS);
  shl_writer *w = NULL;
  int rc = shl_writer_open(&w, name, &l, NULL);
  return rc < 0 ? rc : t_publish(w, WORDS, 7, 1000) == 1 ? 0 : -EIO;
}

/* In a child: register as a reader, then exit without closing. */
static int read_and_die(void *name) {
  shl_reader *r = NULL;
  return shl_reader_open(&r, name, SHL_RECV_LATEST, 0);
}

static void test_info(const char *stream, pid_t writer) {
  const char *name = t_name("useg");
  shl_layout l = t_frame_layout(1);
  shl_segment *mine = NULL, *seg = t_open(stream, SHL_OPEN_READONLY);
  shl_info info = SHL_INFO_INIT;
  t_unlink_at_exit(name);
  T_EXPECT_RC(shl_create(&mine, name, &l, NULL), 0);
  T_REQUIRE(mine);
  for (int eio = 0; eio <= 1; eio++) {
    cannot_tell(eio);
    T_EXPECT_RC(shl_get_info(mine, &info), 0);
    T_CHECK(info.creator_alive == (eio ? -1 : 1));
    T_EXPECT_RC(shl_get_info(seg, &info), 0);
    T_CHECK(info.creator_alive == (eio ? -1 : 0) && info.creator_pid == writer);
    shl_stream_info s = t_stream_info(seg);
    T_CHECK(s.writer_alive == (eio ? -1 : 0) && s.writer_pid == writer);
    T_CHECK(s.readers_alive == (eio ? 1u : 0u)); /* the dead reader's entry */
    T_CHECK(s.last_seq == 1);
  }
  cannot_tell(0);
  shl_close(seg);
  shl_close(mine);
}

/* A reader that cannot tell goes on waiting for frames; once it can tell,
 * it learns that the writer died. */
static void test_reader(const char *stream) {
  /* The writer died before this reader came: its last frame, when asked for. */
  shl_reader *r = t_reader_open_ex(stream, SHL_RECV_ALL, 1000, 0, SHL_READER_KEEP_LAST);
  shl_sample s;
  T_EXPECT_RC(shl_reader_receive(r, &s, 1000 * T_MS, 0), 0);
  T_CHECK(s.seq == 1);
  T_EXPECT_RC(shl_reader_release(r, &s), 0);
  cannot_tell(1);
  T_EXPECT_RC(shl_reader_receive(r, &s, 300 * T_MS, 0), -ETIMEDOUT);
  cannot_tell(0);
  T_EXPECT_RC(shl_reader_receive(r, &s, 5000 * T_MS, 0), SHL_E_WRITER_GONE);
  shl_reader_close(r);
}

/* Runs the tool, its stdout into out; with eio, the query fails in it.
 * Returns its exit status, or -1. */
static int run_tool(const char *tool, const char *preload, int eio, const char *const args[],
                    char *out, size_t size) {
  int fds[2];
  T_REQUIRE(pipe(fds) == 0);
  fflush(NULL);
  pid_t pid = fork();
  if (pid == 0) {
    char *argv[8] = {(char *)tool};
    for (int i = 0; args[i] && i < 6; i++) argv[i + 1] = (char *)args[i];
    dup2(fds[1], STDOUT_FILENO);
    if (eio) {
      char env[PATH_MAX + 256];
      const char *was = getenv("LD_PRELOAD"), *asan = getenv("ASAN_OPTIONS");
      snprintf(env, sizeof env, "%s%s%s", was ? was : "", was ? ":" : "", preload);
      setenv("LD_PRELOAD", env, 1);
      /* An ASan build's runtime must come first: the preloaded module is not ASan's. */
      snprintf(env, sizeof env, "%s%sverify_asan_link_order=0", asan ? asan : "",
               asan ? ":" : "");
      setenv("ASAN_OPTIONS", env, 1);
      setenv(GETLK_EIO, "1", 1);
    }
    execv(tool, argv);
    _exit(127);
  }
  close(fds[1]);
  size_t used = 0;
  ssize_t n;
  while (used + 1 < size && (n = read(fds[0], out + used, size - used - 1)) != 0)
    if (n > 0) used += (size_t)n;
    else if (errno != EINTR) break;
  out[used] = '\0';
  close(fds[0]);
  int status = t_child_reap(pid);
  return status != -1 && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* The ALIVE column of `name`'s row in `shmlane ls`, or "" if not listed. */
static const char *ls_alive(char *ls, const char *name) {
  size_t len = strlen(name);
  for (char *line = strtok(ls, "\n"); line; line = strtok(NULL, "\n")) {
    if (strncmp(line, name, len) != 0 || line[len] != ' ') continue;
    char *cell = strtok(line, " ");
    for (int col = 0; cell && col < 6; col++) cell = strtok(NULL, " ");
    return cell ? cell : "";
  }
  return "";
}

static void test_tool(const char *tool, const char *preload, const char *stream) {
  static char out[1 << 16];
  char want[128];
  for (int eio = 0; eio <= 1; eio++) {
    const char *alive = eio ? "?" : "no";
    T_EXPECT_RC(run_tool(tool, preload, eio, (const char *[]){"info", stream, NULL}, out,
                         sizeof out), 0);
    snprintf(want, sizeof want, "(alive: %s)", alive);
    /* The creator's line, then the writer's. */
    char *first = strstr(out, want);
    if (!first || !strstr(first + 1, want)) {
      fprintf(stderr, "info, query %s, lacks two '%s':\n%s", eio ? "failing" : "working", want,
              out);
      t_failures++;
    }
    T_EXPECT_RC(run_tool(tool, preload, eio, (const char *[]){"ls", NULL}, out, sizeof out), 0);
    const char *cell = ls_alive(out, stream);
    if (strcmp(cell, alive) != 0) {
      fprintf(stderr, "ls shows alive '%s', want '%s'\n", cell, alive);
      t_failures++;
    }
  }
}

/* Dead writer, no reader: gc removes the stream, unless it cannot tell. */
static void test_gc(const char *tool, const char *preload, const char *stream) {
  static char out[1024];
  char want[128], path[T_PATH_MAX];
  struct stat st;
  T_EXPECT_RC(run_tool(tool, preload, 1, (const char *[]){"gc", stream, NULL}, out, sizeof out),
              0);
  T_CHECK(out[0] == '\0' && stat(t_shm_path(stream, path), &st) == 0);
  T_EXPECT_RC(run_tool(tool, preload, 0, (const char *[]){"gc", stream, NULL}, out, sizeof out),
              0);
  snprintf(want, sizeof want, "removed %s (stream: writer dead, no reader)\n", stream);
  if (strcmp(out, want) != 0) {
    fprintf(stderr, "gc said '%s', want '%s'\n", out, want);
    t_failures++;
  }
}

/* A stream whose writer published one frame and died. Returns its pid. */
static pid_t dead_writer(char name[SHL_NAME_MAX + 1], const char *tag) {
  struct t_child writer;
  int rc;
  t_fresh_name(name, tag);
  T_REQUIRE(t_child_start(&writer, write_and_die, name, 10) == 0);
  T_EXPECT_EXIT(t_child_finish(&writer, &rc), 0);
  T_EXPECT_RC(rc, 0);
  return writer.pid;
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: test_unknown PATH-TO-shmlane PATH-TO-getlk_eio.so\n");
    return 1;
  }
  char tool[PATH_MAX], preload[PATH_MAX], stream[SHL_NAME_MAX + 1], bare[SHL_NAME_MAX + 1];
  T_REQUIRE(realpath(argv[1], tool) && realpath(argv[2], preload));
  pid_t writer = dead_writer(stream, "ustream");
  int rc;
  T_EXPECT_EXIT(t_child_run(read_and_die, stream, 10, &rc), 0);
  T_EXPECT_RC(rc, 0);
  test_info(stream, writer);
  test_reader(stream);
  test_tool(tool, preload, stream);
  /* Never had a reader: only the writer's state decides. */
  dead_writer(bare, "ubare");
  test_gc(tool, preload, bare);
  return t_result();
}
