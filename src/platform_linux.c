/* The platform layer: Linux specifics behind the small interface in
 * internal.h (clocks, shared futexes, a process's start time, whether the
 * caller owns a file, renames in the shared-memory directory, sleeping).
 * What the core builds on them (role locks, liveness words) lives in roles.c
 * and liveness.c. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

static int64_t clock_ns(clockid_t clock) {
  struct timespec ts;
  clock_gettime(clock, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t shl__monotonic_ns(void) { return clock_ns(CLOCK_MONOTONIC); }
int64_t shl__realtime_ns(void) { return clock_ns(CLOCK_REALTIME); }

int shl__futex_wait(_Atomic uint32_t *word, uint32_t expected, int64_t timeout_ns) {
  struct timespec rel, *relp = NULL;
  if (timeout_ns >= 0) {
    rel.tv_sec = (time_t)(timeout_ns / 1000000000);
    rel.tv_nsec = (long)(timeout_ns % 1000000000);
    relp = &rel;
  }
  /* Shared (not PRIVATE) op: the word lives in memory mapped by several processes. */
  if (syscall(SYS_futex, (void *)word, FUTEX_WAIT, expected, relp, NULL, 0) == 0) return 0;
  return errno == EAGAIN ? 0 : -errno; /* EAGAIN: the value had already changed */
}

/* Every sleeper, never one: a process that may only read a word can sleep on
 * it too, and a single wake could go to it instead of to those it is for. */
void shl__futex_wake_all(_Atomic uint32_t *word) {
  syscall(SYS_futex, (void *)word, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

void shl__futex_wake_private(_Atomic uint32_t *word) {
  syscall(SYS_futex, (void *)word, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}

/* ---------------------------------------------------------------- two words at once */

#ifndef FUTEX2_SIZE_U32
#define FUTEX2_SIZE_U32 FUTEX_32 /* its name in Linux 5.16 to 6.6 headers */
#endif
#ifndef FUTEX2_PRIVATE
#define FUTEX2_PRIVATE FUTEX_PRIVATE_FLAG /* its value in Linux 6.7 headers */
#endif
#ifndef SYS_futex_waitv
#define SYS_futex_waitv 449 /* the same number on every architecture */
#endif

static _Atomic int waitv_state; /* 0 not yet known, 1 usable, -1 not */

bool shl__futex_waitv_usable(void) {
  int state = atomic_load_explicit(&waitv_state, memory_order_relaxed);
  if (state == 0) {
    const char *no = getenv("SHMLANE_NO_FUTEX_WAITV");
    state = -1;
    if (!(no && *no && strcmp(no, "0") != 0)) {
      /* No waiters is EINVAL from a kernel that has the call; ENOSYS (or a
       * seccomp filter's EPERM) from one that has not. */
      long rc = syscall(SYS_futex_waitv, NULL, 0u, 0u, NULL, CLOCK_MONOTONIC);
      if (rc < 0 && errno == EINVAL) state = 1;
    }
    atomic_store_explicit(&waitv_state, state, memory_order_relaxed);
  }
  return state > 0;
}

int shl__futex_waitv(const struct shl__also *words, unsigned n, int64_t timeout_ns) {
  /* Shared words, as shl__futex_wait, but for those in private memory. */
  struct futex_waitv w[SHL__WAITV_MAX];
  if (n > SHL__WAITV_MAX) return -EINVAL;
  for (unsigned i = 0; i < n; i++)
    w[i] = (struct futex_waitv){.val = words[i].expected,
                                .uaddr = (uint64_t)(uintptr_t)words[i].word,
                                .flags = FUTEX2_SIZE_U32 | (words[i].private_ ? FUTEX2_PRIVATE : 0)};
  struct timespec abs, *absp = NULL;
  if (timeout_ns >= 0) { /* futex_waitv takes an absolute time */
    int64_t until = shl__deadline(shl__monotonic_ns(), timeout_ns);
    abs.tv_sec = (time_t)(until / 1000000000);
    abs.tv_nsec = (long)(until % 1000000000);
    absp = &abs;
  }
  if (syscall(SYS_futex_waitv, w, n, 0u, absp, CLOCK_MONOTONIC) >= 0) return 0;
  if (errno == EAGAIN) return 0;
  if (errno == ENOSYS) atomic_store(&waitv_state, -1);
  return -errno;
}

uint64_t shl__random64(void) {
  uint64_t r;
  if (getrandom(&r, sizeof r, GRND_NONBLOCK) == (ssize_t)sizeof r) return r;
  /* No entropy yet (early boot): distinct, if guessable. */
  static _Atomic uint64_t count;
  return (uint64_t)shl__monotonic_ns() * 0x9E3779B97F4A7C15ull ^ atomic_fetch_add(&count, 1);
}

int shl__process_start(int32_t pid, uint64_t *start) {
  char path[64], buf[1024];
  snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -errno;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  int err = errno;
  close(fd);
  if (n <= 0) return n < 0 ? -err : -EIO;
  buf[n] = '\0';
  /* The command name may hold spaces and ')': fields resume after the last ')'. */
  char *p = strrchr(buf, ')');
  if (!p) return -EIO;
  /* A zombie has exited: it holds no lock and will never notify. */
  if (p[1] == ' ' && (p[2] == 'Z' || p[2] == 'X')) return -ESRCH;
  /* Field 22 (starttime); after ')' comes field 3. */
  unsigned long long value = 0;
  int field = 2;
  for (char *tok = p + 1; *tok; tok++) {
    if (*tok == ' ') {
      field++;
      if (field == 22) {
        if (sscanf(tok + 1, "%llu", &value) != 1) return -EIO;
        *start = value;
        return 0;
      }
    }
  }
  return -EIO;
}

/* Setting O_NOATIME is allowed to a file's owner, and to a holder of
 * CAP_FOWNER over it, which the kernel grants only for an owner the caller's
 * user namespace maps: it compares the real ids, where fstat shows every
 * owner that namespace does not map as the overflow uid. Left set: it only
 * spares the descriptor's reads an atime update. */
bool shl__owns(int fd) {
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0 || (fl & O_NOATIME)) return fl >= 0;
  return fcntl(fd, F_SETFL, fl | O_NOATIME) == 0 || errno != EPERM;
}

const char *shl__shm_dir(void) { return "/dev/shm"; }

static int shm_rename(const char *from, const char *to, unsigned flags) {
  char a[PATH_MAX], b[PATH_MAX];
  snprintf(a, sizeof a, "%s%s", shl__shm_dir(), from);
  snprintf(b, sizeof b, "%s%s", shl__shm_dir(), to);
  return renameat2(AT_FDCWD, a, AT_FDCWD, b, flags) < 0 ? -errno : 0;
}

int shl__shm_exchange(const char *a, const char *b) { return shm_rename(a, b, RENAME_EXCHANGE); }
int shl__shm_move_new(const char *from, const char *to) {
  return shm_rename(from, to, RENAME_NOREPLACE);
}

void shl__sleep_ns(int64_t ns) {
  struct timespec ts = {(time_t)(ns / 1000000000), (long)(ns % 1000000000)};
  nanosleep(&ts, NULL);
}

void shl__cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}
