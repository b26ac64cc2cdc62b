/* Helpers of the stream API tests (stream, stream_wait, stream_writers,
 * stream_block), which were one program: small frames in a small ring, each
 * stamped with the seq it must get, so every sample's seq, loss count and
 * bytes are checked; children that are the test program re-executed with a
 * role argument, sharing nothing with it but the stream. */
#ifndef SHL_TESTUTIL_STREAM_API_H
#define SHL_TESTUTIL_STREAM_API_H

#include <stdint.h>

#include "testutil_stream.h"

#define WORDS 8          /* 64-byte frames */
#define SLOTS 4          /* small ring: laps are quick to provoke */
#define WAIT_MS 5000     /* bound on anything that should succeed */
#define LATE_MS 200      /* the "late" child creates its stream after this */
#define GONE_MAX_MS 500  /* WRITER_GONE is due within 100 ms: slack for sanitizers and load */
#define CHILD_LIMIT_S 30 /* a child still alive by then dies of SIGALRM */
#define ANY UINT64_MAX   /* any `lost` value */

static inline shl_writer *open_writer(const char *name, uint32_t flags) {
  return t_writer_open(name, WORDS, SLOTS, 0, flags);
}

/* The same for a stream of mode 0660: a peer of the group may write it. */
static inline shl_writer *open_group_writer(const char *name, uint32_t flags) {
  shl_layout l = t_frame_layout(WORDS);
  shl_stream_opts o = {.size = sizeof o, .slots = SLOTS, .flags = flags, .mode = 0660};
  shl_writer *w = NULL;
  T_EXPECT_RC(shl_writer_open(&w, name, &l, &o), 0);
  T_REQUIRE(w != NULL);
  return w;
}

/* Publish frames from..to; each must get the seq it is stamped with. */
#define PUBLISH(w, from, to) publish_((w), (from), (to), __LINE__)
static inline void publish_(shl_writer *w, uint64_t from, uint64_t to, int line) {
  for (uint64_t seq = from; seq <= to; seq++) {
    uint64_t got = t_publish(w, WORDS, seq, 0);
    if (got == seq) continue;
    fprintf(stderr, "%s:%d: published seq %llu, want %llu\n", __FILE__, line,
            (unsigned long long)got, (unsigned long long)seq);
    t_failures++;
  }
}

/* Receive a sample and check its seq, lost (unless ANY) and bytes. 0 when
 * *s holds a pinned sample (the caller releases it). */
#define TAKE(r, s, seq, lost) take_((r), (s), (seq), (lost), __LINE__)
static inline int take_(shl_reader *r, shl_sample *s, uint64_t seq, uint64_t lost, int line) {
  int rc = shl_reader_receive(r, s, WAIT_MS * T_MS, 0);
  if (rc != 0) {
    fprintf(stderr, "%s:%d: receive returned %s, want seq %llu\n", __FILE__, line, shl_err_name(rc),
            (unsigned long long)seq);
    t_failures++;
    return rc;
  }
  uint64_t bad = t_frame_bad_words(s->data, WORDS, s->seq);
  if (s->seq != seq || (lost != ANY && s->lost != lost) || bad) {
    fprintf(stderr, "%s:%d: got seq %llu lost %llu (%llu bad words), want seq %llu lost %lld\n",
            __FILE__, line, (unsigned long long)s->seq, (unsigned long long)s->lost,
            (unsigned long long)bad, (unsigned long long)seq, lost == ANY ? -1 : (long long)lost);
    t_failures++;
  }
  return 0;
}

#define EXPECT_SAMPLE(r, seq, lost)                                                       \
  do {                                                                                    \
    shl_sample s_;                                                                        \
    if (TAKE((r), &s_, (seq), (lost)) == 0) T_EXPECT_RC(shl_reader_release((r), &s_), 0); \
  } while (0)

/* Nothing new: a non-blocking receive says so at once. */
#define EXPECT_NOTHING(r)                                        \
  do {                                                           \
    shl_sample s_;                                               \
    T_EXPECT_RC(shl_reader_receive((r), &s_, 0, 0), -ETIMEDOUT); \
  } while (0)

/* Every slot is taken: a non-blocking loan fails at once, a timed one on
 * time, with `why` (-ETIMEDOUT: `all` readers of a blocking stream hold the
 * writer back; SHL_E_SLOTS_PINNED: samples pin every slot). */
static inline void expect_no_slot(shl_writer *w, int why) {
  void *frame;
  long long t0 = t_now_ns();
  T_EXPECT_RC(shl_writer_loan(w, &frame, 0), why);
  T_EXPECT_TOOK(t0, 0, T_AT_ONCE_MS);
  t0 = t_now_ns();
  T_EXPECT_RC(shl_writer_loan(w, &frame, 100 * T_MS), why);
  T_EXPECT_TOOK(t0, 100, 1100);
}


/* Start the test program `self` again with a role: argv self role name [arg]
 * report-fd. */
static inline pid_t spawn_role(const char *self, const char *role, const char *name,
                               const char *arg, int *report) {
  const char *args[] = {self, role, name, arg, NULL};
  return t_exec_reporting(args, report, CHILD_LIMIT_S);
}

/* Create the stream only after a while, so that a reader waits for it. */
static inline int role_late(const char *name, int fd) {
  t_sleep_ms(LATE_MS);
  shl_writer *w = open_writer(name, 0);
  PUBLISH(w, 1, 1);
  t_send_byte(fd, 'P');
  shl_writer_close(w);
  return t_result();
}

#endif /* SHL_TESTUTIL_STREAM_API_H */
