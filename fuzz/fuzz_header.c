/* Fuzz target: arbitrary bytes as a shared-memory object, opened both ways.
 * If an open succeeds, every payload byte is read and the layout and info
 * queried: nothing may reach outside the mapping. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz_common.h"

static void exercise(shl_segment *seg) {
  shl_layout layout;
  shl_info info = SHL_INFO_INIT;
  shl_get_layout(seg, &layout);
  fuzz_touch(layout.format, strlen(layout.format));
  fuzz_touch(shl_payload(seg), shl_payload_size(seg));
  shl_get_info(seg, &info);
  shl_changes(seg);
  if (shl_kind(seg) == SHL_KIND_STREAM) {
    shl_stream_info s = SHL_STREAM_INFO_INIT;
    shl_stream_get_info(seg, &s);
  }
}

static char name[SHL_NAME_MAX + 1], pname[64];

/* Writes the input as the object behind `name`. */
static void put_object(const uint8_t *data, size_t size) {
  snprintf(name, sizeof name, "fzh%ld", (long)getpid());
  snprintf(pname, sizeof pname, "%s%s", SHL_POSIX_PREFIX, name);
  int fd = shm_open(pname, O_RDWR | O_CREAT | O_TRUNC, 0600);
  if (fd < 0) abort();
  for (size_t done = 0; done < size;) {
    ssize_t n = write(fd, data + done, size - done);
    if (n <= 0) abort();
    done += (size_t)n;
  }
  close(fd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  put_object(data, size);
  static const uint32_t modes[] = {0, SHL_OPEN_READONLY};
  for (size_t i = 0; i < 2; i++) {
    shl_segment *seg;
    if (shl_open(&seg, name, modes[i], 0) == 0) {
      exercise(seg);
      shl_close(seg);
    }
  }
  shm_unlink(pname);
  return 0;
}

int fuzz_seed_check(const uint8_t *data, size_t size) {
  put_object(data, size);
  shl_segment *seg;
  int rc = shl_open(&seg, name, SHL_OPEN_READONLY, 0);
  if (rc == 0) shl_close(seg);
  shm_unlink(pname);
  return rc;
}
