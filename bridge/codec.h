/* Frame compression (docs/bridge.md, Compression): zstd, lossless,
 * optionally of the frame with each row replaced by its difference from
 * the row before (codec WIRE_ZSTD_DELTA: camera images, smooth from row to
 * row, then compress about twice as well at the same speed); and JPEG,
 * lossy, for byte images (libjpeg-turbo through the libjpeg API). Frames
 * from a network peer are hostile: every decoder writes only inside the
 * frame it is given, and says why a frame does not decode. No ZeroMQ here. */
#ifndef SHMLANE_BRIDGE_CODEC_H
#define SHMLANE_BRIDGE_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "wire.h"

/* What a sender asks for (--zstd, --zstd-threads, --delta, --jpeg). */
struct codec_opts {
  int zstd_level;   /* 0: none; negative for zstd's fast levels */
  int zstd_threads; /* zstd's worker threads (0: in the calling thread) */
  int delta;        /* row deltas before zstd: -1 for byte frames, 0 off, 1 on */
  int jpeg_quality; /* 1..100; 0: no JPEG */
};

/* How JPEG sees a frame: rows of width * components bytes, row_stride apart. */
struct codec_image {
  uint32_t width, height, components;
  uint64_t row_stride;
};

/* How a sender codes the frames of one layout. */
struct codec_plan {
  uint32_t codec;         /* enum wire_codec */
  uint64_t row;           /* WIRE_ZSTD_DELTA: the bytes of a row */
  struct codec_image img; /* WIRE_JPEG */
};

struct codec;

/* A sender's coder for `send`, or with NULL a receiver's decoder of every
 * codec this build has. NULL if a library asked for is missing from this
 * build (*missing names it) or memory is short. */
struct codec *codec_new(const struct codec_opts *send, const char **missing);
void codec_free(struct codec *c);

/* The plan for frames of layout l (c NULL: raw): JPEG if asked for and l is
 * an image JPEG carries, else zstd if asked for, else raw. -1 when JPEG was
 * asked for and cannot carry l: why (naming l's format and shape) in buf. */
int codec_plan(const struct codec *c, const struct wire_layout *l, struct codec_plan *p, char *why,
               size_t size);
/* "raw", "zstd", "zstd+delta" or "jpeg". */
const char *codec_name(const struct codec_plan *p);
/* The largest coded size of a frame of n bytes. */
size_t codec_bound(const struct codec_plan *p, size_t n);
/* Codes the frame at src (n bytes) into dst (cap bytes): the size, or 0 on failure. */
size_t codec_pack(struct codec *c, const struct codec_plan *p, void *dst, size_t cap,
                  const void *src, size_t n);

/* Whether `len` bytes of `codec` may be a frame of layout l (before a slot
 * is loaned for it): 0, or why not. */
const char *codec_check(const struct wire_layout *l, uint32_t codec, size_t len);
/* Decodes a frame that passed codec_check into dst (l->frame_bytes bytes,
 * written nowhere else): 0, or why it does not decode (dst then holds
 * garbage). */
const char *codec_unpack(struct codec *c, const struct wire_layout *l, uint32_t codec, void *dst,
                         const void *src, size_t len);

/* The memory c holds (zstd's contexts and workers, the row-delta buffer). */
size_t codec_memory(const struct codec *c);

/* What c coded or decoded since the last call, for a statistics line:
 * ", jpeg 46.30:1 5.10 ms/frame" (the ratio, and the time a frame took),
 * or "" if nothing. c may be NULL. */
void codec_stats(struct codec *c, char *buf, size_t size);

#endif /* SHMLANE_BRIDGE_CODEC_H */
