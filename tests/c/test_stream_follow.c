/* Streams that change under their name: per-frame metadata beside each
 * frame, a writer replacing its stream with another layout
 * (SHL_STREAM_REPLACE), and readers that follow the name to the new stream,
 * or refuse to (SHL_READER_NO_FOLLOW). */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/mman.h>

#include "internal.h"
#include "testutil.h"
#include "testutil_stream.h"

#define META "T{<Q:frame:<d:exposure:}"

struct meta {
  uint64_t frame;
  double exposure;
};

/* A writer of `words`-word frames with META beside each, or stop the test. */
static shl_writer *meta_writer(const char *name, uint64_t words, uint32_t slots, uint32_t flags) {
  shl_layout l = t_frame_layout(words);
  shl_stream_opts o = SHL_STREAM_OPTS_INIT;
  o.slots = slots;
  o.max_readers = 4;
  o.flags = flags;
  o.meta_format = META;
  shl_writer *w = NULL;
  T_EXPECT_RC(shl_writer_open(&w, name, &l, &o), 0);
  T_REQUIRE(w != NULL);
  return w;
}

/* Publish a frame stamped with tag, its metadata saying the same. */
static uint64_t publish_meta(shl_writer *w, uint64_t words, uint64_t tag) {
  void *frame;
  T_REQUIRE(shl_writer_meta(w) == NULL); /* no loan yet */
  T_EXPECT_RC(shl_writer_loan(w, &frame, 0) >= 0, 1);
  struct meta *m = shl_writer_meta(w);
  T_REQUIRE(m != NULL);
  T_CHECK((uintptr_t)m % 64 == 0 && (char *)m >= (char *)frame + words * 8);
  t_frame_stamp(frame, words, tag);
  m->frame = tag;
  m->exposure = (double)tag / 2;
  uint64_t seq = 0;
  T_EXPECT_RC(shl_writer_publish(w, &seq), 0);
  return seq;
}

/* Receive one sample (waiting up to 2 s) whose frame and metadata carry tag. */
static void expect_meta(shl_reader *r, shl_sample *s, uint64_t words, uint64_t tag,
                        uint64_t seq, uint64_t lost, uint32_t flags) {
  T_EXPECT_RC(shl_reader_receive(r, s, 2000 * T_MS, 0), 0);
  T_CHECK(s->seq == seq && s->lost == lost && s->flags == flags);
  if (s->seq != seq || s->lost != lost || s->flags != flags)
    fprintf(stderr, "  got seq %llu lost %llu flags %u, want %llu %llu %u\n",
            (unsigned long long)s->seq, (unsigned long long)s->lost, s->flags,
            (unsigned long long)seq, (unsigned long long)lost, flags);
  T_CHECK(t_frame_bad_words(s->data, words, tag) == 0);
  const struct meta *m = shl_sample_meta(r, s);
  T_REQUIRE(m != NULL);
  T_CHECK(m->frame == tag && m->exposure == (double)tag / 2);
}

