/* A stream's control area checked against its segment: the immutable
 * fields read once into a private snapshot (struct stream), each checked
 * there, so that a peer rewriting them later cannot move this process out
 * of its mapping. Openers of every kind bind (writers, readers, info). */
#include <string.h>

#include "stream.h"

/* The metadata part of the control block, read once into s (meta_offset,
 * meta_size, meta_format) and checked there: what is checked is what is used,
 * whatever a peer writes later. `fixed` is where the area's fixed part ends. */
static int bind_meta(struct stream *s, const shl_segment *seg, const struct shl__stream_ctl *live,
                     uint64_t fixed, uint64_t frame_size, uint64_t stride) {
  uint32_t len = live->meta_format_len;
  uint64_t at = live->meta_format_offset, size = live->meta_size, offset = live->meta_offset, end;
  s->meta_format[0] = '\0';
  s->meta_offset = s->meta_size = 0;
  if (len == 0) return at || size || offset ? SHL_E_BAD_HEADER : 0;
  if (len > SHL_FORMAT_MAX || at < fixed || __builtin_add_overflow(at, (uint64_t)len + 1, &end) ||
      end > seg->ext_size)
    return SHL_E_BAD_HEADER;
  memcpy(s->meta_format, seg->ext + at, len + 1);
  if (s->meta_format[len] != '\0' || strlen(s->meta_format) != len) {
    s->meta_format[0] = '\0';
    return SHL_E_BAD_FORMAT;
  }
  int64_t itemsize = shl__format_parse(s->meta_format, len);
  int rc = itemsize < 0 ? (int)itemsize : (uint64_t)itemsize != size ? SHL_E_ITEMSIZE : 0;
  if (rc == 0 && (offset % 64 || offset < frame_size ||
                  __builtin_add_overflow(offset, size, &end) || end > stride))
    rc = SHL_E_BAD_HEADER;
  if (rc < 0) {
    s->meta_format[0] = '\0';
    return rc;
  }
  s->meta_offset = offset;
  s->meta_size = size;
  return 0;
}

/* Checks the control area against the segment and takes a private snapshot
 * of its immutable fields, each read once; a hostile peer cannot move us out
 * of bounds. */
int shl__stream_bind(struct stream *s, shl_segment *seg) {
  if (seg->kind != SHL_KIND_STREAM) return SHL_E_BAD_KIND;
  if (!seg->ext || seg->ext_size < sizeof(struct shl__stream_ctl)) return SHL_E_BAD_HEADER;
  struct shl__stream_ctl *ctl = (struct shl__stream_ctl *)(void *)seg->ext;
  uint32_t slots = ctl->slots, readers = ctl->max_readers;
  uint64_t stride = ctl->slot_stride, frame_size = ctl->frame_size, base_seq = ctl->base_seq;
  uint64_t extent, total;
  if (slots < 2 || slots > SHL_STREAM_MAX_SLOTS || readers < 1 ||
      readers > SHL_STREAM_MAX_READERS || seg->ext_size < ext_bytes(slots, readers))
    return SHL_E_BAD_HEADER;
  int rc = shl__layout_extent(&seg->layout, seg->layout.itemsize, &extent);
  if (rc < 0) return rc;
  if (stride % 64 || frame_size < extent || frame_size > stride ||
      __builtin_mul_overflow(stride, (uint64_t)slots, &total) || total > seg->payload_size)
    return SHL_E_BAD_HEADER;
  rc = bind_meta(s, seg, ctl, ext_bytes(slots, readers), frame_size, stride);
  if (rc < 0) return rc;
  if (base_seq >= SHL__SEQ_MAX) return SHL_E_BAD_HEADER; /* its first frame must be numbered */
  s->base_seq = base_seq;
  s->seg = seg;
  s->ctl = ctl;
  s->slot = (struct shl__slot *)(void *)(seg->ext + sizeof *ctl);
  s->reader = (struct shl__reader *)(void *)(seg->ext + sizeof *ctl + slots_bytes(slots));
  s->frames = seg->payload;
  s->stride = stride;
  s->slots = slots;
  s->max_readers = readers;
  s->flags = ctl->flags;
  return 0;
}
