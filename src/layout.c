/* Element formats (PEP 3118 / struct module) and array extents. The parser
 * reads bytes another process controls: it is bounded in length, items,
 * depth and arithmetic, and never reads past `len`. */
#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "internal.h"

#define MAX_DEPTH 32
_Static_assert(SHL_FORMAT_MAX == 4095 && SHL_FORMAT_MAX_FIELDS == 256,
               "SHL_E_BAD_FORMAT's text in shmlane.h cites both limits");

struct cursor {
  const char *p, *end;
  int depth;
  unsigned items;
};

/* '@': native sizes, aligned; '^': native sizes, unaligned; '=', '<', '>',
 * '!': standard sizes, unaligned. */
enum size_mode { MODE_NATIVE, MODE_NATIVE_PACKED, MODE_STANDARD };

static bool at_end(const struct cursor *c) { return c->p >= c->end; }

static void skip_space(struct cursor *c) {
  while (!at_end(c) && isspace((unsigned char)*c->p)) c->p++;
}

static bool mul_ok(uint64_t a, uint64_t b, uint64_t *out) {
  return !__builtin_mul_overflow(a, b, out);
}

/* Decimal count; false on overflow or no digits. */
static bool parse_count(struct cursor *c, uint64_t *out) {
  uint64_t v = 0;
  const char *start = c->p;
  while (!at_end(c) && isdigit((unsigned char)*c->p)) {
    if (!mul_ok(v, 10, &v) || __builtin_add_overflow(v, (uint64_t)(*c->p - '0'), &v))
      return false;
    c->p++;
  }
  *out = v;
  return c->p != start;
}