static void test_metadata(void) {
  char name[SHL_NAME_MAX + 1], format[64];
  t_fresh_name(name, "fmeta");
  shl_writer *w = meta_writer(name, 3, 4, 0);
  shl_reader *r = t_reader_open(name, SHL_RECV_ALL, 1000);
  shl_sample s;
  publish_meta(w, 3, 11);
  expect_meta(r, &s, 3, 11, 1, 0, 0);

  /* The layout, for readers of any language. */
  shl_segment *seg = shl_reader_segment(r);
  T_EXPECT_RC(shl_stream_get_meta(seg, format, sizeof format), 16);
  T_CHECK(strcmp(format, META) == 0);
  T_EXPECT_RC(shl_stream_get_meta(seg, NULL, 0), 16);
  T_EXPECT_RC(shl_stream_get_meta(seg, format, 5), -ERANGE);
  shl_stream_info info = t_stream_info(seg);
  T_CHECK(info.meta_size == 16 && info.meta_offset == 64 && info.slot_stride == 128);
  /* Read-only for readers, like the frame. */
  T_CHECK(shl_is_readonly(seg));
  T_EXPECT_RC(shl_reader_release(r, &s), 0);

  /* A takeover needs the same metadata; another one is another layout. */
  shl_writer_close(w);
  shl_layout l = t_frame_layout(3);
  shl_stream_opts o = SHL_STREAM_OPTS_INIT;
  o.meta_format = "T{<Q:frame:}";
  shl_writer *other = NULL;
  T_EXPECT_RC(shl_writer_open(&other, name, &l, &o), SHL_E_META_MISMATCH);
  o.meta_format = NULL;
  T_EXPECT_RC(shl_writer_open(&other, name, &l, &o), SHL_E_META_MISMATCH);
  o.meta_format = "T{<Q:frame:";
  T_EXPECT_RC(shl_writer_open(&other, name, &l, &o), SHL_E_BAD_FORMAT);
  w = meta_writer(name, 3, 0, 0);
  publish_meta(w, 3, 12);
  expect_meta(r, &s, 3, 12, 2, 0, 0);
  T_EXPECT_RC(shl_reader_release(r, &s), 0);
  shl_reader_close(r);
  shl_writer_close(w);

  /* Without metadata there is none to point at. */
  t_fresh_name(name, "fnometa");
  w = t_writer_open(name, 2, 2, 2, 0);
  r = t_reader_open(name, SHL_RECV_LATEST, 1000);
  t_publish(w, 2, 5, 100);
  T_EXPECT_RC(shl_reader_receive(r, &s, 1000 * T_MS, 0), 0);
  T_CHECK(shl_sample_meta(r, &s) == NULL);
  T_EXPECT_RC(shl_stream_get_meta(shl_reader_segment(r), format, sizeof format), 0);
  T_CHECK(format[0] == '\0');
  shl_reader_close(r);
  shl_writer_close(w);
}

/* A hostile header cannot point the metadata outside its slot or area. */
static void test_meta_bounds(void) {
  char name[SHL_NAME_MAX + 1];
  t_fresh_name(name, "fbound");
  shl_writer *w = meta_writer(name, 3, 4, 0);
  struct shl__stream_ctl *ctl = (void *)shl_writer_segment(w)->ext;
  struct shl__stream_ctl saved = *ctl;
  struct {
    const char *what;
    uint64_t *field;
    uint64_t value;
    int want;
  } cases[] = {
      {"meta_offset past the slot", &ctl->meta_offset, 128, SHL_E_BAD_HEADER},
      {"meta_offset inside the frame", &ctl->meta_offset, 0, SHL_E_BAD_HEADER},
      {"meta_offset unaligned", &ctl->meta_offset, 72, SHL_E_BAD_HEADER},
      {"meta_size not the format's", &ctl->meta_size, 8, SHL_E_ITEMSIZE},
      {"format outside the area", &ctl->meta_format_offset, 1u << 20, SHL_E_BAD_HEADER},
      {"format over the reader table", &ctl->meta_format_offset, 128, SHL_E_BAD_HEADER},
      {"base_seq too large", &ctl->base_seq, UINT64_MAX / 2, SHL_E_BAD_HEADER},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    *cases[i].field = cases[i].value;
    shl_reader *r = NULL;
    int rc = shl_reader_open(&r, name, SHL_RECV_ALL, 0);
    if (rc != cases[i].want) fprintf(stderr, "%s:\n", cases[i].what);
    T_EXPECT_RC(rc, cases[i].want);
    shl_reader_close(r);
    *ctl = saved;
  }
  ctl->meta_format_len = 0; /* no format, yet a size */
  T_EXPECT_RC(shl_stream_get_meta(shl_writer_segment(w), NULL, 0), SHL_E_BAD_HEADER);
  *ctl = saved;
  shl_writer_close(w);
}

/* A writer with another layout replaces the stream; readers drain the old
 * one, then go on in the new one, numbers and lost counts included. */
