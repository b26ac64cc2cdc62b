/* Streams against peers that break the protocol, and the races a peer or
 * another thread can strike (issue-sized items, each a test):
 * - metadata: a peer with write access switches the record's place and size
 *   between two states that each pass validation, after a reader joined: the
 *   reader's record and its size come from one snapshot, inside its slot;
 * - a replacement that cannot be created (no room in /dev/shm) leaves the
 *   old stream under its name, its readers unaffected; one whose private
 *   name another user tried to take first is made all the same;
 * - sequence numbers from shared memory are bounded: a peer's 2^60 in a
 *   slot, or numbers used up, never brick the name for a takeover or a
 *   replacement; a peer's number in a reader's `lost` is only shown; a
 *   peer's number within range, a `latest` past the ring or a `replaced`
 *   on a stream still under its name deafens or ends no reader;
 * - a peer that lowers the reader table's high-water mark hides no live
 *   reader from shl_stream_get_info (shmlane gc removes a stream only
 *   without one);
 * - a reader joining a blocking stream never skips a frame the writer keeps
 *   (the slot is marked, not emptied, while the writer decides), nor loses
 *   one the writer decides about while it joins or follows;
 * - a writer gives up its role only after its liveness words are cleared and
 *   its keeper stopped; a reader that finds the role free as another writer
 *   takes the stream over does not report its writer dead;
 * - a fork() from another thread while a role descriptor is being opened
 *   never leaves a child holding the role; one while a writer or reader is
 *   being closed leaves the child a handle it can close;
 * - shl_dup maps the very object a handle holds, whatever its name does;
 * - a reader joins the stream its name holds when a replacement is swapped
 *   in between its open of the object and of its role.
 * White-box: roles.c, stream_setup.c and stream.c are compiled into this
 * program, with a hook that runs code of the test at the points where a race
 * would strike. */
#include <dirent.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>

#include "testutil_stream.h"

static void (*test_hook)(const char *point);
#define SHL__TEST_POINT(name) (test_hook ? test_hook(#name) : (void)0)
#include "roles.c"
#include "stream_setup.c"
#include "stream_readers.c"
#include "stream.c"

#define WORDS 8
#define SLOTS 4
#define WAIT_MS 5000
#define CHILD_LIMIT_S 30

/* ---------------------------------------------------------------- metadata */

/* The control block's metadata fields, as a peer rewrites them. */
static void set_meta(struct stream *s, uint64_t offset, const char *format, uint64_t size) {
  char *at = (char *)s->seg->ext + s->ctl->meta_format_offset;
  strcpy(at, format);
  s->ctl->meta_format_len = (uint32_t)strlen(format);
  s->ctl->meta_offset = offset;
  s->ctl->meta_size = size;
}

/* Frames of 8 KiB: slots of 12 KiB, the record of state A in the slot's last
 * 64 bytes, of state B in its last 4 KiB. A's place with B's size would reach
 * 4032 bytes into the next slot, or past the mapping from the last one. */
static void test_meta_switched_after_join(void) {
  char name[SHL_NAME_MAX + 1];
  t_fresh_name(name, "hmeta");
  shl_layout frame = t_frame_layout(1024);
  shl_stream_opts o = SHL_STREAM_OPTS_INIT;
  o.slots = 2;
  o.meta_format = "T{<Q:a:<Q:b:48x}"; /* 64 bytes: 16 chars, room for "4096x" */
  shl_writer *w = NULL;
  T_EXPECT_RC(shl_writer_open(&w, name, &frame, &o), 0);
  T_REQUIRE(w);
  struct stream *ws = &w->s;
  T_REQUIRE(ws->stride == 12288 && ws->meta_offset == 8192);
  set_meta(ws, 12288 - 64, "T{<Q:a:<Q:b:48x}", 64); /* state A: valid too */
  shl_reader *r = t_reader_open(name, SHL_RECV_ALL, WAIT_MS);
  set_meta(ws, 8192, "4096x", 4096); /* state B, after the reader joined */
  char format[SHL_FORMAT_MAX + 1];
  T_EXPECT_RC(shl_reader_get_meta(r, format, sizeof format), 64);
  T_CHECK(strcmp(format, "T{<Q:a:<Q:b:48x}") == 0);
  for (int i = 0; i < 2; i++) T_CHECK(t_publish(w, 1024, (uint64_t)i + 1, WAIT_MS) != 0);
  for (int i = 0; i < 2; i++) {
    shl_sample s;
    T_EXPECT_RC(shl_reader_receive(r, &s, WAIT_MS * T_MS, 0), 0);
    const void *meta = NULL;
    uint64_t size = 0;
    T_EXPECT_RC(shl_sample_get_meta(r, &s, &meta, &size), 0);
    T_CHECK(size == 64 && meta == (const char *)s.data + 12288 - 64);
    T_CHECK(shl_sample_meta(r, &s) == meta);
    /* The record and its size lie inside the reader's mapping. */
    const unsigned char *end = (const unsigned char *)shl_reader_segment(r)->hdr +
                               shl_reader_segment(r)->map_size;
    T_CHECK((const unsigned char *)meta + size <= end);
    T_EXPECT_RC(shl_reader_release(r, &s), 0);
  }
  /* A fresh look sees B, whole: format and size from the same read. */
  T_EXPECT_RC(shl_stream_get_meta(shl_reader_segment(r), format, sizeof format), 4096);
  T_CHECK(strcmp(format, "4096x") == 0);
  /* The writer's own copy is the one it opened with. */
  T_EXPECT_RC(shl_writer_get_meta(w, format, sizeof format), 64);
  T_CHECK(strcmp(format, "T{<Q:a:<Q:b:48x}") == 0);
  shl_reader_close(r);
  shl_writer_close(w);
}

/* ---------------------------------------------------------------- replace */

