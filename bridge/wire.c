/* The bridge's wire format: encoding and checking (wire.h). Every length
 * read from a message is checked against the bytes there before use. */
#include "wire.h"

#include <string.h>

static void put16(uint8_t *p, uint16_t v) {
  p[0] = (uint8_t)v;
  p[1] = (uint8_t)(v >> 8);
}
static void put32(uint8_t *p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> 8 * i);
}
static void put64(uint8_t *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> 8 * i);
}
static uint32_t get32(const uint8_t *p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; i--) v = v << 8 | p[i];
  return v;
}
static uint64_t get64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
  return v;
}

static void put_preamble(uint8_t *b, const struct wire_preamble *p, size_t body) {
  memcpy(b, WIRE_MAGIC, 4);
  b[4] = WIRE_VERSION;
  b[5] = p->type;
  put16(b + 6, 0);
  put64(b + 8, p->sender);
  put32(b + 16, p->gen);
  put32(b + 20, 0);
  put64(b + 24, body);
}

const char *wire_decode_preamble(const void *buf, size_t len, struct wire_preamble *p) {
  const uint8_t *b = buf;
  if (len < WIRE_PREAMBLE) return "message shorter than the preamble";
  if (memcmp(b, WIRE_MAGIC, 4) != 0) return "bad magic (not a shmlane bridge message)";
  if (b[4] != WIRE_VERSION) return "unsupported wire version";
  if (b[5] < WIRE_LAYOUT || b[5] > WIRE_JOIN) return "unknown message type";
  if (get64(b + 24) != len - WIRE_PREAMBLE) return "body length does not match the message";
  if (b[5] == WIRE_JOIN && len != WIRE_PREAMBLE) return "a JOIN has no body";
  p->type = b[5];
  p->sender = get64(b + 8);
  p->gen = get32(b + 16);
  return 0;
}

size_t wire_encode_join(void *buf, size_t cap, uint64_t receiver_id) {
  if (cap < WIRE_PREAMBLE) return 0;
  struct wire_preamble p = {.type = WIRE_JOIN, .sender = receiver_id};
  put_preamble(buf, &p, 0);
  return WIRE_PREAMBLE;
}

size_t wire_encode_layout(void *buf, size_t cap, const struct wire_preamble *p,
                          const struct wire_layout *l) {
  size_t flen = strlen(l->format), mlen = strlen(l->meta_format), nlen = strlen(l->name);
  size_t body = WIRE_LAYOUT_FIXED + 16 * (size_t)l->ndim + flen + mlen + nlen;
  if (l->ndim > SHL_MAX_NDIM || WIRE_PREAMBLE + body > cap) return 0;
  uint8_t *b = buf, *q = b + WIRE_PREAMBLE;
  put_preamble(b, p, body);
  put32(q, l->state);
  put32(q + 4, l->slots);
  put32(q + 8, l->max_readers);
  put32(q + 12, l->ndim);
  put32(q + 16, (uint32_t)flen);
  put32(q + 20, (uint32_t)mlen);
  put32(q + 24, (uint32_t)nlen);
  put32(q + 28, 0);
  put64(q + 32, l->itemsize);
  put64(q + 40, l->frame_bytes);
  q += WIRE_LAYOUT_FIXED;
  for (uint32_t i = 0; i < l->ndim; i++, q += 8) put64(q, l->shape[i]);
  for (uint32_t i = 0; i < l->ndim; i++, q += 8) put64(q, (uint64_t)l->strides[i]);
  memcpy(q, l->format, flen);
  memcpy(q + flen, l->meta_format, mlen);
  memcpy(q + flen + mlen, l->name, nlen);
  return WIRE_PREAMBLE + body;
}