static void test_replace_followed(void) {
  char name[SHL_NAME_MAX + 1];
  t_fresh_name(name, "frepl");
  shl_writer *w = meta_writer(name, 2, 4, 0);
  shl_reader *all = t_reader_open(name, SHL_RECV_ALL, 1000);
  shl_reader *latest = t_reader_open(name, SHL_RECV_LATEST, 1000);
  shl_reader_opts no = SHL_READER_OPTS_INIT;
  no.flags = SHL_READER_NO_FOLLOW;
  shl_reader *stay = NULL;
  T_EXPECT_RC(shl_reader_open_ex(&stay, name, &no), 0);
  shl_sample s, kept, got;
  publish_meta(w, 2, 1);
  expect_meta(latest, &s, 2, 1, 1, 0, 0);
  T_EXPECT_RC(shl_reader_release(latest, &s), 0);
  publish_meta(w, 2, 2);
  expect_meta(all, &kept, 2, 1, 1, 0, 0); /* kept across the move */
  const void *old_frames = kept.data;

  /* A live writer is never replaced. */
  shl_layout bigger = t_frame_layout(5);
  shl_stream_opts o = SHL_STREAM_OPTS_INIT;
  o.flags = SHL_STREAM_REPLACE;
  o.meta_format = META;
  o.max_readers = 4;
  shl_writer *w2 = NULL;
  T_EXPECT_RC(shl_writer_open(&w2, name, &bigger, &o), -EBUSY);
  T_EXPECT_RC(shl_writer_open(&w2, name, &bigger, NULL), SHL_E_LAYOUT_MISMATCH); /* never silently */
  shl_writer_close(w);
  T_EXPECT_RC(shl_writer_open(&w2, name, &bigger, &o), 0);
  T_REQUIRE(w2 != NULL);
  T_CHECK(shl_writer_next_seq(w2) == 3);
  publish_meta(w2, 5, 3);
  publish_meta(w2, 5, 4);

  /* The old stream's last frame first, then the new stream's. */
  expect_meta(all, &s, 2, 2, 2, 0, 0);
  T_EXPECT_RC(shl_reader_release(all, &s), 0);
  expect_meta(all, &s, 5, 3, 3, 0, SHL_SAMPLE_NEW_STREAM);
  T_EXPECT_RC(shl_reader_release(all, &s), 0);
  expect_meta(all, &s, 5, 4, 4, 0, 0);
  T_EXPECT_RC(shl_reader_release(all, &s), 0);
  shl_layout now;
  shl_get_layout(shl_reader_segment(all), &now);
  T_CHECK(now.shape[0] == 5);
  /* The sample kept from the old stream is still mapped and releasable. */
  T_CHECK(kept.data == old_frames && t_frame_bad_words(kept.data, 2, 1) == 0);
  const struct meta *m = shl_sample_meta(all, &kept);
  T_CHECK(m && m->frame == 1);
  T_EXPECT_RC(shl_reader_release(all, &kept), 0);
  T_EXPECT_RC(shl_reader_release(all, &kept), -EINVAL);

  /* "latest": frame 2 from the old stream, then the newest, 3 counted lost. */
  expect_meta(latest, &got, 2, 2, 2, 0, 0);
  T_EXPECT_RC(shl_reader_release(latest, &got), 0);
  expect_meta(latest, &got, 5, 4, 4, 1, SHL_SAMPLE_NEW_STREAM);
  T_EXPECT_RC(shl_reader_release(latest, &got), 0);

  /* A reader that does not follow ends with its own stream's frames. */
  expect_meta(stay, &got, 2, 2, 2, 0, 0);
  T_EXPECT_RC(shl_reader_release(stay, &got), 0);
  T_EXPECT_RC(shl_reader_receive(stay, &got, 1000 * T_MS, 0), SHL_E_REPLACED);
  shl_stream_info info = t_stream_info(shl_reader_segment(stay));
  T_CHECK(info.replaced == 1);
  info = t_stream_info(shl_writer_segment(w2));
  T_CHECK(info.base_seq == 2 && info.replaced == 0);

  /* Only one stream is left under the name. */
  shl_reader *fresh = t_reader_open(name, SHL_RECV_LATEST, 1000);
  shl_get_layout(shl_reader_segment(fresh), &now);
  T_CHECK(now.shape[0] == 5);
  shl_reader_close(fresh);
  shl_reader_close(stay);
  shl_reader_close(latest);
  shl_reader_close(all);
  shl_writer_close(w2);
}

