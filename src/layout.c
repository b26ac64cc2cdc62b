/* Arrays of elements: the bytes a layout's shape and strides address,
 * checked against overflow and against the payload they must stay in. The
 * element format itself is format.c's. */
#include <errno.h>
#include <stdbool.h>

#include "internal.h"

static bool mul_ok(uint64_t a, uint64_t b, uint64_t *out) {
  return !__builtin_mul_overflow(a, b, out);
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

int shl_layout_extent(const shl_layout *layout, uint64_t *extent) {
  shl_layout planned;
  uint64_t bytes;
  if (!extent) return -EINVAL;
  int rc = shl__layout_plan(layout, &planned, &bytes);
  if (rc == 0) *extent = bytes;
  return rc;
}
