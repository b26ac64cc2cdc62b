/* Frame compression (codec.h). */
#include "codec.h"

#include <setjmp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef HAVE_ZSTD
#include <zstd.h>
#endif
#ifdef HAVE_JPEG
#include <jerror.h>
#include <jpeglib.h> /* after stdio.h */
#endif

/* The largest side of a JPEG image (libjpeg's JPEG_MAX_DIMENSION). */
#define JPEG_SIDE_MAX 65500

#ifdef HAVE_JPEG
/* libjpeg's errors, and its warnings (corrupt or truncated data, which it
 * would otherwise paper over), end the frame: a longjmp back to the call
 * that coded it. Its default error_exit calls exit(). */
struct jpeg_fail {
  struct jpeg_error_mgr mgr; /* first: libjpeg's pointer to it is ours */
  jmp_buf jump;
  char text[JMSG_LENGTH_MAX + 8]; /* "JPEG: " and libjpeg's message */
};
#endif

struct codec {
  struct codec_opts o;
#ifdef HAVE_ZSTD
  ZSTD_CCtx *cctx;
  ZSTD_DCtx *dctx;
#endif
#ifdef HAVE_JPEG
  struct jpeg_fail fail;
  struct jpeg_compress_struct jc;
  struct jpeg_decompress_struct jd;
  struct jpeg_destination_mgr dest;
  bool have_jc, have_jd;
#endif
  uint8_t *scratch; /* the delta-coded frame */
  size_t scratch_size;
  /* Frames coded or decoded since codec_stats, their sizes, the time they took. */
  uint64_t frames, raw_bytes, coded_bytes, ns;
  uint32_t last; /* their codec (the last one's) */
};

/* ---------------------------------------------------------------- layouts */

static bool is_bytes(const struct wire_layout *l) {
  char canon[8];
  return l->itemsize == 1 && shl_format_canonical(l->format, canon, sizeof canon) > 0 &&
         !strcmp(canon, "B");
}

/* The image JPEG codes frames of layout l as: uint8 (H, W, 3), (H, W) or
 * (H, W, 1), each row's pixels next to each other, rows row_stride apart
 * (C order, or rows with padding between them); false for anything else. */
static bool image_of(const struct wire_layout *l, struct codec_image *img) {
  if (!is_bytes(l) || l->ndim < 2 || l->ndim > 3) return false;
  uint64_t h = l->shape[0], w = l->shape[1], comps = l->ndim == 3 ? l->shape[2] : 1;
  if (h < 1 || w < 1 || h > JPEG_SIDE_MAX || w > JPEG_SIDE_MAX || (comps != 1 && comps != 3))
    return false;
  uint64_t row = w * comps, stride = row; /* strides all 0: C order */
  if (l->strides[0] || l->strides[1] || (l->ndim == 3 && l->strides[2])) {
    if ((l->ndim == 3 && l->strides[2] != 1) || l->strides[1] != (int64_t)comps ||
        l->strides[0] < (int64_t)row)
      return false;
    stride = (uint64_t)l->strides[0];
  }
  /* The last row ends inside the frame (the layout's extent, checked when it was decoded). */
  uint64_t end;
  if (__builtin_mul_overflow(h - 1, stride, &end) || __builtin_add_overflow(end, row, &end) ||
      end > l->frame_bytes)
    return false;
  *img = (struct codec_image){(uint32_t)w, (uint32_t)h, (uint32_t)comps, stride};
  return true;
}

/* "480, 640, 3" */
static void dims_text(const uint64_t *v, uint32_t n, char *buf, size_t size) {
  size_t at = 0;
  buf[0] = 0;
  for (uint32_t i = 0; i < n && at < size; i++)
    at += (size_t)snprintf(buf + at, size - at, "%s%llu", i ? ", " : "", (unsigned long long)v[i]);
}

