/* Opening damaged and foreign objects: one header field corrupted at a time,
 * truncated segments, and files shmlane never wrote. Each open must return
 * its specific error code and never crash: every open runs in a child, so a
 * SIGSEGV or SIGBUS (or a hang, via the child's alarm) is reported as such. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include "shm_layout.h"
#include "testutil_proc.h"

#define WAIT_NS 50000000LL /* how long an open waits for an initialising creator */
#define WAIT_SLACK_NS 450000000LL
#define ANY_ERROR INT_MIN /* `want` for cases where only "an error, no crash" is specified */
#define OFF(field) offsetof(struct shl__header, field)

/* 4 x 1024 doubles: a payload of several pages, so truncation can cut it. */

/* A file that cannot be made this large here: the rows after it would test
 * nothing, so the whole program is skipped (77), never silently passed. */
#define T_REQUIRE_SIZED(sized, what)                                                  \
  do {                                                                               \
    if ((sized) != 0) {                                                              \
      fprintf(stderr, "skip: cannot make a file for \"%s\" here: %s\n", (what),     \
              strerror(errno));                                                      \
      exit(T_SKIP);                                                                  \
    }                                                                                \
  } while (0)

static const shl_layout base_layout = {.format = "<d", .ndim = 2, .shape = {4, 1024}};

static const char *seg_name;

/* ---------------------------------------------------------------- opening */

struct open_arg {
  const char *name;
  uint32_t flags;
};

/* In the child: open, and on success read every payload byte, which
 * validation must have made safe. */
static int open_in_child(void *p) {
  const struct open_arg *a = p;
  shl_segment *seg = NULL;
  int rc = shl_open(&seg, a->name, a->flags, WAIT_NS);
  if (rc == 0) {
    const volatile unsigned char *b = shl_payload(seg);
    unsigned char sum = 0;
    for (uint64_t i = 0; i < shl_payload_size(seg); i++) sum ^= b[i];
    (void)sum;
    shl_close(seg);
  }
  return rc;
}

/* Every SHL_E_* code an open returned, for the shl_strerror check. */
static int seen[32];
static int nseen;

static void note_seen(int rc) {
  if (rc > -4096) return; /* success or an errno value */
  for (int i = 0; i < nseen; i++)
    if (seen[i] == rc) return;
  if (nseen < 32) seen[nseen++] = rc;
}

/* Open `name` read-write and read-only, each in a child; both must return
 * `want` (any negative code for ANY_ERROR). A NOT_READY result must come
 * after about WAIT_NS; CREATOR_DEAD (no creator holds its role) before it. */
static void expect_open(const char *name, int want, const char *what) {
  static const uint32_t modes[] = {0, SHL_OPEN_READONLY};
  for (size_t m = 0; m < 2; m++) {
    struct open_arg arg = {name, modes[m]};
    int rc;
    long long t0 = t_now_ns();
    int status = t_child_run(open_in_child, &arg, 5, &rc);
    long long took = t_now_ns() - t0;
    const char *how = modes[m] ? "read-only" : "read-write";
    if (status == -1 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      fprintf(stderr, "%s (%s open): child did not exit normally\n", what, how);
      T_EXPECT_EXIT(status, 0);
      continue;
    }
    note_seen(rc);
    bool ok = want == ANY_ERROR ? rc < 0 : rc == want;
    if (!ok) {
      fprintf(stderr, "%s (%s open): got %d (%s), want %s\n", what, how, rc, shl_err_name(rc),
              want == ANY_ERROR ? "an error" : shl_err_name(want));
      t_failures++;
    }
    if (rc == SHL_E_NOT_READY && (took < WAIT_NS || took > WAIT_NS + WAIT_SLACK_NS)) {
      fprintf(stderr, "%s (%s open): NOT_READY after %lld ms, want ~%lld ms\n", what, how,
              took / 1000000, WAIT_NS / 1000000);
      t_failures++;
    }
    if (rc == SHL_E_CREATOR_DEAD && took >= WAIT_NS) {
      fprintf(stderr, "%s (%s open): CREATOR_DEAD after %lld ms, want it at once\n", what, how,
              took / 1000000);
      t_failures++;
    }
  }
}

/* ---------------------------------------------------------------- damaging */