const char *wire_decode_layout(const void *buf, size_t len, struct wire_layout *l) {
  const uint8_t *q = (const uint8_t *)buf + WIRE_PREAMBLE;
  if (len < WIRE_PREAMBLE + WIRE_LAYOUT_FIXED) return "layout message too short";
  size_t left = len - WIRE_PREAMBLE - WIRE_LAYOUT_FIXED;
  memset(l, 0, sizeof *l);
  l->state = get32(q);
  l->slots = get32(q + 4);
  l->max_readers = get32(q + 8);
  l->ndim = get32(q + 12);
  uint32_t flen = get32(q + 16), mlen = get32(q + 20), nlen = get32(q + 24);
  l->itemsize = get64(q + 32);
  l->frame_bytes = get64(q + 40);
  q += WIRE_LAYOUT_FIXED;
  if (l->state > WIRE_ABSENT) return "layout: unknown stream state";
  if (l->ndim > SHL_MAX_NDIM) return "layout: too many dimensions";
  if (flen > SHL_FORMAT_MAX || mlen > SHL_FORMAT_MAX || nlen > SHL_NAME_MAX)
    return "layout: string too long";
  if ((uint64_t)16 * l->ndim + flen + mlen + nlen != left) return "layout: lengths do not add up";
  for (uint32_t i = 0; i < l->ndim; i++, q += 8) l->shape[i] = get64(q);
  for (uint32_t i = 0; i < l->ndim; i++, q += 8) l->strides[i] = (int64_t)get64(q);
  memcpy(l->format, q, flen);
  memcpy(l->meta_format, q + flen, mlen);
  memcpy(l->name, q + flen + mlen, nlen);
  if (memchr(l->format, 0, flen) || memchr(l->meta_format, 0, mlen) || memchr(l->name, 0, nlen))
    return "layout: NUL inside a string";
  if (l->state == WIRE_ABSENT) return 0;
  if (shl_name_check(l->name) != 0) return "layout: bad stream name";
  if (l->slots < 2 || l->slots > SHL_STREAM_MAX_SLOTS) return "layout: bad slot count";
  if (l->max_readers < 1 || l->max_readers > SHL_STREAM_MAX_READERS)
    return "layout: bad reader count";
  int64_t itemsize = shl_format_itemsize(l->format);
  if (itemsize <= 0 || (uint64_t)itemsize != l->itemsize) return "layout: bad frame format";
  if (mlen) {
    int64_t meta = shl_format_itemsize(l->meta_format);
    if (meta <= 0 || meta > WIRE_MAX_META) return "layout: bad metadata format";
    l->meta_size = (uint64_t)meta;
  }
  shl_layout layout;
  wire_to_layout(l, &layout);
  uint64_t bytes = wire_frame_bytes(&layout);
  if (bytes == 0 || bytes != l->frame_bytes) return "layout: frame size does not match the shape";
  return 0;
}

size_t wire_encode_frame(void *buf, size_t cap, const struct wire_preamble *p,
                         const struct wire_frame *f) {
  size_t body = WIRE_FRAME_FIXED + f->meta_size;
  if (WIRE_PREAMBLE + body > cap) return 0;
  uint8_t *b = buf, *q = b + WIRE_PREAMBLE;
  put_preamble(b, p, body);
  put64(q, f->seq);
  put64(q + 8, f->timestamp_ns);
  put64(q + 16, f->realtime_ns);
  put64(q + 24, f->raw_bytes);
  put32(q + 32, f->codec);
  put32(q + 36, f->meta_size);
  if (f->meta_size) memcpy(q + WIRE_FRAME_FIXED, f->meta, f->meta_size);
  return WIRE_PREAMBLE + body;
}

const char *wire_decode_frame(const void *buf, size_t len, struct wire_frame *f) {
  const uint8_t *q = (const uint8_t *)buf + WIRE_PREAMBLE;
  if (len < WIRE_PREAMBLE + WIRE_FRAME_FIXED) return "frame header too short";
  f->seq = get64(q);
  f->timestamp_ns = get64(q + 8);
  f->realtime_ns = get64(q + 16);
  f->raw_bytes = get64(q + 24);
  f->codec = get32(q + 32);
  f->meta_size = get32(q + 36);
  if (f->codec > WIRE_JPEG) return "frame: unknown codec";
  if (f->seq == 0 || f->seq >> 55) return "frame: bad sequence number";
  if ((uint64_t)f->meta_size != len - WIRE_PREAMBLE - WIRE_FRAME_FIXED)
    return "frame: metadata length does not match";
  f->meta = q + WIRE_FRAME_FIXED;
  return 0;
}

uint64_t wire_frame_bytes(const shl_layout *layout) {
  uint64_t extent;
  return shl_layout_extent(layout, &extent) == 0 ? extent : 0; /* empty: nothing to carry */
}

void wire_to_layout(const struct wire_layout *l, shl_layout *out) {
  memset(out, 0, sizeof *out);
  out->format = l->format;
  out->itemsize = l->itemsize;
  out->ndim = l->ndim;
  for (uint32_t i = 0; i < l->ndim && i < SHL_MAX_NDIM; i++) {
    out->shape[i] = l->shape[i];
    out->strides[i] = l->strides[i];
  }
}

int wire_same_layout(const struct wire_layout *a, const struct wire_layout *b) {
  if (a->slots != b->slots || a->max_readers != b->max_readers || a->ndim != b->ndim ||
      a->itemsize != b->itemsize || a->frame_bytes != b->frame_bytes ||
      strcmp(a->format, b->format) || strcmp(a->meta_format, b->meta_format) ||
      strcmp(a->name, b->name))
    return 0;
  for (uint32_t i = 0; i < a->ndim; i++)
    if (a->shape[i] != b->shape[i] || a->strides[i] != b->strides[i]) return 0;
  return 1;
}

uint64_t wire_delta_row(const struct wire_layout *l) {
  if (l->ndim < 2 || l->ndim > SHL_MAX_NDIM || l->shape[0] < 2) return 0;
  uint64_t step = l->itemsize; /* C order: each stride 0 or this */
  for (uint32_t i = l->ndim; i-- > 0;) {
    if (l->strides[i] != 0 && (uint64_t)l->strides[i] != step) return 0;
    if (__builtin_mul_overflow(step, l->shape[i], &step)) return 0;
  }
  return step == l->frame_bytes ? l->frame_bytes / l->shape[0] : 0;
}
