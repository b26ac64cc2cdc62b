/* Public API corners no other test reaches: growable option structs of
 * another size (an older caller's, a newer caller's), samples of another
 * size (0.1's through shl_reader_receive, a newer caller's through
 * shl_reader_receive_ex), every code's exact name, the version, the old
 * names kept for the change counter, the receive policy and
 * shl_writer_pinned_by, shl_writer_get_pinned_by's count past its buffer,
 * an open that waits for a name created later by another process, a
 * caller's mistakes (NULL where a result goes, unknown flags) answered
 * with -EINVAL, never a crash and never half done, and option sizes that
 * end inside a field. */
#include <stddef.h>

#include "testutil_stream.h"

static const shl_layout layout = {.format = "<I", .ndim = 1, .shape = {4}};

/* An option struct with room past its end, so a caller can claim a size
 * other than the library's: bytes past that size are the caller's garbage. */
struct open_buf {
  shl_open_opts o;
  uint32_t tail[4];
};

struct reader_buf {
  shl_reader_opts o;
  uint32_t tail[4];
};

static int open_with(const char *name, const struct open_buf *b) {
  shl_segment *seg = NULL;
  int rc = shl_open_ex(&seg, name, &b->o);
  T_CHECK((rc == 0) == (seg != NULL));
  shl_close(seg);
  return rc;
}

static int reader_with(const char *name, const struct reader_buf *b) {
  shl_reader *r = NULL;
  int rc = shl_reader_open_ex(&r, name, &b->o);
  T_CHECK((rc == 0) == (r != NULL));
  shl_reader_close(r);
  return rc;
}

static void test_open_opts_size(void) {
  const char *name = t_name("aopen");
  shl_segment *seg = NULL;
  t_unlink_at_exit(name);
  T_EXPECT_RC(shl_create(&seg, name, &layout, NULL), 0);

  /* An older caller knew no owner fields: whatever lies there is not read
   * (an unknown policy would be -EINVAL), the fields count as zero. */
  struct open_buf b = {.o = SHL_OPEN_OPTS_INIT};
  b.o.size = offsetof(shl_open_opts, owner);
  b.o.owner = 99;
  b.o.owner_uid = 12345;
  T_EXPECT_RC(open_with(name, &b), 0);
  b.o.size = sizeof b.o; /* the same bytes, now claimed: refused */
  T_EXPECT_RC(open_with(name, &b), -EINVAL);

  /* A newer caller: a zero tail is fine, anything else asks for more. */
  b.o.owner = SHL_OWNER_SELF;
  b.o.size = sizeof b;
  T_EXPECT_RC(open_with(name, &b), 0);
  b.tail[3] = 1;
  T_EXPECT_RC(open_with(name, &b), -E2BIG);
  b.tail[3] = 0;
  b.o.size = 2; /* cannot even hold `size` */
  T_EXPECT_RC(open_with(name, &b), -EINVAL);
  shl_close(seg);
}

static void test_reader_opts_size(void) {
  char name[SHL_NAME_MAX + 1];
  t_fresh_name(name, "aread");
  shl_writer *w = t_writer_open(name, 2, 4, 4, 0);

  struct reader_buf b = {.o = SHL_READER_OPTS_INIT};
  b.o.timeout_ns = 0;
  b.o.size = offsetof(shl_reader_opts, owner);
  b.o.owner = 99;
  b.o.flags = 0x80; /* a flag this library does not know */
  T_EXPECT_RC(reader_with(name, &b), 0);
  b.o.size = sizeof b.o;
  T_EXPECT_RC(reader_with(name, &b), -EINVAL);

  b.o.owner = SHL_OWNER_SELF;
  b.o.flags = 0;
  b.o.size = sizeof b;
  T_EXPECT_RC(reader_with(name, &b), 0);
  b.tail[0] = 1;
  T_EXPECT_RC(reader_with(name, &b), -E2BIG);
  shl_writer_close(w);
}

/* An older caller's create options end before `flags`: what lies there is
 * not read (REPLACE would unlink the existing segment). */
static void test_create_opts_size(void) {
  const char *name = t_name("acre");
  shl_segment *first = NULL, *second = NULL;
  t_unlink_at_exit(name);
  shl_create_opts o = SHL_CREATE_OPTS_INIT;
  o.mode = 0640;
  T_EXPECT_RC(shl_create(&first, name, &layout, &o), 0);
  o.size = offsetof(shl_create_opts, flags);
  o.flags = SHL_CREATE_REPLACE;
  T_EXPECT_RC(shl_create(&second, name, &layout, &o), -EEXIST);
  o.size = 0; /* not initialised with SHL_CREATE_OPTS_INIT */
  T_EXPECT_RC(shl_create(&second, name, &layout, &o), -EINVAL);
  T_CHECK(second == NULL);
  shl_close(first);
}

