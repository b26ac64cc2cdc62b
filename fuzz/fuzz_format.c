/* Fuzz target: the element-format parser on arbitrary bytes, and what is
 * built on it (the walk, the canonical form). The format string comes from
 * a header any peer with write access can rewrite. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"

/* Every field the walk reports lies inside what encloses it, structs open
 * and close in pairs, and the limits hold. */
struct walk_check {
  uint64_t limit[SHL_FORMAT_MAX_DEPTH + 1]; /* bytes the struct at each depth spans */
  uint32_t open;                            /* structs open */
};

static int check_field(const shl_format_field *f, void *arg) {
  struct walk_check *w = arg;
  uint64_t bytes = f->itemsize;
  for (uint32_t i = 0; i < f->ndim; i++)
    if (f->shape[i] == 0) bytes = 0; /* an empty array: huge other sizes multiply to nothing */
  for (uint32_t i = 0; i < f->ndim && bytes; i++)
    if (__builtin_mul_overflow(bytes, f->shape[i], &bytes)) abort();
  if (f->size != sizeof *f || f->ndim > SHL_FORMAT_MAX_DIMS || f->depth > SHL_FORMAT_MAX_DEPTH)
    abort();
  if (f->code[0] == '}') {
    if (w->open == 0 || f->depth != --w->open) abort();
    return 0;
  }
  if (f->depth != w->open || f->offset > w->limit[f->depth] ||
      bytes > w->limit[f->depth] - f->offset || (f->name && f->name_len == 0))
    abort();
  if (f->code[0] == 'T') w->limit[++w->open] = f->itemsize;
  return 0;
}

/* The walk agrees with the itemsize, and the canonical form, when it is a
 * format the library stores, reads as the same bytes and is its own. */
static void check_walk(const char *format, int64_t itemsize) {
  struct walk_check w = {.limit = {(uint64_t)itemsize}};
  int64_t walked = shl_format_walk(format, check_field, &w, NULL);
  if (walked == -EOVERFLOW) return;
  if (walked != itemsize || w.open != 0) abort();
  int64_t len = shl_format_canonical(format, NULL, 0);
  char *canonical = len >= 0 ? malloc((size_t)len + 1) : NULL;
  if (!canonical || shl_format_canonical(format, canonical, (size_t)len + 1) != len) abort();
  int64_t again = shl_format_itemsize(canonical);
  if (again != SHL_E_BAD_FORMAT && again != itemsize) abort(); /* beyond the limits, or the same */
  if (again > 0) {
    char *twice = malloc((size_t)len + 1);
    if (!twice || shl_format_canonical(canonical, twice, (size_t)len + 1) != len ||
        strcmp(twice, canonical) != 0)
      abort();
    free(twice);
  }
  free(canonical);
}

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
  if (b > 0) check_walk(cstr, b);
  free(exact);
  free(cstr);
  return 0;
}

int fuzz_seed_check(const uint8_t *data, size_t size) {
  if (size > SHL_FORMAT_MAX) return SHL_E_BAD_FORMAT;
  int64_t itemsize = shl__format_parse((const char *)data, size);
  return itemsize < 0 ? (int)itemsize : 0;
}
