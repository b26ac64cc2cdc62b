/* Linux specifics behind the small interface in internal.h: clocks, shared
 * futexes, process identity. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

/* Test programs that include this file may run code at these points. */
#ifndef SHL__TEST_POINT
#define SHL__TEST_POINT(name) ((void)0)
#endif

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

/* ---------------------------------------------------------------- two words at once */

_Static_assert(SHL__ALIVE_WAITERS == FUTEX_WAITERS && SHL__ALIVE_DIED == FUTEX_OWNER_DIED &&
                   SHL__ALIVE_TID_MASK == FUTEX_TID_MASK,
               "the liveness word uses the kernel's robust futex bits");

#ifndef FUTEX2_SIZE_U32
#define FUTEX2_SIZE_U32 FUTEX_32 /* its name in Linux 5.16 to 6.6 headers */
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
  /* Shared words (no FUTEX2_PRIVATE), as shl__futex_wait. */
  struct futex_waitv w[SHL__WAITV_MAX];
  if (n > SHL__WAITV_MAX) return -EINVAL;
  for (unsigned i = 0; i < n; i++)
    w[i] = (struct futex_waitv){.val = words[i].expected,
                                .uaddr = (uint64_t)(uintptr_t)words[i].word,
                                .flags = FUTEX2_SIZE_U32};
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

/* ---------------------------------------------------------------- keepers
 * A keeper thread holds a set of words of one mapping as robust futexes: it
 * puts them on a robust list of its own (set_robust_list replaces glibc's for
 * this thread, which never locks a pthread mutex) and stores its id in each.
 * When it ends, so when its process dies, the kernel walks that list and, for
 * every word still holding its id, stores OWNER_DIED and wakes one sleeper.
 * The kernel finds a word at a fixed offset from its list entry, so the
 * entries live in a private shadow of the words' span: entry k at the same
 * distance from the shadow's start as word k from the first word. */

struct shl__keeper {
  struct robust_list_head head;
  _Atomic uint32_t *const *words;
  unsigned nwords;
  void *shadow;           /* the list entries, private to this process */
  _Atomic uint32_t state; /* 0 starting, 1 holding, 2 asked to stop; private futex */
  _Atomic uint32_t tid;
  pthread_t thread;
  unsigned fork_gen;
};

static void *keeper_main(void *arg) {
  struct shl__keeper *k = arg;
  struct robust_list_head *glibc_head = NULL;
  size_t len = 0;
  syscall(SYS_get_robust_list, 0, &glibc_head, &len);
  /* Listed before any word holds our id: a death between the two leaves
   * nothing that the kernel would miss. */
  long rc = syscall(SYS_set_robust_list, &k->head, sizeof k->head);
  uint32_t tid = (uint32_t)syscall(SYS_gettid);
  if (rc == 0) {
    atomic_store(&k->tid, tid);
    for (unsigned i = 0; i < k->nwords; i++) atomic_store(k->words[i], tid);
  }
  uint32_t expected = 0;
  if (atomic_compare_exchange_strong(&k->state, &expected, 1)) shl__futex_wake_all(&k->state);
  while (atomic_load(&k->state) != 2) shl__futex_wait(&k->state, 1, -1);
  if (rc == 0 && glibc_head) syscall(SYS_set_robust_list, glibc_head, len);
  return NULL;
}

/* The list: entries in the shadow, in the words' order, ending at the head. */
static int keeper_list(struct shl__keeper *k) {
  uintptr_t lo = UINTPTR_MAX, hi = 0;
  for (unsigned i = 0; i < k->nwords; i++) {
    uintptr_t at = (uintptr_t)k->words[i];
    if (at % sizeof(void *)) return -EINVAL; /* an entry is a pointer */
    if (at < lo) lo = at;
    if (at > hi) hi = at;
  }
  k->shadow = calloc(1, hi - lo + sizeof(struct robust_list));
  if (!k->shadow) return -ENOMEM;
  struct robust_list *prev = &k->head.list;
  for (unsigned i = 0; i < k->nwords; i++) {
    struct robust_list *e = (struct robust_list *)((char *)k->shadow + ((uintptr_t)k->words[i] - lo));
    prev->next = e;
    prev = e;
  }
  prev->next = &k->head.list;
  k->head.futex_offset = (long)(lo - (uintptr_t)k->shadow);
  k->head.list_op_pending = NULL;
  return 0;
}

struct shl__keeper *shl__keeper_start(_Atomic uint32_t *const *words, unsigned nwords) {
  struct shl__keeper *k = calloc(1, sizeof *k);
  if (!k) return NULL;
  k->words = words;
  k->nwords = nwords;
  k->fork_gen = shl__fork_generation();
  pthread_attr_t attr;
  sigset_t all, old;
  sigfillset(&all);
  if (!nwords || nwords > SHL__KEEPER_MAX_WORDS || keeper_list(k) < 0 ||
      pthread_attr_init(&attr) != 0) {
    free(k->shadow);
    free(k);
    return NULL;
  }
  pthread_attr_setstacksize(&attr, 64 * 1024);
  /* The keeper takes no signal meant for the process (it inherits the mask). */
  pthread_sigmask(SIG_SETMASK, &all, &old);
  int rc = pthread_create(&k->thread, &attr, keeper_main, k);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  pthread_attr_destroy(&attr);
  if (rc != 0) {
    free(k->shadow);
    free(k);
    return NULL;
  }
  while (atomic_load(&k->state) == 0) shl__futex_wait(&k->state, 0, -1);
  if (atomic_load(&k->tid) == 0) { /* no robust list: no keeper */
    shl__keeper_stop(k);
    return NULL;
  }
  return k;
}

