/* Raw video caps <-> stream layout (docs/gstreamer.md, How caps are stored).
 *
 * Packed formats are arrays of shape (height, width) or (height, width,
 * channels): OpenCV's conventions are plain arrays (BGR and BGRA of "B",
 * GRAY8 "B", GRAY16 "<H" or ">H"); every other channel order is a struct
 * whose one-byte fields spell the format's name ("T{B:r:B:g:B:b:}" is RGB,
 * "T{B:x:B:r:B:g:B:b:}" xRGB). Planar formats are one struct (ndim 0) whose
 * fields are the planes in GStreamer's order, chroma planes subsampled:
 * "T{(480,640)B:y:(240,320)B:u:(240,320)B:v:}" is I420 640x480,
 * "T{(480,640)B:y:(240,320,2)B:uv:}" NV12. Rows are packed (C order). */
#include "layout.h"

#include <stdio.h>
#include <string.h>

/* Plain arrays: OpenCV's conventions. */
static const struct plain {
  GstVideoFormat fmt;
  const char *elem;
  uint32_t channels; /* 0: a 2-D array */
} plain[] = {
    {GST_VIDEO_FORMAT_GRAY8, "B", 0},      {GST_VIDEO_FORMAT_GRAY16_LE, "<H", 0},
    {GST_VIDEO_FORMAT_GRAY16_BE, ">H", 0}, {GST_VIDEO_FORMAT_BGR, "B", 3},
    {GST_VIDEO_FORMAT_BGRA, "B", 4},
};

/* Structs of one-byte channels named after the format. */
static const GstVideoFormat named[] = {
    GST_VIDEO_FORMAT_RGB,  GST_VIDEO_FORMAT_BGR,  GST_VIDEO_FORMAT_RGBA, GST_VIDEO_FORMAT_BGRA,
    GST_VIDEO_FORMAT_ARGB, GST_VIDEO_FORMAT_ABGR, GST_VIDEO_FORMAT_RGBx, GST_VIDEO_FORMAT_BGRx,
    GST_VIDEO_FORMAT_xRGB, GST_VIDEO_FORMAT_xBGR,
};

/* Planes by name; a two-letter name is an interleaved chroma plane. */
static const struct planar {
  GstVideoFormat fmt;
  const char *planes[3];
} planar[] = {
    {GST_VIDEO_FORMAT_I420, {"y", "u", "v"}},
    {GST_VIDEO_FORMAT_YV12, {"y", "v", "u"}},
    {GST_VIDEO_FORMAT_NV12, {"y", "uv", NULL}},
    {GST_VIDEO_FORMAT_NV21, {"y", "vu", NULL}},
};

/* "T{B:r:B:g:B:b:}" for RGB: the name's letters, lower case. */
static void named_format(GstVideoFormat fmt, char *out, size_t size) {
  const char *name = gst_video_format_to_string(fmt);
  size_t n = (size_t)snprintf(out, size, "T{");
  for (; *name && n < size; name++)
    n += (size_t)snprintf(out + n, size - n, "B:%c:", g_ascii_tolower(*name));
  if (n < size) snprintf(out + n, size - n, "}");
}

static const struct planar *find_planar(GstVideoFormat fmt) {
  for (size_t i = 0; i < G_N_ELEMENTS(planar); i++)
    if (planar[i].fmt == fmt) return &planar[i];
  return NULL;
}

static const struct plain *find_plain(GstVideoFormat fmt) {
  for (size_t i = 0; i < G_N_ELEMENTS(plain); i++)
    if (plain[i].fmt == fmt) return &plain[i];
  return NULL;
}

static gboolean is_named(GstVideoFormat fmt) {
  for (size_t i = 0; i < G_N_ELEMENTS(named); i++)
    if (named[i] == fmt) return TRUE;
  return FALSE;
}

