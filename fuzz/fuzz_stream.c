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
  shl_layout frame = {.format = FUZZ_STREAM_FORMAT, .ndim = 2,
                      .shape = {FUZZ_STREAM_ROWS, FUZZ_STREAM_COLS}};
  shl_stream_opts opts = {.size = sizeof(shl_stream_opts), .slots = FUZZ_STREAM_SLOTS, .max_readers = FUZZ_STREAM_READERS};
  shl_unlink(name);
  if (shl_writer_open(&writer, name, &frame, &opts) != 0) abort();
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!writer) setup();
  shl_segment *wseg = shl_writer_segment(writer);
  /* Byte 0 picks the reader's receive policy; the rest overwrites the area. */
  uint32_t policy = size && (data[0] & 1) ? SHL_RECV_ALL : SHL_RECV_LATEST;
  if (size) data++, size--;
  memcpy(wseg->ext, pristine, ext_size);
  memcpy(wseg->ext, data, size < ext_size ? size : ext_size);

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
