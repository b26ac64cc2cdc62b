/* Streams, the API and its errors: loan, publish and discard; both receive
 * policies, with exact loss counts; a writer's own numbering
 * (shl_writer_set_next_seq) and declared period; which slot a loan gets; pins; the reader table. Waiting is
 * test_stream_wait's, writers that come and go test_stream_writers',
 * SHL_STREAM_BLOCK test_stream_block's. */
#include <signal.h>
#include <stdint.h>

#include "testutil_stream_api.h"

/* ---------------------------------------------------------------- tests */

static void test_bad_args(void) {
  char name[SHL_NAME_MAX + 1];
  t_fresh_name(name, "sargs");
  shl_layout l = t_frame_layout(WORDS), bad = {.format = "<Z"};
  shl_writer *w = NULL;
  shl_reader *r = NULL;
#define O sizeof(shl_stream_opts)
  shl_stream_opts o[] = {
      {.size = O, .slots = 1},
      {.size = O, .slots = SHL_STREAM_MAX_SLOTS + 1},
      {.size = O, .max_readers = SHL_STREAM_MAX_READERS + 1},
      {.size = O, .flags = SHL_STREAM_REPLACE << 1},
      {.slots = 4}, /* no size: not initialised with SHL_STREAM_OPTS_INIT */
  };
#undef O
  T_EXPECT_RC(shl_writer_open(NULL, name, &l, NULL), -EINVAL);
  for (size_t i = 0; i < sizeof o / sizeof o[0]; i++)
    T_EXPECT_RC(shl_writer_open(&w, name, &l, &o[i]), -EINVAL);
  T_EXPECT_RC(shl_writer_open(&w, "bad/name", &l, NULL), SHL_E_BAD_NAME);
  T_EXPECT_RC(shl_writer_open(&w, name, &bad, NULL), SHL_E_BAD_FORMAT);
  T_CHECK(w == NULL);
  shl_segment *seg = NULL;
  T_EXPECT_RC(shl_open(&seg, name, 0, 0), -ENOENT); /* no failure left a stream behind */
  T_EXPECT_RC(shl_reader_open(NULL, name, SHL_RECV_ALL, 0), -EINVAL);
  T_EXPECT_RC(shl_reader_open(&r, name, 2, 0), -EINVAL);
  T_EXPECT_RC(shl_reader_open(&r, "bad/name", SHL_RECV_ALL, 0), SHL_E_BAD_NAME);
  T_CHECK(r == NULL);
  shl_writer_close(NULL);
  shl_reader_close(NULL);
}

/* A plain segment is no stream, and a failed open leaves it as it was. */
static void test_not_a_stream(void) {
  char name[SHL_NAME_MAX + 1], other[SHL_NAME_MAX + 1];
  t_fresh_name(name, "splain");
  t_fresh_name(other, "splain2");
  shl_layout plain = {.format = "<Q"}, frame = t_frame_layout(WORDS);
  shl_segment *seg = NULL, *again = NULL;
  T_EXPECT_RC(shl_create(&seg, name, &plain, NULL), 0);
  T_REQUIRE(seg != NULL);
  shl_writer *w = NULL;
  shl_reader *r = NULL;
  shl_stream_info info = SHL_STREAM_INFO_INIT;
  T_EXPECT_RC(shl_writer_open(&w, name, &frame, NULL), SHL_E_BAD_KIND);
  T_EXPECT_RC(shl_reader_open(&r, name, SHL_RECV_LATEST, 0), SHL_E_BAD_KIND);
  T_EXPECT_RC(shl_stream_get_info(seg, &info), SHL_E_BAD_KIND);
  T_CHECK(w == NULL && r == NULL);
  T_EXPECT_RC(shl_open(&again, name, 0, 0), 0);
  T_CHECK(again && shl_kind(again) == shl_kind(seg) && shl_kind(seg) != SHL_KIND_STREAM);
  shl_close(again);
  shl_close(seg);
  /* Streams come from shl_writer_open only. */
  shl_create_opts as_stream = {.size = sizeof(shl_create_opts), .kind = SHL_KIND_STREAM};
  T_EXPECT_RC(shl_create(&seg, other, &frame, &as_stream), SHL_E_BAD_KIND);
}

