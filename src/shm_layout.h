/* The bytes every process agrees on: the segment header, format version 1.
 * Documented field by field in docs/format.md; the asserts below pin it.
 * All integers are in the creating machine's byte order (segments never
 * leave one machine); `magic` tells a foreign file from ours. */
#ifndef SHL_SHM_LAYOUT_H
#define SHL_SHM_LAYOUT_H

#include <pthread.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "shmlane.h"

#define SHL__MAGIC "SHMLANE"  /* 7 chars + NUL = 8 bytes */
#define SHL__FORMAT_VERSION 1u
#define SHL__HEADER_SIZE 512u /* fixed part; the format string follows it */
#define SHL__PAYLOAD_ALIGN 4096u

enum shl__state {
  SHL__STATE_INIT = 0, /* zero-filled file, or creator still writing */
  SHL__STATE_READY = 1 /* published with release ordering; header immutable after */
};

enum shl__header_flags {
  /* Some opener may be unable to write the header (mode grants read without
   * write), so it cannot announce itself in `waiters`: notify always wakes. */
  SHL__HDR_WAKE_ALWAYS = 1u << 0
};

struct shl__header {
  char magic[8];                /*   0 "SHMLANE\0" */
  uint32_t format_version;      /*   8 SHL__FORMAT_VERSION */
  uint32_t header_size;         /*  12 SHL__HEADER_SIZE */
  _Atomic uint32_t state;       /*  16 enum shl__state */
  uint32_t kind;                /*  20 enum shl_kind */
  uint64_t total_size;          /*  24 bytes of the whole object */
  uint64_t payload_offset;      /*  32 multiple of SHL__PAYLOAD_ALIGN */
  uint64_t payload_size;        /*  40 */
  uint64_t format_offset;       /*  48 */
  uint32_t format_len;          /*  56 without NUL; the NUL is stored */
  uint32_t ndim;                /*  60 <= SHL_MAX_NDIM */
  uint64_t itemsize;            /*  64 */
  int32_t creator_pid;          /*  72 */
  uint32_t flags;               /*  76 enum shl__header_flags */
  uint64_t creator_start;       /*  80 creator's start time, clock ticks since boot */
  uint64_t created_ns;          /*  88 CLOCK_REALTIME at creation */
  uint64_t ext_offset;          /*  96 kind-specific area (streams), 0 if none */
  uint64_t ext_size;            /* 104 */
  uint64_t reserved0[2];        /* 112 zero */
  uint64_t shape[SHL_MAX_NDIM]; /* 128 */
  int64_t strides[SHL_MAX_NDIM];/* 192 bytes */
  /* Mutable part: each on its own cache line. */
  alignas(64) union {           /* 256 robust process-shared pthread mutex */
    pthread_mutex_t mutex;
    unsigned char bytes[64];
  } lock;
  alignas(64) _Atomic uint64_t version; /* 320 change counter; futex on its low 32 bits */
  _Atomic uint32_t waiters;     /* 328 sleepers that asked to be woken */
  uint32_t reserved1;           /* 332 */
  unsigned char reserved2[176]; /* 336..511 zero */
};

_Static_assert(sizeof(struct shl__header) == SHL__HEADER_SIZE, "header size");
_Static_assert(sizeof(pthread_mutex_t) <= 64, "mutex fits its slot");
_Static_assert(offsetof(struct shl__header, format_version) == 8, "layout");
_Static_assert(offsetof(struct shl__header, state) == 16, "layout");
_Static_assert(offsetof(struct shl__header, kind) == 20, "layout");
_Static_assert(offsetof(struct shl__header, total_size) == 24, "layout");
_Static_assert(offsetof(struct shl__header, payload_offset) == 32, "layout");
_Static_assert(offsetof(struct shl__header, payload_size) == 40, "layout");
_Static_assert(offsetof(struct shl__header, format_offset) == 48, "layout");
_Static_assert(offsetof(struct shl__header, format_len) == 56, "layout");
_Static_assert(offsetof(struct shl__header, ndim) == 60, "layout");
_Static_assert(offsetof(struct shl__header, itemsize) == 64, "layout");
_Static_assert(offsetof(struct shl__header, creator_pid) == 72, "layout");
_Static_assert(offsetof(struct shl__header, flags) == 76, "layout");
_Static_assert(offsetof(struct shl__header, creator_start) == 80, "layout");
_Static_assert(offsetof(struct shl__header, created_ns) == 88, "layout");
_Static_assert(offsetof(struct shl__header, ext_offset) == 96, "layout");
_Static_assert(offsetof(struct shl__header, ext_size) == 104, "layout");
_Static_assert(offsetof(struct shl__header, shape) == 128, "layout");
_Static_assert(offsetof(struct shl__header, strides) == 192, "layout");
_Static_assert(offsetof(struct shl__header, lock) == 256, "layout");
_Static_assert(offsetof(struct shl__header, version) == 320, "layout");
_Static_assert(offsetof(struct shl__header, waiters) == 328, "layout");
_Static_assert(sizeof(_Atomic uint64_t) == 8 && sizeof(_Atomic uint32_t) == 4, "atomics");

#endif /* SHL_SHM_LAYOUT_H */
