/* Fuzz target: the bridge's wire decoder, frame decoders and admission
 * (bridge/wire.c, bridge/codec.c, bridge/admit.c), fed what a network peer
 * controls. Byte 0 picks the path; the rest is a message of parts, each a
 * 2-byte little-endian length and its bytes (the corpus, fuzz/corpus/wire,
 * holds real messages of a running bridge, written by `bridge_peer corpus`):
 *   0  a message to a receiver: LAYOUT, or FRAME (+ frame bytes, + LAYOUT),
 *      decoded and checked as `bridge recv` does, and what decodes is
 *      encoded again and must decode the same; a frame with its layout
 *      along is decoded (raw, zstd, JPEG) into a buffer of the layout's
 *      size, with guard bytes past it: libzstd and libjpeg are not built
 *      with the sanitizers, so a write of theirs past the frame would
 *      escape ASan, not the guard;
 *   1  a message to the sender (JOIN), as `bridge send` takes it;
 *   2  a ZAP request (the admission of a peer), parsed and decided under a
 *      few policies (ipc or not, with an allow list or not).
 * Every part is an exact-size copy: a read past one is caught. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admit.h"
#include "codec.h"
#include "fuzz_common.h"
#include "wire.h"

#define MAX_PARTS 8
#define GUARD 64                 /* bytes past a decoded frame that must stay as they were */
#define MAX_FRAME (4u << 20)     /* larger frames are not decoded (memory) */

struct parts {
  int n;
  const void *data[MAX_PARTS];
  size_t size[MAX_PARTS];
};

static void split(const uint8_t *b, size_t len, struct parts *p) {
  p->n = 0;
  while (len >= 2 && p->n < MAX_PARTS) {
    size_t n = (size_t)b[0] | (size_t)b[1] << 8;
    b += 2, len -= 2;
    if (n > len) n = len;
    void *copy = malloc(n ? n : 1);
    memcpy(copy, b, n);
    p->data[p->n] = copy, p->size[p->n] = n, p->n++;
    b += n, len -= n;
  }
}

/* A layout that decoded: its derived values, and the round trip. */
static void layout_checks(const struct wire_preamble *pre, const struct wire_layout *l) {
  if (l->state == WIRE_ABSENT) return;
  shl_layout layout;
  wire_to_layout(l, &layout);
  if (wire_frame_bytes(&layout) != l->frame_bytes) abort();
  uint64_t row = wire_delta_row(l);
  if (row && (row > l->frame_bytes || l->frame_bytes % row)) abort();
  uint8_t buf[WIRE_PREAMBLE + WIRE_LAYOUT_FIXED + 16 * SHL_MAX_NDIM + 3 * SHL_FORMAT_MAX];
  struct wire_preamble p2;
  struct wire_layout l2;
  size_t n = wire_encode_layout(buf, sizeof buf, pre, l);
  if (!n || wire_decode_preamble(buf, n, &p2) || wire_decode_layout(buf, n, &l2) ||
      !wire_same_layout(l, &l2) || l2.state != l->state)
    abort();
}

/* What `bridge recv` does with the frame's bytes once the frame and its
 * layout agree: codec_check, then codec_unpack into a slot of the layout's size. */
static void decode(const struct wire_layout *l, const struct wire_frame *f, const void *data,
                   size_t size) {
  static struct codec *dec;
  if (!dec && !(dec = codec_new(NULL, NULL))) abort();
  if (l->frame_bytes > MAX_FRAME || codec_check(l, f->codec, size)) return;
  uint8_t *slot = malloc(l->frame_bytes + GUARD);
  memset(slot + l->frame_bytes, 0xA5, GUARD);
  codec_unpack(dec, l, f->codec, slot, data, size);
  for (size_t i = 0; i < GUARD; i++)
    if (slot[l->frame_bytes + i] != 0xA5) abort(); /* written past the frame */
  free(slot);
}