/* A replacement too big for /dev/shm fails, and the old stream stays. */
static void test_failed_replace_keeps_name(void) {
  char name[SHL_NAME_MAX + 1];
  t_fresh_name(name, "hrepl");
  shl_writer *w = t_writer_open(name, WORDS, SLOTS, 4, 0);
  T_CHECK(t_publish(w, WORDS, 1, WAIT_MS) == 1);
  shl_reader *r = t_reader_open(name, SHL_RECV_ALL, WAIT_MS);
  struct stat before, after;
  char path[T_PATH_MAX];
  T_REQUIRE(stat(t_shm_path(name, path), &before) == 0);
  shl_layout huge = {.format = "B", .ndim = 1, .shape = {(uint64_t)1 << 40}}; /* 8 TiB a ring */
  shl_writer *same = w;
  int rc = shl_writer_replace(&w, &huge, NULL);
  T_CHECK(rc == -ENOSPC || rc == -EFBIG || rc == -ENOMEM);
  T_CHECK(w == same);
  T_REQUIRE(stat(path, &after) == 0);
  T_CHECK(after.st_ino == before.st_ino); /* the old stream is still the name's */
  /* Nothing staged is left, and the writer and readers go on. */
  DIR *dir = opendir("/dev/shm");
  for (struct dirent *e; dir && (e = readdir(dir));)
    T_CHECK(strncmp(e->d_name, ".shl-stage.", 11) != 0 || !strstr(e->d_name, name));
  if (dir) closedir(dir);
  T_CHECK(t_publish(w, WORDS, 2, WAIT_MS) == 2);
  shl_sample s;
  for (uint64_t seq = 1; seq <= 2; seq++) { /* it joined at frame 1 */
    T_EXPECT_RC(shl_reader_receive(r, &s, WAIT_MS * T_MS, 0), 0);
    T_CHECK(s.seq == seq && !(s.flags & SHL_SAMPLE_NEW_STREAM));
    T_EXPECT_RC(shl_reader_release(r, &s), 0);
  }
  shl_reader *late = t_reader_open(name, SHL_RECV_LATEST, WAIT_MS);
  T_EXPECT_RC(shl_reader_receive(late, &s, WAIT_MS * T_MS, 0), 0);
  T_CHECK(s.seq == 2);
  T_EXPECT_RC(shl_reader_release(late, &s), 0);
  shl_reader_close(late);
  shl_reader_close(r);
  shl_writer_close(w);
}

/* The private name a replacement is built under cannot be guessed: objects
 * created first under the names a counter would give (this pid, 0..63)
 * stop no replacement. */
static void test_replace_beside_planted_names(void) {
  char name[SHL_NAME_MAX + 1], planted[96];
  t_fresh_name(name, "hplant");
  shl_writer *w = t_writer_open(name, WORDS, SLOTS, 4, 0);
  for (int i = 0; i < 64; i++) {
    snprintf(planted, sizeof planted, "%s%s.%ld.%d", SHL__STAGE_PREFIX, name, (long)getpid(), i);
    int fd = shm_open(planted, O_RDWR | O_CREAT | O_EXCL, 0600);
    if (fd >= 0) close(fd);
  }
  shl_layout other = t_frame_layout(2 * WORDS);
  T_EXPECT_RC(shl_writer_replace(&w, &other, NULL), 0);
  T_CHECK(t_publish(w, 2 * WORDS, 1, WAIT_MS) == 1);
  shl_writer_close(w);
  for (int i = 0; i < 64; i++) {
    snprintf(planted, sizeof planted, "%s%s.%ld.%d", SHL__STAGE_PREFIX, name, (long)getpid(), i);
    shm_unlink(planted);
  }
}

/* A blocking writer that replaces its stream keeps its promise to the `all`
 * readers of the old one: it fills the new ring, then waits for them as for
 * any slow reader, until they have moved over; nothing is lost. */
static void test_block_across_replace(void) {
  char name[SHL_NAME_MAX + 1];
  t_fresh_name(name, "hblock");
  shl_writer *w = t_writer_open(name, WORDS, SLOTS, 4, SHL_STREAM_BLOCK);
  shl_reader *r = t_reader_open(name, SHL_RECV_ALL, WAIT_MS);
  for (uint64_t i = 1; i <= 3; i++) T_CHECK(t_publish(w, WORDS, i, WAIT_MS) == i);
  shl_layout wider = t_frame_layout(WORDS * 2);
  T_EXPECT_RC(shl_writer_replace(&w, &wider, NULL), 0);
  uint64_t next = 4;
  void *frame;
  for (; shl_writer_loan(w, &frame, 0) >= 0; next++) { /* until the new ring is full */
    t_frame_stamp(frame, WORDS * 2, next);
    T_EXPECT_RC(shl_writer_publish(w, NULL), 0);
  }
  T_CHECK(next - 4 == SLOTS); /* frames 4.. kept for the reader still on its way */
  uint64_t want = 1;
  for (int rounds = 0; rounds < 3; rounds++) {
    shl_sample s;
    int rc;
    while ((rc = shl_reader_receive(r, &s, 0, 0)) == 0) {
      T_CHECK(s.seq == want && s.lost == 0);
      want = s.seq + 1;
      T_EXPECT_RC(shl_reader_release(r, &s), 0);
    }
    T_EXPECT_RC(rc, -ETIMEDOUT);
    for (int i = 0; i < 2; i++, next++) T_CHECK(t_publish(w, WORDS * 2, next, WAIT_MS) == next);
  }
  T_CHECK(want > 4 && w->prev.seg == NULL); /* moved over, and the old stream let go */
  shl_reader_close(r);
  shl_writer_close(w);
}

/* What a replacement killed before its swap left (a staged object with no
 * live builder) is removed by the next writer of the name; one being built
 * (its roles held) is not. */
static void test_stale_staged_object_swept(void) {
  char name[SHL_NAME_MAX + 1], stale[96], path[128];
  t_fresh_name(name, "hstage");
  shl_writer *w = t_writer_open(name, WORDS, SLOTS, 4, 0);
  snprintf(stale, sizeof stale, "%s%s.1.0", SHL__STAGE_PREFIX, name);
  int fd = shm_open(stale, O_RDWR | O_CREAT | O_EXCL, 0600);
  T_REQUIRE(fd >= 0);
  close(fd);
  snprintf(path, sizeof path, "/dev/shm%s", stale);
  shl_writer_close(w);
  w = t_writer_open(name, WORDS, SLOTS, 4, 0);
  T_CHECK(access(path, F_OK) != 0);
  if (access(path, F_OK) == 0) shm_unlink(stale);
  shl_writer_close(w);
}

/* A writer that takes the stream over just after a reader found the role
 * free, before it read the writer word: the reader waits for that writer's
 * frames, instead of reporting its writer dead (the word is the new
 * writer's) while a writer lives. */
