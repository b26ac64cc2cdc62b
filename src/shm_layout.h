/* The bytes every process agrees on: the segment header, format version 5.
 * Documented field by field in docs/format.md; the asserts below pin it.
 * All integers are in the creating machine's byte order (segments never
 * leave one machine); `magic` tells a foreign file from ours. */
#ifndef SHL_SHM_LAYOUT_H
#define SHL_SHM_LAYOUT_H

#include <stdalign.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "shmlane.h"

#define SHL__MAGIC "SHMLANE"  /* 7 chars + NUL = 8 bytes */
/* 2: liveness by role locks; 3: stream metadata, replacement; 4: a liveness
 * word per reader entry, the declared frame period, modes without read-only
 * classes; 5: the segment lock is a robust futex word, not a pthread mutex */
#define SHL__FORMAT_VERSION 5u
#define SHL__HEADER_SIZE 512u /* fixed part; the format string follows it */
#define SHL__PAYLOAD_ALIGN 4096u
#define SHL__EXT_ALIGN 64u /* ext_offset: the stream area holds 64-byte aligned atomics */

/* Role locks (docs/format.md): byte offsets of the object's file, far past any
 * payload, that processes lock with F_OFD_SETLK (F_WRLCK) while they hold a
 * role. Nobody reads or writes these bytes; only their locks mean something. */
#define SHL__ROLE_BASE ((uint64_t)1 << 50)
#define SHL__ROLE_CREATOR (SHL__ROLE_BASE + 0)   /* held while the creator initialises */
#define SHL__ROLE_WRITER (SHL__ROLE_BASE + 1)    /* streams: held by the live writer */
#define SHL__ROLE_READER(i) (SHL__ROLE_BASE + 64 + (uint64_t)(i)) /* reader entry i */

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
  alignas(64) _Atomic uint32_t lock; /* 256 the lock word (SHL__LOCK_*, lock.c) */
  uint32_t reserved_lock[15];   /* 260 zero */
  alignas(64) _Atomic uint64_t changes; /* 320 change counter; futex on its low 32 bits */
  _Atomic uint32_t waiters;     /* 328 sleepers that asked to be woken */
  uint32_t reserved1;           /* 332 */
  unsigned char reserved2[176]; /* 336..511 zero */
};

_Static_assert(sizeof(struct shl__header) == SHL__HEADER_SIZE, "header size");
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
_Static_assert(offsetof(struct shl__header, lock) == 256, "layout: 8-aligned, for a keeper's list");
_Static_assert(offsetof(struct shl__header, changes) == 320, "layout");
_Static_assert(offsetof(struct shl__header, waiters) == 328, "layout");
_Static_assert(sizeof(_Atomic uint64_t) == 8 && sizeof(_Atomic uint32_t) == 4, "atomics");

/* ---------------------------------------------------------------- streams
 * A stream's kind-specific area (at ext_offset): a control block, then
 * `slots` slot descriptors, then `max_readers` reader entries, then the
 * metadata format (if any) with its NUL. Slot i is at payload_offset +
 * i * slot_stride: its frame at the slot's start, its metadata record at
 * meta_offset within it. A pid word holds a process's pid as that process
 * sees it, 0 meaning none: for people only, never for liveness. */

struct shl__stream_ctl {
  uint32_t slots;                   /*  0 */
  uint32_t max_readers;             /*  4 */
  uint32_t flags;                   /*  8 enum shl_stream_flags */
  uint32_t meta_format_len;         /* 12 metadata format, without NUL; 0: no metadata */
  uint64_t slot_stride;             /* 16 multiple of 64 */
  uint64_t frame_size;              /* 24 bytes one frame spans */
  uint64_t meta_offset;             /* 32 metadata record in each slot; multiple of 64, 0 none */
  uint64_t meta_size;               /* 40 its bytes: the metadata format's itemsize */
  uint64_t meta_format_offset;      /* 48 from the start of this area, 0 none */
  uint64_t base_seq;                /* 56 this stream numbers its frames from base_seq + 1 */
  alignas(64) _Atomic uint64_t writer; /* 64 pid word of the writer, 0 none */
  _Atomic uint64_t latest;          /* 72 seq << 8 | slot of the newest frame, 0 none */
  _Atomic uint32_t space;           /* 80 futex: bumped when readers free a slot */
  _Atomic uint32_t writer_waiting;  /* 84 a writer sleeps on `space` */
  _Atomic uint32_t reader_hwm;      /* 88 entries [0, hwm) may be in use */
  _Atomic uint32_t replaced;        /* 92 1: a writer put a new stream under the name */
  uint32_t reserved3[2];            /* 96 zero (version 3's shared liveness word) */
  _Atomic uint64_t period_ns;       /* 104 frame period the writer declared, 0 unknown */
  uint64_t reserved4[2];            /* 112 zero */
};

