/* A name whose stream a peer with write access damaged, so that openers
 * refuse it: a writer with SHL_STREAM_REPLACE takes the name back while no
 * writer holds the stream, and refuses (-EBUSY) while one does; one without
 * it gets the validation error. One row per field the validators check, in
 * the header (segment.c) and in the stream's control block (stream_setup.c),
 * and an object cut short. Readers of the damaged stream follow the name to
 * the new one. Another user's damaged object is never taken; a plain
 * segment's name is taken back by SHL_CREATE_REPLACE. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include "shm_layout.h"
#include "testutil_stream.h"

#define WORDS 8
#define SLOTS 4
#define WAIT_MS 5000
#define HDR(field) offsetof(struct shl__header, field)
#define CTL(field) offsetof(struct shl__stream_ctl, field)

enum where { IN_HEADER, IN_CTL, CUT_TO };

struct damage {
  const char *what;
  enum where where;
  uint64_t offset; /* in the header or the control block; CUT_TO: the new size */
  uint64_t value;
  unsigned width; /* bytes of value written */
  int want;       /* what a writer without REPLACE gets */
};

static const struct damage rows[] = {
    {"magic", IN_HEADER, HDR(magic), 0x58, 1, SHL_E_NOT_SHMLANE},
    {"format_version", IN_HEADER, HDR(format_version), 99, 4, SHL_E_VERSION},
    {"header_size", IN_HEADER, HDR(header_size), 0, 4, SHL_E_BAD_HEADER},
    {"state", IN_HEADER, HDR(state), 0, 4, SHL_E_CREATOR_DEAD},
    {"kind unknown", IN_HEADER, HDR(kind), 9, 4, SHL_E_BAD_KIND},
    {"kind array, area kept", IN_HEADER, HDR(kind), SHL_KIND_ARRAY, 4, SHL_E_BAD_KIND},
    {"total_size", IN_HEADER, HDR(total_size), (uint64_t)1 << 40, 8, SHL_E_TRUNCATED},
    {"payload_offset", IN_HEADER, HDR(payload_offset), 1, 8, SHL_E_BAD_HEADER},
    {"payload_size", IN_HEADER, HDR(payload_size), (uint64_t)1 << 40, 8, SHL_E_BAD_HEADER},
    {"format_len", IN_HEADER, HDR(format_len), 0, 4, SHL_E_BAD_HEADER},
    {"format text", IN_HEADER, SHL__HEADER_SIZE, '#', 1, SHL_E_BAD_FORMAT},
    {"itemsize", IN_HEADER, HDR(itemsize), 3, 8, SHL_E_ITEMSIZE},
    {"ndim", IN_HEADER, HDR(ndim), 9, 4, SHL_E_BAD_SHAPE},
    {"shape", IN_HEADER, HDR(shape), (uint64_t)1 << 40, 8, SHL_E_BAD_SHAPE},
    {"strides", IN_HEADER, HDR(strides), (uint64_t)-8, 8, SHL_E_BAD_STRIDES},
    {"ext_offset", IN_HEADER, HDR(ext_offset), 3, 8, SHL_E_BAD_HEADER},
    {"ext_size", IN_HEADER, HDR(ext_size), 0, 8, SHL_E_BAD_KIND},
    {"slots", IN_CTL, CTL(slots), 1, 4, SHL_E_BAD_HEADER},
    {"slots beyond", IN_CTL, CTL(slots), 4096, 4, SHL_E_BAD_HEADER},
    {"max_readers", IN_CTL, CTL(max_readers), 0, 4, SHL_E_BAD_HEADER},
    {"slot_stride", IN_CTL, CTL(slot_stride), 65, 8, SHL_E_BAD_HEADER},
    {"frame_size", IN_CTL, CTL(frame_size), 0, 8, SHL_E_BAD_HEADER},
    {"meta_format_len", IN_CTL, CTL(meta_format_len), 5000, 4, SHL_E_BAD_HEADER},
    {"meta_size", IN_CTL, CTL(meta_size), 8, 8, SHL_E_BAD_HEADER},
    {"base_seq", IN_CTL, CTL(base_seq), SHL__SEQ_MAX, 8, SHL_E_BAD_HEADER},
    {"cut below total_size", CUT_TO, 4096 + 64, 0, 0, SHL_E_TRUNCATED},
    {"cut inside the header", CUT_TO, 100, 0, 0, SHL_E_TRUNCATED},
    {"cut to nothing", CUT_TO, 0, 0, 0, SHL_E_CREATOR_DEAD}, /* after 1 s: docs/format.md */
};