/* Info structs are filled only as far as the caller's size reaches: an
 * older caller's struct ends before `mode`, and bytes past it stay as they
 * were; a newer caller's extra tail is zeroed. */
struct info_buf {
  shl_info info;
  unsigned char tail[16];
};

static void test_info_size(void) {
  const char *name = t_name("ainf");
  shl_segment *seg = NULL;
  t_unlink_at_exit(name);
  T_EXPECT_RC(shl_create(&seg, name, &layout, NULL), 0);
  T_REQUIRE(seg);

  struct info_buf b;
  memset(&b, 0x5A, sizeof b);
  b.info.size = offsetof(shl_info, mode);
  T_EXPECT_RC(shl_get_info(seg, &b.info), 0);
  T_CHECK(b.info.size == offsetof(shl_info, mode) && strcmp(b.info.name, name) == 0);
  T_CHECK(b.info.kind == SHL_KIND_ARRAY && b.info.creator_pid == getpid());
  const unsigned char *after = (const unsigned char *)&b + offsetof(shl_info, mode);
  int untouched = 1;
  for (size_t i = 0; i < sizeof b - offsetof(shl_info, mode); i++) untouched &= after[i] == 0x5A;
  T_CHECK(untouched);

  memset(&b, 0x5A, sizeof b);
  b.info.size = sizeof b;
  T_EXPECT_RC(shl_get_info(seg, &b.info), 0);
  T_CHECK(b.info.size == sizeof b && b.info.mode == 0600 && b.info.uid == geteuid());
  int zeroed = 1;
  for (size_t i = 0; i < sizeof b.tail; i++) zeroed &= b.tail[i] == 0;
  T_CHECK(zeroed);

  shl_info none = {0};
  T_EXPECT_RC(shl_get_info(seg, &none), -EINVAL); /* size 0: not initialised */
  shl_close(seg);
}

static void test_names(void) {
  static const struct {
    int code;
    const char *name;
  } codes[] = {
#define CODE(name, value, text) {SHL_E_##name, "SHL_E_" #name},
      SHL_ERRNO_MAP(CODE)
#undef CODE
  };
  for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
    if (strcmp(shl_err_name(codes[i].code), codes[i].name) != 0) {
      fprintf(stderr, "shl_err_name(%d) is %s, want %s\n", codes[i].code,
              shl_err_name(codes[i].code), codes[i].name);
      t_failures++;
    }
  }
  T_CHECK(strcmp(shl_err_name(-E2BIG), "E2BIG") == 0);
  T_CHECK(strcmp(shl_err_name(-ETIMEDOUT), "ETIMEDOUT") == 0);
  T_CHECK(strcmp(shl_err_name(1), "UNKNOWN") == 0);
}

static void test_version(void) {
  unsigned major, minor, patch;
  char extra;
  T_REQUIRE(sscanf(shl_version_string(), "%u.%u.%u%c", &major, &minor, &patch, &extra) == 3);
  T_CHECK(shl_version_number() == major * 10000 + minor * 100 + patch);
  T_CHECK(major == SHL_VERSION_MAJOR && minor == SHL_VERSION_MINOR && patch == SHL_VERSION_PATCH);
}

