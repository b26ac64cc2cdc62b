/* Writes the fuzz targets' seeds from real segments made by the library as
 * it is, so that they follow its format version: the header seeds are whole
 * objects as /dev/shm holds them, the stream seeds the kind-specific area of
 * fuzz_stream's stream after some traffic (preceded by the receive-policy
 * byte). The format seeds are plain strings. Every build runs it
 * (fuzz/meson.build); the checked-in fuzz/corpus/ holds regression inputs.
 * Usage: gen_corpus DIR   (DIR/format, DIR/header, DIR/stream are emptied
 * of earlier seeds and written) */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz_common.h"

static const char *dir;
static char name[SHL_NAME_MAX + 1];

static void fail(const char *what, const char *why) {
  fprintf(stderr, "gen_corpus: %s: %s\n", what, why);
  shl_unlink(name);
  exit(1);
}

/* DIR/sub, created or emptied: a seed the generator no longer makes must not linger. */
static void fresh_dir(const char *sub) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", dir, sub);
  if (mkdir(dir, 0755) < 0 && errno != EEXIST) fail(dir, strerror(errno));
  if (mkdir(path, 0755) < 0 && errno != EEXIST) fail(path, strerror(errno));
  DIR *d = opendir(path);
  if (!d) fail(path, strerror(errno));
  for (struct dirent *e; (e = readdir(d));) {
    if (e->d_name[0] != '.' && unlinkat(dirfd(d), e->d_name, 0) < 0)
      fail(e->d_name, strerror(errno));
  }
  closedir(d);
}

static void put(const char *sub, const char *file, const void *data, size_t size) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s/%s", dir, sub, file);
  FILE *f = fopen(path, "wb");
  if (!f || fwrite(data, 1, size, f) != size || fclose(f) != 0) fail(path, strerror(errno));
}

/* The object behind the segment name, byte for byte. */
static void dump_object(const char *file) {
  char path[128];
  snprintf(path, sizeof path, "/dev/shm%s%s", SHL_POSIX_PREFIX, name);
  int fd = open(path, O_RDONLY);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) < 0) fail(path, strerror(errno));
  unsigned char *buf = malloc((size_t)st.st_size);
  if (!buf || read(fd, buf, (size_t)st.st_size) != st.st_size) fail(path, "short read");
  close(fd);
  put("header", file, buf, (size_t)st.st_size);
  free(buf);
}

static void must(int rc, const char *what) {
  if (rc < 0) fail(what, shl_strerror(rc));
}

/* A segment of this layout, as a header seed. */
static void segment_seed(const char *file, const shl_layout *layout) {
  shl_segment *seg;
  must(shl_create(&seg, name, layout, NULL), file);
  dump_object(file);
  shl_close(seg);
  shl_unlink(name);
}

/* A stream after some traffic, with one frame pinned by a reader. */
static void stream_seeds(void) {
  shl_writer *w;
  shl_reader *r;
  must(fuzz_stream_writer_open(&w, name), "writer");
  must(shl_reader_open(&r, name, SHL_RECV_ALL, 0), "reader");
  for (int i = 0; i < 6; i++) {
    void *p;
    must(shl_writer_loan(w, &p, 0), "loan");
    must(shl_writer_publish(w, NULL), "publish");
  }
  shl_sample s;
  must(shl_reader_receive(r, &s, 0, 0), "receive"); /* one slot stays pinned */
  dump_object("stream");
  shl_segment *ws = shl_writer_segment(w);
  for (unsigned policy = 0; policy < 2; policy++) {
    unsigned char buf[4096];
    if (ws->ext_size + 1 > sizeof buf) fail("stream area", "larger than expected");
    buf[0] = (unsigned char)policy;
    memcpy(buf + 1, ws->ext, ws->ext_size);
    put("stream", policy ? "traffic-all" : "traffic-latest", buf, ws->ext_size + 1);
  }
  shl_reader_release(r, &s);
  shl_reader_close(r);
  shl_writer_close(w);
  shl_unlink(name);
}

/* A stream whose frames carry a metadata record. */
static void meta_stream_seed(void) {
  shl_layout frame = {.format = "B", .ndim = 3, .shape = {4, 6, 3}};
  shl_stream_opts opts = {.size = sizeof(shl_stream_opts), .slots = 3, .max_readers = 2,
                          .meta_format = "T{<Q:id:<d:exposure:}"};
  shl_writer *w;
  void *p;
  must(shl_writer_open(&w, name, &frame, &opts), "meta writer");
  must(shl_writer_loan(w, &p, 0), "meta loan");
  must(shl_writer_publish(w, NULL), "meta publish");
  dump_object("stream-meta");
  shl_writer_close(w);
  shl_unlink(name);
}

int main(int argc, char **argv) {
  if (argc != 2) return 2;
  dir = argv[1];
  snprintf(name, sizeof name, "gen%ld", (long)getpid());
  fresh_dir("format");
  fresh_dir("header");
  fresh_dir("stream");
  static const char *formats[] = {
      "<d", "B", "T{<i:x:<d:y:}", "(2,3)<f",
      "T{<Q:frame:(2)<d:xy:<B:flag:3xT{<h:a:2x(3)<f:b:}:inner:4x}", "Zd", "3s", ">H", "?"};
  for (size_t i = 0; i < sizeof formats / sizeof formats[0]; i++) {
    char file[32];
    snprintf(file, sizeof file, "seed%zu", i);
    put("format", file, formats[i], strlen(formats[i]));
  }
  segment_seed("array", &(shl_layout){.format = "<d", .ndim = 2, .shape = {3, 4}});
  segment_seed("struct", &(shl_layout){.format = "T{<i:x:<d:y:}"});
  segment_seed("strided", &(shl_layout){.format = "<f", .ndim = 2, .shape = {4, 2},
                                        .strides = {16, 4}});
  stream_seeds();
  meta_stream_seed();
  return 0;
}