static const char *takeover_name;
static shl_writer *taken_over;

static void take_over_at_writer_state(const char *point) {
  if (strcmp(point, "writer_state") != 0 || taken_over) return;
  taken_over = t_writer_open(takeover_name, WORDS, SLOTS, 4, 0);
}

static void test_takeover_as_reader_looks(void) {
  char name[SHL_NAME_MAX + 1];
  t_fresh_name(name, "htake");
  shl_writer *w = t_writer_open(name, WORDS, SLOTS, 4, 0);
  shl_reader *r = t_reader_open(name, SHL_RECV_LATEST, WAIT_MS);
  shl_writer_close(w);
  takeover_name = name;
  test_hook = take_over_at_writer_state;
  shl_sample got;
  T_EXPECT_RC(shl_reader_receive(r, &got, 20 * T_MS, 0), -ETIMEDOUT);
  test_hook = NULL;
  T_REQUIRE(taken_over != NULL);
  T_CHECK(t_publish(taken_over, WORDS, 1, WAIT_MS) == 1);
  T_EXPECT_RC(shl_reader_receive(r, &got, WAIT_MS * T_MS, 0), 0);
  T_EXPECT_RC(shl_reader_release(r, &got), 0);
  shl_reader_close(r);
  shl_writer_close(taken_over);
  taken_over = NULL;
}

/* ---------------------------------------------------------------- sequence numbers */

/* Receive one frame (0) or say why not. */
static int receive_seq(shl_reader *r, uint64_t *seq) {
  shl_sample s;
  int rc = shl_reader_receive(r, &s, WAIT_MS * T_MS, 0);
  if (rc == 0) {
    *seq = s.seq;
    T_EXPECT_RC(shl_reader_release(r, &s), 0);
  }
  return rc;
}

/* A stream `name` (fresh, of `tag`) with frames 1 and 2 and an `all` reader. */
static shl_writer *two_frames(char name[SHL_NAME_MAX + 1], const char *tag, shl_reader **r) {
  t_fresh_name(name, tag);
  shl_writer *w = t_writer_open(name, WORDS, SLOTS, 4, 0);
  *r = t_reader_open(name, SHL_RECV_ALL, WAIT_MS);
  for (uint64_t i = 1; i <= 2; i++) T_CHECK(t_publish(w, WORDS, i, WAIT_MS) == i);
  return w;
}

/* A peer writes 2^60 into the empty slot 3 and frame 2^55 (past SEQ_MAX)
 * into `latest`, through r's mapping (its control area is writable). */
static struct stream *peer_seq_damage(shl_reader *r) {
  struct stream *s = &r->cur->s;
  atomic_store(&s->slot[3].seq, (uint64_t)1 << 60);
  atomic_store(&s->ctl->latest, (uint64_t)1 << 63 | 3);
  return s;
}

/* After the peer's numbers, readers deliver none of them, and a writer
 * taking over goes on from the real numbers. */
static void test_peer_seq_takeover(void) {
  char name[SHL_NAME_MAX + 1];
  shl_reader *r;
  shl_writer *w = two_frames(name, "hseq", &r);
  uint64_t seq;
  T_EXPECT_RC(receive_seq(r, &seq), 0);
  T_CHECK(seq == 1);
  struct stream *s = peer_seq_damage(r);
  shl_writer_close(w);
  T_EXPECT_RC(receive_seq(r, &seq), SHL_E_WRITER_CLOSED); /* nothing of the peer's */
  w = t_writer_open(name, WORDS, SLOTS, 4, 0);
  T_CHECK(shl_writer_next_seq(w) == 3);
  T_CHECK(atomic_load(&s->slot[3].seq) == 0 && atomic_load(&s->ctl->latest) == 0);
  T_CHECK(t_publish(w, WORDS, 3, WAIT_MS) == 3);
  T_EXPECT_RC(receive_seq(r, &seq), 0); /* frame 2 was still there */
  T_CHECK(seq == 2);
  T_EXPECT_RC(receive_seq(r, &seq), 0);
  T_CHECK(seq == 3);
  shl_reader_close(r);
  shl_writer_close(w);
}

/* The same damage under a live writer, then a replace: the new stream's
 * numbers go on from the real ones, it opens (its base_seq is bounded), and
 * readers old and new receive from it. */
static void test_peer_seq_replace(void) {
  char name[SHL_NAME_MAX + 1];
  shl_reader *r;
  shl_writer *w = two_frames(name, "hseqr", &r);
  peer_seq_damage(r);
  shl_layout other = t_frame_layout(WORDS * 2);
  T_EXPECT_RC(shl_writer_replace(&w, &other, NULL), 0);
  T_CHECK(shl_writer_next_seq(w) == 3);
  T_CHECK(t_publish(w, WORDS * 2, 3, WAIT_MS) == 3);
  /* The old stream's `latest` stays the peer's (its frames 1 and 2 are
   * lost to its readers): they follow to the new stream's frame 3. */
  uint64_t seq;
  T_EXPECT_RC(receive_seq(r, &seq), 0);
  T_CHECK(seq == 3);
  shl_reader *late = t_reader_open(name, SHL_RECV_LATEST, WAIT_MS);
  T_EXPECT_RC(receive_seq(late, &seq), 0);
  T_CHECK(seq == 3);
  shl_reader_close(late);
  shl_reader_close(r);
  shl_writer_close(w);
}

/* A peer's number within range, in a slot and in `latest`, is delivered as
 * a frame (it may corrupt frames), but deafens no reader: the writer's next
 * frames, numbered below it, still come to `all` and `latest` readers. A
 * peer's `latest` naming a slot past the ring fails no reader. */