/* The old names of the change counter and of the receive policy still
 * compile (deprecated) and mean what the new ones do; `version` shares the
 * place of `changes`, so shl_info keeps its layout. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
_Static_assert(offsetof(shl_info, version) == offsetof(shl_info, changes), "one field");
_Static_assert(offsetof(shl_info, creator_pid) == offsetof(shl_info, changes) + 8, "layout");
static void test_old_names(void) {
  char name[SHL_NAME_MAX + 1];
  t_fresh_name(name, "aold");
  shl_create_opts copts = SHL_CREATE_OPTS_INIT;
  copts.flags = SHL_CREATE_UNLINK_ON_CLOSE;
  shl_segment *seg = NULL;
  T_EXPECT_RC(shl_create(&seg, name, &layout, &copts), 0);
  T_REQUIRE(seg != NULL);
  T_CHECK(shl_changes(seg) == 0 && shl_version(seg) == 0);
  for (uint64_t i = 1; i <= 3; i++) {
    uint64_t n = 0;
    T_EXPECT_RC(shl_notify(seg, &n), 0);
    T_CHECK(n == i && shl_changes(seg) == i && shl_version(seg) == i);
  }
  shl_info info = SHL_INFO_INIT;
  T_EXPECT_RC(shl_get_info(seg, &info), 0);
  T_CHECK(info.changes == 3 && info.version == info.changes);
  shl_close(seg);

  t_fresh_name(name, "aoldr");
  shl_writer *w = t_writer_open(name, 2, 4, 4, 0);
  enum shl_recv_mode old = SHL_RECV_ALL;
  enum shl_recv_policy policy = old;
  shl_reader_opts o = SHL_READER_OPTS_INIT;
  o.policy = policy;
  o.timeout_ns = 0;
  shl_reader *r = NULL;
  T_EXPECT_RC(shl_reader_open_ex(&r, name, &o), 0);
  for (uint64_t i = 1; i <= 2; i++) T_CHECK(t_publish(w, 2, i, 1000) == i);
  shl_sample s;
  T_EXPECT_RC(shl_reader_receive(r, &s, 0, 0), 0); /* `all`: the first frame, not the newest */
  T_CHECK(s.seq == 1 && s.lost == 0);
  T_EXPECT_RC(shl_reader_release(r, &s), 0);
  shl_reader_close(r);
  shl_writer_close(w);
}
#pragma GCC diagnostic pop

/* Three readers of this process each pin a slot: get_pinned_by counts all
 * three, and fills no more than it is given room for; its older name
 * answers the same. */
static void test_pinned_by(void) {
  char name[SHL_NAME_MAX + 1];
  t_fresh_name(name, "apin");
  shl_writer *w = t_writer_open(name, 2, 8, 4, 0);
  shl_reader *r[3];
  shl_sample s[3];
  int32_t pids[4] = {0, 0, -1, -1};
  for (int i = 0; i < 3; i++) r[i] = t_reader_open(name, SHL_RECV_LATEST, 1000);
  T_EXPECT_RC(shl_writer_get_pinned_by(w, pids, 4), 0);
  for (int i = 0; i < 3; i++) {
    T_CHECK(t_publish(w, 2, (uint64_t)i + 1, 1000) == (uint64_t)i + 1);
    T_EXPECT_RC(shl_reader_receive(r[i], &s[i], 1000 * T_MS, 0), 0);
  }
  T_EXPECT_RC(shl_writer_get_pinned_by(w, pids, 2), 3);
  T_CHECK(pids[0] == getpid() && pids[1] == getpid() && pids[2] == -1);
  T_EXPECT_RC(shl_writer_get_pinned_by(w, NULL, 0), 3);
  T_EXPECT_RC(shl_writer_pinned_by(w, NULL, 0), 3);
  T_EXPECT_RC(shl_reader_release(r[1], &s[1]), 0);
  T_EXPECT_RC(shl_writer_get_pinned_by(w, pids, 4), 2);
  for (int i = 0; i < 3; i++) shl_reader_close(r[i]);
  T_EXPECT_RC(shl_writer_get_pinned_by(w, pids, 4), 0);
  T_EXPECT_RC(shl_writer_pinned_by(w, pids, 4), 0);
  shl_writer_close(w);
}

/* A sample with room past its end, as an option struct above. */
struct sample_buf {
  shl_sample s;
  uint32_t tail[4];
};

/* All bytes of [from, to) of b are 0x5A, as memset left them. */
static int untouched(const struct sample_buf *b, size_t from, size_t to) {
  int same = 1;
  for (size_t i = from; i < to; i++) same &= ((const unsigned char *)b)[i] == 0x5A;
  return same;
}

/* shl_reader_receive writes the fields of 0.1 alone: an older caller's
 * sample ends where `size` begins. shl_reader_receive_ex refuses a size that
 * cannot hold `size`, fills what fits and zeroes a newer caller's tail. */