/* In a child: a store through a received sample faults, the view is read-only. */
static int write_to_sample(void *arg) {
  shl_reader *r = t_reader_open(arg, SHL_RECV_LATEST, 0);
  shl_sample s;
  if (shl_reader_receive(r, &s, WAIT_MS * T_MS, 0) != 0) return 2;
  signal(SIGSEGV, SIG_DFL); /* a sanitizer's handler would turn the fault into an exit */
  *(volatile unsigned char *)(uintptr_t)s.data = 1;
  return 0;
}

static void test_loan_publish(void) {
  char name[SHL_NAME_MAX + 1];
  t_fresh_name(name, "sloan");
  shl_writer *w = open_writer(name, 0);
  shl_segment *seg = shl_writer_segment(w);
  shl_stream_info info = t_stream_info(seg);
  T_CHECK(shl_kind(seg) == SHL_KIND_STREAM);
  T_CHECK(info.slots == SLOTS && info.max_readers == 64 && info.flags == 0); /* 64: the default */
  T_CHECK(info.readers_alive == 0 && info.writer_pid == getpid() && info.writer_alive == 1);
  T_CHECK(info.last_seq == 0 && info.last_timestamp_ns == 0);
  T_CHECK(info.slot_stride >= WORDS * 8 && info.slot_stride % 64 == 0);
  T_CHECK(shl_payload_size(seg) >= info.slot_stride * SLOTS);

  void *frame = NULL, *other = NULL;
  T_EXPECT_RC(shl_writer_publish(w, NULL), -EINVAL); /* no loan */
  T_EXPECT_RC(shl_writer_discard(w), -EINVAL);
  int slot = shl_writer_loan(w, &frame, 0);
  T_CHECK(slot >= 0 && slot < SLOTS);
  T_CHECK(frame == (unsigned char *)shl_payload(seg) + (uint64_t)slot * info.slot_stride);
  long long t0 = t_now_ns();
  T_EXPECT_RC(shl_writer_loan(w, &other, 1000 * T_MS), -EBUSY); /* at once, no waiting */
  T_EXPECT_TOOK(t0, 0, T_AT_ONCE_MS);
  t_frame_stamp(frame, WORDS, 0xbad); /* a discarded frame is never seen */
  T_EXPECT_RC(shl_writer_discard(w), 0);
  T_EXPECT_RC(shl_writer_publish(w, NULL), -EINVAL);
  T_CHECK(shl_writer_next_seq(w) == 1); /* a discard uses up no seq */

  shl_reader *r = t_reader_open(name, SHL_RECV_ALL, 0);
  EXPECT_NOTHING(r);
  T_CHECK(t_stream_info(seg).readers_alive == 1);
  uint64_t before = (uint64_t)t_now_ns();
  PUBLISH(w, 1, 1);
  uint64_t after = (uint64_t)t_now_ns();
  info = t_stream_info(seg);
  T_CHECK(info.last_seq == 1);
  T_CHECK(info.last_timestamp_ns >= before && info.last_timestamp_ns <= after);
  shl_sample s;
  if (TAKE(r, &s, 1, 0) == 0) {
    const unsigned char *base = shl_payload(shl_reader_segment(r));
    T_CHECK(s.timestamp_ns == info.last_timestamp_ns);
    T_CHECK(s.slot < SLOTS && s.data == base + s.slot * info.slot_stride);
    T_EXPECT_RC(shl_reader_release(r, &s), 0);
    T_EXPECT_RC(shl_reader_release(r, &s), -EINVAL); /* released already */
  }
  T_EXPECT_RC(shl_reader_release(r, NULL), -EINVAL);

  /* A discarded loan uses up no seq and is never shown. */
  T_CHECK(shl_writer_loan(w, &frame, 0) >= 0);
  t_frame_stamp(frame, WORDS, 0xbad);
  T_EXPECT_RC(shl_writer_discard(w), 0);
  EXPECT_NOTHING(r);
  PUBLISH(w, 2, 2);
  EXPECT_SAMPLE(r, 2, 0);
  EXPECT_NOTHING(r);
  T_CHECK(shl_writer_next_seq(w) == 3);

  int rc;
  T_EXPECT_SIGNAL(t_child_run(write_to_sample, name, CHILD_LIMIT_S, &rc), SIGSEGV);
  shl_reader_close(r);
  shl_writer_close(w);
}

