/* What the library tells its callers about a format: the walk of its
 * fields, its canonical form, NumPy's type strings as formats, and the
 * extent of an array layout. In expected texts '=' stands for this
 * machine's byte order. */
#include "testutil.h"

#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define NATIVE '<'
#else
#define NATIVE '>'
#endif

/* `want` with '=' made this machine's order. */
static const char *native(const char *want) {
  static char buf[512];
  snprintf(buf, sizeof buf, "%s", want);
  for (char *p = buf; *p; p++)
    if (*p == '=') *p = NATIVE;
  return buf;
}

/* The walk as text: "depth order code (shape) @offset itemsize name;" per field. */
struct text {
  char buf[1024];
  size_t len;
  int calls, stop_at;
};

static int add_text(const shl_format_field *f, void *arg) {
  struct text *t = arg;
  T_CHECK(f->size == sizeof *f);
  if (++t->calls == t->stop_at) return -42;
  size_t room = sizeof t->buf - t->len;
  t->len += (size_t)snprintf(t->buf + t->len, room, "%u %c%s (", f->depth, f->byte_order, f->code);
  for (uint32_t i = 0; i < f->ndim; i++)
    t->len += (size_t)snprintf(t->buf + t->len, sizeof t->buf - t->len, "%s%llu", i ? "," : "",
                               (unsigned long long)f->shape[i]);
  t->len += (size_t)snprintf(t->buf + t->len, sizeof t->buf - t->len, ") @%llu %llu %.*s;",
                             (unsigned long long)f->offset, (unsigned long long)f->itemsize,
                             f->name ? (int)f->name_len : 1, f->name ? f->name : "-");
  return 0;
}

static const struct {
  const char *format, *walk;
} walks[] = {
    {"<d", "0 <d () @0 8 -;"},
    {"T{<Q:frame:(2)<d:xy:<B:flag:3xT{<h:a:2x(3)<f:b:}:inner:4x}",
     "0 =T () @0 48 -;1 <Q () @0 8 frame;1 <d (2) @8 8 xy;1 <B () @24 1 flag;"
     "1 <T () @28 16 inner;2 <h () @0 2 a;2 <f (3) @4 4 b;1 <} () @28 16 inner;0 =} () @0 48 -;"},
    /* C's char arrays are one string, however written. */
    {"(8)1s", "0 =s () @0 8 -;"},
    {"(8)s", "0 =s () @0 8 -;"},
    {"8c", "0 =s () @0 8 -;"},
    {"T{<I:id:(8)<c:dev:}", "0 =T () @0 12 -;1 <I () @0 4 id;1 <s () @4 8 dev;0 =} () @0 12 -;"},
    {"(2,8)1s:names:", "0 =s (2) @0 8 names;"},
    {"(2)4s", "0 =s (2) @0 4 -;"},
    {"10s", "0 =s () @0 10 -;"},
    {"(3)w", "0 =w () @0 12 -;"},
    {">2w", "0 >w () @0 8 -;"},
    /* Counts and sub-arrays are shapes; padding is not reported. */
    {"3d", "0 =d (3) @0 8 -;"},
    {"(2)3d", "0 =d (2,3) @0 8 -;"},
    {"<x2xi:v:", "0 <i () @3 4 v;"},
    {"@bd", "0 =b () @0 1 -;0 =d () @8 8 -;"},
    {"^bd", "0 =b () @0 1 -;0 =d () @1 8 -;"},
    {"<i>i!i=i", "0 <i () @0 4 -;0 >i () @4 4 -;0 >i () @8 4 -;0 =i () @12 4 -;"},
    {"<Zd", "0 <Zd () @0 16 -;"},
    {"(2)T{<B:a:}:s:", "0 =T (2) @0 1 s;1 <B () @0 1 a;0 =} (2) @0 1 s;"},
    {"0dB", "0 =d (0) @0 8 -;0 =B () @0 1 -;"},
};

static void check_walks(void) {
  for (size_t i = 0; i < sizeof walks / sizeof walks[0]; i++) {
    struct text t = {.stop_at = -1};
    int64_t itemsize = shl_format_walk(walks[i].format, add_text, &t, NULL);
    const char *want = native(walks[i].walk);
    if (itemsize != shl_format_itemsize(walks[i].format) || strcmp(t.buf, want) != 0) {
      fprintf(stderr, "walk %s (%lld):\n  got  %s\n  want %s\n", walks[i].format,
              (long long)itemsize, t.buf, want);
      t_failures++;
    }
  }
}

