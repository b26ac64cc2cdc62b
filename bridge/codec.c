/* Frame compression (codec.h). */
#include "codec.h"

#include <stdlib.h>
#include <string.h>
#ifdef HAVE_ZSTD
#include <zstd.h>
#endif

struct codec {
#ifdef HAVE_ZSTD
  ZSTD_CCtx *cctx;
  ZSTD_DCtx *dctx;
#endif
  uint8_t *scratch; /* the delta-coded frame */
  size_t scratch_size;
};

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

#ifdef HAVE_ZSTD
struct codec *codec_new(int level, int threads) {
  struct codec *c = calloc(1, sizeof *c);
  if (!c) return NULL;
  if (level) {
    c->cctx = ZSTD_createCCtx();
    if (c->cctx) {
      ZSTD_CCtx_setParameter(c->cctx, ZSTD_c_compressionLevel, level);
      /* Fails (and stays 0) where libzstd was built without threads. Jobs
       * of 1 MiB (the default is several): a 1080p frame (6 MB) is then
       * compressed by every worker at once. */
      if (threads && !ZSTD_isError(ZSTD_CCtx_setParameter(c->cctx, ZSTD_c_nbWorkers, threads)))
        ZSTD_CCtx_setParameter(c->cctx, ZSTD_c_jobSize, 1 << 20);
    }
  } else {
    c->dctx = ZSTD_createDCtx();
  }
  if (!c->cctx && !c->dctx) {
    free(c);
    return NULL;
  }
  return c;
}

void codec_free(struct codec *c) {
  if (!c) return;
  ZSTD_freeCCtx(c->cctx);
  ZSTD_freeDCtx(c->dctx);
  free(c->scratch);
  free(c);
}

size_t codec_bound(size_t n) { return ZSTD_compressBound(n); }

size_t codec_pack(struct codec *c, void *dst, size_t cap, const void *src, size_t n,
                  uint64_t row) {
  if (row && row < n) {
    if (c->scratch_size < n) {
      free(c->scratch);
      c->scratch_size = 0;
      if (!(c->scratch = malloc(n))) return 0;
      c->scratch_size = n;
    }
    const uint8_t *s = src;
    memcpy(c->scratch, s, row);
    for (size_t off = row; off < n; off += row) {
      size_t len = n - off < row ? n - off : row;
      sub_row(c->scratch + off, s + off, s + off - row, len);
    }
    src = c->scratch;
  }
  size_t out = ZSTD_compress2(c->cctx, dst, cap, src, n);
  return ZSTD_isError(out) ? 0 : out;
}

const char *codec_unpack(struct codec *c, void *dst, size_t n, const void *src, size_t len,
                         uint64_t row) {
  size_t out = ZSTD_decompressDCtx(c->dctx, dst, n, src, len);
  if (ZSTD_isError(out) || out != n) return "zstd frame does not decompress to a frame";
  uint8_t *d = dst;
  if (row && row < n)
    for (size_t off = row; off < n; off += row)
      add_row(d + off, d + off - row, n - off < row ? n - off : row);
  return 0;
}
#else
struct codec *codec_new(int level, int threads) {
  (void)level, (void)threads;
  return NULL;
}
void codec_free(struct codec *c) { (void)c; }
size_t codec_bound(size_t n) { return n; }
size_t codec_pack(struct codec *c, void *dst, size_t cap, const void *src, size_t n,
                  uint64_t row) {
  (void)c, (void)dst, (void)cap, (void)src, (void)n, (void)row;
  return 0;
}
const char *codec_unpack(struct codec *c, void *dst, size_t n, const void *src, size_t len,
                         uint64_t row) {
  (void)c, (void)dst, (void)n, (void)src, (void)len, (void)row;
  return "zstd frame, and this bridge was built without libzstd";
}
#endif
