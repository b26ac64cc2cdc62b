/* Element formats (PEP 3118 / struct module): the one parser of the grammar.
 * Everything that reads a format (the itemsize, the walk every binding and
 * tool builds its types from, the canonical form) goes through parse_items.
 * It reads bytes another process controls: it is bounded in length, items,
 * depth and arithmetic, and never reads past `len`. */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

_Static_assert(SHL_FORMAT_MAX == 4095 && SHL_FORMAT_MAX_FIELDS == 256,
               "SHL_E_BAD_FORMAT's text in shmlane.h cites both limits");

#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define NATIVE_ORDER '<'
#else
#define NATIVE_ORDER '>'
#endif

/* Dimensions an item may collect before its string length is taken from
 * them: the walk reports at most SHL_FORMAT_MAX_DIMS. */
#define DIMS_HELD (SHL_FORMAT_MAX_DIMS + 2)

struct cursor {
  const char *start, *p, *end;
  uint32_t depth;
  unsigned items;
  bool too_many_dims; /* an item has more dimensions than a field reports */
  shl_format_fn fn;   /* NULL: measure only */
  void *arg;
  int stopped; /* what fn returned to stop the walk */
};

/* Sizes: '@' native, aligned; '^' native, unaligned; '=', '<', '>', '!'
 * standard, unaligned. The byte order is the bytes' order. */
enum size_mode { MODE_NATIVE, MODE_NATIVE_PACKED, MODE_STANDARD };
struct mode {
  enum size_mode sizes;
  char order; /* '<' or '>' */
};

static bool at_end(const struct cursor *c) { return c->p >= c->end; }

/* ASCII classes, not <ctype.h>'s: those follow the process's locale, in
 * which (Latin-1) a byte such as 0xE9 is printable, so one process would
 * accept a name that another, or a UTF-8 decoder, refuses. */
static bool is_space(char ch) { return ch == ' ' || (ch >= '\t' && ch <= '\r'); }
static bool is_digit(char ch) { return ch >= '0' && ch <= '9'; }
static bool is_print(char ch) { return ch >= ' ' && ch <= '~'; }

static void skip_space(struct cursor *c) {
  while (!at_end(c) && is_space(*c->p)) c->p++;
}

static bool mul_ok(uint64_t a, uint64_t b, uint64_t *out) {
  return !__builtin_mul_overflow(a, b, out);
}

/* Decimal count; false on overflow or no digits. */
static bool parse_count(struct cursor *c, uint64_t *out) {
  uint64_t v = 0;
  const char *start = c->p;
  while (!at_end(c) && is_digit(*c->p)) {
    if (!mul_ok(v, 10, &v) || __builtin_add_overflow(v, (uint64_t)(*c->p - '0'), &v))
      return false;
    c->p++;
  }
  *out = v;
  return c->p != start;
}

/* An item's dimensions as written, for the walk, and their product. */
struct dims {
  uint64_t n[DIMS_HELD];
  unsigned ndim;
  uint64_t count;
};

static bool add_dim(struct cursor *c, struct dims *d, uint64_t v) {
  if (d->ndim < DIMS_HELD)
    d->n[d->ndim++] = v;
  else
    c->too_many_dims = true;
  return mul_ok(d->count, v, &d->count);
}

/* "(2,3)" prefix. */
static bool parse_subarray(struct cursor *c, struct dims *d) {
  uint64_t dim;
  c->p++; /* '(' */
  for (;;) {
    skip_space(c);
    if (!parse_count(c, &dim) || !add_dim(c, d, dim)) return false;
    skip_space(c);
    if (at_end(c)) return false;
    if (*c->p == ')') {
      c->p++;
      return true;
    }
    if (*c->p++ != ',') return false;
  }
}