static void check_walk_errors(void) {
  char many[SHL_FORMAT_MAX_FIELDS + 2] = "";
  memset(many, 'B', SHL_FORMAT_MAX_FIELDS + 1);
  struct text t = {.stop_at = -1};
  shl_format_info info = SHL_FORMAT_INFO_INIT;
  /* A refused format is refused before fn sees any of it. */
  T_EXPECT_RC(shl_format_walk(many, add_text, &t, &info), SHL_E_BAD_FORMAT);
  T_CHECK(t.calls == 0 && info.items == SHL_FORMAT_MAX_FIELDS + 1 && info.itemsize == 0);
  T_EXPECT_RC(shl_format_walk("T{<d:x:", add_text, &t, &info), SHL_E_BAD_FORMAT);
  T_CHECK(t.calls == 0 && info.stopped_at == 7);
  T_EXPECT_RC(shl_format_walk("<dz", NULL, NULL, &info), SHL_E_BAD_FORMAT);
  T_CHECK(info.stopped_at == 3);
  T_EXPECT_RC(shl_format_walk(NULL, NULL, NULL, NULL), SHL_E_BAD_FORMAT);
  /* fn stops the walk with its code. */
  t.stop_at = 2;
  T_EXPECT_RC(shl_format_walk("<ddd", add_text, &t, NULL), -42);
  T_CHECK(t.calls == 2);
  /* info is a growable struct: filled as far as its size reaches. */
  info = (shl_format_info){.size = 8, .stopped_at = 99};
  T_EXPECT_RC(shl_format_walk("<ddd", NULL, NULL, &info), 24);
  T_CHECK(info.items == 3 && info.stopped_at == 99);
  info = (shl_format_info)SHL_FORMAT_INFO_INIT;
  T_EXPECT_RC(shl_format_walk("<ddd", NULL, NULL, &info), 24);
  T_CHECK(info.items == 3 && info.itemsize == 24 && info.stopped_at == 0);
  info.size = 2;
  T_EXPECT_RC(shl_format_walk("<d", NULL, NULL, &info), -EINVAL);
  /* More dimensions than a field holds: a valid format the walk cannot report. */
  char dims[3 * SHL_FORMAT_MAX_DIMS + 8] = "(";
  for (int i = 0; i < SHL_FORMAT_MAX_DIMS; i++) strcat(dims, i ? ",1" : "1");
  strcat(dims, ")B");
  t = (struct text){.stop_at = -1};
  T_EXPECT_RC(shl_format_walk(dims, add_text, &t, NULL), 1);
  T_CHECK(t.calls == 1);
  memcpy(dims + strlen(dims) - 2, ",1)B", 5);
  T_EXPECT_RC(shl_format_itemsize(dims), 1);
  T_EXPECT_RC(shl_format_walk(dims, add_text, &t, NULL), -EOVERFLOW);
  T_CHECK(t.calls == 1);
}

static const struct {
  const char *format, *canonical;
} canon[] = {
    {"<d", "<d"},
    {"d", "=d"},
    {"B", "B"},
    {"?", "?"},
    {"T{b:a:d:b:}", "T{b:a:7x=d:b:}"},
    {"T{<Q:frame:(64)<c:source:}", "T{<Q:frame:64s:source:}"},
    {"T{<Q:frame:(2)<d:xy:<B:flag:3xT{<h:a:2x(3)<f:b:}:inner:4x}",
     "T{<Q:frame:(2)<d:xy:B:flag:3xT{<h:a:2x(3)<f:b:}:inner:4x}"},
    {"(8)1s", "8s"},
    {"(2,8)1s", "(2)8s"},
    {"ib", "=ib"},
    {"@bd", "b7x=d"},
    {"^bd", "b=d"},
    {"3d", "(3)=d"},
    {"4w", "=4w"},
    {"<l", "<i"},
    {"=Zf", "=Zf"},
    {"2x<d", "2x<d"},
    {" T{ <i:x: <d:y: } ", "T{<i:x:<d:y:}"},
    {"<dx", "<dx"},
    {"T{<d:a:B:b:}", "T{<d:a:B:b:}"},
};

static void check_canonical(void) {
  char out[512], again[512];
  for (size_t i = 0; i < sizeof canon / sizeof canon[0]; i++) {
    int64_t len = shl_format_canonical(canon[i].format, out, sizeof out);
    const char *want = native(canon[i].canonical);
    if (len < 0 || strcmp(out, want) != 0) {
      fprintf(stderr, "canonical %s: got %s (%lld), want %s\n", canon[i].format,
              len < 0 ? "-" : out, (long long)len, want);
      t_failures++;
      continue;
    }
    /* The same bytes, and canonical already. */
    T_CHECK(len == (int64_t)strlen(out));
    T_CHECK(shl_format_canonical(canon[i].format, NULL, 0) == len);
    T_CHECK(shl_format_itemsize(out) == shl_format_itemsize(canon[i].format));
    T_CHECK(shl_format_canonical(out, again, sizeof again) == len && !strcmp(again, out));
  }
  T_EXPECT_RC(shl_format_canonical("T{<i:x:}", out, 8), -ERANGE);
  T_EXPECT_RC(shl_format_canonical("T{<i:x:}", out, 9), 8);
  T_EXPECT_RC(shl_format_canonical("T{", out, sizeof out), SHL_E_BAD_FORMAT);
}