static void test_peer_seq_in_range(void) {
  char name[SHL_NAME_MAX + 1];
  shl_reader *r;
  shl_writer *w = two_frames(name, "hseqin", &r);
  shl_reader *lat = t_reader_open(name, SHL_RECV_LATEST, WAIT_MS);
  uint64_t seq;
  for (uint64_t want = 1; want <= 2; want++) {
    T_EXPECT_RC(receive_seq(r, &seq), 0);
    T_CHECK(seq == want);
  }
  struct stream *s = &r->cur->s;
  atomic_store(&s->slot[3].seq, 1000); /* the peer, through r's mapping */
  atomic_store(&s->ctl->latest, latest_pack(1000, 3));
  T_EXPECT_RC(receive_seq(r, &seq), 0);
  T_CHECK(seq == 1000);
  T_EXPECT_RC(receive_seq(lat, &seq), 0);
  T_CHECK(seq == 1000);
  for (uint64_t next = 3; next <= 4; next++) {
    T_CHECK(t_publish(w, WORDS, next, WAIT_MS) == next);
    T_EXPECT_RC(receive_seq(r, &seq), 0);
    T_CHECK(seq == next);
    T_EXPECT_RC(receive_seq(lat, &seq), 0);
    T_CHECK(seq == next);
  }
  /* A `latest` naming a slot past the ring is no frame either, as a number
   * past SEQ_MAX is not: the writer's next publish overwrites it. */
  atomic_store(&s->ctl->latest, latest_pack(5, SHL_STREAM_MAX_SLOTS - 1));
  shl_sample got;
  T_EXPECT_RC(shl_reader_receive(lat, &got, 0, 0), -ETIMEDOUT);
  T_CHECK(t_publish(w, WORDS, 5, WAIT_MS) == 5);
  T_EXPECT_RC(receive_seq(lat, &seq), 0);
  T_CHECK(seq == 5);
  shl_reader_close(lat);
  shl_reader_close(r);
  shl_writer_close(w);
}

/* A peer's `replaced` on a stream still under its name ends no reader:
 * one that does not follow is not told SHL_E_REPLACED, one that follows
 * finds nothing to move to; both go on with the writer's frames. */
static void test_peer_replaced_flag(void) {
  char name[SHL_NAME_MAX + 1];
  shl_reader *r;
  shl_writer *w = two_frames(name, "hrepl", &r);
  shl_reader *stay = t_reader_open_ex(name, SHL_RECV_LATEST, WAIT_MS, 0, SHL_READER_NO_FOLLOW);
  atomic_store(&r->cur->s.ctl->replaced, 1); /* the peer, through r's mapping */
  uint64_t seq;
  for (uint64_t next = 3; next <= 4; next++) {
    T_CHECK(t_publish(w, WORDS, next, WAIT_MS) == next);
    T_EXPECT_RC(receive_seq(stay, &seq), 0);
    T_CHECK(seq == next);
  }
  shl_sample got;
  T_EXPECT_RC(shl_reader_receive(stay, &got, 0, 0), -ETIMEDOUT);
  for (uint64_t want = 1; want <= 4; want++) {
    T_EXPECT_RC(receive_seq(r, &seq), 0);
    T_CHECK(seq == want);
  }
  T_EXPECT_RC(shl_reader_receive(r, &got, 0, 0), -ETIMEDOUT);
  shl_reader_close(stay);
  shl_reader_close(r);
  shl_writer_close(w);
}

/* A peer's number in a reader entry's `lost` is only shown (shmlane top):
 * the reader counts from its own copy and never reads the shared word. */
static void test_peer_lost_count(void) {
  char name[SHL_NAME_MAX + 1];
  t_fresh_name(name, "hlost");
  shl_writer *w = t_writer_open(name, WORDS, SLOTS, 4, 0);
  shl_reader *r = t_reader_open(name, SHL_RECV_ALL, WAIT_MS);
  T_CHECK(t_publish(w, WORDS, 1, WAIT_MS) == 1);
  uint64_t seq;
  T_EXPECT_RC(receive_seq(r, &seq), 0);
  atomic_store(&r->cur->entry->lost, UINT64_MAX); /* the peer, through the reader's mapping */
  shl_stream_reader entry = SHL_STREAM_READER_INIT;
  T_EXPECT_RC(shl_stream_get_reader(shl_writer_segment(w), 0, &entry), 1);
  T_CHECK(entry.lost == UINT64_MAX);
  T_EXPECT_RC(shl_writer_set_next_seq(w, 4), 0);
  T_CHECK(t_publish(w, WORDS, 4, WAIT_MS) == 4);
  T_EXPECT_RC(receive_seq(r, &seq), 0);
  T_EXPECT_RC(shl_stream_get_reader(shl_writer_segment(w), 0, &entry), 1);
  T_CHECK(seq == 4 && entry.lost == 2); /* its own count, frames 2 and 3 */
  shl_reader_close(r);
  shl_writer_close(w);
}

/* The high-water mark is a peer's to lower: readers_alive comes from every
 * entry's role lock, so a stream whose writer is gone and whose readers
 * live never looks abandoned (shmlane gc). */
static void test_peer_lowers_reader_mark(void) {
  char name[SHL_NAME_MAX + 1];
  t_fresh_name(name, "hhwm");
  shl_writer *w = t_writer_open(name, WORDS, SLOTS, 4, 0);
  shl_reader *r[2];
  for (int i = 0; i < 2; i++) r[i] = t_reader_open(name, SHL_RECV_LATEST, WAIT_MS);
  shl_writer_close(w);
  shl_segment *seg = shl_reader_segment(r[0]);
  T_CHECK(t_stream_info(seg).readers_alive == 2);
  atomic_store(&r[0]->cur->s.ctl->reader_hwm, 0); /* the peer, through a reader's mapping */
  shl_stream_info info = t_stream_info(seg);
  T_CHECK(info.readers_alive == 2 && info.writer_alive == 0);
  /* ... nor from the per-reader rows (shmlane top, info). */
  for (uint32_t i = 0; i < 2; i++) {
    shl_stream_reader e = SHL_STREAM_READER_INIT;
    T_EXPECT_RC(shl_stream_get_reader(seg, i, &e), 1);
    T_CHECK(e.alive == 1);
  }
  for (int i = 0; i < 2; i++) shl_reader_close(r[i]);
}

/* Numbers used up: publishing stops with -EOVERFLOW; a replacement, or a
 * writer taking over, starts a stream numbered afresh that readers follow. */