/* The segment lock word: the kernel's robust futex bits, as a liveness word
 * (below). TID: the thread id of the holder's lock keeper (or, for a holder
 * without one, of the holding thread); 0 free. WAITERS: someone sleeps on
 * it. OWNER_DIED: the kernel found its holder's keeper gone. */
#define SHL__LOCK_WAITERS 0x80000000u
#define SHL__LOCK_DIED 0x40000000u
#define SHL__LOCK_TID_MASK 0x3fffffffu

/* A liveness word, a robust futex word in each reader entry (docs/format.md,
 * Liveness): the thread id of a thread the writer keeps for this alone, which
 * the kernel replaces by OWNER_DIED when that thread ends, so when the
 * writer's process dies; 0 when no writer (or a clean close); NO_KEEPER for a
 * writer without one. WAITERS: the entry's reader sleeps on it (the kernel
 * wakes one sleeper per word at a death, so each reader has its own). The
 * bits are the kernel's FUTEX_* values (checked in liveness.c). */
#define SHL__ALIVE_WAITERS 0x80000000u
#define SHL__ALIVE_DIED 0x40000000u
#define SHL__ALIVE_TID_MASK 0x3fffffffu
#define SHL__ALIVE_NO_KEEPER SHL__ALIVE_TID_MASK

struct shl__slot {
  _Atomic uint64_t seq;          /* 0 published frame's sequence; 0 empty or being written */
  _Atomic uint64_t timestamp_ns; /* 8 CLOCK_MONOTONIC at publish */
};

struct shl__reader {
  _Atomic uint64_t owner;    /*  0 pid word of the reader process, 0 free */
  _Atomic uint64_t pinned;   /*  8 bit i: slot i is held */
  _Atomic uint64_t next_seq; /* 16 `all` readers: next sequence wanted */
  _Atomic uint32_t policy;   /* 24 enum shl_recv_policy */
  uint32_t reserved0;        /* 28 zero */
  _Atomic uint32_t alive;    /* 32 the writer's liveness word for this entry (SHL__ALIVE_*) */
  uint32_t reserved1;        /* 36 zero */
  _Atomic uint64_t lost;     /* 40 frames its reader missed, for people (shl_stream_reader.lost) */
  uint64_t reserved2[2];     /* 48 zero */
};

/* Sequence numbers: frames are numbered from 1 up to SEQ_MAX (so that
 * `latest`, seq << 8 | slot, cannot overflow); a slot's seq above it is
 * never a frame. SEQ_RECLAIM marks a slot the writer is deciding whether to
 * reuse: a reader looking for a frame looks again instead of skipping it. */
#define SHL__SEQ_MAX (((uint64_t)1 << 55) - 1)
#define SHL__SEQ_RECLAIM UINT64_MAX
#define SHL__SLOT_BITS 8u
#define SHL__SLOT_MASK ((1u << SHL__SLOT_BITS) - 1)

_Static_assert(sizeof(struct shl__stream_ctl) == 128, "stream ctl size");
_Static_assert(offsetof(struct shl__stream_ctl, meta_format_len) == 12, "layout");
_Static_assert(offsetof(struct shl__stream_ctl, slot_stride) == 16, "layout");
_Static_assert(offsetof(struct shl__stream_ctl, meta_offset) == 32, "layout");
_Static_assert(offsetof(struct shl__stream_ctl, meta_size) == 40, "layout");
_Static_assert(offsetof(struct shl__stream_ctl, meta_format_offset) == 48, "layout");
_Static_assert(offsetof(struct shl__stream_ctl, base_seq) == 56, "layout");
_Static_assert(offsetof(struct shl__stream_ctl, writer) == 64, "layout");
_Static_assert(offsetof(struct shl__stream_ctl, latest) == 72, "layout");
_Static_assert(offsetof(struct shl__stream_ctl, space) == 80, "layout");
_Static_assert(offsetof(struct shl__stream_ctl, reader_hwm) == 88, "layout");
_Static_assert(offsetof(struct shl__stream_ctl, replaced) == 92, "layout");
_Static_assert(offsetof(struct shl__stream_ctl, period_ns) == 104, "layout");
_Static_assert(sizeof(struct shl__slot) == 16, "slot size");
_Static_assert(sizeof(struct shl__reader) == 64, "reader entry size");
_Static_assert(offsetof(struct shl__reader, next_seq) == 16, "layout");
_Static_assert(offsetof(struct shl__reader, policy) == 24, "layout");
_Static_assert(offsetof(struct shl__reader, alive) == 32, "layout: 8-aligned, for the keeper's list");
_Static_assert(offsetof(struct shl__reader, lost) == 40, "layout");
_Static_assert(SHL_STREAM_MAX_SLOTS <= SHL__SLOT_MASK + 1, "a slot index fits latest's low bits");
_Static_assert((SHL__SEQ_MAX << SHL__SLOT_BITS) >> SHL__SLOT_BITS == SHL__SEQ_MAX, "latest cannot overflow");

#endif /* SHL_SHM_LAYOUT_H */
