/* The element-format parser: sizes of well-formed formats, rejection of
 * malformed ones, and the itemsize/shape checks done at create time. */
#include <ctype.h>
#include <locale.h>

#include "internal.h"
#include "testutil.h"

static const struct {
  const char *format;
  int64_t itemsize;
} good[] = {
    {"B", 1},
    {"<d", 8},
    {">i", 4},
    {"=q", 8},
    {"!H", 2},
    {"<e", 2},
    {"?", 1},
    {"<Zd", 16},
    {"<Zf", 8},
    {"10s", 10},
    {"3x", 3},
    {"<3d", 24},
    {"<(2,3)f", 24},
    {"(3)<f", 12},
    {"(8)1s", 8},       /* NumPy: eight 1-byte strings (ctypes c_char * 8) */
    {"(2,2)4s", 16},
    {"(2)3d", 48},
    {"T{<i:x:<d:y:}", 12},
    {"T{<i:x:4x<d:y:}", 16},
    {"T{<d:x:<d:y:}", 16},
    {" T{ <i:x: <d:y: } ", 12},
    /* A ctypes-style structure with nested struct, sub-arrays and explicit padding. */
    {"T{<Q:frame:(2)<d:xy:<B:flag:3xT{<h:a:2x(3)<f:b:}:inner:4x}", 48},
    {"T{>I:be:<I:le:}", 8},
    {"T{<B:a:T{<B:b:T{<B:c:}:n2:}:n1:}", 3},
    {"@i", (int64_t)sizeof(int)},
    {"@bi", 2 * (int64_t)sizeof(int)}, /* native mode aligns */
    {"T{d:a:B:b:}", 2 * (int64_t)sizeof(double)}, /* and pads structs like C */
    {"T{<d:a:B:b:}", 9},                          /* standard mode does neither */
    {"<bi", 5},                        /* standard mode does not */
    {"4w", 16},
    {"^bd", 9},                           /* '^': native sizes, no alignment (PEP 3118) */
    {"^bi", 1 + (int64_t)sizeof(int)},
    {"T{^b:a:T{d:b:}:n:}", 1 + 8},         /* nor within a nested struct it governs */
};

static const char *const bad[] = {
    "", "<", "T{", "T{<d:x:", "T{<d:x:}}", "}", "<dz", "O", "&d", "Zq", "<(2,3", "(2,)d",
    "()d", "(a)d", "T<d", "<d:", "<d::", "<d:x", "<n", "<P", "18446744073709551616B",
    "9223372036854775807d", "(4294967296,4294967296)d", "0x",
    "4>0d", "4<d", "2!h", /* a bare count takes no byte order (struct agrees) */
};

static void check_deep_nesting(void) {
  char fmt[512] = "";
  for (int i = 0; i < 40; i++) strcat(fmt, "T{");
  strcat(fmt, "B");
  for (int i = 0; i < 40; i++) strcat(fmt, "}");
  T_EXPECT_RC(shl_format_itemsize(fmt), SHL_E_BAD_FORMAT);
}

/* Items are bounded at every depth, so no reader's parse grows without bound. */
static void check_item_limit(void) {
  enum { MAX = SHL_FORMAT_MAX_FIELDS };
  char flat[MAX + 2] = "", nested[MAX + 4] = "T{";
  memset(flat, 'B', MAX);
  T_EXPECT_RC(shl_format_itemsize(flat), MAX);
  flat[MAX] = 'B';
  T_EXPECT_RC(shl_format_itemsize(flat), SHL_E_BAD_FORMAT);
  /* The struct counts too: T{ with max - 1 items } is max items, one more is not. */
  memset(nested + 2, 'B', MAX - 1);
  strcat(nested, "}");
  T_EXPECT_RC(shl_format_itemsize(nested), MAX - 1);
  strcpy(nested + 2 + MAX - 1, "B}");
  T_EXPECT_RC(shl_format_itemsize(nested), SHL_E_BAD_FORMAT);
  /* A count or a sub-array is one item, whatever it multiplies. */
  T_EXPECT_RC(shl_format_itemsize("(4096)B"), 4096);
}

