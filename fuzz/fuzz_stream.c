/* Fuzz target: a valid stream whose kind-specific area (control block, slot
 * table, reader table) is overwritten by the input, as a hostile or broken
 * peer with write access could. A reader opens it and receives a few times
 * without waiting, touching every byte of each frame it is handed; the
 * writer then loans a slot. Nothing may reach outside the mapping. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz_common.h"

static shl_writer *writer;
static char name[SHL_NAME_MAX + 1];
static unsigned char pristine[4096];
static size_t ext_size;

static void cleanup(void) {
  shl_writer_close(writer);
  shl_unlink(name);
}

static void setup(void) {
  snprintf(name, sizeof name, "fzs%ld", (long)getpid());
  shl_unlink(name);
  if (fuzz_stream_writer_open(&writer, name) != 0) abort();
  for (int i = 0; i < 3; i++) {
    void *p;
    if (shl_writer_loan(writer, &p, 0) < 0) abort();
    memset(p, i, FUZZ_STREAM_ROWS * FUZZ_STREAM_COLS * 4);
    shl_writer_publish(writer, NULL);
  }
  shl_segment *seg = shl_writer_segment(writer);
  ext_size = seg->ext_size;
  if (ext_size > sizeof pristine) abort();
  memcpy(pristine, seg->ext, ext_size);
  atexit(cleanup);
}

/* Byte 0 picks the reader's receive policy; the rest overwrites the area. */
static uint32_t overwrite_area(const uint8_t *data, size_t size) {
  if (!writer) setup();
  shl_segment *wseg = shl_writer_segment(writer);
  uint32_t policy = size && (data[0] & 1) ? SHL_RECV_ALL : SHL_RECV_LATEST;
  if (size) data++, size--;
  memcpy(wseg->ext, pristine, ext_size);
  memcpy(wseg->ext, data, size < ext_size ? size : ext_size);
  return policy;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  uint32_t policy = overwrite_area(data, size);
  shl_reader *r;
  if (shl_reader_open(&r, name, policy, 0) == 0) {
    shl_layout layout;
    shl_get_layout(shl_reader_segment(r), &layout);
    uint64_t frame_bytes = layout.itemsize;
    for (uint32_t i = 0; i < layout.ndim; i++) frame_bytes *= layout.shape[i];
    shl_sample held[3];
    int n = 0;
    for (int i = 0; i < 3; i++) {
      if (shl_reader_receive(r, &held[n], 0, 0) != 0) continue;
      fuzz_touch(held[n].data, frame_bytes);
      n++;
    }
    while (n > 0) shl_reader_release(r, &held[--n]);
    shl_reader_close(r);
  }
  void *p;
  if (shl_writer_loan(writer, &p, 0) >= 0) {
    memset(p, 0x5a, FUZZ_STREAM_ROWS * FUZZ_STREAM_COLS * 4);
    shl_writer_discard(writer);
  }
  return 0;
}

int fuzz_seed_check(const uint8_t *data, size_t size) {
  shl_reader *r;
  int rc = shl_reader_open(&r, name, overwrite_area(data, size), 0);
  if (rc == 0) shl_reader_close(r);
  return rc;
}
