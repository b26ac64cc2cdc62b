/* Segments: create/open/close/unlink round trips, the layouts and info they
 * record, the create flags, and a segment handed between unrelated processes
 * (this program re-exec'd as "writer", then as "reader"). */
#include <stdint.h>
#include <sys/stat.h>

#include "shm_layout.h"
#include "testutil_proc.h"

#define WAIT_NS 1000000000LL

static int path_exists(const char *name) {
  char path[T_PATH_MAX];
  struct stat st;
  return stat(t_shm_path(name, path), &st) == 0;
}

static int all_zero(const unsigned char *p, uint64_t n) {
  for (uint64_t i = 0; i < n; i++)
    if (p[i]) return 0;
  return 1;
}

/* Strides as the elements are addressed: all zero means C order. */
static void effective_strides(const shl_layout *l, uint64_t itemsize, int64_t out[SHL_MAX_NDIM]) {
  int c_order = 1;
  for (uint32_t i = 0; i < l->ndim && i < SHL_MAX_NDIM; i++)
    if (l->strides[i]) c_order = 0;
  int64_t step = (int64_t)itemsize;
  for (uint32_t i = l->ndim < SHL_MAX_NDIM ? l->ndim : SHL_MAX_NDIM; i-- > 0;) {
    out[i] = c_order ? step : l->strides[i];
    step *= (int64_t)l->shape[i];
  }
}

/* The layout a segment reports equals the one it was created with (strides
 * compared as addressed, so "all zero" and explicit C strides agree). */
static void check_layout(const shl_segment *seg, const shl_layout *want, uint64_t itemsize,
                         const char *what) {
  shl_layout got;
  memset(&got, 0xA5, sizeof got);
  shl_get_layout(seg, &got);
  int bad = 0;
  bad += !got.format || strcmp(got.format, want->format) != 0;
  bad += got.itemsize != itemsize;
  bad += got.ndim != want->ndim;
  if (!bad) {
    int64_t gs[SHL_MAX_NDIM], ws[SHL_MAX_NDIM];
    effective_strides(&got, itemsize, gs);
    effective_strides(want, itemsize, ws);
    for (uint32_t i = 0; i < want->ndim; i++)
      bad += got.shape[i] != want->shape[i] || gs[i] != ws[i];
  }
  if (bad) {
    fprintf(stderr, "%s: layout read back differs: format \"%s\" itemsize %llu ndim %u\n", what,
            got.format ? got.format : "(null)", (unsigned long long)got.itemsize, got.ndim);
    t_failures++;
  }
}

/* ---------------------------------------------------------------- round trip */