static char path_buf[T_PATH_MAX];

static uint64_t read_u64(int fd, uint64_t at) {
  uint64_t v = 0;
  T_CHECK(pread(fd, &v, sizeof v, (off_t)at) == (ssize_t)sizeof v);
  return v;
}

/* What a peer with write access does, through a descriptor of its own. */
static void scribble(const char *name, const struct damage *d) {
  int fd = open(t_shm_path(name, path_buf), O_RDWR | O_CLOEXEC);
  T_REQUIRE(fd >= 0);
  if (d->where == CUT_TO) {
    T_CHECK(ftruncate(fd, (off_t)d->offset) == 0);
  } else {
    uint64_t at = d->offset + (d->where == IN_CTL ? read_u64(fd, HDR(ext_offset)) : 0);
    T_CHECK(pwrite(fd, &d->value, d->width, (off_t)at) == (ssize_t)d->width);
  }
  close(fd);
}

static ino_t inode_of(const char *name) {
  struct stat st;
  return stat(t_shm_path(name, path_buf), &st) == 0 ? st.st_ino : 0;
}

static int open_writer(shl_writer **w, const char *name, uint64_t words, uint32_t flags) {
  shl_layout l = t_frame_layout(words);
  shl_stream_opts o = SHL_STREAM_OPTS_INIT;
  o.slots = SLOTS;
  o.max_readers = 4;
  o.flags = flags;
  *w = NULL;
  return shl_writer_open(w, name, &l, &o);
}

/* A writer's open that must fail with `want` (a writer it opened after all
 * is closed, so that nothing outlives the test). */
static void expect_refused(const char *name, uint32_t flags, int want) {
  shl_writer *w;
  T_EXPECT_RC(open_writer(&w, name, WORDS, flags), want);
  shl_writer_close(w);
}

/* A descriptor holding the role `byte`, as its live holder's would. */
static int hold_role(const char *name, uint64_t byte) {
  int fd = open(t_shm_path(name, path_buf), O_RDWR | O_CLOEXEC);
  T_REQUIRE(fd >= 0);
  struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = (off_t)byte, .l_len = 1};
  T_CHECK(fcntl(fd, F_OFD_SETLK, &fl) == 0);
  return fd;
}

/* A stream whose live writer took it over (it holds the writer role, not
 * the creator's: no opener waits for a creator), a frame and a reader. */
static shl_writer *stream_with_reader(const char *name, shl_reader **r) {
  shl_writer_close(t_writer_open(name, WORDS, SLOTS, 4, 0));
  shl_writer *w = t_writer_open(name, WORDS, SLOTS, 4, 0);
  T_CHECK(t_publish(w, WORDS, 1, WAIT_MS) == 1);
  *r = t_reader_open(name, SHL_RECV_ALL, WAIT_MS);
  shl_sample s;
  T_EXPECT_RC(shl_reader_receive(*r, &s, WAIT_MS * T_MS, 0), 0);
  shl_reader_release(*r, &s);
  return w;
}

/* The damaged stream's reader gets frame 2, then follows the name to the
 * new stream's frame 7: never an error, a crash or a hang. */
static void expect_follow(shl_reader *r) {
  shl_sample s;
  int rc, moved = 0;
  for (int i = 0; i < 3 && !moved && (rc = shl_reader_receive(r, &s, WAIT_MS * T_MS, 0)) == 0;
       i++) {
    moved = (s.flags & SHL_SAMPLE_NEW_STREAM) != 0;
    T_CHECK(moved ? t_frame_bad_words(s.data, WORDS * 2, 7) == 0 : s.seq == 2);
    shl_reader_release(r, &s);
  }
  T_EXPECT_RC(rc, 0);
  T_CHECK(moved);
}