/* A name removed and created again (no REPLACE, numbers start over): readers
 * whose writer is gone move to the new stream once they notice. */
static void test_recreated_followed(void) {
  char name[SHL_NAME_MAX + 1];
  t_fresh_name(name, "frecr");
  shl_writer *w = meta_writer(name, 2, 4, 0);
  shl_reader *r = t_reader_open(name, SHL_RECV_ALL, 1000);
  shl_sample s;
  publish_meta(w, 2, 1);
  publish_meta(w, 2, 2);
  shl_writer_close(w);
  T_EXPECT_RC(shl_unlink(name), 0);
  w = meta_writer(name, 3, 2, 0);
  T_CHECK(shl_writer_next_seq(w) == 1);
  publish_meta(w, 3, 7);
  expect_meta(r, &s, 2, 1, 1, 0, 0);
  T_EXPECT_RC(shl_reader_release(r, &s), 0);
  expect_meta(r, &s, 2, 2, 2, 0, 0);
  T_EXPECT_RC(shl_reader_release(r, &s), 0);
  expect_meta(r, &s, 3, 7, 1, 0, SHL_SAMPLE_NEW_STREAM);
  T_EXPECT_RC(shl_reader_release(r, &s), 0);

  /* Removed and not created again: the writer is simply gone. */
  shl_writer_close(w);
  T_EXPECT_RC(shl_unlink(name), 0);
  T_EXPECT_RC(shl_reader_receive(r, &s, 1000 * T_MS, 0), SHL_E_WRITER_CLOSED);
  shl_reader_close(r);
}

/* The live writer replaces its own stream, again and again, while a reader
 * thread waits in receive: the reader gets every frame, follows each time,
 * and never finds the writer gone. */
struct chase {
  const char *name;
  uint64_t frames, moves;
  int error;
};

static void *chase_reader(void *arg) {
  struct chase *c = arg;
  shl_reader *r = t_reader_open(c->name, SHL_RECV_ALL, 1000);
  shl_sample s;
  while (c->frames < 40) {
    int rc = shl_reader_receive(r, &s, 5000 * T_MS, 0);
    if (rc < 0) {
      c->error = rc;
      break;
    }
    const struct meta *m = shl_sample_meta(r, &s);
    shl_layout l;
    shl_get_layout(shl_reader_segment(r), &l);
    if (s.seq != c->frames + 1 || s.lost || !m || m->frame != s.seq ||
        t_frame_bad_words(s.data, l.shape[0], s.seq))
      c->error = -EPROTO;
    c->frames++;
    c->moves += (s.flags & SHL_SAMPLE_NEW_STREAM) != 0;
    shl_reader_release(r, &s);
  }
  shl_reader_close(r);
  return NULL;
}