static void test_round_trip(void) {
  const char *name = t_name("rt");
  shl_layout l = {.format = "<d", .ndim = 2, .shape = {3, 4}};
  shl_segment *seg = NULL, *again = NULL;
  t_unlink_at_exit(name);

  struct timespec t0, t1;
  clock_gettime(CLOCK_REALTIME, &t0);
  T_EXPECT_RC(shl_create(&seg, name, &l, NULL), 0);
  clock_gettime(CLOCK_REALTIME, &t1);
  T_REQUIRE(seg);
  T_CHECK(strcmp(shl_name(seg), name) == 0);
  T_CHECK(shl_kind(seg) == SHL_KIND_ARRAY);
  T_CHECK(!shl_is_readonly(seg));
  unsigned char *p = shl_payload(seg);
  uint64_t size = shl_payload_size(seg);
  T_REQUIRE(p && size >= 3 * 4 * 8);
  T_CHECK((uintptr_t)p % SHL__PAYLOAD_ALIGN == 0);
  T_CHECK(all_zero(p, size));
  check_layout(seg, &l, 8, "created <d 3x4");

  shl_info info = SHL_INFO_INIT;
  memset(&info, 0xA5, sizeof info); /* every field must be written */
  info.size = sizeof info;
  T_EXPECT_RC(shl_get_info(seg, &info), 0);
  T_CHECK(strcmp(info.name, name) == 0);
  T_CHECK(info.kind == SHL_KIND_ARRAY);
  T_CHECK(info.format_version == SHL__FORMAT_VERSION);
  T_CHECK(info.payload_size == size);
  T_CHECK(info.changes == 0);
  T_CHECK(info.creator_pid == getpid());
  T_CHECK(info.creator_alive == 1);
  T_CHECK(info.created_ns >= (uint64_t)t0.tv_sec * 1000000000u + (uint64_t)t0.tv_nsec &&
          info.created_ns <= (uint64_t)t1.tv_sec * 1000000000u + (uint64_t)t1.tv_nsec);
  T_CHECK(info.mode == 0600);
  T_CHECK(info.uid == getuid());

  /* The object on disk: its size is total_size; the fixed header, the format
   * at offset 512 and the payload at an aligned offset after it. */
  char path[T_PATH_MAX];
  struct stat st;
  T_REQUIRE(stat(t_shm_path(name, path), &st) == 0);
  T_CHECK((uint64_t)st.st_size == info.total_size);
  struct shl__header h;
  char fmt[8] = {0};
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  T_REQUIRE(fd >= 0);
  T_REQUIRE(pread(fd, &h, sizeof h, 0) == (ssize_t)sizeof h);
  T_REQUIRE(pread(fd, fmt, sizeof fmt, SHL__HEADER_SIZE) == (ssize_t)sizeof fmt);
  close(fd);
  T_CHECK(memcmp(h.magic, SHL__MAGIC, sizeof h.magic) == 0);
  T_CHECK(h.header_size == SHL__HEADER_SIZE && h.state == SHL__STATE_READY);
  T_CHECK(h.format_offset == SHL__HEADER_SIZE && h.format_len == 2 && memcmp(fmt, "<d", 3) == 0);
  T_CHECK(h.payload_offset % SHL__PAYLOAD_ALIGN == 0 && h.payload_offset >= SHL__HEADER_SIZE + 3);
  T_CHECK(h.payload_offset + h.payload_size <= h.total_size && h.payload_size == size);

  /* Data written survives close, and the name survives its creator's close. */
  for (uint64_t i = 0; i < size; i++) p[i] = (unsigned char)(i * 7 + 1);
  shl_close(seg);
  T_CHECK(path_exists(name));
  T_EXPECT_RC(shl_open(&again, name, 0, WAIT_NS), 0);
  T_REQUIRE(again);
  T_CHECK(shl_payload_size(again) == size);
  const unsigned char *q = shl_payload(again);
  int same = 1;
  for (uint64_t i = 0; i < size; i++) same &= q[i] == (unsigned char)(i * 7 + 1);
  T_CHECK(same);
  check_layout(again, &l, 8, "reopened <d 3x4");
  T_EXPECT_RC(shl_get_info(again, &info), 0);
  /* creator_alive: the creator still has it open (its role lock), not its pid. */
  T_CHECK(info.creator_pid == getpid() && info.creator_alive == 0);
  shl_close(again);
  shl_close(NULL); /* accepted */

  T_EXPECT_RC(shl_unlink(name), 0);
  T_CHECK(!path_exists(name));
  again = NULL;
  T_EXPECT_RC(shl_open(&again, name, 0, WAIT_NS), -ENOENT);
  T_CHECK(again == NULL);
  T_EXPECT_RC(shl_unlink(name), -ENOENT);
}

/* ---------------------------------------------------------------- layouts */

enum { ARRAY = SHL_KIND_ARRAY, STRUCT = SHL_KIND_STRUCT };

struct layout_case {
  uint32_t kind_in, kind_want;
  uint64_t itemsize, min_payload;
  shl_layout layout;
};

static void check_layout_case(const struct layout_case *c, size_t index) {
  const char *name = t_name("lay");
  char what[64];
  shl_segment *seg = NULL, *again = NULL;
  shl_create_opts opts = {.size = sizeof(shl_create_opts), .kind = c->kind_in};
  snprintf(what, sizeof what, "layout case %zu (%s)", index, c->layout.format);
  t_unlink_at_exit(name);
  T_EXPECT_RC(shl_create(&seg, name, &c->layout, &opts), 0);
  if (!seg) {
    fprintf(stderr, "  in %s\n", what);
    return;
  }
  T_CHECK(shl_kind(seg) == c->kind_want);
  T_CHECK(shl_payload_size(seg) >= c->min_payload);
  T_CHECK(all_zero(shl_payload(seg), shl_payload_size(seg)));
  check_layout(seg, &c->layout, c->itemsize, what);
  shl_close(seg);
  /* What another process would see: the header, not the creator's memory. */
  T_EXPECT_RC(shl_open(&again, name, 0, WAIT_NS), 0);
  if (again) {
    T_CHECK(shl_kind(again) == c->kind_want);
    check_layout(again, &c->layout, c->itemsize, what);
  }
  shl_close(again);
  T_EXPECT_RC(shl_unlink(name), 0);
}