static void test_row(const struct damage *d) {
  char name[SHL_NAME_MAX + 1];
  t_fresh_name(name, "tb");
  fprintf(stderr, "-- %s\n", d->what);
  shl_reader *r;
  shl_writer *w = stream_with_reader(name, &r), *again;
  bool cut = d->where == CUT_TO;
  if (cut) { /* a live handle would touch the lost pages (SIGBUS: reliability.md) */
    shl_reader_close(r);
    shl_writer_close(w);
  }
  scribble(name, d);
  ino_t before = inode_of(name);
  /* Without REPLACE: what is wrong with the object, writer or not. */
  expect_refused(name, 0, d->want);
  /* With it, while the writer lives (a cut object's: a peer holding its
   * role): refused, and the object stays. */
  int role = cut ? hold_role(name, SHL__ROLE_WRITER) : -1;
  expect_refused(name, SHL_STREAM_REPLACE, -EBUSY);
  T_CHECK(inode_of(name) == before);
  if (cut) {
    close(role);
  } else {
    T_CHECK(t_publish(w, WORDS, 2, WAIT_MS) == 2); /* it goes on, from its snapshot */
    shl_writer_close(w);
    expect_refused(name, 0, d->want);
  }
  /* No writer: the name is taken back, with a stream of other frames. */
  T_EXPECT_RC(open_writer(&again, name, WORDS * 2, SHL_STREAM_REPLACE), 0);
  T_CHECK(inode_of(name) != before);
  if (again) {
    T_CHECK(t_publish(again, WORDS * 2, 7, WAIT_MS) > 0);
    if (!cut) expect_follow(r);
    shl_reader *late = t_reader_open(name, SHL_RECV_LATEST, WAIT_MS);
    shl_sample s;
    T_EXPECT_RC(shl_reader_receive(late, &s, WAIT_MS * T_MS, 0), 0);
    T_CHECK(t_frame_bad_words(s.data, WORDS * 2, 7) == 0);
    shl_reader_release(late, &s);
    shl_reader_close(late);
  }
  if (!cut) shl_reader_close(r);
  shl_writer_close(again);
  shl_unlink(name);
}

/* A damaged stream with no writer, and the role of its creator held (a
 * creator at work is alive): refused until that role goes. */
static void test_creator_role_blocks(void) {
  char name[SHL_NAME_MAX + 1];
  t_fresh_name(name, "tbc");
  shl_writer_close(t_writer_open(name, WORDS, SLOTS, 4, 0));
  scribble(name, &rows[0]);
  int role = hold_role(name, SHL__ROLE_CREATOR);
  expect_refused(name, SHL_STREAM_REPLACE, -EBUSY);
  close(role);
  shl_writer *w;
  T_EXPECT_RC(open_writer(&w, name, WORDS, SHL_STREAM_REPLACE), 0);
  shl_writer_close(w);
}

/* Another user's damaged object is never taken, nor removed. */
static void test_foreign_owner_kept(void) {
  if (geteuid() != 0) {
    fprintf(stderr, "skip: another user's object needs root to make\n");
    return;
  }
  char name[SHL_NAME_MAX + 1];
  t_fresh_name(name, "tbf");
  shl_writer_close(t_writer_open(name, WORDS, SLOTS, 4, 0));
  scribble(name, &rows[0]);
  T_REQUIRE(chown(t_shm_path(name, path_buf), 65534, 65534) == 0);
  ino_t before = inode_of(name);
  expect_refused(name, SHL_STREAM_REPLACE, SHL_E_FOREIGN_OWNER);
  T_CHECK(inode_of(name) == before);
}

/* A directory at the name is no segment: refused, and left alone. */
static void test_directory_kept(void) {
  char name[SHL_NAME_MAX + 1];
  t_fresh_name(name, "tbd");
  T_REQUIRE(mkdir(t_shm_path(name, path_buf), 0700) == 0);
  expect_refused(name, SHL_STREAM_REPLACE, SHL_E_NOT_SHMLANE);
  T_CHECK(rmdir(t_shm_path(name, path_buf)) == 0);
}

/* A plain segment damaged the same way: SHL_CREATE_REPLACE takes any name. */
static void test_plain_segment(void) {
  char name[SHL_NAME_MAX + 1];
  t_fresh_name(name, "tbs");
  shl_layout l = t_frame_layout(WORDS);
  shl_segment *seg = NULL;
  T_EXPECT_RC(shl_create(&seg, name, &l, NULL), 0);
  shl_close(seg);
  scribble(name, &rows[0]);
  T_EXPECT_RC(shl_create(&seg, name, &l, NULL), -EEXIST);
  shl_close(seg);
  shl_create_opts o = SHL_CREATE_OPTS_INIT;
  o.flags = SHL_CREATE_REPLACE;
  T_EXPECT_RC(shl_create(&seg, name, &l, &o), 0);
  shl_close(seg);
  shl_segment *look = t_open(name, 0);
  shl_close(look);
}

int main(void) {
  for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) test_row(&rows[i]);
  test_creator_role_blocks();
  test_foreign_owner_kept();
  test_directory_kept();
  test_plain_segment();
  return t_result();
}