uint32_t shl__keeper_tid(const struct shl__keeper *k) { return k ? atomic_load(&k->tid) : 0; }

void shl__keeper_stop(struct shl__keeper *k) {
  if (!k) return;
  if (k->fork_gen == shl__fork_generation()) { /* a forked child has no keeper thread */
    atomic_store(&k->state, 2);
    shl__futex_wake_all(&k->state);
    pthread_join(k->thread, NULL);
  }
  free(k->shadow);
  free(k);
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

/* ---------------------------------------------------------------- role locks */

static int role_lock(int fd, int cmd, short type, uint64_t byte, struct flock *fl) {
  memset(fl, 0, sizeof *fl);
  fl->l_type = type;
  fl->l_whence = SEEK_SET;
  fl->l_start = (off_t)byte;
  fl->l_len = 1;
  /* l_pid must be 0 for OFD locks. */
  return fcntl(fd, cmd, fl);
}

int shl__role_take(int fd, uint64_t byte) {
  struct flock fl;
  if (role_lock(fd, F_OFD_SETLK, F_WRLCK, byte, &fl) == 0) return 0;
  return errno == EAGAIN || errno == EACCES ? -EBUSY : -errno;
}

void shl__role_drop(int fd, uint64_t byte) {
  struct flock fl;
  role_lock(fd, F_OFD_SETLK, F_UNLCK, byte, &fl);
}

int shl__role_held(int fd, uint64_t byte) {
  struct flock fl;
  if (role_lock(fd, F_OFD_GETLK, F_WRLCK, byte, &fl) < 0) return -1;
  return fl.l_type != F_UNLCK;
}

/* Every open role descriptor of this process, so that a forked child can
 * close its copies before any code of the child runs. */
static pthread_mutex_t role_fds_lock = PTHREAD_MUTEX_INITIALIZER;
static struct shl__role_fd role_fds = {-1, &role_fds, &role_fds};
static _Atomic unsigned fork_generation;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static void before_fork(void) { pthread_mutex_lock(&role_fds_lock); }
static void after_fork_parent(void) { pthread_mutex_unlock(&role_fds_lock); }
static void after_fork_child(void) {
  atomic_fetch_add(&fork_generation, 1);
  for (struct shl__role_fd *r = role_fds.next; r != &role_fds; r = r->next) {
    close(r->fd);
    r->fd = -1;
  }
  pthread_mutex_unlock(&role_fds_lock);
}

static void install_atfork(void) { pthread_atfork(before_fork, after_fork_parent, after_fork_child); }

unsigned shl__fork_generation(void) {
  pthread_once(&atfork_once, install_atfork);
  return atomic_load_explicit(&fork_generation, memory_order_relaxed);
}

int32_t shl__thread_id(void) {
  static _Thread_local int32_t tid;
  static _Thread_local unsigned tid_gen;
  unsigned gen = shl__fork_generation();
  if (tid == 0 || tid_gen != gen) { /* a forked child's thread has a new id */
    tid = (int32_t)syscall(SYS_gettid);
    tid_gen = gen;
  }
  return tid;
}

int shl__role_fd_open(struct shl__role_fd *r, const char *posix_name, int fd) {
  pthread_once(&atfork_once, install_atfork);
  r->fd = -1;
  r->prev = r->next = r;
  /* Opened and registered under the lock that fork() takes first
   * (before_fork): no child can inherit the descriptor unregistered. */
  pthread_mutex_lock(&role_fds_lock);
  int rfd = shm_open(posix_name, O_RDWR | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK, 0);
  int rc = rfd < 0 ? -errno : 0;
  SHL__TEST_POINT(role_fd_opened);
  struct stat a, b;
  if (rc == 0 &&
      (fstat(fd, &a) < 0 || fstat(rfd, &b) < 0 || a.st_ino != b.st_ino || a.st_dev != b.st_dev))
    rc = -ESTALE;
  if (rc == 0) {
    r->fd = rfd;
    r->next = role_fds.next;
    r->prev = &role_fds;
    role_fds.next->prev = r;
    role_fds.next = r;
  } else if (rfd >= 0) {
    close(rfd);
  }
  pthread_mutex_unlock(&role_fds_lock);
  return rc;
}

/* Closing drops every lock held through it. */
void shl__role_fd_close(struct shl__role_fd *r) {
  if (!r || !r->next || r->next == r) return; /* never opened (zeroed), or closed */
  pthread_mutex_lock(&role_fds_lock);
  r->prev->next = r->next;
  r->next->prev = r->prev;
  r->prev = r->next = r;
  if (r->fd >= 0) close(r->fd);
  r->fd = -1;
  pthread_mutex_unlock(&role_fds_lock);
}

void shl__role_fd_move(struct shl__role_fd *dst, struct shl__role_fd *src) {
  pthread_mutex_lock(&role_fds_lock);
  *dst = *src;
  if (src->next != src) { /* registered: dst takes its place in the list */
    dst->prev->next = dst;
    dst->next->prev = dst;
  } else {
    dst->prev = dst->next = dst;
  }
  src->prev = src->next = src;
  src->fd = -1;
  pthread_mutex_unlock(&role_fds_lock);
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