static void test_layouts(void) {
  static const struct layout_case cases[] = {
      /* kind in, kind out, itemsize, least payload, layout */
      {0, ARRAY, 8, 96, {.format = "<d", .ndim = 2, .shape = {3, 4}}},
      {0, ARRAY, 8, 8, {.format = "<d"}}, /* a scalar: ndim 0 alone does not make a struct */
      {0, STRUCT, 16, 16, {.format = "T{<i:x:4x<d:y:}"}},
      {STRUCT, STRUCT, 16, 16, {.format = "T{<i:x:4x<d:y:}", .itemsize = 16}},
      {0, ARRAY, 16, 80, {.format = "T{<i:x:4x<d:y:}", .ndim = 1, .shape = {5}}},
      /* Fortran order. */
      {0, ARRAY, 4, 48, {.format = "<f", .ndim = 2, .shape = {3, 4}, .strides = {4, 12}}},
      /* Rows padded to 64 bytes: the payload covers the last row's start + 4 items. */
      {0, ARRAY, 8, 160, {.format = "<d", .ndim = 2, .shape = {3, 4}, .strides = {64, 8}}},
      {0, ARRAY, 1, 384, {.format = "B", .ndim = 8, .shape = {2, 2, 2, 2, 2, 2, 2, 3}}},
      {0, ARRAY, 8, 0, {.format = "<d", .ndim = 2, .shape = {0, 4}}}, /* empty */
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) check_layout_case(&cases[i], i);
  T_CHECK(shl_format_itemsize("T{<i:x:4x<d:y:}") == 16);
}

/* A create that the layout makes fail leaves no object behind. */
static void test_create_rejects(void) {
  static const struct {
    shl_layout layout;
    int want;
  } cases[] = {
      {{.format = "<z", .ndim = 1, .shape = {4}}, SHL_E_BAD_FORMAT},
      {{.format = "<d", .itemsize = 4, .ndim = 1, .shape = {4}}, SHL_E_ITEMSIZE},
      {{.format = "<d", .ndim = SHL_MAX_NDIM + 1, .shape = {1, 1, 1, 1, 1, 1, 1, 1}},
       SHL_E_BAD_SHAPE},
      {{.format = "<d", .ndim = 2, .shape = {UINT64_C(1) << 40, UINT64_C(1) << 40}},
       SHL_E_BAD_SHAPE},
      /* No base offset: a negative stride would address memory before the payload. */
      {{.format = "<d", .ndim = 1, .shape = {4}, .strides = {-8}}, SHL_E_BAD_STRIDES},
  };
  const char *name = t_name("rej");
  t_unlink_at_exit(name);
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    shl_segment *seg = NULL;
    T_EXPECT_RC(shl_create(&seg, name, &cases[i].layout, NULL), cases[i].want);
    T_CHECK(seg == NULL);
    if (path_exists(name)) {
      fprintf(stderr, "rejected create #%zu left %s behind\n", i, name);
      t_failures++;
      shl_unlink(name);
    }
  }
}

/* ---------------------------------------------------------------- flags */

