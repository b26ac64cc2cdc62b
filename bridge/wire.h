/* The bridge's wire format, version 2 (docs/bridge.md, What crosses the wire).
 *
 * Every message starts with a 32-byte preamble, little-endian:
 *   0  magic "SHLB"        4  version (1)       5  type (enum wire_type)
 *   6  flags (0)           8  sender id (random per sender process)
 *  16  layout generation (1, 2, ... per sender id)   20  reserved (0)
 *  24  body length: bytes of this part after the preamble
 * A JOIN message is the preamble alone. A LAYOUT message is one part: preamble, struct wire_layout's fields, the
 * frame format and the metadata format (no NULs). A FRAME message is two
 * parts: preamble, struct wire_frame's fields and the metadata record; then
 * the frame's bytes (raw, one zstd frame, or one JPEG image). Parts are checked against
 * the sizes they announce before anything is used; anything else is
 * dropped and counted. This file is the only one that knows the byte
 * layout, and it has no ZeroMQ in it (tests feed it arbitrary bytes). */
#ifndef SHMLANE_BRIDGE_WIRE_H
#define SHMLANE_BRIDGE_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "shmlane.h"

#define WIRE_MAGIC "SHLB"
#define WIRE_VERSION 2
#define WIRE_PREAMBLE 32
#define WIRE_LAYOUT_FIXED 48 /* + 16 * ndim + the three strings */
#define WIRE_FRAME_FIXED 40  /* + meta record */
#define WIRE_MAX_META 65536  /* metadata records beyond this are refused */

/* LAYOUT and FRAME go from the sender to a receiver, JOIN (the preamble
 * alone, the sender id field holding the receiver's id) from a receiver to
 * the sender: "send me the stream", once a second while it wants it. */
enum wire_type { WIRE_LAYOUT = 1, WIRE_FRAME = 2, WIRE_JOIN = 3 };

/* The sender's local stream, as LAYOUT tells it. */
enum wire_state {
  WIRE_LIVE = 0,   /* a writer publishes */
  WIRE_GONE = 1,   /* its writer died (SHL_E_WRITER_GONE) */
  WIRE_CLOSED = 2, /* its writer closed it (SHL_E_WRITER_CLOSED) */
  WIRE_ABSENT = 3  /* no stream of that name yet: no layout follows */
};

/* WIRE_ZSTD_DELTA: zstd of the frame whose rows (wire_delta_row bytes
 * each) are replaced by their bytewise difference from the row before.
 * WIRE_JPEG: one baseline JPEG image (JFIF) of a byte image's pixels, lossy
 * (bridge/codec.c says which layouts are images). */
enum wire_codec { WIRE_RAW = 0, WIRE_ZSTD = 1, WIRE_ZSTD_DELTA = 2, WIRE_JPEG = 3 };

struct wire_preamble {
  uint8_t type;
  uint64_t sender;
  uint32_t gen;
};

/* A stream's layout: all a receiver needs to create one like it. */
struct wire_layout {
  uint32_t state; /* enum wire_state */
  uint32_t slots, max_readers;
  uint32_t ndim;
  uint64_t itemsize;
  uint64_t frame_bytes; /* what a FRAME's second part holds, uncompressed */
  uint64_t shape[SHL_MAX_NDIM];
  int64_t strides[SHL_MAX_NDIM];
  char format[SHL_FORMAT_MAX + 1];
  char meta_format[SHL_FORMAT_MAX + 1]; /* "" for none */
  uint64_t meta_size;                   /* its itemsize, 0 for none */
  char name[SHL_NAME_MAX + 1];          /* the sender's stream name */
};

struct wire_frame {
  uint64_t seq;          /* the sender's stream's number */
  uint64_t timestamp_ns; /* CLOCK_MONOTONIC at publish on the sending host */
  uint64_t realtime_ns;  /* the same moment in CLOCK_REALTIME (as well as the sender knows) */
  uint64_t raw_bytes;    /* frame bytes before compression */
  uint32_t codec;        /* enum wire_codec */
  uint32_t meta_size;
  const void *meta; /* into the message (decode) */
};

/* Encoders write into buf (of size cap) and return the bytes written, or 0
 * if it does not fit. */
size_t wire_encode_layout(void *buf, size_t cap, const struct wire_preamble *p,
                          const struct wire_layout *l);
size_t wire_encode_frame(void *buf, size_t cap, const struct wire_preamble *p,
                         const struct wire_frame *f);

size_t wire_encode_join(void *buf, size_t cap, uint64_t receiver_id);

/* Decoders: 0, or a static message saying what is wrong. */
const char *wire_decode_preamble(const void *buf, size_t len, struct wire_preamble *p);
const char *wire_decode_layout(const void *buf, size_t len, struct wire_layout *l);
const char *wire_decode_frame(const void *buf, size_t len, struct wire_frame *f);

/* Bytes a frame of this layout spans (the library's shl_layout_extent); 0
 * for an empty frame or a layout the library would refuse. */
uint64_t wire_frame_bytes(const shl_layout *layout);
/* A layout from its wire form (format points into l). */
void wire_to_layout(const struct wire_layout *l, shl_layout *out);
/* The row a delta-coded frame of this layout is coded by: the bytes of one
 * step of its first dimension (C-contiguous, 2 dimensions or more), else 0. */
uint64_t wire_delta_row(const struct wire_layout *l);
/* Whether two layouts describe the same stream (state aside). */
int wire_same_layout(const struct wire_layout *a, const struct wire_layout *b);

#endif /* SHMLANE_BRIDGE_WIRE_H */
