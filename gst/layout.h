/* Raw video caps as a stream's layout, and back (docs/gstreamer.md, How
 * caps are stored). The only place that knows the mapping: the sink writes
 * the layout it gets from here, the source inverts it by generating the
 * layout of each candidate format and comparing, so the two can never
 * disagree. */
#ifndef SHMLANE_GST_LAYOUT_H
#define SHMLANE_GST_LAYOUT_H

#include <gst/video/video.h>
#include <stdint.h>

#include "shmlane.h"

/* The formats both elements handle, for their pad templates. */
#define SHLGST_FORMATS                                                                      \
  "{ RGB, BGR, RGBA, BGRA, ARGB, ABGR, RGBx, BGRx, xRGB, xBGR, GRAY8, GRAY16_LE, GRAY16_BE, " \
  "I420, YV12, NV12, NV21 }"
#define SHLGST_CAPS GST_VIDEO_CAPS_MAKE(SHLGST_FORMATS)

/* A frame layout and the format string it points to. */
typedef struct shlgst_layout {
  char format[128];
  shl_layout layout;
} shlgst_layout;

/* The stream layout of video frames of `in`'s format and size, rows packed
 * without padding; *frames (may be NULL) gets `in` with the strides, offsets
 * and size of that layout. FALSE for a format without a mapping. */
gboolean shlgst_layout_from_info(const GstVideoInfo *in, shlgst_layout *out, GstVideoInfo *frames);

/* The video info of frames of stream layout `l` (format, size, strides,
 * offsets as the stream has them; other fields default): FALSE when no raw
 * video format maps to it. */
gboolean shlgst_info_from_layout(const shl_layout *l, GstVideoInfo *out);

/* The bytes a frame of layout `l` spans from its start (its element
 * [0,...,0]), as the core checks it against the slot: 0 for a layout that
 * addresses nothing or whose size overflows. */
uint64_t shlgst_layout_span(const shl_layout *l);

/* TRUE if frames of `frames` sit where GStreamer's default layout for the
 * same caps puts them (same strides and offsets): then elements that know
 * nothing of GstVideoMeta may read or write them in place. */
gboolean shlgst_layout_is_default(const GstVideoInfo *frames);

/* Each frame's metadata record: little-endian, 88 bytes, format
 * SHLGST_META_FORMAT. Times in nanoseconds, -1 for none. */
#define SHLGST_META_FORMAT                                                                    \
  "T{<q:pts:<q:dts:<q:duration:<Q:offset:<i:fps_n:<i:fps_d:<i:par_n:<i:par_d:<I:flags:4x"       \
  "16s:colorimetry:16s:chroma_site:}"

typedef struct shlgst_record {
  int64_t pts, dts, duration; /* the buffer's, in the writing pipeline */
  uint64_t offset;            /* the buffer's offset (a frame number), or -1 */
  int32_t fps_n, fps_d;       /* the caps' framerate (0/1: variable) */
  int32_t par_n, par_d;       /* pixel aspect ratio */
  uint32_t flags;             /* GstBufferFlags */
  uint8_t pad[4];
  char colorimetry[16]; /* the caps' strings, NUL-terminated, "" for none */
  char chroma_site[16];
} shlgst_record;

/* The record's caps part (rates, colorimetry) for frames of `info`. */
void shlgst_record_init(shlgst_record *r, const GstVideoInfo *info);
/* Stores r with buf's times, offset and flags, little-endian, at dst. */
void shlgst_record_write(void *dst, const shlgst_record *r, const GstBuffer *buf);
/* Reads a record (size bytes at src, which a peer may be writing, read
 * once): TRUE and *out in host order, or FALSE if it is not one. */
gboolean shlgst_record_read(const void *src, uint64_t size, shlgst_record *out);
/* Sets info's framerate, aspect ratio, colorimetry and chroma site from
 * those of r that are valid. */
void shlgst_record_apply(const shlgst_record *r, GstVideoInfo *info);

#endif