static void test_numbers_used_up(void) {
  char name[SHL_NAME_MAX + 1];
  t_fresh_name(name, "hmax");
  shl_writer *w = t_writer_open(name, WORDS, SLOTS, 4, 0);
  shl_reader *r = t_reader_open(name, SHL_RECV_ALL, WAIT_MS);
  T_EXPECT_RC(shl_writer_set_next_seq(w, SHL__SEQ_MAX + 1), -EINVAL);
  T_EXPECT_RC(shl_writer_set_next_seq(w, SHL__SEQ_MAX), 0);
  T_CHECK(t_publish(w, WORDS, 1, WAIT_MS) == SHL__SEQ_MAX);
  void *frame;
  T_CHECK(shl_writer_loan(w, &frame, 0) >= 0);
  T_EXPECT_RC(shl_writer_publish(w, NULL), -EOVERFLOW);
  T_EXPECT_RC(shl_writer_discard(w), 0);
  uint64_t seq;
  T_EXPECT_RC(receive_seq(r, &seq), 0);
  T_CHECK(seq == SHL__SEQ_MAX);
  /* A replacement numbers afresh. */
  shl_layout other = t_frame_layout(WORDS * 2);
  T_EXPECT_RC(shl_writer_replace(&w, &other, NULL), 0);
  T_CHECK(shl_writer_next_seq(w) == 1);
  T_CHECK(t_publish(w, WORDS * 2, 7, WAIT_MS) == 1);
  shl_sample s;
  T_EXPECT_RC(shl_reader_receive(r, &s, WAIT_MS * T_MS, 0), 0);
  T_CHECK(s.seq == 1 && (s.flags & SHL_SAMPLE_NEW_STREAM));
  T_EXPECT_RC(shl_reader_release(r, &s), 0);
  /* A writer taking over a stream whose numbers are used up replaces it too. */
  T_EXPECT_RC(shl_writer_set_next_seq(w, SHL__SEQ_MAX), 0);
  T_CHECK(t_publish(w, WORDS * 2, 8, WAIT_MS) == SHL__SEQ_MAX);
  T_EXPECT_RC(receive_seq(r, &seq), 0);
  shl_writer_close(w);
  shl_stream_opts o = SHL_STREAM_OPTS_INIT;
  o.slots = SLOTS;
  w = NULL;
  T_EXPECT_RC(shl_writer_open(&w, name, &other, &o), 0);
  T_REQUIRE(w);
  T_CHECK(shl_writer_next_seq(w) == 1);
  T_CHECK(t_publish(w, WORDS * 2, 9, WAIT_MS) == 1);
  T_EXPECT_RC(shl_reader_receive(r, &s, WAIT_MS * T_MS, 0), 0);
  T_CHECK(s.seq == 1 && (s.flags & SHL_SAMPLE_NEW_STREAM));
  T_EXPECT_RC(shl_reader_release(r, &s), 0);
  shl_reader_close(r);
  shl_writer_close(w);
}

/* ---------------------------------------------------------------- a joiner and a kept frame */

/* The writer (this thread) and a joining `all` reader (another thread) meet
 * at the writer's second look: the writer has marked the slot of frame 1, the
 * reader registers wanting frame 1 and receives while the mark is there, and
 * the writer puts frame 1 back. Steps are handed over with a futex word. */
static shl_reader *joiner;
static struct stream *joined;
static _Atomic uint32_t step; /* 1 go, 2 the joiner saw the mark, 3 the writer decided */
static int joiner_rc = 1;
static uint64_t joiner_seq, joiner_lost;

static void await_step(uint32_t want) {
  long long until = t_now_ns() + 2000 * T_MS; /* bounded: a step that never comes is a failure */
  for (uint32_t v; (v = atomic_load(&step)) < want && t_now_ns() < until;)
    shl__futex_wait(&step, v, 10 * T_MS);
}

static void set_step(uint32_t v) {
  atomic_store(&step, v);
  shl__futex_wake_all(&step);
}

static void meet_at_claim(const char *point) {
  if (strcmp(point, "claim_slot") == 0 && atomic_load(&step) == 0) {
    /* The joiner's registration lands between the writer's two looks. */
    joiner->next_seq = 1;
    atomic_store(&joiner->cur->entry->next_seq, 1);
    set_step(1);
    await_step(2);
  } else if (strcmp(point, "take_next_reclaim") == 0 && atomic_load(&step) == 1) {
    set_step(2);
    await_step(3);
  } else if (strcmp(point, "claim_slot_decided") == 0 && atomic_load(&step) == 2) {
    set_step(3);
  }
}

/* The joiner's first sample: its number and lost count kept, released. */
static void joiner_receives(void) {
  shl_sample s;
  joiner_rc = shl_reader_receive(joiner, &s, WAIT_MS * T_MS, 0);
  if (joiner_rc == 0) {
    joiner_seq = s.seq;
    joiner_lost = s.lost;
    shl_reader_release(joiner, &s);
  }
}

static void *joiner_main(void *arg) {
  (void)arg;
  await_step(1);
  joiner_receives();
  set_step(4); /* received */
  return NULL;
}

/* A blocking stream of `slots` slots under a fresh name, frames 1 and 2 out. */
static shl_writer *block_writer_of_two(char name[SHL_NAME_MAX + 1], const char *tag,
                                       uint32_t slots) {
  t_fresh_name(name, tag);
  shl_writer *w = t_writer_open(name, WORDS, slots, 4, SHL_STREAM_BLOCK);
  for (uint64_t i = 1; i <= 2; i++) T_CHECK(t_publish(w, WORDS, i, WAIT_MS) == i);
  return w;
}

/* Two slots of a blocking stream: frame 1 (slot 0) and 2 (slot 1, the newest).
 * The writer may reuse slot 0 until the joiner wants frame 1; the joiner
 * must then get frame 1, nothing lost (never frame 2 with lost=1). */
static void test_joiner_never_skips_a_kept_frame(void) {
  char name[SHL_NAME_MAX + 1];
  shl_writer *w = block_writer_of_two(name, "hjoin", 2);
  joiner = t_reader_open(name, SHL_RECV_ALL, WAIT_MS);
  joiner->next_seq = 3; /* registered, wanting only what comes next, for now */
  atomic_store(&joiner->cur->entry->next_seq, 3);
  joined = &w->s;
  pthread_t t;
  T_REQUIRE(pthread_create(&t, NULL, joiner_main, NULL) == 0);
  test_hook = meet_at_claim;
  void *frame;
  int slot = shl_writer_loan(w, &frame, 0); /* frame 1 is wanted after all: no slot */
  pthread_join(t, NULL);
  test_hook = NULL;
  T_EXPECT_RC(slot, -ETIMEDOUT);
  T_EXPECT_RC(joiner_rc, 0);
  T_CHECK(joiner_seq == 1 && joiner_lost == 0);
  shl_reader_close(joiner);
  joiner = NULL;
  shl_writer_close(w);
}