static void to_receiver(const struct parts *p) {
  struct wire_preamble pre, lpre;
  struct wire_layout l;
  struct wire_frame f;
  if (p->n < 1 || wire_decode_preamble(p->data[0], p->size[0], &pre)) return;
  if (pre.type == WIRE_LAYOUT && p->n == 1) {
    if (!wire_decode_layout(p->data[0], p->size[0], &l)) layout_checks(&pre, &l);
    return;
  }
  if (pre.type != WIRE_FRAME || p->n < 2 || p->n > 3) return;
  bool have_layout = p->n == 3 && !wire_decode_preamble(p->data[2], p->size[2], &lpre) &&
                     lpre.type == WIRE_LAYOUT && !wire_decode_layout(p->data[2], p->size[2], &l);
  if (have_layout) layout_checks(&lpre, &l);
  if (wire_decode_frame(p->data[0], p->size[0], &f)) return;
  fuzz_touch(f.meta, f.meta_size);
  if (have_layout && f.meta_size == l.meta_size && f.raw_bytes == l.frame_bytes)
    decode(&l, &f, p->data[1], p->size[1]);
  uint8_t buf[WIRE_PREAMBLE + WIRE_FRAME_FIXED + WIRE_MAX_META];
  struct wire_frame f2;
  size_t n = f.meta_size <= WIRE_MAX_META ? wire_encode_frame(buf, sizeof buf, &pre, &f) : 0;
  if (n && (wire_decode_frame(buf, n, &f2) || f2.seq != f.seq || f2.codec != f.codec ||
            f2.meta_size != f.meta_size || memcmp(f2.meta, f.meta, f.meta_size)))
    abort();
}

static void to_sender(const struct parts *p) {
  struct wire_preamble pre;
  if (p->n == 1 && !wire_decode_preamble(p->data[0], p->size[0], &pre) &&
      pre.type == WIRE_JOIN && p->size[0] != WIRE_PREAMBLE)
    abort(); /* a JOIN is the preamble alone */
}

static void admission(const struct parts *p) {
  struct zap_request q;
  if (zap_parse(p->data, p->size, p->n, &q)) return;
  static const uint8_t keys[2][32] = {{1}, {2}};
  for (int i = 0; i < 8; i++) {
    struct admit_policy pol = {.ipc = i & 1,
                               .self_uid = 1000,
                               .stream = {.known = i & 2, .owner_uid = 1001, .mode = 0640},
                               .allowed = i & 4 ? keys : NULL,
                               .nallowed = i & 4 ? 2 : 0,
                               .connections = i,
                               .receivers = i,
                               .max_receivers = 4};
    const char *why;
    int code = zap_decide(&q, &pol, &why);
    if (code != 200 && code != 500 && code != 400) abort();
    if ((code == 200) != (why == NULL)) abort();
    if (code == 200 && pol.ipc && !(q.has_creds && may_read(&pol, q.uid, q.gid, q.in_group))) abort();
  }
}

static void free_parts(struct parts *p) {
  for (int i = 0; i < p->n; i++) free((void *)p->data[i]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  struct parts p;
  split(data + 1, size - 1, &p);
  switch (data[0] % 3) {
  case 0: to_receiver(&p); break;
  case 1: to_sender(&p); break;
  default: admission(&p); break;
  }
  free_parts(&p);
  return 0;
}

/* A seed's first part is a message of today's wire version, or its parts
 * a ZAP request: seeds captured from an older bridge fail the replay. */
int fuzz_seed_check(const uint8_t *data, size_t size) {
  if (size < 1) return -EPROTO;
  struct parts p;
  split(data + 1, size - 1, &p);
  struct wire_preamble pre;
  struct zap_request q;
  const char *why = "no message";
  if (data[0] % 3 == 2)
    why = zap_parse(p.data, p.size, p.n, &q);
  else if (p.n > 0)
    why = wire_decode_preamble(p.data[0], p.size[0], &pre);
  free_parts(&p);
  if (!why) return 0;
  fprintf(stderr, "fuzz_wire: %s\n", why);
  return -EPROTO;
}
