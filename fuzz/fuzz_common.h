/* Shared by the fuzz targets, the seed generator and the replay driver.
 * The targets include the core's internal header: they poke at the bytes
 * other processes would control. */
#ifndef SHL_FUZZ_COMMON_H
#define SHL_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>

#include "internal.h"

/* The stream fuzz_stream rebuilds for every input (and gen_corpus dumps). */
#define FUZZ_STREAM_SLOTS 4
#define FUZZ_STREAM_READERS 4
#define FUZZ_STREAM_FORMAT "<I"
#define FUZZ_STREAM_ROWS 5 /* frames are 5 x 3 "<I" = 60 bytes, stride 64 */
#define FUZZ_STREAM_COLS 3

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
/* A target may define this: 0 when the input is a well-formed seed for
 * today's format (a header or stream area that opens, a format that parses,
 * a wire message of today's version), else the error that refused it. The replay driver holds every input not
 * named regress-* to it, so that seeds made for an older format version,
 * which would leave the fuzzer stuck at the version check, fail a test. */
int fuzz_seed_check(const uint8_t *data, size_t size);

/* Opens the writer of the stream fuzz_stream fuzzes (gen_corpus dumps it). */
static inline int fuzz_stream_writer_open(shl_writer **w, const char *name) {
  shl_layout frame = {.format = FUZZ_STREAM_FORMAT, .ndim = 2,
                      .shape = {FUZZ_STREAM_ROWS, FUZZ_STREAM_COLS}};
  shl_stream_opts opts = {.size = sizeof(shl_stream_opts), .slots = FUZZ_STREAM_SLOTS,
                          .max_readers = FUZZ_STREAM_READERS};
  return shl_writer_open(w, name, &frame, &opts);
}

/* Reads every byte of [p, p + n): ASan reports any byte outside a mapping
 * or allocation (and a plain build faults on one outside the mapping); the
 * empty asm keeps the loads. */
static inline void fuzz_touch(const void *p, uint64_t n) {
  const unsigned char *b = p;
  unsigned char acc = 0;
  for (uint64_t i = 0; i < n; i++) acc ^= b[i];
  __asm__ __volatile__("" : : "r"(acc) : "memory");
}

#endif
