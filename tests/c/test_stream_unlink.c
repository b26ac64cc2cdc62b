/* shl_stream_unlink_unused: a stream's name removed only while nothing uses
 * it, and a writer that starts in the middle of the removal either fails or
 * makes a new stream under the name, never publishes into the removed one. */
#include <fcntl.h>
#include <pthread.h>
#include <unistd.h>

#include "testutil_stream.h"

static void (*test_hook)(const char *point);
#define SHL__TEST_POINT(name) (test_hook ? test_hook(#name) : (void)0)
#include "stream_unlink.c"

#define WORDS 8
#define SLOTS 2

static const char *racing_name;
static pthread_t racer;
static shl_writer *raced;
static int raced_rc;

static void *open_writer_now(void *arg) {
  (void)arg;
  shl_layout l = t_frame_layout(WORDS);
  shl_stream_opts o = {.size = sizeof(shl_stream_opts), .slots = SLOTS};
  raced_rc = shl_writer_open(&raced, racing_name, &l, &o);
  return NULL;
}

/* Between the check and the unlink: a writer starts and waits for the role
 * the removal holds (a closed writer's stream: it waits up to 100 ms). */
static void writer_in_the_window(const char *point) {
  if (strcmp(point, "stream_unlink_checked") != 0) return;
  test_hook = NULL;
  T_REQUIRE(pthread_create(&racer, NULL, open_writer_now, NULL) == 0);
  t_sleep_ms(30);
}

static void test_writer_starts_during_removal(void) {
  char name[SHL_NAME_MAX + 1];
  t_fresh_name(name, "ulrace");
  shl_writer_close(t_writer_open(name, WORDS, SLOTS, 0, 0));
  racing_name = name;
  test_hook = writer_in_the_window;
  T_EXPECT_RC(shl_stream_unlink_unused(name, -1), 0);
  T_CHECK(test_hook == NULL); /* the hook ran */
  T_REQUIRE(pthread_join(racer, NULL) == 0);
  T_EXPECT_RC(raced_rc, 0);
  /* Its stream is the one under the name, where readers find it. */
  if (raced) T_EXPECT_RC(shl__seg_names_object(shl_writer_segment(raced)), 0);
  shl_writer_close(raced);
}

static void test_only_unused_streams_go(void) {
  char name[SHL_NAME_MAX + 1], other[SHL_NAME_MAX + 1], array[SHL_NAME_MAX + 1];
  t_fresh_name(name, "ulbusy");
  t_fresh_name(other, "ulother");
  t_fresh_name(array, "ularray");
  shl_writer *w = t_writer_open(name, WORDS, SLOTS, 0, 0);
  T_EXPECT_RC(shl_stream_unlink_unused(name, -1), -EBUSY); /* its writer */
  shl_reader *r = t_reader_open(name, SHL_RECV_LATEST, 1000);
  shl_writer_close(w);
  T_EXPECT_RC(shl_stream_unlink_unused(name, -1), -EBUSY); /* a reader */
  shl_reader_close(r);

  shl_writer_close(t_writer_open(other, WORDS, SLOTS, 0, 0));
  char path[T_PATH_MAX];
  int fd = open(t_shm_path(other, path), O_PATH | O_CLOEXEC);
  T_REQUIRE(fd >= 0);
  T_EXPECT_RC(shl_stream_unlink_unused(name, fd), -ESTALE); /* not the object judged */
  T_EXPECT_RC(shl_stream_unlink_unused(other, fd), 0);
  close(fd);
  T_EXPECT_RC(shl_stream_unlink_unused(name, -1), 0);
  T_EXPECT_RC(shl_stream_unlink_unused(name, -1), -ENOENT);

  shl_segment *seg = NULL;
  shl_layout l = t_frame_layout(WORDS);
  T_EXPECT_RC(shl_create(&seg, array, &l, NULL), 0);
  shl_close(seg);
  T_EXPECT_RC(shl_stream_unlink_unused(array, -1), SHL_E_BAD_KIND);
}

int main(void) {
  test_only_unused_streams_go();
  test_writer_starts_during_removal();
  return t_result();
}