/* "(2,3)" prefix: product of the dimensions. */
static bool parse_subarray(struct cursor *c, uint64_t *count) {
  uint64_t total = 1, dim;
  c->p++; /* '(' */
  for (;;) {
    skip_space(c);
    if (!parse_count(c, &dim) || !mul_ok(total, dim, &total)) return false;
    skip_space(c);
    if (at_end(c)) return false;
    if (*c->p == ')') {
      c->p++;
      *count = total;
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
static bool parse_field_name(struct cursor *c) {
  skip_space(c);
  if (at_end(c) || *c->p != ':') return true;
  const char *start = ++c->p;
  while (!at_end(c) && *c->p != ':') {
    if (!isprint((unsigned char)*c->p)) return false;
    c->p++;
  }
  if (at_end(c) || c->p == start) return false;
  c->p++;
  return true;
}

static bool parse_items(struct cursor *c, enum size_mode mode, bool nested,
                        uint64_t *size_out, uint64_t *align_out);

static bool parse_byte_order(char ch, enum size_mode *mode) {
  if (!ch || !strchr("@=<>!^", ch)) return false;
  *mode = ch == '@' ? MODE_NATIVE : ch == '^' ? MODE_NATIVE_PACKED : MODE_STANDARD;
  return true;
}

/* A count right after a sub-array's shape, as in "(8)1s"; false if none. */
static bool count_after_shape(struct cursor *c, uint64_t *repeat) {
  *repeat = 1;
  return !at_end(c) && isdigit((unsigned char)*c->p) && parse_count(c, repeat);
}

/* One item: [count | (dims) [count]] code [:name:]. Adds it at *offset. */
static bool parse_item(struct cursor *c, enum size_mode *modep, uint64_t *offset,
                       uint64_t *max_align) {
  uint64_t count = 1, size, align;
  if (++c->items > SHL_FORMAT_MAX_FIELDS) return false;
  if (*c->p == '(') {
    if (!parse_subarray(c, &count)) return false;
    skip_space(c);
  } else if (isdigit((unsigned char)*c->p) && !parse_count(c, &count)) {
    return false;
  }
  /* NumPy writes the byte order after a sub-array shape ("(3)<f"), and a
   * string's length too ("(8)1s": eight 1-byte strings, ctypes' c_char * 8). */
  while (!at_end(c) && parse_byte_order(*c->p, modep)) c->p++;
  uint64_t repeat;
  if (count_after_shape(c, &repeat) && !mul_ok(count, repeat, &count)) return false;
  enum size_mode mode = *modep;
  if (at_end(c)) return false;
  char code = *c->p++;
  if (code == 'T') {
    if (at_end(c) || *c->p++ != '{') return false;
    if (++c->depth > MAX_DEPTH) return false;
    if (!parse_items(c, mode, true, &size, &align)) return false;
    c->depth--;
    /* A native struct is padded to its alignment, as a C compiler does. */
    if (mode == MODE_NATIVE && size % align && __builtin_add_overflow(size, align - size % align, &size))
      return false;
  } else if (code == 'Z') {
    if (at_end(c) || !scalar_size(*c->p, mode, &size, &align) ||
        !strchr("fdg", *c->p))
      return false;
    c->p++;
    size *= 2;
  } else if (!scalar_size(code, mode, &size, &align)) {
    return false; /* includes 'O' and '&': pointers mean nothing in another process */
  }
  /* "10s" is one 10-byte string, "3x" three pad bytes: count multiplies either way. */
  uint64_t bytes;
  if (!mul_ok(count, size, &bytes)) return false;
  if (code != 'x' && align > 1) {
    uint64_t rem = *offset % align;
    if (rem && __builtin_add_overflow(*offset, align - rem, offset)) return false;
  }
  if (__builtin_add_overflow(*offset, bytes, offset)) return false;
  if (align > *max_align) *max_align = align;
  return parse_field_name(c);
}

static bool parse_items(struct cursor *c, enum size_mode mode, bool nested,
                        uint64_t *size_out, uint64_t *align_out) {
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

int64_t shl__format_parse(const char *format, size_t len) {
  if (!format || len == 0 || len > SHL_FORMAT_MAX) return SHL_E_BAD_FORMAT;
  if (memchr(format, '\0', len)) return SHL_E_BAD_FORMAT;
  struct cursor c = {format, format + len, 0, 0};
  uint64_t size, align;
  if (!parse_items(&c, MODE_NATIVE, false, &size, &align)) return SHL_E_BAD_FORMAT;
  if (size == 0 || size > INT64_MAX) return SHL_E_BAD_FORMAT;
  return (int64_t)size;
}

int64_t shl_format_itemsize(const char *format) {
  if (!format) return SHL_E_BAD_FORMAT;
  size_t len = strnlen(format, SHL_FORMAT_MAX + 1);
  return shl__format_parse(format, len);
}

int shl__layout_c_nbytes(const shl_layout *layout, uint64_t itemsize, uint64_t *nbytes) {
  uint64_t total = itemsize;
  if (layout->ndim > SHL_MAX_NDIM) return SHL_E_BAD_SHAPE;
  for (uint32_t i = 0; i < layout->ndim; i++)
    if (!mul_ok(total, layout->shape[i], &total)) return SHL_E_BAD_SHAPE;
  if (total > INT64_MAX) return SHL_E_BAD_SHAPE;
  *nbytes = total;
  return 0;
}

int shl__layout_extent(const shl_layout *layout, uint64_t itemsize, uint64_t *extent) {
  uint64_t c_bytes;
  int rc = shl__layout_c_nbytes(layout, itemsize, &c_bytes);
  if (rc < 0) return rc;
  *extent = 0;
  if (c_bytes == 0) return 0;
  uint64_t end = itemsize;
  for (uint32_t i = 0; i < layout->ndim; i++) {
    uint64_t span;
    if (layout->strides[i] < 0) return SHL_E_BAD_STRIDES;
    if (__builtin_mul_overflow((uint64_t)layout->strides[i], layout->shape[i] - 1, &span) ||
        __builtin_add_overflow(end, span, &end))
      return SHL_E_BAD_STRIDES;
  }
  if (end > INT64_MAX / 2) return SHL_E_BAD_SHAPE;
  *extent = end;
  return 0;
}

int shl__layout_plan(const shl_layout *in, shl_layout *out, uint64_t *extent) {
  if (!in) return -EINVAL;
  if (!in->format) return SHL_E_BAD_FORMAT;
  if (in->ndim > SHL_MAX_NDIM) return SHL_E_BAD_SHAPE;
  int64_t itemsize = shl_format_itemsize(in->format);
  if (itemsize < 0) return (int)itemsize;
  if (in->itemsize && in->itemsize != (uint64_t)itemsize) return SHL_E_ITEMSIZE;
  *out = *in;
  out->itemsize = (uint64_t)itemsize;
  for (uint32_t i = in->ndim; i < SHL_MAX_NDIM; i++) out->shape[i] = 0, out->strides[i] = 0;
  bool given_strides = false;
  for (uint32_t i = 0; i < in->ndim; i++) given_strides |= in->strides[i] != 0;
  /* C order; an empty dimension still needs strides that fit in int64. */
  int64_t stride = itemsize;
  for (uint32_t i = in->ndim; i-- > 0 && !given_strides;) {
    out->strides[i] = stride;
    if (i > 0 && in->shape[i] > 1 &&
        (in->shape[i] > INT64_MAX || __builtin_mul_overflow(stride, (int64_t)in->shape[i], &stride)))
      return SHL_E_BAD_SHAPE;
  }
  int rc = shl__layout_extent(out, out->itemsize, extent);
  if (rc < 0) return rc;
  return shl__layout_check_extent(out, out->itemsize, *extent);
}

int shl__layout_check_extent(const shl_layout *layout, uint64_t itemsize, uint64_t payload_size) {
  uint64_t c_bytes;
  int rc = shl__layout_c_nbytes(layout, itemsize, &c_bytes);
  if (rc < 0) return rc;
  if (c_bytes == 0) return 0; /* empty array addresses nothing */
  /* Element [0,...,0] sits at payload offset 0; the others span [lo, hi]. */
  int64_t lo = 0, hi = 0, c_stride = (int64_t)itemsize;
  bool c_order = true;
  for (uint32_t i = layout->ndim; i-- > 0;) {
    int64_t span;
    if (__builtin_mul_overflow(layout->strides[i], (int64_t)(layout->shape[i] - 1), &span))
      return SHL_E_BAD_STRIDES;
    if (__builtin_add_overflow(span < 0 ? lo : hi, span, span < 0 ? &lo : &hi))
      return SHL_E_BAD_STRIDES;
    if (layout->strides[i] != c_stride) c_order = false;
    c_stride *= (int64_t)layout->shape[i]; /* cannot overflow: c_bytes fits */
  }
  if (lo < 0) return SHL_E_BAD_STRIDES;
  if ((uint64_t)hi > payload_size || payload_size - (uint64_t)hi < itemsize)
    return c_order ? SHL_E_BAD_SHAPE : SHL_E_BAD_STRIDES;
  return 0;
}
