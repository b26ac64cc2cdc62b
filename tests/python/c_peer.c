/* A C process for the Python tests: creates, writes and reads segments
 * through the public API only, so the tests can check that C and Python
 * agree on the bytes. Compiled by conftest.py against the repository's
 * sources. Prints results as text; exits 1 with a message on any error.
 *
 *   c_peer create-array NAME    "<d" shape 2x3, element i = i * 1.5
 *   c_peer create-struct NAME   struct pair below, {-7, 2.5, {1, 2, 3}}
 *   c_peer read-array NAME      format, shape, then the doubles
 *   c_peer wait-read-array NAME the same, waiting up to 30 s for the name to appear
 *   c_peer read-struct NAME     format, then x y z0 z1 z2
 *   c_peer notify NAME          bump the version once
 */
#include <shmlane.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct pair {
  int32_t x; /* then 4 bytes of padding */
  double y;
  int16_t z[3]; /* then 2 bytes of trailing padding */
};
_Static_assert(sizeof(struct pair) == 24 && offsetof(struct pair, y) == 8 &&
                   offsetof(struct pair, z) == 16,
               "layout described by PAIR_FORMAT");
#define PAIR_FORMAT "T{<i:x:4x<d:y:(3)<h:z:2x}"

static void check(int rc, const char *what) {
  if (rc < 0) {
    fprintf(stderr, "c_peer: %s: %s (%s)\n", what, shl_strerror(rc), shl_err_name(rc));
    exit(1);
  }
}

static shl_segment *open_ro(const char *name, uint32_t flags, int64_t timeout_ns) {
  shl_segment *seg;
  check(shl_open(&seg, name, SHL_OPEN_READONLY | flags, timeout_ns), "open");
  return seg;
}

static void print_array(const shl_segment *seg) {
  shl_layout layout;
  shl_get_layout(seg, &layout);
  printf("%s\n", layout.format);
  for (uint32_t i = 0; i < layout.ndim; i++)
    printf("%llu%s", (unsigned long long)layout.shape[i], i + 1 < layout.ndim ? "," : "\n");
  const double *m = shl_payload(seg);
  for (uint64_t i = 0; i < shl_payload_size(seg) / sizeof *m; i++) printf("%g\n", m[i]);
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr,
            "usage: c_peer create-array|create-struct|read-array|wait-read-array|read-struct|"
            "notify NAME\n");
    return 2;
  }
  const char *cmd = argv[1], *name = argv[2];
  shl_segment *seg;
  if (strcmp(cmd, "create-array") == 0) {
    shl_layout layout = {.format = "<d", .ndim = 2, .shape = {2, 3}};
    check(shl_create(&seg, name, &layout, NULL), "create");
    double *m = shl_payload(seg);
    for (int i = 0; i < 6; i++) m[i] = i * 1.5;
  } else if (strcmp(cmd, "create-struct") == 0) {
    shl_layout layout = {.format = PAIR_FORMAT};
    check(shl_create(&seg, name, &layout, NULL), "create");
    struct pair *p = shl_payload(seg);
    *p = (struct pair){-7, 2.5, {1, 2, 3}};
  } else if (strcmp(cmd, "read-array") == 0) {
    seg = open_ro(name, 0, SHL_OPEN_DEFAULT_TIMEOUT_NS);
    print_array(seg);
  } else if (strcmp(cmd, "wait-read-array") == 0) {
    puts("waiting");
    fflush(stdout);
    seg = open_ro(name, SHL_OPEN_WAIT_NAME, 30000000000LL);
    print_array(seg);
  } else if (strcmp(cmd, "read-struct") == 0) {
    seg = open_ro(name, 0, SHL_OPEN_DEFAULT_TIMEOUT_NS);
    shl_layout layout;
    shl_get_layout(seg, &layout);
    printf("%s\n", layout.format);
    if (shl_payload_size(seg) != sizeof(struct pair)) {
      fprintf(stderr, "c_peer: payload is %llu bytes\n", (unsigned long long)shl_payload_size(seg));
      return 1;
    }
    const struct pair *p = shl_payload(seg);
    printf("%d %g %d %d %d\n", p->x, p->y, p->z[0], p->z[1], p->z[2]);
  } else if (strcmp(cmd, "notify") == 0) {
    check(shl_open(&seg, name, 0, SHL_OPEN_DEFAULT_TIMEOUT_NS), "open");
    check(shl_notify(seg, NULL), "notify");
  } else {
    fprintf(stderr, "c_peer: unknown command %s\n", cmd);
    return 2;
  }
  shl_close(seg);
  return 0;
}
