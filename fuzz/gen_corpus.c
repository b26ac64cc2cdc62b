/* Writes the seed corpora in fuzz/corpus/ from real segments made by the
 * library: the header seeds are whole objects as /dev/shm holds them, the
 * stream seeds the kind-specific area of fuzz_stream's stream after some
 * traffic (preceded by the receive-policy byte). The format seeds are plain strings.
 * Usage: gen_corpus DIR   (DIR/format, DIR/header, DIR/stream must exist) */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz_common.h"

static const char *dir;

static void put(const char *sub, const char *file, const void *data, size_t size) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s/%s", dir, sub, file);
  FILE *f = fopen(path, "wb");
  if (!f || fwrite(data, 1, size, f) != size || fclose(f) != 0) {
    perror(path);
    exit(1);
  }
}

/* The object behind a segment name, byte for byte. */
static void dump_object(const char *name, const char *file) {
  char path[128];
  snprintf(path, sizeof path, "/dev/shm%s%s", SHL_POSIX_PREFIX, name);
  int fd = open(path, O_RDONLY);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) < 0) exit(1);
  unsigned char *buf = malloc((size_t)st.st_size);
  if (read(fd, buf, (size_t)st.st_size) != st.st_size) exit(1);
  close(fd);
  put("header", file, buf, (size_t)st.st_size);
  free(buf);
}

static void must(int rc, const char *what) {
  if (rc < 0) {
    fprintf(stderr, "gen_corpus: %s: %s\n", what, shl_strerror(rc));
    exit(1);
  }
}

int main(int argc, char **argv) {
  if (argc != 2) return 2;
  dir = argv[1];
  static const char *formats[] = {
      "<d", "B", "T{<i:x:<d:y:}", "(2,3)<f",
      "T{<Q:frame:(2)<d:xy:<B:flag:3xT{<h:a:2x(3)<f:b:}:inner:4x}", "Zd", "3s", ">H", "?"};
  for (size_t i = 0; i < sizeof formats / sizeof formats[0]; i++) {
    char file[32];
    snprintf(file, sizeof file, "seed%zu", i);
    put("format", file, formats[i], strlen(formats[i]));
  }

  char name[SHL_NAME_MAX + 1];
  snprintf(name, sizeof name, "gen%ld", (long)getpid());
  shl_segment *seg;
  shl_layout arr = {.format = "<d", .ndim = 2, .shape = {3, 4}};
  must(shl_create(&seg, name, &arr, NULL), "array");
  dump_object(name, "array");
  shl_close(seg);
  shl_unlink(name);
  shl_layout st = {.format = "T{<i:x:<d:y:}"};
  must(shl_create(&seg, name, &st, NULL), "struct");
  dump_object(name, "struct");
  shl_close(seg);
  shl_unlink(name);
  shl_layout strided = {.format = "<f", .ndim = 2, .shape = {4, 2}, .strides = {16, 4}};
  must(shl_create(&seg, name, &strided, NULL), "strided");
  dump_object(name, "strided");
  shl_close(seg);
  shl_unlink(name);

  shl_layout frame = {.format = FUZZ_STREAM_FORMAT, .ndim = 2,
                      .shape = {FUZZ_STREAM_ROWS, FUZZ_STREAM_COLS}};
  shl_stream_opts opts = {.size = sizeof(shl_stream_opts), .slots = FUZZ_STREAM_SLOTS, .max_readers = FUZZ_STREAM_READERS};
  shl_writer *w;
  shl_reader *r;
  must(shl_writer_open(&w, name, &frame, &opts), "writer");
  must(shl_reader_open(&r, name, SHL_RECV_ALL, 0), "reader");
  for (int i = 0; i < 6; i++) {
    void *p;
    must(shl_writer_loan(w, &p, 0), "loan");
    must(shl_writer_publish(w, NULL), "publish");
  }
  shl_sample s;
  must(shl_reader_receive(r, &s, 0, 0), "receive"); /* one slot stays pinned */
  dump_object(name, "stream");
  shl_segment *ws = shl_writer_segment(w);
  for (unsigned policy = 0; policy < 2; policy++) {
    unsigned char buf[4096];
    buf[0] = (unsigned char)policy;
    memcpy(buf + 1, ws->ext, ws->ext_size);
    put("stream", policy ? "traffic-all" : "traffic-latest", buf, ws->ext_size + 1);
  }
  shl_reader_release(r, &s);
  shl_reader_close(r);
  shl_writer_close(w);
  shl_unlink(name);
  return 0;
}