static void test_replace(void) {
  const char *name = t_name("rep");
  shl_layout a = {.format = "<d", .ndim = 1, .shape = {4}};
  shl_layout b = {.format = "<i", .ndim = 1, .shape = {8}};
  shl_create_opts replace = {.size = sizeof(shl_create_opts), .flags = SHL_CREATE_REPLACE};
  shl_segment *old = NULL, *dup = NULL, *fresh = NULL, *opened = NULL;
  t_unlink_at_exit(name);

  T_EXPECT_RC(shl_create(&old, name, &a, NULL), 0);
  T_REQUIRE(old);
  memset(shl_payload(old), 0x11, shl_payload_size(old));
  T_EXPECT_RC(shl_create(&dup, name, &b, NULL), -EEXIST);
  T_CHECK(dup == NULL);

  T_EXPECT_RC(shl_create(&fresh, name, &b, &replace), 0);
  T_REQUIRE(fresh);
  T_CHECK(all_zero(shl_payload(fresh), shl_payload_size(fresh)));
  check_layout(fresh, &b, 4, "replacement");
  /* The old handle keeps its own object and data. */
  T_CHECK(((unsigned char *)shl_payload(old))[0] == 0x11);
  check_layout(old, &a, 8, "replaced handle");
  /* Openers by name now find the replacement. */
  T_EXPECT_RC(shl_open(&opened, name, 0, WAIT_NS), 0);
  if (opened) check_layout(opened, &b, 4, "opened after replace");
  shl_close(opened);
  shl_close(fresh);
  shl_close(old);

  /* REPLACE with nothing to replace simply creates. */
  T_EXPECT_RC(shl_unlink(name), 0);
  fresh = NULL;
  T_EXPECT_RC(shl_create(&fresh, name, &a, &replace), 0);
  shl_close(fresh);
  T_EXPECT_RC(shl_unlink(name), 0);
}

static void test_unlink_on_close(void) {
  const char *name = t_name("uoc");
  shl_layout l = {.format = "<q", .ndim = 1, .shape = {16}};
  shl_create_opts opts = {.size = sizeof(shl_create_opts), .flags = SHL_CREATE_UNLINK_ON_CLOSE};
  shl_segment *creator = NULL, *other = NULL;
  t_unlink_at_exit(name);

  /* Only the creator's close unlinks. */
  T_EXPECT_RC(shl_create(&creator, name, &l, &opts), 0);
  T_REQUIRE(creator);
  T_EXPECT_RC(shl_open(&other, name, 0, WAIT_NS), 0);
  T_REQUIRE(other);
  shl_close(other);
  T_CHECK(path_exists(name));
  shl_close(creator);
  T_CHECK(!path_exists(name));
  other = NULL;
  T_EXPECT_RC(shl_open(&other, name, 0, WAIT_NS), -ENOENT);

  /* After the name goes, processes that still have it open keep sharing it:
   * written through one mapping, read through another. */
  shl_segment *third = NULL;
  creator = other = NULL;
  T_EXPECT_RC(shl_create(&creator, name, &l, &opts), 0);
  T_REQUIRE(creator);
  T_EXPECT_RC(shl_open(&other, name, 0, WAIT_NS), 0);
  T_EXPECT_RC(shl_open(&third, name, SHL_OPEN_READONLY, WAIT_NS), 0);
  T_REQUIRE(other && third);
  shl_close(creator);
  T_CHECK(!path_exists(name));
  int64_t *v = shl_payload(other);
  const volatile int64_t *seen = shl_payload(third);
  T_CHECK((const void *)seen != (const void *)v);
  v[15] = 42;
  T_CHECK(seen[15] == 42 && seen[0] == 0);
  shl_close(other);
  shl_close(third);

  /* A name taken over by a replacement is not the creator's to remove. */
  creator = other = NULL;
  shl_create_opts replace = {.size = sizeof(shl_create_opts), .flags = SHL_CREATE_REPLACE};
  T_EXPECT_RC(shl_create(&creator, name, &l, &opts), 0);
  T_EXPECT_RC(shl_create(&other, name, &l, &replace), 0);
  shl_close(creator);
  T_CHECK(path_exists(name));
  shl_close(other);
  T_EXPECT_RC(shl_unlink(name), 0);
}

/* By default the pages are reserved at creation (a full /dev/shm fails
 * there, not with SIGBUS later); NO_RESERVE leaves the payload sparse. */
