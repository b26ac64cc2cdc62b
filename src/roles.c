/* Role locks (docs/format.md, Role locks): who holds a role of an object is
 * known from an open-file-description lock on one byte of its file, which the
 * kernel drops when the holder's descriptor closes, so at its death in any PID
 * namespace. Here: taking, dropping and testing a role; the descriptors that
 * hold roles, registered so that a forked child closes its copies at once;
 * the writer role of an object whatever its contents (a name taken back);
 * and the fork generation, which tells a handle that a process inherited
 * from the one that opened it. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "internal.h"

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

/* Only a write lock is a role. A read lock (which a process that may only
 * read the object can place) shows that no role is held: the kernel never
 * grants it beside another's write lock. */
int shl__role_held(int fd, uint64_t byte) {
  struct flock fl;
  if (role_lock(fd, F_OFD_GETLK, F_WRLCK, byte, &fl) < 0) return -1;
  return fl.l_type == F_WRLCK;
}

/* ---------------------------------------------------------------- descriptors and fork */

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

static void install_atfork(void) {
  pthread_atfork(before_fork, after_fork_parent, after_fork_child);
}

unsigned shl__fork_generation(void) {
  pthread_once(&atfork_once, install_atfork);
  return atomic_load_explicit(&fork_generation, memory_order_relaxed);
}

/* Cached per thread and fork generation: a forked child's thread has a new id. */
int32_t shl__thread_id(void) {
  static _Thread_local int32_t tid;
  static _Thread_local unsigned tid_gen;
  unsigned gen = shl__fork_generation();
  if (tid == 0 || tid_gen != gen) {
    tid = (int32_t)syscall(SYS_gettid);
    tid_gen = gen;
  }
  return tid;
}

void shl__role_fd_init(struct shl__role_fd *r) {
  r->fd = -1;
  r->prev = r->next = r;
}

int shl__role_fd_open(struct shl__role_fd *r, const char *posix_name, int fd) {
  SHL__TEST_POINT(role_fd_opening);
  pthread_once(&atfork_once, install_atfork);
  shl__role_fd_init(r);
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

/* Closing drops every lock held through it. A registered descriptor's links
 * are written by its neighbours' registrations, in other threads: read under
 * the lock only. */
void shl__role_fd_close(struct shl__role_fd *r) {
  if (!r) return;
  pthread_mutex_lock(&role_fds_lock);
  if (r->next && r->next != r) { /* not never opened (zeroed), nor closed */
    r->prev->next = r->next;
    r->next->prev = r->prev;
    r->prev = r->next = r;
    if (r->fd >= 0) close(r->fd);
    r->fd = -1;
  }
  pthread_mutex_unlock(&role_fds_lock);
}

int shl__role_claim_writer(struct shl__role_fd *r, const char *posix_name, int *fd_out) {
  shl__role_fd_init(r);
  int fd = shm_open(posix_name, O_RDWR | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK, 0);
  /* A directory or a link (O_NOFOLLOW) at the name is no segment either. */
  if (fd < 0)
    return errno == EISDIR || errno == EINVAL || errno == ELOOP ? SHL_E_NOT_SHMLANE : -errno;
  struct stat st;
  /* Never another user's, whatever uid it shows (shl__owns). */
  int rc = fstat(fd, &st) < 0                         ? -errno
           : !S_ISREG(st.st_mode)                     ? SHL_E_NOT_SHMLANE
           : st.st_uid != geteuid() || !shl__owns(fd) ? SHL_E_FOREIGN_OWNER
                                                      : shl__role_fd_open(r, posix_name, fd);
  if (rc == 0) rc = shl__role_take(r->fd, SHL__ROLE_WRITER);
  /* A creator still at work, or the stream's first writer: alive. */
  if (rc == 0 && shl__role_held(r->fd, SHL__ROLE_CREATOR) != 0) rc = -EBUSY;
  if (rc < 0) {
    shl__role_fd_close(r);
    close(fd);
    return rc;
  }
  *fd_out = fd;
  return 0;
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