/* Size and alignment of one scalar code; false if unknown here. */
static bool scalar_size(char code, enum size_mode mode, uint64_t *size, uint64_t *align) {
  uint64_t std = 0, native = 0;
  switch (code) {
  case 'x': case 'c': case 'b': case 'B': case 's': case 'p': std = native = 1; break;
  case '?': std = 1; native = sizeof(_Bool); break;
  case 'h': case 'H': std = 2; native = sizeof(short); break;
  case 'e': std = native = 2; break;
  case 'u': std = native = 2; break; /* UCS-2 */
  case 'w': std = native = 4; break; /* UCS-4 */
  case 'i': case 'I': std = 4; native = sizeof(int); break;
  case 'l': case 'L': std = 4; native = sizeof(long); break;
  case 'q': case 'Q': std = 8; native = sizeof(long long); break;
  case 'f': std = native = 4; break;
  case 'd': std = native = 8; break;
  case 'g': std = native = sizeof(long double); break;
  case 'n': case 'N': native = sizeof(size_t); break; /* native only */
  case 'P': native = sizeof(void *); break;           /* native only */
  default: return false;
  }
  *size = mode == MODE_STANDARD ? std : native;
  *align = mode == MODE_NATIVE ? native : 1;
  return *size != 0;
}

/* ":name:" after an item. Names are printable and contain no ':'. */
static bool parse_field_name(struct cursor *c, shl_format_field *f) {
  skip_space(c);
  if (at_end(c) || *c->p != ':') return true;
  const char *start = ++c->p;
  while (!at_end(c) && *c->p != ':') {
    if (!is_print(*c->p)) return false;
    c->p++;
  }
  if (at_end(c) || c->p == start) return false;
  f->name = start;
  f->name_len = (uint32_t)(c->p - start);
  c->p++;
  return true;
}

static bool parse_items(struct cursor *c, struct mode mode, bool nested, uint64_t *size_out,
                        uint64_t *align_out);

static bool parse_byte_order(char ch, struct mode *mode) {
  if (!ch || !strchr("@=<>!^", ch)) return false;
  mode->sizes = ch == '@' ? MODE_NATIVE : ch == '^' ? MODE_NATIVE_PACKED : MODE_STANDARD;
  mode->order = ch == '<' ? '<' : ch == '>' || ch == '!' ? '>' : NATIVE_ORDER;
  return true;
}

/* Strings take their length from the last count written: "10s" is one
 * string of 10, "(2)4s" two of 4; 'c' is a one-byte string. */
static bool is_string(char code) { return code && strchr("spwuc", code); }

/* What the walk reports of an item whose dimensions, as written, are d
 * (the string length among them): its shape and the size of one item of
 * it. An array of one-character strings is one string, as C's char arrays
 * are: "(8)1s", "(8)s" and "8c" are one string of 8, "(2,1)s" one of 2. */
static void describe(struct cursor *c, shl_format_field *f, struct dims *d, bool counted,
                     char code, uint64_t size) {
  uint64_t length = 1;
  if (is_string(code) && code != 'c' && counted) length = d->ndim ? d->n[--d->ndim] : 1;
  while (is_string(code) && length == 1 && d->ndim) length = d->n[--d->ndim];
  if (d->ndim > SHL_FORMAT_MAX_DIMS) c->too_many_dims = true;
  f->ndim = d->ndim < SHL_FORMAT_MAX_DIMS ? d->ndim : SHL_FORMAT_MAX_DIMS;
  memcpy(f->shape, d->n, f->ndim * sizeof f->shape[0]);
  f->itemsize = size * length; /* cannot overflow: the item's bytes fit */
  f->code[0] = code == 'c' ? 's' : code;
}

static bool report(struct cursor *c, const shl_format_field *f) {
  int rc = c->fn(f, c->arg);
  if (rc < 0) c->stopped = rc;
  return rc >= 0;
}

/* A struct's fields, walked after its "T" was reported: the body is read a
 * second time, from `body`, with the item count it had there. */
static bool walk_struct(struct cursor *c, shl_format_field *f, struct mode mode,
                        const char *body, unsigned items) {
  const char *after = c->p;
  uint64_t size, align;
  c->p = body;
  c->items = items;
  c->depth++;
  if (!report(c, f) || !parse_items(c, mode, true, &size, &align)) return false;
  c->depth--;
  c->p = after;
  f->code[0] = '}';
  return report(c, f);
}