static void test_reserve(void) {
  const char *name = t_name("res");
  shl_layout l = {.format = "B", .ndim = 1, .shape = {UINT64_C(1) << 20}};
  static const uint32_t flags[] = {0, SHL_CREATE_NO_RESERVE};
  t_unlink_at_exit(name);
  for (size_t i = 0; i < 2; i++) {
    shl_segment *seg = NULL;
    shl_create_opts opts = {.size = sizeof(shl_create_opts), .flags = flags[i]};
    char path[T_PATH_MAX];
    struct stat st;
    T_EXPECT_RC(shl_create(&seg, name, &l, &opts), 0);
    T_REQUIRE(seg && stat(t_shm_path(name, path), &st) == 0);
    uint64_t allocated = (uint64_t)st.st_blocks * 512;
    if (flags[i])
      T_CHECK(allocated < (uint64_t)st.st_size / 2);
    else
      T_CHECK(allocated >= (uint64_t)st.st_size);
    T_CHECK(all_zero(shl_payload(seg), shl_payload_size(seg)));
    shl_close(seg);
    T_EXPECT_RC(shl_unlink(name), 0);
  }
}

/* ---------------------------------------------------------------- cross-process */

/* Element i of the pattern the writer leaves for the reader. */
static uint32_t pattern(uint64_t i) { return (uint32_t)(i * 2654435761u) ^ 0x5A5A5A5Au; }

/* Spans several pages, so the reader checks more than the first one. */
static const shl_layout xp_layout = {.format = "<I", .ndim = 2, .shape = {1000, 3}};

static int role_writer(const char *name) {
  shl_segment *seg = NULL;
  T_EXPECT_RC(shl_create(&seg, name, &xp_layout, NULL), 0);
  if (!seg) return 1;
  uint32_t *v = shl_payload(seg);
  for (uint64_t i = 0; i < 3000; i++) v[i] = pattern(i);
  shl_close(seg);
  return t_result(); /* exits without unlinking */
}

static int role_reader(const char *name, long writer_pid) {
  shl_segment *seg = NULL;
  T_EXPECT_RC(shl_open(&seg, name, SHL_OPEN_READONLY, WAIT_NS), 0);
  if (!seg) return 1;
  check_layout(seg, &xp_layout, 4, "reader");
  T_CHECK(shl_kind(seg) == SHL_KIND_ARRAY);
  T_CHECK(shl_payload_size(seg) >= 3000 * 4);
  const uint32_t *v = shl_payload(seg);
  uint64_t bad = 0;
  for (uint64_t i = 0; i < 3000; i++) bad += v[i] != pattern(i);
  T_CHECK(bad == 0);
  shl_info info = SHL_INFO_INIT;
  T_EXPECT_RC(shl_get_info(seg, &info), 0);
  T_CHECK(info.creator_pid == writer_pid);
  T_CHECK(info.creator_alive == 0); /* the writer exited and was reaped */
  shl_close(seg);
  return t_result();
}

static void test_cross_process(const char *self) {
  char name[SHL_NAME_MAX + 1], pid_arg[24];
  snprintf(name, sizeof name, "%s", t_name("xp"));
  t_unlink_at_exit(name);

  char *writer_argv[] = {(char *)self, "writer", name, NULL};
  pid_t writer = t_exec_self(writer_argv, 10);
  T_REQUIRE(writer > 0);
  T_EXPECT_EXIT(t_child_reap(writer), 0);
  T_CHECK(path_exists(name)); /* outlived its creator */

  snprintf(pid_arg, sizeof pid_arg, "%ld", (long)writer);
  char *reader_argv[] = {(char *)self, "reader", name, pid_arg, NULL};
  pid_t reader = t_exec_self(reader_argv, 10);
  T_REQUIRE(reader > 0);
  T_EXPECT_EXIT(t_child_reap(reader), 0);
  T_CHECK(path_exists(name)); /* and its reader */
  T_EXPECT_RC(shl_unlink(name), 0);
}

int main(int argc, char **argv) {
  if (argc == 3 && strcmp(argv[1], "writer") == 0) return role_writer(argv[2]);
  if (argc == 4 && strcmp(argv[1], "reader") == 0) return role_reader(argv[2], atol(argv[3]));
  test_round_trip();
  test_layouts();
  test_create_rejects();
  test_replace();
  test_unlink_on_close();
  test_reserve();
  test_cross_process(argv[0]);
  return t_result();
}