/* The writer's loan while the joiner (thread t) races it under test_hook:
 * the loan finds a slot, and the joiner's first sample is frame `want` (0:
 * any), none lost. Closes both. */
static void loan_while_joining(shl_writer *w, pthread_t t, uint64_t want) {
  void *frame;
  int slot = shl_writer_loan(w, &frame, WAIT_MS * T_MS);
  pthread_join(t, NULL);
  test_hook = NULL;
  T_CHECK(slot >= 0 && shl_writer_discard(w) == 0);
  T_EXPECT_RC(joiner_rc, 0);
  bool ok = (!want || joiner_seq == want) && joiner_lost == 0;
  if (!ok)
    fprintf(stderr, "joiner: frame %llu, %llu lost\n", (unsigned long long)joiner_seq,
            (unsigned long long)joiner_lost);
  T_CHECK(ok);
  shl_reader_close(joiner);
  joiner = NULL;
  shl_writer_close(w);
}

/* A joiner reads the head (frame 2, in slot 1); frame 3 is published and
 * the writer's next loan scans the readers before the joiner stores that it
 * wants frame 2, then marks slot 1 after the joiner found frame 2 there, and
 * is held (preempted) while the joiner receives. The joiner must lose
 * nothing: never frame 3 with lost=1 while frame 2 waits under the mark. */
static void race_at_head(const char *point) {
  uint32_t at = atomic_load(&step);
  if (strcmp(point, "start_at_head") == 0 && at == 0) {
    set_step(1); /* the joiner has read the head */
    await_step(3);
  } else if (strcmp(point, "claim_slot_scanned") == 0 && at == 2) {
    set_step(3); /* the writer has scanned: the joiner goes on */
    await_step(4);
  } else if (strcmp(point, "claim_slot") == 0 && at == 4) {
    set_step(5); /* slot 1 is marked: the joiner receives meanwhile */
    await_step(6);
  }
}

static void *racer_main(void *arg) {
  joiner = t_reader_open(arg, SHL_RECV_ALL, WAIT_MS);
  set_step(4);
  await_step(5);
  joiner_receives();
  set_step(6);
  return NULL;
}

static void test_joiner_races_a_claim(void) {
  char name[SHL_NAME_MAX + 1];
  shl_writer *w = block_writer_of_two(name, "hrace", 3);
  atomic_store(&step, 0);
  joiner_rc = 1;
  test_hook = race_at_head;
  pthread_t t;
  T_REQUIRE(pthread_create(&t, NULL, racer_main, name) == 0);
  await_step(1);
  T_CHECK(t_publish(w, WORDS, 3, WAIT_MS) == 3);
  set_step(2);
  loan_while_joining(w, t, 0);
}

/* A follower of a blocking writer's replaced stream registers on the new
 * one (wanting frame 2) just after the writer's next loan scanned the new
 * stream's readers, and marks its old entry followed before the writer
 * looks at the old stream's: the writer must still keep frame 2 for it,
 * never mark that slot while the follower takes its frame. */
static void race_at_follow(const char *point) {
  uint32_t at = atomic_load(&step);
  if (strcmp(point, "claim_slot_scanned") == 0 && at == 0) {
    set_step(1); /* the follower follows now */
    await_step(2);
  } else if (strcmp(point, "pin") == 0 && at == 1) {
    set_step(2); /* followed, and about to pin: the writer goes on */
    await_step(3);
  } else if (strcmp(point, "claim_slot") == 0 && at == 2) {
    set_step(3);
    await_step(4);
  }
}

static void test_follower_races_a_claim(void) {
  char name[SHL_NAME_MAX + 1];
  t_fresh_name(name, "hfoll");
  shl_writer *w = t_writer_open(name, WORDS, 3, 4, SHL_STREAM_BLOCK);
  joiner = t_reader_open(name, SHL_RECV_ALL, WAIT_MS);
  T_CHECK(t_publish(w, WORDS, 1, WAIT_MS) == 1);
  joiner_receives();
  T_CHECK(joiner_rc == 0 && joiner_seq == 1);
  shl_layout wider = t_frame_layout(WORDS + 1);
  T_EXPECT_RC(shl_writer_replace(&w, &wider, NULL), 0);
  for (uint64_t i = 2; i <= 3; i++) T_CHECK(t_publish(w, WORDS + 1, i, WAIT_MS) == i);
  atomic_store(&step, 0);
  joiner_rc = 1;
  pthread_t t;
  T_REQUIRE(pthread_create(&t, NULL, joiner_main, NULL) == 0);
  test_hook = race_at_follow;
  loan_while_joining(w, t, 2);
}

/* ---------------------------------------------------------------- close order */

static shl_writer *closing;
static int words_left = -1;

/* Just before the role goes: no liveness word may still hold the keeper's id. */
static void check_at_role_drop(const char *point) {
  if (strcmp(point, "writer_role_drop") != 0 || !closing) return;
  struct stream *s = &closing->s;
  words_left = 0;
  for (uint32_t i = 0; i < s->max_readers; i++)
    words_left += atomic_load(&s->reader[i].alive) != 0;
  words_left += closing->keeper != NULL;
}

static void test_close_order(void) {
  char name[SHL_NAME_MAX + 1];
  t_fresh_name(name, "hclose");
  closing = t_writer_open(name, WORDS, SLOTS, 4, 0);
  T_CHECK(alive_says_live(atomic_load(&closing->s.reader[3].alive)));
  test_hook = check_at_role_drop;
  shl_writer_close(closing);
  test_hook = NULL;
  T_CHECK(words_left == 0);
  closing = NULL;
}

/* ---------------------------------------------------------------- fork while a role opens */

static pthread_mutex_t fork_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t fork_cond = PTHREAD_COND_INITIALIZER;
static int fork_asked, fork_done;
static pid_t forked_child;