/* One item: [count | (dims) [count]] code [:name:]. Adds it at *offset and
 * reports it to c->fn. */
static bool parse_item(struct cursor *c, struct mode *modep, uint64_t *offset,
                       uint64_t *max_align) {
  struct dims d = {.count = 1};
  shl_format_field f = {.size = sizeof f, .depth = c->depth};
  uint64_t size, align, n;
  bool counted = false; /* a count follows the shape, or stands alone */
  if (++c->items > SHL_FORMAT_MAX_FIELDS) return false;
  if (*c->p == '(') {
    if (!parse_subarray(c, &d)) return false;
    skip_space(c);
    /* NumPy writes the byte order after a sub-array shape ("(3)<f"), and a
     * string's length too ("(8)1s": eight 1-byte strings, ctypes' c_char * 8).
     * A bare count takes neither: "4>0d" is not a format, as struct says. */
    while (!at_end(c) && parse_byte_order(*c->p, modep)) c->p++;
  }
  if (!at_end(c) && is_digit(*c->p)) {
    if (!parse_count(c, &n) || !add_dim(c, &d, n)) return false;
    counted = true;
  }
  struct mode mode = *modep;
  if (at_end(c)) return false;
  char code = *c->p++;
  const char *body = NULL;
  unsigned body_items = 0;
  if (code == 'T') {
    if (at_end(c) || *c->p++ != '{') return false;
    if (++c->depth > SHL_FORMAT_MAX_DEPTH) return false;
    /* Measured first: the walk reports a struct's offset and size before its fields. */
    shl_format_fn fn = c->fn;
    body = c->p;
    body_items = c->items;
    c->fn = NULL;
    bool ok = parse_items(c, mode, true, &size, &align);
    c->fn = fn;
    if (!ok) return false;
    c->depth--;
    /* A native struct is padded to its alignment, as a C compiler does. */
    if (mode.sizes == MODE_NATIVE && size % align &&
        __builtin_add_overflow(size, align - size % align, &size))
      return false;
  } else if (code == 'Z') {
    if (at_end(c) || !scalar_size(*c->p, mode.sizes, &size, &align) || !strchr("fdg", *c->p))
      return false;
    f.code[0] = 'Z';
    f.code[1] = *c->p++;
    size *= 2;
  } else if (!scalar_size(code, mode.sizes, &size, &align)) {
    return false; /* includes 'O' and '&': pointers mean nothing in another process */
  }
  /* "10s" is one 10-byte string, "3x" three pad bytes: count multiplies either way. */
  uint64_t bytes;
  if (!mul_ok(d.count, size, &bytes)) return false;
  if (code != 'x' && align > 1) {
    uint64_t rem = *offset % align;
    if (rem && __builtin_add_overflow(*offset, align - rem, offset)) return false;
  }
  f.offset = *offset;
  f.byte_order = mode.order;
  if (__builtin_add_overflow(*offset, bytes, offset)) return false;
  if (align > *max_align) *max_align = align;
  if (!parse_field_name(c, &f)) return false;
  if (code == 'x') return true; /* padding: the offsets show it */
  describe(c, &f, &d, counted, code, size);
  if (!c->fn) return true;
  return body ? walk_struct(c, &f, mode, body, body_items) : report(c, &f);
}

static bool parse_items(struct cursor *c, struct mode mode, bool nested, uint64_t *size_out,
                        uint64_t *align_out) {
  uint64_t offset = 0, max_align = 1;
  for (;;) {
    skip_space(c);
    if (at_end(c)) {
      if (nested) return false; /* unterminated T{ */
      break;
    }
    char ch = *c->p;
    if (ch == '}') {
      if (!nested) return false;
      c->p++;
      break;
    }
    if (parse_byte_order(ch, &mode)) {
      c->p++;
      continue;
    }
    if (!parse_item(c, &mode, &offset, &max_align)) return false;
  }
  *size_out = offset;
  *align_out = max_align;
  return true;
}