/* An `all` reader that keeps up gets every frame, in order, none lost. */
static void test_all_in_order(void) {
  char name[SHL_NAME_MAX + 1];
  t_fresh_name(name, "sorder");
  shl_writer *w = open_writer(name, 0);
  shl_reader *a = t_reader_open(name, SHL_RECV_ALL, 0);
  for (uint64_t seq = 1; seq <= 20; seq++) {
    PUBLISH(w, seq, seq);
    EXPECT_SAMPLE(a, seq, 0);
  }
  /* A whole ring's worth published while it waits is still all there. */
  PUBLISH(w, 21, 20 + SLOTS);
  for (uint64_t seq = 21; seq <= 20 + SLOTS; seq++) EXPECT_SAMPLE(a, seq, 0);
  EXPECT_NOTHING(a);
  /* One that joins later starts at the newest frame. */
  shl_reader *late = t_reader_open(name, SHL_RECV_ALL, 0);
  EXPECT_SAMPLE(late, 20 + SLOTS, 0);
  PUBLISH(w, 21 + SLOTS, 21 + SLOTS);
  EXPECT_SAMPLE(late, 21 + SLOTS, 0);
  EXPECT_SAMPLE(a, 21 + SLOTS, 0);
  shl_reader_close(late);
  shl_reader_close(a);
  shl_writer_close(w);
}

/* Lapped: the writer reuses the oldest free slot first and never the newest,
 * so the ring keeps the newest `slots` frames (with p slots pinned: those
 * frames and the newest slots - p). Losses are counted exactly. */
static void expect_lap(uint32_t slots, uint64_t published) {
  char name[SHL_NAME_MAX + 1], tag[16];
  snprintf(tag, sizeof tag, "slap%u", slots);
  t_fresh_name(name, tag);
  shl_writer *w = t_writer_open(name, WORDS, slots, 0, 0);
  shl_reader *a = t_reader_open(name, SHL_RECV_ALL, 0);
  PUBLISH(w, 1, published);
  uint64_t first = published - slots + 1;
  EXPECT_SAMPLE(a, first, first - 1);
  for (uint64_t seq = first + 1; seq <= published; seq++) EXPECT_SAMPLE(a, seq, 0);
  EXPECT_NOTHING(a);
  shl_reader_close(a);
  shl_writer_close(w);
}

static void test_all_lapped(void) {
  expect_lap(2, 5);
  expect_lap(SLOTS, 10); /* frames 1..6 lost */
  expect_lap(SHL_STREAM_MAX_SLOTS, 100);

  char name[SHL_NAME_MAX + 1];
  t_fresh_name(name, "slappin");
  shl_writer *w = open_writer(name, 0);
  shl_reader *a = t_reader_open_pins(name, SHL_RECV_ALL, 0, 2);
  PUBLISH(w, 1, 1);
  shl_sample held;
  T_REQUIRE(TAKE(a, &held, 1, 0) == 0); /* pins 1: three slots left to cycle */
  PUBLISH(w, 2, 11);
  EXPECT_SAMPLE(a, 9, 7); /* 2..8 overwritten */
  EXPECT_SAMPLE(a, 10, 0);
  EXPECT_SAMPLE(a, 11, 0);
  EXPECT_NOTHING(a);
  T_CHECK(t_frame_bad_words(held.data, WORDS, 1) == 0);
  T_EXPECT_RC(shl_reader_release(a, &held), 0);
  shl_reader_close(a);
  shl_writer_close(w);
}

