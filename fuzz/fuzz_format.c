/* Fuzz target: the element-format parser on arbitrary bytes. The format
 * string comes from a header any peer with write access can rewrite. */
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > SHL_FORMAT_MAX + 16) return 0;
  /* Exactly `size` bytes, no terminator: a read past `len` is an overflow. */
  char *exact = malloc(size ? size : 1);
  char *cstr = malloc(size + 1);
  if (!exact || !cstr) abort();
  memcpy(exact, data, size);
  memcpy(cstr, data, size);
  cstr[size] = '\0';
  int64_t a = shl__format_parse(exact, size);
  int64_t b = shl_format_itemsize(cstr);
  /* Same bytes, same answer, whenever there is no NUL inside. */
  if (!memchr(data, 0, size) && size <= SHL_FORMAT_MAX && a != b) abort();
  if (a == 0 || b == 0) abort(); /* an itemsize is > 0 or an error */
  free(exact);
  free(cstr);
  return 0;
}

int fuzz_seed_check(const uint8_t *data, size_t size) {
  if (size > SHL_FORMAT_MAX) return SHL_E_BAD_FORMAT;
  int64_t itemsize = shl__format_parse((const char *)data, size);
  return itemsize < 0 ? (int)itemsize : 0;
}