/* Parses format[0..len): its itemsize, or SHL_E_BAD_FORMAT (with *c where it stopped). */
static int64_t parse(struct cursor *c, const char *format, size_t len) {
  *c = (struct cursor){.start = format, .p = format, .end = format + len};
  if (!format || len == 0 || len > SHL_FORMAT_MAX || memchr(format, '\0', len))
    return SHL_E_BAD_FORMAT;
  uint64_t size, align;
  struct mode native = {MODE_NATIVE, NATIVE_ORDER};
  if (!parse_items(c, native, false, &size, &align)) return SHL_E_BAD_FORMAT;
  if (size == 0 || size > INT64_MAX) return SHL_E_BAD_FORMAT;
  return (int64_t)size;
}

int64_t shl__format_parse(const char *format, size_t len) {
  struct cursor c;
  return parse(&c, format, len);
}

int64_t shl_format_itemsize(const char *format) {
  if (!format) return SHL_E_BAD_FORMAT;
  return shl__format_parse(format, strnlen(format, SHL_FORMAT_MAX + 1));
}

int64_t shl_format_walk(const char *format, shl_format_fn fn, void *arg, shl_format_info *info) {
  uint32_t info_size = 0;
  if (info) memcpy(&info_size, info, sizeof info_size);
  if (info && info_size < sizeof info_size) return -EINVAL;
  struct cursor c;
  size_t len = format ? strnlen(format, SHL_FORMAT_MAX + 1) : 0;
  int64_t rc = parse(&c, format, len);
  if (info) {
    shl_format_info found = {.size = sizeof found, .items = c.items};
    if (rc > 0) found.itemsize = (uint64_t)rc;
    else found.stopped_at = (uint64_t)(c.p - c.start);
    shl__info_copy(info, &found, sizeof found);
  }
  if (rc < 0) return rc;
  if (c.too_many_dims) return -EOVERFLOW;
  if (!fn) return rc;
  /* Checked whole above; the walk itself can only be stopped by fn. */
  struct mode native = {MODE_NATIVE, NATIVE_ORDER};
  uint64_t size, align;
  c = (struct cursor){.start = format, .p = format, .end = format + len, .fn = fn, .arg = arg};
  if (!parse_items(&c, native, false, &size, &align)) return c.stopped;
  return rc;
}

/* ---------------------------------------------------------------- canonical form */

struct canon {
  char *out;
  size_t size;
  size_t len; /* what the form needs so far, without its NUL */
  uint64_t end[SHL_FORMAT_MAX_DEPTH + 2]; /* per depth: where its last item ended */
};