/* What reader entry `index` of w's stream shows others of its losses. */
static void expect_entry_lost(shl_writer *w, uint32_t index, uint64_t lost) {
  shl_stream_reader entry = SHL_STREAM_READER_INIT;
  T_EXPECT_RC(shl_stream_get_reader(shl_writer_segment(w), index, &entry), 1);
  T_CHECK(entry.lost == lost);
}

/* Numbers relayed from another stream (the bridge): skipped ones are lost
 * frames to `all` and `latest` readers, shown in their entries (for
 * `shmlane top`); numbers never go back. */
static void test_set_next_seq(void) {
  char name[SHL_NAME_MAX + 1];
  t_fresh_name(name, "snext");
  shl_writer *w = open_writer(name, 0);
  shl_reader *a = t_reader_open(name, SHL_RECV_ALL, 0);
  shl_reader *l = t_reader_open(name, SHL_RECV_LATEST, 0);
  PUBLISH(w, 1, 1);
  EXPECT_SAMPLE(a, 1, 0);
  EXPECT_SAMPLE(l, 1, 0);
  T_EXPECT_RC(shl_writer_set_next_seq(w, 5), 0);
  PUBLISH(w, 5, 5);
  expect_entry_lost(w, 0, 0);
  EXPECT_SAMPLE(a, 5, 3);
  EXPECT_SAMPLE(l, 5, 3);
  expect_entry_lost(w, 0, 3);
  expect_entry_lost(w, 1, 3);
  T_EXPECT_RC(shl_writer_set_next_seq(w, 4), -EINVAL);
  T_EXPECT_RC(shl_writer_set_next_seq(w, 6), 0); /* the next one already: nothing skipped */
  T_EXPECT_RC(shl_writer_set_next_seq(w, 1ull << 55), -EINVAL);
  void *frame;
  T_CHECK(shl_writer_loan(w, &frame, 0) >= 0);
  T_EXPECT_RC(shl_writer_set_next_seq(w, 9), -EBUSY);
  T_EXPECT_RC(shl_writer_discard(w), 0);
  PUBLISH(w, 6, 6);
  EXPECT_SAMPLE(a, 6, 0);
  T_EXPECT_RC(shl_writer_set_next_seq(w, 9), 0);
  PUBLISH(w, 9, 9);
  EXPECT_SAMPLE(a, 9, 2);
  expect_entry_lost(w, 0, 5); /* a sum */
  /* Its entry's next owner starts from nothing. */
  shl_reader_close(l);
  l = t_reader_open(name, SHL_RECV_LATEST, 0);
  expect_entry_lost(w, 1, 0);
  shl_reader_close(l);
  shl_reader_close(a);
  shl_writer_close(w);
}

/* A `latest` reader gets the newest frame and skips the others. */
static void test_latest(void) {
  char name[SHL_NAME_MAX + 1];
  t_fresh_name(name, "slatest");
  shl_writer *w = open_writer(name, 0);
  PUBLISH(w, 1, 3);
  shl_reader *l = t_reader_open(name, SHL_RECV_LATEST, 0);
  EXPECT_SAMPLE(l, 3, ANY);
  EXPECT_NOTHING(l);
  PUBLISH(w, 4, 4);
  EXPECT_SAMPLE(l, 4, ANY);
  PUBLISH(w, 5, 9);
  EXPECT_SAMPLE(l, 9, ANY);
  EXPECT_NOTHING(l);
  shl_reader_close(l);
  shl_writer_close(w);
}

/* A writer declares its frame period at open and again when it changes. */
static void test_set_period(void) {
  char name[SHL_NAME_MAX + 1];
  t_fresh_name(name, "speriod");
  shl_layout l = t_frame_layout(WORDS);
  shl_stream_opts o = SHL_STREAM_OPTS_INIT;
  o.period_ns = 33333333;
  shl_writer *w = NULL;
  T_REQUIRE(shl_writer_open(&w, name, &l, &o) == 0);
  shl_reader *r = t_reader_open(name, SHL_RECV_LATEST, 0);
  shl_segment *seg = shl_reader_segment(r);
  T_CHECK(t_stream_info(seg).period_ns == 33333333);
  T_EXPECT_RC(shl_writer_set_period(w, 16666667), 0);
  T_CHECK(t_stream_info(seg).period_ns == 16666667);
  T_EXPECT_RC(shl_writer_set_period(w, 0), 0); /* unknown */
  T_CHECK(t_stream_info(seg).period_ns == 0);
  shl_reader_close(r);
  shl_writer_close(w);
}