int codec_plan(const struct codec *c, const struct wire_layout *l, struct codec_plan *p, char *why,
               size_t size) {
  const struct codec_opts none = {0}, *o = c ? &c->o : &none;
  *p = (struct codec_plan){.codec = WIRE_RAW};
  if (o->jpeg_quality && image_of(l, &p->img)) {
    p->codec = WIRE_JPEG;
    return 0;
  }
  if (o->zstd_level) {
    /* Row deltas pay for images: bytes, in rows (--delta, --no-delta). */
    int delta = o->delta >= 0 ? o->delta : is_bytes(l);
    p->row = delta ? wire_delta_row(l) : 0;
    p->codec = p->row ? WIRE_ZSTD_DELTA : WIRE_ZSTD;
  }
  if (!o->jpeg_quality) return 0;
  char shape[200], strides[200] = "";
  dims_text(l->shape, l->ndim, shape, sizeof shape);
  bool any = false, c_order = true; /* strides given, and those of C order */
  uint64_t c_stride = l->itemsize;
  for (uint32_t i = l->ndim; i-- > 0; c_stride *= l->shape[i]) {
    any |= l->strides[i] != 0;
    c_order &= (uint64_t)l->strides[i] == c_stride;
  }
  bool given = any && !c_order;
  if (given) dims_text((const uint64_t *)l->strides, l->ndim, strides, sizeof strides);
  snprintf(why, size,
           "--jpeg carries byte images (format B) shaped (H, W, 3), (H, W) or (H, W, 1), "
           "pixels next to each other in rows, sides up to %d; these frames are '%s' shaped "
           "(%s)%s%s%s",
           JPEG_SIDE_MAX, l->format, shape, given ? " with strides (" : "", strides,
           given ? ")" : "");
  return -1;
}

const char *codec_name(const struct codec_plan *p) {
  static const char *const names[] = {"raw", "zstd", "zstd+delta", "jpeg"};
  return p->codec <= WIRE_JPEG ? names[p->codec] : "?";
}

const char *codec_check(const struct wire_layout *l, uint32_t codec, size_t len) {
  struct codec_image img;
  if (codec == WIRE_RAW && len != l->frame_bytes) return "frame of the wrong size";
  if (codec == WIRE_ZSTD_DELTA && !wire_delta_row(l)) return "delta frame of a layout without rows";
  if (codec == WIRE_JPEG && !image_of(l, &img)) return "JPEG frame of a layout that is no image";
  return 0;
}

/* ---------------------------------------------------------------- zstd, row deltas */

#ifdef HAVE_ZSTD

/* 16 bytes at a time (GCC's and clang's vector extension: SSE2, NEON, or
 * plain code where there is neither); -O2 does not vectorise the plain loop. */
typedef uint8_t bytes16 __attribute__((vector_size(16)));

static void sub_row(uint8_t *out, const uint8_t *cur, const uint8_t *prev, size_t n) {
  size_t i = 0;
  for (bytes16 a, b; i + 16 <= n; i += 16) {
    memcpy(&a, cur + i, 16);
    memcpy(&b, prev + i, 16);
    a -= b;
    memcpy(out + i, &a, 16);
  }
  for (; i < n; i++) out[i] = (uint8_t)(cur[i] - prev[i]);
}

static void add_row(uint8_t *cur, const uint8_t *prev, size_t n) {
  size_t i = 0;
  for (bytes16 a, b; i + 16 <= n; i += 16) {
    memcpy(&a, cur + i, 16);
    memcpy(&b, prev + i, 16);
    a += b;
    memcpy(cur + i, &a, 16);
  }
  for (; i < n; i++) cur[i] = (uint8_t)(cur[i] + prev[i]);
}

/* The frame with every row but the first replaced by its difference from
 * the one before, in c's scratch buffer; NULL if memory is short. */
static const uint8_t *delta_code(struct codec *c, const uint8_t *src, size_t n, uint64_t row) {
  if (c->scratch_size < n) {
    free(c->scratch);
    c->scratch_size = 0;
    if (!(c->scratch = malloc(n))) return NULL;
    c->scratch_size = n;
  }
  memcpy(c->scratch, src, row);
  for (size_t off = row; off < n; off += row)
    sub_row(c->scratch + off, src + off, src + off - row, n - off < row ? n - off : row);
  return c->scratch;
}

