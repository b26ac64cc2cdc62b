/* Open/attach cost, in one process (opening by name is the same system
 * calls whoever created the segment):
 *
 *   attach NAME ITERS OUT
 *
 * OUT.create  shl_create of a 480x640x3 uint8 array + shl_close (the name stays)
 * OUT.open    shl_open + shl_get_layout + shl_payload (the typed view) + shl_close
 * OUT.unlink  shl_unlink
 * OUT.sw      shl_writer_open of a new 8-slot stream of such frames + close
 * OUT.sr      shl_reader_open + shl_reader_close of that stream */
#include "common.h"

int main(int argc, char **argv) {
  if (argc != 4) {
    fputs("usage: attach NAME ITERS OUT\n", stderr);
    return 2;
  }
  const char *name = argv[1], *out = argv[3];
  long n = atol(argv[2]);
  int64_t *create = alloc_i64((size_t)n), *open = alloc_i64((size_t)n),
          *unlink = alloc_i64((size_t)n), *sw = alloc_i64((size_t)n), *sr = alloc_i64((size_t)n);
  shl_layout layout = {.format = "B", .ndim = 3, .shape = {480, 640, 3}};
  shl_unlink(name);
  volatile unsigned char sink = 0;
  for (long i = 0; i < n; i++) {
    shl_segment *seg;
    int64_t t0 = now_ns();
    int rc = shl_create(&seg, name, &layout, NULL);
    shl_close(seg);
    int64_t t1 = now_ns();
    if (rc < 0) die_rc("shl_create", rc);
    rc = shl_open(&seg, name, SHL_OPEN_READONLY, SHL_OPEN_DEFAULT_TIMEOUT_NS);
    shl_layout got;
    if (rc == 0) {
      shl_get_layout(seg, &got);
      sink ^= *(const unsigned char *)shl_payload(seg);
      shl_close(seg);
    }
    int64_t t2 = now_ns();
    if (rc < 0) die_rc("shl_open", rc);
    shl_unlink(name);
    int64_t t3 = now_ns();
    create[i] = t1 - t0, open[i] = t2 - t1, unlink[i] = t3 - t2;
    shl_writer *w;
    t0 = now_ns();
    rc = shl_writer_open(&w, name, &layout, NULL);
    shl_writer_close(w);
    t1 = now_ns();
    if (rc < 0) die_rc("shl_writer_open", rc);
    shl_reader *r;
    rc = shl_reader_open(&r, name, SHL_RECV_LATEST, 0);
    shl_reader_close(r);
    t2 = now_ns();
    if (rc < 0) die_rc("shl_reader_open", rc);
    shl_unlink(name);
    sw[i] = t1 - t0, sr[i] = t2 - t1;
  }
  char p[4096];
  const char *what[] = {"create", "open", "unlink", "sw", "sr"};
  int64_t *vals[] = {create, open, unlink, sw, sr};
  for (int k = 0; k < 5; k++) {
    snprintf(p, sizeof p, "%s.%s", out, what[k]);
    dump(p, vals[k], (size_t)n);
  }
  return 0;
}