/* A planar format at width x height: its format string and packed planes. */
static void planar_layout(const struct planar *p, uint32_t width, uint32_t height,
                          shlgst_layout *out, GstVideoInfo *frames) {
  uint32_t cw = (width + 1) / 2, ch = (height + 1) / 2;
  size_t n = (size_t)snprintf(out->format, sizeof out->format, "T{(%u,%u)B:y:", height, width);
  gsize offset = (gsize)width * height;
  frames->offset[0] = 0;
  frames->stride[0] = (gint)width;
  for (guint i = 1; i < 3 && p->planes[i]; i++) {
    guint bytes = (guint)strlen(p->planes[i]); /* 1, or 2 for interleaved chroma */
    n += (size_t)snprintf(out->format + n, sizeof out->format - n,
                          bytes == 2 ? "(%u,%u,2)B:%s:" : "(%u,%u)B:%s:", ch, cw, p->planes[i]);
    frames->offset[i] = offset;
    frames->stride[i] = (gint)(cw * bytes);
    offset += (gsize)cw * bytes * ch;
  }
  snprintf(out->format + n, sizeof out->format - n, "}");
  frames->size = offset;
  out->layout = (shl_layout){.format = out->format, .ndim = 0};
}

gboolean shlgst_layout_from_info(const GstVideoInfo *in, shlgst_layout *out, GstVideoInfo *frames) {
  GstVideoFormat fmt = GST_VIDEO_INFO_FORMAT(in);
  uint32_t width = (uint32_t)GST_VIDEO_INFO_WIDTH(in), height = (uint32_t)GST_VIDEO_INFO_HEIGHT(in);
  GstVideoInfo tight = *in;
  const struct plain *pl = find_plain(fmt);
  const struct planar *pp = find_planar(fmt);
  if (width == 0 || height == 0) return FALSE;
  if (pp) {
    planar_layout(pp, width, height, out, &tight);
  } else if (pl || is_named(fmt)) {
    uint32_t channels = pl ? pl->channels : 0;
    if (pl)
      g_strlcpy(out->format, pl->elem, sizeof out->format);
    else
      named_format(fmt, out->format, sizeof out->format);
    out->layout = (shl_layout){.format = out->format, .ndim = channels ? 3 : 2,
                               .shape = {height, width, channels}};
    tight.stride[0] = (gint)((gsize)width * (gsize)GST_VIDEO_INFO_COMP_PSTRIDE(in, 0));
    tight.offset[0] = 0;
    tight.size = (gsize)tight.stride[0] * height;
  } else {
    return FALSE;
  }
  if (frames) *frames = tight;
  return TRUE;
}

/* The strides of layout l, C order where it has none. */
static void layout_strides(const shl_layout *l, int64_t itemsize, int64_t *strides) {
  gboolean c_order = TRUE;
  for (uint32_t i = 0; i < l->ndim; i++)
    if (l->strides[i]) c_order = FALSE;
  int64_t step = itemsize;
  for (uint32_t i = l->ndim; i-- > 0;) {
    strides[i] = c_order ? step : l->strides[i];
    step *= (int64_t)l->shape[i];
  }
}

uint64_t shlgst_layout_span(const shl_layout *l) {
  int64_t itemsize = shl_format_itemsize(l->format), strides[SHL_MAX_NDIM];
  uint64_t end, span;
  if (itemsize <= 0 || l->ndim > SHL_MAX_NDIM) return 0;
  layout_strides(l, itemsize, strides);
  end = (uint64_t)itemsize;
  for (uint32_t i = 0; i < l->ndim; i++)
    if (l->shape[i] == 0 || strides[i] < 0 ||
        __builtin_mul_overflow((uint64_t)strides[i], l->shape[i] - 1, &span) ||
        __builtin_add_overflow(end, span, &end))
      return 0;
  return end;
}