/* A fresh valid segment; returns an fd on its file for damaging it. */
static int fresh_segment(struct shl__header *h) {
  shl_segment *seg = NULL;
  shl_create_opts replace = {.size = sizeof(shl_create_opts), .flags = SHL_CREATE_REPLACE};
  T_REQUIRE(shl_create(&seg, seg_name, &base_layout, &replace) == 0);
  shl_close(seg);
  char path[T_PATH_MAX];
  int fd = open(t_shm_path(seg_name, path), O_RDWR | O_CLOEXEC);
  T_REQUIRE(fd >= 0);
  if (h) T_REQUIRE(pread(fd, h, sizeof *h, 0) == (ssize_t)sizeof *h);
  return fd;
}

static void write_at(int fd, uint64_t off, const void *bytes, size_t n) {
  T_REQUIRE(pwrite(fd, bytes, n, (off_t)off) == (ssize_t)n);
}

/* Store a field of 1, 4 or 8 bytes in native byte order, as the header does. */
static void poke(int fd, size_t off, unsigned width, uint64_t value) {
  uint8_t v1 = (uint8_t)value;
  uint32_t v4 = (uint32_t)value;
  const void *src = width == 1 ? (const void *)&v1 : width == 4 ? (const void *)&v4 : &value;
  write_at(fd, off, src, width);
}

struct field_case {
  const char *what;
  size_t off;
  unsigned width;
  uint64_t value;
  int want;
};