static bool zstd_new(struct codec *c, bool send) {
  if (!send) return (c->dctx = ZSTD_createDCtx()) != NULL;
  if (!(c->cctx = ZSTD_createCCtx())) return false;
  ZSTD_CCtx_setParameter(c->cctx, ZSTD_c_compressionLevel, c->o.zstd_level);
  /* Fails (and stays 0) where libzstd was built without threads. Jobs of
   * 1 MiB (the default is several): a 1080p frame (6 MB) is then
   * compressed by every worker at once. */
  if (c->o.zstd_threads &&
      !ZSTD_isError(ZSTD_CCtx_setParameter(c->cctx, ZSTD_c_nbWorkers, c->o.zstd_threads)))
    ZSTD_CCtx_setParameter(c->cctx, ZSTD_c_jobSize, 1 << 20);
  return true;
}

static size_t zstd_pack(struct codec *c, void *dst, size_t cap, const void *src, size_t n) {
  size_t out = ZSTD_compress2(c->cctx, dst, cap, src, n);
  return ZSTD_isError(out) ? 0 : out;
}

static const char *zstd_unpack(struct codec *c, void *dst, size_t n, const void *src, size_t len) {
  size_t out = ZSTD_decompressDCtx(c->dctx, dst, n, src, len);
  return ZSTD_isError(out) || out != n ? "zstd frame does not decompress to a frame" : 0;
}
#endif

/* ---------------------------------------------------------------- JPEG */

#ifdef HAVE_JPEG
static void jpeg_failed(j_common_ptr j) {
  struct jpeg_fail *f = (struct jpeg_fail *)j->err;
  memcpy(f->text, "JPEG: ", 6);
  f->mgr.format_message(j, f->text + 6);
  longjmp(f->jump, 1);
}

static void jpeg_message(j_common_ptr j, int level) {
  if (level < 0) jpeg_failed(j); /* a warning: corrupt data */
}

/* The coded frame goes straight into the sender's buffer; one that would
 * not fit fails (it cannot, in codec_bound's bytes). */
static void dest_init(j_compress_ptr j) { (void)j; }
static boolean dest_full(j_compress_ptr j) {
  ERREXIT(j, JERR_BUFFER_SIZE);
  return FALSE;
}
static void dest_done(j_compress_ptr j) { (void)j; }

/* Rows handed to libjpeg at a time (it takes what it can, often fewer). */
enum { JPEG_ROWS = 16 };

static size_t jpeg_pack(struct codec *c, const struct codec_image *img, void *dst, size_t cap,
                        const uint8_t *src) {
  j_compress_ptr const j = &c->jc;
  if (setjmp(c->fail.jump)) { /* nothing set after setjmp is used here */
    jpeg_abort_compress(j);
    return 0;
  }
  c->dest = (struct jpeg_destination_mgr){.next_output_byte = dst,
                                          .free_in_buffer = cap,
                                          .init_destination = dest_init,
                                          .empty_output_buffer = dest_full,
                                          .term_destination = dest_done};
  j->dest = &c->dest;
  j->image_width = img->width;
  j->image_height = img->height;
  j->input_components = (int)img->components;
  j->in_color_space = img->components == 3 ? JCS_RGB : JCS_GRAYSCALE;
  jpeg_set_defaults(j); /* 4:2:0 chroma, baseline Huffman, one scan, the integer DCT */
  jpeg_set_quality(j, c->o.jpeg_quality, TRUE);
  jpeg_start_compress(j, TRUE);
  while (j->next_scanline < j->image_height) {
    JSAMPROW rows[JPEG_ROWS];
    JDIMENSION y = j->next_scanline, n = j->image_height - y;
    if (n > JPEG_ROWS) n = JPEG_ROWS;
    for (JDIMENSION i = 0; i < n; i++) rows[i] = (JSAMPROW)(src + (y + i) * img->row_stride);
    jpeg_write_scanlines(j, rows, n); /* reads the rows, never writes them */
  }
  jpeg_finish_compress(j);
  return cap - c->dest.free_in_buffer;
}

/* Decodes straight into the frame's rows, once the image is known to be
 * exactly the layout's (every row written then lies inside dst: image_of),
 * and one baseline scan, as the bridge sends (progressive or multi-scan
 * images cost a buffer of the whole image and much time). */