/* The slots `n` loans and publishes use, as a mask. */
static uint64_t slots_used(shl_writer *w, int n) {
  uint64_t used = 0;
  for (int i = 0; i < n; i++) {
    void *frame;
    int slot = shl_writer_loan(w, &frame, 0);
    T_REQUIRE(slot >= 0);
    used |= 1ull << slot;
    T_EXPECT_RC(shl_writer_publish(w, NULL), 0);
  }
  return used;
}

/* Which slot a loan gets: the oldest frame's while an `all` reader is in
 * the stream (it loses as little as possible), else the one written last
 * but the newest, warm in the cache: two slots take turns. */
static void test_slot_choice(void) {
  char name[SHL_NAME_MAX + 1];
  t_fresh_name(name, "schoice");
  shl_writer *w = open_writer(name, 0);
  T_EXPECT_RC(__builtin_popcountll(slots_used(w, 3 * SLOTS)), 2);
  shl_reader *l = t_reader_open(name, SHL_RECV_LATEST, 0);
  T_EXPECT_RC(__builtin_popcountll(slots_used(w, 3 * SLOTS)), 2);
  shl_reader *a = t_reader_open(name, SHL_RECV_ALL, 0);
  shl_sample s;
  T_EXPECT_RC(shl_reader_receive(a, &s, 0, 0), 0); /* now it has a place in the stream */
  T_EXPECT_RC(shl_reader_release(a, &s), 0);
  T_EXPECT_RC(__builtin_popcountll(slots_used(w, SLOTS)), SLOTS);
  shl_reader_close(a);
  T_EXPECT_RC(__builtin_popcountll(slots_used(w, 3 * SLOTS)), 2);
  shl_reader_close(l);
  shl_writer_close(w);
}

