/* Runs a fuzz target's entry point over files and directories of inputs,
 * without libFuzzer: the corpus is replayed by every ordinary build
 * (`meson test --suite fuzz`), under whatever sanitizers that build has.
 * Every input not named regress-* is a seed: where the target has a seed
 * check (fuzz_seed_check), a seed it refuses fails the run, and so does
 * finding no seed at all; a regression input that the check refuses at the
 * version check (SHL_E_VERSION) fails it too.
 * Usage: fuzz_X_replay PATH...   Exit 0 when every input ran and every seed
 * passed; a bug aborts. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz_common.h"

/* Weak: a target without a seed check only has its inputs replayed. */
__attribute__((weak)) int fuzz_seed_check(const uint8_t *data, size_t size);

static int seeds;

/* 1 if the input is a seed that the target's check refuses, or a
 * regression input that it refuses at the version check: whatever such an
 * input once pinned, it now reaches the version check alone. */
static int refused_seed(const char *path, const unsigned char *data, size_t len) {
  const char *base = strrchr(path, '/');
  base = base ? base + 1 : path;
  if (!fuzz_seed_check) return 0;
  if (strncmp(base, "regress-", 8) == 0) {
    if (fuzz_seed_check(data, len) != SHL_E_VERSION) return 0; /* refused or not: its bug's path */
    fprintf(stderr,
            "%s: a regression input of another format version, which reaches only the version "
            "check: make it again at today's format, so that it still reaches what it pins\n",
            path);
    return 1;
  }
  seeds++;
  int rc = fuzz_seed_check(data, len);
  if (rc == 0) return 0;
  fprintf(stderr,
          "%s: not a seed of today's format (%s): make it afresh (fuzz/gen_corpus makes most "
          "seeds at every build), or name an input that once broke something regress-<what>\n",
          path, shl_strerror(rc));
  return 1;
}

static int run_file(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    perror(path);
    return 1;
  }
  size_t cap = 1 << 16, len = 0;
  unsigned char *buf = malloc(cap);
  size_t n;
  while (buf && (n = fread(buf + len, 1, cap - len, f)) > 0) {
    len += n;
    if (len == cap) buf = realloc(buf, cap *= 2);
  }
  fclose(f);
  if (!buf) return 1;
  /* An exact-size copy, so a read past the input is caught as libFuzzer would. */
  unsigned char *exact = malloc(len ? len : 1);
  memcpy(exact, buf, len);
  int failed = refused_seed(path, exact, len);
  LLVMFuzzerTestOneInput(exact, len);
  free(exact);
  free(buf);
  return failed;
}

int main(int argc, char **argv) {
  int failed = 0, ran = 0;
  for (int i = 1; i < argc; i++) {
    struct stat st;
    if (stat(argv[i], &st) < 0) {
      perror(argv[i]);
      return 1;
    }
    if (!S_ISDIR(st.st_mode)) {
      failed |= run_file(argv[i]);
      ran++;
      continue;
    }
    struct dirent **ents;
    int n = scandir(argv[i], &ents, NULL, alphasort);
    if (n < 0) {
      perror(argv[i]);
      return 1;
    }
    for (int k = 0; k < n; k++) {
      if (ents[k]->d_name[0] != '.') {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", argv[i], ents[k]->d_name);
        failed |= run_file(path);
        ran++;
      }
      free(ents[k]);
    }
    free(ents);
  }
  printf("%d input(s) replayed", ran);
  if (fuzz_seed_check) printf(", %d seed(s) checked", seeds);
  printf("\n");
  if (fuzz_seed_check && seeds == 0) fprintf(stderr, "no seeds: the fuzzer would start blind\n");
  return failed || ran == 0 || (fuzz_seed_check && seeds == 0);
}