static const char *jpeg_unpack(struct codec *c, const struct codec_image *img, uint8_t *dst,
                               const void *src, size_t len) {
  j_decompress_ptr const j = &c->jd;
  const char *volatile why = c->fail.text; /* set after setjmp, read after longjmp */
  if (setjmp(c->fail.jump)) {
    jpeg_abort_decompress(j);
    return why;
  }
  jpeg_mem_src(j, src, (unsigned long)len);
  jpeg_read_header(j, TRUE); /* fails on a stream without an image */
  j->out_color_space = img->components == 3 ? JCS_RGB : JCS_GRAYSCALE;
  jpeg_calc_output_dimensions(j); /* as jpeg_start_decompress will */
  if (j->output_width != img->width || j->output_height != img->height ||
      j->output_components != (int)img->components || j->progressive_mode || j->arith_code ||
      jpeg_has_multiple_scans(j)) {
    why = "JPEG image of another size, components or kind than the layout's (the bridge sends "
          "one baseline scan)";
    longjmp(c->fail.jump, 1);
  }
  jpeg_start_decompress(j);
  while (j->output_scanline < j->output_height) {
    JSAMPROW rows[JPEG_ROWS];
    JDIMENSION y = j->output_scanline, n = j->output_height - y;
    if (n > JPEG_ROWS) n = JPEG_ROWS;
    for (JDIMENSION i = 0; i < n; i++) rows[i] = dst + (y + i) * img->row_stride;
    jpeg_read_scanlines(j, rows, n); /* output_width * output_components bytes a row */
  }
  jpeg_finish_decompress(j);
  return 0;
}

static bool jpeg_new(struct codec *c, bool send) {
  c->jc.err = c->jd.err = jpeg_std_error(&c->fail.mgr);
  c->fail.mgr.error_exit = jpeg_failed;
  c->fail.mgr.emit_message = jpeg_message;
  if (setjmp(c->fail.jump)) return false; /* out of memory */
  if (send) {
    jpeg_create_compress(&c->jc);
    c->have_jc = true;
  } else {
    jpeg_create_decompress(&c->jd);
    c->have_jd = true;
  }
  return true;
}
#endif

/* ---------------------------------------------------------------- the codec */

struct codec *codec_new(const struct codec_opts *send, const char **missing) {
  struct codec *c = calloc(1, sizeof *c);
  const char *lacking = NULL;
  if (!c) return NULL;
  if (send) c->o = *send;
#ifdef HAVE_ZSTD
  if ((!send || send->zstd_level) && !zstd_new(c, send != NULL)) goto fail;
#else
  if (send && send->zstd_level) lacking = "libzstd (--zstd)";
#endif
#ifdef HAVE_JPEG
  if ((!send || send->jpeg_quality) && !jpeg_new(c, send != NULL)) goto fail;
#else
  if (send && send->jpeg_quality) lacking = "libjpeg (--jpeg)";
#endif
  if (!lacking) return c;
  if (missing) *missing = lacking;
fail:
  codec_free(c);
  return NULL;
}

void codec_free(struct codec *c) {
  if (!c) return;
#ifdef HAVE_ZSTD
  ZSTD_freeCCtx(c->cctx);
  ZSTD_freeDCtx(c->dctx);
#endif
#ifdef HAVE_JPEG
  if (c->have_jc) jpeg_destroy_compress(&c->jc);
  if (c->have_jd) jpeg_destroy_decompress(&c->jd);
#endif
  free(c->scratch);
  free(c);
}

size_t codec_memory(const struct codec *c) {
  if (!c) return 0;
  size_t n = c->scratch_size;
#ifdef HAVE_ZSTD
  n += ZSTD_sizeof_CCtx(c->cctx) + ZSTD_sizeof_DCtx(c->dctx);
#endif
  return n;
}