/* A held sample's slot is never loaned out again: its bytes stay put. */
static void test_pinned(void) {
  char name[SHL_NAME_MAX + 1];
  t_fresh_name(name, "spin");
  shl_writer *w = open_writer(name, 0);
  shl_reader *l = t_reader_open_pins(name, SHL_RECV_LATEST, 0, 2);
  shl_reader *a = t_reader_open_pins(name, SHL_RECV_ALL, 0, 2);
  shl_sample hl, ha;
  PUBLISH(w, 1, 1);
  T_REQUIRE(TAKE(l, &hl, 1, ANY) == 0 && TAKE(a, &ha, 1, 0) == 0);
  T_CHECK(hl.slot == ha.slot);
  for (uint64_t seq = 2; seq <= 101; seq++) {
    void *frame;
    int slot = shl_writer_loan(w, &frame, 0);
    T_REQUIRE(slot >= 0);
    T_CHECK((uint32_t)slot != hl.slot);
    t_frame_stamp(frame, WORDS, seq);
    T_EXPECT_RC(shl_writer_publish(w, NULL), 0);
  }
  T_CHECK(t_frame_bad_words(hl.data, WORDS, 1) == 0);
  T_CHECK(t_frame_bad_words(ha.data, WORDS, 1) == 0);
  EXPECT_SAMPLE(a, 99, 97); /* the three free slots hold 99..101 */
  T_EXPECT_RC(shl_reader_release(l, &hl), 0);
  T_EXPECT_RC(shl_reader_release(a, &ha), 0);
  /* Released: it is the oldest free slot, so the next loan takes it. */
  void *frame;
  T_CHECK(shl_writer_loan(w, &frame, 0) == (int)hl.slot);
  T_EXPECT_RC(shl_writer_discard(w), 0);
  shl_reader_close(a);
  shl_reader_close(l);
  shl_writer_close(w);

  /* Three slots pinned, the fourth holding the newest frame: nothing to loan
   * until a sample is released. */
  t_fresh_name(name, "spinall");
  w = open_writer(name, 0);
  l = t_reader_open_pins(name, SHL_RECV_LATEST, 0, SLOTS - 1);
  shl_sample h[SLOTS - 1];
  for (uint64_t seq = 1; seq < SLOTS; seq++) {
    PUBLISH(w, seq, seq);
    T_REQUIRE(TAKE(l, &h[seq - 1], seq, ANY) == 0);
  }
  PUBLISH(w, SLOTS, SLOTS);
  expect_no_slot(w, SHL_E_SLOTS_PINNED);
  T_EXPECT_RC(shl_reader_release(l, &h[1]), 0);
  T_CHECK(shl_writer_loan(w, &frame, 0) == (int)h[1].slot);
  T_EXPECT_RC(shl_writer_discard(w), 0);
  T_CHECK(t_frame_bad_words(h[0].data, WORDS, 1) == 0);
  T_CHECK(t_frame_bad_words(h[2].data, WORDS, 3) == 0);
  T_EXPECT_RC(shl_reader_release(l, &h[0]), 0);
  T_EXPECT_RC(shl_reader_release(l, &h[2]), 0);
  shl_reader_close(l);
  shl_writer_close(w);

  /* Two slots: the one sample a reader may keep by default holds the only
   * slot the writer may loan once a newer frame is out (shmlane.h). */
  t_fresh_name(name, "spintwo");
  w = t_writer_open(name, WORDS, 2, 4, 0);
  l = t_reader_open(name, SHL_RECV_LATEST, 0);
  PUBLISH(w, 1, 1);
  T_REQUIRE(TAKE(l, &h[0], 1, ANY) == 0);
  PUBLISH(w, 2, 2);
  T_EXPECT_RC(shl_writer_loan(w, &frame, 0), SHL_E_SLOTS_PINNED);
  T_CHECK(shl_writer_get_pinned_by(w, NULL, 0) == 1);
  T_EXPECT_RC(shl_reader_release(l, &h[0]), 0);
  PUBLISH(w, 3, 3);
  shl_reader_close(l);
  shl_writer_close(w);
}

static void test_max_readers(void) {
  enum { MAX = 3 };
  char name[SHL_NAME_MAX + 1];
  t_fresh_name(name, "smax");
  shl_writer *w = t_writer_open(name, WORDS, SLOTS, MAX, 0);
  shl_segment *seg = shl_writer_segment(w);
  shl_reader *r[MAX], *extra = NULL;
  for (uint32_t i = 0; i < MAX; i++) r[i] = t_reader_open(name, i % 2, 0);
  shl_stream_info info = t_stream_info(seg);
  T_CHECK(info.max_readers == MAX && info.readers_alive == MAX);
  T_EXPECT_RC(shl_reader_open(&extra, name, SHL_RECV_ALL, 0), -EUSERS);
  T_EXPECT_RC(shl_reader_open(&extra, name, SHL_RECV_LATEST, 0), -EUSERS);
  T_CHECK(extra == NULL);
  shl_reader_close(r[1]);
  T_CHECK(t_stream_info(seg).readers_alive == MAX - 1);
  r[1] = t_reader_open(name, SHL_RECV_ALL, 0); /* the freed entry is used again */
  T_CHECK(t_stream_info(seg).readers_alive == MAX);
  for (uint32_t i = 0; i < MAX; i++) shl_reader_close(r[i]);
  T_CHECK(t_stream_info(seg).readers_alive == 0);
  shl_writer_close(w);
}

int main(void) {
  t_frame_check_canary(WORDS); /* every sample's bytes are checked with it */
  test_bad_args();
  test_not_a_stream();
  test_loan_publish();
  test_all_in_order();
  test_all_lapped();
  test_set_next_seq();
  test_set_period();
  test_latest();
  test_slot_choice();
  test_pinned();
  test_max_readers();
  return t_result();
}