static void test_header_fields(void) {
  struct shl__header h;
  close(fresh_segment(&h));
  const uint64_t T = h.total_size, P = h.payload_offset, S = h.payload_size;
  T_REQUIRE(S == 4 * 1024 * 8 && P % SHL__PAYLOAD_ALIGN == 0 && T >= P + S);
  /* The creator stores C-order strides explicitly (docs/format.md); the
   * shape and stride cases below are written against those. */
  T_REQUIRE(h.strides[0] == 8192 && h.strides[1] == 8);
  const uint64_t U64 = UINT64_MAX;
  const size_t SH0 = OFF(shape), SH1 = OFF(shape) + 8, ST0 = OFF(strides), ST1 = OFF(strides) + 8;
  const struct field_case cases[] = {
      {"magic garbage", OFF(magic), 8, 0x1122334455667788u, SHL_E_NOT_SHMLANE},
      {"magic last byte", OFF(magic) + 7, 1, 'X', SHL_E_NOT_SHMLANE},
      {"format_version 4", OFF(format_version), 4, SHL__FORMAT_VERSION + 1, SHL_E_VERSION},
      {"format_version 2", OFF(format_version), 4, 2, SHL_E_VERSION},
      {"format_version 1", OFF(format_version), 4, 1, SHL_E_VERSION},
      {"header_size 256", OFF(header_size), 4, 256, SHL_E_BAD_HEADER},
      {"header_size 4096", OFF(header_size), 4, 4096, SHL_E_BAD_HEADER},
      {"state initialising", OFF(state), 4, SHL__STATE_INIT, SHL_E_CREATOR_DEAD},
      {"total_size beyond file", OFF(total_size), 8, T + 4096, SHL_E_TRUNCATED},
      {"total_size max", OFF(total_size), 8, U64, SHL_E_TRUNCATED},
      {"total_size below header", OFF(total_size), 8, 100, SHL_E_BAD_HEADER},
      {"total_size cuts payload", OFF(total_size), 8, P + S / 2, SHL_E_BAD_HEADER},
      {"payload_offset unaligned", OFF(payload_offset), 8, P + 8, SHL_E_BAD_HEADER},
      {"payload_offset 0 (over header)", OFF(payload_offset), 8, 0, SHL_E_BAD_HEADER},
      {"payload_offset past end", OFF(payload_offset), 8, T, SHL_E_BAD_HEADER},
      {"payload_offset wraps", OFF(payload_offset), 8, U64 & ~(uint64_t)4095, SHL_E_BAD_HEADER},
      {"payload_size past end", OFF(payload_size), 8, T - P + 1, SHL_E_BAD_HEADER},
      {"payload_size max", OFF(payload_size), 8, U64, SHL_E_BAD_HEADER},
      {"payload_size below shape", OFF(payload_size), 8, S / 2, SHL_E_BAD_SHAPE},
      {"format_offset past end", OFF(format_offset), 8, T, SHL_E_BAD_HEADER},
      {"format_offset in header", OFF(format_offset), 8, 16, SHL_E_BAD_HEADER},
      {"format_offset in payload", OFF(format_offset), 8, P, SHL_E_BAD_HEADER},
      {"format_offset wraps", OFF(format_offset), 8, U64 - 1, SHL_E_BAD_HEADER},
      {"format_len into payload", OFF(format_len), 4, P - h.format_offset, SHL_E_BAD_HEADER},
      {"format_len above max", OFF(format_len), 4, SHL_FORMAT_MAX + 1, SHL_E_BAD_HEADER},
      {"format_len max", OFF(format_len), 4, UINT32_MAX, SHL_E_BAD_HEADER},
      {"ndim 9", OFF(ndim), 4, SHL_MAX_NDIM + 1, SHL_E_BAD_SHAPE},
      {"ndim max", OFF(ndim), 4, UINT32_MAX, SHL_E_BAD_SHAPE},
      {"itemsize 4 for <d", OFF(itemsize), 8, 4, SHL_E_ITEMSIZE},
      {"itemsize 0", OFF(itemsize), 8, 0, SHL_E_ITEMSIZE},
      {"itemsize max", OFF(itemsize), 8, U64, SHL_E_ITEMSIZE},
      {"kind 0", OFF(kind), 4, 0, SHL_E_BAD_KIND},
      {"kind 99", OFF(kind), 4, 99, SHL_E_BAD_KIND},
      {"ext_size without ext area", OFF(ext_size), 8, 64, SHL_E_BAD_HEADER},
      {"ext_size max", OFF(ext_size), 8, U64, SHL_E_BAD_HEADER},
      /* Products overflow uint64 (shape[0] * 1024 * 8, or shape[1] alone * 8). */
      {"shape overflow", SH0, 8, UINT64_C(1) << 61, SHL_E_BAD_SHAPE},
      {"shape max", SH1, 8, U64, SHL_E_BAD_SHAPE},
      {"shape exceeds payload", SH0, 8, 5, SHL_E_BAD_SHAPE},
      {"stride past end", ST0, 8, 16384, SHL_E_BAD_STRIDES},
      {"stride negative", ST0, 8, (uint64_t)-8192, SHL_E_BAD_STRIDES},
      {"inner stride negative", ST1, 8, (uint64_t)-8, SHL_E_BAD_STRIDES},
      {"stride overflows", ST0, 8, (uint64_t)INT64_MAX, SHL_E_BAD_STRIDES},
      {"stride most negative", ST0, 8, (uint64_t)INT64_MIN, SHL_E_BAD_STRIDES},
      /* Fields no opener validates: damage there must not stop an open. */
      {"change counter", OFF(changes), 8, 12345, 0},
      {"creator_pid -1", OFF(creator_pid), 4, UINT32_MAX, 0},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const struct field_case *c = &cases[i];
    int fd = fresh_segment(NULL);
    poke(fd, c->off, c->width, c->value);
    close(fd);
    expect_open(seg_name, c->want, c->what);
  }
}

/* A stream's area moved off its 64-byte alignment: its atomics (and futex
 * words) would be misaligned, undefined behaviour and a futex EINVAL. Found
 * by fuzz/fuzz_header.c. */
static void test_stream_area(void) {
  shl_writer *w = NULL;
  shl_layout frame = {.format = "<I", .ndim = 1, .shape = {4}};
  shl_unlink(seg_name);
  T_REQUIRE(shl_writer_open(&w, seg_name, &frame, NULL) == 0);
  shl_writer_close(w);
  char path[T_PATH_MAX];
  int fd = open(t_shm_path(seg_name, path), O_RDWR | O_CLOEXEC);
  T_REQUIRE(fd >= 0);
  struct shl__header h;
  T_REQUIRE(pread(fd, &h, sizeof h, 0) == (ssize_t)sizeof h);
  T_REQUIRE(h.ext_size && h.ext_offset % 64 == 0 &&
            h.ext_offset + h.ext_size + 64 <= h.payload_offset);
  close(fd);
  expect_open(seg_name, 0, "stream, intact");
  static const uint64_t shifts[] = {8, 4, 1, 63};
  for (size_t i = 0; i < sizeof shifts / sizeof shifts[0]; i++) {
    fd = open(path, O_RDWR | O_CLOEXEC);
    T_REQUIRE(fd >= 0);
    poke(fd, OFF(ext_offset), 8, h.ext_offset + shifts[i]);
    close(fd);
    expect_open(seg_name, SHL_E_BAD_HEADER, "stream ext_offset unaligned");
  }
  shl_unlink(seg_name);
}

