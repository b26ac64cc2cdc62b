/* Frame compression (docs/bridge.md, Compression): zstd, optionally of the
 * frame with each row replaced by its difference from the row before
 * (codec WIRE_ZSTD_DELTA): camera images, smooth from row to row, then
 * compress about twice as well at the same speed. No ZeroMQ here. */
#ifndef SHMLANE_BRIDGE_CODEC_H
#define SHMLANE_BRIDGE_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "wire.h"

struct codec;

/* A compressor (level: zstd's, negative for its fast levels; threads: its
 * worker threads, 0 for none) or, with level 0, a decompressor. NULL if
 * this build has no libzstd or memory is short. */
struct codec *codec_new(int level, int threads);
void codec_free(struct codec *c);
/* The largest compressed size of n bytes. */
size_t codec_bound(size_t n);
/* Compresses the n bytes at src into dst (cap bytes), delta-coding rows of
 * `row` bytes first unless row is 0: the size, or 0 on failure. */
size_t codec_pack(struct codec *c, void *dst, size_t cap, const void *src, size_t n,
                  uint64_t row);
/* Decompresses exactly n bytes into dst and undoes the row deltas: 0, or why not. */
const char *codec_unpack(struct codec *c, void *dst, size_t n, const void *src, size_t len,
                         uint64_t row);

#endif /* SHMLANE_BRIDGE_CODEC_H */
