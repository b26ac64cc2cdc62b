/* Helpers every part of the shmlane command uses: messages, lists of
 * names, where an object appears as a file. The bottom of the program: it
 * calls nothing of it. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

void put_text(const char *s, FILE *f) {
  for (; *s; s++) putc(isprint((unsigned char)*s) ? *s : '?', f); /* "C" locale: ASCII */
}

void errorf(int rc, const char *fmt, ...) {
  /* Formatted whole first: what it quotes (arguments, names) may hold any byte. */
  char small[256], *text = small;
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(small, sizeof small, fmt, ap);
  va_end(ap);
  if (n >= (int)sizeof small && (text = malloc((size_t)n + 1)) != NULL) {
    va_start(ap, fmt);
    vsnprintf(text, (size_t)n + 1, fmt, ap);
    va_end(ap);
  }
  fputs("shmlane: ", stderr);
  put_text(text ? text : small, stderr);
  if (text != small) free(text);
  if (rc) fprintf(stderr, ": %s", shl_strerror(rc));
  /* Not the name but the place of every name (a container run with --ipc=none has none). */
  if (rc == -ENOENT && access("/dev/shm", F_OK) < 0 && errno == ENOENT)
    fputs(" (there is no /dev/shm here: POSIX shared memory needs a tmpfs mounted there)", stderr);
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

int collect_bad_names(struct list *l) {
  DIR *dir = opendir("/dev/shm");
  if (!dir) return 0; /* shl_list said why already, or has nothing either */
  const char *prefix = &SHL_POSIX_PREFIX[1];
  size_t plen = strlen(prefix);
  int rc = 0;
  for (struct dirent *d; rc == 0 && (d = readdir(dir)) != NULL;) {
    const char *raw = d->d_name + plen;
    if (strncmp(d->d_name, prefix, plen) != 0 || shl_name_check(raw) == 0) continue;
    char shown[4 * sizeof d->d_name + 1], *at = shown;
    for (const unsigned char *c = (const unsigned char *)raw; *c; c++)
      at += isgraph(*c) && *c != '\\' ? sprintf(at, "%c", *c) : sprintf(at, "\\x%02x", *c);
    rc = collect_name(shown, l);
  }
  closedir(dir);
  return rc;
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