struct format_case {
  const char *what;
  const char *bytes; /* written at format_offset */
  size_t nbytes;
  uint32_t len; /* new format_len */
  int want;
};

/* The format string: its bytes (and the length field that frames them). */
static void test_format_area(void) {
  static const struct format_case cases[] = {
      {"format not NUL-terminated", "<dx", 3, 2, SHL_E_BAD_FORMAT},
      {"format NUL inside", "<\0d", 4, 3, SHL_E_BAD_FORMAT},
      {"format unknown code", "<z", 3, 2, SHL_E_BAD_FORMAT},
      {"format unterminated struct", "T{<d:x:", 8, 7, SHL_E_BAD_FORMAT},
      {"format pointer code", "O", 2, 1, SHL_E_BAD_FORMAT},
      {"format size 4 for itemsize 8", "<f", 3, 2, SHL_E_ITEMSIZE},
      {"format size 16 for itemsize 8", "T{<d:a:<d:b:}", 14, 13, SHL_E_ITEMSIZE},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const struct format_case *c = &cases[i];
    struct shl__header h;
    int fd = fresh_segment(&h);
    write_at(fd, h.format_offset, c->bytes, c->nbytes);
    poke(fd, OFF(format_len), 4, c->len);
    close(fd);
    expect_open(seg_name, c->want, c->what);
  }
}

/* ---------------------------------------------------------------- truncation */

static void test_truncated(void) {
  struct shl__header h;
  close(fresh_segment(&h));
  const uint64_t T = h.total_size, P = h.payload_offset, S = h.payload_size;
  /* Sizes keep the first 8 bytes, so the magic still says "ours": a file
   * cut short is TRUNCATED, even when the header itself is cut. Only a
   * zero-length file is a creator that has not sized it yet. */
  const struct {
    const char *what;
    uint64_t size;
    int want;
  } cases[] = {
      {"size 0", 0, SHL_E_NOT_READY}, /* maybe a creator about to take its role */
      {"size 100", 100, SHL_E_TRUNCATED},
      {"header minus 1", SHL__HEADER_SIZE - 1, SHL_E_TRUNCATED},
      {"no payload", P, SHL_E_TRUNCATED},
      {"half the payload", P + S / 2, SHL_E_TRUNCATED},
      {"last byte missing", T - 1, SHL_E_TRUNCATED},
      /* Larger than the header says is fine: only smaller is truncation. */
      {"grown by 1 GiB", T + (UINT64_C(1) << 30), 0},
      {"grown to 1 PiB", UINT64_C(1) << 50, 0},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    int fd = fresh_segment(NULL);
    int sized = ftruncate(fd, (off_t)cases[i].size);
    close(fd);
    T_REQUIRE_SIZED(sized, cases[i].what);
    expect_open(seg_name, cases[i].want, cases[i].what);
  }

  /* Cut short and not ours: the magic decides. */
  int fd = fresh_segment(NULL);
  T_REQUIRE(ftruncate(fd, 100) == 0);
  poke(fd, OFF(magic), 8, 0x1122334455667788u);
  close(fd);
  expect_open(seg_name, SHL_E_NOT_SHMLANE, "size 100, magic garbled");
}

/* ---------------------------------------------------------------- foreign files */

/* An empty regular file where a segment would be. */
static int foreign_file(void) {
  char path[T_PATH_MAX];
  shl_unlink(seg_name);
  int fd = open(t_shm_path(seg_name, path), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  T_REQUIRE(fd >= 0);
  return fd;
}

static void fill(int fd, size_t size, uint8_t byte, bool random) {
  unsigned char buf[8192];
  uint64_t x = 0x9E3779B97F4A7C15u; /* xorshift: the same "random" bytes every run */
  T_REQUIRE(size <= sizeof buf);
  for (size_t i = 0; i < size; i++) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    buf[i] = random ? (uint8_t)x : byte;
  }
  write_at(fd, 0, buf, size);
}