static void test_writer_replaces_its_stream(void) {
  char name[SHL_NAME_MAX + 1], format[64];
  t_fresh_name(name, "fown");
  shl_writer *w = meta_writer(name, 2, 4, SHL_STREAM_BLOCK);
  void *frame;
  shl_layout bigger = t_frame_layout(3);
  T_EXPECT_RC(shl_writer_loan(w, &frame, 0) >= 0, 1);
  T_EXPECT_RC(shl_writer_replace(&w, &bigger, NULL), -EBUSY); /* not under a loan */
  T_EXPECT_RC(shl_writer_discard(w), 0);

  struct chase c = {name, 0, 0, 0};
  pthread_t reader;
  T_REQUIRE(pthread_create(&reader, NULL, chase_reader, &c) == 0);
  while (t_stream_info(shl_writer_segment(w)).readers_alive == 0) t_sleep_ms(1);
  for (uint64_t n = 1; n <= 40; n++) {
    if (n % 4 == 1 && n > 1) {
      shl_layout l = t_frame_layout(2 + n % 3);
      T_EXPECT_RC(shl_writer_replace(&w, &l, NULL), 0); /* the old stream's settings */
      T_CHECK(shl_writer_next_seq(w) == n);
      /* Block mode: wait until the reader is here, as it must be to get every frame. */
      while (t_stream_info(shl_writer_segment(w)).readers_alive == 0 && !c.error) t_sleep_ms(1);
    }
    shl_layout now;
    shl_get_layout(shl_writer_segment(w), &now);
    publish_meta(w, now.shape[0], n);
  }
  T_REQUIRE(pthread_join(reader, NULL) == 0);
  if (c.error) fprintf(stderr, "chasing reader: %s\n", shl_err_name(c.error));
  T_EXPECT_RC(c.error, 0);
  T_CHECK(c.frames == 40 && c.moves == 9);
  shl_stream_info info = t_stream_info(shl_writer_segment(w));
  T_CHECK(info.slots == 4 && info.flags == SHL_STREAM_BLOCK && info.base_seq == 36);
  T_EXPECT_RC(shl_stream_get_meta(shl_writer_segment(w), format, sizeof format), 16);
  T_CHECK(strcmp(format, META) == 0);
  shl_writer_close(w);
}

/* A writer whose stream's name was removed while it wrote (shmlane rm)
 * replaces it all the same: the new stream takes the free name, and the
 * old stream's readers follow it there. */
static void test_replace_after_rm(void) {
  char name[SHL_NAME_MAX + 1];
  t_fresh_name(name, "frm");
  shl_writer *w = t_writer_open(name, 2, 4, 4, 0);
  shl_reader *r = t_reader_open(name, SHL_RECV_ALL, 1000);
  T_CHECK(t_publish(w, 2, 1, 1000) == 1);
  T_EXPECT_RC(shl_unlink(name), 0);
  shl_layout wider = t_frame_layout(3);
  T_EXPECT_RC(shl_writer_replace(&w, &wider, NULL), 0);
  T_CHECK(t_publish(w, 3, 2, 1000) == 2);
  shl_sample s;
  for (uint64_t seq = 1; seq <= 2; seq++) {
    T_EXPECT_RC(shl_reader_receive(r, &s, 1000 * T_MS, 0), 0);
    T_CHECK(s.seq == seq && s.flags == (seq == 2 ? SHL_SAMPLE_NEW_STREAM : 0u));
    T_EXPECT_RC(shl_reader_release(r, &s), 0);
  }
  shl_layout now;
  shl_get_layout(shl_reader_segment(r), &now);
  T_CHECK(now.shape[0] == 3);
  shl_reader_close(r);
  shl_writer_close(w);
}

/* r, an `all` reader of the stream w replaced, receives its one frame, then
 * `why` (it will not come to the new stream); w then publishes n frames of
 * 3 words there, none waiting for r. */
static void left_behind(shl_reader *r, int why, shl_writer *w, uint64_t n) {
  shl_sample s;
  T_EXPECT_RC(shl_reader_receive(r, &s, 1000 * T_MS, 0), 0);
  T_CHECK(s.seq == 1);
  T_EXPECT_RC(shl_reader_release(r, &s), 0);
  T_EXPECT_RC(shl_reader_receive(r, &s, 1000 * T_MS, 0), why);
  for (uint64_t tag = 2; tag < 2 + n; tag++) T_CHECK(t_publish(w, 3, tag, 200) == tag);
}

/* A blocking writer that replaced its stream keeps frames for the old
 * stream's `all` readers on their way to the new one; a reader that will
 * never come (SHL_READER_NO_FOLLOW, told SHL_E_REPLACED) is not waited for:
 * the writer goes on while that reader stays open. */
