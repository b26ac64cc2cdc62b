/* Helpers every part of the shmlane command uses: messages, lists of
 * names, where an object appears as a file. The bottom of the program: it
 * calls nothing of it. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

void errorf(int rc, const char *fmt, ...) {
  va_list ap;
  fputs("shmlane: ", stderr);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  if (rc) fprintf(stderr, ": %s", shl_strerror(rc));
  fputc('\n', stderr);
}

int collect_name(const char *name, void *arg) {
  struct list *l = arg;
  if (l->n == l->cap) {
    size_t cap = l->cap ? 2 * l->cap : 16;
    char **grown = realloc(l->names, cap * sizeof *grown);
    if (!grown) return -ENOMEM;
    l->names = grown;
    l->cap = cap;
  }
  if (!(l->names[l->n] = strdup(name))) return -ENOMEM;
  l->n++;
  return 0;
}

int compare_names(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

void list_free(struct list *l) {
  for (size_t i = 0; i < l->n; i++) free(l->names[i]);
  free(l->names);
}

bool shm_path(const char *name, char *buf, size_t size) {
  int n = snprintf(buf, size, "/dev/shm%s%s", SHL_POSIX_PREFIX, name);
  return n > 0 && (size_t)n < size;
}