static void fill_text(int fd, size_t size) {
  static const char line[] = "This is a plain text file, not a shared-memory segment.\n";
  for (size_t off = 0; off < size; off += sizeof line - 1)
    write_at(fd, off, line, size - off < sizeof line - 1 ? size - off : sizeof line - 1);
}

static void test_foreign(void) {
  int fd = foreign_file();
  fill(fd, 8192, 0, true);
  close(fd);
  expect_open(seg_name, SHL_E_NOT_SHMLANE, "random bytes");

  fd = foreign_file();
  fill_text(fd, 4000);
  close(fd);
  expect_open(seg_name, SHL_E_NOT_SHMLANE, "text file");

  fd = foreign_file();
  fill_text(fd, 12);
  close(fd);
  expect_open(seg_name, SHL_E_NOT_SHMLANE, "short text file");

  fd = foreign_file();
  fill(fd, 8192, 0xFF, false);
  close(fd);
  expect_open(seg_name, SHL_E_NOT_SHMLANE, "all 0xFF");

  /* Magic, version and READY but nothing else: total_size 0 is out of bounds. */
  fd = foreign_file();
  fill(fd, 4096, 0, false);
  write_at(fd, OFF(magic), SHL__MAGIC, sizeof SHL__MAGIC);
  poke(fd, OFF(format_version), 4, SHL__FORMAT_VERSION);
  poke(fd, OFF(header_size), 4, SHL__HEADER_SIZE);
  poke(fd, OFF(state), 4, SHL__STATE_READY);
  close(fd);
  expect_open(seg_name, SHL_E_BAD_HEADER, "bare magic header");

  /* Huge sparse files: an opener must not read (or fault in) the whole
   * thing, nor need address space for it (1 PiB is more than a process
   * gets). Its first bytes decide, as for any other file. */
  static const struct {
    const char *what;
    int shift;
    bool foreign_head;
    int want;
  } huge[] = {
      {"1 TiB sparse, foreign head", 40, true, SHL_E_NOT_SHMLANE},
      {"1 PiB sparse, foreign head", 50, true, SHL_E_NOT_SHMLANE},
      /* All zero reads as a creator that has sized the file but not written
       * it yet; nobody holds the creator role, so that creator is dead. */
      {"1 TiB sparse, all zero", 40, false, SHL_E_CREATOR_DEAD},
      {"1 PiB sparse, all zero", 50, false, SHL_E_CREATOR_DEAD},
  };
  for (size_t i = 0; i < sizeof huge / sizeof huge[0]; i++) {
    fd = foreign_file();
    if (huge[i].foreign_head) write_at(fd, 0, "GARBAGE!", 8);
    int sized = ftruncate(fd, (off_t)1 << huge[i].shift);
    close(fd);
    T_REQUIRE_SIZED(sized, huge[i].what);
    expect_open(seg_name, huge[i].want, huge[i].what);
  }

  /* Not regular files at all: an error, no crash, no hang (the child's
   * alarm). A directory cannot even be opened for writing. */
  char path[T_PATH_MAX];
  shl_unlink(seg_name);
  T_REQUIRE(mkdir(t_shm_path(seg_name, path), 0700) == 0);
  expect_open(seg_name, ANY_ERROR, "directory");
  T_CHECK(rmdir(path) == 0);
  T_REQUIRE(mkfifo(path, 0600) == 0);
  expect_open(seg_name, SHL_E_NOT_SHMLANE, "fifo");
  T_CHECK(unlink(path) == 0);
}

/* ---------------------------------------------------------------- messages */

/* Every library code met above has its own non-empty message and name. */
static void test_messages(void) {
  T_CHECK(nseen >= 10);
  for (int i = 0; i < nseen; i++) {
    const char *msg = shl_strerror(seen[i]);
    T_CHECK(msg && msg[0] && strcmp(msg, "unknown error") != 0);
    T_CHECK(strncmp(shl_err_name(seen[i]), "SHL_E_", 6) == 0);
    for (int j = 0; j < i; j++) T_CHECK(strcmp(msg, shl_strerror(seen[j])) != 0);
  }
}

int main(void) {
  seg_name = t_name("cor");
  t_unlink_at_exit(seg_name);
  test_header_fields();
  test_format_area();
  test_stream_area();
  test_truncated();
  test_foreign();
  test_messages();
  shl_unlink(seg_name);
  return t_result();
}