/* Forks when asked; the child sleeps until killed, holding whatever it inherited. */
static void *forker(void *arg) {
  (void)arg;
  pthread_mutex_lock(&fork_lock);
  while (!fork_asked) pthread_cond_wait(&fork_cond, &fork_lock);
  pthread_mutex_unlock(&fork_lock);
  pid_t pid = fork();
  if (pid == 0) {
    for (;;) pause();
  }
  pthread_mutex_lock(&fork_lock);
  forked_child = pid;
  fork_done = 1;
  pthread_cond_broadcast(&fork_cond);
  pthread_mutex_unlock(&fork_lock);
  return NULL;
}

/* Right after shm_open of a role descriptor: another thread forks now. The
 * fork must wait until the descriptor is registered (so the child closes
 * it); give it 100 ms to strike if it could. */
static int role_opens;

static void fork_at_role_open(const char *point) {
  /* The second descriptor a writer's creation opens is the writer role's. */
  if (strcmp(point, "role_fd_opened") != 0 || ++role_opens != 2) return;
  pthread_mutex_lock(&fork_lock);
  fork_asked = 1;
  pthread_cond_broadcast(&fork_cond);
  pthread_mutex_unlock(&fork_lock);
  t_sleep_ms(100);
}

static void test_fork_while_role_opens(void) {
  char name[SHL_NAME_MAX + 1];
  t_fresh_name(name, "hfork");
  pthread_t t;
  T_REQUIRE(pthread_create(&t, NULL, forker, NULL) == 0);
  test_hook = fork_at_role_open;
  shl_writer *w = t_writer_open(name, WORDS, SLOTS, 4, 0);
  test_hook = NULL;
  pthread_join(t, NULL);
  T_REQUIRE(fork_done && forked_child > 0);
  /* Once the child runs (its fork handler closes the role descriptors it
   * inherited, then it sleeps): until then it holds them, as any process
   * forked a moment ago does. */
  T_CHECK(t_wait_sleeping(forked_child, WAIT_MS));
  shl_segment *look = t_open(name, SHL_OPEN_READONLY);
  T_CHECK(t_stream_info(look).writer_alive == 1);
  shl_writer_close(w);
  /* The child lives on: the role must be free all the same. */
  T_CHECK(t_stream_info(look).writer_alive == 0);
  shl_writer *again = NULL;
  shl_layout l = t_frame_layout(WORDS);
  shl_stream_opts o = SHL_STREAM_OPTS_INIT;
  o.slots = SLOTS;
  T_EXPECT_RC(shl_writer_open(&again, name, &l, &o), 0);
  shl_writer_close(again);
  shl_close(look);
  kill(forked_child, SIGKILL);
  t_child_reap(forked_child);
}

/* ---------------------------------------------------------------- fork in the middle of a close */

/* A child forked while another thread of its parent is inside a close has
 * the handle half-closed: each part freed must already be gone from it, or
 * the child's own close frees it again. Here the closing thread itself forks
 * at the points between two parts (the child's state is the same), and the
 * child calls what it may on the handle, then closes it: it must exit 0. */
static shl_writer *half_writer;
static shl_reader *half_reader;
static const char *fork_point;
static int half_forks;

static void child_uses_half_closed(void) {
  alarm(2); /* a hang is a failure too */
  test_hook = NULL; /* its own close passes the same points */
  void *frame;
  shl_sample s;
  shl_layout l = t_frame_layout(WORDS + 1);
  int bad = 0;
  if (half_writer) {
    bad |= shl_writer_loan(half_writer, &frame, 0) != SHL_E_FORKED;
    bad |= shl_writer_publish(half_writer, NULL) != SHL_E_FORKED;
    bad |= shl_writer_replace(&half_writer, &l, NULL) != SHL_E_FORKED;
    shl_writer_close(half_writer);
  }
  if (half_reader) {
    bad |= shl_reader_receive(half_reader, &s, 0, 0) != SHL_E_FORKED;
    char format[64];
    int64_t meta = shl_reader_get_meta(half_reader, format, sizeof format);
    bad |= meta < 0 && meta != SHL_E_FORKED; /* the private copy, while there is one */
    shl_reader_set_spin(half_reader, SHL_SPIN_AUTO);
    (void)shl_reader_segment(half_reader); /* the segment, or NULL once it is gone */
    shl_reader_close(half_reader);
  }
  _exit(bad ? 3 : 0);
}

static void fork_at_point(const char *point) {
  if (!fork_point || strcmp(point, fork_point) != 0) return;
  fflush(NULL);
  pid_t pid = fork();
  if (pid == 0) child_uses_half_closed();
  T_REQUIRE(pid > 0);
  int status = t_child_reap(pid);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    fprintf(stderr, "forked at %s: child status %#x\n", point, status);
  T_EXPECT_EXIT(status, 0);
  half_forks++;
}

static void test_fork_in_close(void) {
  char name[SHL_NAME_MAX + 1];
  t_fresh_name(name, "hhalf");
  static const char *const points[] = {"keeper_stopped", "writer_stream_closed",
                                       "reader_rings_closed", "writer_replaced"};
  test_hook = fork_at_point;
  for (size_t i = 0; i < sizeof points / sizeof points[0]; i++) {
    half_writer = t_writer_open(name, WORDS, SLOTS, 4, 0);
    half_reader = t_reader_open(name, SHL_RECV_ALL, WAIT_MS);
    bool writer_first = i < 2; /* the other handle the child gets whole */
    shl_layout wider = t_frame_layout(WORDS + 1);
    fork_point = points[i];
    if (writer_first)
      shl_writer_close(half_writer);
    else if (i == 2)
      shl_reader_close(half_reader);
    else /* the child gets the old writer or the new one */
      T_EXPECT_RC(shl_writer_replace(&half_writer, &wider, NULL), 0);
    fork_point = NULL;
    if (writer_first) {
      shl_reader_close(half_reader);
    } else {
      shl_writer_close(half_writer);
      if (i == 3) shl_reader_close(half_reader);
    }
    half_writer = NULL;
    half_reader = NULL;
  }
  test_hook = NULL;
  T_CHECK(half_forks == 4);
}

/* ---------------------------------------------------------------- a run faster than its reader */

/* A reader waits for a name; the stream is made, written and closed before
 * the reader has joined it (the reader is stopped meanwhile): that run is
 * the one it waited for, so it reads it (the newest frame, then the close),
 * where a stream older than the reader's wait would be an earlier run's. */
