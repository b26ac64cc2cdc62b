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