static void check_create_layouts(void) {
  shl_segment *seg = NULL;
  const char *name = t_name("fmt");
  shl_layout mismatch = {.format = "<d", .itemsize = 4, .ndim = 1, .shape = {3}};
  T_EXPECT_RC(shl_create(&seg, name, &mismatch, NULL), SHL_E_ITEMSIZE);
  shl_layout malformed = {.format = "T{<d:x:", .ndim = 0};
  T_EXPECT_RC(shl_create(&seg, name, &malformed, NULL), SHL_E_BAD_FORMAT);
  shl_layout too_many = {.format = "B", .ndim = SHL_MAX_NDIM + 1};
  T_EXPECT_RC(shl_create(&seg, name, &too_many, NULL), SHL_E_BAD_SHAPE);
  shl_layout huge = {.format = "<d", .ndim = 2, .shape = {1ull << 40, 1ull << 40}};
  T_EXPECT_RC(shl_create(&seg, name, &huge, NULL), SHL_E_BAD_SHAPE);
  shl_layout negative = {.format = "B", .ndim = 1, .shape = {4}, .strides = {-1}};
  T_EXPECT_RC(shl_create(&seg, name, &negative, NULL), SHL_E_BAD_STRIDES);
  T_EXPECT_RC(shl_create(&seg, name, NULL, NULL), -EINVAL);
  T_CHECK(seg == NULL);
  T_EXPECT_RC(shl_unlink(name), -ENOENT); /* nothing was left behind */

  /* Fortran order: strides given explicitly, payload sized to the extent. */
  shl_layout fortran = {.format = "<f", .ndim = 2, .shape = {3, 5}, .strides = {4, 12}};
  T_EXPECT_RC(shl_create(&seg, name, &fortran, NULL), 0);
  if (seg) {
    shl_layout got;
    shl_get_layout(seg, &got);
    T_CHECK(got.itemsize == 4 && got.strides[0] == 4 && got.strides[1] == 12);
    T_CHECK(shl_payload_size(seg) == 60);
    T_CHECK(shl_kind(seg) == SHL_KIND_ARRAY);
    shl_close(seg);
  }
  shl_unlink(name);
}

/* The grammar is ASCII whatever the process's locale: under Latin-1, where
 * 0xE9 is printable, a name holding it was accepted (and Python's UTF-8
 * decoding of the header then failed). Skipped where no Latin-1 locale
 * can be made. */
static void check_locale(void) {
  char dir[] = "/tmp/shl-locale-XXXXXX", cmd[128];
  T_REQUIRE(mkdtemp(dir) != NULL);
  snprintf(cmd, sizeof cmd, "localedef -i en_US -f ISO-8859-1 %s/latin1 >/dev/null 2>&1", dir);
  int made = system(cmd);
  setenv("LOCPATH", dir, 1);
  if (made == 0 && setlocale(LC_CTYPE, "latin1") && isprint(0xE9)) {
    T_CHECK(shl_format_itemsize("T{b:caf\xe9:}") == SHL_E_BAD_FORMAT);
    T_CHECK(shl_format_itemsize("\xa0" "b") == SHL_E_BAD_FORMAT);
    T_CHECK(shl_format_itemsize("T{b:cafe:}") == 1);
  } else {
    fprintf(stderr, "skip: no Latin-1 locale here (localedef)\n");
  }
  setlocale(LC_CTYPE, "C");
  unsetenv("LOCPATH");
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  T_CHECK(system(cmd) == 0);
}

int main(void) {
  for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
    int64_t got = shl_format_itemsize(good[i].format);
    if (got != good[i].itemsize)
      fprintf(stderr, "format %s: itemsize %lld, want %lld\n", good[i].format, (long long)got,
              (long long)good[i].itemsize);
    T_CHECK(got == good[i].itemsize);
  }
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    int64_t got = shl_format_itemsize(bad[i]);
    if (got != SHL_E_BAD_FORMAT) fprintf(stderr, "format \"%s\" accepted (%lld)\n", bad[i], (long long)got);
    T_CHECK(got == SHL_E_BAD_FORMAT);
  }
  T_EXPECT_RC(shl_format_itemsize(NULL), SHL_E_BAD_FORMAT);
  /* The parser honours its length bound: no read past it. */
  T_CHECK(shl__format_parse("<dXXXX", 2) == 8);
  T_CHECK(shl__format_parse("<d\0d", 4) == SHL_E_BAD_FORMAT);
  check_deep_nesting();
  check_item_limit();
  check_create_layouts();
  check_locale();
  return t_result();
}