static void test_reader_waiting_for_the_name_reads_a_quick_run(void) {
  char name[SHL_NAME_MAX + 1];
  t_fresh_name(name, "hquick");
  fflush(NULL);
  pid_t pid = fork();
  if (pid == 0) {
    alarm(CHILD_LIMIT_S);
    shl_reader *r = NULL;
    if (shl_reader_open(&r, name, SHL_RECV_LATEST, WAIT_MS * T_MS) < 0) _exit(100);
    shl_sample s;
    int rc = shl_reader_receive(r, &s, WAIT_MS * T_MS, 0);
    int seq = rc == 0 ? (int)s.seq : 101;
    if (rc == 0) shl_reader_release(r, &s);
    rc = shl_reader_receive(r, &s, WAIT_MS * T_MS, 0);
    _exit(rc == SHL_E_WRITER_CLOSED ? seq : 102);
  }
  T_REQUIRE(pid > 0);
  T_CHECK(t_wait_sleeping(pid, WAIT_MS)); /* polling for the name */
  T_CHECK(kill(pid, SIGSTOP) == 0);
  shl_writer *w = t_writer_open(name, WORDS, SLOTS, 4, 0);
  for (uint64_t i = 1; i <= 3; i++) T_CHECK(t_publish(w, WORDS, i, WAIT_MS) == i);
  shl_writer_close(w);
  T_CHECK(kill(pid, SIGCONT) == 0);
  T_EXPECT_EXIT(t_child_reap(pid), 3);
}

/* ---------------------------------------------------------------- a name that moves as a reader joins */

/* The writer whose stream the hook replaces, the frame words it writes,
 * and whether the hook still has its replacement to make. */
static shl_writer *mover;
static uint64_t mover_words;
static int move_armed;

/* Before a role descriptor is opened (the first time after being armed): a
 * stream of other frames replaces the one under the name, so the object a
 * reader opened is no longer the name's when it opens its role. */
static void replace_before_role_open(const char *point) {
  if (strcmp(point, "role_fd_opening") != 0 || !move_armed) return;
  move_armed = 0;
  shl_layout l = t_frame_layout(++mover_words);
  T_EXPECT_RC(shl_writer_replace(&mover, &l, NULL), 0);
}

/* The reader's next frame comes from the stream the name holds now, tagged
 * `tag`. */
static void expect_new_stream_frame(shl_reader *r, uint64_t tag) {
  T_CHECK(t_publish(mover, mover_words, tag, WAIT_MS) > 0);
  shl_sample s;
  T_EXPECT_RC(shl_reader_receive(r, &s, WAIT_MS * T_MS, 0), 0);
  T_CHECK(t_frame_bad_words(s.data, mover_words, tag) == 0);
  shl_reader_release(r, &s);
}

/* A stream replaced under its name while a reader opens it, and again while
 * a reader follows it to its replacement (between the open of the object
 * and of the reader's role in it, where the role's descriptor names another
 * object): the reader joins the stream the name holds then, where it had
 * -ESTALE. */
static void test_reader_joins_a_name_that_moves(void) {
  char name[SHL_NAME_MAX + 1];
  t_fresh_name(name, "hmove");
  mover_words = WORDS;
  mover = t_writer_open(name, mover_words, SLOTS, 4, 0);
  move_armed = 1;
  test_hook = replace_before_role_open;
  shl_reader *r = NULL;
  int rc = shl_reader_open(&r, name, SHL_RECV_ALL, WAIT_MS * T_MS);
  test_hook = NULL;
  T_EXPECT_RC(rc, 0);
  T_REQUIRE(r != NULL);
  T_CHECK(!move_armed);
  expect_new_stream_frame(r, 1);

  shl_layout l = t_frame_layout(++mover_words);
  T_EXPECT_RC(shl_writer_replace(&mover, &l, NULL), 0);
  move_armed = 1;
  test_hook = replace_before_role_open;
  shl_sample s;
  rc = shl_reader_receive(r, &s, 20 * T_MS, 0); /* follows: nothing published yet */
  test_hook = NULL;
  T_EXPECT_RC(rc, -ETIMEDOUT);
  T_CHECK(!move_armed);
  expect_new_stream_frame(r, 2);
  shl_reader_close(r);
  shl_writer_close(mover);
}

/* ---------------------------------------------------------------- dup */

/* The name removed and another object made under it: shl_dup still maps the
 * object the handle holds (the Python writer's second mapping rests on it). */
static void test_dup_follows_the_object(void) {
  char name[SHL_NAME_MAX + 1];
  t_fresh_name(name, "hdup");
  shl_writer *w = t_writer_open(name, WORDS, SLOTS, 4, 0);
  T_CHECK(t_publish(w, WORDS, 5, WAIT_MS) == 1);
  T_EXPECT_RC(shl_unlink(name), 0);
  shl_layout other = {.format = "<d", .ndim = 1, .shape = {3}};
  shl_segment *impostor = NULL;
  T_EXPECT_RC(shl_create(&impostor, name, &other, NULL), 0);
  shl_segment *dup = NULL;
  T_EXPECT_RC(shl_dup(&dup, shl_writer_segment(w)), 0);
  T_REQUIRE(dup);
  T_CHECK(shl_kind(dup) == SHL_KIND_STREAM && dup->hdr != shl_writer_segment(w)->hdr);
  shl_stream_info info = t_stream_info(dup);
  T_CHECK(info.last_seq == 1);
  T_EXPECT_RC(shl_dup(NULL, dup), -EINVAL);
  shl_close(dup);
  shl_close(impostor);
  shl_writer_close(w);
}

int main(void) {
  test_meta_switched_after_join();
  test_failed_replace_keeps_name();
  test_replace_beside_planted_names();
  test_stale_staged_object_swept();
  test_block_across_replace();
  test_peer_seq_takeover();
  test_peer_seq_replace();
  test_peer_seq_in_range();
  test_peer_replaced_flag();
  test_peer_lost_count();
  test_peer_lowers_reader_mark();
  test_numbers_used_up();
  test_joiner_never_skips_a_kept_frame();
  test_joiner_races_a_claim();
  test_follower_races_a_claim();
  test_close_order();
  test_takeover_as_reader_looks();
  test_fork_while_role_opens();
  test_fork_in_close();
  test_dup_follows_the_object();
  test_reader_joins_a_name_that_moves();
  test_reader_waiting_for_the_name_reads_a_quick_run();
  return t_result();
}