size_t codec_bound(const struct codec_plan *p, size_t n) {
#ifdef HAVE_ZSTD
  if (p->codec == WIRE_ZSTD || p->codec == WIRE_ZSTD_DELTA) return ZSTD_compressBound(n);
#endif
  if (p->codec == WIRE_JPEG) {
    /* libjpeg-turbo's worst case (tjBufSize): 3 bytes a pixel at 4:2:0, 2
     * for grey, of the image padded to whole 16x16 blocks; the headers. */
    uint64_t w = (p->img.width + 15u) & ~15u, h = (p->img.height + 15u) & ~15u;
    return (size_t)(w * h * (p->img.components == 3 ? 3 : 2) + 4096);
  }
  return n;
}

static uint64_t clock_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static void count(struct codec *c, uint32_t codec, size_t raw, size_t coded, uint64_t t0) {
  c->frames++;
  c->raw_bytes += raw;
  c->coded_bytes += coded;
  c->ns += clock_ns() - t0;
  c->last = codec;
}

void codec_stats(struct codec *c, char *buf, size_t size) {
  buf[0] = 0;
  if (!c || !c->frames || !c->coded_bytes) return;
  struct codec_plan p = {.codec = c->last};
  snprintf(buf, size, ", %s %.2f:1 %.2f ms/frame", codec_name(&p),
           (double)c->raw_bytes / (double)c->coded_bytes, (double)c->ns / 1e6 / (double)c->frames);
  c->frames = c->raw_bytes = c->coded_bytes = c->ns = 0;
}

/* The coder proper, timed by codec_pack. */
static size_t pack(struct codec *c, const struct codec_plan *p, void *dst, size_t cap,
                   const void *src, size_t n) {
#ifdef HAVE_ZSTD
  if (p->codec == WIRE_ZSTD_DELTA && p->row < n && !(src = delta_code(c, src, n, p->row))) return 0;
  if (p->codec == WIRE_ZSTD || p->codec == WIRE_ZSTD_DELTA) return zstd_pack(c, dst, cap, src, n);
#endif
#ifdef HAVE_JPEG
  if (p->codec == WIRE_JPEG) return jpeg_pack(c, &p->img, dst, cap, src);
#endif
  (void)c, (void)dst, (void)cap, (void)src, (void)n;
  return 0;
}

size_t codec_pack(struct codec *c, const struct codec_plan *p, void *dst, size_t cap,
                  const void *src, size_t n) {
  uint64_t t0 = clock_ns();
  size_t out = pack(c, p, dst, cap, src, n);
  if (out) count(c, p->codec, n, out, t0);
  return out;
}

/* The decoder proper, timed by codec_unpack. */
static const char *unpack(struct codec *c, const struct wire_layout *l, uint32_t codec, void *dst,
                          const void *src, size_t len) {
  size_t n = l->frame_bytes;
  if (codec == WIRE_ZSTD || codec == WIRE_ZSTD_DELTA) {
#ifdef HAVE_ZSTD
    uint64_t row = codec == WIRE_ZSTD_DELTA ? wire_delta_row(l) : 0;
    if (codec == WIRE_ZSTD_DELTA && !row) return "delta frame of a layout without rows";
    const char *why = zstd_unpack(c, dst, n, src, len);
    if (why) return why;
    uint8_t *d = dst;
    for (size_t off = row; row && off < n; off += row)
      add_row(d + off, d + off - row, n - off < row ? n - off : row);
    return 0;
#else
    return "zstd frame, and this bridge was built without libzstd";
#endif
  }
  struct codec_image img;
  if (codec != WIRE_JPEG || !image_of(l, &img)) return "frame of an unknown codec or no image";
#ifdef HAVE_JPEG
  return jpeg_unpack(c, &img, dst, src, len);
#else
  return "JPEG frame, and this bridge was built without libjpeg";
#endif
}

const char *codec_unpack(struct codec *c, const struct wire_layout *l, uint32_t codec, void *dst,
                         const void *src, size_t len) {
  if (codec == WIRE_RAW) {
    if (len != l->frame_bytes) return "frame of the wrong size";
    memcpy(dst, src, len);
    return 0;
  }
  uint64_t t0 = clock_ns();
  const char *why = unpack(c, l, codec, dst, src, len);
  if (!why) count(c, codec, l->frame_bytes, len, t0);
  return why;
}