static void test_block_no_follow(void) {
  char name[SHL_NAME_MAX + 1];
  t_fresh_name(name, "fnofol");
  shl_writer *w = t_writer_open(name, 2, 4, 4, SHL_STREAM_BLOCK);
  shl_reader *stay = t_reader_open_ex(name, SHL_RECV_ALL, 1000, 0, SHL_READER_NO_FOLLOW);
  T_CHECK(t_publish(w, 2, 1, 1000) == 1);
  shl_layout wider = t_frame_layout(3);
  T_EXPECT_RC(shl_writer_replace(&w, &wider, NULL), 0);
  left_behind(stay, SHL_E_REPLACED, w, 3 * 4);
  shl_reader_close(stay);
  shl_writer_close(w);
}

/* A follower that finds no free entry in the new stream (it has fewer, all
 * taken) is told so (-EUSERS), and a blocking writer no longer keeps the
 * new stream's frames for it while it stays open. */
static void test_block_follower_without_entry(void) {
  char name[SHL_NAME_MAX + 1];
  t_fresh_name(name, "fnoent");
  shl_writer *w = t_writer_open(name, 2, 4, 4, SHL_STREAM_BLOCK);
  shl_reader *r = t_reader_open(name, SHL_RECV_ALL, 1000);
  T_CHECK(t_publish(w, 2, 1, 1000) == 1);
  shl_layout wider = t_frame_layout(3);
  shl_stream_opts o = SHL_STREAM_OPTS_INIT;
  o.flags = SHL_STREAM_BLOCK;
  o.max_readers = 1;
  T_EXPECT_RC(shl_writer_replace(&w, &wider, &o), 0);
  shl_reader *first = t_reader_open(name, SHL_RECV_LATEST, 1000); /* takes the one entry */
  left_behind(r, -EUSERS, w, 2 * 4);
  shl_reader_close(first);
  shl_reader_close(r);
  shl_writer_close(w);
}

/* A blocking writer replaces its stream twice in a row while an `all`
 * reader is still on the first (it comes 50 ms later): the second replace
 * waits for it to move to the second stream, so it receives every frame of
 * each, none lost, where it followed the name to the third and lost the
 * second's frame. */
static _Atomic int late_registered;

static void *late_reader(void *arg) {
  struct chase *c = arg;
  shl_reader *r = t_reader_open(c->name, SHL_RECV_ALL, 1000);
  atomic_store(&late_registered, 1);
  t_sleep_ms(50);
  shl_sample s;
  for (uint64_t seq = 1; seq <= 3 && !c->error; seq++) {
    int rc = shl_reader_receive(r, &s, 2000 * T_MS, 0);
    if (rc < 0) {
      c->error = rc;
      break;
    }
    if (s.seq != seq || s.lost) {
      fprintf(stderr, "late reader: frame %llu, %llu lost, want %llu\n",
              (unsigned long long)s.seq, (unsigned long long)s.lost, (unsigned long long)seq);
      c->error = -EPROTO;
    }
    c->frames++;
    shl_reader_release(r, &s);
  }
  shl_reader_close(r);
  return NULL;
}

static void test_block_replaced_twice(void) {
  char name[SHL_NAME_MAX + 1];
  t_fresh_name(name, "ftwice");
  shl_writer *w = t_writer_open(name, 2, 4, 4, SHL_STREAM_BLOCK);
  struct chase c = {name, 0, 0, 0};
  pthread_t t;
  T_REQUIRE(pthread_create(&t, NULL, late_reader, &c) == 0);
  while (!atomic_load(&late_registered)) t_sleep_ms(1);
  for (uint64_t n = 1; n <= 3; n++) {
    shl_layout l = t_frame_layout(1 + n);
    if (n > 1) T_EXPECT_RC(shl_writer_replace(&w, &l, NULL), 0);
    T_CHECK(t_publish(w, 1 + n, n, 1000) == n);
  }
  T_REQUIRE(pthread_join(t, NULL) == 0);
  T_EXPECT_RC(c.error, 0);
  T_CHECK(c.frames == 3);
  shl_writer_close(w);
}

int main(void) {
  test_metadata();
  test_meta_bounds();
  test_replace_followed();
  test_recreated_followed();
  test_writer_replaces_its_stream();
  test_block_no_follow();
  test_replace_after_rm();
  test_block_follower_without_entry();
  test_block_replaced_twice();
  return t_result();
}
