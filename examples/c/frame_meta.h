/* The metadata record the examples publish with each frame (writer.c,
 * examples/python/write.py) and check (reader.c, read.py): the same record
 * as FrameMeta in examples/python/frame_meta.py. FRAME_META_FORMAT is the
 * format Python stores for FrameMeta, character for character: a writer
 * takes over a stream only if its metadata format is the same string, so
 * either language's writer may take over from the other. */
#ifndef FRAME_META_H
#define FRAME_META_H

#include <stddef.h>
#include <stdint.h>

#define FRAME_META_FORMAT "T{<Q:frame:<q:capture_ns:<q:realtime_ns:<d:exposure:<I:width:<I:height:}"

struct frame_meta {
  uint64_t frame;      /* the sequence number stamped into the frame */
  int64_t capture_ns;  /* CLOCK_MONOTONIC at capture */
  int64_t realtime_ns; /* CLOCK_REALTIME at capture */
  double exposure;     /* the camera's; for a test pattern, frames drawn so far */
  uint32_t width, height;
};

/* The format above, little-endian with no padding: this struct on this machine. */
_Static_assert(sizeof(struct frame_meta) == 40 && offsetof(struct frame_meta, exposure) == 24 &&
                   offsetof(struct frame_meta, height) == 36,
               "struct frame_meta must match FRAME_META_FORMAT");
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "FRAME_META_FORMAT is little-endian"
#endif

#endif /* FRAME_META_H */