static void check_typestr(void) {
  static const struct {
    const char *typestr, *format;
  } good[] = {
      {"f8", "=d"},    {"<f8", "<d"},   {">i4", ">i"}, {"|u1", "B"},   {"u1", "B"},
      {"i1", "b"},     {"b1", "?"},     {"|b1", "?"},  {"?", "?"},     {"=f4", "=f"},
      {"f2", "=e"},    {"<u2", "<H"},   {"i8", "=q"},  {">u8", ">Q"},  {"c8", "=Zf"},
      {"<c16", "<Zd"}, {"|S16", "16s"}, {"S7", "7s"},  {"<U3", "<3w"}, {">U1", ">1w"},
  };
  static const char *const bad[] = {"f16", "<M8[s]", "|O", "V8", "S0", "i3", "f8x", "", "<", "u",
                                    "S", "U", "i-1", "f 8", "b2", "Zf", "d",
                                    /* counts whose bytes overflow 64 bits */
                                    "S18446744073709551615", "<U4611686018427387904"};
  char out[32];
  for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
    int rc = shl_format_from_typestr(good[i].typestr, out, sizeof out);
    const char *want = native(good[i].format);
    if (rc < 0 || strcmp(out, want) != 0) {
      fprintf(stderr, "typestr %s: got %s (%d), want %s\n", good[i].typestr, rc < 0 ? "-" : out, rc,
              want);
      t_failures++;
    }
    T_CHECK(rc < 0 || shl_format_from_typestr(good[i].typestr, NULL, 0) == rc);
  }
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    int rc = shl_format_from_typestr(bad[i], out, sizeof out);
    if (rc != SHL_E_BAD_FORMAT) fprintf(stderr, "typestr \"%s\" accepted (%d)\n", bad[i], rc);
    T_CHECK(rc == SHL_E_BAD_FORMAT);
  }
  T_EXPECT_RC(shl_format_from_typestr(NULL, out, sizeof out), SHL_E_BAD_FORMAT);
  T_EXPECT_RC(shl_format_from_typestr("<f8", out, 2), -ERANGE);
  T_EXPECT_RC(shl_format_from_typestr("<f8", out, 3), 2);
}

static void check_extent(void) {
  static const struct {
    shl_layout layout;
    int rc;
    uint64_t extent;
  } cases[] = {
      {{.format = "<d", .ndim = 2, .shape = {3, 4}}, 0, 96},
      {{.format = "<f", .ndim = 2, .shape = {3, 5}, .strides = {4, 12}}, 0, 60}, /* Fortran */
      {{.format = "B", .ndim = 2, .shape = {4, 3}, .strides = {0, 1}}, 0, 3},    /* broadcast */
      {{.format = "<d", .ndim = 2, .shape = {3, 0}}, 0, 0},                      /* empty */
      {{.format = "T{<i:x:<d:y:}"}, 0, 12},
      {{.format = "<d", .itemsize = 4, .ndim = 1, .shape = {3}}, SHL_E_ITEMSIZE, 0},
      {{.format = "T{", .ndim = 1, .shape = {3}}, SHL_E_BAD_FORMAT, 0},
      {{.format = "B", .ndim = 1, .shape = {4}, .strides = {-1}}, SHL_E_BAD_STRIDES, 0},
      {{.format = "<d", .ndim = 2, .shape = {1ull << 40, 1ull << 40}}, SHL_E_BAD_SHAPE, 0},
      {{.format = "B", .ndim = SHL_MAX_NDIM + 1}, SHL_E_BAD_SHAPE, 0},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    uint64_t extent = 77;
    T_EXPECT_RC(shl_layout_extent(&cases[i].layout, &extent), cases[i].rc);
    T_CHECK(extent == (cases[i].rc ? 77 : cases[i].extent));
  }
  uint64_t extent;
  T_EXPECT_RC(shl_layout_extent(NULL, &extent), -EINVAL);
  T_EXPECT_RC(shl_layout_extent(&cases[0].layout, NULL), -EINVAL);
}

int main(void) {
  check_walks();
  check_walk_errors();
  check_canonical();
  check_typestr();
  check_extent();
  return t_result();
}
