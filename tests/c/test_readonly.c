/* Read-only opens: the handle says so, the payload is mapped PROT_READ (a
 * write kills the writer with SIGSEGV), and such a handle can still wait for
 * a notify from another process. Wait/notify in depth is test_notify's. */
#include <stdint.h>

#include <signal.h>
#include <string.h>

#include "testutil_proc.h"

#define WAIT_NS 1000000000LL
#define N 2048 /* uint32 elements: two pages of payload */

static const shl_layout layout = {.format = "<I", .ndim = 1, .shape = {N}};

static int pattern_intact(const shl_segment *seg) {
  const uint32_t *v = shl_payload(seg);
  for (uint32_t i = 0; i < N; i++)
    if (v[i] != i * 3u + 1) return 0;
  return 1;
}

struct poke {
  shl_segment *seg;
  uint64_t offset;
};

/* In a child: store one byte into the payload. */
static int poke_payload(void *p) {
  const struct poke *k = p;
  signal(SIGSEGV, SIG_DFL); /* a sanitizer's handler would turn the fault into an exit */
  ((volatile unsigned char *)shl_payload(k->seg))[k->offset] = 0xEE;
  return 0;
}

static void test_mapping(const char *name, shl_segment *creator) {
  shl_segment *ro = NULL, *rw = NULL;
  T_EXPECT_RC(shl_open(&ro, name, SHL_OPEN_READONLY, WAIT_NS), 0);
  T_EXPECT_RC(shl_open(&rw, name, 0, WAIT_NS), 0);
  T_REQUIRE(ro && rw);
  T_CHECK(shl_is_readonly(ro));
  T_CHECK(!shl_is_readonly(rw));
  T_CHECK(!shl_is_readonly(creator));
  T_CHECK(shl_payload_size(ro) == N * 4 && pattern_intact(ro));
  shl_layout l;
  shl_get_layout(ro, &l);
  T_CHECK(strcmp(l.format, "<I") == 0 && l.ndim == 1 && l.shape[0] == N);

  /* A store anywhere in the read-only payload faults; the data stays. */
  int rc;
  const uint64_t offsets[] = {0, N * 4 - 1};
  for (size_t i = 0; i < 2; i++) {
    struct poke k = {ro, offsets[i]};
    T_EXPECT_SIGNAL(t_child_run(poke_payload, &k, 5, &rc), SIGSEGV);
  }
  T_CHECK(pattern_intact(creator));

  /* Control: the same store through a read-write handle lands. */
  struct poke k = {rw, 0};
  T_EXPECT_EXIT(t_child_run(poke_payload, &k, 5, &rc), 0);
  T_CHECK(((unsigned char *)shl_payload(ro))[0] == 0xEE);
  shl_close(rw);
  shl_close(ro);
}

/* In a child: open read-only, then wait for the next notify. 0 when woken
 * with the next version, else the failing code (1: wrong version). */
static int wait_readonly(void *name) {
  shl_segment *seg = NULL;
  int rc = shl_open(&seg, name, SHL_OPEN_READONLY, WAIT_NS);
  if (rc < 0) return rc;
  uint64_t since = shl_changes(seg), seen = 0;
  rc = shl_wait(seg, since, 5 * WAIT_NS, &seen);
  if (rc == 0 && seen != since + 1) rc = 1;
  shl_close(seg);
  return rc;
}

static void test_wait(const char *name, shl_segment *creator) {
  /* Another process sleeps on its read-only handle; notify once it sleeps. */
  struct t_child child;
  int rc;
  T_REQUIRE(t_child_start(&child, wait_readonly, (void *)name, 10) == 0);
  T_CHECK(t_wait_in_futex(child.pid, 3000));
  T_EXPECT_RC(shl_notify(creator, NULL), 0);
  T_EXPECT_EXIT(t_child_finish(&child, &rc), 0);
  T_EXPECT_RC(rc, 0);

  /* Time-outs and an already-changed version, on a read-only handle. */
  shl_segment *ro = NULL;
  T_EXPECT_RC(shl_open(&ro, name, SHL_OPEN_READONLY, WAIT_NS), 0);
  T_REQUIRE(ro);
  uint64_t now = shl_changes(ro), seen = 0;
  T_CHECK(now == 1);
  long long t0 = t_now_ns();
  T_EXPECT_RC(shl_wait(ro, now, 30 * T_MS, NULL), -ETIMEDOUT);
  T_EXPECT_TOOK(t0, 30, 530);
  T_EXPECT_RC(shl_wait(ro, now, 0, NULL), -ETIMEDOUT);
  T_EXPECT_RC(shl_wait(ro, now - 1, 0, &seen), 0);
  T_CHECK(seen == now);
  shl_close(ro);
}

/* SHL_OPEN_DESCRIBE: the header read, nothing mapped; the getters tell what
 * the creator's handle tells, the calls on shared state are refused. */
static void test_describe(const char *name, shl_segment *creator) {
  shl_open_opts opts = SHL_OPEN_OPTS_INIT;
  opts.flags = SHL_OPEN_DESCRIBE;
  shl_segment *d = NULL, *dup = NULL;
  T_EXPECT_RC(shl_open_ex(&d, name, &opts), 0);
  T_REQUIRE(d);
  shl_info mine = SHL_INFO_INIT, seen = SHL_INFO_INIT;
  T_EXPECT_RC(shl_get_info(creator, &mine), 0);
  T_EXPECT_RC(shl_get_info(d, &seen), 0);
  T_CHECK(seen.payload_size == mine.payload_size && seen.changes == mine.changes &&
          seen.created_ns == mine.created_ns && seen.creator_alive == 1);
  shl_layout layout_seen;
  shl_get_layout(d, &layout_seen);
  T_CHECK(strcmp(layout_seen.format, "<I") == 0 && layout_seen.shape[0] == N);
  T_CHECK(shl_payload(d) == NULL && shl_is_readonly(d));
  T_EXPECT_RC(shl_lock(d, 0), SHL_E_READONLY);
  T_EXPECT_RC(shl_notify(d, NULL), SHL_E_READONLY);
  T_EXPECT_RC(shl_wait(d, shl_changes(d), 0, NULL), -EINVAL);
  T_EXPECT_RC(shl_dup(&dup, d), 0);
  T_CHECK(dup && shl_payload(dup) == NULL);
  shl_close(dup);
  shl_close(d);
}

int main(void) {
  const char *name = t_name("ro");
  shl_segment *creator = NULL;
  t_unlink_at_exit(name);
  T_EXPECT_RC(shl_create(&creator, name, &layout, NULL), 0);
  T_REQUIRE(creator);
  uint32_t *v = shl_payload(creator);
  for (uint32_t i = 0; i < N; i++) v[i] = i * 3u + 1;

  test_mapping(name, creator);
  test_wait(name, creator);
  test_describe(name, creator);
  shl_close(creator);
  T_EXPECT_RC(shl_unlink(name), 0);
  return t_result();
}