static gboolean packed_info(const shl_layout *l, GstVideoInfo *out) {
  int64_t itemsize = shl_format_itemsize(l->format), strides[3];
  uint64_t height = l->shape[0], width = l->shape[1], channels = l->ndim == 3 ? l->shape[2] : 0;
  if (itemsize <= 0 || height == 0 || width == 0 || height > G_MAXINT / 2 || width > G_MAXINT / 8)
    return FALSE;
  GstVideoFormat fmt = GST_VIDEO_FORMAT_UNKNOWN;
  for (size_t i = 0; i < G_N_ELEMENTS(plain) && fmt == GST_VIDEO_FORMAT_UNKNOWN; i++)
    if (plain[i].channels == channels && strcmp(plain[i].elem, l->format) == 0) fmt = plain[i].fmt;
  for (size_t i = 0; i < G_N_ELEMENTS(named) && fmt == GST_VIDEO_FORMAT_UNKNOWN && !channels; i++) {
    char name[64];
    named_format(named[i], name, sizeof name);
    if (strcmp(name, l->format) == 0) fmt = named[i];
  }
  if (fmt == GST_VIDEO_FORMAT_UNKNOWN) return FALSE;
  /* Pixels and channels packed, rows anywhere after the previous one. */
  layout_strides(l, itemsize, strides);
  int64_t pixel = itemsize * (int64_t)(channels ? channels : 1);
  if ((channels && strides[2] != itemsize) || strides[1] != pixel ||
      strides[0] < pixel * (int64_t)width || strides[0] > G_MAXINT)
    return FALSE;
  if (!gst_video_info_set_format(out, fmt, (guint)width, (guint)height)) return FALSE;
  if (GST_VIDEO_INFO_COMP_PSTRIDE(out, 0) != pixel) return FALSE;
  out->stride[0] = (gint)strides[0];
  out->size = (gsize)strides[0] * (height - 1) + (gsize)pixel * width;
  return TRUE;
}

gboolean shlgst_info_from_layout(const shl_layout *l, GstVideoInfo *out) {
  if (l->ndim == 2 || l->ndim == 3) return packed_info(l, out);
  unsigned height, width;
  if (l->ndim != 0 || sscanf(l->format, "T{(%u,%u)B:y:", &height, &width) != 2 || height == 0 ||
      width == 0 || height > 1u << 16 || width > 1u << 16)
    return FALSE;
  for (size_t i = 0; i < G_N_ELEMENTS(planar); i++) {
    shlgst_layout mine;
    GstVideoInfo info;
    if (!gst_video_info_set_format(&info, planar[i].fmt, width, height)) return FALSE;
    planar_layout(&planar[i], width, height, &mine, &info);
    if (strcmp(mine.format, l->format) == 0) {
      *out = info;
      return TRUE;
    }
  }
  return FALSE;
}

gboolean shlgst_layout_is_default(const GstVideoInfo *frames) {
  GstVideoInfo def;
  if (!gst_video_info_set_format(&def, GST_VIDEO_INFO_FORMAT(frames), GST_VIDEO_INFO_WIDTH(frames),
                                 GST_VIDEO_INFO_HEIGHT(frames)))
    return FALSE;
  for (guint i = 0; i < GST_VIDEO_INFO_N_PLANES(frames); i++)
    if (def.stride[i] != frames->stride[i] || def.offset[i] != frames->offset[i]) return FALSE;
  return TRUE;
}

/* ------------------------------------------------------------- records */

G_STATIC_ASSERT(sizeof(shlgst_record) == 88);
G_STATIC_ASSERT(G_STRUCT_OFFSET(shlgst_record, fps_n) == 32);
G_STATIC_ASSERT(G_STRUCT_OFFSET(shlgst_record, flags) == 48);
G_STATIC_ASSERT(G_STRUCT_OFFSET(shlgst_record, colorimetry) == 56);
G_STATIC_ASSERT(G_STRUCT_OFFSET(shlgst_record, chroma_site) == 72);