static void test_sample_size(void) {
  char name[SHL_NAME_MAX + 1];
  t_fresh_name(name, "asmp");
  shl_writer *w = t_writer_open(name, 2, 8, 4, 0);
  shl_reader *r = t_reader_open(name, SHL_RECV_ALL, 1000);
  for (uint64_t i = 1; i <= 4; i++) T_CHECK(t_publish(w, 2, i, 1000) == i);
  const size_t old_end = offsetof(shl_sample, size), size_end = old_end + sizeof(uint32_t);
  struct sample_buf b;

  memset(&b, 0x5A, sizeof b);
  T_EXPECT_RC(shl_reader_receive(r, &b.s, 1000 * T_MS, 0), 0);
  T_CHECK(b.s.seq == 1 && b.s.lost == 0 && untouched(&b, old_end, sizeof b));
  T_EXPECT_RC(shl_reader_release(r, &b.s), 0);

  memset(&b, 0x5A, sizeof b);
  b.s.size = (uint32_t)old_end;
  T_EXPECT_RC(shl_reader_receive_ex(r, &b.s, 0, 0), -EINVAL);
  T_EXPECT_RC(shl_reader_receive_ex(r, NULL, 0, 0), -EINVAL);
  b.s.size = (uint32_t)size_end; /* `size` and nothing after it */
  T_EXPECT_RC(shl_reader_receive_ex(r, &b.s, 1000 * T_MS, 0), 0);
  T_CHECK(b.s.seq == 2 && b.s.size == size_end && untouched(&b, size_end, sizeof b));
  T_EXPECT_RC(shl_reader_release(r, &b.s), 0);

  shl_sample s = SHL_SAMPLE_INIT;
  s.reserved = 7;
  T_EXPECT_RC(shl_reader_receive_ex(r, &s, 1000 * T_MS, 0), 0);
  T_CHECK(s.seq == 3 && s.lost == 0 && s.size == sizeof s && s.reserved == 0);
  T_CHECK(t_frame_bad_words(s.data, 2, 3) == 0);
  T_EXPECT_RC(shl_reader_release(r, &s), 0);

  memset(&b, 0x5A, sizeof b);
  b.s.size = sizeof b;
  T_EXPECT_RC(shl_reader_receive_ex(r, &b.s, 1000 * T_MS, 0), 0);
  T_CHECK(b.s.seq == 4 && b.s.size == sizeof b && b.s.reserved == 0);
  T_CHECK(b.tail[0] == 0 && b.tail[1] == 0 && b.tail[2] == 0 && b.tail[3] == 0);
  T_EXPECT_RC(shl_reader_release(r, &b.s), 0);
  T_EXPECT_RC(shl_reader_receive_ex(r, &b.s, 0, 0), -ETIMEDOUT);
  shl_reader_close(r);
  shl_writer_close(w);
}

static int create_later(void *arg) {
  const char *name = arg;
  t_sleep_ms(150);
  shl_segment *seg = NULL;
  int rc = shl_create(&seg, name, &layout, NULL);
  shl_close(seg); /* the segment stays */
  return rc;
}

static int open_waiting(const char *name, int64_t timeout_ns) {
  shl_open_opts o = SHL_OPEN_OPTS_INIT;
  o.flags = SHL_OPEN_WAIT_NAME | SHL_OPEN_READONLY;
  o.timeout_ns = timeout_ns;
  shl_segment *seg = NULL;
  int rc = shl_open_ex(&seg, name, &o);
  T_CHECK((rc == 0) == (seg != NULL));
  if (seg) {
    shl_layout got;
    shl_get_layout(seg, &got);
    T_CHECK(strcmp(got.format, layout.format) == 0 && got.shape[0] == 4);
    T_CHECK(shl_is_readonly(seg));
  }
  shl_close(seg);
  return rc;
}

/* SHL_OPEN_WAIT_NAME: a name that is not there yet is waited for, within
 * timeout_ns; without the flag, -ENOENT at once as always. */
static void test_open_wait_name(void) {
  const char *name = t_name("await");
  shl_segment *seg = NULL;
  t_unlink_at_exit(name);
  long long t0 = t_now_ns();
  T_EXPECT_RC(shl_open(&seg, name, 0, 5000 * T_MS), -ENOENT);
  T_EXPECT_TOOK(t0, 0, T_AT_ONCE_MS);
  t0 = t_now_ns();
  T_EXPECT_RC(open_waiting(name, 300 * T_MS), -ENOENT);
  T_EXPECT_TOOK(t0, 300, 300 + T_AT_ONCE_MS);
  t0 = t_now_ns();
  T_EXPECT_RC(open_waiting(name, 0), -ENOENT); /* one look */
  T_EXPECT_TOOK(t0, 0, T_AT_ONCE_MS);
  T_EXPECT_RC(shl_open(&seg, name, 1u << 3, 0), -EINVAL);

  /* Opener first, creator later in another process. */
  struct t_child c;
  T_REQUIRE(t_child_start(&c, create_later, (void *)name, 10) == 0);
  t0 = t_now_ns();
  T_EXPECT_RC(open_waiting(name, 5000 * T_MS), 0);
  T_EXPECT_TOOK(t0, 100, 5000);
  int rc;
  T_EXPECT_EXIT(t_child_finish(&c, &rc), 0);
  T_EXPECT_RC(rc, 0);
  /* Creator first: no wait, with or without a time limit. */
  t0 = t_now_ns();
  T_EXPECT_RC(open_waiting(name, -1), 0);
  T_EXPECT_TOOK(t0, 0, T_AT_ONCE_MS);
  T_EXPECT_RC(shl_unlink(name), 0);
}