static void put(struct canon *k, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(struct canon *k, const char *fmt, ...) {
  char buf[64];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (k->out && k->len + (size_t)n < k->size) memcpy(k->out + k->len, buf, (size_t)n);
  k->len += (size_t)n;
}

static void put_bytes(struct canon *k, const char *s, size_t n) {
  if (k->out && k->len + n < k->size) memcpy(k->out + k->len, s, n);
  k->len += n;
}

static void pad_to(struct canon *k, uint64_t from, uint64_t to) {
  if (to == from + 1) put(k, "x");
  else if (to > from) put(k, "%llux", (unsigned long long)(to - from));
}

/* The standard-size code of an integer of `size` bytes. */
static char int_code(char code, uint64_t size) {
  bool is_unsigned = strchr("BHILQNP", code) != NULL;
  switch (size) {
  case 1: return is_unsigned ? 'B' : 'b';
  case 2: return is_unsigned ? 'H' : 'h';
  case 4: return is_unsigned ? 'I' : 'i';
  default: return is_unsigned ? 'Q' : 'q';
  }
}

static void put_type(struct canon *k, const shl_format_field *f) {
  char code = f->code[0];
  unsigned long long n = (unsigned long long)f->itemsize;
  if (code == 's' || code == 'p') {
    put(k, "%llu%c", n, code);
  } else if (code == 'w' || code == 'u') {
    put(k, "%c%llu%c", f->byte_order, n / (code == 'w' ? 4 : 2), code);
  } else if (code == 'Z' || strchr("?efdg", code)) {
    if (f->itemsize > 1) put(k, "%c", f->byte_order);
    put(k, "%s", f->code);
  } else {
    if (f->itemsize > 1) put(k, "%c", f->byte_order);
    put(k, "%c", int_code(code, f->itemsize));
  }
}

static uint64_t span(const shl_format_field *f) {
  uint64_t bytes = f->itemsize;
  for (uint32_t i = 0; i < f->ndim; i++) bytes *= f->shape[i]; /* fits: the format's do */
  return bytes;
}

static int canon_field(const shl_format_field *f, void *arg) {
  struct canon *k = arg;
  uint32_t d = f->depth;
  if (f->code[0] != '}') {
    pad_to(k, k->end[d], f->offset);
    if (f->ndim) {
      put(k, "(");
      for (uint32_t i = 0; i < f->ndim; i++)
        put(k, i ? ",%llu" : "%llu", (unsigned long long)f->shape[i]);
      put(k, ")");
    }
  }
  if (f->code[0] == 'T') {
    put(k, "T{");
    k->end[d + 1] = 0;
    return 0; /* its name follows its "}" */
  }
  if (f->code[0] == '}') {
    pad_to(k, k->end[d + 1], f->itemsize);
    put(k, "}");
  } else {
    put_type(k, f);
  }
  if (f->name) {
    put(k, ":");
    put_bytes(k, f->name, f->name_len);
    put(k, ":");
  }
  k->end[d] = f->offset + span(f);
  return 0;
}

int64_t shl_format_canonical(const char *format, char *out, size_t size) {
  struct canon k = {.out = out, .size = size};
  int64_t itemsize = shl_format_walk(format, canon_field, &k, NULL);
  if (itemsize < 0) return itemsize;
  pad_to(&k, k.end[0], (uint64_t)itemsize);
  if (!out) return (int64_t)k.len;
  if (k.len >= size) return -ERANGE;
  out[k.len] = '\0';
  return (int64_t)k.len;
}

/* ---------------------------------------------------------------- NumPy's type strings */

int shl_format_from_typestr(const char *typestr, char *format, size_t size) {
  static const struct {
    char kind;
    unsigned size;
    const char *code;
  } codes[] = {
      {'b', 1, "?"}, {'i', 1, "b"}, {'u', 1, "B"}, {'i', 2, "h"},  {'u', 2, "H"},
      {'i', 4, "i"}, {'u', 4, "I"}, {'i', 8, "q"}, {'u', 8, "Q"},  {'f', 2, "e"},
      {'f', 4, "f"}, {'f', 8, "d"}, {'c', 8, "Zf"}, {'c', 16, "Zd"},
  };
  if (!typestr) return SHL_E_BAD_FORMAT;
  char order = NATIVE_ORDER, kind, text[32];
  const char *p = typestr;
  if (*p == '<' || *p == '>')
    order = *p++;
  else if (*p == '=' || *p == '|')
    p++;
  struct cursor c = {.start = p, .p = p + 1, .end = p + strlen(p)};
  uint64_t n = 1;
  if (!strcmp(p, "?")) {
    kind = 'b';
  } else {
    kind = *p;
    if (!kind || !parse_count(&c, &n) || !at_end(&c) || n == 0) return SHL_E_BAD_FORMAT;
  }
  if (kind == 'S') {
    snprintf(text, sizeof text, "%llus", (unsigned long long)n);
  } else if (kind == 'U') {
    snprintf(text, sizeof text, "%c%lluw", order, (unsigned long long)n);
  } else {
    size_t i = 0, ncodes = sizeof codes / sizeof codes[0];
    while (i < ncodes && (codes[i].kind != kind || codes[i].size != n)) i++;
    if (i == ncodes) return SHL_E_BAD_FORMAT;
    /* One byte has no order: "B", "?" */
    snprintf(text, sizeof text, "%.*s%s", n > 1, &order, codes[i].code);
  }
  size_t len = strlen(text);
  /* A count whose bytes overflow ("U" of 2^62 characters) reads as no format. */
  if (shl__format_parse(text, len) < 0) return SHL_E_BAD_FORMAT;
  if (!format) return (int)len;
  if (len >= size) return -ERANGE;
  memcpy(format, text, len + 1);
  return (int)len;
}