void shlgst_record_init(shlgst_record *r, const GstVideoInfo *info) {
  *r = (shlgst_record){.fps_n = GST_VIDEO_INFO_FPS_N(info), .fps_d = GST_VIDEO_INFO_FPS_D(info),
                       .par_n = GST_VIDEO_INFO_PAR_N(info), .par_d = GST_VIDEO_INFO_PAR_D(info)};
  gchar *colorimetry = gst_video_colorimetry_to_string(&info->colorimetry);
  gchar *site = gst_video_chroma_site_to_string(GST_VIDEO_INFO_CHROMA_SITE(info));
  if (colorimetry) g_strlcpy(r->colorimetry, colorimetry, sizeof r->colorimetry);
  if (site) g_strlcpy(r->chroma_site, site, sizeof r->chroma_site);
  g_free(colorimetry);
  g_free(site);
}

static int64_t time_or_minus_one(GstClockTime t) {
  return GST_CLOCK_TIME_IS_VALID(t) ? (int64_t)t : -1;
}

void shlgst_record_write(void *dst, const shlgst_record *r, const GstBuffer *buf) {
  shlgst_record le = *r;
  le.pts = GINT64_TO_LE(time_or_minus_one(GST_BUFFER_PTS(buf)));
  le.dts = GINT64_TO_LE(time_or_minus_one(GST_BUFFER_DTS(buf)));
  le.duration = GINT64_TO_LE(time_or_minus_one(GST_BUFFER_DURATION(buf)));
  le.offset = GUINT64_TO_LE(GST_BUFFER_OFFSET(buf));
  le.fps_n = GINT32_TO_LE(r->fps_n);
  le.fps_d = GINT32_TO_LE(r->fps_d);
  le.par_n = GINT32_TO_LE(r->par_n);
  le.par_d = GINT32_TO_LE(r->par_d);
  le.flags = GUINT32_TO_LE(GST_BUFFER_FLAGS(buf));
  memcpy(dst, &le, sizeof le);
}

gboolean shlgst_record_read(const void *src, uint64_t size, shlgst_record *out) {
  if (size != sizeof *out) return FALSE;
  memcpy(out, src, sizeof *out); /* one read of what a peer may be writing */
  out->pts = GINT64_FROM_LE(out->pts);
  out->dts = GINT64_FROM_LE(out->dts);
  out->duration = GINT64_FROM_LE(out->duration);
  out->offset = GUINT64_FROM_LE(out->offset);
  out->fps_n = GINT32_FROM_LE(out->fps_n);
  out->fps_d = GINT32_FROM_LE(out->fps_d);
  out->par_n = GINT32_FROM_LE(out->par_n);
  out->par_d = GINT32_FROM_LE(out->par_d);
  out->flags = GUINT32_FROM_LE(out->flags);
  out->colorimetry[sizeof out->colorimetry - 1] = '\0';
  out->chroma_site[sizeof out->chroma_site - 1] = '\0';
  return TRUE;
}

void shlgst_record_apply(const shlgst_record *out, GstVideoInfo *info) {
  if (out->fps_n >= 0 && out->fps_d > 0) {
    GST_VIDEO_INFO_FPS_N(info) = out->fps_n;
    GST_VIDEO_INFO_FPS_D(info) = out->fps_d;
  }
  if (out->par_n > 0 && out->par_d > 0) {
    GST_VIDEO_INFO_PAR_N(info) = out->par_n;
    GST_VIDEO_INFO_PAR_D(info) = out->par_d;
  }
  GstVideoColorimetry c;
  if (out->colorimetry[0] && gst_video_colorimetry_from_string(&c, out->colorimetry))
    info->colorimetry = c;
  GstVideoChromaSite site = gst_video_chroma_site_from_string(out->chroma_site);
  if (out->chroma_site[0] && site != GST_VIDEO_CHROMA_SITE_UNKNOWN)
    GST_VIDEO_INFO_CHROMA_SITE(info) = site;
}