/* A size that ends inside a field takes none of it: the field keeps its
 * default, as one past the size does. A pointer cut in two (the metadata
 * format) was read half from the caller, half from the default. */
static void test_opts_size_inside_a_field(void) {
  char name[SHL_NAME_MAX + 1];
  t_fresh_name(name, "acut");
  shl_layout frame = t_frame_layout(2);
  shl_stream_opts so = SHL_STREAM_OPTS_INIT;
  so.meta_format = "T{<Q:a:}";
  so.size = (uint32_t)(offsetof(shl_stream_opts, meta_format) + 4);
  shl_writer *w = NULL;
  T_EXPECT_RC(shl_writer_open(&w, name, &frame, &so), 0);
  T_REQUIRE(w);
  T_EXPECT_RC(shl_writer_get_meta(w, NULL, 0), 0); /* no metadata: the pointer did not fit */
  shl_writer_close(w);

  t_fresh_name(name, "acutc");
  shl_create_opts co = SHL_CREATE_OPTS_INIT;
  co.mode = 0640;
  co.size = (uint32_t)(offsetof(shl_create_opts, mode) + 2);
  shl_segment *seg = NULL;
  T_EXPECT_RC(shl_create(&seg, name, &layout, &co), 0);
  shl_info info = SHL_INFO_INIT;
  T_EXPECT_RC(shl_get_info(seg, &info), 0);
  T_CHECK(info.mode == 0600); /* the default, not the caller's half */
  shl_close(seg);
}

/* NULL where a call stores its result, and flags the library does not
 * know: -EINVAL, with nothing done (no slot loaned, no sample pinned, no
 * object created). A NULL pids only counts. */
static void test_caller_mistakes(void) {
  char name[SHL_NAME_MAX + 1];
  t_fresh_name(name, "amis");
  shl_writer *w = t_writer_open(name, 2, 4, 4, 0);
  shl_reader *r = t_reader_open(name, SHL_RECV_ALL, 1000);
  shl_segment *seg = shl_reader_segment(r);
  T_EXPECT_RC(shl_get_info(seg, NULL), -EINVAL);
  T_EXPECT_RC(shl_stream_get_info(seg, NULL), -EINVAL);
  T_EXPECT_RC(shl_writer_loan(w, NULL, 0), -EINVAL);
  T_CHECK(t_publish(w, 2, 1, 1000) == 1); /* no loan was left outstanding */
  T_EXPECT_RC(shl_stream_get_reader(seg, 0, NULL), -EINVAL);
  T_EXPECT_RC(shl_reader_receive(r, NULL, 0, 0), -EINVAL);
  shl_sample s = SHL_SAMPLE_INIT;
  T_EXPECT_RC(shl_reader_receive_ex(r, &s, 0, 0), 0); /* frame 1 was not taken */
  T_CHECK(s.seq == 1);
  int32_t pid = 0;
  T_EXPECT_RC(shl_writer_get_pinned_by(w, NULL, 8), 1);
  T_EXPECT_RC(shl_writer_get_pinned_by(w, &pid, 1), 1);
  T_CHECK(pid == getpid());
  T_EXPECT_RC(shl_reader_release(r, &s), 0);
  shl_wait_opts wo = SHL_WAIT_OPTS_INIT;
  wo.flags = 1u << 7;
  T_EXPECT_RC(shl_wait_ex(seg, shl_changes(seg) + 1, 0, &wo, NULL), -EINVAL);
  shl_reader_close(r);
  shl_writer_close(w);

  t_fresh_name(name, "amif");
  shl_create_opts co = SHL_CREATE_OPTS_INIT;
  co.flags = 1u << 9;
  shl_segment *made = NULL;
  T_EXPECT_RC(shl_create(&made, name, &layout, &co), -EINVAL);
  T_CHECK(made == NULL);
  T_EXPECT_RC(shl_unlink(name), -ENOENT);
}

int main(void) {
  test_create_opts_size();
  test_info_size();
  test_open_opts_size();
  test_reader_opts_size();
  test_names();
  test_version();
  test_old_names();
  test_pinned_by();
  test_sample_size();
  test_open_wait_name();
  test_caller_mistakes();
  test_opts_size_inside_a_field();
  return t_result();
}
