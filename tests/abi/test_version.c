/* The version macros of the header, the library's own answers and the
 * project version (argv[1], from meson.build) say the same thing. */
#include <shmlane.h>
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv) {
  char macros[64];
  snprintf(macros, sizeof macros, "%d.%d.%d", SHL_VERSION_MAJOR, SHL_VERSION_MINOR,
           SHL_VERSION_PATCH);
  unsigned number = SHL_VERSION_MAJOR * 10000u + SHL_VERSION_MINOR * 100u + SHL_VERSION_PATCH;
  int bad = 0;
  if (argc != 2) {
    fprintf(stderr, "usage: test_version PROJECT_VERSION\n");
    return 1;
  }
  if (strcmp(SHL_VERSION_STRING, argv[1]) != 0 || strcmp(macros, argv[1]) != 0) {
    fprintf(stderr, "header says %s (%s), meson.build %s\n", SHL_VERSION_STRING, macros, argv[1]);
    bad = 1;
  }
  if (strcmp(shl_version_string(), SHL_VERSION_STRING) != 0) {
    fprintf(stderr, "shl_version_string() %s, header %s\n", shl_version_string(), SHL_VERSION_STRING);
    bad = 1;
  }
  if (shl_version_number() != number) {
    fprintf(stderr, "shl_version_number() %u, header %u\n", shl_version_number(), number);
    bad = 1;
  }
  if (!bad) printf("version %s (%u)\n", shl_version_string(), shl_version_number());
  return bad;
}
