/* Linux specifics behind the small interface in internal.h: clocks, shared
 * futexes, process identity. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
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

void shl__futex_wake_all(_Atomic uint32_t *word) {
  syscall(SYS_futex, (void *)word, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
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

/* Compares only the start-time bits in `mask`: ids keep the low 32. */
static int alive_masked(int32_t pid, uint64_t start, uint64_t mask) {
  if (pid <= 0) return -1;
  uint64_t now_start;
  int rc = shl__process_start(pid, &now_start);
  if (rc == -ENOENT || rc == -ESRCH) return 0;
  if (rc < 0) {
    /* No /proc view (hidepid, other namespace): fall back to kill(0). */
    if (kill(pid, 0) == 0 || errno == EPERM) return -1;
    return errno == ESRCH ? 0 : -1;
  }
  return (now_start & mask) == (start & mask) ? 1 : 0;
}

int shl__process_alive(int32_t pid, uint64_t start) { return alive_masked(pid, start, UINT64_MAX); }

uint64_t shl__self_id(void) {
  uint64_t start = 0;
  int32_t pid = (int32_t)getpid();
  shl__process_start(pid, &start);
  return (uint32_t)pid | (start & 0xffffffffu) << 32;
}

int shl__id_alive(uint64_t id) {
  if (id == 0) return 0;
  return alive_masked((int32_t)(uint32_t)id, id >> 32, 0xffffffffu);
}

const char *shl__shm_dir(void) { return "/dev/shm"; }

void shl__cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}
